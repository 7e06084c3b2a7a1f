# SPDX-License-Identifier: MIT
"""SshKey: generation, import/export round trips, fingerprints, equality, authorized_keys,
and the SshKey lifecycle (close, use after close, context manager)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from pylibssh_server import (
    KeyOptions,
    KeyType,
    SshKey,
    SshKeyError,
    parse_authorized_key_entries,
    parse_authorized_keys,
)

# (generate() type, bits, SSH type name, KeyType); RSA 2048 keeps the suite fast.
KEY_KINDS = [
    ("ed25519", None, "ssh-ed25519", KeyType.ED25519),
    ("ecdsa", None, "ecdsa-sha2-nistp256", KeyType.ECDSA_P256),
    ("rsa", 2048, "ssh-rsa", KeyType.RSA),
]
KIND_IDS = [kind[0] for kind in KEY_KINDS]


@pytest.fixture(params=KEY_KINDS, ids=KIND_IDS)
def kind(request: pytest.FixtureRequest) -> tuple[str, int | None, str, KeyType]:
    return request.param


_GENERATED: dict[str, str] = {}


@pytest.fixture
def key(kind: tuple[str, int | None, str, KeyType]) -> Iterator[SshKey]:
    """A private key of ``kind``: generated once per kind (RSA is slow), a fresh object each
    time."""
    if kind[0] not in _GENERATED:
        with SshKey.generate(kind[0], kind[1]) as generated:
            _GENERATED[kind[0]] = generated.to_private_base64()
    with SshKey.from_private_base64(_GENERATED[kind[0]]) as loaded:
        yield loaded


def keygen_fingerprint(path: Path, hash_name: str = "sha256") -> str:
    """The fingerprint field of ``ssh-keygen -E <hash> -lf <path>``."""
    out = subprocess.run(["ssh-keygen", "-E", hash_name, "-lf", str(path)], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    return out.split()[1]


def test_generate(kind: tuple[str, int | None, str, KeyType]) -> None:
    """generate() makes a private key of the requested type with its public half."""
    name, bits, type_name, key_type = kind
    with SshKey.generate(name, bits) as key:
        assert (key.type_name, key.type, key.is_private, key.is_public) == (
            type_name, key_type, True, True)


def test_generate_rsa_bits(tmp_path: Path) -> None:
    """The RSA modulus size requested is the one generated (ssh-keygen reports it)."""
    with SshKey.generate("rsa", 2048) as key:
        key.to_public_file(tmp_path / "id.pub")
        assert repr(key) == f"<SshKey ssh-rsa private {key.fingerprint()}>"
    out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "id.pub")], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    assert out.split()[0] == "2048"


def test_generate_unknown_type() -> None:
    """An unknown key type is a ValueError naming the valid choices."""
    with pytest.raises(ValueError, match="unknown key type 'dsa'; choose from ed25519"):
        SshKey.generate("dsa")


def test_private_file_round_trip(key: SshKey, tmp_path: Path) -> None:
    """to_private_file writes a 0600 file that from_private_file reads back as the same key,
    and that OpenSSH's ssh-keygen can read."""
    path = tmp_path / "id"
    key.to_private_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with SshKey.from_private_file(path) as loaded:
        assert (loaded.is_private, loaded == key, loaded.fingerprint()) == (
            True, True, key.fingerprint())
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True,
                             text=True, check=True, timeout=10).stdout.split()
    assert derived[:2] == [key.type_name, key.public_base64]


