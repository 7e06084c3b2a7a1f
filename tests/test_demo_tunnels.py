# SPDX-License-Identifier: MIT
"""Tunnels the server opens towards the client: reverse forwarding (``ssh -R``) and agent
forwarding (``ssh -A``), with OpenSSH, paramiko and asyncssh."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest
from conftest import stop_process, wait_for

from pylibssh_server.demo import DemoServer

TIMEOUT = 30


def ssh_popen(server: DemoServer, *args: str) -> subprocess.Popen[str]:
    """``ssh`` (password auth through sshpass, the server's real host key checked)."""
    argv = ["sshpass", "-p", "foo", "ssh", "-o", "PubkeyAuthentication=no",
            "-o", "ExitOnForwardFailure=yes", *args, *server.ssh_args("u")]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def allocated_port(proc: subprocess.Popen[str]) -> int:
    """The port OpenSSH reports for ``-R 0:...`` ("Allocated port N for remote forward")."""
    assert proc.stderr is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"Allocated port (\d+) for remote forward", line)
        if found:
            return int(found.group(1))
        assert line, "ssh ended without allocating a port"
    raise AssertionError("no allocated port")


def wait_listening(port: int, listening: bool = True) -> None:
    def state() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return listening
        except OSError:
            return not listening
    wait_for(state, TIMEOUT, f"port {port} {'open' if listening else 'closed'}")


