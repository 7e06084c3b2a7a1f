# SPDX-License-Identifier: MIT
"""Commands that never touch the host: canned replies, callables, ``host_commands=False``
and the scripted shell, driven by OpenSSH (pexpect for the terminal), paramiko and asyncssh."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pexpect
import pytest
from conftest import SSH_OPTS
from test_demo_cli import run_cli, running_cli

from pylibssh_server.demo import DemoServer, Process, Reply

TIMEOUT = 20

def upper(process: Process) -> int:
    """A callable reply: stdin (to EOF) upper-cased to stdout, the env and term to stderr."""
    data = process.stdin.read()
    process.stdout.write(data.upper())
    process.stderr.write(f"FOO={process.env.get('FOO')} term={process.term}\n".encode())
    return 4


COMMANDS: dict[Any, Any] = {
    "uname -a": "DemoOS 1.0\n",
    "fail": {"stdout": "half\n", "stderr": "broken\n", "exit_status": 3},
    "slow": Reply(stdout="late\n", delay=0.4),
    re.compile(r"echo (\w+)"): "an echo\n",
    "upper": upper,
    "boom": lambda p: 1 // 0,
}


def ssh(server: DemoServer, *args: str, tty: bool = False) -> subprocess.CompletedProcess[str]:
    """OpenSSH exec; the output decoded without newline translation (CR LF stays)."""
    argv = ["sshpass", "-p", "foo", "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
            *(["-tt"] if tty else []), "-p", str(server.port), "u@127.0.0.1", *args]
    result = subprocess.run(argv, capture_output=True, timeout=TIMEOUT,
                            stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(argv, result.returncode, result.stdout.decode(),
                                       result.stderr.decode())


def arun(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_canned_commands_from_openssh(demo_server_factory: Any,
                                      no_process_started: list[str]) -> None:
    """Exact lines and patterns answered from the table: stdout, stderr, exit status and
    delay as given; no process is started for them; on a pty (``ssh -tt``) the output is the
    terminal's (CR LF, stderr merged)."""
    server = demo_server_factory(password="foo", commands=COMMANDS)
    assert ssh(server, "uname -a").stdout == "DemoOS 1.0\n"
    failed = ssh(server, "fail")
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "half\n", "broken\n")
    assert ssh(server, "echo hello").stdout == "an echo\n"
    start = time.monotonic()
    assert ssh(server, "slow").stdout == "late\n"
    assert time.monotonic() - start >= 0.4
    on_tty = ssh(server, "fail", tty=True)
    assert (on_tty.returncode, on_tty.stdout) == (3, "half\r\nbroken\r\n")
    assert no_process_started == ["subprocess.Popen"] * 5  # the ssh clients, nothing else
    # The pattern must match the whole line: this one is not canned, the host runs it.
    assert ssh(server, "echo two words").stdout == "two words\n"
    host = ssh(server, "printf host")
    assert (host.returncode, host.stdout) == (0, "host")  # not in the table: the host runs it


def test_callable_replies_from_asyncssh_and_paramiko(demo_server_factory: Any) -> None:
    """A callable gets stdin up to the client's EOF, the env and the terminal, writes stdout
    and stderr, and its return value is the exit status; one that raises gives status 1 and
    the error on stderr."""
    server = demo_server_factory(password="foo", commands=COMMANDS)

    async def scenario() -> tuple[Any, Any]:
        async with asyncssh.connect(**server.asyncssh_kwargs()) as conn:
            up = await conn.run("upper", input="shout\n", env={"FOO": "bar"})
            boom = await conn.run("boom")
            return up, boom

    up, boom = arun(scenario())
    assert (up.stdout, up.stderr, up.exit_status) == ("SHOUT\n", "FOO=bar term=None\n", 4)
    assert boom.exit_status == 1
    assert "ZeroDivisionError" in boom.stderr

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(**server.paramiko_kwargs(), timeout=TIMEOUT)
        stdin, stdout, _ = client.exec_command("upper")
        stdin.write(b"quiet")
        stdin.channel.shutdown_write()
        assert stdout.read() == b"QUIET"
        assert stdout.channel.recv_exit_status() == 4
        _, out, _ = client.exec_command("uname -a")
        assert out.read() == b"DemoOS 1.0\n"
    finally:
        client.close()


