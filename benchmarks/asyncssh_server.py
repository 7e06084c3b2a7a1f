# SPDX-License-Identifier: MIT
"""A small asyncssh server equivalent to the DemoServer, for benchmarks only.

Password auth (any user, one password), "exec" through ``/bin/sh -c`` with its pipes handed to
``SSHServerProcess.redirect`` (streamed both ways, asyncssh's own flow control), exit status,
and direct-tcpip (asyncssh connects and relays itself).  Loopback only.

    python benchmarks/asyncssh_server.py --port 0 --hostkey KEY --password PW

prints one JSON line ``{"port": N, "pid": P}`` when listening; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

import asyncssh


class _Server(asyncssh.SSHServer):
    def __init__(self, password: str) -> None:
        self._password = password

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return password == self._password

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        """``ssh -R``: loopback listeners, as the DemoServer grants them."""
        return listen_host in ("", "localhost", "127.0.0.1", "::1")

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        return dest_host in ("127.0.0.1", "localhost", "::1")


async def _run_command(process: asyncssh.SSHServerProcess) -> None:
    command = process.command or "true"
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdin=in_r, stdout=out_w, stderr=err_w,
            start_new_session=True)
    except OSError as exc:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        process.stderr.write(f"cannot run command: {exc}\n".encode())
        process.exit(127)
        return
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    try:
        await process.redirect(stdin=in_w, stdout=out_r, stderr=err_r, bufsize=65536)
        await process.stdout.drain()
        await process.stderr.drain()
        status = await proc.wait()
    except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged, OSError,
            asyncssh.Error):
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        status = 255
    process.exit(status if status >= 0 else 128 - status)


async def _main(args: argparse.Namespace) -> int:
    key = asyncssh.read_private_key(args.hostkey)
    server = await asyncssh.create_server(
        lambda: _Server(args.password), args.host, args.port, server_host_keys=[key],
        process_factory=_run_command, encoding=None, backlog=args.backlog,
        allow_scp=False, sftp_factory=None)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hostkey", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--backlog", type=int, default=128)
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
