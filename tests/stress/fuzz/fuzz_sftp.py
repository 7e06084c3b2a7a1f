# SPDX-License-Identifier: MIT
"""Fuzz harness: the SFTP v3 engine (``pylibssh_server/demo/sftp.py``) serving a confined root.

One input is one SFTP session fed to ``SftpServer(RootedFileSystem(root)).feed()``. The first
byte picks the form of the rest:

* below ``len(_RAW_CHUNKS)``: the rest is the client's byte stream as is, fed in chunks of the
  size that byte selects. The seeds are real sessions in this form, so libFuzzer mutates valid
  traffic.
* otherwise an ``atheris.FuzzedDataProvider`` builds a session of structured requests (every
  v3 packet type and the extensions, paths full of ``..``, absolute paths, paths through links
  that lead outside, NULs, long names, extreme offsets and lengths, strings whose length lies,
  wrong packet lengths) mixed with raw garbage, then splits it at fuzzed points.

Invariants checked after every input:

1. Only ``SftpProtocolError`` escapes ``feed()``, and it does whenever the framing is broken
   (oversized length, empty packet, no INIT first, a second INIT). The session then stays failed.
2. Every ``feed()`` returns whole, well-formed reply packets, none larger than OpenSSH's client
   accepts (256 KiB): one per request, in request order, carrying its id, of a type that request
   may get. A DATA reply is never longer than asked nor than ``MAX_READ_LENGTH``.
3. No "internal server error": nothing is logged at ERROR.
4. ``close()`` releases every handle and every file descriptor.
5. Nothing outside the root changes: the sibling ``outside/`` directory, reachable from inside
   only through symbolic links, keeps its listing, contents, modes, owners, link counts and
   times, and nothing appears next to the root.

The root is emptied and refilled with a few small files after each input.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator

import atheris
from _common import Traps, check, instrument_module, main

from pylibssh_server.demo import sftp

instrument_module(sftp)

T = sftp.PacketType
Status = sftp.StatusCode

#: ``SftpServer``'s default packet limit, passed explicitly so the checks can use it.
MAX_PACKET = 256 * 1024 + 1024
#: The largest message OpenSSH's sftp client accepts (its SFTP_MAX_MSG_LENGTH).
MAX_REPLY = 256 * 1024
SECRET = b"outside the root\n"

# TMPDIR is set by the test to a directory of its own, so that a crash (no clean-up) leaves
# nothing behind that the next pytest run would not remove.
BASE = os.fsencode(tempfile.mkdtemp(prefix="fuzz-sftp-"))
ROOT = os.path.join(BASE, b"root")
OUTSIDE = os.path.join(BASE, b"outside")

_RAW_CHUNKS = (1 << 30, 1, 2, 3, 7, 64, 1000, 4096)
# Lists, not tuples: FuzzedDataProvider.PickValueInList() takes only lists.
_U32_EDGES = [0, 1, 255, 4096, sftp.MAX_READ_LENGTH, sftp.MAX_READ_LENGTH + 1, MAX_PACKET,
              2**31 - 1, 2**31, 2**32 - 1]
_U64_EDGES = [0, 1, 7, 4096, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**63,
              2**64 - 1]
_WORDS = [b"", b".", b"..", b"f", b"d", b"g", b"new", b"escape", b"abs_outside", b"up",
          b"loop", b"dangling", b"self", b"deep", b"abs", b"outside", b"secret.txt", b"sub",
          b"root", b"a\0b",
          b"x" * 255, b"y" * 256, OUTSIDE.lstrip(b"/"), BASE.lstrip(b"/")]
_EXTENSIONS = [b"posix-rename@openssh.com", b"statvfs@openssh.com", b"fstatvfs@openssh.com",
               b"hardlink@openssh.com", b"fsync@openssh.com", b"limits@openssh.com",
               b"copy-data", b""]
_REQUEST_TYPES = [*range(T.OPEN, T.SYMLINK + 1), T.EXTENDED, T.INIT, T.VERSION, T.STATUS,
                  0, 21, 99, 255]
_ATTR_FLAGS = [0, 1, 2, 4, 8, 0xF, 0x8000_0000, 0x8000_000F]
# Requests whose success is not a STATUS, and what they get instead. EXTENDED gets either.
_SUCCESS = {
    T.OPEN: T.HANDLE, T.OPENDIR: T.HANDLE, T.READ: T.DATA, T.READDIR: T.NAME,
    T.REALPATH: T.NAME, T.READLINK: T.NAME, T.STAT: T.ATTRS, T.LSTAT: T.ATTRS,
    T.FSTAT: T.ATTRS,
}


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def string(value: bytes) -> bytes:
    return u32(len(value)) + value


def frame(body: bytes) -> bytes:
    return u32(len(body)) + body


def request(ptype: int, rid: int, *fields: bytes) -> bytes:
    return frame(bytes([ptype]) + u32(rid) + b"".join(fields))


# -- the files -----------------------------------------------------------------------------


def _write(path: bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _build_outside() -> None:
    os.mkdir(OUTSIDE)
    _write(os.path.join(OUTSIDE, b"secret.txt"), SECRET)
    os.mkdir(os.path.join(OUTSIDE, b"sub"))
    _write(os.path.join(OUTSIDE, b"sub", b"inner.txt"), SECRET)


def _fill_root() -> None:
    _write(os.path.join(ROOT, b"f"), b"0123456789abcdef" * 64)
    os.mkdir(os.path.join(ROOT, b"d"))
    _write(os.path.join(ROOT, b"d", b"g"), b"g")
    os.symlink(b"../outside", os.path.join(ROOT, b"escape"))
    os.symlink(OUTSIDE, os.path.join(ROOT, b"abs_outside"))  # counts from the root: harmless
    os.symlink(b"../../outside/secret.txt", os.path.join(ROOT, b"d", b"deep"))
    os.symlink(b"/d/g", os.path.join(ROOT, b"d", b"abs"))  # absolute, met below the root
    os.symlink(b"..", os.path.join(ROOT, b"up"))
    os.symlink(b"loop", os.path.join(ROOT, b"loop"))
    os.symlink(b"../outside/new", os.path.join(ROOT, b"dangling"))
    os.symlink(b".", os.path.join(ROOT, b"self"))


def _clear(directory: bytes) -> None:
    """Empty ``directory`` without following links, whatever modes the session left."""
    os.chmod(directory, 0o700)
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _clear(entry.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)


def _reset_root() -> None:
    # Emptied in place, not replaced: BASE's own times are part of what must not change.
    _clear(ROOT)
    os.chmod(ROOT, 0o755)
    if os.lstat(ROOT).st_uid != _OWNER[0] or os.lstat(ROOT).st_gid != _OWNER[1]:
        os.chown(ROOT, *_OWNER)  # a SETSTAT of "/" as root may have changed it
    _fill_root()


def _outside_state() -> list[object]:
    """Everything about BASE (but the root's contents) that a session must not change."""
    state: list[object] = [sorted(os.listdir(BASE))]
    st = os.lstat(BASE)
    state.append((st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns, st.st_ctime_ns))
    for dirpath, dirnames, filenames in os.walk(OUTSIDE):
        dirnames.sort()
        for name in (b"", *sorted(filenames)):
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            content = None
            if name:
                with open(path, "rb") as f:
                    content = f.read()
            state.append((path, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_nlink,
                          st.st_mtime_ns, st.st_ctime_ns, content))
    return state


def _fds_under_base() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if target.startswith(os.fsdecode(BASE)):
            found.append(f"{fd} -> {target}")
    return found


os.mkdir(ROOT)
_OWNER = (os.lstat(ROOT).st_uid, os.lstat(ROOT).st_gid)
_build_outside()
_fill_root()
_OUTSIDE = _outside_state()
_TRAPS = Traps("pylibssh_server.demo.sftp")


# -- structured sessions -------------------------------------------------------------------


def _u32(fdp: atheris.FuzzedDataProvider) -> int:
    if fdp.ConsumeBool():
        return int(fdp.PickValueInList(_U32_EDGES))
    return int(fdp.ConsumeIntInRange(0, 2**32 - 1))


def _u64(fdp: atheris.FuzzedDataProvider) -> int:
    if fdp.ConsumeBool():
        return int(fdp.PickValueInList(_U64_EDGES))
    return int(fdp.ConsumeIntInRange(0, 2**64 - 1))


def _string(fdp: atheris.FuzzedDataProvider, value: bytes) -> bytes:
    if fdp.ConsumeIntInRange(0, 15) == 0:
        return u32(_u32(fdp)) + value  # a length that lies
    return string(value)


def _path(fdp: atheris.FuzzedDataProvider) -> bytes:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind == 0:
        return bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)))
    if kind == 1:
        return b"z" * fdp.ConsumeIntInRange(0, 5000)
    if kind == 2:
        return b"../" * fdp.ConsumeIntInRange(0, 40) + fdp.PickValueInList(_WORDS)
    parts = [fdp.PickValueInList(_WORDS) for _ in range(fdp.ConsumeIntInRange(1, 6))]
    return (b"/" if fdp.ConsumeBool() else b"") + b"/".join(parts)


