# SPDX-License-Identifier: MIT
"""``ServerCallbacks``, ``ChannelCallbacks`` and every ``extern "Python"`` trampoline.

The protocol every trampoline follows:

1. ``userdata`` is an ``ffi.new_handle(owner)`` kept alive on the owner (a ``ServerCallbacks``,
   ``ChannelCallbacks``, ``Session`` or event fd registration) together with the C struct, for
   as long as libssh may call back.  Unset hooks stay NULL, so libssh applies its own default.
2. The trampoline converts the C arguments: strings are copied to ``str`` at once (UTF-8, with
   ``surrogateescape`` so no byte is lost), keys and messages become *borrowed* wrappers that are
   invalidated when the callback returns, channels map to their registered ``SshChannel``.
3. It calls the user hook ``on_<event>(session, ..., userdata)`` and converts the result to the
   C value libssh documents for that callback (they differ: see each ``_to_*`` helper).
4. If the hook raises, the exception is logged and stored on the session, and the trampoline
   returns the *fail-closed* value for that callback (deny auth, refuse the request, NULL
   channel, default message reply).  Every ``def_extern`` also has ``error=`` set to the same
   value, because cffi's default of 0 means ``SSH_AUTH_SUCCESS``/"accept".
5. The driving call (``Session.handle_key_exchange()``, ``SessionEvent.dopoll()``, channel
   reads and writes) runs deferred actions (closes requested inside callbacks) after libssh
   returns, then re-raises the stored exception, so the user's traceback is never lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

from pylibssh_server._ffi import ffi, lib
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

if TYPE_CHECKING:
    from pylibssh_server.channel import SshChannel
    from pylibssh_server.session import Session

__all__ = ["ChannelCallbacks", "ServerCallbacks"]

logger: logging.Logger = logging.getLogger("pylibssh_server")

DENY_AUTH: int = lib.SSH_AUTH_DENIED
DENY_REQUEST = 1  # channel requests: 0 accepts, anything else refuses
DEFAULT_REPLY = 1  # message callback: 1 lets libssh send the default (negative) reply

Hook = Optional[Callable[..., Any]]


def _str(ptr: Any) -> str:
    if ptr == ffi.NULL:
        return ""
    return ffi.string(ptr).decode("utf-8", "surrogateescape")


def _to_auth(value: Any) -> int:
    """Auth hooks: ``AuthStatus``/int as is; True means success; False/None mean denied."""
    if value is True:
        return int(lib.SSH_AUTH_SUCCESS)
    if value is None or value is False:
        return DENY_AUTH
    return int(value)


def _to_request(value: Any) -> int:
    """Channel requests: True accepts (0), False/None refuse (1); an int is the C value."""
    if value is True:
        return 0
    if value is None or value is False:
        return DENY_REQUEST
    return int(value)


def _invoke(session: Session | None, hook: Callable[..., Any], fail: Any, *args: Any) -> Any:
    """Call ``hook(*args)``; on exception log it, store it on the session, return ``fail``."""
    # A libssh call we did not mark as driving (any call that flushes can dispatch packets)
    # still runs callbacks: mark the session busy so closes inside the hook are deferred
    # instead of freeing what libssh is walking.
    outermost = session is not None and session._depth == 0
    if outermost:
        session._enter()  # type: ignore[union-attr]
    try:
        return hook(*args)
    except BaseException as exc:
        if session is not None:
            session._record_exception(exc, getattr(hook, "__name__", "hook"))
        else:
            logger.error("exception in libssh callback %r", hook, exc_info=exc)
        return fail
    finally:
        if outermost:
            session._leave()  # type: ignore[union-attr]


class _CallbackStruct:
    """Owns one zero-filled C callbacks struct (with ``size`` set) and its userdata handle."""

    _ctype: str = ""
    _hooks: tuple[str, ...] = ()

    def __init__(self, hooks: dict[str, Hook], userdata: Any) -> None:
        unknown = set(hooks) - set(self._hooks)
        if unknown:
            raise TypeError(f"unknown hook(s) for {type(self).__name__}: {sorted(unknown)}")
        for name, fn in hooks.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, not {type(fn).__name__}")
        self.hooks: dict[str, Hook] = {name: hooks.get(name) for name in self._hooks}
        self.userdata = userdata
        self._struct = ffi.new(self._ctype + " *")
        # ssh_callbacks_init() is a macro: set the size ourselves.
        self._struct.size = ffi.sizeof(self._ctype)
        self._handle = ffi.new_handle(self)
        self._struct.userdata = self._handle

    def _install(self) -> None:
        for name, fn in self.hooks.items():
            if fn is not None:
                self._set_field(name)

    def _set_field(self, hook: str) -> None:
        field = hook[len("on_"):] + "_function"
        setattr(self._struct, field, getattr(lib, f"_{field}_cb"))


class ServerCallbacks(_CallbackStruct):
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
    - ``on_auth_kbdint(session, message: SshMessage, userdata) -> AuthStatus`` (libssh >= 0.12;
      use the message callback on older versions)
    - ``on_channel_open_request_direct_tcpip(session, host, port, orig_host, orig_port,
      userdata) -> SshChannel | None`` (libssh >= 0.12)

    Auth hooks returning True mean success, False/None denied; any exception denies.
    """

    _ctype = "struct ssh_server_callbacks_struct"
    _hooks = (
        "on_auth_password",
        "on_auth_none",
        "on_auth_gssapi_mic",
        "on_auth_pubkey",
        "on_service_request",
        "on_channel_open_request_session",
        "on_auth_kbdint",
        "on_channel_open_request_direct_tcpip",
    )

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
        super().__init__(hooks, userdata)
        self._session: Session | None = None

    def _set_field(self, hook: str) -> None:
        from pylibssh_server._ffi import require_feature

        if hook == "on_auth_kbdint":
            require_feature("server_kbdint_callback")
            lib.pylibssh_server_cb_set_kbdint(self._struct, 1)
        elif hook == "on_channel_open_request_direct_tcpip":
            require_feature("server_direct_tcpip_callback")
            lib.pylibssh_server_cb_set_direct_tcpip(self._struct, 1)
        else:
            super()._set_field(hook)

    def _attach(self, session: Session) -> None:
        if self._session is not None and self._session is not session:
            raise ValueError("these ServerCallbacks are already set on another Session")
        self._session = session
        self._install()


