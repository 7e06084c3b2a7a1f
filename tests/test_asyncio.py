# SPDX-License-Identifier: MIT
"""asyncio: the DemoServer from ``async def`` tests, and an asyncio server (coroutine hooks)
with asyncssh as the client in the same loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import asyncssh
import pytest
from conftest import password_pw

from pylibssh_server import (
    AuthMethod,
    AuthStatus,
    Bind,
    ChannelCallbacks,
    Reactor,
    ServedSession,
    ServerCallbacks,
    Session,
    SshChannel,
    SshKey,
)
from pylibssh_server.aio import AsyncioReactor, serve, wait_ended
from pylibssh_server.demo import DemoServer

pytestmark = pytest.mark.asyncio

CLIENT = {"known_hosts": None, "client_keys": None, "agent_path": None, "config": None}


class RecordingServer(DemoServer):
    """A DemoServer that notes the threads its start and close run on."""

    threads: list[threading.Thread]

    def start(self) -> DemoServer:
        self.threads = [threading.current_thread()]
        return super().start()

    def close(self) -> None:
        self.threads.append(threading.current_thread())
        super().close()


async def test_demo_server_in_async_tests() -> None:
    """``async with DemoServer``: started and closed off the loop's thread (the loop keeps
    running: a ticker task ticks meanwhile), asyncssh in the same loop runs a command."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        async with RecordingServer(password="foo") as server:
            async with asyncssh.connect("127.0.0.1", server.port, username="u",
                                        password="foo", **CLIENT) as conn:
                result = await conn.run("echo hi; exit 3")
            assert (result.stdout, result.exit_status) == ("hi\n", 3)
            assert server.clients[0].authenticated
        assert threading.current_thread() not in server.threads
        assert len(server.threads) == 2 and not server.is_running
        assert ticks > 0
    finally:
        ticking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticking


class AsyncServer:
    """An asyncio server: ``on_session`` and the channel hooks are coroutines."""

    def __init__(self) -> None:
        self.jobs: list[ServedSession] = []
        self.hook_threads: set[threading.Thread] = set()

    def channel_hooks(self) -> ChannelCallbacks:
        async def on_exec(sess: Session, channel: SshChannel, command: str, ud: Any) -> None:
            self.hook_threads.add(threading.current_thread())
            if command == "fail":
                raise RuntimeError("coroutine hook failed on purpose")
            await asyncio.sleep(0.05)  # the loop (and the client in it) keeps going
            channel.write(f"async: {command}\n".encode())
            channel.send_exit_status(0)
            channel.send_eof()
            channel.close()

        async def on_shell(sess: Session, channel: SshChannel, ud: Any) -> None:
            self.hook_threads.add(threading.current_thread())

        async def on_data(sess: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                          ud: Any) -> None:
            # Tasks start in the order the hooks ran: this one writes before on_eof's.
            channel.write(data.upper())

        async def on_eof(sess: Session, channel: SshChannel, ud: Any) -> None:
            channel.send_exit_status(0)
            channel.send_eof()
            channel.close()

        return ChannelCallbacks(on_exec_request=on_exec, on_shell_request=on_shell,
                                on_data=on_data, on_eof=on_eof)

    async def on_session(self, session: Session) -> ServedSession:
        await asyncio.sleep(0)  # a coroutine on_session is awaited before the key exchange

        def on_open(sess: Session, userdata: Any) -> SshChannel:
            channel = SshChannel(sess)
            channel.set_callbacks(self.channel_hooks())
            return channel

        session.set_server_callbacks(ServerCallbacks(
            on_auth_password=password_pw, on_channel_open_request_session=on_open))
        session.set_auth_methods(AuthMethod.PASSWORD)
        job = ServedSession(session, login_grace=10)
        self.jobs.append(job)
        return job


