# SPDX-License-Identifier: MIT
"""Every ``extern "Python"`` trampoline libssh calls, and the protocol they all follow.

1. ``userdata`` is an ``ffi.new_handle(target)`` (``_binding``): the target is kept alive with
   its C struct by the owner (a ``ServerCallbacks``/``ChannelCallbacks``, a ``Session`` or an
   event fd registration) for as long as libssh may call back.  Unset hooks stay NULL, so
   libssh applies its own default.
2. The trampoline converts the C arguments: strings are copied to ``str`` at once (UTF-8, with
   ``surrogateescape`` so no byte is lost), keys and messages become *borrowed* wrappers that are
   invalidated when the callback returns, channels map to their registered ``SshChannel``.
3. It calls the user hook ``on_<event>(session, ..., userdata)`` through the session's
   ``Driver.call`` and converts the result to the C value libssh documents for that callback
   (they differ: see each ``_to_*`` helper).
4. If the hook raises, ``Driver.call`` stores the exception and ends the batch of poll rounds,
   and the trampoline returns the *fail-closed* value for that callback (deny auth, refuse the
   request, NULL channel, default message reply).  Every ``def_extern`` also has ``error=`` set
   to the same value, because cffi's default of 0 means ``SSH_AUTH_SUCCESS``/"accept".
5. The driving call (``Session.handle_key_exchange()``, ``SessionEvent.dopoll()``, channel
   reads and writes) runs deferred actions (closes requested inside callbacks) after libssh
   returns, then re-raises the stored exception, so the user's traceback is never lost.

The version split lives here too: before libssh 0.12 the server callbacks struct has no
keyboard-interactive or direct-tcpip field, so the message trampoline first offers each message
to :func:`_route`, which feeds those two ``ServerCallbacks`` hooks exactly as libssh 0.12 calls
them (``ssh_execute_server_request`` in its ``src/messages.c``); code above this layer sees one
hook on every version.

This module is imported once by the package (it registers the ``def_extern`` functions) and
by no other module.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pylibssh_server._binding import ChannelTarget, SessionTarget, Target
from pylibssh_server._ffi import ffi, lib
from pylibssh_server.channel import SshChannel
from pylibssh_server.enums import PublicKeyState
from pylibssh_server.keys import SshKey
from pylibssh_server.message import SshMessage

__all__: list[str] = []

logger: logging.Logger = logging.getLogger("pylibssh_server")

DENY_AUTH: int = lib.SSH_AUTH_DENIED
DENY_REQUEST = 1  # channel requests: 0 accepts, anything else refuses
DEFAULT_REPLY = 1  # message callback: 1 lets libssh send the default (negative) reply
REPLIED = 0  # message callback: the reply was sent (libssh only frees the message)


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


def _note_auth(target: Target, rc: int, user: str) -> None:
    """The session's public auth bookkeeping (libssh has no getter for it)."""
    session = target.session
    session.user = user
    session.auth_attempts += 1
    if rc == lib.SSH_AUTH_SUCCESS:
        session.authenticated = True


def _call_server_hook(userdata: Any, name: str, fail: Any, *args: Any) -> Any:
    target: Target = ffi.from_handle(userdata)
    hook = target.hooks[name]  # installed only when given
    return target.driver.call(name, fail, hook, target.session, *args, target.userdata)


# ---------------------------------------------------------------------------------------------
# Server callbacks.


def _user(user: Any) -> str:
    """A user name: one str for every session of the user (each keeps it as ``user``); an
    interned str is freed like any other once no session holds it."""
    return sys.intern(_str(user))


def _auth(userdata: Any, name: str, user: Any, *args: Any) -> int:
    name_str = _user(user)
    rc = _to_auth(_call_server_hook(userdata, name, DENY_AUTH, name_str, *args))
    _note_auth(ffi.from_handle(userdata), rc, name_str)
    return rc


@ffi.def_extern(error=DENY_AUTH)
def _auth_password_function_cb(session: Any, user: Any, password: Any, userdata: Any) -> int:
    return _auth(userdata, "on_auth_password", user, _str(password))


@ffi.def_extern(error=DENY_AUTH)
def _auth_none_function_cb(session: Any, user: Any, userdata: Any) -> int:
    return _auth(userdata, "on_auth_none", user)


@ffi.def_extern(error=DENY_AUTH)
def _auth_gssapi_mic_function_cb(session: Any, user: Any, principal: Any, userdata: Any) -> int:
    return _auth(userdata, "on_auth_gssapi_mic", user, _str(principal))


