# SPDX-License-Identifier: MIT
"""What the DemoServer does on each channel: exec, direct-tcpip forwarding and SFTP.

Every handler has the interface :class:`Handler` states (the client and the channel objects
of :mod:`~pylibssh_server.demo.channels` use nothing else) and, on a session channel, one
end: :meth:`ChannelHandler.exit` (exit-status or exit-signal, EOF, CLOSE, once).

Each handler is driven by its client's ``SessionEvent``: child pipes and forwarded sockets are
polled together with the SSH socket (no thread per stream), and callbacks only move bytes
between bounded buffers.  Flow control in both directions:

- towards the client, a source fd is taken out of the poll while the channel has more than
  ``HIGH_WATER`` bytes queued (the peer's window is full), and put back below ``LOW_WATER``;
- from the client, a handler consumes at most its free buffer space; what it leaves stays in
  libssh, whose window then stops growing, and is read back with ``read_nonblocking`` once the
  buffer drains.

Commands (pipes and ptys), direct-tcpip, reverse and agent forwards move their bytes in C by
default (``SshChannel.pipe_to``/``pipe_from``: the same bounds, no Python per packet);
``native=False`` on a handler, or ``PYLIBSSH_DEMO_DATA_PATH=python`` for every channel, selects
the Python path (``on_data`` and Python fd handlers) described above.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pylibssh_server import POLLIN, POLLOUT, SessionEvent, SshChannel
from pylibssh_server.demo.commands import CommandTable, Process, Reply
from pylibssh_server.demo.faults import OutputGate

if TYPE_CHECKING:
    from pylibssh_server.demo.sftp import SftpServer
    from pylibssh_server.pipe import ChannelPump, ChannelSink

HIGH_WATER = 1 << 20
LOW_WATER = 256 << 10
INPUT_LIMIT = 1 << 20
READ_SIZE = 64 << 10
#: A child's output pipe is enlarged to this, and read this much at a time: a fast producer
#: then costs one Python round trip (read, channel write) per 256 KiB instead of per 64 KiB.
PUMP_PIPE_SIZE = 256 << 10
#: Python names F_SETPIPE_SZ from 3.10 on; Linux has had it (1031) since 2.6.35.
F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)
#: ``PYLIBSSH_DEMO_DATA_PATH=python``: every channel takes the Python data path.
DATA_PATH_ENV = "PYLIBSSH_DEMO_DATA_PATH"


def native_data_path(native: bool | None = None) -> bool:
    """Whether a new channel's bytes move in C: ``native`` if given, else True unless
    ``PYLIBSSH_DEMO_DATA_PATH=python``."""
    if native is not None:
        return native
    return os.environ.get(DATA_PATH_ENV, "c").strip().lower() != "python"

# Signals named in "exit-signal" as RFC 4254 spells them (no SIG prefix).
_SIGNAL_NAMES: dict[int, str] = {
    signal.SIGABRT: "ABRT", signal.SIGALRM: "ALRM", signal.SIGFPE: "FPE", signal.SIGHUP: "HUP",
    signal.SIGILL: "ILL", signal.SIGINT: "INT", signal.SIGKILL: "KILL", signal.SIGPIPE: "PIPE",
    signal.SIGQUIT: "QUIT", signal.SIGSEGV: "SEGV", signal.SIGTERM: "TERM",
    signal.SIGUSR1: "USR1", signal.SIGUSR2: "USR2",
}


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


class Handler(Protocol):
    """What one channel is doing, as its client and its channel object drive it.

    ``service()`` runs after every poll; the ``on_*`` methods and ``data_room`` are the
    channel's data hooks; ``terminate()`` releases everything at once.  Requests a handler
    cannot serve answer False (``signal``, ``resize``) instead of being told apart by type.
    """

    channel: SshChannel
    backlogged: bool
    finished: bool
    bytes_in: int
    deadline: float | None
    gate: OutputGate | None
    skip_exit_status: Callable[[], None] | None

    @property
    def needs_timer(self) -> bool:
        """True while the handler must be serviced on a short timer (no fd wakes it)."""
        ...

    def data_room(self, available: int) -> int: ...
    def on_data(self, data: bytes) -> int: ...
    def on_eof(self) -> None: ...
    def on_close(self) -> None: ...
    def input_room(self) -> int: ...
    def service(self) -> None: ...
    def end_input(self) -> None: ...
    def input_pending(self) -> bool: ...
    def input_overflow(self) -> bool: ...
    def terminate(self) -> None: ...
    def fds_held(self) -> int: ...
    def signal(self, name: str) -> bool: ...
    def resize(self, terminal: Terminal) -> bool: ...
    def wait_exit(self, timeout: float) -> bool: ...


class ChannelHandler:
    """Base of every :class:`Handler`: the defaults, and the one exit sequence."""

    backlogged: bool
    finished: bool

    def __init__(self, channel: SshChannel, event: SessionEvent) -> None:
        self.channel = channel
        self.event = event
        self.backlogged = False  # libssh holds client data we did not take yet
        self.finished = False
        self.bytes_in = 0  # client bytes taken (each is delivered unless the reader is gone)
        #: ``time.monotonic()`` at which ``service()`` has timed work to do (None: none).
        self.deadline: float | None = None
        #: Faults of the client (``throttle``, ``drop-after-bytes``; ``no-exit-status``
        #: calls ``skip_exit_status`` instead of sending the status): set by the client.
        self.gate: OutputGate | None = None
        self.skip_exit_status: Callable[[], None] | None = None

    def send(self, data: bytes, stderr: bool = False) -> None:
        """Write channel data to the client, through the client's output gate if any."""
        if self.gate is not None:
            data = data[:self.gate.admit(len(data))]
            if not data:
                return
        self.channel.write(data, stderr=stderr)

    def exit(self, status: int | None, signal_name: str | None = None) -> None:
        """The end of a session channel's handler, once: exit-status (or exit-signal with
        ``signal_name``), EOF and CLOSE, unless the channel is closed already."""
        if self.finished:
            return
        if not self.channel.closed:
            if self.skip_exit_status is not None:
                self.skip_exit_status()
            elif signal_name is not None:
                self.channel.send_exit_signal(signal_name, core=False, errmsg="", lang="")
            elif status is not None:
                self.channel.send_exit_status(status)
            self.channel.send_eof()
            self.channel.close()
        self.finished = True

    def input_room(self) -> int:
        """How many client bytes the handler can take now."""
        return INPUT_LIMIT

    def data_room(self, available: int) -> int:
        """``ChannelCallbacks.data_room``: take what fits, remember that libssh holds more."""
        room = self.input_room()
        if room < available:
            self.backlogged = True
        return room

    def on_data(self, data: bytes) -> int:
        """Take client data; return how much was consumed."""
        return len(data)

    def on_eof(self) -> None:
        """The client sent EOF."""

    def on_close(self) -> None:
        """The client closed the channel: stop everything now."""
        self.terminate()

    def service(self) -> None:
        """Resume paused work after a poll (drain input libssh still holds, flow control)."""
        if self.backlogged and not self.channel.closed:
            room = self.input_room()
            if room > 0:
                self.backlogged = False
                # All of it, even beyond room (at most one window): see read_nonblocking.
                held = self.channel.poll()
                data = self.channel.read_nonblocking(max(held, min(room, READ_SIZE)))
                if data:
                    self.take_drained(data)
                    self.backlogged = True  # maybe more behind it

    def take_drained(self, data: bytes) -> None:
        """Take data already read out of libssh, all of it: it cannot be put back (the read
        polls the session, so a data callback may have used the room in the meantime)."""
        self.on_data(data)

    def end_input(self) -> None:
        """The server is stopping: take no more client data, deliver what was taken, then
        end the input (EOF to the command, half-close to the target)."""
        self.backlogged = False

    def input_pending(self) -> bool:
        """True while client data taken earlier is still on its way out."""
        return False

    def input_overflow(self) -> bool:
        """True once the client sent far beyond its window (seen by a C sink)."""
        return False

    def terminate(self) -> None:
        """Release every resource (processes, fds) at once; idempotent."""
        self.finished = True

    def fds_held(self) -> int:
        """File descriptors and SFTP handles this handler holds (the client's budget)."""
        return 0

    def signal(self, name: str) -> bool:
        """Deliver the client's ``signal`` request (``"INT"``); False if it went nowhere."""
        return False

    def resize(self, terminal: Terminal) -> bool:
        """``window-change``: the new size of the handler's pty; False without one."""
        return False

    @property
    def needs_timer(self) -> bool:
        """True while the handler must be serviced on a short timer (no fd wakes it)."""
        return False

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the handler's process to end (True: ended or
        none)."""
        return True


def _enlarge_pipe(fd: int) -> None:
    if stat.S_ISFIFO(os.fstat(fd).st_mode):
        # The capacity counts against the user's pipe-user-pages-soft; past it the kernel
        # refuses (EPERM) and the pipe keeps its default size.
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, PUMP_PIPE_SIZE)


class _Pump:
    """One fd polled for reading into the channel, paused while the channel is congested."""

    polled: bool

    def __init__(self, handler: ChannelHandler, fd: int, on_chunk: Callable[[bytes], object],
                 on_end: Callable[[], None]) -> None:
        self.handler = handler
        self.fd: int | None = fd
        self.on_chunk = on_chunk
        self.on_end = on_end
        self.polled = False
        os.set_blocking(fd, False)
        _enlarge_pipe(fd)
        self.resume()

    def _ready(self, fd: int, revents: int) -> None:
        size = PUMP_PIPE_SIZE
        gate = self.handler.gate
        if gate is not None:
            size = min(size, gate.room())
            if size <= 0:
                self.pause()  # throttled: service() resumes once the gate has room
                return
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.stop()
            self.on_end()
            return
        if self.handler.channel.closed:
            return  # nobody to deliver to: drop, as a closed pipe would
        self.on_chunk(data)
        if self.handler.channel.pending_bytes > HIGH_WATER:
            self.pause()

    def pause(self) -> None:
        if self.polled and self.fd is not None:
            self.polled = False
            self.handler.event.remove_fd(self.fd)

    def resume(self) -> None:
        if not self.polled and self.fd is not None and not self.handler.event.closed:
            self.polled = True
            self.handler.event.add_fd(self.fd, self._ready, POLLIN)

    def service(self) -> None:
        gate = self.handler.gate
        if self.fd is not None and not self.polled and \
                self.handler.channel.pending_bytes < LOW_WATER and \
                (gate is None or gate.room() > 0):
            self.resume()

    def stop(self) -> None:
        self.pause()
        fd, self.fd = self.fd, None
        _close_fd(fd)


class _Sink:
    """A bounded buffer written to an fd (child stdin, forwarded socket) as it accepts."""

    buffer: bytearray
    polled: bool

    def __init__(self, handler: ChannelHandler, fd: int, write: Callable[[bytes | memoryview], int],
                 on_error: Callable[[], None], *, close_fd: bool = True) -> None:
        self.handler = handler
        self.close_fd = close_fd
        self.fd: int | None = fd
        self.write = write
        self.on_error = on_error
        self.buffer = bytearray()
        self.polled = False
        self.eof = False  # close (or shut down) once the buffer is empty
        os.set_blocking(fd, False)

    def room(self) -> int:
        return INPUT_LIMIT - len(self.buffer) if self.fd is not None else INPUT_LIMIT

    def push(self, data: bytes) -> None:
        if self.fd is None:
            return  # reader went away: discard, as a closed pipe would
        if not self.buffer:
            # The usual case: the reader keeps up.  Write the packet as it is, and buffer only
            # what the fd did not take (saves copying every packet through the bytearray).
            try:
                n = self.write(data)
            except BlockingIOError:
                n = 0
            except OSError:
                self.on_error()
                return
            if n == len(data) and not self.polled and not self.eof:
                return
            data = data[n:]
        self.buffer += data
        self.flush()

    def flush(self) -> None:
        while self.buffer and self.fd is not None:
            # Release the view before resizing: a live export (e.g. held by an OSError's
            # traceback) makes bytearray.clear()/del raise BufferError.
            view = memoryview(self.buffer)
            try:
                n = self.write(view)
            except BlockingIOError:
                break
            except OSError:
                n = -1
            finally:
                view.release()
            if n < 0:
                self.buffer.clear()
                self.on_error()
                return
            del self.buffer[:n]
        if self.buffer and not self.polled and self.fd is not None:
            self.polled = True
            self.handler.event.add_fd(self.fd, lambda fd, ev: self.flush(), POLLOUT)
        elif not self.buffer and self.polled and self.fd is not None:
            self.polled = False
            self.handler.event.remove_fd(self.fd)
        if not self.buffer and self.eof:
            self.finish()

    def finish(self) -> None:
        """Called once the buffer is empty after EOF."""

    def close(self) -> None:
        if self.polled and self.fd is not None:
            self.polled = False
            self.handler.event.remove_fd(self.fd)
        fd, self.fd = self.fd, None
        self.buffer.clear()
        if self.close_fd:
            _close_fd(fd)


class _PipeSink(_Sink):
    def finish(self) -> None:
        self.close()


class _CPump:
    """A :class:`_Pump` whose bytes move in C (``SshChannel.pipe_from``): Python sees only
    the end of the fd (and the window's edges, in ``service()``)."""

    handler: ChannelHandler
    on_end: Callable[[], None]
    pipe: ChannelPump
    fd: int | None

    def __init__(self, handler: ChannelHandler, fd: int, on_end: Callable[[], None], *,
                 stderr: bool = False) -> None:
        self.handler = handler
        self.on_end = on_end
        try:
            _enlarge_pipe(fd)
            self.pipe = handler.channel.pipe_from(fd, stderr=stderr, owned=True)
        except BaseException:
            _close_fd(fd)
            raise
        self.fd = fd

    def pause(self) -> None:
        if self.fd is not None:
            self.pipe.pause()

    def resume(self) -> None:
        if self.fd is not None:
            self.pipe.resume()

    def service(self) -> None:
        if self.fd is None:
            return
        self.pipe.service()
        if self.pipe.ended or self.pipe.closed:  # closed: its channel is closing
            self.stop()
            self.on_end()

    def stop(self) -> None:
        if self.fd is not None:
            self.fd = None
            self.pipe.close()


class _CSink:
    """A :class:`_Sink` whose bytes move in C (``SshChannel.pipe_to``, same bound): the
    handler's ``service()`` calls ``service()`` here, which handles the edges."""

    handler: ChannelHandler
    on_error: Callable[[], None]
    eof: bool
    pipe: ChannelSink
    fd: int | None

    def __init__(self, handler: ChannelHandler, fd: int, on_error: Callable[[], None]) -> None:
        self.handler = handler
        self.on_error = on_error
        self.eof = False
        try:
            self.pipe = handler.channel.pipe_to(fd, owned=True, limit=INPUT_LIMIT)
        except BaseException:
            _close_fd(fd)
            raise
        self.fd = fd

    @property
    def buffer(self) -> int:
        """Bytes waiting for the fd (the Python sink's buffer length)."""
        return self.pipe.buffered if self.fd is not None else 0

    @property
    def backlog(self) -> bool:
        return self.fd is not None and self.pipe.backlog

    def room(self) -> int:
        return INPUT_LIMIT - self.buffer

    def push(self, data: bytes) -> None:
        """Only reached once the C sink is closed (on_data is off while it is attached):
        discard, as a closed pipe would."""

    def service(self) -> None:
        if self.fd is None:
            return
        self.pipe.service()
        if self.pipe.error is not None:
            self.on_error()
            return
        self.flush()

    def flush(self) -> None:
        if self.fd is not None and self.eof and not self.pipe.buffered and \
                not self.pipe.backlog:
            self.finish()

    def finish(self) -> None:
        """Called once everything taken is through after EOF: close the fd."""
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            self.fd = None
            self.pipe.close()



# ---------------------------------------------------------------------------------------------


class _SinkHandler(ChannelHandler):
    """A handler whose client data goes to one :class:`_Sink` (``self.sink``), taking what
    the sink has room for; EOF (``on_eof``) ends the sink once what was taken is through."""

    sink: _Sink | _CSink
    client_eof: bool = False
    backlogged: bool
    _bytes_in: int = 0

    @property
    def bytes_in(self) -> int:
        """Client bytes taken: by the Python hooks, plus those the C sink took."""
        sink = self.__dict__.get("sink")
        return self._bytes_in + (sink.pipe.bytes if isinstance(sink, _CSink) else 0)

    @bytes_in.setter
    def bytes_in(self, value: int) -> None:
        sink = self.__dict__.get("sink")
        self._bytes_in = value - (sink.pipe.bytes if isinstance(sink, _CSink) else 0)

    def service(self) -> None:
        sink = self.sink
        if isinstance(sink, _CSink):
            sink.service()  # C drains libssh's backlog itself
            self.backlogged = sink.backlog
            return
        super().service()

    def input_overflow(self) -> bool:
        sink = self.sink
        return isinstance(sink, _CSink) and sink.pipe.overflowed

    def end_input(self) -> None:
        sink = self.sink
        if isinstance(sink, _CSink) and sink.fd is not None:
            sink.pipe.pause()  # stopping: what libssh still holds was never accepted
        self._end_input()

    def on_eof(self) -> None:
        self.client_eof = True
        self._end_sink_when_drained()

    def _end_sink_when_drained(self) -> None:
        # The client's EOF can arrive while libssh still holds data we had no room for: the
        # sink ends (EOF to a command, half-close to a target) only once that data is through.
        if self.client_eof and not self.backlogged and not self.sink.eof:
            self.sink.eof = True
            self.sink.flush()

    def input_room(self) -> int:
        return self.sink.room()

    def on_data(self, data: bytes) -> int:
        taken = data[:self.sink.room()]
        self.sink.push(taken)
        self.bytes_in += len(taken)
        if len(taken) < len(data):
            self.backlogged = True
        return len(taken)

    def take_drained(self, data: bytes) -> None:
        self.sink.push(data)
        self.bytes_in += len(data)

    def _end_input(self) -> None:
        super().end_input()
        self.on_eof()

    def input_pending(self) -> bool:
        return bool(self.sink.buffer) and self.sink.fd is not None


@dataclass(frozen=True)
class Terminal:
    """A client's pty request: terminal type and size (characters, then pixels)."""

    term: str
    cols: int
    rows: int
    pxwidth: int = 0
    pxheight: int = 0

    def winsize(self) -> bytes:
        """``struct winsize`` for ``TIOCSWINSZ``; each field clamped to its 16 bits."""
        def clamp(value: int) -> int:
            return max(0, min(int(value), 0xFFFF))

        return struct.pack("HHHH", clamp(self.rows), clamp(self.cols), clamp(self.pxwidth),
                           clamp(self.pxheight))


def signal_number(name: str) -> int | None:
    """The signal an RFC 4254 name (``"TERM"``, no ``SIG`` prefix) stands for, or None."""
    if not name.isalnum() or not name.isupper():
        return None
    number = getattr(signal, f"SIG{name}", None)
    return int(number) if isinstance(number, signal.Signals) else None


def _session_members(sid: int) -> list[int]:
    """Processes of session ``sid`` (a command's children that left its process group with
    ``setpgid`` are still in its session)."""
    pids: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if len(fields) > 4 and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


class CommandFailedHandler(ChannelHandler):
    """An exec whose command could not be started: a message on stderr, then the exit status
    (126, or 127 when nothing was found), EOF and CLOSE, as a shell reports it."""

    def __init__(self, channel: SshChannel, event: SessionEvent, message: str,
                 status: int) -> None:
        super().__init__(channel, event)
        self.message = message
        self.status = status

    def service(self) -> None:
        if self.finished:
            return
        if not self.channel.closed:
            self.send(self.message.encode("utf-8", "replace"), stderr=True)
        self.exit(self.status)


class _StreamsHandler(_SinkHandler):
    """A command's streams: client data into its stdin (ended by the client's EOF once what
    libssh still holds is through), its stdout and stderr pumped to the channel.  Without a
    stderr fd (a pty) the terminal has merged stderr into stdout, and the client's EOF closes
    only our write fd of the master: the reader's dup keeps the terminal open for the
    command, as in sshd."""

    terminal: Terminal | None = None
    sink: _Sink | _CSink
    stdin: _PipeSink | _CSink
    stdout: _Pump | _CPump
    stderr: _Pump | _CPump | None

    def _attach_streams(self, stdin_fd: int, stdout_fd: int, stderr_fd: int | None, *,
                        stderr_as_stdout: bool = False, native: bool | None = None) -> None:
        if native_data_path(native):
            self._attach_native_streams(stdin_fd, stdout_fd, stderr_fd, stderr_as_stdout)
            return
        self.stdin = self.sink = _PipeSink(self, stdin_fd, lambda buf: os.write(stdin_fd, buf),
                                           self._stdin_broken)
        self.stdout = _Pump(self, stdout_fd, self.send, lambda: None)
        self.stderr = None if stderr_fd is None else _Pump(
            self, stderr_fd, lambda d: self.send(d, stderr=not stderr_as_stdout),
            lambda: None)

    def _attach_native_streams(self, stdin_fd: int, stdout_fd: int, stderr_fd: int | None,
                               stderr_as_stdout: bool) -> None:
        # Each constructor closes its fd if it fails; the others are closed here.
        pending = [stdout_fd] + ([] if stderr_fd is None else [stderr_fd])
        try:
            self.stdin = self.sink = _CSink(self, stdin_fd, self._stdin_broken)
            self.stdout = _CPump(self, pending.pop(0), lambda: None)
            self.stderr = None if stderr_fd is None else _CPump(
                self, pending.pop(0), lambda: None, stderr=not stderr_as_stdout)
        except BaseException:
            for fd in pending:
                _close_fd(fd)
            for part in ("stdin", "stdout", "stderr"):
                obj = self.__dict__.pop(part, None)
                if obj is not None:
                    obj.close() if isinstance(obj, _CSink) else obj.stop()
            raise

    def _stdin_broken(self) -> None:
        self.stdin.close()

    def _service_streams(self) -> bool:
        """Move what the last poll made possible; True once stdout and stderr have ended."""
        self._end_sink_when_drained()
        if self.stdin.eof and not self.backlogged and self.stdin.fd is not None:
            self.stdin.flush()
        self.stdout.service()
        if self.stderr is not None:
            self.stderr.service()
        return self.stdout.fd is None and (self.stderr is None or self.stderr.fd is None)

    def fds_held(self) -> int:
        fds = (self.stdin.fd, self.stdout.fd, self.stderr.fd if self.stderr else None)
        return sum(1 for fd in fds if fd is not None)

    def _stop_streams(self) -> None:
        for part in (self.stdout, self.stderr):
            if part is not None:
                part.stop()
        self.stdin.close()


class ExecHandler(_StreamsHandler):
    """``sh -c COMMAND`` with stdin/stdout/stderr pumped through the channel.

    When the command ends: all output, then exit-status (or exit-signal), EOF and CLOSE.  The
    command runs in a session of its own; when it ends, when the client closes the channel
    or disconnects, and when the server stops, every process of that session (what the
    command put in the background included) is killed.

    The command's exit is observed without reaping it (``waitid(WNOWAIT)``) until its process
    group has been killed: while the zombie holds the pid, the group id cannot be reused by
    an unrelated process.
    """

    exit_sent: bool
    proc: subprocess.Popen[bytes]
    finished: bool

    def __init__(self, channel: SshChannel, event: SessionEvent, command: str,
                 env: dict[str, str], terminal: Terminal | None = None, *,
                 native: bool | None = None) -> None:
        super().__init__(channel, event)
        self.command = command
        self.exit_sent = False
        self.terminal = terminal
        self._group_killed = False
        stderr_fd: int | None
        if terminal is None:
            stdin_fd, stdout_fd, stderr_fd = self._spawn_on_pipes(command, env)
        else:
            stdin_fd, stdout_fd = self._spawn_on_pty(command, env, terminal)
            stderr_fd = None
        self._attach_streams(stdin_fd, stdout_fd, stderr_fd, native=native)
        self.pidfd: int | None = None
        try:
            self.pidfd = os.pidfd_open(self.proc.pid)
            event.add_fd(self.pidfd, lambda fd, ev: None, POLLIN)
        except (AttributeError, OSError):
            self.pidfd = None  # without pidfd the client polls with a short timeout

    def _spawn_on_pipes(self, command: str, env: dict[str, str]) -> tuple[int, int, int]:
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, close_fds=True, start_new_session=True, bufsize=0,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        # Own the raw fds; the Popen file objects must not close them a second time.
        owned: list[int] = []
        try:
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                owned.append(os.dup(f.fileno()))
        except OSError:
            # Out of fds with the command already running: it must not outlive the failure.
            for fd in owned:
                _close_fd(fd)
            self._kill_group()
            raise
        finally:
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                f.close()
        return owned[0], owned[1], owned[2]

    def _spawn_on_pty(self, command: str, env: dict[str, str],
                      terminal: Terminal) -> tuple[int, int]:
        """The command on a new pseudo-terminal, as its controlling terminal: ``setsid
        --ctty`` makes the child a session leader and takes the pty (its stdin), so the line
        discipline sends ^C as SIGINT and a resize as SIGWINCH to the foreground job."""
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, terminal.winsize())
            env = {**env, "TERM": terminal.term or "dumb"}
            self.proc = subprocess.Popen(
                ["setsid", "--ctty", "/bin/sh", "-c", command],
                stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, bufsize=0)
        except BaseException:
            _close_fd(master)
            raise
        finally:
            _close_fd(slave)
        try:
            reader = os.dup(master)
        except OSError:
            _close_fd(master)
            self._kill_group()
            raise
        return master, reader

    def resize(self, terminal: Terminal) -> bool:
        """``window-change``: the pty's new size (the foreground job gets SIGWINCH)."""
        master = self.stdin.fd  # on a pty, stdin is the master
        if self.terminal is None or master is None:
            return False
        self.terminal = terminal
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, terminal.winsize())
        except OSError:
            return False
        return True

    @property
    def needs_timer(self) -> bool:
        return self.pidfd is None and not self.finished

    def service(self) -> None:
        super().service()
        if self.finished:
            return
        if self._service_streams() and self.exited():
            self._finish()

    def exited(self) -> bool:
        """True once the command (the shell) has ended; it is not reaped here."""
        if self.proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # reaped by someone else
        return info is not None

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the command to end (without reaping it)."""
        deadline = time.monotonic() + timeout
        while not self.exited():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.pidfd is not None:
                select.select([self.pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.02))
        return True

    def _kill_group(self, whole_session: bool = False) -> None:
        """SIGKILL the command's process group once (and, with ``whole_session``, every
        process of its session, found in /proc: about 1 ms, so only when the command is cut
        short), then reap the command."""
        if not self._group_killed and self.proc.returncode is None:
            self._group_killed = True
            pid = self.proc.pid
            for kill in (os.killpg, os.kill):  # os.kill: also before the child's setsid
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
            for member in _session_members(pid) if whole_session else ():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(member, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def signal(self, name: str) -> bool:
        number = signal_number(name)
        if number is None or self.finished or self.proc.returncode is not None:
            return False
        try:
            os.killpg(self.proc.pid, number)  # the zombie leader keeps the group id ours
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def fds_held(self) -> int:
        return super().fds_held() + (self.pidfd is not None)

    def _finish(self) -> None:
        # An interactive shell puts its jobs in process groups of their own: find them all.
        self._kill_group(whole_session=self.terminal is not None)
        self._release_pidfd()
        self.stdin.close()
        status = self.proc.returncode
        if status < 0:
            self.exit(None, _SIGNAL_NAMES.get(-status, "KILL"))
        else:
            self.exit(status)
        self.exit_sent = True

    def _release_pidfd(self) -> None:
        if self.pidfd is not None:
            if not self.event.closed:
                self.event.remove_fd(self.pidfd)
            _close_fd(self.pidfd)
            self.pidfd = None

    def terminate(self) -> None:
        self._kill_group(whole_session=True)
        self._stop_streams()
        self._release_pidfd()
        self.finished = True


class SftpHandler(ChannelHandler):
    """The "sftp" subsystem, served by our SFTP v3 engine over the channel's data stream."""

    client_eof: bool

    def __init__(self, channel: SshChannel, event: SessionEvent, engine: SftpServer,
                 on_error: Callable[[Exception], None]) -> None:
        super().__init__(channel, event)
        self.engine = engine
        self.on_error = on_error
        self.client_eof = False

    def input_room(self) -> int:
        # Replies are queued on the channel: stop reading requests while it is congested
        # (or the throttle is in debt for the replies already sent).
        if self.channel.pending_bytes > HIGH_WATER or \
                (self.gate is not None and self.gate.room() == 0):
            return 0
        return INPUT_LIMIT

    def on_data(self, data: bytes) -> int:
        if self.finished or self.input_room() == 0:
            self.backlogged = True
            return 0
        return self._feed(data)

    def take_drained(self, data: bytes) -> None:
        if not self.finished:
            self._feed(data)

    def _feed(self, data: bytes) -> int:
        from pylibssh_server.demo.sftp import SftpProtocolError

        self.bytes_in += len(data)
        try:
            reply = self.engine.feed(data)
        except SftpProtocolError as exc:
            self.on_error(exc)
            self.terminate()
            if not self.channel.closed:
                self.channel.abort()
            return len(data)
        if reply:
            self.send(reply)
        return len(data)

    def on_eof(self) -> None:
        self.client_eof = True
        self._end_when_drained()

    def service(self) -> None:
        super().service()
        self._end_when_drained()

    def _end_when_drained(self) -> None:
        # Requests libssh still holds (no room for them yet) are served before the end.
        if not self.client_eof or self.backlogged or self.finished:
            return
        # As sshd's sftp-server exiting 0: scp/sftp treat a missing status as failure.
        self.exit(0)
        self.terminate()

    def terminate(self) -> None:
        self.engine.close()
        self.finished = True

    def fds_held(self) -> int:
        return 0 if self.finished else self.engine.open_handles


