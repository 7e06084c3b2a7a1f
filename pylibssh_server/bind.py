# SPDX-License-Identifier: MIT
"""``Bind``: a listening SSH server endpoint (``ssh_bind``) and the ``listen`` loop."""

from __future__ import annotations

import errno
import inspect
import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pylibssh_server._ffi import ffi, lib, set_log_level
from pylibssh_server._handle import Handle
from pylibssh_server.enums import AuthMethod, LogLevel
from pylibssh_server.errors import LibSSHError, SshKeyError, check_ptr, check_rc, get_error
from pylibssh_server.hooks import MessageHook
from pylibssh_server.keys import PathLike, SshKey
from pylibssh_server.reactor import DONE, Job, Reactor, ServedSession, StepResult
from pylibssh_server.session import Session

__all__ = ["Bind", "listen"]

logger: logging.Logger = logging.getLogger("pylibssh_server")

SessionHandler = Callable[[Session], Any]
#: ``on_session(session)`` for :meth:`Bind.serve`: install callbacks and return at once;
#: None (a :class:`ServedSession` drives the session) or a :class:`Job` that drives it.
SessionStarter = Callable[[Session], "Job | None"]

#: errno values that mean "out of a resource" (fds, buffers, memory): the accept path drops the
#: one connection it was working on and keeps listening.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: How long the accept loop pauses after running out of a resource (the kernel keeps queueing
#: connections meanwhile), and how often such a burst is logged.
RESOURCE_BACKOFF = 0.05
RESOURCE_LOG_INTERVAL = 10.0


class _Throttled:
    """Logs a repeated condition once per interval with the count since the last line."""

    def __init__(self, message: str, interval: float = RESOURCE_LOG_INTERVAL) -> None:
        self.message = message
        self.interval = interval
        self._count = 0
        self._last = -interval

    def hit(self, detail: object) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            logger.warning("%s (%s; %d time(s) since the last report)", self.message, detail,
                           self._count)
            self._last = now
            self._count = 0


