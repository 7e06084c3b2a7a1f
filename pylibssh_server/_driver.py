# SPDX-License-Identifier: MIT
"""The driving context of a session: who may call into libssh for it, when, and what happens
to work and exceptions that arise while it is inside libssh.

A :class:`Session` owns its ``ssh_session``; its :class:`Driver` owns everything about
*driving* it.  Every object tied to the session (its channels, event, borrowed messages and
keys, fd pipes, callback structs) keeps a reference to the same driver and uses only the named
API below.  The threading rules, in one place:

1. **One lock per session.**  libssh sessions and their channels are single-threaded, so every
   C call on a session, its channels, its event, a message or key borrowed from one of its
   callbacks takes ``driver.lock`` (a re-entrant :class:`HandoffLock`).
2. **Driving calls are marked.**  A C call that can run callbacks (``ssh_event_dopoll``, the
   key exchange, channel poll/read/write/flush, free) runs inside :meth:`Driver.driving` (the
   outermost one then runs the queued work and re-raises) or :meth:`Driver.marked` (bookkeeping
   only).  Callbacks run on that thread with the lock held: :meth:`Driver.in_callback` is true.
3. **Never free inside a callback.**  Anything that frees what libssh is walking (a channel, an
   event's fds, the session) requested from a callback is queued (:meth:`Driver.defer`) and
   runs, in order, when the outermost driving call returns; a session's own teardown runs last
   (:meth:`Driver.request_teardown`).
4. **Other threads hand over, never race.**  A thread that finds the lock taken wakes the
   driving thread through the wake-up pipe (in the session's event) and waits; the driving loop
   lets waiters in before its next round (:meth:`Driver.let_waiters_in`).  A session a reactor
   drives never waits inside libssh (it polls with timeout 0), so it has no pipe until a
   blocking wait needs one: a wake-up ends the running batch of rounds and tells the reactor.
5. **No deadlock between sessions.**  From inside another session's callback, output and
   teardown never wait for a busy session: :meth:`Driver.call_or_post` posts them to its driving
   thread instead.  Any other wait that would close a cycle of threads waiting for each other's
   locks raises ``RuntimeError``.
6. **A hook's exception is never lost.**  Trampolines and fd callbacks run user code through
   :meth:`Driver.call`: an exception is stored (the first; later ones are logged), ends the
   current batch of poll rounds, and the callback returns its fail-closed value; the outermost
   driving call re-raises it after the queued work ran.
7. **One closing state.**  A close of the session is sticky (:meth:`Driver.mark_closing`); a
   thread that needs the driving thread out of the way for a moment (a disconnect, an event
   close) holds :meth:`Driver.requesting_close`, counted, so two such threads never undo each
   other's request.  :attr:`Driver.closed` is set once the session is freed.
8. **Output is bounded.**  libssh queues every packet in its output buffer whatever the
   socket takes; :attr:`Driver.out_counter` counts what was handed to it since it last drained
   (in C memory: the C pumps count into it too), and writers stop at a limit.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import CoroutineType
from typing import Any, Protocol, TypeVar

from pylibssh_server._ffi import ensure_thread_logging, ffi

__all__ = ["Driver", "Flag", "HandoffLock", "Teardown", "Watcher"]

logger: logging.Logger = logging.getLogger("pylibssh_server")

T = TypeVar("T")

#: ``Driver.wake_r`` of a session without a wake-up pipe yet (-1: the pipe is closed).
_NO_PIPE = -2

#: Guards every driver's wake-up pipe fds and close-requester count: one lock for all of
#: them (each holds it for a write or a count, and a lock per session is ~90 bytes).
#: Re-entrant: a garbage-collected session's __del__ closes its pipe under it, and the
#: collection can run inside any allocation, also while this thread holds it.
_pipes_lock = threading.RLock()

#: Guards the waits-for graph below and every HandoffLock's waiter count.
_graph_lock = threading.Lock()
#: Thread ident -> the HandoffLock that thread is blocked on.
_waiting: dict[int, HandoffLock] = {}
#: Per thread: the drivers whose libssh calls (and so callbacks) the thread is inside.
_driving = threading.local()


_flag_lock = threading.Lock()


class Flag:
    """A ``threading.Event`` whose condition exists only once somebody waits.

    A session has several such flags and waits on them rarely; an Event is a Condition, a
    lock and a deque (about 1 KiB), which a server holding thousands of idle sessions pays
    for each.
    """

    __slots__ = ("_event", "_value")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        event = self._event
        if event is not None:
            event.set()

    def clear(self) -> None:
        self._value = False
        event = self._event
        if event is not None:
            event.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """As ``Event.wait``."""
        if self._value:
            return True
        with _flag_lock:
            event = self._event
            if event is None:
                event = self._event = threading.Event()
                # A set() that read _event before it existed set _value first: seen here.
                if self._value:
                    event.set()
        return event.wait(timeout)


class Watcher(Protocol):
    """What a reactor loop gives a session's :class:`Driver` (see :meth:`Driver.watch`)."""

    def owns_thread(self) -> bool:
        """True on the thread that steps the session (it re-reads the fds after each step)."""

    def touched(self) -> None:
        """Another thread used the session: re-read its fds soon (thread-safe)."""

    def forget(self) -> None:
        """Stop polling the session's fds now: they are about to close (thread-safe)."""

    def fd_removed(self, fd: int) -> None:
        """Stop polling ``fd`` now: its owner removed it and may close it next."""

    def spawn(self, coro: Coroutine[Any, Any, Any], where: str,
              on_error: Callable[[], Any] | None) -> bool:
        """Run a coroutine a hook returned as a task (True), if the loop is asyncio's."""


