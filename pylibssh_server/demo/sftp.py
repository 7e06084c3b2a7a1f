# SPDX-License-Identifier: MIT
"""A transport-agnostic SFTP version 3 server (draft-ietf-secsh-filexfer-02).

:class:`SftpServer` turns the bytes a client sends on an SSH channel of subsystem ``sftp`` into
the bytes to send back; it knows nothing of SSH. File-system access goes through the small
:class:`FileSystem` protocol, whose one implementation, :class:`RootedFileSystem`, serves a
directory tree as if it were the whole file system.

Choices that matter to clients:

* ``SSH_FXP_SYMLINK`` takes its two strings in OpenSSH's order (link *target* first, then the
  path of the link to create), the reverse of the draft. OpenSSH's sftp-server and client,
  paramiko and asyncssh all use that order, so following it is what makes ``ln -s`` work.
* ``SSH_FXP_RENAME`` refuses to replace an existing path, as version 3 requires;
  ``posix-rename@openssh.com`` replaces it.
* Reads are served at most :data:`MAX_READ_LENGTH` bytes at a time, whatever the client asks.
* Directory listings omit ``.`` and ``..``.
* The extensions ``posix-rename``, ``statvfs``, ``fstatvfs``, ``hardlink``, ``fsync`` and
  ``limits`` (all ``@openssh.com``) are advertised and implemented.
"""

from __future__ import annotations

import enum
import errno
import functools
import grp
import logging
import os
import pwd
import stat
import struct
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, Union

__all__ = [
    "MAX_READ_LENGTH",
    "DirectoryLister",
    "FileAttributes",
    "FileSystem",
    "OpenFile",
    "OpenFlags",
    "PacketType",
    "RootedFileSystem",
    "SftpProtocolError",
    "SftpServer",
    "StatusCode",
]

logger: logging.Logger = logging.getLogger(__name__)

#: The largest DATA payload served per READ. OpenSSH's client rejects messages above 256 KiB,
#: so this leaves room for the DATA header, exactly like OpenSSH's sftp-server.
MAX_READ_LENGTH = 256 * 1024 - 1024
#: Entries per READDIR reply.
READDIR_BATCH = 100
#: Open file and directory handles per session.
MAX_HANDLES = 1024
#: Symbolic links followed while resolving one path (Linux's MAXSYMLINKS).
MAX_SYMLINKS = 40

SFTP_VERSION = 3

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">IBI")
_DATA_HEADER = struct.Struct(">IBII")
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_U32_MAX = 0xFFFF_FFFF

Buffer = Union[bytes, bytearray, memoryview]


class SftpProtocolError(Exception):
    """The client broke the SFTP framing; the caller should close the channel."""


class PacketType(enum.IntEnum):
    """SFTP packet types (``SSH_FXP_*``)."""

    INIT = 1
    VERSION = 2
    OPEN = 3
    CLOSE = 4
    READ = 5
    WRITE = 6
    LSTAT = 7
    FSTAT = 8
    SETSTAT = 9
    FSETSTAT = 10
    OPENDIR = 11
    READDIR = 12
    REMOVE = 13
    MKDIR = 14
    RMDIR = 15
    REALPATH = 16
    STAT = 17
    RENAME = 18
    READLINK = 19
    SYMLINK = 20
    STATUS = 101
    HANDLE = 102
    DATA = 103
    NAME = 104
    ATTRS = 105
    EXTENDED = 200
    EXTENDED_REPLY = 201


class StatusCode(enum.IntEnum):
    """SFTP status codes (``SSH_FX_*``)."""

    OK = 0
    EOF = 1
    NO_SUCH_FILE = 2
    PERMISSION_DENIED = 3
    FAILURE = 4
    BAD_MESSAGE = 5
    NO_CONNECTION = 6
    CONNECTION_LOST = 7
    OP_UNSUPPORTED = 8


class OpenFlags(enum.IntFlag):
    """``SSH_FXF_*`` flags of an OPEN request."""

    READ = 0x01
    WRITE = 0x02
    APPEND = 0x04
    CREAT = 0x08
    TRUNC = 0x10
    EXCL = 0x20


class _AttrFlags(enum.IntFlag):
    SIZE = 0x01
    UIDGID = 0x02
    PERMISSIONS = 0x04
    ACMODTIME = 0x08
    EXTENDED = 0x8000_0000


_STATUS_TEXT = {
    StatusCode.OK: "Success",
    StatusCode.EOF: "End of file",
    StatusCode.NO_SUCH_FILE: "No such file",
    StatusCode.PERMISSION_DENIED: "Permission denied",
    StatusCode.FAILURE: "Failure",
    StatusCode.BAD_MESSAGE: "Bad message",
    StatusCode.OP_UNSUPPORTED: "Operation unsupported",
}

