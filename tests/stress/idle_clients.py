# SPDX-License-Identifier: MIT
"""Hold N idle authenticated asyncssh connections: ``idle_clients.py PORT N PASSWORD``.

Prints ``ready N`` once all are logged in, then holds them until stdin closes (or 10
minutes pass), and closes them.
"""

from __future__ import annotations

import asyncio
import sys

import asyncssh


async def main(port: int, count: int, password: str) -> None:
    gate = asyncio.Semaphore(20)  # connections in set-up at once

    async def one() -> asyncssh.SSHClientConnection:
        async with gate:
            return await asyncssh.connect(
                "127.0.0.1", port, username="idle", password=password, known_hosts=None,
                client_keys=None, agent_path=None, config=None, keepalive_interval=0)

    conns = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 300)
    print(f"ready {len(conns)}", flush=True)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), 600)
    for conn in conns:
        conn.close()
    await asyncio.gather(*(conn.wait_closed() for conn in conns), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
