# SPDX-License-Identifier: MIT
"""Exceptions and the ``check_rc``/``check_ptr`` helpers that name the failing C call.

The rule: every libssh failure is raised through :func:`check_rc` (a return code) or
:func:`check_ptr` (a NULL pointer), as :class:`LibSSHError` or the subclass callers branch
on.  The exception's ``function`` names the C call and ``code`` holds its return code; the
message names the C call (unless the caller gives wording that users already rely on) and
ends with libssh's own message (``ssh_get_error``) when the call has an object that keeps
one.  Misuse of the API (a bad argument, a closed object) is not a libssh failure: it raises
a built-in ``ValueError``/``TypeError`` before any C call.
"""

from __future__ import annotations

from collections.abc import Container
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
    """A libssh call failed; the message names the C function and libssh's own error text.

    Attributes:
        function: the C function that failed, e.g. ``"ssh_bind_options_set"``.
        code: its return code (None for a NULL pointer).
    """

    def __init__(self, message: str, *, function: str | None = None, code: int | None = None):
        super().__init__(message)
        self.function = function
        self.code = code


class KeyExchangeError(LibSSHError):
    """``ssh_handle_key_exchange`` failed (the client went away, timed out or spoke garbage)."""


class SshKeyError(LibSSHError):
    """A key could not be generated, imported or exported (bad file, wrong passphrase, ...)."""


def get_error(obj: Any) -> str:
    """Return libssh's last error message for ``obj`` (``ssh_get_error``).

    Args:
        obj: a live ``ssh_session``/``ssh_bind`` pointer, or an object with a public
            ``get_error()`` method (:class:`Session`, :class:`Bind`).

    Returns:
        The message, or ``""`` for None, NULL or an object closed meanwhile.
    """
    if obj is None:
        return ""
    if not hasattr(type(obj), "get_error"):  # a cdata pointer
        if obj == ffi.NULL:
            return ""
        return ffi.string(lib.ssh_get_error(obj)).decode("utf-8", "replace")
    try:
        return str(obj.get_error())
    except ValueError:  # closed by another thread: reporting the failure must not fail
        return ""


def _error(exc: type[LibSSHError], head: str, obj: Any, function: str,
           code: int | None) -> LibSSHError:
    detail = get_error(obj)
    return exc(head + (f": {detail}" if detail else ""), function=function, code=code)


def check_rc(
    rc: int,
    obj: Any,
    function: str,
    *,
    exc: type[LibSSHError] = LibSSHError,
    ok: Container[int] = (0,),
    message: str | None = None,
) -> int:
    """Return ``rc`` if it is in ``ok``; otherwise raise ``exc`` naming ``function``.

    Args:
        rc: the C call's return code.
        obj: where libssh keeps the error text (see :func:`get_error`); None for calls that
            keep none (the ``ssh_pki_*`` functions only log theirs).
        function: the C function's name, e.g. ``"ssh_bind_listen"``.
        exc: the exception class.
        ok: the codes that mean success.
        message: replaces the default ``"<function> failed (rc=<rc>)"``.

    Returns:
        ``rc``.

    Raises:
        LibSSHError: ``exc``, with ``function``, ``code=rc`` and libssh's message appended.
    """
    if rc in ok:
        return rc
    raise _error(exc, f"{function} failed (rc={rc})" if message is None else message, obj,
                 function, rc)


def check_ptr(
    ptr: Any,
    function: str,
    obj: Any = None,
    *,
    exc: type[LibSSHError] = LibSSHError,
    message: str | None = None,
) -> Any:
    """Return ``ptr`` unless it is NULL; then raise ``exc`` naming ``function``.

    Args:
        ptr: the pointer the C call returned.
        function: the C function's name, e.g. ``"ssh_event_new"``.
        obj: where libssh keeps the error text (see :func:`get_error`), if anywhere.
        exc: the exception class.
        message: replaces the default ``"<function> returned NULL"``.

    Returns:
        ``ptr``.

    Raises:
        LibSSHError: ``exc``, with ``function`` and libssh's message appended.
    """
    if ptr == ffi.NULL:
        raise _error(exc, f"{function} returned NULL" if message is None else message, obj,
                     function, None)
    return ptr
