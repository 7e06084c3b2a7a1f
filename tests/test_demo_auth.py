# SPDX-License-Identifier: MIT
"""Authentication breadth, and looking like another server, with real clients: per-user
passwords, keyboard-interactive rounds with echo flags, auth chains with partial success,
the pre-auth banner, the identification string and the host key type."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest
from conftest import SSH_OPTS
from test_demo_cli import run_cli, running_cli
from test_demo_openssh import askpass_env, batch_ssh, kbdint_ssh, keygen, password_ssh, run
from test_demo_python_clients import aconnect, arun, paramiko_transport

from pylibssh_server import AuthMethod
from pylibssh_server.demo import DemoServer
from pylibssh_server.demo.auth import AuthChains, Kbdint

Factory = Callable[..., DemoServer]

TWO_ROUNDS = {
    "name": "Corp login",
    "instruction": "Two steps.",
    "rounds": [
        [{"prompt": "Username: ", "echo": True, "answer": "alice"},
         {"prompt": "Password: ", "echo": False, "answer": "s3cret"}],
        [{"prompt": "Enter PASSCODE: ", "echo": False, "answer": "123456"}],
    ],
}


def at_info_level(argv: list[str]) -> list[str]:
    """``argv`` with ssh's own LogLevel (INFO, at which it prints banners and negotiation
    failures) instead of the ERROR that SSH_OPTS sets."""
    return [("LogLevel=INFO" if a == "LogLevel=ERROR" else a) for a in argv]


# ---- per-user passwords ---------------------------------------------------------------------
def test_openssh_per_user_passwords(demo_server_factory: Factory) -> None:
    """With users= the user name matters: each user's own password works, another user's
    does not, an unknown user gets in only with the any-user password."""
    server = demo_server_factory(users={"alice": "pa", "bob": "pb"}, password="shared")
    cases = [("alice", "pa", True), ("alice", "pb", False), ("bob", "pb", True),
             ("alice", "shared", False), ("carol", "shared", True), ("carol", "pa", False)]
    for user, secret, works in cases:
        result = run(password_ssh(server, secret, "echo in", user=user))
        assert (result.returncode, result.stdout) == ((0, "in\n") if works else (5, "")), \
            (user, secret, result.stderr)
    logged = [entry for c in server.clients for entry in c.callback_log["auth_password"]]
    assert [(u, p) for u, p, _ in cases] == logged
    assert [c.authenticated for c in server.clients] == [w for _, _, w in cases]


def test_users_without_shared_password(demo_server_factory: Factory) -> None:
    """users= alone enables password auth; a user not listed cannot get in."""
    server = demo_server_factory(users={"alice": "pa"})
    assert server.auth_methods == AuthMethod.PASSWORD
    assert run(password_ssh(server, "pa", "true", user="alice")).returncode == 0
    assert run(password_ssh(server, "pa", "true", user="mallory")).returncode == 5


def test_python_clients_per_user_passwords(demo_server_factory: Factory) -> None:
    """paramiko and asyncssh: the same per-user rule; the ready kwargs carry the user's
    password."""
    server = demo_server_factory(users={"alice": "pa", "bob": "pb"})
    with paramiko_transport(server) as transport:
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_password("alice", "pb")
        transport.auth_password("alice", "pa")
        assert transport.is_authenticated()
    assert server.asyncssh_kwargs("bob")["password"] == "pb"

    async def main() -> str:
        async with asyncssh.connect(**server.asyncssh_kwargs("bob")) as conn:
            return (await conn.run("echo bob", check=True)).stdout

    assert arun(main()) == "bob\n"
    with pytest.raises(asyncssh.PermissionDenied):
        arun(aconnect(server, username="bob", password="pa", preferred_auth="password"))


# ---- keyboard-interactive rounds ----------------------------------------------------------
def test_openssh_two_round_kbdint(demo_server_factory: Factory, tmp_path: Path) -> None:
    """Two rounds with echo-off prompts through SSH_ASKPASS: every prompt is shown, in
    order, and the right answers run the command."""
    server = demo_server_factory(kbdint=TWO_ROUNDS, auth_methods="keyboard-interactive")
    env, record = askpass_env(tmp_path, {"Username: ": "alice", "Password: ": "s3cret",
                                         "PASSCODE: ": "123456"})
    result = run(kbdint_ssh(server, "echo two-rounds"), env=env)
    assert (result.returncode, result.stdout) == (0, "two-rounds\n"), result.stderr
    prompts = record.read_text().splitlines()
    assert [p.split(") ", 1)[1] for p in prompts] == ["Username: ", "Password: ",
                                                      "Enter PASSCODE: "]
    assert server.clients[0].callback_log["auth_kbdint"] == [
        "foo", "accepted with 'alice' and 's3cret' and '123456'"]


def test_openssh_kbdint_second_round_wrong(demo_server_factory: Factory,
                                           tmp_path: Path) -> None:
    """A wrong answer in the second round denies, although the first round was right."""
    server = demo_server_factory(kbdint=TWO_ROUNDS, auth_methods="keyboard-interactive")
    env, record = askpass_env(tmp_path, {"Username: ": "alice", "Password: ": "s3cret",
                                         "PASSCODE: ": "000000"})
    result = run(kbdint_ssh(server, "echo no"), env=env)
    assert (result.returncode, result.stdout) == (255, "")
    assert len(record.read_text().splitlines()) == 3
    assert server.clients[0].callback_log["auth_kbdint"] == ["foo", "denied"]
    assert not server.clients[0].authenticated


def test_paramiko_kbdint_rounds_and_echo(demo_server_factory: Factory) -> None:
    """paramiko's auth_interactive handler is called once per round with each prompt's echo
    flag."""
    server = demo_server_factory(kbdint=TWO_ROUNDS)
    assert server.auth_methods == AuthMethod.INTERACTIVE
    answers = {"Username: ": "alice", "Password: ": "s3cret", "Enter PASSCODE: ": "123456"}
    seen: list[tuple[str, str, list[tuple[str, bool]]]] = []

    def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        seen.append((title, instructions, [(p, bool(e)) for p, e in prompts]))
        return [answers[p] for p, _ in prompts]

    with paramiko_transport(server) as transport:
        assert transport.auth_interactive("alice", handler) == []
        assert transport.is_authenticated()
    assert seen == [("Corp login", "Two steps.", [("Username: ", True), ("Password: ", False)]),
                    ("Corp login", "Two steps.", [("Enter PASSCODE: ", False)])]


def test_asyncssh_kbdint_sees_every_prompt(demo_server_factory: Factory) -> None:
    """asyncssh's kbdint challenge gets both rounds, every prompt and echo flag."""
    server = demo_server_factory(kbdint=TWO_ROUNDS)
    seen: list[tuple[str, str, list[tuple[str, bool]]]] = []
    answers = {"Username: ": "alice", "Password: ": "s3cret", "Enter PASSCODE: ": "123456"}

    class Client(asyncssh.SSHClient):
        def kbdint_auth_requested(self) -> str | None:
            return None if seen else ""

        def kbdint_challenge_received(self, name: str, instructions: str, lang: str,
                                      prompts: Any) -> list[str]:
            if not prompts:
                return []
            seen.append((name, instructions, [(p, bool(e)) for p, e in prompts]))
            return [answers[p] for p, _ in prompts]

    async def main() -> str:
        async with aconnect(server, client_factory=Client,
                            preferred_auth="keyboard-interactive") as conn:
            return (await conn.run("echo in", check=True)).stdout

    assert arun(main()) == "in\n"
    assert seen == [("Corp login", "Two steps.", [("Username: ", True), ("Password: ", False)]),
                    ("Corp login", "Two steps.", [("Enter PASSCODE: ", False)])]


