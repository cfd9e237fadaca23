"""One atomic file writer: temp file in the same directory, optional fsync, rename.

`overwrite=False` refuses to replace a file that exists, including one that appeared while the
temp file was written: the final step is `os.link`, which fails on an existing name (check then
replace would race). Filesystems without hard links fall back to a checked `os.replace`.
`durable=True` fsyncs the file before the rename and the folder after it, for writes whose loss
would lose a user's data (trust store, signatures, exports); caches pass `durable=False`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True, overwrite: bool = True,
                 mode: int = 0o644, dir_mode: int = 0o755) -> None:
    """Write `data` to `path` so a reader sees the old file or the whole new one, never a part.

    Raises FileExistsError (errno EEXIST, naming the path) when `overwrite` is false and the
    path exists.
    """
    _atomic(path, lambda f: f.write(data), durable=durable, overwrite=overwrite, mode=mode,
            dir_mode=dir_mode)


def copy_atomic(src: Path, path: Path, *, durable: bool = False, overwrite: bool = True,
                mode: int = 0o644) -> None:
    """Copy `src` to `path` with `write_atomic`'s guarantees, without holding it in memory."""
    def copy(f: BinaryIO) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, 8 << 20)
    _atomic(path, copy, durable=durable, overwrite=overwrite, mode=mode, dir_mode=0o755)


def _atomic(path: Path, fill: Callable[[BinaryIO], object], *, durable: bool, overwrite: bool,
            mode: int, dir_mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if os.name == "posix":
            os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(Path(tmp), path)
        if durable:
            _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def move_into_place(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Rename a finished temp file (same directory) to `path`; no clobber unless `overwrite`."""
    if overwrite:
        os.replace(tmp, path)
        return
    _link_new(tmp, path)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _link_new(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # fails if the name exists: no silent overwrite
    except FileExistsError:
        raise FileExistsError(17, "exists (pass --overwrite to replace it)", str(path)) from None
    except OSError:
        if os.path.lexists(path):
            raise FileExistsError(17, "exists (pass --overwrite to replace it)",
                                  str(path)) from None
        os.replace(tmp, path)  # filesystems without hard links


__all__ = ["copy_atomic", "move_into_place", "write_atomic"]
