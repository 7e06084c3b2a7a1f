# SPDX-License-Identifier: MIT
"""Lifecycle of the owning classes (Bind, Session, SessionEvent, SshChannel; SshKey is in
test_keys.py): double close, use after close, context managers, closing from another thread
and from inside callbacks, and constructor errors."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest
from conftest import Loopback

from pylibssh_server import (
    POLLIN,
    Bind,
    ChannelCallbacks,
    LibSSHError,
    ServerCallbacks,
    Session,
    SessionEvent,
    SshChannel,
    SshKey,
    SshKeyError,
)


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    """Sleep-poll ``predicate`` for at most ``timeout`` seconds; return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(predicate())


def authenticated(pair: Loopback, **hooks: Any) -> tuple[paramiko.Transport, Session]:
    """``pair.login(**hooks)``, returning the client transport and the server session."""
    transport = pair.login(**hooks)
    assert pair.session is not None
    return transport, pair.session


def channel_recorder(channels: list[SshChannel], **channel_hooks: Any) -> Any:
    """An ``on_channel_open_request_session`` hook that records the channels it opens."""
    def on_open(sess: Session, userdata: Any) -> SshChannel:
        channel = SshChannel(sess)
        if channel_hooks:
            channel.set_callbacks(ChannelCallbacks(**channel_hooks))
        channels.append(channel)
        return channel
    return on_open


# ---- Bind ---------------------------------------------------------------------------------


def test_bind_ephemeral_port(host_key: SshKey) -> None:
    """port=0 picks a free port; ``bind.port`` is the real one and accepts connections."""
    with Bind(port=0, key=host_key) as bind:
        with socket.socket(fileno=os.dup(bind.fd)) as listener:
            assert listener.getsockname() == ("127.0.0.1", bind.port)
        assert bind.port != 0
        assert repr(bind) == f"<Bind open 127.0.0.1:{bind.port}>"
        with socket.create_connection(("127.0.0.1", bind.port), timeout=5):
            session = bind.accept(timeout=5)
            assert isinstance(session, Session)
            session.close()


def test_bind_close_idempotent_and_use_after_close(host_key: SshKey) -> None:
    """Bind.close() twice is fine; accept/fd/get_error then raise ValueError, and listen()
    returns at once without calling the handler."""
    bind = Bind(key=host_key)
    port = bind.port
    bind.close()
    bind.close()
    assert (bind.is_open, bind.closed, repr(bind)) == (False, True,
                                                      f"<Bind closed 127.0.0.1:{port}>")
    for use in (lambda: bind.accept(timeout=0), lambda: bind.fd, bind.get_error):
        with pytest.raises(ValueError, match="Bind is closed"):
            use()
    calls: list[Session] = []
    bind.listen(calls.append)
    assert calls == []


def test_bind_context_manager_frees_the_port(host_key: SshKey) -> None:
    """Leaving ``with Bind`` closes it, and the port can be bound again."""
    with Bind(key=host_key) as bind:
        port = bind.port
    assert bind.closed is True
    with Bind(port=port, key=host_key) as again:
        assert again.port == port


def test_bind_close_from_other_thread_during_listen(host_key: SshKey) -> None:
    """close() from another thread ends a blocked listen() in well under a second."""
    bind = Bind(key=host_key)
    thread = threading.Thread(target=bind.listen, args=(lambda session: None,))
    thread.start()
    time.sleep(0.2)  # let listen() block in its wait
    start = time.monotonic()
    bind.close()
    thread.join(5)
    elapsed = time.monotonic() - start
    assert (thread.is_alive(), bind.closed) == (False, True)
    assert elapsed < 1.0


def test_bind_close_from_other_thread_during_accept(host_key: SshKey) -> None:
    """close() from another thread makes a blocked accept(timeout=None) return None."""
    bind = Bind(key=host_key)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(bind.accept()))
    thread.start()
    time.sleep(0.2)
    bind.close()
    thread.join(5)
    assert (thread.is_alive(), result) == (False, [None])


def test_bind_accept_timeout(host_key: SshKey) -> None:
    """accept(timeout) returns None when nobody connects."""
    with Bind(key=host_key) as bind:
        start = time.monotonic()
        assert bind.accept(timeout=0.1) is None
        assert 0.05 < time.monotonic() - start < 2.0


def test_bind_port_in_use(host_key: SshKey) -> None:
    """A port already listened on gives OSError(EADDRINUSE) whose message says so."""
    with Bind(key=host_key) as first, pytest.raises(OSError) as info:
        Bind(port=first.port, key=host_key)
    assert info.value.errno == errno.EADDRINUSE
    assert f"cannot listen on 127.0.0.1:{first.port}: the port is already in use" in str(
        info.value)