# ---- auth chains ----------------------------------------------------------------------------
@pytest.fixture
def chain_server(demo_server_factory: Factory, tmp_path: Path) -> tuple[DemoServer, Path]:
    key = keygen(tmp_path / "id_ed25519")
    server = demo_server_factory(password="pw", authorized_keys=key.with_suffix(".pub").read_text(),
                                 auth_chains=["publickey,password"])
    return server, key


def test_openssh_chain_key_alone_fails(chain_server: tuple[DemoServer, Path]) -> None:
    """--auth-chain publickey,password: the key alone is a partial success, and a client
    that has no password to give is not let in; the failure lists what is left."""
    server, key = chain_server
    result = run(batch_ssh(server, "echo no", identity=key, methods="publickey,password"))
    assert (result.returncode, result.stdout) == (255, "")
    assert "Authenticated using \"publickey\" with partial success" in result.stderr or \
        "Permission denied (password)" in result.stderr, result.stderr
    client = server.clients[0]
    assert client.callback_log["auth_partial"] == ["publickey"]
    assert not client.authenticated


def test_openssh_chain_key_then_password(chain_server: tuple[DemoServer, Path]) -> None:
    """The key, then the password, works; ``auth_partial`` logs the key step."""
    server, key = chain_server
    argv = ["sshpass", "-p", "pw", "ssh", *SSH_OPTS, "-o", "BatchMode=no",
            "-o", "PreferredAuthentications=publickey,password", "-i", str(key),
            "-o", "IdentitiesOnly=yes", "-p", str(server.port), "foo@127.0.0.1", "echo both"]
    result = run(argv)
    assert (result.returncode, result.stdout) == (0, "both\n"), result.stderr
    log = server.clients[0].callback_log
    assert log["auth_partial"] == ["publickey"]
    assert [u for u, _ in log["auth_password"]] == ["foo"]
    assert server.clients[0].authenticated


