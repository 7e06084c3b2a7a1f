# SPDX-License-Identifier: MIT
"""DemoServer driven by Python SSH clients: paramiko and asyncssh.

Authentication (password, keyboard-interactive with the exact prompts, public key), exec
(stdout, stderr, exit status, exit signal, stdin EOF, env), concurrent direct-tcpip channels,
a connection tunnelled through one DemoServer to another, SFTP confined to a root, and the
killing of commands whose channel or connection goes away.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import paramiko
import pytest
from conftest import process_gone, wait_for

from pylibssh_server.demo import DemoServer

T = TypeVar("T")
Factory = Callable[..., DemoServer]
TIMEOUT = 20
KBDINT_CHALLENGE = ("Demo server login", "Enter your details.",
                    [("Password: ", True), ("Token: ", True)])


# ---- helpers ------------------------------------------------------------------------------------
def sha256_fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def keygen(path: Path) -> Path:
    """A fresh unencrypted Ed25519 key pair from ``ssh-keygen``; returns the private key path."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f",
                    str(path)], check=True, timeout=TIMEOUT, capture_output=True)
    return path


@contextlib.contextmanager
def paramiko_client(server: DemoServer, **auth: Any) -> Iterator[paramiko.SSHClient]:
    """A connected paramiko SSHClient (no agent, no ~/.ssh keys), closed afterwards."""
    auth.setdefault("username", "foo")
    if "pkey" not in auth:
        auth.setdefault("password", "foo")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", server.port, look_for_keys=False, allow_agent=False,
                       timeout=TIMEOUT, banner_timeout=TIMEOUT, auth_timeout=TIMEOUT, **auth)
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def paramiko_transport(server: DemoServer) -> Iterator[paramiko.Transport]:
    """A paramiko Transport after key exchange, before authentication; closed afterwards."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=TIMEOUT)
        yield transport
    finally:
        transport.close()
        sock.close()


def paramiko_exec(client: paramiko.SSHClient, command: str, stdin: bytes = b"",
                  environment: dict[str, str] | None = None) -> tuple[bytes, bytes, int]:
    """Run ``command``, send ``stdin`` then EOF; return (stdout, stderr, exit status)."""
    cin, cout, cerr = client.exec_command(command, timeout=TIMEOUT, environment=environment)
    try:
        if stdin:
            cin.write(stdin)
            cin.flush()
        cin.channel.shutdown_write()
        out = cout.read()
        err = cerr.read()
        return out, err, cout.channel.recv_exit_status()
    finally:
        for f in (cin, cout, cerr):
            f.close()


def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Run an asyncssh coroutine to completion, bounded by a timeout."""
    return asyncio.run(asyncio.wait_for(coro, 60))


def aconnect(server: DemoServer, **options: Any) -> Any:
    """``asyncssh.connect`` to the server without config, agent, default keys or known_hosts."""
    options.setdefault("username", "foo")
    options.setdefault("client_keys", None)
    return asyncssh.connect("127.0.0.1", server.port, known_hosts=None, agent_path=None,
                            config=None, gss_host=None, connect_timeout=TIMEOUT, **options)




# ---- password -------------------------------------------------------------------------------
def test_paramiko_password(demo_server: DemoServer) -> None:
    """paramiko logs in with the password; the host key it sees has the server's fingerprint."""
    with paramiko_client(demo_server, username="alice", password="foo") as client:
        transport = client.get_transport()
        assert transport is not None
        assert transport.is_authenticated() is True
        assert sha256_fingerprint(transport.get_remote_server_key()) == demo_server.fingerprint
        assert paramiko_exec(client, "echo hi") == (b"hi\n", b"", 0)
    assert demo_server.clients[0].callback_log["auth_password"] == [("alice", "foo")]


def test_paramiko_wrong_password(demo_server: DemoServer) -> None:
    """A wrong password raises paramiko's AuthenticationException; nothing is authenticated."""
    with pytest.raises(paramiko.AuthenticationException), \
            paramiko_client(demo_server, password="nope"):
        pass
    assert demo_server.clients[0].authenticated is False