class ChannelCallbacks(_CallbackStruct):
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

    _ctype = "struct ssh_channel_callbacks_struct"
    _hooks = (
        "on_data",
        "on_eof",
        "on_close",
        "on_signal",
        "on_exit_status",
        "on_exit_signal",
        "on_pty_request",
        "on_shell_request",
        "on_auth_agent_req",
        "on_x11_req",
        "on_pty_window_change",
        "on_exec_request",
        "on_env_request",
        "on_subsystem_request",
        "on_write_wontblock",
        "on_open_response",
    )

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
        super().__init__(hooks, userdata)
        self.data_room = data_room
        self._channel: SshChannel | None = None

    def _set_field(self, hook: str) -> None:
        if hook == "on_open_response":
            from pylibssh_server._ffi import require_feature

            require_feature("channel_open_response")
            lib.pylibssh_channel_cb_set_open_response(self._struct, 1)
        else:
            setattr(self._struct, f"channel_{hook[3:]}_function",
                    getattr(lib, f"_channel_{hook[3:]}_function_cb"))

    def _attach(self, channel: SshChannel) -> None:
        if self._channel is not None and self._channel is not channel:
            raise ValueError("these ChannelCallbacks are already set on another SshChannel")
        self._channel = channel
        self._install()
        # Always track the peer's EOF and CLOSE, hook or not: SshChannel.close() keeps the
        # channel (and this struct) until the peer's CLOSE has arrived, and is_eof/remote_closed
        # read these flags.  Without a hook the trampolines only set the flags.
        for hook in ("on_eof", "on_close"):
            if self.hooks[hook] is None:
                self._set_field(hook)


# ---------------------------------------------------------------------------------------------
# Server callback trampolines.


def _server(userdata: Any) -> tuple[ServerCallbacks, Session]:
    cbs: ServerCallbacks = ffi.from_handle(userdata)
    assert cbs._session is not None
    return cbs, cbs._session


