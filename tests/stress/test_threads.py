# SPDX-License-Identifier: MIT
"""API misuse under threads: many threads closing, polling and writing the same objects at
once (use after close and closes inside callbacks included) never crash the interpreter.

Each scenario runs seeded random schedules over real loopback connections (the OpenSSH ``ssh``
binary as the client): every call either works or raises a documented exception
(``ValueError`` for a closed object, ``LibSSHError`` for a libssh failure, ``RuntimeError``
for a call from one session's hook that would deadlock waiting for another session; ``close()``,
``wakeup()`` and state flags never raise), every thread ends within its deadline, and fds,
threads and child processes return to their baseline.  The regression checks at the end pin
what the scenarios found, deterministically.

A scenario runs in a child process (``python -X faulthandler -m stress.test_threads NAME``),
so a segfault or abort is a failing test that names the scenario and shows the faulthandler
traceback of every thread.  ``PYLIBSSH_STRESS_INPROCESS=1`` runs them in the test process
instead (``scripts/memcheck.sh`` does, under valgrind).  ``PYLIBSSH_STRESS_SEED`` changes the
schedules; the seed is in every failure message.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import ssh_base_args, stop_process

from pylibssh_server import (
    Bind,
    ChannelCallbacks,
    LibSSHError,
    Reactor,
    ServedSession,
    ServerCallbacks,
    Session,
    SessionEvent,
    SshChannel,
    SshKey,
    SshMessage,
)
from stress._support import ProcStats, pick, record

SEED = int(os.environ.get("PYLIBSSH_STRESS_SEED", "5004"))
IN_PROCESS = os.environ.get("PYLIBSSH_STRESS_INPROCESS") == "1"
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: What a call on a shared object may raise: a closed object, or libssh refusing.
ALLOWED = (ValueError, LibSSHError)
#: Seconds one schedule (one connection's threads) may take before it counts as hung.
ROUND_DEADLINE = 30.0

Body = Callable[[random.Random], None]


# ---- threads sharing objects -----------------------------------------------------------------


class Crew:
    """Threads that hammer shared objects, started together at a barrier.

    Workers make their calls through :meth:`call` (which may raise :data:`ALLOWED`: counted) or
    :meth:`safe` (which must not raise); anything else is kept with its traceback and the
    worker goes on.  Background workers (a poller) loop until :attr:`finished`, set when the
    other workers are done.  A thread still running at the deadline is reported as hung, with
    the stacks of every thread.
    """

    def __init__(self) -> None:
        self._workers: list[tuple[str, Callable[[], None], bool]] = []
        self._lock = threading.Lock()
        self.calls = 0
        self.raised: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.finished = threading.Event()
        #: Called once the foreground workers are done (e.g. wake a poller in dopoll(None)).
        self.at_finish: list[Callable[[], None]] = []

    def spawn(self, name: str, rng: random.Random, body: Body, *,
              background: bool = False) -> None:
        """Add a worker running ``body`` with its own rng (seeded from ``rng``)."""
        local = random.Random(rng.random())
        self._workers.append((name, lambda: body(local), background))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, which may raise :data:`ALLOWED`; its result, or None if it raised."""
        return self._call(ALLOWED, fn, args)

    def safe(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, which must not raise at all (close(), wakeup(), state flags...)."""
        return self._call((), fn, args)

    def across(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on another session from inside a callback: it may also raise
        RuntimeError (waiting would deadlock)."""
        return self._call((*ALLOWED, RuntimeError), fn, args)

    def _call(self, allowed: tuple[type[BaseException], ...], fn: Callable[..., Any],
              args: tuple[Any, ...]) -> Any:
        try:
            result = fn(*args)
        except allowed as exc:
            with self._lock:
                self.calls += 1
                self.raised[type(exc).__name__] += 1
            return None
        except BaseException:
            self.fault(f"{getattr(fn, '__qualname__', fn)}:\n{traceback.format_exc()}")
            return None
        with self._lock:
            self.calls += 1
        return result

    def fault(self, text: str) -> None:
        with self._lock:
            self.unexpected.append(f"[{threading.current_thread().name}] {text}")

    def run(self, deadline: float = ROUND_DEADLINE) -> None:
        """Run the workers added so far and wait for them (at most ``deadline`` s)."""
        workers, self._workers = self._workers, []
        self.finished.clear()
        barrier = threading.Barrier(len(workers))
        foreground = [sum(not background for _, _, background in workers)]

        def main(name: str, worker: Callable[[], None], background: bool) -> None:
            try:
                barrier.wait(10)
                worker()
            except BaseException:
                self.fault(f"worker {name} died:\n{traceback.format_exc()}")
            finally:
                if not background:
                    with self._lock:
                        foreground[0] -= 1
                        last = not foreground[0]
                    if last:
                        self.finished.set()
                        for wake in self.at_finish:
                            self.safe(wake)

        threads = [threading.Thread(target=main, args=worker, name=f"crew-{worker[0]}",
                                    daemon=True) for worker in workers]
        for thread in threads:
            thread.start()
        end = time.monotonic() + deadline
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        hung = [thread.name for thread in threads if thread.is_alive()]
        if hung:
            faulthandler.dump_traceback(all_threads=True)
            self.unexpected.append(f"threads still running after {deadline} s: {hung}")


def pause(rng: random.Random, longest: float = 0.005) -> None:
    """Sleep a random time up to ``longest`` seconds (0 half of the time: just yield)."""
    time.sleep(0 if rng.random() < 0.5 else rng.uniform(0, longest))


# ---- one loopback connection -------------------------------------------------------------


@dataclass
class Connection:
    """An accepted server session whose key exchange is done, its event, and the OpenSSH
    client (``ssh ... stress`` fed from a file) on the other end."""

    session: Session
    client: subprocess.Popen[bytes] | None
    event: Any = None
    channels: list[SshChannel] = field(default_factory=list)
    exec_seen: threading.Event = field(default_factory=threading.Event)

    @property
    def channel(self) -> SshChannel | None:
        return self.channels[0] if self.channels else None

    def close(self) -> None:
        """Close the session (idempotent), then wait for the client: it sees the disconnect."""
        self.session.close()
        if self.client is not None:
            try:
                self.client.wait(10)
            finally:
                stop_process(self.client)


class Lab:
    """What the connection scenarios share: a host key, a client key file, the input file."""

    def __init__(self, directory: str, seed: int) -> None:
        self.directory = directory
        self.host_key = SshKey.generate()
        self.client_key = SshKey.generate()
        self.client_key_path = os.path.join(directory, "id_ed25519")
        self.client_key.to_private_file(self.client_key_path)
        self.input_path = os.path.join(directory, "input")
        with open(self.input_path, "wb") as f:
            f.write(random.Random(seed).randbytes(256 * 1024))

    def close(self) -> None:
        self.host_key.close()
        self.client_key.close()

    def ssh(self, port: int, *, pubkey: bool = False, stdout: Any = subprocess.DEVNULL
            ) -> subprocess.Popen[bytes]:
        """``ssh -T ... stress`` with the input file on stdin, output to ``stdout``."""
        args = ["ssh", *ssh_base_args(port), "-T", "-l", "u"]
        if pubkey:
            args += ["-i", self.client_key_path, "-o", "IdentitiesOnly=yes"]
        with open(self.input_path, "rb") as stdin:
            return subprocess.Popen([*args, "127.0.0.1", "stress"], stdin=stdin,
                                    stdout=stdout, stderr=subprocess.DEVNULL)

    def connect(self, bind: Bind, hooks: Callable[[Connection], ServerCallbacks] | None = None,
                *, pubkey: bool = False, ready: bool = True, stdout: Any = subprocess.DEVNULL
                ) -> Connection:
        """Accept one OpenSSH client, run the key exchange, create the event; with ``ready``
        also poll until its exec channel is open (:func:`default_hooks` by default)."""
        client = self.ssh(bind.port, pubkey=pubkey, stdout=stdout)
        session = bind.accept(timeout=10)
        if session is None:
            stop_process(client)
            raise AssertionError("the ssh client did not connect within 10 s")
        conn = Connection(session, client)
        try:
            session.set_server_callbacks((hooks or default_hooks)(conn))
            session.set_blocking(False)
            session.handle_key_exchange(timeout=10)
            conn.event = SessionEvent(session)
            deadline = time.monotonic() + 10
            while ready and not conn.exec_seen.is_set():
                if time.monotonic() > deadline:
                    raise AssertionError("the client's exec channel did not open within 10 s")
                conn.event.dopoll(0.05)
        except BaseException:
            conn.close()
            raise
        return conn


def channel_opener(conn: Connection, **channel_hooks: Any) -> Callable[..., SshChannel]:
    """An ``on_channel_open_request_session`` hook: a channel with ``channel_hooks``, recorded
    in ``conn.channels``."""
    def on_open(sess: Session, userdata: Any) -> SshChannel:
        channel = SshChannel(sess)
        channel.set_callbacks(ChannelCallbacks(**channel_hooks))
        conn.channels.append(channel)
        return channel
    return on_open


def default_hooks(conn: Connection, **server_hooks: Any) -> ServerCallbacks:
    """Accept "none" auth, session channels and exec requests (incoming data stays buffered);
    ``server_hooks`` replace or add ``ServerCallbacks`` hooks."""
    def on_exec(sess: Session, channel: SshChannel, command: str, userdata: Any) -> bool:
        conn.exec_seen.set()
        return True

    hooks: dict[str, Any] = {"on_auth_none": lambda *args: True,
                             "on_channel_open_request_session":
                                 channel_opener(conn, on_exec_request=on_exec)}
    return ServerCallbacks(**{**hooks, **server_hooks})


# ---- scenarios -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one scenario reports to the test (and the summary table)."""

    tried: int = 0
    calls: int = 0
    raised: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    before: tuple[int, int, int, int] | None = None
    after: tuple[int, int, int, int] | None = None
    seconds: float = 0.0

    def add(self, crew: Crew) -> None:
        self.tried += 1
        self.calls += crew.calls
        for name, count in crew.raised.items():
            self.raised[name] = self.raised.get(name, 0) + count
        self.unexpected += crew.unexpected


Scenario = Callable[[random.Random, Crew, "Lab"], None]
SCENARIOS: dict[str, tuple[Scenario, int]] = {}


def scenario(rounds: int) -> Callable[[Scenario], Scenario]:
    """Register a scenario run for ``rounds`` schedules (each with its own seeded rng)."""
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[fn.__name__.removeprefix("scenario_")] = (fn, rounds)
        return fn
    return register


@scenario(rounds=pick(6, 60))
def scenario_dopoll_vs_closers(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """A poller thread loops ``dopoll`` while writers write/send_eof/exit-status the same
    channel, and other threads close the channel, close or disconnect the session, close the
    event, add and remove fds, and read the session's state.  A third of the sessions are in
    blocking mode (writes wait for the window inside libssh, bounded by a 1 s timeout)."""
    with Bind(key=lab.host_key) as bind:
        conn = lab.connect(bind)
        try:
            channel, session, event = conn.channel, conn.session, conn.event
            assert channel is not None
            if rng.random() < 1 / 3:
                session.set_timeout(1)
                session.set_blocking(True)
            poller(crew, rng, event)
            for i in range(rng.randint(1, 3)):
                crew.spawn(f"writer{i}", rng, lambda local: write_channel(crew, local, channel))
            closers(crew, rng, session, event, [channel])
            crew.spawn("onlooker", rng, lambda local: look(crew, local, session, event, channel))
            crew.run()
        finally:
            conn.close()


@scenario(rounds=pick(6, 60))
def scenario_reactor_vs_closers(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """The same writers, closers and onlooker as ``dopoll_vs_closers``, with a reactor
    (``Bind.serve``) driving the session instead of a poller thread: closes from other
    threads, writes that leave output for the loop to send, fds added and removed (and
    closed) while the loop polls them."""
    conns: list[Connection] = []
    jobs: list[ServedSession] = []

    def on_session(session: Session) -> ServedSession:
        conn = Connection(session, None)
        session.set_server_callbacks(default_hooks(conn))
        conns.append(conn)
        jobs.append(ServedSession(session, login_grace=10))
        return jobs[-1]

    with Reactor(2) as reactor, Bind(key=lab.host_key) as bind:
        bind.serve(on_session, reactor=reactor, wait=False)
        client = lab.ssh(bind.port)
        try:
            deadline = time.monotonic() + 10
            while not (conns and conns[0].exec_seen.is_set()):
                if time.monotonic() > deadline:
                    raise AssertionError("the client's exec channel did not open within 10 s")
                time.sleep(0.01)
            conn, event = conns[0], jobs[0].event
            conn.client, client = client, None
            channel, session = conn.channel, conn.session
            assert channel is not None and event is not None
            for i in range(rng.randint(1, 3)):
                crew.spawn(f"writer{i}", rng, lambda local: write_channel(crew, local, channel))
            closers(crew, rng, session, event, [channel])
            crew.spawn("onlooker", rng, lambda local: look(crew, local, session, event, channel))
            crew.run()
            conn.close()
        finally:
            if client is not None:
                stop_process(client)
            for conn in conns:
                conn.close()


def poller(crew: Crew, rng: random.Random, event: SessionEvent, name: str = "poller") -> None:
    """A background thread in ``dopoll`` (None included) until the others are done."""
    def poll(local: random.Random) -> None:
        closed_polls = 0
        for _ in range(5000):
            if crew.finished.is_set():
                return
            if crew.call(event.dopoll, local.choice((0, 0.001, 0.01, 0.05, None))) is None:
                closed_polls += 1  # raised: the event or session was closed
                if closed_polls > 3:
                    return
    crew.spawn(name, rng, poll, background=True)
    # A poller parked in dopoll(None) returns once the session's wake-up pipe is written.
    session = event.session
    if session is not None:
        crew.at_finish.append(session.wakeup)


def write_channel(crew: Crew, rng: random.Random, channel: SshChannel) -> None:
    for _ in range(rng.randint(20, 200)):
        op = rng.random()
        if op < 0.6:
            crew.call(channel.write, rng.randbytes(rng.choice((1, 100, 4096, 40000))),
                      rng.random() < 0.2)
        elif op < 0.65:
            crew.call(channel.send_eof)
        elif op < 0.7:
            crew.call(channel.send_exit_status, rng.randint(0, 255))
        elif op < 0.72:
            crew.call(channel.send_exit_signal, "TERM")
        elif op < 0.8:
            crew.call(channel.read_nonblocking, 4096)
        else:
            crew.call(lambda: channel.window_size)
            crew.safe(lambda: (channel.is_open, channel.is_eof, channel.closed,
                               channel.pending_bytes, channel.remote_closed, repr(channel)))
        pause(rng)


def closers(crew: Crew, rng: random.Random, session: Session, event: SessionEvent,
            channels: list[SshChannel]) -> None:
    """Zero to three closer threads, each closing one object twice at a random moment (with
    none, the other workers' bounded loops end the schedule)."""
    def closer(actions: tuple[Callable[[], None], ...]) -> Body:
        def run(local: random.Random) -> None:
            time.sleep(local.uniform(0, 0.2))
            for action in (local.choice(actions), local.choice(actions)):
                crew.safe(action)
                pause(local, 0.02)
        return run

    if rng.random() < 0.7 and channels:
        channel = rng.choice(channels)
        crew.spawn("channel-closer", rng, closer((channel.close, channel.abort)))
    if rng.random() < 0.6:
        crew.spawn("session-closer", rng, closer((session.close, session.disconnect)))
    if rng.random() < 0.5:
        crew.spawn("event-closer", rng, closer((event.close,)))


def look(crew: Crew, rng: random.Random, session: Session, event: SessionEvent,
         channel: SshChannel | None) -> None:
    """Read state, wake the poller, and add/remove a pipe of our own to the event."""
    r, w = os.pipe2(os.O_NONBLOCK)

    def drain(fd: int, revents: int) -> None:
        try:
            os.read(fd, 64)
        except BlockingIOError:
            pass

    try:
        for _ in range(rng.randint(10, 80)):
            op = rng.random()
            if op < 0.3:
                crew.call(lambda: (session.status, session.cipher, session.kex_algorithm,
                                   session.client_banner, session.get_error(), session.fd,
                                   session.is_blocking))
                crew.safe(lambda: (session.is_connected, session.channels, session.closed,
                                   repr(session)))
            elif op < 0.4:
                crew.safe(session.wakeup)
            elif op < 0.5:
                crew.safe(session.interrupt)
            elif op < 0.6:
                crew.call(event.add_fd, r, drain)
                os.write(w, b"x")
            elif op < 0.75:
                crew.safe(event.remove_fd, r)
            elif op < 0.85:
                crew.safe(lambda: (event.fds, event.is_assigned, event.session))
            elif channel is not None:
                crew.safe(lambda: (channel.closed, channel.is_open, repr(channel)))
            pause(rng)
    finally:
        # The fd must leave the event before it is closed (the event would poll a dead fd).
        crew.safe(event.remove_fd, r)
        os.close(r)
        os.close(w)


@scenario(rounds=pick(6, 60))
def scenario_pipes_vs_closers(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """The C data path under threads: the exec channel's data goes to a pipe (``pipe_to``)
    and another pipe is pumped into it (``pipe_from``), the fds handed over or dup'd, while
    a poller polls and services both, a reader and a writer keep the pipes moving, others
    pause and resume them, and closers close the sink, the pump, the fds we kept, the
    channel, the session or the event at random moments."""
    with Bind(key=lab.host_key) as bind:
        conn = lab.connect(bind)
        ours: set[int] = set()
        ours_lock = threading.Lock()

        def close_ours(fd: int) -> None:
            with ours_lock:
                if fd not in ours:
                    return
                ours.discard(fd)
            os.close(fd)

        try:
            channel, session, event = conn.channel, conn.session, conn.event
            assert channel is not None
            owned = rng.random() < 0.5
            to_r, to_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            from_r, from_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            ours.update((to_r, to_w, from_r, from_w))
            sink = channel.pipe_to(to_w, owned=owned, limit=rng.choice((0, 4096, 1 << 20)))
            if owned:
                ours.discard(to_w)
            pump = channel.pipe_from(from_r, owned=owned, stderr=rng.random() < 0.3)
            if owned:
                ours.discard(from_r)
            serve_pipes(crew, rng, event, (sink, pump))
            crew.spawn("reader", rng, lambda local: move_pipe(crew, local, to_r, read=True))
            crew.spawn("writer", rng, lambda local: move_pipe(crew, local, from_w, read=False))
            crew.spawn("toggler", rng, lambda local: toggle_pipes(crew, local, sink, pump))
            actions: list[Callable[[], None]] = [sink.close, pump.close]
            if not owned:
                actions += [lambda: close_ours(to_w), lambda: close_ours(from_r)]
            for i in range(rng.randint(1, 2)):
                picked = rng.choice(actions)
                crew.spawn(f"pipe-closer{i}", rng,
                           lambda local, act=picked: (time.sleep(local.uniform(0, 0.2)),
                                                      crew.safe(act), crew.safe(act)))
            closers(crew, rng, session, event, [channel])
            crew.run()
        finally:
            conn.close()
            for fd in list(ours):
                close_ours(fd)


def serve_pipes(crew: Crew, rng: random.Random, event: SessionEvent, pipes: tuple[Any, ...]
                ) -> None:
    """A background thread polling ``event`` and servicing ``pipes`` after each poll."""
    def serve(local: random.Random) -> None:
        closed_polls = 0
        for _ in range(5000):
            if crew.finished.is_set():
                return
            if crew.call(event.dopoll, local.choice((0, 0.001, 0.01, None))) is None:
                closed_polls += 1
                if closed_polls > 3:
                    return
            for pipe in pipes:
                crew.call(pipe.service)
    crew.spawn("server", rng, serve, background=True)
    session = event.session
    if session is not None:
        crew.at_finish.append(session.wakeup)


def move_pipe(crew: Crew, rng: random.Random, fd: int, *, read: bool) -> None:
    """Read from (or write random bytes to) our end of a pipe a while; EOF, EPIPE or our fd
    closed by a closer end it."""
    for _ in range(rng.randint(50, 400)):
        try:
            if read:
                if os.read(fd, 65536) == b"":
                    return
            else:
                os.write(fd, rng.randbytes(rng.choice((1, 4096, 65536))))
        except BlockingIOError:
            pass
        except (BrokenPipeError, OSError):
            return
        pause(rng, 0.002)


def toggle_pipes(crew: Crew, rng: random.Random, sink: Any, pump: Any) -> None:
    """Pause and resume the sink and the pump, and read their state."""
    for _ in range(rng.randint(10, 60)):
        target = rng.choice((sink, pump))
        crew.call(rng.choice((target.pause, target.resume)))
        crew.safe(lambda: (sink.fd, sink.closed, sink.buffered, sink.backlog, sink.bytes,
                           sink.error, sink.overflowed, pump.ended, pump.stalled, pump.bytes,
                           pump.error))
        pause(rng)


@scenario(rounds=pick(6, 60))
def scenario_hooks_close_inside(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """Hooks (auth, channel open, exec, data, EOF, close, the message callback) close the
    session, channel or event from inside the callback while other threads close them too;
    borrowed keys and messages are handed to threads that keep using them after the hook
    returned."""
    points = ("auth", "open", "exec", "data", "eof", "close", "message")
    plan = {point: rng.choice(("nothing", "close-channel", "abort-channel", "close-session",
                               "disconnect", "close-event", "new-event", "output"))
            for point in rng.sample(points, rng.randint(1, 3))}
    pubkey = rng.random() < 0.5
    seen: Counter[str] = Counter()
    borrowers: list[threading.Thread] = []

    def act(point: str, sess: Session, channel: SshChannel | None = None) -> None:
        seen[point] += 1
        action = plan.get(point, "nothing")
        event = sess._event
        if action == "close-channel" and channel is not None:
            crew.safe(channel.close)
        elif action == "abort-channel" and channel is not None:
            crew.safe(channel.abort)
        elif action == "close-session":
            crew.safe(sess.close)
        elif action == "disconnect":
            crew.safe(sess.disconnect)
        elif action == "close-event" and event is not None:
            crew.safe(event.close)
        elif action == "new-event":
            crew.call(SessionEvent, sess)  # the session has one: ValueError
        elif action == "output" and channel is not None:
            for step in (lambda: channel.write(b"bye\n"), lambda: channel.send_exit_status(3),
                         channel.send_eof, channel.close):
                crew.call(step)

    def hooks(conn: Connection) -> ServerCallbacks:
        def on_data(sess: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                    userdata: Any) -> None:
            if seen["data"] < 3:
                act("data", sess, channel)

        def on_close(sess: Session, channel: SshChannel, userdata: Any) -> None:
            act("close", sess, channel)
            crew.safe(channel.close)  # answer the client's CLOSE

        def on_exec(sess: Session, channel: SshChannel, command: str, userdata: Any) -> bool:
            act("exec", sess, channel)
            return True

        def on_open(sess: Session, userdata: Any) -> SshChannel:
            channel = SshChannel(sess)
            channel.set_callbacks(ChannelCallbacks(
                on_exec_request=on_exec, on_data=on_data, on_close=on_close,
                on_eof=lambda s, c, u: act("eof", s, c)))
            conn.channels.append(channel)
            act("open", sess, channel)
            return channel

        def on_pubkey(sess: Session, user: str, key: SshKey, state: Any, userdata: Any) -> bool:
            borrowers.append(borrow(crew, key))
            act("auth", sess)
            return True

        def on_message(sess: Session, message: SshMessage, userdata: Any) -> bool:
            borrowers.append(borrow(crew, message))
            act("message", sess)
            return False

        def on_none(sess: Session, user: str, userdata: Any) -> bool:
            if pubkey:
                return False
            act("auth", sess)
            return True

        conn.session.set_message_callback(on_message)
        return ServerCallbacks(on_auth_none=on_none, on_auth_pubkey=on_pubkey,
                               on_channel_open_request_session=on_open)

    with Bind(key=lab.host_key) as bind:
        conn = lab.connect(bind, hooks, pubkey=pubkey, ready=False)
        try:
            session, event = conn.session, conn.event
            poller(crew, rng, event)
            # The channel does not exist yet: these threads pick it up when it does.
            crew.spawn("writer", rng, lambda local: write_late(crew, local, conn))
            crew.spawn("channel-closer", rng, lambda local: close_late(crew, local, conn))
            closers(crew, rng, session, event, [])
            crew.run()
        finally:
            conn.close()
            for thread in borrowers:
                thread.join(10)
                if thread.is_alive():
                    crew.fault("a thread using a borrowed object hung")


def borrow(crew: Crew, obj: SshKey | SshMessage) -> threading.Thread:
    """From inside the hook that got ``obj``: start a thread that uses it in a tight loop
    while the hook returns (and libssh frees it), until it raises; return once it runs."""
    if isinstance(obj, SshKey):
        def use() -> Any:
            return obj.fingerprint(), obj.type_name, obj.public_base64, obj.copy().close()
    else:
        def use() -> Any:
            return obj.type, obj.subtype, obj.service, obj.auth_user, repr(obj)
    started = threading.Event()

    def run() -> None:
        started.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if crew.call(use) is None:
                return
        crew.fault(f"{obj!r} still usable 5 s after its hook returned")

    thread = threading.Thread(target=run, name="borrower", daemon=True)
    thread.start()
    started.wait(5)
    time.sleep(0.001)  # let it loop (or wait for the session lock) before the hook returns
    return thread


def write_late(crew: Crew, rng: random.Random, conn: Connection) -> None:
    for _ in range(rng.randint(20, 100)):
        channel = conn.channel
        if channel is not None:
            crew.call(channel.write, rng.randbytes(rng.choice((1, 1000, 30000))))
            if rng.random() < 0.05:
                crew.call(channel.send_eof)
        time.sleep(rng.uniform(0, 0.005))


def close_late(crew: Crew, rng: random.Random, conn: Connection) -> None:
    time.sleep(rng.uniform(0, 0.3))
    for _ in range(2):
        channel = conn.channel
        if channel is not None:
            crew.safe(rng.choice((channel.close, channel.abort)))
        pause(rng, 0.02)


@scenario(rounds=pick(8, 80))
def scenario_kex_vs_close(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """One thread runs the non-blocking key exchange (an OpenSSH client, or a raw socket that
    stops after its banner) while others close, disconnect, interrupt or wake the session and
    try to create its event."""
    with Bind(key=lab.host_key) as bind:
        raw: socket.socket | None = None
        client: subprocess.Popen[bytes] | None = None
        if rng.random() < 0.4:
            raw = socket.create_connection(("127.0.0.1", bind.port), timeout=10)
            raw.sendall(b"SSH-2.0-silent\r\n")
        else:
            client = lab.ssh(bind.port)
        session = bind.accept(timeout=10)
        assert session is not None, "no client within 10 s"
        try:
            session.set_server_callbacks(ServerCallbacks(on_auth_none=lambda *a: True))
            session.set_blocking(False)

            def kex(local: random.Random) -> None:
                crew.call(session.handle_key_exchange, local.choice((0.2, 1.0, 2.0)))
                event = crew.call(SessionEvent, session)
                if event is not None:
                    for _ in range(20):
                        crew.call(event.dopoll, 0.01)

            actions = ((crew.safe, session.close), (crew.safe, session.disconnect),
                       (crew.safe, session.interrupt), (crew.safe, session.wakeup),
                       (crew.call, lambda: SessionEvent(session).close()),
                       (crew.call, lambda: session.status))

            def meddle(local: random.Random) -> None:
                for _ in range(local.randint(1, 4)):
                    time.sleep(local.uniform(0, 0.1))
                    call, action = local.choice(actions)
                    call(action)

            crew.spawn("kex", rng, kex)
            for i in range(rng.randint(1, 3)):
                crew.spawn(f"meddler{i}", rng, meddle)
            crew.run()
        finally:
            session.close()
            if raw is not None:
                raw.close()
            if client is not None:
                try:
                    client.wait(10)
                finally:
                    stop_process(client)


@scenario(rounds=pick(10, 100))
def scenario_bind_vs_closers(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """Threads in ``accept`` and ``listen`` on one Bind while clients connect and two or three
    threads close it (each twice); accepted sessions are closed by whoever got them."""
    bind = Bind(key=lab.host_key)
    port = bind.port
    try:
        def accept(local: random.Random) -> None:
            for _ in range(local.randint(1, 20)):
                session = crew.call(bind.accept, local.choice((0, 0.01, 0.1, None)))
                if session is not None:
                    crew.safe(session.close)
                if not bind.is_open:
                    crew.call(bind.accept, 0)  # after close: ValueError
                    return

        def handler(session: Session) -> None:
            session.set_blocking(False)
            crew.call(session.handle_key_exchange, 0.2)

        def close(local: random.Random) -> None:
            time.sleep(local.uniform(0, 0.15))
            for _ in range(2):
                crew.safe(bind.close)
                crew.call(lambda: (bind.fd, bind.get_error()))
                crew.safe(lambda: (bind.is_open, repr(bind)))

        for i in range(rng.randint(1, 3)):
            crew.spawn(f"acceptor{i}", rng, accept)
        if rng.random() < 0.7:
            crew.spawn("listener", rng, lambda local: crew.safe(bind.listen, handler))
        crew.spawn("connector", rng, lambda local: connect_some(port, local))
        for i in range(rng.randint(2, 3)):
            crew.spawn(f"closer{i}", rng, close)
        crew.run()
    finally:
        bind.close()


def connect_some(port: int, rng: random.Random) -> None:
    """Connect to ``port`` a few times (a banner, or nothing); refused once the bind is shut."""
    for _ in range(rng.randint(1, 10)):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if rng.random() < 0.5:
                    sock.sendall(b"SSH-2.0-stress\r\n")
                time.sleep(rng.uniform(0, 0.02))
        except OSError:
            return


@scenario(rounds=pick(40, 400))
def scenario_keys_vs_close(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """Threads take fingerprints, copies, exports and comparisons (in both argument orders) of
    two keys, and build Binds from them, while other threads close the keys."""
    keys = [SshKey.generate(rng.choice(("ed25519", "ecdsa"))) for _ in range(2)]
    try:
        def use(local: random.Random) -> None:
            for _ in range(local.randint(5, 40)):
                use_key(crew, local, *local.sample(keys, 2))

        def close(local: random.Random) -> None:
            time.sleep(local.uniform(0, 0.01))
            crew.safe(local.choice(keys).close)
            crew.safe(local.choice(keys).close)

        for i in range(rng.randint(2, 4)):
            crew.spawn(f"user{i}", rng, use)
        for i in range(rng.randint(1, 2)):
            crew.spawn(f"closer{i}", rng, close)
        crew.run()
    finally:
        for key in keys:
            key.close()


def use_key(crew: Crew, rng: random.Random, key: SshKey, other: SshKey) -> None:
    op = rng.random()
    if op < 0.2:
        crew.call(key.fingerprint, rng.choice(("sha256", "md5")))
    elif op < 0.3:
        crew.call(lambda: key.copy().close())
    elif op < 0.5:
        crew.call(key.public_equals, other)
    elif op < 0.55:
        crew.call(lambda: Bind(key=key).close())
    elif op < 0.65:
        crew.call(lambda: key.public_key().close())
    elif op < 0.75:
        crew.call(lambda: (key.public_base64, key.type, key.type_name, key.is_private,
                           key.is_public))
        crew.safe(lambda: (repr(key), key.closed))
    elif op < 0.85:
        crew.call(key.to_private_base64)
    else:
        crew.call(lambda: (hash(key), key == other))


@scenario(rounds=pick(5, 50))
def scenario_hooks_across_sessions(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """Two or three sessions, each served by its own polling thread, whose hooks write to,
    send EOF or exit status on, close, or query the channels, sessions and events of the
    *other* sessions (a relay), while other threads close them too: no thread waits for
    another session's lock forever (a query that would raises RuntimeError)."""
    with Bind(key=lab.host_key) as bind:
        conns: list[Connection] = []
        actions = ("write", "eof", "exit-status", "close-channel", "abort-channel",
                   "close-session", "disconnect", "close-event", "query")
        plan = {point: rng.choice(actions) for point in ("data", "eof", "close")}

        def act(point: str, me: Connection, local: random.Random) -> None:
            others = [conn for conn in conns if conn is not me]
            if not others:
                return
            other = local.choice(others)
            channel, action = other.channel, plan[point]
            if action == "write" and channel is not None:
                crew.call(channel.write, b"relayed\n")
            elif action == "eof" and channel is not None:
                crew.call(channel.send_eof)
            elif action == "exit-status" and channel is not None:
                crew.call(channel.send_exit_status, 7)
            elif action == "close-channel" and channel is not None:
                crew.safe(channel.close)
            elif action == "abort-channel" and channel is not None:
                crew.safe(channel.abort)
            elif action == "close-session":
                crew.safe(other.session.close)
            elif action == "disconnect":
                crew.safe(other.session.disconnect)
            elif action == "close-event" and other.event is not None:
                crew.safe(other.event.close)
            elif action == "query" and channel is not None:
                crew.across(lambda: (channel.is_open, channel.window_size, channel.is_eof,
                                     other.session.status))

        def hooks(conn: Connection) -> ServerCallbacks:
            local = random.Random(rng.random())
            count = Counter[str]()

            def hook(point: str) -> Callable[..., None]:
                def run(sess: Session, channel: SshChannel, *args: Any) -> None:
                    count[point] += 1
                    if count[point] <= 3:
                        act(point, conn, local)
                return run

            return default_hooks(conn, on_channel_open_request_session=channel_opener(
                conn, on_exec_request=lambda *args: True, on_data=hook("data"),
                on_eof=hook("eof"), on_close=hook("close")))

        try:
            for _ in range(rng.randint(2, 3)):
                conns.append(lab.connect(bind, hooks, ready=False))
            for i, conn in enumerate(conns):
                poller(crew, rng, conn.event, f"poller{i}")
                closers(crew, rng, conn.session, conn.event, [])
            crew.spawn("late-channel-closer", rng,
                       lambda local: close_late(crew, local, local.choice(conns)))
            crew.spawn("writer", rng, lambda local: write_late(crew, local, conns[0]))
            crew.run()
        finally:
            for conn in conns:
                conn.close()


#: Deterministic checks that may deadlock or crash if broken: run isolated like scenarios.
REGRESSIONS: dict[str, tuple[Scenario, int]] = {}


def regression(fn: Scenario) -> Scenario:
    REGRESSIONS[fn.__name__] = (fn, 1)
    return fn


@regression
def relay_between_two_sessions(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """Two sessions' data hooks, both running at once in their own serving threads, each send
    the other session's client a line, exit status 0, EOF and CLOSE: each waits for no lock
    the other holds (the calls are left to the other's serving thread), and each client gets
    exactly the other's line and exits 0."""
    barrier = threading.Barrier(2, timeout=10)
    conns: list[Connection] = []

    def hooks(conn: Connection) -> ServerCallbacks:
        def on_data(sess: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                    userdata: Any) -> None:
            if conn.exec_seen.is_set():
                return
            conn.exec_seen.set()
            barrier.wait()  # both hooks now run, each holding its own session's lock
            me = conns.index(conn)
            other = conns[1 - me].channel
            assert other is not None
            other.write(f"from {me}\n".encode())
            other.send_exit_status(0)
            other.send_eof()
            other.close()

        return default_hooks(conn, on_channel_open_request_session=channel_opener(
            conn, on_exec_request=lambda *args: True, on_data=on_data))

    with Bind(key=lab.host_key) as bind:
        outputs = [os.path.join(lab.directory, f"relay{i}") for i in range(2)]
        try:
            for output in outputs:
                with open(output, "wb") as stdout:  # the client has its own copy of the fd
                    conns.append(lab.connect(bind, hooks, ready=False, stdout=stdout))

            def serve(conn: Connection) -> Body:
                client = conn.client
                assert client is not None

                def run(local: random.Random) -> None:
                    deadline = time.monotonic() + 20
                    while client.poll() is None and time.monotonic() < deadline:
                        crew.call(conn.event.dopoll, 0.05)
                return run

            for i, conn in enumerate(conns):
                crew.spawn(f"server{i}", rng, serve(conn))
            crew.run()
            for i, (conn, output) in enumerate(zip(conns, outputs)):
                with open(output, "rb") as f:
                    got = (conn.client and conn.client.returncode, f.read())
                if got != (0, f"from {1 - i}\n".encode()):
                    crew.fault(f"client {i}: exit status and output {got}")
        finally:
            for conn in conns:
                conn.close()


@scenario(rounds=pick(4, 40))
def scenario_listen_vs_stop(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """``Bind.listen`` serves several OpenSSH clients, each session polled by its handler
    thread, while two threads stop the server the way tests do (close the bind, then every
    session) and the clients come and go: every handler ends, listen() returns."""
    bind = Bind(key=lab.host_key)
    sessions: list[Session] = []
    clients: list[subprocess.Popen[bytes]] = []

    def handler(session: Session) -> None:
        sessions.append(session)
        conn = Connection(session, None)
        crew.call(session.set_server_callbacks, default_hooks(conn))
        crew.call(session.set_blocking, False)
        if crew.call(session.handle_key_exchange, 5) is None and session.closed:
            return
        event = crew.call(SessionEvent, session)
        for _ in range(2000):  # until stopped (bounded)
            if event is None or crew.call(event.dopoll, 0.05) is None:
                return
            if conn.channel is not None and rng.random() < 0.05:
                crew.call(conn.channel.write, b"hello\n")

    listening = threading.Event()

    def listen(local: random.Random) -> None:
        try:
            crew.safe(bind.listen, handler)
        finally:
            listening.set()

    def stop(local: random.Random) -> None:
        time.sleep(local.uniform(0.1, 0.6))
        crew.safe(bind.close)
        # A handler may still be starting for a client accepted just before: close what
        # appears until listen() has joined every handler.
        deadline = time.monotonic() + 20
        while not listening.wait(0.05) and time.monotonic() < deadline:
            for session in local.sample(sessions, len(sessions)):
                crew.safe(session.close)

    try:
        crew.spawn("listener", rng, listen)
        for _ in range(rng.randint(2, 4)):
            clients.append(lab.ssh(bind.port))
        for i in range(2):
            crew.spawn(f"stopper{i}", rng, stop)
        crew.run()
    finally:
        bind.close()
        for session in sessions:
            session.close()
        for client in clients:
            try:
                client.wait(10)
            finally:
                stop_process(client)


@regression
def query_between_two_sessions(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """Two sessions' data hooks, both running at once, each ask whether the other session's
    channel is open: the second to ask would close a deadlock cycle and gets RuntimeError at
    once; the first waits until that hook has returned and gets True."""
    barrier = threading.Barrier(2, timeout=10)
    conns: list[Connection] = []
    answers: list[Any] = []

    def hooks(conn: Connection) -> ServerCallbacks:
        def on_data(sess: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                    userdata: Any) -> None:
            if conn.exec_seen.is_set():
                return
            conn.exec_seen.set()
            barrier.wait()  # both hooks now run, each holding its own session's lock
            other = conns[1 - conns.index(conn)].channel
            assert other is not None
            answers.append(outcome(lambda: other.is_open))

        return default_hooks(conn, on_channel_open_request_session=channel_opener(
            conn, on_exec_request=lambda *args: True, on_data=on_data))

    with Bind(key=lab.host_key) as bind:
        try:
            for _ in range(2):
                conns.append(lab.connect(bind, hooks, ready=False))

            def serve(conn: Connection) -> Body:
                def run(local: random.Random) -> None:
                    deadline = time.monotonic() + 20
                    while len(answers) < 2 and time.monotonic() < deadline:
                        crew.call(conn.event.dopoll, 0.05)
                return run

            for i, conn in enumerate(conns):
                crew.spawn(f"server{i}", rng, serve(conn))
            crew.run()
            if sorted(answers, key=repr) != [RuntimeError, Returns(True)]:
                crew.fault(f"answers: {answers}")
        finally:
            for conn in conns:
                conn.close()


# ---- use after close: the contract of every public attribute --------------------------------


class Returns:
    """Expected outcome of a call on a closed object: it returns ``value`` (``ANY``: anything)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Returns) and (
            self.value is ANY or other.value is ANY or self.value == other.value)

    def __repr__(self) -> str:
        return f"returns {self.value!r}"


ANY = object()
NOTHING = Returns(None)
#: Class attributes that make new objects rather than use an instance.
CONSTRUCTORS = {"generate", "from_private_base64", "from_private_file", "from_public_base64",
                "from_public_file"}
Contract = dict[str, tuple[Callable[[], Any], Any]]


def closed_contract(objs: dict[str, Any], tmp: str) -> dict[str, Contract]:
    """For every public attribute of every class (and a few special methods and constructors
    taking the object): what it does once the object is closed, or for a borrowed key or
    message once its callback has returned.  ``ValueError``, or ``Returns(value)``."""
    session: Session = objs["Session"]
    event: SessionEvent = objs["SessionEvent"]
    channel: SshChannel = objs["SshChannel"]
    bind: Bind = objs["Bind"]
    message: SshMessage = objs["SshMessage"]
    other: SshKey = objs["other key"]
    r: int = objs["pipe"]
    path = os.path.join(tmp, "closed-key")
    contracts: dict[str, Contract] = {
        "Session": {
            "channels": (lambda: session.channels, Returns([])),
            "cipher": (lambda: session.cipher, ValueError),
            "client_banner": (lambda: session.client_banner, ValueError),
            "close": (session.close, NOTHING),
            "closed": (lambda: session.closed, Returns(True)),
            "disconnect": (session.disconnect, NOTHING),
            "fd": (lambda: session.fd, ValueError),
            "get_error": (session.get_error, ValueError),
            "handle_key_exchange": (lambda: session.handle_key_exchange(0.1), ValueError),
            "key_exchange_step": (session.key_exchange_step, ValueError),
            "poll_set": (session.poll_set, Returns({})),
            "has_fatal_error": (lambda: session.has_fatal_error, Returns(False)),
            "interrupt": (session.interrupt, NOTHING),
            "is_blocking": (lambda: session.is_blocking, ValueError),
            "is_connected": (lambda: session.is_connected, Returns(False)),
            "kbdint_answers": (session.kbdint_answers, ValueError),
            "kex_algorithm": (lambda: session.kex_algorithm, ValueError),
            "owning": (lambda: session.owning, Returns(True)),
            "set_auth_methods": (lambda: session.set_auth_methods(2), ValueError),
            "set_blocking": (lambda: session.set_blocking(False), ValueError),
            "set_disconnect_message": (lambda: session.set_disconnect_message("x"), ValueError),
            "send_issue_banner": (lambda: session.send_issue_banner("x"), ValueError),
            "set_global_request_callback": (
                lambda: session.set_global_request_callback(None), ValueError),
            "set_message_callback": (lambda: session.set_message_callback(None), ValueError),
            "set_server_callbacks": (
                lambda: session.set_server_callbacks(ServerCallbacks()), ValueError),
            "set_timeout": (lambda: session.set_timeout(1), ValueError),
            "status": (lambda: session.status, ValueError),
            "wakeup": (session.wakeup, NOTHING),
            "SessionEvent()": (lambda: SessionEvent(session), ValueError),
            "SshChannel()": (lambda: SshChannel(session), ValueError),
            "repr()": (lambda: repr(session).startswith("<Session closed"), Returns(True)),
        },
        "SessionEvent": {
            "add_fd": (lambda: event.add_fd(r, lambda fd, revents: None), ValueError),
            "close": (event.close, NOTHING),
            "closed": (lambda: event.closed, Returns(True)),
            "dopoll": (lambda: event.dopoll(0), ValueError),
            "fds": (lambda: event.fds, Returns([])),
            "poll_set": (event.poll_set, Returns({})),
            "is_assigned": (lambda: event.is_assigned, Returns(False)),
            "max_rounds": (lambda: event.max_rounds, Returns(SessionEvent.max_rounds)),
            "linger_fd": (lambda: event.linger_fd, Returns(SessionEvent.linger_fd)),
            "owning": (lambda: event.owning, Returns(True)),
            "remove_fd": (lambda: event.remove_fd(r), NOTHING),
            "session": (lambda: event.session, Returns(None)),
            "session_state": (lambda: event.session_state(), Returns((False, False))),
        },
        "SshChannel": {
            "abort": (channel.abort, NOTHING),
            "close": (channel.close, NOTHING),
            "closed": (lambda: channel.closed, Returns(True)),
            "is_eof": (lambda: channel.is_eof, Returns(True)),
            "is_open": (lambda: channel.is_open, Returns(False)),
            "owning": (lambda: channel.owning, Returns(True)),
            "open_auth_agent": (channel.open_auth_agent, ValueError),
            "open_error": (lambda: channel.open_error, Returns(None)),
            "open_forwarded_tcpip": (
                lambda: channel.open_forwarded_tcpip("127.0.0.1", 1, "127.0.0.1", 2), ValueError),
            "open_x11": (lambda: channel.open_x11("127.0.0.1", 2), ValueError),
            "opening": (lambda: channel.opening, Returns(False)),
            "pending_bytes": (lambda: channel.pending_bytes, Returns(0)),
            "pipe_from": (lambda: channel.pipe_from(r), ValueError),
            "pipe_to": (lambda: channel.pipe_to(r), ValueError),
            "poll_open": (channel.poll_open, ValueError),
            "poll": (channel.poll, ValueError),
            "read_nonblocking": (channel.read_nonblocking, ValueError),
            "remote_closed": (lambda: channel.remote_closed, Returns(ANY)),
            "send_eof": (channel.send_eof, ValueError),
            "send_exit_signal": (lambda: channel.send_exit_signal("TERM"), ValueError),
            "send_exit_status": (lambda: channel.send_exit_status(1), ValueError),
            "session": (lambda: channel.session is session, Returns(True)),
            "set_callbacks": (lambda: channel.set_callbacks(ChannelCallbacks()), ValueError),
            "window_size": (lambda: channel.window_size, ValueError),
            "write": (lambda: channel.write(b"x"), ValueError),
            "repr()": (lambda: repr(channel).startswith("<SshChannel closed"), Returns(True)),
        },
        "Bind": {
            "accept": (lambda: bind.accept(0), ValueError),
            "close": (bind.close, NOTHING),
            "closed": (lambda: bind.closed, Returns(True)),
            "fd": (lambda: bind.fd, ValueError),
            "get_error": (bind.get_error, ValueError),
            "is_open": (lambda: bind.is_open, Returns(False)),
            "listen": (lambda: bind.listen(lambda s: None), NOTHING),
            "serve": (lambda: bind.serve(lambda s: None, wait=False), ValueError),
            "owning": (lambda: bind.owning, Returns(True)),
            "sessions": (lambda: bind.sessions, Returns(0)),
            "set_message_callback": (lambda: bind.set_message_callback(None), NOTHING),
        },
        "SshKey": key_contract(objs["SshKey"], other, path, owned=True),
        "SshKey (borrowed)": key_contract(objs["SshKey (borrowed)"], other, path, owned=False),
        "SshMessage": {
            name: (getter(message, name), ValueError)
            for name in ("auth_kbdint_is_response", "auth_password", "auth_pubkey",
                         "auth_publickey_state", "auth_user", "destination", "global_request",
                         "originator", "service", "subtype", "type", "x11_request")},
    }
    contracts["SshMessage"].update({
        "auth_interactive_request": (
            lambda: message.auth_interactive_request("n", "i", ["p"], [False]), ValueError),
        "auth_reply_pk_ok_simple": (message.auth_reply_pk_ok_simple, ValueError),
        "auth_reply_success": (message.auth_reply_success, ValueError),
        "auth_set_methods": (lambda: message.auth_set_methods(2), ValueError),
        "channel_open_reply_accept": (message.channel_open_reply_accept, ValueError),
        "channel_request_reply_success": (message.channel_request_reply_success, ValueError),
        "close": (message.close, ValueError),
        "closed": (lambda: message.closed, Returns(True)),
        "global_request_reply_success": (message.global_request_reply_success, ValueError),
        "owning": (lambda: message.owning, Returns(False)),
        "reply_default": (message.reply_default, ValueError),
        "service_reply_success": (message.service_reply_success, ValueError),
        "repr()": (lambda: repr(message), Returns("<SshMessage (expired)>")),
    })
    return contracts


def getter(obj: Any, name: str) -> Callable[[], Any]:
    return lambda: getattr(obj, name)


def key_contract(key: SshKey, other: SshKey, path: str, *, owned: bool) -> Contract:
    return {
        "authorized_key_line": (key.authorized_key_line, ValueError),
        "close": (key.close, NOTHING if owned else ValueError),
        "closed": (lambda: key.closed, Returns(True)),
        "copy": (key.copy, ValueError),
        "fingerprint": (key.fingerprint, ValueError),
        "is_private": (lambda: key.is_private, ValueError),
        "is_public": (lambda: key.is_public, ValueError),
        "owning": (lambda: key.owning, Returns(owned)),
        "public_base64": (lambda: key.public_base64, ValueError),
        "public_equals": (lambda: key.public_equals(other), ValueError),
        "public_key": (key.public_key, ValueError),
        "to_private_base64": (key.to_private_base64, ValueError),
        "to_private_file": (lambda: key.to_private_file(path), ValueError),
        "to_public_file": (lambda: key.to_public_file(path), ValueError),
        "type": (lambda: key.type, ValueError),
        "type_name": (lambda: key.type_name, ValueError),
        "repr()": (lambda: repr(key), Returns("<SshKey closed>")),
        "hash()": (lambda: hash(key), ValueError),
        "==": (lambda: key == other, ValueError),
        "Bind(key=)": (lambda: Bind(key=key), ValueError),
    }


def outcome(fn: Callable[[], Any]) -> Any:
    """What ``fn()`` did: ``Returns(result)``, or the type of the exception it raised."""
    try:
        return Returns(fn())
    except Exception as exc:
        return type(exc)


@scenario(rounds=pick(2, 20))
def scenario_use_after_close(rng: random.Random, crew: Crew, lab: Lab) -> None:
    """Every public method and property of every class, called from several threads while
    other threads close the objects, then again once all are closed: while they close, calls
    work or raise ValueError/LibSSHError; afterwards each behaves exactly as
    :func:`closed_contract` lists, from any thread."""
    kept: dict[str, Any] = {}

    def hooks(conn: Connection) -> ServerCallbacks:
        def on_message(sess: Session, message: SshMessage, userdata: Any) -> bool:
            kept.setdefault("SshMessage", message)
            return False

        def on_pubkey(sess: Session, user: str, key: SshKey, state: Any, userdata: Any) -> bool:
            kept.setdefault("SshKey (borrowed)", key)
            return True

        conn.session.set_message_callback(on_message)
        return default_hooks(conn, on_auth_none=lambda *args: False, on_auth_pubkey=on_pubkey)

    bind = Bind(key=lab.host_key)
    conn = lab.connect(bind, hooks, pubkey=True)
    r, w = os.pipe()
    objs = {"Session": conn.session, "SessionEvent": conn.event, "SshChannel": conn.channel,
            "Bind": bind, "SshKey": lab.client_key.copy(), "other key": lab.host_key,
            "pipe": r, **kept}
    try:
        contracts = closed_contract(objs, lab.directory)
        for name, contract in contracts.items():
            public = {n for n in dir(type(objs[name])) if not n.startswith("_")} - CONSTRUCTORS
            if public - set(contract):
                crew.fault(f"{name}: no closed-object contract for "
                           f"{sorted(public - set(contract))}")
        # (An attribute the class no longer has is skipped: only missing contracts fail.)
        calls = [(f"{name}.{attr}", fn, expected) for name, contract in contracts.items()
                 for attr, (fn, expected) in contract.items()
                 if not attr.isidentifier() or hasattr(type(objs[name]), attr)]
        # While the objects are being closed (listen() and serve() would serve until the bind
        # closes: they are only called afterwards).
        racing = [call for call in calls if call[0] not in ("Bind.listen", "Bind.serve")]
        order = ["SshChannel", "SessionEvent", "Session", "Bind", "SshKey"]

        def use(local: random.Random) -> None:
            for _ in range(local.randint(20, 80)):
                _, fn, expected = local.choice(racing)
                made = (crew.safe if isinstance(expected, Returns) else crew.call)(fn)
                if isinstance(made, (SshKey, Bind)):  # copy(), Bind(key=)... while still open
                    made.close()

        def close(local: random.Random) -> None:
            for name in local.sample(order, len(order)):
                time.sleep(local.uniform(0, 0.02))
                crew.safe(objs[name].close)

        for i in range(rng.randint(2, 4)):
            crew.spawn(f"user{i}", rng, use)
        for i in range(2):
            crew.spawn(f"closer{i}", rng, close)
        crew.run()

        # All closed: each call gives exactly its contracted outcome, from any thread.
        def check(local: random.Random) -> None:
            for what, fn, expected in local.sample(calls, len(calls)):
                actual = outcome(fn)
                if actual != expected:
                    crew.fault(f"{what} after close: expected {expected!r}, got {actual!r}")
            crew.safe(lambda: None)  # one call per checker in the counts

        for i in range(3):
            crew.spawn(f"checker{i}", rng, check)
        crew.run()
    finally:
        os.close(r)
        os.close(w)
        conn.close()
        bind.close()
        objs["SshKey"].close()


# ---- running scenarios -----------------------------------------------------------------------


def settle(before: ProcStats, timeout: float = 10.0) -> ProcStats:
    """Wait (bounded) for fds, threads and children to drop to ``before``; the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        now = ProcStats.of()
        done = (now.fds <= before.fds and now.threads <= before.threads
                and now.children <= before.children)
        if done or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def run_scenario(name: str, seed: int = SEED) -> Outcome:
    """Run scenario ``name`` here: round ``i`` uses ``Random(f"{seed}/{name}/{i}")``."""
    fn, rounds = {**SCENARIOS, **REGRESSIONS}[name]
    out = Outcome()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pylibssh-threads-") as tmp:
        lab = Lab(tmp, seed)
        before = ProcStats.of()
        try:
            for i in range(rounds):
                crew = Crew()
                try:
                    fn(random.Random(f"{seed}/{name}/{i}"), crew, lab)
                finally:
                    out.add(crew)
        finally:
            lab.close()
        after = settle(before)
    out.before = (before.rss_kib, before.fds, before.threads, before.children)
    out.after = (after.rss_kib, after.fds, after.threads, after.children)
    out.seconds = time.monotonic() - start
    return out


def run_isolated(name: str, seed: int = SEED) -> Outcome:
    """Run scenario ``name`` in a child Python; a crash or a hang there fails the test with
    the faulthandler output instead of killing the test run."""
    budget = pick(60, 150)
    # Like the test run: an unclosed object's ResourceWarning is an error (reported as an
    # unraisable exception).
    cmd = [sys.executable, *(["-X", "dev"] if sys.flags.dev_mode else []), "-X", "faulthandler",
           "-W", "error::ResourceWarning", "-m", "stress.test_threads", name, str(seed)]
    where = f"scenario {name} (seed {seed}; rerun: cd tests && {' '.join(cmd)})"
    try:
        proc = subprocess.run([*cmd, str(budget)], cwd=TESTS_DIR, capture_output=True,
                              text=True, timeout=budget + 30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{where} did not finish in {budget + 30} s\n{exc.stderr!r}"
                             ) from None
    if proc.returncode < 0:
        raise AssertionError(f"{where} crashed with {signal.Signals(-proc.returncode).name}:"
                             f"\n{proc.stderr[-20000:]}")
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"{where} exited {proc.returncode}:\n{proc.stderr[-20000:]}")
    return Outcome(**json.loads(lines[-1]))


def child_main(argv: list[str]) -> int:
    """``python -m stress.test_threads NAME SEED BUDGET``: one JSON line with the outcome."""
    name, seed, budget = argv[0], int(argv[1]), float(argv[2])
    # A hang dumps every thread's stack and exits non-zero (the parent reports it).
    faulthandler.dump_traceback_later(budget, exit=True)
    unraisable: list[str] = []
    sys.unraisablehook = lambda u: unraisable.append(
        f"{u.exc_type.__name__}: {u.exc_value} in {u.object!r}")
    out = run_scenario(name, seed)
    out.unexpected += [f"unraisable exception: {text}" for text in unraisable]
    print(json.dumps(out.__dict__), flush=True)
    faulthandler.cancel_dump_traceback_later()
    return 0


# ---- tests -----------------------------------------------------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_threads_never_crash(name: str) -> None:
    """Every call of every thread works or raises ValueError/LibSSHError (close() and state
    flags never raise), no thread hangs, no process crashes, and fds, threads and child
    processes return to their baseline."""
    out = run_scenario(name) if IN_PROCESS else run_isolated(name)
    assert out.before is not None and out.after is not None
    before, after = ProcStats(*out.before), ProcStats(*out.after)
    record(f"threads: {name}", tried=out.tried, faults=len(out.unexpected), before=before,
           after=after, seconds=out.seconds, extra={"calls": out.calls, "raised": out.raised})
    assert "\n\n".join(out.unexpected) == ""
    assert out.tried == SCENARIOS[name][1]
    assert (after.fds <= before.fds, after.threads <= before.threads, after.children) == (
        True, True, 0), f"{before} -> {after}"


# ---- regressions: deterministic versions of what the scenarios found --------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str) -> None:
    """The check ``name`` (see its docstring) passes, in a child process."""
    out = run_scenario(name) if IN_PROCESS else run_isolated(name)
    assert "\n\n".join(out.unexpected) == ""


PUBLIC_EQUALS_BOTH_ORDERS = """
import faulthandler, sys, threading, time
from pylibssh_server import SshKey
faulthandler.dump_traceback_later(20, exit=True)  # a deadlock: stacks, exit status 1
sys.setswitchinterval(1e-6)  # switch threads between the two lock acquisitions, too
a, b = SshKey.generate(), SshKey.generate()

def compare(x, y):
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        x.public_equals(y)

threads = [threading.Thread(target=compare, args=pair) for pair in ((a, b), (b, a))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
a.close()
b.close()
print("done")
"""


def test_public_equals_in_both_orders_does_not_deadlock() -> None:
    """a.public_equals(b) and b.public_equals(a) in two threads at once both finish (the two
    key locks are taken in one global order, not argument order).  In a child process: a
    deadlock there cannot hang this one."""
    proc = subprocess.run([sys.executable, "-c", PUBLIC_EQUALS_BOTH_ORDERS], cwd=TESTS_DIR,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "done\n"), proc.stderr


@pytest.mark.timeout(60)
def test_borrowed_key_and_message_wait_for_their_hook(tmp_path: Any) -> None:
    """A thread given a hook's borrowed key or message cannot use it while the hook runs (it
    waits for the session lock) and gets ValueError once the hook returned: it never reaches
    memory libssh freed."""
    lab = Lab(str(tmp_path), SEED)
    results: dict[str, list[Any]] = {}

    def borrow_once(name: str, use: Callable[[], Any]) -> None:
        got: list[Any] = []
        thread = threading.Thread(target=lambda: got.append(outcome(use)), daemon=True)
        thread.start()
        time.sleep(0.2)  # plenty of time to use the object while the hook still runs
        results[name] = [list(got)]  # what it got during the hook
        threads.append((name, thread, got))

    threads: list[tuple[str, threading.Thread, list[Any]]] = []

    def hooks(conn: Connection) -> ServerCallbacks:
        def on_message(sess: Session, message: SshMessage, userdata: Any) -> bool:
            borrow_once("message", lambda: message.type)
            return False

        def on_pubkey(sess: Session, user: str, key: SshKey, state: Any, userdata: Any) -> bool:
            if "key" not in results:
                borrow_once("key", key.fingerprint)
            return True

        conn.session.set_message_callback(on_message)
        return default_hooks(conn, on_auth_none=lambda *args: False, on_auth_pubkey=on_pubkey)

    try:
        with Bind(key=lab.host_key) as bind:
            lab.connect(bind, hooks, pubkey=True).close()
        for name, thread, got in threads:
            thread.join(10)
            results[name].append(got)
    finally:
        lab.close()
    assert results == {"message": [[], [ValueError]], "key": [[], [ValueError]]}


@pytest.mark.timeout(60)
def test_write_from_another_thread_while_dopoll_waits_forever(tmp_path: Any) -> None:
    """channel.write() from another thread returns at once while the serving thread is parked
    in dopoll(None) for an idle client (the writer wakes the poll to get the session lock),
    not once the client sends something."""
    lab = Lab(str(tmp_path), SEED)
    try:
        with Bind(key=lab.host_key) as bind:
            conn = lab.connect(bind)
            channel = conn.channel
            assert channel is not None
            stop = threading.Event()

            def serve() -> None:
                for _ in range(10000):
                    if stop.is_set():
                        return
                    try:
                        conn.event.dopoll(None)
                    except ValueError:
                        return

            server = threading.Thread(target=serve, daemon=True)
            server.start()
            time.sleep(0.3)  # the client has sent its input (the window is full): idle
            took: list[float] = []

            def write() -> None:
                for _ in range(20):
                    start = time.monotonic()
                    channel.write(b"x")
                    took.append(time.monotonic() - start)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            writer.join(10)
            stuck = writer.is_alive()
            stop.set()
            conn.close()
            server.join(5)
            writer.join(5)
            assert (stuck, server.is_alive(), len(took), max(took) < 1.0) == (
                False, False, 20, True), took
    finally:
        lab.close()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
