# SPDX-License-Identifier: MIT
"""The asyncssh benchmark client, run in its own process (so it never shares a GIL with the
orchestrator): ``python benchmarks/aclient.py '<json spec>'`` prints one JSON result line.

Spec keys: ``op`` (s2c, c2s, fwd, connrate, latency, idle, scale_tp), ``port``, ``password``
and the op's own parameters.  Every op has a deadline (``timeout``, seconds).  Data paths use
bare ``SSHClientSession`` subclasses (no stream wrappers) to keep the client's own cost low.
The ``idle`` op prints ``{"ready": ...}`` once its connections are up, then holds them until a
line (or EOF) arrives on stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from typing import Any

import asyncssh
import benchlib

CIPHER = "aes128-gcm@openssh.com"
KEX = "curve25519-sha256@libssh.org"
HOSTKEY_ALG = "ssh-ed25519"
WARMUP = 8 << 20  # bytes transferred before the throughput clock starts
CHUNK = 256 << 10
TIMES = "; times >&2"  # the command reports its own CPU time (taken out of the server's)
C2S_COMMAND = f"cat > /dev/null{TIMES}"


def s2c_command(total: int) -> str:
    return f"head -c {total} /dev/zero{TIMES}"


def _options(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(
        host="127.0.0.1", port=spec["port"], username="bench", password=spec["password"],
        known_hosts=None, client_keys=None, agent_path=None, preferred_auth="password",
        encryption_algs=[CIPHER], kex_algs=[KEX], server_host_key_algs=[HOSTKEY_ALG],
        compression_algs=None, connect_timeout=30, login_timeout=30,
    )


class _Sink(asyncssh.SSHClientSession):
    """Counts stdout bytes; notes when the warm-up is over and when the channel closes."""

    def __init__(self) -> None:
        self.count = 0
        self.t_warm: float | None = None
        self.stdout_text = b""
        self.stderr_text = b""
        self.keep = False
        self.closed = asyncio.get_event_loop().create_future()
        self.status: int | None = None

    def data_received(self, data: bytes, datatype: Any) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr_text += data
        elif datatype is None:
            self.count += len(data)
            if self.keep:
                self.stdout_text += data
            if self.t_warm is None and self.count >= WARMUP:
                self.t_warm = time.perf_counter()

    def exit_status_received(self, status: int) -> None:
        self.status = status

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(time.perf_counter())


class _Source(_Sink):
    """Writes ``total`` bytes as the channel's window allows, then EOF."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total
        self.sent = 0
        self.chan: asyncssh.SSHClientChannel | None = None
        self.t_start: float | None = None
        self.block = bytes(CHUNK)

    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def pump(self) -> None:
        chan = self.chan
        assert chan is not None
        # Bounded: at most total/CHUNK writes in all; stops whenever asyncssh pauses us.
        while self.sent < self.total and not self.paused:
            n = min(CHUNK, self.total - self.sent)
            chan.write(self.block[:n])
            self.sent += n
            if self.t_start is None and self.sent >= WARMUP:
                self.t_start = time.perf_counter()
        if self.sent >= self.total and not self.eof_sent:
            self.eof_sent = True
            chan.write_eof()

    paused = False
    eof_sent = False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()


async def op_s2c(spec: dict[str, Any]) -> dict[str, Any]:
    total = spec["bytes"]
    async with asyncssh.connect(**_options(spec)) as conn:
        chan, sess = await conn.create_session(_Sink, s2c_command(total), encoding=None)
        chan.write_eof()
        t_end = await sess.closed
    if sess.count != total or sess.status != 0 or sess.t_warm is None:
        raise RuntimeError(f"got {sess.count} of {total} bytes, exit status {sess.status}")
    return {"mib_s": (total - WARMUP) / (1 << 20) / (t_end - sess.t_warm),
            "cmd_cpu": benchlib.command_cpu(sess.stderr_text)}


async def op_c2s(spec: dict[str, Any]) -> dict[str, Any]:
    total = spec["bytes"]
    async with asyncssh.connect(**_options(spec)) as conn:
        _chan, sess = await conn.create_session(lambda: _Source(total), C2S_COMMAND,
                                                encoding=None)
        sess.pump()
        t_end = await sess.closed
    if sess.sent != total or sess.status != 0 or sess.t_start is None:
        raise RuntimeError(f"sent {sess.sent} of {total} bytes, exit status {sess.status}")
    return {"mib_s": (total - WARMUP) / (1 << 20) / (t_end - sess.t_start),
            "cmd_cpu": benchlib.command_cpu(sess.stderr_text)}


