# SPDX-License-Identifier: MIT
"""``SshChannel``: an ``ssh_channel`` owned through its session, with ordered output."""

from __future__ import annotations

import enum
import functools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pylibssh_server._binding import ChannelTable, RemoteState
from pylibssh_server._ffi import ffi, lib
from pylibssh_server._handle import Handle
from pylibssh_server.errors import LibSSHError, check_ptr, check_rc, get_error

if TYPE_CHECKING:
    from pylibssh_server.pipe import ChannelPump, ChannelSink
    from pylibssh_server.session import Session

__all__ = ["SshChannel"]

_READ_CHUNK = 65536
#: Bytes handed to libssh's session output buffer while it has not drained yet.
_OUT_BUFFER_LIMIT = 4 << 20


F = TypeVar("F", bound=Callable[..., Any])


def _postable(check: Callable[[Any], Any] | None = None,
              returns: Callable[..., Any] | None = None) -> Callable[[F], F]:
    """For SshChannel's output and teardown calls: from inside another session's callback
    they do not wait for this channel's session (whose driving thread may be waiting for the
    caller's session): ``Driver.call_or_post`` posts them to its driving thread.  Before
    posting, ``check(channel)`` raises what the call would (ValueError once closed); a posted
    call returns ``returns(*args)``."""
    def decorate(method: F) -> F:
        @functools.wraps(method)
        def call(self: SshChannel, *args: Any, **kwargs: Any) -> Any:
            driver = self._driver
            if not driver.has_queued and driver.in_callback():
                # The hot path (an fd handler pumping output, a hook replying): this thread
                # is inside this session's libssh call, so it holds the lock and nothing was
                # queued before; call_or_post would only run the method.
                return method(self, *args, **kwargs)
            done: list[Any] = []
            if driver.call_or_post(
                    lambda: done.append(method(self, *args, **kwargs)),
                    None if check is None else lambda: check(self)):
                return done[0]
            return None if returns is None else returns(*args, **kwargs)
        return call  # type: ignore[return-value]
    return decorate


class _Phase(enum.Enum):
    """Where a channel is in its life, from this side (the peer's EOF and CLOSE are in its
    ``RemoteState``; an open this server started is ``_open_call``)."""

    OPEN = "open"
    #: ``send_eof()`` queued EOF: no more writes.
    EOF_QUEUED = "eof queued"
    #: ``close()``/``abort()`` queued CLOSE: every user call is refused.
    CLOSING = "closing"
    #: CLOSE sent; the channel waits for the peer's CLOSE to be freed.
    CLOSE_SENT = "close sent"
    #: Freed here, or by libssh with its session: the pointer is gone.
    FREED = "freed"


# ---- queued output: each item sends itself ------------------------------------------------
class _Data:
    """Channel data (stdout, or stderr as extended data) not yet taken by libssh."""

    __slots__ = ("stderr", "view")

    def __init__(self, view: memoryview, stderr: bool) -> None:
        self.view = view
        self.stderr = stderr

    def send(self, channel: SshChannel, ptr: Any) -> bool:
        """Send what the window (and the session's output budget) allows; True when all is
        gone."""
        driver = channel._driver
        sptr = channel.session._c
        write = lib.ssh_channel_write_stderr if self.stderr else lib.ssh_channel_write
        while self.view:
            value = self.view
            if driver.blocking:
                # libssh waits for window space itself (bounded by the session timeout).
                chunk = value
            else:
                # libssh queues every packet in its output buffer whether or not the socket
                # takes it: a peer with a huge window that stops reading would grow that
                # buffer without bound.  Hand it more only while what we gave it since it
                # was last empty stays under a limit.
                if lib.ssh_get_poll_flags(sptr) & lib.SSH_WRITE_PENDING:
                    if driver.out_unflushed >= _OUT_BUFFER_LIMIT:
                        return False
                else:
                    driver.out_unflushed = 0
                window = lib.ssh_channel_window_size(ptr)
                if window == 0:
                    return False
                chunk = value[: min(len(value), window, 1 << 20)]
            n = write(ptr, ffi.from_buffer(chunk), len(chunk))
            if n < 0:
                channel._write_failed(get_error(sptr) or f"rc={n}")
                return False
            channel._pending -= n
            driver.out_unflushed += n
            self.view = value[n:]
            if n == 0:
                return False
        return True


