"""Walking and hashing a model directory the way the OMS format defines it. Internal and unstable.

Attack classes handled here: symlinks that leave the model directory (or any symlink when the
signature does not allow them), special files (FIFOs block readers, devices never end), a file
swapped for a symlink between the walk and the open (`O_NOFOLLOW`), and files that change size
while being hashed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from safeload._internal.hubpath import expected_blob, hub_file
from safeload._internal.text import safe_text
from safeload.errors import UnsafePathError, UnsupportedSignatureError

T = TypeVar("T")

CHUNK = 8 * 1024 * 1024  # large reads keep hashlib at full speed (GIL released per update)
MAX_FILES = 1_000_000
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class _Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def hasher_factory(hash_type: str) -> Callable[[], _Hasher]:
    """A constructor for the OMS hash `hash_type` (`sha256`, `blake2b`, `blake3`).

    Raises:
        UnsupportedSignatureError: blake3 without the optional `blake3` package, or an unknown
            hash.
    """
    if hash_type == "sha256":
        return hashlib.sha256
    if hash_type == "blake2b":
        return hashlib.blake2b  # 64-byte digest, as model_signing writes it
    if hash_type == "blake3":
        try:
            import blake3  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise UnsupportedSignatureError(
                "this signature uses BLAKE3 digests and the optional `blake3` package is not "
                "installed",
                hint="pip install blake3",
            ) from exc
        factory: Callable[[], _Hasher] = blake3.blake3
        return factory
    raise UnsupportedSignatureError(f"unknown hash type {safe_text(hash_type)}")


@dataclass(frozen=True)
class Job:
    """Hash `path` (relative name `name`), whole or the byte range [start, end)."""

    name: str
    path: Path
    start: int = 0
    end: int | None = None


def _is_ignored(rel: str, ignore: Iterable[str]) -> bool:
    # Component-wise, like PurePath.is_relative_to: ".git" covers ".git/x", not ".gitfoo".
    return any(rel == p or rel.startswith(p + "/") for p in ignore)


def list_files(root: Path, *, ignore: Iterable[str], allow_symlinks: bool) -> dict[str, Path]:
    """Every regular file under `root` that is not ignored, as {relative POSIX path: path}.

    Symlinks are refused unless `allow_symlinks`; even then a link must resolve to a regular file
    inside `root`. Directory symlinks are never followed.

    Raises:
        UnsafePathError: a symlink (not allowed or leaving the directory), a special file.
        OSError: the directory cannot be read.
    """
    ignore = tuple(ignore)
    real_root = root.resolve()
    out: dict[str, Path] = {}
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if _is_ignored(rel, ignore):
                continue
            path = Path(entry.path)
            blob = _hub_blob(path) if entry.is_symlink() else None
            if blob is not None:
                # A Hub snapshot entry: the client's link to its blob stands for the file.
                out[rel] = blob
            elif entry.is_symlink():
                if not allow_symlinks:
                    raise UnsafePathError(
                        f"{safe_text(rel)} is a symlink and the signature does not allow symlinks"
                    )
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    raise UnsafePathError(
                        f"{safe_text(rel)} is a symlink that leaves the model directory"
                    )
                if not target.is_file():
                    raise UnsafePathError(f"{safe_text(rel)} is a symlink to a non-file")
                out[rel] = target
            elif entry.is_dir(follow_symlinks=False):
                stack.append((path, rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                out[rel] = path
            else:
                raise UnsafePathError(f"{safe_text(rel)} is not a regular file (FIFO, socket...)")
            if len(out) > MAX_FILES:
                raise UnsafePathError(f"more than {MAX_FILES} files under {safe_text(root)}")
    return out


def _hub_blob(entry: Path) -> Path | None:
    """The blob a Hugging Face snapshot entry links to, when it is exactly the link the Hub
    client writes (`../../blobs/<name>` of its own repo, inside the cache); else None, and the
    entry is judged as any other symlink."""
    hf = hub_file(entry)
    if hf is None:
        return None
    try:
        blob = expected_blob(hf)
    except UnsafePathError:
        return None
    if blob is None or not blob.is_file() or blob.is_symlink():
        return None
    return blob


def open_regular(path: Path, *, follow_symlinks: bool = False) -> int:
    """Open for reading and return the fd, refusing anything but a regular file.

    Raises:
        UnsafePathError: a symlink (unless `follow_symlinks`) or a special file.
        OSError: cannot open.
    """
    flags = os.O_RDONLY | _O_NONBLOCK | _O_BINARY | _O_CLOEXEC
    if not follow_symlinks:
        flags |= _O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if _O_NOFOLLOW and exc.errno == errno.ELOOP:  # the file became a symlink
            raise UnsafePathError(f"{safe_text(path)} is a symlink") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{safe_text(path)} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def hash_fd_ranges(
    fd: int,
    ranges: list[tuple[int, int]],
    factory: Callable[[], _Hasher],
    *,
    also_sha256: bool = False,
) -> tuple[list[str], str | None]:
    """Digests of the byte ranges of an open file (ranges must be ascending and contiguous from
    0 when `also_sha256`), plus the SHA-256 of everything read when asked.

    Raises:
        OSError: a read error, or the file ended early (it changed while being hashed).
    """
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    whole = hashlib.sha256() if also_sha256 else None
    out: list[str] = []
    for start, end in ranges:
        h = factory()
        pos = start
        while pos < end:
            n = _read_at(fd, view[: min(CHUNK, end - pos)], pos)
            if n == 0:
                raise OSError(f"file ended at byte {pos}, expected {end} (it changed while read)")
            chunk = view[:n]
            h.update(chunk)
            if whole is not None:
                whole.update(chunk)
            pos += n
        out.append(h.hexdigest())
    return out, (whole.hexdigest() if whole is not None else None)


def _read_at(fd: int, view: memoryview, pos: int) -> int:
    """Read into `view` at offset `pos` without moving a shared file position."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], pos)
    os.lseek(fd, pos, os.SEEK_SET)  # pragma: no cover - Windows (one thread per fd)
    data = os.read(fd, len(view))  # pragma: no cover
    view[: len(data)] = data  # pragma: no cover
    return len(data)  # pragma: no cover


