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
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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

    def unchanged(self) -> bool:
        """Every input still gives the stamp it gave before it was read."""
        return all(check(arg) == stamp for check, arg, stamp in self.inputs)


_local = threading.local()


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
    if active():
        note(lstat_stamp, path, lstat_stamp(path))


def note_target(path: str) -> None:
    """The reader is about to read what `path` resolves to."""
    if active():
        note(stat_stamp, path, stat_stamp(path))


def opaque(reason: str) -> None:
    """This decision depends on something no stamp covers: it must not be reused."""
    rec: Recording | None = getattr(_local, "rec", None)
    if rec is not None and rec.opaque is None:
        rec.opaque = reason


__all__ = ["Recording", "active", "lstat_stamp", "note", "note_entry", "note_target", "opaque",
           "recording", "stat_stamp"]
