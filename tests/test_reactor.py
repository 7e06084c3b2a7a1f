# SPDX-License-Identifier: MIT
"""The reactor: many sessions per thread (``Reactor``, ``Job``, ``Bind.serve``), with real
clients (OpenSSH, paramiko)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paramiko
import pytest
from conftest import password_pw, ssh_base_args, stop_process, wait_for

from pylibssh_server import (
    DONE,
    AuthMethod,
    Bind,
    ChannelCallbacks,
    Job,
    Reactor,
    ServedSession,
    ServerCallbacks,
    Session,
    SshChannel,
    SshKey,
    StepResult,
)

SSHPASS = ("sshpass", "-p", "pw", "ssh")


def answer(channel: SshChannel, out: bytes, status: int = 0) -> bool:
    """An exec request's whole reply: ``out``, the exit status, EOF, CLOSE."""
    channel.write(out)
    channel.send_exit_status(status)
    channel.send_eof()
    channel.close()
    return True


class EchoServer:
    """``Bind.serve`` with exec answered ``echo: <command>`` (or by ``on_exec``)."""

    def __init__(self, key: SshKey, reactor: Reactor,
                 on_exec: Callable[[Session, SshChannel, str, Any], bool] | None = None,
                 **serve_kwargs: Any) -> None:
        self.bind = Bind(key=key)
        self.sessions: list[Session] = []
        self.channels: list[SshChannel] = []

        def default_exec(sess: Session, channel: SshChannel, command: str, ud: Any) -> bool:
            return answer(channel, f"echo: {command}\n".encode())

        def on_open(sess: Session, userdata: Any) -> SshChannel:
            channel = SshChannel(sess)
            channel.set_callbacks(ChannelCallbacks(on_exec_request=on_exec or default_exec))
            self.channels.append(channel)
            return channel

        def on_session(session: Session) -> None:
            self.sessions.append(session)
            session.set_server_callbacks(ServerCallbacks(
                on_auth_password=password_pw, on_channel_open_request_session=on_open))
            session.set_auth_methods(AuthMethod.PASSWORD)

        self.reactor = self.bind.serve(on_session, reactor=reactor, wait=False, **serve_kwargs)

    @property
    def port(self) -> int:
        return self.bind.port

    def close(self) -> None:
        self.bind.close()


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    with Reactor(2) as r:
        yield r


def paramiko_exec(port: int, command: str, timeout: float = 10) -> tuple[int, bytes]:
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", port), timeout))
    try:
        transport.start_client(timeout=timeout)
        transport.auth_password("user", "pw")
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.exec_command(command)
        out = b""
        while chunk := channel.recv(65536):
            out += chunk
        return channel.recv_exit_status(), out
    finally:
        transport.close()


