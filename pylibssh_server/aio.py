# SPDX-License-Identifier: MIT
"""asyncio: sessions driven from the running event loop, hooks that may be coroutines.

:class:`AsyncioReactor` is a :class:`~pylibssh_server.Reactor` whose one loop is the running
asyncio loop instead of a thread: its ``epoll`` (every fd of every session it drives) is one
reader of the asyncio loop (``loop.add_reader``), and its timers are ``loop.call_at``.
Sessions, their callbacks and their coroutines all run on the asyncio loop's thread, next
to the application's own tasks (an asyncssh client in the same loop included).

Hooks libssh needs an answer from at once (authentication, channel opens, the message
callback) must be plain functions.  The others may be coroutine functions: a channel
request hook's request is accepted and its coroutine runs as a task; a data hook's bytes
count as consumed; a notification hook (EOF, close, signal, window change...) just starts
its task.  A task's exception is logged and closes its channel.

Example::

    async def on_session(session):
        session.set_server_callbacks(ServerCallbacks(on_auth_password=check, ...))

    async with AsyncioReactor() as reactor:
        await serve(bind, on_session, reactor)
        ...  # sessions are served while the loop runs
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pylibssh_server.reactor import Job, Reactor, _Loop

if TYPE_CHECKING:
    from pylibssh_server.bind import Bind
    from pylibssh_server.session import Session

__all__ = ["AsyncioReactor", "serve", "wait_ended"]

logger: logging.Logger = logging.getLogger("pylibssh_server")


class _AsyncioLoop(_Loop):
    """A reactor loop run by asyncio: rounds happen when the epoll fd is readable, when a
    timer is due, or at once while a job asked to run again."""

    def __init__(self, reactor: Reactor, aloop: asyncio.AbstractEventLoop) -> None:
        super().__init__(reactor, 0)
        # asyncio's other readers and tasks are not in our epoll: a session waiting in C for
        # its stream's next bytes would hold them up, so ours never linger (dopoll(0) only).
        self.epoll_fd = -1
        self.aloop = aloop
        self.thread = threading.current_thread()
        self._timer: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ended: asyncio.Future[None] = aloop.create_future()

    def start(self) -> None:
        self.aloop.add_reader(self._epoll.fileno(), self._round)

    def _round(self) -> None:
        self._soon = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            alive = self._iterate(block=False)
            if alive and self._stopping and not self._jobs:
                alive = self._iterate(block=False)  # the last job just ended: see it is over
        except BaseException:
            logger.exception("asyncio reactor failed: its sessions are closed")
            alive = False
        if not alive:
            self._finish_loop()
            return
        if self._again:
            self._soon = self.aloop.call_soon(self._round)
            return
        timeout = self._next_timeout()
        if timeout >= 0:
            self._timer = self.aloop.call_at(self.aloop.time() + timeout, self._round)

    def poke(self) -> None:
        if self.thread is threading.current_thread() and not self.ended.done():
            # On the loop itself: a round soon (the pipe would do too, one reader call later).
            if self._soon is None:
                self._soon = self.aloop.call_soon(self._round)
            return
        super().poke()

    def _finish_loop(self) -> None:
        if self.ended.done():
            return
        self.aloop.remove_reader(self._epoll.fileno())
        self._shut_down()
        self.ended.set_result(None)

    def spawn(self, coro: Coroutine[Any, Any, Any], where: str,
              on_error: Callable[[], Any] | None) -> bool:
        task = self.aloop.create_task(coro)
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                logger.error("%s (a coroutine) failed", where, exc_info=exc)
                if on_error is not None:
                    try:
                        on_error()
                    except Exception:
                        logger.exception("after %s failed", where)

        task.add_done_callback(done)
        return True

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class AsyncioReactor(Reactor):
    """A :class:`~pylibssh_server.Reactor` driven by the running asyncio loop (create it
    inside a coroutine, or pass ``loop``).

    Close it with ``await reactor.aclose()`` (or ``async with``): every job is asked to
    stop, their sessions close, the hooks' tasks are cancelled and awaited, and the loop is
    left with nothing pending.  :meth:`run_blocking` returns a concurrent future:
    ``await asyncio.wrap_future(reactor.run_blocking(fn))``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *,
                 workers: int | None = None) -> None:
        self._aloop = loop if loop is not None else asyncio.get_running_loop()
        super().__init__(1, workers=workers)

    def _make_loops(self, count: int) -> list[_Loop]:
        return [_AsyncioLoop(self, self._aloop)]

    @property
    def _asyncio_loop(self) -> _AsyncioLoop:
        loop = self._loops[0]
        assert isinstance(loop, _AsyncioLoop)
        return loop

    async def _start_session(self, awaitable: Awaitable[Job | None], session: Session,
                            adopt: Callable[[Session, Job | None], None]) -> None:
        """``on_session`` was a coroutine: await it, then hand its result to ``adopt``."""
        try:
            job = await awaitable
        except Exception:
            logger.exception("on_session failed for %s", session.peer)
            session.close()
            return
        adopt(session, job)

    def start_later(self, awaitable: Awaitable[Job | None], session: Session,
                     adopt: Callable[[Session, Job | None], None]) -> None:
        self._asyncio_loop.spawn(self._start_session(awaitable, session, adopt),
                                 "on_session", session.close)

    async def aclose(self, timeout: float = 30.0) -> None:
        """Stop every job and wait (``timeout`` s at most, then their sessions are closed
        anyway); cancel the hooks' tasks; shut the worker pool down off the loop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        loop = self._asyncio_loop
        loop.stop()
        try:
            await asyncio.wait_for(asyncio.shield(loop.ended), timeout)
        except asyncio.TimeoutError:
            logger.error("asyncio reactor: jobs did not finish within %.0f s", timeout)
            loop._finish_loop()
        await loop.cancel_tasks()
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: pool.shutdown(wait=True, cancel_futures=True))

    def close(self, timeout: float = 30.0) -> None:
        """From another thread: ``aclose()`` on the loop, waited for.  On the loop's own
        thread use ``await aclose()``."""
        if self._asyncio_loop.thread is threading.current_thread():
            raise RuntimeError("AsyncioReactor.close() on its own loop: await aclose()")
        if self._closed:
            return
        future = asyncio.run_coroutine_threadsafe(self.aclose(timeout), self._aloop)
        with contextlib.suppress(Exception):
            future.result(timeout + 5)

    async def __aenter__(self) -> AsyncioReactor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> AsyncioReactor:
        raise TypeError("use 'async with AsyncioReactor()'")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.jobs} jobs"
        return f"<AsyncioReactor {state}>"


async def serve(bind: Bind, on_session: Callable[[Session], Any],
                reactor: AsyncioReactor | None = None, **serve_options: Any) -> AsyncioReactor:
    """``bind.serve(on_session)`` on the running loop; returns at once.

    ``on_session`` may be a coroutine function (awaited before the key exchange starts).
    Without ``reactor`` a new :class:`AsyncioReactor` is made: close it (``aclose``) when
    done; closing the bind stops accepting.  Other keywords go to :meth:`Bind.serve`.
    """
    if reactor is None:
        reactor = AsyncioReactor()
    bind.serve(on_session, reactor=reactor, wait=False, **serve_options)
    return reactor


async def wait_ended(job: Job) -> None:
    """Wait (without blocking the loop) until ``job`` finished: for a served session, until
    it is closed.  Cancelling the wait leaves the job alone."""
    if job.ended:
        return
    aloop = asyncio.get_running_loop()
    future: asyncio.Future[None] = aloop.create_future()

    def ended(_: Job) -> None:
        def resolve() -> None:
            if not future.done():
                future.set_result(None)
        aloop.call_soon_threadsafe(resolve)  # from the loop's thread or a reactor's

    job.add_done_callback(ended)
    if job.ended:  # finished between the check and the callback
        return
    await future