def test_private_file_with_passphrase(key: SshKey, tmp_path: Path) -> None:
    """An encrypted private file needs its passphrase: right one loads the same key; a wrong
    or missing one raises SshKeyError with a message naming the file, and never prompts."""
    path = tmp_path / "id_enc"
    key.to_private_file(path, passphrase="s3cret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with SshKey.from_private_file(path, passphrase="s3cret") as loaded:
        assert loaded == key
    for wrong in ("wrong", None):
        with pytest.raises(SshKeyError) as info:
            SshKey.from_private_file(path, passphrase=wrong)
        assert str(info.value) == (
            f"cannot read private key {path}: not a valid key, or wrong/missing passphrase")
        assert info.value.function == "ssh_pki_import_privkey_file"


def test_private_base64_round_trip(key: SshKey) -> None:
    """to_private_base64/from_private_base64 round-trip, with and without passphrase."""
    text = key.to_private_base64()
    assert text.startswith("-----BEGIN ")
    with SshKey.from_private_base64(text) as loaded:
        assert (loaded.is_private, loaded == key) == (True, True)
    encrypted = key.to_private_base64(passphrase="pw")
    with SshKey.from_private_base64(encrypted, passphrase="pw") as loaded:
        assert loaded == key
    with pytest.raises(SshKeyError, match="wrong/missing passphrase"):
        SshKey.from_private_base64(encrypted, passphrase="nope")
    with pytest.raises(SshKeyError, match="wrong/missing passphrase"):
        SshKey.from_private_base64(encrypted)


def test_public_base64_round_trip(kind: tuple[str, int | None, str, KeyType],
                                  key: SshKey) -> None:
    """public_base64 + type, or a whole authorized_keys line, imports the public half."""
    type_name = kind[2]
    with SshKey.from_public_base64(key.public_base64, type_name) as public:
        assert (public.is_private, public.type_name, public == key) == (False, type_name, True)
        assert public.public_base64 == key.public_base64
    line = key.authorized_key_line("me@host")
    assert line == f"{type_name} {key.public_base64} me@host"
    with SshKey.from_public_base64(line) as public:
        assert public == key


def test_public_file_round_trip(key: SshKey, tmp_path: Path) -> None:
    """to_public_file writes an OpenSSH .pub file; from_public_file reads it back."""
    path = tmp_path / "id.pub"
    key.to_public_file(path, comment="test key")
    assert path.read_text() == f"{key.type_name} {key.public_base64} test key\n"
    with SshKey.from_public_file(path) as public:
        assert (public.is_private, public == key) == (False, True)


@pytest.mark.parametrize("hash_name", ["sha256", "md5"])
def test_fingerprint_matches_ssh_keygen(key: SshKey, tmp_path: Path, hash_name: str) -> None:
    """fingerprint() prints exactly what ``ssh-keygen -lf`` prints for the same key."""
    path = tmp_path / "id.pub"
    key.to_public_file(path)
    expected = keygen_fingerprint(path, hash_name)
    assert key.fingerprint(hash_name) == expected
    with key.public_key() as public:
        assert public.fingerprint(hash_name) == expected


def test_fingerprint_unknown_hash(key: SshKey) -> None:
    """An unknown hash name is a ValueError."""
    with pytest.raises(ValueError, match="hash must be 'sha256', 'sha1' or 'md5'"):
        key.fingerprint("sha512")


@pytest.mark.parametrize("keygen_type", ["ed25519", "ecdsa", "rsa"])
def test_import_ssh_keygen_keys(tmp_path: Path, keygen_type: str) -> None:
    """Keys written by OpenSSH's ssh-keygen (OpenSSH format, encrypted) import with their
    passphrase and have ssh-keygen's fingerprint."""
    path = tmp_path / f"id_{keygen_type}"
    bits = ["-b", "2048"] if keygen_type == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", keygen_type, *bits, "-a", "1", "-N", "pw",
                    "-C", "c",
                    "-f", str(path)], check=True, timeout=30)
    with SshKey.from_private_file(path, "pw") as private, \
            SshKey.from_public_file(f"{path}.pub") as public:
        assert private == public
        assert private.fingerprint() == keygen_fingerprint(Path(f"{path}.pub"))
    with pytest.raises(SshKeyError, match="wrong/missing passphrase"):
        SshKey.from_private_file(path)


def test_encrypted_key_without_passphrase_never_prompts(tmp_path: Path) -> None:
    """On a terminal, importing an encrypted PEM key without passphrase (as a key or as a
    Bind host key) fails at once with SshKeyError; OpenSSL's "Enter PEM pass phrase:"
    terminal prompt, which would block, never appears."""
    path = tmp_path / "encrypted.pem"
    with SshKey.generate("ecdsa") as key:
        key.to_private_file(path, passphrase="pw")
    assert path.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    code = (
        "import sys\n"
        "from pylibssh_server import Bind, SshKey, SshKeyError\n"
        "for load in (SshKey.from_private_file, lambda p: Bind(hostkey=p)):\n"
        "    try:\n"
        "        load(sys.argv[1])\n"
        "    except SshKeyError as exc:\n"
        "        print('refused:', exc)\n"
    )
    child = pexpect.spawn(sys.executable, ["-c", code, str(path)], encoding="utf-8",
                          timeout=15)
    try:
        child.expect(pexpect.EOF)
        output = child.before
    finally:
        child.close(force=True)
    assert "pass phrase" not in output
    assert output.splitlines() == [
        f"refused: cannot read private key {path}: not a valid key, or wrong/missing "
        "passphrase",
        f"refused: cannot load host key {path}: not a private key, or encrypted (load it "
        "with SshKey.from_private_file(path, passphrase) and pass key=)",
    ]