async def op_fwd(spec: dict[str, Any]) -> dict[str, Any]:
    total = spec["bytes"]
    async with asyncssh.connect(**_options(spec)) as conn:
        _chan, sess = await conn.create_connection(lambda: _Source(total), "127.0.0.1",
                                                  spec["sink_port"], encoding=None)
        sess.keep = True
        sess.pump()
        t_end = await sess.closed
    got = int.from_bytes(sess.stdout_text[:8], "big") if len(sess.stdout_text) >= 8 else -1
    if sess.sent != total or got != total or sess.t_start is None:
        raise RuntimeError(f"sent {sess.sent}, sink got {got} of {total} bytes")
    return {"mib_s": (total - WARMUP) / (1 << 20) / (t_end - sess.t_start)}


async def _one_exec(spec: dict[str, Any], command: str, expect: bytes | None) -> float:
    t0 = time.perf_counter()
    async with asyncssh.connect(**_options(spec)) as conn:
        result = await conn.run(command, check=True, encoding=None)
        if expect is not None and result.stdout != expect:
            raise RuntimeError(f"unexpected output {result.stdout!r}")
    return time.perf_counter() - t0


async def op_connrate(spec: dict[str, Any]) -> dict[str, Any]:
    n, concurrency = spec["count"], spec["concurrency"]
    sem = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def one() -> None:
        async with sem:
            try:
                await _one_exec(spec, "true", None)
            except (OSError, asyncssh.Error, asyncio.TimeoutError, RuntimeError) as exc:
                failures.append(repr(exc))

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    return {"conn_s": (n - len(failures)) / wall, "wall": wall, "failures": len(failures),
            "first_failure": failures[0] if failures else None}


async def op_latency(spec: dict[str, Any]) -> dict[str, Any]:
    times = []
    for _ in range(spec["count"]):
        times.append(await _one_exec(spec, "echo hi", b"hi\n"))
    return {"latencies": times}


async def _wait_stdin_line(timeout: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout)


async def op_scale_tp(spec: dict[str, Any]) -> dict[str, Any]:
    """``concurrency`` connections, each with ``read x; head -c EACH`` started; once all are
    up, print ``{"ready": n}``, wait for a line on stdin, then send "go" to every channel and
    time until all the data has arrived."""
    clients, total = spec["concurrency"], spec["bytes"]
    each = total // clients
    conns: list[asyncssh.SSHClientConnection] = []
    sessions: list[tuple[Any, _Sink]] = []

    async def open_one() -> None:
        conn = await asyncssh.connect(**_options(spec))
        conns.append(conn)
        sessions.append(await conn.create_session(_Sink, f"read x; {s2c_command(each)}",
                                                  encoding=None))

    try:
        await asyncio.gather(*(open_one() for _ in range(clients)))
        print(json.dumps({"ready": len(sessions)}), flush=True)
        await _wait_stdin_line(spec["timeout"])
        t0 = time.perf_counter()
        for chan, _ in sessions:
            chan.write(b"go\n")
            chan.write_eof()
        t_end = max(await asyncio.gather(*(sess.closed for _, sess in sessions)))
    finally:
        for conn in conns:
            conn.close()
    bad = [sess for _, sess in sessions if sess.count != each or sess.status != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} of {clients} clients failed: got {bad[0].count} of "
                           f"{each} bytes, exit {bad[0].status}")
    return {"mib_s": each * clients / (1 << 20) / (t_end - t0),
            "cmd_cpu": sum(benchlib.command_cpu(sess.stderr_text) for _, sess in sessions)}


async def op_idle(spec: dict[str, Any]) -> dict[str, Any]:
    """``count`` connections, at most ``concurrency`` (10) coming up at once; prints
    ``{"ready": n}``, holds them until a line (or EOF) arrives on stdin, then reports how many
    were lost meanwhile (closed by the server, or broken)."""
    n = spec["count"]
    conns: list[asyncssh.SSHClientConnection] = []
    sem = asyncio.Semaphore(spec.get("concurrency", 10))

    async def one() -> None:
        async with sem:
            conns.append(await asyncssh.connect(**_options(spec)))

    lost = 0
    try:
        await asyncio.gather(*(one() for _ in range(n)))
        print(json.dumps({"ready": len(conns)}), flush=True)
        await _wait_stdin_line(spec["timeout"])
        lost = sum(conn.is_closed() for conn in conns)
    finally:
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()
    return {"held": len(conns), "lost": lost}


OPS = {"s2c": op_s2c, "c2s": op_c2s, "fwd": op_fwd, "connrate": op_connrate,
       "latency": op_latency, "scale_tp": op_scale_tp, "idle": op_idle}


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.wait_for(OPS[spec["op"]](spec), spec.get("timeout", 120))


def main() -> int:
    spec = json.loads(sys.argv[1])
    # Hundreds of connections in one process (idle): its soft fd limit up to the hard one.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        result = asyncio.run(_main(spec))
    except (Exception, asyncio.TimeoutError) as exc:  # reported as JSON
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
