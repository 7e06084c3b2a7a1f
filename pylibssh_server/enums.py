# SPDX-License-Identifier: MIT
"""IntEnum/IntFlag views of libssh constants, with values taken from the compiled headers."""

from __future__ import annotations

import enum

from pylibssh_server._ffi import lib

__all__ = [
    "AuthMethod",
    "AuthStatus",
    "ChannelRequestType",
    "ChannelType",
    "GlobalRequestType",
    "KeyType",
    "LogLevel",
    "PublicKeyState",
    "RequestType",
    "SessionStatus",
]


class AuthMethod(enum.IntFlag):
    """``SSH_AUTH_METHOD_*``: the methods a server advertises (``ssh_set_auth_methods``)."""

    UNKNOWN = lib.SSH_AUTH_METHOD_UNKNOWN
    NONE = lib.SSH_AUTH_METHOD_NONE
    PASSWORD = lib.SSH_AUTH_METHOD_PASSWORD
    PUBLICKEY = lib.SSH_AUTH_METHOD_PUBLICKEY
    HOSTBASED = lib.SSH_AUTH_METHOD_HOSTBASED
    INTERACTIVE = lib.SSH_AUTH_METHOD_INTERACTIVE
    GSSAPI_MIC = lib.SSH_AUTH_METHOD_GSSAPI_MIC

    @classmethod
    def parse(cls, names: str) -> AuthMethod:
        """Parse a comma list such as ``"password,publickey,keyboard-interactive"``."""
        aliases = {
            "none": cls.NONE,
            "password": cls.PASSWORD,
            "publickey": cls.PUBLICKEY,
            "hostbased": cls.HOSTBASED,
            "keyboard-interactive": cls.INTERACTIVE,
            "interactive": cls.INTERACTIVE,
            "gssapi-with-mic": cls.GSSAPI_MIC,
        }
        result = cls.UNKNOWN
        for name in (n.strip().lower() for n in names.split(",")):
            if not name:
                continue
            if name not in aliases:
                raise ValueError(
                    f"unknown auth method {name!r}; choose from {', '.join(sorted(aliases))}"
                )
            result |= aliases[name]
        return result


class AuthStatus(enum.IntEnum):
    """``enum ssh_auth_e``: what auth callbacks return."""

    SUCCESS = lib.SSH_AUTH_SUCCESS
    DENIED = lib.SSH_AUTH_DENIED
    PARTIAL = lib.SSH_AUTH_PARTIAL
    INFO = lib.SSH_AUTH_INFO
    AGAIN = lib.SSH_AUTH_AGAIN
    ERROR = lib.SSH_AUTH_ERROR


class RequestType(enum.IntEnum):
    """``enum ssh_requests_e``: ``ssh_message_type`` values."""

    AUTH = lib.SSH_REQUEST_AUTH
    CHANNEL_OPEN = lib.SSH_REQUEST_CHANNEL_OPEN
    CHANNEL = lib.SSH_REQUEST_CHANNEL
    SERVICE = lib.SSH_REQUEST_SERVICE
    GLOBAL = lib.SSH_REQUEST_GLOBAL


class ChannelType(enum.IntEnum):
    """``enum ssh_channel_type_e``: the subtype of channel-open messages."""

    UNKNOWN = lib.SSH_CHANNEL_UNKNOWN
    SESSION = lib.SSH_CHANNEL_SESSION
    DIRECT_TCPIP = lib.SSH_CHANNEL_DIRECT_TCPIP
    FORWARDED_TCPIP = lib.SSH_CHANNEL_FORWARDED_TCPIP
    X11 = lib.SSH_CHANNEL_X11
    AUTH_AGENT = lib.SSH_CHANNEL_AUTH_AGENT


class ChannelRequestType(enum.IntEnum):
    """``enum ssh_channel_requests_e``: the subtype of channel-request messages."""

    UNKNOWN = lib.SSH_CHANNEL_REQUEST_UNKNOWN
    PTY = lib.SSH_CHANNEL_REQUEST_PTY
    EXEC = lib.SSH_CHANNEL_REQUEST_EXEC
    SHELL = lib.SSH_CHANNEL_REQUEST_SHELL
    ENV = lib.SSH_CHANNEL_REQUEST_ENV
    SUBSYSTEM = lib.SSH_CHANNEL_REQUEST_SUBSYSTEM
    WINDOW_CHANGE = lib.SSH_CHANNEL_REQUEST_WINDOW_CHANGE
    X11 = lib.SSH_CHANNEL_REQUEST_X11


class GlobalRequestType(enum.IntEnum):
    """``enum ssh_global_requests_e``: the subtype of global-request messages."""

    UNKNOWN = lib.SSH_GLOBAL_REQUEST_UNKNOWN
    TCPIP_FORWARD = lib.SSH_GLOBAL_REQUEST_TCPIP_FORWARD
    CANCEL_TCPIP_FORWARD = lib.SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD
    KEEPALIVE = lib.SSH_GLOBAL_REQUEST_KEEPALIVE


class PublicKeyState(enum.IntEnum):
    """``enum ssh_publickey_state_e``: NONE is a probe, VALID a verified signature."""

    ERROR = lib.SSH_PUBLICKEY_STATE_ERROR
    NONE = lib.SSH_PUBLICKEY_STATE_NONE
    VALID = lib.SSH_PUBLICKEY_STATE_VALID
    WRONG = lib.SSH_PUBLICKEY_STATE_WRONG


class KeyType(enum.IntEnum):
    """``enum ssh_keytypes_e`` (the types a server deals with)."""

    UNKNOWN = lib.SSH_KEYTYPE_UNKNOWN
    DSS = lib.SSH_KEYTYPE_DSS
    RSA = lib.SSH_KEYTYPE_RSA
    ECDSA = lib.SSH_KEYTYPE_ECDSA
    ED25519 = lib.SSH_KEYTYPE_ED25519
    ECDSA_P256 = lib.SSH_KEYTYPE_ECDSA_P256
    ECDSA_P384 = lib.SSH_KEYTYPE_ECDSA_P384
    ECDSA_P521 = lib.SSH_KEYTYPE_ECDSA_P521
    SK_ECDSA = lib.SSH_KEYTYPE_SK_ECDSA
    SK_ED25519 = lib.SSH_KEYTYPE_SK_ED25519


class LogLevel(enum.IntEnum):
    """``SSH_LOG_*`` verbosity levels."""

    NONE = lib.SSH_LOG_NONE
    WARN = lib.SSH_LOG_WARN
    INFO = lib.SSH_LOG_INFO
    DEBUG = lib.SSH_LOG_DEBUG
    TRACE = lib.SSH_LOG_TRACE


class SessionStatus(enum.IntFlag):
    """``ssh_get_status`` bits."""

    OK = 0
    CLOSED = lib.SSH_CLOSED
    READ_PENDING = lib.SSH_READ_PENDING
    CLOSED_ERROR = lib.SSH_CLOSED_ERROR
    WRITE_PENDING = lib.SSH_WRITE_PENDING