class LockOwner(Protocol):
    """What a :class:`HandoffLock` calls back (its session's :class:`Driver`)."""

    def wakeup(self) -> None:
        """End the holder's wait inside libssh: a thread wants the lock."""

    def lock_released(self) -> None:
        """After the last release, outside the lock, while :attr:`HandoffLock.watched`."""


class HandoffLock:
    """A re-entrant lock whose holder can be asked to hand it over (a session's lock).

    The thread driving a session holds its lock for the whole ``ssh_event_dopoll`` wait, so
    with a plain ``RLock`` a ``channel.write()`` from another thread waits for the client to
    send something (forever if it is idle), and a polling loop re-takes the lock ahead of
    waiting threads round after round.  Here a thread that finds the lock taken counts itself
    as a waiter and calls ``owner.wakeup()`` (which ends the wait in ``dopoll``); the driving
    loop calls :meth:`let_waiters_in` before its next round.

    A thread whose wait would close a cycle of threads waiting for each other's locks gets
    ``RuntimeError`` instead of waiting (rule 5).
    """

    # The owner, not bound methods of it: two fewer objects for every session.
    __slots__ = ("_count", "_lock", "_no_waiters", "_owner", "_session_owner", "_waiters",
                 "watched")

    def __init__(self, owner: LockOwner) -> None:
        self._lock = threading.RLock()
        self._session_owner = owner
        self._owner: int | None = None  # the holding thread (maintained under _lock)
        self._count = 0
        self._waiters = 0
        #: Set while threads wait (made by the first: most sessions never see one).
        self._no_waiters: Flag | None = None
        #: Call ``owner.lock_released()`` after the last release (a reactor's hook, see
        #: ``Driver.watch``).
        self.watched: bool = False

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
            if self._no_waiters is None:
                self._no_waiters = Flag()
            else:
                self._no_waiters.clear()
            self._waiters += 1  # after the flag: let_waiters_in reads them without the lock
        try:
            self._session_owner.wakeup()
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
        if self._count:
            self._lock.release()
            return
        self._owner = None
        self._lock.release()
        if self.watched:
            self._session_owner.lock_released()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def let_waiters_in(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the threads now waiting have had the lock.

        A no-op for a thread that holds the lock itself (a nested call from a callback).
        """
        no_waiters = self._no_waiters
        if self._waiters and no_waiters is not None and self._owner != threading.get_ident():
            no_waiters.wait(timeout)


class Teardown(enum.IntEnum):
    """What a session's driving thread still has to do to it once its call returns."""

    NONE = 0
    DISCONNECT = 1
    CLOSE = 2


class _Posted:
    """A call another thread posted (rule 5): void once its object was closed meanwhile."""

    __slots__ = ("action",)

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action

    def __call__(self) -> None:
        try:
            self.action()
        except ValueError:
            pass  # its object was closed meanwhile: the call is void, as it would be now


class _Marked:
    """``with driver.marked():``: bookkeeping only."""

    __slots__ = ("_driver",)

    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    def __enter__(self) -> None:
        self._driver._enter()

    def __exit__(self, *exc: object) -> None:
        self._driver._leave()


class Driver:
    """The driving context of one session (see the module docstring for the rules).

    Owns the session's lock, its wake-up pipe, the call depth and driving thread, the one
    queue of deferred and posted work, the stored exception, the closing state, the
    end-of-batch flag read by the C poll loop and the output counter.

    Args:
        settle: called (lock held, outside callbacks) when the outermost driving call has run
            the queued work, with the teardown requested meanwhile: the session flushes its
            channels' output and performs the teardown.
        wake_pipe: make the wake-up pipe now (else at the first wait that needs it).
        owner: if given, ``settle`` is called as ``settle(owner, teardown)`` (a function and
            its session, which cost less than a bound method kept for each session).
    """

    # A session's driver lives as long as the session: no per-instance dict.
    __slots__ = ("__weakref__", "_c_state", "_closed", "_closing", "_depth",
                 "_exception", "_on_settle", "_owner", "_requesters",
                 "_teardown", "_thread", "_wake_pending", "_wake_w", "_work",
                 "blocking", "channels", "event", "interrupted", "lock", "wake_r", "watcher")

    def __init__(self, settle: Callable[..., None], wake_pipe: bool = True,
                 owner: Any = None) -> None:
        # The pipe first: at the open-files limit it raises EMFILE, and nothing exists yet.
        # Without one now, wake_r is _NO_PIPE until a blocking wait makes it (wake_fd()).
        self.wake_r, self._wake_w = (os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC) if wake_pipe
                                     else (_NO_PIPE, _NO_PIPE))
        #: A wake-up came while there was no pipe: the pipe starts readable.
        self._wake_pending = False
        self.lock = HandoffLock(self)
        self._on_settle = settle
        self._owner = owner
        self._depth = 0
        self._thread: int | None = None
        # A list, not a deque (600 bytes each, per session): the queue is short, and pop(0),
        # append and slice assignment are each atomic under the GIL (other threads append).
        self._work: list[Callable[[], Any]] = []
        self._exception: BaseException | None = None
        self._teardown = Teardown.NONE
        self._closing = False
        self._requesters = 0
        self._closed = Flag()
        #: Set by ``Session.interrupt()``: a non-blocking key exchange gives up.
        self.interrupted = False
        #: The session's blocking mode (``ssh_set_blocking``): blocking calls wait inside
        #: libssh (bounded by the session timeout), non-blocking ones are driven by polls.
        self.blocking = True
        # One C allocation for the session's C state (an owning cdata costs a few hundred
        # bytes each, per session): the stop flags, the output counter (see stop,
        # out_counter) and what a poll batch keeps of stalled pumps (see build_libssh.py).
        self._c_state = ffi.new("struct pylibssh_batch *")
        #: The session's channels, oldest first: flushed after every driving call and
        #: invalidated (newest first) before libssh frees them with the session.
        #: (A shared empty tuple until the first: most idle sessions have none.)
        self.channels: list[Any] | tuple[()] = ()
        #: The ``SessionEvent`` polling the session (and the wake-up pipe), if any.
        self.event: Any = None
        #: The reactor loop watching this session's fds, if any (see :meth:`watch`).
        self.watcher: Watcher | None = None

    # Pointers into _c_state, made when asked (each is an object a session would keep).
    @property
    def stop(self) -> Any:
        """``int *``: [0] ends the current batch of poll rounds (read by
        ``pylibssh_event_dopoll_batch``); [1] the C fd pipes moved bytes in it.  The C pipes
        keep the pointer (the memory lives as long as the driver); it is also the address
        of the whole ``struct pylibssh_batch``."""
        return ffi.cast("int *", self._c_state)

    @property
    def out_counter(self) -> Any:
        """``long long *``: bytes handed to libssh's output buffer since it last drained
        (rule 8); the C pumps keep the pointer and count into it."""
        return ffi.addressof(self._c_state, "unflushed")

    def add_channel(self, channel: Any) -> None:
        """Append to :attr:`channels` (lock held)."""
        if isinstance(self.channels, list):
            self.channels.append(channel)
        else:
            self.channels = [channel]

    def forget_channel(self, channel: Any) -> None:
        """Remove from :attr:`channels` if there (lock held)."""
        channels = self.channels
        if isinstance(channels, list) and channel in channels:
            channels.remove(channel)

    def take_channels(self) -> list[Any] | tuple[()]:
        """Empty :attr:`channels`, returning what it held (the session is freeing them)."""
        channels, self.channels = self.channels, ()
        return channels

    # ---- a reactor watching the session's fds -------------------------------------------
    def watch(self, watcher: Watcher | None) -> None:
        """Let ``watcher`` (a reactor loop) know what changes the fds it polls for us.

        A reactor polls the session's socket, wake-up pipe and extra fds itself, and asks
        for their events after each of its steps.  Between steps two things change them
        behind its back: another thread using the session (output queued while no poll was
        running makes libssh want POLLOUT), and fds about to close (the socket in
        ``ssh_disconnect``/``ssh_free``, an extra fd its owner removes first).
        """
        self.watcher = watcher
        self.lock.watched = watcher is not None

    def lock_released(self) -> None:
        """The session's lock was released for the last time (see :class:`HandoffLock`)."""
        watcher = self.watcher
        if watcher is not None and not watcher.owns_thread():
            watcher.touched()

    def fds_closing(self) -> None:
        """libssh is about to close the socket (and the wake-up pipe will follow)."""
        watcher = self.watcher
        if watcher is not None:
            watcher.forget()

    # ---- wake-up pipe (rule 4) ----------------------------------------------------------
    def wakeup(self) -> None:
        """Make a concurrent ``dopoll``/key exchange wait return early (thread-safe)."""
        # Under its own lock: a closed pipe's fd number may be reused by another socket.
        with _pipes_lock:
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"\x01")
                except OSError:
                    pass  # a wake-up is already pending
                return
            if self._wake_w == _NO_PIPE:
                self._wake_pending = True  # for a blocking wait that makes the pipe later
        watcher = self.watcher
        if watcher is not None:
            # What the pipe's fd callback does inside a poll (SessionEvent._woken), then the
            # reactor steps the session.
            if self.handover_wanted:
                self.end_batch()
            watcher.touched()

    def wake_fd(self) -> int:
        """The wake-up pipe's read end, made now if the session has none yet (before a wait
        that a wake-up must end); -1 once closed."""
        with _pipes_lock:
            if self.wake_r == _NO_PIPE:
                self.wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                if self._wake_pending:
                    self._wake_pending = False
                    os.write(self._wake_w, b"\x01")
            return self.wake_r

    def drain_wakeups(self) -> None:
        """Empty the wake-up pipe (the driving thread, after a wait)."""
        with _pipes_lock:
            if self.wake_r < 0:
                return
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except OSError:
                pass

    @property
    def wake_closed(self) -> bool:
        """True once the wake-up pipe was closed (the session is freed or failed to start)."""
        return self.wake_r == -1

    def close_wake_pipe(self) -> None:
        """Close the wake-up pipe (after the session left its event); idempotent."""
        with _pipes_lock:
            fds = (self.wake_r, self._wake_w)
            self.wake_r = self._wake_w = -1
            self._wake_pending = False
            for fd in fds:
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def let_waiters_in(self, timeout: float = 0.5) -> None:
        """Before a new poll: threads waiting for the lock go first (they woke the poll)."""
        self.lock.let_waiters_in(timeout)

    @property
    def waiters(self) -> int:
        """Threads waiting for the lock right now."""
        return self.lock.waiters

    # ---- driving calls (rule 2) ---------------------------------------------------------
    def in_callback(self) -> bool:
        """True if the calling thread is inside a libssh call on this session."""
        return self._depth > 0 and self._thread == threading.get_ident()

    def _enter(self) -> None:
        if self._depth == 0:
            self._thread = threading.get_ident()
            ensure_thread_logging()
            _driving.__dict__.setdefault("drivers", []).append(self)
        self._depth += 1

    def _leave(self) -> bool:
        self._depth -= 1
        if self._depth:
            return False
        self._thread = None
        _driving.drivers.remove(self)
        return True

    def driving(self) -> Driver:
        """Around a C call that may run callbacks (lock held by the caller).  The outermost
        one then runs the queued work, settles, and re-raises a stored exception."""
        return self  # the state is the driver's: the driver is the context manager

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, *exc: object) -> None:
        if self._leave():
            self._finish_driving()

    def marked(self) -> _Marked:
        """Around a C call that may run callbacks, bookkeeping only: queued work and the
        stored exception wait for the enclosing (or the next) driving call."""
        return _Marked(self)

    def _finish_driving(self) -> None:
        if self._work:
            self.run_queue()
        teardown, self._teardown = self._teardown, Teardown.NONE
        try:
            if self._owner is None:
                self._on_settle(teardown)
            else:
                self._on_settle(self._owner, teardown)
        except BaseException as exc:
            self.record(exc, "settling after a driving call")
        stored, self._exception = self._exception, None
        if stored is not None:
            raise stored

    # ---- the stored exception (rule 6) --------------------------------------------------
    def call(self, where: str, fail: T, hook: Callable[..., T], *args: Any) -> T:
        """Run user code from a callback: its result, or ``fail`` if it raised (stored).

        A libssh call nobody marked as driving (any call that flushes can dispatch packets)
        still runs callbacks: the session is marked busy around the hook, so closes inside it
        are deferred instead of freeing what libssh is walking.
        """
        ran, result = self._run_hook(where, hook, args)
        if not ran:
            return fail
        if isinstance(result, CoroutineType):
            # libssh needs this hook's answer now: a coroutine cannot give it.
            result.close()
            self.record(TypeError(f"{where} must answer at once: it cannot be a coroutine "
                                  "(only hooks whose answer is 'accepted' or nothing can)"),
                        where)
            return fail
        return result  # type: ignore[no-any-return]

    def call_spawning(self, where: str, fail: T, ok: T, on_error: Callable[[], Any] | None,
                      hook: Callable[..., Any], *args: Any) -> Any:
        """:meth:`call` for a hook that may be a coroutine function (on the asyncio reactor):
        its coroutine runs as a task, and libssh hears ``ok`` at once.  A task's exception
        is logged and ``on_error()`` runs (a channel hook's channel is closed)."""
        ran, result = self._run_hook(where, hook, args)
        if not ran:
            return fail
        if not isinstance(result, CoroutineType):
            return result
        watcher = self.watcher
        if watcher is None or not watcher.spawn(result, where, on_error):
            result.close()
            self.record(TypeError(f"{where} returned a coroutine: coroutine hooks need the "
                                  "asyncio reactor (pylibssh_server.aio)"), where)
            return fail
        return ok

    def _run_hook(self, where: str, hook: Callable[..., Any],
                  args: tuple[Any, ...]) -> tuple[bool, Any]:
        """``(True, hook(*args))``, or ``(False, None)`` with the exception stored."""
        outermost = self._depth == 0
        if outermost:
            self._enter()
        try:
            return True, hook(*args)
        except BaseException as exc:
            self.record(exc, where)
            return False, None
        finally:
            if outermost:
                self._leave()

    def record(self, exc: BaseException, where: str) -> None:
        """Store ``exc`` for the driving call to re-raise and end the batch of poll rounds."""
        self.end_batch()
        if self._exception is None:
            self._exception = exc
            logger.debug("exception in %s, re-raised from the driving call", where)
        else:
            logger.error("further exception in %s (first one is re-raised)", where,
                         exc_info=exc)

    def end_batch(self) -> None:
        """Make the C poll loop return after the current round."""
        self.stop[0] = 1

    def begin_batch(self) -> Any:
        """Reset the end-of-batch flag before a poll; returns it for the C loop."""
        stop = self.stop
        stop[0] = 0
        # After the reset: a thread that asked for the lock or a close just before it has its
        # batch of one round (its wake-up, without a pipe, set the flag before the reset).
        if self.handover_wanted:
            stop[0] = 1
        return stop

    # ---- queued work (rules 3 and 5) ----------------------------------------------------
    def defer(self, action: Callable[[], Any]) -> None:
        """Run ``action`` when the outermost driving call returns (lock held, in order)."""
        self._work.append(action)

    def request_teardown(self, teardown: Teardown) -> None:
        """From a callback: disconnect or close the session once the driving call returns,
        after all other queued work."""
        self._teardown = max(self._teardown, teardown)

    def run_queue(self) -> None:
        """Run queued work, oldest first (lock held, outside callbacks); work queued while
        it runs runs too (bounded: a channel close can fire callbacks that queue more)."""
        queue = self._work
        for _ in range(10000):
            if not queue:
                return
            action = queue.pop(0)
            try:
                action()
            except BaseException as exc:
                self.record(exc, "deferred action")
        logger.error("deferred work keeps queueing more: %d left for the next call",
                     len(queue))

    def _run_posted(self) -> None:
        """Inside a callback only the posted calls may run (they handle callbacks themselves);
        deferred frees keep their place for the driving call's return."""
        work = self._work
        if not any(isinstance(a, _Posted) for a in work):
            return
        # pop(0) and a slice assignment at the front only: other threads post (append)
        # without the lock, so a copy-then-clear could drop a call posted in between.  The
        # deferred work goes back in front, in its order, before the posted calls run and
        # perhaps defer more.
        kept: list[Callable[[], Any]] = []
        posted: list[Callable[[], Any]] = []
        for _ in range(len(work)):
            action = work.pop(0)
            (posted if isinstance(action, _Posted) else kept).append(action)
        work[0:0] = kept
        for action in posted:
            action()

    @property
    def has_queued(self) -> bool:
        """True while queued work waits (a fast-path check for callers)."""
        return bool(self._work)

    def call_or_post(self, action: Callable[[], Any],
                     check: Callable[[], Any] | None = None) -> bool:
        """Run ``action`` under the lock, after the work queued before it.

        From inside another session's callback, while this session's lock is busy, ``action``
        is posted instead (after ``check()``, which may raise) and this session's driving
        thread is woken: it runs posted calls when its current poll returns.  Two sessions
        whose hooks write to or close each other's channels would otherwise each hold their
        own lock and wait for the other's forever.  Returns False if posted.
        """
        if not self.lock.acquire(not self.inside_another()):
            if check is not None:
                check()
            self._work.append(_Posted(action))
            self.wakeup()
            return False
        try:
            if self._work:
                if self.in_callback():
                    self._run_posted()
                else:
                    self.run_queue()
            action()
        finally:
            self.lock.release()
        return True

    def inside_another(self) -> bool:
        """True if the calling thread is inside a libssh call of another session (it holds
        that session's lock: waiting for this one could close a deadlock cycle)."""
        return any(other is not self for other in getattr(_driving, "drivers", ()))

    # ---- closing state (rule 7) ---------------------------------------------------------
    @property
    def close_requested(self) -> bool:
        """True once the session is closing or closed, or while a thread needs the driving
        thread out of the way (see :meth:`requesting_close`)."""
        return self._closing or self._requesters > 0  # mark_closed() sets _closing too

    @property
    def closing(self) -> bool:
        """True once ``close()`` was called (sticky; a disconnect or an event close in
        progress is only :attr:`close_requested`)."""
        return self._closing

    @property
    def handover_wanted(self) -> bool:
        """True while a thread closing the session or waiting for its lock needs the driving
        thread to end its batch of poll rounds."""
        return self.close_requested or self.lock.waiters > 0

    def mark_closing(self) -> None:
        """The session is being closed: sticky, and the driving thread is woken."""
        self._closing = True
        self.wakeup()

    @contextlib.contextmanager
    def requesting_close(self) -> Iterator[None]:
        """While held, the driving thread ends its batch and yields the lock at its next
        round; concurrent requesters are counted (none undoes another's request)."""
        with _pipes_lock:
            self._requesters += 1
        self.wakeup()
        try:
            yield
        finally:
            with _pipes_lock:
                self._requesters -= 1

    def mark_closed(self) -> None:
        """The session is freed: drop queued work, close the pipe, release waiters."""
        self._closing = True
        self._work.clear()
        self._teardown = Teardown.NONE
        self.close_wake_pipe()
        self._closed.set()

    @property
    def closed(self) -> bool:
        """True once the session was freed."""
        return self._closed.is_set()

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the session is freed (at most ``timeout`` s)."""
        return self._closed.wait(timeout)

    # ---- output budget (rule 8) ---------------------------------------------------------
    @property
    def out_unflushed(self) -> int:
        """Bytes handed to libssh's output buffer since it was last seen empty."""
        return int(self._c_state.unflushed)

    @out_unflushed.setter
    def out_unflushed(self, value: int) -> None:
        self._c_state.unflushed = value
