# SPDX-License-Identifier: MIT
"""``SessionEvent``: one ``ssh_event`` driving exactly one session, plus extra fds."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pylibssh_server._ffi import ffi, lib
from pylibssh_server._handle import Handle
from pylibssh_server.errors import LibSSHError, check_ptr, check_rc

if TYPE_CHECKING:
    from pylibssh_server.session import Session

__all__ = ["POLLERR", "POLLHUP", "POLLIN", "POLLOUT", "SessionEvent"]

POLLIN = lib.POLLIN
POLLOUT = lib.POLLOUT
POLLERR = lib.POLLERR
POLLHUP = lib.POLLHUP

FdHandler = Callable[[int, int], Any]

_CONNECTED = lib.PYLIBSSH_SESSION_CONNECTED
_FATAL = lib.PYLIBSSH_SESSION_FATAL


class _FdOp:
    """A change to libssh's poll array, applied at once or when ``dopoll`` returns."""

    __slots__ = ("add", "events", "registration")

    def __init__(self, add: bool, registration: _FdRegistration, events: int) -> None:
        self.add = add
        self.registration = registration
        self.events = events


#: The empty fd maps of an event without extra fds (most sessions of an idle server): shared,
#: never written to (every write goes through _fd_map, which makes the event its own dict).
_NO_FDS: dict[int, _FdRegistration] = {}


def _fd_map(fds: dict[int, _FdRegistration]) -> dict[int, _FdRegistration]:
    """``fds`` if it is an event's own dict, else a new one to store in its place."""
    return {} if fds is _NO_FDS else fds


class _FdRegistration:
    """Keeps the handler and the ``new_handle`` userdata alive while the fd is in the event."""

    def __init__(self, event: SessionEvent, fd: int, handler: FdHandler | None,
                 native: tuple[Any, Any] | None = None, events: int = POLLIN) -> None:
        self.event = event
        self.fd = fd
        self.events = events
        self.handler = handler
        self.handle = ffi.new_handle(self)
        self.active = True
        # A C callback and its userdata (kept alive here) instead of the Python trampoline.
        self.callback, self.userdata = native or (lib._event_fd_cb, self.handle)

    def fire(self, fd: int, revents: int) -> None:
        """Run the handler (from the C trampoline), under the exception protocol."""
        if not self.active or self.handler is None:
            return
        self.event._driver.call("fd handler", None, self.handler, fd, revents)


