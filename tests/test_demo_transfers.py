# SPDX-License-Identifier: MIT
"""Bulk transfers and load against DemoServer.

64 MiB each way through exec (OpenSSH and paramiko), SFTP and direct-tcpip, byte-exact; 20
clients at once; and a stop() in the middle of 20 running commands that leaves no process and
no thread behind.  The 64 MiB tests are marked ``slow`` (they still run in ``make test``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest
from conftest import SSH_OPTS as BASE_SSH_OPTS
from conftest import process_gone, wait_for

from pylibssh_server import SshChannel
from pylibssh_server.demo import DemoServer

Factory = Callable[..., DemoServer]
TIMEOUT = 60
BIG = 64 << 20
SSH_OPTS = (*BASE_SSH_OPTS, "-o", "PubkeyAuthentication=no")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def paramiko_client(server: DemoServer, password: str = "foo") -> Iterator[paramiko.SSHClient]:
    """A connected paramiko SSHClient (password auth only), closed afterwards."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", server.port, username="foo", password=password,
                       look_for_keys=False, allow_agent=False, timeout=TIMEOUT,
                       banner_timeout=TIMEOUT, auth_timeout=TIMEOUT)
        yield client
    finally:
        client.close()


def transport_of(client: paramiko.SSHClient) -> paramiko.Transport:
    transport = client.get_transport()
    assert transport is not None
    return transport


def drain(channel: paramiko.Channel, stderr: bool = False) -> tuple[str, int]:
    """Read a channel's stdout (or stderr) to EOF; return (sha256 hex, byte count)."""
    digest = hashlib.sha256()
    total = 0
    recv = channel.recv_stderr if stderr else channel.recv
    while True:
        data = recv(1 << 20)
        if not data:
            return digest.hexdigest(), total
        digest.update(data)
        total += len(data)


def send_all(channel: paramiko.Channel, data: bytes, chunk: int = 1 << 20) -> None:
    """Send ``data`` then EOF."""
    view = memoryview(data)
    for i in range(0, len(view), chunk):
        channel.sendall(view[i:i + chunk])
    channel.shutdown_write()


@pytest.fixture(scope="module")
def big_data() -> bytes:
    """64 MiB of random bytes, shared by the module's tests."""
    return os.urandom(BIG)




# Every test here runs on both data paths: in C (the default) and forced to Python.
pytestmark = pytest.mark.usefixtures("data_path")