class _Eof:
    """EOF after the output queued before it (``ssh_channel_send_eof``)."""

    __slots__ = ()

    def send(self, channel: SshChannel, ptr: Any) -> bool:
        lib.ssh_channel_send_eof(ptr)
        return True


class _ExitStatus:
    """"exit-status" (``ssh_channel_request_send_exit_status``)."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status

    def send(self, channel: SshChannel, ptr: Any) -> bool:
        lib.ssh_channel_request_send_exit_status(ptr, self.status)
        return True


class _ExitSignal:
    """"exit-signal" (``ssh_channel_request_send_exit_signal``)."""

    __slots__ = ("core", "errmsg", "lang", "signal")

    def __init__(self, signal: str, core: bool, errmsg: str, lang: str) -> None:
        self.signal, self.core, self.errmsg, self.lang = signal, core, errmsg, lang

    def send(self, channel: SshChannel, ptr: Any) -> bool:
        lib.ssh_channel_request_send_exit_signal(
            ptr, self.signal.encode(), 1 if self.core else 0, self.errmsg.encode(),
            self.lang.encode())
        return True


class _Close:
    """CLOSE after everything before it; the channel is freed once the peer's CLOSE is in."""

    __slots__ = ()

    def send(self, channel: SshChannel, ptr: Any) -> bool:
        channel._send_close(ptr, self)
        return False


_OutputItem = Any  # one of the classes above