@ffi.def_extern(error=DENY_AUTH)
def _auth_password_function_cb(session: Any, user: Any, password: Any, userdata: Any) -> int:
    cbs, sess = _server(userdata)
    hook = cbs.hooks["on_auth_password"]
    assert hook is not None
    result = _invoke(sess, hook, DENY_AUTH, sess, _str(user), _str(password), cbs.userdata)
    rc = _to_auth(result)
    sess._note_auth(rc, _str(user))
    return rc


@ffi.def_extern(error=DENY_AUTH)
def _auth_none_function_cb(session: Any, user: Any, userdata: Any) -> int:
    cbs, sess = _server(userdata)
    hook = cbs.hooks["on_auth_none"]
    assert hook is not None
    rc = _to_auth(_invoke(sess, hook, DENY_AUTH, sess, _str(user), cbs.userdata))
    sess._note_auth(rc, _str(user))
    return rc


@ffi.def_extern(error=DENY_AUTH)
def _auth_gssapi_mic_function_cb(session: Any, user: Any, principal: Any, userdata: Any) -> int:
    cbs, sess = _server(userdata)
    hook = cbs.hooks["on_auth_gssapi_mic"]
    assert hook is not None
    rc = _to_auth(
        _invoke(sess, hook, DENY_AUTH, sess, _str(user), _str(principal), cbs.userdata)
    )
    sess._note_auth(rc, _str(user))
    return rc


@ffi.def_extern(error=DENY_AUTH)
def _auth_pubkey_function_cb(
    session: Any, user: Any, pubkey: Any, state: Any, userdata: Any
) -> int:
    from pylibssh_server.enums import PublicKeyState
    from pylibssh_server.keys import SshKey

    cbs, sess = _server(userdata)
    hook = cbs.hooks["on_auth_pubkey"]
    assert hook is not None
    # cffi delivers a C ``char`` as a one-byte ``bytes``.
    raw_state = state[0] if isinstance(state, bytes) else int(state)
    if raw_state > 127:
        raw_state -= 256
    try:
        key_state: PublicKeyState | int = PublicKeyState(raw_state)
    except ValueError:
        key_state = raw_state
    # The session's lock, which the thread running this callback holds: a thread the hook
    # handed the key to waits until the callback has returned, then finds it invalidated.
    key = SshKey(pubkey, owning=False, lock=sess._lock)
    try:
        rc = _to_auth(_invoke(sess, hook, DENY_AUTH, sess, _str(user), key, key_state,
                              cbs.userdata))
    finally:
        key._invalidate()
    # A probe (state NONE) answered SUCCESS only means PK_OK, not a login.
    if key_state == PublicKeyState.VALID:
        sess._note_auth(rc, _str(user))
    return rc


@ffi.def_extern(error=0)
def _service_request_function_cb(session: Any, service: Any, userdata: Any) -> int:
    cbs, sess = _server(userdata)
    hook = cbs.hooks["on_service_request"]
    assert hook is not None
    # Refusing makes libssh 0.10 call ssh_disconnect() inside the dispatch (frees the poll
    # handle in use), so a failing hook accepts; the exception is still re-raised.
    result = _invoke(sess, hook, True, sess, _str(service), cbs.userdata)
    return 0 if result is None or result is True or result == 0 else 1


@ffi.def_extern()
def _channel_open_request_session_function_cb(session: Any, userdata: Any) -> Any:
    cbs, sess = _server(userdata)
    hook = cbs.hooks["on_channel_open_request_session"]
    assert hook is not None
    channel = _invoke(sess, hook, None, sess, cbs.userdata)
    return _channel_ptr(sess, channel)


@ffi.def_extern()
def _channel_open_request_direct_tcpip_function_cb(
    session: Any, dest: Any, dport: int, orig: Any, oport: int, userdata: Any
) -> Any:
    cbs, sess = _server(userdata)
    hook = cbs.hooks["on_channel_open_request_direct_tcpip"]
    assert hook is not None
    channel = _invoke(sess, hook, None, sess, _str(dest), dport, _str(orig), oport,
                      cbs.userdata)
    return _channel_ptr(sess, channel)