def test_the_selected_data_path_moves_the_bytes(demo_server: DemoServer, data_path: str,
                                                monkeypatch: pytest.MonkeyPatch,
                                                echo_server: int) -> None:
    """An exec and a direct-tcpip channel attach C pipes exactly when the C path is
    selected, and the bytes arrive either way."""
    attached: list[str] = []
    for name in ("pipe_to", "pipe_from"):
        original = getattr(SshChannel, name)

        def record(self: SshChannel, *args: object, _name: str = name, _f: object = original,
                   **kwargs: object) -> object:
            attached.append(_name)
            return _f(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(SshChannel, name, record)
    data = os.urandom(3 << 20)
    with paramiko_client(demo_server) as client:
        transport = transport_of(client)
        channel = transport.open_session(timeout=TIMEOUT)
        channel.settimeout(TIMEOUT)
        channel.exec_command("cat")
        with ThreadPoolExecutor(max_workers=1) as pool:
            sent = pool.submit(send_all, channel, data)
            got = drain(channel)
            sent.result(TIMEOUT)
        assert channel.recv_exit_status() == 0
        channel.close()
        forward = transport.open_channel("direct-tcpip", ("127.0.0.1", echo_server),
                                         ("127.0.0.1", 0), timeout=TIMEOUT)
        forward.settimeout(TIMEOUT)
        forward.sendall(b"ping")
        forward.shutdown_write()
        echoed = drain(forward)
        forward.close()
    assert got == (sha256(data), len(data))
    assert echoed == (sha256(b"ping"), 4)
    expected = ["pipe_to", "pipe_from", "pipe_from", "pipe_to", "pipe_from"]
    assert sorted(attached) == (sorted(expected) if data_path == "c" else [])


# ---- 64 MiB ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_openssh_cat_64mib_both_ways(demo_server: DemoServer, big_data: bytes) -> None:
    """64 MiB through `ssh ... cat` (upload and download at once) come back byte-exact."""
    result = subprocess.run(
        ["sshpass", "-p", "foo", "ssh", *SSH_OPTS, "-p", str(demo_server.port),
         "foo@127.0.0.1", "cat"],
        input=big_data, capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    assert (len(result.stdout), sha256(result.stdout)) == (BIG, sha256(big_data))


@pytest.mark.slow
def test_paramiko_exec_64mib_upload_and_download(demo_server: DemoServer, big_data: bytes,
                                                 tmp_path: Path) -> None:
    """paramiko exec: 64 MiB sent to `sha256sum` hash to the sent data's digest, and 64 MiB
    read from `cat FILE` are the file's bytes."""
    source = tmp_path / "big.bin"
    source.write_bytes(big_data)
    with paramiko_client(demo_server) as client:
        transport = transport_of(client)
        up = transport.open_session(timeout=TIMEOUT)
        up.settimeout(TIMEOUT)
        up.exec_command("sha256sum")
        send_all(up, big_data)
        remote_hash = up.makefile("rb").read().split()[0].decode()
        assert up.recv_exit_status() == 0
        up.close()
        down = transport.open_session(timeout=TIMEOUT)
        down.settimeout(TIMEOUT)
        down.exec_command(f"cat {source}")
        down.shutdown_write()
        got = drain(down)
        assert down.recv_exit_status() == 0
        down.close()
    assert remote_hash == sha256(big_data)
    assert got == (sha256(big_data), BIG)


@pytest.mark.slow
def test_paramiko_sftp_64mib_put_and_get(demo_server_factory: Factory, big_data: bytes,
                                         tmp_path: Path) -> None:
    """SFTP put then get of a 64 MiB file (sftp_root) is byte-exact both ways."""
    root = tmp_path / "root"
    root.mkdir()
    local = tmp_path / "local.bin"
    local.write_bytes(big_data)
    back = tmp_path / "back.bin"
    server = demo_server_factory(password="foo", sftp_root=root)
    with paramiko_client(server) as client:
        sftp = client.open_sftp()
        try:
            sftp.get_channel().settimeout(TIMEOUT)  # type: ignore[union-attr]
            attrs = sftp.put(str(local), "/big.bin")
            assert attrs.st_size == BIG
            sftp.get("/big.bin", str(back))
        finally:
            sftp.close()
    assert sha256((root / "big.bin").read_bytes()) == sha256(big_data)
    assert sha256(back.read_bytes()) == sha256(big_data)


@pytest.mark.slow
def test_direct_tcpip_64mib_echo(demo_server: DemoServer, big_data: bytes,
                                 echo_server: int) -> None:
    """64 MiB through a direct-tcpip channel to an echo server come back byte-exact, then EOF
    (the half-close travels both ways)."""
    with paramiko_client(demo_server) as client:
        channel = transport_of(client).open_channel(
            "direct-tcpip", ("127.0.0.1", echo_server), ("127.0.0.1", 0), timeout=TIMEOUT)
        channel.settimeout(TIMEOUT)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                sent = pool.submit(send_all, channel, big_data)
                got = drain(channel)
                sent.result(TIMEOUT)
        finally:
            channel.close()
    assert got == (sha256(big_data), BIG)


# ---- many clients ---------------------------------------------------------------------------
def test_twenty_clients_at_once(demo_server: DemoServer) -> None:
    """20 paramiko clients connected at the same time each run three commands (output, stdin,
    exit status); all succeed with their own results."""
    barrier = threading.Barrier(20, timeout=TIMEOUT)

    def one(i: int) -> tuple[bytes, bytes, int]:
        with paramiko_client(demo_server) as client:
            barrier.wait()  # all 20 connected before anyone runs a command
            transport = transport_of(client)

            def run(command: str, stdin: bytes = b"") -> tuple[bytes, int]:
                channel = transport.open_session(timeout=TIMEOUT)
                channel.settimeout(TIMEOUT)
                try:
                    channel.exec_command(command)
                    send_all(channel, stdin)
                    out = channel.makefile("rb").read()
                    return out, channel.recv_exit_status()
                finally:
                    channel.close()

            echo, _ = run(f"echo client-{i}")
            counted, _ = run("wc -c", b"x" * (1000 * i + 1))
            _, status = run(f"exit {i}")
            return echo, counted.strip(), status

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20), timeout=TIMEOUT))
    assert results == [(f"client-{i}\n".encode(), str(1000 * i + 1).encode(), i)
                       for i in range(20)]
    assert len(demo_server.clients) == 20
    assert [c.authenticated for c in demo_server.clients] == [True] * 20