def test_asyncssh_password(demo_server: DemoServer) -> None:
    """asyncssh logs in with the password; the host key has the server's fingerprint."""

    async def main() -> tuple[str, Any]:
        async with aconnect(demo_server, password="foo", preferred_auth="password") as conn:
            fingerprint = conn.get_server_host_key().get_fingerprint("sha256")
            result = await conn.run("echo hi", check=False)
            return fingerprint, (result.stdout, result.stderr, result.exit_status)

    fingerprint, result = arun(main())
    assert (fingerprint, result) == (demo_server.fingerprint, ("hi\n", "", 0))
    assert demo_server.clients[0].callback_log["auth_password"] == [("foo", "foo")]


def test_asyncssh_wrong_password(demo_server: DemoServer) -> None:
    """A wrong password makes asyncssh raise PermissionDenied."""

    async def main() -> None:
        async with aconnect(demo_server, password="nope", preferred_auth="password"):
            pass

    with pytest.raises(asyncssh.PermissionDenied):
        arun(main())


# ---- keyboard-interactive -----------------------------------------------------------------------
@pytest.mark.parametrize(("answers", "accepted"), [(["foo", "bar"], True),
                                                   (["foo", "baz"], False)])
def test_paramiko_kbdint(demo_server_factory: Factory, answers: list[str],
                         accepted: bool) -> None:
    """paramiko keyboard-interactive: the challenge has name "Demo server login", instruction
    "Enter your details." and prompts "Password: "/"Token: " with echo on; foo/bar is
    accepted, anything else denied."""
    server = demo_server_factory(auth_methods="keyboard-interactive")
    seen: list[tuple[str, str, list[tuple[str, bool]]]] = []

    def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        seen.append((title, instructions, [(p, bool(e)) for p, e in prompts]))
        return answers if prompts else []

    with paramiko_transport(server) as transport:
        if accepted:
            assert transport.auth_interactive("alice", handler) == []
            assert transport.is_authenticated() is True
        else:
            with pytest.raises(paramiko.AuthenticationException):
                transport.auth_interactive("alice", handler)
            assert transport.is_authenticated() is False
    assert seen == [KBDINT_CHALLENGE]
    result = "accepted with 'foo' and 'bar'" if accepted else "denied"
    assert server.clients[0].callback_log["auth_kbdint"] == ["alice", result]


@pytest.mark.parametrize(("answers", "accepted"), [(["foo", "bar"], True),
                                                   (["bar", "foo"], False)])
def test_asyncssh_kbdint(demo_server_factory: Factory, answers: list[str],
                         accepted: bool) -> None:
    """asyncssh keyboard-interactive: same challenge (name, instruction, prompts with echo);
    foo/bar runs a command, swapped answers raise PermissionDenied."""
    server = demo_server_factory(auth_methods="keyboard-interactive")
    seen: list[tuple[str, str, list[tuple[str, bool]]]] = []

    class Client(asyncssh.SSHClient):
        def kbdint_auth_requested(self) -> str | None:
            return None if seen else ""  # one attempt: asyncssh would retry forever

        def kbdint_challenge_received(self, name: str, instructions: str, lang: str,
                                      prompts: Any) -> list[str]:
            if not prompts:
                return []
            seen.append((name, instructions, [(p, bool(e)) for p, e in prompts]))
            return answers

    async def main() -> str:
        async with aconnect(server, client_factory=Client,
                            preferred_auth="keyboard-interactive") as conn:
            return (await conn.run("echo in", check=True)).stdout

    if accepted:
        assert arun(main()) == "in\n"
    else:
        with pytest.raises(asyncssh.PermissionDenied):
            arun(main())
    assert seen == [KBDINT_CHALLENGE]
    result = "accepted with 'foo' and 'bar'" if accepted else "denied"
    assert server.clients[0].callback_log["auth_kbdint"] == ["foo", result]