_ERRNO_STATUS = {
    errno.ENOENT: StatusCode.NO_SUCH_FILE,
    errno.ENOTDIR: StatusCode.NO_SUCH_FILE,
    errno.ELOOP: StatusCode.NO_SUCH_FILE,
    errno.EACCES: StatusCode.PERMISSION_DENIED,
    errno.EPERM: StatusCode.PERMISSION_DENIED,
    errno.EINVAL: StatusCode.BAD_MESSAGE,
    errno.ENAMETOOLONG: StatusCode.BAD_MESSAGE,
    errno.ENOSYS: StatusCode.OP_UNSUPPORTED,
    errno.EOPNOTSUPP: StatusCode.OP_UNSUPPORTED,
    errno.ENOTSUP: StatusCode.OP_UNSUPPORTED,
}

_EXTENSIONS = (
    (b"posix-rename@openssh.com", b"1"),
    (b"statvfs@openssh.com", b"2"),
    (b"fstatvfs@openssh.com", b"2"),
    (b"hardlink@openssh.com", b"1"),
    (b"fsync@openssh.com", b"1"),
    (b"limits@openssh.com", b"1"),
)


@dataclass
class FileAttributes:
    """The attributes SFTP v3 carries; ``None`` means absent.

    ``uid``/``gid`` and ``atime``/``mtime`` travel in pairs: a pair is sent only when both
    are set. ``nlink`` is not part of the protocol; it only feeds ``ls -l`` style long names.
    """

    size: int | None = None
    uid: int | None = None
    gid: int | None = None
    permissions: int | None = None
    atime: int | None = None
    mtime: int | None = None
    nlink: int = 1

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileAttributes:
        """Build attributes from an :func:`os.stat` result.

        Args:
            st: The stat result.

        Returns:
            The attributes, every field set.
        """
        return cls(
            size=st.st_size,
            uid=st.st_uid,
            gid=st.st_gid,
            permissions=st.st_mode,
            atime=int(st.st_atime),
            mtime=int(st.st_mtime),
            nlink=st.st_nlink,
        )