def test_stop_during_twenty_commands_leaves_nothing(tmp_path: Path) -> None:
    """stop() while 20 clients each run `sleep 30` (with a background child) returns in < 2 s,
    every command process is gone within 2 s more, and every thread started meanwhile (server
    and client side) has ended within 2 s."""
    baseline = set(threading.enumerate())
    server = DemoServer(password="foo")
    clients: list[paramiko.SSHClient] = []
    try:
        server.start()
        for i in range(20):
            client = paramiko.SSHClient()
            clients.append(client)
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            client.connect("127.0.0.1", server.port, username="foo", password="foo",
                           look_for_keys=False, allow_agent=False, timeout=TIMEOUT,
                           banner_timeout=TIMEOUT, auth_timeout=TIMEOUT)
            channel = transport_of(client).open_session(timeout=TIMEOUT)
            channel.exec_command(f"sleep 30 & echo $$ $! > {tmp_path}/pids-{i}; wait")
        pidfiles = [tmp_path / f"pids-{i}" for i in range(20)]
        wait_for(lambda: all(p.exists() and p.read_text().endswith("\n") for p in pidfiles),
                 what="20 commands started")
        pids = [int(pid) for p in pidfiles for pid in p.read_text().split()]
        assert [process_gone(pid) for pid in pids] == [False] * 40
        start = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - start
        # SIGKILL is asynchronous: a killed grandchild may take a moment to disappear.
        wait_for(lambda: all(process_gone(pid) for pid in pids), timeout=2.0,
                 what="every command process gone")
        assert [process_gone(pid) for pid in pids] == [True] * 40
    finally:
        for client in clients:
            client.close()
        server.close()
    assert elapsed < 2.0

    def extra_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t not in baseline]

    wait_for(lambda: not extra_threads(), timeout=2.0, what="no thread left")
    assert extra_threads() == []


def test_large_stdout_and_stderr_together(demo_server: DemoServer) -> None:
    """A command writing 16 MiB to stdout and 16 MiB to stderr at the same time delivers both
    streams complete (independent flow control, no deadlock)."""
    size = 16 << 20
    command = (f"head -c {size} /dev/zero | tr '\\0' a & "
               f"head -c {size} /dev/zero | tr '\\0' b >&2; wait")
    with paramiko_client(demo_server) as client:
        channel = transport_of(client).open_session(timeout=TIMEOUT)
        channel.settimeout(TIMEOUT)
        channel.exec_command(command)
        channel.shutdown_write()
        with ThreadPoolExecutor(max_workers=1) as pool:
            err = pool.submit(drain, channel, True)
            out = drain(channel)
            err_result = err.result(TIMEOUT)
        status = channel.recv_exit_status()
        channel.close()
    assert (out, err_result, status) == ((sha256(b"a" * size), size),
                                         (sha256(b"b" * size), size), 0)