@ffi.def_extern(error=DENY_AUTH)
def _auth_pubkey_function_cb(
    session: Any, user: Any, pubkey: Any, state: Any, userdata: Any
) -> int:
    target: Target = ffi.from_handle(userdata)
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
    key = SshKey(pubkey, owning=False, lock=target.driver.lock)
    user_str = _user(user)
    try:
        rc = _to_auth(_call_server_hook(userdata, "on_auth_pubkey", DENY_AUTH, user_str, key,
                                        key_state))
    finally:
        key._invalidate()
    # A probe (state NONE) answered SUCCESS only means PK_OK, not a login.
    if key_state == PublicKeyState.VALID:
        _note_auth(target, rc, user_str)
    return rc


@ffi.def_extern(error=0)
def _service_request_function_cb(session: Any, service: Any, userdata: Any) -> int:
    # Refusing makes libssh 0.10 call ssh_disconnect() inside the dispatch (frees the poll
    # handle in use), so a failing hook accepts; the exception is still re-raised.
    result = _call_server_hook(userdata, "on_service_request", True, _str(service))
    return 0 if result is None or result is True or result == 0 else 1


@ffi.def_extern()
def _channel_open_request_session_function_cb(session: Any, userdata: Any) -> Any:
    channel = _call_server_hook(userdata, "on_channel_open_request_session", None)
    return _channel_ptr(ffi.from_handle(userdata), channel)


@ffi.def_extern()
def _channel_open_request_direct_tcpip_function_cb(
    session: Any, dest: Any, dport: int, orig: Any, oport: int, userdata: Any
) -> Any:
    channel = _call_server_hook(userdata, "on_channel_open_request_direct_tcpip", None,
                                _str(dest), dport, _str(orig), oport)
    return _channel_ptr(ffi.from_handle(userdata), channel)


@ffi.def_extern(error=DENY_AUTH)
def _auth_kbdint_function_cb(message: Any, session: Any, userdata: Any) -> int:
    target: Target = ffi.from_handle(userdata)
    msg = SshMessage(message, target.session)
    try:
        rc = _to_auth(_call_server_hook(userdata, "on_auth_kbdint", DENY_AUTH, msg))
    finally:
        msg._invalidate()
    _note_auth(target, rc, target.session.user or "")
    return rc


def _channel_ptr(target: Target, channel: Any) -> Any:
    """Convert a hook's channel result to the pointer libssh expects (NULL refuses)."""
    if channel is None:
        return ffi.NULL
    if not isinstance(channel, SshChannel):
        target.driver.record(
            TypeError(f"channel-open hook must return SshChannel or None, not "
                      f"{type(channel).__name__}"), "channel-open hook")
        return ffi.NULL
    try:
        return channel._c
    except ValueError:  # closed by the hook
        return ffi.NULL


# ---------------------------------------------------------------------------------------------
# Channel callbacks.


@ffi.def_extern(error=0)
def _channel_data_function_cb(
    session: Any, channel: Any, data: Any, length: int, is_stderr: int, userdata: Any
) -> int:
    target: ChannelTarget = ffi.from_handle(userdata)
    driver = target.driver
    failed: Any = _FAILED
    data_room = target.data_room
    if data_room is not None:
        room = driver.call("data_room", failed, data_room, length)
        if room is failed:
            return _abort_later(target)
        length = max(0, min(int(room), length))
        if length == 0:
            return 0
    hook = target.hooks.get("on_data")
    assert hook is not None
    result = driver.call_spawning("on_data", failed, None, target.channel.abort, hook,
                                  target.session, target.channel,
                                  ffi.buffer(data, length)[:], bool(is_stderr),
                                  target.userdata)
    if result is failed:
        return _abort_later(target)
    if result is not None:
        length = max(0, min(int(result), length))
    return length


_FAILED = object()


def _abort_later(target: ChannelTarget) -> int:
    """A data hook raised: nothing consumed, and the channel is closed once the poll returns."""
    target.driver.defer(target.channel.abort)
    return 0


def _channel_hook(userdata: Any, name: str, fail: Any, *args: Any, ok: Any = None) -> Any:
    """A channel hook; it may be a coroutine function (on the asyncio reactor: libssh hears
    ``ok``, the coroutine runs as a task, and its exception closes the channel)."""
    target: ChannelTarget = ffi.from_handle(userdata)
    hook = target.hooks.get(name)
    if hook is None:
        return fail
    return target.driver.call_spawning(name, fail, ok, target.channel.abort, hook,
                                       target.session, target.channel, *args,
                                       target.userdata)