def test_corrupt_files(tmp_path: Path) -> None:
    """Corrupt or missing key files raise SshKeyError with a message naming the file."""
    corrupt = tmp_path / "corrupt"
    corrupt.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64 !!\n"
                       "-----END OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(SshKeyError) as info:
        SshKey.from_private_file(corrupt)
    assert str(info.value) == (
        f"cannot read private key {corrupt}: not a valid key, or wrong/missing passphrase")
    garbage_pub = tmp_path / "garbage.pub"
    garbage_pub.write_text("ssh-ed25519 AAAAnotakey\n")
    with pytest.raises(SshKeyError, match=f"cannot read public key {garbage_pub}"):
        SshKey.from_public_file(garbage_pub)
    missing = tmp_path / "missing"
    with pytest.raises(SshKeyError, match=f"private key file not found: {missing}"):
        SshKey.from_private_file(missing)
    with pytest.raises(SshKeyError, match=f"public key file not found: {missing}"):
        SshKey.from_public_file(missing)
    with pytest.raises(SshKeyError, match="cannot import private key text"):
        SshKey.from_private_base64("not a key")
    with pytest.raises(SshKeyError, match="invalid ssh-ed25519 public key data"):
        SshKey.from_public_base64("AAAA", "ssh-ed25519")
    with pytest.raises(SshKeyError, match="unknown public key type 'ssh-foo'"):
        SshKey.from_public_base64("ssh-foo AAAA")


def test_public_key_has_no_private_part(key: SshKey, tmp_path: Path) -> None:
    """Exporting the private part of a public-only key is a ValueError, not a C error."""
    with key.public_key() as public:
        with pytest.raises(ValueError, match="no private part"):
            public.to_private_file(tmp_path / "x")
        with pytest.raises(ValueError, match="no private part"):
            public.to_private_base64()
    assert not (tmp_path / "x").exists()


def test_equality() -> None:
    """== compares public halves: true for the key, its public half and a copy; false for
    another key (same or different type) and NotImplemented for non-keys."""
    with SshKey.generate() as a, SshKey.generate() as b, SshKey.generate("ecdsa") as c, \
            a.public_key() as a_pub, a.copy() as a_copy:
        assert (a == a, a == a_pub, a_pub == a, a == a_copy) == (True, True, True, True)
        assert (a == b, a == c, a_pub == b, a != b) == (False, False, False, True)
        assert (a == "ssh-ed25519", a.__eq__("x")) == (False, NotImplemented)
        assert hash(a) == hash(a_pub) == hash(a_copy)
        assert len({a, a_pub, a_copy, b}) == 2


def test_parse_authorized_keys(tmp_path: Path) -> None:
    """With ignore_options, options (quoted values with spaces included) are passed over;
    comments and blank lines are handled; the keys come back in file order, from a path, a
    text, or an iterable of lines."""
    with SshKey.generate() as k1, SshKey.generate("ecdsa") as k2, \
            SshKey.generate("rsa", 2048) as k3:
        text = "\n".join([
            "# comment line",
            "",
            f"{k1.authorized_key_line('alice@example')}",
            f'from="127.0.0.1",command="echo hello world",no-pty {k2.authorized_key_line()}',
            "   ",
            f"no-agent-forwarding {k3.type_name} {k3.public_base64} bob with spaces",
            "  # indented comment",
        ])
        path = tmp_path / "authorized_keys"
        path.write_text(text + "\n")
        for source in (path, str(path), text, text.splitlines()):
            keys = parse_authorized_keys(source, ignore_options=True)
            try:
                assert [k.type_name for k in keys] == [k1.type_name, k2.type_name,
                                                       k3.type_name]
                assert [k.public_base64 for k in keys] == [
                    k1.public_base64, k2.public_base64, k3.public_base64]
                assert [k.is_private for k in keys] == [False, False, False]
            finally:
                for k in keys:
                    k.close()


