# SPDX-License-Identifier: MIT
"""DemoServer driven by the real OpenSSH client (``ssh``, ``sftp``, ``scp``).

The first tests are LibSSH.jl's acceptance list (demo-contract.md, "The model's own acceptance
tests"); the rest pin down exec details (missing command, stderr, signals) and scp.  Every
client call uses ``-F /dev/null`` and throwaway known-hosts files, loopback and ephemeral ports;
every subprocess and loop is bounded.
"""

from __future__ import annotations

import getpass
import http.server
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SSH_OPTS, process_gone, serving, stop_process, wait_for

from pylibssh_server import PublicKeyState, SshKey
from pylibssh_server.demo import DemoServer

TIMEOUT = 30
USER = getpass.getuser()

Factory = Callable[..., DemoServer]


def password_ssh(server: DemoServer, password: str, *args: str, user: str = "foo",
                 tool: str = "ssh") -> list[str]:
    """argv for ``sshpass -p PASSWORD ssh ... user@127.0.0.1 ARGS`` (password auth only)."""
    port_flag = "-p" if tool == "ssh" else "-P"
    return ["sshpass", "-p", password, tool, *SSH_OPTS,
            "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
            port_flag, str(server.port), *(args if tool != "ssh" else (f"{user}@127.0.0.1",
                                                                           *args))]


def batch_ssh(server: DemoServer, *args: str, identity: Path | None = None,
              methods: str = "publickey", tool: str = "ssh", user: str = "foo") -> list[str]:
    """argv for a non-interactive ``ssh`` (BatchMode) using ``identity`` or auth none."""
    opts = [*SSH_OPTS, "-o", "BatchMode=yes", "-o", f"PreferredAuthentications={methods}"]
    if identity is not None:
        opts += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    else:
        opts += ["-o", "PubkeyAuthentication=no"]
    if tool == "ssh":
        return ["ssh", *opts, "-p", str(server.port), f"{user}@127.0.0.1", *args]
    return [tool, *opts, "-P", str(server.port), *args]


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with captured text output and a timeout."""
    kwargs.setdefault("stdin", None if "input" in kwargs else subprocess.DEVNULL)
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def exec_logged(server: DemoServer) -> bool:
    """Whether some client of ``server`` has logged an exec request."""
    return any(c.callback_log.get("channel_exec_request") for c in list(server.clients))


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path) -> Path:
    """A fresh unencrypted Ed25519 key pair from ``ssh-keygen``; returns the private key path."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f",
                    str(path)], check=True, timeout=TIMEOUT, capture_output=True)
    return path


def ssh_keygen_fingerprint(public: Path) -> str:
    """The SHA256 fingerprint ``ssh-keygen -lf`` prints for a public key file."""
    out = subprocess.run(["ssh-keygen", "-lf", str(public)], check=True, timeout=TIMEOUT,
                         capture_output=True, text=True).stdout
    return out.split()[1]


@pytest.fixture(autouse=True, params=["reactor", "threads"])
def model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the DemoServer on its reactor and on a thread per client
    (``PYLIBSSH_DEMO_MODEL``; the rest of the suite uses the default, the reactor)."""
    monkeypatch.setenv("PYLIBSSH_DEMO_MODEL", request.param)
    return str(request.param)


@pytest.fixture
def user_key(tmp_path: Path) -> Path:
    """An authorized-to-be user key pair (private key path; ``.pub`` next to it)."""
    return keygen(tmp_path / "id_ed25519")


@pytest.fixture
def http_target() -> Iterator[int]:
    """A tiny HTTP server on 127.0.0.1 answering every GET with ``hello from target``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from target"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield port


def http_get(port: int) -> bytes:
    """A raw HTTP/1.0 GET to 127.0.0.1:port (no proxy settings involved); the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


# ---- 1. exit codes --------------------------------------------------------------------------
@pytest.mark.parametrize("status", [0, 42])
def test_exit_status_is_ssh_exit_code(demo_server: DemoServer, status: int) -> None:
    """`ssh ... exit N` exits with N: the command's exit status reaches the client."""
    result = run(password_ssh(demo_server, "foo", f"exit {status}"))
    assert (result.returncode, result.stderr) == (status, "")


