# SPDX-License-Identifier: MIT
"""Process bookkeeping for the benchmarks: start/stop by PID, CPU time and memory of a tree."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every process the benchmark starts, so that a finally (also on Ctrl-C) can stop it by PID.
_live: dict[int, subprocess.Popen] = {}
_servers: set[int] = set()
_live_lock = threading.RLock()  # re-entrant: the signal handler may run inside spawn()
STOPPING = threading.Event()


def spawn(args: list[str], *, server: bool = False, **kwargs: Any) -> subprocess.Popen:
    """Popen that registers the child for :func:`stop_all` (refused once stopping)."""
    if STOPPING.is_set():
        raise KeyboardInterrupt("the benchmark is stopping")
    with _live_lock:
        proc = subprocess.Popen(args, **kwargs)
        _live[proc.pid] = proc
        if server:
            _servers.add(proc.pid)
    return proc


def interrupt() -> None:
    """From the signal handler: refuse new processes and SIGKILL every client process now
    (servers are stopped properly, descendants included, by the caller's finally)."""
    STOPPING.set()
    with _live_lock:
        clients = [p for pid, p in _live.items() if pid not in _servers]
    for proc in clients:
        with contextlib.suppress(OSError):
            proc.kill()


def forget(proc: subprocess.Popen) -> None:
    with _live_lock:
        _live.pop(proc.pid, None)
        _servers.discard(proc.pid)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` s; then its leftover descendants, each by PID."""
    descendants = [(p, _starttime(p)) for p in children_of(proc.pid)] \
        if proc.poll() is None else []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
    for pid, started in descendants:
        # Leftovers (a forked C connection handler, an exec'd command): the same process only,
        # checked by its start time so that a recycled pid is never hit.
        if started is not None and _starttime(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    forget(proc)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL one client process (and reap it)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    forget(proc)


def stop_all() -> None:
    with _live_lock:
        procs = list(_live.values())
    for proc in procs:
        stop(proc, grace=2.0)


# ---- /proc ------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on


def _starttime(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields is not None else None


def _ppids() -> dict[int, int]:
    result = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None:
                result[int(name)] = int(fields[1])
    return result


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (zombies included)."""
    ppids = _ppids()
    kids: dict[int, list[int]] = {}
    for child, parent in ppids.items():
        kids.setdefault(parent, []).append(child)
    out: list[int] = []
    todo = list(kids.get(pid, []))
    while todo:  # bounded by the number of processes on the machine
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its whole tree: its own utime+stime, the cutime+cstime of the
    children it reaped, and the same for every live (or zombie) descendant."""
    total = 0
    for p in [pid, *children_of(pid)]:
        fields = _stat(p)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def private_kib(pid: int) -> int:
    """Private memory (Private_Clean + Private_Dirty, i.e. USS) of ``pid`` and its live
    descendants, KiB.  Unlike PSS it does not move when other processes map the same
    libraries (the Python clients, the ssh clients), and a forked child counts only the pages
    it no longer shares with its parent."""
    total = 0
    for p in [pid, *children_of(pid)]:
        with contextlib.suppress(OSError), open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    return total


def thread_count(pid: int) -> int:
    """Threads of ``pid`` and its live descendants (the ``Threads:`` of each
    /proc/<pid>/status, summed): a process with one thread counts 1."""
    total = 0
    for p in [pid, *children_of(pid)]:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    total += int(line.split()[1])
                    break
    return total


def run_times(pid: int) -> dict[int, tuple[int, int]]:
    """Every thread of ``pid`` and its live descendants: thread id -> (nanoseconds it has
    run, times it was scheduled in), from /proc/<pid>/task/<tid>/schedstat.  Finer than
    :func:`cpu_seconds` (one clock tick), for the idle workload's near-zero CPU."""
    out: dict[int, tuple[int, int]] = {}
    for p in [pid, *children_of(pid)]:
        with contextlib.suppress(OSError):
            tids = os.listdir(f"/proc/{p}/task")
            for tid in tids:
                with contextlib.suppress(OSError, ValueError), \
                        open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    fields = f.read().split()
                    out[int(tid)] = (int(fields[0]), int(fields[2]))
    return out


def run_delta(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
              ) -> tuple[float, int]:
    """CPU seconds and times scheduled in between two :func:`run_times` readings (threads
    that ended in between are not counted)."""
    ns = runs = 0
    for tid, (t1, n1) in after.items():
        t0, n0 = before.get(tid, (0, 0))
        if t1 >= t0:  # else: a recycled thread id
            ns += t1 - t0
            runs += n1 - n0
        else:
            ns += t1
            runs += n1
    return ns / 1e9, runs


def settle(pid: int, timeout: float = 5.0, children: bool = True) -> None:
    """Wait (bounded) until ``pid`` has no descendants left (unless ``children`` is false) and
    its CPU time stops moving."""
    deadline = time.monotonic() + timeout
    while children and children_of(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.15)
        now = cpu_seconds(pid)
        if now == last:
            break
        last = now


# ---- misc -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_json_line(path: str, proc: subprocess.Popen, key: str, timeout: float = 30.0
                   ) -> dict[str, Any]:
    """First JSON object line of ``path`` that has ``key`` (the process writes it there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        data = json.loads(line)
                        if key in data:
                            return data
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was ready "
                               f"(see {path})")
        time.sleep(0.05)
    raise RuntimeError(f"not ready within {timeout} s (see {path})")


def wait_text(path: str, proc: subprocess.Popen, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(path) as f:
            if text in f.read():
                return
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was ready "
                               f"(see {path})")
        time.sleep(0.05)
    raise RuntimeError(f"not ready within {timeout} s (see {path})")


def wait_connectable(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} not accepting within {timeout} s")


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        raise ValueError("no values")
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ratio_interval(a: list[float], b: list[float], level: float = 0.9,
                   resamples: int = 2000) -> tuple[float, float]:
    """Bootstrap interval of median(a) / median(b): both sets resampled with replacement
    ``resamples`` times (seeded, so a report is reproducible from its raw values)."""
    rng = random.Random(0)
    ratios = sorted(median(rng.choices(a, k=len(a))) / median(rng.choices(b, k=len(b)))
                    for _ in range(resamples))
    tail = (1 - level) / 2
    return percentile(ratios, tail), percentile(ratios, 1 - tail)


_TIMES_LINE = re.compile(rb"\s*(\d+)m(\d+(?:\.\d+)?)s\s+(\d+)m(\d+(?:\.\d+)?)s\s*")


def command_cpu(stderr: bytes) -> float:
    """CPU seconds in the output of the shell's ``times`` builtin (appended to an exec'd
    command as ``; times >&2``): the shell's and its children's user+sys, summed."""
    lines = [m for m in map(_TIMES_LINE.fullmatch, (stderr or b"").splitlines()) if m]
    if len(lines) < 2:
        raise RuntimeError(f"no `times` output from the command in {stderr[-200:]!r}")
    total = 0.0
    for m in lines[-2:]:
        total += int(m[1]) * 60 + float(m[2]) + int(m[3]) * 60 + float(m[4])
    return total
