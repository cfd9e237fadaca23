"""Open a file once, safely, and keep the handle: every later step reads this handle.

`Held` is what a load holds: an `OpenedFile` (one regular file, one descriptor) or an
`InMemory` buffer (a stream without a descriptor). Both answer the same questions, so the
pipeline never branches on which one it has.

Hashing, inspection, conversion and loading all use the one descriptor and its mapping, never a
re-open by path, so renaming or replacing the file after the check changes nothing we read.
A writer that modifies the same inode in place is detected afterwards by `changed()` (size,
mtime and ctime), which the loader calls once it has finished.
"""

from __future__ import annotations

import mmap
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from safeload._internal.hashing import sha256_buffer, sha256_fd
from safeload.errors import (
    DirectoryPathError,
    SpecialFilePathError,
    UnsafePathError,
    UnsupportedFormatError,
)


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class OpenedFile:
    """A regular file opened read-only without following a final symlink out of its root."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self.name = path
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise DirectoryPathError(f"{path}: is a directory, not a checkpoint file",
                                     hint="point safeload at the checkpoint file itself, or use "
                                          "safeload.from_pretrained for a model folder")
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SpecialFilePathError(f"{path}: not a regular file (a FIFO, device or socket)",
                                       hint="point safeload at the checkpoint file itself")
        self.identity = FileIdentity.of(st)
        self._nlink = st.st_nlink
        self._map: mmap.mmap | bytearray | None = None
        self._path: Path | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
             produced: bool = False) -> OpenedFile:
        """Open `path`. A symlink is followed only if it resolves inside `root` (when given).
        `produced`: a file a converter child wrote, which must be no link and have one name.

        O_NONBLOCK keeps a FIFO from blocking the open (and a lease: EWOULDBLOCK); the fstat
        check then refuses it.
        """
        p = os.fspath(path)
        if root is not None:
            real, real_root = Path(p).resolve(), Path(root).resolve()
            if real != real_root and real_root not in real.parents:
                raise UnsafePathError(f"{p}: resolves outside {root} (to {real})",
                                      hint="replace the link with the file it points to")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(p, flags | (os.O_NOFOLLOW if produced else 0))
        opened = cls(fd, p)
        if produced and opened._nlink != 1:
            opened.close()
            raise UnsafePathError(f"{p}: the converter's output has {opened._nlink} names",
                                  hint="convert again; the converter may have been attacked")
        return opened

    def copy_privately(self) -> None:
        """Read the whole file into memory once; from then on every stage (hashing, the
        signature check, inspection, conversion, the tensors returned) reads that copy.

        Strict mode's answer to a writer the stamps cannot see: a page of a writable shared
        mapping, once dirty, takes further writes without a new mtime or ctime, and a
        MAP_PRIVATE mapping shows them until its own page is copied. What was hashed is then
        exactly what is used, whatever happens to the file."""
        if isinstance(self._map, bytearray):
            return
        data = bytearray(self.identity.size)
        view, offset = memoryview(data), 0
        while offset < len(data):
            n = os.preadv(self.fd, [view[offset:]], offset)
            if n == 0:
                raise OSError(f"{self.path}: the file shrank while it was read")
            offset += n
        self._map = data

    @property
    def private(self) -> bool:
        """The bytes are a private copy (`copy_privately`)."""
        return isinstance(self._map, bytearray)

    def mapping(self) -> mmap.mmap | bytes | bytearray:
        """A private, copy-on-write mapping of the whole file (writes never reach the file),
        or the private copy."""
        if self.identity.size == 0:
            return b""
        if self._map is None:
            self._map = mmap.mmap(self.fd, self.identity.size, flags=mmap.MAP_PRIVATE,
                                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
        return self._map

    @property
    def size(self) -> int:
        return self.identity.size

    @property
    def memo_key(self) -> FileIdentity:
        return self.identity

    @property
    def descriptor(self) -> int:
        return self.fd

    def local_path(self) -> Path:
        if self._path is None:  # asked by several stages of every load: built once
            self._path = Path(self.path)
        return self._path

    def input_fd(self) -> tuple[int, bool]:
        """The descriptor a converter child reads (closed by the caller when the second item
        is true: a memfd of the private copy)."""
        if self.private:
            return _memfd_of(self.mapping())
        return self.fd, False

    def sha256(self) -> str:
        """sha256 of the whole file, read through the descriptor (no mapping: flat memory), or
        of the private copy."""
        if self.private:
            return sha256_buffer(memoryview(self.mapping()))
        return sha256_fd(self.fd, self.identity.size, name=self.path)

    def changed(self, sha256: str | None = None) -> bool:
        """True if the inode's content may have changed since it was opened.

        Size or mtime changed: changed. ctime changed (any write, chmod, link or unlink of the
        inode; a user cannot set it back): changed, unless the link count went DOWN (the name was
        renamed over or unlinked, as a re-download does) and the held bytes still hash to
        `sha256`, the digest that was verified. A link count that went up is no excuse: an
        in-place writer can restore mtime and add a hard link. Pass `sha256` only when what the
        load returns reads the held file itself: a writer can write, let a copy be taken,
        restore the bytes and unlink a spare hard link, and the re-hash then proves nothing.
        """
        st = os.fstat(self.fd)
        now = FileIdentity.of(st)
        i = self.identity
        if (now.size, now.mtime_ns) != (i.size, i.mtime_ns):
            return True
        if now.ctime_ns == i.ctime_ns:
            return False
        if st.st_nlink >= self._nlink or sha256 is None:
            return True
        return self.sha256() != sha256

    def close(self) -> None:
        # The mapping may outlive the descriptor: tensors made from it keep it alive.
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InMemory:
    """Bytes read from a stream without a descriptor, under the stream's name.

    A private, writable copy: tensors made from it must not alias (or write into) the caller's
    bytes. Nothing can change it, so `changed()` is always false and there is no memo key.
    """

    memo_key: None = None
    descriptor: None = None

    def __init__(self, name: str, data: bytes | bytearray, *, anonymous: bool = False,
                 strict: bool = False) -> None:
        self.name = name
        self._strict = strict  # `copy_privately`
        self.path = name
        # Bytes a library read from a file it did not name to us (`guard()` under
        # transformers' `disable_mmap`): rules tied to a file's identity cannot be applied.
        self.anonymous = anonymous
        self._data = data if isinstance(data, bytearray) else bytearray(data)

    @property
    def size(self) -> int:
        return len(self._data)

    def mapping(self) -> bytearray:
        return self._data

    def copy_privately(self) -> None:
        """Already a private copy; marks it so that later stages keep theirs private too (a
        conversion's output, in strict mode)."""
        self._strict = True

    @property
    def private(self) -> bool:
        return self._strict

    def local_path(self) -> Path | None:
        """The file a stream's name names (its model card and Hub origin still apply), if any."""
        if not self.name or self.name.startswith("<"):
            return None
        p = Path(self.name)
        try:
            return p if p.is_file() else None
        except OSError:
            return None

    def sha256(self) -> str:
        return sha256_buffer(self._data)

    def input_fd(self) -> tuple[int, bool]:
        """A memfd holding the bytes, for a converter child; the caller closes it."""
        return _memfd_of(self._data)

    def changed(self, sha256: str | None = None) -> bool:
        return False

    def close(self) -> None:
        pass


def _memfd_of(buf: bytes | bytearray | mmap.mmap) -> tuple[int, bool]:
    """A memfd holding `buf` (the caller closes it)."""
    fd = os.memfd_create("safeload-input", os.MFD_CLOEXEC)
    data = memoryview(buf)
    while data:
        data = data[os.write(fd, data):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd, True


def read_to_end(read: Any, name: str, limit: int) -> bytes:
    """Every byte up to EOF (b""), at most `limit` + 1: a stream may return fewer
    bytes than asked at any call (a raw or network stream), and the unpickler that reads it
    goes on to the end, so one short read must not stand for the whole stream."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = read(limit + 1 - total)
        if chunk is None:  # a non-blocking raw stream with nothing ready: not a file
            raise UnsupportedFormatError(f"{name}: the stream returned no data (non-blocking)",
                                         hint="pass a path or a blocking file object")
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise UnsupportedFormatError(
                f"{name}: file object did not return bytes (open it 'rb')")
        if not chunk:
            break
        chunks.append(bytes(chunk))
        total += len(chunk)
    return b"".join(chunks)


class Held(Protocol):
    """What every pipeline stage reads: one file or one buffer, never a path again."""

    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def memo_key(self) -> FileIdentity | None: ...
    @property
    def descriptor(self) -> int | None: ...
    def local_path(self) -> Path | None: ...
    def mapping(self) -> mmap.mmap | bytes | bytearray: ...
    def sha256(self) -> str: ...
    def input_fd(self) -> tuple[int, bool]: ...
    def changed(self, sha256: str | None = None) -> bool: ...
    def copy_privately(self) -> None: ...
    @property
    def private(self) -> bool: ...
    def close(self) -> None: ...