class SshChannel(Handle):
    """A channel of a :class:`Session` (``ssh_channel_new`` ... ``ssh_channel_free``).

    Output is ordered: ``write()``, ``send_eof()``, ``send_exit_status()``/``_signal()`` and
    ``close()`` take effect in the order they were called.  Data the peer's window cannot take
    yet stays queued in Python (``pending_bytes``) and is sent as the window opens, on every
    ``SessionEvent.dopoll``; control messages queued behind it wait for it, so no byte is lost
    and the exit status always follows the output.

    The channel shares its session's lock (libssh channels are not thread-safe apart from
    their session).  ``ssh_disconnect``/``ssh_free`` free every channel, so the session
    invalidates its ``SshChannel`` objects first; after that any use raises ``ValueError``.
    """

    _kind = "SshChannel"

    def __init__(self, session: Session, ptr: Any = None, *, owning: bool = True) -> None:
        driver = session._driver
        with driver.lock:
            if ptr is None:
                sptr = session._c
                ptr = check_ptr(lib.ssh_channel_new(sptr), "ssh_channel_new", sptr)
            super().__init__(ptr, owning=owning, lock=driver.lock)
            self._driver = driver
            self._session = session
            self._callbacks: ChannelTable | None = None
            self._callbacks_struct: Any = None
            self._queue: deque[_OutputItem] = deque()
            self._pending = 0
            self._phase = _Phase.OPEN
            self._remote = RemoteState()
            self._flushing = False  # re-entrancy guard of _flush
            self.write_error: str | None = None
            # A channel this server opens: the libssh call that completes the open, repeated
            # until the peer confirms or refuses (None: no open in progress).
            self._open_call: Callable[[Any], int] | None = None
            self.open_error: str | None = None
            self._pipes: list[ChannelSink | ChannelPump] = []
            driver.add_channel(self)

    # ---- helpers ------------------------------------------------------------------------
    @property
    def _closing(self) -> bool:
        """True once a close was queued (or the channel is gone): user calls are refused."""
        return self._phase in (_Phase.CLOSING, _Phase.CLOSE_SENT, _Phase.FREED)

    def _live(self) -> Any:
        """The pointer for a user call: refuses a closed or closing channel."""
        if self._closing or self._ptr is None:
            raise ValueError("SshChannel is closed")
        return self._ptr

    @property
    def _c(self) -> Any:
        return self._live()

    def _write_failed(self, error: str) -> None:
        self.write_error = error
        self._pending = 0
        self._queue.clear()

    @property
    def session(self) -> Session:
        """The session this channel belongs to."""
        return self._session

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called or the session freed the channel."""
        return self._closing or self._ptr is None

    # ---- callbacks ----------------------------------------------------------------------
    def set_callbacks(self, callbacks: ChannelTable) -> None:
        """Attach ``callbacks``, a :class:`~pylibssh_server.ChannelCallbacks`
        (``ssh_set_channel_callbacks``); the channel keeps them alive until it is freed (they
        are removed with ``ssh_remove_channel_callbacks`` first)."""
        with self._lock:
            ptr = self._live()
            if self._callbacks is not None:
                raise ValueError("this SshChannel already has callbacks")
            struct = callbacks._attach(self, self._session, self._driver, self._remote)
            check_rc(lib.ssh_set_channel_callbacks(ptr, struct), None,
                     "ssh_set_channel_callbacks")
            self._callbacks = callbacks
            self._callbacks_struct = struct
            self._sync_data_hook()

    # ---- fd pipes (pipe.py) -------------------------------------------------------------
    def pipe_to(self, fd: int, *, owned: bool = False, limit: int | None = None) -> ChannelSink:
        """Write the channel's incoming data to ``fd`` in C, without Python per packet.

        A libssh data callback written in C (``ssh_add_channel_callbacks``) writes each
        packet to the fd; ``on_data`` is not called while the sink is attached.  What the fd
        does not take waits in a buffer of at most ``limit`` bytes (1 MiB); beyond that the
        data stays in libssh and the window stops growing.  Call the sink's ``service()``
        after every ``SessionEvent.dopoll``.

        Args:
            fd: where the data goes (a pipe, socket, pty...); set non-blocking.
            owned: True hands ``fd`` itself to the sink, which closes it; False (default)
                makes the sink use (and close) its own ``dup``, so the caller may close
                ``fd`` whenever it likes.
            limit: the sink's buffer bound in bytes.

        Returns:
            The :class:`~pylibssh_server.pipe.ChannelSink`; ``close()`` it (from any thread)
            to stop.  Closing or freeing the channel closes it too.

        Raises:
            ValueError: the channel is closed, or its session is blocking or has no
                ``SessionEvent``.
        """
        from pylibssh_server.pipe import SINK_LIMIT, ChannelSink

        return ChannelSink(self, fd, owned=owned, limit=SINK_LIMIT if limit is None else limit)

    def pipe_from(self, fd: int, *, stderr: bool = False, owned: bool = False) -> ChannelPump:
        """Send what ``fd`` yields as channel data (stderr: extended data) in C.

        The fd is polled by the session's ``SessionEvent`` with a C callback that reads at
        most the peer's window and writes it with ``ssh_channel_write``; with the window
        full it stalls until the peer makes room.  Call the pump's ``service()`` after every
        ``SessionEvent.dopoll``; once its ``ended`` is true (end of file or an error) send
        EOF or close as the protocol needs.  ``send_eof()``, ``close()`` and ``abort()``
        close the channel's pumps first: nothing is sent after them.  Do not mix ``write()``
        with a pump on the same stream: their bytes could interleave.

        Args:
            fd: the source (a pipe, socket, pty...); set non-blocking.
            stderr: send as extended data (``ssh_channel_write_stderr``).
            owned: as for :meth:`pipe_to`.

        Returns:
            The :class:`~pylibssh_server.pipe.ChannelPump`; ``close()`` stops it (any
            thread).

        Raises:
            ValueError: as for :meth:`pipe_to`.
        """
        from pylibssh_server.pipe import ChannelPump

        return ChannelPump(self, fd, stderr=stderr, owned=owned)

    def _add_pipe(self, pipe: ChannelSink | ChannelPump) -> None:
        self._pipes.append(pipe)
        self._sync_data_hook()

    def _forget_pipe(self, pipe: ChannelSink | ChannelPump) -> None:
        if pipe in self._pipes:
            self._pipes.remove(pipe)
        self._sync_data_hook()

    def _sync_data_hook(self) -> None:
        """The Python data trampoline is off while a sink takes the data (lock held)."""
        from pylibssh_server.pipe import ChannelSink

        callbacks = self._callbacks
        if callbacks is None:
            return
        callbacks._route_data(not any(isinstance(p, ChannelSink) for p in self._pipes))

    def _close_pumps(self) -> None:
        from pylibssh_server.pipe import ChannelPump

        for pipe in list(self._pipes):
            if isinstance(pipe, ChannelPump):
                pipe._close_locked()

    def _close_pipes(self) -> None:
        for pipe in list(self._pipes):
            pipe._close_locked()

    # ---- output -------------------------------------------------------------------------
    @_postable(check=lambda channel: channel._live(),
               returns=lambda data, stderr=False: len(data))
    def write(self, data: bytes | bytearray | memoryview, stderr: bool = False) -> int:
        """Queue ``data`` (stdout, or stderr as extended data) and send what the window allows.

        Wraps ``ssh_channel_write``/``ssh_channel_write_stderr``, handling partial writes and a
        zero window: the rest is sent by later polls.

        Returns:
            The number of bytes accepted (always ``len(data)``).

        Raises:
            ValueError: the channel is closed or EOF was already sent.
        """
        with self._lock:
            self._live()
            if self._phase is _Phase.EOF_QUEUED:
                raise ValueError("cannot write to an SshChannel after send_eof()")
            if self.write_error is not None:
                # libssh's failure came at an earlier flush (its rc is gone): say so again,
                # naming the call, instead of queueing bytes that cannot be sent.
                raise LibSSHError(f"channel write failed earlier: {self.write_error}",
                                  function="ssh_channel_write")
            if data:
                self._queue.append(_Data(memoryview(bytes(data)), stderr))
                self._pending += len(data)
                self._flush()
            return len(data)

    @property
    def pending_bytes(self) -> int:
        """Bytes accepted by ``write()`` that libssh has not taken yet (window full)."""
        return self._pending

    @_postable(check=lambda channel: channel._live())
    def send_eof(self) -> None:
        """Send EOF after the queued output (``ssh_channel_send_eof``)."""
        with self._lock:
            self._live()
            self._close_pumps()  # nothing may follow the EOF
            if self._phase is _Phase.OPEN:
                self._phase = _Phase.EOF_QUEUED
                self._queue.append(_Eof())
                self._flush()

    @_postable(check=lambda channel: channel._live())
    def send_exit_status(self, status: int) -> None:
        """Send "exit-status" after the queued output
        (``ssh_channel_request_send_exit_status``)."""
        with self._lock:
            self._live()
            self._queue.append(_ExitStatus(int(status)))
            self._flush()

    @_postable(check=lambda channel: channel._live())
    def send_exit_signal(
        self, signal: str, core: bool = False, errmsg: str = "", lang: str = ""
    ) -> None:
        """Send "exit-signal" (name without ``SIG``) after the queued output
        (``ssh_channel_request_send_exit_signal``)."""
        if signal.upper().startswith("SIG"):
            signal = signal[3:]
        with self._lock:
            self._live()
            self._queue.append(_ExitSignal(signal, core, errmsg, lang))
            self._flush()

    def _flush(self) -> None:
        """Send queued items in order while libssh takes them (session lock held)."""
        ptr = self._ptr
        if ptr is None or self._flushing or self._open_call is not None:
            # Still opening: output waits for the peer's confirmation.
            return
        # ssh_channel_write flushes through a nested poll that can run our fd handlers, which
        # write to this channel again: they only queue, the outer loop sends in order.
        # Not only writes poll: send_eof/close flush through ssh_blocking_flush, which
        # dispatches incoming packets, so callbacks (another channel's close, say) can run
        # inside any of these calls and must see the session as busy.  Deferred work and
        # re-raising belong to the enclosing driving call (or the next one when write() is
        # called outside a poll).
        self._flushing = True
        try:
            with self._driver.marked():
                queue = self._queue
                while queue and queue[0].send(self, ptr):
                    queue.popleft()
        finally:
            self._flushing = False

    # ---- channels this server opens -----------------------------------------------------
    def open_forwarded_tcpip(self, address: str, port: int, originator: str,
                             originator_port: int) -> bool | None:
        """Open a ``forwarded-tcpip`` channel to the client, for a connection to a port it
        asked to have forwarded (``ssh_channel_open_reverse_forward``).

        See :meth:`poll_open` for the return value and how the open completes.
        """
        host, orig = address.encode(), originator.encode()
        return self._start_open(lambda ptr: lib.ssh_channel_open_reverse_forward(
            ptr, host, int(port), orig, int(originator_port)))

    def open_auth_agent(self) -> bool | None:
        """Open an ``auth-agent@openssh.com`` channel to the client's forwarded agent
        (``ssh_channel_open_auth_agent``); see :meth:`poll_open`."""
        return self._start_open(lambda ptr: lib.ssh_channel_open_auth_agent(ptr))

    def open_x11(self, originator: str, originator_port: int) -> bool | None:
        """Open an ``x11`` channel to the client (``ssh_channel_open_x11``); see
        :meth:`poll_open`."""
        orig = originator.encode()
        return self._start_open(lambda ptr: lib.ssh_channel_open_x11(ptr, orig,
                                                                     int(originator_port)))

    def _start_open(self, call: Callable[[Any], int]) -> bool | None:
        with self._lock:
            self._live()
            if self._open_call is not None or self.open_error is not None or \
                    lib.ssh_channel_is_open(self._ptr):
                raise ValueError("this SshChannel is already open or opening")
            self._open_call = call
            return self.poll_open()

    def poll_open(self) -> bool | None:
        """Advance an open started here: True once the client confirmed it (queued output
        is sent from now on), False if it refused (``open_error`` says why; the channel is
        freed), None while the confirmation has not arrived.  A channel that was not opened
        here is open (True); a closed one raises ``ValueError``.

        On a non-blocking session each call polls without waiting: call it after every
        ``SessionEvent.dopoll`` (never from inside a callback of this session).  On a
        blocking session the first call waits for the answer.  Output written meanwhile is
        held until the open is confirmed.
        """
        with self._lock:
            call = self._open_call
            if call is None:
                if self.open_error is not None:
                    return False
                if self._ptr is None:
                    raise ValueError("SshChannel is closed")
                return True
            ptr = self._ptr  # a channel closed while opening still learns the answer
            if ptr is None:
                raise ValueError("SshChannel is closed")
            sptr = self._session._c
            with self._driver.driving():
                rc = call(ptr)
                error = get_error(sptr) if rc == lib.SSH_ERROR else ""
            if rc == lib.SSH_AGAIN:
                return None
            self._open_call = None
            if rc == lib.SSH_OK:
                self._flush()
                return True
            self.open_error = error or f"rc={rc}"
            self._free_unopened()
            return False

    def _free_unopened(self) -> None:
        """Free a channel the peer refused.  No EOF or CLOSE may be sent: it has no remote
        channel number (libssh would address the peer's channel 0)."""
        ptr, self._ptr = self._ptr, None
        self._phase = _Phase.FREED
        self._queue.clear()
        self._pending = 0
        if ptr is None:
            return
        if self._driver.in_callback():
            # Not inside a dispatch: keep the pointer for the session's teardown.
            self._driver.defer(lambda: self._release_unopened(ptr))
        else:
            self._release_unopened(ptr)

    def _release_unopened(self, ptr: Any) -> None:
        for pipe in list(self._pipes):
            pipe._before_free(ptr)
        self._remove_callbacks(ptr)
        self._callbacks = None
        if not self._session.closed:
            lib.ssh_channel_free(ptr)  # frees without CLOSE: the channel is not OPEN
        self._forget()

    @property
    def opening(self) -> bool:
        """True while an open started here waits for the client's answer."""
        return self._open_call is not None

    # ---- input --------------------------------------------------------------------------
    def poll(self, stderr: bool = False) -> int:
        """Bytes libssh holds for reading (``ssh_channel_poll``), -1 at end of input.

        Polls the session (callbacks may run) only when nothing is buffered.
        """
        with self._lock:
            ptr = self._live()
            with self._driver.driving():
                n = lib.ssh_channel_poll(ptr, 1 if stderr else 0)
        if n == lib.SSH_EOF:
            return -1
        if n < 0:
            check_rc(n, None, "ssh_channel_poll")
        return int(n)

    def read_nonblocking(self, size: int = _READ_CHUNK, stderr: bool = False) -> bytes:
        """Read what is buffered, without waiting (``ssh_channel_read_nonblocking``).

        Returns ``b""`` when nothing is there (check ``is_eof`` for end of input).  This polls
        the session, so callbacks may run; exceptions from them are re-raised here.

        libssh 0.10 tops the peer's window up to 1.25 MiB after every read, whatever it
        still holds: reading less than :meth:`poll` reports lets a backlog grow by up to a
        window per read.  To drain a backlog without letting it grow, read all of it.
        """
        buf = ffi.new("char[]", size)
        with self._lock:
            ptr = self._live()
            with self._driver.driving():
                n = lib.ssh_channel_read_nonblocking(ptr, buf, size, 1 if stderr else 0)
        if n == lib.SSH_EOF:
            self._remote.eof = True
            return b""
        if n < 0:
            check_rc(n, None, "ssh_channel_read_nonblocking")
        return ffi.buffer(buf, n)[:]

    # ---- state --------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True if not closed here and libssh reports it open (``ssh_channel_is_open``)."""
        with self._lock:
            if self.closed:
                return False
            return bool(lib.ssh_channel_is_open(self._ptr))

    @property
    def is_eof(self) -> bool:
        """True once the peer sent EOF and the buffer is drained (``ssh_channel_is_eof``)."""
        with self._lock:
            if self._ptr is None:
                return True
            return self._remote.eof or bool(lib.ssh_channel_is_eof(self._ptr))

    @property
    def remote_closed(self) -> bool:
        """True once the peer sent CHANNEL_CLOSE."""
        return self._remote.closed

    @property
    def window_size(self) -> int:
        """The peer's remaining window in bytes (``ssh_channel_window_size``)."""
        with self._lock:
            return int(lib.ssh_channel_window_size(self._live()))

    # ---- teardown -----------------------------------------------------------------------
    @_postable(check=lambda channel: channel._closable())
    def close(self) -> None:
        """Close the channel after its queued output, then free it; idempotent.

        Sends CLOSE (``ssh_channel_close``) once the queue is drained, then frees the channel
        (``ssh_remove_channel_callbacks`` first, then ``ssh_channel_free``).  Inside a callback
        the free is deferred until the driving call returns.  Further use raises
        ``ValueError``.
        """
        self._closable()
        with self._lock:
            if self._closing or self._ptr is None:
                return
            self._close_pipes()  # no fd is written or read for a closing channel
            self._phase = _Phase.CLOSING
            self._queue.append(_Close())
            if self._driver.in_callback():
                # Freeing now would pull the callback list from under libssh's dispatcher.
                return
            self._flush()

    def _closable(self) -> None:
        if not self._owning:
            raise ValueError("cannot close a borrowed SshChannel")

    @_postable()
    def abort(self) -> None:
        """Drop queued output and close now (deferred inside a callback)."""
        with self._lock:
            if self._ptr is None:
                return
            self._close_pipes()
            self._queue.clear()
            self._pending = 0
            if self._phase is not _Phase.CLOSE_SENT:
                self._phase = _Phase.CLOSING
            self._queue.append(_Close())
            if not self._driver.in_callback():
                self._flush()

    def _free_now(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is None:
            return
        self._phase = _Phase.FREED
        for pipe in list(self._pipes):
            pipe._before_free(ptr)
        self._remove_callbacks(ptr)
        # Both calls flush, and so may dispatch other channels' callbacks.
        with self._driver.marked():
            lib.ssh_channel_close(ptr)
            lib.ssh_channel_free(ptr)
        self._forget()
        # libssh 0.10 keeps a freed channel (without our callbacks) until the peer's CLOSE;
        # the struct itself was unlinked above, so it can go.
        self._callbacks = None

    def _send_close(self, ptr: Any, item: _Close) -> None:
        """CLOSE (once), then free the channel or wait for the peer's CLOSE (lock held)."""
        self._queue.clear()
        if self._phase is not _Phase.CLOSE_SENT:
            self._phase = _Phase.CLOSE_SENT
            lib.ssh_channel_close(ptr)
        # Keep the callbacks until the peer's CLOSE arrives (on_close still fires); then
        # libssh frees the channel at once.  The session frees stragglers.
        if self._remote.closed or self._callbacks is None:
            self._free_now()
        else:
            self._queue.append(item)

    def _remove_callbacks(self, ptr: Any) -> None:
        """Unlink our callback struct before the channel is freed (lock held)."""
        if self._callbacks is not None:
            lib.ssh_remove_channel_callbacks(ptr, self._callbacks_struct)

    def _forget(self) -> None:
        self._driver.forget_channel(self)

    def _session_gone(self) -> None:
        """The session is about to free every channel: forget the pointer."""
        self._ptr = None
        self._phase = _Phase.FREED
        self._queue.clear()
        self._pending = 0
        for pipe in self._pipes:
            pipe._session_gone()
        self._pipes.clear()

    def __del__(self) -> None:
        # Channels belong to their session, which frees them; no ResourceWarning here.
        pass

    def __repr__(self) -> str:
        state = "closed" if getattr(self, "_ptr", None) is None else "open"
        return f"<SshChannel {state} pending={getattr(self, '_pending', None)}>"