def test_bind_needs_a_host_key() -> None:
    """Bind without hostkey or key is a ValueError (before any C call)."""
    with pytest.raises(ValueError, match="Bind needs a host key"):
        Bind()


def test_bind_bad_host_keys(host_key: SshKey, tmp_path: Path) -> None:
    """A missing host key file, a file that is no key, an encrypted key file and a public key
    each give a clear error naming the problem."""
    missing = tmp_path / "missing_key"
    with pytest.raises(ValueError, match=f"host key file not found: {missing}"):
        Bind(hostkey=missing)
    garbage = tmp_path / "garbage_key"
    garbage.write_text("this is not a key\n")
    with pytest.raises(SshKeyError, match=f"cannot load host key {garbage}: not a private "
                                          "key, or encrypted"):
        Bind(hostkey=garbage)
    with SshKey.generate("ecdsa") as key:
        encrypted = tmp_path / "encrypted_key"
        key.to_private_file(encrypted, passphrase="pw")
    with pytest.raises(SshKeyError, match=f"cannot load host key {encrypted}"):
        Bind(hostkey=encrypted)
    with host_key.public_key() as public, pytest.raises(ValueError,
                                                        match="must be a private key"):
        Bind(key=public)


def test_bind_hostkey_file(host_key: SshKey, tmp_path: Path, loopback: Loopback) -> None:
    """Bind(hostkey=path) serves that key: the client sees it in the key exchange."""
    path = tmp_path / "host_key"
    host_key.to_private_file(path)
    loopback.bind.close()
    loopback.bind = Bind(hostkey=path)
    transport = loopback.paramiko()
    loopback.accept()
    assert transport.get_remote_server_key().get_base64() == host_key.public_base64


def test_bind_invalid_ciphers(host_key: SshKey) -> None:
    """An invalid cipher list is a LibSSHError naming the option and the value."""
    with pytest.raises(LibSSHError) as info:
        Bind(key=host_key, ciphers="no-such-cipher")
    assert str(info.value).startswith(
        "ssh_bind_options_set(SSH_BIND_OPTIONS_CIPHERS_C_S) failed: invalid ciphers_c_s "
        "value 'no-such-cipher'")
    assert info.value.function == "ssh_bind_options_set"


def test_bind_unclosed_warns(host_key: SshKey) -> None:
    """A Bind garbage-collected while open emits ResourceWarning and is closed."""
    bind = Bind(key=host_key)
    with pytest.warns(ResourceWarning, match="unclosed Bind"):
        bind.__del__()
    assert bind.closed is True


# ---- Session ------------------------------------------------------------------------------


def test_session_close_idempotent_and_use_after_close() -> None:
    """Session.close() twice is fine; every later use raises ValueError."""
    session = Session()
    session.close()
    session.close()
    assert (session.closed, session.is_connected, repr(session)) == (
        True, False, "<Session closed peer=None user=None>")
    uses = (
        lambda: session.set_blocking(False), lambda: session.fd, lambda: session.status,
        lambda: session.handle_key_exchange(timeout=1), session.get_error,
        lambda: session.set_auth_methods(2), session.kbdint_answers,
        lambda: session.set_server_callbacks(ServerCallbacks()),
        lambda: session.set_message_callback(None), lambda: SessionEvent(session),
        lambda: SshChannel(session),
    )
    for use in uses:
        with pytest.raises(ValueError, match="Session is closed"):
            use()


def test_session_context_manager() -> None:
    """Leaving ``with Session()`` closes it."""
    with Session() as session:
        assert (session.closed, session.is_blocking) == (False, True)
    assert session.closed is True


def test_session_borrowed_cannot_be_closed() -> None:
    """A borrowed Session wrapper refuses close()."""
    with Session() as owner:
        borrowed = Session(owner._c, owning=False)
        with pytest.raises(ValueError, match="cannot close a borrowed Session"):
            borrowed.close()
        with borrowed:
            pass
        assert (borrowed.closed, owner.closed) == (False, False)


def test_session_unclosed_warns() -> None:
    """A Session garbage-collected while open emits ResourceWarning and is closed."""
    session = Session()
    with pytest.warns(ResourceWarning, match="unclosed Session"):
        session.__del__()
    assert session.closed is True


def test_event_needs_key_exchange_first() -> None:
    """SessionEvent on a session whose key exchange never started is a LibSSHError saying
    what to do; the session stays usable and has no event."""
    with Session() as session:
        with pytest.raises(LibSSHError, match=r"call session.handle_key_exchange\(\) first"):
            SessionEvent(session)
        assert session._event is None


