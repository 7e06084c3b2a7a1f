# SPDX-License-Identifier: MIT
"""Security defaults (README, SECURITY): loopback only, no auth "none", constant-time
password checks, bounded auth attempts, private key files 0600, a closed SFTP root, and a
forwarding allow-list.  Each default is checked from the outside where possible.
"""

from __future__ import annotations

import hmac
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import paramiko
import pytest
from conftest import SSH_OPTS

from pylibssh_server import SshKey
from pylibssh_server.demo import DemoServer
from stress._support import cli_server, paramiko_login, run_command


def _listening_addresses(pid: int, port: int) -> set[str]:
    """Local addresses ("ip:port" as in /proc/net/tcp*) of ``pid``'s listening sockets."""
    found = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # LISTEN
                    found.add(local)
    return found


def test_binds_loopback_by_default() -> None:
    """The CLI and the class listen on 127.0.0.1 only, unless told otherwise."""
    with cli_server() as server:
        assert _listening_addresses(server.pid, server.port) == {
            f"0100007F:{server.port:04X}"}
    with DemoServer(password="x") as demo:
        assert demo.host == "127.0.0.1"
        assert _listening_addresses(os.getpid(), demo.port) == {f"0100007F:{demo.port:04X}"}


def test_auth_none_is_off_unless_asked_for() -> None:
    """Nothing configured is an error; with a password, "none" is refused."""
    with pytest.raises(ValueError, match="needs a way in"):
        DemoServer()
    with DemoServer(password="x") as demo:
        transport = paramiko.Transport(("127.0.0.1", demo.port))
        try:
            transport.start_client(timeout=10)
            with pytest.raises(paramiko.BadAuthenticationType) as refused:
                transport.auth_none("u")
            assert refused.value.allowed_types == ["password"]
        finally:
            transport.close()
        assert demo.clients[0].authenticated is False


def test_password_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every password check goes through hmac.compare_digest (right and wrong ones)."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr("pylibssh_server.demo.auth.hmac.compare_digest", recording)
    with DemoServer(password="s3cret") as demo:
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_login(demo.port, password="wrong")
        paramiko_login(demo.port, password="s3cret").close()
    # paramiko's MAC checks use it too: keep the calls against the password.
    assert [pair for pair in seen if pair[1] == b"s3cret"] == [(b"wrong", b"s3cret"),
                                                              (b"s3cret", b"s3cret")]


def test_auth_attempts_are_limited_per_connection() -> None:
    """--max-auth-attempts N: the N-th wrong password ends the connection."""
    with cli_server("--max-auth-attempts", "2") as server:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        try:
            transport.start_client(timeout=10)
            for _ in range(2):
                with pytest.raises((paramiko.AuthenticationException, paramiko.SSHException,
                                    EOFError)):
                    transport.auth_password("u", "wrong")
            with pytest.raises((paramiko.SSHException, EOFError, OSError)):
                transport.auth_password("u", "foo")
        finally:
            transport.close()


def test_private_key_files_are_written_0600(tmp_path: Path) -> None:
    """SshKey.to_private_file writes 0600 whatever the umask, also over an existing 0644
    file; the public file is world-readable as usual."""
    old = os.umask(0)
    try:
        with SshKey.generate() as key:
            fresh = tmp_path / "fresh"
            key.to_private_file(fresh)
            existing = tmp_path / "existing"
            existing.write_text("old")
            existing.chmod(0o644)
            key.to_private_file(existing)
            key.to_public_file(tmp_path / "fresh.pub")
            for path in (fresh, existing):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
                with SshKey.from_private_file(path) as back:
                    assert back.public_equals(key)
    finally:
        os.umask(old)


def test_sftp_root_cannot_be_escaped_with_the_openssh_client(tmp_path: Path) -> None:
    """OpenSSH's sftp: "..", absolute paths and a symlink pointing out stay inside the root."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("secret")
    (root / "out").symlink_to(tmp_path / "secret")
    (root / "inside").write_text("inside")
    attempts = [
        f"get ../secret {tmp_path}/got1",
        f"get /../secret {tmp_path}/got2",
        f"get {tmp_path}/secret {tmp_path}/got3",
        f"get out {tmp_path}/got4",
        f"put {tmp_path}/secret ../planted",
        f"get inside {tmp_path}/got-inside",
    ]
    # "-b" stops at the first failure: each attempt is a batch of its own.
    results = {}
    with cli_server("--sftp-root", str(root)) as server:
        for line in attempts:
            proc = subprocess.run(
                ["sshpass", "-p", "foo", "sftp", *SSH_OPTS, "-o", "BatchMode=no",
                 "-o", "PubkeyAuthentication=no", "-P", str(server.port), "-b", "-",
                 "u@127.0.0.1"],
                input=line + "\n", capture_output=True, text=True, timeout=60)
            results[line] = proc.returncode
    for name in ("got1", "got2", "got3", "got4"):
        assert not (tmp_path / name).exists()
    assert not (tmp_path / "planted").exists()
    assert (tmp_path / "got-inside").read_text() == "inside"
    assert results.pop(f"get inside {tmp_path}/got-inside") == 0
    # "../planted" is "/planted" of the root: written, but inside.
    assert results.pop(f"put {tmp_path}/secret ../planted") == 0
    assert (root / "planted").read_text() == "secret"
    assert all(rc != 0 for rc in results.values()), results


def test_forward_allow_list(echo_server: int) -> None:
    """forward_allow decides every direct-tcpip target: refused ones never connect."""
    asked: list[tuple[str, int]] = []

    def allow(host: str, port: int) -> bool:
        asked.append((host, port))
        return port == echo_server

    with DemoServer(password="foo", forward_allow=allow) as demo:
        transport = paramiko_login(demo.port)
        try:
            with pytest.raises(paramiko.ChannelException):
                transport.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 1),
                                       timeout=10)
            chan = transport.open_channel("direct-tcpip", ("127.0.0.1", echo_server),
                                          ("127.0.0.1", 1), timeout=10)
            chan.sendall(b"hi")
            chan.settimeout(10)
            assert chan.recv(2) == b"hi"
            chan.close()
            assert run_command(transport, "echo ok") == (0, b"ok\n")
        finally:
            transport.close()
    assert asked == [("127.0.0.1", 22), ("127.0.0.1", echo_server)]
