# SPDX-License-Identifier: MIT
"""Soak: thousands of connections one after the other, every byte checked, and the server's
RSS, fds, threads and children flat.  ``make test`` runs a few hundred; ``make stress`` runs
10,000 with auth + exec and 1,000 with SFTP and forwarding, as the issue asks.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable

import asyncssh
import pytest

from stress._support import CliServer, ProcStats, cli_server, pick, record, settled

#: RSS the server may gain between the end of the warm-up and the end of the run.
RSS_GROWTH_KIB = 8 << 10


async def _connect(port: int) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", port, username="soak", password="foo",
                                  known_hosts=None, agent_path=None, client_keys=None)


def _soak(server: CliServer, count: int,
          one: Callable[[asyncssh.SSHClientConnection, int], Awaitable[tuple[int, int]]]
          ) -> tuple[ProcStats, ProcStats, ProcStats, int, int]:
    """Run ``one(conn, i)`` on ``count`` sequential connections; returns the stats before,
    after the warm-up (a tenth), at the end, and the bytes sent and received."""
    sent = received = 0
    baseline = server.stats()
    warm: ProcStats | None = None

    async def main() -> None:
        nonlocal sent, received, warm
        for i in range(count):
            async with await _connect(server.port) as conn:
                s, r = await asyncio.wait_for(one(conn, i), 60)
                sent += s
                received += r
            if i == count // 10:
                warm = settled(server, baseline)

    asyncio.run(main())
    end = settled(server, baseline)
    assert warm is not None
    return baseline, warm, end, sent, received


def _check_flat(baseline: ProcStats, warm: ProcStats, end: ProcStats) -> None:
    assert (end.fds, end.threads, end.children) == (baseline.fds, baseline.threads,
                                                    baseline.children)
    assert end.rss_kib - warm.rss_kib < RSS_GROWTH_KIB, (warm, end)


# 10,000 connections one after the other take about 100 s on 2 cores: more than the suite's
# default 120 s limit once the machine is busy.  Each connection has its own 60 s bound.
@pytest.mark.timeout(900)
def test_sequential_connections_with_auth_and_exec() -> None:
    count = pick(300, 10_000)
    start = time.monotonic()

    async def one(conn: asyncssh.SSHClientConnection, i: int) -> tuple[int, int]:
        result = await conn.run(f"echo {i}", check=True)
        expected = f"{i}\n"
        assert result.stdout == expected
        return len(expected), len(str(result.stdout))

    with cli_server() as server:
        baseline, warm, end, sent, received = _soak(server, count, one)
    _check_flat(baseline, warm, end)
    assert sent == received
    record("soak: auth + exec", tried=count, sent=sent, received=received, before=warm,
           after=end, seconds=time.monotonic() - start)


@pytest.mark.timeout(900)
def test_sequential_connections_with_sftp_and_forwarding(echo_server: int,
                                                         tmp_path: os.PathLike[str]) -> None:
    count = pick(50, 1_000)
    payload = os.urandom(64 << 10)
    digest = hashlib.sha256(payload).digest()
    start = time.monotonic()

    async def one(conn: asyncssh.SSHClientConnection, i: int) -> tuple[int, int]:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open(f"/f{i % 4}", "wb") as f:
                await f.write(payload)
            async with sftp.open(f"/f{i % 4}", "rb") as f:
                back = await f.read()
        assert hashlib.sha256(back).digest() == digest
        reader, writer = await conn.open_connection("127.0.0.1", echo_server)
        writer.write(payload)
        writer.write_eof()
        echoed = await reader.read()
        writer.close()
        assert hashlib.sha256(echoed).digest() == digest
        return 2 * len(payload), len(back) + len(echoed)

    with cli_server("--sftp-root", os.fspath(tmp_path)) as server:
        baseline, warm, end, sent, received = _soak(server, count, one)
    _check_flat(baseline, warm, end)
    assert sent == received
    record("soak: SFTP + forwarding", tried=count, sent=sent, received=received, before=warm,
           after=end, seconds=time.monotonic() - start)
