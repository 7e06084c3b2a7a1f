# SPDX-License-Identifier: MIT
"""``DemoServer``: a real SSH server for testing SSH clients, started in milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO, TypeVar

from pylibssh_server import AuthMethod, Bind, Job, LogLevel, Reactor, Session, SshKey
from pylibssh_server.demo.auth import AuthChains, Kbdint
from pylibssh_server.demo.client import DemoClient
from pylibssh_server.demo.commands import CommandTable, ReplyLike
from pylibssh_server.demo.config import DemoConfig, KeySource, loopback_only
from pylibssh_server.demo.faults import Counter, Faults, FaultValue
from pylibssh_server.demo.keyrules import KeyRules

__all__ = ["DemoServer", "DemoServerTimeout"]

logger: logging.Logger = logging.getLogger("pylibssh_server.demo")

#: ``DemoServer(model=...)``: how clients are served.
MODELS = ("reactor", "threads")

T = TypeVar("T")


def _setting(name: str) -> Any:
    """A read-only attribute of the server that is the setting ``name`` of its config."""
    return property(lambda self: getattr(self.config, name),
                    doc=f"``config.{name}`` (see :class:`DemoConfig`).")


class DemoServerTimeout(TimeoutError):
    """The function run by :meth:`DemoServer.run` exceeded its timeout."""


class _Interrupted(BaseException):
    """Injected into a function thread that overran its timeout."""


class DemoServer:
    """A real SSH server on loopback for tests: auth, exec, forwarding, SFTP, an event log.

    Args:
        port: TCP port, 0 (default) for a free one; the real one is :attr:`port`.
        host: listen address (default ``127.0.0.1``).
        password: the password accepted for any user name (password auth).
        users: user name -> password: per-user passwords (a listed user needs that
            password; other users get in with ``password`` when it is set).
        kbdint: keyboard-interactive rounds: a :class:`~pylibssh_server.demo.auth.Kbdint`,
            its JSON form as a mapping, or a path to a JSON file; default one round,
            ``Password: `` and ``Token: `` answered ``foo`` and ``bar``.
        auth_chains: as OpenSSH's ``AuthenticationMethods``: chains such as
            ``["publickey,password"]``; a client is in after every method of one chain, in
            order; each earlier step answers partial success (logged as ``auth_partial``).
        banner: text sent before authentication (``SSH_MSG_USERAUTH_BANNER``).
        server_version: the software version of the identification line
            (``SSH-2.0-<server_version>``); default libssh's.
        hostkey_type: the type of the generated host key: ``ed25519`` (default), ``ecdsa``
            (P-256) or ``rsa`` (2048 bits); not with ``host_key``.
        faults: faults on purpose: a mapping (``{"throttle": 65536}``) or ``NAME[=VALUE]``
            strings, as ``--fault`` (see :data:`pylibssh_server.demo.faults.FAULT_NAMES`);
            each applied fault is logged as a ``fault`` event.
        auth_methods: advertised methods (an :class:`AuthMethod` mask or a comma list such as
            ``"password,publickey,keyboard-interactive"``); default: what the other arguments
            enable (password if given, publickey if keys are given, none if allowed).
        allow_auth_none: accept "none" authentication.
        authorized_keys: :class:`SshKey` objects, ``authorized_keys`` lines (with the options
            sshd enforces: ``from=``, ``command=``, ``environment=``, ``no-pty``,
            ``no-port-forwarding``, ``permitopen=``, ``restrict`` ..., and ``cert-authority``
            lines), file paths, or a file path; or a mapping from user name (``"*"``: any
            user) to such keys: ``{"alice": [key], "bob": "/path/authorized_keys"}``.
        host_key: an :class:`SshKey` or a private key path; default a fresh Ed25519 key.
        verbose: print one line per event as it happens.
        log_verbosity: libssh's log level (to the ``pylibssh_server.libssh`` logger).
        sftp_root: directory served by SFTP as "/"; None serves the real file system.
        login_grace_time: seconds a client has to authenticate before it is dropped.
        max_auth_attempts: failed authentications after which the client is dropped.
        max_channels: channels (sessions and forwards) one client may have open at once;
            further opens are refused.
        max_connections: clients served at once; a client beyond it is closed at once
            (logged).  Default: what the open-files limit (``RLIMIT_NOFILE``) leaves room
            for (6 fds each), at most 4096.
        max_unauthenticated: clients not logged in yet at once (OpenSSH's ``MaxStartups``):
            further ones are closed at once.  Default: half of ``max_connections``.
        max_fds_per_client: file descriptors and SFTP handles the channels of one client may
            hold together (a command holds 4, a forward 2, an open SFTP file 1); what would
            exceed it is refused.  Default: an eighth of the open-files limit, 16 to 1024.
        ignore_key_options: load ``authorized_keys`` lines as plain keys, without any of
            their options, with a warning (a ``cert-authority`` line is then skipped),
            instead of refusing lines with options that are not supported.
        shell: the command a ``shell`` request runs (on the pty when one was requested, on
            pipes otherwise); default ``/bin/sh``.
        commands: commands answered without the host: a :class:`CommandTable`, or a mapping
            from exact command lines (and compiled regular expressions) to replies: a str
            (stdout, status 0), a :class:`Reply` or mapping (stdout, stderr, exit_status,
            delay), or a callable that gets a :class:`Process` and returns the exit status
            (run in a thread of its own).
        host_commands: False: no host process is ever started; an exec not in ``commands``
            gets ``demo: command not found: ...`` and 127, a shell request the scripted shell
            (``commands``' banner and prompt, each line answered from the table).
        remote_forward_allow: ``f(address, port) -> bool`` deciding ``tcpip-forward``
            (``ssh -R``) requests; default: loopback bind addresses (``""``, ``localhost``,
            ``127.0.0.1``, ``::1``; the first two bind 127.0.0.1, as sshd's ``GatewayPorts
            no``) and ports 0 or 1024 and up.
        max_remote_forwards: ``tcpip-forward`` listeners one client may hold at once.
        agent_forwarding: serve ``ssh -A``: a command of a session that asked for it gets
            ``SSH_AUTH_SOCK``, a socket whose connections reach the client's agent.
        forward_allow: ``f(host, port) -> bool`` deciding direct-tcpip targets; default any.
        command_env: extra environment for commands (on top of the inherited one).
        keep_clients: keep every finished client (and its event log) in :attr:`clients`;
            False forgets each one when it ends, so a server that runs indefinitely (the CLI)
            uses no memory per past connection.
        event_log: record each client's events in its ``callback_log`` and ``timeline``
            (``verbose`` prints them either way).  The CLI, whose logs nobody can read, turns
            it off: an idle connection then holds no log.
        ciphers, kex, macs, hostkey_algorithms: algorithm lists for the Bind.
        trusted_user_ca_keys: CA public keys (a file, as sshd's ``TrustedUserCAKeys``, or
            keys and lines) whose user certificates log in when a principal is the user name.
        hostkey_cert: an OpenSSH host certificate for the host key; no libssh release can
            present one (its server offers plain host key algorithms only), so this raises.
        model: ``"reactor"`` (the default, unless ``PYLIBSSH_DEMO_MODEL`` says otherwise):
            every client is a job of a
            :class:`~pylibssh_server.Reactor` whose threads serve many clients each;
            ``"threads"``: a thread per client (``Bind.listen``).  The ``delay-auth`` fault
            always uses threads (its wait would stall a reactor thread's other clients).
        reactor_threads: the reactor's threads (default: one per CPU core).

    Raises:
        ValueError: an enabled auth method lacks its secret (password auth without a password,
            public-key auth without keys), no way in is configured at all, or a limit is not
            positive.
        TypeError: an argument of the wrong type (``password`` not a str, ...).
        SshKeyError: an ``authorized_keys`` line is malformed, or has options that are not
            supported (see ``ignore_key_options``).
    """

    #: Every setting, checked once at construction.
    config: DemoConfig
    fingerprint: str
    port: int
    max_connections: int = _setting("max_connections")
    max_unauthenticated: int = _setting("max_unauthenticated")
    max_fds_per_client: int = _setting("max_fds_per_client")
    ignore_key_options: bool = _setting("ignore_key_options")
    host_commands: bool = _setting("host_commands")
    max_remote_forwards: int = _setting("max_remote_forwards")
    agent_forwarding: bool = _setting("agent_forwarding")
    requested_port: int = _setting("requested_port")
    sftp_root: str | None = _setting("sftp_root")
    login_grace_time: float = _setting("login_grace_time")
    max_auth_attempts: int = _setting("max_auth_attempts")
    max_channels: int = _setting("max_channels")
    command_env: dict[str, str] = _setting("command_env")
    host_key: SshKey = _setting("host_key")
    commands: CommandTable = _setting("commands")
    auth_methods: AuthMethod = _setting("auth_methods")
    allow_auth_none: bool = _setting("allow_auth_none")
    users: dict[str, str] = _setting("users")
    kbdint: Kbdint = _setting("kbdint")
    auth_chains: AuthChains | None = _setting("auth_chains")
    server_version: str | None = _setting("server_version")
    faults: Faults = _setting("faults")
    fault_counters: dict[str, Counter] = _setting("fault_counters")
    key_rules: KeyRules = _setting("key_rules")
    host: str = _setting("host")
    password: str | None = _setting("password")
    banner: str | None = _setting("banner")
    shell: str = _setting("shell")
    verbose: bool = _setting("verbose")
    log_verbosity: LogLevel | int | None = _setting("log_verbosity")
    forward_allow: Callable[[str, int], bool] | None = _setting("forward_allow")
    remote_forward_allow: Callable[[str, int], bool] | None = _setting("remote_forward_allow")
    keep_clients: bool = _setting("keep_clients")
    event_log: bool = _setting("event_log")
    authorized_keys: list[SshKey] = _setting("authorized_keys")

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        password: str | None = None,
        users: Mapping[str, str] | None = None,
        kbdint: Kbdint | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        auth_chains: Iterable[str | Iterable[str]] | None = None,
        banner: str | None = None,
        server_version: str | None = None,
        hostkey_type: str | None = None,
        faults: Faults | Mapping[str, FaultValue] | Iterable[str] | None = None,
        auth_methods: AuthMethod | int | str | Iterable[str] | None = None,
        allow_auth_none: bool = False,
        authorized_keys: Iterable[SshKey | str] | str | os.PathLike[str] = (),
        host_key: KeySource | None = None,
        verbose: bool = False,
        log_verbosity: LogLevel | int | None = None,
        sftp_root: str | os.PathLike[str] | None = None,
        login_grace_time: float = 60.0,
        max_auth_attempts: int = 20,
        max_channels: int = 1024,
        max_connections: int | None = None,
        max_unauthenticated: int | None = None,
        max_fds_per_client: int | None = None,
        ignore_key_options: bool = False,
        shell: str = "/bin/sh",
        commands: CommandTable | Mapping[str | re.Pattern[str], ReplyLike] | None = None,
        host_commands: bool = True,
        remote_forward_allow: Callable[[str, int], bool] | None = None,
        max_remote_forwards: int = 16,
        agent_forwarding: bool = True,
        forward_allow: Callable[[str, int], bool] | None = None,
        command_env: dict[str, str] | None = None,
        keep_clients: bool = True,
        event_log: bool = True,
        ciphers: str | None = None,
        kex: str | None = None,
        macs: str | None = None,
        hostkey_algorithms: str | None = None,
        trusted_user_ca_keys: Iterable[SshKey | str] | str | os.PathLike[str] | None = None,
        hostkey_cert: str | os.PathLike[str] | None = None,
        model: str | None = None,
        reactor_threads: int | None = None,
    ) -> None:
        if model is None:
            model = os.environ.get("PYLIBSSH_DEMO_MODEL") or "reactor"
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
        if reactor_threads is not None and (not isinstance(reactor_threads, int)
                                            or reactor_threads < 1):
            raise ValueError(f"reactor_threads must be a positive int, not {reactor_threads!r}")
        self.config = DemoConfig.from_arguments(
            {name: value for name, value in locals().items()
             if name not in ("self", "model", "reactor_threads")})
        if model == "reactor" and "delay-auth" in self.config.faults:
            # Its wait runs inside libssh's auth callback: on a reactor thread it would stall
            # every other client of that thread.
            logger.info("DemoServer: the delay-auth fault serves each client on a thread")
            model = "threads"
        #: How clients are served: "reactor" (many per thread) or "threads" (one each).
        self.model = model
        self.reactor_threads = reactor_threads
        self._reactor: Reactor | None = None
        self.fingerprint = self.host_key.fingerprint()
        self.clients: list[DemoClient] = []
        self._bind: Bind | None = None
        self._listener: threading.Thread | None = None
        self._lock = threading.Lock()
        self.port = self.requested_port
        self._known_hosts_dir: str | None = None
        self._connections = 0
        # One bound method for every client's done callback, not one per client.
        self._forget_client = self._forget

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<DemoServer {self.host}:{self.port} {self.fingerprint} {state}>"

    # ---- configuration ------------------------------------------------------------------
    def forward_allowed(self, host: str, port: int) -> bool:
        """Whether a direct-tcpip request to ``host:port`` may be connected."""
        return self.config.forward_allowed(host, port)

    def remote_forward_allowed(self, address: str, port: int) -> bool:
        """Whether a ``tcpip-forward`` request for ``address:port`` may be granted."""
        return self.config.remote_forward_allowed(address, port)

    @staticmethod
    def loopback_only(host: str, port: int) -> bool:
        """A ready ``forward_allow`` policy: loopback addresses and ``localhost`` only."""
        return loopback_only(host, port)

    # ---- lifecycle ----------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._bind is not None and self._bind.is_open

    def start(self) -> DemoServer:
        """Bind, listen and serve in background threads; returns at once (port known)."""
        with self._lock:
            if self._bind is not None:
                raise RuntimeError("DemoServer is already running")
            self._bind = Bind(self.host, self.requested_port, key=self.host_key,
                              log_verbosity=self.log_verbosity, banner=self.server_version,
                              **self.config.bind_options)
            self.port = self._bind.port
            if self.model == "reactor":
                self._reactor = Reactor(self.reactor_threads)
                self._bind.serve(self._serve_job, reactor=self._reactor, wait=False,
                                 max_sessions=self.max_connections,
                                 max_unauthenticated=self.max_unauthenticated)
                return self._started()
            self._listener = threading.Thread(
                target=self._bind.listen, args=(self._serve,),
                kwargs={"max_sessions": self.max_connections,
                        "max_unauthenticated": self.max_unauthenticated},
                name=f"demo-server-{self.port}", daemon=True)
            self._listener.start()
        return self._started()

    def _started(self) -> DemoServer:
        if self.verbose:
            # stderr: stdout belongs to the CLI's one JSON readiness line.
            print(f"[demo-server] listening on {self.host}:{self.port} ({self.fingerprint})",
                  file=sys.stderr, flush=True)
        return self

    def _new_client(self, session: Session) -> DemoClient | None:
        """The client for a new connection, or None if it is refused (a fault, or the
        server is stopping)."""
        with self._lock:
            self._connections += 1
            client = DemoClient(self.config, session, self._connections)
            self.clients.append(client)
            stopping = self._bind is None or not self._bind.is_open
        rejected = self.fault_counters.get("reject-connections")
        if not stopping and rejected is not None and rejected.take():
            client.log("fault", ("reject-connections", self.faults["reject-connections"]))
        elif not stopping:
            return client
        client.finished.set()  # the session is closed at once, before the SSH banner
        self._forget(client)
        return None

    def _forget(self, client: DemoClient | Job) -> None:
        if not self.keep_clients:
            with self._lock:
                self.clients.remove(client)  # type: ignore[arg-type]

    def _serve_job(self, session: Session) -> DemoClient | None:
        """``Bind.serve``'s ``on_session``: the reactor drives the client."""
        client = self._new_client(session)
        if client is None:
            session.close()
            return None
        client.add_done_callback(self._forget_client)
        return client

    def _serve(self, session: Session) -> None:
        """``Bind.listen``'s handler: the client runs on this thread."""
        client = self._new_client(session)
        if client is not None:
            client.run()
            self._forget(client)

    def stop(self) -> None:
        """Stop accepting, end every client (killing their commands), join every thread.

        Idempotent; logs (``clients``) stay readable afterwards.
        """
        with self._lock:
            bind, self._bind = self._bind, None
            listener, self._listener = self._listener, None
            reactor, self._reactor = self._reactor, None
        if bind is None:
            return
        bind.close()
        for client in list(self.clients):
            client.stop()
        if reactor is not None:
            reactor.close(timeout=30)
        if listener is not None:
            listener.join(timeout=30)
            if listener.is_alive():
                logger.error("DemoServer: client threads did not finish within 30 s")

    def close(self) -> None:
        """Stop, then release the keys and remove the :attr:`known_hosts_path` file."""
        self.stop()
        self.config.close()
        directory, self._known_hosts_dir = self._known_hosts_dir, None
        if directory is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, "known_hosts"))
            with contextlib.suppress(OSError):
                os.rmdir(directory)

    # ---- ready client settings ----------------------------------------------------------
    def known_hosts_line(self) -> str:
        """The server's host key as a ``known_hosts`` line (``[host]:port type base64``)."""
        host = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{host} {self.host_key.type_name} {self.host_key.public_base64}"

    @property
    def known_hosts_path(self) -> str:
        """A ``known_hosts`` file holding :meth:`known_hosts_line` (made on first use, in a
        private temporary directory, removed by :meth:`close`)."""
        with self._lock:
            if self._known_hosts_dir is None:
                directory = tempfile.mkdtemp(prefix="demo-server-known-hosts-")
                path = os.path.join(directory, "known_hosts")
                with open(path, "w", encoding="ascii") as f:
                    f.write(self.known_hosts_line() + "\n")
                self._known_hosts_dir = directory
            return os.path.join(self._known_hosts_dir, "known_hosts")

    def ssh_args(self, user: str = "demo", *, program: str = "ssh") -> list[str]:
        """Arguments for the OpenSSH ``ssh``, ``sftp`` or ``scp`` client that reach this server
        and check its real host key, independent of ``~/.ssh`` and the user's config.

        For ``ssh`` and ``sftp`` the list ends with the destination (``user@host``); for
        ``scp`` it does not (name remote files ``user@host:path`` yourself)::

            subprocess.run(["ssh", *server.ssh_args(), "echo hi"])
        """
        if program not in ("ssh", "sftp", "scp"):
            raise ValueError(f"program must be 'ssh', 'sftp' or 'scp', not {program!r}")
        args = ["-F", "none", "-o", f"UserKnownHostsFile={self.known_hosts_path}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-p" if program == "ssh" else "-P", str(self.port)]
        if program != "scp":
            host = f"[{self.host}]" if ":" in self.host and program == "sftp" else self.host
            args.append(f"{user}@{host}")
        return args

    def paramiko_kwargs(self, user: str = "demo") -> dict[str, Any]:
        """Keyword arguments for ``paramiko.SSHClient.connect`` (no keys or agent of the
        user's).  Check the host key with ``client.load_host_keys(server.known_hosts_path)``
        and ``client.set_missing_host_key_policy(paramiko.RejectPolicy())``."""
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "username": user,
                                  "look_for_keys": False, "allow_agent": False}
        password = self.users.get(user, self.password)
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def asyncssh_kwargs(self, user: str = "demo") -> dict[str, Any]:
        """Keyword arguments for ``asyncssh.connect``: this server, its real host key, and
        none of the user's keys, agent or config."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "username": user,
                                  "known_hosts": self.known_hosts_path, "config": None,
                                  "client_keys": None, "agent_path": None, "gss_host": None}
        password = self.users.get(user, self.password)
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> DemoServer:
        """``async with DemoServer(...) as server:`` in asyncio code: starting runs in a
        worker thread, so the event loop never waits (the server runs on its own threads;
        asyncssh clients in the same loop connect to it)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.start)

    async def __aexit__(self, *exc: object) -> None:
        """Stop and close in a worker thread (clients' commands are ended and waited for)."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # ---- logs ---------------------------------------------------------------------------
    def timeline_text(self) -> str:
        """Every client's events merged in time order, one per line."""
        entries = []
        for client in self.clients:
            for name, index, when in list(client.timeline):
                entries.append((when, client.id, name, client.callback_log[name][index]))
        entries.sort(key=lambda e: e[0])
        if not entries:
            return "(no events)"
        start = entries[0][0]
        return "\n".join(f"{when - start:9.4f}s client {cid}: {name} {data!r}"
                         for when, cid, name, data in entries)

    def print_timeline(self, file: TextIO | None = None) -> None:
        """Print :meth:`timeline_text` (to stdout by default)."""
        print(self.timeline_text(), file=file or sys.stdout)

    # ---- timeout-guarded runner ---------------------------------------------------------
    def run(self, func: Callable[..., T], *args: Any, timeout: float = 30.0,
            kill_timeout: float = 5.0, **kwargs: Any) -> T:
        """Run ``func(*args, **kwargs)`` while the server is up, stopping it afterwards.

        If ``func`` takes longer than ``timeout`` seconds it is interrupted (an exception is
        raised inside its thread; it gets ``kill_timeout`` seconds to unwind), the server is
        stopped, and :class:`DemoServerTimeout` is raised.  Otherwise ``func``'s result is
        returned (or its exception re-raised) and the stopped server's logs stay readable.
        """
        result: list[T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                result.append(func(*args, **kwargs))
            except BaseException as exc:
                error.append(exc)

        if not self.is_running:
            self.start()
        thread = threading.Thread(target=target, name="demo-server-run", daemon=True)
        start = time.monotonic()
        thread.start()
        thread.join(timeout)
        timed_out = thread.is_alive()
        if timed_out:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0),
                                                       ctypes.py_object(_Interrupted))
        self.stop()
        if timed_out:
            thread.join(kill_timeout)
            raise DemoServerTimeout(
                f"function did not finish within {timeout} s (ran {time.monotonic() - start:.1f}"
                f" s{'; still running' if thread.is_alive() else ''}); the server was stopped")
        if error:
            raise error[0]
        return result[0]
