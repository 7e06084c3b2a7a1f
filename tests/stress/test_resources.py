# SPDX-License-Identifier: MIT
"""Resource exhaustion: the server survives running out of file descriptors, and no client
can make it run out.

Every case drives a DemoServer started through its CLI (its fds and threads are read from
/proc) with real clients: raw TCP floods, paramiko, asyncssh and the OpenSSH client with an
ssh-agent holding many keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import paramiko
import pytest

from pylibssh_server import SshKey
from stress._support import (
    cli_server,
    paramiko_login,
    pick,
    record,
    run_command,
    settled,
    wait_until,
)

SSH_OPTS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]


@pytest.fixture(autouse=True)
def _room_for_the_flood() -> Iterator[None]:
    """The flood's sockets live in this process: lift its soft open-files limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _flood(port: int, count: int) -> list[socket.socket]:
    """``count`` raw TCP connections that never speak (connect errors are counted out)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        socks.append(sock)
    return socks


def _real_clients(port: int, count: int) -> tuple[int, int]:
    """``count`` paramiko clients at once, each logging in and running one command:
    (served, refused).  A refusal is any clean failure; none may hang past its timeout."""
    results: list[bool] = []
    lock = threading.Lock()

    def one() -> None:
        ok = False
        try:
            transport = paramiko_login(port)
            try:
                ok = run_command(transport, "echo ok", timeout=20)[1] == b"ok\n"
            finally:
                transport.close()
        except (paramiko.SSHException, OSError, EOFError):
            ok = False
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == count, "a client hung"
    return sum(results), count - sum(results)


def _served_after(port: int, timeout: float) -> float:
    """Seconds until a real client is served (login + command), retried until ``timeout``."""
    start = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - start < timeout:
        try:
            transport = paramiko_login(port)
            try:
                assert run_command(transport, "echo back")[1] == b"back\n"
            finally:
                transport.close()
            return time.monotonic() - start
        except (paramiko.SSHException, OSError, EOFError) as exc:
            last = exc
            time.sleep(0.05)
    raise AssertionError(f"no client served within {timeout} s after the flood: {last!r}")


@pytest.mark.parametrize("nofile,limits", [
    (64, "default limits"),
    (64, "no connection limits"),
    (1024, "default limits"),
], ids=["nofile-64", "nofile-64-unlimited", "nofile-1024"])
def test_flood_past_the_open_files_limit(nofile: int, limits: str) -> None:
    """Raw connections and real clients far past the server's open-files limit: the ones
    that do not fit are refused or dropped cleanly (none hangs), the listener survives even
    EMFILE itself (with the connection limits lifted), and once the flood is gone a real
    client is served at once and the server is back to its baseline fds and threads."""
    args = ["--login-grace-time", "10"]
    if limits == "no connection limits":
        args += ["--max-connections", "100000", "--max-unauthenticated", "100000"]
    raw = pick(nofile + 64, nofile * 3)
    real = pick(nofile // 4 if nofile < 1000 else 40, min(nofile // 2, 200))
    start = time.monotonic()
    with cli_server(*args, nofile=nofile) as server:
        baseline = server.stats()
        flood = _flood(server.port, raw)
        try:
            served, refused = _real_clients(server.port, real)
            during = server.stats()  # the flood still connected
        finally:
            for sock in flood:
                sock.close()
        latency = _served_after(server.port, 5.0)
        after = settled(server, baseline, 15)
        log = server.stderr()
    assert latency < 2.0, f"served {latency:.2f} s after the flood ended"
    assert (after.fds, after.threads) <= (baseline.fds, baseline.threads)
    assert served + refused == real
    if limits == "no connection limits":
        assert "out of resources: connection dropped" in log
    else:
        assert "connection refused" in log
    assert "Traceback" not in log
    record(f"fd flood, RLIMIT_NOFILE {nofile}, {limits}: {served} of {real} real clients "
           f"served during it, {during.fds} fds at its height, served again "
           f"{latency * 1000:.0f} ms "
           "after it", tried=len(flood) + real, faults=refused, before=baseline, after=after,
           seconds=time.monotonic() - start)


def test_one_client_cannot_take_every_fd(tmp_path: Path) -> None:
    """A client opening SFTP handles and command channels without end is refused at its
    budget (``--max-fds-per-client``) while another client keeps running commands."""
    budget = 40
    (tmp_path / "f").write_bytes(b"x")
    with cli_server("--max-fds-per-client", str(budget), "--max-channels", "4096") as server:
        baseline = server.stats()
        greedy = paramiko_login(server.port)
        other = paramiko_login(server.port)
        try:
            sftps, handles = [], []
            refused_at = None
            for _ in range(pick(200, 2000)):
                try:
                    if len(sftps) < 3 or len(handles) % 50 == 49:
                        sftps.append(paramiko.SFTPClient.from_transport(greedy))
                    handles.append(sftps[-1].open(str(tmp_path / "f")))
                except OSError as exc:  # paramiko: "Failure" status for the refused open
                    refused_at = len(handles)
                    assert isinstance(exc, IOError)
                    break
            assert refused_at == budget
            assert run_command(other, "echo still")[1] == b"still\n"
            chans = []
            for _ in range(pick(50, 500)):
                chan = greedy.open_session(timeout=10)
                chan.exec_command("sleep 30")
                chans.append(chan)
                if chan.recv_exit_status() == 126:
                    break
            assert chans[-1].recv_stderr(4096).startswith(b"demo: cannot run the command: ")
            assert run_command(other, "echo again")[1] == b"again\n"
            during = server.stats()
            assert during.fds <= baseline.fds + budget + 20
        finally:
            greedy.close()
            other.close()
        after = settled(server, baseline, 15)
    record("one client's fd budget", tried=len(handles) + len(chans), faults=1,
           before=baseline, after=after, extra={"refused_at": refused_at})


def _agent_with_keys(tmp_path: Path, count: int) -> tuple[subprocess.Popen[bytes], Path]:
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    wait_until(sock.exists, 10, "ssh-agent socket")
    files = []
    for i in range(count):
        path = tmp_path / f"k{i}"
        with SshKey.generate("ed25519") as key:
            key.to_private_file(path)
        files.append(str(path))
    env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
    for chunk in range(0, count, 500):
        subprocess.run(["ssh-add", "-q", *files[chunk:chunk + 500]], env=env, check=True,
                       timeout=120, capture_output=True)
    return agent, sock


def test_public_key_probes_count_toward_the_attempt_limit(tmp_path: Path) -> None:
    """OpenSSH offering an agent's keys one by one (a probe each, none authorized) is cut off
    at --max-auth-attempts, as sshd does it, instead of being heard 2,000 times."""
    count = pick(200, 2000)
    with SshKey.generate() as allowed:
        keys_file = tmp_path / "authorized_keys"
        keys_file.write_text(allowed.authorized_key_line() + "\n")
        agent, sock = _agent_with_keys(tmp_path, count)
        try:
            with cli_server("--auth", "publickey", "--authorized-keys", str(keys_file),
                            "--max-auth-attempts", "6", "--verbose") as server:
                start = time.monotonic()
                result = subprocess.run(
                    ["ssh", *SSH_OPTS, "-o", "BatchMode=yes", "-o", f"IdentityAgent={sock}",
                     "-o", "PreferredAuthentications=publickey", "-p", str(server.port),
                     "u@127.0.0.1", "true"],
                    capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
                seconds = time.monotonic() - start
                wait_until(lambda: "auth_pubkey" in server.stderr(), 5, "events logged")
                probes = server.stderr().count(" auth_pubkey: ")
        finally:
            agent.terminate()
            agent.wait(10)
    assert result.returncode == 255
    assert probes == 6
    record(f"public-key probes ({count} keys offered)", tried=1, faults=probes,
           seconds=seconds)


def test_huge_env_value_gets_an_error_and_an_exit_status() -> None:
    """A 200 KiB env value makes the command impossible to start (E2BIG): asyncssh gets a
    message on stderr and exit status 126, not a channel that just closes."""
    async def scenario(port: int) -> tuple[int | None, str]:
        async with asyncssh.connect("127.0.0.1", port, username="u", password="foo",
                                    known_hosts=None, client_keys=None, agent_path=None,
                                    config=None) as conn:
            result = await conn.run("echo never", env={"HUGE": "x" * (200 << 10)})
            return result.exit_status, str(result.stderr)

    with cli_server() as server:
        baseline = server.stats()
        status, stderr = asyncio.run(asyncio.wait_for(scenario(server.port), 60))
        after = settled(server, baseline, 10)
    assert status == 126
    assert stderr.startswith("demo: cannot run the command: Argument list too long")
    record("200 KiB env value", tried=1, faults=1, before=baseline, after=after)


def test_half_built_session_is_safe_to_repr_and_collect() -> None:
    """A Session whose construction fails for want of fds (EMFILE from its wake-up pipe)
    raises OSError and leaves no half-built object whose __repr__ or __del__ raises (an
    unraisable exception fails the test, see conftest)."""
    from pylibssh_server import Session

    held: list[int] = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        with contextlib.suppress(OSError):
            for _ in range(256):
                held.append(os.open(os.devnull, os.O_RDONLY))
        with pytest.raises(OSError) as info:
            Session()
        gc.collect()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert info.value.errno == errno.EMFILE


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_reactor_holds_idle_connections() -> None:
    """Many idle authenticated connections (1,000 in ``make stress``) on the reactor's 2
    threads: the server has at most reactor threads + 4 threads and one fd per connection,
    uses no CPU while they idle, and a new client is still served at once."""
    count = pick(200, 1000)
    per_process = 250
    args = ["--reactor-threads", "2", "--max-connections", str(count + 50),
            "--max-unauthenticated", "100"]
    with cli_server(*args) as server:
        clients = []
        try:
            for start in range(0, count, per_process):
                n = min(per_process, count - start)
                clients.append(subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("idle_clients.py")),
                     str(server.port), str(n), "foo"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            for proc in clients:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line.startswith("ready"), f"idle client failed: {line!r}"
            held = server.stats()
            ticks = _cpu_ticks(server.pid)
            time.sleep(2.0)
            idle_ticks = _cpu_ticks(server.pid) - ticks
            started = time.monotonic()
            transport = paramiko_login(server.port)
            try:
                assert run_command(transport, "echo served")[1] == b"served\n"
            finally:
                transport.close()
            latency = time.monotonic() - started
            record(f"{count} idle connections on the reactor", tried=count + 1, faults=0,
                   after=held)
        finally:
            for proc in clients:
                with contextlib.suppress(OSError):
                    assert proc.stdin is not None
                    proc.stdin.close()
            for proc in clients:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                assert proc.stdout is not None
                proc.stdout.close()
    # Each held session is its socket alone (a reactor's sessions have no wake-up pipe).
    assert count <= held.fds < count + 50, f"{held.fds} fds for {count} held connections"
    assert held.threads <= 2 + 4, f"{held.threads} threads for {count} idle connections"
    assert idle_ticks <= 2, f"{idle_ticks} clock ticks of CPU in 2 s of idle"
    assert latency < 5.0, f"a new client took {latency:.2f} s to be served"