# ---- public key -----------------------------------------------------------------------------
def test_paramiko_publickey(demo_server_factory: Factory, tmp_path: Path) -> None:
    """paramiko logs in with an authorized Ed25519 key; an unauthorized one is refused."""
    good = keygen(tmp_path / "good")
    bad = keygen(tmp_path / "bad")
    server = demo_server_factory(authorized_keys=str(good.with_suffix(".pub")))
    good_key = paramiko.Ed25519Key.from_private_key_file(str(good))
    bad_key = paramiko.Ed25519Key.from_private_key_file(str(bad))
    with paramiko_client(server, pkey=good_key) as client:
        assert paramiko_exec(client, "echo key") == (b"key\n", b"", 0)
    with pytest.raises(paramiko.AuthenticationException), \
            paramiko_client(server, pkey=bad_key):
        pass
    assert [c.authenticated for c in server.clients] == [True, False]
    signed = [e for e in server.clients[0].callback_log["auth_pubkey"] if e[2] != 0]
    assert [(user, fp) for user, fp, _ in signed] == [("foo", sha256_fingerprint(good_key))]


def test_asyncssh_publickey(demo_server_factory: Factory) -> None:
    """asyncssh logs in with an authorized key given as an authorized_keys line; another key
    is refused with PermissionDenied."""
    good = asyncssh.generate_private_key("ssh-ed25519")
    bad = asyncssh.generate_private_key("ssh-ed25519")
    server = demo_server_factory(authorized_keys=[good.export_public_key().decode()])

    async def run(key: Any) -> str:
        async with aconnect(server, client_keys=[key], preferred_auth="publickey") as conn:
            return (await conn.run("echo key", check=True)).stdout

    assert arun(run(good)) == "key\n"
    with pytest.raises(asyncssh.PermissionDenied):
        arun(run(bad))
    assert [c.authenticated for c in server.clients] == [True, False]
    fingerprints = {fp for _, fp, _ in server.clients[0].callback_log["auth_pubkey"]}
    assert fingerprints == {good.get_fingerprint("sha256")}


# ---- exec -----------------------------------------------------------------------------------
def test_paramiko_exec_streams_and_status(demo_server: DemoServer) -> None:
    """stdout and stderr arrive separately and the exit status is the command's."""
    with paramiko_client(demo_server) as client:
        result = paramiko_exec(client, "echo out; echo err >&2; exit 3")
    assert result == (b"out\n", b"err\n", 3)


def test_asyncssh_exec_streams_and_status(demo_server: DemoServer) -> None:
    """asyncssh: stdout, stderr and exit status are the command's."""

    async def main() -> tuple[str, str, int]:
        async with aconnect(demo_server, password="foo") as conn:
            r = await conn.run("echo out; echo err >&2; exit 3", check=False)
            return r.stdout, r.stderr, r.exit_status

    assert arun(main()) == ("out\n", "err\n", 3)


def test_paramiko_stdin_eof(demo_server: DemoServer) -> None:
    """Data written on the channel is the command's stdin; shutdown_write() ends it, so
    `wc -c` counts exactly the bytes sent."""
    data = os.urandom(300_000)
    with paramiko_client(demo_server) as client:
        out, err, status = paramiko_exec(client, "wc -c", stdin=data)
    assert (out.strip(), err, status) == (str(len(data)).encode(), b"", 0)


def test_asyncssh_stdin_eof(demo_server: DemoServer) -> None:
    """asyncssh `run(input=...)` writes then sends EOF: `wc -c` counts exactly the bytes."""
    data = "x" * 300_000

    async def main() -> tuple[str, int]:
        async with aconnect(demo_server, password="foo") as conn:
            r = await conn.run("wc -c", input=data, check=False)
            return r.stdout.strip(), r.exit_status

    assert arun(main()) == (str(len(data)), 0)


def test_paramiko_environment(demo_server: DemoServer) -> None:
    """paramiko `environment=` values reach the command, on top of the inherited environment."""
    with paramiko_client(demo_server) as client:
        result = paramiko_exec(client, 'echo "$FOO $BAR"; test -n "$PATH"',
                               environment={"FOO": "one", "BAR": "two words"})
    assert result == (b"one two words\n", b"", 0)
    assert sorted(demo_server.clients[0].callback_log["channel_env_request"]) == [
        ("BAR", "two words"), ("FOO", "one")]


def test_asyncssh_environment(demo_server: DemoServer) -> None:
    """asyncssh `env=` values reach the command."""

    async def main() -> str:
        async with aconnect(demo_server, password="foo") as conn:
            return (await conn.run('echo "$FOO"', env={"FOO": "bar"}, check=True)).stdout

    assert arun(main()) == "bar\n"


