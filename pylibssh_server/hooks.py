# SPDX-License-Identifier: MIT
"""The signatures of the user hooks, as ``Callable`` aliases editors and type checkers show.

Every hook is called positionally, so the parameter names of your function are free.
``userdata`` is the value given to the ``ServerCallbacks``/``ChannelCallbacks`` (or to
``set_message_callback``), ``session`` the owning :class:`~pylibssh_server.Session` and
``channel`` the :class:`~pylibssh_server.SshChannel` the hook was set on.  What a hook returns
is converted to the C value libssh expects; an exception gives the fail-closed value (auth
denied, request refused, no channel, default reply) and is re-raised from the driving call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from pylibssh_server.enums import AuthStatus, PublicKeyState

if TYPE_CHECKING:
    from pylibssh_server.channel import SshChannel
    from pylibssh_server.keys import SshKey
    from pylibssh_server.message import SshMessage
    from pylibssh_server.session import Session

__all__ = [
    "AuthGssapiMicHook",
    "AuthKbdintHook",
    "AuthNoneHook",
    "AuthPasswordHook",
    "AuthPubkeyHook",
    "AuthResult",
    "ChannelDataHook",
    "ChannelEnvRequestHook",
    "ChannelExecRequestHook",
    "ChannelExitSignalHook",
    "ChannelExitStatusHook",
    "ChannelNotifyHook",
    "ChannelOpenDirectTcpipHook",
    "ChannelOpenResponseHook",
    "ChannelOpenSessionHook",
    "ChannelPtyRequestHook",
    "ChannelRequestHook",
    "ChannelSignalHook",
    "ChannelSubsystemRequestHook",
    "ChannelWindowChangeHook",
    "ChannelWriteWontblockHook",
    "ChannelX11RequestHook",
    "DataRoomHook",
    "MessageHook",
    "RequestResult",
    "ServiceRequestHook",
]

#: What an auth hook returns: an :class:`AuthStatus` (or its int), True for success,
#: False/None for denied.
AuthResult = Union[AuthStatus, int, bool, None]
#: What a channel request hook returns: True accepts, False/None refuse (an int is the C value:
#: 0 accepts).
RequestResult = Union[bool, int, None]

# ---- ServerCallbacks ---------------------------------------------------------------------
#: ``on_auth_password(session, user, password, userdata)``
AuthPasswordHook = Callable[["Session", str, str, Any], AuthResult]
#: ``on_auth_none(session, user, userdata)``
AuthNoneHook = Callable[["Session", str, Any], AuthResult]
#: ``on_auth_gssapi_mic(session, user, principal, userdata)``
AuthGssapiMicHook = Callable[["Session", str, str, Any], AuthResult]
#: ``on_auth_pubkey(session, user, key, state, userdata)``: ``key`` is borrowed (valid during
#: the call; ``key.copy()`` keeps it), ``state`` NONE for a probe, VALID for a signature.
AuthPubkeyHook = Callable[["Session", str, "SshKey", PublicKeyState, Any], AuthResult]
#: ``on_auth_kbdint(session, message, userdata)`` (libssh >= 0.12): the message is borrowed.
AuthKbdintHook = Callable[["Session", "SshMessage", Any], AuthResult]
#: ``on_service_request(session, service, userdata)``: True/None (or 0) accepts.
ServiceRequestHook = Callable[["Session", str, Any], Union[bool, int, None]]
#: ``on_channel_open_request_session(session, userdata)``: a new ``SshChannel(session)``
#: accepts, None refuses.
ChannelOpenSessionHook = Callable[["Session", Any], Optional["SshChannel"]]
#: ``on_channel_open_request_direct_tcpip(session, host, port, orig_host, orig_port, userdata)``
#: (libssh >= 0.12): a new channel accepts, None refuses.
ChannelOpenDirectTcpipHook = Callable[["Session", str, int, str, int, Any],
                                      Optional["SshChannel"]]

# ---- ChannelCallbacks --------------------------------------------------------------------
#: ``on_data(session, channel, data, is_stderr, userdata)``: the bytes consumed (None: all).
ChannelDataHook = Callable[["Session", "SshChannel", bytes, bool, Any], Optional[int]]
#: ``on_eof``, ``on_close``, ``on_auth_agent_req``: ``(session, channel, userdata)``, the
#: result is ignored.
ChannelNotifyHook = Callable[["Session", "SshChannel", Any], object]
#: ``on_signal(session, channel, signal, userdata)``: ``signal`` without "SIG" ("INT").
ChannelSignalHook = Callable[["Session", "SshChannel", str, Any], object]
#: ``on_exit_status(session, channel, status, userdata)``
ChannelExitStatusHook = Callable[["Session", "SshChannel", int, Any], object]
#: ``on_exit_signal(session, channel, signal, core_dumped, errmsg, lang, userdata)``
ChannelExitSignalHook = Callable[["Session", "SshChannel", str, bool, str, str, Any], object]
#: ``on_pty_request(session, channel, term, cols, rows, px_width, px_height, userdata)``
ChannelPtyRequestHook = Callable[["Session", "SshChannel", str, int, int, int, int, Any],
                                 RequestResult]
#: ``on_shell_request(session, channel, userdata)``
ChannelRequestHook = Callable[["Session", "SshChannel", Any], RequestResult]
#: ``on_exec_request(session, channel, command, userdata)``
ChannelExecRequestHook = Callable[["Session", "SshChannel", str, Any], RequestResult]
#: ``on_env_request(session, channel, name, value, userdata)``
ChannelEnvRequestHook = Callable[["Session", "SshChannel", str, str, Any], RequestResult]
#: ``on_subsystem_request(session, channel, subsystem, userdata)``
ChannelSubsystemRequestHook = Callable[["Session", "SshChannel", str, Any], RequestResult]
#: ``on_x11_req(session, channel, single_connection, protocol, cookie, screen, userdata)``
ChannelX11RequestHook = Callable[["Session", "SshChannel", bool, str, str, int, Any], object]
#: ``on_pty_window_change(session, channel, cols, rows, px_width, px_height, userdata)``
ChannelWindowChangeHook = Callable[["Session", "SshChannel", int, int, int, int, Any], object]
#: ``on_write_wontblock(session, channel, nbytes, userdata)``
ChannelWriteWontblockHook = Callable[["Session", "SshChannel", int, Any], object]
#: ``on_open_response(session, channel, is_success, userdata)`` (libssh >= 0.11)
ChannelOpenResponseHook = Callable[["Session", "SshChannel", bool, Any], object]
#: ``data_room(available) -> int``: how many of the ``available`` bytes ``on_data`` may get.
DataRoomHook = Callable[[int], int]

# ---- message API -------------------------------------------------------------------------
#: ``callback(session, message, userdata)`` for ``Session.set_message_callback`` and
#: ``set_global_request_callback``: True once you replied, False/None for the default reply.
#: The message is borrowed (freed when the callback returns).
MessageHook = Callable[["Session", "SshMessage", Any], Optional[bool]]
