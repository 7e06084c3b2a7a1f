# SPDX-License-Identifier: MIT
"""``DemoClient``: one DemoServer connection, driven on its own thread.

It owns the connection's poll loop (with its drain and teardown), the event log, the
routing of the session's hooks and messages, and the forwards: the login is its
:class:`~.authpolicy.AuthPolicy`, each session channel a :class:`~.channels.SessionChannel`
and each forward a :class:`~.channels.ForwardChannel`, all reading the server's
:class:`~.config.DemoConfig`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections import defaultdict
from typing import Any

from pylibssh_server import (
    DONE,
    AuthMethod,
    AuthStatus,
    ChannelRequestType,
    ChannelType,
    Flag,
    GlobalRequestType,
    Job,
    KeyExchangeError,
    RequestType,
    ServerCallbacks,
    Session,
    SessionEvent,
    SshChannel,
    SshKey,
    SshMessage,
    StepResult,
)
from pylibssh_server.demo.authpolicy import AuthPolicy
from pylibssh_server.demo.channels import MAX_UNREAD_INPUT, ForwardChannel, SessionChannel
from pylibssh_server.demo.config import DemoConfig
from pylibssh_server.demo.faults import OutputGate
from pylibssh_server.demo.handlers import (
    ForwardHandler,
    Handler,
    OpenedForwardHandler,
    connect_target,
)
from pylibssh_server.demo.keyrules import KeyGrant
from pylibssh_server.demo.tunnels import Listener

__all__ = ["DemoClient"]

logger: logging.Logger = logging.getLogger("pylibssh_server.demo")

#: When the server stops: how long accepted client data may take to reach its command or
#: target, and how long a command that was given input then gets to exit before SIGKILL.
STOP_DRAIN_SECONDS = 5.0
STOP_EXIT_GRACE = 2.0
#: File descriptors a forward holds.
FORWARD_FDS = 2
#: ``drop-after-bytes``: how long the allowed bytes may take to leave before the cut anyway.
CUT_FLUSH_SECONDS = 2.0


class DemoClient(Job):
    """One connection to a :class:`DemoServer`, in connection order: driven on a thread of
    its own (:meth:`run`) or as a reactor :class:`~pylibssh_server.reactor.Job`
    (:meth:`step`), with the same phases: the delay-banner fault, the key exchange, polls
    until the client leaves or the server stops, then the drain.

    Args:
        config: the server's settings.
        session: the accepted connection.
        client_id: its 1-based connection number.

    Attributes:
        id: 1-based connection number.
        peer: the client's ``(host, port)``.
        auth: the connection's login (:attr:`authenticated`, :attr:`user` and
            :attr:`key_grant` are its).
        draining: the server is stopping: client data libssh still holds is not taken.
    """

    peer: tuple[str, int] | None
    draining: bool

    # An idle server holds thousands of clients: no instance dict, and what an idle client
    # does not use (the logs without event_log, channels, forwards, listeners) is an empty
    # tuple or None until it is used.
    __slots__ = ("_agent", "_bytes_in_done", "_callback_log", "_cut", "_cut_deadline",
                 "_event", "_forwards", "_gate", "_handlers", "_incoming", "_listeners",
                 "_login_deadline", "_phase", "_sessions", "_stop", "_timeline", "_until",
                 "auth", "config", "draining", "error", "id", "peer", "session")

    def __init__(self, config: DemoConfig, session: Session, client_id: int) -> None:
        super().__init__()
        self.config: DemoConfig = config
        self.session: Session = session
        self.id: int = client_id
        self.peer = session.peer
        # Made here, not on first event: a reader may hold them before anything is logged.
        self._callback_log: dict[str, list[Any]] | None = \
            defaultdict(list) if config.event_log else None
        self._timeline: list[tuple[str, int, float]] | None = \
            [] if config.event_log else None
        self.error: BaseException | None = None
        self._stop = Flag()
        self.auth: AuthPolicy = AuthPolicy(config, session, self, self._stop,
                               self.peer[0] if self.peer else "")
        # Replaced whole, never changed in place: bytes_in reads them from other threads.
        self._sessions: tuple[SessionChannel, ...] = ()
        self._forwards: tuple[ForwardChannel, ...] = ()
        self._handlers: tuple[Handler, ...] = ()
        self._event: SessionEvent | None = None
        faults = config.faults
        self._gate = OutputGate(faults.values.get("throttle"),
                                faults.values.get("drop-after-bytes")) \
            if "throttle" in faults or "drop-after-bytes" in faults else None
        self._cut = False
        self._cut_deadline: float | None = None
        self.draining = False
        #: tcpip-forward listeners by (requested address, bound port); the agent's socket.
        self._listeners: dict[tuple[str, int], Listener] | None = None
        self._agent: Listener | None = None
        self._incoming: tuple[tuple[Listener, socket.socket, tuple[str, int]], ...] = ()
        self._bytes_in_done = 0
        self._phase = "start"
        self._until = 0.0  # the end of the current phase's wait
        self._login_deadline = 0.0

    @property
    def callback_log(self) -> dict[str, list[Any]]:
        """Event name -> list of event data, in order (names as in LibSSH.jl; empty without
        ``event_log``)."""
        log = self._callback_log
        return defaultdict(list) if log is None else log

    @property
    def timeline(self) -> list[tuple[str, int, float]]:
        """``(name, index into callback_log[name], time.time())`` entries."""
        timeline = self._timeline
        return [] if timeline is None else timeline

    @property
    def finished(self) -> Flag:
        """Set once the client is done (on either model): the job's own flag."""
        return self._finished

    @property
    def authenticated(self) -> bool:
        """Whether the client logged in."""
        return self.auth.authenticated

    @property
    def user(self) -> str | None:
        """The user name of the last auth attempt."""
        return self.auth.user

    @property
    def key_grant(self) -> KeyGrant:
        """What the key the client logged in with allows (keyrules: its options)."""
        return self.auth.key_grant

    @property
    def bytes_in(self) -> int:
        """Channel data taken from this client (command stdin, forwards, SFTP requests);
        every such byte is delivered, also when the server stops."""
        return self._bytes_in_done + sum(h.bytes_in for h in self._handlers)

    # ---- event log ----------------------------------------------------------------------
    def log(self, name: str, data: Any) -> None:
        """Record one event (and print it when the server is verbose)."""
        log, timeline = self._callback_log, self._timeline
        if log is not None and timeline is not None:
            entries = log[name]
            entries.append(data)
            timeline.append((name, len(entries) - 1, time.time()))
        if self.config.verbose:
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
        self.wake()

    def _set_up(self) -> float:
        """Install the hooks; the delay-banner fault's seconds (0 without)."""
        session = self.session
        session.set_server_callbacks(self._server_callbacks())
        session.set_message_callback(DemoClient._on_message, self)
        session.set_auth_methods(self.auth.allowed_methods())
        session.set_blocking(False)
        delay = self.config.faults.values.get("delay-banner")
        if delay:
            self.log("fault", ("delay-banner", delay))
        return float(delay or 0.0)

    def run(self) -> None:
        """Serve the connection until it ends or the server stops (the client thread)."""
        session = self.session
        config = self.config
        try:
            delay = self._set_up()
            if delay and self._stop.wait(delay):
                return
            self._login_deadline = time.monotonic() + config.login_grace_time
            try:
                session.handle_key_exchange(timeout=config.login_grace_time)
            except (KeyExchangeError, ValueError) as exc:
                logger.debug("client %s: key exchange ended: %s", self.id, exc)
                return
            self._event = event = SessionEvent(session)
            while not self._stop.is_set() and self._poll_once(event, self._poll_timeout()):
                pass
            if self._stop.is_set() and self._handlers:
                self._drain(event)
        except Exception as exc:
            self.error = exc
            logger.exception("client %s failed", self.id)
        finally:
            self._teardown()
            self.finished.set()

    def _poll_once(self, event: SessionEvent, timeout: float | None) -> bool:
        """One poll and what follows it; False once the connection is over."""
        session = self.session
        try:
            event.dopoll(timeout)
        except ValueError:
            return False  # session closed under us
        except Exception as exc:
            logger.error("client %s: %s", self.id, exc, exc_info=exc)
            self.error = exc
        self._service()
        connected, fatal = event.session_state()  # one C call for both checks
        if not connected:
            return False
        if fatal:
            logger.warning("client %s: %s: disconnecting", self.id, session.get_error())
            self.log("protocol_error", session.get_error())
            return False
        if not self.authenticated and time.monotonic() > self._login_deadline:
            logger.info("client %s: login grace time exceeded", self.id)
            return False
        if self.auth.out_of_attempts():
            logger.info("client %s: too many authentication attempts", self.id)
            return False
        return True

    def _drain(self, event: SessionEvent) -> None:
        """The server is stopping: deliver the client data already taken (bounded in time),
        close the inputs, and give commands a moment to finish with what they got."""
        self._begin_drain()
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
            if handler.bytes_in:
                handler.wait_exit(max(0.0, grace - time.monotonic()))

    def _begin_drain(self) -> None:
        self.draining = True
        for handler in self._handlers:
            handler.end_input()

    # ---- on a reactor (the same phases, one non-blocking step at a time) ------------------
    def poll_set(self) -> dict[int, int]:
        if self._event is not None:
            return self._event.poll_set()
        if self._phase == "kex":
            return self.session.poll_set()
        return {}  # the delay-banner fault: its timer, or stop()

    def step(self) -> StepResult:
        try:
            return self._step()
        except Exception as exc:
            self.error = exc
            logger.exception("client %s failed", self.id)
            return DONE

    def _step(self) -> StepResult:
        now = time.monotonic()
        if self._phase == "start":
            self.drives(self.session)
            delay = self._set_up()
            self._phase, self._until = "delay", now + delay
        if self._phase == "delay":
            if self._stop.is_set():
                return DONE
            if now < self._until:
                return self._until - now
            self._phase = "kex"
            self._login_deadline = now + self.config.login_grace_time
        if self._phase == "kex":
            return self._kex_step(now)
        event = self.require_event()
        if self._phase == "poll":
            if not self._stop.is_set() and self._poll_once(event, 0):
                return self._poll_timeout()
            if not (self._stop.is_set() and self._handlers):
                return DONE
            self._begin_drain()
            self._phase, self._until = "drain", now + STOP_DRAIN_SECONDS
        if self._phase == "drain":
            if any(h.input_pending() for h in self._handlers) and now < self._until:
                try:
                    event.dopoll(0)
                except ValueError:
                    return DONE  # session closed under us
                except Exception as exc:
                    logger.error("client %s: %s", self.id, exc, exc_info=exc)
                self._service()
                return 0.05
            self._phase, self._until = "exit-grace", now + STOP_EXIT_GRACE
        # Only commands that were given input may still be working on it (their pidfds are
        # in the event: an exit steps us at once).
        if now < self._until and any(h.bytes_in and not h.wait_exit(0)
                                     for h in self._handlers):
            return min(0.05, self._until - now)
        return DONE

    def _kex_step(self, now: float) -> StepResult:
        session = self.session
        try:
            if self._stop.is_set():
                return DONE
            if not session.key_exchange_step():
                return DONE if now >= self._login_deadline else self._login_deadline - now
        except (KeyExchangeError, ValueError) as exc:
            logger.debug("client %s: key exchange ended: %s", self.id, exc)
            return DONE
        self._event = self.new_event(session)
        self._phase = "poll"
        return 0.0

    def finish(self) -> None:
        try:
            self._teardown()
        finally:
            self.finished.set()

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
        if any(h.needs_timer for h in self._handlers):
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
        ended = []
        for handler in self._handlers:
            try:
                handler.service()
            except ValueError:
                handler.terminate()  # its channel is gone
            if handler.input_overflow() and not handler.finished:
                # Seen by a C sink (the Python path checks in data_room).
                handler.terminate()
                self.beyond_window(f"more than {MAX_UNREAD_INPUT} bytes")
            if handler.finished:
                ended.append(handler)
        if ended:
            self._handlers = tuple(h for h in self._handlers if h not in ended)
            self._bytes_in_done += sum(h.bytes_in for h in ended)
            self._forwards = tuple(f for f in self._forwards if not f.handler.finished)
        if any(state.channel.closed for state in self._sessions):
            self._sessions = tuple(s for s in self._sessions if not s.channel.closed)
        for state in self._sessions:
            channel = state.channel
            if channel.remote_closed and state.handler is None:
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
        limit = self.config.faults["drop-after-bytes"]
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
        listeners, self._listeners = self._listeners, None
        for listener in [*(listeners or {}).values(), *([self._agent] if self._agent else [])]:
            listener.close()
        self._agent = None
        incoming, self._incoming = self._incoming, ()
        for _, conn, _ in incoming:
            conn.close()
        handlers = self._handlers
        for handler in handlers:
            try:
                handler.terminate()
            except Exception:
                logger.exception("client %s: handler teardown", self.id)
        self._handlers = ()
        self._bytes_in_done += sum(h.bytes_in for h in handlers)
        self._sessions = ()
        self._forwards = ()

    # ---- the session's hooks and messages -----------------------------------------------
    # Static, with the client as their userdata: the same function objects for every
    # connection, where bound methods would cost each idle client one object per hook.
    @staticmethod
    def _on_auth_none(session: Session, user: str, client: DemoClient) -> AuthStatus:
        return client.auth.on_auth_none(session, user, client)

    @staticmethod
    def _on_auth_password(session: Session, user: str, password: str,
                          client: DemoClient) -> AuthStatus:
        return client.auth.on_auth_password(session, user, password, client)

    @staticmethod
    def _on_auth_pubkey(session: Session, user: str, key: SshKey, state: Any,
                        client: DemoClient) -> AuthStatus:
        return client.auth.on_auth_pubkey(session, user, key, state, client)

    @staticmethod
    def _on_service_request(session: Session, service: str, client: DemoClient) -> bool:
        client.log("service_request", service)
        return True

    @staticmethod
    def _on_message(session: Session, msg: SshMessage, client: DemoClient) -> bool:
        mtype, subtype = msg.type, msg.subtype
        client.log("message_request", (mtype, subtype))
        if mtype == RequestType.AUTH:
            return client.auth.refuse_unserved(msg)
        if mtype == RequestType.GLOBAL:
            return client._global_request(msg)
        if mtype == RequestType.CHANNEL and subtype == ChannelRequestType.X11:
            client.log("channel_x11_request", msg.x11_request)
            return False  # refused: X11 is not served
        return False

    # keyboard-interactive and direct-tcpip are ServerCallbacks hooks on every libssh (before
    # 0.12 the wrapper feeds them from the message path): they log the message_request the
    # message callback logs for every other request.
    def _server_callbacks(self) -> ServerCallbacks:
        return ServerCallbacks(
            on_auth_none=DemoClient._on_auth_none,
            on_auth_password=DemoClient._on_auth_password,
            on_auth_pubkey=DemoClient._on_auth_pubkey,
            on_service_request=DemoClient._on_service_request,
            on_channel_open_request_session=DemoClient._on_channel_open,
            on_auth_kbdint=DemoClient._on_auth_kbdint,
            on_channel_open_request_direct_tcpip=DemoClient._on_direct_tcpip,
            userdata=self,
        )

    @staticmethod
    def _on_auth_kbdint(session: Session, msg: SshMessage, client: DemoClient) -> AuthStatus:
        """``ServerCallbacks.on_auth_kbdint``: one keyboard-interactive message."""
        client.log("message_request", (int(RequestType.AUTH), int(AuthMethod.INTERACTIVE)))
        return client.auth.kbdint_step(msg)

    @staticmethod
    def _on_direct_tcpip(session: Session, host: str, port: int, orig_host: str,
                         orig_port: int, client: DemoClient) -> SshChannel | None:
        """``ServerCallbacks.on_channel_open_request_direct_tcpip``: a new channel forwarding
        to ``host:port``, or None to refuse."""
        client.log("message_request",
                   (int(RequestType.CHANNEL_OPEN), int(ChannelType.DIRECT_TCPIP)))
        sock = client._forward_target(host, port)
        if sock is None:
            return None
        channel = SshChannel(session)
        client._start_forward(channel, sock)
        return channel

    # ---- forwards -----------------------------------------------------------------------
    def _forward_target(self, host: str, port: int) -> socket.socket | None:
        """Log the request, check it, connect: None refuses (OPEN_FAILURE)."""
        self.log("channel_open_direct_tcpip", (host, port))
        if self._refused_by_fault("direct-tcpip"):
            return None
        if not self.auth.serving() or self._open_channels() >= self.config.max_channels \
                or not self.config.forward_allowed(host, port) \
                or not self.auth.key_grant.allows_open(host, port, self.log) \
                or not self.fds_available(FORWARD_FDS, f"forward to {host}:{port}"):
            return None
        # Connect first, then confirm: a refused target gets OPEN_FAILURE, never a dead channel.
        return connect_target(host, port)

    def _start_forward(self, channel: SshChannel, sock: socket.socket) -> None:
        self._attach_forward(ForwardHandler(channel, self.require_event(), sock,
                                            native=self.native()))

    def _attach_forward(self, handler: ForwardHandler) -> None:
        """Route the forward channel's data, EOF and CLOSE to ``handler`` and drive it."""
        forward = ForwardChannel(self, handler)
        forward.attach()
        self._forwards += (forward,)

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
            listener = (self._listeners or {}).pop((address, port), None)
            if listener is None:
                return False
            listener.close()
            msg.global_request_reply_success(0)
            return True
        return False

    def _listen_for_client(self, address: str, port: int) -> int | None:
        """Bind a listener for the client's ``tcpip-forward``: the bound port, or None."""
        config = self.config
        if not self.auth.serving() or not 0 <= port < 65536 or \
                not config.remote_forward_allowed(address, port) or \
                not self.auth.key_grant.allows_listen(address, port, self.log):
            return None
        listeners = self._listeners
        if listeners is None:
            listeners = self._listeners = {}
        if len(listeners) >= config.max_remote_forwards:
            logger.warning("client %s: tcpip-forward refused: %d listeners already", self.id,
                           len(listeners))
            return None
        if not self.fds_available(1, f"tcpip-forward {address}:{port}"):
            return None
        try:
            listener = Listener.tcp(address, port, self.require_event(), self._queue_incoming)
        except OSError as exc:
            logger.info("client %s: tcpip-forward %s:%d refused: %s", self.id, address, port,
                        exc)
            return None
        listeners[(address, listener.port)] = listener
        return listener.port

    def _queue_incoming(self, listener: Listener, conn: socket.socket,
                        peer: tuple[str, int]) -> None:
        self._incoming += ((listener, conn, peer),)

    def _open_incoming(self) -> None:
        """Open a channel to the client for each connection the listeners accepted (from the
        main loop: an open polls the session)."""
        incoming, self._incoming = self._incoming, ()
        for listener, conn, peer in incoming:
            is_agent = listener is self._agent
            if listener.closed:
                conn.close()  # cancelled, or the client is leaving
                continue
            if not is_agent:
                self.log("channel_open_forwarded_tcpip",
                         (listener.address, listener.port, peer[0], peer[1]))
            if self._open_channels() >= self.config.max_channels or \
                    not self.fds_available(FORWARD_FDS, "forwarded connection"):
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
                    channel, self.require_event(), conn, start,
                    lambda why: logger.info("client %s: the client refused a channel: %s",
                                            self.id, why), native=self.native())
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

    def agent_socket(self) -> str | None:
        """The path of the forwarded agent's socket (made on first use), or None."""
        if self._agent is None:
            try:
                self._agent = Listener.agent(self.require_event(), self._queue_incoming)
            except OSError as exc:
                logger.warning("client %s: no agent socket: %s", self.id, exc)
                return None
        return str(self._agent.path)

    def require_event(self) -> SessionEvent:
        """The client's event (it exists once the key exchange is done)."""
        assert self._event is not None
        return self._event

    # ---- channels -----------------------------------------------------------------------
    def fds_held(self) -> int:
        """File descriptors and SFTP handles this client's channels hold."""
        return sum(h.fds_held() for h in self._handlers if not h.finished)

    def fds_available(self, needed: int, what: str) -> bool:
        """Whether ``needed`` more fit in the client's budget (``max_fds_per_client``)."""
        budget = self.config.max_fds_per_client
        held = self.fds_held()
        if held + needed <= budget:
            return True
        logger.warning("client %s: %s refused: %d of its %d file descriptors and SFTP "
                       "handles in use", self.id, what, held, budget)
        self.log("resource_limit", f"{what}: {held} of {budget} fds and handles in use")
        return False

    def _open_channels(self) -> int:
        # Channels closed within the current poll are still listed until _service().
        return sum(1 for state in self._sessions if state.is_open) + \
            sum(1 for forward in self._forwards if forward.is_open)

    @staticmethod
    def _on_channel_open(session: Session, client: DemoClient) -> SshChannel | None:
        client.log("channel_open", True)
        if client._refused_by_fault("session"):
            return None
        if not client.auth.serving() or client._open_channels() >= client.config.max_channels:
            return None
        channel = SshChannel(session)
        state = SessionChannel(client, channel)
        channel.set_callbacks(state.callbacks())
        client._sessions += (state,)
        return channel

    def _refused_by_fault(self, channel_type: str) -> bool:
        if not self.config.faults.refuses(channel_type):
            return False
        self.log("fault", ("refuse-channel", channel_type))
        return True

    def native(self) -> bool | None:
        """The data path of a new handler: the Python one under the output faults (the C
        pumps do not pass the gate), else the default (``PYLIBSSH_DEMO_DATA_PATH``)."""
        return False if self._gate is not None else None

    def add_handler(self, handler: Handler, session_channel: bool) -> None:
        """Drive ``handler`` under the faults (``session_channel``: the handler of a session
        channel, whose exit status ``no-exit-status`` leaves out)."""
        handler.gate = self._gate
        if session_channel and "no-exit-status" in self.config.faults:
            handler.skip_exit_status = lambda: self.log("fault", ("no-exit-status", None))
        self._handlers += (handler,)

    def beyond_window(self, unread: str) -> None:
        """The client sends beyond its channel window: disconnect it."""
        logger.warning("client %s: sends beyond its channel window (%s unread): "
                       "disconnecting", self.id, unread)
        self.log("protocol_error", f"{unread} sent beyond the channel window")
        self.session.disconnect()  # deferred until the poll returns