async def test_asyncio_server_with_coroutine_hooks(caplog: pytest.LogCaptureFixture) -> None:
    """Sessions driven from the running loop (no thread of their own), coroutine hooks
    served as tasks, asyncssh as the client in the same loop; a failing coroutine closes
    its channel; aclose() leaves no task pending."""
    threads_before = set(threading.enumerate())
    app = AsyncServer()
    with SshKey.generate() as key, Bind(key=key) as bind:
        async with AsyncioReactor() as reactor:
            await serve(bind, app.on_session, reactor)
            async with asyncssh.connect("127.0.0.1", bind.port, username="u", password="pw",
                                        **CLIENT) as conn:
                results = await asyncio.gather(*(conn.run(f"cmd {i}") for i in range(5)))
                assert [r.stdout for r in results] == [f"async: cmd {i}\n" for i in range(5)]
                assert all(r.exit_status == 0 for r in results)
                echoed = await conn.run(input="hello\nworld\n")  # a shell: on_data echoes
                assert echoed.stdout == "HELLO\nWORLD\n"
                with caplog.at_level(logging.ERROR, logger="pylibssh_server"):
                    failed = await conn.run("fail")
                assert failed.exit_status is None  # the channel closed, no exit status
                assert "coroutine hook failed on purpose" in caplog.text
            assert app.hook_threads == {threading.current_thread()}
            started = {t.name for t in set(threading.enumerate()) - threads_before}
            assert not [name for name in started if name.startswith("pylibssh")], started
            await asyncio.wait_for(wait_ended(app.jobs[0]), 10)
            assert app.jobs[0].session.closed
            # asyncio's own readers are not in the reactor's epoll: no waiting in C for them.
            assert app.jobs[0].event is not None and app.jobs[0].event.linger_fd == -1
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_wait_cancelled_and_shutdown_with_clients() -> None:
    """Cancelling a task that waits for a session leaves the session alone; closing the
    reactor with a client still connected ends its session and its tasks cleanly."""
    app = AsyncServer()
    with SshKey.generate() as key, Bind(key=key) as bind:
        reactor = AsyncioReactor()
        await serve(bind, app.on_session, reactor)
        conn = await asyncssh.connect("127.0.0.1", bind.port, username="u", password="pw",
                                      **CLIENT)
        try:
            waiter = asyncio.create_task(wait_ended(app.jobs[0]))
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert not app.jobs[0].ended
            assert (await conn.run("still")).stdout == "async: still\n"
            # A hook's task in progress when the reactor closes: cancelled with it.
            process = await conn.create_process("slow")
            await reactor.aclose()
            assert app.jobs[0].ended and app.jobs[0].session.closed
            await asyncio.wait_for(conn.wait_closed(), 10)
            process.close()
        finally:
            conn.close()
            await reactor.aclose()
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_coroutine_where_an_answer_is_needed_is_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    """An auth hook must answer at once: a coroutine is refused (denied, TypeError logged);
    on a thread reactor a coroutine channel hook is refused the same way."""
    async def on_password(sess: Session, user: str, password: str, ud: Any) -> AuthStatus:
        return AuthStatus.SUCCESS  # never awaited: libssh needs the answer now

    def on_session(session: Session) -> None:
        session.set_server_callbacks(ServerCallbacks(on_auth_password=on_password))
        session.set_auth_methods(AuthMethod.PASSWORD)

    with SshKey.generate() as key, Bind(key=key) as bind:
        async with AsyncioReactor() as reactor:
            await serve(bind, on_session, reactor)
            with caplog.at_level(logging.ERROR, logger="pylibssh_server"):
                with pytest.raises(asyncssh.PermissionDenied):
                    await asyncssh.connect("127.0.0.1", bind.port, username="u",
                                           password="pw", **CLIENT)
                await asyncio.sleep(0.1)
            assert "cannot be a coroutine" in caplog.text


async def test_async_on_session_needs_the_asyncio_reactor(
        caplog: pytest.LogCaptureFixture) -> None:
    """A coroutine ``on_session`` on a thread reactor: the session is refused, logged."""
    app = AsyncServer()
    with SshKey.generate() as key, Bind(key=key) as bind, Reactor(1) as reactor:
        bind.serve(app.on_session, reactor=reactor, wait=False)
        with caplog.at_level(logging.ERROR, logger="pylibssh_server"), \
                    pytest.raises((asyncssh.Error, OSError)):
            await asyncssh.connect("127.0.0.1", bind.port, username="u", password="pw",
                                   **CLIENT)
        assert "AsyncioReactor" in caplog.text
        bind.close()
