"""The batched writer behind `record_or_warn`: group commit, coalescing, session records.

Loads call `record_or_warn` once each. Writing every entry with its own lock, fdatasync and HEAD
rename costs about half of a repeat load, so entries are queued per ledger folder and written
together: one write and one fdatasync per batch (`ledger.append_lines`), under the writers'
lock, so batches from several processes never interleave and seq numbers stay contiguous.

A batch is written when the oldest queued entry is `FLUSH_SECONDS` (50 ms) old (a daemon
thread), when `FLUSH_COUNT` entries are queued, at interpreter exit (`atexit`, and
`multiprocessing`'s exit finalizers, which a worker runs before its `os._exit`), before a
strict-mode `record_or_warn` returns, and before anything reads the ledger (`read.read_ledger`,
hence `safeload provenance verify|list|show|export`, calls `flush`). The first entry a process
writes to a ledger is written at once, so an unwritable ledger is reported to the load that hit
it.

Two locks: `_LOCK` guards the queues and is held only for moments; `_IO` lets one batch be
written at a time. The timer and a full queue write with `_LOCK` released, so loads in other
threads go on queueing during the write and its fdatasync (a load counted against an entry
whose line is in flight becomes a tally of it once the line has its seq). Strict mode, a
process's first entry and exit write holding both: their caller waits for the write anyway.

Lines (v2; `ledger` checks their shape, `read` their references):
- session: `{"session": {"id", "pid", "python", "safeload_version", "started"}}`, written once
  per process and ledger, before the process's first entry. What does not change within a
  process lives here, once: the first entry's rarely-changing fields ("defaults") and, when
  it is a conversion, the converted store's path pattern ("output_template"), so an entry whose
  output path is that pattern at its source's digest stores `"path_from_template": true`.
- entry: `{"entry": <compact entry>, "s": <seq of its session>, "n": <loads, if more than 1>}`:
  the entry without `safeload_version` (the session's) and without empty fields.
- tally: `{"tally": [[<seq of an entry>, <more loads>], ...], "s": ..., "time": <last load>}`:
  repeated loads of content already written. A repeat is the same entry (everything but its
  time) in the same process: same file digests, same decision.
Every line is hash-chained like a v1 line, so a tally can be neither edited nor dropped without
`verify` seeing it, and `read` refuses a tally naming an entry of another session.

What can be lost (never a corrupt ledger: every state below verifies):
- a crash or `kill -9`: the entries and tallies still queued, at most `FLUSH_SECONDS` worth (or
  `FLUSH_COUNT` entries) of non-strict loads. A kill mid-write leaves a torn line, which
  `verify` reports and the next writer moves to `torn/`.
- a power loss: the same, plus a HEAD update (HEAD is behind, which verifies).
- strict mode (`strict=True`): nothing. The entry, and everything queued before it, is on disk
  (fdatasync) before `record_or_warn` returns, so a load the caller received is recorded.

Warnings: a ledger that cannot be written is warned about once per folder and reason per
process (and logged each time); later failures for the same reason are logged only.

Forks (DataLoader workers): a child starts with an empty queue and a new session; the parent
keeps and writes what it had queued. The queue's lock is held across `fork` so that no child
inherits a half-done batch.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys
import threading
import time
import warnings as _warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safeload._internal import paths
from safeload._internal.text import get_logger
from safeload._version import __version__
from safeload.errors import ProvenanceError, ProvenanceWarning
from safeload.provenance import ledger as _ledger
from safeload.provenance.entry import ProvenanceEntry, utc_now

_logger = get_logger("safeload.provenance")

FLUSH_SECONDS = 0.05
FLUSH_COUNT = 256
SEEN_CAP = 1 << 16  # contents remembered for coalescing per ledger; beyond, written afresh


@dataclass
class _Item:
    payload: dict[str, Any]  # compact, without time-independent session fields
    n: int = 1
    seq: int | None = None  # once written
    n_written: int = 0  # the `n` its line carries, fixed when its batch is composed


@dataclass
class _Writer:
    """One ledger folder's queue and this process's session in it."""

    directory: Path
    session: dict[str, Any]
    session_seq: int | None = None
    queue: list[_Item] = field(default_factory=list)
    tally: dict[int, int] = field(default_factory=dict)
    tally_time: str = ""
    seen: dict[bytes, _Item] = field(default_factory=dict)
    oldest: float = 0.0
    warned: set[str] = field(default_factory=set)


_LOCK = threading.RLock()  # the queues; held only for moments, never across file I/O
_IO = threading.RLock()  # one batch written at a time; taken before _LOCK, never inside it
_WAKE = threading.Event()
_writers: dict[Path, _Writer] = {}
_thread: threading.Thread | None = None
_registered = False


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_session() -> dict[str, Any]:
    return {"id": os.urandom(8).hex(), "pid": os.getpid(),
            "python": ".".join(map(str, sys.version_info[:3])),
            "safeload_version": __version__, "started": _now()}


# Fields that rarely change between the entries of one process: the session record holds the
# first entry's values ("defaults"), and entries equal to them leave them out.
_DEFAULTABLE = ("action", "signature", "publisher", "trust", "license", "task", "datasets",
                "base_model", "warnings_after_path")
_DEFAULTABLE_NESTED = {"converted_from": ("format", "sandbox_layers"),
                       "source": ("file", "purl")}


def _source_path(payload: Mapping[str, Any]) -> str | None:
    source = payload.get("source")
    path = source.get("path") if isinstance(source, Mapping) else None
    return path if isinstance(path, str) and path else None


def _relative_warnings(payload: dict[str, Any]) -> dict[str, Any]:
    """Warnings that start with the entry's own path are stored without it (the path is long
    and the rest is the same from file to file)."""
    path, warns = _source_path(payload), payload.get("warnings")
    if path and warns and all(isinstance(w, str) and w.startswith(path) for w in warns):
        payload = {k: v for k, v in payload.items() if k != "warnings"}
        payload["warnings_after_path"] = [w[len(path):] for w in warns]
    return payload


def _converted_file(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """(source digest, output path) of a conversion's one output file, else None."""
    conv, files = payload.get("converted_from"), payload.get("files")
    sha = conv.get("sha256") if isinstance(conv, Mapping) else None
    if not (isinstance(sha, str) and sha and isinstance(files, list) and len(files) == 1
            and isinstance(files[0], Mapping) and isinstance(files[0].get("path"), str)):
        return None
    return sha, files[0]["path"]