# ---- 2. environment -------------------------------------------------------------------------
def test_sendenv_reaches_command(demo_server: DemoServer) -> None:
    """`SendEnv=foo` with foo=bar in the client env: the command sees $foo == bar, and the
    env request is logged as ("foo", "bar")."""
    env = dict(os.environ, foo="bar")
    result = run(password_ssh(demo_server, "foo", "-o", "SendEnv=foo", "echo $foo"), env=env)
    assert (result.returncode, result.stdout) == (0, "bar\n")
    assert demo_server.clients[0].callback_log["channel_env_request"] == [("foo", "bar")]


def test_sendenv_keeps_inherited_environment(demo_server: DemoServer) -> None:
    """Client env variables are added on top of an inherited environment: PATH still works."""
    env = dict(os.environ, foo="bar")
    result = run(password_ssh(demo_server, "foo", "-o", "SendEnv=foo",
                              'test -n "$PATH" && echo "$foo"'), env=env)
    assert (result.returncode, result.stdout) == (0, "bar\n")


# ---- 3. stdin -------------------------------------------------------------------------------
def test_read_from_stdin(demo_server: DemoServer) -> None:
    """`read var && echo $var` with "foo\\n" on stdin prints "foo\\n"."""
    result = run(password_ssh(demo_server, "foo", "read var && echo $var"), input="foo\n")
    assert (result.returncode, result.stdout) == (0, "foo\n")


def test_stdin_eof_ends_cat(demo_server: DemoServer) -> None:
    """The client's EOF closes the command's stdin: `cat` echoes everything and exits 0."""
    data = "".join(f"line {i}\n" for i in range(5000))
    result = run(password_ssh(demo_server, "foo", "cat"), input=data)
    assert (result.returncode, result.stdout) == (0, data)


# ---- 4. auth none -----------------------------------------------------------------------------
def test_auth_none_only(demo_server_factory: Factory) -> None:
    """With only "none" allowed, `whoami` runs without any prompt and prints the server user."""
    server = demo_server_factory(allow_auth_none=True, auth_methods="none")
    result = run(batch_ssh(server, "whoami", methods="none"))
    assert (result.returncode, result.stdout) == (0, f"{USER}\n")
    client = server.clients[0]
    assert (client.authenticated, client.callback_log["auth_none"]) == (True, [True])


# ---- 5. public key ----------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["SshKey", "authorized_keys file"])
def test_publickey_authorized(demo_server_factory: Factory, user_key: Path,
                              source: str) -> None:
    """An authorized key logs in; `auth_pubkey` logs (user, ssh-keygen's fingerprint, state):
    first OpenSSH's probe (NONE), then the signed request (VALID)."""
    public = user_key.with_suffix(".pub")
    if source == "SshKey":
        with SshKey.from_public_file(public) as key:
            server = demo_server_factory(authorized_keys=[key])
    else:
        server = demo_server_factory(authorized_keys=str(public))
    result = run(batch_ssh(server, "whoami", identity=user_key))
    assert (result.returncode, result.stdout) == (0, f"{USER}\n")
    fingerprint = ssh_keygen_fingerprint(public)
    assert server.clients[0].callback_log["auth_pubkey"] == [
        ("foo", fingerprint, int(PublicKeyState.NONE)),
        ("foo", fingerprint, int(PublicKeyState.VALID)),
    ]
    assert server.clients[0].authenticated is True


def test_publickey_other_key_denied(demo_server_factory: Factory, user_key: Path,
                                    tmp_path: Path) -> None:
    """A key that is not authorized is refused at the probe: ssh fails (255, permission
    denied), nothing runs, the client is not authenticated."""
    other = keygen(tmp_path / "other_key")
    server = demo_server_factory(authorized_keys=str(user_key.with_suffix(".pub")))
    result = run(batch_ssh(server, "echo should-not-run", identity=other))
    assert result.returncode == 255
    assert "Permission denied" in result.stderr
    assert result.stdout == ""
    client = server.clients[0]
    assert client.authenticated is False
    other_fp = ssh_keygen_fingerprint(other.with_suffix(".pub"))
    assert client.callback_log["auth_pubkey"] == [("foo", other_fp, int(PublicKeyState.NONE))]
    assert "channel_exec_request" not in client.callback_log


def test_publickey_without_keys_is_a_construction_error() -> None:
    """Public-key auth enabled without any authorized key raises ValueError at construction."""
    with pytest.raises(ValueError, match="authorized key"):
        DemoServer(auth_methods="publickey")