def _handle(fdp: atheris.FuzzedDataProvider) -> bytes:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind == 0:
        value = bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12)))
    else:
        value = u64(kind if kind < 7 else _u64(fdp))  # handles are counters from 1
    return _string(fdp, value)


def _attrs(fdp: atheris.FuzzedDataProvider) -> bytes:
    flags = fdp.PickValueInList(_ATTR_FLAGS) if fdp.ConsumeBool() else _u32(fdp)
    fields = [u32(flags)]
    if flags & 1:
        fields.append(u64(_u64(fdp)))
    if flags & 2:
        fields.append(u32(_u32(fdp)) + u32(_u32(fdp)))
    if flags & 4:
        mode = fdp.ConsumeIntInRange(0, 0o7777) if fdp.ConsumeBool() else _u32(fdp)
        fields.append(u32(mode))
    if flags & 8:
        fields.append(u32(_u32(fdp)) + u32(_u32(fdp)))
    if flags & 0x8000_0000:
        count = fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeBool() else _u32(fdp)
        fields.append(u32(count))
        for _ in range(min(count, 3)):
            fields.append(_string(fdp, bytes(fdp.ConsumeBytes(4))))
            fields.append(_string(fdp, bytes(fdp.ConsumeBytes(4))))
    return b"".join(fields)


