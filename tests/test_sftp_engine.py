# SPDX-License-Identifier: MIT
"""The SFTP v3 engine: raw packets, then the paramiko and OpenSSH clients against it."""

from __future__ import annotations

import errno
import importlib.util
import os
import random
import resource
import select
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_SFTP_PATH = Path(__file__).resolve().parent.parent / "pylibssh_server" / "demo" / "sftp.py"


def _load_engine() -> ModuleType:
    # Loaded by path so these tests do not depend on the rest of the package being built.
    spec = importlib.util.spec_from_file_location("_sftp_engine_under_test", _SFTP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    return module


engine = _load_engine()
SftpServer = engine.SftpServer
SftpProtocolError = engine.SftpProtocolError
RootedFileSystem = engine.RootedFileSystem
Status = engine.StatusCode
T = engine.PacketType

SECRET = b"outside the root\n"


# -- raw packet helpers ----------------------------------------------------------------------


def pkt(ptype: int, payload: bytes = b"", rid: int | None = None) -> bytes:
    """Frame one client packet."""
    body = bytes([ptype]) + (b"" if rid is None else struct.pack(">I", rid)) + payload
    return struct.pack(">I", len(body)) + body


def s(value: bytes | str) -> bytes:
    """Encode an SFTP string."""
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


NO_ATTRS = u32(0)
INIT = pkt(T.INIT, u32(3))


def split_replies(stream: bytes) -> list[tuple[int, bytes]]:
    """Split server output into ``(type, body after the type byte)``, checking the framing."""
    replies = []
    pos = 0
    while pos < len(stream):
        (length,) = struct.unpack_from(">I", stream, pos)
        replies.append((stream[pos + 4], stream[pos + 5 : pos + 4 + length]))
        pos += 4 + length
    assert pos == len(stream)
    return replies


def read_string(body: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", body, pos)
    return body[pos + 4 : pos + 4 + length], pos + 4 + length


def parse_status(body: bytes) -> tuple[int, int, str, str]:
    """Return ``(request id, code, message, language)`` of a STATUS body."""
    rid, code = struct.unpack_from(">II", body)
    message, pos = read_string(body, 8)
    language, _ = read_string(body, pos)
    return rid, code, message.decode(), language.decode()


class RawClient:
    """Sends one request at a time to an SftpServer and parses the single reply."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.next_id = 1
        assert split_replies(server.feed(INIT))[0][0] == T.VERSION

    def request(self, ptype: int, payload: bytes) -> tuple[int, bytes]:
        rid = self.next_id
        self.next_id += 1
        replies = split_replies(self.server.feed(pkt(ptype, payload, rid)))
        assert len(replies) == 1
        rtype, body = replies[0]
        assert struct.unpack_from(">I", body)[0] == rid
        return rtype, body

    def status(self, ptype: int, payload: bytes) -> tuple[int, str]:
        rtype, body = self.request(ptype, payload)
        assert rtype == T.STATUS
        _, code, message, language = parse_status(body)
        assert language == "en"
        return code, message

    def handle(self, ptype: int, payload: bytes) -> bytes:
        rtype, body = self.request(ptype, payload)
        assert rtype == T.HANDLE, parse_status(body)
        return read_string(body, 4)[0]

    def name(self, ptype: int, payload: bytes) -> bytes:
        rtype, body = self.request(ptype, payload)
        assert rtype == T.NAME, parse_status(body)
        assert struct.unpack_from(">I", body, 4)[0] == 1
        return read_string(body, 8)[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The served root, with a sibling ``outside/secret.txt`` that must stay unreachable."""
    served = tmp_path / "root"
    served.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    return served


@pytest.fixture
def server(root: Path) -> Iterator[Any]:
    with SftpServer(RootedFileSystem(root)) as sftp_server:
        yield sftp_server


@pytest.fixture
def raw(server: Any) -> RawClient:
    return RawClient(server)


# -- framing -----------------------------------------------------------------------------------


def test_init_answers_version_3_with_extensions(server: Any) -> None:
    """INIT gets VERSION 3 listing the OpenSSH extensions the engine implements."""
    replies = split_replies(server.feed(INIT))
    assert len(replies) == 1
    rtype, body = replies[0]
    assert rtype == T.VERSION
    assert struct.unpack_from(">I", body)[0] == 3
    extensions = {}
    pos = 4
    while pos < len(body):
        name, pos = read_string(body, pos)
        extensions[name], pos = read_string(body, pos)
    assert extensions == {
        b"posix-rename@openssh.com": b"1",
        b"statvfs@openssh.com": b"2",
        b"fstatvfs@openssh.com": b"2",
        b"hardlink@openssh.com": b"1",
        b"fsync@openssh.com": b"1",
        b"limits@openssh.com": b"1",
    }


def test_byte_by_byte_feed_gives_the_same_replies(root: Path) -> None:
    """Packets split at every byte are buffered and answered exactly as if sent whole."""
    stream = INIT + pkt(T.REALPATH, s("."), rid=1) + pkt(T.STAT, s("/"), rid=2)
    with SftpServer(RootedFileSystem(root)) as whole:
        expected = whole.feed(stream)
    with SftpServer(RootedFileSystem(root)) as split:
        pieces = [split.feed(stream[i : i + 1]) for i in range(len(stream))]
    assert b"".join(pieces) == expected
    assert [rtype for rtype, _ in split_replies(expected)] == [T.VERSION, T.NAME, T.ATTRS]
    assert sum(1 for piece in pieces if piece) == 3


def test_several_packets_in_one_chunk_answered_in_order(server: Any, root: Path) -> None:
    """One chunk holding several requests yields every reply, in request order."""
    (root / "f").write_bytes(b"x")
    chunk = (
        INIT
        + pkt(T.REALPATH, s("a/../b"), rid=10)
        + pkt(T.STAT, s("f"), rid=11)
        + pkt(T.LSTAT, s("missing"), rid=12)
    )
    replies = split_replies(server.feed(chunk))
    assert [rtype for rtype, _ in replies] == [T.VERSION, T.NAME, T.ATTRS, T.STATUS]
    assert [struct.unpack_from(">I", body)[0] for _, body in replies[1:]] == [10, 11, 12]
    assert read_string(replies[1][1], 8)[0] == b"/b"


def test_oversized_length_raises_and_poisons_the_session(server: Any) -> None:
    """A length above max_packet is a protocol error as soon as the length field arrives."""
    server.feed(INIT)
    with pytest.raises(SftpProtocolError, match="exceeds"):
        server.feed(u32(256 * 1024 + 1025))
    with pytest.raises(SftpProtocolError):
        server.feed(pkt(T.REALPATH, s("."), rid=1))


def test_unknown_packet_type_gets_op_unsupported(raw: RawClient) -> None:
    """An unknown packet type with a request id is answered OP_UNSUPPORTED with that id."""
    replies = split_replies(raw.server.feed(pkt(99, b"junk", rid=4242)))
    assert len(replies) == 1
    assert replies[0][0] == T.STATUS
    rid, code, message, language = parse_status(replies[0][1])
    assert (rid, code, language) == (4242, Status.OP_UNSUPPORTED, "en")
    assert message == "unsupported packet type 99"


def test_unknown_extension_gets_op_unsupported(raw: RawClient) -> None:
    """An EXTENDED request the engine does not know is answered OP_UNSUPPORTED."""
    code, message = raw.status(T.EXTENDED, s("nope@example.com") + b"data")
    assert (code, message) == (Status.OP_UNSUPPORTED, "unsupported extension nope@example.com")


@pytest.mark.parametrize(
    ("stream", "pattern"),
    [
        (pkt(T.REALPATH, s("."), rid=1), "expected SSH_FXP_INIT"),
        (INIT + INIT, "duplicate SSH_FXP_INIT"),
        (pkt(T.INIT, b"\x00"), "truncated"),
        (INIT + u32(0), "empty"),
        (INIT + pkt(T.STAT, b"\x00\x01"), "truncated"),
        (INIT + pkt(T.OPEN, u32(100) + b"short", rid=1), "truncated"),
        (INIT + pkt(T.SETSTAT, s("f") + u32(0x0F) + u64(1), rid=1), "truncated"),
    ],
    ids=["no-init", "second-init", "short-init", "empty", "no-id", "string", "attrs"],
)
def test_malformed_stream_raises_protocol_error(server: Any, stream: bytes, pattern: str) -> None:
    """Missing or repeated INIT and fields running past the packet end are protocol errors."""
    with pytest.raises(SftpProtocolError, match=pattern):
        server.feed(stream)


def test_status_replies_map_errno_with_message_and_language(raw: RawClient, root: Path) -> None:
    """OSErrors become NO_SUCH_FILE / PERMISSION_DENIED / FAILURE with a text and "en"."""
    (root / "d").mkdir()
    (root / "escape").symlink_to("../outside")
    assert raw.status(T.STAT, s("missing")) == (Status.NO_SUCH_FILE, "No such file or directory")
    assert raw.status(T.MKDIR, s("d") + NO_ATTRS) == (Status.FAILURE, "File exists")
    assert raw.status(T.OPENDIR, s("escape")) == (
        Status.PERMISSION_DENIED,
        "symbolic link leads outside the root",
    )
    assert raw.status(T.READ, s("bogus") + u64(0) + u32(10)) == (
        Status.FAILURE,
        "invalid file handle",
    )
    assert raw.status(T.STAT, s("a\0b")) == (Status.BAD_MESSAGE, "NUL byte in path")


def test_read_is_capped_and_ends_with_eof(raw: RawClient, root: Path) -> None:
    """READ serves at most MAX_READ_LENGTH bytes whatever is asked, then EOF at the end."""
    content = os.urandom(1 << 20)
    (root / "big").write_bytes(content)
    handle = raw.handle(T.OPEN, s("big") + u32(1) + NO_ATTRS)
    rtype, body = raw.request(T.READ, s(handle) + u64(0) + u32(0xFFFFFFFF))
    assert rtype == T.DATA
    data, _ = read_string(body, 4)
    assert len(data) == engine.MAX_READ_LENGTH
    assert data == content[: engine.MAX_READ_LENGTH]
    assert raw.status(T.READ, s(handle) + u64(len(content)) + u32(10)) == (
        Status.EOF,
        "End of file",
    )
    assert raw.status(T.CLOSE, s(handle)) == (Status.OK, "Success")


def test_open_flags_and_create_mode(raw: RawClient, root: Path) -> None:
    """CREAT honours the requested permissions; EXCL, APPEND and TRUNC act as in open(2)."""
    create_excl = u32(0x02 | 0x08 | 0x20) + u32(0x04) + u32(0o600)
    handle = raw.handle(T.OPEN, s("new") + create_excl)
    raw.status(T.WRITE, s(handle) + u64(0) + s(b"hello"))
    raw.status(T.CLOSE, s(handle))
    assert stat.S_IMODE((root / "new").stat().st_mode) == 0o600
    assert raw.status(T.OPEN, s("new") + create_excl) == (Status.FAILURE, "File exists")

    handle = raw.handle(T.OPEN, s("new") + u32(0x02 | 0x04) + NO_ATTRS)
    raw.status(T.WRITE, s(handle) + u64(0) + s(b" world"))
    raw.status(T.CLOSE, s(handle))
    assert (root / "new").read_bytes() == b"hello world"

    handle = raw.handle(T.OPEN, s("new") + u32(0x02 | 0x10) + NO_ATTRS)
    raw.status(T.CLOSE, s(handle))
    assert (root / "new").read_bytes() == b""


def test_symlink_takes_target_first_like_openssh(raw: RawClient, root: Path) -> None:
    """SYMLINK's first string is the link text and the second the link path (OpenSSH order)."""
    assert raw.status(T.SYMLINK, s("some/target") + s("link")) == (Status.OK, "Success")
    assert os.readlink(root / "link") == "some/target"
    assert raw.name(T.READLINK, s("/link")) == b"some/target"


def test_readdir_batches_and_longname(raw: RawClient, root: Path) -> None:
    """READDIR returns at most 100 entries per reply with ls -l long names, then EOF."""
    for i in range(250):
        (root / f"f{i:03}").write_bytes(b"x" * i)
    handle = raw.handle(T.OPENDIR, s("/"))
    counts, names, longnames = [], set(), {}
    while True:
        rtype, body = raw.request(T.READDIR, s(handle))
        if rtype == T.STATUS:
            assert parse_status(body)[1:3] == (Status.EOF, "End of file")
            break
        (count,) = struct.unpack_from(">I", body, 4)
        counts.append(count)
        pos = 8
        for _ in range(count):
            name, pos = read_string(body, pos)
            longname, pos = read_string(body, pos)
            (flags,) = struct.unpack_from(">I", body, pos)
            assert flags == 0x0F
            pos += 4 + 8 + 4 + 4 + 4 + 4 + 4
            names.add(name.decode())
            longnames[name.decode()] = longname.decode()
    assert counts == [100, 100, 50]
    assert names == {f"f{i:03}" for i in range(250)}
    fields = longnames["f007"].split()
    mode = stat.filemode((root / "f007").stat().st_mode)
    assert (fields[0], fields[1], fields[4], fields[-1]) == (mode, "1", "7", "f007")
    raw.status(T.CLOSE, s(handle))
    assert raw.server.open_handles == 0


def test_extensions_statvfs_hardlink_fsync_limits(raw: RawClient, root: Path) -> None:
    """The advertised OpenSSH extensions answer in their documented formats."""
    (root / "f").write_bytes(b"data")
    rtype, body = raw.request(T.EXTENDED, s("statvfs@openssh.com") + s("/"))
    assert (rtype, len(body)) == (T.EXTENDED_REPLY, 4 + 11 * 8)
    expected = os.statvfs(root)
    assert struct.unpack_from(">QQ", body, 4) == (expected.f_bsize, expected.f_frsize)

    assert raw.status(T.EXTENDED, s("hardlink@openssh.com") + s("f") + s("g")) == (
        Status.OK,
        "Success",
    )
    assert (root / "g").stat().st_ino == (root / "f").stat().st_ino

    handle = raw.handle(T.OPEN, s("f") + u32(0x03) + NO_ATTRS)
    assert raw.status(T.EXTENDED, s("fsync@openssh.com") + s(handle)) == (Status.OK, "Success")
    rtype, body = raw.request(T.EXTENDED, s("fstatvfs@openssh.com") + s(handle))
    assert (rtype, len(body)) == (T.EXTENDED_REPLY, 4 + 11 * 8)
    raw.status(T.CLOSE, s(handle))

    rtype, body = raw.request(T.EXTENDED, s("limits@openssh.com"))
    assert rtype == T.EXTENDED_REPLY
    assert struct.unpack_from(">QQQQ", body, 4) == (
        256 * 1024 + 1024,
        engine.MAX_READ_LENGTH,
        256 * 1024,
        1024,
    )


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200, reason="needs 1200 descriptors"
)
def test_handle_limit_and_close_releases_everything(root: Path) -> None:
    """Past 1024 open handles OPEN fails; close() closes them all, is idempotent, ends feed."""
    (root / "f").write_bytes(b"x")
    before = _open_fds()
    with SftpServer(RootedFileSystem(root)) as sftp_server:
        raw = RawClient(sftp_server)
        for _ in range(engine.MAX_HANDLES - 1):
            raw.handle(T.OPEN, s("f") + u32(1) + NO_ATTRS)
        raw.handle(T.OPENDIR, s("/"))
        assert sftp_server.open_handles == 1024
        assert raw.status(T.OPEN, s("f") + u32(1) + NO_ATTRS) == (
            Status.FAILURE,
            "too many open handles (limit 1024)",
        )
        assert raw.status(T.OPENDIR, s("/"))[0] == Status.FAILURE
        # The directory handle holds two descriptors: scandir() works on a dup of ours.
        assert _open_fds() - before == 1025
        sftp_server.close()
        sftp_server.close()
        assert (sftp_server.open_handles, _open_fds()) == (0, before)
        with pytest.raises(ValueError, match="closed"):
            sftp_server.feed(pkt(T.REALPATH, s("."), rid=1))


def test_random_packets_never_raise_anything_but_protocol_error(root: Path) -> None:
    """Well-framed random requests get replies; only SftpProtocolError may escape feed()."""
    rng = random.Random(1234)
    (root / "f").write_bytes(b"content")
    protocol_errors = 0
    for _ in range(300):
        with SftpServer(RootedFileSystem(root)) as sftp_server:
            sftp_server.feed(INIT)
            handle = split_replies(sftp_server.feed(pkt(T.OPEN, s("f") + u32(3) + NO_ATTRS, 1)))
            real_handle = read_string(handle[0][1], 4)[0]
            for rid in range(2, 40):
                ptype = rng.choice([*range(3, 21), 200, 0, 255])
                parts = [
                    rng.choice([s(real_handle), s("f"), s("../.."), s(rng.randbytes(5))]),
                    u64(rng.getrandbits(64)),
                    u32(rng.getrandbits(32)),
                    rng.randbytes(rng.randrange(8)),
                ]
                rng.shuffle(parts)
                try:
                    out = sftp_server.feed(pkt(ptype, b"".join(parts), rid))
                except SftpProtocolError:
                    protocol_errors += 1
                    break
                assert isinstance(out, bytes)
        root.chmod(0o755)  # random SETSTATs may have hit the root itself
    assert protocol_errors > 0
    assert sorted(os.listdir(root.parent / "outside")) == ["secret.txt"]
    assert (root.parent / "outside" / "secret.txt").read_bytes() == SECRET


def test_unconfined_paths_are_real_and_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """root=None serves the real file system, relative paths from the cwd at construction."""
    (tmp_path / "here.txt").write_bytes(b"12345")
    monkeypatch.chdir(tmp_path)
    with SftpServer(RootedFileSystem(None)) as sftp_server:
        raw = RawClient(sftp_server)
        real = os.path.realpath(tmp_path)
        assert raw.name(T.REALPATH, s("here.txt")) == os.fsencode(os.path.join(real, "here.txt"))
        assert raw.name(T.REALPATH, s(".")) == os.fsencode(real)
        rtype, body = raw.request(T.STAT, s(str(tmp_path / "here.txt")))
        assert (rtype, struct.unpack_from(">IQ", body, 4)) == (T.ATTRS, (0x0F, 5))


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    """A missing root is refused at construction, not at the first request."""
    with pytest.raises(NotADirectoryError):
        RootedFileSystem(tmp_path / "missing")


@pytest.mark.slow
def test_64_mib_round_trip_is_fast(raw: RawClient, root: Path) -> None:
    """64 MiB written and read back in 32 KiB requests, fed in 64 KiB chunks, stays fast."""
    content = os.urandom(64 << 20)
    chunk = 32 * 1024
    handle = raw.handle(T.OPEN, s("big") + u32(0x02 | 0x08) + NO_ATTRS)
    started = time.perf_counter()
    stream = b"".join(
        pkt(T.WRITE, s(handle) + u64(off) + s(content[off : off + chunk]), rid=100 + i)
        for i, off in enumerate(range(0, len(content), chunk))
    )
    replies = []
    for pos in range(0, len(stream), 64 * 1024):
        replies += split_replies(raw.server.feed(stream[pos : pos + 64 * 1024]))
    assert {parse_status(body)[1] for _, body in replies} == {Status.OK}
    raw.status(T.CLOSE, s(handle))
    assert (root / "big").read_bytes() == content

    handle = raw.handle(T.OPEN, s("big") + u32(0x01) + NO_ATTRS)
    requests = b"".join(
        pkt(T.READ, s(handle) + u64(off) + u32(chunk), rid=i)
        for i, off in enumerate(range(0, len(content), chunk))
    )
    data = [read_string(body, 4)[0] for _, body in split_replies(raw.server.feed(requests))]
    raw.status(T.CLOSE, s(handle))
    elapsed = time.perf_counter() - started
    assert b"".join(data) == content
    assert elapsed < 20, f"64 MiB round trip took {elapsed:.1f} s"


# -- paramiko ----------------------------------------------------------------------------------


class _SocketChannel:
    """The Channel methods paramiko's SFTPClient and SFTPFile use, over a plain socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: bytes) -> int:
        return self._sock.send(data)

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def recv_ready(self) -> bool:
        return bool(select.select([self._sock], [], [], 0)[0])

    def close(self) -> None:
        self._sock.close()

    def get_name(self) -> str:
        return "sftp-engine-test"


class _Pump(threading.Thread):
    """Feeds what arrives on a socket to an SftpServer and sends back its replies."""

    def __init__(self, sock: socket.socket, sftp_server: Any) -> None:
        super().__init__(daemon=True)
        self._sock = sock
        self._server = sftp_server
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while data := self._sock.recv(1 << 16):
                self._sock.sendall(self._server.feed(data))
        except BaseException as exc:
            self.error = exc
        finally:
            self._server.close()
            self._sock.close()


@pytest.fixture
def client(root: Path) -> Iterator[Any]:
    """A paramiko SFTPClient talking to an SftpServer serving ``root``."""
    paramiko = pytest.importorskip("paramiko")
    ours, theirs = socket.socketpair()
    pump = _Pump(theirs, SftpServer(RootedFileSystem(root)))
    pump.start()
    try:
        sftp_client = paramiko.SFTPClient(_SocketChannel(ours))
    except BaseException:
        ours.close()
        raise
    try:
        yield sftp_client
    finally:
        sftp_client.close()
        pump.join(10)
    assert (pump.is_alive(), pump.error) == (False, None)


def _outside_untouched(root: Path, *others: str) -> None:
    outside = root.parent / "outside"
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == SECRET
    assert sorted(os.listdir(root.parent)) == sorted(["outside", "root", *others])


def test_paramiko_put_get_byte_exact(client: Any, root: Path, tmp_path: Path) -> None:
    """A few MB go up and come back identical, and land inside the root."""
    content = os.urandom(3 * 1024 * 1024 + 12345)
    local = tmp_path / "local.bin"
    local.write_bytes(content)
    attrs = client.put(str(local), "/up.bin")
    assert attrs.st_size == len(content)
    assert (root / "up.bin").read_bytes() == content
    local.unlink()
    client.get("up.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == content
    (tmp_path / "down.bin").unlink()
    _outside_untouched(root)


def test_paramiko_listdir_stat_lstat_fstat(client: Any, root: Path) -> None:
    """listdir, listdir_attr, stat, lstat and an open file's stat report the disk's values."""
    (root / "a").write_bytes(b"12345")
    (root / "sub").mkdir()
    (root / "sub" / "inner").write_bytes(b"")
    (root / "ln").symlink_to("a")
    assert sorted(client.listdir("/")) == ["a", "ln", "sub"]
    assert client.listdir("sub") == ["inner"]
    by_name = {a.filename: a for a in client.listdir_attr(".")}
    assert by_name["a"].longname.split()[-1] == "a"
    assert by_name["sub"].longname.startswith("d")
    assert by_name["ln"].longname.startswith("l")
    st = client.stat("/a")
    disk = (root / "a").stat()
    assert (st.st_size, st.st_mode, st.st_mtime) == (5, disk.st_mode, int(disk.st_mtime))
    assert stat.S_ISLNK(client.lstat("ln").st_mode) is True
    assert client.stat("ln").st_size == 5
    with client.open("a", "r") as remote:
        assert remote.stat().st_size == 5


def test_paramiko_mkdir_rmdir_remove(client: Any, root: Path) -> None:
    """mkdir creates with the requested mode, rmdir and remove delete, missing paths fail."""
    client.mkdir("d", 0o750)
    assert stat.S_IMODE((root / "d").stat().st_mode) == 0o750
    with pytest.raises(OSError, match="File exists"):
        client.mkdir("d")
    client.rmdir("/d")
    assert (root / "d").exists() is False
    (root / "f").write_bytes(b"")
    client.remove("f")
    assert (root / "f").exists() is False
    with pytest.raises(FileNotFoundError):
        client.remove("f")


def test_paramiko_rename_and_posix_rename(client: Any, root: Path) -> None:
    """RENAME refuses an existing target; posix-rename@openssh.com replaces it."""
    (root / "a").write_bytes(b"A")
    (root / "b").write_bytes(b"B")
    with pytest.raises(OSError, match="File exists"):
        client.rename("a", "b")
    assert ((root / "a").read_bytes(), (root / "b").read_bytes()) == (b"A", b"B")
    client.rename("a", "c")
    assert sorted(os.listdir(root)) == ["b", "c"]
    client.posix_rename("c", "b")
    assert (sorted(os.listdir(root)), (root / "b").read_bytes()) == (["b"], b"A")


def test_paramiko_symlink_readlink(client: Any, root: Path) -> None:
    """symlink stores the text given; readlink returns it; the link resolves inside the root."""
    (root / "target.txt").write_bytes(b"T")
    client.symlink("target.txt", "/link")
    assert os.readlink(root / "link") == "target.txt"
    assert client.readlink("link") == "target.txt"
    with client.open("link") as remote:
        assert remote.read() == b"T"


def test_paramiko_truncate_chmod_utime(client: Any, root: Path) -> None:
    """SETSTAT and FSETSTAT apply size, permissions and times."""
    (root / "f").write_bytes(b"0123456789abcdef")
    client.truncate("f", 10)
    assert (root / "f").read_bytes() == b"0123456789"
    with client.open("f", "r+") as remote:
        remote.truncate(4)
        remote.chmod(0o604)
    assert (root / "f").read_bytes() == b"0123"
    assert stat.S_IMODE((root / "f").stat().st_mode) == 0o604
    client.chmod("f", 0o640)
    assert stat.S_IMODE((root / "f").stat().st_mode) == 0o640
    client.utime("f", (1_000_000, 2_000_000))
    disk = (root / "f").stat()
    assert (int(disk.st_atime), int(disk.st_mtime)) == (1_000_000, 2_000_000)


def test_paramiko_realpath(client: Any, root: Path) -> None:
    """REALPATH shows the root as / and resolves ., .. and symlinks, never above /."""
    (root / "real").mkdir()
    (root / "alias").symlink_to("real")
    (root / "abs").symlink_to("/real")
    assert client.normalize(".") == "/"
    assert client.normalize("../../..") == "/"
    assert client.normalize("/x/./y/..") == "/x"
    assert client.normalize("alias") == "/real"
    assert client.normalize("alias/new") == "/real/new"
    assert client.normalize("abs/../alias") == "/real"
    with pytest.raises(FileNotFoundError):
        client.normalize("missing/child")


def test_paramiko_dotdot_and_absolute_paths_stay_inside(client: Any, root: Path) -> None:
    """.. stops at the root and absolute paths are read under it: the outside is unreachable."""
    secret = root.parent / "outside" / "secret.txt"
    with pytest.raises(FileNotFoundError):
        client.stat("../outside/secret.txt")
    with pytest.raises(FileNotFoundError):
        client.open(str(secret))
    with pytest.raises(FileNotFoundError):
        client.open(str(secret), "w")
    with client.open("../../escape.txt", "w") as remote:
        remote.write(b"inside")
    assert (root / "escape.txt").read_bytes() == b"inside"
    client.rename("escape.txt", "../../../moved.txt")
    assert sorted(os.listdir(root)) == ["moved.txt"]
    _outside_untouched(root)


def test_paramiko_symlinks_cannot_escape(client: Any, root: Path) -> None:
    """Links leading above the root are refused for every operation that would follow them."""
    (root / "rel").symlink_to("../outside/secret.txt")
    (root / "dir").symlink_to("../outside")
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("../..")
    client.symlink("../outside/secret.txt", "made")
    for path in ("rel", "made", "dir/secret.txt", "sub/up/outside/secret.txt"):
        with pytest.raises(PermissionError):
            client.open(path).read()
        with pytest.raises(PermissionError):
            client.open(path, "w")
        with pytest.raises(PermissionError):
            client.stat(path)
        with pytest.raises(PermissionError):
            client.chmod(path, 0o777)
        with pytest.raises(PermissionError):
            client.truncate(path, 0)
    for path in ("dir", "sub/up"):
        with pytest.raises(PermissionError):
            client.listdir(path)
    with pytest.raises(PermissionError):
        client.remove("dir/secret.txt")
    with pytest.raises(PermissionError):
        client.mkdir("dir/new")
    with pytest.raises(PermissionError):
        client.rename("sub", "dir/sub")
    with pytest.raises(PermissionError):
        client.symlink("x", "dir/new-link")
    assert stat.S_ISLNK(client.lstat("rel").st_mode) is True
    assert client.readlink("made") == "../outside/secret.txt"
    secret = root.parent / "outside" / "secret.txt"
    assert stat.S_IMODE(secret.stat().st_mode) != 0o777
    _outside_untouched(root)


def test_paramiko_absolute_symlink_targets_count_from_root(client: Any, root: Path) -> None:
    """An absolute link target is read under the root, and link loops fail cleanly."""
    (root / "inside.txt").write_bytes(b"in")
    (root / "to-inside").symlink_to("/inside.txt")
    (root / "to-secret").symlink_to(root.parent / "outside" / "secret.txt")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    with client.open("to-inside") as remote:
        assert remote.read() == b"in"
    with pytest.raises(FileNotFoundError):
        client.open("to-secret")
    with pytest.raises(FileNotFoundError) as info:
        client.open("loop1")
    assert info.value.errno == errno.ENOENT
    _outside_untouched(root)


# -- OpenSSH ---------------------------------------------------------------------------------

_SERVER_SCRIPT = """\
#!{python}
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("_sftp_engine", {module!r})
engine = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = engine
spec.loader.exec_module(engine)
with engine.SftpServer(engine.RootedFileSystem({root!r})) as server:
    while data := os.read(0, 65536):
        out = server.feed(data)
        while out:
            out = out[os.write(1, out):]
"""


@pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH sftp client not installed")
def test_openssh_sftp_client(tmp_path: Path, root: Path) -> None:
    """OpenSSH's sftp (-D: the engine on its stdin/stdout) transfers, renames and links."""
    script = tmp_path / "sftp-server"
    script.write_text(
        _SERVER_SCRIPT.format(python=sys.executable, module=str(_SFTP_PATH), root=str(root))
    )
    script.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    content = os.urandom(1024 * 1024 + 7)
    (work / "local.bin").write_bytes(content)
    batch = work / "batch"
    batch.write_text(
        "put local.bin up.bin\n"
        "get up.bin down.bin\n"
        "mkdir d\n"
        "rename up.bin d/moved.bin\n"
        "ln -s moved.bin d/link\n"
        "ln d/moved.bin hard.bin\n"
        "chmod 600 hard.bin\n"
        "ls -l d\n"
        "df /\n"
        "rm hard.bin\n"
        "-get ../outside/secret.txt stolen.txt\n"
        "-get /../../outside/secret.txt stolen.txt\n"
        "pwd\n"
    )
    result = subprocess.run(
        ["sftp", "-b", str(batch), "-D", str(script)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (work / "down.bin").read_bytes() == content
    assert (root / "d" / "moved.bin").read_bytes() == content
    assert os.readlink(root / "d" / "link") == "moved.bin"
    assert sorted(os.listdir(root)) == ["d"]
    assert (work / "stolen.txt").exists() is False
    assert "Remote working directory: /" in result.stdout
    listing = [line.split() for line in result.stdout.splitlines() if line.startswith("l")]
    assert [(fields[0], fields[-1]) for fields in listing] == [("lrwxrwxrwx", "link")]
    _outside_untouched(root, "sftp-server", "work")
