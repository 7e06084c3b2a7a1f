# SPDX-License-Identifier: MIT
"""Hostile interactive clients: a pty shell that never reads while the client floods it, a
flood of window-change requests, absurd pty sizes, window-change without a pty; memory stays
bounded, requests are refused or clamped cleanly, and the server keeps serving."""

from __future__ import annotations

import subprocess
import time

import paramiko
import pytest
from conftest import SSH_OPTS

from pylibssh_server.demo import DemoServer
from stress._support import assert_serving, cli_server, paramiko_login, pick, record, settled


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
            assert_serving(server.port)
        finally:
            transport.close()
        after = settled(server, baseline, 15)
    assert during.rss_kib - baseline.rss_kib < 16 << 10, f"{during} after {sent} bytes"
    record("pty shell never reads, client floods", tried=1, sent=sent, before=baseline,
           after=after)


@pytest.mark.parametrize("width,height", [(0, 0), (100000, 100000), (2**31, 1)])
def test_absurd_pty_sizes_and_resize_without_pty(demo_server: DemoServer, width: int,
                                                 height: int) -> None:
    """pty requests with absurd sizes are clamped (the command still runs); a window-change
    on a channel without a pty is logged and ignored; the server keeps serving."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(**demo_server.paramiko_kwargs(), timeout=20)
        transport = client.get_transport()
        assert transport is not None
        chan = transport.open_session(timeout=20)
        chan.get_pty(width=min(width, 2**32 - 1), height=height)
        chan.exec_command("stty size >/dev/null && echo ok")
        assert (chan.makefile("rb").read(), chan.recv_exit_status()) == (b"ok\r\n", 0)
        plain = transport.open_session(timeout=20)
        plain.resize_pty(50, 10)
        plain.exec_command("echo plain")
        assert (plain.makefile("rb").read(), plain.recv_exit_status()) == (b"plain\n", 0)
    finally:
        client.close()
    log = demo_server.clients[0].callback_log
    assert log["channel_pty_window_change"] == [(50, 10, 0, 0)]
    result = subprocess.run(["sshpass", "-p", "foo", "ssh", *SSH_OPTS, "-o",
                             "PubkeyAuthentication=no", "-p", str(demo_server.port),
                             "u@127.0.0.1", "echo still"], capture_output=True, text=True,
                            timeout=20)
    assert result.stdout == "still\n"
