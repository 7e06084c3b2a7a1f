"""The DemoServer uses the same ServerCallbacks hooks on every libssh version."""

from __future__ import annotations

import paramiko

from pylibssh_server.demo import DemoServer


def test_kbdint_and_direct_tcpip_use_server_callbacks_on_every_version() -> None:
    """keyboard-interactive and direct-tcpip go through ServerCallbacks hooks whatever the
    libssh version (before 0.12 the wrapper feeds them from the message path); the event
    log is the same either way."""
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
        assert (callbacks.hooks["on_auth_kbdint"], callbacks.hooks[
            "on_channel_open_request_direct_tcpip"]) == (client._on_auth_kbdint,
                                                         client._on_direct_tcpip)
    assert client.callback_log["auth_kbdint"] == ["alice", "accepted with 'foo' and 'bar'"]
    assert client.callback_log["message_request"][:2] == [(1, 16), (1, 16)]
