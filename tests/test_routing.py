# SPDX-License-Identifier: MIT
"""``ServerCallbacks.on_auth_kbdint`` and ``on_channel_open_request_direct_tcpip`` on whatever
libssh runs: libssh >= 0.12 calls them from its server callbacks, older versions get them fed
from the message path (``pylibssh_server._trampolines``).  Every test here passes on both, with the
same client-visible replies, the same ``Session`` bookkeeping, the fail-closed protocol for a
raising hook, and a user message callback that sees every other message but never these.
"""

from __future__ import annotations

from typing import Any

import paramiko
import pytest
from conftest import Loopback

from pylibssh_server import (
    AuthMethod,
    AuthStatus,
    ChannelCallbacks,
    ChannelType,
    RequestType,
    ServerCallbacks,
    Session,
    SshChannel,
    SshMessage,
)

#: The two keyboard-interactive rounds the kbdint hooks below ask (prompt, echo), and the
#: answers they accept.
ROUNDS = [[("Password: ", False), ("Token: ", True)], [("Retype password: ", False)]]
ANSWERS = [["pw", "123"], ["pw"]]
#: What the user's message callback sees first: the ``ssh-userauth`` service request (these
#: tests set no ``on_service_request``).
SERVICE = (RequestType.SERVICE, -1)


class HookFailure(Exception):
    """The exception our hooks raise; tests check type and message after the round trip."""


class Recorder:
    """A user message callback that records ``(type, subtype)`` of every message it sees and
    logs in a password ``pw`` itself (no ``on_auth_password`` hook)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def __call__(self, session: Session, msg: SshMessage, userdata: Any) -> bool:
        self.seen.append((msg.type, msg.subtype))
        if (msg.type, msg.subtype) == (RequestType.AUTH, AuthMethod.PASSWORD) and \
                msg.auth_password == "pw":
            msg.auth_reply_success()
            return True
        return False


class Kbdint:
    """An ``on_auth_kbdint`` hook asking ``rounds`` (default :data:`ROUNDS`); ``final`` is
    returned once every round got its ``answers``, DENIED on a wrong answer."""

    def __init__(self, final: AuthStatus = AuthStatus.SUCCESS,
                 rounds: list[list[tuple[str, bool]]] = ROUNDS,
                 answers: list[list[str]] = ANSWERS) -> None:
        self.final = final
        self.rounds = rounds
        self.answers = answers
        self.calls: list[tuple[bool, list[str], Any]] = []
        self.round = 0

    def __call__(self, session: Session, msg: SshMessage, userdata: Any) -> AuthStatus:
        response = msg.auth_kbdint_is_response
        answers = session.kbdint_answers() if response else []
        self.calls.append((response, answers, userdata))
        if response:
            if answers != self.answers[self.round]:
                return AuthStatus.DENIED
            self.round += 1
            if self.round == len(self.rounds):
                return self.final
        prompts = self.rounds[self.round]
        msg.auth_interactive_request("demo", "answer please", [p for p, _ in prompts],
                                     [e for _, e in prompts])
        return AuthStatus.INFO


def answer(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
    """A paramiko kbdint handler giving :data:`ANSWERS` by prompt text."""
    by_prompt = {"Password: ": "pw", "Token: ": "123", "Retype password: ": "pw"}
    return [by_prompt[prompt] for prompt, _ in prompts]


# ---- keyboard-interactive -----------------------------------------------------------------


def test_kbdint_hook_rounds_and_bookkeeping(loopback: Loopback) -> None:
    """Two INFO rounds then SUCCESS log a paramiko client in; the hook sees the initial request
    and both responses with their answers.  As libssh 0.12's trampoline does, Session counts
    each kbdint message as an attempt, under the user of the last attempt (a failed password
    here).  The user's message callback sees the service requests but no kbdint message."""
    hook = Kbdint()
    recorder = Recorder()
    transport = loopback.paramiko()
    session = loopback.accept(
        ServerCallbacks(on_auth_kbdint=hook, on_auth_password=lambda *args: False,
                        userdata="ud"),
        AuthMethod.INTERACTIVE | AuthMethod.PASSWORD, recorder)
    with pytest.raises(paramiko.AuthenticationException):
        loopback.wait_done(loopback.submit(transport.auth_password, "carol", "wrong"))
    assert (session.user, session.auth_attempts) == ("carol", 1)
    remaining = loopback.wait_done(loopback.submit(transport.auth_interactive, "carol", answer))
    assert remaining == []
    assert transport.is_authenticated() is True
    assert hook.calls == [(False, [], "ud"), (True, ["pw", "123"], "ud"), (True, ["pw"], "ud")]
    assert recorder.seen == [SERVICE, SERVICE]
    assert (session.authenticated, session.user, session.auth_attempts) == (True, "carol", 4)


