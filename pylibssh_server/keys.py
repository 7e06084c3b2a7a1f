# SPDX-License-Identifier: MIT
"""``SshKey``: an owned ``ssh_key`` (generate, import, export, compare, fingerprint).

Also parses OpenSSH ``authorized_keys`` files.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Union

from pylibssh_server._ffi import ffi, lib
from pylibssh_server._handle import Handle, Lock
from pylibssh_server.enums import KeyType
from pylibssh_server.errors import SshKeyError, check_ptr, check_rc

logger: logging.Logger = logging.getLogger("pylibssh_server")

__all__ = ["SUPPORTED_KEY_OPTIONS", "AuthorizedKey", "KeyOptions", "SshKey",
           "parse_authorized_key_entries", "parse_authorized_keys"]

PathLike = Union[str, "os.PathLike[str]"]

_GENERATE_TYPES = {
    "ed25519": (lib.SSH_KEYTYPE_ED25519, 0),
    "ssh-ed25519": (lib.SSH_KEYTYPE_ED25519, 0),
    "rsa": (lib.SSH_KEYTYPE_RSA, 3072),
    "ssh-rsa": (lib.SSH_KEYTYPE_RSA, 3072),
    "ecdsa": (lib.SSH_KEYTYPE_ECDSA_P256, 256),
    "ecdsa-p256": (lib.SSH_KEYTYPE_ECDSA_P256, 256),
    "ecdsa-sha2-nistp256": (lib.SSH_KEYTYPE_ECDSA_P256, 256),
    "ecdsa-p384": (lib.SSH_KEYTYPE_ECDSA_P384, 384),
    "ecdsa-sha2-nistp384": (lib.SSH_KEYTYPE_ECDSA_P384, 384),
    "ecdsa-p521": (lib.SSH_KEYTYPE_ECDSA_P521, 521),
    "ecdsa-sha2-nistp521": (lib.SSH_KEYTYPE_ECDSA_P521, 521),
}
_HASHES = {
    "sha256": lib.SSH_PUBLICKEY_HASH_SHA256,
    "sha1": lib.SSH_PUBLICKEY_HASH_SHA1,
    "md5": lib.SSH_PUBLICKEY_HASH_MD5,
}


def _bytes(value: str | bytes | None) -> Any:
    if value is None:
        return ffi.NULL
    return value.encode() if isinstance(value, str) else value


def _import_passphrase(passphrase: str | None) -> Any:
    """The passphrase argument for the private-key importers: never NULL.

    With a NULL passphrase and no auth callback, OpenSSL decrypts an encrypted PEM key with
    its default callback, which prompts on the terminal (``Enter PEM pass phrase:``) and
    blocks.  An empty passphrase is ignored for unencrypted keys and fails for encrypted ones.
    """
    return _bytes("" if passphrase is None else passphrase)


def _c_ascii(text: str) -> bytes | None:
    """``text`` as a C string for libssh if it can be a key type name or base64 data.

    Those are ASCII, and a NUL would silently cut the C string short (``"ssh-ed25519\\0junk"``
    would name a type), so anything else is ``None``: refused here, never an encoding error.
    """
    if not text.isascii() or "\0" in text:
        return None
    return text.encode("ascii")


def _take_string(out: Any) -> str:
    """Copy a libssh-allocated ``char *`` and free it with ``ssh_string_free_char``."""
    try:
        return ffi.string(out[0]).decode()
    finally:
        lib.ssh_string_free_char(out[0])


class SshKey(Handle):
    """An owned ``ssh_key`` (public, or private with its public half).

    Build one with the class methods; ``SshKey`` objects received in callbacks are borrowed
    (``owning=False``) and only valid during the callback: :meth:`copy` keeps one.
    """

    _kind = "SshKey"

    def __init__(self, ptr: Any, *, owning: bool = True, lock: Lock | None = None):
        super().__init__(ptr, owning=owning, lock=lock)

    def _free(self, ptr: Any) -> None:
        lib.ssh_key_free(ptr)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def generate(cls, type: str = "ed25519", bits: int | None = None) -> SshKey:
        """Generate a new private key with ``ssh_pki_generate``.

        Args:
            type: ``"ed25519"`` (default), ``"rsa"``, ``"ecdsa"`` (P-256), ``"ecdsa-p384"``,
                ``"ecdsa-p521"``.
            bits: RSA modulus size (default 3072); for ECDSA it selects the curve.
        """
        try:
            keytype, default_bits = _GENERATE_TYPES[type.lower()]
        except KeyError:
            raise ValueError(
                f"unknown key type {type!r}; choose from ed25519, rsa, ecdsa, ecdsa-p384, "
                "ecdsa-p521"
            ) from None
        if keytype in (lib.SSH_KEYTYPE_ECDSA_P256, lib.SSH_KEYTYPE_ECDSA_P384,
                       lib.SSH_KEYTYPE_ECDSA_P521) and bits is not None:
            keytype = {256: lib.SSH_KEYTYPE_ECDSA_P256, 384: lib.SSH_KEYTYPE_ECDSA_P384,
                       521: lib.SSH_KEYTYPE_ECDSA_P521}.get(bits, -1)
            if keytype == -1:
                raise ValueError("ECDSA bits must be 256, 384 or 521")
        out = ffi.new("ssh_key *")
        check_rc(lib.ssh_pki_generate(keytype, bits or default_bits, out), None,
                 "ssh_pki_generate", exc=SshKeyError,
                 message=f"ssh_pki_generate failed for {type!r} (bits={bits})")
        return cls(out[0])

    @classmethod
    def from_private_file(cls, path: PathLike, passphrase: str | None = None) -> SshKey:
        """Import a private key file (OpenSSH or PEM) with ``ssh_pki_import_privkey_file``."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise SshKeyError(f"private key file not found: {path}",
                              function="ssh_pki_import_privkey_file")
        out = ffi.new("ssh_key *")
        rc = lib.ssh_pki_import_privkey_file(
            path.encode(), _import_passphrase(passphrase), ffi.NULL, ffi.NULL, out
        )
        check_rc(rc, None, "ssh_pki_import_privkey_file", exc=SshKeyError,
                 message=f"cannot read private key {path}: not a valid key, or wrong/missing "
                         "passphrase")
        return cls(out[0])

    @classmethod
    def from_private_base64(cls, text: str | bytes, passphrase: str | None = None) -> SshKey:
        """Import a private key from its full text (with the BEGIN/END lines)."""
        out = ffi.new("ssh_key *")
        rc = lib.ssh_pki_import_privkey_base64(
            _bytes(text), _import_passphrase(passphrase), ffi.NULL, ffi.NULL, out
        )
        check_rc(rc, None, "ssh_pki_import_privkey_base64", exc=SshKeyError,
                 message="cannot import private key text: not a valid key, or wrong/missing "
                         "passphrase")
        return cls(out[0])

    @classmethod
    def from_public_base64(cls, b64: str | bytes, type: str | None = None) -> SshKey:
        """Import a public key from its base64 blob (``type`` like ``"ssh-ed25519"``).

        A whole ``authorized_keys``-style line ``"<type> <base64> [comment]"`` is accepted too.

        Raises:
            ValueError: no ``type`` given and ``b64`` is not a whole line.
            SshKeyError: the type is unknown or the data is not a key of that type.
        """
        text = b64.decode("utf-8", "surrogateescape") if isinstance(b64, bytes) else b64
        parts = text.split()
        if type is None:
            if len(parts) < 2:
                raise ValueError("a public key needs its type: 'ssh-ed25519 AAAA...'")
            type, blob = parts[0], parts[1]
        else:
            blob = parts[0] if parts else ""
        return cls._import_public(type, blob)

    @classmethod
    def _import_public(cls, type: str, blob: str) -> SshKey:
        """``ssh_pki_import_pubkey_base64`` of exactly ``blob`` as a key of type ``type``."""
        c_type = _c_ascii(type)
        keytype = lib.SSH_KEYTYPE_UNKNOWN if c_type is None else lib.ssh_key_type_from_name(c_type)
        if keytype == lib.SSH_KEYTYPE_UNKNOWN:
            # Not via check_rc: this C call returns a key type, with no error code or text.
            raise SshKeyError(f"unknown public key type {type!r}",
                              function="ssh_key_type_from_name")
        c_blob = _c_ascii(blob)
        out = ffi.new("ssh_key *")
        if c_blob is None:
            rc = lib.SSH_ERROR
        else:
            rc = lib.ssh_pki_import_pubkey_base64(c_blob, keytype, out)
        check_rc(rc, None, "ssh_pki_import_pubkey_base64", exc=SshKeyError,
                 message=f"invalid {type} public key data")
        return cls(out[0])

    @classmethod
    def from_public_file(cls, path: PathLike) -> SshKey:
        """Import an OpenSSH ``.pub`` file with ``ssh_pki_import_pubkey_file``."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise SshKeyError(f"public key file not found: {path}",
                              function="ssh_pki_import_pubkey_file")
        out = ffi.new("ssh_key *")
        check_rc(lib.ssh_pki_import_pubkey_file(path.encode(), out), None,
                 "ssh_pki_import_pubkey_file", exc=SshKeyError,
                 message=f"cannot read public key {path}")
        return cls(out[0])

    # ---- export ------------------------------------------------------------------------
    def to_private_file(self, path: PathLike, passphrase: str | None = None) -> None:
        """Write the private key (mode 0600) with ``ssh_pki_export_privkey_file``."""
        path = os.fspath(path)
        with self._lock:
            if not lib.ssh_key_is_private(self._c):
                raise ValueError("this SshKey has no private part")
            # Create the file 0600 first so the key is never readable by others, even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            os.chmod(path, 0o600)
            rc = lib.ssh_pki_export_privkey_file(
                self._c, _bytes(passphrase), ffi.NULL, ffi.NULL, path.encode()
            )
        check_rc(rc, None, "ssh_pki_export_privkey_file", exc=SshKeyError,
                 message=f"cannot write private key to {path}")

    def to_private_base64(self, passphrase: str | None = None) -> str:
        """Return the private key text with ``ssh_pki_export_privkey_base64``."""
        out = ffi.new("char **")
        with self._lock:
            if not lib.ssh_key_is_private(self._c):
                raise ValueError("this SshKey has no private part")
            rc = lib.ssh_pki_export_privkey_base64(
                self._c, _bytes(passphrase), ffi.NULL, ffi.NULL, out
            )
        check_rc(rc, None, "ssh_pki_export_privkey_base64", exc=SshKeyError,
                 message="cannot export private key")
        return _take_string(out)

    @property
    def public_base64(self) -> str:
        """The public key blob in base64 (``ssh_pki_export_pubkey_base64``)."""
        out = ffi.new("char **")
        with self._lock:
            rc = lib.ssh_pki_export_pubkey_base64(self._c, out)
        check_rc(rc, None, "ssh_pki_export_pubkey_base64", exc=SshKeyError,
                 message="cannot export public key")
        return _take_string(out)

    def authorized_key_line(self, comment: str = "") -> str:
        """Return ``"<type> <base64> [comment]"`` as in ``authorized_keys`` and ``.pub`` files."""
        line = f"{self.type_name} {self.public_base64}"
        return f"{line} {comment}" if comment else line

    def to_public_file(self, path: PathLike, comment: str = "") -> None:
        """Write an OpenSSH ``.pub`` file."""
        with open(os.fspath(path), "w", encoding="ascii") as f:
            f.write(self.authorized_key_line(comment) + "\n")

    def public_key(self) -> SshKey:
        """Return a new owned public-only key (``ssh_pki_export_privkey_to_pubkey``)."""
        out = ffi.new("ssh_key *")
        with self._lock:
            rc = lib.ssh_pki_export_privkey_to_pubkey(self._c, out)
        check_rc(rc, None, "ssh_pki_export_privkey_to_pubkey", exc=SshKeyError,
                 message="cannot derive the public key")
        return SshKey(out[0])

    def copy(self) -> SshKey:
        """Return an owned duplicate (``ssh_key_dup``); use it to keep a borrowed key."""
        with self._lock:
            ptr = lib.ssh_key_dup(self._c)
        return SshKey(check_ptr(ptr, "ssh_key_dup", exc=SshKeyError))

    # ---- properties --------------------------------------------------------------------
    @property
    def type(self) -> KeyType | int:
        """The key type (``ssh_key_type``)."""
        with self._lock:
            value: int = lib.ssh_key_type(self._c)
        try:
            return KeyType(value)
        except ValueError:
            return value

    @property
    def type_name(self) -> str:
        """The SSH name of the key type, e.g. ``"ssh-ed25519"`` (``ssh_key_type_to_char``)."""
        with self._lock:
            name = lib.ssh_key_type_to_char(lib.ssh_key_type(self._c))
        return ffi.string(name).decode() if name != ffi.NULL else "unknown"

    @property
    def is_private(self) -> bool:
        """True if the key has its private part (``ssh_key_is_private``)."""
        with self._lock:
            return bool(lib.ssh_key_is_private(self._c))

    @property
    def is_public(self) -> bool:
        """True if the key has a public part (``ssh_key_is_public``)."""
        with self._lock:
            return bool(lib.ssh_key_is_public(self._c))

    def fingerprint(self, hash: str = "sha256") -> str:
        """Return the fingerprint as ``ssh-keygen -l`` prints it, e.g. ``"SHA256:..."``.

        Wraps ``ssh_get_publickey_hash`` and ``ssh_get_fingerprint_hash``.
        """
        try:
            hash_type = _HASHES[hash.lower()]
        except KeyError:
            raise ValueError("hash must be 'sha256', 'sha1' or 'md5'") from None
        out = ffi.new("unsigned char **")
        length = ffi.new("size_t *")
        with self._lock:
            rc = lib.ssh_get_publickey_hash(self._c, hash_type, out, length)
        check_rc(rc, None, "ssh_get_publickey_hash", exc=SshKeyError)
        try:
            text = check_ptr(lib.ssh_get_fingerprint_hash(hash_type, out[0], length[0]),
                             "ssh_get_fingerprint_hash", exc=SshKeyError)
            try:
                return ffi.string(text).decode()
            finally:
                lib.ssh_string_free_char(text)
        finally:
            lib.ssh_clean_pubkey_hash(out)

    def public_equals(self, other: SshKey) -> bool:
        """Compare the public parts (``ssh_key_cmp(..., SSH_KEY_CMP_PUBLIC)``)."""
        if self is other:
            return True
        # Both locks, always in the same order: a.public_equals(b) in one thread and
        # b.public_equals(a) in another would otherwise deadlock.
        first, second = sorted((self._lock, other._lock), key=id)
        with first, second:
            return bool(lib.ssh_key_cmp(self._c, other._c, lib.SSH_KEY_CMP_PUBLIC) == 0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SshKey):
            return NotImplemented
        return self.public_equals(other)

    def __hash__(self) -> int:
        return hash(self.public_base64)

    def __repr__(self) -> str:
        with self._lock:  # a close from another thread must not make repr() raise
            if self._ptr is None:
                return "<SshKey closed>"
            kind = "private" if self.is_private else "public"
            return f"<SshKey {self.type_name} {kind} {self.fingerprint()}>"


#: The ``authorized_keys`` options :func:`parse_authorized_key_entries` parses (and the
#: DemoServer enforces); a line with any other option is refused.
SUPPORTED_KEY_OPTIONS = frozenset({
    "agent-forwarding", "cert-authority", "command", "environment", "expiry-time", "from",
    "no-agent-forwarding", "no-port-forwarding", "no-pty", "no-user-rc", "no-x11-forwarding",
    "permitlisten", "permitopen", "port-forwarding", "principals", "pty", "restrict", "user-rc",
    "x11-forwarding",
})
#: Options that take no value, and the permission each one sets (``restrict`` clears all).
_FLAG_OPTIONS = {
    "pty": ("pty", True), "no-pty": ("pty", False),
    "port-forwarding": ("port_forwarding", True), "no-port-forwarding": ("port_forwarding", False),
    "agent-forwarding": ("agent_forwarding", True),
    "no-agent-forwarding": ("agent_forwarding", False),
    "x11-forwarding": ("x11_forwarding", True), "no-x11-forwarding": ("x11_forwarding", False),
    "user-rc": ("user_rc", True), "no-user-rc": ("user_rc", False),
}
_PERMISSIONS = ("pty", "port_forwarding", "agent_forwarding", "x11_forwarding", "user_rc")
_ENV_NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class KeyOptions:
    """The options of one ``authorized_keys`` line, as sshd(8) reads them.

    Attributes:
        cert_authority: the key is a certificate authority: it authorizes user certificates
            it signed, never a login with the CA key itself.
        principals: ``principals="a,b"`` of a cert-authority line (a certificate must name
            one of them); None: the certificate must name the user.
        from_patterns: ``from="pattern-list"`` (matched against the client's address).
        command: ``command="..."``: the forced command.
        environment: ``environment="NAME=value"`` pairs, in order (the first of a name wins).
        permitopen: ``permitopen="host:port"`` targets (``port`` None for ``*``); None: any.
        permitlisten: ``permitlisten="[host:]port"`` listeners for ``ssh -R`` (``host`` a
            pattern, ``*`` without one; ``port`` None for ``*``); None: any.
        expiry_time: ``expiry-time="YYYYMMDD[HHMM[SS]][Z]"`` as a POSIX time, or None.
        pty, port_forwarding, agent_forwarding, x11_forwarding, user_rc: what the key may
            do (``no-pty``, ``restrict`` ... clear them; ``pty`` ... after ``restrict``
            set them again).
        names: the option names as the line has them, in order (lower-cased).
    """

    cert_authority: bool = False
    principals: tuple[str, ...] | None = None
    from_patterns: str | None = None
    command: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    permitopen: tuple[tuple[str, int | None], ...] | None = None
    permitlisten: tuple[tuple[str, int | None], ...] | None = None
    expiry_time: float | None = None
    pty: bool = True
    port_forwarding: bool = True
    agent_forwarding: bool = True
    x11_forwarding: bool = True
    user_rc: bool = True
    names: tuple[str, ...] = ()


@dataclass
class AuthorizedKey:
    """One ``authorized_keys`` line: its key (owned), its options and its line number."""

    key: SshKey
    options: KeyOptions = field(default_factory=KeyOptions)
    line: int = 0

    def close(self) -> None:
        """Free the key (``ssh_key_free``; idempotent)."""
        self.key.close()


def _parse_option_pairs(number: int, text: str) -> list[tuple[str, str | None]]:
    """``name[="value"]`` items of an options field, as sshd reads them: names are
    case-insensitive, a value is double-quoted and ``\\"`` in it is a quote."""
    pairs: list[tuple[str, str | None]] = []
    pos = 0
    while pos < len(text):
        end = pos
        while end < len(text) and text[end] not in "=,":
            end += 1
        name = text[pos:end].strip().lower()
        if not name:
            raise SshKeyError(f"authorized_keys line {number}: empty key option")
        value: str | None = None
        pos = end
        if pos < len(text) and text[pos] == "=":
            if text[pos + 1 : pos + 2] != '"':
                raise SshKeyError(f"authorized_keys line {number}: option {name}: the value "
                                  'must be in double quotes (name="value")')
            chars: list[str] = []
            pos += 2
            while pos < len(text) and text[pos] != '"':
                if text[pos] == "\\" and text[pos + 1 : pos + 2] == '"':
                    pos += 1
                chars.append(text[pos])
                pos += 1
            if pos >= len(text):
                raise SshKeyError(f"authorized_keys line {number}: option {name}: missing "
                                  "closing quote")
            value = "".join(chars)
            pos += 1
        if pos < len(text) and text[pos] != ",":
            raise SshKeyError(f"authorized_keys line {number}: option {name}: expected a "
                              f"comma after it, not {text[pos]!r}")
        pos += 1
        pairs.append((name, value))
    return pairs


def _key_options(number: int, pairs: list[tuple[str, str | None]]) -> KeyOptions:
    """The :class:`KeyOptions` of supported ``pairs``, applied in order as sshd does."""
    def fail(message: str) -> SshKeyError:
        return SshKeyError(f"authorized_keys line {number}: {message}")

    values: dict[str, Any] = {name: True for name in _PERMISSIONS}
    env: dict[str, str] = {}
    opens: list[tuple[str, int | None]] = []
    listens: list[tuple[str, int | None]] = []
    for name, value in pairs:
        if name in _FLAG_OPTIONS or name in ("restrict", "cert-authority"):
            if value is not None:
                raise fail(f"option {name} takes no value")
            if name == "restrict":
                values.update({perm: False for perm in _PERMISSIONS})
            elif name == "cert-authority":
                values["cert_authority"] = True
            else:
                attr, allowed = _FLAG_OPTIONS[name]
                values[attr] = allowed
            continue
        if value is None:
            raise fail(f'option {name} needs a value: {name}="..."')
        if name == "environment":
            env_name, eq, env_value = value.partition("=")
            if not eq or not _ENV_NAME.fullmatch(env_name):
                raise fail(f'invalid environment="{value}": it must be NAME=value')
            env.setdefault(env_name, env_value)
        elif name in ("permitopen", "permitlisten"):
            (opens if name == "permitopen" else listens).extend(
                _permit_target(number, name, item) for item in value.split(","))
        else:
            attr = {"command": "command", "from": "from_patterns", "principals": "principals",
                    "expiry-time": "expiry_time"}[name]
            if attr in values:
                raise fail(f"option {name} given twice")
            if name == "from":
                check_pattern_list(value, f"authorized_keys line {number}: from")
            values[attr] = (tuple(p for p in value.split(",") if p) if name == "principals"
                            else _expiry_time(number, value) if name == "expiry-time"
                            else value)
    return KeyOptions(environment=tuple(env.items()),
                      permitopen=tuple(opens) if opens else None,
                      permitlisten=tuple(listens) if listens else None,
                      names=tuple(name for name, _ in pairs), **values)


def _permit_target(number: int, name: str, item: str) -> tuple[str, int | None]:
    """``host:port`` of a ``permitopen`` / ``permitlisten`` item (``[v6]:port``; a bare port
    is any host for ``permitlisten``, as in sshd)."""
    item = item.strip()
    host, sep, port = item.rpartition(":")
    if not sep and name == "permitlisten":
        host, sep = "*", ":"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port == "*" or (port.isdigit() and 0 < int(port) < 65536)):
        form = "[host:]port" if name == "permitlisten" else "host:port"
        raise SshKeyError(f'authorized_keys line {number}: invalid {name}="{item}": it must '
                          f"be {form} (port a number or *)")
    return host.lower(), None if port == "*" else int(port)


