# SPDX-License-Identifier: MIT
"""What libssh's C callback structs hold and point at.

Below the wrappers (imports only ``_ffi``): the owned C structs, one explicit table per C
struct mapping hook names to its fields, and the *targets*, the objects their ``userdata``
handles point to.  A trampoline (``_trampolines.py``) reads only a target: the hooks, the
user's ``userdata``, the session, channel and :class:`~pylibssh_server._driver.Driver` they
belong to.  The hook containers the user sees (``ServerCallbacks``, ``ChannelCallbacks``)
subclass the tables here and add only their typed constructors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any, ClassVar, Optional

from pylibssh_server._ffi import features, ffi, lib, require_feature

__all__ = [
    "CHANNEL_FIELDS",
    "SERVER_FIELDS",
    "CallbackTable",
    "ChannelTable",
    "ChannelTarget",
    "RemoteState",
    "ServerTable",
    "SessionTarget",
    "Target",
]

Hook = Optional[Callable[..., Any]]

#: ``struct ssh_server_callbacks_struct``: hook name -> C field.
SERVER_FIELDS: Mapping[str, str] = {
    "on_auth_password": "auth_password_function",
    "on_auth_none": "auth_none_function",
    "on_auth_gssapi_mic": "auth_gssapi_mic_function",
    "on_auth_pubkey": "auth_pubkey_function",
    "on_service_request": "service_request_function",
    "on_channel_open_request_session": "channel_open_request_session_function",
    "on_auth_kbdint": "auth_kbdint_function",
    "on_channel_open_request_direct_tcpip": "channel_open_request_direct_tcpip_function",
}

#: ``struct ssh_channel_callbacks_struct``: hook name -> C field.
CHANNEL_FIELDS: Mapping[str, str] = {
    "on_data": "channel_data_function",
    "on_eof": "channel_eof_function",
    "on_close": "channel_close_function",
    "on_signal": "channel_signal_function",
    "on_exit_status": "channel_exit_status_function",
    "on_exit_signal": "channel_exit_signal_function",
    "on_pty_request": "channel_pty_request_function",
    "on_shell_request": "channel_shell_request_function",
    "on_auth_agent_req": "channel_auth_agent_req_function",
    "on_x11_req": "channel_x11_req_function",
    "on_pty_window_change": "channel_pty_window_change_function",
    "on_exec_request": "channel_exec_request_function",
    "on_env_request": "channel_env_request_function",
    "on_subsystem_request": "channel_subsystem_request_function",
    "on_write_wontblock": "channel_write_wontblock_function",
    "on_open_response": "channel_open_response_function",
}

#: Fields older libssh headers lack: the C preamble sets them (feature name, setter).  Where
#: the feature is missing, the server's two are fed from the message path instead (see
#: ``ServerTable._attach``); the channel's open-response has no such path.
_NEWER_FIELDS: Mapping[str, tuple[str, Callable[[Any, int], None]]] = {
    "auth_kbdint_function": ("server_kbdint_callback", lib.pylibssh_server_cb_set_kbdint),
    "channel_open_request_direct_tcpip_function": (
        "server_direct_tcpip_callback", lib.pylibssh_server_cb_set_direct_tcpip),
    "channel_open_response_function": (
        "channel_open_response", lib.pylibssh_channel_cb_set_open_response),
}

#: Server hooks whose C field is missing from this libssh (before 0.12): the session's message
#: callback routes their requests to them (``_trampolines``), with libssh 0.12's semantics.
ROUTED_HOOKS: frozenset[str] = frozenset(
    hook for hook in ("on_auth_kbdint", "on_channel_open_request_direct_tcpip")
    if not features[_NEWER_FIELDS[SERVER_FIELDS[hook]][0]])


#: Hook dicts shared by the targets given the same plain functions: a server holds thousands
#: of sessions with one set of hooks each, and a dict is a few hundred bytes.  Only functions
#: without a closure are shared (module-level ones, whose lifetime the cache cannot stretch);
#: the bound keeps functions made anew for each session from growing it without end.
_SHARED_HOOKS: dict[tuple[tuple[str, int], ...], dict[str, Hook]] = {}
_SHARED_HOOKS_MAX = 64
_shared_hooks_lock = threading.Lock()


def _given_hooks(hooks: Mapping[str, Hook]) -> dict[str, Hook]:
    """The hooks that are set, as a dict to be read only (shared where the functions are)."""
    given: dict[str, Hook] = {name: fn for name, fn in hooks.items() if fn is not None}
    if not all(type(fn) is FunctionType and fn.__closure__ is None for fn in given.values()):
        return given
    # By identity: the cached dict keeps its functions alive, so an id in a key is never
    # another function's.
    key = tuple((name, id(fn)) for name, fn in given.items())
    with _shared_hooks_lock:
        shared = _SHARED_HOOKS.get(key)
        if shared is None:
            if len(_SHARED_HOOKS) >= _SHARED_HOOKS_MAX:
                del _SHARED_HOOKS[next(iter(_SHARED_HOOKS))]  # the oldest
            _SHARED_HOOKS[key] = shared = given
    return shared


class Target:
    """What a callback struct's ``userdata`` handle points to (see the module docstring).

    Attributes are filled in when the struct is attached; until then the trampolines are
    not installed, so libssh never reaches an empty target.
    """

    __slots__ = ("driver", "hooks", "session", "userdata")
    #: The hooks given (not None), by name; read only (it may be shared, see _given_hooks).
    hooks: dict[str, Hook]
    userdata: Any
    session: Any
    driver: Any

    def __init__(self, hooks: dict[str, Hook], userdata: Any) -> None:
        # Only the hooks given (a dict of every name, mostly None, is ~600 bytes a session).
        self.hooks = _given_hooks(hooks)
        self.userdata = userdata
        self.session = None
        self.driver = None


class RemoteState:
    """The peer's EOF and CLOSE for one channel, set by the trampolines (and by a read that
    reaches end of input), read by the channel."""

    __slots__ = ("closed", "eof")
    eof: bool
    closed: bool

    def __init__(self) -> None:
        self.eof = False
        self.closed = False


class ChannelTarget(Target):
    """A channel callback struct's target: also the channel, its ``data_room`` and the
    channel's :class:`RemoteState`."""

    __slots__ = ("channel", "data_room", "remote")
    channel: Any
    data_room: Callable[[int], int] | None
    remote: RemoteState

    def __init__(self, hooks: dict[str, Hook], userdata: Any,
                 data_room: Callable[[int], int] | None) -> None:
        super().__init__(hooks, userdata)
        self.channel = None
        self.data_room = data_room
        self.remote = RemoteState()


