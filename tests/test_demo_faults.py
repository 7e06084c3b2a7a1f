# SPDX-License-Identifier: MIT
"""Faults on purpose, each observed from a real client on the real connection: delays,
denied logins, disconnects, rejected connections, cut downloads, refused channels, a
missing exit status and a throttled stream.  Each applied fault is a ``fault`` event."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import asyncssh
import paramiko
import pytest
from conftest import SSH_OPTS
from test_demo_cli import run_cli, running_cli
from test_demo_openssh import password_ssh, run
from test_demo_python_clients import aconnect, arun, paramiko_transport

from pylibssh_server.demo import DemoServer
from pylibssh_server.demo.faults import Faults

Factory = Callable[..., DemoServer]


def run_bytes(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def faults_logged(server: DemoServer) -> list[tuple[str, object]]:
    return [entry for c in server.clients for entry in c.callback_log.get("fault", [])]


def test_delay_banner_measured_by_client(demo_server_factory: Factory) -> None:
    """delay-banner=S: the identification line comes S seconds after the TCP connect (read
    on the socket, and seen by paramiko's handshake)."""
    server = demo_server_factory(password="foo", faults={"delay-banner": 1.0})
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        start = time.monotonic()
        line = sock.makefile("rb").readline()
        waited = time.monotonic() - start
    assert line.startswith(b"SSH-2.0-")
    assert waited >= 1.0
    start = time.monotonic()
    with paramiko_transport(server) as transport:
        handshake = time.monotonic() - start
        transport.auth_password("foo", "foo")
        assert transport.is_authenticated()
    assert handshake >= 1.0
    assert faults_logged(server) == [("delay-banner", 1.0)] * 2


def test_delay_auth_measured_by_client(demo_server_factory: Factory) -> None:
    """delay-auth=S: paramiko waits S seconds for the answer to its password."""
    server = demo_server_factory(password="foo", faults=["delay-auth=0.7"])
    with paramiko_transport(server) as transport:
        start = time.monotonic()
        transport.auth_password("foo", "foo")
        waited = time.monotonic() - start
        assert transport.is_authenticated()
    assert waited >= 0.7
    assert ("delay-auth", 0.7) in faults_logged(server)


def test_fail_auth_then_retry_works(demo_server_factory: Factory) -> None:
    """fail-auth=1: the first right password is denied; the client's retry gets in."""
    server = demo_server_factory(password="foo", faults=["fail-auth=1"])
    first = run(password_ssh(server, "foo", "echo in"))
    assert (first.returncode, first.stdout) == (5, "")
    second = run(password_ssh(server, "foo", "echo in"))
    assert (second.returncode, second.stdout) == (0, "in\n")
    assert faults_logged(server) == [("fail-auth", 1)]
    assert [c.authenticated for c in server.clients] == [False, True]


def test_fail_auth_within_one_connection(demo_server_factory: Factory) -> None:
    """fail-auth counts attempts, not connections: paramiko's second try on the same
    connection works."""
    server = demo_server_factory(password="foo", faults={"fail-auth": 1})
    with paramiko_transport(server) as transport:
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_password("foo", "foo")
        transport.auth_password("foo", "foo")
        assert transport.is_authenticated()


def test_disconnect_after_auth(demo_server_factory: Factory) -> None:
    """disconnect-after-auth: the login succeeds, then the connection ends before any
    command runs."""
    server = demo_server_factory(password="foo", faults=["disconnect-after-auth"])
    result = run(password_ssh(server, "foo", "echo never"))
    assert (result.returncode, result.stdout) == (255, "")
    client = server.clients[0]
    assert client.authenticated
    assert "channel_exec_request" not in client.callback_log
    assert faults_logged(server) == [("disconnect-after-auth", None)]


def test_reject_connections(demo_server_factory: Factory) -> None:
    """reject-connections=2: the first two connections are closed at once (before the
    identification line), the third is served."""
    server = demo_server_factory(password="foo", faults=["reject-connections=2"])
    for _ in range(2):
        refused = run(password_ssh(server, "foo", "echo no"))
        assert (refused.returncode, refused.stdout) == (255, "")
    served = run(password_ssh(server, "foo", "echo yes"))
    assert (served.returncode, served.stdout) == (0, "yes\n")
    assert faults_logged(server) == [("reject-connections", 2)] * 2


def test_drop_after_bytes_cuts_download(demo_server_factory: Factory) -> None:
    """drop-after-bytes=N: a 16 MiB download is cut on the wire after N bytes; the client
    sees a broken connection; the server goes on serving new clients."""
    limit = 1_000_000
    server = demo_server_factory(password="foo", faults={"drop-after-bytes": limit})
    result = run_bytes(password_ssh(server, "foo", "head -c 16777216 /dev/zero"))
    assert result.returncode == 255
    assert 0 < len(result.stdout) <= limit
    assert faults_logged(server) == [("drop-after-bytes", limit)]
    again = run(password_ssh(server, "foo", "echo still serving"))
    assert (again.returncode, again.stdout) == (0, "still serving\n")


def test_drop_after_bytes_asyncssh(demo_server_factory: Factory) -> None:
    """asyncssh sees the connection lost mid-stream, after at most N bytes; a second client
    (each connection has its own budget) is cut as well, and the server keeps serving."""
    limit = 300_000
    server = demo_server_factory(password="foo", faults={"drop-after-bytes": limit})

    async def download() -> int:
        received = 0
        async with aconnect(server, password="foo") as conn, \
                conn.create_process("head -c 4000000 /dev/zero", encoding=None) as proc:
            with pytest.raises((asyncssh.ConnectionLost, asyncssh.DisconnectError,
                                BrokenPipeError, ConnectionError)):
                while True:
                    chunk = await proc.stdout.read(65536)
                    if not chunk:
                        await proc.wait(check=True)
                        break
                    received += len(chunk)
        return received

    for _ in range(2):
        got = arun(download())
        assert 0 < got <= limit
    with paramiko_transport(server) as transport:
        transport.auth_password("foo", "foo")
        assert transport.is_authenticated()


def test_refuse_channel_direct_tcpip(demo_server_factory: Factory) -> None:
    """refuse-channel=direct-tcpip: paramiko's forward channel is refused; a session
    channel still works."""
    server = demo_server_factory(password="foo", faults=["refuse-channel=direct-tcpip"])
    with paramiko_transport(server) as transport:
        transport.auth_password("foo", "foo")
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", ("127.0.0.1", server.port),
                                   ("127.0.0.1", 1), timeout=10)
        channel = transport.open_session(timeout=10)
        channel.exec_command("echo ok")
        assert channel.makefile("rb").read() == b"ok\n"
        channel.close()
    assert faults_logged(server) == [("refuse-channel", "direct-tcpip")]


