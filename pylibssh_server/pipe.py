# SPDX-License-Identifier: MIT
"""``ChannelSink`` and ``ChannelPump``: a channel's data moved to and from fds in C.

A sink (``SshChannel.pipe_to``) is a libssh data callback written in C: each packet goes
straight to the fd.  A pump (``SshChannel.pipe_from``) is an ``ssh_event`` fd callback written
in C: it reads the fd into the channel while the peer's window allows.  Python runs only at the
edges (an fd that does not take everything, a full window, end of file, an error), from the
owner's ``service()`` call after each ``SessionEvent.dopoll``; the C code sets the event's
end-of-batch flag so that call comes at once.

Flow control is as strict as on the Python path: a sink takes what the fd accepts plus a bounded
buffer; the rest stays in libssh, whose window then stops growing, and is read back once the
buffer drains.  A pump never reads more than the window and stops while libssh's output buffer
holds more than a bound.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

from pylibssh_server._ffi import ffi, lib
from pylibssh_server.errors import check_rc

if TYPE_CHECKING:
    from pylibssh_server.channel import SshChannel

__all__ = ["ChannelPump", "ChannelSink"]

_BLOCKED = lib.PYLIBSSH_PIPE_BLOCKED
_BACKLOG = lib.PYLIBSSH_PIPE_BACKLOG
_ERROR = lib.PYLIBSSH_PIPE_ERROR
_EOF = lib.PYLIBSSH_PIPE_EOF
_STALLED = lib.PYLIBSSH_PIPE_STALLED
_OVERFLOW = lib.PYLIBSSH_PIPE_OVERFLOW
_PAUSED = lib.PYLIBSSH_PIPE_PAUSED
_DEAD = lib.PYLIBSSH_PIPE_DEAD

#: A sink buffers at most this much of what its fd did not take at once (more stays in libssh).
SINK_LIMIT = 1 << 20
#: libssh holding more than this for a piped channel means the peer ignores its window.
SINK_OVERFLOW = 8 << 20
#: A pump stops while libssh's session output buffer holds this much (see SshChannel.write).
PUMP_OUTPUT_LIMIT = 4 << 20


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class _FdPipe:
    """What a sink and a pump share: the fd (owned), the C struct, polling, close."""

    _c: Any

    def __init__(self, channel: SshChannel, fd: int, owned: bool) -> None:
        driver = channel._driver
        event = driver.event
        if event is None or event.closed or driver.blocking:
            raise ValueError("fd pipes need a non-blocking session driven by a SessionEvent "
                             "(session.set_blocking(False), then SessionEvent(session))")
        channel._c  # noqa: B018 - raises ValueError if closed
        self._channel = channel
        self._driver = driver
        self._event = event
        self._lock = driver.lock
        self._stop = driver.stop  # the C code sets it: kept alive with the struct
        self._fd = fd if owned else os.dup(fd)
        self._owned_by_caller = owned
        self._polled = False
        self._closed = False
        try:
            os.set_blocking(self._fd, False)
        except OSError:
            self._discard_fd()
            raise

    def _discard_fd(self) -> None:
        """Undo the constructor after a failure: a caller's fd stays the caller's."""
        if not self._owned_by_caller:
            _close_fd(self._fd)
        self._fd = -1
        self._closed = True

    @property
    def fd(self) -> int:
        """The fd this pipe owns (its own ``dup`` unless created with ``owned=True``); -1
        once closed."""
        return self._fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the channel or its session went)."""
        return self._closed

    @property
    def error(self) -> OSError | None:
        """The fd's error (a read or write failed), or None."""
        c = self._c
        if not c.flags & _ERROR:
            return None
        return OSError(c.err, os.strerror(c.err)) if c.err else OSError("channel write failed")

    @property
    def bytes(self) -> int:
        """Bytes moved so far (readable from any thread)."""
        return int(self._c.bytes)

    def _poll(self, events: int, callback: Any, want: bool) -> None:
        """Have the event poll the fd with the C ``callback``, or stop (lock held)."""
        if want == self._polled or self._fd < 0:
            return
        event = self._event
        if event.closed:
            self._polled = False
            return
        if want:
            event._add_native_fd(self._fd, events, callback, self._c)
        else:
            event.remove_fd(self._fd)
        self._polled = want

    def close(self) -> None:
        """Stop moving bytes and close the fd; idempotent, safe from any thread.

        Takes the session's lock (from another thread: after waking the driving thread), so
        the C code is never running meanwhile and never touches the fd afterwards.  Inside a
        callback the fd is closed when the driving call returns (after libssh stopped
        polling it).
        """
        if self._closed:
            return
        self._driver.call_or_post(self._close_locked)

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._c.flags |= _DEAD
        self._unhook()
        if self._polled:
            self._polled = False
            self._event.remove_fd(self._fd)
        fd, self._fd = self._fd, -1
        if self._driver.in_callback():
            # libssh may still poll it until the event's removal is applied on return.
            self._driver.defer(lambda: _close_fd(fd))
        else:
            _close_fd(fd)
        self._channel._forget_pipe(self)  # type: ignore[arg-type]

    def _unhook(self) -> None:
        """Stop the C code using the channel (lock held)."""

    def _session_gone(self) -> None:
        """The session frees the channel now (lock held, outside callbacks)."""
        self._c.flags |= _DEAD
        self._closed = True
        self._polled = False  # the event drops every fd itself
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _close_fd(fd)