class SessionEvent(Handle):
    """One ``ssh_event`` with one session in it (``ssh_event_new`` + ``ssh_event_add_session``).

    ``dopoll()`` waits for the session's socket and every fd added with :meth:`add_fd`, and
    runs their callbacks on the calling thread.  The session's wake-up pipe is in the event
    too, so ``session.close()`` or ``session.wakeup()`` from another thread ends a wait at
    once.  The event is owned by the session from construction: closing the session closes
    the event first (``ssh_event_remove_session`` before ``ssh_event_free``).

    Args:
        session: a session whose key exchange has started (libssh only has a poll context
            for it from the first ``ssh_handle_key_exchange`` call on).
    """

    _kind = "SessionEvent"
    #: ``dopoll`` handles up to this many rounds of already-ready events per call (more, by
    #: this many at a time for at most 5 ms, while the C fd pipes keep moving bytes).
    max_rounds = 64
    #: For ``dopoll(0)`` from a loop of your own: an fd that is readable whenever the loop has
    #: other work ready (your ``epoll``, holding this session's fds too).  A ``dopoll(0)``
    #: whose C fd pipes moved bytes then waits up to 1 ms for the stream's next bytes, ending
    #: as soon as this fd shows anything else, instead of returning to your loop at every
    #: pause of the stream.  -1 (the default): ``dopoll(0)`` never waits.  The reactor sets it.
    linger_fd = -1

    def __init__(self, session: Session) -> None:
        driver = session._driver
        with driver.lock:
            sptr = session._c
            if driver.event is not None:
                raise ValueError("this Session already has a SessionEvent")
            ptr = check_ptr(lib.ssh_event_new(), "ssh_event_new")
            super().__init__(ptr, lock=driver.lock)
            self._driver = driver
            self._session: Session | None = session
            self._fds = _NO_FDS  # what the caller asked for
            self._in_c = _NO_FDS  # what libssh holds
            self._ops: list[_FdOp] | None = None  # fd changes waiting for dopoll to return
            self._wake: _FdRegistration | None = None
            if driver.wake_r >= 0:
                try:
                    self._add_wake_fd(ptr, driver.wake_r)
                except LibSSHError:
                    lib.ssh_event_free(ptr)
                    self._ptr = None
                    raise
            rc = lib.ssh_event_add_session(ptr, sptr)
            if rc != lib.SSH_OK:
                if self._wake is not None:
                    lib.ssh_event_remove_fd(ptr, self._wake.fd)
                lib.ssh_event_free(ptr)
                self._ptr = None
                check_rc(rc, None, "ssh_event_add_session", message=(
                    "ssh_event_add_session failed: call session.handle_key_exchange() first "
                    "(libssh has no poll context for a session before its key exchange starts)"))
            driver.event = self

    @property
    def session(self) -> Session | None:
        """The session in this event, or None once closed."""
        return self._session

    def _add_wake_fd(self, ptr: Any, fd: int) -> None:
        wake = _FdRegistration(self, fd, self._woken)
        check_rc(lib.ssh_event_add_fd(ptr, fd, POLLIN, lib._event_fd_cb, wake.handle), None,
                 "ssh_event_add_fd(the wake-up pipe)")
        self._wake = wake

    def _woken(self, fd: int, revents: int) -> None:
        if self._session is None:
            return
        driver = self._driver
        driver.drain_wakeups()
        if driver.handover_wanted:
            # A thread closing the session or waiting for its lock: end the batch of rounds.
            driver.end_batch()

    def session_state(self) -> tuple[bool, bool]:
        """``(connected, fatal)`` of the session in one C call: ``Session.is_connected`` and
        ``Session.has_fatal_error`` together, for a loop that checks them after every poll.

        ``(False, False)`` once the event or its session is closed.
        """
        with self._lock:
            session = self._session
            if session is None or session.closed or self._driver.close_requested:
                return False, False
            state = lib.pylibssh_session_state(session._c)
        return bool(state & _CONNECTED), bool(state & _FATAL)

    @property
    def is_assigned(self) -> bool:
        """True while the event holds its session."""
        return self._session is not None and self._ptr is not None

    def add_fd(self, fd: int, handler: FdHandler, events: int = POLLIN) -> None:
        """Poll ``fd`` too (``ssh_event_add_fd``); ``handler(fd, revents)`` runs in ``dopoll``.

        The fd stays yours: remove it (:meth:`remove_fd`) before closing it.  Inside a
        callback the change takes effect when ``dopoll`` returns.
        """
        with self._lock:
            self._c  # noqa: B018 - raises ValueError if closed
            if fd in self._fds:
                raise ValueError(f"fd {fd} is already in this SessionEvent")
            registration = _FdRegistration(self, fd, handler, events=events)
            self._fds = fds = _fd_map(self._fds)
            fds[fd] = registration
            self._schedule(_FdOp(True, registration, events))

    def _add_native_fd(self, fd: int, events: int, callback: Any, userdata: Any) -> None:
        """Like :meth:`add_fd`, with a C ``ssh_event_callback`` (``callback(fd, revents,
        userdata)``) instead of a Python handler; ``userdata`` is kept alive until the fd
        is removed (see pipe.py)."""
        with self._lock:
            self._c  # noqa: B018 - raises ValueError if closed
            if fd in self._fds:
                raise ValueError(f"fd {fd} is already in this SessionEvent")
            registration = _FdRegistration(self, fd, None, (callback, userdata), events)
            self._fds = fds = _fd_map(self._fds)
            fds[fd] = registration
            self._schedule(_FdOp(True, registration, events))

    def remove_fd(self, fd: int) -> None:
        """Stop polling ``fd`` (``ssh_event_remove_fd``); the handler is not called again.

        Inside a callback the C removal happens when ``dopoll`` returns.
        """
        with self._lock:
            registration = self._fds.pop(fd, None)
            if registration is None:
                return
            registration.active = False
            watcher = self._driver.watcher
            if watcher is not None:
                # The caller closes the fd next: a reactor must stop polling it first.
                watcher.fd_removed(fd)
            self._schedule(_FdOp(False, registration, 0))

    def _schedule(self, op: _FdOp) -> None:
        if self._session is not None and self._driver.in_callback():
            # Changing libssh's poll array while dopoll walks it is unsafe: apply on return.
            if self._ops is None:
                self._ops = []
                self._driver.defer(self._apply_ops)
            self._ops.append(op)
            return
        self._apply(op)

    def _apply_ops(self) -> None:
        ops, self._ops = self._ops or (), None
        for op in ops:
            self._apply(op)

    def _apply(self, op: _FdOp) -> None:
        registration, events = op.registration, op.events
        ptr = self._ptr
        if ptr is None:
            return
        fd = registration.fd
        if not op.add:
            if self._in_c.get(fd) is registration:
                del self._in_c[fd]
                lib.ssh_event_remove_fd(ptr, fd)
            return
        old = self._in_c.pop(fd, None)
        if old is not None:
            lib.ssh_event_remove_fd(ptr, fd)
        if not registration.active:
            return
        rc = lib.ssh_event_add_fd(ptr, fd, events, registration.callback,
                                  registration.userdata)
        if rc != lib.SSH_OK:
            registration.active = False
            if self._fds.get(fd) is registration:
                del self._fds[fd]
            check_rc(rc, None, f"ssh_event_add_fd(fd {fd})")
        # The registration (and its userdata handle) lives as long as libssh has the fd.
        self._in_c = in_c = _fd_map(self._in_c)
        in_c[fd] = registration

    def poll_set(self) -> dict[int, int]:
        """What a poller must watch to drive this event from outside (``dopoll(0)`` when
        any is ready): the session's socket and wake-up pipe (``Session.poll_set``) and
        every extra fd, with their events.  Empty once closed."""
        with self._lock:
            session = self._session
            if session is None or self._ptr is None:
                return {}
            fds = session.poll_set()
            for fd, registration in self._fds.items():
                fds[fd] = registration.events
            return fds

    @property
    def fds(self) -> list[int]:
        """The extra fds currently polled (or about to be)."""
        return list(self._fds)

    def dopoll(self, timeout: float | None = None) -> int:
        """Wait for events and dispatch callbacks (``ssh_event_dopoll``).

        After the first round, further rounds run without waiting while events are ready
        (at most :attr:`max_rounds`; while C fd pipes stream, :attr:`max_rounds` more at a
        time for at most 5 ms after the first round), then deferred work runs once.

        Args:
            timeout: seconds to wait at most; None waits until something happens (a wake-up
                from another thread included).

        Returns:
            ``SSH_OK`` (0) if events were handled, ``SSH_AGAIN`` (-2) on timeout,
            ``SSH_ERROR`` (-1) if libssh reports an error (e.g. the socket closed).

        Raises:
            ValueError: the event or its session is closed.
            Exception: the first exception a callback raised during this poll.
        """
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        if self._session is None:
            raise ValueError("SessionEvent is closed")
        driver = self._driver
        if not driver.in_callback():
            if driver.closing:
                # Let the closing thread take the lock instead of racing it for another poll
                # (only for a close: a disconnect or an event close never sets "closed").
                driver.wait_closed(0.5)
            # Threads waiting for the session lock go first (they woke this poll to get it).
            driver.let_waiters_in(0.5)
        with self._lock:
            ptr = self._c
            if ms != 0 and self._wake is None and not driver.in_callback():
                # A session made without its pipe (a reactor's), now waited on: a wake-up
                # must end this wait.  (Not inside a callback: libssh walks the fd array.)
                wake_r = driver.wake_fd()
                if wake_r >= 0:
                    self._add_wake_fd(ptr, wake_r)
            with driver.driving():
                # libssh reads the socket 4 KiB per round: the C loop dispatches what is already
                # ready in the same call, so the Python work around each call is paid once per
                # batch.  What must end a batch early reaches it through the driver's stop
                # flag: a closing thread or one waiting for the lock writes to the wake-up pipe
                # (see _woken), and a callback's exception sets it (Driver.record).
                rc = lib.pylibssh_event_dopoll_batch(ptr, ms, self.max_rounds,
                                                     driver.begin_batch(), self.linger_fd)
        return int(rc)

    def _detach(self) -> None:
        """Remove every fd and the session, then free the event (session lock held)."""
        ptr, self._ptr = self._ptr, None
        session, self._session = self._session, None
        if ptr is None:
            return
        for fd in list(self._in_c):
            lib.ssh_event_remove_fd(ptr, fd)
        self._in_c = _NO_FDS
        for registration in self._fds.values():
            registration.active = False
        self._fds = _NO_FDS
        self._ops = None
        if session is not None:
            driver = self._driver
            wake, self._wake = self._wake, None
            if wake is not None:
                lib.ssh_event_remove_fd(ptr, wake.fd)
            if not session.closed:
                # ssh_event_free hands back only the first session's poll handle.
                lib.ssh_event_remove_session(ptr, session._c)
            driver.event = None
        lib.ssh_event_free(ptr)

    def close(self, unsafe: bool = False) -> None:
        """Remove the session and every fd, then free the event; idempotent.

        Inside a callback the close is deferred until ``dopoll`` returns.  ``unsafe`` exists
        for LibSSH.jl parity and changes nothing: removing the session first is always done
        while the session is alive, and skipped once it is gone.
        """
        if self._session is None or self._ptr is None:
            return
        driver = self._driver
        if driver.in_callback():
            driver.defer(self.close)
            return
        with driver.requesting_close():
            # From another session's callback this may be left to our driving thread.
            driver.call_or_post(self._detach)

    def __del__(self) -> None:
        # Owned by its session, which closes it.
        pass

