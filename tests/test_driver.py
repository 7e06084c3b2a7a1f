# SPDX-License-Identifier: MIT
"""The driving context on its own (``pylibssh_server._driver``): the rules every wrapper relies
on, checked without libssh in the way.  The wrappers' own tests (lifecycle, callbacks, the
threaded-misuse stress suite) check the same rules end to end."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pylibssh_server._driver import Driver, Teardown


@pytest.fixture
def settled() -> list[Teardown]:
    return []


@pytest.fixture
def driver(settled: list[Teardown]) -> Iterator[Driver]:
    d = Driver(settled.append)
    try:
        yield d
    finally:
        d.mark_closed()


def test_queued_work_runs_in_order_when_the_outermost_call_returns(
        driver: Driver, settled: list[Teardown]) -> None:
    """Work deferred inside a driving call (nested ones included) runs once the outermost one
    returns, oldest first, with what it queues itself; the teardown asked for meanwhile is
    handed to ``settle`` after it, once."""
    ran: list[str] = []
    with driver.lock, driver.driving():
        driver.defer(lambda: ran.append("first"))
        with driver.driving():
            assert driver.in_callback() is True
            driver.defer(lambda: (ran.append("second"), driver.defer(lambda: ran.append("third"))))
            driver.request_teardown(Teardown.DISCONNECT)
            driver.request_teardown(Teardown.CLOSE)
            driver.request_teardown(Teardown.DISCONNECT)
        assert (ran, settled) == ([], [])
    assert (ran, settled, driver.in_callback()) == (["first", "second", "third"],
                                                    [Teardown.CLOSE], False)


def test_a_hooks_exception_fails_closed_and_is_reraised_by_the_driving_call(
        driver: Driver) -> None:
    """``call`` returns the fail-closed value for a raising hook, ends the poll batch, and the
    driving call re-raises the first exception (later ones are only logged) after the
    queued work ran."""
    ran: list[str] = []

    def hook(n: int) -> int:
        raise KeyError(f"hook {n}")

    with pytest.raises(KeyError) as info, driver.lock, driver.driving():
        driver.begin_batch()
        assert driver.call("hook", -1, hook, 1) == -1
        assert driver.stop[0] == 1
        assert driver.call("hook", -2, hook, 2) == -2
        assert driver.call("ok", -3, lambda n: n * 2, 21) == 42
        driver.defer(lambda: ran.append("deferred"))
    assert (str(info.value), ran) == ("'hook 1'", ["deferred"])
    with driver.lock, driver.driving():
        pass  # nothing stored any more


def test_marked_calls_leave_work_and_exceptions_to_the_driving_call(driver: Driver) -> None:
    """Inside ``marked()`` (a flush) queued work and a stored exception wait: the next
    driving call runs and re-raises them."""
    ran: list[str] = []
    with driver.lock, driver.marked():
        driver.defer(lambda: ran.append("deferred"))
        driver.call("hook", None, lambda: 1 / 0)
    assert ran == []
    with pytest.raises(ZeroDivisionError), driver.lock, driver.driving():
        pass
    assert ran == ["deferred"]


def test_a_call_from_another_sessions_hook_is_posted_not_waited_for(driver: Driver) -> None:
    """From inside another driver's call, while this driver's lock is busy, ``call_or_post``
    posts (after the check, which may raise) instead of waiting; the holder runs the posted
    call when its driving call returns, and a posted call on a closed object is void."""
    other = Driver(lambda teardown: None)
    ran: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with driver.lock, driver.driving():
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(5) is True
        with other.lock, other.driving():
            assert driver.inside_another() is True
            assert driver.call_or_post(lambda: ran.append("posted")) is False

            def closed() -> None:
                raise ValueError("SshChannel is closed")

            assert driver.call_or_post(closed) is False
            def refuse() -> None:
                raise ValueError("refused before posting")

            with pytest.raises(ValueError, match="refused before posting"):
                driver.call_or_post(lambda: ran.append("never"), check=refuse)
        assert ran == []
        release.set()
        thread.join(5)
        assert (thread.is_alive(), ran) == (False, ["posted"])
        assert driver.call_or_post(lambda: ran.append("direct")) is True
        assert ran == ["posted", "direct"]
    finally:
        release.set()
        thread.join(5)
        other.mark_closed()


def test_waiting_for_a_session_whose_thread_waits_for_ours_raises(driver: Driver) -> None:
    """A wait that would close a cycle of threads waiting for each other's locks raises
    ``RuntimeError`` instead of deadlocking."""
    other = Driver(lambda teardown: None)
    holding, errors = threading.Event(), []

    def holds_other_then_waits_for_driver() -> None:
        with other.lock:
            holding.set()
            try:
                with driver.lock:
                    pass
            except RuntimeError as exc:  # pragma: no cover - either side may see the cycle
                errors.append(exc)

    try:
        with driver.lock:
            thread = threading.Thread(target=holds_other_then_waits_for_driver)
            thread.start()
            assert holding.wait(5) is True
            for _ in range(500):  # bounded: until the thread is blocked on our lock
                if driver.waiters:
                    break
                threading.Event().wait(0.01)
            with pytest.raises(RuntimeError, match="would deadlock"), other.lock:
                pass
        thread.join(5)
        assert (thread.is_alive(), errors) == (False, [])
    finally:
        other.mark_closed()
