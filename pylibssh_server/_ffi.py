# SPDX-License-Identifier: MIT
"""The only module that imports the compiled ``_libssh``: ``ffi``, ``lib``, version and features.

Also owns libssh's log routing: libssh keeps its log level and log callback in thread-local
variables, so every thread that drives libssh calls :func:`ensure_thread_logging` first.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pylibssh_server._libssh import ffi, lib

__all__ = ["features", "ffi", "lib", "libssh_version", "require_feature"]

lib.ssh_init()

logger: logging.Logger = logging.getLogger("pylibssh_server.libssh")

# (feature name, C flag, minimum libssh version that has it)
_FEATURES = (
    ("channel_open_response", lib.PYLIBSSH_HAS_CHANNEL_OPEN_RESPONSE, "0.11.0"),
    ("import_key_str", lib.PYLIBSSH_HAS_IMPORT_KEY_STR, "0.11.0"),
    ("no_more_sessions", lib.PYLIBSSH_HAS_NO_MORE_SESSIONS, "0.11.0"),
    ("sftp_server_callbacks", lib.PYLIBSSH_HAS_SFTP_SERVER_CALLBACKS, "0.11.0"),
    ("server_kbdint_callback", lib.PYLIBSSH_HAS_SERVER_KBDINT_CB, "0.12.0"),
    ("server_direct_tcpip_callback", lib.PYLIBSSH_HAS_SERVER_DIRECT_TCPIP_CB, "0.12.0"),
)
_MIN_VERSION = {name: version for name, _, version in _FEATURES}

#: What the compiled module supports, decided at build time from the libssh headers used.
features: dict[str, bool] = {name: bool(flag) for name, flag, _ in _FEATURES}


def _version_int(text: str) -> int:
    major, minor, patch = (int(p) for p in [*text.split("."), "0", "0"][:3])
    return (major << 16) | (minor << 8) | patch


def libssh_version() -> str:
    """Return the version of the libssh loaded at run time, e.g. ``"0.10.6"``.

    Wraps ``ssh_version(0)`` and drops the crypto backend suffix.
    """
    return ffi.string(lib.ssh_version(0)).decode().split("/")[0]


def header_version() -> str:
    """Return the libssh version whose headers the module was compiled against."""
    v = lib.PYLIBSSH_HEADER_VERSION_INT
    return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"


def runtime_at_least(version: str) -> bool:
    """Whether the loaded libssh is at least ``version`` (``ssh_version`` with a minimum)."""
    return bool(lib.ssh_version(_version_int(version)) != ffi.NULL)


def require_feature(name: str) -> None:
    """Raise ``NotImplementedError`` naming the minimum libssh version if ``name`` is missing."""
    if not features[name]:
        raise NotImplementedError(
            f"{name} needs libssh >= {_MIN_VERSION[name]}; this build uses libssh "
            f"{header_version()} headers"
        )


_LEVEL_TO_LOGGING = {
    0: logging.NOTSET,
    1: logging.WARNING,
    2: logging.INFO,
    3: logging.DEBUG,
    4: logging.DEBUG,
}
_log_state = {"level": 0, "generation": 0}
_thread_state = threading.local()


def set_log_level(level: int) -> None:
    """Set libssh's log verbosity (``SSH_LOG_*``) for every thread that drives libssh."""
    _log_state["level"] = int(level)
    _log_state["generation"] += 1
    ensure_thread_logging()


def ensure_thread_logging() -> None:
    """Install our log callback and the wanted level in the calling thread, once per change."""
    generation = _log_state["generation"]
    if getattr(_thread_state, "generation", -1) == generation:
        return
    _thread_state.generation = generation
    lib.ssh_set_log_callback(lib._log_function_cb)
    lib.ssh_set_log_level(_log_state["level"])


@ffi.def_extern()
def _log_function_cb(priority: int, function: Any, buffer: Any, userdata: Any) -> None:
    # Runs inside libssh calls: must not raise and must not call libssh.
    try:
        level = _LEVEL_TO_LOGGING.get(priority, logging.DEBUG) or logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, "%s", ffi.string(buffer).decode("utf-8", "replace"))
    except Exception:
        pass
