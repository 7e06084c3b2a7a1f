# SPDX-License-Identifier: MIT
"""``SshChannel.pipe_to`` / ``pipe_from``: channel bytes moved to and from fds in C, with a
paramiko client on the other end and the server session polled by the test thread."""

from __future__ import annotations

import hashlib
import os
import select
import threading
import time
from typing import Any

import paramiko
import pytest
from conftest import Loopback

from pylibssh_server import ChannelCallbacks, Session, SshChannel
from pylibssh_server.pipe import ChannelPump, ChannelSink

TIMEOUT = 30.0


class Piped:
    """The server side: a session channel whose exec request attaches a sink (to ``sink_w``)
    and a pump (from ``pump_r``); ``on_data`` records what reaches Python instead."""

    def __init__(self, loopback: Loopback, *, owned: bool = False) -> None:
        self.loopback = loopback
        self.owned = owned
        self.sink_r, self.sink_w = os.pipe2(os.O_CLOEXEC)
        self.pump_r, self.pump_w = os.pipe2(os.O_CLOEXEC)
        self.channel: SshChannel | None = None
        self.sink: ChannelSink | None = None
        self.pump: ChannelPump | None = None
        self.python_data = bytearray()

    def on_open(self, session: Session, userdata: Any) -> SshChannel:
        channel = SshChannel(session)
        channel.set_callbacks(ChannelCallbacks(
            on_exec_request=self.on_exec,
            on_data=lambda s, c, data, is_stderr, u: self.python_data.extend(data)))
        self.channel = channel
        return channel

    def on_exec(self, session: Session, channel: SshChannel, command: str,
                userdata: Any) -> bool:
        self.sink = channel.pipe_to(self.sink_w, owned=self.owned)
        self.pump = channel.pipe_from(self.pump_r, owned=self.owned)
        return True

    def poll(self, predicate: Any, timeout: float = TIMEOUT) -> None:
        def serviced() -> bool:
            for pipe in (self.sink, self.pump):
                if pipe is not None:
                    pipe.service()
            return bool(predicate())
        self.loopback.poll_until(serviced, timeout)

    def close(self) -> None:
        fds = [self.sink_r, self.pump_w] + ([] if self.owned else [self.sink_w, self.pump_r])
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def start(loopback: Loopback, piped: Piped) -> paramiko.Channel:
    transport = loopback.login(on_channel_open_request_session=piped.on_open)
    channel = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    channel.settimeout(TIMEOUT)
    loopback.wait_done(loopback.submit(channel.exec_command, "piped"))
    piped.poll(lambda: piped.pump is not None)
    return channel


def reader(fd: int, out: bytearray) -> threading.Thread:
    def run() -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                return  # closed by the test's clean-up
            if not chunk:
                return
            out.extend(chunk)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_both_directions_byte_exact_then_exit_status_after_all_output(
        loopback: Loopback) -> None:
    """8 MiB each way through the C sink and pump: byte-exact, the client's EOF visible on the
    channel, and the exit status sent after the pump's EOF arrives after every byte."""
    piped = Piped(loopback, owned=True)
    try:
        channel = start(loopback, piped)
        up, down = os.urandom(8 << 20), os.urandom(8 << 20)
        got_up = bytearray()
        sink_reader = reader(piped.sink_r, got_up)
        writer = threading.Thread(target=lambda: (os.write(piped.pump_w, down),
                                                  os.close(piped.pump_w)), daemon=True)
        writer.start()
        sent = loopback.submit(lambda: (channel.sendall(up), channel.shutdown_write()))
        received = bytearray()

        def client_reads() -> None:
            while True:
                chunk = channel.recv(1 << 16)
                if not chunk:
                    return
                received.extend(chunk)
        client = threading.Thread(target=client_reads, daemon=True)
        client.start()
        assert piped.pump is not None and piped.sink is not None and piped.channel is not None
        piped.poll(lambda: sent.done() and piped.pump.ended and piped.channel.is_eof
                   and piped.sink.buffered == 0 and not piped.sink.backlog)
        piped.channel.send_exit_status(3)
        piped.channel.send_eof()
        piped.channel.close()
        assert piped.pump.closed  # send_eof() closed the pump
        piped.poll(lambda: not client.is_alive(), TIMEOUT)
        assert channel.recv_exit_status() == 3
        piped.sink.close()
        sink_reader.join(TIMEOUT)  # the sink owned the only write end: EOF
        assert hashlib.sha256(got_up).digest() == hashlib.sha256(up).digest()
        assert hashlib.sha256(received).digest() == hashlib.sha256(down).digest()
        assert (piped.sink.bytes, piped.pump.bytes) == (len(up), len(down))
        assert piped.python_data == b""  # on_data was off while the sink took the data
    finally:
        piped.close()


