# SPDX-License-Identifier: MIT
"""Faults: clients killed mid-transfer, the server stopped mid-transfer, commands killed,
forward targets that reset, and an exception in every kind of user hook.  Each ends in a
clean state: the affected channel closes, the rest keep working, nothing accepted is lost.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko
import pytest
from conftest import Loopback, ssh_base_args, stop_process

from pylibssh_server import (
    POLLIN,
    AuthStatus,
    ChannelCallbacks,
    Session,
    SessionEvent,
    SshChannel,
)
from pylibssh_server.demo import DemoServer
from stress._support import (
    ProcStats,
    cli_server,
    paramiko_login,
    pick,
    record,
    run_command,
    settled,
    wait_until,
)


@pytest.mark.usefixtures("data_path")
@pytest.mark.parametrize("direction", ["download", "upload"])
def test_client_killed_mid_transfer(direction: str) -> None:
    """An OpenSSH client SIGKILLed in the middle of a transfer: its command is killed, its
    thread and fds are released, the server keeps serving."""
    rounds = pick(3, 20)
    command = "head -c 4G /dev/zero" if direction == "download" else "cat > /dev/null"
    start = time.monotonic()
    with cli_server() as server:
        baseline = server.stats()
        for _ in range(rounds):
            with open("/dev/zero", "rb") as zero:
                client = subprocess.Popen(
                    ["sshpass", "-p", "foo", "ssh", *ssh_base_args(server.port, batch=False),
                     "u@127.0.0.1", command],
                    stdin=zero if direction == "upload" else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: server.stats().children >= 1, 10, "the command started")
                if direction == "download":
                    assert client.stdout is not None
                    assert len(client.stdout.read(1 << 20)) == 1 << 20
                else:
                    time.sleep(0.3)
            finally:
                client.kill()
                stop_process(client)
            settled(server, baseline)
        transport = paramiko_login(server.port)
        try:
            assert run_command(transport, "echo alive") == (0, b"alive\n")
        finally:
            transport.close()
        after = settled(server, baseline)
    record(f"client killed mid-{direction}", tried=rounds, faults=rounds, before=baseline,
           after=after, seconds=time.monotonic() - start)


class _CountingSink:
    """A TCP server on 127.0.0.1 counting every byte it receives, per connection."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(30)
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(30)
            while chunk := conn.recv(1 << 16):
                self.received += len(chunk)
        self.closed.set()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def _send_until_cut(chan: paramiko.Channel, sent: list[int]) -> None:
    chunk = os.urandom(1 << 15)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            sent[0] += chan.send(chunk)
        except (OSError, EOFError, paramiko.SSHException):
            return
        if chan.closed or not chan.get_transport().is_active():
            return


@pytest.mark.usefixtures("data_path")
@pytest.mark.parametrize("target", ["forward", "exec"])
def test_server_stopped_mid_upload_delivers_every_accepted_byte(target: str,
                                                                 tmp_path: Any) -> None:
    """The server stops while a client streams into a forward (or ``cat > file``): every
    byte the server had taken from the client reaches the target, and the stop ends every
    thread and child."""
    rounds = pick(2, 10)
    start = time.monotonic()
    baseline = ProcStats.of()
    total_accepted = total_received = 0
    for i in range(rounds):
        sink = _CountingSink() if target == "forward" else None
        out = tmp_path / f"upload-{i}"
        server = DemoServer(password="foo").start()
        transport = paramiko_login(server.port)
        sender: threading.Thread | None = None
        try:
            if sink is not None:
                chan = transport.open_channel("direct-tcpip", ("127.0.0.1", sink.port),
                                              ("127.0.0.1", 1), timeout=10)
            else:
                chan = transport.open_session(timeout=10)
                chan.exec_command(f"cat > {out}")
            sent = [0]
            sender = threading.Thread(target=_send_until_cut, args=(chan, sent), daemon=True)
            sender.start()
            wait_until(lambda s=server: s.clients[0].bytes_in > (4 << 20), 20, "data flowing")
            server.stop()
            sender.join(30)
            assert not sender.is_alive()
            accepted = server.clients[0].bytes_in
            if sink is not None:
                assert sink.closed.wait(10)
                received = sink.received
            else:
                received = out.stat().st_size
            assert received == accepted
            assert 0 < accepted <= sent[0]
            total_accepted += accepted
            total_received += received
        finally:
            transport.close()
            server.close()
            if sink is not None:
                sink.close()
    wait_until(lambda: ProcStats.of().threads <= baseline.threads, 10, "threads ended")
    after = ProcStats.of()
    assert after.children <= baseline.children
    record(f"server stopped mid-upload ({target}): accepted vs delivered", tried=rounds,
           faults=rounds, sent=total_accepted, received=total_received,
           seconds=time.monotonic() - start)