@pytest.mark.parametrize("wake_pipe", [True, False], ids=["pipe", "pipe-made-by-the-wait"])
def test_close_session_during_key_exchange(loopback: Loopback, wake_pipe: bool) -> None:
    """close() from another thread interrupts handle_key_exchange() waiting for a silent
    client: it raises ValueError within a second (also for a session accepted without its
    wake-up pipe, which the wait then makes)."""
    with socket.create_connection(("127.0.0.1", loopback.port), timeout=5):
        session = loopback.bind.accept(timeout=5, wake_pipe=wake_pipe)
        assert session is not None
        loopback.session = session
        session.set_blocking(False)
        errors: list[BaseException] = []

        def kex() -> None:
            try:
                session.handle_key_exchange(timeout=30)
            except BaseException as exc:  # inspected below
                errors.append(exc)

        thread = threading.Thread(target=kex)
        thread.start()
        time.sleep(0.2)
        start = time.monotonic()
        session.close()
        thread.join(5)
        assert (thread.is_alive(), session.closed) == (False, True)
        assert time.monotonic() - start < 1.0
        assert [type(e) for e in errors] == [ValueError]
        assert str(errors[0]) == "Session is closed"


@pytest.mark.parametrize("wake_pipe", [True, False], ids=["pipe", "pipe-made-by-the-wait"])
def test_close_session_during_dopoll_none(loopback: Loopback, wake_pipe: bool) -> None:
    """While the serving thread blocks in ``event.dopoll(None)`` for a connected client,
    ``session.close()`` from another thread makes it return at once; the next dopoll raises
    ValueError; the client sees the disconnect.  Also for a session accepted without its
    wake-up pipe: the blocking dopoll makes it."""
    loopback.wake_pipe = wake_pipe
    transport, session = authenticated(loopback)
    event = loopback.event
    assert event is not None
    # Without a pipe at accept, the login's blocking dopoll calls made it and put it in the event.
    assert event._wake is not None and event._wake.fd == session._driver.wake_r >= 0
    outcome: list[Any] = []

    def serve() -> None:
        try:
            for _ in range(100):  # bounded: each dopoll(None) only returns on activity
                outcome.append(event.dopoll(None))
        except ValueError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    time.sleep(0.3)  # the serving thread is now blocked in ssh_event_dopoll(-1)
    assert outcome == []
    start = time.monotonic()
    session.close()
    thread.join(5)
    assert thread.is_alive() is False
    assert time.monotonic() - start < 1.0
    assert isinstance(outcome[-1], ValueError)
    assert str(outcome[-1]) == "SessionEvent is closed"
    assert (session.closed, event.is_assigned) == (True, False)
    assert wait_for(lambda: not transport.is_active()) is True


def test_close_session_closes_channels_and_event(loopback: Loopback) -> None:
    """Closing a session invalidates its channels and its event first: afterwards
    channel.closed is True, event.is_assigned is False, and using either raises
    ValueError."""
    channels: list[SshChannel] = []
    transport, session = authenticated(
        loopback, on_channel_open_request_session=channel_recorder(channels))
    client_channels = [loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
                       for _ in range(2)]
    event = loopback.event
    assert event is not None
    assert (len(channels), session.channels, event.is_assigned) == (2, channels, True)
    session.close()
    assert [c.closed for c in channels] == [True, True]
    assert (event.is_assigned, event.session, session.channels) == (False, None, [])
    for use in (lambda: channels[0].write(b"x"), lambda: channels[1].send_eof(),
                lambda: channels[0].window_size, lambda: channels[1].read_nonblocking()):
        with pytest.raises(ValueError, match="SshChannel is closed"):
            use()
    with pytest.raises(ValueError, match="SessionEvent is closed"):
        event.dopoll(0)
    channels[0].close()  # no-ops once the session is gone
    event.close()
    assert wait_for(lambda: not transport.is_active()) is True
    assert wait_for(lambda: all(c.closed for c in client_channels)) is True