def test_many_clients_on_two_threads(host_key: SshKey, reactor: Reactor) -> None:
    """20 OpenSSH clients at once are served by the reactor's 2 threads (no thread each)."""
    server = EchoServer(host_key, reactor)
    before = threading.active_count()
    try:
        procs = [subprocess.Popen(
            [*SSHPASS, *ssh_base_args(server.port, batch=False), "user@127.0.0.1",
             f"hello {i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(20)]
        peak = before
        for proc in procs:
            while proc.poll() is None:
                peak = max(peak, threading.active_count())
                time.sleep(0.01)
        outs = [proc.communicate(timeout=30) for proc in procs]
        assert [out for out, _ in outs] == [f"echo: hello {i}\n" for i in range(20)], outs
        assert all(proc.returncode == 0 for proc in procs)
        assert peak == before, "a session got a thread of its own"
        assert {t.name for t in reactor.threads} == {"pylibssh-reactor-0", "pylibssh-reactor-1"}
        wait_for(lambda: reactor.jobs == 1, what="the sessions' jobs to end")  # the acceptor
        assert all(s.closed for s in server.sessions)
    finally:
        server.close()
    wait_for(lambda: reactor.jobs == 0, what="the acceptor to end")


def test_served_sessions_hold_their_socket_only(host_key: SshKey, reactor: Reactor) -> None:
    """A session the reactor drives has no wake-up pipe (it never waits inside libssh): 10
    logged-in clients add 20 fds to this process (their sockets and paramiko's), where
    sessions with a pipe would add 40; a worker thread's output still wakes them."""
    server = EchoServer(host_key, reactor)
    transports: list[paramiko.Transport] = []
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(10):
            transport = paramiko.Transport(socket.create_connection(("127.0.0.1", server.port),
                                                                    10))
            transport.start_client(timeout=10)
            transport.auth_password("user", "pw")
            transports.append(transport)
        wait_for(lambda: len(server.sessions) == 10
                 and all(s.authenticated for s in server.sessions), what="10 logins")
        grown = len(os.listdir("/proc/self/fd")) - before
        assert 20 <= grown <= 22, f"{grown} fds for 10 connections"
        assert all(s._driver.wake_r < 0 for s in server.sessions)
    finally:
        for transport in transports:
            transport.close()
        server.close()
    wait_for(lambda: reactor.jobs == 0, what="the sessions and the acceptor to end")


def test_serve_own_reactor_waits_and_closes(host_key: SshKey) -> None:
    """``serve()`` without a reactor makes one; ``wait=True`` returns once the bind is
    closed and the sessions ended, and the reactor's threads are gone."""
    bind = Bind(key=host_key)
    served: list[Session] = []

    def on_session(session: Session) -> None:
        served.append(session)
        session.set_server_callbacks(ServerCallbacks(on_auth_password=password_pw))
        session.set_auth_methods(AuthMethod.PASSWORD)

    result: list[Reactor] = []
    thread = threading.Thread(target=lambda: result.append(bind.serve(on_session)))
    thread.start()
    try:
        wait_for(lambda: bind.sessions == 0 and thread.is_alive(), what="serving")
        transport = paramiko.Transport(socket.create_connection(("127.0.0.1", bind.port), 10))
        transport.start_client(timeout=10)
        transport.auth_password("user", "pw")
        assert transport.is_authenticated()
        wait_for(lambda: bind.sessions == 1, what="the session")
        bind.close()
        time.sleep(0.2)
        assert thread.is_alive(), "serve(wait=True) returned with a session still served"
        transport.close()
        thread.join(10)
        assert not thread.is_alive()
        assert all(not t.is_alive() for t in result[0].threads)
        assert served[0].closed
    finally:
        bind.close()
        thread.join(10)


def test_refused_beyond_max_sessions(host_key: SshKey, reactor: Reactor) -> None:
    """``max_sessions`` holds on the reactor: the client beyond it is closed at once."""
    server = EchoServer(host_key, reactor, max_sessions=1)
    first = paramiko.Transport(socket.create_connection(("127.0.0.1", server.port), 10))
    try:
        first.start_client(timeout=10)
        first.auth_password("user", "pw")
        second = paramiko.Transport(socket.create_connection(("127.0.0.1", server.port), 10))
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            second.start_client(timeout=10)
        second.close()
    finally:
        first.close()
        server.close()


def test_worker_thread_output_is_sent(host_key: SshKey, reactor: Reactor) -> None:
    """Blocking work goes to ``run_blocking``; what the worker writes to a channel from its
    thread is sent at once (the loop is woken to poll for it), not at the client's next
    packet."""
    def on_exec(sess: Session, channel: SshChannel, command: str, ud: Any) -> bool:
        if command == "other":
            return answer(channel, b"other\n")

        def work() -> None:
            time.sleep(0.3)  # blocking: the loop keeps serving meanwhile
            channel.write(b"x" * 300_000)  # more than the socket takes at once
            channel.send_exit_status(7)
            channel.send_eof()
            channel.close()
        reactor.run_blocking(work)
        return True

    server = EchoServer(host_key, reactor, on_exec=on_exec)
    try:
        started = time.monotonic()
        result: list[tuple[int, bytes]] = []
        with_worker = threading.Thread(target=lambda: result.append(
            paramiko_exec(server.port, "slow")))
        with_worker.start()
        time.sleep(0.05)
        # Another client is served while the worker sleeps (its exec is answered at once).
        other = paramiko_exec(server.port, "other", timeout=10)
        assert not result, "the worker's sleep held the other client up"
        with_worker.join(15)
        assert other == (0, b"other\n")
        assert result and result[0] == (7, b"x" * 300_000)
        assert time.monotonic() - started < 10
    finally:
        server.close()


def test_close_from_another_thread_mid_transfer(host_key: SshKey, reactor: Reactor) -> None:
    """Sessions closed from another thread while the reactor streams to them: the clients
    see the connection end, the reactor keeps serving others, nothing crashes."""
    channels: list[SshChannel] = []

    def on_exec(sess: Session, channel: SshChannel, command: str, ud: Any) -> bool:
        if command == "still":
            return answer(channel, b"echo: still\n")
        channels.append(channel)
        channel.write(b"y" * (4 << 20))
        return True

    server = EchoServer(host_key, reactor, on_exec=on_exec)
    try:
        procs = [subprocess.Popen(
            [*SSHPASS, *ssh_base_args(server.port, batch=False), "user@127.0.0.1", "x"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(4)]
        wait_for(lambda: len(channels) == 4, what="4 exec requests")
        closers = [threading.Thread(target=s.close) for s in list(server.sessions)]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(10)
        for proc in procs:
            proc.wait(15)
            assert proc.returncode != 0
        for channel in channels:
            with pytest.raises(ValueError):
                channel.write(b"after close")
        assert paramiko_exec(server.port, "still") == (0, b"echo: still\n")
    finally:
        for proc in procs:
            stop_process(proc)
        server.close()


def test_raising_hook_is_logged_and_session_goes_on(
        host_key: SshKey, reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A hook's exception on a reactor thread is logged; the session and the loop go on."""
    calls: list[str] = []

    def on_exec(sess: Session, channel: SshChannel, command: str, ud: Any) -> bool:
        calls.append(command)
        if command == "boom":
            raise RuntimeError("hook failed on purpose")
        return answer(channel, b"fine\n")

    server = EchoServer(host_key, reactor, on_exec=on_exec)
    try:
        with caplog.at_level(logging.ERROR, logger="pylibssh_server"):
            transport = paramiko.Transport(socket.create_connection(("127.0.0.1", server.port)))
            transport.start_client(timeout=10)
            transport.auth_password("user", "pw")
            bad = transport.open_session(timeout=10)
            with pytest.raises(paramiko.SSHException):
                bad.exec_command("boom")  # the failed hook refuses the request
            good = transport.open_session(timeout=10)
            good.settimeout(10)
            good.exec_command("ok")
            assert good.recv(100) == b"fine\n"
            assert good.recv_exit_status() == 0
            transport.close()
        assert calls == ["boom", "ok"]
        assert any("hook failed on purpose" in r.getMessage() or
                   (r.exc_info and "hook failed on purpose" in str(r.exc_info[1]))
                   for r in caplog.records)
    finally:
        server.close()


class PipeJob(Job):
    """A job reading a pipe: counts bytes, ends at EOF; a timer ticks meanwhile."""

    def __init__(self, fd: int, tick: float) -> None:
        super().__init__()
        self.fd = fd
        self.tick = tick
        self.data = b""
        self.ticks = 0
        self.finished_on: threading.Thread | None = None

    def poll_set(self) -> dict[int, int]:
        return {self.fd: 1}  # POLLIN

    def step(self) -> StepResult:
        try:
            chunk = os.read(self.fd, 4096)
        except BlockingIOError:
            self.ticks += 1
            return self.tick
        if not chunk:
            return DONE
        self.data += chunk
        return self.tick

    def finish(self) -> None:
        self.finished_on = threading.current_thread()
        os.close(self.fd)


def test_custom_jobs_fds_and_timers(reactor: Reactor) -> None:
    """Jobs are stepped when their fd is ready and when their timer is due, finish once on
    a loop thread; ``close()`` stops the ones still running."""
    r, w = os.pipe2(os.O_NONBLOCK)
    job = PipeJob(r, 0.02)
    ended: list[Job] = []
    job.add_done_callback(ended.append)
    reactor.add(job)
    os.write(w, b"abc")
    wait_for(lambda: job.data == b"abc", what="the pipe's bytes")
    wait_for(lambda: job.ticks >= 3, what="the job's timer")
    os.write(w, b"def")
    os.close(w)
    wait_for(lambda: ended == [job], what="the job's end at EOF")
    assert job.data == b"abcdef"
    assert job.finished_on in reactor.threads

    r2, w2 = os.pipe2(os.O_NONBLOCK)
    idle = PipeJob(r2, 3600)

    class Stoppable(PipeJob):
        stopped = False

        def stop(self) -> None:
            self.stopped = True
            self.wake()

        def step(self) -> StepResult:
            return DONE if self.stopped else super().step()

    r3, w3 = os.pipe2(os.O_NONBLOCK)
    stoppable = Stoppable(r3, 3600)
    reactor.add(stoppable)
    reactor.add(idle)
    idle.stop()  # the default stop only wakes: the job decides (this one reads nothing)
    time.sleep(0.1)
    assert idle.finished_on is None
    os.close(w2)  # EOF ends `idle`; `stoppable` ends at close()
    wait_for(lambda: idle.finished_on is not None, what="EOF")
    reactor.close()
    os.close(w3)
    assert stoppable.stopped and stoppable.finished_on is not None
    assert all(not t.is_alive() for t in reactor.threads)
    with pytest.raises(RuntimeError):
        reactor.add(PipeJob(os.open(os.devnull, os.O_RDONLY), 1))


def test_served_session_login_grace(host_key: SshKey, reactor: Reactor) -> None:
    """A client that never finishes the key exchange is dropped after ``login_grace``."""
    server = EchoServer(host_key, reactor, login_grace=0.5)
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), 10)
        sock.settimeout(10)
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(4096):  # the server's banner, then EOF at the grace end
            data += chunk
        assert data.startswith(b"SSH-2.0-")
        assert 0.4 < time.monotonic() - started < 5
        sock.close()
    finally:
        server.close()


def test_served_session_api(host_key: SshKey, reactor: Reactor) -> None:
    """``on_session`` may return its own ``ServedSession`` subclass: ``on_ready`` after the
    key exchange, ``after_poll`` sets the next step's deadline or ends the session."""
    bind = Bind(key=host_key)
    readies: list[Session] = []
    linger_fds: list[int] = []

    class Limited(ServedSession):
        def on_ready(self) -> None:
            readies.append(self.session)
            assert self.event is not None
            linger_fds.append(self.event.linger_fd)  # the loop's epoll (see test_pipes)
            self.until = time.monotonic() + 0.5

        def after_poll(self) -> StepResult:
            left = self.until - time.monotonic()
            return DONE if left <= 0 else left

    def on_session(session: Session) -> Job:
        session.set_server_callbacks(ServerCallbacks(on_auth_password=password_pw))
        session.set_auth_methods(AuthMethod.PASSWORD)
        return Limited(session)

    bind.serve(on_session, reactor=reactor, wait=False)
    try:
        transport = paramiko.Transport(socket.create_connection(("127.0.0.1", bind.port), 10))
        transport.start_client(timeout=10)
        transport.auth_password("user", "pw")
        wait_for(lambda: not transport.is_active(), timeout=5, what="the session's end")
        assert len(readies) == 1 and readies[0].closed
        assert linger_fds[0] >= 0
        transport.close()
    finally:
        bind.close()


def test_use_after_close(host_key: SshKey) -> None:
    reactor = Reactor(1)
    reactor.close()
    reactor.close()  # idempotent
    with pytest.raises(RuntimeError):
        reactor.run_blocking(print)
    bind = Bind(key=host_key)
    bind.close()
    with pytest.raises(ValueError):
        bind.serve(lambda s: None, wait=False)
    with pytest.raises(ValueError):
        Reactor(0)


def test_a_stream_does_not_starve_other_sessions_of_its_thread() -> None:
    """On a one-thread reactor, a client streaming into a command leaves the thread free
    enough for another client's commands to be answered promptly (a poll batch ends after
    a few milliseconds even while bytes keep coming)."""
    from pylibssh_server.demo import DemoServer

    with DemoServer(password="pw", reactor_threads=1) as server:
        streaming = paramiko.Transport(socket.create_connection(("127.0.0.1", server.port)))
        other = paramiko.Transport(socket.create_connection(("127.0.0.1", server.port)))
        try:
            for transport in (streaming, other):
                transport.start_client(timeout=10)
                transport.auth_password("user", "pw")
            channel = streaming.open_session(timeout=10)
            channel.exec_command("cat > /dev/null")
            done = threading.Event()

            def pump() -> None:
                chunk = b"z" * 65536
                deadline = time.monotonic() + 20
                while not done.is_set() and time.monotonic() < deadline:
                    channel.sendall(chunk)

            pumping = threading.Thread(target=pump)
            pumping.start()
            try:
                time.sleep(0.3)  # the stream is under way
                waits = []
                for i in range(5):
                    started = time.monotonic()
                    session = other.open_session(timeout=10)
                    session.exec_command(f"echo {i}")
                    assert session.makefile().read() == f"{i}\n".encode()
                    waits.append(time.monotonic() - started)
                    session.close()
                assert pumping.is_alive(), "the stream ended before the other client's turns"
            finally:
                done.set()
                pumping.join(30)
            assert max(waits) < 2.0, waits
        finally:
            streaming.close()
            other.close()
