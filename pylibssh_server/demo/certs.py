# SPDX-License-Identifier: MIT
"""OpenSSH certificates for the DemoServer, checked with pyca/cryptography.

libssh hands the public-key callback a certificate as a key of a ``*-cert-v01@openssh.com``
type whose exported blob (``ssh_pki_export_pubkey_base64``) is the whole certificate, and it
has already checked the client's signature with the certified key.  Everything else (CA
signature, type, validity, principals, critical options, extensions) is checked here with
``cryptography``'s parser, never by hand: ``cryptography`` is the ``certs`` extra
(``pip install 'pylibssh_server[certs]'``), imported only when certificates are configured.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import os
import time
from dataclasses import dataclass
from typing import Any

from pylibssh_server import SshKey, libssh_version

__all__ = ["CertificateRefused", "UserCertificate", "is_certificate", "refuse_host_certificate",
           "require_cryptography", "source_address_matches"]

CERT_SUFFIX = "-cert-v01@openssh.com"
#: The critical options sshd knows; a certificate with any other one is refused (as sshd).
KNOWN_CRITICAL_OPTIONS = ("force-command", "source-address")
#: Certificate extensions and the permission each grants; one that is absent is denied.
PERMIT_EXTENSIONS = {"permit-pty": "pty", "permit-port-forwarding": "port_forwarding",
                     "permit-agent-forwarding": "agent_forwarding",
                     "permit-X11-forwarding": "x11_forwarding", "permit-user-rc": "user_rc"}


class CertificateRefused(Exception):
    """A certificate that must not log in; the message says why (for the event log)."""


def require_cryptography() -> None:
    """ValueError naming the fix when ``cryptography`` (the ``certs`` extra) is missing."""
    try:
        from cryptography.hazmat.primitives.serialization import SSHCertificate  # noqa: F401
    except ImportError:
        raise ValueError(
            "OpenSSH certificates (cert-authority lines, trusted_user_ca_keys, hostkey_cert) "
            "need the cryptography package (40 or later): pip install "
            "'pylibssh_server[certs]'") from None


def is_certificate(key: SshKey) -> bool:
    """Whether ``key`` is an OpenSSH certificate (a ``*-cert-v01@openssh.com`` key type)."""
    return key.type_name.endswith(CERT_SUFFIX)


def _openssh_blob(public_key: Any) -> str:
    """The base64 key blob of a cryptography public key, as ``SshKey.public_base64``."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    blob: str = public_key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).split()[1].decode()
    return blob


