# SPDX-License-Identifier: MIT
"""``DemoConfig``: every setting of a DemoServer, checked and loaded once, at construction.

The server builds one from its keyword arguments (:meth:`DemoConfig.from_arguments`, where
all the validation lives: auth methods and chains, users, kbdint rounds, keys and host key,
limits, forwarding policies, faults, commands); each client, auth policy and channel reads
it.  Nothing here talks to a client: the settings are data, so no part of the demo imports
the server to read them.
"""

from __future__ import annotations

import ipaddress
import os
import resource
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from pylibssh_server import AuthMethod, LogLevel, SshKey
from pylibssh_server.demo.auth import AuthChains, Kbdint, check_users
from pylibssh_server.demo.certs import refuse_host_certificate
from pylibssh_server.demo.commands import CommandTable
from pylibssh_server.demo.faults import Counter, Faults
from pylibssh_server.demo.keyrules import KeyRules
from pylibssh_server.demo.tunnels import LOOPBACK_NAMES

__all__ = ["HOSTKEY_TYPES", "MAX_SERVER_VERSION", "DemoConfig", "KeySource", "loopback_only"]

KeySource = Union[SshKey, str, "os.PathLike[str]"]

#: Host key types ``hostkey_type`` can generate (RSA at 2048 bits: generated in milliseconds).
HOSTKEY_TYPES: dict[str, tuple[str, int | None]]
HOSTKEY_TYPES = {"ed25519": ("ed25519", None), "ecdsa": ("ecdsa", 256), "rsa": ("rsa", 2048)}
#: The identification line is at most 255 bytes with its ``SSH-2.0-`` and CR LF.
MAX_SERVER_VERSION = 245

#: The methods the DemoServer can authenticate with.
SERVED_METHODS = (AuthMethod.NONE | AuthMethod.PASSWORD | AuthMethod.PUBLICKEY
                  | AuthMethod.INTERACTIVE)


def check_type(name: str, value: object, *types: type) -> None:
    """TypeError unless ``value`` is one of ``types`` (True is an int, but never a port)."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise TypeError(f"{name} must be {' or '.join(t.__name__ for t in types)}, "
                        f"not {type(value).__name__}")


def positive(name: str, value: int | None, default: int) -> int:
    """``value`` checked to be an int of at least 1 (``default`` when None)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


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