class ForwardHandler(_SinkHandler):
    """A direct-tcpip channel relayed to a TCP connection, half-close included.

    The socket is polled through two fd numbers (a ``dup``), one for input and one for
    output, so each direction pauses and resumes on its own.
    """

    remote_eof: bool
    outbound: _Sink | _CSink
    sink: _Sink | _CSink
    inbound: _Pump | _CPump

    def __init__(self, channel: SshChannel, event: SessionEvent, sock: socket.socket, *,
                 native: bool | None = None) -> None:
        super().__init__(channel, event)
        self.sock = sock
        sock.setblocking(False)
        self.remote_eof = False   # the target closed its sending side
        self.client_eof = False
        if native_data_path(native):
            # The sink owns the socket's fd, the pump a dup (each direction on its own).
            reader = os.dup(sock.fileno())
            try:
                self.outbound = self.sink = _CSink(self, sock.detach(), self._reset)
            except BaseException:
                _close_fd(reader)
                raise
            try:
                self.inbound = _CPump(self, reader, self._target_eof)
            except BaseException:
                self.outbound.close()
                raise
        else:
            self.outbound = self.sink = _Sink(self, sock.fileno(), sock.send, self._reset,
                                              close_fd=False)
            self.inbound = _Pump(self, os.dup(sock.fileno()), self.send, self._target_eof)
        self.outbound.finish = self._shutdown_write  # type: ignore[method-assign]

    def _reset(self) -> None:
        self.terminate()
        if not self.channel.closed:
            self.channel.abort()

    def _shutdown_write(self) -> None:
        if isinstance(self.outbound, _CSink):
            self.outbound.pipe.shutdown_write()
        else:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
        self._maybe_done()

    def _target_eof(self) -> None:
        self.remote_eof = True
        if not self.channel.closed:
            self.channel.send_eof()
        self._maybe_done()

    def service(self) -> None:
        super().service()
        if not self.finished:
            self._end_sink_when_drained()
            self.inbound.service()
            self._maybe_done()

    def _maybe_done(self) -> None:
        if self.finished:
            return
        if self.remote_eof and self.client_eof and not self.outbound.buffer and \
                not self.backlogged:
            if not self.channel.closed:
                self.channel.close()
            self.terminate()

    def fds_held(self) -> int:
        return 0 if self.finished else 2

    def terminate(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.inbound.stop()
        self.outbound.close()
        self.sock.close()


#: How long opening a forward may wait for its target's answer (a refusal, usually at once
#: on loopback) before it is confirmed anyway and the connection completes in the background.
CONNECT_WAIT = 0.05


def connect_target(host: str, port: int, wait: float = CONNECT_WAIT) -> socket.socket | None:
    """Connect to a forwarding target (IPv4, IPv6 or a name): a non-blocking socket, or None
    if every address refused within ``wait`` seconds.

    The caller (a reactor's hook) must not block: a target that has not answered within
    ``wait`` is returned still connecting; the forward's pipes then wait for it like for any
    slow peer, and a later failure ends the forward (its channel closes).  A name is
    resolved with ``getaddrinfo``, which can block: forward to addresses where that matters.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, OverflowError, UnicodeError):
        return None
    deadline = time.monotonic() + wait
    for family, kind, proto, _, address in addresses:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:
            continue
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = sock.connect_ex(address)
        if rc == 0:
            return sock
        if rc == errno.EINPROGRESS:
            poller = select.poll()
            poller.register(sock, select.POLLOUT)
            left = max(0.0, deadline - time.monotonic())
            if not poller.poll(int(left * 1000)):
                return sock  # still connecting: finished in the background
            rc = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc == 0:
                return sock
        sock.close()
    return None



# ---- commands that never touch the host -----------------------------------------------------


def _terminal_text(text: str, terminal: Terminal | None) -> bytes:
    """Output as the client sees it: on a pty a terminal turns ``\\n`` into ``\\r\\n``."""
    if terminal is not None:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text.encode("utf-8", "surrogateescape")


class CannedHandler(ChannelHandler):
    """An exec answered from the command table: after ``delay``, stdout and stderr (merged
    on a pty, as a terminal merges them), then the exit status.  Client input is read and
    dropped, as by a command that does not read it."""

    def __init__(self, channel: SshChannel, event: SessionEvent, reply: Reply,
                 terminal: Terminal | None) -> None:
        super().__init__(channel, event)
        self.reply = reply
        self.terminal = terminal
        self.deadline: float | None = time.monotonic() + reply.delay

    def service(self) -> None:
        super().service()
        if self.finished or self.deadline is None or time.monotonic() < self.deadline:
            return
        self.deadline = None
        if not self.channel.closed:
            if self.reply.stdout:
                self.send(_terminal_text(self.reply.stdout, self.terminal))
            if self.reply.stderr:
                self.send(_terminal_text(self.reply.stderr, self.terminal),
                                   stderr=self.terminal is None)
        self.exit(self.reply.exit_status)


class FunctionHandler(_StreamsHandler):
    """An exec answered by a callable, run in a thread of its own over three pipes (so it may
    block, and its stdin, stdout and stderr have the same flow control as a command's).

    Its return value is the exit status; an exception is reported on stderr with status 1.
    When the client leaves, the pipes close: its reads see EOF and its writes fail.
    """

    thread: threading.Thread

    def __init__(self, channel: SshChannel, event: SessionEvent, func: Callable[[Process], Any],
                 command: str, env: dict[str, str], terminal: Terminal | None,
                 on_error: Callable[[BaseException], None], *,
                 native: bool | None = None) -> None:
        super().__init__(channel, event)
        self.status: int | None = None
        self.on_error = on_error
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self._attach_streams(in_w, out_r, err_r, stderr_as_stdout=terminal is not None,
                             native=native)
        size = None if terminal is None else (terminal.cols, terminal.rows)
        process = Process(command, env, None if terminal is None else terminal.term, size,
                          os.fdopen(in_r, "rb", buffering=0), os.fdopen(out_w, "wb", buffering=0),
                          os.fdopen(err_w, "wb", buffering=0))
        self.thread = threading.Thread(target=self._run, args=(func, process), daemon=True,
                                       name=f"demo-command {command[:40]!r}")
        self.thread.start()

    def _run(self, func: Callable[[Process], Any], process: Process) -> None:
        status = 1
        try:
            result = func(process)
            status = 0 if result is None else int(result) & 0xFF
        except BaseException as exc:  # reported to the client, never lost
            self.on_error(exc)
            with contextlib.suppress(OSError):
                process.stderr.write(f"demo: command failed: {exc!r}\n".encode())
        finally:
            # The status first: the pumps' EOF is how the session thread learns of the end.
            self.status = status
            for f in (process.stdin, process.stdout, process.stderr):
                with contextlib.suppress(OSError):
                    f.close()

    def service(self) -> None:
        super().service()
        if self.finished:
            return
        if self._service_streams() and self.status is not None:
            self.stdin.close()
            self.exit(self.status)

    def terminate(self) -> None:
        self._stop_streams()
        self.finished = True


class ScriptedShellHandler(ChannelHandler):
    """A shell that never starts a process: the banner, then the prompt; each line the
    client types (echoed back on a pty, as a terminal does) is answered from the command
    table; ``exit`` (or ``exit N``), Ctrl-D on an empty line or EOF ends it."""

    line: bytearray
    started: bool

    MAX_LINE = 64 << 10

    def __init__(self, channel: SshChannel, event: SessionEvent, table: CommandTable,
                 terminal: Terminal | None) -> None:
        super().__init__(channel, event)
        self.table = table
        self.terminal = terminal
        self.line = bytearray()
        self.pending: list[tuple[float, bytes, int | None]] = []  # (when, output, exit)
        self.started = False
        self.deadline: float | None = time.monotonic()

    def input_room(self) -> int:
        # Answers queue on the channel: stop reading lines while it is congested.
        busy = self.pending or self.channel.pending_bytes > HIGH_WATER
        return 0 if busy else INPUT_LIMIT

    def on_data(self, data: bytes) -> int:
        if self.finished or self.input_room() == 0:
            self.backlogged = True
            return 0
        self.take_drained(data)
        return len(data)

    def take_drained(self, data: bytes) -> None:
        self.bytes_in += len(data)
        echo = bytearray()
        for byte in data:
            ch = bytes([byte])
            if ch in (b"\r", b"\n"):
                echo += b"\r\n"
                self._submit(self.line.decode("utf-8", "replace"))
                self.line.clear()
            elif ch in (b"\x7f", b"\x08"):
                if self.line:
                    del self.line[-1:]
                    echo += b"\b \b"
            elif ch == b"\x03":
                echo += b"^C\r\n"
                self.line.clear()
                self._queue(b"", None)
            elif ch == b"\x04" and not self.line:
                self._queue(b"", 0)
            elif len(self.line) < self.MAX_LINE:
                self.line += ch
                echo += ch
        if self.terminal is not None and echo and not self.channel.closed:
            self.send(bytes(echo))

    def _queue(self, output: bytes, status: int | None, delay: float = 0.0) -> None:
        self.pending.append((time.monotonic() + delay, output, status))
        self.deadline = min(when for when, _, _ in self.pending)

    def _submit(self, line: str) -> None:
        command = line.strip()
        words = command.split()
        if words[:1] == ["exit"] and len(words) <= 2:
            status = int(words[1]) & 0xFF if len(words) == 2 and words[1].isdigit() else 0
            self._queue(b"", status)
            return
        if not command:
            self._queue(b"", None)
            return
        reply = self.table.lookup(command)
        if isinstance(reply, Reply):
            text = reply.stdout + reply.stderr
            self._queue(_terminal_text(text, self.terminal), None, reply.delay)
        elif reply is None:
            self._queue(_terminal_text(f"demo: command not found: {command}\n",
                                       self.terminal), None)
        else:
            self._queue(_terminal_text(f"demo: {command}: a callable reply runs only as an "
                                       "exec request\n", self.terminal), None)

    def on_eof(self) -> None:
        self._queue(b"", 0)

    def service(self) -> None:
        if self.finished or self.channel.closed:
            return
        if not self.started:
            self.started = True
            self.deadline = None
            if self.table.banner:
                self.send(_terminal_text(self.table.banner, self.terminal))
            self.send(_terminal_text(self.table.prompt, self.terminal))
        now = time.monotonic()
        while self.pending and self.pending[0][0] <= now:
            _, output, status = self.pending.pop(0)
            if output:
                self.send(output)
            if status is not None:
                self.pending.clear()
                self.exit(status)
                return
            self.send(_terminal_text(self.table.prompt, self.terminal))
        self.deadline = self.pending[0][0] if self.pending else None
        super().service()


# ---- tunnels the server opens towards the client ---------------------------------------------


class OpenedForwardHandler(ForwardHandler):
    """A local connection (to a client's ``-R`` listener, or to its forwarded agent's socket)
    relayed over a channel this server opens to the client: ``start_open(channel)`` begins
    the open; nothing is read from the socket until the client confirms it, and a refusal
    closes the connection."""

    opened: bool

    def __init__(self, channel: SshChannel, event: SessionEvent, sock: socket.socket,
                 start_open: Callable[[SshChannel], bool | None],
                 on_refused: Callable[[str], None], *, native: bool | None = None) -> None:
        super().__init__(channel, event, sock, native=native)
        self.inbound.pause()
        self.opened = False
        self.on_refused = on_refused
        self._start_open = start_open
        self._result: bool | None = None

    def start(self) -> None:
        """Begin the open (once the channel's callbacks are set: a refusal can free the
        channel at once)."""
        try:
            self._result = self._start_open(self.channel)
        except ValueError:
            self._result = False  # the channel went with its session
        if self._result is False:
            self.service()

    def service(self) -> None:
        if not self.opened and not self.finished:
            result, self._result = self._result, None
            if result is None:
                try:
                    result = self.channel.poll_open()
                except ValueError:
                    result = False  # the channel went with its session
            if result is None:
                return
            if result is False:
                self.on_refused(self.channel.open_error or "closed")
                self.terminate()
                return
            self.opened = True
            self.inbound.resume()
        super().service()