@dataclass(frozen=True)
class UserCertificate:
    """What a verified user certificate says (:meth:`parse` checks the CA's signature)."""

    ca_blob: str
    key_id: str
    serial: int
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    force_command: str | None
    source_address: str | None
    permissions: frozenset[str]

    @classmethod
    def parse(cls, key: SshKey) -> UserCertificate:
        """Parse and verify the certificate ``key`` with ``cryptography``.

        Raises:
            CertificateRefused: not a user certificate, a bad CA signature, or a critical
                option sshd does not know.
        """
        from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import (
            SSHCertificate,
            SSHCertificateType,
            load_ssh_public_identity,
        )

        text = f"{key.type_name} {key.public_base64}".encode("ascii")
        try:
            cert = load_ssh_public_identity(text)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CertificateRefused(f"certificate not readable: {exc}") from None
        if not isinstance(cert, SSHCertificate):
            raise CertificateRefused("not a certificate")
        if cert.type != SSHCertificateType.USER:
            raise CertificateRefused("not a user certificate (a host certificate)")
        try:
            cert.verify_cert_signature()
        except InvalidSignature:
            raise CertificateRefused("the CA's signature on the certificate is invalid") \
                from None
        options = {name.decode("utf-8", "replace"): value.decode("utf-8", "replace")
                   for name, value in cert.critical_options.items()}
        unknown = sorted(set(options) - set(KNOWN_CRITICAL_OPTIONS))
        if unknown:
            raise CertificateRefused(f"unsupported critical options: {', '.join(unknown)}")
        extensions = {name.decode("utf-8", "replace") for name in cert.extensions}
        return cls(
            ca_blob=_openssh_blob(cert.signature_key()),
            key_id=cert.key_id.decode("utf-8", "replace"),
            serial=cert.serial,
            principals=tuple(p.decode("utf-8", "replace") for p in cert.valid_principals),
            valid_after=cert.valid_after, valid_before=cert.valid_before,
            force_command=options.get("force-command"),
            source_address=options.get("source-address"),
            permissions=frozenset(perm for ext, perm in PERMIT_EXTENSIONS.items()
                                  if ext in extensions))

    def check_time(self, now: float | None = None) -> None:
        """CertificateRefused unless ``now`` is within the validity (as sshd: valid_after
        <= now < valid_before)."""
        now = time.time() if now is None else now
        if now < self.valid_after:
            raise CertificateRefused("certificate not yet valid")
        if now >= self.valid_before:
            raise CertificateRefused("certificate expired")

    def check_principal(self, user: str, allowed: tuple[str, ...] | None,
                        require: bool) -> None:
        """As sshd: with ``allowed`` (a ``principals=`` option) one of the certificate's
        principals must be listed there; otherwise the user name must be one of them.  A
        certificate without principals is valid for anyone unless ``require`` (a
        ``TrustedUserCAKeys`` CA)."""
        if allowed is not None:
            if not any(p in allowed for p in self.principals):
                raise CertificateRefused(
                    f"no certificate principal ({', '.join(self.principals) or 'none'}) is "
                    f"in principals=\"{','.join(allowed)}\"")
            return
        if not self.principals:
            if require:
                raise CertificateRefused("certificate lacks a principal list")
            return
        if user not in self.principals:
            raise CertificateRefused(
                f"user {user!r} is not a certificate principal ({', '.join(self.principals)})")

    def check_source(self, address: str) -> None:
        """CertificateRefused unless ``address`` is in the ``source-address`` CIDR list."""
        if self.source_address is not None and \
                not source_address_matches(address, self.source_address):
            raise CertificateRefused(
                f"source-address {self.source_address} does not include {address}")

    def fingerprint_ca(self) -> str:
        """The CA key's SHA256 fingerprint (for the log)."""
        import hashlib

        digest = hashlib.sha256(base64.b64decode(self.ca_blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def source_address_matches(address: str, cidr_list: str) -> bool:
    """sshd's ``source-address`` check: ``address`` is in one of the comma-separated
    networks; a malformed entry refuses (False)."""
    try:
        client = ipaddress.ip_address(address)
        networks = [ipaddress.ip_network(item.strip(), strict=True)
                    for item in cidr_list.split(",")]
    except ValueError:
        return False
    return any(client.version == net.version and client in net for net in networks)


def refuse_host_certificate(path: str | os.PathLike[str]) -> None:
    """Check a ``hostkey_cert`` file, then refuse it: no libssh release can present a host
    certificate.

    Its server builds the host key algorithms it offers from the plain types of its keys
    (``server_set_kex`` in 0.10 to 0.12 and upstream master of 2026), so a certificate
    copied onto the key (``ssh_pki_copy_cert_to_privkey``) is never offered and a client
    trusting only a ``@cert-authority`` line would fail to verify the server.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a host certificate, or (always, once it is one) libssh cannot
            present it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "host certificate file not found", path)
    require_cryptography()
    from cryptography.hazmat.primitives.serialization import (
        SSHCertificate,
        SSHCertificateType,
        load_ssh_public_identity,
    )

    with open(path, "rb") as f:
        try:
            cert = load_ssh_public_identity(f.read().strip())
        except Exception as exc:
            raise ValueError(f"{path} is not an OpenSSH certificate: {exc}") from None
    if not isinstance(cert, SSHCertificate) or cert.type != SSHCertificateType.HOST:
        raise ValueError(f"{path} is not an OpenSSH host certificate (ssh-keygen -s CA -h)")
    raise ValueError(
        f"host certificates are not supported by libssh {libssh_version()}: its server offers "
        "only plain host key algorithms (no *-cert-v01@openssh.com), in every release up to "
        "0.12; clients must trust the host key itself (known_hosts_line())")