def _expiry_time(number: int, text: str) -> float:
    """sshd's ``expiry-time`` format: YYYYMMDD[HHMM[SS]], local time, or UTC with ``Z``."""
    digits, utc = (text[:-1], True) if text.endswith(("Z", "z")) else (text, False)
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    try:
        if not digits.isdigit():
            raise ValueError(text)
        when = datetime.datetime.strptime(digits, formats[len(digits)])
    except (KeyError, ValueError):
        raise SshKeyError(f'authorized_keys line {number}: invalid expiry-time="{text}": it '
                          "must be YYYYMMDD[HHMM[SS]] (Z for UTC)") from None
    if utc:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def check_pattern_list(patterns: str, what: str) -> None:
    """Check a ``from=`` pattern list at load time: ``SshKeyError`` naming ``what`` for an
    empty pattern or an address/masklen that is no network (sshd would refuse every login
    with such a line only when it is used)."""
    for item in patterns.split(","):
        pattern = item[1:] if item.startswith("!") else item
        if not pattern:
            raise SshKeyError(f"{what}: empty pattern in {patterns!r}")
        if "/" in pattern and not any(c in pattern for c in "*?"):
            try:
                ipaddress.ip_network(pattern, strict=True)
            except ValueError as exc:
                raise SshKeyError(f"{what}: {exc}") from None


