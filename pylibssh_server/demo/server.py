# SPDX-License-Identifier: MIT
"""``DemoServer``: a real SSH server for testing SSH clients, started in milliseconds."""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO, TypeVar, Union

from pylibssh_server import AuthMethod, Bind, LogLevel, Session, SshKey
from pylibssh_server.demo.auth import AuthChains, Kbdint, check_users
from pylibssh_server.demo.certs import refuse_host_certificate
from pylibssh_server.demo.client import DemoClient
from pylibssh_server.demo.commands import CommandTable, ReplyLike
from pylibssh_server.demo.faults import Counter, Faults, FaultValue
from pylibssh_server.demo.keyrules import KeyRules
from pylibssh_server.demo.tunnels import LOOPBACK_NAMES

__all__ = ["DemoServer", "DemoServerTimeout"]

logger: logging.Logger = logging.getLogger("pylibssh_server.demo")

T = TypeVar("T")
KeySource = Union[SshKey, str, "os.PathLike[str]"]


#: Host key types ``hostkey_type`` can generate (RSA at 2048 bits: generated in milliseconds).
HOSTKEY_TYPES: dict[str, tuple[str, int | None]]
HOSTKEY_TYPES = {"ed25519": ("ed25519", None), "ecdsa": ("ecdsa", 256), "rsa": ("rsa", 2048)}
#: The identification line is at most 255 bytes with its ``SSH-2.0-`` and CR LF.
MAX_SERVER_VERSION = 245

#: The methods the DemoServer can authenticate with.
_SERVED_METHODS = (AuthMethod.NONE | AuthMethod.PASSWORD | AuthMethod.PUBLICKEY
                   | AuthMethod.INTERACTIVE)


