# SPDX-License-Identifier: MIT
"""The one base class for wrappers that own (or borrow) a libssh pointer."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Union

from pylibssh_server._ffi import ffi

__all__ = ["Handle", "HandoffLock"]


#: Guards the waits-for graph below and every HandoffLock's waiter count.
_graph_lock = threading.Lock()
#: Thread ident -> the HandoffLock that thread is blocked on.
_waiting: dict[int, HandoffLock] = {}


class HandoffLock:
    """A re-entrant lock whose holder can be asked to hand it over (a session's lock).

    The thread driving a session holds its lock for the whole ``ssh_event_dopoll`` wait, so
    with a plain ``RLock`` a ``channel.write()`` from another thread waits for the client to
    send something (forever if it is idle), and a polling loop re-takes the lock ahead of
    waiting threads round after round.  Here a thread that finds the lock taken counts itself
    as a waiter and calls ``wake`` (which ends the wait in ``dopoll``); the driving loop calls
    :meth:`let_waiters_in` before its next round.

    Callbacks run with their session's lock held, so two sessions' hooks that each wait for
    the other's session would deadlock.  Output and teardown calls avoid that by posting
    (``Session._lock_or_post``); for anything else, a thread whose wait would close a cycle
    of threads waiting for each other's locks gets ``RuntimeError`` instead of waiting.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._lock = threading.RLock()
        self._wake = wake
        self._owner: int | None = None  # the holding thread (maintained under _lock)
        self._count = 0
        self._waiters = 0
        self._no_waiters = threading.Event()
        self._no_waiters.set()

    @property
    def waiters(self) -> int:
        """Threads blocked in :meth:`acquire` right now."""
        return self._waiters

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``RLock.acquire``; while waiting, asks the holder to hand the lock over."""
        if not self._lock.acquire(False) and (not blocking or not self._wait(timeout)):
            return False
        self._count += 1
        if self._count == 1:
            self._owner = threading.get_ident()
        return True

    def _wait(self, timeout: float) -> bool:
        me = threading.get_ident()
        with _graph_lock:
            if self._closes_cycle(me):
                raise RuntimeError(
                    "waiting for this session would deadlock: its thread waits for a session "
                    "this thread holds (a call from inside another session's callback)")
            _waiting[me] = self
            self._waiters += 1
            self._no_waiters.clear()
        try:
            self._wake()
            return self._lock.acquire(True, timeout)
        finally:
            with _graph_lock:
                del _waiting[me]
                self._waiters -= 1
                if not self._waiters:
                    self._no_waiters.set()

    def _closes_cycle(self, me: int) -> bool:
        """True if this lock's holder is (through other holders) waiting for ``me``."""
        owner = self._owner
        for _ in range(len(_waiting) + 1):
            if owner is None:
                return False
            if owner == me:
                return True
            lock = _waiting.get(owner)
            if lock is None:
                return False
            owner = lock._owner
        return False

    def release(self) -> None:
        """As ``RLock.release``."""
        self._count -= 1
        if not self._count:
            self._owner = None
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def let_waiters_in(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the threads now waiting have had the lock.

        A no-op for a thread that holds the lock itself (a nested call from a callback).
        """
        if self._waiters and self._owner != threading.get_ident():
            self._no_waiters.wait(timeout)


Lock = Union["threading.RLock", HandoffLock]


class Handle:
    """Base for owning wrappers: a locked, idempotent ``close()``, a context manager, and ``_c``.

    Subclasses implement ``_free(ptr)`` (called once, under the lock) and may override
    ``_lock_for_instance`` to share a lock with a parent (a channel uses its session's lock,
    because libssh sessions and their channels are single-threaded objects).

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