def _output_template(payload: Mapping[str, Any]) -> str | None:
    """The converted store's path pattern, "{root}/" + "{sha256}" + "{suffix}": every output
    path names its source's digest, so entries whose path fits it leave the path out."""
    found = _converted_file(payload)
    if found is None or found[1].count(found[0]) != 1:
        return None
    head, tail = found[1].split(found[0])
    return head + "{sha256}" + tail


def _compact_files(payload: dict[str, Any], template: str | None) -> dict[str, Any]:
    found = _converted_file(payload) if template else None
    if found is None or template is None or template.replace("{sha256}", found[0]) != found[1]:
        return payload
    rest = {k: v for k, v in payload["files"][0].items() if k != "path"}
    return {**payload, "files": [{**rest, "path_from_template": True}]}


def _expand_files(out: dict[str, Any], session: Mapping[str, Any]) -> None:
    files = out.get("files")
    if not (isinstance(files, list) and files and isinstance(files[0], Mapping)
            and "path_from_template" in files[0]):
        return
    template, conv = session.get("output_template"), out.get("converted_from")
    sha = conv.get("sha256") if isinstance(conv, Mapping) else None
    if (len(files) != 1 or files[0]["path_from_template"] is not True or "path" in files[0]
            or not isinstance(template, str) or not isinstance(sha, str)):
        raise ValueError("malformed path_from_template")
    item = {k: v for k, v in files[0].items() if k != "path_from_template"}
    out["files"] = [{**item, "path": template.replace("{sha256}", sha)}]


