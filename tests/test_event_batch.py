# SPDX-License-Identifier: MIT
"""SessionEvent's batched poll (``pylibssh_event_dopoll_batch``) and ``session_state()``.

The server session is driven by the test thread; paramiko is the client, on its own thread.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from conftest import Loopback

from pylibssh_server import ChannelCallbacks, Session, SshChannel


class HookFailure(Exception):
    """Raised by the hook under test."""


def test_fd_handler_exception_ends_the_batch(loopback: Loopback) -> None:
    """Client data waits in the socket (several 4 KiB rounds' worth) and an fd handler raises
    in the first round: dopoll ends its batch of rounds there and re-raises, so no packet
    was completed yet; the next polls deliver all of it."""
    received: list[bytes] = []

    def on_data(sess: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                userdata: Any) -> None:
        received.append(data)

    def on_open(sess: Session, userdata: Any) -> SshChannel:
        channel = SshChannel(sess)
        channel.set_callbacks(ChannelCallbacks(on_data=on_data,
                                               on_shell_request=lambda s, c, u: True))
        return channel

    transport = loopback.login(on_channel_open_request_session=on_open)
    channel = loopback.wait_done(loopback.submit(transport.open_session, timeout=10))
    loopback.wait_done(loopback.submit(channel.invoke_shell))
    event = loopback.event
    assert event is not None
    read_fd, write_fd = os.pipe()
    try:
        def handler(fd: int, revents: int) -> None:
            raise HookFailure(f"fd handler saw {os.read(fd, 10)!r}")

        event.add_fd(read_fd, handler)
        os.write(write_fd, b"x")
        # Four 8000-byte packets (within libssh's initial window) in the socket first.
        for part in (b"a", b"b", b"c", b"d"):
            loopback.submit(channel.sendall, part * 8000)
        time.sleep(0.3)
        with pytest.raises(HookFailure, match=r"^fd handler saw b'x'$"):
            event.dopoll(1.0)
        assert received == []
        event.remove_fd(read_fd)
        loopback.poll_until(lambda: sum(map(len, received)) == 32000)
        assert b"".join(received) == b"a" * 8000 + b"b" * 8000 + b"c" * 8000 + b"d" * 8000
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_session_state_follows_the_connection(loopback: Loopback) -> None:
    """``session_state()`` is (connected, fatal): (True, False) while the client is there,
    not connected once it has gone (libssh records the lost socket as a fatal error), and
    (False, False) after close()."""
    transport = loopback.login()
    event = loopback.event
    assert event is not None and loopback.session is not None
    assert event.session_state() == (True, False)
    transport.close()
    loopback.poll_until(lambda: not event.session_state()[0], timeout=10)
    assert event.session_state()[0] is False
    loopback.session.close()
    assert event.session_state() == (False, False)