def test_close_session_inside_callback_is_deferred(loopback: Loopback) -> None:
    """session.close() inside a hook is deferred until dopoll returns: inside the hook the
    session is still open, after dopoll it is closed and the client is disconnected."""
    seen: list[tuple[str, bool]] = []

    def on_exec(sess: Session, channel: SshChannel, command: str, userdata: Any) -> bool:
        sess.close()
        seen.append((command, sess.closed))
        return True

    channels: list[SshChannel] = []
    transport, session = authenticated(
        loopback, on_channel_open_request_session=channel_recorder(
            channels, on_exec_request=on_exec))
    channel = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    future = loopback.submit(channel.exec_command, "bye")
    loopback.poll_until(lambda: session.closed)
    assert seen == [("bye", False)]
    assert (session.closed, channels[0].closed) == (True, True)
    assert wait_for(lambda: not transport.is_active()) is True
    assert wait_for(future.done) is True


def test_disconnect_inside_callback_is_deferred(loopback: Loopback) -> None:
    """session.disconnect() inside a hook is deferred too; afterwards the session is no
    longer connected but still allocated until close()."""
    channels: list[SshChannel] = []

    def on_exec(sess: Session, channel: SshChannel, command: str, userdata: Any) -> bool:
        sess.disconnect()
        channels.append(channel)
        return True

    transport, session = authenticated(
        loopback, on_channel_open_request_session=channel_recorder(
            [], on_exec_request=on_exec))
    channel = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    loopback.submit(channel.exec_command, "bye")
    loopback.poll_until(lambda: not session.is_connected)
    assert (session.closed, channels[0].closed) == (False, True)
    assert wait_for(lambda: not transport.is_active()) is True


# ---- SessionEvent -------------------------------------------------------------------------


def test_event_close_idempotent_and_use_after_close(loopback: Loopback) -> None:
    """SessionEvent.close() twice is fine; dopoll/add_fd then raise ValueError; the session
    survives and can get a new event that drives it."""
    channels: list[SshChannel] = []
    transport, session = authenticated(
        loopback, on_channel_open_request_session=channel_recorder(channels))
    event = loopback.event
    assert event is not None
    with pytest.raises(ValueError, match="this Session already has a SessionEvent"):
        SessionEvent(session)
    event.close()
    event.close()
    assert (event.is_assigned, event.session, event.closed, session.closed) == (
        False, None, True, False)
    with pytest.raises(ValueError, match="SessionEvent is closed"):
        event.dopoll(0)
    with pytest.raises(ValueError, match="SessionEvent is closed"):
        event.add_fd(0, lambda fd, revents: None)
    with SessionEvent(session) as again:
        loopback.event = again
        loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
        assert len(channels) == 1
    assert (again.is_assigned, session.closed) == (False, False)


def test_event_context_manager(loopback: Loopback) -> None:
    """Leaving ``with SessionEvent`` removes the session and frees the event."""
    transport = loopback.paramiko()
    session = loopback.accept()
    assert loopback.event is not None
    loopback.event.close()
    with SessionEvent(session) as event:
        assert (event.is_assigned, event.session is session) == (True, True)
    assert (event.is_assigned, session.closed, transport.is_active()) == (False, False, True)


def test_event_fd_handlers(loopback: Loopback) -> None:
    """add_fd runs the handler inside dopoll with the fd and its revents; remove_fd stops
    it; the fd stays the caller's."""
    loopback.paramiko()
    loopback.accept()
    event = loopback.event
    assert event is not None
    read_fd, write_fd = os.pipe()
    try:
        calls: list[tuple[int, int, bytes]] = []
        event.add_fd(read_fd, lambda fd, revents: calls.append(
            (fd, revents, os.read(fd, 100))))
        assert event.fds == [read_fd]
        os.write(write_fd, b"ping")
        loopback.poll_until(lambda: bool(calls))
        assert calls == [(read_fd, POLLIN, b"ping")]
        event.remove_fd(read_fd)
        assert event.fds == []
        os.write(write_fd, b"again")
        event.dopoll(0.1)
        assert len(calls) == 1
    finally:
        os.close(read_fd)
        os.close(write_fd)


# ---- SshChannel ---------------------------------------------------------------------------


def test_channel_close_idempotent_and_use_after_close(loopback: Loopback) -> None:
    """SshChannel.close() twice is fine, every later use raises ValueError, the session
    forgets the channel and the client sees the channel close."""
    channels: list[SshChannel] = []
    transport, session = authenticated(
        loopback, on_channel_open_request_session=channel_recorder(channels))
    client = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    (channel,) = channels
    channel.close()
    channel.close()
    assert (channel.closed, channel.is_open, session.channels) == (True, False, [])
    for use in (lambda: channel.write(b"x"), channel.send_eof,
                lambda: channel.send_exit_status(0), lambda: channel.read_nonblocking(),
                lambda: channel.window_size,
                lambda: channel.set_callbacks(ChannelCallbacks())):
        with pytest.raises(ValueError, match="SshChannel is closed"):
            use()
    loopback.poll_until(lambda: client.closed)
    assert client.closed is True