def test_exit_signal(demo_server: DemoServer) -> None:
    """A command killed by SIGTERM: asyncssh sees exit-signal TERM and no exit status;
    paramiko (which ignores exit-signal) reports -1."""

    async def main() -> tuple[Any, Any, str]:
        async with aconnect(demo_server, password="foo") as conn:
            r = await conn.run("echo before; kill -TERM $$", check=False)
            return r.exit_status, r.exit_signal, r.stdout

    status, signal_info, out = arun(main())
    assert (status, out) == (-1, "before\n")
    assert signal_info[0] == "TERM"
    with paramiko_client(demo_server) as client:
        assert paramiko_exec(client, "kill -TERM $$") == (b"", b"", -1)


def test_missing_command(demo_server: DemoServer) -> None:
    """A missing command exits 127 with "not found" on stderr."""
    with paramiko_client(demo_server) as client:
        out, err, status = paramiko_exec(client, "no-such-command-xyz")
    assert (out, status) == (b"", 127)
    assert b"not found" in err


# ---- direct-tcpip ---------------------------------------------------------------------------
def test_paramiko_ten_concurrent_forwards(demo_server: DemoServer, echo_server: int) -> None:
    """10 direct-tcpip channels open at once over one connection, each carrying distinct data
    to an echo server: every channel gets exactly its own bytes back, then EOF."""
    payloads = [bytes([i]) * 16 + os.urandom(200_000 + i) for i in range(10)]
    with paramiko_client(demo_server) as client:
        transport = client.get_transport()
        assert transport is not None
        channels = [transport.open_channel("direct-tcpip", ("127.0.0.1", echo_server),
                                           ("127.0.0.1", 40000 + i), timeout=TIMEOUT)
                    for i in range(10)]
        try:
            def send(i: int) -> None:
                channels[i].sendall(payloads[i])
                channels[i].shutdown_write()

            def receive(i: int) -> bytes:
                channels[i].settimeout(TIMEOUT)
                chunks = []
                while True:
                    data = channels[i].recv(65536)
                    if not data:
                        return b"".join(chunks)
                    chunks.append(data)

            with ThreadPoolExecutor(max_workers=20) as pool:
                sends = [pool.submit(send, i) for i in range(10)]
                received = [pool.submit(receive, i) for i in range(10)]
                for f in sends:
                    f.result(TIMEOUT)
                echoed = [f.result(TIMEOUT) for f in received]
        finally:
            for channel in channels:
                channel.close()
    assert [hashlib.sha256(e).hexdigest() for e in echoed] == \
        [hashlib.sha256(p).hexdigest() for p in payloads]
    assert demo_server.clients[0].callback_log["channel_open_direct_tcpip"] == \
        [("127.0.0.1", echo_server)] * 10


def test_asyncssh_ten_concurrent_forwards(demo_server: DemoServer, echo_server: int) -> None:
    """asyncssh: 10 concurrent `open_connection` streams over one connection, distinct data,
    all echoed byte-exact."""
    payloads = [bytes([i]) * 16 + os.urandom(100_000 + i) for i in range(10)]

    async def one(conn: Any, data: bytes) -> bytes:
        reader, writer = await conn.open_connection("127.0.0.1", echo_server)
        writer.write(data)
        writer.write_eof()
        echoed = await reader.read()
        writer.close()
        return bytes(echoed)

    async def main() -> list[bytes]:
        async with aconnect(demo_server, password="foo") as conn:
            return list(await asyncio.gather(*(one(conn, p) for p in payloads)))

    assert arun(main()) == payloads


