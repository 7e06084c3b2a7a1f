# SPDX-License-Identifier: MIT
"""Shared fixtures: a host key, OpenSSH client arguments, and a loopback server/client pair.

Everything listens on 127.0.0.1 with an ephemeral port, and every wait is bounded.
"""

from __future__ import annotations

import os
import select
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import paramiko
import pytest

from pylibssh_server import (
    AuthMethod,
    AuthStatus,
    Bind,
    ServerCallbacks,
    Session,
    SessionEvent,
    SshKey,
)


def pytest_configure(config: pytest.Config) -> None:
    # -W error::ResourceWarning alone cannot fail a test for a forgotten close(): the warning
    # is raised inside __del__, where Python only reports it as "unraisable".  Make that fail.
    config.addinivalue_line("filterwarnings", "error::pytest.PytestUnraisableExceptionWarning")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


#: OpenSSH client options independent of ``~/.ssh``, the agent and the system config.
SSH_OPTS = (
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
    "-o", "IdentityAgent=none",
)


def ssh_base_args(port: int, *, batch: bool = True) -> list[str]:
    """OpenSSH client options independent of ``~/.ssh`` and the system config.

    ``batch=False`` allows prompts (needed for sshpass and SSH_ASKPASS); public-key auth is
    then off so no user key is tried.
    """
    args = [
        *SSH_OPTS,
        "-o", f"BatchMode={'yes' if batch else 'no'}",
        "-p", str(port),
    ]
    if not batch:
        args += ["-o", "PubkeyAuthentication=no"]
    return args


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Terminate a process we started (by its PID), kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
             ) -> None:
    """Poll ``predicate`` every 20 ms; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


def password_pw(sess: Session, user: str, password: str, userdata: Any) -> AuthStatus:
    """An ``on_auth_password`` hook that accepts the password "pw", for any user."""
    return AuthStatus.SUCCESS if password == "pw" else AuthStatus.DENIED


_SPAWNS: list[str] = []
_WATCHING = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCHING.is_set() and event in ("subprocess.Popen", "os.posix_spawn", "os.fork",
                                        "os.forkpty", "os.exec", "os.spawn", "os.system"):
        _SPAWNS.append(event)


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only while watching


@pytest.fixture
def no_process_started() -> Iterator[list[str]]:
    """The processes this test process starts while the test runs, by audit event name (the
    DemoServer runs in this process, so a command it starts shows here)."""
    _SPAWNS.clear()
    _WATCHING.set()
    try:
        yield _SPAWNS
    finally:
        _WATCHING.clear()


def process_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (a zombie left to init counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True  # it ended between kill(0) and the read (ESRCH from a dying /proc entry)


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[int]:
    """Run ``server`` (bound to 127.0.0.1) in a thread; yield its port; shut it down after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(60)
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


class _ThreadingServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True


@pytest.fixture(params=["c", "python"])
def data_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once with the DemoServer's bytes moved in C (``pipe_to``/``pipe_from``,
    the default) and once forced to the Python path (``PYLIBSSH_DEMO_DATA_PATH=python``).
    The variable is read per channel, by in-process servers and CLI servers alike."""
    monkeypatch.setenv("PYLIBSSH_DEMO_DATA_PATH", request.param)
    return str(request.param)


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1 (echoes until EOF, then half-closes); yields its port."""
    with serving(_ThreadingServer(("127.0.0.1", 0), _Echo)) as port:
        yield port


@pytest.fixture
def host_key() -> Iterator[SshKey]:
    """A fresh Ed25519 host key, closed after the test."""
    with SshKey.generate() as key:
        yield key


@pytest.fixture
def ssh_args() -> Callable[..., list[str]]:
    """:func:`ssh_base_args` as a fixture, for test modules that do not import conftest."""
    return ssh_base_args


