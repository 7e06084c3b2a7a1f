# SPDX-License-Identifier: MIT
"""The two benchmark clients: OpenSSH's ``ssh`` (via ``sshpass``) and asyncssh (aclient.py).

Every function does one measured operation against ``127.0.0.1:port`` and returns a dict of
raw figures (wall-clock only; the caller measures the server's CPU around it), or raises.
Every loop is bounded by a count and a deadline; every process is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import benchlib

HERE = Path(__file__).resolve().parent
CIPHER = "aes128-gcm@openssh.com"
KEX = "curve25519-sha256@libssh.org"
HOSTKEY_ALG = "ssh-ed25519"
WARMUP = 8 << 20  # bytes moved before the throughput clock starts (handshake excluded)
BLOCK = bytes(1 << 20)
F_SETPIPE_SZ = 1031
# The exec'd commands report their own CPU time (the shell's ``times``, on stderr) so that it
# can be taken out of the server's figure.
TIMES = "; times >&2"


def s2c_command(total: int) -> str:
    return f"head -c {total} /dev/zero{TIMES}"


C2S_COMMAND = f"cat > /dev/null{TIMES}"


def ssh_argv(port: int, password: str, command: str | None, *options: str) -> list[str]:
    """``sshpass -p PW ssh <fixed options> <options> -p PORT bench@127.0.0.1 [command]``."""
    argv = ["sshpass", "-p", password, "ssh", "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-c", CIPHER, "-o", f"KexAlgorithms={KEX}", "-o", f"HostKeyAlgorithms={HOSTKEY_ALG}",
            "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30", *options,
            "-p", str(port), "bench@127.0.0.1"]
    if command is not None:
        argv.append(command)
    return argv


def _err_bytes(f: Any) -> bytes:
    with contextlib.suppress(OSError):
        f.seek(0)
        return bytes(f.read())
    return b""


def _err_text(f: Any) -> str:
    return _err_bytes(f).decode("utf-8", "replace").strip()[-300:]


def _watchdog(proc: subprocess.Popen, timeout: float) -> threading.Timer:
    timer = threading.Timer(timeout, benchlib.kill, args=(proc,))
    timer.daemon = True
    timer.start()
    return timer


# ---- OpenSSH client -------------------------------------------------------------------------

def ssh_s2c(port: int, password: str, total: int, timeout: float) -> dict[str, Any]:
    """``head -c total /dev/zero`` read from ssh's stdout; MiB/s after the warm-up."""
    with tempfile.TemporaryFile() as err:
        proc = benchlib.spawn(ssh_argv(port, password, s2c_command(total)),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            with contextlib.suppress(OSError):
                import fcntl

                fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
            deadline = time.monotonic() + timeout
            count = 0
            t_warm = None
            while True:  # bounded by the deadline (and by EOF)
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError(f"s2c: no end after {timeout} s ({count} bytes)")
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                count += len(chunk)
                if t_warm is None and count >= WARMUP:
                    t_warm = time.perf_counter()
            t_end = time.perf_counter()
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            if rc != 0 or count != total or t_warm is None:
                raise RuntimeError(f"s2c: ssh exit {rc}, {count} of {total} bytes: "
                                   f"{_err_text(err)}")
            cmd_cpu = benchlib.command_cpu(_err_bytes(err))
        finally:
            benchlib.kill(proc)
    return {"mib_s": (total - WARMUP) / (1 << 20) / (t_end - t_warm), "cmd_cpu": cmd_cpu}


def ssh_c2s(port: int, password: str, total: int, timeout: float) -> dict[str, Any]:
    """``total`` zero bytes into ssh's stdin, ``cat > /dev/null`` on the server."""
    with tempfile.TemporaryFile() as err:
        proc = benchlib.spawn(ssh_argv(port, password, C2S_COMMAND),
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        timer = _watchdog(proc, timeout)
        try:
            assert proc.stdin is not None
            fd = proc.stdin.fileno()
            view = memoryview(BLOCK)
            sent = 0
            t_start = None
            try:
                while sent < total:  # bounded: total bytes, and the watchdog
                    n = os.write(fd, view[:min(len(view), total - sent)])
                    sent += n
                    if t_start is None and sent >= WARMUP:
                        t_start = time.perf_counter()
            except BrokenPipeError:
                pass
            proc.stdin.close()
            rc = proc.wait(timeout=timeout)
            t_end = time.perf_counter()
            if rc != 0 or sent != total or t_start is None:
                raise RuntimeError(f"c2s: ssh exit {rc}, sent {sent} of {total} bytes: "
                                   f"{_err_text(err)}")
            cmd_cpu = benchlib.command_cpu(_err_bytes(err))
        finally:
            timer.cancel()
            benchlib.kill(proc)
    return {"mib_s": (total - WARMUP) / (1 << 20) / (t_end - t_start), "cmd_cpu": cmd_cpu}


def _sink_roundtrip(port: int, total: int, timeout: float) -> tuple[int, float | None, float]:
    """Send ``total`` bytes to 127.0.0.1:port, half-close, read the 8-byte count back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        view = memoryview(BLOCK)
        sent = 0
        t_start = None
        while sent < total:  # bounded by total (each sendall has the socket timeout)
            n = min(len(view), total - sent)
            sock.sendall(view[:n])
            sent += n
            if t_start is None and sent >= WARMUP:
                t_start = time.perf_counter()
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        for _ in range(8):  # at most 8 reads of the 8-byte answer
            part = sock.recv(8 - len(reply))
            if not part:
                break
            reply += part
            if len(reply) == 8:
                break
        t_end = time.perf_counter()
    got = struct.unpack("!Q", reply)[0] if len(reply) == 8 else -1
    return got, t_start, t_end


def ssh_fwd(port: int, password: str, total: int, timeout: float, sink_port: int
            ) -> dict[str, Any]:
    """``ssh -N -L`` to the sink; ``total`` bytes through it; MiB/s after the warm-up."""
    return _ssh_forward(port, password, total, timeout, sink_port, "-L")


def ssh_rfwd(port: int, password: str, total: int, timeout: float, sink_port: int
             ) -> dict[str, Any]:
    """``ssh -N -R``: the server listens, the client connects to the sink; ``total`` bytes
    from the server's listener through the client to the sink."""
    return _ssh_forward(port, password, total, timeout, sink_port, "-R")


def _ssh_forward(port: int, password: str, total: int, timeout: float, sink_port: int,
                 flag: str) -> dict[str, Any]:
    lport = benchlib.free_port()
    with tempfile.TemporaryFile() as err:
        proc = benchlib.spawn(
            ssh_argv(port, password, None, "-N", "-o", "ExitOnForwardFailure=yes",
                     flag, f"127.0.0.1:{lport}:127.0.0.1:{sink_port}"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while True:  # wait for the forward: bounded by 30 s
                if proc.poll() is not None:
                    raise RuntimeError(f"fwd: ssh exited {proc.returncode}: {_err_text(err)}")
                try:
                    got, _, _ = _sink_roundtrip(lport, 0, 10)
                    if got == 0:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("fwd: the forward did not come up within 30 s")
                time.sleep(0.05)
            got, t_start, t_end = _sink_roundtrip(lport, total, timeout)
            if got != total or t_start is None:
                raise RuntimeError(f"fwd: the sink got {got} of {total} bytes")
        finally:
            benchlib.stop(proc, grace=2)
    return {"mib_s": (total - WARMUP) / (1 << 20) / (t_end - t_start)}


def _ssh_exec(port: int, password: str, command: str, timeout: float,
              expect: bytes | None = None) -> float:
    t0 = time.perf_counter()
    proc = benchlib.spawn(ssh_argv(port, password, command), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, errout = proc.communicate(timeout=timeout)
    finally:
        benchlib.kill(proc)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or (expect is not None and out != expect):
        raise RuntimeError(f"exec {command!r}: exit {proc.returncode}, stdout {out[:50]!r}, "
                           f"{errout.decode('utf-8', 'replace').strip()[-200:]}")
    return elapsed


def ssh_connrate(port: int, password: str, count: int, concurrency: int, timeout: float
                 ) -> dict[str, Any]:
    """``count`` connect+auth+exec ``true`` with ``concurrency`` at a time."""
    failures: list[str] = []

    def one(_: int) -> None:
        try:
            _ssh_exec(port, password, "true", timeout)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            failures.append(str(exc))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - t0
    return {"conn_s": (count - len(failures)) / wall, "wall": wall,
            "failures": len(failures), "first_failure": failures[0] if failures else None}


def ssh_latency(port: int, password: str, count: int, timeout: float) -> dict[str, Any]:
    return {"latencies": [_ssh_exec(port, password, "echo hi", timeout, b"hi\n")
                          for _ in range(count)]}


def ssh_scale_tp(port: int, password: str, total: int, concurrency: int, timeout: float,
                 mark: Callable[[], None]) -> dict[str, Any]:
    """``concurrency`` ssh clients, each running ``read x; head -c EACH``.  Once all are
    authenticated (their LocalCommand printed "ready"), ``mark()`` is called, every client gets
    "go" on stdin, and the clock runs until all the data has arrived."""
    each = total // concurrency
    argv = ssh_argv(port, password, f"read x; {s2c_command(each)}",
                    "-o", "PermitLocalCommand=yes", "-o", "LocalCommand=echo ready")
    procs: list[subprocess.Popen] = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(concurrency):
            proc = benchlib.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
            procs.append(proc)
            assert proc.stdout is not None and proc.stderr is not None
            for pipe in (proc.stdout, proc.stderr):
                os.set_blocking(pipe.fileno(), False)
        received: dict[int, bytearray] = {p.pid: bytearray() for p in procs}
        counts = dict.fromkeys(received, 0)
        errs: dict[int, bytearray] = {p.pid: bytearray() for p in procs}
        for p in procs:
            sel.register(p.stdout, selectors.EVENT_READ, (p.pid, "out"))  # type: ignore[arg-type]
            sel.register(p.stderr, selectors.EVENT_READ, (p.pid, "err"))  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        started = False
        ready = 0
        open_pipes = 2 * len(procs)
        t0 = t_end = 0.0
        while open_pipes:  # bounded by the deadline
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"scale: not done within {timeout} s")
            if not started and ready == len(procs):
                time.sleep(0.3)  # let the last exec requests land
                mark()
                started = True
                t0 = time.perf_counter()
                for p in procs:
                    assert p.stdin is not None
                    p.stdin.write(b"go\n")
                    p.stdin.close()
            for key, _ in sel.select(min(left, 1.0)):
                pid, kind = key.data
                try:
                    data = os.read(key.fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    t_end = time.perf_counter()
                    continue
                if kind == "err":
                    errs[pid] += data
                elif len(received[pid]) < 6:  # "ready\n" from LocalCommand comes first
                    need = 6 - len(received[pid])
                    received[pid] += data[:need]
                    counts[pid] += len(data) - min(need, len(data))
                    if len(received[pid]) == 6:
                        if bytes(received[pid]) != b"ready\n":
                            raise RuntimeError(f"scale: unexpected {bytes(received[pid])!r}")
                        ready += 1
                else:
                    counts[pid] += len(data)
            if not started and any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("scale: an ssh client failed before the start")
        rcs = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
        bad = [pid for pid, c in counts.items() if c != each]
        if bad or any(rcs):
            raise RuntimeError(f"scale: {len(bad)} of {concurrency} clients got a wrong "
                               f"byte count, exit codes {sorted(set(rcs))}: "
                               f"{bytes(errs[bad[0]] if bad else b'')[-200:]!r}")
        cmd_cpu = sum(benchlib.command_cpu(bytes(e)) for e in errs.values())
    finally:
        sel.close()
        for p in procs:
            benchlib.kill(p)
    return {"mib_s": each * concurrency / (1 << 20) / (t_end - t0), "cmd_cpu": cmd_cpu}


class SshIdle:
    """``count`` authenticated, idle ``ssh -N`` connections (ready once LocalCommand ran), at
    most ``concurrency`` of them coming up at once."""

    def __init__(self, port: int, password: str, count: int, timeout: float,
                 concurrency: int = 10) -> None:
        self.procs: list[subprocess.Popen] = []
        argv = ssh_argv(port, password, None, "-N", "-o", "PermitLocalCommand=yes",
                        "-o", "LocalCommand=echo ready")
        try:
            pending: dict[int, subprocess.Popen] = {}
            deadline = time.monotonic() + timeout
            while len(self.procs) < count or pending:  # bounded by count and the deadline
                while len(self.procs) < count and len(pending) < max(1, concurrency):
                    proc = benchlib.spawn(argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                    self.procs.append(proc)
                    assert proc.stdout is not None
                    pending[proc.stdout.fileno()] = proc
                left = deadline - time.monotonic()
                ready = select.select(list(pending), [], [], max(0.0, left))[0] if left > 0 \
                    else []
                if not ready:
                    raise TimeoutError(f"idle: {count - len(self.procs) + len(pending)} of "
                                       f"{count} connections not up within {timeout} s")
                for fd in ready:
                    if os.read(fd, 64).startswith(b"ready"):
                        pending.pop(fd)
                    else:
                        raise RuntimeError("idle: an ssh connection failed")
        except BaseException:
            self.close()
            raise

    def finish(self) -> int:
        """How many of the connections were lost (their ssh exited) while held."""
        return sum(p.poll() is not None for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            benchlib.stop(proc, grace=2)
        self.procs.clear()


# ---- asyncssh client (its own process) ------------------------------------------------------

def _aclient_argv(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, str(HERE / "aclient.py"), json.dumps(spec)]


def _result(proc: subprocess.Popen[bytes], out: bytes, errout: bytes) -> dict[str, Any]:
    """The last JSON line aclient.py printed, or its error as RuntimeError."""
    lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"asyncssh client exit {proc.returncode}: "
                           f"{errout.decode('utf-8', 'replace').strip()[-300:]}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise RuntimeError(f"asyncssh client: {result['error']}")
    return result


def asyncssh_op(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one aclient.py op to completion; its JSON result, or raise its error."""
    timeout = spec.get("timeout", 120)
    proc = benchlib.spawn(_aclient_argv(spec), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, errout = proc.communicate(timeout=timeout + 30)
    finally:
        benchlib.kill(proc)
    return _result(proc, out, errout)


def asyncssh_staged(spec: dict[str, Any], mark: Callable[[], None]) -> dict[str, Any]:
    """An aclient.py op that prints ``{"ready": n}`` and waits for a line on stdin before its
    measured part: ``mark()`` runs in between."""
    timeout = spec.get("timeout", 120)
    proc = benchlib.spawn(_aclient_argv(spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    timer = _watchdog(proc, timeout + 60)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().decode("utf-8", "replace")  # the watchdog bounds it
        data = json.loads(line) if line.startswith("{") else {}
        if "ready" not in data:
            rest = proc.communicate(timeout=10)
            raise RuntimeError(f"asyncssh client: {line.strip()[:300]} "
                               f"{rest[1].decode('utf-8', 'replace').strip()[-300:]}")
        mark()
        out, errout = proc.communicate(b"go\n", timeout=timeout + 30)
    finally:
        timer.cancel()
        benchlib.kill(proc)
    return _result(proc, out, errout)


class AsyncsshIdle:
    """``count`` idle asyncssh connections, held by aclient.py processes of at most
    ``per_process`` connections each, all started at once (one client process alone would
    limit how fast connections come up).  At most ``concurrency`` connections come up at
    once, over all the processes."""

    def __init__(self, spec: dict[str, Any], count: int, per_process: int, timeout: float,
                 concurrency: int = 10) -> None:
        self.procs: list[subprocess.Popen] = []
        per_process = max(1, per_process)
        counts = [min(per_process, count - i) for i in range(0, count, per_process)]
        each = max(1, concurrency // len(counts))  # handshakes in flight per process
        try:
            for n in counts:
                self.procs.append(benchlib.spawn(
                    _aclient_argv({**spec, "op": "idle", "count": n, "concurrency": each,
                                   "timeout": timeout + 120}),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + timeout
            for proc, n in zip(self.procs, counts):  # each bounded by the one deadline
                assert proc.stdout is not None
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([proc.stdout.fileno()], [], [], left)[0]:
                    raise TimeoutError(f"idle: {count} connections not up within {timeout} s")
                line = proc.stdout.readline().decode("utf-8", "replace")
                data = json.loads(line) if line.startswith("{") else {}
                if data.get("ready") != n:
                    raise RuntimeError(f"idle: asyncssh client said {line.strip()[:300]!r}")
        except BaseException:
            self.close()
            raise

    def finish(self) -> int:
        """Ask every client process to close its connections; how many of them had been lost
        (closed by the server or by an error) while held.  Raises if a client failed."""
        for proc in self.procs:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.write(b"stop\n")
                proc.stdin.flush()
        lost = 0
        for proc in self.procs:
            out, _ = proc.communicate(timeout=60)
            result = _result(proc, out, b"")
            lost += int(result.get("lost", 0))
        return lost

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.write(b"stop\n")
                    proc.stdin.close()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            benchlib.stop(proc, grace=2)
        self.procs.clear()
