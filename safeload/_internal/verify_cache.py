"""The verification cache: a repeated load of an unchanged file does not pay the hash again.

Keyed by what an attacker cannot forge without root: device, inode, size, mtime and ctime of
the file safeload holds open (ctime cannot be set by a user; any write or rename of the inode
changes it). The entry also names the trust store's state: a revocation or policy change
invalidates every entry. Where it is weaker: timestamps have a granularity (a write in the same
clock tick as the last one can keep ctime), so an entry is only made for a file whose ctime is
at least `QUIESCENT_SECONDS` old; filesystems without a real ctime (FAT, some network mounts,
Windows) would weaken it further. The cache lives in safeload's own cache dir, is written
atomically and ignored if it is a link or others may write to it or to a folder above it.

Cost in a hot loop (issue 11): the file is parsed once per process and again only when its
(device, inode, size, mtime, ctime) changes, and new entries are written in batches (at
`FLUSH_COUNT` entries, when the oldest is `FLUSH_SECONDS` old at the next entry, and at exit,
multiprocessing workers included), merged with what other processes wrote meanwhile. A crash
loses only the queued entries: a hash each, next time.
"""

from __future__ import annotations

import atexit
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

from safeload._internal import paths, strictjson
from safeload._internal.atomic import write_atomic
from safeload._internal.consulted import QUIESCENT_SECONDS
from safeload._internal.opened import FileIdentity
from safeload._internal.private_dir import others_could_replace

MAX_ENTRIES = 4096
FLUSH_COUNT = 64
FLUSH_SECONDS = 1.0

Entries = dict[str, dict[str, str]]

_LOCK = threading.Lock()
_parsed: tuple[tuple[Path, int, int, int, int, int], Entries] | None = None  # (stat key, data)
_pending: Entries = {}
_pending_path: Path | None = None  # the cache file the queue belongs to (SAFELOAD_HOME may move)
_pending_since = 0.0
_exit_registered = False


def _path() -> Path:
    return paths.cache_dir() / "verified.json"


def _key(identity: FileIdentity) -> str:
    i = identity
    return f"{i.device}:{i.inode}:{i.size}:{i.mtime_ns}:{i.ctime_ns}"


def _read(p: Path) -> Entries:
    """The file's entries, parsed again only when the file changed (callers must not mutate).

    Ignored (it is only an optimisation, and an entry stands in for a hash compared with a
    signature) unless it is a regular file of ours alone, not a link, in folders no other user
    controls (review P-1: a shared cache folder let another user plant a "verified" record)."""
    global _parsed
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) \
                or st.st_uid != os.getuid():
            return {}
        sig = (p, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if _parsed is not None and _parsed[0] == sig:
            return _parsed[1]
        if others_could_replace(p) is not None:
            return {}
        with os.fdopen(os.dup(fd), "rb") as f:
            data = strictjson.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return {}
    finally:
        os.close(fd)
    entries = data if isinstance(data, dict) else {}
    _parsed = (sig, entries)
    return entries


def lookup(identity: FileIdentity, store_state: str) -> str | None:
    """The sha256 recorded for this exact inode state under this trust-store state, if any."""
    key, path = _key(identity), _path()
    with _LOCK:
        entry = (_pending.get(key) if path == _pending_path else None) or _read(path).get(key)
    if isinstance(entry, dict) and entry.get("store") == store_state:
        sha = entry.get("sha256")
        if isinstance(sha, str) and len(sha) == 64:
            return sha
    return None


def remember(identity: FileIdentity, store_state: str, sha256: str) -> None:
    """Record a verified digest (best effort: a failure only costs a hash next time)."""
    global _pending_since, _pending_path
    if time.time_ns() - identity.ctime_ns < QUIESCENT_SECONDS * 1e9:
        return
    now, path = time.monotonic(), _path()
    with _LOCK:
        if _pending and path != _pending_path:
            _write_pending()
        if not _pending:
            _pending_since, _pending_path = now, path
            _register_exit()
        _pending[_key(identity)] = {"sha256": sha256, "store": store_state}
        if len(_pending) >= FLUSH_COUNT or now - _pending_since >= FLUSH_SECONDS:
            _write_pending()


def flush() -> None:
    """Write the queued entries now (at exit; tests). Never raises."""
    with _LOCK:
        _write_pending()


def _write_pending() -> None:
    global _parsed
    if not _pending or _pending_path is None:
        return
    path = _pending_path
    entries = {**_read(path), **_pending}
    _pending.clear()
    if len(entries) > MAX_ENTRIES:
        entries = dict(list(entries.items())[len(entries) - MAX_ENTRIES:])
    if others_could_replace(path) is not None:
        return  # never read back (`_read`): writing there would only tell others our digests
    try:
        # A cache: losing it to a power cut costs one hash, so no fsync.
        write_atomic(path, json.dumps(entries).encode(), durable=False, mode=0o600,
                     dir_mode=0o700)
    except OSError:
        return
    _parsed = None


def _register_exit() -> None:
    global _exit_registered
    if _exit_registered:
        return
    _exit_registered = True
    atexit.register(flush)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:  # a multiprocessing worker leaves through os._exit, not atexit
        mp_util.Finalize(None, flush, exitpriority=100)


def _after_fork_child() -> None:
    global _LOCK, _exit_registered
    _LOCK = threading.Lock()
    _pending.clear()  # the parent writes its own queue
    _exit_registered = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