def pick_defaults(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The session's defaults, from its first entry."""
    rel = _relative_warnings(dict(payload))
    out = {k: rel[k] for k in _DEFAULTABLE if k in rel}
    for key, subkeys in _DEFAULTABLE_NESTED.items():
        value = rel.get(key)
        if isinstance(value, Mapping):
            out[key] = {k: value[k] for k in subkeys if k in value}
    return out


def compact(payload: Mapping[str, Any], session: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as a v2 line stores it: no field equal to the session's (its version and its
    defaults), no empty field the session has no default for. `expand` undoes it exactly."""
    defaults = session.get("defaults") or {}
    out: dict[str, Any] = {}
    slim = _compact_files(dict(payload), session.get("output_template"))
    for key, value in _relative_warnings(slim).items():
        if key == "safeload_version" and value == session.get("safeload_version"):
            continue
        if key in defaults:
            default = defaults[key]
            if value == default:
                continue
            if isinstance(value, dict) and isinstance(default, dict):
                value = {k: v for k, v in value.items() if k not in default or v != default[k]}
        elif value in (None, [], {}, "") and not (
                key == "warnings" and "warnings_after_path" in defaults):
            continue  # (warnings kept, even empty, where a default would stand in for them)
        out[key] = value
    return out


def expand(stored: Mapping[str, Any], session: Mapping[str, Any]) -> dict[str, Any]:
    """The entry dict of a compact entry (`ProvenanceEntry.from_dict` fills the empty fields)."""
    defaults = session.get("defaults") or {}
    out = dict(stored)
    for key, default in defaults.items() if isinstance(defaults, Mapping) else ():
        if key == "warnings_after_path" and "warnings" in out:
            continue
        if key not in out:
            out[key] = default
        elif isinstance(out[key], dict) and isinstance(default, dict):
            out[key] = {**default, **out[key]}
    out.setdefault("safeload_version", session.get("safeload_version"))
    _expand_files(out, session)
    after = out.pop("warnings_after_path", None)
    if after is not None:
        path = _source_path(out)
        if not isinstance(after, list) or path is None or "warnings" in out:
            raise ValueError("malformed warnings_after_path")
        out["warnings"] = [path + w if isinstance(w, str) else w for w in after]
    return out


def _content_key(payload: Mapping[str, Any]) -> bytes:
    """What makes two loads the same: everything but the time."""
    rest = {k: v for k, v in payload.items() if k != "time"}
    return hashlib.sha256(_ledger.canonical(rest)).digest()


def _writer(directory: Path) -> _Writer:
    w = _writers.get(directory)
    if w is None:
        w = _writers[directory] = _Writer(directory, _new_session())
    return w


def _enqueue(w: _Writer, payload: dict[str, Any]) -> bytes:
    key = _content_key(payload)
    seen = w.seen.get(key)
    if seen is not None:
        if seen.seq is None:
            seen.n += 1
        else:
            w.tally[seen.seq] = w.tally.get(seen.seq, 0) + 1
            w.tally_time = payload["time"]
    else:
        if w.session_seq is None and "defaults" not in w.session:
            w.session["defaults"] = pick_defaults(payload)
        if w.session_seq is None and "output_template" not in w.session:
            template = _output_template(payload)
            if template is not None:
                w.session["output_template"] = template
        item = _Item(compact(payload, w.session))
        if len(w.seen) >= SEEN_CAP:
            w.seen.clear()
        w.seen[key] = item
        w.queue.append(item)
    if w.oldest == 0.0:
        w.oldest = time.monotonic()
    return key


def record_again(directory: Path, key: bytes) -> bool:
    """One more load of an entry this process queued or wrote (`record_or_warn`'s receipt),
    with the same content: a tally, as `record_or_warn` would make of it, without rebuilding
    the entry. False when the entry is no longer remembered (a fork, the cap, a failed write):
    the caller records it in full. Never for strict mode (a tally is not flushed here)."""
    with _LOCK:
        w = _writers.get(directory)
        seen = w.seen.get(key) if w is not None else None
        if w is None or seen is None:
            return False
        if seen.seq is None:
            seen.n += 1
        else:
            w.tally[seen.seq] = w.tally.get(seen.seq, 0) + 1
            w.tally_time = utc_now()
        if w.oldest == 0.0:
            w.oldest = time.monotonic()
        _start()
        _WAKE.set()
    return True


@dataclass
class _Batch:
    """A queue taken off its writer, to be written while loads go on queueing."""

    writer: _Writer
    queue: list[_Item]
    tally: dict[int, int]
    tally_time: str

    @property
    def loads(self) -> int:
        return sum(item.n for item in self.queue) + sum(self.tally.values())


def _detach(w: _Writer) -> _Batch | None:
    """Take `w`'s queue for writing; the caller holds _IO and _LOCK."""
    if not w.queue and not w.tally:
        return None
    batch = _Batch(w, w.queue, w.tally, w.tally_time)
    w.queue, w.tally, w.oldest = [], {}, 0.0
    for item in batch.queue:
        item.n_written = item.n
    return batch


def _write(batch: _Batch) -> tuple[int, str, list[tuple[str, _Item | None]]]:
    """Write `batch` as one append (the caller holds _IO, and _LOCK or not): (last seq, head
    digest, what each line was). Reads only the batch and the writer's session, which nothing
    changes while _IO is held."""
    w = batch.writer
    layout: list[tuple[str, _Item | None]] = []

    def compose(first: int) -> list[dict[str, Any]]:
        layout.clear()
        bodies: list[dict[str, Any]] = []
        session_seq = w.session_seq
        if session_seq is None:
            session_seq = first
            bodies.append({"session": w.session})
            layout.append(("session", None))
        for item in batch.queue:
            body: dict[str, Any] = {"entry": item.payload, "s": session_seq}
            if item.n_written > 1:
                body["n"] = item.n_written
            bodies.append(body)
            layout.append(("entry", item))
        if batch.tally:
            bodies.append({"tally": [[k, v] for k, v in sorted(batch.tally.items())],
                           "s": session_seq, "time": batch.tally_time})
            layout.append(("tally", None))
        return bodies

    last, digest = _ledger.append_lines(w.directory, compose, version=_ledger.LINE_VERSION_2)
    return last, digest, layout


def _settle(batch: _Batch, written: tuple[int, str, list[tuple[str, _Item | None]]] | None
            ) -> None:
    """After the write (the caller holds _LOCK): give the lines their seqs, and turn the loads
    counted against an entry while its line was being written into a tally of it. After a
    failure, forget the lost entries: a repeat must not count against an unwritten entry."""
    w = batch.writer
    if written is None:
        lost = {id(item) for item in batch.queue}
        w.seen = {k: v for k, v in w.seen.items() if id(v) not in lost}
        return
    last, _, layout = written
    first = last - len(layout) + 1
    for offset, (kind, item) in enumerate(layout):
        if kind == "session":
            w.session_seq = first + offset
        elif item is not None:
            item.seq = first + offset
            late = item.n - item.n_written
            if late > 0:
                w.tally[item.seq] = w.tally.get(item.seq, 0) + late
                w.tally_time = utc_now()  # (those loads were before now)
                if w.oldest == 0.0:
                    w.oldest = time.monotonic()


def _flush_writer(w: _Writer) -> str | None:
    """Write `w`'s queue as one batch, holding _LOCK throughout (the caller holds _IO and
    _LOCK): for the writes a caller waits for anyway (strict mode, a process's first entry,
    exit). The new head digest.

    Raises:
        ProvenanceError: the batch could not be written (it is dropped: the caller reports it).
    """
    batch = _detach(w)
    if batch is None:
        return None
    try:
        written = _write(batch)
    except ProvenanceError:
        _settle(batch, None)
        raise
    _settle(batch, written)
    return written[1]


def _flush_aside(w: _Writer, *, stacklevel: int) -> None:
    """Write `w`'s queue with _LOCK released during the write and sync, so loads in other
    threads go on queueing (the timer, and a full queue). The caller holds _IO, not _LOCK."""
    with _LOCK:
        batch = _detach(w)
    if batch is None:
        return
    try:
        written = _write(batch)
    except ProvenanceError as exc:
        with _LOCK:
            _settle(batch, None)
            _report(w, exc, batch.loads, stacklevel=stacklevel + 1)
        return
    with _LOCK:
        _settle(batch, written)


def _report(w: _Writer, exc: ProvenanceError, lost: int, *, stacklevel: int) -> None:
    """Warn once per folder and reason; log every time."""
    message = f"provenance NOT recorded ({lost} {'entry' if lost == 1 else 'entries'}): {exc}"
    _logger.warning("%s", message)
    reason = str(exc)
    if reason not in w.warned:
        w.warned.add(reason)
        _warnings.warn(message, ProvenanceWarning, stacklevel=stacklevel + 1)


def _try_flush(w: _Writer, *, stacklevel: int) -> str | None:
    """`_flush_writer`, reporting a failure; the head digest, or None (nothing written)."""
    lost = sum(item.n for item in w.queue) + sum(w.tally.values())
    try:
        return _flush_writer(w)
    except ProvenanceError as exc:
        _report(w, exc, lost, stacklevel=stacklevel + 1)
        return None


def flush(directory: Path | None = None) -> None:
    """Write what this process has queued (for `directory`, or every ledger); never raises.

    A failure is warned about (once per folder and reason) and the queued entries are dropped.
    """
    with _IO, _LOCK:
        targets = list(_writers.values()) if directory is None else [
            w for d, w in _writers.items() if d == directory]
        for w in targets:
            _try_flush(w, stacklevel=3)


def _run() -> None:
    """The timer: writes each queue once its oldest entry is FLUSH_SECONDS old."""
    while True:
        _WAKE.wait()
        time.sleep(min(FLUSH_SECONDS, 0.05))  # short slices: FLUSH_SECONDS may change
        with _IO:
            with _LOCK:
                now = time.monotonic()
                due = [w for w in _writers.values()
                       if w.oldest and now - w.oldest >= FLUSH_SECONDS]
                if not due and not any(w.oldest for w in _writers.values()):
                    _WAKE.clear()  # under _LOCK, as `record_or_warn` sets it: none is lost
            for w in due:
                _flush_aside(w, stacklevel=2)


def _start() -> None:
    global _thread, _registered
    if not _registered:
        atexit.register(flush)
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:  # a multiprocessing worker leaves through os._exit, not atexit
            mp_util.Finalize(None, flush, exitpriority=100)
        _registered = True
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_run, name="safeload-ledger", daemon=True)
        _thread.start()


def record_or_warn(entry: ProvenanceEntry | Mapping[str, Any], *, strict: bool,
                   ledger: Path | None = None,
                   receipt: list[tuple[Path, bytes]] | None = None) -> str | None:
    """Record a load, batched (see the module docstring), with the policy for a ledger that
    cannot be written.

    strict: the entry (and everything queued before it) is durable before this returns, and a
    failure raises: the caller's load must not go ahead. Otherwise the entry is queued; a failure
    is warned about through `warnings.warn(ProvenanceWarning)` (once per folder and reason) and
    the log: never silently.

    Returns the head digest when the entry was written before returning (strict mode, or a
    process's first entry in this ledger), else None (queued, or not recorded). `receipt` gets
    (ledger folder, content key), with which `record_again` counts a repeat of this entry.

    Raises:
        ProvenanceError: only when `strict` (an invalid entry, or the ledger cannot be written).
    """
    try:
        payload = _ledger.entry_payload(entry)
    except ProvenanceError:
        if strict:
            raise
        _logger.warning("provenance NOT recorded: invalid entry")
        _warnings.warn("provenance NOT recorded: invalid entry", ProvenanceWarning, stacklevel=2)
        return None
    directory = ledger if ledger is not None else paths.ledger_dir()
    with _LOCK:
        w = _writer(directory)
        wait = strict or w.session_seq is None
        if not wait:
            key = _enqueue(w, payload)
            if receipt is not None:
                receipt.append((directory, key))
            _start()
            _WAKE.set()
            if len(w.queue) < FLUSH_COUNT:
                return None
    if not wait:  # a full queue: written by this thread, loads in others go on queueing
        with _IO:
            _flush_aside(w, stacklevel=3)
        return None
    # The caller waits for this write (strict mode, or the process's first entry, which tells
    # the load whether the ledger can be written): with _IO taken first, no batch is in flight,
    # so this entry is in the batch written here, and the session record is written once.
    with _IO, _LOCK:
        key = _enqueue(w, payload)
        if receipt is not None:
            receipt.append((directory, key))
        head = _flush_writer(w) if strict else _try_flush(w, stacklevel=3)  # strict raises
        _start()
        return head


def _before_fork() -> None:
    # _IO and the ledger's thread lock too: a fork while another thread writes (or reads,
    # `verify`) the ledger would leave the child's copy of that lock held forever, and its
    # first load waiting on it (review H).
    _IO.acquire()
    _LOCK.acquire()
    _ledger.THREAD_LOCK.acquire()


def _after_fork_parent() -> None:
    _ledger.THREAD_LOCK.release()
    _LOCK.release()
    _IO.release()


def _after_fork_child() -> None:
    """A child has no thread, owns none of the parent's queue, and opens its own session."""
    global _LOCK, _IO, _WAKE, _thread, _registered
    _ledger.THREAD_LOCK.release()  # taken by this thread in _before_fork
    _LOCK = threading.RLock()
    _IO = threading.RLock()
    _WAKE = threading.Event()
    _thread = None
    _writers.clear()
    # Register the exit hooks again on the child's first record: a multiprocessing worker
    # clears the finalizers it inherits after the fork, before it runs its target.
    _registered = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                        after_in_child=_after_fork_child)


__all__ = ["FLUSH_COUNT", "FLUSH_SECONDS", "compact", "expand", "flush", "record_again",
           "record_or_warn"]
