# SPDX-License-Identifier: MIT
"""Per-user keys, ``authorized_keys`` options and OpenSSH user certificates, honoured as sshd
honours them, driven by the OpenSSH client (and asyncssh and paramiko for certificates).

Source addresses: the server listens on 127.0.0.1; ``ssh -b 127.0.0.2`` connects from
another loopback address, which ``from=`` and ``source-address`` tell apart.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest
import test_demo_tunnels
from conftest import _Echo, _ThreadingServer, serving, stop_process
from test_demo_cli import keygen, run_cli
from test_demo_openssh import free_port
from test_demo_tunnels import round_trip, wait_listening

from pylibssh_server import SshKeyError
from pylibssh_server.demo import DemoServer
from pylibssh_server.demo.keyrules import match_from
from pylibssh_server.keys import parse_authorized_key_entries

TIMEOUT = 30
agent = test_demo_tunnels.agent  # the fixture: a test-own ssh-agent holding one key
OTHER_LOOPBACK = "127.0.0.2"


def ssh(server: DemoServer, identity: Path, *args: str, user: str = "alice",
        cert: Path | None = None, opts: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """OpenSSH with only ``identity`` (and its certificate ``cert``), the real host key."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none", "-o", "PreferredAuthentications=publickey",
            "-o", "ConnectTimeout=10", "-i", str(identity),
            *(["-o", f"CertificateFile={cert}"] if cert else []), *opts,
            *server.ssh_args(user), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def sign(ca: Path, identity: Path, principals: str, *options: str,
         validity: str = "-5m:+1h") -> Path:
    """``ssh-keygen -s`` a user certificate for ``identity``; returns its ``-cert.pub``."""
    argv = ["ssh-keygen", "-q", "-s", str(ca), "-I", f"cert-of-{identity.name}",
            "-V", validity, *options]
    if principals:
        argv += ["-n", principals]
    subprocess.run([*argv, f"{identity}.pub"], check=True, timeout=TIMEOUT,
                   capture_output=True)
    return identity.parent / f"{identity.name}-cert.pub"


def line(identity: Path, options: str = "") -> str:
    key = (identity.parent / f"{identity.name}.pub").read_text().strip()
    return f"{options} {key}" if options else key


def log_of(server: DemoServer, name: str) -> list[Any]:
    return [entry for client in server.clients for entry in client.callback_log.get(name, [])]