def test_parse_authorized_keys_errors() -> None:
    """A malformed line raises SshKeyError naming its line number (counting comments and
    blank lines)."""
    with SshKey.generate() as k1:
        good = k1.authorized_key_line()
        cases = {
            f"# c\n{good}\n\nssh-ed25519 !!notbase64!!\n": "authorized_keys line 4: ",
            f"{good}\nno-pty just-garbage here\n": (
                "authorized_keys line 2: no known key type found"),
            "\n\nssh-ed25519\n": "authorized_keys line 3: missing key data",
        }
        for text, message in cases.items():
            with pytest.raises(SshKeyError) as info:
                parse_authorized_keys(text)
            assert str(info.value).startswith(message)


def parsed_blobs(source: Path | str | list[str]) -> list[str]:
    """The base64 blobs of the keys ``parse_authorized_keys(source)`` returns (then closed)."""
    keys = parse_authorized_keys(source, ignore_options=True)
    try:
        return [k.public_base64 for k in keys]
    finally:
        for k in keys:
            k.close()


def test_parse_authorized_keys_only_newline_ends_a_line(tmp_path: Path) -> None:
    """Only "\\n" ends a line, as in sshd: a form feed, vertical tab, U+001C, U+0085 or U+2028
    in a comment is part of it (found by fuzzing: splitlines() cut the comment and reported
    "no known key type" for its tail); CRLF line ends work; line numbers count "\\n" only."""
    with SshKey.generate() as k1, SshKey.generate("ecdsa") as k2:
        breaks = "\x0c\x0b\x1c\x85\u2028\u2029"
        text = (f"# one{breaks}two\r\n"
                f"{k1.authorized_key_line('me' + breaks + 'myself')}\r\n"
                f"{k2.authorized_key_line()} {breaks}x\n")
        path = tmp_path / "authorized_keys"
        path.write_bytes(text.encode())
        for source in (text, text.split("\n"), path):
            assert parsed_blobs(source) == [k1.public_base64, k2.public_base64]
        with pytest.raises(SshKeyError, match=r"^authorized_keys line 2: no known key type"):
            parse_authorized_keys(f"{k1.authorized_key_line()} a\x0cb\ngarbage line\n")


def test_parse_authorized_keys_escaped_quotes_in_options() -> None:
    """A backslash-escaped quote does not end an option value (found by fuzzing: the value's
    spaces then split it, and a key type name inside it was taken for the key's)."""
    with SshKey.generate() as k1:
        lines = [
            f'command="echo \\"a b\\"" {k1.authorized_key_line()}',
            f'from="x",command="printf \\" ssh-ed25519 nope\\"",no-pty {k1.authorized_key_line()}',
            f'command="a\\b \\c" {k1.authorized_key_line()}',  # no quote after: a backslash
        ]
        for line in lines:
            assert parsed_blobs([line]) == [k1.public_base64]