def test_forward_to_closed_port_is_refused(demo_server: DemoServer) -> None:
    """A direct-tcpip request to a port nobody listens on fails to open (no dead channel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with paramiko_client(demo_server) as client:
            transport = client.get_transport()
            assert transport is not None
            with pytest.raises(paramiko.ChannelException):
                transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                       timeout=TIMEOUT)
            # The connection still works afterwards.
            assert paramiko_exec(client, "echo alive") == (b"alive\n", b"", 0)


def test_paramiko_tunnel_to_second_server(demo_server_factory: Factory) -> None:
    """An SSH connection to server B tunnelled through a direct-tcpip channel of server A
    (a jump host) authenticates and runs a command on B."""
    jump = demo_server_factory(password="a")
    target = demo_server_factory(password="b")
    with paramiko_client(jump, password="a") as outer:
        transport = outer.get_transport()
        assert transport is not None
        channel = transport.open_channel("direct-tcpip", ("127.0.0.1", target.port),
                                         ("127.0.0.1", 0), timeout=TIMEOUT)
        with paramiko_client(target, password="b", sock=channel) as inner:
            inner_key = inner.get_transport().get_remote_server_key()  # type: ignore[union-attr]
            assert sha256_fingerprint(inner_key) == target.fingerprint
            assert paramiko_exec(inner, "echo via-tunnel") == (b"via-tunnel\n", b"", 0)
    assert jump.clients[0].callback_log["channel_open_direct_tcpip"] == [
        ("127.0.0.1", target.port)]
    assert target.clients[0].callback_log["channel_exec_request"] == ["'echo via-tunnel'"]


def test_asyncssh_tunnel_to_second_server(demo_server_factory: Factory) -> None:
    """asyncssh `tunnel=`: a connection to B through A runs a command on B."""
    jump = demo_server_factory(password="a")
    target = demo_server_factory(password="b")

    async def main() -> str:
        async with aconnect(jump, password="a") as outer, \
                aconnect(target, password="b", tunnel=outer) as inner:
            return (await inner.run("echo via-tunnel", check=True)).stdout

    assert arun(main()) == "via-tunnel\n"
    assert jump.clients[0].callback_log["channel_open_direct_tcpip"] == [
        ("127.0.0.1", target.port)]


# ---- SFTP -----------------------------------------------------------------------------------
@contextlib.contextmanager
def paramiko_sftp(server: DemoServer) -> Iterator[paramiko.SFTPClient]:
    with paramiko_client(server) as client:
        sftp = client.open_sftp()
        try:
            sftp.get_channel().settimeout(TIMEOUT)  # type: ignore[union-attr]
            yield sftp
        finally:
            sftp.close()


def test_paramiko_sftp_operations(demo_server_factory: Factory, tmp_path: Path) -> None:
    """SFTP with sftp_root: write, read, listdir, mkdir, rename, remove and rmdir act on the
    files under the root, which the client sees as "/"."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "existing.txt").write_bytes(b"already here\n")
    server = demo_server_factory(password="foo", sftp_root=root)
    data = os.urandom(700_000)
    with paramiko_sftp(server) as sftp:
        assert sftp.normalize(".") == "/"
        assert sftp.listdir("/") == ["existing.txt"]
        with sftp.open("/existing.txt", "rb") as f:
            assert f.read() == b"already here\n"
        with sftp.open("/new.bin", "wb") as f:
            f.write(data)
        assert (root / "new.bin").read_bytes() == data
        with sftp.open("new.bin", "rb") as f:
            assert f.read() == data
        sftp.mkdir("/dir")
        sftp.rename("/new.bin", "/dir/moved.bin")
        assert sorted(sftp.listdir("/")) == ["dir", "existing.txt"]
        assert sftp.listdir("/dir") == ["moved.bin"]
        assert sftp.stat("/dir/moved.bin").st_size == len(data)
        assert (root / "dir" / "moved.bin").read_bytes() == data
        sftp.remove("/dir/moved.bin")
        sftp.rmdir("/dir")
        assert sftp.listdir("/") == ["existing.txt"]
    assert sorted(p.name for p in root.iterdir()) == ["existing.txt"]


