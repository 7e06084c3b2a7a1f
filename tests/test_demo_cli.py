# SPDX-License-Identifier: MIT
"""``python -m pylibssh_server.demo``: the ready line, signals, start-up errors, options.

Each test starts the CLI as a subprocess of this venv's Python, on 127.0.0.1 with an ephemeral
port, and stops it by its pid; every wait is bounded.
"""

from __future__ import annotations

import getpass
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import SSH_OPTS, stop_process

PYTHON = sys.executable
TIMEOUT = 20


def cli(*args: str) -> list[str]:
    return [PYTHON, "-m", "pylibssh_server.demo", *args]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI expecting it to exit by itself (a start-up error)."""
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def read_ready_line(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Wait (bounded) for the CLI's first stdout line and parse it as JSON."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no ready line within {timeout} s"
    line = proc.stdout.readline()
    assert line.endswith("\n"), f"incomplete ready line {line!r}"
    return dict(json.loads(line))


@contextmanager
def running_cli(*args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """A running CLI server and its ready line; terminated (by pid) afterwards."""
    proc = subprocess.Popen(cli(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc, read_ready_line(proc)
    finally:
        stop_process(proc)


def ssh_keygen_fingerprint(public: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public)], check=True, timeout=TIMEOUT,
                         capture_output=True, text=True).stdout
    return out.split()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f",
                    str(path)], check=True, timeout=TIMEOUT, capture_output=True)
    return path


def ssh_host_fingerprint(port: int, password: str) -> str:
    """Log in with paramiko and return the SHA256 fingerprint of the host key it received."""
    import base64
    import hashlib

    import paramiko

    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=TIMEOUT)
            transport.auth_password("demo", password)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# ---- ready line and signals ---------------------------------------------------------------------
def test_ready_line(tmp_path: Path) -> None:
    """When ready the CLI prints one JSON line with host, port (the real one for --port 0) and
    the host key fingerprint, which is the key a client then sees; ssh with the password works."""
    with running_cli("--password", "pw", "--port", "0") as (proc, ready):
        assert ready["host"] == "127.0.0.1"
        assert isinstance(ready["port"], int) and 0 < ready["port"] < 65536
        assert ready["fingerprint"].startswith("SHA256:")
        assert ready["pid"] == proc.pid
        assert ready["auth_methods"] == ["password"]
        assert ssh_host_fingerprint(ready["port"], "pw") == ready["fingerprint"]
        result = subprocess.run(
            ["sshpass", "-p", "pw", "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
             "-p", str(ready["port"]), "demo@127.0.0.1", "echo via-cli"],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stdout) == (0, "via-cli\n")
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, rest) == (0, "")  # exactly one line on stdout


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(signum: int) -> None:
    """SIGTERM and SIGINT stop the server: exit status 0 within 2 s, and the port is closed."""
    with running_cli("--password", "pw") as (proc, ready):
        start = time.monotonic()
        proc.send_signal(signum)
        proc.wait(TIMEOUT)
        elapsed = time.monotonic() - start
        stderr = proc.stderr.read() if proc.stderr else ""
    assert (proc.returncode, stderr) == (0, "")
    assert elapsed < 2.0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ready["port"]), timeout=5).close()


def test_signal_with_connected_client() -> None:
    """SIGTERM while a client runs a long command still exits 0 promptly (< 3 s)."""
    with running_cli("--password", "pw") as (proc, ready):
        client = subprocess.Popen(
            ["sshpass", "-p", "pw", "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
             "-p", str(ready["port"]), "demo@127.0.0.1", "echo started; sleep 60"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            assert client.stdout is not None
            ready_out, _, _ = select.select([client.stdout], [], [], TIMEOUT)
            assert ready_out, "command did not start"
            assert client.stdout.readline() == "started\n"
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(TIMEOUT)
            elapsed = time.monotonic() - start
            client.wait(TIMEOUT)
        finally:
            stop_process(client)
    assert proc.returncode == 0
    assert elapsed < 3.0


# ---- start-up errors ------------------------------------------------------------------------
def test_port_in_use() -> None:
    """A port already in use: exit status 1, "already in use" on stderr, nothing on stdout."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli("--password", "pw", "--port", str(busy.getsockname()[1]))
    assert (result.returncode, result.stdout) == (1, "")
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["missing", "garbage"])
def test_bad_hostkey(tmp_path: Path, kind: str) -> None:
    """A --hostkey file that is missing or not a key: exit 1 with one clear line naming the
    file, no traceback."""
    path = tmp_path / "hostkey"
    if kind == "garbage":
        path.write_text("this is not a key\n")
    result = run_cli("--password", "pw", "--hostkey", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert str(path) in result.stderr
    assert result.stderr.startswith("demo server: ")
    assert result.stderr.count("\n") == 1


def test_hostkey_is_used(tmp_path: Path) -> None:
    """--hostkey FILE serves that key: the ready line's fingerprint is ssh-keygen's."""
    key = keygen(tmp_path / "hostkey")
    with running_cli("--password", "pw", "--hostkey", str(key)) as (_, ready):
        assert ready["fingerprint"] == ssh_keygen_fingerprint(key.with_suffix(".pub"))
        assert ssh_host_fingerprint(ready["port"], "pw") == ready["fingerprint"]


def test_publickey_without_authorized_keys() -> None:
    """--auth publickey without --authorized-keys: exit 1, the reason on stderr."""
    result = run_cli("--auth", "publickey")
    assert (result.returncode, result.stdout) == (1, "")
    assert "no authorized key" in result.stderr


def test_missing_authorized_keys_file(tmp_path: Path) -> None:
    """--authorized-keys naming a file that does not exist: exit 1 with a message saying the
    file was not found (not a parse error about its "line 1")."""
    path = tmp_path / "no_such_authorized_keys"
    result = run_cli("--auth", "publickey", "--authorized-keys", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert "not found" in result.stderr
    assert str(path) in result.stderr


def test_password_auth_without_password() -> None:
    """--auth password without --password: exit 1, the reason on stderr."""
    result = run_cli("--auth", "password")
    assert (result.returncode, result.stdout) == (1, "")
    assert "no password" in result.stderr


# ---- options ----------------------------------------------------------------------------------
def test_authorized_keys_and_auth_none(tmp_path: Path) -> None:
    """--authorized-keys FILE lets that key in; --auth none lets anyone in without a prompt."""
    key = keygen(tmp_path / "user")
    with running_cli("--authorized-keys", str(key.with_suffix(".pub"))) as (_, ready):
        assert ready["auth_methods"] == ["publickey"]
        result = subprocess.run(
            ["ssh", *SSH_OPTS, "-o", "BatchMode=yes", "-i", str(key), "-o", "IdentitiesOnly=yes",
             "-p", str(ready["port"]), "demo@127.0.0.1", "whoami"],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stdout) == (0, f"{getpass.getuser()}\n")
    with running_cli("--auth", "none") as (_, ready):
        assert ready["auth_methods"] == ["none"]
        result = subprocess.run(
            ["ssh", *SSH_OPTS, "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
             "-p", str(ready["port"]), "demo@127.0.0.1", "whoami"],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stdout) == (0, f"{getpass.getuser()}\n")


def test_sftp_root(tmp_path: Path) -> None:
    """--sftp-root DIR serves DIR as "/": sftp lists and fetches its files, and `..` does not
    leave it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_text("hello from root\n")
    (tmp_path / "outside.txt").write_text("outside\n")
    fetched = tmp_path / "fetched.txt"
    batch = tmp_path / "batch"
    batch.write_text(f"ls -1 /\nget /hello.txt {fetched}\nls -1 ..\n")
    with running_cli("--auth", "none", "--sftp-root", str(root)) as (_, ready):
        result = subprocess.run(
            ["sftp", *SSH_OPTS, "-o", "PubkeyAuthentication=no", "-b", str(batch),
             "-P", str(ready["port"]), "demo@127.0.0.1"],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert fetched.read_text() == "hello from root\n"
    listed = [line for line in result.stdout.splitlines() if not line.startswith("sftp>")]
    assert [os.path.basename(n) for n in listed] == ["hello.txt", "hello.txt"]