@pytest.mark.parametrize("as_type", [str, Path])
def test_missing_authorized_keys_file(tmp_path: Path, as_type: type) -> None:
    """authorized_keys naming a file that does not exist (str or Path) raises
    FileNotFoundError naming it, not a key-parse error or a TypeError."""
    missing = tmp_path / "no_such_authorized_keys"
    with pytest.raises(FileNotFoundError, match="no_such_authorized_keys"):
        DemoServer(authorized_keys=as_type(missing))


# ---- 6. password ------------------------------------------------------------------------------
def test_password_login_and_log(demo_server_factory: Factory) -> None:
    """User foo with password bar: `whoami` works, the log shows OpenSSH's none probe and
    ("foo", "bar"), and the client is authenticated."""
    server = demo_server_factory(password="bar")
    result = run(password_ssh(server, "bar", "whoami"))
    assert (result.returncode, result.stdout) == (0, f"{USER}\n")
    client = server.clients[0]
    assert client.callback_log["auth_none"] == [True]
    assert client.callback_log["auth_password"] == [("foo", "bar")]
    assert (client.authenticated, client.user) == (True, "foo")


def test_wrong_password_denied(demo_server_factory: Factory) -> None:
    """A wrong password is refused: ssh exits 255 and nothing runs."""
    server = demo_server_factory(password="bar")
    result = run(password_ssh(server, "wrong", "-o", "NumberOfPasswordPrompts=1",
                              "echo should-not-run"))
    assert (result.returncode, result.stdout) == (255, "")
    client = server.clients[0]
    assert (client.authenticated, client.callback_log["auth_password"]) == (
        False, [("foo", "wrong")])


# ---- 7. local forwarding alongside an exec ------------------------------------------------------
def test_local_forward_while_exec_runs(demo_server_factory: Factory, http_target: int,
                                       tmp_path: Path) -> None:
    """`ssh -L LOCAL:localhost:TARGET` while the exec on the same connection still runs: an
    HTTP request through LOCAL gets the target's reply, the log shows
    channel_open_direct_tcpip == [("localhost", TARGET)], then the exec finishes normally."""
    server = demo_server_factory(password="bar")
    local = free_port()
    flag = tmp_path / "done"
    # The command lives until the test has used the forward (bounded: 10 s).
    command = (f"i=0; while [ ! -e {flag} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1));"
               f" done; test -e {flag} && echo exec-done")
    proc = subprocess.Popen(
        password_ssh(server, "bar", "-o", "ExitOnForwardFailure=yes",
                     "-L", f"127.0.0.1:{local}:localhost:{http_target}", command),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: exec_logged(server), what="exec request")
        reply = http_get(local)
        assert reply.startswith(b"HTTP/1.0 200")
        assert reply.endswith(b"\r\n\r\nhello from target")
        assert proc.poll() is None  # the exec is still running on that connection
        flag.touch()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        stop_process(proc)
    assert (proc.returncode, out, err) == (0, "exec-done\n", "")
    assert len(server.clients) == 1
    log = server.clients[0].callback_log
    assert log["channel_open_direct_tcpip"] == [("localhost", http_target)]


