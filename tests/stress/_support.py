# SPDX-License-Identifier: MIT
"""What the stress suite shares: the scale, process counters, a CLI server, the report table.

``make test`` runs this suite at ``STRESS_SCALE=1`` (the fast subset); ``make stress`` runs it
with ``STRESS_SCALE=10``, where :func:`pick` switches to the full counts of the issue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SCALE = max(1, int(os.environ.get("STRESS_SCALE", "1")))
FULL = SCALE > 1


def pick(fast: int, full: int) -> int:
    """``fast`` in ``make test``, ``full`` in ``make stress``."""
    return full if FULL else fast


@dataclass(frozen=True)
class ProcStats:
    """RSS (KiB), open fds, threads and child processes of one process, read from /proc."""

    rss_kib: int
    fds: int
    threads: int
    children: int

    @classmethod
    def of(cls, pid: int | None = None) -> ProcStats:
        pid = os.getpid() if pid is None else pid
        rss = threads = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        children = 0
        for task in os.listdir(f"/proc/{pid}/task"):  # each thread lists its own children
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    children += len(f.read().split())
            except OSError:
                pass
        return cls(rss, fds, threads, children)

    def __str__(self) -> str:
        return f"{self.rss_kib // 1024} MiB/{self.fds} fds/{self.threads} thr"


@dataclass
class Row:
    case: str
    tried: int = 0
    faults: int = 0
    sent: int | None = None
    received: int | None = None
    before: ProcStats | None = None
    after: ProcStats | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


ROWS: list[Row] = []


def record(case: str, **kwargs: Any) -> Row:
    """Add one row to the table printed at the end of the run."""
    row = Row(case, **kwargs)
    ROWS.append(row)
    return row


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n:,}"


def table() -> str:
    """The rows as a markdown table."""
    head = ("| case | connections | faults | bytes sent | bytes received | "
            "server before (RSS/fds/threads) | after | s |")
    lines = [head, "|" + "---|" * 8]
    for r in ROWS:
        lines.append(
            f"| {r.case} | {r.tried:,} | {r.faults:,} | {_fmt_bytes(r.sent)} | "
            f"{_fmt_bytes(r.received)} | {r.before or '-'} | {r.after or '-'} | "
            f"{r.seconds:.1f} |")
    return "\n".join(lines)


def wait_until(predicate: Any, timeout: float, what: str = "condition") -> None:
    """Poll every 20 ms; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


@dataclass
class CliServer:
    """A DemoServer started through its CLI: the process the table's counters are read from."""

    proc: subprocess.Popen[str]
    port: int
    pid: int
    stderr_path: str = ""

    def stats(self) -> ProcStats:
        return ProcStats.of(self.pid)

    def stderr(self) -> str:
        """What the server wrote to stderr so far (a file: a pipe nobody reads would fill)."""
        with open(self.stderr_path, errors="replace") as f:
            return f.read()


@contextmanager
def cli_server(*args: str, password: str = "foo", nofile: int | None = None
               ) -> Iterator[CliServer]:
    """``python -m pylibssh_server.demo --password foo ARGS`` until the block ends (SIGTERM);
    ``nofile`` lowers the server's open-files limit (``RLIMIT_NOFILE``)."""
    def limit() -> None:
        if nofile is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    with tempfile.NamedTemporaryFile(prefix="demo-server-stderr-", suffix=".txt") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pylibssh_server.demo", "--password", password, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
            preexec_fn=limit if nofile is not None else None)
        server = CliServer(proc, 0, proc.pid, err.name)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                proc.wait(5)
                raise AssertionError(f"demo server did not start: {server.stderr()}")
            ready = json.loads(line)
            server.port = int(ready["port"])
            yield server
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
    assert proc.returncode == 0, f"demo server exited {proc.returncode}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paramiko_login(port: int, password: str = "foo") -> Any:
    """A paramiko Transport logged in to 127.0.0.1:``port`` (the caller closes it)."""
    import paramiko

    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=10)
        transport.auth_password("stress", password)
    except BaseException:
        transport.close()
        raise
    return transport


def run_command(transport: Any, command: str, stdin: bytes = b"", timeout: float = 30
                ) -> tuple[int, bytes]:
    """Exec ``command`` on a new channel of ``transport``; (exit status, stdout)."""
    chan = transport.open_session(timeout=10)
    try:
        chan.settimeout(timeout)
        chan.exec_command(command)
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
        out = bytearray()
        while True:
            chunk = chan.recv(1 << 16)
            if not chunk:
                break
            out += chunk
        return chan.recv_exit_status(), bytes(out)
    finally:
        chan.close()


def assert_serving(port: int) -> None:
    """Another client logs in to 127.0.0.1:``port`` and runs a command (the server serves)."""
    other = paramiko_login(port)
    try:
        assert run_command(other, "echo alive")[1] == b"alive\n"
    finally:
        other.close()


def settled(server: CliServer, baseline: ProcStats, timeout: float = 10) -> ProcStats:
    """Wait until the server's fds, threads and children are back to ``baseline``."""
    def back() -> bool:
        now = server.stats()
        return (now.fds <= baseline.fds and now.threads <= baseline.threads
                and now.children <= baseline.children)

    wait_until(back, timeout, f"server back to {baseline}")
    return server.stats()