def round_trip(port: int, size: int, seed: int) -> None:
    """Send ``size`` bytes through the echo at ``port``; the same bytes come back."""
    payload = hashlib.shake_256(seed.to_bytes(4, "big")).digest(64) * (size // 64)
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # half-close: the echo still answers
        sender = threading.Thread(target=send)
        sender.start()
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        sender.join(TIMEOUT)
    assert (len(got), hashlib.sha256(got).digest()) == (len(payload),
                                                         hashlib.sha256(payload).digest())


@pytest.mark.usefixtures("data_path")
def test_openssh_reverse_forward_port_0(demo_server: DemoServer, echo_server: int) -> None:
    """``ssh -R 0:127.0.0.1:ECHO -N``: the allocated port reaches the echo server; 10
    concurrent connections carry 64 MiB each way byte-exact (half-close included); the
    listener closes when the client leaves; the events name it all."""
    proc = ssh_popen(demo_server, "-N", "-R", f"0:127.0.0.1:{echo_server}")
    try:
        port = allocated_port(proc)
        errors: list[BaseException] = []

        def one(seed: int) -> None:
            try:
                round_trip(port, (64 << 20) // 10, seed)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert [t.is_alive() for t in threads] == [False] * 10
        assert errors == []
    finally:
        stop_process(proc)
    wait_listening(port, listening=False)
    log = demo_server.clients[0].callback_log
    assert log["tcpip_forward"] == [("localhost", 0, port)]
    opens = log["channel_open_forwarded_tcpip"]
    assert len(opens) == 10
    assert {(a, p, o) for a, p, o, _ in opens} == {("localhost", port, "127.0.0.1")}


def test_openssh_fixed_port_refusals_and_cancel(demo_server: DemoServer, echo_server: int,
                                                tmp_path: Path) -> None:
    """A fixed port works; a non-loopback bind address and a privileged port are refused
    (``ExitOnForwardFailure``: ssh exits 255); ``-O cancel`` through a ControlMaster closes
    the listener."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        fixed = probe.getsockname()[1]
    control = tmp_path / "cm"
    master = ssh_popen(demo_server, "-N", "-M", "-S", str(control), "-R",
                       f"127.0.0.1:{fixed}:127.0.0.1:{echo_server}")
    try:
        wait_listening(fixed)
        round_trip(fixed, 1 << 16, 1)
        cancel = subprocess.run(
            ["ssh", "-S", str(control), "-O", "cancel", "-R",
             f"127.0.0.1:{fixed}:127.0.0.1:{echo_server}", *demo_server.ssh_args("u")],
            capture_output=True, text=True, timeout=TIMEOUT)
        assert cancel.returncode == 0, cancel.stderr
        wait_listening(fixed, listening=False)
    finally:
        stop_process(master)
    for spec in (f"0.0.0.0:0:127.0.0.1:{echo_server}", f"127.0.0.1:80:127.0.0.1:{echo_server}"):
        refused = ssh_popen(demo_server, "-N", "-R", spec)
        try:
            assert refused.wait(TIMEOUT) == 255
        finally:
            stop_process(refused)
    logs = [c.callback_log for c in demo_server.clients]
    assert logs[0]["tcpip_forward"] == [("127.0.0.1", fixed, fixed)]
    assert logs[0]["cancel_tcpip_forward"] == [("127.0.0.1", fixed)]
    assert [log["tcpip_forward"] for log in logs[1:]] == [[("0.0.0.0", 0, None)],
                                                          [("127.0.0.1", 80, None)]]


def test_remote_forward_any_allows_other_addresses(demo_server_factory: Any,
                                                   echo_server: int) -> None:
    """``remote_forward_allow`` decides: here an explicit IPv6 loopback bind is granted and
    a policy refusing everything refuses even loopback."""
    server = demo_server_factory(password="foo", remote_forward_allow=lambda a, p: a == "::1")
    proc = ssh_popen(server, "-N", "-R", f"[::1]:0:127.0.0.1:{echo_server}")
    try:
        port = allocated_port(proc)
        with socket.create_connection(("::1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"v6")
            assert sock.recv(16) == b"v6"
    finally:
        stop_process(proc)
    refused = ssh_popen(server, "-N", "-R", f"0:127.0.0.1:{echo_server}")
    try:
        assert refused.wait(TIMEOUT) == 255
    finally:
        stop_process(refused)


@pytest.mark.usefixtures("data_path")
def test_paramiko_and_asyncssh_reverse_forwards(demo_server: DemoServer,
                                                echo_server: int) -> None:
    """paramiko ``request_port_forward`` and asyncssh ``forward_remote_port`` / ``start_server``:
    a connection to the bound port reaches the client's handler with the originator's
    address; cancelling closes the port."""
    transport = paramiko.Transport(("127.0.0.1", demo_server.port))
    try:
        transport.start_client(timeout=TIMEOUT)
        transport.auth_password("u", "foo")
        port = transport.request_port_forward("127.0.0.1", 0)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            chan = transport.accept(TIMEOUT)
            assert chan is not None
            assert chan.origin_addr[0] == "127.0.0.1"
            sock.sendall(b"ping")
            assert chan.recv(4) == b"ping"
            chan.sendall(b"pong")
            assert sock.recv(4) == b"pong"
            chan.close()
        transport.cancel_port_forward("127.0.0.1", port)
        wait_listening(port, listening=False)
    finally:
        transport.close()

    async def scenario() -> tuple[bytes, int]:
        got = asyncio.get_running_loop().create_future()

        def on_connection(orig_host: str, orig_port: int) -> Any:
            class Session(asyncssh.SSHTCPSession):
                def data_received(self, data: bytes, datatype: Any) -> None:
                    self._chan.write(data.upper())
                    self._chan.write_eof()

                def connection_made(self, chan: Any) -> None:
                    self._chan = chan
            got.set_result(orig_host)
            return Session()

        async with asyncssh.connect(**demo_server.asyncssh_kwargs()) as conn:
            listener = await conn.create_server(on_connection, "127.0.0.1", 0)
            port = listener.get_port()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"quiet")
            answer = await asyncio.wait_for(reader.read(), TIMEOUT)
            assert await got == "127.0.0.1"
            writer.close()
            listener.close()
            await listener.wait_closed()
            # forward_remote_port: the client relays to a port of its own (the echo).
            forward = await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", echo_server)
            reader, writer = await asyncio.open_connection("127.0.0.1", forward.get_port())
            writer.write(b"echo me")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"echo me"
            writer.close()
            forward.close()
            await forward.wait_closed()
            return answer, port

    answer, port = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answer == b"QUIET"
    wait_listening(port, listening=False)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A test-own ``ssh-agent`` holding one key: (socket path, the key's fingerprint)."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, TIMEOUT, "ssh-agent socket")
        key = tmp_path / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "agent-key",
                        "-f", str(key)], check=True, timeout=TIMEOUT)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, timeout=TIMEOUT,
                       capture_output=True)
        listed = subprocess.run(["ssh-add", "-l"], env=env, check=True, timeout=TIMEOUT,
                                capture_output=True, text=True).stdout
        yield sock, listed.split()[1]
    finally:
        stop_process(proc)


@pytest.mark.usefixtures("data_path")
def test_openssh_agent_forwarding(demo_server_factory: Any, agent: tuple[Path, str]) -> None:
    """``ssh -A host ssh-add -l`` lists the test agent's key through the forwarded socket;
    the socket (0600, private directory) is gone after the session; with
    ``agent_forwarding=False`` the command has no agent."""
    sock, fingerprint = agent
    server = demo_server_factory(password="foo")
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    argv = ["sshpass", "-p", "foo", "ssh", "-A", "-o", "PubkeyAuthentication=no",
            "-o", "IdentitiesOnly=yes", *server.ssh_args("u"),
            'ssh-add -l; stat -c "%a %U" "$SSH_AUTH_SOCK" "$(dirname "$SSH_AUTH_SOCK")"; '
            'echo "$SSH_AUTH_SOCK"']
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[1] == fingerprint
    assert [line.split()[0] for line in lines[1:3]] == ["600", "700"]
    wait_for(lambda: not os.path.exists(lines[3]), TIMEOUT, "agent socket removed")
    assert server.clients[0].callback_log["channel_auth_agent_request"] == [True]

    off = demo_server_factory(password="foo", agent_forwarding=False)
    argv = ["sshpass", "-p", "foo", "ssh", "-A", "-o", "PubkeyAuthentication=no",
            *off.ssh_args("u"), 'echo "[$SSH_AUTH_SOCK]"; ssh-add -l']
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert refused.stdout.splitlines()[0] == "[]"
    assert refused.returncode == 2  # ssh-add: no agent to talk to
    assert off.clients[0].callback_log["channel_auth_agent_request"] == [True]


@pytest.mark.usefixtures("data_path")
def test_asyncssh_agent_forwarding(demo_server: DemoServer, agent: tuple[Path, str]) -> None:
    """asyncssh ``agent_forwarding=True``: the command's ``ssh-add -l`` sees the agent."""
    sock, fingerprint = agent

    async def scenario() -> str:
        options = demo_server.asyncssh_kwargs()
        options["agent_path"] = str(sock)
        async with asyncssh.connect(**options, agent_forwarding=True) as conn:
            return str((await conn.run("ssh-add -l", check=True)).stdout)

    assert asyncio.run(asyncio.wait_for(scenario(), 60)).split()[1] == fingerprint


def test_x11_request_is_logged_and_refused(demo_server: DemoServer) -> None:
    """``ssh -X``: the x11-req is logged with its fields and refused (ssh says so), and the
    command still runs."""
    argv = ["sshpass", "-p", "foo", "ssh", "-X", "-o", "PubkeyAuthentication=no",
            "-o", "LogLevel=INFO", *demo_server.ssh_args("u"), "echo ran"]
    result = subprocess.run(argv, env={**os.environ, "DISPLAY": "127.0.0.1:42.3"},
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr
    assert "X11 forwarding request failed" in result.stderr
    ((single, protocol, screen),) = demo_server.clients[0].callback_log["channel_x11_request"]
    assert (single, protocol, screen) == (False, "MIT-MAGIC-COOKIE-1", 3)


@pytest.mark.usefixtures("data_path")
def test_a_refused_channel_open_closes_the_connection(demo_server: DemoServer) -> None:
    """A client that refuses the forwarded-tcpip channel (asyncssh raising ChannelOpenError
    in its handler): the local connection is closed, the server keeps serving."""
    async def scenario() -> tuple[bytes, str]:
        def refuse(orig_host: str, orig_port: int) -> Any:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "no")

        async with asyncssh.connect(**demo_server.asyncssh_kwargs()) as conn:
            listener = await conn.create_server(refuse, "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
            writer.write(b"anyone?")
            try:
                got = await asyncio.wait_for(reader.read(), TIMEOUT)
            except ConnectionResetError:
                got = b""  # closed with our bytes unread: the kernel resets, as it should
            writer.close()
            still = (await conn.run("echo still", check=True)).stdout
            listener.close()
            return got, str(still)

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == (b"", "still\n")


def test_slow_forward_target_does_not_stall_the_reactor() -> None:
    """A direct-tcpip target that does not answer (its listen queue is full: the SYN is
    dropped) is confirmed after a short wait and connects in the background; meanwhile the
    reactor serves other clients; once the target accepts, the bytes flow."""
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(0)
    port = target.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue: further SYNs are dropped
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    with DemoServer(password="foo", reactor_threads=1) as server:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        try:
            transport.start_client(timeout=10)
            transport.auth_password("u", "foo")
            started = time.monotonic()
            channel = transport.open_channel("direct-tcpip", ("127.0.0.1", port),
                                             ("127.0.0.1", 0), timeout=10)
            opened = time.monotonic() - started
            # The only reactor thread is free: another client runs a command at once.
            other = paramiko.SSHClient()
            other.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            other.connect("127.0.0.1", server.port, "u", "foo", look_for_keys=False,
                          allow_agent=False, timeout=10)
            try:
                _, out, _ = other.exec_command("echo served", timeout=10)
                assert out.read() == b"served\n"
            finally:
                other.close()
            served = time.monotonic() - started
            channel.sendall(b"ping")
            for s in fillers:
                s.close()
            conns = []
            deadline = time.monotonic() + 10
            target.settimeout(0.2)
            got = b""
            while b"ping" not in got and time.monotonic() < deadline:
                try:
                    conns.append(target.accept()[0])
                except TimeoutError:
                    continue
                for conn in conns:
                    conn.settimeout(0.1)
                    try:
                        got += conn.recv(16)
                    except (TimeoutError, OSError):
                        pass
            assert got == b"ping"
            channel.close()
            for conn in conns:
                conn.close()
        finally:
            transport.close()
            target.close()
    assert opened < 2.0, f"opening the forward took {opened:.2f} s"
    assert served < 5.0, f"another client waited {served:.2f} s"