@pytest.mark.usefixtures("data_path")
def test_server_stopped_mid_download_ends_everything() -> None:
    """Stopping the server during ``head -c 4G /dev/zero`` to several clients: each client
    sees the connection end, every thread and command ends promptly."""
    clients = pick(4, 16)
    baseline = ProcStats.of()
    server = DemoServer(password="foo").start()
    transports = [paramiko_login(server.port) for _ in range(clients)]
    try:
        chans = []
        for transport in transports:
            chan = transport.open_session(timeout=10)
            chan.exec_command("head -c 4G /dev/zero")
            chans.append(chan)
        for chan in chans:
            chan.settimeout(10)
            assert len(chan.recv(1 << 16)) > 0
        start = time.monotonic()
        server.stop()
        stop_seconds = time.monotonic() - start
        for transport in transports:
            wait_until(lambda t=transport: not t.is_active(), 10, "client disconnected")
    finally:
        for transport in transports:
            transport.close()
        server.close()
    wait_until(lambda: ProcStats.of().threads <= baseline.threads, 10, "threads ended")
    assert ProcStats.of().children <= baseline.children
    assert stop_seconds < 10
    record("server stopped mid-download", tried=clients, faults=1, seconds=stop_seconds)


@pytest.mark.usefixtures("data_path")
def test_killed_command_ends_its_channel_only() -> None:
    """A command killed with SIGKILL reports exit-signal KILL on its channel; a second
    command on the same connection keeps running and finishes normally."""
    rounds = pick(3, 20)
    with cli_server() as server:
        baseline = server.stats()
        transport = paramiko_login(server.port)
        try:
            for _ in range(rounds):
                victim = transport.open_session(timeout=10)
                victim.settimeout(10)
                victim.exec_command("echo $$; exec sleep 600")
                pid = int(victim.makefile("rb").readline())
                other = transport.open_session(timeout=10)
                other.settimeout(10)
                other.exec_command("sleep 0.5; echo done")
                os.kill(pid, signal.SIGKILL)
                assert victim.recv_exit_status() == -1  # paramiko's value for exit-signal
                assert other.makefile("rb").read() == b"done\n"
                assert other.recv_exit_status() == 0
                victim.close()
                other.close()
        finally:
            transport.close()
        after = settled(server, baseline)
    record("command killed", tried=rounds, faults=rounds, before=baseline, after=after)


