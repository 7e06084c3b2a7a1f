"""The DemoServer picks libssh's newer server callbacks when the build has them."""

from __future__ import annotations

import paramiko

from pylibssh_server import features
from pylibssh_server.demo import DemoServer


def test_kbdint_and_direct_tcpip_use_the_newest_api_available() -> None:
    """On libssh >= 0.12 keyboard-interactive and direct-tcpip go through server callbacks;
    before, through the message callback; the event log is the same either way."""
    with DemoServer(auth_methods="keyboard-interactive") as server:
        transport = paramiko.Transport(("127.0.0.1", server.port))
        try:
            transport.connect()
            transport.auth_interactive("alice", lambda title, instr, prompts: ["foo", "bar"])
            assert transport.is_authenticated() is True
        finally:
            transport.close()
        client = server.clients[0]
        callbacks = client._server_callbacks()
        assert (callbacks.hooks["on_auth_kbdint"] is not None) == \
            features["server_kbdint_callback"]
        assert (callbacks.hooks["on_channel_open_request_direct_tcpip"] is not None) == \
            features["server_direct_tcpip_callback"]
    assert client.callback_log["auth_kbdint"] == ["alice", "accepted with 'foo' and 'bar'"]
    assert client.callback_log["message_request"][:2] == [(1, 16), (1, 16)]