def _payload(fdp: atheris.FuzzedDataProvider, ptype: int) -> bytes:
    def path() -> bytes:
        return _string(fdp, _path(fdp))

    if ptype in (T.LSTAT, T.STAT, T.OPENDIR, T.REMOVE, T.RMDIR, T.REALPATH, T.READLINK):
        return path()
    if ptype in (T.CLOSE, T.FSTAT, T.READDIR):
        return _handle(fdp)
    if ptype == T.OPEN:
        flags = fdp.ConsumeIntInRange(0, 0x3F) if fdp.ConsumeBool() else _u32(fdp)
        return path() + u32(flags) + _attrs(fdp)
    if ptype == T.READ:
        return _handle(fdp) + u64(_u64(fdp)) + u32(_u32(fdp))
    if ptype == T.WRITE:
        if fdp.ConsumeIntInRange(0, 7) == 0:
            data = b"w" * fdp.ConsumeIntInRange(0, MAX_PACKET)
        else:
            data = bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256)))
        return _handle(fdp) + u64(_u64(fdp)) + _string(fdp, data)
    if ptype in (T.SETSTAT, T.MKDIR):
        return path() + _attrs(fdp)
    if ptype == T.FSETSTAT:
        return _handle(fdp) + _attrs(fdp)
    if ptype in (T.RENAME, T.SYMLINK):
        return path() + path()
    if ptype == T.EXTENDED:
        name = fdp.PickValueInList(_EXTENSIONS)
        if name in (b"posix-rename@openssh.com", b"hardlink@openssh.com"):
            rest = path() + path()
        elif name == b"statvfs@openssh.com":
            rest = path()
        elif name in (b"fstatvfs@openssh.com", b"fsync@openssh.com"):
            rest = _handle(fdp)
        else:
            rest = b""
        return _string(fdp, name) + rest
    return bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16)))