class SessionTarget:
    """The target of a session's message and global-request callbacks
    (``ssh_set_message_callback``, ``ssh_callbacks_struct``)."""

    __slots__ = ("driver", "global_hook", "global_userdata", "message_hook",
                 "message_userdata", "routed", "server", "session")
    session: Any
    driver: Any
    message_hook: Hook
    message_userdata: Any
    global_hook: Hook
    global_userdata: Any
    #: The server callbacks' target, and which of its hooks the message path feeds.
    server: Target | None
    routed: frozenset[str]

    def __init__(self, session: Any, driver: Any) -> None:
        self.session = session
        self.driver = driver
        self.message_hook = None
        self.message_userdata = None
        self.global_hook = None
        self.global_userdata = None
        self.server = None
        self.routed = frozenset()

    def clear(self) -> None:
        """Forget the hooks (after ``ssh_free``: libssh calls back no more)."""
        self.message_hook = self.global_hook = None
        self.message_userdata = self.global_userdata = None
        self.server = None
        self.routed = frozenset()


class CallbackTable:
    """Owns one zero-filled C callbacks struct (``size`` set), its target and the target's
    ``userdata`` handle, for as long as libssh may call back."""

    # One table a session (and a channel): no instance dict.
    __slots__ = ("_handle", "_struct", "_target")
    _ctype: ClassVar[str] = ""
    _fields: ClassVar[Mapping[str, str]] = {}
    _target: Target
    _struct: Any
    _handle: Any

    def __init__(self, hooks: dict[str, Hook], target: Target) -> None:
        unknown = set(hooks) - set(self._fields)
        if unknown:
            raise TypeError(f"unknown hook(s) for {type(self).__name__}: {sorted(unknown)}")
        for name, fn in hooks.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, not {type(fn).__name__}")
        self._target = target
        self._struct = ffi.new(self._ctype + " *")
        # ssh_callbacks_init() is a macro: set the size ourselves.
        self._struct.size = ffi.sizeof(self._ctype)
        self._handle = ffi.new_handle(target)
        self._struct.userdata = self._handle

    @property
    def hooks(self) -> dict[str, Hook]:
        """Hook name -> the function given (None where unset: libssh's default applies)."""
        given = self._target.hooks
        return {name: given.get(name) for name in self._fields}

    @property
    def userdata(self) -> Any:
        """The value passed to every hook as its last argument."""
        return self._target.userdata

    def _claim(self, owner: Any, kind: str) -> None:
        current = self._target.session if kind == "Session" else getattr(
            self._target, "channel", None)
        if current is not None and current is not owner:
            raise ValueError(f"these {type(self).__name__} are already set on another {kind}")

    def _install(self, skip: frozenset[str] = frozenset()) -> None:
        for name in self._target.hooks:
            if name not in skip:
                self._set_field(self._fields[name], True)

    def _set_field(self, field: str, on: bool) -> None:
        """Point ``field`` at its trampoline ``_<field>_cb`` (or NULL)."""
        newer = _NEWER_FIELDS.get(field)
        if newer is not None:
            feature, setter = newer
            require_feature(feature)
            setter(self._struct, 1 if on else 0)
        else:
            setattr(self._struct, field, getattr(lib, f"_{field}_cb") if on else ffi.NULL)


