"""A zip archive at the end of a file that is not one (review M).

Python's zipfile finds the end-of-central-directory record in the last 64 KiB and reads the
archive whatever bytes come before it (a self-extracting zip); miniz (torch.package,
torch.jit.load, which check no magic) reads the central directory at the record's absolute
offset. So a pickle, a safetensors file or "unknown" bytes whose tail holds an archive are
also an archive to those readers, with a data.pkl or code that nothing inspected. Either
reading of the tail finding a member makes the file a polyglot.
"""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any

EOCD = b"PK\x05\x06"
_TAIL = (1 << 16) + 22  # the record and the longest comment


class _View(io.RawIOBase):
    """A read-only file over a buffer (zipfile wants seek/tell/read), without a copy."""

    def __init__(self, view: memoryview) -> None:
        self._view, self._pos = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: Any) -> int:
        chunk = self._view[self._pos : self._pos + len(b)]
        n = len(chunk)
        memoryview(b).cast("B")[:n] = chunk
        self._pos += n
        return n


def archive_in_tail(buf: Any) -> str | None:
    """How a zip reader finds an archive with members in the file's tail, or None."""
    view = memoryview(buf).cast("B")
    start = max(0, len(view) - _TAIL)
    tail = bytes(view[start:])
    at = tail.rfind(EOCD)
    if at < 0:
        return None
    while at >= 0:  # miniz: the central directory at the record's absolute offset
        rec = tail[at : at + 22]
        if len(rec) == 22:
            entries, cd_offset = struct.unpack_from("<H", rec, 10)[0], \
                struct.unpack_from("<I", rec, 16)[0]
            if entries and (cd_offset == 0xFFFFFFFF or
                            bytes(view[cd_offset : cd_offset + 4]) == b"PK\x01\x02"):
                return f"an end-of-archive record at offset {start + at} names {entries} members"
        at = tail.rfind(EOCD, 0, at)
    try:
        with zipfile.ZipFile(_View(view)) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            struct.error, NotImplementedError, OverflowError, KeyError):
        return None
    return f"Python's zipfile lists {len(names)} members" if names else None
