# SPDX-License-Identifier: MIT
"""``Session``: one owned ``ssh_session`` (a server-side connection) and what hangs off it."""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pylibssh_server._binding import ServerTable, SessionTarget
from pylibssh_server._driver import Driver, Teardown
from pylibssh_server._ffi import ffi, lib
from pylibssh_server._handle import Handle
from pylibssh_server.enums import AuthMethod, SessionStatus
from pylibssh_server.errors import KeyExchangeError, check_ptr, check_rc, get_error

if TYPE_CHECKING:
    from pylibssh_server.channel import SshChannel

#: ``callback(session, message: SshMessage, userdata) -> bool | None``
#: (``pylibssh_server.hooks.MessageHook``; spelled out here, below the module that defines it).
_MessageHook = Callable[..., Any]

__all__ = ["Session"]

logger: logging.Logger = logging.getLogger("pylibssh_server")


class Session(Handle):
    """An owned ``ssh_session`` (``ssh_new`` ... ``ssh_disconnect``/``ssh_free``).

    Accepted sessions come from :meth:`Bind.accept` or :meth:`Bind.listen`.  A session and
    its channels are single-threaded in libssh, so every C call on them runs under this
    session's lock; the thread driving it (``handle_key_exchange``/``dopoll``) holds the
    lock during the call, and callbacks re-enter it on the same thread.  The rules, and the
    object that enforces them, are in ``pylibssh_server._driver``.

    Anything that would free memory libssh is using (``close()``, ``disconnect()``, a channel
    ``close()``) requested from inside a callback is queued and performed when the driving call
    returns.  ``close()`` from another thread wakes the driving thread and takes over.

    From inside a callback of *another* session (a relay), output and teardown calls on this
    session's objects never wait for its lock: if it is busy they are left to this session's
    driving thread.  Any other call that would have to wait for a session whose thread is
    itself waiting for the caller's raises ``RuntimeError`` instead of deadlocking.

    The session owns (and keeps alive until after ``ssh_free``): its ``ServerCallbacks``, the
    message and global-request callback targets, its ``SshChannel`` objects and its
    ``SessionEvent``.

    Args:
        ptr: an ``ssh_session`` to wrap; default a new one (``ssh_new``).
        owning: whether closing this object frees ``ptr``.
        wake_pipe: make the wake-up pipe (two fds) now, which ends another thread's wait
            inside ``dopoll`` or the key exchange at once.  False (what ``Bind.serve`` does:
            a reactor never waits inside libssh) makes it at the first such wait instead.
    """

    _kind = "Session"

    def __init__(self, ptr: Any = None, *, owning: bool = True, wake_pipe: bool = True) -> None:
        # The driver (and its wake-up pipe) first: at the open-files limit it raises EMFILE,
        # and nothing (no ssh_session, no half-set attribute for __del__/__repr__) exists yet.
        self._driver = Driver(type(self)._settle, wake_pipe, self)
        if ptr is None:
            ptr = lib.ssh_new()
            if ptr == ffi.NULL:
                self._driver.close_wake_pipe()
                check_ptr(ptr, "ssh_new")
        super().__init__(ptr, owning=owning, lock=self._driver.lock)
        self._server_callbacks: ServerTable | None = None
        # What the message and global-request trampolines get as userdata.
        self._target = SessionTarget(self, self._driver)
        self._target_handle = ffi.new_handle(self._target)
        self._callbacks_struct: Any = None
        #: True once an auth callback returned success (libssh has no public getter).
        self.authenticated: bool = False
        #: The user name of the last authentication attempt (or the authenticated user).
        self.user: str | None = None
        #: ``(host, port)`` of the client, set by ``Bind.accept``.
        self.peer: tuple[str, int] | None = None
        self.auth_attempts: int = 0

    def _settle(self, teardown: Teardown) -> None:
        """After the outermost driving call (lock held): send what the channels queued, then
        the teardown requested from a callback."""
        for channel in list(self._driver.channels):
            channel._flush()
        if self._ptr is None:
            return
        if teardown == Teardown.CLOSE:
            self._close_now()
        elif teardown == Teardown.DISCONNECT:
            self._disconnect_now()

    def wakeup(self) -> None:
        """Make a concurrent ``dopoll``/``handle_key_exchange`` return early (thread-safe)."""
        self._driver.wakeup()

    def interrupt(self) -> None:
        """Make a key exchange in progress (non-blocking mode) raise ``KeyExchangeError``,
        and a concurrent ``dopoll`` return (thread-safe)."""
        self._driver.interrupted = True
        self._driver.wakeup()

    # ---- options ------------------------------------------------------------------------
    def set_blocking(self, blocking: bool) -> None:
        """Switch blocking mode (``ssh_set_blocking``)."""
        with self._lock:
            lib.ssh_set_blocking(self._c, 1 if blocking else 0)
            self._driver.blocking = bool(blocking)

    @property
    def is_blocking(self) -> bool:
        """``ssh_is_blocking``."""
        with self._lock:
            return bool(lib.ssh_is_blocking(self._c))

    def set_timeout(self, seconds: float) -> None:
        """Bound blocking libssh calls (``SSH_OPTIONS_TIMEOUT``/``_TIMEOUT_USEC``)."""
        whole = int(seconds)
        with self._lock:
            check_rc(lib.ssh_options_set(self._c, lib.SSH_OPTIONS_TIMEOUT,
                                         ffi.new("long *", whole)),
                     self._c, "ssh_options_set(SSH_OPTIONS_TIMEOUT)")
            check_rc(lib.ssh_options_set(self._c, lib.SSH_OPTIONS_TIMEOUT_USEC,
                                         ffi.new("long *", int((seconds - whole) * 1e6))),
                     self._c, "ssh_options_set(SSH_OPTIONS_TIMEOUT_USEC)")

    def set_auth_methods(self, methods: AuthMethod | int) -> None:
        """Set the methods advertised to the client (``ssh_set_auth_methods``).

        libssh does not enforce this list: auth hooks must check the method themselves.
        """
        with self._lock:
            lib.ssh_set_auth_methods(self._c, int(methods))

    def send_issue_banner(self, text: str) -> None:
        """Send ``text`` as the pre-authentication banner (``ssh_send_issue_banner``:
        ``SSH_MSG_USERAUTH_BANNER``, which OpenSSH prints).  Send it after the client asked
        for the ``ssh-userauth`` service and before authentication succeeds (for example
        from the first auth hook)."""
        data = text.encode("utf-8", "surrogateescape")
        if b"\0" in data:
            raise ValueError("the banner cannot contain NUL characters")
        with self._lock:
            string = check_ptr(lib.ssh_string_from_char(data), "ssh_string_from_char")
            try:
                check_rc(lib.ssh_send_issue_banner(self._c, string), self._c,
                         "ssh_send_issue_banner")
            finally:
                lib.ssh_string_free(string)

    def set_disconnect_message(self, message: str) -> None:
        """Reason text sent with DISCONNECT (``ssh_session_set_disconnect_message``)."""
        with self._lock:
            lib.ssh_session_set_disconnect_message(self._c, message.encode())

    # ---- callbacks ----------------------------------------------------------------------
    def set_server_callbacks(self, callbacks: ServerTable) -> None:
        """Install ``callbacks``, a :class:`~pylibssh_server.ServerCallbacks`
        (``ssh_set_server_callbacks``); the session keeps them alive."""
        with self._lock:
            ptr = self._c
            struct = callbacks._attach(self, self._driver, self._target)
            check_rc(lib.ssh_set_server_callbacks(ptr, struct), ptr, "ssh_set_server_callbacks")
            self._server_callbacks = callbacks
            # Before libssh 0.12 two of the hooks are fed from the message callback.
            self._install_message_callback()

    def set_message_callback(self, callback: _MessageHook | None, userdata: Any = None) -> None:
        """Handle requests no server callback covers (``ssh_set_message_callback``).

        ``callback(session, message: SshMessage, userdata) -> bool``: return True once you
        replied; False/None lets libssh send its default (negative) reply.  The message is
        borrowed: it is freed by libssh when the callback returns.
        """
        with self._lock:
            self._target.message_hook = callback
            self._target.message_userdata = userdata
            self._install_message_callback()

    def _install_message_callback(self) -> None:
        """The C message callback on while a hook needs it (lock held)."""
        ptr = self._c
        if self._target.message_hook is None and not self._target.routed:
            lib.ssh_set_message_callback(ptr, ffi.NULL, ffi.NULL)
        else:
            lib.ssh_set_message_callback(ptr, lib._message_function_cb, self._target_handle)

    def set_global_request_callback(
        self, callback: _MessageHook | None, userdata: Any = None
    ) -> None:
        """Handle global requests (tcpip-forward, keepalive...) via ``ssh_set_callbacks``.

        ``callback(session, message, userdata) -> bool``: return True once you replied;
        otherwise the default reply is sent for you.
        """
        with self._lock:
            ptr = self._c
            self._target.global_hook = callback
            self._target.global_userdata = userdata
            if self._callbacks_struct is None:
                struct = ffi.new("struct ssh_callbacks_struct *")
                struct.size = ffi.sizeof("struct ssh_callbacks_struct")
                struct.userdata = self._target_handle
                struct.global_request_function = lib._global_request_function_cb
                check_rc(lib.ssh_set_callbacks(ptr, struct), ptr, "ssh_set_callbacks")
                self._callbacks_struct = struct

    # ---- key exchange -------------------------------------------------------------------
    def handle_key_exchange(self, timeout: float | None = 30.0) -> None:
        """Run the key exchange (``ssh_handle_key_exchange``) until it completes.

        In blocking mode the session timeout bounds the call (``timeout`` sets it).  In
        non-blocking mode each step is followed by a wait on the socket and the wake-up pipe,
        so ``close()`` from another thread interrupts it at once.

        Raises:
            KeyExchangeError: the client left, timed out or sent garbage.
            ValueError: the session is closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            blocking = bool(lib.ssh_is_blocking(self._c))
            if blocking:
                if timeout is not None:
                    self.set_timeout(timeout)
                ptr = self._c
                with self._driver.driving():
                    rc = lib.ssh_handle_key_exchange(ptr)
                    error = get_error(ptr) if rc != lib.SSH_OK else ""
        if not blocking:
            self._kex_nonblocking(deadline)
            return
        # libssh's text was read inside the call: a close deferred to its end may have freed
        # the session since.
        check_rc(rc, None, "ssh_handle_key_exchange", exc=KeyExchangeError,
                 message=f"ssh_handle_key_exchange failed (rc={rc}): {error}")

    def key_exchange_step(self) -> bool:
        """One step of the key exchange of a non-blocking session (``ssh_handle_key_exchange``
        returning ``SSH_AGAIN`` until it is done): what a reactor calls whenever
        :meth:`poll_set` reports the socket ready.

        Returns:
            True once the key exchange is complete, False while it waits for the client.

        Raises:
            KeyExchangeError: the client left or sent garbage, or ``interrupt()`` was called.
            ValueError: the session is closed or closing.
        """
        driver = self._driver
        if driver.close_requested:
            raise ValueError("Session is closed")
        if driver.interrupted:
            raise KeyExchangeError("key exchange interrupted", function="ssh_handle_key_exchange")
        with self._lock:
            ptr = self._c
            with driver.driving():
                rc = lib.ssh_handle_key_exchange(ptr)
                error = get_error(ptr) if rc == lib.SSH_ERROR else ""
        if rc == lib.SSH_OK:
            return True
        check_rc(rc, None, "ssh_handle_key_exchange", exc=KeyExchangeError, ok=(lib.SSH_AGAIN,),
                 message=f"ssh_handle_key_exchange failed (rc={rc}): {error}")
        return False

    def poll_set(self) -> dict[int, int]:
        """The fds a poller must watch for this session, with their events (``POLLIN``,
        ``POLLOUT``): the socket as libssh wants it now (``ssh_get_poll_flags``) and the
        wake-up pipe, if the session has one.  Once the session has a :class:`SessionEvent`, its
        ``SessionEvent.poll_set`` adds the event's extra fds.  Empty once closed."""
        with self._lock:
            ptr = self._ptr
            wake_r = self._driver.wake_r
            if ptr is None or self._driver.wake_closed:
                return {}
            fds = {wake_r: lib.POLLIN} if wake_r >= 0 else {}
            fd = lib.ssh_get_fd(ptr)
            if fd >= 0:
                flags = lib.ssh_get_poll_flags(ptr)
                if self._driver.event is None and not flags:
                    flags = lib.SSH_READ_PENDING  # before libssh's poll handle exists
                events = (lib.POLLIN if flags & lib.SSH_READ_PENDING else 0) | (
                    lib.POLLOUT if flags & lib.SSH_WRITE_PENDING else 0)
                if events:
                    fds[fd] = events
            return fds

    def _kex_nonblocking(self, deadline: float | None) -> None:
        wake_r = self._driver.wake_fd()  # the waits below must end on a wake-up
        for _ in range(1_000_000):
            if self.key_exchange_step():
                return
            # The rest are our own limits on the wait, not libssh failures: no rc to check.
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise KeyExchangeError("ssh_handle_key_exchange timed out",
                                       function="ssh_handle_key_exchange", code=lib.SSH_AGAIN)
            fds = self.poll_set()
            if not fds or self._driver.close_requested:
                raise ValueError("Session is closed")
            if not fds.keys() - {wake_r}:
                raise KeyExchangeError("ssh_handle_key_exchange: the socket is gone",
                                       function="ssh_handle_key_exchange", code=lib.SSH_AGAIN)
            poller = select.poll()
            for fd, events in fds.items():
                poller.register(fd, events)
            poller.poll(None if remaining is None else max(1, int(remaining * 1000)))
            self._driver.drain_wakeups()
        raise KeyExchangeError("ssh_handle_key_exchange: no progress",
                               function="ssh_handle_key_exchange", code=lib.SSH_AGAIN)

    # ---- state --------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        """True while open and libssh reports the socket connected (``ssh_is_connected``)."""
        with self._lock:
            if self._ptr is None or self._driver.close_requested:
                return False
            if lib.ssh_is_connected(self._ptr) != 1:
                return False
            return not lib.ssh_get_status(self._ptr) & (lib.SSH_CLOSED | lib.SSH_CLOSED_ERROR)

    @property
    def status(self) -> SessionStatus:
        """``ssh_get_status`` flags."""
        with self._lock:
            return SessionStatus(lib.ssh_get_status(self._c))

    def get_error(self) -> str:
        """libssh's last error message for this session (``ssh_get_error``)."""
        with self._lock:
            return get_error(self._c)

    @property
    def has_fatal_error(self) -> bool:
        """True once libssh flagged a fatal error (``ssh_get_error_code() == SSH_FATAL``),
        e.g. a peer that sent beyond its channel window (libssh >= 0.11 drops the data and
        keeps the socket open): the session should be ended."""
        with self._lock:
            return self._ptr is not None and lib.ssh_get_error_code(self._ptr) == lib.SSH_FATAL

    @property
    def fd(self) -> int:
        """The session's socket fd (``ssh_get_fd``); owned by the session."""
        with self._lock:
            return int(lib.ssh_get_fd(self._c))

    @property
    def client_banner(self) -> str | None:
        """The client's identification string (``ssh_get_clientbanner``)."""
        # Copied under the lock: the string is the session's, freed by a concurrent close().
        with self._lock:
            banner = lib.ssh_get_clientbanner(self._c)
            return None if banner == ffi.NULL else ffi.string(banner).decode("utf-8", "replace")

    @property
    def cipher(self) -> str | None:
        """The negotiated client-to-server cipher (``ssh_get_cipher_in``)."""
        with self._lock:
            name = lib.ssh_get_cipher_in(self._c)
            return None if name == ffi.NULL else ffi.string(name).decode()

    @property
    def kex_algorithm(self) -> str | None:
        """The negotiated key exchange algorithm (``ssh_get_kex_algo``)."""
        with self._lock:
            name = lib.ssh_get_kex_algo(self._c)
            return None if name == ffi.NULL else ffi.string(name).decode()

    @property
    def channels(self) -> list[SshChannel]:
        """The open channels of this session (a copy)."""
        return [c for c in self._driver.channels if not c.closed]

    def kbdint_answers(self) -> list[str]:
        """Answers of the last keyboard-interactive response
        (``ssh_userauth_kbdint_getnanswers``/``ssh_userauth_kbdint_getanswer``)."""
        with self._lock:
            ptr = self._c
            count = lib.ssh_userauth_kbdint_getnanswers(ptr)
            answers = []
            for i in range(max(0, count)):
                answer = lib.ssh_userauth_kbdint_getanswer(ptr, i)
                answers.append("" if answer == ffi.NULL else
                               ffi.string(answer).decode("utf-8", "surrogateescape"))
        return answers

    # ---- teardown -----------------------------------------------------------------------
    def disconnect(self) -> None:
        """Send DISCONNECT and close the socket (``ssh_disconnect``); the session stays
        allocated until ``close()``.  Inside a callback this is deferred."""
        if self._ptr is None:
            return
        driver = self._driver
        if driver.in_callback():
            driver.request_teardown(Teardown.DISCONNECT)
            return
        with driver.requesting_close():
            driver.call_or_post(self._disconnect_if_open)

    def _disconnect_if_open(self) -> None:
        if self._ptr is not None:
            self._disconnect_now()

    def _disconnect_now(self) -> None:
        self._driver.fds_closing()
        self._release_channels()
        if self._event is not None:
            self._event._detach()
        lib.ssh_disconnect(self._ptr)

    def close(self) -> None:
        """Disconnect and free the session (``ssh_disconnect`` + ``ssh_free``); idempotent.

        Channels are invalidated first (libssh frees them), the session is removed from its
        event before either is freed, and callback structs are released only after
        ``ssh_free``.  From inside a callback the close is deferred until the driving call
        returns; from another thread it interrupts the driving call.  From inside a callback
        of another session, while this one is busy, the close is left to this session's
        driving thread (done when its poll returns) rather than waited for.
        """
        if not self._owning:
            raise ValueError("cannot close a borrowed Session")
        if self._ptr is None:
            return
        driver = self._driver
        if driver.in_callback():
            driver.request_teardown(Teardown.CLOSE)
            return
        driver.mark_closing()
        driver.call_or_post(self._close_if_open)

    def _close_if_open(self) -> None:
        if self._ptr is not None:
            self._close_now()

    def _close_now(self) -> None:
        ptr = self._ptr
        self._driver.fds_closing()
        self._release_channels()
        if self._event is not None:
            self._event._detach()
        self._ptr = None
        lib.ssh_disconnect(ptr)
        lib.ssh_free(ptr)
        # Only now may libssh no longer call back into these.
        self._server_callbacks = None
        self._callbacks_struct = None
        self._target.clear()
        self._driver.mark_closed()

    def _release_channels(self) -> None:
        # ssh_disconnect/ssh_free free every channel: invalidate the Python objects first.
        for channel in reversed(self._driver.take_channels()):
            channel._session_gone()

    @property
    def _channels(self) -> Sequence[SshChannel]:
        return self._driver.channels

    @property
    def _event(self) -> Any:
        """The ``SessionEvent`` driving this session, or None (kept by the driver: the event
        module imports this one, not the other way round)."""
        return self._driver.event

    def __del__(self) -> None:
        if getattr(self, "_owning", False) and getattr(self, "_ptr", None) is not None:
            super().__del__()
        released = getattr(self, "_ptr", None) is None or not getattr(self, "_owning", True)
        driver = getattr(self, "_driver", None)
        if released and driver is not None:
            driver.close_wake_pipe()

    def __repr__(self) -> str:
        # getattr: safe on an object whose __init__ failed part-way (called from __del__).
        state = "closed" if getattr(self, "_ptr", None) is None else (
            "authenticated" if getattr(self, "authenticated", False) else "open")
        return (f"<Session {state} peer={getattr(self, 'peer', None)} "
                f"user={getattr(self, 'user', None)!r}>")