def _resetting_target() -> tuple[socket.socket, threading.Thread]:
    """A target that reads a little, then resets the connection (RST, not FIN)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def run() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(1024)
            # SO_LINGER on with a zero timeout: close() sends RST.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.usefixtures("data_path")
def test_forward_target_reset_closes_that_channel(echo_server: int) -> None:
    """A forward whose target resets the connection is closed; the connection's other
    forwards and new ones keep working."""
    rounds = pick(5, 50)
    listener, thread = _resetting_target()
    with cli_server() as server:
        transport = paramiko_login(server.port)
        baseline = server.stats()
        try:
            steady = transport.open_channel("direct-tcpip", ("127.0.0.1", echo_server),
                                            ("127.0.0.1", 1), timeout=10)
            steady.settimeout(10)
            for i in range(rounds):
                chan = transport.open_channel("direct-tcpip",
                                              ("127.0.0.1", listener.getsockname()[1]),
                                              ("127.0.0.1", 1), timeout=10)
                chan.settimeout(10)
                chan.sendall(b"x" * 2048)
                while chan.recv(1024):  # EOF once the server closes the channel
                    pass
                wait_until(lambda c=chan: c.closed or c.eof_received, 10, "reset forward ends")
                chan.close()
                steady.sendall(b"ping %d" % i)
                assert steady.recv(64) == b"ping %d" % i
            steady.close()
        finally:
            transport.close()
            listener.close()
            thread.join(5)
        after = settled(server, baseline)
    record("forward target reset", tried=rounds, faults=rounds, before=baseline, after=after)


# ---- an exception in every kind of hook ------------------------------------------------


class HookFailure(Exception):
    """Raised by the hook under test."""


def _fail(*args: Any) -> Any:
    raise HookFailure("hook failed")


def _accept_pw(sess: Session, user: str, password: str, userdata: Any) -> AuthStatus:
    return AuthStatus.SUCCESS if password == "pw" else AuthStatus.DENIED


def _exec_echo(sess: Session, channel: SshChannel, command: str, userdata: Any) -> bool:
    channel.write(b"ok\n")
    channel.send_exit_status(0)
    channel.send_eof()
    channel.close()
    return True


def _send_signal(chan: paramiko.Channel) -> None:
    msg = paramiko.Message()
    msg.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    msg.add_int(chan.remote_chanid)
    msg.add_string("signal")
    msg.add_boolean(False)
    msg.add_string("TERM")
    chan.transport._send_user_message(msg)


def _after_shell(action: Callable[[paramiko.Channel], Any]) -> Callable[[paramiko.Channel], Any]:
    def run(chan: paramiko.Channel) -> None:
        chan.get_pty("vt100", 80, 24)
        chan.invoke_shell()
        action(chan)
    return run


#: hook -> what the client does on a fresh channel to make the server call it.
CHANNEL_TRIGGERS: dict[str, Callable[[paramiko.Channel], Any]] = {
    "on_env_request": lambda ch: ch.set_environment_variable("A", "b"),
    "on_eof": _after_shell(lambda ch: ch.shutdown_write()),
    "on_close": _after_shell(lambda ch: ch.close()),
    "on_data": _after_shell(lambda ch: ch.sendall(b"data")),
    "data_room": _after_shell(lambda ch: ch.sendall(b"data")),
    "on_signal": _after_shell(_send_signal),
    "on_pty_window_change": _after_shell(lambda ch: ch.resize_pty(100, 40)),
}


def _channel_hooks(failing: str) -> dict[str, Any]:
    hooks: dict[str, Any] = {
        "on_exec_request": _exec_echo,
        "on_pty_request": lambda *a: True,
        "on_shell_request": lambda *a: True,
    }
    hooks[failing] = _fail
    if failing == "data_room":
        hooks["on_data"] = lambda *a: None  # data_room is asked only for an on_data hook
    return hooks


def _still_works(loopback: Loopback, transport: paramiko.Transport) -> None:
    """A new channel on the same connection runs a command; the failing hook may fire
    again for its own channel's later events (its exceptions are ignored here)."""
    def exec_on_new_channel() -> bytes:
        chan = transport.open_session(timeout=10)
        chan.settimeout(10)
        chan.exec_command("anything")
        return bytes(chan.makefile("rb").read())

    future = loopback.submit(exec_on_new_channel)
    assert loopback.event is not None
    deadline = time.monotonic() + 10
    while not future.done():
        assert time.monotonic() < deadline, "the session stopped serving"
        try:
            loopback.event.dopoll(0.05)
        except HookFailure:
            pass
    assert future.result(0) == b"ok\n"