def hash_file(path: Path, factory: Callable[[], _Hasher], *, follow_symlinks: bool) -> str:
    """The digest of a whole file, streamed.

    Raises:
        UnsafePathError: not a regular file (or a symlink when not allowed).
        OSError: read error.
    """
    fd = open_regular(path, follow_symlinks=follow_symlinks)
    try:
        size = os.fstat(fd).st_size
        digests, _ = hash_fd_ranges(fd, [(0, size)], factory)
        # The file must not have grown: the signed digest covers exactly these bytes.
        if os.fstat(fd).st_size != size:
            raise OSError(f"{safe_text(path)} changed size while it was hashed")
        return digests[0]
    finally:
        os.close(fd)


def shard_ranges(size: int, shard_size: int) -> list[tuple[int, int]]:
    """model_signing's shards: [0,N), [N,2N), ..., [kN,size); none for an empty file."""
    return [(s, min(s + shard_size, size)) for s in range(0, size, shard_size)]


def hash_shards(
    path: Path, factory: Callable[[], _Hasher], shard_size: int, *, follow_symlinks: bool
) -> dict[tuple[int, int], str]:
    """{(start, end): digest} for every shard of the file.

    Raises:
        UnsafePathError: not a regular file.
        OSError: read error or the file changed.
    """
    fd = open_regular(path, follow_symlinks=follow_symlinks)
    try:
        size = os.fstat(fd).st_size
        ranges = shard_ranges(size, shard_size)
        digests, _ = hash_fd_ranges(fd, ranges, factory)
        return dict(zip(ranges, digests, strict=True))
    finally:
        os.close(fd)


def run_parallel(tasks: list[Callable[[], T]], *, max_workers: int | None = None) -> list[T]:
    """Run the tasks on a thread pool (hashlib releases the GIL), in order; exceptions propagate."""
    if len(tasks) <= 1:
        return [t() for t in tasks]
    workers = max_workers or min(32, os.cpu_count() or 1, len(tasks))
    if workers <= 1:
        return [t() for t in tasks]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="safeload-hash") as pool:
        futures = [pool.submit(t) for t in tasks]
        return [f.result() for f in futures]


def largest_first(files: Mapping[str, Path]) -> list[str]:
    """Names ordered by size, biggest first, so a thread pool finishes together."""

    def size(name: str) -> int:
        try:
            return files[name].stat().st_size
        except OSError:
            return 0

    return sorted(files, key=size, reverse=True)