def test_kbdint_partial_success_lists_the_session_methods(loopback: Loopback) -> None:
    """PARTIAL answers a partial success listing the session's auth methods (what the hook set
    with ``set_auth_methods``); the client then logs in with a password.  No user message
    callback: the session installs its own, also after ``set_message_callback(None)``."""
    def on_password(sess: Session, user: str, password: str, userdata: Any) -> bool:
        return password == "pw"

    hook = Kbdint(final=AuthStatus.PARTIAL)

    def on_kbdint(sess: Session, msg: SshMessage, userdata: Any) -> AuthStatus:
        status = hook(sess, msg, userdata)
        if status == AuthStatus.PARTIAL:
            sess.set_auth_methods(AuthMethod.PASSWORD)
        return status

    transport = loopback.paramiko()
    session = loopback.accept(ServerCallbacks(on_auth_kbdint=on_kbdint,
                                              on_auth_password=on_password),
                              AuthMethod.INTERACTIVE)
    session.set_message_callback(None)
    remaining = loopback.wait_done(loopback.submit(transport.auth_interactive, "dave", answer))
    assert remaining == ["password"]
    assert (transport.is_authenticated(), session.authenticated) == (False, False)
    loopback.wait_done(loopback.submit(transport.auth_password, "dave", "pw"))
    assert (transport.is_authenticated(), session.authenticated) == (True, True)
    assert [response for response, _, _ in hook.calls] == [False, True, True]


def test_kbdint_denied_lists_the_session_methods_openssh(loopback: Loopback) -> None:
    """A DENIED kbdint answer is libssh's default reply: USERAUTH_FAILURE listing the
    session's methods, which OpenSSH prints; the session is not authenticated."""
    hook = Kbdint(rounds=[[("Password: ", False)]], answers=[["pw"]])
    proc = loopback.ssh("-o", "PreferredAuthentications=keyboard-interactive",
                        "-o", "NumberOfPasswordPrompts=1", "erin@127.0.0.1", "true",
                        prefix=("sshpass", "-p", "wrong"))
    session = loopback.accept(ServerCallbacks(on_auth_kbdint=hook),
                              AuthMethod.INTERACTIVE | AuthMethod.PASSWORD)
    _, stderr = loopback.wait_exit(proc)
    assert proc.returncode == 255
    assert "Permission denied (keyboard-interactive,password)." in stderr
    assert hook.calls == [(False, [], None), (True, ["wrong"], None)]
    assert session.authenticated is False


def test_raising_kbdint_hook_denies(loopback: Loopback) -> None:
    """A kbdint hook that raises denies (paramiko gets an authentication failure), and dopoll
    re-raises the hook's exception with its type and message."""
    def on_kbdint(sess: Session, msg: SshMessage, userdata: Any) -> AuthStatus:
        raise HookFailure(f"kbdint hook failed, response={msg.auth_kbdint_is_response}")

    recorder = Recorder()
    transport = loopback.paramiko()
    session = loopback.accept(ServerCallbacks(on_auth_kbdint=on_kbdint),
                              AuthMethod.INTERACTIVE, recorder)
    future = loopback.submit(transport.auth_interactive, "frank", answer)
    with pytest.raises(HookFailure) as info:
        loopback.poll_until(future.done)
    assert str(info.value) == "kbdint hook failed, response=False"
    with pytest.raises(paramiko.AuthenticationException) as denied:
        loopback.wait_done(future)
    assert type(denied.value) is paramiko.AuthenticationException
    assert (session.authenticated, transport.is_authenticated()) == (False, False)
    assert recorder.seen == [SERVICE]


# ---- direct-tcpip -------------------------------------------------------------------------