@ffi.def_extern(error=DENY_AUTH)
def _auth_kbdint_function_cb(message: Any, session: Any, userdata: Any) -> int:
    from pylibssh_server.message import SshMessage

    cbs, sess = _server(userdata)
    hook = cbs.hooks["on_auth_kbdint"]
    assert hook is not None
    msg = SshMessage(message, sess)
    try:
        rc = _to_auth(_invoke(sess, hook, DENY_AUTH, sess, msg, cbs.userdata))
    finally:
        msg._invalidate()
    sess._note_auth(rc, sess.user or "")
    return rc


def _channel_ptr(sess: Session, channel: Any) -> Any:
    """Convert a hook's channel result to the pointer libssh expects (NULL refuses)."""
    from pylibssh_server.channel import SshChannel

    if channel is None:
        return ffi.NULL
    if not isinstance(channel, SshChannel):
        sess._record_exception(
            TypeError(f"channel-open hook must return SshChannel or None, not "
                      f"{type(channel).__name__}"), "channel-open hook")
        return ffi.NULL
    if channel._ptr is None:
        return ffi.NULL
    return channel._ptr


# ---------------------------------------------------------------------------------------------
# Channel callback trampolines.


def _chan(userdata: Any) -> tuple[ChannelCallbacks, SshChannel, Session]:
    cbs: ChannelCallbacks = ffi.from_handle(userdata)
    channel = cbs._channel
    assert channel is not None
    return cbs, channel, channel._session


@ffi.def_extern(error=0)
def _channel_data_function_cb(
    session: Any, channel: Any, data: Any, length: int, is_stderr: int, userdata: Any
) -> int:
    # Once per packet, the hot path: _chan() and _invoke()'s protocol, written out inline.
    cbs: ChannelCallbacks = ffi.from_handle(userdata)
    chan = cbs._channel
    assert chan is not None
    sess = chan._session
    hook = cbs.hooks["on_data"]
    assert hook is not None
    data_room = cbs.data_room
    outermost = sess._depth == 0
    if outermost:
        sess._enter()
    try:
        if data_room is not None:
            length = max(0, min(int(data_room(length)), length))
            if length == 0:
                return 0
        result = hook(sess, chan, ffi.buffer(data, length)[:], bool(is_stderr), cbs.userdata)
        if result is not None:
            length = max(0, min(int(result), length))
    except BaseException as exc:
        sess._record_exception(exc, getattr(hook, "__name__", "on_data"))
        # Nothing consumed; the channel is closed once the poll returns.
        chan._defer_close()
        event = sess._event
        if event is not None:
            event._stop[0] = 1  # end dopoll's batch of rounds: the exception goes up now
        return 0
    finally:
        if outermost:
            sess._leave()
    return length


def _void_channel_hook(userdata: Any, name: str, *args: Any) -> None:
    cbs, chan, sess = _chan(userdata)
    hook = cbs.hooks[name]
    if hook is not None:
        _invoke(sess, hook, None, sess, chan, *args, cbs.userdata)


@ffi.def_extern()
def _channel_eof_function_cb(session: Any, channel: Any, userdata: Any) -> None:
    _chan(userdata)[1]._remote_eof = True
    _void_channel_hook(userdata, "on_eof")


@ffi.def_extern()
def _channel_close_function_cb(session: Any, channel: Any, userdata: Any) -> None:
    _chan(userdata)[1]._remote_closed = True
    _void_channel_hook(userdata, "on_close")


@ffi.def_extern()
def _channel_signal_function_cb(session: Any, channel: Any, signal: Any, userdata: Any) -> None:
    _void_channel_hook(userdata, "on_signal", _str(signal))


@ffi.def_extern()
def _channel_exit_status_function_cb(
    session: Any, channel: Any, status: int, userdata: Any
) -> None:
    _void_channel_hook(userdata, "on_exit_status", status)


@ffi.def_extern()
def _channel_exit_signal_function_cb(
    session: Any, channel: Any, signal: Any, core: int, errmsg: Any, lang: Any, userdata: Any
) -> None:
    _void_channel_hook(userdata, "on_exit_signal", _str(signal), bool(core), _str(errmsg),
                       _str(lang))