class Bind(Handle):
    """A listening server (``ssh_bind_new`` + options), bound and listening at construction.

    The listening socket is our own (a real backlog; libssh's ``ssh_bind_listen`` hard-codes
    10), and accepted sockets get ``TCP_NODELAY`` (libssh 0.10 leaves Nagle on, which costs
    ~40 ms per request/response) before ``ssh_bind_accept_fd`` hands them to libssh.

    Args:
        host: address to listen on (default loopback).
        port: TCP port; 0 picks a free one (read it back from :attr:`port`).
        hostkey: path of a private host key file (``SSH_BIND_OPTIONS_HOSTKEY``).
        key: an :class:`SshKey` host key; the bind imports its own copy
            (``SSH_BIND_OPTIONS_IMPORT_KEY`` with ``ssh_key_dup``, freed by ``ssh_bind_free``).
        auth_methods: methods advertised to every accepted session.
        log_verbosity: libssh log level (routed to the ``pylibssh_server.libssh`` logger).
        ciphers, kex, macs, hostkey_algorithms, pubkey_accepted_types: comma lists.
        banner: the suffix of the server's identification string (``SSH-2.0-<banner>``).
        backlog: the listen backlog.
        message_callback: installed on every accepted session
            (see :meth:`Session.set_message_callback`).

    Raises:
        ValueError: no host key, or an invalid option value.
        OSError: the address cannot be bound (e.g. the port is in use); the message says so.
        LibSSHError: libssh refused an option or key.
    """

    _kind = "Bind"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hostkey: PathLike | None = None,
        key: SshKey | None = None,
        auth_methods: AuthMethod | int | None = None,
        log_verbosity: LogLevel | int | None = None,
        ciphers: str | None = None,
        kex: str | None = None,
        macs: str | None = None,
        hostkey_algorithms: str | None = None,
        pubkey_accepted_types: str | None = None,
        banner: str | None = None,
        backlog: int = 128,
        message_callback: MessageHook | None = None,
    ) -> None:
        if hostkey is None and key is None:
            raise ValueError("Bind needs a host key: pass key=SshKey.generate() or "
                             "hostkey='/path/to/private_key'")
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        # Everything close() and __repr__ read exists before the C object does: a failure
        # here (EMFILE at the open-files limit) leaves nothing half-built behind.
        self.host = host
        self.auth_methods = auth_methods
        self.message_callback = message_callback
        self._sock: socket.socket | None = None
        self._closing = False
        self._reserve_fd = -1
        self._out_of_fds = _Throttled("Bind: out of resources: connection dropped")
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            ptr = check_ptr(lib.ssh_bind_new(), "ssh_bind_new")
        except LibSSHError:
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            raise
        super().__init__(ptr)
        # accept() calls in progress: close() keeps the listening socket and the wake-up pipe
        # open until they have left their poll (several threads may accept at once).
        self._accepting = 0
        self._accept_done = threading.Condition()
        self._threads: dict[threading.Thread, Session] = {}
        #: ``serve``: the sessions its jobs drive, the accepting job, the reactor's threads.
        self._served: dict[Job, Session] = {}
        self._acceptor: _Acceptor | None = None
        self._paused_until = 0.0
        try:
            if log_verbosity is not None:
                set_log_level(int(log_verbosity))
            # A system-wide libssh_server_config must not change this server.
            self._set_option(lib.SSH_BIND_OPTIONS_PROCESS_CONFIG, ffi.new("bool *", False),
                             "PROCESS_CONFIG")
            self._set_option(lib.SSH_BIND_OPTIONS_BINDADDR, host.encode(), "BINDADDR")
            if hostkey is not None:
                path = os.fspath(hostkey)
                if not os.path.isfile(path):
                    raise ValueError(f"host key file not found: {path}")
                # libssh loads HOSTKEY with a NULL passphrase, and OpenSSL then prompts on the
                # terminal for an encrypted PEM key (blocking).  Try it ourselves first: our
                # import never prompts, and its failure names the file.
                try:
                    SshKey.from_private_file(path).close()
                except SshKeyError as exc:  # check_rc's error, re-worded for the bind
                    raise SshKeyError(
                        f"cannot load host key {path}: not a private key, or encrypted (load "
                        "it with SshKey.from_private_file(path, passphrase) and pass key=)",
                        function=exc.function, code=exc.code) from None
                self._set_option(lib.SSH_BIND_OPTIONS_HOSTKEY, path.encode(), "HOSTKEY",
                                 hint=f"cannot load host key {path} (not a private key?)")
            if key is not None:
                with key._lock:  # another thread may close the key meanwhile
                    if not lib.ssh_key_is_private(key._c):
                        raise ValueError("the host key must be a private key")
                    dup = check_ptr(lib.ssh_key_dup(key._c), "ssh_key_dup", exc=SshKeyError)
                try:
                    self._set_option(lib.SSH_BIND_OPTIONS_IMPORT_KEY, dup, "IMPORT_KEY")
                except LibSSHError:
                    lib.ssh_key_free(dup)  # only adopted on success
                    raise
            for value, option, name in (
                (ciphers, lib.SSH_BIND_OPTIONS_CIPHERS_C_S, "CIPHERS_C_S"),
                (ciphers, lib.SSH_BIND_OPTIONS_CIPHERS_S_C, "CIPHERS_S_C"),
                (kex, lib.SSH_BIND_OPTIONS_KEY_EXCHANGE, "KEY_EXCHANGE"),
                (macs, lib.SSH_BIND_OPTIONS_HMAC_C_S, "HMAC_C_S"),
                (macs, lib.SSH_BIND_OPTIONS_HMAC_S_C, "HMAC_S_C"),
                (hostkey_algorithms, lib.SSH_BIND_OPTIONS_HOSTKEY_ALGORITHMS,
                 "HOSTKEY_ALGORITHMS"),
                (pubkey_accepted_types, lib.SSH_BIND_OPTIONS_PUBKEY_ACCEPTED_KEY_TYPES,
                 "PUBKEY_ACCEPTED_KEY_TYPES"),
                (banner, lib.SSH_BIND_OPTIONS_BANNER, "BANNER"),
            ):
                if value is not None:
                    self._set_option(option, value.encode(), name,
                                     hint=f"invalid {name.lower()} value {value!r}")
            self._sock = self._listen_socket(host, int(port), backlog)
            # One fd held back for the open-files limit: with it, a connection can still be
            # accepted and closed at once (instead of staying queued and waking every poll).
            self._reserve_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            self.port: int = self._sock.getsockname()[1]
            self._set_option(lib.SSH_BIND_OPTIONS_BINDPORT, ffi.new("int *", self.port),
                             "BINDPORT")
        except BaseException:
            self.close()
            raise

    def _set_option(self, option: int, value: Any, name: str, hint: str = "") -> None:
        """``ssh_bind_options_set``; a failure names the option and ``hint``."""
        check_rc(lib.ssh_bind_options_set(self._c, option, value), self._c,
                 "ssh_bind_options_set",
                 message=f"ssh_bind_options_set(SSH_BIND_OPTIONS_{name}) failed"
                         + (f": {hint}" if hint else ""))

    @staticmethod
    def _listen_socket(host: str, port: int, backlog: int) -> socket.socket:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise OSError(errno.EADDRNOTAVAIL, f"cannot resolve listen address {host!r}: "
                                               f"{exc.strerror}") from None
        family, socktype, proto, _, address = infos[0]
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"cannot listen on {host}:{port}: the port is already "
                                         "in use (stop the other server, or use port=0 for a "
                                         "free port)") from None
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.setblocking(False)
        return sock

    @property
    def is_open(self) -> bool:
        """True until ``close()``."""
        return self._ptr is not None and not self._closing

    @property
    def fd(self) -> int:
        """The listening socket's fd (ours, not libssh's)."""
        sock = self._sock
        fd = -1 if sock is None else sock.fileno()  # -1 once closed by another thread
        if fd < 0:
            raise ValueError("Bind is closed")
        return fd

    def get_error(self) -> str:
        """libssh's last error message for this bind (``ssh_get_error``)."""
        with self._lock:
            return get_error(self._c)

    def set_message_callback(self, callback: MessageHook | None) -> None:
        """Install ``callback`` as the message callback of every session accepted from now."""
        self.message_callback = callback

    # ---- accepting ----------------------------------------------------------------------
    def accept(self, timeout: float | None = None, *, wake_pipe: bool = True
               ) -> Session | None:
        """Wait for a client and return its new :class:`Session` (``ssh_bind_accept_fd``).

        Returns None on timeout or when the bind is closed meanwhile.  The caller owns the
        session (close it, or use it as a context manager).  ``wake_pipe=False``: for a
        session your own poller drives with timeout 0 (see ``Session``), two fds fewer.
        """
        if self._closing or self._sock is None:
            raise ValueError("Bind is closed")
        session = self._accept(timeout, wake_pipe=wake_pipe)
        if session is None:
            self._sit_out_pause()
        return session

    def _accept(self, timeout: float | None, *, wake_pipe: bool = True) -> Session | None:
        with self._accept_done:
            sock = self._sock
            if self._closing or sock is None:
                return None
            self._accepting += 1
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            poller.register(self._wake_r, select.POLLIN)
            ready = poller.poll(None if timeout is None else max(0, int(timeout * 1000)))
            if self._closing or not any(fd == sock.fileno() for fd, _ in ready):
                return None
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return None
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRNOS:
                    raise
                self._drop_queued(sock, exc)
                return None
        finally:
            with self._accept_done:
                self._accepting -= 1
                self._accept_done.notify_all()
        try:
            return self._adopt(conn, address, wake_pipe)
        except OSError as exc:
            conn.close()
            if exc.errno in RESOURCE_ERRNOS:
                self._resource_pause(exc)
            else:  # e.g. the client reset the connection already
                logger.debug("connection from %s dropped during set-up: %s", address, exc)
            return None

    def _drop_queued(self, sock: socket.socket, exc: OSError) -> None:
        """accept() failed for want of an fd: spend the reserve fd on taking the connection
        and closing it (the client sees a closed connection, not a hang), then pause."""
        with self._lock:
            if self._reserve_fd >= 0:
                os.close(self._reserve_fd)
                self._reserve_fd = -1
        try:
            conn, _ = sock.accept()
            conn.close()
        except OSError:
            pass
        with self._lock:
            if self._reserve_fd < 0 and not self._closing:
                try:
                    self._reserve_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    pass  # taken meanwhile: retried at the next shortage
        self._resource_pause(exc)

    def _resource_pause(self, exc: OSError) -> None:
        """Out of a resource: accepting pauses for RESOURCE_BACKOFF (each caller waits its
        own way: ``accept``/``listen`` sleep it out, ``serve``'s acceptor sets a timer)."""
        self._out_of_fds.hit(exc.strerror or exc)
        self._paused_until = time.monotonic() + RESOURCE_BACKOFF

    def _sit_out_pause(self) -> None:
        """Sleep until the pause ends (the wake-up pipe ends it at once on close())."""
        left = self._paused_until - time.monotonic()
        if left > 0:
            select.select([self._wake_r] if self._wake_r >= 0 else [], [], [], left)

    def _adopt(self, conn: socket.socket, address: Any, wake_pipe: bool) -> Session | None:
        # Non-blocking: libssh writes only after POLLOUT, but a blocking send() of a large
        # buffer to a peer that stopped reading would then hang the session's thread for
        # good (nothing could stop it).  Non-blocking, the send is partial and libssh waits
        # for the next POLLOUT.
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            session = Session(wake_pipe=wake_pipe)
        except LibSSHError as exc:  # ssh_new: out of memory
            raise OSError(errno.ENOMEM, str(exc)) from None
        fd = conn.detach()
        with self._lock:
            if self._ptr is None:
                os.close(fd)
                session.close()
                return None
            rc = lib.ssh_bind_accept_fd(self._ptr, session._c, fd)
            # Not via check_rc: a failed hand-over drops one connection (logged), not an error
            # of the caller's; the bind goes on accepting.
            error = get_error(self._ptr) if rc != lib.SSH_OK else ""
        if rc != lib.SSH_OK:
            # The fd is the session's only if libssh installed it before failing.
            if session.fd != fd:
                os.close(fd)
            session.close()
            logger.warning("ssh_bind_accept_fd failed for %s: %s", address, error)
            return None
        # One str for every client of an address (thousands of idle clients come from few).
        session.peer = (sys.intern(address[0]), address[1])
        if self.auth_methods is not None:
            session.set_auth_methods(self.auth_methods)
        if self.message_callback is not None:
            session.set_message_callback(self.message_callback)
        return session

    def listen(self, handler: SessionHandler, *, wait: bool = True,
               max_sessions: int | None = None,
               max_unauthenticated: int | None = None) -> None:
        """Accept clients until the bind is closed, running ``handler(session)`` for each in
        its own thread; the session is closed when the handler returns.

        ``close()`` from another thread ends the loop at once (no busy polling: the accept
        wait includes a wake-up pipe).  With ``wait`` the call then joins the handler
        threads, which should end once their sessions are closed or disconnected.

        Running out of a resource (file descriptors, memory, threads) drops the one
        connection being accepted, is logged once per burst, and pauses the loop briefly; it
        serves again as soon as the resource is back.

        Args:
            handler: called with each new :class:`Session`, in a thread of its own.
            wait: join the handler threads before returning.
            max_sessions: at most this many sessions at once; a client beyond it is closed
                right after ``accept`` (logged).
            max_unauthenticated: at most this many sessions not yet authenticated at once
                (OpenSSH's ``MaxStartups``): refused the same way, so that clients that never
                log in cannot use up ``max_sessions`` or the process's file descriptors.
        """
        refused = _Throttled("Bind.listen: connection refused")
        try:
            while not self._closing:
                self._sit_out_pause()  # after running out of a resource (a no-op otherwise)
                session = self._accept(None)  # None (not ValueError) once closed meanwhile
                if session is None:
                    continue
                reason = self._over_limit(max_sessions, max_unauthenticated)
                if reason:
                    refused.hit(f"{reason}; from {session.peer}")
                    session.close()
                    continue
                # Under the lock close() sets _closing with: once close() has returned, no
                # handler starts (a client accepted while it ran is dropped).
                with self._accept_done:
                    if self._closing:
                        session.close()
                        break
                    thread = threading.Thread(target=self._run_handler,
                                              args=(handler, session),
                                              name=f"pylibssh-session-{session.peer}",
                                              daemon=True)
                    self._threads[thread] = session
                    try:
                        thread.start()
                    except RuntimeError as exc:  # can't start new thread
                        del self._threads[thread]
                        session.close()
                        self._resource_pause(OSError(errno.EAGAIN, str(exc)))
        finally:
            if wait:
                for thread in list(self._threads):
                    thread.join()

    def _over_limit(self, max_sessions: int | None, max_unauthenticated: int | None) -> str:
        """Why a new session may not start ("" if it may)."""
        if max_sessions is None and max_unauthenticated is None:
            return ""
        sessions = [*self._threads.values(), *self._served.values()]
        if max_sessions is not None and len(sessions) >= max_sessions:
            return f"{len(sessions)} sessions (max_sessions={max_sessions})"
        if max_unauthenticated is not None:
            waiting = sum(1 for s in sessions if not s.authenticated)
            if waiting >= max_unauthenticated:
                return (f"{waiting} sessions not authenticated yet "
                        f"(max_unauthenticated={max_unauthenticated})")
        return ""

    @property
    def sessions(self) -> int:
        """The number of sessions whose ``listen`` handler is running or that ``serve``
        drives."""
        return len(self._threads) + len(self._served)

    def _acceptor_fds(self) -> dict[int, int]:
        """What ``serve``'s acceptor polls: the listening socket (unless paused after running
        out of fds) and the wake-up pipe that ``close()`` writes to."""
        with self._lock:
            sock, wake_r = self._sock, self._wake_r
            if self._closing or sock is None or wake_r < 0:
                return {}
            if time.monotonic() < self._paused_until:
                return {wake_r: lib.POLLIN}
            return {sock.fileno(): lib.POLLIN, wake_r: lib.POLLIN}

    def serve(self, on_session: SessionStarter, *, reactor: Reactor | None = None,
              wait: bool = True, max_sessions: int | None = None,
              max_unauthenticated: int | None = None,
              login_grace: float | None = 120.0) -> Reactor:
        """Accept clients until the bind is closed and drive every session on a
        :class:`Reactor`: many sessions per thread, instead of :meth:`listen`'s thread each.

        ``on_session(session)`` runs on a reactor thread for each new client: it installs
        callbacks (``set_server_callbacks``, ``set_message_callback``...) and returns at once.
        It returns None, and a :class:`ServedSession` then runs the key exchange (at most
        ``login_grace`` seconds) and polls the session until the client leaves; or it returns
        its own :class:`Job` for the session; or it closes the session (refused).  Every hook
        runs on a reactor thread: hooks must not block (see :meth:`Reactor.run_blocking`).
        The session is closed when its job ends.

        Args:
            on_session: see above.
            reactor: the reactor to use (yours: it stays open); default: a new one, closed
                once the bind is closed and its sessions ended.
            wait: block until the bind is closed and every session ended.
            max_sessions, max_unauthenticated: as for :meth:`listen`.
            login_grace: seconds a client has for the key exchange (ServedSession only).

        Returns:
            The reactor (useful with ``wait=False``).
        """
        own = reactor is None
        if reactor is None:
            reactor = Reactor()
        with self._accept_done:
            if self._closing or self._sock is None:
                if own:
                    reactor.close()
                raise ValueError("Bind is closed")
            if self._acceptor is not None:
                raise RuntimeError("this Bind is already serving")
            acceptor = _Acceptor(self, reactor, on_session, own, max_sessions,
                                 max_unauthenticated, login_grace)
            self._acceptor = acceptor
        reactor.add(acceptor)
        if wait:
            acceptor.sessions_ended.wait()  # set once accepting stopped and sessions ended
            if own:
                reactor.close()
        return reactor

    def _run_handler(self, handler: SessionHandler, session: Session) -> None:
        try:
            handler(session)
        except Exception:
            logger.exception("session handler failed for %s", session.peer)
        finally:
            session.close()
            self._threads.pop(threading.current_thread(), None)

    # ---- teardown -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting, close the listening socket and free the bind (``ssh_bind_free``).

        Idempotent and safe from any thread; a concurrent ``accept``/``listen`` returns.
        """
        if self._closing and self._ptr is None:
            return
        with self._accept_done:  # see listen()
            self._closing = True
        with self._lock:  # a concurrent close() may have closed the pipe (fd number reused)
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"\x01")
                except OSError:
                    pass
        acceptor = self._acceptor
        if acceptor is not None:
            acceptor.forget()  # before its fds close (their numbers may be reused at once)
        # Let concurrent accept() calls leave their poll before the fds go away.
        with self._accept_done:
            self._accept_done.wait_for(lambda: not self._accepting, 5)
        with self._lock:
            ptr, self._ptr = self._ptr, None
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if ptr is not None:
                lib.ssh_bind_free(ptr)
            for fd in (self._wake_r, self._wake_w, self._reserve_fd):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._wake_r = self._wake_w = self._reserve_fd = -1

    def __repr__(self) -> str:
        state = "open" if getattr(self, "_ptr", None) is not None and \
            not getattr(self, "_closing", True) else "closed"
        return f"<Bind {state} {getattr(self, 'host', None)}:{getattr(self, 'port', None)}>"


class _Acceptor(Job):
    """``Bind.serve``'s job: accepts clients on a reactor thread and adds a job for each."""

    #: Connections accepted per step at most (the others wait for the next round).
    BURST = 64

    def __init__(self, bind: Bind, reactor: Reactor, on_session: SessionStarter, own: bool,
                 max_sessions: int | None, max_unauthenticated: int | None,
                 login_grace: float | None) -> None:
        super().__init__()
        self.bind = bind
        self.reactor = reactor
        self.on_session = on_session
        self.own = own
        self.limits = (max_sessions, max_unauthenticated)
        self.login_grace = login_grace
        self.refused = _Throttled("Bind.serve: connection refused")
        self.finished = threading.Event()
        self.sessions_ended = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        # One bound method for every job (a new one per session is 64 bytes it holds).
        self._on_job_end = self._session_ended

    def stop(self) -> None:
        self._stopping = True  # the reactor is closing: stop accepting (the bind stays open)
        self.wake()

    def poll_set(self) -> dict[int, int]:
        return self.bind._acceptor_fds()

    def step(self) -> StepResult:
        bind = self.bind
        for _ in range(self.BURST):
            if not bind.is_open or self._stopping:
                return DONE
            left = bind._paused_until - time.monotonic()
            if left > 0:
                return left  # out of fds: see _resource_pause
            # No wake-up pipe: the reactor never waits inside libssh (two fds a session).
            session = bind._accept(0, wake_pipe=False)
            if session is None:
                if bind.is_open and bind._paused_until <= time.monotonic():
                    return None  # nothing more queued
                continue  # closed or paused meanwhile: answered above
            self._start(session)
        return 0.0

    def _start(self, session: Session) -> None:
        bind = self.bind
        reason = bind._over_limit(*self.limits)
        if reason:
            self.refused.hit(f"{reason}; from {session.peer}")
            session.close()
            return
        try:
            job = self.on_session(session)
            if inspect.isawaitable(job):
                self.reactor.start_later(job, session, self._adopt)
                return
        except Exception:
            logger.exception("Bind.serve: on_session failed for %s", session.peer)
            session.close()
            return
        self._adopt(session, job)

    def _adopt(self, session: Session, job: Job | None) -> None:
        """Drive ``session`` with ``job`` (None: a ServedSession), unless it was refused."""
        bind = self.bind
        if session.closed:
            return
        if job is None:
            job = ServedSession(session, login_grace=self.login_grace)
        with self._lock:
            bind._served[job] = session
        job.add_done_callback(self._on_job_end)
        try:
            self.reactor.add(job)
        except RuntimeError:  # the reactor is closing
            with self._lock:
                bind._served.pop(job, None)
            session.close()

    def _session_ended(self, job: Job) -> None:
        session = self.bind._served.get(job)
        if session is not None and not session.closed:
            session.close()
        with self._lock:
            self.bind._served.pop(job, None)
            last = not self.bind._served and self.finished.is_set()
        if last:
            self._all_ended()

    def _all_ended(self) -> None:
        self.sessions_ended.set()
        if self.own:
            self.reactor.retire()

    def finish(self) -> None:
        self.bind._acceptor = None
        with self._lock:
            self.finished.set()
            last = not self.bind._served
        if last:
            self._all_ended()

    def __repr__(self) -> str:
        return f"<Bind.serve acceptor {self.bind!r}>"


def listen(handler: SessionHandler, bind: Bind, *, wait: bool = True) -> None:
    """Module-level spelling of :meth:`Bind.listen` (as LibSSH.jl's ``listen(handler, bind)``)."""
    bind.listen(handler, wait=wait)
