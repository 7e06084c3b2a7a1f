# SPDX-License-Identifier: MIT
"""Interactive sessions: pty-req, shell, exec on a pty, window-change and signals, driven by
OpenSSH (through pexpect, as a user at a terminal), paramiko and asyncssh."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import asyncssh
import paramiko
import pexpect
import pytest
from conftest import SSH_OPTS, process_gone, wait_for

from pylibssh_server.demo import DemoServer

TIMEOUT = 20
PROMPT = "PROMPT> "


def _shell_server(factory: Any) -> DemoServer:
    """A server whose shell prints a fixed prompt (``sh -i`` with PS1 set)."""
    return factory(password="foo", command_env={"PS1": PROMPT, "ENV": ""})


def arun(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.usefixtures("data_path")
def test_openssh_tty_shell(demo_server_factory: Any) -> None:
    """``ssh -tt`` at a terminal: the prompt, ``stty size`` is the terminal's size, a resize
    (pexpect setwinsize) changes it, Ctrl-C interrupts a ``sleep`` and the shell goes on, and
    ``exit 3`` ends the session with status 3."""
    server = _shell_server(demo_server_factory)
    child = pexpect.spawn(
        "ssh", [*SSH_OPTS, "-tt", "-o", "PubkeyAuthentication=no",
                "-o", "PreferredAuthentications=password", "-p", str(server.port),
                "alice@127.0.0.1"],
        dimensions=(24, 80), encoding="utf-8", timeout=TIMEOUT)
    try:
        child.expect("password:")
        child.sendline("foo")
        child.expect_exact(PROMPT)
        child.sendline("stty size; echo TERM=$TERM")
        child.expect(r"24 80\r\n")
        child.expect(r"TERM=\S+\r\n")
        child.setwinsize(30, 100)
        wait_for(lambda: bool(server.clients[0].callback_log["channel_pty_window_change"]),
                 TIMEOUT, "window-change")
        child.sendline("stty size")
        child.expect(r"30 100\r\n")
        child.sendline("sleep 30; echo not-interrupted")
        time.sleep(0.3)
        started = time.monotonic()
        child.sendcontrol("c")
        child.expect_exact(PROMPT)
        assert time.monotonic() - started < 10
        assert "not-interrupted" not in child.before
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3
    log = server.clients[0].callback_log
    assert log["channel_shell_request"] == [True]
    assert log["channel_pty_request"][0][1:3] == (80, 24)
    assert log["channel_pty_window_change"][-1][:2] == (100, 30)


def _recv_until(chan: paramiko.Channel, pattern: str) -> str:
    data = ""
    deadline = time.monotonic() + TIMEOUT
    while not re.search(pattern, data):
        assert time.monotonic() < deadline, f"{pattern!r} not in {data!r}"
        if chan.recv_ready():
            data += chan.recv(65536).decode(errors="replace")
        else:
            time.sleep(0.01)
    return data


@pytest.mark.usefixtures("data_path")
def test_paramiko_invoke_shell_and_exec_on_a_pty(demo_server_factory: Any) -> None:
    """paramiko ``invoke_shell`` (vt100 90x20): TERM and size as requested, resize_pty takes
    effect, ``exit 5`` gives status 5; ``exec_command(get_pty=True)`` runs on a tty with
    stdout and stderr merged."""
    server = _shell_server(demo_server_factory)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(**server.paramiko_kwargs(), timeout=TIMEOUT)
        chan = client.invoke_shell(term="vt100", width=90, height=20)
        chan.send(b"stty size; echo T=$TERM\n")
        _recv_until(chan, r"90\r\nT=vt100\r\n")
        chan.resize_pty(width=120, height=40)
        chan.send(b"stty size\n")
        _recv_until(chan, r"40 120\r\n")
        chan.send(b"exit 5\n")
        assert chan.recv_exit_status() == 5

        _, stdout, stderr = client.exec_command("tty; echo err >&2; exit 4", get_pty=True)
        out = stdout.read().decode()
        assert re.fullmatch(r"/dev/pts/\d+\r\nerr\r\n", out), out
        assert (stderr.read(), stdout.channel.recv_exit_status()) == (b"", 4)
    finally:
        client.close()


@pytest.mark.usefixtures("data_path")
def test_asyncssh_terminal_process(demo_server: DemoServer) -> None:
    """asyncssh ``create_process(term_type=..., term_size=...)``: size and type reach the
    command, ``change_terminal_size`` sends SIGWINCH to it, and ``send_signal("INT")``
    reaches it; the exit status comes back."""
    script = ("trap 'echo winch; stty size' WINCH; trap 'echo int; exit 9' INT; "
              "stty size; echo T=$TERM; while :; do sleep 0.05; done")

    async def scenario() -> tuple[str, int | None]:
        async with asyncssh.connect(**demo_server.asyncssh_kwargs()) as conn:
            proc = await conn.create_process(script, term_type="xterm-256color",
                                             term_size=(77, 22))
            out = ""
            while "T=xterm-256color" not in out:
                out += await asyncio.wait_for(proc.stdout.read(1024), TIMEOUT)
            proc.change_terminal_size(101, 33)
            while "33 101" not in out:
                out += await asyncio.wait_for(proc.stdout.read(1024), TIMEOUT)
            proc.send_signal("INT")
            out += await asyncio.wait_for(proc.stdout.read(), TIMEOUT)
            await proc.wait_closed()
            return out, proc.exit_status

    out, status = arun(scenario())
    assert "22 77\r\n" in out and "winch\r\n33 101\r\n" in out and "int\r\n" in out
    assert status == 9
    assert demo_server.clients[0].callback_log["channel_signal"] == ["INT"]


def test_shell_without_a_pty_reads_commands_from_stdin(demo_server: DemoServer) -> None:
    """A shell request without pty-req runs the shell on pipes: commands from stdin, output
    and status back, no terminal."""
    async def scenario() -> tuple[str, int | None]:
        async with asyncssh.connect(**demo_server.asyncssh_kwargs()) as conn:
            proc = await conn.create_process()  # no command: a shell request
            proc.stdin.write("tty || echo no-tty; exit 6\n")
            out = await asyncio.wait_for(proc.stdout.read(), TIMEOUT)
            await proc.wait_closed()
            return out, proc.exit_status

    out, status = arun(scenario())
    assert (out.splitlines()[-1], status) == ("no-tty", 6)


def test_many_shells_and_a_stop_leave_no_process(demo_server_factory: Any) -> None:
    """20 concurrent pty shells on one server each run a background job; stopping the server
    with them open leaves none of their processes."""
    server = _shell_server(demo_server_factory)
    transports, pids = [], []
    lock = threading.Lock()

    def one() -> None:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        transport.start_client(timeout=TIMEOUT)
        transport.auth_password("u", "foo")
        chan = transport.open_session(timeout=TIMEOUT)
        chan.get_pty()
        chan.invoke_shell()
        chan.send(b"sleep 1000 & echo pid=$$:$!\n")
        found = re.search(r"pid=(\d+):(\d+)", _recv_until(chan, r"pid=\d+:\d+"))
        assert found is not None
        with lock:
            transports.append(transport)
            pids.extend(int(p) for p in found.groups())

    threads = [threading.Thread(target=one) for _ in range(20)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert (len(transports), len(pids)) == (20, 40)
        assert not any(process_gone(pid) for pid in pids)
        server.stop()
        wait_for(lambda: all(process_gone(pid) for pid in pids), TIMEOUT, "shells gone")
    finally:
        for transport in transports:
            transport.close()