def test_channel_context_manager(loopback: Loopback) -> None:
    """Leaving ``with channel`` closes it after its queued output."""
    channels: list[SshChannel] = []
    transport, _ = authenticated(
        loopback, on_channel_open_request_session=channel_recorder(channels))
    client = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    with channels[0] as channel:
        channel.write(b"bye\n")
    assert channel.closed is True
    data = loopback.wait_done(loopback.submit(client.makefile("rb").read))
    assert data == b"bye\n"


def test_channel_close_inside_callback_is_deferred(loopback: Loopback) -> None:
    """channel.close() inside its own exec hook marks it closed at once, frees it after
    dopoll returns, and the client still gets the output and exit status sent before."""
    states: list[tuple[bool, bool]] = []

    def on_exec(sess: Session, channel: SshChannel, command: str, userdata: Any) -> bool:
        channel.write(f"ran {command}\n".encode())
        channel.send_exit_status(7)
        channel.send_eof()
        channel.close()
        # Closed for the user at once, but the C channel is only freed after dopoll.
        states.append((channel.closed, channel._ptr is not None))
        return True

    channels: list[SshChannel] = []
    transport, session = authenticated(
        loopback, on_channel_open_request_session=channel_recorder(
            channels, on_exec_request=on_exec))
    client = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    loopback.wait_done(loopback.submit(client.exec_command, "job"))
    output = loopback.wait_done(loopback.submit(
        lambda: (client.makefile("rb").read(), client.recv_exit_status())))
    assert states == [(True, True)]
    assert output == (b"ran job\n", 7)
    # Freed once the client's CLOSE arrived (libssh keeps it until then).
    loopback.poll_until(lambda: channels[0]._ptr is None)
    assert (channels[0].closed, session.channels, session.is_connected) == (True, [], True)


def _close_race_round(host_key: SshKey) -> tuple[list[BaseException], bool, bool, bool, bool,
                                                   list[str]]:
    """One round of the race below: (errors of the two closes, session.closed,
    event.is_assigned, the driving thread alive, session.is_connected, its outcome)."""
    pair = Loopback(host_key)
    try:
        _, session = authenticated(pair)
        event = pair.event
        assert event is not None
        driving = threading.Event()
        outcome: list[str] = []

        def drive() -> None:
            try:
                for _ in range(10000):  # bounded; each dopoll waits at most 50 ms
                    driving.set()
                    if not event.session_state()[0]:
                        break
                    event.dopoll(0.05)
                outcome.append("left")
            except ValueError as exc:
                outcome.append(str(exc))

        driver = threading.Thread(target=drive)
        driver.start()
        assert driving.wait(5) is True
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def close(target: Any) -> None:
            barrier.wait(5)
            try:
                target.close()
            except BaseException as exc:  # pragma: no cover - the failure we look for
                errors.append(exc)

        closers = [threading.Thread(target=close, args=(target,)) for target in (session, event)]
        for thread in closers:
            thread.start()
        for thread in closers:
            thread.join(5)
        driver.join(5)
        return (errors, session.closed, event.is_assigned, driver.is_alive(),
                session.is_connected, outcome)
    finally:
        pair.close()


def test_session_close_and_event_close_race(host_key: SshKey) -> None:
    """``Session.close()`` and ``SessionEvent.close()`` called at once from two threads, while
    a third drives the session: every round ends with the session closed, the event detached,
    the driving thread out of its loop, and neither close raising (the event's close request
    never undoes the session's)."""
    for round_ in range(20):
        errors, closed, assigned, alive, connected, outcome = _close_race_round(host_key)
        assert (round_, errors, closed, assigned, alive, connected) == \
            (round_, [], True, False, False, False)
        assert outcome in (["left"], ["SessionEvent is closed"])


def test_close_requests_are_counted_and_a_session_close_is_sticky() -> None:
    """The closing state behind the race above: a close request that ends (an event's close,
    a disconnect) never clears another one still in progress, and once the session's own
    close started the state stays "closing" whatever ends after it."""
    session = Session()
    try:
        driver = session._driver
        first, second = driver.requesting_close(), driver.requesting_close()
        states = [driver.close_requested]
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        states.append(driver.close_requested)  # the second request is still in progress
        second.__exit__(None, None, None)
        states.append(driver.close_requested)
        with driver.requesting_close():
            driver.mark_closing()
        states.append(driver.close_requested)
        assert states == [False, True, False, True]
    finally:
        session.close()
    assert session._driver.closed is True
