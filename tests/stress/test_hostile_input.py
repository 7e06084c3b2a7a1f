"""Hostile input on the DemoServer's port: garbage, silence and churn never stop it serving.

The fast subset run by ``make test``; ``STRESS_SCALE`` multiplies the connection counts.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time

import paramiko
import pytest

from pylibssh_server.demo import DemoServer
from stress._support import SCALE, ProcStats, record


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _login_works(port: int) -> bool:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", port, username="u", password="foo", timeout=10,
                       allow_agent=False, look_for_keys=False)
        _, stdout, _ = client.exec_command("echo alive", timeout=10)
        return stdout.read() == b"alive\n"
    finally:
        client.close()


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _send_and_drop(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(payload)
            sock.settimeout(2)
            sock.recv(4096)
        except OSError:
            pass


@pytest.mark.parametrize("payload", [
    pytest.param(random.Random(1).randbytes(4096), id="random-bytes"),
    pytest.param(b"SSH-2.0-evil\r\n" + random.Random(2).randbytes(4096), id="banner-garbage"),
    pytest.param(b"SSH-2.0-evil\r\n\xff\xff\xff\xf0" + b"\x00" * 64, id="oversized-length"),
    pytest.param(b"SSH-2.0-evil\r\n\x00\x00\x00\x1c\x06\x14" + b"\x01" * 16, id="truncated-kex"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
])
def test_garbage_is_dropped_and_the_server_keeps_serving(payload: bytes,
                                                         request: pytest.FixtureRequest) -> None:
    """Each kind of garbage ends only its own connection: a real client still logs in, and the
    garbage connections' threads and fds are released."""
    baseline_threads = threading.active_count()
    before = ProcStats.of()
    with DemoServer(password="foo", login_grace_time=5) as server:
        baseline_fds = _open_fds()
        for _ in range(5 * SCALE):
            _send_and_drop(server.port, payload)
        assert _login_works(server.port) is True
        assert _wait_for(lambda: all(c.finished.is_set() for c in server.clients), 10) is True
        assert _wait_for(lambda: _open_fds() <= baseline_fds, 5) is True
        assert len(server.clients) == 5 * SCALE + 1
        assert server.clients[-1].authenticated is True
    assert _wait_for(lambda: threading.active_count() <= baseline_threads, 5) is True
    record(f"garbage: {request.node.callspec.id}", tried=5 * SCALE, faults=5 * SCALE,
           before=before, after=ProcStats.of())


def test_silent_client_is_dropped_after_the_login_grace_time() -> None:
    """A client that connects and sends nothing is disconnected once ``login_grace_time``
    has passed, without affecting other clients."""
    with DemoServer(password="foo", login_grace_time=1.0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            start = time.monotonic()
            received = b""
            while True:  # the server banner, then EOF when it gives up
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
            elapsed = time.monotonic() - start
        assert received.startswith(b"SSH-2.0-")
        assert 0.8 <= elapsed < 5.0
        assert _login_works(server.port) is True


def test_unauthenticated_client_is_dropped_after_the_login_grace_time() -> None:
    """A client that completes key exchange but never authenticates is dropped too."""
    with DemoServer(password="foo", login_grace_time=1.0) as server:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        try:
            transport.start_client(timeout=10)
            assert _wait_for(lambda: not transport.is_active(), 5) is True
        finally:
            transport.close()
        assert server.clients[0].authenticated is False


def test_connection_churn_mid_handshake_leaks_nothing() -> None:
    """Hundreds of connections dropped right after connecting or mid-banner leave no fds or
    threads behind, and real clients are served meanwhile and afterwards."""
    baseline_threads = threading.active_count()
    before = ProcStats.of()
    start = time.monotonic()
    with DemoServer(password="foo", login_grace_time=5) as server:
        baseline_fds = _open_fds()
        for i in range(200 * SCALE):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                sock.sendall(b"SSH-2.0-churn\r\n")
            sock.close()
            if i == 100:
                assert _login_works(server.port) is True
        assert _login_works(server.port) is True
        assert _wait_for(lambda: all(c.finished.is_set() for c in server.clients), 20) is True
        assert _wait_for(lambda: _open_fds() <= baseline_fds, 5) is True
    assert _wait_for(lambda: threading.active_count() <= baseline_threads, 5) is True
    record("dropped mid-handshake", tried=200 * SCALE, faults=200 * SCALE, before=before,
           after=ProcStats.of(), seconds=time.monotonic() - start)


def test_too_many_failed_passwords_drop_the_client() -> None:
    """After ``max_auth_attempts`` wrong passwords the server disconnects the client."""
    with DemoServer(password="foo", max_auth_attempts=3) as server:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        try:
            transport.start_client(timeout=10)
            for _ in range(10):  # paramiko reports the drop itself as one more auth failure
                try:
                    transport.auth_password("u", "wrong")
                except (paramiko.SSHException, EOFError, OSError):
                    pass
                if not transport.is_active():
                    break
            assert _wait_for(lambda: not transport.is_active(), 5) is True
        finally:
            transport.close()
        assert server.clients[0].callback_log["auth_password"] == [("u", "wrong")] * 3
