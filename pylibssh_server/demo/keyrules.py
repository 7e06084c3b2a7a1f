# SPDX-License-Identifier: MIT
"""Who may log in with which key, and what that key may then do (sshd's rules).

:class:`KeyRules` holds the DemoServer's authorized keys (for every user, and per user), the
options of each ``authorized_keys`` line and the trusted user CAs.  :meth:`KeyRules.authorize`
decides a public-key login as sshd(8) does (``from=``, ``expiry-time=``, certificates with
``cert-authority`` / ``principals=`` / ``TrustedUserCAKeys``, ``source-address`` and
``force-command``) and returns a :class:`KeyGrant`: what the session may do afterwards
(``command=``, ``environment=``, ``no-pty``, ``no-port-forwarding``, ``permitopen=``,
``permitlisten=``, ``no-agent-forwarding``, ``restrict``, and the certificate's ``permit-*``
extensions)."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from pylibssh_server import SshKey, parse_authorized_keys
from pylibssh_server.demo.certs import (
    CertificateRefused,
    UserCertificate,
    is_certificate,
    require_cryptography,
)
from pylibssh_server.keys import AuthorizedKey, KeyOptions, parse_authorized_key_entries

__all__ = ["ANY_USER", "UNRESTRICTED", "KeyGrant", "KeyRules", "match_from"]

#: The key of a per-user mapping whose keys any user may log in with.
ANY_USER = "*"
_PERMISSIONS = frozenset({"pty", "port_forwarding", "agent_forwarding", "x11_forwarding",
                          "user_rc"})
#: The option that denies each permission, as the event log names it.
_DENIED_BY = {"pty": "no-pty", "port_forwarding": "no-port-forwarding",
              "agent_forwarding": "no-agent-forwarding"}
#: The subsystem name a forced command sees in SSH_ORIGINAL_COMMAND (sshd's internal SFTP).
INTERNAL_SFTP = "internal-sftp"

Source = Union[SshKey, str, "os.PathLike[str]", Iterable[Union[SshKey, str, "os.PathLike[str]"]]]
Log = Callable[[str, Any], None]


@dataclass(frozen=True)
class KeyGrant:
    """What a session may do after logging in with a key (or without one: everything).

    Attributes:
        origin: where the permission came from (``"authorized_keys line 3"``, a certificate's
            key id and CA); empty for :data:`UNRESTRICTED`.
        command: the forced command (``command=`` or the certificate's ``force-command``).
        environment: ``environment=`` pairs for commands.
        permitopen: the direct-tcpip targets allowed (``port`` None: any), or None for any.
        permitlisten: the tcpip-forward listeners allowed (host patterns), or None for any.
        permissions: the subset of ``pty``, ``port_forwarding``, ``agent_forwarding``,
            ``x11_forwarding``, ``user_rc`` that is allowed.
        restricted: any option or certificate limits the session (for the event log).
    """

    origin: str = ""
    command: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    permitopen: tuple[tuple[str, int | None], ...] | None = None
    permitlisten: tuple[tuple[str, int | None], ...] | None = None
    permissions: frozenset[str] = field(default=_PERMISSIONS)
    restricted: bool = False

    def exec_command(self, env: dict[str, str], original: str | None, log: Log) -> str | None:
        """The command to run for a request of ``original`` (None: a shell), updating the
        channel's ``env`` with ``environment=`` (over what the client sent, as sshd) and, for
        a forced command, ``SSH_ORIGINAL_COMMAND``."""
        for name, value in self.environment:
            env[name] = value
            log("key_option_applied", ("environment", name))
        if self.command is None:
            return original
        if original is not None:
            env["SSH_ORIGINAL_COMMAND"] = original
        log("key_option_applied", ("command", self.command))
        return self.command

    def allows(self, permission: str, what: str, log: Log) -> bool:
        """Whether ``permission`` (``pty``, ``port_forwarding``, ``agent_forwarding``) is
        granted; a refusal of ``what`` is logged."""
        if permission in self.permissions:
            return True
        log("key_option_applied", (_DENIED_BY.get(permission, permission), what))
        return False

    def allows_open(self, host: str, port: int, log: Log) -> bool:
        """Whether a direct-tcpip channel to ``host:port`` is allowed (port forwarding at all,
        then ``permitopen=``: literal host, or ``*``, and port or ``*``, as sshd)."""
        if not self.allows("port_forwarding", f"direct-tcpip {host}:{port}", log):
            return False
        if self.permitopen is None:
            return True
        wanted = host.lower()
        for allowed_host, allowed_port in self.permitopen:
            if allowed_host in ("*", wanted) and allowed_port in (None, port):
                return True
        log("key_option_applied", ("permitopen", f"{host}:{port} is not permitted"))
        return False

    def allows_listen(self, address: str, port: int, log: Log) -> bool:
        """Whether a tcpip-forward listener on ``address:port`` is allowed (port forwarding
        at all, then ``permitlisten=``: a host pattern, matched case-insensitively against
        the requested address, OpenSSH's ``localhost`` for none, and port or ``*``)."""
        if not self.allows("port_forwarding", f"tcpip-forward {address}:{port}", log):
            return False
        if self.permitlisten is None:
            return True
        for pattern, allowed_port in self.permitlisten:
            if allowed_port in (None, port) and _glob(address, pattern):
                return True
        log("key_option_applied", ("permitlisten", f"{address}:{port} is not permitted"))
        return False


#: The grant of a session that did not log in with a key: nothing is limited.
UNRESTRICTED = KeyGrant()


def _grant(options: KeyOptions, origin: str, cert: UserCertificate | None = None) -> KeyGrant:
    """Merge a line's options with a certificate's (both must allow; forced commands must
    agree, as sshd's ``sshauthopt_merge``)."""
    permissions = {p for p in _PERMISSIONS if getattr(options, p)}
    command = options.command
    if cert is not None:
        permissions &= cert.permissions
        if cert.force_command is not None:
            if command is not None and command != cert.force_command:
                raise CertificateRefused("the certificate's force-command and the key's "
                                         "command= differ")
            command = cert.force_command
    restricted = bool(options.names) or cert is not None
    return KeyGrant(origin, command, options.environment, options.permitopen,
                    options.permitlisten, frozenset(permissions), restricted)


class KeyRules:
    """The authorized keys of a DemoServer: per user (:data:`ANY_USER` for everyone), with
    their options, and the trusted user CA keys.  Owns every key; :meth:`close` frees them.
    """

    def __init__(self, users: dict[str, list[AuthorizedKey]], trusted_cas: list[SshKey]):
        self.users = users
        self.trusted_cas = trusted_cas
        self._ca_blobs = {ca.public_base64 for ca in trusted_cas}
        #: The key blob of each cert-authority line (compared with a certificate's CA).
        self._line_cas = {id(e): e.key.public_base64 for e in self.entries()
                          if e.options.cert_authority}
        self._has_cas = bool(trusted_cas or self._line_cas)
        if self._has_cas:
            require_cryptography()

    @classmethod
    def load(cls, authorized_keys: Source | Mapping[str, Source],
             trusted_user_ca_keys: Source | None = None,
             ignore_options: bool = False) -> KeyRules:
        """Load ``authorized_keys`` (for every user, or a mapping user -> keys) and the CA
        keys (plain public keys, as sshd's ``TrustedUserCAKeys`` file).

        Raises:
            TypeError: a source of the wrong type.
            FileNotFoundError: a named file does not exist.
            SshKeyError: a malformed line, or options that are not supported.
            ValueError: certificates are configured and ``cryptography`` is missing.
        """
        users: dict[str, list[AuthorizedKey]] = {}
        cas: list[SshKey] = []
        try:
            if isinstance(authorized_keys, Mapping):
                for user, source in authorized_keys.items():
                    if not isinstance(user, str) or not user:
                        raise TypeError("authorized_keys user names must be non-empty str, "
                                        f"not {user!r}")
                    users[user] = _load_entries(source, ignore_options)
            else:
                users[ANY_USER] = _load_entries(authorized_keys, ignore_options)
            if trusted_user_ca_keys is not None:
                for entry in _load_entries(trusted_user_ca_keys, False, plain=True):
                    cas.append(entry.key)
            return cls(users, cas)
        except BaseException:
            for entries in users.values():
                for entry in entries:
                    entry.close()
            for key in cas:
                key.close()
            raise

    def entries(self) -> list[AuthorizedKey]:
        """Every ``authorized_keys`` entry, of every user."""
        return [entry for entries in self.users.values() for entry in entries]

    def __bool__(self) -> bool:
        """Whether any key or CA could authorize a login."""
        return bool(self.trusted_cas) or bool(self.entries())

    def plain_keys(self) -> list[SshKey]:
        """The login keys for every user (not CAs), as the old ``authorized_keys`` list."""
        return [e.key for e in self.users.get(ANY_USER, ()) if not e.options.cert_authority]

    def close(self) -> None:
        """Free every key (idempotent: ``SshKey.close`` is)."""
        for entry in self.entries():
            entry.close()
        for key in self.trusted_cas:
            key.close()

    # ---- decisions ----------------------------------------------------------------------
    def authorize(self, user: str, key: SshKey, address: str,
                  now: float | None = None) -> tuple[KeyGrant | None, str | None]:
        """Decide a login of ``user`` from ``address`` with ``key`` (a plain key or a
        certificate): ``(grant, None)``, or ``(None, reason)`` when a matching key or CA
        was refused by a rule, or ``(None, None)`` when nothing matches at all."""
        now = time.time() if now is None else now
        entries = [*self.users.get(user, ()), *self.users.get(ANY_USER, ())]
        if is_certificate(key):
            if not self._has_cas:
                return None, None  # no CA at all: a certificate matches nothing
            return self._authorize_certificate(user, key, address, now, entries)
        reasons = []
        for entry in entries:
            if entry.options.cert_authority or not key.public_equals(entry.key):
                continue
            reason = _line_refusal(entry.options, address, now)
            if reason is None:
                return _grant(entry.options, f"authorized_keys line {entry.line}"), None
            reasons.append(f"authorized_keys line {entry.line}: {reason}")
        return None, "; ".join(reasons) or None

    def _authorize_certificate(self, user: str, key: SshKey, address: str, now: float,
                               entries: list[AuthorizedKey]) -> tuple[KeyGrant | None,
                                                                      str | None]:
        try:
            cert = UserCertificate.parse(key)
        except CertificateRefused as exc:
            return None, str(exc)
        # (options, principals the certificate must name, whether it must name any)
        authorities = [(e.options, e.options.principals, False, f"authorized_keys line "
                        f"{e.line}") for e in entries
                       if self._line_cas.get(id(e)) == cert.ca_blob]
        if cert.ca_blob in self._ca_blobs:
            authorities.append((KeyOptions(), None, True, "trusted_user_ca_keys"))
        if not authorities:
            return None, f"certificate signed by an unknown CA ({cert.fingerprint_ca()})"
        reasons = []
        for options, principals, require, where in authorities:
            try:
                cert.check_time(now)
                cert.check_principal(user, principals, require)
                cert.check_source(address)
                reason = _line_refusal(options, address, now)
                if reason is not None:
                    raise CertificateRefused(reason)
                origin = (f"certificate {cert.key_id!r} serial {cert.serial} of CA "
                          f"{cert.fingerprint_ca()} ({where})")
                return _grant(options, origin, cert), None
            except CertificateRefused as exc:
                reasons.append(str(exc))
        return None, "; ".join(dict.fromkeys(reasons))


def _line_refusal(options: KeyOptions, address: str, now: float) -> str | None:
    """Why an ``authorized_keys`` line's ``expiry-time=`` or ``from=`` refuses, or None."""
    if options.expiry_time is not None and now > options.expiry_time:
        return "key expired (expiry-time)"
    if options.from_patterns is not None and not match_from(address, options.from_patterns):
        return f'from="{options.from_patterns}" does not match {address}'
    return None


def _load_entries(source: Any, ignore_options: bool, plain: bool = False
                  ) -> list[AuthorizedKey]:
    """The entries of one source: an :class:`SshKey`, a file path, ``authorized_keys`` text,
    or an iterable of keys, lines and paths.  ``plain``: lines with options are refused
    (a CA key file)."""
    def parse(text: Any) -> list[AuthorizedKey]:
        if plain:
            return [AuthorizedKey(k) for k in parse_authorized_keys(text)]
        return parse_authorized_key_entries(text, ignore_options=ignore_options)

    if isinstance(source, SshKey):
        return [AuthorizedKey(source.copy())]
    if isinstance(source, (str, os.PathLike)):
        # A path (any PathLike, or a str without the space every key line has) must exist;
        # otherwise it would be read as key text (or fail on a Path).
        path = os.fspath(source)
        looks_like_path = isinstance(source, os.PathLike) or not path.strip().count(" ")
        if looks_like_path and not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, "authorized keys file not found", path)
        return parse(path if looks_like_path else source)
    if not isinstance(source, Iterable):
        raise TypeError("authorized keys must be SshKey objects, authorized_keys lines or "
                        f"file paths, not {type(source).__name__}")
    entries: list[AuthorizedKey] = []
    try:
        for item in source:
            if isinstance(item, SshKey):
                entries.append(AuthorizedKey(item.copy()))
            elif isinstance(item, os.PathLike):
                entries.extend(_load_entries(item, ignore_options, plain))
            elif isinstance(item, str):
                entries.extend(parse([item]))
            else:
                raise TypeError("authorized_keys items must be SshKey objects, "
                                f"authorized_keys lines or paths, not {type(item).__name__}")
    except BaseException:
        for entry in entries:
            entry.close()
        raise
    return entries


# ---- from= patterns (sshd's match_host_and_ip, without DNS: the host is the address) -----
def _glob(text: str, pattern: str) -> bool:
    """ssh_config PATTERNS: ``*`` any run, ``?`` one character, case-insensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE | re.DOTALL) is not None


def _address_match(address: str, patterns: str) -> int:
    """sshd's ``addr_match_list``: 1 a match, -1 a negated match, 0 none.  A pattern is a
    network (``addr/len``, or an address) or else a wildcard pattern for the address text."""
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return 0
    result = 0
    for item in patterns.split(","):
        negated = item.startswith("!")
        pattern = item[1:] if negated else item
        try:
            network = ipaddress.ip_network(pattern, strict=True)
            matched = client.version == network.version and client in network
        except ValueError:
            matched = _glob(address, pattern)
        if matched:
            if negated:
                return -1
            result = 1
    return result


def _pattern_list_match(text: str, patterns: str) -> int:
    """sshd's ``match_pattern_list``: 1 a match, -1 a negated match, 0 none."""
    result = 0
    for item in patterns.split(","):
        negated = item.startswith("!")
        if _glob(text, item[1:] if negated else item):
            if negated:
                return -1
            result = 1
    return result


def match_from(address: str, patterns: str) -> bool:
    """Whether ``from="patterns"`` admits a client at ``address``: as sshd with ``UseDNS
    no`` (its default), the host name is the address, so wildcard patterns and networks
    (``10.0.0.0/8``) are matched against it; any matching ``!pattern`` refuses."""
    by_address = _address_match(address, patterns)
    if by_address == -1:
        return False
    by_name = _pattern_list_match(address, patterns)
    return by_name != -1 and (by_name == 1 or by_address == 1)