def login_with_message_callback(loopback: Loopback, callbacks: ServerCallbacks,
                                recorder: Recorder) -> tuple[paramiko.Transport, Session]:
    """Connect paramiko and log in with password "pw" through ``recorder``."""
    transport = loopback.paramiko()
    session = loopback.accept(callbacks, AuthMethod.PASSWORD, recorder)
    loopback.wait_done(loopback.submit(transport.auth_password, "user", "pw"))
    assert session.authenticated is True
    return transport, session


def test_direct_tcpip_hook_channel_is_confirmed(loopback: Loopback) -> None:
    """The hook gets destination and originator as str/int and its userdata; the channel it
    returns is confirmed and carries data both ways.  The user's message callback sees the
    session channel open (no hook for it) but not the direct-tcpip open."""
    calls: list[tuple[str, int, str, int, Any]] = []
    received: list[bytes] = []

    def on_data(sess: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                userdata: Any) -> None:
        received.append(data)
        channel.write(data.upper())

    def on_direct(sess: Session, host: str, port: int, orig_host: str, orig_port: int,
                  userdata: Any) -> SshChannel:
        calls.append((host, port, orig_host, orig_port, userdata))
        channel = SshChannel(sess)
        channel.set_callbacks(ChannelCallbacks(on_data=on_data))
        return channel

    recorder = Recorder()
    transport, _ = login_with_message_callback(
        loopback, ServerCallbacks(on_channel_open_request_direct_tcpip=on_direct, userdata=7),
        recorder)
    with pytest.raises(paramiko.ChannelException):
        loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    channel = loopback.wait_done(loopback.submit(
        transport.open_channel, "direct-tcpip", ("target.test", 8080), ("127.0.0.1", 40000),
        timeout=10))
    channel.sendall(b"ping")
    reply = loopback.wait_done(loopback.submit(channel.recv, 4))
    assert calls == [("target.test", 8080, "127.0.0.1", 40000, 7)]
    assert (received, reply) == ([b"ping"], b"PING")
    assert recorder.seen == [SERVICE, (RequestType.AUTH, AuthMethod.PASSWORD),
                                       (RequestType.CHANNEL_OPEN, ChannelType.SESSION)]
    channel.close()


def test_direct_tcpip_hook_none_refuses(loopback: Loopback) -> None:
    """A hook returning None refuses with libssh's default reply: OPEN_FAILURE,
    administratively prohibited."""
    def on_direct(sess: Session, host: str, port: int, orig_host: str, orig_port: int,
                  userdata: Any) -> None:
        return None

    recorder = Recorder()
    transport, _ = login_with_message_callback(
        loopback, ServerCallbacks(on_channel_open_request_direct_tcpip=on_direct), recorder)
    with pytest.raises(paramiko.ChannelException) as refused:
        loopback.wait_done(loopback.submit(
            transport.open_channel, "direct-tcpip", ("target.test", 22), ("127.0.0.1", 1),
            timeout=10))
    assert refused.value.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    assert recorder.seen == [SERVICE, (RequestType.AUTH, AuthMethod.PASSWORD)]


def test_raising_direct_tcpip_hook_refuses(loopback: Loopback) -> None:
    """A direct-tcpip hook that raises refuses the open (the channel it made is not
    confirmed), and dopoll re-raises its exception with type and message."""
    made: list[SshChannel] = []

    def on_direct(sess: Session, host: str, port: int, orig_host: str, orig_port: int,
                  userdata: Any) -> SshChannel:
        made.append(SshChannel(sess))
        raise HookFailure(f"no forward to {host}:{port}")

    recorder = Recorder()
    transport, _ = login_with_message_callback(
        loopback, ServerCallbacks(on_channel_open_request_direct_tcpip=on_direct), recorder)
    future = loopback.submit(transport.open_channel, "direct-tcpip", ("target.test", 443),
                             ("127.0.0.1", 2), timeout=10)
    with pytest.raises(HookFailure) as info:
        loopback.poll_until(future.done)
    assert str(info.value) == "no forward to target.test:443"
    with pytest.raises(paramiko.ChannelException) as refused:
        loopback.wait_done(future)
    assert refused.value.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    assert (len(made), made[0].is_open) == (1, False)
    assert recorder.seen == [SERVICE, (RequestType.AUTH, AuthMethod.PASSWORD)]
    made[0].close()
