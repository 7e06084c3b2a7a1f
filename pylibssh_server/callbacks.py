# SPDX-License-Identifier: MIT
"""``ServerCallbacks`` and ``ChannelCallbacks``: the hook containers a user fills in.

Each is a C callbacks struct (``_binding``) plus a typed constructor.  The trampolines that
libssh calls, and the protocol they follow (argument conversion, fail-closed results, the
stored exception re-raised from the driving call), are in ``_trampolines``.
"""

from __future__ import annotations

from typing import Any

from pylibssh_server._binding import ChannelTable, ChannelTarget, ServerTable, Target
from pylibssh_server.hooks import (
    AuthGssapiMicHook,
    AuthKbdintHook,
    AuthNoneHook,
    AuthPasswordHook,
    AuthPubkeyHook,
    ChannelDataHook,
    ChannelEnvRequestHook,
    ChannelExecRequestHook,
    ChannelExitSignalHook,
    ChannelExitStatusHook,
    ChannelNotifyHook,
    ChannelOpenDirectTcpipHook,
    ChannelOpenResponseHook,
    ChannelOpenSessionHook,
    ChannelPtyRequestHook,
    ChannelRequestHook,
    ChannelSignalHook,
    ChannelSubsystemRequestHook,
    ChannelWindowChangeHook,
    ChannelWriteWontblockHook,
    ChannelX11RequestHook,
    DataRoomHook,
    ServiceRequestHook,
)

__all__ = ["ChannelCallbacks", "ServerCallbacks"]


class ServerCallbacks(ServerTable):
    """Hooks of ``struct ssh_server_callbacks_struct`` (``ssh_set_server_callbacks``).

    Hook signatures (``session`` is the owning :class:`Session`, ``userdata`` the value given
    here):

    - ``on_auth_password(session, user, password, userdata) -> AuthStatus | bool``
    - ``on_auth_none(session, user, userdata) -> AuthStatus | bool``
    - ``on_auth_gssapi_mic(session, user, principal, userdata) -> AuthStatus | bool``
    - ``on_auth_pubkey(session, user, key: SshKey, state: PublicKeyState, userdata)
      -> AuthStatus | bool``; ``key`` is borrowed (``key.copy()`` keeps it).
    - ``on_service_request(session, service, userdata) -> bool``: True accepts.  A refusal
      makes libssh disconnect inside the dispatch, so an exception here still *accepts*.
    - ``on_channel_open_request_session(session, userdata) -> SshChannel | None``
    - ``on_auth_kbdint(session, message: SshMessage, userdata) -> AuthStatus``
    - ``on_channel_open_request_direct_tcpip(session, host, port, orig_host, orig_port,
      userdata) -> SshChannel | None``

    The last two are libssh >= 0.12 callbacks; on older libssh the session feeds them from its
    message callback with libssh 0.12's replies, and a message callback never sees those
    messages.

    Auth hooks returning True mean success, False/None denied; any exception denies.
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        on_auth_password: AuthPasswordHook | None = None,
        on_auth_none: AuthNoneHook | None = None,
        on_auth_gssapi_mic: AuthGssapiMicHook | None = None,
        on_auth_pubkey: AuthPubkeyHook | None = None,
        on_service_request: ServiceRequestHook | None = None,
        on_channel_open_request_session: ChannelOpenSessionHook | None = None,
        on_auth_kbdint: AuthKbdintHook | None = None,
        on_channel_open_request_direct_tcpip: ChannelOpenDirectTcpipHook | None = None,
        userdata: Any = None,
    ) -> None:
        hooks = dict(locals())
        for name in ("self", "userdata", "__class__"):
            hooks.pop(name, None)
        super().__init__(hooks, Target(hooks, userdata))


class ChannelCallbacks(ChannelTable):
    """Hooks of ``struct ssh_channel_callbacks_struct`` (``ssh_set_channel_callbacks``).

    Every hook gets ``(session, channel, ..., userdata)``:

    - ``on_data(session, channel, data: bytes, is_stderr: bool, userdata) -> int | None``:
      bytes consumed (None = all); what is not consumed stays buffered in libssh.
      libssh passes everything it holds for the channel each time, so a hook that takes
      only part should also give ``data_room``.
    - ``on_eof``, ``on_close``, ``on_auth_agent_req``: no extra arguments, no result.
    - ``on_signal(..., signal)``, ``on_exit_status(..., status)``,
      ``on_exit_signal(..., signal, core, errmsg, lang)``.
    - ``on_pty_request(..., term, cols, rows, pxwidth, pxheight) -> bool``
    - ``on_shell_request(...) -> bool``, ``on_exec_request(..., command) -> bool``,
      ``on_env_request(..., name, value) -> bool``,
      ``on_subsystem_request(..., subsystem) -> bool``: True accepts, False/None refuse,
      an exception refuses.
    - ``on_x11_req(..., single_connection, protocol, cookie, screen)``
    - ``on_pty_window_change(..., cols, rows, pxwidth, pxheight)``
    - ``on_write_wontblock(..., nbytes)``
    - ``on_open_response(..., is_success)`` (libssh >= 0.11)

    ``data_room(available: int) -> int`` (not a libssh callback) is asked first, with the
    number of bytes libssh holds: ``on_data`` then gets at most that many, and is not called
    at all for 0.  The rest stays in libssh, whose window stops growing, and is offered again
    with the next data.  It saves copying a large backlog on every packet.

    One ``ChannelCallbacks`` serves exactly one channel.
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        on_data: ChannelDataHook | None = None,
        on_eof: ChannelNotifyHook | None = None,
        on_close: ChannelNotifyHook | None = None,
        on_signal: ChannelSignalHook | None = None,
        on_exit_status: ChannelExitStatusHook | None = None,
        on_exit_signal: ChannelExitSignalHook | None = None,
        on_pty_request: ChannelPtyRequestHook | None = None,
        on_shell_request: ChannelRequestHook | None = None,
        on_auth_agent_req: ChannelNotifyHook | None = None,
        on_x11_req: ChannelX11RequestHook | None = None,
        on_pty_window_change: ChannelWindowChangeHook | None = None,
        on_exec_request: ChannelExecRequestHook | None = None,
        on_env_request: ChannelEnvRequestHook | None = None,
        on_subsystem_request: ChannelSubsystemRequestHook | None = None,
        on_write_wontblock: ChannelWriteWontblockHook | None = None,
        on_open_response: ChannelOpenResponseHook | None = None,
        data_room: DataRoomHook | None = None,
        userdata: Any = None,
    ) -> None:
        hooks = dict(locals())
        for name in ("self", "userdata", "data_room", "__class__"):
            hooks.pop(name, None)
        if data_room is not None and not callable(data_room):
            raise TypeError(f"data_room must be callable, not {type(data_room).__name__}")
        super().__init__(hooks, ChannelTarget(hooks, userdata, data_room))

    @property
    def data_room(self) -> DataRoomHook | None:
        """The ``data_room`` function given (see the class docstring), or None."""
        return self._target.data_room
