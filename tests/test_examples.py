# SPDX-License-Identifier: MIT
"""End-to-end tests of examples/echo_server.py and examples/kbdint_server.py.

Each example runs as a subprocess (it prints one JSON line with its port) and is driven by
the OpenSSH client (password through sshpass, keyboard-interactive through SSH_ASKPASS) and
by paramiko.  After each test the server gets SIGTERM and must exit 0 without a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import paramiko
import pytest
from conftest import PYTHON, ROOT, ServerThread, ssh_base_args, stop_process

EXAMPLES = os.path.join(ROOT, "examples")


@pytest.fixture
def example() -> Iterator[Callable[..., int]]:
    """Start ``examples/<name>.py --port 0 [args]``; return its port.  Stopped (SIGTERM,
    then SIGKILL after 5 s) after the test, and checked for a clean exit."""
    procs: list[subprocess.Popen[str]] = []

    def start(name: str, *args: str) -> int:
        proc = subprocess.Popen([PYTHON, os.path.join(EXAMPLES, f"{name}.py"), "--port", "0",
                                 *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, f"{name} printed no port within 15 s"
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["host"] == "127.0.0.1"
        return int(info["port"])

    yield start
    for proc in procs:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=10)
        finally:
            stop_process(proc)
        assert (proc.returncode, "Traceback" in stderr) == (0, False), stderr


def run_ssh(port: int, *args: str, password: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ssh`` (with sshpass if ``password``) against the example; bounded by 30 s."""
    prefix = ["sshpass", "-p", password] if password is not None else []
    return subprocess.run(
        [*prefix, "ssh", *ssh_base_args(port, batch=False), "-o", "NumberOfPasswordPrompts=1",
         *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        env=env)


def askpass_env(tmp_path: Path, answers: dict[str, str]) -> tuple[dict[str, str], Path]:
    """Environment making ssh ask a script for kbd-interactive answers (chosen by a word in
    the prompt); the script logs each prompt to the returned file."""
    log = tmp_path / "prompts.log"
    script = tmp_path / "askpass.sh"
    cases = "".join(f'  *{word}*) echo "{answer}" ;;\n' for word, answer in answers.items())
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{log}"\n'
                      f'case "$1" in\n{cases}  *) echo unexpected ;;\nesac\n')
    script.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env.update(SSH_ASKPASS=str(script), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    return env, log


def paramiko_exec(port: int, auth: Callable[[paramiko.Transport], Any],
                  command: str) -> tuple[bytes, int]:
    """Log in with ``auth(transport)``, run ``command``; return (stdout, exit status)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        auth(transport)
        channel = transport.open_session(timeout=10)
        channel.settimeout(10)
        channel.exec_command(command)
        output = channel.makefile("rb").read()
        return output, channel.recv_exit_status()
    finally:
        transport.close()


def kbdint_handler(answers: dict[str, str], seen: list[Any]) -> Callable[..., list[str]]:
    """A paramiko ``auth_interactive`` handler answering by prompt text."""
    def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        seen.append((title, instructions, prompts))
        return [answers[prompt] for prompt, _echo in prompts]
    return handler


# ---- echo_server.py -----------------------------------------------------------------------


@pytest.mark.parametrize(("command", "status"), [("hello world", 0), ("fail", 3)])
def test_echo_openssh_password(example: Callable[..., int], command: str, status: int) -> None:
    """OpenSSH with the right password gets the echo and the exit status of the command."""
    port = example("echo_server", "--password", "s3cret")
    result = run_ssh(port, "user@127.0.0.1", command, password="s3cret")
    assert (result.returncode, result.stdout, result.stderr) == (
        status, f"echo: {command}\n", "")


def test_echo_openssh_password_denied(example: Callable[..., int]) -> None:
    """OpenSSH with a wrong password is denied (exit 255) and runs nothing."""
    port = example("echo_server", "--password", "s3cret")
    result = run_ssh(port, "user@127.0.0.1", "hello", password="wrong")
    assert (result.returncode, result.stdout) == (255, "")
    assert "Permission denied (password)" in result.stderr


@pytest.mark.parametrize(("command", "status"), [("paramiko says hi", 0), ("fail", 3)])
def test_echo_paramiko_password(example: Callable[..., int], command: str,
                                status: int) -> None:
    """paramiko logs in with the password and receives the output and the exit status."""
    port = example("echo_server", "--password", "s3cret")
    output = paramiko_exec(port, lambda t: t.auth_password("user", "s3cret"), command)
    assert output == (f"echo: {command}\n".encode(), status)


def test_echo_paramiko_password_denied(example: Callable[..., int]) -> None:
    """paramiko with a wrong password gets AuthenticationException (not a hang)."""
    port = example("echo_server", "--password", "s3cret")
    with pytest.raises(paramiko.AuthenticationException) as info:
        paramiko_exec(port, lambda t: t.auth_password("user", "nope"), "hello")
    assert type(info.value) is paramiko.AuthenticationException


# ---- kbdint_server.py ---------------------------------------------------------------------


def test_kbdint_openssh_accepted(example: Callable[..., int], tmp_path: Path) -> None:
    """OpenSSH answers both kbd-interactive prompts ("foo", "bar") through SSH_ASKPASS, is
    let in and gets the exec output and exit status."""
    port = example("kbdint_server")
    env, log = askpass_env(tmp_path, {"Password": "foo", "Token": "bar"})
    result = run_ssh(port, "user@127.0.0.1", "kbd says hi", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "echo: kbd says hi\n", "")
    assert log.read_text().splitlines() == ["(user@127.0.0.1) Password: ",
                                            "(user@127.0.0.1) Token: "]
    failed = run_ssh(port, "user@127.0.0.1", "fail", env=env)
    assert (failed.returncode, failed.stdout) == (3, "echo: fail\n")


def test_kbdint_openssh_denied(example: Callable[..., int], tmp_path: Path) -> None:
    """A wrong token is denied: exit 255, ``Permission denied (keyboard-interactive)``."""
    port = example("kbdint_server")
    env, _ = askpass_env(tmp_path, {"Password": "foo", "Token": "wrong"})
    result = run_ssh(port, "user@127.0.0.1", "hello", env=env)
    assert (result.returncode, result.stdout) == (255, "")
    assert "Permission denied (keyboard-interactive)" in result.stderr


def test_kbdint_openssh_password_not_offered(example: Callable[..., int]) -> None:
    """The kbdint server advertises only keyboard-interactive: an OpenSSH client limited to
    password auth is refused without being asked for one."""
    port = example("kbdint_server")
    result = run_ssh(port, "-o", "PreferredAuthentications=password", "user@127.0.0.1",
                     "hello", password="foo")
    assert (result.returncode, result.stdout) == (255, "")
    assert "Permission denied (keyboard-interactive)" in result.stderr


def test_kbdint_paramiko_accepted(example: Callable[..., int]) -> None:
    """paramiko's auth_interactive sees the name, instruction and both prompts (no echo);
    the right answers log in and the exec output and exit status arrive."""
    port = example("kbdint_server", "--password", "pw1", "--token", "123456")
    seen: list[Any] = []
    handler = kbdint_handler({"Password: ": "pw1", "Token: ": "123456"}, seen)
    output = paramiko_exec(port, lambda t: t.auth_interactive("user", handler), "ok")
    assert output == (b"echo: ok\n", 0)
    assert seen == [("pylibssh_server", "Answer both prompts.",
                     [("Password: ", False), ("Token: ", False)])]


def test_kbdint_paramiko_denied(example: Callable[..., int]) -> None:
    """Wrong kbd-interactive answers are denied; a password attempt is refused with
    keyboard-interactive as the only allowed method."""
    port = example("kbdint_server")
    handler = kbdint_handler({"Password: ": "foo", "Token: ": "baz"}, [])
    with pytest.raises(paramiko.AuthenticationException) as info:
        paramiko_exec(port, lambda t: t.auth_interactive("user", handler), "x")
    assert type(info.value) is paramiko.AuthenticationException
    with pytest.raises(paramiko.BadAuthenticationType) as bad:
        paramiko_exec(port, lambda t: t.auth_password("user", "foo"), "x")
    assert bad.value.allowed_types == ["keyboard-interactive"]


# ---- in process: the examples' session handlers under Bind.listen --------------------------


@pytest.fixture
def examples_module(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import an example as a module (kbdint_server imports echo_server by name)."""
    monkeypatch.syspath_prepend(EXAMPLES)
    return importlib.import_module


def test_in_process_handlers(examples_module: Callable[[str], ModuleType],
                             serve: Callable[..., ServerThread], tmp_path: Path) -> None:
    """Both examples' serve_client functions work under ``Bind.listen`` in a thread of this
    process, one thread per client, with no handler error."""
    echo = examples_module("echo_server")
    kbdint = examples_module("kbdint_server")
    echo_server = serve(lambda session: echo.serve_client(session, "pw"))
    kbdint_server = serve(lambda session: kbdint.serve_client(session, ("foo", "bar")))
    result = run_ssh(echo_server.port, "user@127.0.0.1", "in process", password="pw")
    assert (result.returncode, result.stdout) == (0, "echo: in process\n")
    env, _ = askpass_env(tmp_path, {"Password": "foo", "Token": "bar"})
    result = run_ssh(kbdint_server.port, "user@127.0.0.1", "kbd", env=env)
    assert (result.returncode, result.stdout) == (0, "echo: kbd\n")
    assert (len(echo_server.sessions), len(kbdint_server.sessions)) == (1, 1)
    assert kbdint_server.sessions[0].user == "user"
    assert (echo_server.errors, kbdint_server.errors) == ([], [])


def test_stop_with_connected_client(examples_module: Callable[[str], ModuleType],
                                    serve: Callable[..., ServerThread]) -> None:
    """Stopping a listening server while a logged-in client idles closes the bind and the
    session from this thread: the handler (in dopoll) ends within a second and the client
    sees the disconnect."""
    echo = examples_module("echo_server")
    server = serve(lambda session: echo.serve_client(session, "pw"))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        transport.auth_password("user", "pw")
        start = time.monotonic()
        server.stop(timeout=5)
        assert time.monotonic() - start < 1.0
        deadline = time.monotonic() + 5
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (transport.is_active(), server.sessions[0].closed) == (False, True)
    finally:
        transport.close()