class ChannelSink(_FdPipe):
    """A channel's incoming data written to an fd in C (see :meth:`SshChannel.pipe_to`).

    While attached, the channel's ``on_data`` hook is not called: every byte goes to the fd,
    in order.  What the fd does not take at once waits in a buffer of at most ``limit``
    bytes (the fd is then polled for POLLOUT); beyond that the data stays in libssh, whose
    window stops growing, and is read back by :meth:`service` once the buffer has room.
    After a write error the sink discards (as a closed pipe would) and :attr:`error` says why.
    """

    def __init__(self, channel: SshChannel, fd: int, *, owned: bool = False,
                 limit: int = SINK_LIMIT, overflow: int = SINK_OVERFLOW) -> None:
        with channel._driver.lock:
            super().__init__(channel, fd, owned)
            try:
                is_socket = stat.S_ISSOCK(os.fstat(self._fd).st_mode)
            except OSError:
                self._discard_fd()
                raise
            c = ffi.gc(ffi.new("struct pylibssh_sink *"), lib.pylibssh_sink_release)
            lib.pylibssh_sink_init(c, self._fd, 1 if is_socket else 0)
            c.limit = max(0, int(limit))
            c.overflow = max(0, min(int(overflow), 0xFFFFFFFF))
            c.stop = self._stop
            self._c = c
            self._attached: Any = channel._c
            rc = lib.pylibssh_sink_attach(c, self._attached)
            if rc != lib.SSH_OK:
                self._discard_fd()
                check_rc(rc, None, "ssh_add_channel_callbacks")
            channel._add_pipe(self)

    @property
    def buffered(self) -> int:
        """Bytes taken from the channel that the fd has not accepted yet."""
        return 0 if self._closed else int(self._c.len)

    @property
    def backlog(self) -> bool:
        """True while libssh holds channel data the sink had no room for."""
        return not self._closed and bool(self._c.flags & _BACKLOG)

    @property
    def overflowed(self) -> bool:
        """True once the peer sent more than ``overflow`` bytes beyond what was taken (it
        ignores its window): end the session."""
        return bool(self._c.flags & _OVERFLOW)

    def pause(self) -> None:
        """Take nothing more from the channel (it stays in libssh) until :meth:`resume`."""
        with self._lock:
            self._c.flags |= _PAUSED

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        with self._lock:
            self._c.flags &= ~_PAUSED

    def service(self) -> None:
        """After every ``dopoll`` (never inside a callback): poll the fd for POLLOUT while
        bytes wait for it, and read back what libssh holds once the buffer has room
        (``ssh_channel_poll`` + ``ssh_channel_read_nonblocking``: callbacks may run, and
        their exceptions are re-raised here)."""
        with self._lock:
            if self._closed:
                return
            c = self._c
            ptr = self._attached
            if c.flags & _BACKLOG and not c.flags & _PAUSED and c.len < c.limit and \
                    ptr is not None:
                with self._driver.driving():
                    lib.pylibssh_sink_drain(c, ptr)
                if self._closed:
                    return
            self._poll(lib.POLLOUT, lib.pylibssh_sink_writable,
                       bool(c.flags & _BLOCKED) and not c.flags & _ERROR)

    def shutdown_write(self) -> bool:
        """``shutdown(SHUT_WR)`` of a socket fd (its reader sees EOF; the fd stays open);
        False if the fd is not a socket or the call failed."""
        with self._lock:
            if self._closed:
                return False
            return bool(lib.pylibssh_sink_shutdown(self._c) == 0)

    def _unhook(self) -> None:
        ptr, self._attached = self._attached, None
        channel = self._channel
        if ptr is not None and channel._holds(ptr):
            if self._driver.in_callback():
                # Never pull a callback struct from under libssh's dispatcher; until then
                # the struct takes nothing (DEAD) and on_data (if any) gets the data.
                self._driver.defer(lambda: self._detach_if(ptr))
            else:
                lib.pylibssh_sink_detach(self._c, ptr)

    def _detach_if(self, ptr: Any) -> None:
        if self._channel._holds(ptr):
            lib.pylibssh_sink_detach(self._c, ptr)

    def _before_free(self, ptr: Any) -> None:
        """The channel is freed next (lock held, outside callbacks): detach now."""
        if self._attached is ptr:
            self._attached = None
            lib.pylibssh_sink_detach(self._c, ptr)
        self._close_locked()