def _frame(fdp: atheris.FuzzedDataProvider, body: bytes) -> bytes:
    choice = fdp.ConsumeIntInRange(0, 31)
    if choice == 0:
        return u32(_u32(fdp)) + body  # swallows what follows, or leaves part of it over
    if choice == 1:
        return u32(MAX_PACKET + fdp.ConsumeIntInRange(0, 1)) + body
    return frame(body)


def _structured(fdp: atheris.FuzzedDataProvider) -> bytes:
    out = bytearray()
    if fdp.ConsumeIntInRange(0, 15):
        init = bytes([T.INIT]) + u32(3 if fdp.ConsumeBool() else _u32(fdp))
        if fdp.ConsumeIntInRange(0, 3) == 0:
            init += string(b"ext@example.com") + string(bytes(fdp.ConsumeBytes(4)))
        out += _frame(fdp, init)
    rid = 0
    for _ in range(fdp.ConsumeIntInRange(0, 24)):
        rid = (rid + 1) & 0xFFFF_FFFF if fdp.ConsumeIntInRange(0, 7) else _u32(fdp)
        ptype = fdp.PickValueInList(_REQUEST_TYPES)
        body = bytes([ptype]) + u32(rid) + _payload(fdp, ptype)
        cut = fdp.ConsumeIntInRange(0, 15)
        if cut == 0:
            body = body[: fdp.ConsumeIntInRange(0, len(body))]
        elif cut == 1:
            body += bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8)))
        out += _frame(fdp, body)
        if fdp.ConsumeIntInRange(0, 15) == 0:
            out += bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 32)))
    return bytes(out)


def _split(fdp: atheris.FuzzedDataProvider, stream: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(stream):
        if not fdp.remaining_bytes():
            yield stream[pos:]
            return
        size = fdp.ConsumeIntInRange(0, len(stream) - pos)
        yield stream[pos : pos + size]
        pos += size


# -- checking replies ----------------------------------------------------------------------


class _Fields:
    """Reads one reply body; running short is an invariant violation."""

    def __init__(self, body: bytes, what: str) -> None:
        self.body = body
        self.pos = 0
        self.what = what

    def take(self, size: int) -> bytes:
        check(self.pos + size <= len(self.body), f"{self.what}: truncated reply {self.body!r}")
        self.pos += size
        return self.body[self.pos - size : self.pos]

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.u32())

    def attrs(self) -> None:
        flags = self.u32()
        check(flags & ~0xF == 0, f"{self.what}: attribute flags {flags:#x}")
        self.take((8 if flags & 1 else 0) + (8 if flags & 2 else 0) + (4 if flags & 4 else 0)
                  + (8 if flags & 8 else 0))

    def end(self) -> None:
        check(self.pos == len(self.body), f"{self.what}: trailing bytes in {self.body!r}")