def parse_authorized_keys(
    source: PathLike | str | Iterable[str], *, ignore_options: bool = False
) -> list[SshKey]:
    """Parse an OpenSSH ``authorized_keys`` file (path), text, or iterable of lines.

    Raises ``FileNotFoundError`` for a path (a ``PathLike``, or a one-line string without white
    space) that does not name a file.

    A plain :class:`SshKey` cannot carry key options (``from="..."``, ``command="..."``,
    ``no-pty`` ...), so a line that has any is refused: in sshd it would grant less than a
    plain key does (:func:`parse_authorized_key_entries` keeps them).  With
    ``ignore_options=True`` such a line is loaded as a plain key and a warning naming the
    options is logged.  A ``cert-authority`` line is never loaded as a key (it authorizes
    certificates signed by that CA, not the CA key itself): it is refused, or with
    ``ignore_options`` skipped with a warning.  Comments and blank lines are ignored.  A
    malformed line raises ``SshKeyError`` naming its line number.

    As in sshd, only ``\\n`` ends a line (other line breaks such as a form feed or U+2028 may
    sit in a comment), a file may hold bytes that are not UTF-8 outside the key itself, and
    ``\\"`` in an option value is a quote that does not end the value.
    """
    keys: list[SshKey] = []
    try:
        for number, options, key_type, blob in _authorized_lines(source):
            names = _option_names(options)
            if names and not _options_allowed(number, names, ignore_options):
                continue
            keys.append(_import_line_key(number, key_type, blob))
    except BaseException:
        for key in keys:
            key.close()
        raise
    return keys


