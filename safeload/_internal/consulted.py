"""The files a load's decision was read from, so that a repeat load can tell it still holds.

The repeat-load memo (`safeload/_internal/repeat.py`) reuses a decision (trust, licence,
inspection) only while every input to it is unchanged. The inputs are not listed by hand in the
memo: each reader of one (the trust store, the observations, the fleet subscription, the model
card and its candidates, signature candidates, the held path's own links) calls `note` with the
stamp it took BEFORE reading, while a recording is active. A reader that consults something no
stamp can cover (a scheduled fleet sync, a base model's card in the Hub cache) calls `opaque`:
that decision is never reused.

Stamps are cheap `stat` results: (device, inode, mode, uid, size, mtime, ctime) of the entry
itself (`lstat`: a swapped link is a new inode) or None for "absent". Equal stamps mean the same
bytes for the same reasons the verification cache gives (`verify_cache.py`).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

QUIESCENT_SECONDS = 2.0  # verify_cache's: a write in the same clock tick keeps the stamps
Stamp = object
Check = Callable[[str], Stamp]


def lstat_stamp(path: str) -> Stamp:
    """The entry itself (a link is not followed): its identity and content stamps, or None."""
    return _stamp(os.lstat, path)


def stat_stamp(path: str) -> Stamp:
    """What the path resolves to (links followed), or None."""
    return _stamp(os.stat, path)


def _stamp(stat: Callable[[str], os.stat_result], path: str) -> Stamp:
    try:
        st = stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)


@dataclass
class Recording:
    """What one decision consulted: (check, argument, stamp) triples, and why it is opaque."""

    inputs: list[tuple[Check, str, Stamp]] = field(default_factory=list)
    opaque: str | None = None
    folders: set[str] = field(default_factory=set)  # noted by `folder_stamp`

    def unchanged(self) -> bool:
        """Every input still gives the stamp it gave before it was read."""
        _pass.stats = {}
        try:
            return all(check(arg) == stamp for check, arg, stamp in self.inputs)
        finally:
            _pass.stats = None


_local = threading.local()
_pass = threading.local()  # the folder stats of one `unchanged` pass


def shared_lstat(path: str) -> os.stat_result | None:
    """`os.lstat(path)`, or None when absent; within one `Recording.unchanged` pass each path
    is looked at once (the checks of one pass describe one moment, microseconds long)."""
    stats: dict[str, os.stat_result | None] | None = getattr(_pass, "stats", None)
    if stats is not None and path in stats:
        return stats[path]
    try:
        st: os.stat_result | None = os.lstat(path)
    except OSError:
        st = None
    if stats is not None:
        stats[path] = st
    return st


def shared_stat(path: str) -> os.stat_result | None:
    """`os.stat(path)` through `shared_lstat` (a link is followed)."""
    st = shared_lstat(path)
    if st is None or not stat.S_ISLNK(st.st_mode):
        return st
    try:
        return os.stat(path)
    except OSError:
        return None


@contextmanager
def recording() -> Iterator[Recording]:
    """Collect what the readers called in this block (this thread only) consulted."""
    rec = Recording()
    outer = getattr(_local, "rec", None)
    _local.rec = rec
    try:
        yield rec
    finally:
        _local.rec = outer
        if outer is not None:  # a nested decision's inputs are the outer one's too
            outer.inputs.extend(rec.inputs)
            outer.opaque = outer.opaque or rec.opaque


def active() -> bool:
    return getattr(_local, "rec", None) is not None


def note(check: Check, arg: str, stamp: Stamp) -> None:
    """`check(arg)` gave `stamp` before the reader read what `arg` names."""
    rec: Recording | None = getattr(_local, "rec", None)
    if rec is not None:
        rec.inputs.append((check, arg, stamp))


def note_entry(path: str) -> None:
    """The reader is about to look at `path` (present or not), without following a link."""
    rec: Recording | None = getattr(_local, "rec", None)
    if rec is not None and not _absent_from_quiet_folder(rec, path):
        note(lstat_stamp, path, lstat_stamp(path))


def note_target(path: str) -> None:
    """The reader is about to read what `path` resolves to."""
    rec: Recording | None = getattr(_local, "rec", None)
    if rec is not None and not _absent_from_quiet_folder(rec, path):
        note(stat_stamp, path, stat_stamp(path))


def folder_stamp(path: str) -> Stamp:
    """A folder's stamp, mtime and ctime included: a name created in it, removed from it or
    renamed into it changes the folder's mtime."""
    st = shared_stat(path)
    return None if st is None else (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_size,
                                    st.st_mtime_ns, st.st_ctime_ns)


def _absent_from_quiet_folder(rec: Recording, path: str) -> bool:
    """True (and the folder noted once) when no entry named `path` exists, not even a dangling
    link, in a folder unmodified for QUIESCENT_SECONDS: the folder's stamp then covers the
    name, and one stamp covers all the absent candidates a decision looks for in it (a card,
    signatures, config files). The folder is stamped before the name is looked up, and a
    folder modified within the quiet period (same clock tick) is never relied on."""
    folder = os.path.dirname(path)
    if not os.path.isabs(path) or not folder or folder == path:
        return False
    if folder not in rec.folders:
        stamp = folder_stamp(folder)
        if not isinstance(stamp, tuple) or \
                time.time_ns() - max(stamp[5], stamp[6]) < QUIESCENT_SECONDS * 1e9:
            return False
    else:
        stamp = ()
    try:
        os.lstat(path)
    except FileNotFoundError:
        if stamp:
            rec.folders.add(folder)
            note(folder_stamp, folder, stamp)
        return True
    except OSError:
        pass
    return False


def opaque(reason: str) -> None:
    """This decision depends on something no stamp covers: it must not be reused."""
    rec: Recording | None = getattr(_local, "rec", None)
    if rec is not None and rec.opaque is None:
        rec.opaque = reason


__all__ = ["QUIESCENT_SECONDS", "Recording", "active", "folder_stamp", "lstat_stamp", "note",
           "note_entry", "note_target", "opaque", "recording", "shared_lstat", "shared_stat",
           "stat_stamp"]
