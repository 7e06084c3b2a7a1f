# SPDX-License-Identifier: MIT
"""The one base class for wrappers that own (or borrow) a libssh pointer."""

from __future__ import annotations

import threading
import warnings
from typing import Any, ClassVar, Union

from pylibssh_server._driver import HandoffLock
from pylibssh_server._ffi import ffi

__all__ = ["Handle", "Lock"]


Lock = Union["threading.RLock", HandoffLock]


class Handle:
    """Base for owning wrappers: a locked, idempotent ``close()``, a context manager, and ``_c``.

    Simple owners (a key) implement ``_free(ptr)``, called once under the lock.  A bind (its
    accept loop and wake-up pipe) and a session with what hangs off it (channels, event)
    override ``close()`` instead: their teardown has an order to keep and may have to wait for
    another thread.  A session's objects pass the session's lock (``Driver.lock``) as ``lock``,
    since libssh sessions and their channels are single-threaded objects.

    Borrowed wrappers (``owning=False``) never free their pointer and refuse ``close()``.
    """

    _kind: ClassVar[str] = "handle"

    def __init__(self, ptr: Any, *, owning: bool = True, lock: Lock | None = None):
        self._lock: Lock = lock if lock is not None else threading.RLock()
        self._ptr = ptr
        self._owning = owning

    @property
    def _c(self) -> Any:
        """The live C pointer, or ``ValueError`` if this object was closed."""
        ptr = self._ptr
        if ptr is None or ptr == ffi.NULL:
            raise ValueError(f"{self._kind} is closed")
        return ptr

    def _holds(self, ptr: Any) -> bool:
        """True while this object holds exactly ``ptr`` (compared, never dereferenced: a child
        asking whether its parent still has the C object it was made for)."""
        return self._ptr is not None and self._ptr == ptr

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran (or the pointer was invalidated by its parent)."""
        return self._ptr is None

    @property
    def owning(self) -> bool:
        """True if this object frees its pointer; False for borrowed wrappers."""
        return self._owning

    def close(self) -> None:
        """Free the C object; idempotent and thread-safe.  Borrowed wrappers raise."""
        if not self._owning:
            raise ValueError(f"cannot close a borrowed {self._kind}")
        with self._lock:
            ptr, self._ptr = self._ptr, None
            if ptr is not None and ptr != ffi.NULL:
                self._free(ptr)

    def _free(self, ptr: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _invalidate(self) -> None:
        """Forget the pointer without freeing it (its parent freed it behind our back)."""
        self._ptr = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owning:
            self.close()

    def __del__(self) -> None:
        # Safety net only: the API is an explicit close().
        if getattr(self, "_owning", False) and getattr(self, "_ptr", None) is not None:
            try:
                warnings.warn(
                    f"unclosed {self._kind} {self!r}", ResourceWarning, stacklevel=2,
                    source=self,
                )
            finally:
                # Under ``-W error::ResourceWarning`` the warning raises: free anyway.
                try:
                    self.close()
                except Exception:
                    pass
