"""One read loop for digests: sha256 (and the git blob id) of a descriptor, a buffer or a path.

Reads go through `os.preadv` on the held descriptor into one scratch buffer, so memory stays
flat whatever the file size and the file position is never moved (other stages share the fd).
The converter child keeps its own loop: `conversion/` never imports safeload.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 8 << 20


def digest_fd(fd: int, size: int, *, git: bool = False, name: str = "file",
              begin: int = 0) -> tuple[str, str | None]:
    """sha256 of `size` bytes from `begin` (and the git blob sha1 when `git`), in one pass.

    Raises:
        OSError: the file shrank while it was read.
    """
    h = hashlib.sha256()
    g = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False) if git else None
    scratch = memoryview(bytearray(min(CHUNK, max(size, 1))))
    pos = 0
    while pos < size:
        n = os.preadv(fd, [scratch[: min(len(scratch), size - pos)]], begin + pos)
        if n <= 0:
            raise OSError(f"{name}: file shrank while it was being read")
        h.update(scratch[:n])
        if g is not None:
            g.update(scratch[:n])
        pos += n
    return h.hexdigest(), (g.hexdigest() if g is not None else None)


def sha256_fd(fd: int, size: int, *, name: str = "file", begin: int = 0) -> str:
    return digest_fd(fd, size, name=name, begin=begin)[0]


def sha256_buffer(buf: bytes | bytearray | memoryview) -> str:
    h = hashlib.sha256()
    view = memoryview(buf)
    for pos in range(0, len(view), CHUNK):
        h.update(view[pos : pos + CHUNK])
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file the caller names (not a held one: for records of files it listed)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return sha256_fd(fd, os.fstat(fd).st_size, name=str(path))
    finally:
        os.close(fd)


def git_blob_id(data: bytes) -> str:
    """The id git (and the Hub, for non-LFS files) gives a blob's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


__all__ = ["CHUNK", "digest_fd", "git_blob_id", "sha256_buffer", "sha256_fd", "sha256_path"]
