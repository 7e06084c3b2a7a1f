# SPDX-License-Identifier: MIT
"""Hostile interactive clients: a pty shell that never reads while the client floods it, and
a flood of window-change requests; memory stays bounded and the server keeps serving."""

from __future__ import annotations

import time

from stress._support import cli_server, paramiko_login, pick, record, run_command, settled


def test_flooding_a_shell_that_never_reads() -> None:
    """A terminal discards what does not fit its line buffer (as any pty does, for sshd
    too), and what it does not take stays in our bounded buffer or in the client's closed
    window: the server's RSS grows by a few MiB at most while the client sends up to 64 MiB,
    and other clients are served meanwhile."""
    with cli_server() as server:
        baseline = server.stats()
        transport = paramiko_login(server.port)
        try:
            chan = transport.open_session(timeout=10)
            chan.get_pty()
            chan.exec_command("sleep 60")
            chan.settimeout(0.2)
            sent = 0
            deadline = time.monotonic() + pick(3, 10)
            block = b"x" * 65536
            while sent < (64 << 20) and time.monotonic() < deadline:
                try:
                    sent += chan.send(block)
                except TimeoutError:
                    pass  # the window is closed: the server stopped taking input
            during = server.stats()
            for _ in range(pick(200, 2000)):
                chan.resize_pty(80, 24)
            other = paramiko_login(server.port)
            try:
                assert run_command(other, "echo alive")[1] == b"alive\n"
            finally:
                other.close()
        finally:
            transport.close()
        after = settled(server, baseline, 15)
    assert during.rss_kib - baseline.rss_kib < 16 << 10, f"{during} after {sent} bytes"
    record("pty shell never reads, client floods", tried=1, sent=sent, before=baseline,
           after=after)