def _framed_requests(stream: bytes) -> tuple[list[bytes], bool]:
    """The packets the server must answer, in order, and whether the framing is broken.

    Mirrors only what the framing decides, not field parsing: a request whose fields run
    short may also end the session, and only the check of the replies' prefix covers it.
    """
    packets: list[bytes] = []
    pos = 0
    while len(stream) - pos >= 4:
        (length,) = struct.unpack_from(">I", stream, pos)
        if length > MAX_PACKET:
            return packets, True
        if len(stream) - pos - 4 < length:
            break
        packet = stream[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if len(packet) < 5 or (packet[0] == T.INIT) != (not packets):
            return packets, True  # empty, too short for an id, INIT missing or repeated
        packets.append(packet)
    return packets, False


def _read_length(packet: bytes) -> int | None:
    fields = _Fields(packet[5:], "READ request")
    try:
        fields.string()
        fields.take(8)
        return fields.u32()
    except AssertionError:
        return None


def _check_reply(packet: bytes, reply: bytes) -> None:
    rtype, body = reply[0], reply[1:]
    ptype = packet[0]
    what = f"reply {rtype} to request type {ptype}"
    fields = _Fields(body, what)
    if ptype == T.INIT:
        check(rtype == T.VERSION, f"{what}: INIT must get VERSION")
        check(fields.u32() == 3, f"{what}: version is not 3")
        while fields.pos < len(body):
            fields.string()
            fields.string()
        return
    (rid,) = struct.unpack_from(">I", packet, 1)
    check(fields.u32() == rid, f"{what}: request id {rid} not echoed: {body[:4]!r}")
    success = _SUCCESS.get(ptype, T.EXTENDED_REPLY if ptype == T.EXTENDED else None)
    if rtype == T.STATUS:
        code = fields.u32()
        check(code in set(Status), f"{what}: status code {code}")
        check(code != Status.OK or ptype not in _SUCCESS, f"{what}: OK instead of a result")
        check(code != Status.EOF or ptype in (T.READ, T.READDIR), f"{what}: EOF")
        message = fields.string()
        check(message != b"internal server error", f"{what}: internal server error")
        check(fields.string() == b"en", f"{what}: language tag")
        fields.end()
        return
    check(rtype == success, f"{what}: wrong reply type")
    if rtype == T.HANDLE:
        check(1 <= len(fields.string()) <= 256, f"{what}: handle length")
    elif rtype == T.DATA:
        size = len(fields.string())
        asked = _read_length(packet)
        check(asked is not None and 1 <= size <= min(asked, sftp.MAX_READ_LENGTH),
              f"{what}: {size} bytes of data for a READ of {asked}")
    elif rtype == T.NAME:
        count = fields.u32()
        limit = sftp.READDIR_BATCH if ptype == T.READDIR else 1
        check(1 <= count <= limit, f"{what}: {count} names")
        for _ in range(count):
            fields.string()
            fields.string()
            fields.attrs()
    elif rtype == T.ATTRS:
        fields.attrs()
    else:
        return  # EXTENDED_REPLY: extension-specific
    fields.end()


def _split_replies(out: bytes) -> list[bytes]:
    replies = []
    pos = 0
    while pos < len(out):
        check(len(out) - pos >= 5, f"reply stream ends in a partial header: {out[pos:]!r}")
        (length,) = struct.unpack_from(">I", out, pos)
        check(1 <= length <= MAX_REPLY - 4, f"reply of {length} bytes")
        check(len(out) - pos - 4 >= length, "reply stream ends in a partial packet")
        replies.append(out[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return replies


# -- one input -----------------------------------------------------------------------------


def _session(data: bytes) -> tuple[bytes, list[bytes]]:
    if data and data[0] < len(_RAW_CHUNKS):
        stream = data[1:]
        size = _RAW_CHUNKS[data[0]]
        return stream, [stream[i : i + size] for i in range(0, len(stream), size)]
    fdp = atheris.FuzzedDataProvider(data[1:])
    stream = _structured(fdp)
    return stream, list(_split(fdp, stream))


def test_one_input(data: bytes) -> None:
    stream, chunks = _session(data)
    replies: list[bytes] = []
    failed = False
    server = sftp.SftpServer(sftp.RootedFileSystem(ROOT), max_packet=MAX_PACKET)
    try:
        for chunk in chunks:
            try:
                out = server.feed(chunk)
            except sftp.SftpProtocolError:
                failed = True
                break
            check(isinstance(out, bytes), f"feed() returned {type(out).__name__}")
            replies += _split_replies(out)
        if failed:
            try:
                server.feed(b"")
            except sftp.SftpProtocolError:
                pass
            else:
                raise AssertionError("a failed session accepted more data")
    finally:
        server.close()
    packets, broken = _framed_requests(stream)
    check(len(replies) <= len(packets), f"{len(replies)} replies to {len(packets)} requests")
    if not failed:
        check(not broken, "broken framing did not raise SftpProtocolError")
        check(len(replies) == len(packets), f"{len(replies)} replies to {len(packets)} requests")
    for packet, reply in zip(packets, replies):
        _check_reply(packet, reply)
    check(server.open_handles == 0, f"{server.open_handles} handles open after close()")
    leaked = _fds_under_base()
    check(not leaked, f"descriptors leaked: {leaked}")
    now = _outside_state()
    check(now == _OUTSIDE, "outside the root, this changed: "
          f"{[(was, new) for was, new in zip(_OUTSIDE, now) if was != new] or now[len(_OUTSIDE):]}")
    _TRAPS.raise_if_any()
    _reset_root()


# -- seeds ---------------------------------------------------------------------------------

INIT = frame(bytes([T.INIT]) + u32(3))
NO_ATTRS = u32(0)


def seeds() -> Iterator[bytes]:
    """Valid sessions touching every request type, in the raw form (first byte < 8)."""
    handle1, handle2 = string(u64(1)), string(u64(2))
    sessions = [
        [(T.REALPATH, string(b".")),
         (T.OPEN, string(b"f"), u32(1), NO_ATTRS),
         (T.READ, handle1, u64(0), u32(100)),
         (T.READ, handle1, u64(1 << 20), u32(100)),
         (T.FSTAT, handle1),
         (T.CLOSE, handle1)],
        [(T.OPEN, string(b"new"), u32(0x1A), u32(4) + u32(0o644)),
         (T.WRITE, handle1, u64(0), string(b"data")),
         (T.FSETSTAT, handle1, u32(8) + u32(1) + u32(2)),
         (T.FSETSTAT, handle1, u32(5) + u64(3) + u32(0o600)),
         (T.CLOSE, handle1),
         (T.STAT, string(b"new")),
         (T.LSTAT, string(b"/new")),
         (T.SETSTAT, string(b"new"), u32(1) + u64(2)),
         (T.RENAME, string(b"new"), string(b"new2")),
         (T.EXTENDED, string(b"posix-rename@openssh.com"), string(b"new2"),
                 string(b"f")),
         (T.REMOVE, string(b"f"))],
        [(T.OPENDIR, string(b"/")),
         (T.READDIR, handle1),
         (T.READDIR, handle1),
         (T.CLOSE, handle1),
         (T.MKDIR, string(b"dd"), NO_ATTRS),
         (T.RMDIR, string(b"dd"))],
        [(T.SYMLINK, string(b"f"), string(b"ln")),
         (T.READLINK, string(b"ln")),
         (T.EXTENDED, string(b"hardlink@openssh.com"), string(b"f"), string(b"f2")),
         (T.EXTENDED, string(b"statvfs@openssh.com"), string(b"/")),
         (T.OPEN, string(b"f2"), u32(3), NO_ATTRS),
         (T.EXTENDED, string(b"fstatvfs@openssh.com"), handle1),
         (T.EXTENDED, string(b"fsync@openssh.com"), handle1),
         (T.EXTENDED, string(b"limits@openssh.com")),
         (T.OPENDIR, string(b"d")),
         (T.CLOSE, handle2),
         (T.CLOSE, handle1)],
        [(T.OPEN, string(b"escape/secret.txt"), u32(1), NO_ATTRS),
         (T.STAT, string(b"../outside")),
         (T.REMOVE, string(b"up/outside/secret.txt")),
         (T.MKDIR, string(b"dangling"), NO_ATTRS),
         (T.OPEN, string(b"dangling"), u32(0x1A), NO_ATTRS),
         (T.REALPATH, string(b"d/deep")),
         (T.STAT, string(b"d/abs")),
         (T.SETSTAT, string(b"abs_outside/secret.txt"), u32(4) + u32(0o777))],
    ]
    for number, session in enumerate(sessions):
        packets = (request(ptype, rid, *fields) for rid, (ptype, *fields) in enumerate(session, 1))
        yield bytes([number % len(_RAW_CHUNKS)]) + INIT + b"".join(packets)


if __name__ == "__main__":
    main(test_one_input, seeds)