class ServerThread:
    """``bind.listen(handler)`` in a thread; ``stop()`` closes the bind and the sessions."""

    def __init__(self, bind: Bind, handler: Callable[[Session], Any]) -> None:
        self.bind = bind
        self.sessions: list[Session] = []
        self.errors: list[BaseException] = []

        def run(session: Session) -> None:
            self.sessions.append(session)
            try:
                handler(session)
            except BaseException as exc:  # inspected by the test
                self.errors.append(exc)

        self.thread = threading.Thread(target=bind.listen, args=(run,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.bind.port

    def stop(self, timeout: float = 10.0) -> None:
        self.bind.close()
        for session in self.sessions:
            session.close()  # wakes a handler blocked in dopoll
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server thread did not stop"


@pytest.fixture
def serve(host_key: SshKey) -> Iterator[Callable[..., ServerThread]]:
    """Start ``Bind(**kwargs).listen(handler)`` in a thread; stopped after the test."""
    servers: list[ServerThread] = []

    def start(handler: Callable[[Session], Any], **bind_kwargs: Any) -> ServerThread:
        bind_kwargs.setdefault("key", host_key)
        server = ServerThread(Bind(**bind_kwargs), handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Loopback:
    """A server session driven by the test thread, and a client on the other end.

    The test thread owns the server side, so an exception a hook raises comes out of
    ``poll_until`` (that is, ``SessionEvent.dopoll``) right in the test.  Blocking paramiko
    calls run on ``self.client`` (a one-thread executor) while the test thread polls.
    """

    def __init__(self, key: SshKey) -> None:
        self.bind = Bind(key=key)
        self.client = ThreadPoolExecutor(max_workers=1)
        self.transports: list[paramiko.Transport] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.session: Session | None = None
        self.event: SessionEvent | None = None
        #: Whether accept() gives the session its wake-up pipe at once (``Bind.accept``).
        self.wake_pipe = True
        self._starting: list[Future[Any]] = []

    @property
    def port(self) -> int:
        return self.bind.port

    def paramiko(self) -> paramiko.Transport:
        """Connect a paramiko Transport and start its key exchange on the client thread."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        transport = paramiko.Transport(sock)
        self.transports.append(transport)
        self._starting.append(self.client.submit(transport.start_client, timeout=10))
        return transport

    def ssh(self, *args: str, env: dict[str, str] | None = None,
            prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
        """Start an OpenSSH client (``prefix`` e.g. ``("sshpass", "-p", pw)``) to the server."""
        proc = subprocess.Popen(
            [*prefix, "ssh", *ssh_base_args(self.port, batch=not prefix), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)
        self.procs.append(proc)
        return proc

    def accept(
        self,
        callbacks: ServerCallbacks | None = None,
        auth_methods: AuthMethod = AuthMethod.PASSWORD,
        message_callback: Callable[..., Any] | None = None,
    ) -> Session:
        """Accept the client, install the hooks, run the key exchange, create the event;
        a paramiko client has finished its side of the key exchange on return."""
        session = self.bind.accept(timeout=10, wake_pipe=self.wake_pipe)
        assert session is not None, "no client connected within 10 s"
        self.session = session
        if callbacks is not None:
            session.set_server_callbacks(callbacks)
        if message_callback is not None:
            session.set_message_callback(message_callback)
        session.set_auth_methods(auth_methods)
        session.set_blocking(False)
        if self.wake_pipe:
            session.handle_key_exchange(timeout=10)
        else:  # in steps, as a reactor does: no wait inside libssh makes the pipe
            deadline = time.monotonic() + 10
            while not session.key_exchange_step():
                assert time.monotonic() < deadline, "no key exchange within 10 s"
                select.select(list(session.poll_set()), [], [], 0.05)
        self.event = SessionEvent(session)
        starting, self._starting = self._starting, []
        for future in starting:
            self.wait_done(future)
        return session

    def login(self, **server_hooks: Any) -> paramiko.Transport:
        """Connect paramiko and log in as "user" with password "pw" (the only one accepted);
        the server session also gets ``server_hooks`` (``ServerCallbacks`` arguments)."""
        def on_password(sess: Session, user: str, password: str, userdata: Any) -> bool:
            return password == "pw"

        transport = self.paramiko()
        session = self.accept(ServerCallbacks(on_auth_password=on_password, **server_hooks))
        self.wait_done(self.submit(transport.auth_password, "user", "pw"))
        assert session.authenticated is True
        return transport

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run a (blocking) client call on the client thread."""
        return self.client.submit(fn, *args, **kwargs)

    def poll_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """``dopoll`` until ``predicate()`` holds; AssertionError after ``timeout`` seconds."""
        assert self.event is not None
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            self.event.dopoll(0.05)

    def wait_done(self, future: Future[Any], timeout: float = 10.0) -> Any:
        """Poll the server until the client call finishes, then return its result."""
        self.poll_until(future.done, timeout)
        return future.result(0)

    def wait_exit(self, proc: subprocess.Popen[str], timeout: float = 10.0) -> tuple[str, str]:
        """Poll the server until the ssh client exits; return its (stdout, stderr)."""
        self.poll_until(lambda: proc.poll() is not None, timeout)
        return proc.communicate(timeout=5)

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        if self.session is not None:
            self.session.close()
        for proc in self.procs:
            stop_process(proc)
        self.client.shutdown(wait=True, cancel_futures=True)
        self.bind.close()


@pytest.fixture
def loopback(host_key: SshKey) -> Iterator[Loopback]:
    """A :class:`Loopback`: one server session in the test thread and its client."""
    pair = Loopback(host_key)
    try:
        yield pair
    finally:
        pair.close()
