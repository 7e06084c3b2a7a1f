# SPDX-License-Identifier: MIT
"""``Reactor``: many sessions per thread.

A reactor runs one loop per thread (by default one per CPU core, so that crypto still runs
in parallel).  Each loop polls, with one ``epoll``, the fds of every :class:`Job` it owns and
*steps* a job when one of its fds is ready or its timer is due.  A job driving a session
steps it with ``SessionEvent.dopoll(0)``: libssh's rules hold unchanged, because each session
keeps its own ``ssh_event`` and lock (the reactor only decides *when* to poll it), its
callbacks run on the loop's thread, and it is removed from its event before it is freed.

What a job wants polled changes in three ways, and the loop follows each:

- after each step it asks the job (:meth:`Job.poll_set`): libssh wants POLLOUT on the socket
  while its output is not flushed, a C fd pipe wants POLLOUT while its buffer is not empty;
- another thread using the session (a ``channel.write()`` from a worker) makes the loop re-read
  the session's fds soon (``Driver.watch``);
- an fd about to close (``SessionEvent.remove_fd``, the session's socket in
  ``ssh_disconnect``/``ssh_free``) leaves the ``epoll`` at once, from whatever thread, before
  its number can be reused.

Hooks run on a loop thread: a hook that blocks stalls every session of that loop.  Blocking
work goes to :meth:`Reactor.run_blocking` (a thread pool); from there, session and channel
methods may be called directly (they take the session's lock, and the loop is woken to send
what they queued).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Union

from pylibssh_server._driver import Flag  # re-exported: public
from pylibssh_server._ffi import lib
from pylibssh_server.errors import KeyExchangeError

if TYPE_CHECKING:
    from pylibssh_server.event import SessionEvent
    from pylibssh_server.session import Session

__all__ = ["DONE", "Flag", "Job", "Reactor", "ServedSession"]

logger: logging.Logger = logging.getLogger("pylibssh_server")


class _Done:
    def __repr__(self) -> str:
        return "DONE"


#: What :meth:`Job.step` returns when the job is over.
DONE: Final = _Done()

#: Next-step answer of :meth:`Job.step`: seconds until it must run again at the latest
#: (0: as soon as the loop has polled once more), None (only when an fd is ready), or DONE.
StepResult = Union[float, None, _Done]  # (not `|`: evaluated at import, on 3.9 too)

#: ``Job._gone`` while a sync runs: every fd of the job went (it is closing).
_ALL_GONE: set[int] = set()

_POLL_TO_EPOLL = ((lib.POLLIN, select.EPOLLIN), (lib.POLLOUT, select.EPOLLOUT))


def _epoll_mask(events: int) -> int:
    mask = 0
    for poll_bit, epoll_bit in _POLL_TO_EPOLL:
        if events & poll_bit:
            mask |= epoll_bit
    return mask


class Job:
    """Something a reactor loop drives: subclass it and implement :meth:`step`.

    The loop calls :meth:`step` on its thread when one of :meth:`poll_set`'s fds is ready, when
    the time the last step asked for has come, or after :meth:`wake`; then re-reads
    :meth:`poll_set`.  When :meth:`step` returns :data:`DONE` (or raises, which is logged), the
    loop stops polling the job's fds and calls :meth:`finish` once.
    """

    # An idle server holds thousands of jobs: no instance dict (a subclass may add one).
    __slots__ = ("__weakref__", "_due", "_ended", "_finished", "_gone", "_loop", "_on_end",
                 "_registered", "_syncing", "_watched")

    def __init__(self) -> None:
        self._loop: _Loop | None = None
        #: What the epoll holds for the job: fd, mask, fd, mask ... (one small tuple: a dict
        #: would be ~200 bytes more for each of thousands of idle sessions).
        self._registered: tuple[int, ...] = ()
        self._due: float | None = None
        self._ended = False
        #: Called with the job on its loop thread after :meth:`finish` (made on first use:
        #: an idle server holds thousands of jobs).
        self._on_end: list[Callable[[Job], Any]] | None = None
        self._watched: Session | None = None
        #: While the loop reads poll_set (see _Loop._sync): the fds removed meanwhile, or
        #: _ALL_GONE; None outside.
        self._gone: set[int] | None = None
        self._syncing = False
        self._finished = Flag()

    def add_done_callback(self, callback: Callable[[Job], Any]) -> None:
        """Call ``callback(job)`` on the loop thread after :meth:`finish`."""
        if self._on_end is None:
            self._on_end = []
        self._on_end.append(callback)

    @property
    def ended(self) -> bool:
        """True once the job finished (:meth:`finish` ran)."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job finished (from any thread but its loop's); False on
        timeout."""
        return self._finished.wait(timeout)

    def drives(self, session: Session) -> None:
        """Declare that this job steps ``session`` (call it from :meth:`step`): the loop then
        follows what changes the session's fds between steps (another thread's output, the
        socket closing); undone when the job ends."""
        if self._watched is not session:
            self._watched = session
            session._driver.watch(self)

    def new_event(self, session: Session) -> SessionEvent:
        """A :class:`SessionEvent` for ``session`` (after its key exchange), to step with
        ``dopoll(0)``: from the loop's thread, its fast streams wait in C for their next bytes
        while the loop has nothing else ready (``SessionEvent.linger_fd``)."""
        from pylibssh_server.event import SessionEvent  # event imports session, as we do

        event = SessionEvent(session)
        if self._loop is not None:
            event.linger_fd = self._loop.epoll_fd
        return event

    def poll_set(self) -> dict[int, int]:
        """fd -> ``POLLIN``/``POLLOUT`` bits to wait for (default: none)."""
        return {}

    def step(self) -> StepResult:
        """Do what is ready now, without blocking; returns when to run again (see
        :data:`StepResult`)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Once, on the loop thread, after the last step (release what the job holds)."""

    def stop(self) -> None:
        """Ask the job to end soon (any thread): the default wakes it; :meth:`step` should
        then return DONE."""
        self.wake()

    def wake(self) -> None:
        """Step the job soon (thread-safe)."""
        loop = self._loop
        if loop is not None:
            loop.wake(self)

    # ---- Driver watcher protocol (for jobs driving a session) ---------------------------
    def owns_thread(self) -> bool:
        loop = self._loop
        return loop is not None and loop.thread is threading.current_thread()

    def touched(self) -> None:
        self.wake()

    def forget(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.forget(self)
            loop.wake(self)

    def fd_removed(self, fd: int) -> None:
        loop = self._loop
        if loop is not None:
            loop.forget_fd(self, fd)

    def spawn(self, coro: Coroutine[Any, Any, Any], where: str,
              on_error: Callable[[], Any] | None) -> bool:
        """Run a coroutine one of the session's hooks returned (True), if this job's loop is
        an asyncio one (False otherwise)."""
        loop = self._loop
        return loop is not None and loop.spawn(coro, where, on_error)


def _pack(fds: dict[int, int]) -> tuple[int, ...]:
    """``{fd: mask}`` as ``Job._registered`` keeps it."""
    return tuple(x for pair in fds.items() for x in pair)


def _unpack(packed: tuple[int, ...]) -> dict[int, int]:
    return dict(zip(packed[::2], packed[1::2]))


class _Loop:
    """One reactor thread: an epoll over its jobs' fds, their timers, a wake-up pipe."""

    def __init__(self, reactor: Reactor, index: int) -> None:
        self._reactor = reactor
        self._epoll = select.epoll()
        #: Its sessions' SessionEvent.linger_fd: all the loop's work is in this epoll (-1 where
        #: it is not, see aio.py).  Closed only after the loop's last job.
        self.epoll_fd = self._epoll.fileno()
        self._pipe_r, self._pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._pipe_r, select.EPOLLIN)
        # Guards the epoll registrations, the fd owners and the hand-over lists below.
        self._lock = threading.Lock()
        self._fd_owner: dict[int, Job] = {}
        self._incoming: list[Job] = []
        self._woken: set[Job] = set()
        self._jobs: set[Job] = set()
        self._timers: list[tuple[float, int, Job]] = []
        self._seq = 0
        self._stopping = False
        #: Jobs to step again in the next round (their step asked for 0 s).
        self._again: dict[Job, None] = {}
        self.thread = threading.Thread(target=self._run, name=f"pylibssh-reactor-{index}",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def load(self) -> int:
        return len(self._jobs) + len(self._incoming)

    # ---- any thread -----------------------------------------------------------------------
    def add(self, job: Job) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("the reactor is closed")
            job._loop = self
            self._incoming.append(job)
        self.poke()

    def wake(self, job: Job) -> None:
        with self._lock:
            self._woken.add(job)
        self.poke()

    def retire(self) -> None:
        with self._lock:
            self._stopping = True
        self.poke()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            jobs = list(self._jobs) + list(self._incoming)
        for job in jobs:
            try:
                job.stop()
            except Exception:
                logger.exception("reactor: stopping %r", job)
        self.poke()

    def forget(self, job: Job) -> None:
        """Stop polling every fd of ``job`` now (they are about to close)."""
        with self._lock:
            for fd in job._registered[::2]:
                self._drop(job, fd)
            job._registered = ()
            if job._syncing:
                job._gone = _ALL_GONE  # the sync in progress registers nothing

    def forget_fd(self, job: Job, fd: int) -> None:
        with self._lock:
            registered = _unpack(job._registered)
            if registered.pop(fd, None) is not None:
                job._registered = _pack(registered)
                self._drop(job, fd)
            if job._syncing and job._gone is not _ALL_GONE:
                if job._gone is None:
                    job._gone = set()
                job._gone.add(fd)

    def poke(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            os.write(self._pipe_w, b"\x01")

    def _drop(self, job: Job, fd: int) -> None:
        # Lock held.  Only the owner unregisters: the number may belong to a new fd already.
        if self._fd_owner.get(fd) is job:
            del self._fd_owner[fd]
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    # ---- the loop thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._iterate(block=True):
                pass
        except BaseException:
            logger.exception("reactor loop failed: its sessions are closed")
            raise
        finally:
            self._shut_down()

    def _iterate(self, block: bool) -> bool:
        """One round: take the jobs added and woken, poll the fds (waiting, with ``block``,
        until one is ready or a timer is due), step every job that is ready.  False once
        the loop is stopping and has no job left."""
        with self._lock:
            incoming, self._incoming = self._incoming, []
            woken, self._woken = self._woken, set()
            stopping = self._stopping
        ready, self._again = self._again, {}
        for job in incoming:
            self._jobs.add(job)
            ready[job] = None
        for job in woken:
            if job in self._jobs:
                ready[job] = None
        if stopping and not self._jobs and not ready:
            return False
        timeout = 0.0 if ready or not block else self._next_timeout()
        try:
            events = self._epoll.poll(timeout)
        except InterruptedError:
            events = []
        for fd, _ in events:
            if fd == self._pipe_r:
                with contextlib.suppress(OSError):
                    while os.read(self._pipe_r, 4096):
                        pass
                continue
            owner = self._fd_owner.get(fd)
            if owner is not None:
                ready[owner] = None
        self._due_timers(ready)
        for job in ready:
            if job in self._jobs and self._step(job) == 0:
                self._again[job] = None
        return True

    def _shut_down(self) -> None:
        """End every job still here (their sessions close) and release the loop's fds."""
        with self._lock:
            self._stopping = True
            leftover, self._incoming = self._incoming, []
        for job in leftover:
            self._jobs.add(job)
        for job in list(self._jobs):
            self._end(job)
        self._epoll.close()
        for fd in (self._pipe_r, self._pipe_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def spawn(self, coro: Coroutine[Any, Any, Any], where: str,
              on_error: Callable[[], Any] | None) -> bool:
        """Run a coroutine a hook returned: only an asyncio loop can (False here)."""
        return False

    def _next_timeout(self) -> float:
        timers = self._timers
        while timers:
            when, _, job = timers[0]
            if job._due != when or job not in self._jobs:
                heapq.heappop(timers)  # stale: the job asked again since, or ended
                continue
            return max(0.0, when - time.monotonic())
        return -1.0

    def _due_timers(self, ready: dict[Job, None]) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            when, _, job = heapq.heappop(timers)
            if job._due == when and job in self._jobs:
                job._due = None
                ready[job] = None

    def _step(self, job: Job) -> float | None:
        try:
            result = job.step()
        except Exception:
            logger.exception("reactor: %r failed", job)
            result = DONE
        if isinstance(result, _Done):
            self._end(job)
            return None
        self._sync(job)
        if result is None:
            job._due = None
            return None
        if result <= 0:
            job._due = None
            return 0
        # "At the latest": an earlier timer already set stands (one step too many is
        # harmless), so a job stepped often keeps one heap entry, not one per step.
        when = time.monotonic() + result
        if job._due is None or when < job._due:
            job._due = when  # an entry it replaces goes stale (see _next_timeout)
            self._seq += 1
            heapq.heappush(self._timers, (when, self._seq, job))
        return result

    def _sync(self, job: Job) -> None:
        """Make the epoll registrations of ``job`` what its :meth:`Job.poll_set` says.

        An fd may be removed and closed by another thread while ``poll_set`` runs, and its
        number handed to another job's new fd at once: what went meanwhile (``_gone``,
        filled by forget/forget_fd) is not registered, and the job is stepped again to
        look once more.
        """
        # A plain store (forget/forget_fd read it under the lock): one that ran before it
        # removed its fds from what poll_set reports first.
        job._syncing = True
        try:
            wanted = {fd: mask for fd, events in job.poll_set().items()
                      if fd >= 0 and (mask := _epoll_mask(events))}
        except Exception:
            logger.exception("reactor: %r poll_set failed", job)
            wanted = {}
        if job._gone is None and _pack(wanted) == job._registered:
            # Nothing changed (most steps): no lock, no epoll call.
            job._syncing = False
            if job._gone is None:
                return
        with self._lock:
            gone, job._gone, job._syncing = job._gone, None, False
            if gone is not None:
                self._woken.add(job)
                wanted = {} if gone is _ALL_GONE else {
                    fd: mask for fd, mask in wanted.items() if fd not in gone}
            old = _unpack(job._registered)
            for fd in old.keys() - wanted.keys():
                self._drop(job, fd)
            for fd, mask in list(wanted.items()):
                if (old.get(fd) != mask or self._fd_owner.get(fd) is not job) \
                        and not self._register(job, fd, mask):
                    del wanted[fd]  # closed meanwhile: the next sync sees it gone
            job._registered = _pack(wanted)

    def _register(self, job: Job, fd: int, mask: int) -> bool:
        epoll = self._epoll
        try:
            if self._fd_owner.get(fd) is job:
                try:
                    epoll.modify(fd, mask)
                except FileNotFoundError:  # closed and reopened under the same number
                    epoll.register(fd, mask)
            else:
                # Another job's fd of that number was closed (the kernel dropped it).
                try:
                    epoll.register(fd, mask)
                except FileExistsError:
                    epoll.modify(fd, mask)
        except OSError as exc:
            logger.debug("reactor: fd %d of %r cannot be polled: %s", fd, job, exc)
            return False
        self._fd_owner[fd] = job
        return True

    def _end(self, job: Job) -> None:
        if job._ended:
            return
        job._ended = True
        self._jobs.discard(job)
        self.forget(job)
        job._due = None
        watched, job._watched = job._watched, None
        if watched is not None:
            watched._driver.watch(None)
        try:
            job.finish()
        except Exception:
            logger.exception("reactor: %r finish failed", job)
        job._finished.set()
        for callback in job._on_end or ():
            try:
                callback(job)
            except Exception:
                logger.exception("reactor: after %r ended", job)
        self._reactor._job_ended(job)


class Reactor:
    """Threads that drive many sessions each (see the module docstring).

    Args:
        threads: loop threads (default: one per CPU core); each new job goes to the loop with
            the fewest jobs.
        workers: threads of :meth:`run_blocking`'s pool (default: Python's).

    ``close()`` (or leaving ``with``) asks every job to stop, waits until each finished and
    joins the threads.  Idempotent and safe from any thread except a loop thread.
    """

    def __init__(self, threads: int | None = None, *, workers: int | None = None) -> None:
        count = threads if threads is not None else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError("Reactor needs at least one thread")
        self._lock = threading.Lock()
        self._loops = self._make_loops(count)
        self._workers = workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        self._retired = False
        self._count = 0
        for loop in self._loops:
            loop.start()

    def _make_loops(self, count: int) -> list[_Loop]:
        return [_Loop(self, i) for i in range(count)]

    @property
    def threads(self) -> list[threading.Thread]:
        """The loop threads."""
        return [loop.thread for loop in self._loops]

    @property
    def jobs(self) -> int:
        """Jobs added and not finished yet."""
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, job: Job) -> None:
        """Have the least busy loop drive ``job`` (thread-safe)."""
        with self._lock:
            if self._closed or self._retired:
                raise RuntimeError("the reactor is closed")
            self._count += 1
            loop = min(self._loops, key=lambda lp: lp.load)
        try:
            loop.add(job)
        except RuntimeError:
            self._job_ended(job)
            raise

    def start_later(self, awaitable: Any, session: Session,
                     adopt: Callable[[Session, Job | None], None]) -> None:
        """For ``Bind.serve``: ``on_session`` returned an awaitable; an asyncio reactor
        awaits it, then calls ``adopt(session, its result)``.  This one cannot: TypeError."""
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()
        raise TypeError("on_session returned a coroutine: serve on an AsyncioReactor "
                        "(pylibssh_server.aio)")

    def _job_ended(self, job: Job) -> None:
        with self._lock:
            self._count -= 1

    def run_blocking(self, func: Callable[..., Any], *args: Any,
                     **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Run blocking work off the loop threads (a thread pool); its future."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the reactor is closed")
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._workers, thread_name_prefix="pylibssh-worker")
            pool = self._pool
        return pool.submit(func, *args, **kwargs)

    def close(self, timeout: float = 30.0) -> None:
        """Stop every job, wait for them to finish (``timeout`` s at most, then their
        sessions are closed anyway), join the threads and the worker pool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        me = threading.current_thread()
        if any(loop.thread is me for loop in self._loops):
            raise RuntimeError("Reactor.close() from one of its own threads")
        for loop in self._loops:
            loop.stop()
        deadline = time.monotonic() + timeout
        for loop in self._loops:
            loop.thread.join(max(0.0, deadline - time.monotonic()))
            if loop.thread.is_alive():
                logger.error("reactor: %s did not finish within %.0f s", loop.thread.name,
                             timeout)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def retire(self) -> None:
        """Take no new jobs; each thread ends once its jobs have finished (returns at once,
        callable from a loop thread)."""
        with self._lock:
            self._retired = True
        for loop in self._loops:
            loop.retire()

    def __enter__(self) -> Reactor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._count} jobs"
        return f"<Reactor {len(self._loops)} threads, {state}>"


class ServedSession(Job):
    """A job that drives one accepted session from key exchange to close: what
    ``Bind.serve`` makes for each client.

    Steps: the key exchange (non-blocking, at most ``login_grace`` seconds), then a
    :class:`SessionEvent` polled with ``dopoll(0)`` whenever the session's fds are ready,
    until the client disconnects, the session is closed (from any thread) or :meth:`stop`.
    :meth:`finish` closes the session.  Subclasses may override :meth:`after_poll` (its
    result is the next step's deadline) and :meth:`on_ready` (after the key exchange).

    A hook's exception is logged and the session goes on, as in a thread-per-session loop.
    """

    __slots__ = ("_deadline", "_stopping", "error", "event", "session")

    def __init__(self, session: Session, *, login_grace: float | None = 120.0) -> None:
        super().__init__()
        self.session: Session = session
        self.event: SessionEvent | None = None
        self.error: BaseException | None = None
        self._deadline = None if login_grace is None else time.monotonic() + login_grace
        self._stopping = False
        session.set_blocking(False)  # the key exchange goes in steps

    def step(self) -> StepResult:
        session = self.session
        if self._stopping or session.closed:
            return DONE
        self.drives(session)
        if self.event is None:
            return self._kex_step()
        try:
            self.event.dopoll(0)
        except ValueError:
            return DONE  # closed under us
        except Exception as exc:
            logger.error("session %s: %s", session.peer, exc, exc_info=exc)
            self.error = exc
        connected, fatal = self.event.session_state()
        if not connected or fatal:
            return DONE
        return self.after_poll()

    def _kex_step(self) -> StepResult:
        session = self.session
        try:
            done = session.key_exchange_step()
        except (KeyExchangeError, ValueError) as exc:
            logger.debug("session %s: key exchange ended: %s", session.peer, exc)
            return DONE
        if not done:
            if self._deadline is None:
                return None
            left = self._deadline - time.monotonic()
            return DONE if left <= 0 else left
        self.event = self.new_event(session)
        self.on_ready()
        return 0.0

    def poll_set(self) -> dict[int, int]:
        if self.event is not None:
            return self.event.poll_set()
        return self.session.poll_set()

    def on_ready(self) -> None:
        """After the key exchange (on the loop thread)."""

    def after_poll(self) -> StepResult:
        """After each poll: when to step again (None: when an fd is ready), or DONE."""
        return None

    def stop(self) -> None:
        self._stopping = True
        self.session.wakeup()
        self.wake()

    def finish(self) -> None:
        session = self.session
        session.close()

    def __repr__(self) -> str:
        return f"<ServedSession {self.session.peer}>"