def test_parse_authorized_keys_text_that_is_not_ascii(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in a file's comments are fine; non-ASCII (lone surrogates
    included) or a NUL in the type or key data is a malformed line: SshKeyError naming it,
    never a UnicodeError (found by fuzzing) nor a key read up to the NUL."""
    with SshKey.generate() as k1:
        path = tmp_path / "authorized_keys"
        path.write_bytes(b"# caf\xe9\n" + k1.authorized_key_line("j\xf6rg").encode("latin-1")
                         + b"\n")
        assert parsed_blobs(path) == [k1.public_base64]
        good = k1.authorized_key_line()
        blob = k1.public_base64
        for bad in (f"{good}\udcff", f"{good}\0junk", f"{good}\u00e9", f"\udcff{good}",
                    f"ssh-ed25519\0x {blob}", f"{k1.type_name}\u00e9 {blob}"):
            with pytest.raises(SshKeyError, match=r"^authorized_keys line 2: "):
                parse_authorized_keys(["# first", bad])


def test_from_public_base64_refuses_non_ascii_and_nul() -> None:
    """from_public_base64 raises SshKeyError for a type or data with a NUL or non-ASCII text,
    given as str or as bytes that are not UTF-8, instead of a UnicodeError or a key read up
    to the NUL."""
    with SshKey.generate() as k1:
        blob = k1.public_base64
        for b64, type_name in ((blob + "\0junk", "ssh-ed25519"), (blob + "\udcff", "ssh-ed25519"),
                               (blob, "ssh-ed25519\0x"), (blob, "ssh-ed25519\udcff"),
                               (blob.encode() + b"\xff", "ssh-ed25519"),
                               (b"ssh-ed25519\xff " + blob.encode(), None)):
            with pytest.raises(SshKeyError):
                SshKey.from_public_base64(b64, type_name)


def test_close_idempotent_and_use_after_close() -> None:
    """close() twice is fine; afterwards every use raises ValueError (never touches C)."""
    key = SshKey.generate()
    other = SshKey.generate()
    key.close()
    key.close()
    assert (key.closed, repr(key)) == (True, "<SshKey closed>")
    for use in (lambda: key.fingerprint(), lambda: key.public_base64, lambda: key.is_private,
                lambda: key.type, lambda: key.copy(), lambda: key.public_key(),
                lambda: key.to_private_base64(), lambda: key == other,
                lambda: other == key):
        with pytest.raises(ValueError, match="SshKey is closed"):
            use()
    other.close()


def test_context_manager() -> None:
    """``with SshKey...`` closes the key on exit, also when the block raises."""
    with SshKey.generate() as key:
        assert key.closed is False
    assert key.closed is True
    with pytest.raises(RuntimeError, match="inside"), SshKey.generate() as key2:
        raise RuntimeError("inside")
    assert key2.closed is True


def test_borrowed_key_cannot_be_closed() -> None:
    """A borrowed wrapper (owning=False) refuses close(), and its context manager does not
    free the key it borrows."""
    with SshKey.generate() as owner:
        borrowed = SshKey(owner._c, owning=False)
        with pytest.raises(ValueError, match="cannot close a borrowed SshKey"):
            borrowed.close()
        with borrowed:
            pass
        assert (borrowed.closed, owner.fingerprint() == borrowed.fingerprint()) == (False, True)
        borrowed._invalidate()
        with pytest.raises(ValueError, match="SshKey is closed"):
            borrowed.fingerprint()


def test_unclosed_key_warns() -> None:
    """A key that is garbage-collected while open emits ResourceWarning (the safety net)."""
    key = SshKey.generate()
    with pytest.warns(ResourceWarning, match="unclosed SshKey"):
        key.__del__()
    assert key.closed is True


def test_parse_authorized_keys_missing_file_is_file_not_found(tmp_path) -> None:
    """A path (PathLike, or a string without spaces) naming no file raises FileNotFoundError
    naming it, instead of being parsed as key text."""
    from pylibssh_server import parse_authorized_keys

    missing = tmp_path / "authorized_keys"
    for source in (missing, str(missing)):
        with pytest.raises(FileNotFoundError, match="authorized_keys file not found"):
            parse_authorized_keys(source)


def test_authorized_keys_options_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    """A line with options we do not enforce is refused with an error naming the options and
    the line; with ignore_options the key loads and a warning names them."""
    with SshKey.generate() as k1:
        line = f'from="10.0.0.1",command="true",no-pty {k1.authorized_key_line()}'
        with pytest.raises(SshKeyError) as info:
            parse_authorized_keys(["# first", line])
        assert str(info.value).startswith(
            "authorized_keys line 2: key options are not enforced (from, command, no-pty)")
        with caplog.at_level(logging.WARNING, logger="pylibssh_server"):
            keys = parse_authorized_keys([line], ignore_options=True)
        try:
            assert [k.public_base64 for k in keys] == [k1.public_base64]
        finally:
            for k in keys:
                k.close()
        assert "key options ignored, not enforced: from, command, no-pty" in caplog.text


def test_cert_authority_line_never_loads_as_a_key(caplog: pytest.LogCaptureFixture) -> None:
    """A cert-authority line authorizes certificates, never the CA key: refused, and with
    ignore_options skipped (with a warning) while the other lines load."""
    with SshKey.generate() as ca, SshKey.generate() as user:
        lines = [f"cert-authority {ca.authorized_key_line()}", user.authorized_key_line(),
                 f'Cert-Authority,principals="a,b" {ca.authorized_key_line()}']
        with pytest.raises(SshKeyError, match="line 1: cert-authority lines are not supported"):
            parse_authorized_keys(lines)
        with caplog.at_level(logging.WARNING, logger="pylibssh_server"):
            keys = parse_authorized_keys(lines, ignore_options=True)
        try:
            assert [k.public_base64 for k in keys] == [user.public_base64]
        finally:
            for k in keys:
                k.close()
        assert caplog.text.count("cert-authority line skipped") == 2


def test_parse_authorized_key_entries_options() -> None:
    """Options are parsed as sshd reads them: names case-insensitive, quoted values with
    escaped quotes and commas, applied in order (``restrict`` then ``pty``), the first
    ``environment=`` of a name kept, IPv6 ``permitopen`` in brackets, ``expiry-time`` in UTC
    with ``Z``; a plain line gets the default options."""
    with SshKey.generate() as key:
        lines = [
            'No-Pty,COMMAND="echo \\"a,b\\"",from="10.0.0.0/8,!10.1.*" ' +
            key.authorized_key_line(),
            'restrict,pty,environment="A=1",environment="A=2",environment="B=x=y",'
            'permitopen="[::1]:22",permitopen="host:*",expiry-time="20300101Z",'
            'permitlisten="8080",permitlisten="LOCALHOST:*" ' +
            key.authorized_key_line(),
            key.authorized_key_line(),
        ]
        entries = parse_authorized_key_entries(lines)
        try:
            first, second, plain = (e.options for e in entries)
            assert [e.line for e in entries] == [1, 2, 3]
            assert (first.pty, first.command, first.from_patterns, first.names) == (
                False, 'echo "a,b"', "10.0.0.0/8,!10.1.*", ("no-pty", "command", "from"))
            assert (second.pty, second.port_forwarding, second.agent_forwarding) == (
                True, False, False)
            assert second.environment == (("A", "1"), ("B", "x=y"))
            assert second.permitopen == (("::1", 22), ("host", None))
            assert second.permitlisten == (("*", 8080), ("localhost", None))
            assert second.expiry_time == 1893456000.0
            assert plain == KeyOptions()
            assert all(e.key == key for e in entries)
        finally:
            for entry in entries:
                entry.close()


@pytest.mark.parametrize(("options", "message"), [
    ('tunnel="0",no-pty,no-touch-required', "unsupported key options (tunnel, "
     "no-touch-required)"),
    ('command="a",command="b"', "option command given twice"),
    ("command", 'option command needs a value: command="..."'),
    ('no-pty="yes"', "option no-pty takes no value"),
    ('command="x"y', "option command: expected a comma after it, not 'y'"),
    ('from="1.2.3.0/33"', "from: "),
    ('from=",x"', "from: empty pattern"),
    ('permitopen="host:0"', 'invalid permitopen="host:0"'),
    ('expiry-time="2030"', 'invalid expiry-time="2030"'),
    (",no-pty", "empty key option"),
])
def test_parse_authorized_key_entries_refusals(options: str, message: str) -> None:
    """Unsupported and malformed options refuse the line, naming it and the reason."""
    with SshKey.generate() as key:
        with pytest.raises(SshKeyError) as info:
            parse_authorized_key_entries(["# c", f"{options} {key.authorized_key_line()}"])
        assert str(info.value).startswith("authorized_keys line 2: ")
        assert message in str(info.value)


def test_parse_authorized_key_entries_ignore_options(caplog: pytest.LogCaptureFixture) -> None:
    """ignore_options: every line a plain key without options (warned), a cert-authority
    line skipped."""
    with SshKey.generate() as key, SshKey.generate() as ca:
        lines = [f'command="x",tunnel="1" {key.authorized_key_line()}',
                 f"cert-authority {ca.authorized_key_line()}"]
        with caplog.at_level(logging.WARNING, logger="pylibssh_server"):
            entries = parse_authorized_key_entries(lines, ignore_options=True)
        try:
            assert [(e.key == key, e.options) for e in entries] == [(True, KeyOptions())]
        finally:
            for entry in entries:
                entry.close()
        assert "key options ignored, not enforced: command, tunnel" in caplog.text
        assert "cert-authority line skipped" in caplog.text
