# SPDX-License-Identifier: MIT
"""Callbacks: hook arguments, and the fail-closed protocol (a hook that raises makes libssh
refuse, and its exception comes out of the driving call with its type and message).

Clients are paramiko (in-process, on a client thread) and OpenSSH ``ssh`` (subprocess); the
server session is driven by the test thread, so ``pytest.raises`` catches what ``dopoll``
re-raises.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest
from conftest import Loopback

from pylibssh_server import (
    AuthMethod,
    AuthStatus,
    ChannelCallbacks,
    ChannelType,
    PublicKeyState,
    RequestType,
    ServerCallbacks,
    Session,
    SessionEvent,
    SshChannel,
    SshKey,
    SshMessage,
)


class HookFailure(Exception):
    """The exception our hooks raise; tests check type and message after the round trip."""


def accept_password(sess: Session, user: str, password: str, userdata: Any) -> AuthStatus:
    return AuthStatus.SUCCESS if password == "pw" else AuthStatus.DENIED


def exec_echo(sess: Session, channel: SshChannel, command: str, userdata: Any) -> bool:
    """An exec hook that answers ``out: <command>`` with exit status 0 and closes."""
    channel.write(f"out: {command}\n".encode())
    channel.send_exit_status(0)
    channel.send_eof()
    channel.close()
    return True


def open_with(**channel_hooks: Any) -> Callable[[Session, Any], SshChannel]:
    """An ``on_channel_open_request_session`` hook giving channels with ``channel_hooks``."""
    def on_open(sess: Session, userdata: Any) -> SshChannel:
        channel = SshChannel(sess)
        channel.set_callbacks(ChannelCallbacks(**channel_hooks))
        return channel
    return on_open


def poll_collecting(pair: Loopback, until: Callable[[], bool],
                    timeout: float = 10.0) -> list[BaseException]:
    """Poll until ``until()``, collecting what each dopoll raises instead of stopping."""
    assert pair.event is not None
    errors: list[BaseException] = []
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        try:
            pair.event.dopoll(0.05)
        except Exception as exc:  # the test inspects them
            errors.append(exc)
    return errors


# ---- authentication -----------------------------------------------------------------------


def test_raising_password_hook_denies_paramiko(loopback: Loopback) -> None:
    """A password hook that raises DENIES (cffi's default 0 would mean success): the client
    gets an authentication failure, and dopoll re-raises the hook's exception."""
    def on_password(sess: Session, user: str, password: str, userdata: Any) -> AuthStatus:
        raise HookFailure(f"password hook failed for {user}/{password}")

    transport = loopback.paramiko()
    session = loopback.accept(ServerCallbacks(on_auth_password=on_password))
    future = loopback.submit(transport.auth_password, "alice", "pw")
    with pytest.raises(HookFailure) as info:
        loopback.poll_until(future.done)
    assert str(info.value) == "password hook failed for alice/pw"
    with pytest.raises(paramiko.AuthenticationException) as denied:
        loopback.wait_done(future)
    assert type(denied.value) is paramiko.AuthenticationException
    assert (session.authenticated, session.user, session.auth_attempts) == (False, "alice", 1)
    assert transport.is_authenticated() is False


def test_raising_password_hook_denies_openssh(loopback: Loopback) -> None:
    """Same with the OpenSSH client: ``Permission denied``, exit status 255, and one
    exception per attempt from dopoll."""
    def on_password(sess: Session, user: str, password: str, userdata: Any) -> AuthStatus:
        raise HookFailure(f"no password for {user}")

    proc = loopback.ssh("-o", "NumberOfPasswordPrompts=1", "bob@127.0.0.1", "true",
                        prefix=("sshpass", "-p", "pw"))
    session = loopback.accept(ServerCallbacks(on_auth_password=on_password))
    errors = poll_collecting(loopback, lambda: proc.poll() is not None)
    _, stderr = proc.communicate(timeout=5)
    assert [(type(e), str(e)) for e in errors] == [(HookFailure, "no password for bob")]
    assert proc.returncode == 255
    assert "Permission denied (password)" in stderr
    assert session.authenticated is False


def test_password_hook_arguments_and_results(loopback: Loopback) -> None:
    """The password hook gets user and password as str (UTF-8) and its userdata; True or
    AuthStatus.SUCCESS log in, False or DENIED refuse."""
    calls: list[tuple[str, str, Any]] = []
    results = iter([False, AuthStatus.DENIED, True])

    def on_password(sess: Session, user: str, password: str, userdata: Any) -> Any:
        calls.append((user, password, userdata))
        return next(results)

    transport = loopback.paramiko()
    session = loopback.accept(ServerCallbacks(on_auth_password=on_password, userdata="ud"))
    for password in ("first", "sécond"):
        with pytest.raises(paramiko.AuthenticationException):
            loopback.wait_done(loopback.submit(transport.auth_password, "üser", password))
    loopback.wait_done(loopback.submit(transport.auth_password, "üser", "third"))
    assert calls == [("üser", "first", "ud"), ("üser", "sécond", "ud"), ("üser", "third", "ud")]
    assert (session.authenticated, session.user, transport.is_authenticated()) == (
        True, "üser", True)


def test_pubkey_hook_states_and_borrowed_key(loopback: Loopback, tmp_path: Path) -> None:
    """OpenSSH probes first (PublicKeyState.NONE) then signs (VALID); both calls get the
    client's key as a borrowed SshKey that is invalid once the hook returns."""
    calls: list[tuple[str, PublicKeyState, bool, bool]] = []
    borrowed: list[SshKey] = []
    with SshKey.generate() as user_key:
        key_path = tmp_path / "id_ed25519"
        user_key.to_private_file(key_path)

        def on_pubkey(sess: Session, user: str, key: SshKey, state: PublicKeyState,
                      userdata: Any) -> AuthStatus:
            calls.append((user, state, key == user_key, key.owning))
            borrowed.append(key)
            return AuthStatus.SUCCESS

        proc = loopback.ssh("-i", str(key_path), "-o", "IdentitiesOnly=yes",
                            "-o", "PreferredAuthentications=publickey", "carol@127.0.0.1",
                            "whoami")
        session = loopback.accept(
            ServerCallbacks(on_auth_pubkey=on_pubkey,
                            on_channel_open_request_session=open_with(
                                on_exec_request=exec_echo)),
            auth_methods=AuthMethod.PUBLICKEY)
        stdout, stderr = loopback.wait_exit(proc)
    assert (proc.returncode, stdout, stderr) == (0, "out: whoami\n", "")
    assert calls == [("carol", PublicKeyState.NONE, True, False),
                     ("carol", PublicKeyState.VALID, True, False)]
    assert (session.authenticated, session.user) == (True, "carol")
    for key in borrowed:
        with pytest.raises(ValueError, match="SshKey is closed"):
            key.fingerprint()
        with pytest.raises(ValueError, match="cannot close a borrowed SshKey"):
            key.close()


def test_raising_pubkey_hook_denies(loopback: Loopback, tmp_path: Path) -> None:
    """A public-key hook that raises denies the key (already at the probe): OpenSSH gets
    ``Permission denied`` and dopoll re-raised the exception once."""
    def on_pubkey(sess: Session, user: str, key: SshKey, state: PublicKeyState,
                  userdata: Any) -> AuthStatus:
        raise HookFailure(f"pubkey hook failed in state {state.name}")

    with SshKey.generate() as user_key:
        key_path = tmp_path / "id_ed25519"
        user_key.to_private_file(key_path)  # OpenSSH format: ssh probes before signing
        proc = loopback.ssh("-i", str(key_path), "-o", "IdentitiesOnly=yes",
                            "-o", "PreferredAuthentications=publickey", "dave@127.0.0.1",
                            "true")
        session = loopback.accept(ServerCallbacks(on_auth_pubkey=on_pubkey),
                                  auth_methods=AuthMethod.PUBLICKEY)
        errors = poll_collecting(loopback, lambda: proc.poll() is not None)
        _, stderr = proc.communicate(timeout=5)
    assert [(type(e), str(e)) for e in errors] == [
        (HookFailure, "pubkey hook failed in state NONE")]
    assert (proc.returncode, session.authenticated) == (255, False)
    assert "Permission denied (publickey)" in stderr


def test_pubkey_key_copy_outlives_the_hook(loopback: Loopback) -> None:
    """``key.copy()`` inside the hook keeps an owned key after the callback (paramiko signs
    at once: one call in state VALID)."""
    copies: list[SshKey] = []

    def on_pubkey(sess: Session, user: str, key: SshKey, state: PublicKeyState,
                  userdata: Any) -> AuthStatus:
        copies.append(key.copy())
        return AuthStatus.SUCCESS if state == PublicKeyState.VALID else AuthStatus.DENIED

    transport = loopback.paramiko()
    loopback.accept(ServerCallbacks(on_auth_pubkey=on_pubkey),
                    auth_methods=AuthMethod.PUBLICKEY)
    pkey = paramiko.ECDSAKey.generate()
    loopback.wait_done(loopback.submit(transport.auth_publickey, "erin", pkey))
    try:
        assert [c.public_base64 for c in copies] == [pkey.get_base64()]
        assert [c.owning for c in copies] == [True]
    finally:
        for c in copies:
            c.close()


def test_raising_service_request_hook(loopback: Loopback) -> None:
    """A service-request hook that raises still ACCEPTS (a refusal makes libssh 0.10
    disconnect inside the dispatch), but its exception comes out of the driving call
    (handle_key_exchange or dopoll, whichever read the request); the login goes on."""
    services: list[str] = []

    def on_service(sess: Session, service: str, userdata: Any) -> bool:
        services.append(service)
        raise HookFailure(f"service {service} hook failed")

    proc = loopback.ssh("user@127.0.0.1", "id", prefix=("sshpass", "-p", "pw"))
    session = loopback.bind.accept(timeout=10)
    assert session is not None
    loopback.session = session
    session.set_server_callbacks(ServerCallbacks(
        on_service_request=on_service, on_auth_password=accept_password,
        on_channel_open_request_session=open_with(on_exec_request=exec_echo)))
    session.set_auth_methods(AuthMethod.PASSWORD)
    with pytest.raises(HookFailure, match=r"^service ssh-userauth hook failed$"):
        session.handle_key_exchange(timeout=10)
        loopback.event = SessionEvent(session)
        loopback.poll_until(lambda: False)
    if loopback.event is None:
        loopback.event = SessionEvent(session)
    stdout, _ = loopback.wait_exit(proc)
    assert (proc.returncode, stdout, services) == (0, "out: id\n", ["ssh-userauth"])


# ---- channels -----------------------------------------------------------------------------


def test_raising_channel_open_hook_refuses(loopback: Loopback) -> None:
    """An ``on_channel_open_request_session`` that raises refuses the channel (the client's
    open fails, administratively prohibited) and dopoll re-raises its exception; the session
    stays usable."""
    calls: list[int] = []

    def on_open(sess: Session, userdata: Any) -> SshChannel:
        calls.append(len(calls))
        if len(calls) == 1:
            raise HookFailure("no channel for you")
        return SshChannel(sess)

    transport = loopback.login(on_channel_open_request_session=on_open)
    future = loopback.submit(transport.open_session, timeout=10)
    with pytest.raises(HookFailure, match=r"^no channel for you$"):
        loopback.poll_until(future.done)
    with pytest.raises(paramiko.ChannelException) as refused:
        loopback.wait_done(future)
    assert refused.value.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    channel = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    assert (calls, channel.closed) == ([0, 1], False)


def test_channel_open_hook_wrong_return_type(loopback: Loopback) -> None:
    """A channel-open hook returning something other than SshChannel/None refuses the
    channel and dopoll raises TypeError naming the type."""
    transport = loopback.login(on_channel_open_request_session=lambda sess, ud: "channel")
    future = loopback.submit(transport.open_session, timeout=10)
    with pytest.raises(TypeError, match="must return SshChannel or None, not str"):
        loopback.poll_until(future.done)
    with pytest.raises(paramiko.ChannelException):
        loopback.wait_done(future)


REQUESTS: dict[str, Callable[[paramiko.Channel], Any]] = {
    "on_exec_request": lambda ch: ch.exec_command("rm -rf /"),
    "on_subsystem_request": lambda ch: ch.invoke_subsystem("sftp"),
    "on_shell_request": lambda ch: ch.invoke_shell(),
    "on_pty_request": lambda ch: ch.get_pty("vt100", 80, 24),
}


@pytest.mark.parametrize("hook", list(REQUESTS))
def test_raising_request_hook_refuses(loopback: Loopback, hook: str) -> None:
    """A channel-request hook (exec, subsystem, shell, pty) that raises refuses the request
    (the client's request fails) and dopoll re-raises the exception."""
    def failing(sess: Session, channel: SshChannel, *args: Any) -> bool:
        raise HookFailure(f"{hook} failed")

    transport = loopback.login(on_channel_open_request_session=open_with(**{hook: failing}))
    channel = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    future = loopback.submit(REQUESTS[hook], channel)
    with pytest.raises(HookFailure, match=f"^{hook} failed$"):
        loopback.poll_until(future.done)
    with pytest.raises(paramiko.SSHException, match="Channel closed"):
        loopback.wait_done(future)
    assert loopback.session is not None and loopback.session.is_connected is True


def test_raising_exec_hook_openssh(loopback: Loopback) -> None:
    """With OpenSSH, a raising exec hook makes ``ssh`` report the failed exec request and
    exit 255 instead of hanging."""
    def on_exec(sess: Session, channel: SshChannel, command: str, userdata: Any) -> bool:
        raise HookFailure(f"cannot run {command!r}")

    proc = loopback.ssh("user@127.0.0.1", "uptime", prefix=("sshpass", "-p", "pw"))
    loopback.accept(ServerCallbacks(on_auth_password=accept_password,
                                    on_channel_open_request_session=open_with(
                                        on_exec_request=on_exec)))
    errors = poll_collecting(loopback, lambda: proc.poll() is not None)
    _, stderr = proc.communicate(timeout=5)
    assert [(type(e), str(e)) for e in errors] == [(HookFailure, "cannot run 'uptime'")]
    assert proc.returncode == 255
    assert "exec request failed on channel 0" in stderr


def test_request_hook_arguments(loopback: Loopback) -> None:
    """pty, env, exec and subsystem hooks receive the client's values as str/int (UTF-8
    decoded), the channel they came on, and the ChannelCallbacks userdata."""
    seen: list[tuple[Any, ...]] = []

    def record(name: str, result: bool = True) -> Callable[..., bool]:
        def hook(sess: Session, channel: SshChannel, *args: Any) -> bool:
            *values, userdata = args
            seen.append((name, *values, userdata, channel in sess.channels))
            if name in ("exec", "subsystem"):
                channel.send_exit_status(0)
                channel.close()
            return result
        return hook

    def on_open(sess: Session, userdata: Any) -> SshChannel:
        channel = SshChannel(sess)
        channel.set_callbacks(ChannelCallbacks(
            on_pty_request=record("pty"), on_env_request=record("env"),
            on_exec_request=record("exec"), on_subsystem_request=record("subsystem"),
            userdata="chan-ud"))
        return channel

    transport = loopback.login(on_channel_open_request_session=on_open)
    first = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    loopback.wait_done(loopback.submit(first.get_pty, "xterm-256color", 132, 43, 640, 480))
    # paramiko sends env without want_reply; the exec reply orders it.
    first.set_environment_variable("GREETING", "grüße aus Köln")
    loopback.wait_done(loopback.submit(first.exec_command, "printf 'é %s' \"$HOME\""))
    assert loopback.wait_done(loopback.submit(first.recv_exit_status)) == 0
    second = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    loopback.wait_done(loopback.submit(second.invoke_subsystem, "my-subsystem@example.com"))
    assert loopback.wait_done(loopback.submit(second.recv_exit_status)) == 0
    assert seen == [
        ("pty", "xterm-256color", 132, 43, 640, 480, "chan-ud", True),
        ("env", "GREETING", "grüße aus Köln", "chan-ud", True),
        ("exec", "printf 'é %s' \"$HOME\"", "chan-ud", True),
        ("subsystem", "my-subsystem@example.com", "chan-ud", True),
    ]


def test_raising_data_hook_closes_channel(loopback: Loopback) -> None:
    """A data hook that raises closes the channel after the poll (nothing consumed) and
    dopoll re-raises the exception; the client sees its channel closed."""
    def on_data(sess: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                userdata: Any) -> int:
        raise HookFailure(f"cannot take {data!r}")

    def on_shell(sess: Session, channel: SshChannel, userdata: Any) -> bool:
        return True

    transport = loopback.login(on_channel_open_request_session=open_with(
        on_data=on_data, on_shell_request=on_shell))
    channel = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    loopback.wait_done(loopback.submit(channel.invoke_shell))
    channel.sendall(b"hello")
    with pytest.raises(HookFailure, match=r"^cannot take b'hello'$"):
        loopback.poll_until(lambda: False, timeout=5)
    assert loopback.session is not None
    server_channels = loopback.session._channels
    assert [c.closed for c in server_channels] == [True]
    loopback.poll_until(lambda: channel.closed)
    assert channel.closed is True


def test_data_hook_partial_consumption(loopback: Loopback) -> None:
    """A data hook returns how many bytes it consumed; the rest is delivered again with
    the next data."""
    chunks: list[bytes] = []

    def on_data(sess: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                userdata: Any) -> int:
        chunks.append(data)
        return 2 if len(chunks) == 1 else len(data)

    transport = loopback.login(on_channel_open_request_session=open_with(
        on_data=on_data, on_shell_request=lambda sess, ch, ud: True))
    channel = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    loopback.wait_done(loopback.submit(channel.invoke_shell))
    channel.sendall(b"abcd")
    loopback.poll_until(lambda: len(chunks) >= 1)
    channel.sendall(b"ef")
    loopback.poll_until(lambda: len(chunks) >= 2)
    assert chunks == [b"abcd", b"cdef"]


# ---- message callback ---------------------------------------------------------------------


def test_raising_message_callback_gives_default_reply(loopback: Loopback) -> None:
    """A message callback that raises lets libssh send its default (negative) reply: the
    channel open fails; dopoll re-raises; the borrowed SshMessage is invalid afterwards."""
    kept: list[SshMessage] = []
    seen: list[tuple[int, int]] = []

    def on_message(sess: Session, msg: SshMessage, userdata: Any) -> bool:
        kept.append(msg)
        seen.append((msg.type, msg.subtype))
        if msg.type == RequestType.AUTH and msg.subtype == AuthMethod.PASSWORD:
            msg.auth_reply_success()
            return True
        if msg.type == RequestType.CHANNEL_OPEN:
            raise HookFailure(f"open of type {ChannelType(msg.subtype).name} failed")
        return False

    transport = loopback.paramiko()
    session = loopback.accept(message_callback=on_message)
    loopback.wait_done(loopback.submit(transport.auth_password, "user", "pw"))
    assert session.authenticated is True
    future = loopback.submit(transport.open_session, timeout=10)
    with pytest.raises(HookFailure, match=r"^open of type SESSION failed$"):
        loopback.poll_until(future.done)
    with pytest.raises(paramiko.ChannelException) as refused:
        loopback.wait_done(future)
    assert refused.value.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    assert seen[-1] == (RequestType.CHANNEL_OPEN, ChannelType.SESSION)
    with pytest.raises(ValueError, match="SshMessage is closed"):
        kept[-1].type  # noqa: B018 - the access itself is the test


def test_message_callback_false_gives_default_reply(loopback: Loopback) -> None:
    """A message callback returning False (or None) also gets the default reply: here a
    password login is refused without any server callbacks."""
    seen: list[tuple[int, int, str | None]] = []

    def on_message(sess: Session, msg: SshMessage, userdata: Any) -> bool:
        seen.append((msg.type, msg.subtype, msg.auth_user))
        return False

    transport = loopback.paramiko()
    loopback.accept(message_callback=on_message)
    with pytest.raises(paramiko.AuthenticationException):
        loopback.wait_done(loopback.submit(transport.auth_password, "frank", "pw"))
    assert (RequestType.AUTH, AuthMethod.PASSWORD, "frank") in seen


# ---- event fds and misuse -----------------------------------------------------------------


def test_raising_fd_handler_surfaces_from_dopoll(loopback: Loopback) -> None:
    """An exception in an ``add_fd`` handler comes out of dopoll; the fd stays registered."""
    loopback.paramiko()
    loopback.accept()
    event = loopback.event
    assert event is not None
    read_fd, write_fd = os.pipe()
    try:
        def handler(fd: int, revents: int) -> None:
            raise HookFailure(f"fd handler got {os.read(fd, 10)!r}")

        event.add_fd(read_fd, handler)
        os.write(write_fd, b"x")
        with pytest.raises(HookFailure, match=r"^fd handler got b'x'$"):
            loopback.poll_until(lambda: False, timeout=5)
        assert event.fds == [read_fd]
        event.remove_fd(read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_hook_validation() -> None:
    """Unknown hook names and non-callables are TypeErrors at construction."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'on_auth_passwd'"):
        ServerCallbacks(on_auth_passwd=accept_password)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="on_exec_request must be callable, not str"):
        ChannelCallbacks(on_exec_request="echo")


def test_newer_server_hooks_on_every_version() -> None:
    """The kbd-interactive and direct-tcpip server hooks (libssh 0.12 callbacks) can be set
    on every libssh version: before 0.12 they are fed from the message path instead of
    raising NotImplementedError (tests/test_routing.py drives them with real clients)."""
    kbdint = lambda sess, msg, ud: AuthStatus.DENIED  # noqa: E731
    direct = lambda sess, host, port, orig_host, orig_port, ud: None  # noqa: E731
    callbacks = ServerCallbacks(on_auth_kbdint=kbdint,
                                on_channel_open_request_direct_tcpip=direct)
    with Session() as session:
        session.set_server_callbacks(callbacks)
        assert session._server_callbacks is callbacks
    assert (callbacks.hooks["on_auth_kbdint"], callbacks.hooks[
        "on_channel_open_request_direct_tcpip"]) == (kbdint, direct)