def test_openssh_chain_password_first_refused(chain_server: tuple[DemoServer, Path]) -> None:
    """The password alone, out of order, is refused (only publickey is offered first)."""
    server, _ = chain_server
    result = run(password_ssh(server, "pw", "echo no"))
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr
    assert not server.clients[0].authenticated


def test_paramiko_chain_partial(chain_server: tuple[DemoServer, Path]) -> None:
    """paramiko: the key step returns the methods left ("password"), then the password
    completes the login."""
    server, key = chain_server
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key))
    with paramiko_transport(server) as transport:
        assert transport.auth_publickey("foo", pkey) == ["password"]
        assert not transport.is_authenticated()
        transport.auth_password("foo", "pw")
        assert transport.is_authenticated()


def test_asyncssh_chain(chain_server: tuple[DemoServer, Path]) -> None:
    """asyncssh follows the partial success to the password on its own."""
    server, key = chain_server

    async def main() -> str:
        async with aconnect(server, client_keys=[str(key)], password="pw") as conn:
            return (await conn.run("echo chained", check=True)).stdout

    assert arun(main()) == "chained\n"
    assert server.clients[0].callback_log["auth_partial"] == ["publickey"]


def test_chains_validation() -> None:
    """Chains name served methods, each once; they need the methods' secrets."""
    for bad in ("publickey,nope", "none,password", "password,password", ""):
        with pytest.raises(ValueError):
            AuthChains([bad])
    with pytest.raises(ValueError, match="no password"):
        DemoServer(auth_chains=["keyboard-interactive,password"])
    with pytest.raises(ValueError, match="auth none"):
        DemoServer(password="x", auth_chains=["password"], allow_auth_none=True)
    chains = AuthChains(["publickey,password", "publickey,keyboard-interactive", "password"])
    assert chains.next_methods([]) == AuthMethod.PUBLICKEY | AuthMethod.PASSWORD
    assert chains.next_methods(["publickey"]) == AuthMethod.PASSWORD | AuthMethod.INTERACTIVE
    assert chains.complete(["password"]) and not chains.complete(["publickey"])


# ---- banner, version, host key type, algorithms -------------------------------------------
def test_openssh_prints_banner(demo_server_factory: Factory) -> None:
    """The pre-auth banner reaches the user: ssh prints it on stderr before logging in."""
    server = demo_server_factory(password="foo", banner="Authorized use only.\n")
    result = run(at_info_level(password_ssh(server, "foo", "echo in")))
    assert (result.returncode, result.stdout) == (0, "in\n")
    assert "Authorized use only." in result.stderr


def test_python_clients_see_banner_and_version(demo_server_factory: Factory) -> None:
    """paramiko and asyncssh report the identification string and the banner."""
    server = demo_server_factory(password="foo", banner="Hello banner\n",
                                 server_version="OpenSSH_7.4p1 Debian-10+deb9u7")
    with paramiko_transport(server) as transport:
        assert transport.remote_version == "SSH-2.0-OpenSSH_7.4p1 Debian-10+deb9u7"
        transport.auth_password("foo", "foo")
        assert transport.get_banner() == b"Hello banner\n"
    banners: list[str] = []

    class Client(asyncssh.SSHClient):
        def auth_banner_received(self, msg: str, lang: str) -> None:
            banners.append(msg)

    async def main() -> str:
        async with aconnect(server, password="foo", client_factory=Client) as conn:
            return str(conn.get_extra_info("server_version"))

    assert arun(main()) == "SSH-2.0-OpenSSH_7.4p1 Debian-10+deb9u7"
    assert banners == ["Hello banner\n"]


@pytest.mark.parametrize(("hostkey_type", "works"), [("rsa", True), ("ed25519", False)])
def test_openssh_hostkey_type(demo_server_factory: Factory, hostkey_type: str,
                              works: bool) -> None:
    """-o HostKeyAlgorithms=rsa-sha2-256 works against --hostkey-type rsa and fails against
    an Ed25519 host key."""
    server = demo_server_factory(password="foo", hostkey_type=hostkey_type)
    argv = at_info_level(password_ssh(server, "foo", "echo in"))
    argv[4:4] = ["-o", "HostKeyAlgorithms=rsa-sha2-256"]
    result = run(argv)
    if works:
        assert (result.returncode, result.stdout) == (0, "in\n"), result.stderr
        assert server.host_key.type_name == "ssh-rsa"
    else:
        assert result.returncode == 255
        assert "no matching host key type" in result.stderr