# ---- 8. keyboard-interactive --------------------------------------------------------------------
def askpass_env(tmp_path: Path, answers: dict[str, str]) -> tuple[dict[str, str], Path]:
    """An environment making ssh ask ``SSH_ASKPASS`` for every prompt, and the file where the
    script records the prompts it was shown.  ``answers`` maps a prompt suffix to the reply."""
    record = tmp_path / "prompts"
    script = tmp_path / "askpass.sh"
    cases = "".join(f'  *"{prompt}") echo "{answer}" ;;\n' for prompt, answer in answers.items())
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{record}"\n'
                      f'case "$1" in\n{cases}  *) echo unexpected ;;\nesac\n')
    script.chmod(0o700)
    env = dict(os.environ, SSH_ASKPASS=str(script), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    return env, record


def kbdint_ssh(server: DemoServer, *args: str) -> list[str]:
    return ["ssh", *SSH_OPTS, "-o", "PreferredAuthentications=keyboard-interactive",
            "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
            "-p", str(server.port), "foo@127.0.0.1", *args]


def test_keyboard_interactive_login(demo_server_factory: Factory, tmp_path: Path) -> None:
    """keyboard-interactive only: answering foo to "Password: " and bar to "Token: " runs
    `whoami`; the log shows the prompts' user, acceptance, and the exec request."""
    server = demo_server_factory(auth_methods="keyboard-interactive")
    env, record = askpass_env(tmp_path, {"Password: ": "foo", "Token: ": "bar"})
    result = run(kbdint_ssh(server, "whoami"), env=env)
    assert (result.returncode, result.stdout) == (0, f"{USER}\n")
    assert record.read_text().splitlines() == ["(foo@127.0.0.1) Password: ",
                                               "(foo@127.0.0.1) Token: "]
    log = server.clients[0].callback_log
    assert log["auth_kbdint"] == ["foo", "accepted with 'foo' and 'bar'"]
    assert log["channel_exec_request"] == ["'whoami'"]


def test_keyboard_interactive_wrong_answer(demo_server_factory: Factory,
                                           tmp_path: Path) -> None:
    """A wrong keyboard-interactive answer is denied: ssh fails and nothing runs."""
    server = demo_server_factory(auth_methods="keyboard-interactive")
    env, _ = askpass_env(tmp_path, {"Password: ": "foo", "Token: ": "wrong"})
    result = run(kbdint_ssh(server, "echo should-not-run"), env=env)
    assert (result.returncode, result.stdout) == (255, "")
    client = server.clients[0]
    assert client.authenticated is False
    assert client.callback_log["auth_kbdint"] == ["foo", "denied"]
    assert "channel_exec_request" not in client.callback_log


# ---- 9. two connections ---------------------------------------------------------------------
def test_two_connections_two_clients(demo_server: DemoServer) -> None:
    """Two connections one after the other give two clients, in order, each with its own log."""
    for i in (1, 2):
        result = run(password_ssh(demo_server, "foo", f"echo {i}"))
        assert (result.returncode, result.stdout) == (0, f"{i}\n")
    assert len(demo_server.clients) == 2
    assert [c.id for c in demo_server.clients] == [1, 2]
    assert [c.callback_log["channel_exec_request"] for c in demo_server.clients] == [
        ["'echo 1'"], ["'echo 2'"]]


# ---- 10. sftp ---------------------------------------------------------------------------------
def test_sftp_get_absolute_path(demo_server_factory: Factory, user_key: Path,
                                tmp_path: Path) -> None:
    """`sftp -b` fetches a file by its absolute path (real file system served), byte-exact, and
    exits 0; the log shows the sftp subsystem request."""
    server = demo_server_factory(authorized_keys=str(user_key.with_suffix(".pub")))
    source = tmp_path / "remote.bin"
    source.write_bytes(os.urandom(300_000))
    target = tmp_path / "fetched.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"get {source} {target}\n")
    result = run(batch_ssh(server, "-b", str(batch), "foo@127.0.0.1", identity=user_key,
                           tool="sftp"))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == source.read_bytes()
    assert server.clients[0].callback_log["channel_subsystem_request"] == ["sftp"]


# ---- 11. an idle client does not hold the server ----------------------------------------------
def test_idle_client_does_not_delay_stop(tmp_path: Path) -> None:
    """A connected client whose command still runs (`sleep 60`) when the server's `with` block
    ends: leaving the block takes < 2 s, the command dies, and ssh exits."""
    pidfile = tmp_path / "pid"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with DemoServer(password="foo") as server:
            procs.append(subprocess.Popen(
                password_ssh(server, "foo", f"echo $$ > {pidfile}; exec sleep 60"),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "",
                     what="command started")
            pid = int(pidfile.read_text())
            start = time.monotonic()
        elapsed = time.monotonic() - start
        procs[0].wait(timeout=5)
    finally:
        for proc in procs:
            stop_process(proc)
    assert elapsed < 2.0
    assert process_gone(pid)


# ---- exec details -----------------------------------------------------------------------------
def test_missing_command_exit_127(demo_server: DemoServer) -> None:
    """A command that does not exist exits 127 with a "not found" message on stderr."""
    result = run(password_ssh(demo_server, "foo", "no-such-command-xyz"))
    assert (result.returncode, result.stdout) == (127, "")
    assert "not found" in result.stderr


def test_stdout_and_stderr_are_separate(demo_server: DemoServer) -> None:
    """stdout goes to ssh's stdout, stderr (extended data) to ssh's stderr."""
    result = run(password_ssh(demo_server, "foo", "echo out; echo err >&2; echo out2"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\nout2\n", "err\n")


def test_command_killed_by_signal(demo_server: DemoServer) -> None:
    """A command that dies of SIGTERM sends exit-signal, not an exit status: ssh exits 255."""
    result = run(password_ssh(demo_server, "foo", "echo before; kill -TERM $$"))
    assert (result.returncode, result.stdout) == (255, "before\n")


def test_exec_log_sequence(demo_server: DemoServer) -> None:
    """An exec connection logs, in order: service request, auth, channel open, exec, eof, close."""
    result = run(password_ssh(demo_server, "foo", "true"))
    assert result.returncode == 0
    client = demo_server.clients[0]
    # ssh may exit before the server has read its CLOSE: wait (bounded) for that event.
    wait_for(lambda: "channel_close" in client.callback_log, what="channel_close logged")
    names = [name for name, _, _ in client.timeline]
    assert names == ["service_request", "auth_none", "auth_password", "channel_open",
                     "channel_exec_request", "channel_eof", "channel_close"]


# ---- scp ------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["sftp", "legacy"])
def test_scp_upload_and_download(demo_server: DemoServer, tmp_path: Path, protocol: str) -> None:
    """`scp` (SFTP-based, and legacy `-O`) uploads and downloads a file byte-exact, exit 0."""
    extra = ["-O"] if protocol == "legacy" else []
    data = os.urandom(1_500_000)
    local = tmp_path / "local.bin"
    local.write_bytes(data)
    remote = tmp_path / "remote.bin"
    back = tmp_path / "back.bin"
    up = run(password_ssh(demo_server, "foo", *extra, str(local), f"foo@127.0.0.1:{remote}",
                          tool="scp"))
    assert (up.returncode, up.stderr) == (0, "")
    assert remote.read_bytes() == data
    down = run(password_ssh(demo_server, "foo", *extra, f"foo@127.0.0.1:{remote}", str(back),
                            tool="scp"))
    assert (down.returncode, down.stderr) == (0, "")
    assert back.read_bytes() == data


def test_unread_stdin_does_not_block_exit(demo_server: DemoServer) -> None:
    """A command that never reads stdin while the client pushes 8 MiB at it still finishes:
    ssh gets its output and exit status."""
    result = subprocess.run(password_ssh(demo_server, "foo", "sleep 0.3; echo done; exit 5"),
                            input=b"\0" * (8 << 20), capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (5, b"done\n")
    assert demo_server.clients[0].error is None


def test_all_output_before_exit_status(demo_server: DemoServer) -> None:
    """All of a command's output arrives before its exit status ends the session."""
    result = subprocess.run(password_ssh(demo_server, "foo",
                                         "head -c 5000000 /dev/zero; head -c 300000 /dev/zero"
                                         " >&2; exit 7"),
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, len(result.stdout), len(result.stderr)) == (7, 5_000_000, 300_000)


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_publickey_other_key_types(demo_server_factory: Factory, tmp_path: Path,
                                   key_type: str) -> None:
    """ECDSA and RSA (rsa-sha2 signatures) user keys log in like Ed25519 ones."""
    key = tmp_path / f"id_{key_type}"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(key)], check=True,
                   timeout=TIMEOUT, capture_output=True)
    server = demo_server_factory(authorized_keys=str(key.with_suffix(".pub")))
    result = run(batch_ssh(server, "echo ok", identity=key))
    assert (result.returncode, result.stdout) == (0, "ok\n")
    fingerprint = ssh_keygen_fingerprint(key.with_suffix(".pub"))
    assert server.clients[0].callback_log["auth_pubkey"][-1] == (
        "foo", fingerprint, int(PublicKeyState.VALID))


def test_stdin_complete_when_command_reads_late(demo_server: DemoServer) -> None:
    """`ssh host 'sleep 0.1; wc -c' < 1.5 MB`: the command, reading only after the client's EOF
    arrived, still counts every byte (3 runs)."""
    data = os.urandom(1_500_000)
    results = [subprocess.run(password_ssh(demo_server, "foo", "sleep 0.1; wc -c"), input=data,
                              capture_output=True, timeout=TIMEOUT) for _ in range(3)]
    assert [(r.returncode, r.stdout.strip()) for r in results] == \
        [(0, str(len(data)).encode())] * 3


def test_model_is_the_one_asked_for(demo_server: DemoServer, model: str) -> None:
    """The fixture above really switches the model (an honest parametrization)."""
    assert demo_server.model == model
    assert run(password_ssh(demo_server, "foo", "echo", "hi")).stdout == "hi\n"
    threads = {t.name for t in threading.enumerate()}
    assert any(name.startswith("pylibssh-reactor-") for name in threads) == (model == "reactor")