def denied(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 255 and "Permission denied" in result.stderr


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A CA, another CA and a user key (OpenSSH private key paths)."""
    return {name: keygen(tmp_path / name) for name in ("ca", "other_ca", "user")}


# ---- per-user keys ----------------------------------------------------------------------------
def test_per_user_keys(tmp_path: Path) -> None:
    """``authorized_keys={"alice": [...], "bob": path}``: each key logs in only its user; a
    ``"*"`` entry is for every user."""
    alice, bob, anyone = (keygen(tmp_path / n) for n in ("alice", "bob", "anyone"))
    (tmp_path / "bob_keys").write_text(line(bob) + "\n")
    with DemoServer(authorized_keys={"alice": [line(alice)], "bob": tmp_path / "bob_keys",
                                     "*": [line(anyone)]}) as server:
        assert ssh(server, alice, "echo a", user="alice").stdout == "a\n"
        assert denied(ssh(server, alice, "true", user="bob"))
        assert ssh(server, bob, "echo b", user="bob").stdout == "b\n"
        assert denied(ssh(server, bob, "true", user="carol"))
        assert ssh(server, anyone, "echo c", user="carol").stdout == "c\n"


def cli_ssh(port: int, identity: Path, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """OpenSSH to a CLI server (host key not checked: the CLI made a fresh one)."""
    argv = ["ssh", "-F", "none", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "LogLevel=ERROR",
            "-i", str(identity), "-p", str(port), f"{user}@127.0.0.1", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def test_cli_authorized_keys_for(tmp_path: Path) -> None:
    """``--authorized-keys-for USER:FILE`` (repeatable, with ``--authorized-keys`` for every
    user): alice's key logs in alice only, the shared key anyone; a malformed value is exit 2
    naming the expected form, a missing file exit 1."""
    from test_demo_cli import running_cli

    alice, anyone = keygen(tmp_path / "alice"), keygen(tmp_path / "anyone")
    (tmp_path / "alice_keys").write_text(line(alice) + "\n")
    (tmp_path / "all_keys").write_text(line(anyone) + "\n")
    with running_cli("--authorized-keys-for", f"alice:{tmp_path / 'alice_keys'}",
                     "--authorized-keys", str(tmp_path / "all_keys")) as (_, ready):
        port = ready["port"]
        assert cli_ssh(port, alice, "alice", "echo a").stdout == "a\n"
        assert denied(cli_ssh(port, alice, "bob", "true"))
        assert cli_ssh(port, anyone, "bob", "echo b").stdout == "b\n"
    bad = run_cli("--authorized-keys-for", "alice")
    assert bad.returncode == 2 and "expected USER:FILE, not 'alice'" in bad.stderr
    missing = run_cli("--authorized-keys-for", f"alice:{tmp_path / 'nope'}")
    assert missing.returncode == 1 and "authorized keys file not found" in missing.stderr


# ---- authorized_keys options ------------------------------------------------------------------
def test_from_option_checks_the_client_address(keys: dict[str, Path]) -> None:
    """``from="127.0.0.2"`` refuses a client at 127.0.0.1 (the refusal logged with the
    reason) and admits one bound to 127.0.0.2; a negated pattern refuses even when a network
    pattern matches."""
    user = keys["user"]
    with DemoServer(authorized_keys=[line(user, f'from="{OTHER_LOOPBACK}"')]) as server:
        assert denied(ssh(server, user, "true"))
        assert log_of(server, "auth_key_refused") == [
            f'authorized_keys line 1: from="{OTHER_LOOPBACK}" does not match 127.0.0.1']
        ok = ssh(server, user, "echo in", opts=("-b", OTHER_LOOPBACK))
        assert (ok.returncode, ok.stdout) == (0, "in\n")
    with DemoServer(authorized_keys=[line(user, 'from="!127.0.0.1,127.0.0.0/8"')]) as server:
        assert denied(ssh(server, user, "true"))
        assert ssh(server, user, "echo in", opts=("-b", OTHER_LOOPBACK)).stdout == "in\n"


@pytest.mark.parametrize(("address", "patterns", "admitted"), [
    ("127.0.0.1", "127.0.0.1", True), ("127.0.0.1", "127.0.0.*", True),
    ("127.0.0.1", "127.0.0.?", True), ("127.0.0.1", "10.0.0.0/8,127.0.0.0/8", True),
    ("127.0.0.1", "127.0.0.2", False), ("127.0.0.1", "!127.0.0.1", False),
    ("127.0.0.1", "*,!127.0.0.1", False), ("127.0.0.1", "*,!127.*", False),
    ("127.0.0.1", "localhost", False), ("::1", "::1/128", True), ("::1", "127.0.0.0/8", False),
])
def test_from_patterns(address: str, patterns: str, admitted: bool) -> None:
    """sshd's from= matching without DNS: wildcards, networks and negation."""
    assert match_from(address, patterns) is admitted


def test_command_option_forces_the_command(keys: dict[str, Path]) -> None:
    """``command=`` runs instead of what the client asked, which is in
    ``SSH_ORIGINAL_COMMAND``; a shell request runs it too (without the variable); the forced
    command is logged."""
    user = keys["user"]
    forced = 'echo "forced:${SSH_ORIGINAL_COMMAND-none}"'
    escaped = forced.replace('"', '\\"')
    with DemoServer(authorized_keys=[line(user, f'command="{escaped}"')]) as server:
        result = ssh(server, user, "echo asked")
        assert (result.returncode, result.stdout) == (0, "forced:echo asked\n")
        shell = ssh(server, user)
        assert (shell.returncode, shell.stdout) == (0, "forced:none\n")
        assert ("command", forced) in log_of(server, "key_option_applied")
        assert log_of(server, "auth_key_accepted") == ["authorized_keys line 1"] * 2


def pty_refused(result: subprocess.CompletedProcess[str]) -> bool:
    """OpenSSH asked for a pty with ``-tt`` and was refused (it then gives up, 255)."""
    return (result.returncode, result.stdout) == (255, "") and \
        "PTY allocation request failed" in result.stderr


def test_no_pty_refuses_a_pty(keys: dict[str, Path]) -> None:
    """``no-pty``: ``ssh -tt`` is refused its terminal (the refusal is logged); without the
    option it gets one."""
    user = keys["user"]
    with DemoServer(authorized_keys=[line(user, "no-pty")]) as server:
        assert pty_refused(ssh(server, user, "tty", opts=("-tt",)))
        assert ("no-pty", "pty-req") in log_of(server, "key_option_applied")
    with DemoServer(authorized_keys=[line(user)]) as server:
        assert ssh(server, user, "tty", opts=("-tt",)).stdout.startswith("/dev/")


@pytest.fixture
def two_echo_servers() -> Iterator[tuple[int, int]]:
    with serving(_ThreadingServer(("127.0.0.1", 0), _Echo)) as a, \
            serving(_ThreadingServer(("127.0.0.1", 0), _Echo)) as b:
        yield a, b


def forward_works(local: int) -> bool:
    """Whether a connection through ``ssh -L local:...`` reaches its echo target (a refused
    channel closes or resets the local connection: ECONNRESET, EPIPE or ENOTCONN, by when
    it happens)."""
    with socket.create_connection(("127.0.0.1", local), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(b"ping")
            sock.shutdown(socket.SHUT_WR)
            return sock.recv(16) == b"ping"
        except TimeoutError:
            raise  # neither data nor a close: a hang, not a refusal
        except OSError:
            return False


def test_permitopen_limits_local_forwards(keys: dict[str, Path],
                                          two_echo_servers: tuple[int, int]) -> None:
    """``permitopen="127.0.0.1:A"``: ``ssh -L`` to A carries data, to B (same host, another
    port) the channel is refused and the local connection just closes."""
    allowed, other = two_echo_servers
    user = keys["user"]
    with DemoServer(authorized_keys=[line(user, f'permitopen="127.0.0.1:{allowed}"')]) \
            as server:
        local_a, local_b = free_port(), free_port()
        proc = subprocess.Popen(
            ["ssh", "-N", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
             "-o", "IdentityAgent=none", "-o", "ExitOnForwardFailure=yes", "-i", str(user),
             "-L", f"{local_a}:127.0.0.1:{allowed}", "-L", f"{local_b}:127.0.0.1:{other}",
             *server.ssh_args("alice")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(local_a)
            wait_listening(local_b)
            round_trip(local_a, 1 << 16, 1)
            assert not forward_works(local_b)
        finally:
            stop_process(proc)
        assert ("permitopen", f"127.0.0.1:{other} is not permitted") in log_of(
            server, "key_option_applied")


def test_environment_option_sets_the_command_environment(keys: dict[str, Path]) -> None:
    """``environment="NAME=value"`` reaches the command, over what the client sent."""
    user = keys["user"]
    options = 'environment="DEMO_A=from key",environment="LC_DEMO=key"'
    with DemoServer(authorized_keys=[line(user, options)]) as server:
        result = ssh(server, user, 'echo "$DEMO_A/$LC_DEMO"',
                     opts=("-o", "SendEnv=LC_DEMO", "-o", "SetEnv=LC_DEMO=client"))
        assert (result.returncode, result.stdout) == (0, "from key/key\n")


def test_restrict_and_reenabling(keys: dict[str, Path], echo_server: int) -> None:
    """``restrict`` refuses a pty and forwarding (``ssh -W`` is refused) while commands run;
    ``restrict,pty`` gets the pty back and still no forwarding."""
    user = keys["user"]
    with DemoServer(authorized_keys=[line(user, "restrict")]) as server:
        assert pty_refused(ssh(server, user, "tty", opts=("-tt",)))
        assert ssh(server, user, "echo cmd").stdout == "cmd\n"
        forward = ssh(server, user, opts=("-W", f"127.0.0.1:{echo_server}"))
        assert forward.returncode == 255 and "open failed" in forward.stderr
        assert ("no-port-forwarding", f"direct-tcpip 127.0.0.1:{echo_server}") in log_of(
            server, "key_option_applied")
    with DemoServer(authorized_keys=[line(user, "restrict,pty")]) as server:
        assert ssh(server, user, "tty", opts=("-tt",)).stdout.startswith("/dev/")
        assert ssh(server, user, opts=("-W", f"127.0.0.1:{echo_server}")).returncode == 255


def test_no_port_forwarding_refuses_remote_forwards(keys: dict[str, Path],
                                                    echo_server: int) -> None:
    """``no-port-forwarding`` also refuses ``tcpip-forward`` (``ssh -R``)."""
    user = keys["user"]
    with DemoServer(authorized_keys=[line(user, "no-port-forwarding")]) as server:
        result = ssh(server, user, "-N", opts=("-o", "ExitOnForwardFailure=yes",
                                               "-R", f"0:127.0.0.1:{echo_server}"))
        assert result.returncode == 255 and "remote port forwarding failed" in result.stderr
        assert log_of(server, "key_option_applied") == [
            ("no-port-forwarding", "tcpip-forward localhost:0")]


def test_permitlisten_limits_remote_forwards(keys: dict[str, Path], echo_server: int) -> None:
    """``permitlisten="localhost:P"``: ``ssh -R P:...`` (OpenSSH asks for ``localhost``)
    listens and carries data; ``-R`` on another port is refused."""
    user = keys["user"]
    allowed, other = free_port(), free_port()
    with DemoServer(authorized_keys=[line(user, f'permitlisten="localhost:{allowed}"')]) \
            as server:
        refused = ssh(server, user, "-N", opts=("-o", "ExitOnForwardFailure=yes",
                                                "-R", f"{other}:127.0.0.1:{echo_server}"))
        assert refused.returncode == 255 and "remote port forwarding failed" in refused.stderr
        assert log_of(server, "key_option_applied") == [
            ("permitlisten", f"localhost:{other} is not permitted")]
        proc = subprocess.Popen(
            ["ssh", "-N", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
             "-o", "IdentityAgent=none", "-o", "ExitOnForwardFailure=yes", "-i", str(user),
             "-R", f"{allowed}:127.0.0.1:{echo_server}", *server.ssh_args("alice")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(allowed)
            round_trip(allowed, 1 << 16, 2)
        finally:
            stop_process(proc)


def test_agent_forwarding_options(keys: dict[str, Path], agent: tuple[Path, str]) -> None:
    """``restrict`` gives ``ssh -A`` no agent socket; ``restrict,agent-forwarding`` does."""
    sock, _ = agent
    user = keys["user"]
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
    for options, has_agent in (("restrict", False), ("restrict,agent-forwarding", True)):
        with DemoServer(authorized_keys=[line(user, options)]) as server:
            argv = ["ssh", "-A", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                    "-i", str(user), *server.ssh_args("alice"),
                    'echo "${SSH_AUTH_SOCK:-none}"']
            out = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                                 env=env, stdin=subprocess.DEVNULL).stdout.strip()
            assert (out != "none") is has_agent, out
            if not has_agent:
                assert ("no-agent-forwarding", "auth-agent-req") in log_of(
                    server, "key_option_applied")


def test_expiry_time(keys: dict[str, Path]) -> None:
    """A key past its ``expiry-time`` is refused (and the reason logged); one before works."""
    user = keys["user"]
    with DemoServer(authorized_keys=[line(user, 'expiry-time="20200101"')]) as server:
        assert denied(ssh(server, user, "true"))
        assert log_of(server, "auth_key_refused") == [
            "authorized_keys line 1: key expired (expiry-time)"]
    with DemoServer(authorized_keys=[line(user, 'expiry-time="20991231Z"')]) as server:
        assert ssh(server, user, "echo ok").stdout == "ok\n"


def test_forced_command_replaces_a_subsystem(keys: dict[str, Path]) -> None:
    """A forced command runs for a subsystem request too (as sshd), with
    ``SSH_ORIGINAL_COMMAND=internal-sftp`` for SFTP."""
    user = keys["user"]
    with DemoServer(authorized_keys=[line(user, 'command="echo $SSH_ORIGINAL_COMMAND"')]) \
            as server:
        result = ssh(server, user, "sftp", opts=("-s",))
        assert (result.returncode, result.stdout) == (0, "internal-sftp\n")


def test_unsupported_and_malformed_options_are_refused(keys: dict[str, Path]) -> None:
    """Options the server does not enforce, and malformed supported ones, refuse the line at
    construction with the line number and the reason."""
    user = keys["user"]
    cases = {
        'tunnel="1",no-pty': "line 1: unsupported key options (tunnel)",
        "verify-required": "line 1: unsupported key options (verify-required)",
        'permitlisten="host:x"': 'line 1: invalid permitlisten="host:x"',
        'from="10.0.0.1/8"': "line 1: from: 10.0.0.1/8 has host bits set",
        'permitopen="nohost"': 'line 1: invalid permitopen="nohost"',
        "command=true": "line 1: option command: the value must be in double quotes",
        'environment="A B=c"': 'line 1: invalid environment="A B=c"',
    }
    for options, message in cases.items():
        with pytest.raises(SshKeyError, match=re.escape(message)):
            DemoServer(authorized_keys=[line(user, options)])


def test_ignore_key_options_loads_plain_keys(keys: dict[str, Path]) -> None:
    """With ignore_key_options a line with options (supported or not) is a plain key."""
    user = keys["user"]
    with DemoServer(authorized_keys=[line(user, 'command="echo forced",tunnel="0"')],
                    ignore_key_options=True) as server:
        assert ssh(server, user, "echo mine").stdout == "mine\n"


def test_parsed_options(keys: dict[str, Path]) -> None:
    """``parse_authorized_key_entries`` keeps each line's options, applied in order."""
    entries = parse_authorized_key_entries(
        [line(keys["user"], 'restrict,pty,permitopen="[::1]:*",principals="a,b"')])
    try:
        (options,) = [e.options for e in entries]
        assert (options.pty, options.port_forwarding, options.agent_forwarding) == (
            True, False, False)
        assert (options.permitopen, options.principals) == ((("::1", None),), ("a", "b"))
    finally:
        for entry in entries:
            entry.close()


# ---- user certificates ------------------------------------------------------------------------
def cert_server(keys: dict[str, Path], **kwargs: Any) -> DemoServer:
    return DemoServer(trusted_user_ca_keys=f"{keys['ca']}.pub", **kwargs)


def test_certificate_with_the_right_principal_logs_in(keys: dict[str, Path]) -> None:
    """A certificate from a trusted CA naming the user logs in (the user key itself is not
    authorized); the grant names the certificate and its CA."""
    cert = sign(keys["ca"], keys["user"], "alice,admin")
    with cert_server(keys) as server:
        result = ssh(server, keys["user"], "echo cert", cert=cert)
        assert (result.returncode, result.stdout) == (0, "cert\n")
        (accepted,) = log_of(server, "auth_key_accepted")
        assert accepted.startswith("certificate 'cert-of-user' serial 0 of CA SHA256:")
        # The plain key is not authorized (a copy: ssh would load user-cert.pub beside it).
        plain = keys["user"].parent / "plain"
        plain.mkdir()
        shutil.copy(keys["user"], plain / "user")
        assert denied(ssh(server, plain / "user", "true"))


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_certificates_of_other_key_types(keys: dict[str, Path], tmp_path: Path,
                                         key_type: str) -> None:
    """RSA (rsa-sha2-512-cert-v01) and ECDSA user certificates log in too, signed by an
    Ed25519 CA, and an RSA CA's certificate for an Ed25519 key."""
    user = tmp_path / f"user_{key_type}"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(user)],
                   check=True, timeout=TIMEOUT, capture_output=True)
    cert = sign(keys["ca"], user, "alice")
    rsa_ca = tmp_path / f"rsa_ca_{key_type}"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f",
                    str(rsa_ca)], check=True, timeout=TIMEOUT, capture_output=True)
    ed_cert = sign(rsa_ca, keys["user"], "alice")
    with DemoServer(trusted_user_ca_keys=[line(keys["ca"]), line(rsa_ca)]) as server:
        result = ssh(server, user, "echo typed", cert=cert)
        assert (result.returncode, result.stdout) == (0, "typed\n"), result.stderr
        result = ssh(server, keys["user"], "echo rsa-ca", cert=ed_cert)
        assert (result.returncode, result.stdout) == (0, "rsa-ca\n"), result.stderr


@pytest.mark.parametrize(("case", "reason"), [
    ("wrong principal", "user 'alice' is not a certificate principal (bob)"),
    ("expired", "certificate expired"),
    ("not yet valid", "certificate not yet valid"),
    ("another CA", "certificate signed by an unknown CA"),
    ("no principals", "certificate lacks a principal list"),
    ("source address", "source-address 127.0.0.2/32 does not include 127.0.0.1"),
])
def test_certificates_that_must_fail(keys: dict[str, Path], case: str, reason: str) -> None:
    """Each of these certificates is refused, and the reason is logged."""
    ca, user = keys["ca"], keys["user"]
    cert = {
        "wrong principal": lambda: sign(ca, user, "bob"),
        "expired": lambda: sign(ca, user, "alice", validity="20200101:20200102"),
        "not yet valid": lambda: sign(ca, user, "alice", validity="20990101:21000101"),
        "another CA": lambda: sign(keys["other_ca"], user, "alice"),
        "no principals": lambda: sign(ca, user, ""),
        "source address": lambda: sign(ca, user, "alice", "-O",
                                       f"source-address={OTHER_LOOPBACK}/32"),
    }[case]()
    with cert_server(keys) as server:
        assert denied(ssh(server, user, "true", cert=cert))
        refusals = log_of(server, "auth_key_refused")
        assert refusals and all(reason in r for r in refusals), refusals


def test_certificate_source_address_admits_the_listed_address(keys: dict[str, Path]) -> None:
    """``source-address`` admits a client bound to the listed address."""
    cert = sign(keys["ca"], keys["user"], "alice", "-O", f"source-address={OTHER_LOOPBACK}/32")
    with cert_server(keys) as server:
        result = ssh(server, keys["user"], "echo in", cert=cert, opts=("-b", OTHER_LOOPBACK))
        assert (result.returncode, result.stdout) == (0, "in\n")


def test_certificate_force_command(keys: dict[str, Path]) -> None:
    """The certificate's ``force-command`` runs instead of the client's command."""
    cert = sign(keys["ca"], keys["user"], "alice", "-O",
                "force-command=echo forced $SSH_ORIGINAL_COMMAND")
    with cert_server(keys) as server:
        result = ssh(server, keys["user"], "echo asked", cert=cert)
        assert (result.returncode, result.stdout) == (0, "forced echo asked\n")


def test_certificate_without_permit_pty(keys: dict[str, Path]) -> None:
    """A certificate signed with ``-O no-pty`` (no ``permit-pty`` extension) gets no pty."""
    cert = sign(keys["ca"], keys["user"], "alice", "-O", "no-pty")
    with cert_server(keys) as server:
        assert pty_refused(ssh(server, keys["user"], "tty", cert=cert, opts=("-tt",)))


def test_cert_authority_line_with_principals(keys: dict[str, Path]) -> None:
    """A ``cert-authority,principals="admins"`` line (for alice only) admits a certificate
    naming ``admins`` as alice, not one naming only ``alice``, and never the CA key."""
    ca, user = keys["ca"], keys["user"]
    admins = sign(ca, user, "admins")
    with DemoServer(authorized_keys={
            "alice": [line(ca, 'cert-authority,principals="admins"')]}) as server:
        assert ssh(server, user, "echo admin", cert=admins).stdout == "admin\n"
        assert denied(ssh(server, user, "true", cert=admins, user="bob"))
        assert denied(ssh(server, ca, "true"))
    alice_only = sign(ca, user, "alice")
    with DemoServer(authorized_keys={
            "alice": [line(ca, 'cert-authority,principals="admins"')]}) as server:
        assert denied(ssh(server, user, "true", cert=alice_only))
        assert any('principals="admins"' in r for r in log_of(server, "auth_key_refused"))


def test_certificate_from_asyncssh(keys: dict[str, Path]) -> None:
    """asyncssh logs in with a user key and its certificate."""
    cert = sign(keys["ca"], keys["user"], "alice")

    async def main(server: DemoServer) -> str:
        key = asyncssh.read_private_key(str(keys["user"]))
        certificate = asyncssh.read_certificate(str(cert))
        options = server.asyncssh_kwargs("alice")
        options["client_keys"] = [(key, certificate)]
        async with asyncssh.connect(**options) as conn:
            result = await conn.run("echo async", check=True)
            return str(result.stdout)

    with cert_server(keys) as server:
        assert asyncio.run(asyncio.wait_for(main(server), TIMEOUT)) == "async\n"


def test_certificate_from_paramiko(keys: dict[str, Path]) -> None:
    """paramiko logs in with a user key carrying its certificate (``load_certificate``)."""
    cert = sign(keys["ca"], keys["user"], "alice")
    key = paramiko.Ed25519Key.from_private_key_file(str(keys["user"]))
    key.load_certificate(str(cert))
    with cert_server(keys) as server, paramiko.SSHClient() as client:
        client.load_host_keys(server.known_hosts_path)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(**server.paramiko_kwargs("alice"), pkey=key, timeout=TIMEOUT)
        _, stdout, _ = client.exec_command("echo para", timeout=TIMEOUT)
        assert stdout.read() == b"para\n"


def test_cli_trusted_user_ca_keys(keys: dict[str, Path], tmp_path: Path) -> None:
    """``--trusted-user-ca-keys FILE`` enables certificate logins (and publickey auth); a CA
    file with options is refused at start."""
    from test_demo_cli import running_cli

    sign(keys["ca"], keys["user"], "alice")  # user-cert.pub, which ssh loads beside the key
    with running_cli("--trusted-user-ca-keys", f"{keys['ca']}.pub") as (_, ready):
        assert ready["auth_methods"] == ["publickey"]
        result = cli_ssh(ready["port"], keys["user"], "alice", "echo cli")
        assert (result.returncode, result.stdout) == (0, "cli\n")
        assert denied(cli_ssh(ready["port"], keys["user"], "bob", "true"))
    bad = tmp_path / "cas"
    bad.write_text(line(keys["ca"], "no-pty") + "\n")
    refused = run_cli("--trusted-user-ca-keys", str(bad))
    assert refused.returncode == 1 and "line 1: key options are not enforced" in refused.stderr


# ---- host certificates --------------------------------------------------------------------
def test_host_certificate_is_refused_clearly(keys: dict[str, Path], tmp_path: Path) -> None:
    """No libssh release can present a host certificate: ``hostkey_cert`` /
    ``--hostkey-cert`` fail at start saying so; a user certificate there is named as the
    wrong kind."""
    host = keygen(tmp_path / "host")
    subprocess.run(["ssh-keygen", "-q", "-s", str(keys["ca"]), "-h", "-I", "host",
                    "-n", "127.0.0.1", f"{host}.pub"], check=True, timeout=TIMEOUT)
    host_cert = tmp_path / "host-cert.pub"
    with pytest.raises(ValueError, match="host certificates are not supported by libssh"):
        DemoServer(password="pw", host_key=host, hostkey_cert=host_cert)
    user_cert = sign(keys["ca"], keys["user"], "alice")
    with pytest.raises(ValueError, match="is not an OpenSSH host certificate"):
        DemoServer(password="pw", host_key=host, hostkey_cert=user_cert)
    result = run_cli("--password", "pw", "--hostkey", str(host), "--hostkey-cert",
                     str(host_cert))
    assert (result.returncode, result.stdout) == (1, "")
    assert "host certificates are not supported by libssh" in result.stderr


def test_without_cryptography_certificates_name_the_extra(
        keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without cryptography, configuring certificates is one clear error naming the extra;
    plain keys need no cryptography, also when the client offers a certificate first."""
    import builtins

    cert = sign(keys["ca"], keys["user"], "alice")

    real_import = builtins.__import__

    def no_cryptography(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("cryptography"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cryptography)
    with pytest.raises(ValueError, match=r"pip install 'pylibssh_server\[certs\]'"):
        DemoServer(trusted_user_ca_keys=f"{keys['ca']}.pub")
    with DemoServer(authorized_keys=[line(keys["user"], "no-pty")]) as server:
        result = ssh(server, keys["user"], "echo plain", cert=cert)
        assert (result.returncode, result.stdout) == (0, "plain\n")
        assert log_of(server, "auth_key_refused") == []
        assert [c.error for c in server.clients] == [None]
