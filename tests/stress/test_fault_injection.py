# SPDX-License-Identifier: MIT
"""Faults on purpose under load: many throttled clients at once, cuts in the middle of SFTP
and of forwards, and a server stopped while clients wait in a delay.  The server keeps its
promises: each client is throttled on its own, a cut ends one connection only, a stop ends
every delay at once, and nothing is left behind."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from pylibssh_server.demo import DemoServer
from stress._support import (
    ProcStats,
    assert_serving,
    cli_server,
    paramiko_login,
    pick,
    record,
    run_command,
    settled,
)


def _download(port: int, size: int) -> tuple[bytes, float]:
    transport = paramiko_login(port)
    try:
        start = time.monotonic()
        status, out = run_command(transport, f"head -c {size} /dev/urandom", timeout=120)
        assert status == 0
        return out, time.monotonic() - start
    finally:
        transport.close()


def test_throttle_is_per_client() -> None:
    """N clients download at once under throttle=R: each gets its bytes intact at about R
    (not R/N: every connection has its own bucket), and the server settles afterwards."""
    clients, rate, size = pick(4, 16), 256_000, 384_000
    with cli_server("--fault", f"throttle={rate}") as server:
        before = server.stats()
        start = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda _: _download(server.port, size), range(clients)))
        seconds = time.monotonic() - start
        for out, took in results:
            assert len(out) == size
            assert took >= 0.7 * size / rate
        # Independent buckets: all together take about as long as one, not N times longer.
        assert seconds < clients * size / rate * 0.7
        after = settled(server, before)
    record("fault injection: throttle per client", tried=clients, sent=0,
           received=clients * size, before=before, after=after, seconds=seconds)


def test_drop_after_bytes_mid_sftp(tmp_path: Path) -> None:
    """drop-after-bytes cuts an SFTP download: paramiko's get fails, the file on the server
    is untouched, and the next client (a budget of its own) gets in and runs a command."""
    (tmp_path / "big.bin").write_bytes(b"\xab" * (4 << 20))
    with cli_server("--fault", "drop-after-bytes=500000", "--sftp-root", str(tmp_path)) \
            as server:
        before = server.stats()
        transport = paramiko_login(server.port)
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            # A plain read, not get(): get's prefetch thread would meet the cut unhandled.
            with pytest.raises((OSError, EOFError, paramiko.SSHException)), \
                    sftp.open("/big.bin", "rb") as remote:
                remote.read()
        finally:
            transport.close()
        assert (tmp_path / "big.bin").stat().st_size == 4 << 20
        assert_serving(server.port)
        after = settled(server, before)
    record("fault injection: drop-after-bytes mid-SFTP", tried=2, before=before, after=after)


def test_drop_after_bytes_mid_forward(echo_server: int) -> None:
    """A cut in the middle of a direct-tcpip echo: the client's channel breaks, the target
    socket is closed by the server, and others are served."""
    with cli_server("--fault", "drop-after-bytes=200000") as server:
        before = server.stats()
        transport = paramiko_login(server.port)
        received = 0
        try:
            chan = transport.open_channel("direct-tcpip", ("127.0.0.1", echo_server),
                                          ("127.0.0.1", 1), timeout=10)
            chan.settimeout(20)
            sender = threading.Thread(target=lambda: _send_quietly(chan, 1 << 20), daemon=True)
            sender.start()
            while True:
                try:
                    chunk = chan.recv(65536)
                except (OSError, EOFError):
                    break
                if not chunk:
                    break
                received += len(chunk)
            sender.join(20)
        finally:
            transport.close()
        assert 0 < received <= 200_000
        assert_serving(server.port)
        after = settled(server, before)
    record("fault injection: drop-after-bytes mid-forward", tried=2, received=received,
           before=before, after=after)


def _send_quietly(chan: paramiko.Channel, size: int) -> None:
    try:
        chan.sendall(b"x" * size)
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the cut ends the channel under the sender


@pytest.mark.parametrize("fault", ["delay-banner=300", "delay-auth=300"])
def test_stop_ends_every_delay(fault: str) -> None:
    """Clients waiting in a long delay do not hold up stop(): it returns at once and every
    client thread ends."""
    count = pick(4, 20)
    server = DemoServer(password="foo", faults=[fault]).start()
    socks: list[socket.socket] = []
    transports: list[paramiko.Transport] = []
    try:
        baseline = ProcStats.of()
        for _ in range(count):
            if fault.startswith("delay-banner"):
                socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            else:
                transport = paramiko.Transport(("127.0.0.1", server.port))
                transport.start_client(timeout=10)
                threading.Thread(target=_auth_quietly, args=(transport,), daemon=True).start()
                transports.append(transport)
        deadline = time.monotonic() + 20
        while sum("fault" in c.callback_log for c in list(server.clients)) < count:
            assert time.monotonic() < deadline, "clients did not reach the delay"
            time.sleep(0.02)
        start = time.monotonic()
        server.stop()
        took = time.monotonic() - start
        assert took < 10
        assert all(c.finished.is_set() for c in server.clients)
    finally:
        server.close()
        for sock in socks:
            sock.close()
        for transport in transports:
            transport.close()
    record(f"fault injection: stop during {fault.split('=')[0]}", tried=count,
           before=baseline, after=ProcStats.of(), seconds=took)


def _auth_quietly(transport: paramiko.Transport) -> None:
    try:
        transport.auth_password("stress", "foo")
    except (paramiko.SSHException, EOFError, OSError):
        pass  # the server stopped during the delay


def test_throttled_download_is_byte_exact(tmp_path: Path) -> None:
    """A throttled stream is the command's output, byte for byte (digests compared)."""
    size = pick(1 << 20, 8 << 20)
    data = tmp_path / "data.bin"
    data.write_bytes(hashlib.sha256(b"seed").digest() * (size // 32))
    with cli_server("--fault", f"throttle={size}") as server:
        transport = paramiko_login(server.port)
        try:
            status, out = run_command(transport, f"cat {data}", timeout=60)
        finally:
            transport.close()
    assert status == 0
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data.read_bytes()).hexdigest()