def parse_authorized_key_entries(
    source: PathLike | str | Iterable[str], *, ignore_options: bool = False
) -> list[AuthorizedKey]:
    """Parse ``authorized_keys`` like :func:`parse_authorized_keys`, keeping each line's
    options as a :class:`KeyOptions` (sshd(8), AUTHORIZED_KEYS FILE FORMAT).

    The options the DemoServer enforces are parsed (see :data:`SUPPORTED_KEY_OPTIONS`);
    ``cert-authority`` lines are kept (``options.cert_authority``: the key is a CA, never a
    login key).  A line with any other option is refused with an ``SshKeyError`` naming the
    line and the options, or with ``ignore_options=True`` loaded as a plain key without any
    of its options (a warning names them; a ``cert-authority`` line is then skipped).
    """
    entries: list[AuthorizedKey] = []
    try:
        for number, options, key_type, blob in _authorized_lines(source):
            parsed = KeyOptions()
            if options:
                pairs = _parse_option_pairs(number, options)
                unsupported = [name for name, _ in pairs if name not in SUPPORTED_KEY_OPTIONS]
                if ignore_options:
                    if not _options_allowed(number, [name for name, _ in pairs], True):
                        continue
                elif unsupported:
                    raise SshKeyError(
                        f"authorized_keys line {number}: unsupported key options "
                        f"({', '.join(unsupported)}); the DemoServer enforces "
                        f"{', '.join(sorted(SUPPORTED_KEY_OPTIONS))}; remove them, or pass "
                        "ignore_key_options=True (--ignore-key-options) to load the key "
                        "without any options")
                else:
                    parsed = _key_options(number, pairs)
            entries.append(AuthorizedKey(_import_line_key(number, key_type, blob), parsed,
                                         number))
    except BaseException:
        for entry in entries:
            entry.key.close()
        raise
    return entries


