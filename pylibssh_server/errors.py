# SPDX-License-Identifier: MIT
"""Exceptions and the ``check_rc``/``check_ptr`` helpers that name the failing C call."""

from __future__ import annotations

from typing import Any

from pylibssh_server._ffi import ffi, lib

__all__ = [
    "KeyExchangeError",
    "LibSSHError",
    "SshKeyError",
    "check_ptr",
    "check_rc",
    "get_error",
]


class LibSSHError(Exception):
    """A libssh call failed; the message names the C function and libssh's own error text."""

    def __init__(self, message: str, *, function: str | None = None, code: int | None = None):
        super().__init__(message)
        self.function = function
        self.code = code


class KeyExchangeError(LibSSHError):
    """``ssh_handle_key_exchange`` failed (the client went away, timed out or spoke garbage)."""


class SshKeyError(LibSSHError):
    """A key could not be generated, imported or exported (bad file, wrong passphrase, ...)."""



def get_error(obj: Any) -> str:
    """Return ``ssh_get_error(obj)`` for a live ``ssh_session``/``ssh_bind`` pointer."""
    if obj is None or obj == ffi.NULL:
        return ""
    return ffi.string(lib.ssh_get_error(obj)).decode("utf-8", "replace")


def check_rc(
    rc: int,
    obj: Any,
    function: str,
    *,
    exc: type[LibSSHError] = LibSSHError,
    ok: tuple[int, ...] = (0,),
) -> int:
    """Raise ``exc`` naming ``function`` and libssh's message unless ``rc`` is in ``ok``."""
    if rc in ok:
        return rc
    detail = get_error(obj)
    message = f"{function} failed (rc={rc})" + (f": {detail}" if detail else "")
    raise exc(message, function=function, code=rc)


def check_ptr(ptr: Any, function: str, obj: Any = None) -> Any:
    """Raise ``LibSSHError`` naming ``function`` if ``ptr`` is NULL, else return it."""
    if ptr == ffi.NULL:
        detail = get_error(obj) if obj is not None else ""
        message = f"{function} returned NULL" + (f": {detail}" if detail else "")
        raise LibSSHError(message, function=function)
    return ptr