def test_refuse_channel_session(demo_server_factory: Factory) -> None:
    """refuse-channel=session: OpenSSH cannot open its session channel."""
    server = demo_server_factory(password="foo", faults=["refuse-channel=session"])
    result = run(password_ssh(server, "foo", "echo no"))
    assert (result.returncode, result.stdout) == (255, "")
    assert faults_logged(server) == [("refuse-channel", "session")]


def test_no_exit_status_asyncssh(demo_server_factory: Factory) -> None:
    """no-exit-status: the output arrives, the channel closes, and asyncssh reports no exit
    status."""
    server = demo_server_factory(password="foo", faults=["no-exit-status"])

    async def main() -> asyncssh.SSHCompletedProcess:
        async with aconnect(server, password="foo") as conn:
            return await conn.run("echo out; exit 3")

    result = arun(main())
    assert (result.stdout, result.exit_status, result.exit_signal) == ("out\n", None, None)
    assert faults_logged(server) == [("no-exit-status", None)]


def test_throttle_rate_measured_by_client(demo_server_factory: Factory) -> None:
    """throttle=B: asyncssh receives a download at B bytes per second, within 30 %."""
    rate, size = 200_000, 600_000
    server = demo_server_factory(password="foo", faults={"throttle": rate})

    async def main() -> tuple[int, float]:
        async with aconnect(server, password="foo") as conn:
            start = time.monotonic()
            result = await conn.run(f"head -c {size} /dev/zero", encoding=None, check=True)
            return len(result.stdout), time.monotonic() - start

    got, seconds = arun(main())
    assert got == size
    measured = size / seconds
    assert 0.7 * rate <= measured <= 1.3 * rate, f"{measured:.0f} B/s for {rate}"


def test_throttle_openssh_download(demo_server_factory: Factory) -> None:
    """The throttle holds for OpenSSH too: the download is byte-exact and takes at least
    (size / rate) less the 30 % tolerance."""
    rate, size = 400_000, 800_000
    server = demo_server_factory(password="foo", faults=[f"throttle={rate}"])
    start = time.monotonic()
    result = run_bytes(password_ssh(server, "foo", f"head -c {size} /dev/zero"))
    seconds = time.monotonic() - start
    assert (result.returncode, len(result.stdout)) == (0, size)
    assert seconds >= 0.7 * size / rate


def test_cli_faults() -> None:
    """--fault from the CLI: the server starts with them and applies them."""
    with running_cli("--password", "foo", "--fault", "reject-connections=1",
                     "--fault", "refuse-channel=session", "--fault",
                     "refuse-channel=direct-tcpip") as (_, ready):
        port = ready["port"]
        refused = run(["sshpass", "-p", "foo", "ssh", *SSH_OPTS, "-o",
                       "PreferredAuthentications=password", "-p", str(port), "foo@127.0.0.1",
                       "echo no"])
        assert refused.returncode == 255
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=20)
                transport.auth_password("foo", "foo")
                with pytest.raises(paramiko.ChannelException):
                    transport.open_session(timeout=10)
            finally:
                transport.close()


@pytest.mark.parametrize("fault", [
    "throttle=0", "throttle=-5", "throttle=lots", "delay-banner=-1", "delay-banner=1e9",
    "delay-auth=nan", "delay-auth=inf", "fail-auth=0", "reject-connections=99999999999",
    "drop-after-bytes=-1", "refuse-channel=x11", "refuse-channel", "no-exit-status=3",
    "throttle", "explode",
])
def test_absurd_fault_values_rejected(fault: str) -> None:
    """Absurd fault values are rejected at start: one error line, exit code 2; the same
    check in Python raises ValueError."""
    result = run_cli("--password", "x", "--fault", fault)
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--fault" in lines[0], result.stderr
    with pytest.raises(ValueError):
        DemoServer(password="x", faults=[fault])


def test_fault_given_twice_rejected() -> None:
    result = run_cli("--password", "x", "--fault", "throttle=10", "--fault", "throttle=20")
    assert result.returncode == 2
    assert "given twice" in result.stderr
    faults = Faults.parse(["refuse-channel=session", "refuse-channel=direct-tcpip"])
    assert faults["refuse-channel"] == ("direct-tcpip", "session")
    with pytest.raises(TypeError):
        Faults.parse("throttle=1")  # type: ignore[arg-type]
