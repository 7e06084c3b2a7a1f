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
from stress._support import (
    ProcStats,
    assert_serving,
    cli_server,
    paramiko_login,
    pick,
    record,
    settled,
)


@pytest.mark.usefixtures("data_path")
def test_flooding_a_shell_that_never_reads() -> None:
    """A terminal discards what does not fit its line buffer (as any pty does, for sshd
    too), and what it does not take stays in bounded buffers (ours, libssh's, the client's
    closed window): the server's RSS reaches a plateau of some MiB within the first seconds
    and stays there while the client keeps sending, and other clients are served meanwhile.
    (Measured: +13 MiB, flat from 10 to 80 MiB sent, on libssh 0.10 and 0.12.)"""
    seconds = pick(4, 12)
    with cli_server() as server:
        baseline = server.stats()
        transport = paramiko_login(server.port)
        try:
            chan = transport.open_session(timeout=10)
            chan.get_pty()
            chan.exec_command("sleep 60")
            chan.settimeout(0.2)
            sent = 0
            start = time.monotonic()
            early: ProcStats | None = None
            block = b"x" * 65536
            while time.monotonic() - start < seconds:
                try:
                    sent += chan.send(block)
                except TimeoutError:
                    pass  # the window is closed: the server stopped taking input
                if early is None and time.monotonic() - start > seconds / 3:
                    early = server.stats()
            during = server.stats()
            for _ in range(pick(200, 2000)):
                chan.resize_pty(80, 24)
            assert_serving(server.port)
        finally:
            transport.close()
        after = settled(server, baseline, 15)
    assert early is not None
    assert during.rss_kib - baseline.rss_kib < 32 << 10, f"{during} after {sent} bytes"
    assert during.rss_kib - early.rss_kib < 6 << 10, f"still growing: {early} -> {during}"
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