def test_no_host_commands_never_starts_a_process(demo_server_factory: Any,
                                                 no_process_started: list[str]) -> None:
    """``host_commands=False``: an unknown exec gets the contract's message and 127, canned
    ones still answer, and no process is started by the server during the whole test."""
    server = demo_server_factory(password="foo", commands=COMMANDS, host_commands=False)

    async def scenario() -> tuple[Any, Any, Any]:
        async with asyncssh.connect(**server.asyncssh_kwargs()) as conn:
            return (await conn.run("rm -rf /"), await conn.run("uname -a"),
                    await conn.run("upper", input="x"))

    unknown, canned, function = arun(scenario())
    assert (unknown.exit_status, unknown.stdout, unknown.stderr) == (
        127, "", "demo: command not found: rm -rf /\n")
    assert (canned.stdout, function.stdout) == ("DemoOS 1.0\n", "X")
    assert no_process_started == []


def test_scripted_shell_over_openssh_tty(demo_server_factory: Any,
                                         no_process_started: list[str]) -> None:
    """With no host commands a shell request gets the scripted shell: banner, prompt, each
    typed line echoed and answered, an unknown line refused, ``exit`` ends it with 0."""
    from pylibssh_server.demo import CommandTable

    table = CommandTable({"show version": "DemoOS 1.0\n"}, prompt="router# ",
                         banner="Welcome to the demo router\n")
    server = demo_server_factory(password="foo", commands=table, host_commands=False)
    child = pexpect.spawn("ssh", [*SSH_OPTS, "-tt", "-o", "PubkeyAuthentication=no",
                                  "-p", str(server.port), "u@127.0.0.1"],
                          encoding="utf-8", timeout=TIMEOUT)
    try:
        child.expect("password:")
        child.sendline("foo")
        child.expect_exact("Welcome to the demo router\r\nrouter# ")
        child.sendline("show version")
        child.expect_exact("show version\r\nDemoOS 1.0\r\nrouter# ")
        child.sendline("reload")
        child.expect_exact("reload\r\ndemo: command not found: reload\r\nrouter# ")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert no_process_started == ["os.forkpty"]  # pexpect starting ssh, nothing else
    assert server.clients[0].callback_log["channel_shell_request"] == [True]


def test_scripted_shell_without_a_pty(demo_server_factory: Any) -> None:
    """Without a pty the scripted shell does not echo; EOF ends it with status 0."""
    server = demo_server_factory(password="foo", commands={"a": "1\n"}, host_commands=False)

    async def scenario() -> tuple[str, int | None]:
        async with asyncssh.connect(**server.asyncssh_kwargs()) as conn:
            proc = await conn.create_process()
            proc.stdin.write("a\nb\n")
            proc.stdin.write_eof()
            out = await asyncio.wait_for(proc.stdout.read(), TIMEOUT)
            await proc.wait_closed()
            return out, proc.exit_status

    assert arun(scenario()) == ("demo$ 1\ndemo$ demo: command not found: b\ndemo$ ", 0)


def test_commands_file_in_the_cli(tmp_path: Path) -> None:
    """``--commands FILE`` with ``--no-host-commands``: the table answers, unknown commands
    get 127; a malformed file is a usage error (exit 2, one message naming the file)."""
    path = tmp_path / "commands.json"
    path.write_text(json.dumps({"commands": {"hostname": "demo-host\n",
                                             "false": {"exit_status": 1}},
                                "prompt": "> "}))
    with running_cli("--password", "foo", "--commands", str(path),
                     "--no-host-commands") as (_, ready):
        base = ["sshpass", "-p", "foo", "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
                "-p", str(ready["port"]), "u@127.0.0.1"]
        run = [subprocess.run([*base, cmd], capture_output=True, text=True, timeout=TIMEOUT)
               for cmd in ("hostname", "false", "whoami")]
    assert [(r.returncode, r.stdout) for r in run] == [(0, "demo-host\n"), (1, ""), (127, "")]
    for bad in ('{"commands": {"x": 3}}', "not json", '{"commands": {}, "other": 1}',
                '{"commands": {"x": {"exit_status": 999}}}'):
        path.write_text(bad)
        result = run_cli("--password", "foo", "--commands", str(path))
        assert (result.returncode, result.stdout) == (2, ""), bad
        assert str(path) in result.stderr


def test_table_arguments_are_checked() -> None:
    """A reply or key of the wrong form fails at construction."""
    for commands in ({"x": 3}, {3: "x"}, {"x": {"stdout": "a", "colour": "red"}},
                     {"x": {"delay": -1}}):
        with pytest.raises((TypeError, ValueError)):
            DemoServer(password="foo", commands=commands)
