# SPDX-License-Identifier: MIT
"""``DemoServer``: a real SSH server for testing SSH clients, started in milliseconds."""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO, TypeVar, Union

from pylibssh_server import AuthMethod, Bind, LogLevel, Session, SshKey, parse_authorized_keys
from pylibssh_server.demo.client import DemoClient

__all__ = ["DemoServer", "DemoServerTimeout"]

logger = logging.getLogger("pylibssh_server.demo")

T = TypeVar("T")
KeySource = Union[SshKey, str, "os.PathLike[str]"]


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
        auth_methods: advertised methods (an :class:`AuthMethod` mask or a comma list such as
            ``"password,publickey,keyboard-interactive"``); default: what the other arguments
            enable (password if given, publickey if keys are given, none if allowed).
        allow_auth_none: accept "none" authentication.
        authorized_keys: :class:`SshKey` objects, ``authorized_keys`` lines, or a file path.
        host_key: an :class:`SshKey` or a private key path; default a fresh Ed25519 key.
        verbose: print one line per event as it happens.
        log_verbosity: libssh's log level (to the ``pylibssh_server.libssh`` logger).
        sftp_root: directory served by SFTP as "/"; None serves the real file system.
        login_grace_time: seconds a client has to authenticate before it is dropped.
        max_auth_attempts: failed authentications after which the client is dropped.
        max_channels: channels (sessions and forwards) one client may have open at once;
            further opens are refused.
        forward_allow: ``f(host, port) -> bool`` deciding direct-tcpip targets; default any.
        command_env: extra environment for commands (on top of the inherited one).
        keep_clients: keep every finished client (and its event log) in :attr:`clients`;
            False forgets each one when it ends, so a server that runs indefinitely (the CLI)
            uses no memory per past connection.
        ciphers, kex, macs, hostkey_algorithms: algorithm lists for the Bind.

    Raises:
        ValueError: an enabled auth method lacks its secret (password auth without a password,
            public-key auth without keys), or no way in is configured at all.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        password: str | None = None,
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
        forward_allow: Callable[[str, int], bool] | None = None,
        command_env: dict[str, str] | None = None,
        keep_clients: bool = True,
        ciphers: str | None = None,
        kex: str | None = None,
        macs: str | None = None,
        hostkey_algorithms: str | None = None,
    ) -> None:
        self.requested_port = int(port)
        self.host = host
        self.password = password
        self.verbose = verbose
        self.log_verbosity = log_verbosity
        self.sftp_root = None if sftp_root is None else os.fspath(sftp_root)
        self.login_grace_time = float(login_grace_time)
        self.max_auth_attempts = int(max_auth_attempts)
        self.max_channels = int(max_channels)
        self.forward_allow = forward_allow
        self.command_env = dict(command_env or {})
        self.keep_clients = keep_clients
        self._connections = 0
        self._bind_options = {"ciphers": ciphers, "kex": kex, "macs": macs,
                              "hostkey_algorithms": hostkey_algorithms}
        self.authorized_keys: list[SshKey] = self._load_authorized_keys(authorized_keys)
        try:
            self.auth_methods = self._resolve_auth_methods(auth_methods, allow_auth_none)
            self.allow_auth_none = allow_auth_none or bool(self.auth_methods & AuthMethod.NONE)
            if self.auth_methods & AuthMethod.PASSWORD and password is None:
                raise ValueError("password authentication is enabled but no password was "
                                 "given (pass password=...)")
            if self.auth_methods & AuthMethod.PUBLICKEY and not self.authorized_keys:
                raise ValueError("public-key authentication is enabled but no authorized key "
                                 "was given (pass authorized_keys=...)")
            if self.sftp_root is not None and not os.path.isdir(self.sftp_root):
                raise ValueError(f"sftp_root is not a directory: {self.sftp_root}")
            self.host_key = self._load_host_key(host_key)
        except BaseException:
            for key in self.authorized_keys:
                key.close()
            raise
        self.fingerprint = self.host_key.fingerprint()
        self.clients: list[DemoClient] = []
        self._bind: Bind | None = None
        self._listener: threading.Thread | None = None
        self._lock = threading.Lock()
        self.port = self.requested_port

    # ---- configuration ------------------------------------------------------------------
    def _resolve_auth_methods(self, methods: Any, allow_none: bool) -> AuthMethod:
        if methods is None:
            result = AuthMethod.UNKNOWN
            if self.password is not None:
                result |= AuthMethod.PASSWORD
            if self.authorized_keys:
                result |= AuthMethod.PUBLICKEY
            if allow_none:
                result |= AuthMethod.NONE
            if result == AuthMethod.UNKNOWN:
                raise ValueError("DemoServer needs a way in: password=..., authorized_keys=..., "
                                 "allow_auth_none=True or auth_methods=...")
            return result
        if isinstance(methods, str):
            return AuthMethod.parse(methods)
        if isinstance(methods, int):
            return AuthMethod(methods)
        return AuthMethod.parse(",".join(methods))

    @staticmethod
    def _load_authorized_keys(source: Any) -> list[SshKey]:
        if isinstance(source, (str, os.PathLike)):
            # A path (any PathLike, or a str without the space every key line has) must exist;
            # otherwise parse_authorized_keys would read it as key text (or fail on a Path).
            path = os.fspath(source)
            looks_like_path = isinstance(source, os.PathLike) or not path.strip().count(" ")
            if looks_like_path and not os.path.isfile(path):
                raise FileNotFoundError(errno.ENOENT, "authorized keys file not found", path)
            return parse_authorized_keys(path if looks_like_path else source)
        keys: list[SshKey] = []
        for item in source:
            if isinstance(item, SshKey):
                keys.append(item.copy())
            else:
                keys.extend(parse_authorized_keys([str(item)]))
        return keys

    @staticmethod
    def _load_host_key(source: KeySource | None) -> SshKey:
        if source is None:
            return SshKey.generate("ed25519")
        if isinstance(source, SshKey):
            return source.copy()
        return SshKey.from_private_file(source)

    def forward_allowed(self, host: str, port: int) -> bool:
        """Whether a direct-tcpip request to ``host:port`` may be connected."""
        if not 0 < port < 65536:
            return False
        if self.forward_allow is None:
            return True
        return bool(self.forward_allow(host, port))

    @staticmethod
    def loopback_only(host: str, port: int) -> bool:
        """A ready ``forward_allow`` policy: loopback addresses and ``localhost`` only."""
        if host == "localhost":
            return True
        if "%" in host:
            return False  # a scoped address: the zone could name anything
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

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
                              log_verbosity=self.log_verbosity, **self._bind_options)
            self.port = self._bind.port
            self._listener = threading.Thread(target=self._bind.listen,
                                              args=(self._serve,),
                                              name=f"demo-server-{self.port}", daemon=True)
            self._listener.start()
        if self.verbose:
            print(f"[demo-server] listening on {self.host}:{self.port} ({self.fingerprint})",
                  flush=True)
        return self

    def _serve(self, session: Session) -> None:
        with self._lock:
            self._connections += 1
            client = DemoClient(self, session, self._connections)
            self.clients.append(client)
            stopping = self._bind is None or not self._bind.is_open
        if not stopping:
            client.run()
        else:
            client.finished.set()
        if not self.keep_clients:
            with self._lock:
                self.clients.remove(client)

    def stop(self) -> None:
        """Stop accepting, end every client (killing their commands), join every thread.

        Idempotent; logs (``clients``) stay readable afterwards.
        """
        with self._lock:
            bind, self._bind = self._bind, None
            listener, self._listener = self._listener, None
        if bind is None:
            return
        bind.close()
        for client in list(self.clients):
            client.stop()
        if listener is not None:
            listener.join(timeout=30)
            if listener.is_alive():
                logger.error("DemoServer: client threads did not finish within 30 s")

    def close(self) -> None:
        """Stop, then release the keys."""
        self.stop()
        self.host_key.close()
        for key in self.authorized_keys:
            key.close()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        result: list[Any] = []
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