def _authorized_lines(
    source: PathLike | str | Iterable[str],
) -> Iterator[tuple[int, str, str, str]]:
    """``(line number, options text, key type, base64)`` of each key line of ``source``."""
    # A path, or key text: a key line has a space between type and data; a path names a file
    # or, when it names none, has no white space at all (so a missing file is reported).
    is_path = isinstance(source, os.PathLike) or (
        isinstance(source, str) and source != "" and "\n" not in source
        and (os.path.isfile(source) or not any(c.isspace() for c in source)))
    if is_path:
        path = os.fspath(source)  # type: ignore[arg-type]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"authorized_keys file not found: {path}")
        # newline="": a lone "\r" is no line end for sshd either; strip() drops that of "\r\n".
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            lines: Iterable[str] = f.read().split("\n")
    elif isinstance(source, str):
        lines = source.split("\n")
    else:
        lines = list(source)  # type: ignore[arg-type]
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = _split_options(line)
        for i, word in enumerate(fields):
            c_field = _c_ascii(word)
            if c_field is None or \
                    lib.ssh_key_type_from_name(c_field) == lib.SSH_KEYTYPE_UNKNOWN:
                continue
            if i + 1 >= len(fields):
                raise SshKeyError(f"authorized_keys line {number}: missing key data")
            yield number, ",".join(fields[:i]), word, fields[i + 1]
            break
        else:
            raise SshKeyError(f"authorized_keys line {number}: no known key type found")