def test_cli_auth_flags(tmp_path: Path) -> None:
    """The CLI: --user, --kbdint, --auth-chain, --banner, --server-version, --hostkey-type and
    the algorithm lists reach the server (checked with real clients)."""
    kbdint = tmp_path / "kbdint.json"
    kbdint.write_text(json.dumps(TWO_ROUNDS))
    with running_cli("--user", "alice:pa", "--kbdint", str(kbdint), "--auth",
                     "password,keyboard-interactive", "--auth-chain", "password",
                     "--auth-chain", "keyboard-interactive", "--banner", "cli banner",
                     "--server-version", "Cisco-1.25", "--hostkey-type", "ecdsa",
                     "--ciphers", "aes256-ctr", "--macs", "hmac-sha2-256",
                     "--kex", "ecdh-sha2-nistp256", "--hostkey-algorithms",
                     "ecdsa-sha2-nistp256") as (_, ready):
        assert ready["host_key"].startswith("ecdsa-sha2-nistp256 ")
        sock_port = ready["port"]
        transport = paramiko.Transport(("127.0.0.1", sock_port))
        try:
            transport.start_client(timeout=20)
            assert transport.remote_version == "SSH-2.0-Cisco-1.25"
            assert transport.remote_cipher == "aes256-ctr"
            assert transport.remote_mac == "hmac-sha2-256"
            with pytest.raises(paramiko.AuthenticationException):
                transport.auth_password("alice", "wrong")
            assert transport.get_banner() == b"cli banner"  # with the first auth answer
            transport.auth_password("alice", "pa")
            assert transport.is_authenticated()
        finally:
            transport.close()


@pytest.mark.parametrize("args", [
    ("--kbdint", "MISSING"),
    ("--auth-chain", "publickey,telepathy"),
    ("--auth-chain", "password,password"),
    ("--user", "nocolon"),
    ("--user", ":pw"),
    ("--user", "a:1", "--user", "a:2"),
    ("--hostkey-type", "dsa"),
    ("--commands", "MISSING"),
    ("--commands", "NOT_JSON"),
])
def test_cli_malformed_auth_input(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Malformed auth input: one clear error line on stderr, exit code 2, nothing on stdout."""
    (tmp_path / "NOT_JSON").write_text('{"commands": {"x": 1}')
    args = tuple(str(tmp_path / a) if a in ("MISSING", "NOT_JSON") else a for a in args)
    result = run_cli(*args)
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], result.stderr


@pytest.mark.parametrize("content", [
    "not json", "[]", '{"rounds": []}', '{"rounds": [[]]}', '{"rounds": [[{"prompt": "x"}]]}',
    '{"rounds": [[{"prompt": "x", "answer": "y", "echo": "yes"}]]}',
    '{"rounds": [[{"prompt": "x", "answer": "y"}]], "extra": 1}',
])
def test_cli_malformed_kbdint_file(tmp_path: Path, content: str) -> None:
    """A --kbdint file that is not the documented JSON: one error line naming the file."""
    path = tmp_path / "kbdint.json"
    path.write_text(content)
    result = run_cli("--kbdint", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], result.stderr
    with pytest.raises((ValueError, TypeError)):
        Kbdint.from_file(path)


def test_server_version_and_kbdint_validation() -> None:
    """Identification strings that cannot go on the wire, and bad kbdint objects, are
    refused at construction."""
    for bad in ("", "two\r\nlines", "x" * 300, "caf\u00e9", " leading"):
        with pytest.raises(ValueError, match="server_version"):
            DemoServer(password="x", server_version=bad)
    with pytest.raises(ValueError, match="hostkey_type"):
        DemoServer(password="x", hostkey_type="dsa")
    with pytest.raises(TypeError):
        DemoServer(password="x", users={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        DemoServer(kbdint={"rounds": [[{"prompt": "p", "answer": "a"}]] * 40})



def test_paramiko_chain_kbdint_step_then_password(demo_server_factory: Factory) -> None:
    """keyboard-interactive as a chain's first step answers partial success (through the
    message path on libssh 0.10/0.11 and the kbdint callback on 0.12), then the password
    completes the login."""
    server = demo_server_factory(password="pw", auth_chains=["keyboard-interactive,password"])

    def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        return ["foo", "bar"] if prompts else []

    with paramiko_transport(server) as transport:
        assert transport.auth_interactive("alice", handler) == ["password"]
        assert not transport.is_authenticated()
        transport.auth_password("alice", "pw")
        assert transport.is_authenticated()
    log = server.clients[0].callback_log
    assert log["auth_partial"] == ["keyboard-interactive"]
    assert log["auth_kbdint"] == ["alice", "accepted with 'foo' and 'bar'"]