def test_paramiko_sftp_cannot_escape_root(demo_server_factory: Factory, tmp_path: Path) -> None:
    """No SFTP path leaves sftp_root: `..` stops at the root, an absolute outside path is read
    inside the root, and symlinks pointing outside (relative or absolute) never reach the outside
    file; nothing outside is read, created or modified."""
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (root / "rel_link").symlink_to("../secret.txt")
    (root / "abs_link").symlink_to(secret)
    (root / "dir_link").symlink_to(tmp_path)
    server = demo_server_factory(password="foo", sftp_root=root)
    with paramiko_sftp(server) as sftp:
        assert sftp.normalize("../..") == "/"
        assert sorted(sftp.listdir("..")) == ["abs_link", "dir_link", "rel_link"]
        for path in ("../secret.txt", "/../secret.txt", str(secret), "rel_link", "abs_link",
                     "dir_link/secret.txt"):
            with pytest.raises(OSError):
                sftp.open(path, "rb").close()
        for path in ("rel_link", "dir_link/secret.txt"):
            with pytest.raises(OSError):
                sftp.open(path, "wb").close()
        with pytest.raises(OSError):
            sftp.listdir("dir_link")
        with pytest.raises(OSError):
            sftp.remove("dir_link/secret.txt")
        # Writing "../escape.txt" can only create the file inside the root.
        with sftp.open("../escape.txt", "wb") as f:
            f.write(b"inside")
    assert secret.read_text() == "secret"
    assert not (tmp_path / "escape.txt").exists()
    assert (root / "escape.txt").read_bytes() == b"inside"


def test_asyncssh_sftp_operations(demo_server_factory: Factory, tmp_path: Path) -> None:
    """asyncssh SFTP against sftp_root: put, get, listdir, mkdir, rename, remove."""
    root = tmp_path / "root"
    root.mkdir()
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(500_000))
    back = tmp_path / "back.bin"
    server = demo_server_factory(password="foo", sftp_root=root)

    async def main() -> tuple[list[str], list[str]]:
        async with aconnect(server, password="foo") as conn, conn.start_sftp_client() as sftp:
            await sftp.mkdir("/d")
            await sftp.put(str(local), "/d/up.bin")
            await sftp.rename("/d/up.bin", "/d/renamed.bin")
            await sftp.get("/d/renamed.bin", str(back))
            listing = sorted(await sftp.listdir("/d"))
            await sftp.remove("/d/renamed.bin")
            return listing, sorted(await sftp.listdir("/d"))

    listing, after = arun(main())
    assert (listing, after) == (["renamed.bin"], [])
    assert back.read_bytes() == local.read_bytes()
    assert [p.name for p in root.iterdir()] == ["d"]


# ---- commands die with their channel or connection -------------------------------------------
@pytest.mark.parametrize("how", ["channel close", "disconnect"])
def test_command_killed_when_channel_goes(demo_server: DemoServer, tmp_path: Path,
                                          how: str) -> None:
    """A channel closed by the client (or a client that disconnects) while its command runs
    kills the command, background children included: no orphan survives."""
    pidfile = tmp_path / "pids"
    with paramiko_client(demo_server) as client:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=TIMEOUT)
        channel.exec_command(f"sleep 30 & echo $$ $! > {pidfile}; wait")
        shell_pid, sleep_pid = map(int, read_pid_line(pidfile))
        if how == "channel close":
            channel.close()
        else:
            transport.close()
        wait_for(lambda: process_gone(shell_pid) and process_gone(sleep_pid), timeout=5,
                 what="command killed")
    assert (process_gone(shell_pid), process_gone(sleep_pid)) == (True, True)


def read_pid_line(path: Path) -> list[str]:
    """Wait (bounded) for a complete line in ``path``; return its words."""
    wait_for(lambda: path.exists() and path.read_text().endswith("\n"), what=f"line in {path}")
    return path.read_text().split()


def test_paramiko_idle_client_does_not_delay_stop(demo_server_factory: Factory) -> None:
    """An authenticated, idle paramiko connection does not slow stop(): it returns in < 2 s
    and the client sees the connection end."""
    server = demo_server_factory(password="foo")
    with paramiko_transport(server) as transport:
        transport.auth_password("foo", "foo")
        assert transport.is_authenticated() is True
        start = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - start
        wait_for(lambda: not transport.is_active(), timeout=5, what="transport ended")
    assert elapsed < 2.0
    assert server.is_running is False


