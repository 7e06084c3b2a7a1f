# SPDX-License-Identifier: MIT
"""Fuzz harness: ``parse_authorized_keys`` (``pylibssh_server/keys.py``).

The first byte of an input picks the form of the rest:

* ``0``: text (UTF-8, undecodable bytes kept as ``surrogateescape`` code points), parsed as a
  string; ``1``: the same text as a list of lines; ``2``: the raw bytes as a file (a ``Path``).
  The seeds are valid files in these forms.
* ``3`` and above: an ``atheris.FuzzedDataProvider`` writes a valid file: lines holding real
  keys (every type libssh generates) behind fuzzed options (flags, quoted values with spaces,
  tabs, escaped quotes and any character but a newline) and before fuzzed comments, between
  blank and ``#`` lines, with LF or CRLF line ends, handed over in one of the three forms.

Invariants:

1. Only ``SshKeyError``, naming a line that exists (``authorized_keys line N: ...``), escapes.
2. Every key returned is a public key of a known type whose own ``authorized_keys`` line parses
   back to an equal key; there are no more keys than lines.
3. A valid file (the structured form) gives exactly its keys, in order, parsed with
   ``ignore_options=True``: every line but a ``cert-authority`` one (never loaded as a key).
4. No key is leaked: the harness closes what it gets and a ``ResourceWarning`` from a key's
   ``__del__`` (one the parser dropped without closing) is a failure.
5. ``parse_authorized_key_entries`` (options kept and checked) on the same text lets only
   ``SshKeyError`` naming a line escape, and gives no more entries than lines.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import atheris
from _common import Traps, check, instrument_module, main

from pylibssh_server import keys
from pylibssh_server.errors import SshKeyError
from pylibssh_server.keys import SshKey, parse_authorized_key_entries, parse_authorized_keys

instrument_module(keys)

# TMPDIR is set by the test to a directory of its own (a crash skips any clean-up).
FILE = Path(tempfile.mkdtemp(prefix="fuzz-authorized-keys-")) / "authorized_keys"

KEYS = [SshKey.generate(kind) for kind in
        ("ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521")] + [SshKey.generate("rsa", 2048)]
_FLAGS = ["no-pty", "no-port-forwarding", "no-agent-forwarding", "no-X11-forwarding",
          "no-user-rc", "restrict", "cert-authority", "pty", "port-forwarding"]
_VALUED = ["command", "from", "environment", "permitopen", "permitlisten", "principals",
           "expiry-time", "tunnel"]
_SEPARATORS = [" ", "\t", "  ", " \t "]
_LINE_ENDS = ["\n", "\r\n"]
_TRAPS = Traps()


def _text(fdp: atheris.FuzzedDataProvider, limit: int) -> str:
    """Any text that can sit inside one line."""
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, limit)).replace("\n", "")


def _options(fdp: atheris.FuzzedDataProvider) -> tuple[str, bool]:
    """An options field, and whether it holds ``cert-authority``."""
    options = []
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        if fdp.ConsumeBool():
            options.append(fdp.PickValueInList(_FLAGS))
            continue
        value = _text(fdp, 40)
        if value.endswith("\\"):
            value += "x"  # a final backslash would escape the closing quote, in sshd too
        quoted = value.replace('"', '\\"')
        options.append(f'{fdp.PickValueInList(_VALUED)}="{quoted}"')
    return ",".join(options), "cert-authority" in options


def _valid_file(fdp: atheris.FuzzedDataProvider) -> tuple[list[str], list[SshKey]]:
    lines: list[str] = []
    expected: list[SshKey] = []
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        kind = fdp.ConsumeIntInRange(0, 7)
        indent = fdp.PickValueInList(["", " ", "\t"])
        if kind == 0:
            lines.append(indent)
        elif kind == 1:
            lines.append(f"{indent}#{_text(fdp, 60)}")
        else:
            key = KEYS[fdp.ConsumeIntInRange(0, len(KEYS) - 1)]
            options, is_ca = _options(fdp)
            fields = [options, key.type_name, key.public_base64, _text(fdp, 60)]
            line = indent
            for field in fields:
                if field:
                    line += field + fdp.PickValueInList(_SEPARATORS)
            lines.append(line)
            if not is_ca:
                expected.append(key)
    return lines, expected


def _parse(form: int, text: str) -> list[SshKey]:
    if form == 0:
        return parse_authorized_keys(text + "\n", ignore_options=True)  # never a path
    if form == 1:
        return parse_authorized_keys(text.split("\n"), ignore_options=True)
    FILE.write_bytes(text.encode("utf-8", "surrogateescape"))
    return parse_authorized_keys(FILE, ignore_options=True)


def _check_keys(keys: list[SshKey], lines: int) -> None:
    check(len(keys) <= lines, f"{len(keys)} keys from {lines} lines")
    for key in keys:
        check(isinstance(key, SshKey) and key.is_public, f"not a public key: {key!r}")
        check(key.type_name != "unknown", "a key of unknown type")
        again = parse_authorized_keys([key.authorized_key_line("comment")])
        try:
            check(len(again) == 1 and again[0] == key, f"{key!r} does not round-trip")
        finally:
            for other in again:
                other.close()


def _check_line_error(exc: SshKeyError, count: int) -> None:
    prefix, _, number = str(exc).partition(":")[0].rpartition(" ")
    check(prefix == "authorized_keys line" and number.isdigit()
          and 1 <= int(number) <= count, f"the error names no line: {exc}")


def _check_entries(text: str, count: int) -> None:
    """Invariant 5: the options parser on the same lines."""
    try:
        entries = parse_authorized_key_entries(text.split("\n"))
    except SshKeyError as exc:
        _check_line_error(exc, count)
        return
    try:
        check(len(entries) <= count, f"{len(entries)} entries from {count} lines")
    finally:
        for entry in entries:
            entry.close()


def test_one_input(data: bytes) -> None:
    form = data[0] if data else 0
    expected: list[SshKey] | None = None
    if form < 3:
        text = data[1:].decode("utf-8", "surrogateescape")
    else:
        fdp = atheris.FuzzedDataProvider(data[1:])
        lines, expected = _valid_file(fdp)
        form = fdp.ConsumeIntInRange(0, 2)
        text = fdp.PickValueInList(_LINE_ENDS).join(lines)
    count = max(1, text.count("\n") + 1)
    try:
        keys = _parse(form, text)
    except SshKeyError as exc:
        check(expected is None, f"a valid file was refused: {exc} in {text!r}")
        _check_line_error(exc, count)
    else:
        try:
            _check_keys(keys, count)
            if expected is not None:
                check(len(keys) == len(expected)
                      and all(got == want for got, want in zip(keys, expected)),
                      f"{len(keys)} keys instead of {len(expected)} (or others) in {text!r}")
        finally:
            for key in keys:
                key.close()
    _check_entries(text, count)
    _TRAPS.raise_if_any()


def seeds() -> Iterator[bytes]:
    """Valid files, in each of the three raw forms."""
    ed, ecdsa, rsa = KEYS[0], KEYS[1], KEYS[-1]
    files = [
        f"{ed.authorized_key_line('alice@example')}\n",
        "# keys\n\n"
        f'from="127.0.0.1,::1",command="echo \\"hi there\\"",no-pty {rsa.authorized_key_line()}\n'
        f"  restrict {ecdsa.authorized_key_line('with a long comment')}\r\n",
        f'environment="A=b c" {ed.type_name}\t{ed.public_base64}\n# end\n',
    ]
    for number, text in enumerate(files):
        yield bytes([number % 3]) + text.encode()


if __name__ == "__main__":
    main(test_one_input, seeds)