@ffi.def_extern()
def _channel_eof_function_cb(session: Any, channel: Any, userdata: Any) -> None:
    target: ChannelTarget = ffi.from_handle(userdata)
    target.remote.eof = True
    _channel_hook(userdata, "on_eof", None)


@ffi.def_extern()
def _channel_close_function_cb(session: Any, channel: Any, userdata: Any) -> None:
    target: ChannelTarget = ffi.from_handle(userdata)
    target.remote.closed = True
    _channel_hook(userdata, "on_close", None)


@ffi.def_extern()
def _channel_signal_function_cb(session: Any, channel: Any, signal: Any, userdata: Any) -> None:
    _channel_hook(userdata, "on_signal", None, _str(signal))


@ffi.def_extern()
def _channel_exit_status_function_cb(
    session: Any, channel: Any, status: int, userdata: Any
) -> None:
    _channel_hook(userdata, "on_exit_status", None, status)


@ffi.def_extern()
def _channel_exit_signal_function_cb(
    session: Any, channel: Any, signal: Any, core: int, errmsg: Any, lang: Any, userdata: Any
) -> None:
    _channel_hook(userdata, "on_exit_signal", None, _str(signal), bool(core), _str(errmsg),
                  _str(lang))


@ffi.def_extern()
def _channel_auth_agent_req_function_cb(session: Any, channel: Any, userdata: Any) -> None:
    _channel_hook(userdata, "on_auth_agent_req", None)


@ffi.def_extern()
def _channel_x11_req_function_cb(
    session: Any, channel: Any, single: int, proto: Any, cookie: Any, screen: int,
    userdata: Any,
) -> None:
    _channel_hook(userdata, "on_x11_req", None, bool(single), _str(proto), _str(cookie),
                  screen)


def _request(userdata: Any, name: str, *args: Any) -> int:
    return _to_request(_channel_hook(userdata, name, False, *args, ok=True))


@ffi.def_extern(error=DENY_REQUEST)
def _channel_pty_request_function_cb(
    session: Any, channel: Any, term: Any, cols: int, rows: int, pxw: int, pxh: int,
    userdata: Any,
) -> int:
    return _request(userdata, "on_pty_request", _str(term), cols, rows, pxw, pxh)


@ffi.def_extern(error=DENY_REQUEST)
def _channel_shell_request_function_cb(session: Any, channel: Any, userdata: Any) -> int:
    return _request(userdata, "on_shell_request")


@ffi.def_extern(error=DENY_REQUEST)
def _channel_exec_request_function_cb(
    session: Any, channel: Any, command: Any, userdata: Any
) -> int:
    return _request(userdata, "on_exec_request", _str(command))


@ffi.def_extern(error=DENY_REQUEST)
def _channel_env_request_function_cb(
    session: Any, channel: Any, name: Any, value: Any, userdata: Any
) -> int:
    return _request(userdata, "on_env_request", _str(name), _str(value))


@ffi.def_extern(error=DENY_REQUEST)
def _channel_subsystem_request_function_cb(
    session: Any, channel: Any, subsystem: Any, userdata: Any
) -> int:
    return _request(userdata, "on_subsystem_request", _str(subsystem))


@ffi.def_extern(error=0)
def _channel_pty_window_change_function_cb(
    session: Any, channel: Any, cols: int, rows: int, pxw: int, pxh: int, userdata: Any
) -> int:
    _channel_hook(userdata, "on_pty_window_change", None, cols, rows, pxw, pxh)
    return 0


@ffi.def_extern(error=0)
def _channel_write_wontblock_function_cb(
    session: Any, channel: Any, nbytes: int, userdata: Any
) -> int:
    _channel_hook(userdata, "on_write_wontblock", None, nbytes)
    return 0


@ffi.def_extern()
def _channel_open_response_function_cb(
    session: Any, channel: Any, is_success: bool, userdata: Any
) -> None:
    _channel_hook(userdata, "on_open_response", None, bool(is_success))


# ---------------------------------------------------------------------------------------------
# Session-level callbacks: the message callback, global requests, event fds.