# ---- streaming, half-close, IPv6, mixed channels ------------------------------------------------
def test_stdout_streams_while_command_runs(demo_server: DemoServer) -> None:
    """Output is forwarded as produced: the first line arrives while the command is still
    sleeping, long before it ends."""
    with paramiko_client(demo_server) as client:
        channel = client.get_transport().open_session(timeout=TIMEOUT)  # type: ignore[union-attr]
        channel.settimeout(TIMEOUT)
        start = time.monotonic()
        channel.exec_command("echo first; sleep 3; echo second")
        first = channel.recv(100)
        first_at = time.monotonic() - start
        channel.close()
    assert first == b"first\n"
    assert first_at < 1.5


class _Target:
    """A one-connection TCP server on ``host`` running ``behaviour(sock)`` in a thread."""

    def __init__(self, host: str, behaviour: Callable[[socket.socket], bytes]) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port = int(self.listener.getsockname()[1])
        self.result: list[bytes] = []
        self.thread = threading.Thread(target=self._run, args=(behaviour,), daemon=True)
        self.thread.start()

    def _run(self, behaviour: Callable[[socket.socket], bytes]) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            self.result.append(behaviour(conn))

    def join(self) -> bytes:
        self.thread.join(TIMEOUT)
        self.listener.close()
        assert self.result, "target did not finish"
        return self.result[0]


def _recv_all(sock: Any) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_forward_client_half_close(demo_server: DemoServer) -> None:
    """Client EOF on a direct-tcpip channel reaches the target as a half-close while the other
    direction stays open: a target that answers only after EOF gets its answer through."""

    def target(sock: socket.socket) -> bytes:
        received = _recv_all(sock)  # until the client's EOF
        sock.sendall(hashlib.sha256(received).hexdigest().encode())
        return received

    server_side = _Target("127.0.0.1", target)
    data = os.urandom(1_000_000)
    with paramiko_client(demo_server) as client:
        channel = client.get_transport().open_channel(  # type: ignore[union-attr]
            "direct-tcpip", ("127.0.0.1", server_side.port), ("127.0.0.1", 0), timeout=TIMEOUT)
        channel.settimeout(TIMEOUT)
        channel.sendall(data)
        channel.shutdown_write()
        answer = _recv_all(channel)
        channel.close()
    assert server_side.join() == data
    assert answer == hashlib.sha256(data).hexdigest().encode()


def test_forward_target_half_close(demo_server: DemoServer) -> None:
    """A target that shuts down its sending side: the client gets EOF and can still send; the
    target receives those bytes."""

    def target(sock: socket.socket) -> bytes:
        sock.sendall(b"greeting")
        sock.shutdown(socket.SHUT_WR)
        return _recv_all(sock)

    server_side = _Target("127.0.0.1", target)
    with paramiko_client(demo_server) as client:
        channel = client.get_transport().open_channel(  # type: ignore[union-attr]
            "direct-tcpip", ("127.0.0.1", server_side.port), ("127.0.0.1", 0), timeout=TIMEOUT)
        channel.settimeout(TIMEOUT)
        greeting = _recv_all(channel)  # ends with the target's EOF
        channel.sendall(b"reply after eof")
        channel.shutdown_write()
        received = server_side.join()
        channel.close()
    assert (greeting, received) == (b"greeting", b"reply after eof")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_forward_to_ipv6_target(demo_server: DemoServer) -> None:
    """direct-tcpip to an IPv6 literal ("::1") connects and relays both ways."""
    server_side = _Target("::1", lambda sock: (sock.sendall(b"v6:" + sock.recv(100)), b"")[1])
    with paramiko_client(demo_server) as client:
        channel = client.get_transport().open_channel(  # type: ignore[union-attr]
            "direct-tcpip", ("::1", server_side.port), ("127.0.0.1", 0), timeout=TIMEOUT)
        channel.settimeout(TIMEOUT)
        channel.sendall(b"hello")
        answer = _recv_all(channel)
        channel.close()
    server_side.join()
    assert answer == b"v6:hello"
    assert demo_server.clients[0].callback_log["channel_open_direct_tcpip"] == [
        ("::1", server_side.port)]


