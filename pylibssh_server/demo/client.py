# SPDX-License-Identifier: MIT
"""One DemoServer connection: authentication, channels, and the event log of that client."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from pylibssh_server import (
    AuthMethod,
    AuthStatus,
    ChannelCallbacks,
    ChannelRequestType,
    ChannelType,
    GlobalRequestType,
    KeyExchangeError,
    PublicKeyState,
    RequestType,
    ServerCallbacks,
    Session,
    SessionEvent,
    SshChannel,
    SshKey,
    SshMessage,
)
from pylibssh_server._ffi import features
from pylibssh_server.demo.auth import METHOD_FLAGS, password_ok
from pylibssh_server.demo.commands import Reply
from pylibssh_server.demo.faults import OutputGate
from pylibssh_server.demo.handlers import (
    CannedHandler,
    ChannelHandler,
    CommandFailedHandler,
    ExecHandler,
    ForwardHandler,
    FunctionHandler,
    OpenedForwardHandler,
    ScriptedShellHandler,
    SftpHandler,
    Terminal,
    connect_target,
)
from pylibssh_server.demo.keyrules import INTERNAL_SFTP, UNRESTRICTED, KeyGrant
from pylibssh_server.demo.tunnels import Listener

if TYPE_CHECKING:
    from pylibssh_server.demo.server import DemoServer

__all__ = ["DemoClient"]

logger: logging.Logger = logging.getLogger("pylibssh_server.demo")

MAX_ENV_PER_CHANNEL = 1000
#: Client bytes libssh may hold for one channel.  Our window (1.25 MiB on libssh 0.10, 2 MiB
#: later) bounds what a well-behaved client can have in flight; more means it ignores it.
MAX_UNREAD_INPUT = 8 << 20
#: When the server stops: how long accepted client data may take to reach its command or
#: target, and how long a command that was given input then gets to exit before SIGKILL.
STOP_DRAIN_SECONDS = 5.0
STOP_EXIT_GRACE = 2.0
#: File descriptors a command needs while it starts (three pipe pairs, the exec-error pipe of
#: subprocess, the pidfd; it holds 4 once running), and that a forward holds.
EXEC_FDS_STARTING = 10
FORWARD_FDS = 2
#: Authentication requests of any kind (PK_OK probes included) one connection may make: every
#: failure counts toward max_auth_attempts, and this bounds the requests that do not fail.
AUTH_REQUESTS_PER_ATTEMPT = 10
#: ``drop-after-bytes``: how long the allowed bytes may take to leave before the cut anyway.
CUT_FLUSH_SECONDS = 2.0


class _SessionChannel:
    """State of one "session" channel before and after its exec/subsystem request."""

    def __init__(self, channel: SshChannel) -> None:
        self.channel = channel
        self.env: dict[str, str] = {}
        self.handler: ChannelHandler | None = None
        self.eof = False
        self.terminal: Terminal | None = None  # set by an accepted pty-req


class DemoClient:
    """One connection to a :class:`DemoServer`, in connection order.

    Attributes:
        id: 1-based connection number.
        callback_log: event name -> list of event data, in order (names as in LibSSH.jl).
        timeline: ``(name, index into callback_log[name], time.time())`` entries.
        authenticated: whether the client logged in.
        user: the user name of the last auth attempt.
        peer: the client's ``(host, port)``.
    """

    peer: tuple[str, int] | None
    authenticated: bool
    finished: threading.Event

    def __init__(self, server: DemoServer, session: Session, client_id: int) -> None:
        self.server = server
        self.session = session
        self.id = client_id
        self.peer = session.peer
        self.callback_log: dict[str, list[Any]] = defaultdict(list)
        self.timeline: list[tuple[str, int, float]] = []
        self.user: str | None = None
        self.authenticated = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._channels: list[_SessionChannel] = []
        self._handlers: list[ChannelHandler] = []
        self._event: SessionEvent | None = None
        self._kbdint_user: str | None = None
        self._kbdint_round = 0
        #: Methods passed so far of an auth chain, and the user who passed them.
        self._chain_passed: list[str] = []
        self._chain_user: str | None = None
        self._banner_sent = False
        faults = server.faults
        self._gate = OutputGate(faults.values.get("throttle"),
                                faults.values.get("drop-after-bytes")) \
            if "throttle" in faults or "drop-after-bytes" in faults else None
        self._cut = False
        self._ending = False
        self._cut_deadline: float | None = None
        self._failed_auth = 0
        self._auth_requests = 0
        self._draining = False
        #: tcpip-forward listeners by (requested address, bound port); the agent's socket.
        self._listeners: dict[tuple[str, int], Listener] = {}
        self._agent: Listener | None = None
        self._incoming: list[tuple[Listener, socket.socket, tuple[str, int]]] = []
        self._bytes_in_done = 0
        #: What the key the client logged in with allows (keyrules: its options).
        self.key_grant: KeyGrant = UNRESTRICTED
        self.finished = threading.Event()

    @property
    def bytes_in(self) -> int:
        """Channel data taken from this client (command stdin, forwards, SFTP requests);
        every such byte is delivered, also when the server stops."""
        return self._bytes_in_done + sum(h.bytes_in for h in list(self._handlers))

    # ---- event log ----------------------------------------------------------------------
    def log(self, name: str, data: Any) -> None:
        """Record one event (and print it when the server is verbose)."""
        entries = self.callback_log[name]
        entries.append(data)
        now = time.time()
        self.timeline.append((name, len(entries) - 1, now))
        if self.server.verbose:
            # stderr: stdout belongs to the CLI's one JSON readiness line.
            print(f"[demo-server] client {self.id} {name}: {data!r}", file=sys.stderr,
                  flush=True)

    def __repr__(self) -> str:
        return f"<DemoClient {self.id} peer={self.peer} authenticated={self.authenticated}>"

    # ---- driving ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the client thread to finish (thread-safe, returns at once)."""
        self._stop.set()
        self.session.interrupt()

    def run(self) -> None:
        """Serve the connection until it ends or the server stops (the client thread)."""
        session = self.session
        server = self.server
        try:
            session.set_server_callbacks(self._server_callbacks())
            session.set_message_callback(self._on_message)
            session.set_auth_methods(self._allowed_methods())
            session.set_blocking(False)
            delay = server.faults.values.get("delay-banner")
            if delay:
                self.log("fault", ("delay-banner", delay))
                if self._stop.wait(delay):
                    return
            deadline = time.monotonic() + server.login_grace_time
            try:
                session.handle_key_exchange(timeout=server.login_grace_time)
            except (KeyExchangeError, ValueError) as exc:
                logger.debug("client %s: key exchange ended: %s", self.id, exc)
                return
            self._event = event = SessionEvent(session)
            while not self._stop.is_set():
                try:
                    event.dopoll(self._poll_timeout())
                except ValueError:
                    break  # session closed under us
                except Exception as exc:
                    logger.error("client %s: %s", self.id, exc, exc_info=exc)
                    self.error = exc
                self._service()
                connected, fatal = event.session_state()  # one C call for both checks
                if not connected:
                    break
                if fatal:
                    logger.warning("client %s: %s: disconnecting", self.id, session.get_error())
                    self.log("protocol_error", session.get_error())
                    break
                if not self.authenticated and time.monotonic() > deadline:
                    logger.info("client %s: login grace time exceeded", self.id)
                    break
                if self._out_of_attempts():
                    logger.info("client %s: too many authentication attempts", self.id)
                    break
            if self._stop.is_set() and self._handlers:
                self._drain(event)
        except Exception as exc:
            self.error = exc
            logger.exception("client %s failed", self.id)
        finally:
            self._teardown()
            self.finished.set()

    def _drain(self, event: SessionEvent) -> None:
        """The server is stopping: deliver the client data already taken (bounded in time),
        close the inputs, and give commands a moment to finish with what they got."""
        self._draining = True
        for handler in self._handlers:
            handler.end_input()
        deadline = time.monotonic() + STOP_DRAIN_SECONDS
        while any(h.input_pending() for h in self._handlers) and time.monotonic() < deadline:
            try:
                event.dopoll(0.05)
            except ValueError:
                break  # session closed under us
            except Exception as exc:
                logger.error("client %s: %s", self.id, exc, exc_info=exc)
            self._service()
        # Only commands that were given input may still be working on it.
        grace = time.monotonic() + STOP_EXIT_GRACE
        for handler in self._handlers:
            if isinstance(handler, ExecHandler) and handler.bytes_in:
                handler.wait_exit(max(0.0, grace - time.monotonic()))

    def _poll_timeout(self) -> float | None:
        timeout = self._handler_timeout()
        gate = self._gate
        if gate is not None and self._handlers and gate.room() == 0:
            # Throttled: wake up when the gate has room again (or to cut the connection).
            wait = 0.05 if gate.exhausted else gate.wait()
            timeout = wait if timeout is None else min(timeout, wait)
        return timeout

    def _handler_timeout(self) -> float | None:
        if any(h.backlogged and not h.finished and not h.channel.closed and h.input_room() > 0
               for h in self._handlers):
            return 0.0  # client data waits in libssh and there is room: drain it now
        if any(isinstance(h, ExecHandler) and h.needs_timer for h in self._handlers):
            return 0.05
        deadlines = [h.deadline for h in self._handlers if h.deadline is not None]
        if deadlines:
            return max(0.0, min(deadlines) - time.monotonic())
        if not self.authenticated:
            return 1.0
        return None

    def _service(self) -> None:
        if self._gate is not None and self._gate.exhausted and not self._cut:
            self._cut_when_flushed()
        if self._incoming:
            self._open_incoming()
        for handler in list(self._handlers):
            try:
                handler.service()
            except ValueError:
                handler.terminate()  # its channel is gone
            if handler.input_overflow() and not handler.finished:
                # Seen by a C sink (the Python path checks in _data_room).
                handler.terminate()
                self._beyond_window(f"more than {MAX_UNREAD_INPUT} bytes")
            if handler.finished:
                self._handlers.remove(handler)
                self._bytes_in_done += handler.bytes_in
        for state in list(self._channels):
            channel = state.channel
            if channel.closed:
                self._channels.remove(state)
            elif channel.remote_closed and state.handler is None:
                channel.close()

    def _cut_when_flushed(self) -> None:
        """``drop-after-bytes``: once the last allowed byte left our buffers, cut the TCP
        connection (no DISCONNECT: the client sees it break mid-stream)."""
        now = time.monotonic()
        if self._cut_deadline is None:
            self._cut_deadline = now + CUT_FLUSH_SECONDS
        if now < self._cut_deadline and any(
                h.channel.pending_bytes for h in self._handlers if not h.channel.closed):
            return
        self._cut = True
        limit = self.server.faults["drop-after-bytes"]
        self.log("fault", ("drop-after-bytes", limit))
        logger.info("client %s: fault drop-after-bytes=%d: cutting the connection", self.id,
                    limit)
        with contextlib.suppress(OSError, ValueError):
            sock = socket.socket(fileno=os.dup(self.session.fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()  # our dup only: libssh's fd stays, and now reads EOF

    def _teardown(self) -> None:
        for listener in [*self._listeners.values(), *([self._agent] if self._agent else [])]:
            listener.close()
        self._listeners.clear()
        self._agent = None
        for _, conn, _ in self._incoming:
            conn.close()
        self._incoming.clear()
        for handler in self._handlers:
            try:
                handler.terminate()
            except Exception:
                logger.exception("client %s: handler teardown", self.id)
        self._bytes_in_done += sum(h.bytes_in for h in self._handlers)
        self._handlers.clear()
        self._channels.clear()

    # ---- authentication -----------------------------------------------------------------
    def _server_callbacks(self) -> ServerCallbacks:
        # libssh >= 0.12 has server callbacks for these; older versions reach the message
        # callback instead.  Both paths log the same events.
        newer: dict[str, Any] = {}
        if features["server_kbdint_callback"]:
            newer["on_auth_kbdint"] = self._on_auth_kbdint
        if features["server_direct_tcpip_callback"]:
            newer["on_channel_open_request_direct_tcpip"] = self._on_direct_tcpip
        return ServerCallbacks(
            on_auth_none=self._on_auth_none,
            on_auth_password=self._on_auth_password,
            on_auth_pubkey=self._on_auth_pubkey,
            on_service_request=self._on_service_request,
            on_channel_open_request_session=self._on_channel_open,
            **newer,
        )

    def _allowed_methods(self, user: str | None = None) -> AuthMethod:
        """The methods a request of ``user`` may use now (what a failure reply lists): all
        of ``auth_methods``, or with auth chains those next in a chain (a user other than
        the one who passed the first steps starts over)."""
        chains = self.server.auth_chains
        if chains is None:
            return AuthMethod(self.server.auth_methods)
        passed = self._chain_passed if user is None or user == self._chain_user else []
        return chains.next_methods(passed)

    def _method_allowed(self, method: str, user: str) -> bool:
        return bool(self._allowed_methods(user) & METHOD_FLAGS[method])

    def _before_answer(self) -> None:
        """What every heard authentication request gets before its answer: the banner (once)
        and the ``delay-auth`` fault."""
        banner = self.server.banner
        if banner is not None and not self._banner_sent:
            self._banner_sent = True
            self.session.send_issue_banner(banner)
        delay = self.server.faults.values.get("delay-auth")
        if delay:
            self.log("fault", ("delay-auth", delay))
            self._stop.wait(delay)

    def _auth_result(self, ok: bool, user: str, method: str) -> AuthStatus:
        """The answer to an authentication request whose check gave ``ok``: with the
        ``fail-auth`` fault, chains (partial success) and ``disconnect-after-auth``."""
        self.user = user
        counter = self.server.fault_counters.get("fail-auth")
        if ok and counter is not None and counter.take():
            self.log("fault", ("fail-auth", self.server.faults["fail-auth"]))
            ok = False
        if not ok:
            self._failed_auth += 1
            self._out_of_attempts()
            return AuthStatus.DENIED
        chains = self.server.auth_chains
        if chains is not None:
            if user != self._chain_user:
                self._chain_passed, self._chain_user = [], user
            self._chain_passed.append(method)
            if not chains.complete(self._chain_passed):
                self.log("auth_partial", method)
                self.session.set_auth_methods(chains.next_methods(self._chain_passed))
                return AuthStatus.PARTIAL
        self.authenticated = True
        if "disconnect-after-auth" in self.server.faults:
            self.log("fault", ("disconnect-after-auth", None))
            self._ending = True
            self.session.disconnect()  # deferred: the success reply goes out first
        return AuthStatus.SUCCESS

    def _serving(self) -> bool:
        """Whether the client may open channels and forwards: logged in, and not being
        disconnected (``disconnect-after-auth``: requests already sent are refused)."""
        return self.authenticated and not self._ending

    def _out_of_attempts(self) -> bool:
        """True (and the client is disconnected) once max_auth_attempts failed, or the
        client made more requests than that allows: requests already in the same poll batch
        are refused unheard."""
        limit = self.server.max_auth_attempts
        if self._failed_auth < limit and \
                self._auth_requests < limit * AUTH_REQUESTS_PER_ATTEMPT:
            return False
        if self.authenticated:
            return False
        self.session.disconnect()  # deferred until the poll returns
        return True

    def _count_request(self) -> bool:
        """Count one authentication request; True if it may be heard."""
        self._auth_requests += 1
        return not self._out_of_attempts()

    def _on_auth_none(self, session: Session, user: str, userdata: Any) -> AuthStatus:
        self.log("auth_none", True)
        self.user = user
        if not self._count_request():
            return AuthStatus.DENIED
        self._before_answer()
        if self.server.allow_auth_none and self.server.auth_chains is None:
            return self._auth_result(True, user, "none")
        return AuthStatus.DENIED  # the usual first probe: not counted as a failure

    def _on_auth_password(
        self, session: Session, user: str, password: str, userdata: Any
    ) -> AuthStatus:
        if not self._count_request():
            return AuthStatus.DENIED
        self.log("auth_password", (user, password))
        self._before_answer()
        ok = self._method_allowed("password", user) and password_ok(
            self.server.users, self.server.password, user, password)
        return self._auth_result(ok, user, "password")

    def _on_auth_pubkey(
        self, session: Session, user: str, key: SshKey, state: Any, userdata: Any
    ) -> AuthStatus:
        if not self._count_request():
            return AuthStatus.DENIED
        self.log("auth_pubkey", (user, key.fingerprint(), int(state)))
        self._before_answer()
        authorized = self._method_allowed("publickey", user) and \
            self._key_authorized(user, key, state)
        if state == PublicKeyState.NONE and authorized:
            self.user = user
            return AuthStatus.SUCCESS  # PK_OK: not a failure, as in sshd
        # As in sshd, a probe with a key that is not authorized is a failed attempt.
        return self._auth_result(authorized and state == PublicKeyState.VALID, user,
                                 "publickey")

    # keyrules: authorized_keys options and certificates decide, and limit the session.
    def _key_authorized(self, user: str, key: SshKey, state: Any) -> bool:
        """Whether ``key`` may log in ``user`` (options and certificates checked); a signed
        request that passes sets :attr:`key_grant`."""
        grant, reason = self.server.key_rules.authorize(user, key, self.peer[0] if self.peer
                                                        else "")
        if grant is None:
            if reason is not None:
                self.log("auth_key_refused", reason)
            return False
        if state == PublicKeyState.VALID:
            self.key_grant = grant
            if grant.restricted:
                self.log("auth_key_accepted", grant.origin)
        return True

    def _on_service_request(self, session: Session, service: str, userdata: Any) -> bool:
        self.log("service_request", service)
        return True

    def _kbdint_step(self, msg: SshMessage) -> str:
        """Advance keyboard-interactive: "info" (prompts sent), "ok", "partial" (a chain
        step) or "denied"."""
        response = msg.auth_kbdint_is_response
        user = self._kbdint_user if response else (msg.auth_user or "")
        if user is None or not self._method_allowed("keyboard-interactive", user) or \
                not self._count_request():
            return "denied"
        kbdint = self.server.kbdint
        if not response:
            # libssh gives no user name on the response message: remember it now.
            self._kbdint_user = self.user = user
            self.log("auth_kbdint", user)
            self._before_answer()
            self._kbdint_prompt(msg, 0)
            return "info"
        self._before_answer()
        number = self._kbdint_round
        if not kbdint.matches(number, self.session.kbdint_answers()):
            self.log("auth_kbdint", "denied")
            self._kbdint_user = None
            self._auth_result(False, user, "keyboard-interactive")
            return "denied"
        if number + 1 < len(kbdint.rounds):
            self._kbdint_prompt(msg, number + 1)
            return "info"
        self.log("auth_kbdint", kbdint.accepted_text())
        self._kbdint_user = None
        status = self._auth_result(True, user, "keyboard-interactive")
        return {AuthStatus.SUCCESS: "ok", AuthStatus.PARTIAL: "partial"}.get(status, "denied")

    def _kbdint_prompt(self, msg: SshMessage, number: int) -> None:
        kbdint = self.server.kbdint
        self._kbdint_round = number
        prompts = kbdint.rounds[number]
        msg.auth_interactive_request(kbdint.name, kbdint.instruction,
                                     [p.prompt for p in prompts], [p.echo for p in prompts])

    def _kbdint(self, msg: SshMessage) -> bool:
        """Keyboard-interactive through the message API (libssh 0.10/0.11)."""
        step = self._kbdint_step(msg)
        if step == "ok":
            msg.auth_reply_success()
        elif step == "partial":
            msg.auth_reply_success(partial=True)  # lists the methods set by _auth_result
        elif step == "denied":
            msg.auth_set_methods(int(self._allowed_methods()))
            return False
        return True

    def _on_auth_kbdint(self, session: Session, msg: SshMessage, userdata: Any) -> AuthStatus:
        """Keyboard-interactive through the server callback (libssh >= 0.12)."""
        self.log("message_request", (int(RequestType.AUTH), int(AuthMethod.INTERACTIVE)))
        step = self._kbdint_step(msg)
        return {"info": AuthStatus.INFO, "ok": AuthStatus.SUCCESS,
                "partial": AuthStatus.PARTIAL}.get(step, AuthStatus.DENIED)

    # ---- messages -----------------------------------------------------------------------
    def _on_message(self, session: Session, msg: SshMessage, userdata: Any) -> bool:
        mtype, subtype = msg.type, msg.subtype
        self.log("message_request", (mtype, subtype))
        if mtype == RequestType.AUTH and subtype == AuthMethod.INTERACTIVE:
            return self._kbdint(msg)
        if mtype == RequestType.AUTH:
            # Methods without a callback (hostbased, gssapi): refuse, listing ours.
            self._failed_auth += 1
            msg.auth_set_methods(int(self._allowed_methods()))
            return False
        if mtype == RequestType.CHANNEL_OPEN and subtype == ChannelType.DIRECT_TCPIP:
            return self._direct_tcpip(msg)
        if mtype == RequestType.GLOBAL:
            return self._global_request(msg)
        if mtype == RequestType.CHANNEL and subtype == ChannelRequestType.X11:
            self.log("channel_x11_request", msg.x11_request)
            return False  # refused: X11 is not served
        return False

    def _global_request(self, msg: SshMessage) -> bool:
        """``tcpip-forward`` and ``cancel-tcpip-forward`` (``ssh -R``); True if answered."""
        if msg.subtype == GlobalRequestType.TCPIP_FORWARD:
            address, port = msg.global_request
            address = address or ""
            bound = self._listen_for_client(address, port)
            self.log("tcpip_forward", (address, port, bound))
            if bound is None:
                return False  # libssh answers REQUEST_FAILURE
            msg.global_request_reply_success(bound)
            return True
        if msg.subtype == GlobalRequestType.CANCEL_TCPIP_FORWARD:
            address, port = msg.global_request
            address = address or ""
            self.log("cancel_tcpip_forward", (address, port))
            listener = self._listeners.pop((address, port), None)
            if listener is None:
                return False
            listener.close()
            msg.global_request_reply_success(0)
            return True
        return False

    def _listen_for_client(self, address: str, port: int) -> int | None:
        """Bind a listener for the client's ``tcpip-forward``: the bound port, or None."""
        server = self.server
        if not self._serving() or not 0 <= port < 65536 or \
                not server.remote_forward_allowed(address, port) or \
                not self.key_grant.allows_listen(address, port, self.log):
            return None
        if len(self._listeners) >= server.max_remote_forwards:
            logger.warning("client %s: tcpip-forward refused: %d listeners already", self.id,
                           len(self._listeners))
            return None
        if not self._fds_available(1, f"tcpip-forward {address}:{port}"):
            return None
        try:
            listener = Listener.tcp(address, port, self._require_event(), self._queue_incoming)
        except OSError as exc:
            logger.info("client %s: tcpip-forward %s:%d refused: %s", self.id, address, port,
                        exc)
            return None
        self._listeners[(address, listener.port)] = listener
        return listener.port

    def _queue_incoming(self, listener: Listener, conn: socket.socket,
                        peer: tuple[str, int]) -> None:
        self._incoming.append((listener, conn, peer))

    def _open_incoming(self) -> None:
        """Open a channel to the client for each connection the listeners accepted (from the
        main loop: an open polls the session)."""
        incoming, self._incoming = self._incoming, []
        for listener, conn, peer in incoming:
            is_agent = listener is self._agent
            if listener.closed:
                conn.close()  # cancelled, or the client is leaving
                continue
            if not is_agent:
                self.log("channel_open_forwarded_tcpip",
                         (listener.address, listener.port, peer[0], peer[1]))
            if self._open_channels() >= self.server.max_channels or \
                    not self._fds_available(FORWARD_FDS, "forwarded connection"):
                conn.close()
                continue
            channel = SshChannel(self.session)
            if is_agent:
                def start(ch: SshChannel) -> bool | None:
                    return ch.open_auth_agent()
            else:
                def start(ch: SshChannel, address: str = listener.address,  # type: ignore[misc]
                          port: int = listener.port,
                          peer: tuple[str, int] = peer) -> bool | None:
                    return ch.open_forwarded_tcpip(address, port, peer[0], peer[1])
            try:
                handler = OpenedForwardHandler(
                    channel, self._require_event(), conn, start,
                    lambda why: logger.info("client %s: the client refused a channel: %s",
                                            self.id, why), native=self._native())
            except (OSError, ValueError) as exc:
                logger.warning("client %s: cannot open a channel: %s", self.id, exc)
                conn.close()
                if not channel.closed:
                    channel.close()
                continue
            try:
                self._attach_forward(handler)
            except ValueError:  # the session is going away
                handler.terminate()
                continue
            handler.start()

    def _on_agent_request(self, state: _SessionChannel) -> None:
        self.log("channel_auth_agent_request", True)
        if not self.server.agent_forwarding or \
                not self.key_grant.allows("agent_forwarding", "auth-agent-req", self.log):
            return  # no socket, so no SSH_AUTH_SOCK: refused in effect
        if self._agent is None:
            try:
                self._agent = Listener.agent(self._require_event(), self._queue_incoming)
            except OSError as exc:
                logger.warning("client %s: no agent socket: %s", self.id, exc)
                return
        state.env["SSH_AUTH_SOCK"] = str(self._agent.path)

    def _forward_target(self, host: str, port: int) -> socket.socket | None:
        """Log the request, check it, connect: None refuses (OPEN_FAILURE)."""
        self.log("channel_open_direct_tcpip", (host, port))
        if self._refused_by_fault("direct-tcpip"):
            return None
        if not self._serving() or self._open_channels() >= self.server.max_channels \
                or not self.server.forward_allowed(host, port) \
                or not self.key_grant.allows_open(host, port, self.log) \
                or not self._fds_available(FORWARD_FDS, f"forward to {host}:{port}"):
            return None
        # Connect first, then confirm: a refused target gets OPEN_FAILURE, never a dead channel.
        return connect_target(host, port)

    def _start_forward(self, channel: SshChannel, sock: socket.socket) -> None:
        self._attach_forward(ForwardHandler(channel, self._require_event(), sock,
                                            native=self._native()))

    def _attach_forward(self, handler: ForwardHandler) -> None:
        """Route the forward channel's data, EOF and CLOSE to ``handler`` and drive it."""
        handler.channel.set_callbacks(ChannelCallbacks(
            data_room=lambda available: self._data_room(handler, available),
            on_data=lambda s, c, data, is_stderr, u: handler.on_data(data),
            on_eof=lambda s, c, u: handler.on_eof(),
            on_close=lambda s, c, u: self._on_forward_close(handler),
        ))
        self._add_handler(handler)

    def _direct_tcpip(self, msg: SshMessage) -> bool:
        """direct-tcpip through the message API (libssh 0.10/0.11)."""
        host, port = msg.destination
        sock = self._forward_target(host or "", port)
        if sock is None:
            return False
        self._start_forward(msg.channel_open_reply_accept(), sock)
        return True

    def _on_direct_tcpip(self, session: Session, host: str, port: int, orig_host: str,
                         orig_port: int, userdata: Any) -> SshChannel | None:
        """direct-tcpip through the server callback (libssh >= 0.12)."""
        self.log("message_request", (int(RequestType.CHANNEL_OPEN), int(ChannelType.DIRECT_TCPIP)))
        sock = self._forward_target(host, port)
        if sock is None:
            return None
        channel = SshChannel(session)
        self._start_forward(channel, sock)
        return channel

    def _on_forward_close(self, handler: ForwardHandler) -> None:
        handler.terminate()
        handler.channel.close()

    def _require_event(self) -> SessionEvent:
        assert self._event is not None
        return self._event

    # ---- session channels ---------------------------------------------------------------
    def fds_held(self) -> int:
        """File descriptors and SFTP handles this client's channels hold."""
        return sum(h.fds_held() for h in self._handlers if not h.finished)

    def _fds_available(self, needed: int, what: str) -> bool:
        """Whether ``needed`` more fit in the client's budget (``max_fds_per_client``)."""
        budget = self.server.max_fds_per_client
        held = self.fds_held()
        if held + needed <= budget:
            return True
        logger.warning("client %s: %s refused: %d of its %d file descriptors and SFTP "
                       "handles in use", self.id, what, held, budget)
        self.log("resource_limit", f"{what}: {held} of {budget} fds and handles in use")
        return False

    def _open_channels(self) -> int:
        # Channels closed within the current poll are still listed until _service().
        forwards = sum(1 for h in self._handlers
                       if isinstance(h, ForwardHandler) and not h.finished)
        return sum(1 for state in self._channels if not state.channel.closed) + forwards

    def _on_channel_open(self, session: Session, userdata: Any) -> SshChannel | None:
        self.log("channel_open", True)
        if self._refused_by_fault("session"):
            return None
        if not self._serving() or self._open_channels() >= self.server.max_channels:
            return None
        channel = SshChannel(session)
        state = _SessionChannel(channel)
        channel.set_callbacks(ChannelCallbacks(
            data_room=lambda available: self._data_room(state.handler, available),
            on_data=lambda s, c, data, is_stderr, u: self._on_data(state, data),
            on_eof=lambda s, c, u: self._on_eof(state),
            on_close=lambda s, c, u: self._on_close(state),
            on_env_request=lambda s, c, name, value, u: self._on_env(state, name, value),
            on_exec_request=lambda s, c, command, u: self._on_exec(state, command),
            on_pty_request=lambda s, c, term, cols, rows, pxw, pxh, u: self._on_pty(
                state, Terminal(term, cols, rows, pxw, pxh)),
            on_pty_window_change=lambda s, c, cols, rows, pxw, pxh, u: self._on_window_change(
                state, cols, rows, pxw, pxh),
            on_shell_request=lambda s, c, u: self._on_shell(state),
            on_signal=lambda s, c, name, u: self._on_signal(state, name),
            # With this hook set libssh answers success (to a client that asks for a reply);
            # with agent_forwarding=False the command just gets no SSH_AUTH_SOCK.
            on_auth_agent_req=lambda s, c, u: self._on_agent_request(state),
            on_subsystem_request=lambda s, c, name, u: self._on_subsystem(state, name),
        ))
        self._channels.append(state)
        return channel

    def _refused_by_fault(self, channel_type: str) -> bool:
        if not self.server.faults.refuses(channel_type):
            return False
        self.log("fault", ("refuse-channel", channel_type))
        return True

    def _native(self) -> bool | None:
        """The data path of a new handler: the Python one under the output faults (the C
        pumps do not pass the gate), else the default (``PYLIBSSH_DEMO_DATA_PATH``)."""
        return False if self._gate is not None else None

    def _add_handler(self, handler: ChannelHandler,
                     state: _SessionChannel | None = None) -> None:
        """Drive ``handler`` (the one of session channel ``state``), under the faults."""
        handler.gate = self._gate
        if state is not None:
            state.handler = handler
            if "no-exit-status" in self.server.faults:
                handler.skip_exit_status = lambda: self.log("fault", ("no-exit-status", None))
        self._handlers.append(handler)

    def _data_room(self, handler: ChannelHandler | None, available: int) -> int:
        if self._draining:
            return 0  # stopping: what libssh still holds was never accepted
        if available > MAX_UNREAD_INPUT:
            self._beyond_window(f"{available} bytes")
            return 0
        if handler is None:
            return available  # no command yet: nobody reads stdin, discard
        return handler.data_room(available)

    def _beyond_window(self, unread: str) -> None:
        logger.warning("client %s: sends beyond its channel window (%s unread): "
                       "disconnecting", self.id, unread)
        self.log("protocol_error", f"{unread} sent beyond the channel window")
        self.session.disconnect()  # deferred until the poll returns

    def _on_data(self, state: _SessionChannel, data: bytes) -> int:
        if state.handler is None:
            return len(data)  # no command yet: nobody reads stdin
        return state.handler.on_data(data)

    def _on_eof(self, state: _SessionChannel) -> None:
        self.log("channel_eof", True)
        state.eof = True
        if state.handler is not None:
            state.handler.on_eof()

    def _on_close(self, state: _SessionChannel) -> None:
        self.log("channel_close", True)
        if state.handler is not None:
            state.handler.on_close()
        state.channel.close()

    def _on_env(self, state: _SessionChannel, name: str, value: str) -> bool:
        self.log("channel_env_request", (name, value))
        if len(state.env) >= MAX_ENV_PER_CHANNEL:
            return False
        state.env[name] = value
        return True

    def _on_signal(self, state: _SessionChannel, name: str) -> None:
        self.log("channel_signal", name)
        if state.handler is None or not state.handler.signal(name):
            logger.info("client %s: signal %r delivered to no process", self.id, name)

    def _on_pty(self, state: _SessionChannel, terminal: Terminal) -> bool:
        t = terminal
        self.log("channel_pty_request", (t.term, t.cols, t.rows, t.pxwidth, t.pxheight))
        if state.handler is not None or len(t.term) > 256:
            return False  # too late (the command runs), or no terminal type a pty could have
        if not self.key_grant.allows("pty", "pty-req", self.log):
            return False
        state.terminal = terminal
        return True

    def _on_window_change(self, state: _SessionChannel, cols: int, rows: int, pxw: int,
                          pxh: int) -> None:
        self.log("channel_pty_window_change", (cols, rows, pxw, pxh))
        if state.terminal is None:
            return  # no pty: nothing to resize (sshd ignores it too)
        state.terminal = Terminal(state.terminal.term, cols, rows, pxw, pxh)
        if isinstance(state.handler, ExecHandler):
            state.handler.resize(state.terminal)

    def _on_shell(self, state: _SessionChannel) -> bool:
        self.log("channel_shell_request", True)
        if state.handler is not None:
            return False
        forced = self.key_grant.exec_command(state.env, None, self.log)  # keyrules
        if forced is not None:
            return self._exec(state, forced)
        if not self.server.host_commands:
            self._add_handler(ScriptedShellHandler(state.channel, self._require_event(),
                                                   self.server.commands, state.terminal),
                              state)
            return True
        # The shell replaces the `sh -c` that starts it: signals and exit status are its own.
        return self._start_command(state, f"exec {self.server.shell}")

    def _on_exec(self, state: _SessionChannel, command: str) -> bool:
        self.log("channel_exec_request", f"'{command}'")
        if state.handler is not None:
            return False
        return self._exec(state, self.key_grant.exec_command(state.env, command, self.log)
                          or "")

    def _exec(self, state: _SessionChannel, command: str) -> bool:
        """Run ``command`` for the channel: from the command table, or on the host."""
        reply = self.server.commands.lookup(command)
        handler: ChannelHandler
        if isinstance(reply, Reply):
            handler = CannedHandler(state.channel, self._require_event(), reply,
                                    state.terminal)
        elif reply is not None:
            handler = FunctionHandler(
                state.channel, self._require_event(), reply, command, self._command_env(state),
                state.terminal,
                lambda exc: logger.error("client %s: command %r raised", self.id, command,
                                         exc_info=exc), native=self._native())
        elif not self.server.host_commands:
            handler = CommandFailedHandler(state.channel, self._require_event(),
                                           f"demo: command not found: {command}\n", 127)
        else:
            return self._start_command(state, command)
        self._add_handler(handler, state)
        return True

    def _command_env(self, state: _SessionChannel) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.server.command_env)
        env.update(state.env)
        return env

    def _start_command(self, state: _SessionChannel, command: str) -> bool:
        """Run ``command`` on the host for the channel (on its pty if one was requested)."""
        env = self._command_env(state)
        handler: ChannelHandler
        if not self._fds_available(EXEC_FDS_STARTING, f"command {command!r}"):
            handler = CommandFailedHandler(
                state.channel, self._require_event(),
                "demo: cannot run the command: too many open files on this connection\n", 126)
        else:
            try:
                handler = ExecHandler(state.channel, self._require_event(), command, env,
                                      state.terminal, native=self._native())
            except (OSError, ValueError) as exc:
                # Accepted all the same: the client gets the reason and an exit status, as a
                # shell would report it, instead of a channel that just closes.
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if isinstance(exc, OSError) and exc.errno == errno.E2BIG:
                    reason += " (the command line or its environment is too large)"
                logger.warning("client %s: cannot start %r: %s", self.id, command, reason)
                status = 127 if isinstance(exc, OSError) and exc.errno == errno.ENOENT else 126
                handler = CommandFailedHandler(state.channel, self._require_event(),
                                               f"demo: cannot run the command: {reason}\n",
                                               status)
        self._add_handler(handler, state)
        return True

    def _on_subsystem(self, state: _SessionChannel, name: str) -> bool:
        self.log("channel_subsystem_request", name)
        if state.handler is not None:
            return False
        # keyrules: a forced command replaces any subsystem, as in sshd.
        if self.key_grant.command is not None:
            return self._exec(state, self.key_grant.exec_command(state.env, INTERNAL_SFTP
                                                                 if name == "sftp" else name,
                                                                 self.log) or "")
        if name != "sftp":
            return False
        from pylibssh_server.demo.sftp import RootedFileSystem, SftpServer

        engine = SftpServer(RootedFileSystem(self.server.sftp_root),
                            handle_room=lambda: self._fds_available(1, "SFTP open"))
        handler = SftpHandler(state.channel, self._require_event(), engine,
                              lambda exc: logger.warning("client %s: sftp: %s", self.id, exc))
        self._add_handler(handler, state)
        return True