class ChannelPump(_FdPipe):
    """An fd read into a channel in C while the peer's window allows (see
    :meth:`SshChannel.pipe_from`).

    The fd is polled for POLLIN; each callback reads at most the window and hands it all to
    ``ssh_channel_write``.  With the window full, or libssh's output buffer holding
    ``PUMP_OUTPUT_LIMIT`` bytes the socket has not taken, the pump stalls: :meth:`service`
    takes the fd out of the poll and puts it back once there is room.  At end of file or an
    error the pump stops reading (:attr:`ended`); the owner then sends EOF or closes.
    """

    def __init__(self, channel: SshChannel, fd: int, *, stderr: bool = False,
                 owned: bool = False) -> None:
        driver = channel._driver
        with driver.lock:
            super().__init__(channel, fd, owned)
            # Its read buffer is malloc'd at the first read and freed with the struct.
            c = ffi.gc(ffi.new("struct pylibssh_pump *"), lib.pylibssh_pump_release)
            c.fd = self._fd
            c.is_stderr = 1 if stderr else 0
            c.channel = channel._c
            c.unflushed = driver.out_counter
            c.out_limit = PUMP_OUTPUT_LIMIT
            c.stop = self._stop
            self._counter = driver.out_counter
            self._c = c
            channel._add_pipe(self)
            self._poll(lib.POLLIN, lib.pylibssh_pump_ready, True)

    @property
    def ended(self) -> bool:
        """True once the fd reached end of file or failed (nothing more will be sent)."""
        return bool(self._c.flags & (_EOF | _ERROR))

    @property
    def stalled(self) -> bool:
        """True while the peer's window (or the session's output) has no room."""
        return bool(self._c.flags & _STALLED)

    def pause(self) -> None:
        """Read nothing until :meth:`resume` (e.g. until a channel open is confirmed)."""
        with self._lock:
            self._c.flags |= _PAUSED
            self._poll(lib.POLLIN, lib.pylibssh_pump_ready, False)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        with self._lock:
            if self._closed:
                return
            self._c.flags &= ~_PAUSED
            self.service()

    def service(self) -> None:
        """After every ``dopoll``: stop polling a stalled, ended or paused fd, and poll it
        again once the window (and the session's output buffer) has room."""
        with self._lock:
            if self._closed:
                return
            c = self._c
            flags = c.flags
            if flags & _STALLED and lib.pylibssh_pump_unstall(c):
                flags = c.flags
            want = not flags & (_EOF | _ERROR | _PAUSED | _STALLED)
            self._poll(lib.POLLIN, lib.pylibssh_pump_ready, want)

    def _unhook(self) -> None:
        self._c.channel = ffi.NULL

    def _before_free(self, ptr: Any) -> None:
        self._close_locked()

    def _session_gone(self) -> None:
        self._c.channel = ffi.NULL
        super()._session_gone()