def test_exec_forward_and_sftp_on_one_connection(demo_server: DemoServer, echo_server: int,
                                                 tmp_path: Path) -> None:
    """One connection carries an exec (still running), a direct-tcpip forward and an SFTP
    session at the same time, each working."""
    flag = tmp_path / "flag"
    (tmp_path / "file.txt").write_bytes(b"sftp content")
    with paramiko_client(demo_server) as client:
        transport = client.get_transport()
        assert transport is not None
        exec_channel = transport.open_session(timeout=TIMEOUT)
        exec_channel.settimeout(TIMEOUT)
        exec_channel.exec_command(
            f"echo started; i=0; while [ ! -e {flag} ] && [ $i -lt 200 ]; do sleep 0.05;"
            f" i=$((i+1)); done; echo finished")
        assert exec_channel.recv(100) == b"started\n"
        forward = transport.open_channel("direct-tcpip", ("127.0.0.1", echo_server),
                                         ("127.0.0.1", 0), timeout=TIMEOUT)
        forward.settimeout(TIMEOUT)
        forward.sendall(b"ping")
        forward.shutdown_write()
        echoed = _recv_all(forward)
        forward.close()
        sftp = client.open_sftp()
        try:
            with sftp.open(str(tmp_path / "file.txt"), "rb") as f:
                content = f.read()
        finally:
            sftp.close()
        flag.touch()
        rest = _recv_all(exec_channel)
        status = exec_channel.recv_exit_status()
        exec_channel.close()
    assert (echoed, content, rest, status) == (b"ping", b"sftp content", b"finished\n", 0)


def test_forward_target_reset_while_client_sends(demo_server: DemoServer) -> None:
    """A target that resets the TCP connection while the client is still sending ends that
    channel only: the client sees it close, the server logs no error, and the connection keeps
    working."""

    def target(sock: socket.socket) -> bytes:
        first = sock.recv(10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return first  # closing with linger 0 sends RST

    server_side = _Target("127.0.0.1", target)
    with paramiko_client(demo_server) as client:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_channel("direct-tcpip", ("127.0.0.1", server_side.port),
                                         ("127.0.0.1", 0), timeout=TIMEOUT)
        channel.settimeout(TIMEOUT)
        channel.sendall(b"0123456789")
        server_side.join()
        with contextlib.suppress(OSError, EOFError):
            for _ in range(64):  # bounded: 64 MiB at most
                channel.sendall(b"x" * (1 << 20))
        wait_for(lambda: channel.closed or channel.eof_received, what="channel ended")
        channel.close()
        assert paramiko_exec(client, "echo still-alive") == (b"still-alive\n", b"", 0)
    assert demo_server.clients[0].error is None


# ---- client EOF while libssh still holds data ---------------------------------------------------
def test_stdin_complete_when_command_reads_late(demo_server: DemoServer) -> None:
    """A command that starts reading only after the client has sent all its stdin and EOF
    (1.5 MiB: more than the server buffers outside libssh) still gets every byte before EOF.
    Repeated 5 times: the loss this pins down depended on timing."""
    data = os.urandom(1_500_000)
    counts = []
    with paramiko_client(demo_server) as client:
        for _ in range(5):
            out, _, status = paramiko_exec(client, "sleep 0.1; wc -c", stdin=data)
            counts.append((out.strip(), status))
    assert counts == [(str(len(data)).encode(), 0)] * 5


def test_forward_complete_when_target_reads_late(demo_server: DemoServer) -> None:
    """direct-tcpip: a target that starts reading only after the client sent 8 MiB and EOF
    (more than the socket and server buffers hold) receives every byte before the half-close,
    and can still answer."""
    data = os.urandom(8 << 20)

    def target(sock: socket.socket) -> bytes:
        time.sleep(0.3)
        received = _recv_all(sock)
        sock.sendall(str(len(received)).encode())
        return received

    answers = []
    with paramiko_client(demo_server) as client:
        transport = client.get_transport()
        assert transport is not None
        for _ in range(3):
            server_side = _Target("127.0.0.1", target)
            channel = transport.open_channel("direct-tcpip", ("127.0.0.1", server_side.port),
                                             ("127.0.0.1", 0), timeout=TIMEOUT)
            channel.settimeout(TIMEOUT)
            channel.sendall(data)
            channel.shutdown_write()
            answers.append(_recv_all(channel))
            channel.close()
            assert server_side.join() == data
    assert answers == [str(len(data)).encode()] * 3