_ROUTED: dict[frozenset[str], frozenset[str]] = {}


class ServerTable(CallbackTable):
    """``struct ssh_server_callbacks_struct`` (``ssh_set_server_callbacks``)."""

    __slots__ = ()

    _ctype = "struct ssh_server_callbacks_struct"
    _fields = SERVER_FIELDS

    def _attach(self, session: Any, driver: Any, session_target: SessionTarget) -> Any:
        """Bind to ``session`` and install the trampolines; returns the C struct.  Hooks this
        libssh has no field for go to ``session_target``, for its message path to feed."""
        self._claim(session, "Session")
        target = self._target
        target.session, target.driver = session, driver
        self._install(skip=ROUTED_HOOKS)
        session_target.server = target
        routed = frozenset(hook for hook in ROUTED_HOOKS if target.hooks.get(hook) is not None)
        # One shared object per combination (a frozenset per session adds up on idle servers).
        session_target.routed = _ROUTED.setdefault(routed, routed)
        return self._struct


class ChannelTable(CallbackTable):
    """``struct ssh_channel_callbacks_struct`` (``ssh_set_channel_callbacks``)."""

    __slots__ = ()

    _ctype = "struct ssh_channel_callbacks_struct"
    _fields = CHANNEL_FIELDS
    _target: ChannelTarget

    def _attach(self, channel: Any, session: Any, driver: Any, remote: RemoteState) -> Any:
        """Bind to ``channel`` and install the trampolines; returns the C struct."""
        self._claim(channel, "SshChannel")
        target = self._target
        target.channel, target.session, target.driver = channel, session, driver
        target.remote = remote
        self._install()
        # Always track the peer's EOF and CLOSE, hook or not: SshChannel.close() keeps the
        # channel (and this struct) until the peer's CLOSE has arrived, and is_eof and
        # remote_closed read them.  Without a hook the trampolines only set the flags.
        for hook in ("on_eof", "on_close"):
            if target.hooks.get(hook) is None:
                self._set_field(self._fields[hook], True)
        return self._struct

    def _route_data(self, to_python: bool) -> None:
        """The Python data trampoline on or off (off while a C sink takes the data)."""
        self._set_field("channel_data_function",
                        to_python and self._target.hooks.get("on_data") is not None)
