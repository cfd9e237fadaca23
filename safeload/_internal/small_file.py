"""Small metadata files (Hub refs, tree listings) read with a bound: only a regular file, at
most `limit` bytes, never blocking. A FIFO named `trees/<commit>.json` held `cache scan`
forever, and a sparse 50 GB `refs/x` (no disk used) was read whole (review U)."""

from __future__ import annotations

import os
import stat


def read_small(path: str | os.PathLike[str], limit: int) -> bytes | None:
    """The file's bytes, or None: absent, not a regular file, or longer than `limit`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) <= limit else None  # grew while read
    except OSError:
        return None
    finally:
        os.close(fd)


REF_LIMIT = 4096  # a ref holds a 40-hex commit
TREE_LIMIT = 64 << 20  # far above any repository's file listing


__all__ = ["REF_LIMIT", "TREE_LIMIT", "read_small"]
