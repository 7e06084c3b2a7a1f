# SPDX-License-Identifier: MIT
"""The DemoServer keeps its contract where a newcomer with real clients found it did not:
authorized_keys options and cert-authority lines, processes a command leaves behind, signal
and forwarding requests, the CLI's stdout and exit codes, and ready client settings.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest
from conftest import SSH_OPTS, process_gone, stop_process, wait_for
from test_demo_cli import cli, keygen, read_ready_line, run_cli, running_cli
from test_demo_openssh import password_ssh as openssh_password_argv
from test_demo_openssh import run

from pylibssh_server import SshKey
from pylibssh_server.demo import DemoServer

TIMEOUT = 30


def key_ssh(port: int, identity: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ssh -i identity`` (public key only, batch mode) to 127.0.0.1:port."""
    argv = ["ssh", *SSH_OPTS, "-o", "BatchMode=yes", "-o", "PreferredAuthentications=publickey",
            "-o", "IdentitiesOnly=yes", "-i", str(identity), "-p", str(port), "u@127.0.0.1",
            *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def password_ssh(server: DemoServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run(openssh_password_argv(server, str(server.password), *args))


def arun(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


# ---- 1, 2: authorized_keys options and cert-authority ---------------------------------------
def test_cert_authority_key_itself_never_logs_in(tmp_path: Path) -> None:
    """A ``cert-authority`` line authorizes certificates, never the CA key: OpenSSH cannot
    log in with the CA's private key while a plain key on the next line works; with
    ignore_key_options the line is skipped (the CA key still cannot log in)."""
    ca, user = keygen(tmp_path / "ca"), keygen(tmp_path / "user")
    ca_pub = (tmp_path / "ca.pub").read_text().strip()
    path = tmp_path / "authorized_keys"
    path.write_text(f"cert-authority {ca_pub}\n{(tmp_path / 'user.pub').read_text()}")
    for ignore in (False, True):
        with DemoServer(authorized_keys=path, ignore_key_options=ignore) as server:
            assert len(server.authorized_keys) == 1
            refused = key_ssh(server.port, ca, "true")
            assert refused.returncode == 255
            assert "Permission denied" in refused.stderr
            allowed = key_ssh(server.port, user, "echo in")
            assert (allowed.returncode, allowed.stdout) == (0, "in\n")


def test_unsupported_key_options_are_refused_unless_ignored_on_purpose(tmp_path: Path) -> None:
    """A line with an option the DemoServer does not enforce (``tunnel=``) is refused (the
    error names it); with --ignore-key-options the CLI loads the key without any of its
    options, with a warning on stderr, so even its ``from=`` (another host) is not applied
    and OpenSSH logs in from loopback."""
    user = keygen(tmp_path / "user")
    path = tmp_path / "authorized_keys"
    path.write_text(f'from="10.9.8.7",tunnel="0" {(tmp_path / "user.pub").read_text()}')
    result = run_cli("--authorized-keys", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert "line 1: unsupported key options (tunnel)" in result.stderr
    assert "--ignore-key-options" in result.stderr
    with running_cli("--authorized-keys", str(path), "--ignore-key-options") as (proc, ready):
        logged_in = key_ssh(ready["port"], user, "echo in")
        assert (logged_in.returncode, logged_in.stdout) == (0, "in\n")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert "key options ignored, not enforced: from, tunnel" in err


# ---- 3: no process outlives its channel, client or server -----------------------------------
def _pids(text: str) -> list[int]:
    return [int(word) for word in text.split()]


def test_backgrounded_child_ends_with_the_command(demo_server: DemoServer) -> None:
    """``sleep & echo $!`` returns at once, and the backgrounded sleep is killed with the
    command's process group when the channel closes (OpenSSH client)."""
    result = password_ssh(demo_server, "sleep 1000 >/dev/null 2>&1 & echo $!")
    assert result.returncode == 0, result.stderr
    (pid,) = _pids(result.stdout)
    wait_for(lambda: process_gone(pid), 10, f"backgrounded sleep {pid} gone")


@pytest.mark.parametrize("how", ["client leaves", "server stops"])
def test_background_children_end_when_the_client_leaves_or_the_server_stops(
        demo_server_factory: Any, how: str) -> None:
    """A command still running with background children, one of which left the process group
    (``setpgid``): killing the OpenSSH client, or stopping the server, ends them all."""
    server = demo_server_factory(password="pw")
    script = ("sleep 1000 >/dev/null 2>&1 & echo $!; "
              f"{sys.executable} -c 'import os,time; os.setpgid(0, 0); print(os.getpid(), "
              "flush=True); time.sleep(1000)' & sleep 1000")
    argv = ["sshpass", "-p", "pw", "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
            "-p", str(server.port), "u@127.0.0.1", script]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, text=True)
    try:
        assert client.stdout is not None
        pids = [int(client.stdout.readline()), int(client.stdout.readline())]
        assert [process_gone(pid) for pid in pids] == [False, False]
        if how == "client leaves":
            client.kill()
        else:
            server.stop()
        wait_for(lambda: all(process_gone(pid) for pid in pids), 10, f"{pids} gone")
    finally:
        stop_process(client)


# ---- 4, 5: the CLI's stdout, exit codes and start-up checks ----------------------------------
def test_verbose_keeps_stdout_to_the_json_line() -> None:
    """With --verbose the JSON line is the first and only stdout line; the listening line and
    the event lines go to stderr."""
    proc = subprocess.Popen(cli("--password", "pw", "--verbose"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = read_ready_line(proc)
        argv = ["sshpass", "-p", "pw", "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
                "-p", str(ready["port"]), "u@127.0.0.1", "true"]
        assert subprocess.run(argv, timeout=TIMEOUT, capture_output=True).returncode == 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        stop_process(proc)
    assert (proc.returncode, out) == (0, "")
    assert "[demo-server] listening on" in err
    assert "channel_exec_request: \"'true'\"" in err


def test_bad_auth_value_is_a_usage_error() -> None:
    """An unknown --auth method is a bad argument: exit 2, argparse's message naming it."""
    result = run_cli("--auth", "password,bogus", "--password", "pw")
    assert (result.returncode, result.stdout) == (2, "")
    assert "unknown auth method 'bogus'" in result.stderr


def test_no_usable_way_in_refuses_to_start() -> None:
    """--auth hostbased (a method the DemoServer does not serve): exit 1 with one line."""
    result = run_cli("--auth", "hostbased")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("demo server: no usable authentication method")
    assert result.stderr.count("\n") == 1


def test_second_signal_during_shutdown_still_exits_0() -> None:
    """A second SIGINT while the server is stopping (a command that was given input gets
    time to finish) does not interrupt the clean stop: exit status 0."""
    proc = subprocess.Popen(cli("--password", "pw"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = read_ready_line(proc)
        transport = paramiko.Transport(("127.0.0.1", ready["port"]))
        try:
            transport.start_client(timeout=10)
            transport.auth_password("u", "pw")
            chan = transport.open_session(timeout=10)
            chan.exec_command("cat >/dev/null; sleep 1")
            chan.sendall(b"input\n")
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGTERM)
            proc.wait(TIMEOUT)
        finally:
            transport.close()
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        stop_process(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", [{"user": "pw"}, 1234, b"pw"])
def test_password_of_the_wrong_type_is_a_type_error(value: object) -> None:
    """``password=`` must be a str: anything else fails at construction, not at login."""
    with pytest.raises(TypeError, match="password must be str or NoneType"):
        DemoServer(password=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"port": "22"}, {"max_connections": 0},
                                     {"authorized_keys": [42]}, {"forward_allow": "all"}])
def test_other_arguments_are_checked_at_construction(options: dict[str, Any]) -> None:
    """A wrong type or an impossible limit is refused before anything starts."""
    with pytest.raises((TypeError, ValueError)):
        DemoServer(password="pw", **options)


# ---- 6: signal, agent and tcpip-forward requests ---------------------------------------------
def test_signal_reaches_the_command_and_requests_are_logged(demo_server: DemoServer,
                                                             tmp_path: Path) -> None:
    """asyncssh ``send_signal("TERM")`` reaches the command's process group (its trap runs)
    and is logged as ``channel_signal``; an agent-forwarding request is logged as
    ``channel_auth_agent_request``; a refused ``tcpip-forward`` as ``tcpip_forward`` with
    ``None`` for the port."""
    agent_sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_sock)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(agent_sock.exists, 10, "ssh-agent socket")

        async def scenario() -> tuple[str, int | None, type]:
            options = demo_server.asyncssh_kwargs()
            options["agent_path"] = str(agent_sock)
            async with asyncssh.connect(**options, agent_forwarding=True) as conn:
                proc = await conn.create_process(
                    "trap 'echo got TERM; exit 7' TERM; echo ready; "
                    "while :; do sleep 0.1; done")
                assert await asyncio.wait_for(proc.stdout.readline(), 10) == "ready\n"
                proc.send_signal("TERM")
                out = await asyncio.wait_for(proc.stdout.read(), 10)
                await proc.wait_closed()
                try:
                    await conn.forward_remote_port("0.0.0.0", 0, "127.0.0.1", 9)
                except asyncssh.ChannelListenError as exc:
                    refused: type = type(exc)
                else:
                    refused = type(None)
                return out, proc.exit_status, refused

        out, status, refused = arun(scenario())
    finally:
        stop_process(agent)
    assert (out, status) == ("got TERM\n", 7)
    assert refused is asyncssh.ChannelListenError
    log = demo_server.clients[0].callback_log
    assert log["channel_signal"] == ["TERM"]
    assert log["channel_auth_agent_request"] == [True]
    assert log["tcpip_forward"] == [("0.0.0.0", 0, None)]  # not loopback: refused


def test_signal_with_an_unknown_name_goes_nowhere(demo_server: DemoServer) -> None:
    """A signal name that is no signal is logged and dropped; the command is unaffected."""
    async def scenario() -> tuple[str, int | None]:
        async with asyncssh.connect(**demo_server.asyncssh_kwargs()) as conn:
            proc = await conn.create_process("read line; echo got $line")
            proc.send_signal("NOSUCH")
            proc.send_signal("kill")  # lower case is no RFC 4254 name
            proc.stdin.write("x\n")
            out = await asyncio.wait_for(proc.stdout.read(), 10)
            await proc.wait_closed()
            return out, proc.exit_status

    assert arun(scenario()) == ("got x\n", 0)
    assert demo_server.clients[0].callback_log["channel_signal"] == ["NOSUCH", "kill"]


# ---- 10: ready client settings ---------------------------------------------------------------
def test_ready_client_settings_check_the_real_host_key(demo_server: DemoServer) -> None:
    """``ssh_args()`` (StrictHostKeyChecking=yes against ``known_hosts_path``),
    ``paramiko_kwargs()`` with RejectPolicy, and ``asyncssh_kwargs()`` all log in and verify
    the server's real key; another server's key line makes the OpenSSH client refuse."""
    argv = ["sshpass", "-p", "foo", "ssh", "-o", "PubkeyAuthentication=no",
            *demo_server.ssh_args("alice"), "echo ok"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr

    client = paramiko.SSHClient()
    try:
        client.load_host_keys(demo_server.known_hosts_path)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(**demo_server.paramiko_kwargs("bob"), timeout=TIMEOUT)
        _, stdout, _ = client.exec_command("echo via paramiko")
        assert stdout.read() == b"via paramiko\n"
    finally:
        client.close()

    async def via_asyncssh() -> str:
        async with asyncssh.connect(**demo_server.asyncssh_kwargs("carol")) as conn:
            return str((await conn.run("echo via asyncssh", check=True)).stdout)

    assert arun(via_asyncssh()) == "via asyncssh\n"
    users = [entry[0] for entry in demo_server.clients[0].callback_log["auth_password"]]
    assert users == ["alice"]

    with DemoServer(password="foo") as other:
        wrong = other.known_hosts_line().replace(str(other.port), str(demo_server.port))
        Path(demo_server.known_hosts_path).write_text(wrong + "\n")
        refused = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    assert refused.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_known_hosts_line_and_repr(demo_server: DemoServer) -> None:
    """The known_hosts line names ``[host]:port`` and the public key; repr shows host, port,
    fingerprint and state; the known_hosts file goes away with close()."""
    key = demo_server.host_key
    assert demo_server.known_hosts_line() == (
        f"[127.0.0.1]:{demo_server.port} {key.type_name} {key.public_base64}")
    assert repr(demo_server) == (
        f"<DemoServer 127.0.0.1:{demo_server.port} {demo_server.fingerprint} running>")
    with DemoServer(password="x") as server:
        path = server.known_hosts_path
        assert Path(path).read_text() == server.known_hosts_line() + "\n"
    assert os.path.exists(path) is False
    assert repr(server).endswith(" stopped>")


def test_ready_line_carries_the_host_key() -> None:
    """The CLI's JSON line has the host public key and its known_hosts line."""
    with running_cli("--password", "pw") as (_, ready):
        key_type, blob = ready["host_key"].split()
        assert key_type == "ssh-ed25519"
        assert ready["known_hosts"] == f"[127.0.0.1]:{ready['port']} {key_type} {blob}"
        with SshKey.from_public_base64(blob, key_type) as key:
            assert key.fingerprint() == ready["fingerprint"]


@pytest.fixture(scope="module")
def shared_port(demo_server_session: DemoServer) -> Iterator[int]:
    yield demo_server_session.port


def test_session_fixture_is_shared(demo_server_session: DemoServer, shared_port: int) -> None:
    """``demo_server_session`` is one running server for the whole test session."""
    assert (demo_server_session.is_running, demo_server_session.port) == (True, shared_port)
    result = password_ssh(demo_server_session, "echo shared")
    assert (result.returncode, result.stdout) == (0, "shared\n")
