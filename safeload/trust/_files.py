"""The trust files on disk: who may write them, reading them bounded, atomic writes, the lock.

`trust.json` and `trust.observed.json` are read through one descriptor after the location
check (OpenSSH's StrictModes rules), written through `_internal.atomic.write_atomic` (temp file
in the same directory, fsync, rename), and changed only under a `filelock.FileLock` on the
sibling `trust.json.lock`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock

from safeload._internal import consulted, strictjson
from safeload._internal.atomic import write_atomic
from safeload._internal.private_dir import others_could_replace
from safeload._internal.text import safe_text
from safeload.errors import TrustStoreError
from safeload.trust._schema import _FIX_EDIT, _fail

MAX_STORE_BYTES = 64 * 1024 * 1024  # far above any real store; bounds a hostile file
LOCK_TIMEOUT_S = 60.0  # a writer holds the lock for milliseconds


def check_permissions(path: Path, st: os.stat_result, source: str) -> None:
    """Refuse a trust file that another user could have written (ssh StrictModes style)."""
    if os.name != "posix":
        return
    if not stat.S_ISREG(st.st_mode):
        raise _fail(source, "is not a regular file", "replace it with a regular file")
    if st.st_mode & 0o022:
        raise _fail(source, f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                    "anyone who can write it decides what safeload trusts",
                    f"chmod go-w {path}")
    uid = os.getuid()
    if st.st_uid not in (uid, 0):
        raise _fail(source, f"is owned by another user (uid {st.st_uid})",
                    f"chown {uid} {path}, or point --trust-store at your own copy")
    parent = path.parent
    try:
        pst = os.stat(parent)
    except OSError:
        return
    sticky = bool(pst.st_mode & stat.S_ISVTX)
    if pst.st_mode & 0o022 and not sticky:
        raise _fail(source, f"its directory {parent} is writable by group or others, so the "
                    "file can be replaced", f"chmod go-w {parent}")


def check_location(path: Path, source: str) -> None:
    """Refuse a store location that another user could write, whether or not the file exists
    (`_internal.private_dir`: OpenSSH's secure-path rule, folder links followed).

    Raises:
        TrustStoreError: naming the directory and the fix.
    """
    found = others_could_replace(path)
    if found is None:
        return
    problem, fix = found
    if "owned by another user" in problem:
        problem += ", who decides what safeload trusts"
        fix = (f"keep the store in a directory of your own (SAFELOAD_HOME or "
               f"--trust-store), or {fix}")
    elif "writable by group" in problem:
        problem += ", so anyone can put a trust store there"
    raise _fail(source, problem, fix)


def state_key(path: Path | str) -> tuple[tuple[int, ...] | None, ...]:
    """What a cached read of `path` depends on: the file's identity and content stamps, and
    the identity, owner and mode of every directory above it (the location rule). Equal keys
    mean the same bytes under the same permissions; any write, rename or chmod of the file, or
    a chmod, chown or replacement of a directory above it, changes the key. (A directory's own
    mtime is not part of it: files created beside it, in /tmp say, do not matter.)"""
    p = os.path.abspath(path)  # strings, not pathlib: this runs several times per load
    try:
        st: os.stat_result | None = os.lstat(p)
    except OSError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):  # the link and where it leads
        return (*state_key(os.path.realpath(p)), (hash(os.readlink(p)),))
    out: list[tuple[int, ...] | None] = [
        None if st is None else (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_size,
                                 st.st_mtime_ns, st.st_ctime_ns)]
    linked = False
    while True:
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
        # The trust store and the observations share these folders: one look each per check.
        d = consulted.shared_lstat(p)
        linked = linked or (d is not None and stat.S_ISLNK(d.st_mode))
        out.append(None if d is None else (d.st_dev, d.st_ino, d.st_mode, d.st_uid))
    if linked:  # a folder link: the folders it leads to are the location too
        out.extend(state_key(os.path.realpath(path)))
    return tuple(out)


def state_stamp(path: str) -> object:
    """`state_key` for a path string (a `consulted.note` check)."""
    return state_key(path)


def read_trust_file(path: Path, source: str) -> bytes | None:
    """The file's bytes, or None when it does not exist (in a location only we can write).

    A link is judged by where it leads too: the target's directories must pass the same
    location rule, and a link to nothing is an error, never "no store" (whoever removed the
    target would otherwise choose the default policy)."""
    check_location(path, source)
    if os.path.islink(path):
        target = Path(os.path.realpath(path))
        check_location(target, source)
        if not target.exists():
            raise _fail(source, f"is a link to {safe_text(target)}, which does not exist",
                        "restore the file it points to, or replace the link with the store")
        path = target
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fail(source, f"cannot be read ({exc.strerror})",
                    "check the path and its permissions") from exc
    try:
        st = os.fstat(fd)
        check_permissions(path, st, source)
        if st.st_size > MAX_STORE_BYTES:
            raise _fail(source, f"is larger than {MAX_STORE_BYTES} bytes", _FIX_EDIT)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_STORE_BYTES + 1)
    finally:
        os.close(fd)


def parse_json(data: bytes, source: str) -> Any:
    try:
        return strictjson.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(source, f"cannot parse ({exc})",
                    "fix the JSON, or move the file away and run `safeload trust init` "
                    "(keep a copy: it holds your keys and pins)") from exc


def write_file(path: Path, data: bytes) -> None:
    """Atomically replace a trust file, durably (it holds the user's keys and pins)."""
    write_atomic(path, data, durable=True, overwrite=True, mode=0o644, dir_mode=0o755)


@contextlib.contextmanager
def locked(store_path: Path) -> Iterator[None]:
    """Hold the store's cross-process lock (`trust.json.lock`).

    Raises: TrustStoreError when another process holds it past the timeout.
    """
    store_path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    lock = filelock.FileLock(str(store_path) + ".lock", timeout=LOCK_TIMEOUT_S, mode=0o644)
    try:
        with lock:
            yield
    except filelock.Timeout as exc:
        raise TrustStoreError(
            f"{store_path}: another process holds the trust store lock for more than "
            f"{LOCK_TIMEOUT_S:.0f} s", hint=f"check for a stuck safeload process; the lock "
            f"file is {store_path}.lock") from exc


def observed_path(store_path: Path) -> Path:
    """The sibling file with what loads learned: `trust.json` -> `trust.observed.json`."""
    return store_path.with_name(f"{store_path.stem}.observed.json")