@ffi.def_extern()
def _channel_auth_agent_req_function_cb(session: Any, channel: Any, userdata: Any) -> None:
    _void_channel_hook(userdata, "on_auth_agent_req")


@ffi.def_extern()
def _channel_x11_req_function_cb(
    session: Any, channel: Any, single: int, proto: Any, cookie: Any, screen: int,
    userdata: Any,
) -> None:
    _void_channel_hook(userdata, "on_x11_req", bool(single), _str(proto), _str(cookie), screen)


def _request_hook(userdata: Any, name: str, *args: Any) -> int:
    cbs, chan, sess = _chan(userdata)
    hook = cbs.hooks[name]
    assert hook is not None
    return _to_request(_invoke(sess, hook, False, sess, chan, *args, cbs.userdata))


@ffi.def_extern(error=DENY_REQUEST)
def _channel_pty_request_function_cb(
    session: Any, channel: Any, term: Any, cols: int, rows: int, pxw: int, pxh: int,
    userdata: Any,
) -> int:
    return _request_hook(userdata, "on_pty_request", _str(term), cols, rows, pxw, pxh)


@ffi.def_extern(error=DENY_REQUEST)
def _channel_shell_request_function_cb(session: Any, channel: Any, userdata: Any) -> int:
    return _request_hook(userdata, "on_shell_request")


@ffi.def_extern(error=DENY_REQUEST)
def _channel_exec_request_function_cb(
    session: Any, channel: Any, command: Any, userdata: Any
) -> int:
    return _request_hook(userdata, "on_exec_request", _str(command))


@ffi.def_extern(error=DENY_REQUEST)
def _channel_env_request_function_cb(
    session: Any, channel: Any, name: Any, value: Any, userdata: Any
) -> int:
    return _request_hook(userdata, "on_env_request", _str(name), _str(value))


@ffi.def_extern(error=DENY_REQUEST)
def _channel_subsystem_request_function_cb(
    session: Any, channel: Any, subsystem: Any, userdata: Any
) -> int:
    return _request_hook(userdata, "on_subsystem_request", _str(subsystem))


@ffi.def_extern(error=0)
def _channel_pty_window_change_function_cb(
    session: Any, channel: Any, cols: int, rows: int, pxw: int, pxh: int, userdata: Any
) -> int:
    _void_channel_hook(userdata, "on_pty_window_change", cols, rows, pxw, pxh)
    return 0


@ffi.def_extern(error=0)
def _channel_write_wontblock_function_cb(
    session: Any, channel: Any, nbytes: int, userdata: Any
) -> int:
    _void_channel_hook(userdata, "on_write_wontblock", nbytes)
    return 0


@ffi.def_extern()
def _channel_open_response_function_cb(
    session: Any, channel: Any, is_success: bool, userdata: Any
) -> None:
    _void_channel_hook(userdata, "on_open_response", bool(is_success))


# ---------------------------------------------------------------------------------------------
# Session-level trampolines: message callback, global requests, event fds.


@ffi.def_extern(error=DEFAULT_REPLY)
def _message_function_cb(session: Any, message: Any, userdata: Any) -> int:
    from pylibssh_server.message import SshMessage

    sess: Session = ffi.from_handle(userdata)
    hook, data = sess._message_callback
    if hook is None:
        return DEFAULT_REPLY
    msg = SshMessage(message, sess)
    try:
        handled = _invoke(sess, hook, False, sess, msg, data)
    finally:
        msg._invalidate()
    return 0 if handled is True else DEFAULT_REPLY


@ffi.def_extern()
def _global_request_function_cb(session: Any, message: Any, userdata: Any) -> None:
    from pylibssh_server.message import SshMessage

    sess: Session = ffi.from_handle(userdata)
    hook, data = sess._global_request_callback
    msg = SshMessage(message, sess)
    try:
        if hook is None or _invoke(sess, hook, False, sess, msg, data) is not True:
            # With this callback set libssh sends nothing itself: always answer.
            msg._reply_default_if_unanswered()
    finally:
        msg._invalidate()


@ffi.def_extern(error=0)
def _event_fd_cb(fd: int, revents: int, userdata: Any) -> int:
    registration = ffi.from_handle(userdata)
    registration.fire(fd, revents)
    return 0