def test_a_reader_that_stops_holds_the_client_in_the_window(loopback: Loopback) -> None:
    """Nobody reads the sink's pipe: the sink buffers at most its limit, libssh holds the
    rest (backlog), the client's sends stop at the window; reading again delivers all."""
    piped = Piped(loopback)
    try:
        channel = start(loopback, piped)
        data = os.urandom(16 << 20)
        sent = loopback.submit(channel.sendall, data)
        assert piped.sink is not None
        piped.poll(lambda: piped.sink.backlog)
        for _ in range(20):  # the client stays blocked by the window
            loopback.event.dopoll(0.02)  # type: ignore[union-attr]
            piped.sink.service()
        assert not sent.done()
        assert piped.sink.buffered <= 1 << 20
        got = bytearray()
        reader(piped.sink_r, got)
        piped.poll(lambda: sent.done() and len(got) == len(data))
        assert got == data
    finally:
        piped.close()


def test_one_poll_takes_a_piped_stream_past_max_rounds(loopback: Loopback) -> None:
    """While the C sink moves bytes within every ``max_rounds`` rounds, one ``dopoll`` goes
    on past ``max_rounds`` (for a few ms at most): with 4 rounds of libssh's 4 KiB reads a
    call could take at most 16 KiB, here it takes what the client has already sent."""
    piped = Piped(loopback, owned=True)
    try:
        channel = start(loopback, piped)
        event = loopback.event
        assert event is not None and piped.sink is not None
        got = bytearray()
        reader(piped.sink_r, got)
        # The first bytes open the window (libssh 0.10 starts at 64000 bytes).
        loopback.wait_done(loopback.submit(channel.sendall, b"x" * 1000))
        piped.poll(lambda: piped.sink.bytes == 1000)
        event.max_rounds = 4
        packet, count = b"y" * 8000, 16  # 2 rounds a packet: bytes move in every 4 rounds
        best = 0
        for attempt in range(1, 4):  # fails only if the thread lost the CPU for the bound
            before = piped.sink.bytes
            sent = loopback.submit(lambda: [channel.sendall(packet) for _ in range(count)])
            sent.result(TIMEOUT)
            time.sleep(0.2)  # every packet in the server's socket
            event.dopoll(0)
            best = max(best, piped.sink.bytes - before)
            total = 1000 + attempt * count * len(packet)
            piped.poll(lambda total=total: piped.sink.bytes == total)
            if best > 4 * 4096:
                break
        assert best > 4 * 4096, best
        piped.poll(lambda: len(got) == piped.sink.bytes)
        assert bytes(got) == b"x" * 1000 + packet * ((len(got) - 1000) // len(packet))
    finally:
        piped.close()


def test_dopoll_zero_lingers_for_a_stream_while_the_loop_has_nothing_else(
        loopback: Loopback) -> None:
    """Given ``linger_fd`` (a reactor gives its epoll), ``dopoll(0)`` on a stream that
    pauses waits in C for the next bytes instead of returning at each pause: one call takes
    packets the client sent after it began.  Without it (or once that fd is readable: the
    loop has other work) the call returns when the socket is empty."""
    piped = Piped(loopback, owned=True)
    others_r, others_w = os.pipe2(os.O_CLOEXEC)
    loop = select.epoll()  # a loop of the test's own: the session's fds and the others
    try:
        channel = start(loopback, piped)
        event = loopback.event
        assert event is not None and piped.sink is not None
        assert event.linger_fd == -1
        got = bytearray()
        reader(piped.sink_r, got)
        loopback.wait_done(loopback.submit(channel.sendall, b"x" * 1000))
        piped.poll(lambda: piped.sink.bytes == 1000)
        packet = b"y" * 2000
        total = 1000
        loop.register(others_r, select.EPOLLIN)
        for fd in event.poll_set():
            loop.register(fd, select.EPOLLIN)

        def one_call(linger_fd: int) -> int:
            """The client sends a packet, and each next one only once the server took the
            one before (the server's socket is empty before each); one dopoll(0) once the
            first is there.  Returns the packets that call took."""
            nonlocal total
            event.linger_fd = linger_fd
            sent = [0]
            stop = threading.Event()
            base = piped.sink.bytes

            def ping_pong() -> None:
                for _ in range(50):
                    deadline = time.monotonic() + 0.1
                    while (piped.sink.bytes < base + sent[0] and not stop.is_set()
                           and time.monotonic() < deadline):
                        time.sleep(0.0001)
                    if stop.is_set() or piped.sink.bytes < base + sent[0]:
                        return
                    channel.sendall(packet)
                    sent[0] += len(packet)

            thread = threading.Thread(target=ping_pong)
            thread.start()
            try:
                time.sleep(0.02)  # the first packet is in the server's socket
                event.dopoll(0)
                took = (piped.sink.bytes - base) // len(packet)
            finally:
                stop.set()
                thread.join(TIMEOUT)
            total += sent[0]
            piped.poll(lambda: piped.sink.bytes == total)
            return took

        best = 0
        for _ in range(5):  # fails only if the client lost the CPU for 1 ms every time
            best = max(best, one_call(loop.fileno()))
            if best >= 3:
                break
        assert best >= 3, best
        assert one_call(-1) == 1  # without: the call ends once the socket is empty
        os.write(others_w, b"!")  # the loop has other work: the call does not wait for it
        assert one_call(loop.fileno()) == 1
        piped.poll(lambda: len(got) == total)
        assert bytes(got) == b"x" * 1000 + packet * ((total - 1000) // len(packet))
    finally:
        event = loopback.event
        if event is not None:
            event.linger_fd = -1
        loop.close()
        os.close(others_r)
        os.close(others_w)
        piped.close()


def test_a_pump_stalled_by_the_window_resumes_within_the_batch(loopback: Loopback) -> None:
    """A pump that stalls on the peer's window in a poll batch does not end the batch: the
    batch takes its fd out of the poll, puts it back before it returns (Python's view of
    the event holds), and resumes it once a window adjust came, in the same call."""
    window = 32768
    piped = Piped(loopback, owned=True)
    try:
        transport = loopback.login(on_channel_open_request_session=piped.on_open)
        channel = loopback.wait_done(loopback.submit(
            transport.open_session, window_size=window, max_packet_size=16384, timeout=10))
        channel.settimeout(TIMEOUT)
        loopback.wait_done(loopback.submit(channel.exec_command, "piped"))
        piped.poll(lambda: piped.pump is not None)
        pump, event, session = piped.pump, loopback.event, loopback.session
        assert pump is not None and event is not None and session is not None
        data = os.urandom(2 * window)  # all in the pipe at once (64 KiB)
        os.write(piped.pump_w, data)
        deadline = time.monotonic() + TIMEOUT
        while not pump.stalled:  # polls only: service() would take the fd out
            assert time.monotonic() < deadline, "the pump never stalled"
            event.dopoll(0.05)
        assert pump.bytes == window  # the batch put its fd back in the event on return:
        received = bytearray()
        while len(received) < window:  # the client reads: paramiko adjusts the window
            received.extend(channel.recv(window))
        assert select.select([session.fd], [], [], TIMEOUT)[0], "no window adjust came"
        event.dopoll(0)  # one call, no service(), and the stall ends inside it
        assert pump.bytes > window  # (ending the batch at the stall, it moved nothing)
        os.close(piped.pump_w)
        piped.pump_w = -1

        def client_reads() -> None:
            while len(received) < len(data):
                chunk = channel.recv(window)
                if not chunk:
                    return
                received.extend(chunk)
        client = threading.Thread(target=client_reads, daemon=True)
        client.start()
        piped.poll(lambda: not client.is_alive())
        assert bytes(received) == data
    finally:
        piped.close()


def test_on_data_takes_over_once_the_sink_is_closed(loopback: Loopback) -> None:
    """After ``sink.close()`` the channel's data reaches ``on_data`` again."""
    piped = Piped(loopback)
    try:
        channel = start(loopback, piped)
        assert piped.sink is not None
        piped.sink.close()
        assert piped.sink.closed and piped.sink.fd == -1
        loopback.wait_done(loopback.submit(channel.sendall, b"hello"))
        piped.poll(lambda: piped.python_data == b"hello")
    finally:
        piped.close()


def test_close_from_another_thread_mid_transfer(loopback: Loopback) -> None:
    """Another thread closes the sink and the pump while bytes flow: both stop at once, the
    fds they owned are closed (the pipes' other ends see EOF / EPIPE), nothing crashes."""
    piped = Piped(loopback, owned=True)
    try:
        channel = start(loopback, piped)
        stop = threading.Event()
        got = bytearray()
        sink_reader = reader(piped.sink_r, got)

        def feed() -> None:
            block = os.urandom(1 << 16)
            while not stop.is_set():
                try:
                    os.write(piped.pump_w, block)
                except BrokenPipeError:
                    return
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        sender = loopback.submit(lambda: channel.sendall(os.urandom(32 << 20)))
        drainer = loopback.submit(lambda: [channel.recv(1 << 16) for _ in range(200)])
        assert piped.sink is not None and piped.pump is not None
        piped.poll(lambda: piped.sink.bytes > (1 << 20) and piped.pump.bytes > (1 << 20))
        closer = threading.Thread(target=lambda: (piped.sink.close(), piped.pump.close()))
        closer.start()
        piped.poll(lambda: not closer.is_alive())
        assert piped.sink.closed and piped.pump.closed
        sink_reader.join(TIMEOUT)  # EOF: the sink's fd (the only write end) is closed
        feeder.join(TIMEOUT)  # EPIPE: the pump's fd (the only read end) is closed
        assert not sink_reader.is_alive() and not feeder.is_alive()
        stop.set()
        piped.channel.abort()  # type: ignore[union-attr]
        loopback.poll_until(lambda: sender.done() and drainer.done())
    finally:
        piped.close()


def test_pipes_need_a_polled_non_blocking_session(loopback: Loopback) -> None:
    """A blocking session, or a closed channel, refuses pipes with ValueError; the caller's
    fd stays open."""
    piped = Piped(loopback)
    try:
        start(loopback, piped)
        channel = piped.channel
        assert channel is not None
        session = channel.session
        session.set_blocking(True)
        with pytest.raises(ValueError, match="non-blocking"):
            channel.pipe_to(piped.sink_w)
        session.set_blocking(False)
        channel.abort()
        with pytest.raises(ValueError):
            channel.pipe_from(piped.pump_r)
        os.fstat(piped.sink_w)
        os.fstat(piped.pump_r)
    finally:
        piped.close()
