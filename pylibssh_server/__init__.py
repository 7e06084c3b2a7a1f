# SPDX-License-Identifier: MIT
"""pylibssh_server: Python bindings to the libssh server API, and a DemoServer for tests.

The classes follow LibSSH.jl: :class:`Bind` listens and accepts, each client is a
:class:`Session` driven by a :class:`SessionEvent`, requests reach Python through
:class:`ServerCallbacks`, :class:`ChannelCallbacks` or a message callback, and data flows through
:class:`SshChannel`.  Host and user keys are :class:`SshKey`.
"""

# Registers the extern "Python" trampolines libssh calls (and is imported by nothing else).
from pylibssh_server import _trampolines  # noqa: F401
from pylibssh_server._ffi import features, header_version, libssh_version, set_log_level
from pylibssh_server.bind import Bind, listen
from pylibssh_server.callbacks import ChannelCallbacks, ServerCallbacks
from pylibssh_server.channel import SshChannel
from pylibssh_server.enums import (
    AuthMethod,
    AuthStatus,
    ChannelRequestType,
    ChannelType,
    GlobalRequestType,
    KeyType,
    LogLevel,
    PublicKeyState,
    RequestType,
    SessionStatus,
)
from pylibssh_server.errors import KeyExchangeError, LibSSHError, SshKeyError
from pylibssh_server.event import POLLERR, POLLHUP, POLLIN, POLLOUT, SessionEvent
from pylibssh_server.keys import (
    AuthorizedKey,
    KeyOptions,
    SshKey,
    parse_authorized_key_entries,
    parse_authorized_keys,
)
from pylibssh_server.message import SshMessage
from pylibssh_server.pipe import ChannelPump, ChannelSink
from pylibssh_server.reactor import DONE, Flag, Job, Reactor, ServedSession, StepResult
from pylibssh_server.session import Session

__version__ = "0.1.0"

__all__ = [
    "DONE",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLOUT",
    "AuthMethod",
    "AuthStatus",
    "AuthorizedKey",
    "Bind",
    "ChannelCallbacks",
    "ChannelPump",
    "ChannelRequestType",
    "ChannelSink",
    "ChannelType",
    "Flag",
    "GlobalRequestType",
    "Job",
    "KeyExchangeError",
    "KeyOptions",
    "KeyType",
    "LibSSHError",
    "LogLevel",
    "PublicKeyState",
    "Reactor",
    "RequestType",
    "ServedSession",
    "ServerCallbacks",
    "Session",
    "SessionEvent",
    "SessionStatus",
    "SshChannel",
    "SshKey",
    "SshKeyError",
    "SshMessage",
    "StepResult",
    "__version__",
    "features",
    "header_version",
    "libssh_version",
    "listen",
    "parse_authorized_key_entries",
    "parse_authorized_keys",
    "set_log_level",
]