@ffi.def_extern(error=DEFAULT_REPLY)
def _message_function_cb(session: Any, message: Any, userdata: Any) -> int:
    target: SessionTarget = ffi.from_handle(userdata)
    if target.routed:
        routed = _route(target, message)
        if routed is not None:
            return routed
    hook = target.message_hook
    if hook is None:
        return DEFAULT_REPLY
    msg = SshMessage(message, target.session)
    try:
        handled = target.driver.call("message callback", False, hook, target.session, msg,
                                     target.message_userdata)
    finally:
        msg._invalidate()
    return 0 if handled is True else DEFAULT_REPLY


@ffi.def_extern()
def _global_request_function_cb(session: Any, message: Any, userdata: Any) -> None:
    target: SessionTarget = ffi.from_handle(userdata)
    hook = target.global_hook
    msg = SshMessage(message, target.session)
    try:
        handled = hook is not None and target.driver.call(
            "global request callback", False, hook, target.session, msg,
            target.global_userdata) is True
        if not handled and not msg.replied:
            # With this callback set libssh sends nothing itself: always answer.
            msg.reply_default()
    finally:
        msg._invalidate()


@ffi.def_extern(error=0)
def _event_fd_cb(fd: int, revents: int, userdata: Any) -> int:
    ffi.from_handle(userdata).fire(fd, revents)
    return 0


# ---------------------------------------------------------------------------------------------
# The version split: two server hooks fed from the message path before libssh 0.12.


def _route(target: SessionTarget, message: Any) -> int | None:
    """Give ``message`` to the ``ServerCallbacks`` hook libssh 0.12 would call for it: the
    message callback's result if a hook took it, None if it goes on to the message callback."""
    kind = lib.ssh_message_type(message)
    if kind == lib.SSH_REQUEST_AUTH:
        if "on_auth_kbdint" in target.routed and \
                lib.ssh_message_subtype(message) == lib.SSH_AUTH_METHOD_INTERACTIVE:
            return _route_kbdint(target, message)
    elif kind == lib.SSH_REQUEST_CHANNEL_OPEN and \
            "on_channel_open_request_direct_tcpip" in target.routed and \
            lib.ssh_message_subtype(message) == lib.SSH_CHANNEL_DIRECT_TCPIP:
        return _route_direct_tcpip(target, message)
    return None


def _route_kbdint(target: SessionTarget, message: Any) -> int:
    """``on_auth_kbdint`` for the initial request and every INFO_RESPONSE.  As libssh 0.12:
    SUCCESS and PARTIAL are answered ``ssh_message_auth_reply_success(msg, partial)``, INFO
    with nothing (the hook sent the INFO_REQUEST), anything else with the default reply (a
    USERAUTH_FAILURE listing the session's methods)."""
    server = target.server
    assert server is not None
    hook = server.hooks["on_auth_kbdint"]
    msg = SshMessage(message, target.session)
    try:
        rc = _to_auth(target.driver.call("on_auth_kbdint", DENY_AUTH, hook, target.session,
                                         msg, server.userdata))
    finally:
        msg._invalidate()
    _note_auth(server, rc, target.session.user or "")
    if rc in (lib.SSH_AUTH_SUCCESS, lib.SSH_AUTH_PARTIAL):
        lib.ssh_message_auth_reply_success(message, 1 if rc == lib.SSH_AUTH_PARTIAL else 0)
        return REPLIED
    return REPLIED if rc == lib.SSH_AUTH_INFO else DEFAULT_REPLY


def _route_direct_tcpip(target: SessionTarget, message: Any) -> int:
    """``on_channel_open_request_direct_tcpip``: a channel it returns is confirmed
    (``ssh_message_channel_request_open_reply_accept_channel``); None, a wrong type or an
    exception refuses with the default reply (OPEN_FAILURE)."""
    server = target.server
    assert server is not None
    hook = server.hooks["on_channel_open_request_direct_tcpip"]
    channel = target.driver.call(
        "on_channel_open_request_direct_tcpip", None, hook, target.session,
        _str(lib.ssh_message_channel_request_open_destination(message)),
        int(lib.ssh_message_channel_request_open_destination_port(message)),
        _str(lib.ssh_message_channel_request_open_originator(message)),
        int(lib.ssh_message_channel_request_open_originator_port(message)),
        server.userdata)
    ptr = _channel_ptr(server, channel)
    if ptr == ffi.NULL:
        return DEFAULT_REPLY
    # As libssh 0.12: a failed confirmation is only logged and the message counts as handled
    # (the session is broken then, and the channel stays unopened).
    if lib.ssh_message_channel_request_open_reply_accept_channel(message, ptr) != lib.SSH_OK:
        logger.debug("ssh_message_channel_request_open_reply_accept_channel failed")
    return REPLIED