@dataclass(frozen=True)
class DemoConfig:
    """The checked settings of one DemoServer (the meaning of each: ``DemoServer``'s Args).

    Built by :meth:`from_arguments`; frozen, so every client sees the same settings.  It
    owns :attr:`host_key` and the keys of :attr:`key_rules` (:meth:`close` frees them).
    :attr:`fault_counters` are the server-wide count-downs of ``fail-auth`` and
    ``reject-connections``, shared by every client.
    """

    host: str
    requested_port: int
    password: str | None
    users: dict[str, str]
    kbdint: Kbdint
    auth_chains: AuthChains | None
    banner: str | None
    server_version: str | None
    faults: Faults
    fault_counters: dict[str, Counter]
    auth_methods: AuthMethod
    allow_auth_none: bool
    key_rules: KeyRules
    authorized_keys: list[SshKey]
    host_key: SshKey
    verbose: bool
    log_verbosity: LogLevel | int | None
    sftp_root: str | None
    login_grace_time: float
    max_auth_attempts: int
    max_channels: int
    max_connections: int
    max_unauthenticated: int
    max_fds_per_client: int
    ignore_key_options: bool
    shell: str
    commands: CommandTable
    host_commands: bool
    remote_forward_allow: Callable[[str, int], bool] | None
    max_remote_forwards: int
    agent_forwarding: bool
    forward_allow: Callable[[str, int], bool] | None
    command_env: dict[str, str]
    keep_clients: bool
    event_log: bool
    bind_options: dict[str, Any]

    @classmethod
    def from_arguments(cls, args: Mapping[str, Any]) -> DemoConfig:
        """Check and load ``DemoServer``'s keyword arguments (every one of its parameters,
        by name; the types are those of its signature).

        Raises:
            ValueError, TypeError, SshKeyError: as ``DemoServer`` documents.
        """
        port, host, password, banner = args["port"], args["host"], args["password"], \
            args["banner"]
        check_type("port", port, int)
        check_type("host", host, str)
        check_type("password", password, str, type(None))
        check_type("banner", banner, str, type(None))
        users = check_users(args["users"])
        kbdint = _load_kbdint(args["kbdint"])
        auth_chains = None if args["auth_chains"] is None else AuthChains(args["auth_chains"])
        server_version = _check_server_version(args["server_version"])
        hostkey_type, host_key = args["hostkey_type"], args["host_key"]
        if hostkey_type is not None and (host_key is not None or
                                         hostkey_type not in HOSTKEY_TYPES):
            raise ValueError(f"hostkey_type must be one of {', '.join(HOSTKEY_TYPES)} (and "
                             f"without host_key), not {hostkey_type!r}")
        faults = Faults.parse(args["faults"])
        fault_counters = {name: Counter(faults[name])
                          for name in ("fail-auth", "reject-connections") if name in faults}
        authorized_keys = args["authorized_keys"]
        check_type("authorized_keys", authorized_keys, str, os.PathLike, list, tuple, set,
                   frozenset, SshKey, Mapping)
        forward_allow = args["forward_allow"]
        if forward_allow is not None and not callable(forward_allow):
            raise TypeError(f"forward_allow must be callable, not {type(forward_allow).__name__}")
        command_env = args["command_env"]
        if command_env is not None and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in dict(command_env).items()):
            raise TypeError("command_env must map str to str")
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            nofile = 1 << 20
        max_connections = positive(
            "max_connections", args["max_connections"], max(8, min(4096, (nofile - 64) // 6)))
        max_unauthenticated = positive(
            "max_unauthenticated", args["max_unauthenticated"], max(4, max_connections // 2))
        max_fds_per_client = positive(
            "max_fds_per_client", args["max_fds_per_client"], max(16, min(1024, nofile // 8)))
        ignore_key_options = bool(args["ignore_key_options"])
        shell = args["shell"]
        check_type("shell", shell, str)
        commands = args["commands"]
        commands = commands if isinstance(commands, CommandTable) else CommandTable(commands)
        remote_forward_allow = args["remote_forward_allow"]
        if remote_forward_allow is not None and not callable(remote_forward_allow):
            raise TypeError("remote_forward_allow must be callable")
        max_remote_forwards = positive("max_remote_forwards", args["max_remote_forwards"], 16)
        sftp_root = None if args["sftp_root"] is None else os.fspath(args["sftp_root"])
        login_grace_time = float(args["login_grace_time"])
        max_auth_attempts = positive("max_auth_attempts", args["max_auth_attempts"], 20)
        max_channels = positive("max_channels", args["max_channels"], 1024)
        # keyrules: per-user keys, their options, certificate authorities.
        key_rules = KeyRules.load(authorized_keys, args["trusted_user_ca_keys"],
                                  ignore_key_options)
        try:
            auth_methods = _resolve_auth_methods(args["auth_methods"], args["allow_auth_none"],
                                                 args["kbdint"] is not None, auth_chains,
                                                 password is not None or bool(users),
                                                 bool(key_rules))
            allow_auth_none = bool(args["allow_auth_none"]) or \
                bool(auth_methods & AuthMethod.NONE)
            _check_chains(auth_chains, allow_auth_none, auth_methods)
            if not auth_methods & SERVED_METHODS:
                raise ValueError(
                    f"no usable authentication method in {auth_methods!r}: the "
                    "DemoServer serves none, password, publickey and keyboard-interactive")
            if auth_methods & AuthMethod.PASSWORD and password is None and not users:
                raise ValueError("password authentication is enabled but no password was "
                                 "given (pass password=... or users=...)")
            if auth_methods & AuthMethod.PUBLICKEY and not key_rules:
                raise ValueError("public-key authentication is enabled but no authorized key "
                                 "was given (pass authorized_keys=...)")
            if sftp_root is not None and not os.path.isdir(sftp_root):
                raise ValueError(f"sftp_root is not a directory: {sftp_root}")
            if args["hostkey_cert"] is not None:
                refuse_host_certificate(args["hostkey_cert"])
            loaded_host_key = _load_host_key(host_key, hostkey_type)
        except BaseException:
            key_rules.close()
            raise
        return cls(
            host=host, requested_port=int(port), password=password, users=users,
            kbdint=kbdint, auth_chains=auth_chains, banner=banner,
            server_version=server_version, faults=faults, fault_counters=fault_counters,
            auth_methods=auth_methods, allow_auth_none=allow_auth_none, key_rules=key_rules,
            authorized_keys=key_rules.plain_keys(), host_key=loaded_host_key,
            verbose=args["verbose"], log_verbosity=args["log_verbosity"], sftp_root=sftp_root,
            login_grace_time=login_grace_time, max_auth_attempts=max_auth_attempts,
            max_channels=max_channels, max_connections=max_connections,
            max_unauthenticated=max_unauthenticated, max_fds_per_client=max_fds_per_client,
            ignore_key_options=ignore_key_options, shell=shell, commands=commands,
            host_commands=bool(args["host_commands"]),
            remote_forward_allow=remote_forward_allow, max_remote_forwards=max_remote_forwards,
            agent_forwarding=bool(args["agent_forwarding"]), forward_allow=forward_allow,
            command_env=dict(command_env or {}), keep_clients=args["keep_clients"],
            event_log=bool(args["event_log"]),
            bind_options={name: args[name]
                          for name in ("ciphers", "kex", "macs", "hostkey_algorithms")})

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

    def close(self) -> None:
        """Free the host key and the authorized keys (idempotent)."""
        self.host_key.close()
        self.key_rules.close()


def _resolve_auth_methods(methods: Any, allow_none: bool, kbdint: bool,
                          chains: AuthChains | None, has_password: bool,
                          has_keys: bool) -> AuthMethod:
    if methods is None and chains is not None:
        return chains.methods()
    if methods is None:
        result = AuthMethod.UNKNOWN
        if has_password:
            result |= AuthMethod.PASSWORD
        if kbdint:
            result |= AuthMethod.INTERACTIVE
        if has_keys:
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


def _check_chains(chains: AuthChains | None, allow_auth_none: bool,
                  auth_methods: AuthMethod) -> None:
    if chains is None:
        return
    if allow_auth_none:
        raise ValueError("auth_chains cannot be combined with auth none")
    missing = chains.methods() & ~auth_methods
    if missing:
        raise ValueError(f"auth_chains use methods that auth_methods leaves out: "
                         f"{AuthMethod(missing)!r}")


def _load_kbdint(source: Any) -> Kbdint:
    if source is None:
        return Kbdint()
    if isinstance(source, (str, os.PathLike)):
        return Kbdint.from_file(source)
    if isinstance(source, (Kbdint, Mapping)):
        return Kbdint.from_data(source)
    raise TypeError(f"kbdint must be a Kbdint, a mapping or a file path, not "
                    f"{type(source).__name__}")


def _check_server_version(text: str | None) -> str | None:
    if text is None:
        return None
    check_type("server_version", text, str)
    if not text or len(text) > MAX_SERVER_VERSION or \
            not all(" " <= c <= "~" for c in text) or text[0] == " ":
        raise ValueError(f"server_version must be 1 to {MAX_SERVER_VERSION} printable "
                         f"ASCII characters (as in 'OpenSSH_7.4'), not {text!r}")
    return text


def _load_host_key(source: KeySource | None, key_type: str | None) -> SshKey:
    if source is None:
        name, bits = HOSTKEY_TYPES[key_type or "ed25519"]
        return SshKey.generate(name, bits)
    if isinstance(source, SshKey):
        return source.copy()
    return SshKey.from_private_file(source)