class OpenFile(Protocol):
    """An open file behind a handle. Methods raise :class:`OSError` on failure."""

    def read(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes at ``offset``; ``b""`` at end of file."""

    def write(self, offset: int, data: Buffer) -> None:
        """Write all of ``data`` at ``offset``."""

    def stat(self) -> FileAttributes:
        """Return the file's attributes."""

    def setstat(self, attrs: FileAttributes) -> None:
        """Apply the attributes that are set: size, permissions, times, owner."""

    def fsync(self) -> None:
        """Flush the file to stable storage."""

    def statvfs(self) -> os.statvfs_result:
        """Return statistics of the file system holding the file."""

    def close(self) -> None:
        """Release the file; idempotent."""


class DirectoryLister(Protocol):
    """An open directory behind a handle. Methods raise :class:`OSError` on failure."""

    def read(self, count: int) -> list[tuple[bytes, FileAttributes]]:
        """Return up to ``count`` further ``(name, lstat attributes)``; ``[]`` at the end."""

    def close(self) -> None:
        """Release the directory; idempotent."""


class FileSystem(Protocol):
    """What :class:`SftpServer` needs from a file system.

    Paths are the client's bytes, unchecked and not normalised: absolute or relative, possibly
    with ``.``, ``..`` or NUL bytes. Interpreting them (and refusing them) is the file system's
    job. Failures are :class:`OSError` with an ``errno``, which the server maps to a status.
    """

    def realpath(self, path: bytes) -> bytes:
        """Return the canonical absolute form of ``path`` (its last part need not exist)."""

    def open(self, path: bytes, flags: OpenFlags, attrs: FileAttributes) -> OpenFile:
        """Open a file; ``attrs.permissions`` is the mode of a file created."""

    def opendir(self, path: bytes) -> DirectoryLister:
        """Open a directory for listing."""

    def stat(self, path: bytes, *, follow_symlinks: bool = True) -> FileAttributes:
        """Return the attributes of ``path`` (of a link itself if not ``follow_symlinks``)."""

    def setstat(self, path: bytes, attrs: FileAttributes) -> None:
        """Apply the attributes that are set: size, permissions, times, owner."""

    def remove(self, path: bytes) -> None:
        """Remove a file (not a directory)."""

    def mkdir(self, path: bytes, attrs: FileAttributes) -> None:
        """Create a directory; ``attrs.permissions`` is its mode."""

    def rmdir(self, path: bytes) -> None:
        """Remove an empty directory."""

    def rename(self, old: bytes, new: bytes, *, overwrite: bool) -> None:
        """Rename ``old`` to ``new``; if not ``overwrite``, fail when ``new`` exists."""

    def readlink(self, path: bytes) -> bytes:
        """Return the text of a symbolic link as stored."""

    def symlink(self, target: bytes, link: bytes) -> None:
        """Create the symbolic link ``link`` with the text ``target``."""

    def link(self, old: bytes, new: bytes) -> None:
        """Create the hard link ``new`` to ``old``."""

    def statvfs(self, path: bytes) -> os.statvfs_result:
        """Return statistics of the file system holding ``path``."""


class _LocalFile:
    """An :class:`OpenFile` over a file descriptor it owns."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def write(self, offset: int, data: Buffer) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written

    def stat(self) -> FileAttributes:
        return FileAttributes.from_stat(os.fstat(self._fd))

    def setstat(self, attrs: FileAttributes) -> None:
        fd = self._fd
        if attrs.size is not None:
            os.ftruncate(fd, attrs.size)
        if attrs.permissions is not None:
            os.fchmod(fd, attrs.permissions & 0o7777)
        if attrs.atime is not None and attrs.mtime is not None:
            os.utime(fd, (attrs.atime, attrs.mtime))
        if attrs.uid is not None and attrs.gid is not None:
            os.fchown(fd, attrs.uid, attrs.gid)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def statvfs(self) -> os.statvfs_result:
        return os.statvfs(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class _LocalDirectory:
    """A :class:`DirectoryLister` over a directory descriptor it owns."""

    __slots__ = ("_entries", "_fd")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        try:
            # scandir() lstat()s entries relative to this very descriptor, so it stays open
            # as long as the iterator does.
            self._entries = os.scandir(fd)
        except BaseException:
            os.close(fd)
            raise

    def read(self, count: int) -> list[tuple[bytes, FileAttributes]]:
        batch: list[tuple[bytes, FileAttributes]] = []
        for entry in self._entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since readdir() saw it
            batch.append((os.fsencode(entry.name), FileAttributes.from_stat(st)))
            if len(batch) >= count:
                break
        return batch

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self._entries.close()
            os.close(fd)


_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_O_DIR_WALK = _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Resolved:
    """A client path resolved to ``(dir_fd, name)`` for the ``*at()`` system calls.

    Owns the directory descriptors of the walk; use it as a context manager. ``follow`` is the
    ``follow_symlinks`` to pass on: a confined walk already followed the links it was asked
    to, so it is then always ``False``.
    """

    __slots__ = ("_fds", "dir_fd", "follow", "name", "parents")

    def __init__(self, fds: list[int], parents: list[bytes], name: bytes, follow: bool) -> None:
        self._fds = fds
        self.dir_fd: int | None = fds[-1] if fds else None
        self.parents = parents
        self.name = name
        self.follow = follow

    @property
    def nofollow(self) -> int:
        """``O_NOFOLLOW`` when the final component must not be followed, else 0."""
        return 0 if self.follow else os.O_NOFOLLOW

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.pop())

    def __enter__(self) -> _Resolved:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lexical_parts(path: bytes) -> list[bytes]:
    """Split a client path into components, dropping ``.`` and applying ``..`` (stops at /)."""
    parts: list[bytes] = []
    for part in path.split(b"/"):
        if part == b"..":
            if parts:
                parts.pop()
        elif part and part != b".":
            parts.append(part)
    return parts


def _os_open_flags(flags: int) -> int:
    if flags & OpenFlags.READ and flags & OpenFlags.WRITE:
        result = os.O_RDWR
    elif flags & OpenFlags.WRITE:
        result = os.O_WRONLY
    else:
        result = os.O_RDONLY
    if flags & OpenFlags.APPEND:
        result |= os.O_APPEND
    if flags & OpenFlags.CREAT:
        result |= os.O_CREAT
    if flags & OpenFlags.TRUNC:
        result |= os.O_TRUNC
    if flags & OpenFlags.EXCL:
        result |= os.O_EXCL
    return result


class RootedFileSystem:
    """The local file system, optionally confined to a root directory.

    With a ``root``, client paths are read as paths inside it: ``/`` is the root, relative
    paths start at the root and ``..`` stops there. Symbolic links are resolved here, one
    component at a time with ``openat(O_NOFOLLOW)``, never by the kernel: an absolute link
    target counts from the root, and a target leading above the root is refused with
    ``EACCES``. Operations then act on ``(directory descriptor, name)`` without following the
    name, so swapping a directory for a link after the check cannot escape either.

    With ``root=None``, client paths are the real paths and the kernel follows links as
    usual. Relative paths start at the working directory the process had at construction,
    not at a home directory: the server runs no login session whose home would apply.

    The object holds no descriptors between calls, so sessions can share it.

    Args:
        root: The directory to serve, or ``None`` for the whole file system.

    Raises:
        NotADirectoryError: ``root`` is not an existing directory.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            self._root: bytes | None = None
            self._cwd = os.getcwdb()
        else:
            real = os.path.realpath(os.fsencode(root))
            if not os.path.isdir(real):
                raise NotADirectoryError(errno.ENOTDIR, "SFTP root is not a directory", root)
            self._root = real
            self._cwd = b"/"

    @property
    def root(self) -> str | None:
        """The real path of the served root, or ``None`` when unconfined."""
        return None if self._root is None else os.fsdecode(self._root)

    def _resolve(self, path: bytes, *, follow: bool) -> _Resolved:
        if b"\0" in path:
            raise OSError(errno.EINVAL, "NUL byte in path")
        if self._root is None:
            return _Resolved([], [], os.path.join(self._cwd, path), follow)
        pending = _lexical_parts(path)
        pending.reverse()
        fds = [os.open(self._root, _O_DIR_WALK)]
        parents: list[bytes] = []
        links = 0
        try:
            while pending:
                part = pending.pop()
                if part == b"..":  # only link targets still hold ".." here
                    if len(fds) == 1:
                        raise PermissionError(errno.EACCES, "symbolic link leads outside the root")
                    os.close(fds.pop())
                    parents.pop()
                    continue
                last = not pending
                if last and not follow:
                    return _Resolved(fds, parents, part, False)
                try:
                    st = os.stat(part, dir_fd=fds[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if last:
                        return _Resolved(fds, parents, part, False)
                    raise
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                    target = os.readlink(part, dir_fd=fds[-1])
                    if target.startswith(b"/"):
                        while len(fds) > 1:
                            os.close(fds.pop())
                        parents.clear()
                    pending.extend(p for p in reversed(target.split(b"/")) if p and p != b".")
                elif last:
                    return _Resolved(fds, parents, part, False)
                else:
                    # O_NOFOLLOW: had it become a link since the stat, this fails instead.
                    fds.append(os.open(part, _O_DIR_WALK, dir_fd=fds[-1]))
                    parents.append(part)
            return _Resolved(fds, parents, b".", False)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def realpath(self, path: bytes) -> bytes:
        if self._root is None:
            if b"\0" in path:
                raise OSError(errno.EINVAL, "NUL byte in path")
            return os.path.realpath(os.path.join(self._cwd, path))
        with self._resolve(path, follow=True) as r:
            parts = r.parents if r.name == b"." else [*r.parents, r.name]
            return b"/" + b"/".join(parts)

    def open(self, path: bytes, flags: OpenFlags, attrs: FileAttributes) -> OpenFile:
        mode = 0o666 if attrs.permissions is None else attrs.permissions & 0o7777
        # O_NONBLOCK so that opening a FIFO cannot hang the whole session; it changes
        # nothing for regular files.
        os_flags = _os_open_flags(flags) | os.O_CLOEXEC | os.O_NONBLOCK
        with self._resolve(path, follow=True) as r:
            return _LocalFile(os.open(r.name, os_flags | r.nofollow, mode, dir_fd=r.dir_fd))

    def opendir(self, path: bytes) -> DirectoryLister:
        os_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        with self._resolve(path, follow=True) as r:
            return _LocalDirectory(os.open(r.name, os_flags | r.nofollow, dir_fd=r.dir_fd))

    def stat(self, path: bytes, *, follow_symlinks: bool = True) -> FileAttributes:
        with self._resolve(path, follow=follow_symlinks) as r:
            st = os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=r.follow)
        return FileAttributes.from_stat(st)

    def setstat(self, path: bytes, attrs: FileAttributes) -> None:
        with self._resolve(path, follow=True) as r:
            if attrs.size is not None:
                fd = os.open(
                    r.name,
                    os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK | r.nofollow,
                    dir_fd=r.dir_fd,
                )
                try:
                    os.ftruncate(fd, attrs.size)
                finally:
                    os.close(fd)
            if attrs.permissions is not None:
                # Confined, this is fchmodat(AT_SYMLINK_NOFOLLOW), which glibc >= 2.32 provides.
                os.chmod(
                    r.name, attrs.permissions & 0o7777, dir_fd=r.dir_fd, follow_symlinks=r.follow
                )
            if attrs.atime is not None and attrs.mtime is not None:
                os.utime(
                    r.name, (attrs.atime, attrs.mtime), dir_fd=r.dir_fd, follow_symlinks=r.follow
                )
            if attrs.uid is not None and attrs.gid is not None:
                os.chown(r.name, attrs.uid, attrs.gid, dir_fd=r.dir_fd, follow_symlinks=r.follow)

    def remove(self, path: bytes) -> None:
        with self._resolve(path, follow=False) as r:
            os.unlink(r.name, dir_fd=r.dir_fd)

    def mkdir(self, path: bytes, attrs: FileAttributes) -> None:
        mode = 0o777 if attrs.permissions is None else attrs.permissions & 0o7777
        with self._resolve(path, follow=False) as r:
            os.mkdir(r.name, mode, dir_fd=r.dir_fd)

    def rmdir(self, path: bytes) -> None:
        with self._resolve(path, follow=False) as r:
            os.rmdir(r.name, dir_fd=r.dir_fd)

    def rename(self, old: bytes, new: bytes, *, overwrite: bool) -> None:
        with self._resolve(old, follow=False) as src, self._resolve(new, follow=False) as dst:
            if not overwrite and _exists(dst):
                # Not atomic with the rename below; only another process can slip in between.
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
            os.rename(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)

    def readlink(self, path: bytes) -> bytes:
        with self._resolve(path, follow=False) as r:
            return os.readlink(r.name, dir_fd=r.dir_fd)

    def symlink(self, target: bytes, link: bytes) -> None:
        if b"\0" in target:
            raise OSError(errno.EINVAL, "NUL byte in link target")
        with self._resolve(link, follow=False) as r:
            os.symlink(target, r.name, dir_fd=r.dir_fd)

    def link(self, old: bytes, new: bytes) -> None:
        with self._resolve(old, follow=False) as src, self._resolve(new, follow=False) as dst:
            os.link(
                src.name,
                dst.name,
                src_dir_fd=src.dir_fd,
                dst_dir_fd=dst.dir_fd,
                follow_symlinks=False,
            )

    def statvfs(self, path: bytes) -> os.statvfs_result:
        with self._resolve(path, follow=True) as r:
            fd = os.open(r.name, _O_PATH | os.O_CLOEXEC | r.nofollow, dir_fd=r.dir_fd)
        try:
            return os.statvfs(fd)
        finally:
            os.close(fd)


def _exists(r: _Resolved) -> bool:
    try:
        os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


class _Reader:
    """Reads SFTP fields from one packet; running short is a :class:`SftpProtocolError`."""

    __slots__ = ("_buf", "_pos")

    def __init__(self, buf: bytearray, pos: int) -> None:
        self._buf = buf
        self._pos = pos

    def _take(self, size: int) -> int:
        start = self._pos
        if start + size > len(self._buf):
            raise SftpProtocolError("truncated SFTP packet")
        self._pos = start + size
        return start

    def u32(self) -> int:
        value: int = _U32.unpack_from(self._buf, self._take(4))[0]
        return value

    def u64(self) -> int:
        value: int = _U64.unpack_from(self._buf, self._take(8))[0]
        return value

    def string(self) -> bytes:
        start = self._take(self.u32())
        return bytes(self._buf[start : self._pos])

    def string_view(self) -> memoryview:
        """Like :meth:`string` without copying: for WRITE payloads."""
        start = self._take(self.u32())
        return memoryview(self._buf)[start : self._pos]

    def attrs(self) -> FileAttributes:
        flags = self.u32()
        attrs = FileAttributes()
        if flags & _AttrFlags.SIZE:
            attrs.size = self.u64()
        if flags & _AttrFlags.UIDGID:
            attrs.uid = self.u32()
            attrs.gid = self.u32()
        if flags & _AttrFlags.PERMISSIONS:
            attrs.permissions = self.u32()
        if flags & _AttrFlags.ACMODTIME:
            attrs.atime = self.u32()
            attrs.mtime = self.u32()
        if flags & _AttrFlags.EXTENDED:
            for _ in range(self.u32()):
                self.string()
                self.string()
        return attrs


def _string(value: bytes) -> bytes:
    return _U32.pack(len(value)) + value


def _clamp(value: int, top: int) -> int:
    return min(max(int(value), 0), top)


def _encode_attrs(attrs: FileAttributes) -> bytes:
    flags = 0
    fields = []
    if attrs.size is not None:
        flags |= _AttrFlags.SIZE
        fields.append(_U64.pack(_clamp(attrs.size, _U64_MAX)))
    if attrs.uid is not None and attrs.gid is not None:
        flags |= _AttrFlags.UIDGID
        fields.append(_U32.pack(attrs.uid & _U32_MAX) + _U32.pack(attrs.gid & _U32_MAX))
    if attrs.permissions is not None:
        flags |= _AttrFlags.PERMISSIONS
        fields.append(_U32.pack(attrs.permissions & _U32_MAX))
    if attrs.atime is not None and attrs.mtime is not None:
        flags |= _AttrFlags.ACMODTIME
        fields.append(_U32.pack(_clamp(attrs.atime, _U32_MAX)))
        fields.append(_U32.pack(_clamp(attrs.mtime, _U32_MAX)))
    return _U32.pack(flags) + b"".join(fields)


@functools.lru_cache(maxsize=256)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid)


@functools.lru_cache(maxsize=256)
def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return str(gid)


_SIX_MONTHS = 182 * 24 * 3600


def _longname(name: bytes, attrs: FileAttributes, now: float) -> bytes:
    """Format a READDIR long name the way ``ls -l`` (and OpenSSH's sftp-server) do."""
    mode = stat.filemode(attrs.permissions or 0)
    user = "?" if attrs.uid is None else _user_name(attrs.uid)
    group = "?" if attrs.gid is None else _group_name(attrs.gid)
    mtime = attrs.mtime or 0
    recent = now - _SIX_MONTHS < mtime <= now
    when = time.strftime("%b %e %H:%M" if recent else "%b %e  %Y", time.localtime(mtime))
    text = f"{mode} {attrs.nlink:>3} {user:<8} {group:<8} {attrs.size or 0:>8} {when} "
    return text.encode("utf-8", "surrogateescape") + name


class _HandleTable:
    """Open files and directories by handle, bounded in number."""

    def __init__(self, limit: int, room: Callable[[], bool] | None = None) -> None:
        self._limit = limit
        self._room = room
        self._files: dict[bytes, OpenFile] = {}
        self._dirs: dict[bytes, DirectoryLister] = {}
        self._counter = 0

    def __len__(self) -> int:
        return len(self._files) + len(self._dirs)

    def check_room(self) -> None:
        """Raise before opening anything when no further handle may be issued."""
        if len(self) >= self._limit:
            raise OSError(errno.EMFILE, f"too many open handles (limit {self._limit})")
        if self._room is not None and not self._room():
            raise OSError(errno.EMFILE, "too many open files and handles on this connection")

    def _new_handle(self) -> bytes:
        self._counter += 1
        return _U64.pack(self._counter)

    def add_file(self, file: OpenFile) -> bytes:
        handle = self._new_handle()
        self._files[handle] = file
        return handle

    def add_dir(self, directory: DirectoryLister) -> bytes:
        handle = self._new_handle()
        self._dirs[handle] = directory
        return handle

    def file(self, handle: bytes) -> OpenFile:
        try:
            return self._files[handle]
        except KeyError:
            raise OSError(errno.EBADF, "invalid file handle") from None

    def directory(self, handle: bytes) -> DirectoryLister:
        try:
            return self._dirs[handle]
        except KeyError:
            raise OSError(errno.EBADF, "invalid directory handle") from None

    def pop(self, handle: bytes) -> OpenFile | DirectoryLister:
        item: OpenFile | DirectoryLister | None = self._files.pop(handle, None)
        if item is None:
            item = self._dirs.pop(handle, None)
        if item is None:
            raise OSError(errno.EBADF, "invalid handle")
        return item

    def close_all(self) -> None:
        items: list[OpenFile | DirectoryLister] = [*self._files.values(), *self._dirs.values()]
        self._files.clear()
        self._dirs.clear()
        for item in items:
            try:
                item.close()
            except OSError:
                logger.exception("closing an SFTP handle failed")


class SftpServer:
    """One SFTP session: client bytes in, server bytes out.

    Not thread-safe: feed it from one thread at a time. Requests are answered in order.

    Args:
        fs: The file system to serve.
        max_packet: The largest packet accepted from the client (its length field).
        handle_room: Asked before each open; False refuses it with ``SSH_FX_FAILURE``
            ("too many open files"), as the handle limit does (a budget shared with others).

    Raises:
        ValueError: ``max_packet`` is too small to carry the requests of a usual client.
    """

    _DISPATCH: ClassVar[dict[int, str]] = {
        PacketType.OPEN: "_on_open",
        PacketType.CLOSE: "_on_close",
        PacketType.READ: "_on_read",
        PacketType.WRITE: "_on_write",
        PacketType.LSTAT: "_on_lstat",
        PacketType.FSTAT: "_on_fstat",
        PacketType.SETSTAT: "_on_setstat",
        PacketType.FSETSTAT: "_on_fsetstat",
        PacketType.OPENDIR: "_on_opendir",
        PacketType.READDIR: "_on_readdir",
        PacketType.REMOVE: "_on_remove",
        PacketType.MKDIR: "_on_mkdir",
        PacketType.RMDIR: "_on_rmdir",
        PacketType.REALPATH: "_on_realpath",
        PacketType.STAT: "_on_stat",
        PacketType.RENAME: "_on_rename",
        PacketType.READLINK: "_on_readlink",
        PacketType.SYMLINK: "_on_symlink",
        PacketType.EXTENDED: "_on_extended",
    }
    _EXTENDED: ClassVar[dict[bytes, str]] = {
        b"posix-rename@openssh.com": "_ext_posix_rename",
        b"statvfs@openssh.com": "_ext_statvfs",
        b"fstatvfs@openssh.com": "_ext_fstatvfs",
        b"hardlink@openssh.com": "_ext_hardlink",
        b"fsync@openssh.com": "_ext_fsync",
        b"limits@openssh.com": "_ext_limits",
    }

    def __init__(self, fs: FileSystem, *, max_packet: int = 256 * 1024 + 1024,
                 handle_room: Callable[[], bool] | None = None) -> None:
        if max_packet < 4096:
            raise ValueError(f"max_packet must be at least 4096, not {max_packet}")
        self._fs = fs
        self._max_packet = max_packet
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._handles = _HandleTable(MAX_HANDLES, handle_room)
        self._initialised = False
        self._failed = False
        self._closed = False

    @property
    def open_handles(self) -> int:
        """The number of open file and directory handles."""
        return len(self._handles)

    def close(self) -> None:
        """Close every open handle; idempotent."""
        self._closed = True
        self._handles.close_all()

    def __enter__(self) -> SftpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or not len(self._handles):
            return
        warnings.warn(
            f"unclosed SftpServer with {len(self._handles)} open handles",
            ResourceWarning,
            source=self,
            stacklevel=2,
        )
        self.close()

    def feed(self, data: Buffer) -> bytes:
        """Consume bytes from the client and return the bytes to send back.

        Data may arrive split anywhere: partial packets wait for the rest, and every complete
        packet in the buffer is answered.

        Args:
            data: The next bytes from the client.

        Returns:
            The responses, possibly ``b""``.

        Raises:
            SftpProtocolError: The client sent a packet longer than ``max_packet``, a packet
                whose fields run past its end, or no (or a second) INIT. The session is
                unusable from then on.
            ValueError: The server is closed.
        """
        if self._closed:
            raise ValueError("SftpServer is closed")
        if self._failed:
            raise SftpProtocolError("SFTP session already failed")
        buf = self._buf
        buf += data
        end = len(buf)
        pos = 0
        out: list[bytes] = []
        self._out = out
        try:
            while end - pos >= 4:
                (length,) = _U32.unpack_from(buf, pos)
                if length > self._max_packet:
                    raise SftpProtocolError(
                        f"SFTP packet of {length} bytes exceeds the limit of {self._max_packet}"
                    )
                if end - pos - 4 < length:
                    break
                # A copy per packet: nothing then pins `buf`, which must be resized below.
                packet = buf[pos + 4 : pos + 4 + length]
                pos += 4 + length
                self._handle_packet(packet)
        except SftpProtocolError:
            self._failed = True
            raise
        finally:
            del buf[:pos]
            self._out = []
        return b"".join(out)

    def _handle_packet(self, packet: bytearray) -> None:
        if not packet:
            raise SftpProtocolError("empty SFTP packet")
        ptype = packet[0]
        if not self._initialised:
            if ptype != PacketType.INIT:
                raise SftpProtocolError(f"expected SSH_FXP_INIT, got packet type {ptype}")
            _Reader(packet, 1).u32()  # the client's version: we answer 3 whatever it is
            self._initialised = True
            payload = [_U32.pack(SFTP_VERSION)]
            for name, value in _EXTENSIONS:
                payload += (_string(name), _string(value))
            body = b"".join(payload)
            self._out.append(_U32.pack(len(body) + 1) + bytes([PacketType.VERSION]) + body)
            return
        if ptype == PacketType.INIT:
            raise SftpProtocolError("duplicate SSH_FXP_INIT")
        rid = _Reader(packet, 1).u32()
        method = self._DISPATCH.get(ptype)
        if method is None:
            self._status(rid, StatusCode.OP_UNSUPPORTED, f"unsupported packet type {ptype}")
            return
        try:
            getattr(self, method)(rid, _Reader(packet, 5))
        except SftpProtocolError:
            raise
        except OSError as exc:
            code = _ERRNO_STATUS.get(exc.errno or 0, StatusCode.FAILURE)
            self._status(rid, code, exc.strerror or str(exc) or _STATUS_TEXT[code])
        except (ValueError, OverflowError) as exc:
            self._status(rid, StatusCode.BAD_MESSAGE, str(exc) or "bad message")
        except Exception:
            # A bug, or a file-system backend misbehaving, must not end the session.
            logger.exception("SFTP request of type %d failed", ptype)
            self._status(rid, StatusCode.FAILURE, "internal server error")

    # -- replies ---------------------------------------------------------------------------

    def _reply(self, ptype: int, rid: int, payload: bytes) -> None:
        self._out.append(_HEADER.pack(len(payload) + 5, ptype, rid))
        self._out.append(payload)

    def _status(self, rid: int, code: StatusCode, message: str | None = None) -> None:
        text = (message or _STATUS_TEXT[code]).encode("utf-8", "surrogateescape")
        self._reply(PacketType.STATUS, rid, _U32.pack(code) + _string(text) + _string(b"en"))

    def _ok(self, rid: int) -> None:
        self._status(rid, StatusCode.OK)

    def _names(self, rid: int, entries: list[tuple[bytes, bytes, FileAttributes]]) -> None:
        parts = [_U32.pack(len(entries))]
        for name, longname, attrs in entries:
            parts += (_string(name), _string(longname), _encode_attrs(attrs))
        self._reply(PacketType.NAME, rid, b"".join(parts))

    def _attrs(self, rid: int, attrs: FileAttributes) -> None:
        self._reply(PacketType.ATTRS, rid, _encode_attrs(attrs))

    # -- requests --------------------------------------------------------------------------

    def _on_open(self, rid: int, r: _Reader) -> None:
        path, flags, attrs = r.string(), r.u32(), r.attrs()
        self._handles.check_room()
        file = self._fs.open(path, OpenFlags(flags), attrs)
        self._reply(PacketType.HANDLE, rid, _string(self._handles.add_file(file)))

    def _on_close(self, rid: int, r: _Reader) -> None:
        self._handles.pop(r.string()).close()
        self._ok(rid)

    def _on_read(self, rid: int, r: _Reader) -> None:
        handle, offset, length = r.string(), r.u64(), r.u32()
        data = self._handles.file(handle).read(offset, min(length, MAX_READ_LENGTH))
        if not data:
            self._status(rid, StatusCode.EOF)
            return
        self._out.append(_DATA_HEADER.pack(len(data) + 9, PacketType.DATA, rid, len(data)))
        self._out.append(data)

    def _on_write(self, rid: int, r: _Reader) -> None:
        handle, offset, data = r.string(), r.u64(), r.string_view()
        self._handles.file(handle).write(offset, data)
        self._ok(rid)

    def _on_lstat(self, rid: int, r: _Reader) -> None:
        self._attrs(rid, self._fs.stat(r.string(), follow_symlinks=False))

    def _on_stat(self, rid: int, r: _Reader) -> None:
        self._attrs(rid, self._fs.stat(r.string(), follow_symlinks=True))

    def _on_fstat(self, rid: int, r: _Reader) -> None:
        self._attrs(rid, self._handles.file(r.string()).stat())

    def _on_setstat(self, rid: int, r: _Reader) -> None:
        path, attrs = r.string(), r.attrs()
        self._fs.setstat(path, attrs)
        self._ok(rid)

    def _on_fsetstat(self, rid: int, r: _Reader) -> None:
        handle, attrs = r.string(), r.attrs()
        self._handles.file(handle).setstat(attrs)
        self._ok(rid)

    def _on_opendir(self, rid: int, r: _Reader) -> None:
        path = r.string()
        self._handles.check_room()
        directory = self._fs.opendir(path)
        self._reply(PacketType.HANDLE, rid, _string(self._handles.add_dir(directory)))

    def _on_readdir(self, rid: int, r: _Reader) -> None:
        batch = self._handles.directory(r.string()).read(READDIR_BATCH)
        if not batch:
            self._status(rid, StatusCode.EOF)
            return
        now = time.time()
        self._names(rid, [(name, _longname(name, attrs, now), attrs) for name, attrs in batch])

    def _on_remove(self, rid: int, r: _Reader) -> None:
        self._fs.remove(r.string())
        self._ok(rid)

    def _on_mkdir(self, rid: int, r: _Reader) -> None:
        path, attrs = r.string(), r.attrs()
        self._fs.mkdir(path, attrs)
        self._ok(rid)

    def _on_rmdir(self, rid: int, r: _Reader) -> None:
        self._fs.rmdir(r.string())
        self._ok(rid)

    def _on_realpath(self, rid: int, r: _Reader) -> None:
        path = self._fs.realpath(r.string())
        self._names(rid, [(path, path, FileAttributes())])

    def _on_rename(self, rid: int, r: _Reader) -> None:
        old, new = r.string(), r.string()
        self._fs.rename(old, new, overwrite=False)
        self._ok(rid)

    def _on_readlink(self, rid: int, r: _Reader) -> None:
        target = self._fs.readlink(r.string())
        self._names(rid, [(target, target, FileAttributes())])

    def _on_symlink(self, rid: int, r: _Reader) -> None:
        # OpenSSH's order, not the draft's: see the module docstring.
        target, link = r.string(), r.string()
        self._fs.symlink(target, link)
        self._ok(rid)

    def _on_extended(self, rid: int, r: _Reader) -> None:
        request = r.string()
        name = self._EXTENDED.get(request)
        if name is None:
            self._status(
                rid,
                StatusCode.OP_UNSUPPORTED,
                f"unsupported extension {request.decode('ascii', 'replace')}",
            )
            return
        getattr(self, name)(rid, r)

    def _ext_posix_rename(self, rid: int, r: _Reader) -> None:
        old, new = r.string(), r.string()
        self._fs.rename(old, new, overwrite=True)
        self._ok(rid)

    def _ext_hardlink(self, rid: int, r: _Reader) -> None:
        old, new = r.string(), r.string()
        self._fs.link(old, new)
        self._ok(rid)

    def _ext_fsync(self, rid: int, r: _Reader) -> None:
        self._handles.file(r.string()).fsync()
        self._ok(rid)

    def _ext_statvfs(self, rid: int, r: _Reader) -> None:
        self._statvfs_reply(rid, self._fs.statvfs(r.string()))

    def _ext_fstatvfs(self, rid: int, r: _Reader) -> None:
        self._statvfs_reply(rid, self._handles.file(r.string()).statvfs())

    def _statvfs_reply(self, rid: int, st: os.statvfs_result) -> None:
        flag = (1 if st.f_flag & os.ST_RDONLY else 0) | (2 if st.f_flag & os.ST_NOSUID else 0)
        fields = (
            st.f_bsize,
            st.f_frsize,
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_favail,
            getattr(st, "f_fsid", 0),
            flag,
            st.f_namemax,
        )
        payload = b"".join(_U64.pack(_clamp(value, _U64_MAX)) for value in fields)
        self._reply(PacketType.EXTENDED_REPLY, rid, payload)

    def _ext_limits(self, rid: int, r: _Reader) -> None:
        limits = (self._max_packet, MAX_READ_LENGTH, self._max_packet - 1024, MAX_HANDLES)
        self._reply(PacketType.EXTENDED_REPLY, rid, b"".join(_U64.pack(v) for v in limits))