def _import_line_key(number: int, key_type: str, blob: str) -> SshKey:
    try:
        return SshKey._import_public(key_type, blob)
    except SshKeyError as exc:  # check_rc's error, re-worded with the line number
        raise SshKeyError(f"authorized_keys line {number}: {exc}", function=exc.function,
                          code=exc.code) from None


def _options_allowed(number: int, options: list[str], ignore: bool) -> bool:
    """Whether a key line with ``options`` is loaded as a plain key (False: skipped); raises
    if refused."""
    names = ", ".join(options)
    if "cert-authority" in options:
        if not ignore:
            raise SshKeyError(
                f"authorized_keys line {number}: cert-authority lines are not supported here "
                "(they authorize certificates signed by that CA, never the CA key): use "
                "parse_authorized_key_entries, or remove the line")
        logger.warning("authorized_keys line %d: cert-authority line skipped: it must not "
                       "authorize the CA key itself", number)
        return False
    if not ignore:
        raise SshKeyError(
            f"authorized_keys line {number}: key options are not enforced ({names}) on a "
            "plain key; use parse_authorized_key_entries, remove them, or pass "
            "ignore_key_options=True (--ignore-key-options) to load the key without them")
    logger.warning("authorized_keys line %d: key options ignored, not enforced: %s",
                   number, names)
    return True


def _option_names(options: str) -> list[str]:
    """The option names of an ``authorized_keys`` options field, lower-cased, in order:
    ``'from="a,b",no-pty'`` gives ``["from", "no-pty"]`` (commas inside quotes do not split).
    """
    names = (field.split("=", 1)[0].strip().lower() for field in _split_options(options, ","))
    return [name for name in names if name]


def _split_options(line: str, separators: str = " \t") -> list[str]:
    """Split on spaces and tabs (or ``separators``), keeping double-quoted option values (which
    may hold them) whole.

    A backslash before a quote escapes it, in a value or not, as sshd reads options:
    ``command="echo \\"a b\\""`` is one field.
    """
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    pos = 0
    while pos < len(line):
        ch = line[pos]
        pos += 1
        if ch == "\\" and line[pos : pos + 1] == '"':
            current.append('\\"')
            pos += 1
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch in separators and not quoted:
            if current:
                fields.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        fields.append("".join(current))
    return fields