def _check_type(name: str, value: object, *types: type) -> None:
    """TypeError unless ``value`` is one of ``types`` (True is an int, but never a port)."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise TypeError(f"{name} must be {' or '.join(t.__name__ for t in types)}, "
                        f"not {type(value).__name__}")


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


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
            for, at most 1000.
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
        ciphers, kex, macs, hostkey_algorithms: algorithm lists for the Bind.
        trusted_user_ca_keys: CA public keys (a file, as sshd's ``TrustedUserCAKeys``, or
            keys and lines) whose user certificates log in when a principal is the user name.
        hostkey_cert: an OpenSSH host certificate for the host key; no libssh release can
            present one (its server offers plain host key algorithms only), so this raises.

    Raises:
        ValueError: an enabled auth method lacks its secret (password auth without a password,
            public-key auth without keys), no way in is configured at all, or a limit is not
            positive.
        TypeError: an argument of the wrong type (``password`` not a str, ...).
        SshKeyError: an ``authorized_keys`` line is malformed, or has options that are not
            supported (see ``ignore_key_options``).
    """

    max_connections: int
    max_unauthenticated: int
    max_fds_per_client: int
    ignore_key_options: bool
    host_commands: bool
    max_remote_forwards: int
    agent_forwarding: bool
    requested_port: int
    sftp_root: str | None
    login_grace_time: float
    max_auth_attempts: int
    max_channels: int
    command_env: dict[str, str]
    _bind_options: dict[str, Any]
    host_key: SshKey
    fingerprint: str
    port: int
    commands: CommandTable
    auth_methods: AuthMethod
    allow_auth_none: bool
    users: dict[str, str]
    kbdint: Kbdint
    auth_chains: AuthChains | None
    server_version: str | None
    faults: Faults
    fault_counters: dict[str, Counter]
    key_rules: KeyRules

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
        ciphers: str | None = None,
        kex: str | None = None,
        macs: str | None = None,
        hostkey_algorithms: str | None = None,
        trusted_user_ca_keys: Iterable[SshKey | str] | str | os.PathLike[str] | None = None,
        hostkey_cert: str | os.PathLike[str] | None = None,
    ) -> None:
        _check_type("port", port, int)
        _check_type("host", host, str)
        _check_type("password", password, str, type(None))
        _check_type("banner", banner, str, type(None))
        self.users = check_users(users)
        self.kbdint = self._load_kbdint(kbdint)
        self.auth_chains = None if auth_chains is None else AuthChains(auth_chains)
        self.banner = banner
        self.server_version = self._check_server_version(server_version)
        if hostkey_type is not None and (host_key is not None or
                                         hostkey_type not in HOSTKEY_TYPES):
            raise ValueError(f"hostkey_type must be one of {', '.join(HOSTKEY_TYPES)} (and "
                             f"without host_key), not {hostkey_type!r}")
        self.faults = Faults.parse(faults)
        self.fault_counters = {name: Counter(self.faults[name])
                               for name in ("fail-auth", "reject-connections")
                               if name in self.faults}
        _check_type("authorized_keys", authorized_keys, str, os.PathLike, list, tuple, set,
                    frozenset, SshKey, Mapping)
        if forward_allow is not None and not callable(forward_allow):
            raise TypeError(f"forward_allow must be callable, not {type(forward_allow).__name__}")
        if command_env is not None and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in dict(command_env).items()):
            raise TypeError("command_env must map str to str")
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            nofile = 1 << 20
        self.max_connections = _positive(
            "max_connections", max_connections, max(8, min(1000, (nofile - 64) // 6)))
        self.max_unauthenticated = _positive(
            "max_unauthenticated", max_unauthenticated, max(4, self.max_connections // 2))
        self.max_fds_per_client = _positive(
            "max_fds_per_client", max_fds_per_client, max(16, min(1024, nofile // 8)))
        self.ignore_key_options = bool(ignore_key_options)
        _check_type("shell", shell, str)
        self.shell = shell
        self.commands = commands if isinstance(commands, CommandTable) else CommandTable(
            commands)
        self.host_commands = bool(host_commands)
        if remote_forward_allow is not None and not callable(remote_forward_allow):
            raise TypeError("remote_forward_allow must be callable")
        self.remote_forward_allow = remote_forward_allow
        self.max_remote_forwards = _positive("max_remote_forwards", max_remote_forwards, 16)
        self.agent_forwarding = bool(agent_forwarding)
        self.requested_port = int(port)
        self.host = host
        self.password = password
        self.verbose = verbose
        self.log_verbosity = log_verbosity
        self.sftp_root = None if sftp_root is None else os.fspath(sftp_root)
        self.login_grace_time = float(login_grace_time)
        self.max_auth_attempts = _positive("max_auth_attempts", max_auth_attempts, 20)
        self.max_channels = _positive("max_channels", max_channels, 1024)
        self.forward_allow = forward_allow
        self.command_env = dict(command_env or {})
        self.keep_clients = keep_clients
        self._connections = 0
        self._bind_options = {"ciphers": ciphers, "kex": kex, "macs": macs,
                              "hostkey_algorithms": hostkey_algorithms}
        # keyrules: per-user keys, their options, certificate authorities.
        self.key_rules = KeyRules.load(authorized_keys, trusted_user_ca_keys,
                                       self.ignore_key_options)
        self.authorized_keys: list[SshKey] = self.key_rules.plain_keys()
        try:
            self.auth_methods = self._resolve_auth_methods(auth_methods, allow_auth_none,
                                                           kbdint is not None)
            self.allow_auth_none = allow_auth_none or bool(self.auth_methods & AuthMethod.NONE)
            self._check_chains()
            if not self.auth_methods & _SERVED_METHODS:
                raise ValueError(
                    f"no usable authentication method in {self.auth_methods!r}: the "
                    "DemoServer serves none, password, publickey and keyboard-interactive")
            if self.auth_methods & AuthMethod.PASSWORD and password is None and \
                    not self.users:
                raise ValueError("password authentication is enabled but no password was "
                                 "given (pass password=... or users=...)")
            if self.auth_methods & AuthMethod.PUBLICKEY and not self.key_rules:
                raise ValueError("public-key authentication is enabled but no authorized key "
                                 "was given (pass authorized_keys=...)")
            if self.sftp_root is not None and not os.path.isdir(self.sftp_root):
                raise ValueError(f"sftp_root is not a directory: {self.sftp_root}")
            if hostkey_cert is not None:
                refuse_host_certificate(hostkey_cert)
            self.host_key = self._load_host_key(host_key, hostkey_type)
        except BaseException:
            self.key_rules.close()
            raise
        self.fingerprint = self.host_key.fingerprint()
        self.clients: list[DemoClient] = []
        self._bind: Bind | None = None
        self._listener: threading.Thread | None = None
        self._lock = threading.Lock()
        self.port = self.requested_port
        self._known_hosts_dir: str | None = None

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<DemoServer {self.host}:{self.port} {self.fingerprint} {state}>"

    # ---- configuration ------------------------------------------------------------------
    def _resolve_auth_methods(self, methods: Any, allow_none: bool,
                              kbdint: bool) -> AuthMethod:
        if methods is None and self.auth_chains is not None:
            return self.auth_chains.methods()
        if methods is None:
            result = AuthMethod.UNKNOWN
            if self.password is not None or self.users:
                result |= AuthMethod.PASSWORD
            if kbdint:
                result |= AuthMethod.INTERACTIVE
            if self.key_rules:
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

    def _check_chains(self) -> None:
        chains = self.auth_chains
        if chains is None:
            return
        if self.allow_auth_none:
            raise ValueError("auth_chains cannot be combined with auth none")
        missing = chains.methods() & ~self.auth_methods
        if missing:
            raise ValueError(f"auth_chains use methods that auth_methods leaves out: "
                             f"{AuthMethod(missing)!r}")

    @staticmethod
    def _load_kbdint(source: Any) -> Kbdint:
        if source is None:
            return Kbdint()
        if isinstance(source, (str, os.PathLike)):
            return Kbdint.from_file(source)
        if isinstance(source, (Kbdint, Mapping)):
            return Kbdint.from_data(source)
        raise TypeError(f"kbdint must be a Kbdint, a mapping or a file path, not "
                        f"{type(source).__name__}")

    @staticmethod
    def _check_server_version(text: str | None) -> str | None:
        if text is None:
            return None
        _check_type("server_version", text, str)
        if not text or len(text) > MAX_SERVER_VERSION or \
                not all(" " <= c <= "~" for c in text) or text[0] == " ":
            raise ValueError(f"server_version must be 1 to {MAX_SERVER_VERSION} printable "
                             f"ASCII characters (as in 'OpenSSH_7.4'), not {text!r}")
        return text

    @staticmethod
    def _load_host_key(source: KeySource | None, key_type: str | None) -> SshKey:
        if source is None:
            name, bits = HOSTKEY_TYPES[key_type or "ed25519"]
            return SshKey.generate(name, bits)
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

    def remote_forward_allowed(self, address: str, port: int) -> bool:
        """Whether a ``tcpip-forward`` request for ``address:port`` may be granted."""
        if self.remote_forward_allow is not None:
            return bool(self.remote_forward_allow(address, port))
        return address in LOOPBACK_NAMES and (port == 0 or 1024 <= port < 65536)

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
                              log_verbosity=self.log_verbosity, banner=self.server_version,
                              **self._bind_options)
            self.port = self._bind.port
            self._listener = threading.Thread(
                target=self._bind.listen, args=(self._serve,),
                kwargs={"max_sessions": self.max_connections,
                        "max_unauthenticated": self.max_unauthenticated},
                name=f"demo-server-{self.port}", daemon=True)
            self._listener.start()
        if self.verbose:
            # stderr: stdout belongs to the CLI's one JSON readiness line.
            print(f"[demo-server] listening on {self.host}:{self.port} ({self.fingerprint})",
                  file=sys.stderr, flush=True)
        return self

    def _serve(self, session: Session) -> None:
        with self._lock:
            self._connections += 1
            client = DemoClient(self, session, self._connections)
            self.clients.append(client)
            stopping = self._bind is None or not self._bind.is_open
        rejected = self.fault_counters.get("reject-connections")
        if not stopping and rejected is not None and rejected.take():
            client.log("fault", ("reject-connections", self.faults["reject-connections"]))
            client.finished.set()  # the session is closed at once, before the SSH banner
        elif not stopping:
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
        """Stop, then release the keys and remove the :attr:`known_hosts_path` file."""
        self.stop()
        self.host_key.close()
        self.key_rules.close()
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
