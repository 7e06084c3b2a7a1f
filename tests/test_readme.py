# SPDX-License-Identifier: MIT
"""The README cannot drift: every Python block runs as written (the fragments in a namespace
that provides what they leave out, with real clients), its CLI reference is the parser's own
help, and the repository needs nothing beside it."""

from __future__ import annotations

import ast
import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest
from conftest import ROOT, SSH_OPTS, stop_process

from pylibssh_server.demo import DemoServer

README = Path(ROOT) / "README.md"
TIMEOUT = 30


def _python_block_after(heading: str, nth: int = 0) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) > nth, f"no python block {nth} after {heading!r}"
    return str(blocks[nth])


#: Every Python block of the README, by the heading it follows and its index there: each has
#: a test below.
TESTED_BLOCKS = [("## The DemoServer in a test", 0), ("## The DemoServer in a test", 1),
                 ("## The DemoServer in a test", 2), ("## Writing your own server", 0),
                 ("## Writing your own server", 1), ("## Writing your own server", 2)]


def test_every_python_block_is_tested() -> None:
    text = README.read_text()
    tested = {_python_block_after(heading, nth) for heading, nth in TESTED_BLOCKS}
    assert set(re.findall(r"```python\n(.*?)```", text, flags=re.S)) == tested


def _paramiko_exec(host: str, port: int, user: str, password: str, command: str) -> str:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(host, port=port, username=user, password=password, look_for_keys=False,
                       allow_agent=False, timeout=TIMEOUT)
        _, stdout, _ = client.exec_command(command, timeout=TIMEOUT)
        return stdout.read().decode()
    finally:
        client.close()


def test_demo_server_in_a_test_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The first block, with ``run_my_client`` a paramiko client that runs ``uname -a``: its
    own asserts on the event log hold, and the timeline is printed."""
    outputs: list[str] = []

    def run_my_client(host: str, port: int, *, user: str, password: str) -> None:
        outputs.append(_paramiko_exec(host, port, user, password, "uname -a"))

    exec(_python_block_after("## The DemoServer in a test"), {"run_my_client": run_my_client})
    assert outputs and outputs[0].startswith("Linux")
    assert "auth_password" in capsys.readouterr().out


def test_pytest_plugin_example_runs(tmp_path: Path) -> None:
    """The second block, as a test file of its own: the plugin's fixtures are found (through
    the entry point) and both tests pass."""
    (tmp_path / "test_example.py").write_text(_python_block_after("## The DemoServer in a test", 1))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(tmp_path)], capture_output=True, text=True, timeout=TIMEOUT,
                            cwd=tmp_path)
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout + result.stderr


def test_ready_client_settings_example_runs(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The third block, top-level ``await`` included, against a password server: OpenSSH's ssh
    (the password from SSH_ASKPASS), paramiko with RejectPolicy and asyncssh all log in as
    alice and check the server's real host key."""
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho foo\n")
    askpass.chmod(0o700)
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    code = compile(_python_block_after("## The DemoServer in a test", 2), "README.md", "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with DemoServer(password="foo") as server:
        namespace: dict[str, Any] = {"server": server, "client": client,
                                     "subprocess": subprocess, "asyncssh": asyncssh}
        try:
            asyncio.run(asyncio.wait_for(eval(code, namespace), TIMEOUT))
        finally:
            client.close()
        logs = [c.callback_log for c in server.clients]
        assert [log["auth_password"] for log in logs] == [[("alice", "foo")]] * 3
        assert logs[0]["channel_exec_request"] == ["'uname -a'"]
        assert server.known_hosts_line().startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 ")


@pytest.mark.parametrize("nth", [0, 1, 2], ids=["threads", "reactor", "asyncio"])
def test_writing_your_own_server_example_runs(tmp_path: Path, nth: int) -> None:
    """The "Writing your own server" blocks, each run as a script: it prints its port (port
    0), answers an OpenSSH exec, and stops cleanly on Ctrl-C (SIGINT) with a client still
    connected: exit 0, no traceback."""
    script = tmp_path / "server.py"
    script.write_text(_python_block_after("## Writing your own server", nth))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    idle = None
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match is not None, (line, proc.stderr.read() if proc.stderr else "")
        port = int(match.group(1))
        argv = ["sshpass", "-p", "secret", "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
                "-p", str(port), "u@127.0.0.1", "hello"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        assert (result.returncode, result.stdout) == (0, "you said: hello\n"), result.stderr
        idle = paramiko.Transport(("127.0.0.1", port))
        idle.start_client(timeout=10)
        idle.auth_password("u", "secret")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if idle is not None:
            idle.close()
        stop_process(proc)
    assert (proc.returncode, err) == (0, "")


def test_cli_reference_is_the_parsers_help() -> None:
    """The CLI block in the README is ``--help`` as the parser prints it (regenerate it with
    ``python scripts/update_readme_cli.py``)."""
    sys.path.insert(0, str(Path(ROOT) / "scripts"))
    try:
        import update_readme_cli
    finally:
        sys.path.pop(0)
    assert update_readme_cli.cli_block() in README.read_text(), \
        "README.md's CLI reference is stale: run python scripts/update_readme_cli.py"


def test_the_repository_stands_alone() -> None:
    """Nothing tracked refers to a folder beside the checkout: the contract is in docs/ and
    the C reference server in benchmarks/."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=TIMEOUT).stdout.split()
    offenders = []
    for name in tracked:
        path = Path(ROOT) / name
        if name.startswith("tests/") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if "../shared" in text or "/work/shared" in text:
            offenders.append(name)
    assert offenders == []
    assert (Path(ROOT) / "docs" / "demo-contract.md").is_file()
    assert (Path(ROOT) / "benchmarks" / "c_server" / "c_libssh_server.c").is_file()
