"""The verification cache: a repeated load of an unchanged file does not pay the hash again.

Keyed by what an attacker cannot forge without root: device, inode, size, mtime and ctime of
the file safeload holds open (ctime cannot be set by a user; any write or rename of the inode
changes it). The entry also names the trust store's state: a revocation or policy change
invalidates every entry. Where it is weaker: timestamps have a granularity (a write in the same
clock tick as the last one can keep ctime), so an entry is only made for a file whose ctime is
at least `QUIESCENT_SECONDS` old; filesystems without a real ctime (FAT, some network mounts,
Windows) would weaken it further. The cache lives in safeload's own cache dir, is written
atomically and refused if others may write to it.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from safeload._internal import paths, strictjson
from safeload._internal.atomic import write_atomic
from safeload._internal.opened import FileIdentity

QUIESCENT_SECONDS = 2.0
MAX_ENTRIES = 4096


def _path() -> Path:
    return paths.cache_dir() / "verified.json"


def _key(identity: FileIdentity) -> str:
    i = identity
    return f"{i.device}:{i.inode}:{i.size}:{i.mtime_ns}:{i.ctime_ns}"


def _read() -> dict[str, dict[str, str]]:
    p = _path()
    try:
        st = p.stat()
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or st.st_uid != os.getuid():
            return {}  # not ours alone: ignore it (it is only an optimisation)
        data = strictjson.loads(p.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(identity: FileIdentity, store_state: str) -> str | None:
    """The sha256 recorded for this exact inode state under this trust-store state, if any."""
    entry = _read().get(_key(identity))
    if isinstance(entry, dict) and entry.get("store") == store_state:
        sha = entry.get("sha256")
        if isinstance(sha, str) and len(sha) == 64:
            return sha
    return None


def remember(identity: FileIdentity, store_state: str, sha256: str) -> None:
    """Record a verified digest (best effort: a failure only costs a hash next time)."""
    if time.time_ns() - identity.ctime_ns < QUIESCENT_SECONDS * 1e9:
        return
    try:
        entries = _read()
        entries[_key(identity)] = {"sha256": sha256, "store": store_state}
        if len(entries) > MAX_ENTRIES:
            for k in list(entries)[: len(entries) - MAX_ENTRIES]:
                del entries[k]
        # A cache: losing it to a power cut costs one hash, so no fsync.
        write_atomic(_path(), json.dumps(entries).encode(), durable=False, mode=0o600,
                     dir_mode=0o700)
    except OSError:
        pass