@pytest.mark.parametrize("hook", list(CHANNEL_TRIGGERS))
def test_exception_in_channel_hook(loopback: Loopback, hook: str) -> None:
    """A raising channel hook: dopoll re-raises it, and the session serves new channels."""
    def on_open(sess: Session, userdata: Any) -> SshChannel:
        channel = SshChannel(sess)
        channel.set_callbacks(ChannelCallbacks(**_channel_hooks(hook)))
        return channel

    transport = loopback.login(on_channel_open_request_session=on_open)
    chan = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    future = loopback.submit(CHANNEL_TRIGGERS[hook], chan)
    with pytest.raises(HookFailure):
        loopback.poll_until(lambda: False, timeout=10)
    loopback.poll_until(future.done)
    _still_works(loopback, transport)


def test_exception_in_auth_none_hook(loopback: Loopback) -> None:
    """A raising auth-none hook denies; the client then logs in with a password."""
    transport = loopback.paramiko()
    loopback.accept(_server_callbacks(on_auth_none=_fail))
    future = loopback.submit(transport.auth_none, "user")
    with pytest.raises(HookFailure):
        loopback.poll_until(future.done)
    loopback.poll_until(future.done)
    with pytest.raises(paramiko.BadAuthenticationType):
        future.result(0)
    loopback.wait_done(loopback.submit(transport.auth_password, "user", "pw"))
    _still_works(loopback, transport)


def test_exception_in_global_request_callback(loopback: Loopback) -> None:
    """A raising global-request callback gets the default (failure) reply; the session goes on."""
    transport = loopback.login(on_channel_open_request_session=lambda s, u: _echo_channel(s))
    assert loopback.session is not None
    loopback.session.set_global_request_callback(_fail)
    future = loopback.submit(transport.global_request, "keepalive@openssh.com", None, True)
    with pytest.raises(HookFailure):
        loopback.poll_until(future.done)
    loopback.poll_until(future.done)
    assert future.result(0) is None  # refused
    _still_works(loopback, transport)


def test_exception_in_fd_handler(loopback: Loopback) -> None:
    """A raising SessionEvent fd handler: dopoll re-raises it, the event keeps polling."""
    transport = loopback.login(on_channel_open_request_session=lambda s, u: _echo_channel(s))
    assert loopback.event is not None
    r, w = os.pipe()
    try:
        loopback.event.add_fd(r, lambda fd, revents: _fail(), POLLIN)
        os.write(w, b"x")
        with pytest.raises(HookFailure):
            loopback.poll_until(lambda: False, timeout=10)
        loopback.event.remove_fd(r)
        _still_works(loopback, transport)
    finally:
        os.close(r)
        os.close(w)


def _echo_channel(sess: Session) -> SshChannel:
    channel = SshChannel(sess)
    channel.set_callbacks(ChannelCallbacks(on_exec_request=_exec_echo))
    return channel


def _server_callbacks(**hooks: Any) -> Any:
    from pylibssh_server import ServerCallbacks

    return ServerCallbacks(on_auth_password=_accept_pw,
                           on_channel_open_request_session=lambda s, u: _echo_channel(s),
                           **hooks)


def test_exception_in_listen_handler(host_key: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A ``Bind.listen`` handler that raises for one client: that session is closed (the
    client sees the connection end), the error is logged, and the next client is served."""
    from pylibssh_server import Bind

    served: list[str] = []

    def handler(session: Session) -> None:
        if not served:
            served.append("failed")
            raise HookFailure("handler failed")
        session.set_server_callbacks(_server_callbacks())
        session.set_blocking(False)
        session.handle_key_exchange(timeout=10)
        event = SessionEvent(session)
        served.append("served")
        deadline = time.monotonic() + 20
        while session.is_connected and time.monotonic() < deadline:
            event.dopoll(0.1)
        event.close()

    bind = Bind(key=host_key)
    thread = threading.Thread(target=bind.listen, args=(handler,), daemon=True)
    thread.start()
    try:
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            paramiko_login(bind.port, password="pw")
        transport = paramiko_login(bind.port, password="pw")
        try:
            assert run_command(transport, "x") == (0, b"ok\n")
        finally:
            transport.close()
    finally:
        bind.close()
        thread.join(10)
    assert not thread.is_alive()
    assert served == ["failed", "served"]
    assert "session handler failed" in caplog.text
