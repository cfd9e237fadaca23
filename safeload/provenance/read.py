"""Reading and verifying the ledger: `read_ledger`, `verify`, `require_intact`.

Readers never write: a read-only copy (an auditor's) reads without the writers' lock. What
counts as damage, and what as the harmless leftovers of a crash (a torn tail, HEAD behind), is
described in `ledger`; `read_ledger` checks the whole chain in one pass (O(n)).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from safeload._internal import paths
from safeload._internal.private_dir import others_could_replace
from safeload._internal.text import safe_text
from safeload.errors import LedgerIntegrityError, ProvenanceError
from safeload.provenance.batch import expand, flush
from safeload.provenance.entry import ProvenanceEntry
from safeload.provenance.ledger import (
    GENESIS,
    LEDGER_NAME,
    LINE_VERSION,
    MAX_ENTRY_BYTES,
    THREAD_LOCK,
    Head,
    Line,
    ledger_lock,
    parse_line,
    read_head,
    segments,
)


@dataclass(frozen=True)
class LedgerRecord:
    """One whole ledger line: its place in the chain and its entry.

    `verified` is False for lines at or after the first bad one. `entry` is None when the line
    is not a valid entry at all.
    """

    line: int  # 1-based line number, counted across all segments, oldest first
    seq: int | None
    digest: str | None
    prev: str | None
    entry: ProvenanceEntry | None
    verified: bool
    repair: Mapping[str, Any] | None = None
    count: int = 1  # loads this entry stands for (repeats coalesced by the batched writer)
    session: str | None = None  # the writing process's session id (v2 lines)

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "seq": self.seq, "digest": self.digest, "prev": self.prev,
                "verified": self.verified, "repair": dict(self.repair) if self.repair else None,
                "count": self.count, "session": self.session,
                "entry": self.entry.to_dict() if self.entry else None}


@dataclass(frozen=True)
class BadEntry:
    """The first entry that does not verify."""

    line: int  # 1-based line across all segments; 0 for the HEAD file itself
    seq: int | None  # the seq the entry should have had
    reason: str

    def describe(self) -> str:
        if self.line == 0:
            return f"HEAD file: {self.reason}"
        where = f"entry {self.seq} (line {self.line})" if self.seq is not None else (
            f"line {self.line}")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found. `ok` means the whole chain verifies up to its last whole entry."""

    ok: bool
    entries: int  # whole entries that verify
    head: str | None  # digest of the last entry that verifies
    head_seq: int | None
    recorded_head: str | None  # what the HEAD file says
    first_bad: BadEntry | None
    torn_tail_bytes: int = 0
    notes: tuple[str, ...] = ()
    path: str = ""
    loads: int = 0  # loads, conversions and verifications recorded (tallied repeats included)
    segments: int = 1  # files the chain spans (rotated segments and ledger.jsonl)
    # Why a chain that verifies proves nothing: others could have rewritten all of it.
    exposed: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "head": self.head, "head_seq": self.head_seq,
            "recorded_head": self.recorded_head,
            "first_bad": dataclasses.asdict(self.first_bad) if self.first_bad else None,
            "torn_tail_bytes": self.torn_tail_bytes, "notes": list(self.notes),
            "path": self.path, "loads": self.loads, "segments": self.segments,
            "exposed": self.exposed,
        }

    def describe(self) -> str:
        if self.ok:
            spread = f" in {self.segments} segments" if self.segments > 1 else ""
            return (f"ledger OK: {self.entries} entries ({self.loads} recorded operations)"
                    f"{spread}, head {self.head or '(empty)'}")
        if self.first_bad is None and self.exposed is not None:
            return f"ledger NOT VERIFIED: {self.exposed}"
        assert self.first_bad is not None
        return f"ledger BROKEN at {self.first_bad.describe()}"


@dataclass(frozen=True)
class LedgerState:
    """Everything `read_ledger` found: the records and the verification report."""

    records: tuple[LedgerRecord, ...]
    report: VerifyReport


def _lines(path: Path, size: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line with its newline if it has one) over the first `size` bytes.

    A line longer than any entry is yielded as None (read through, never held in memory).
    """
    with open(path, "rb") as fh:
        remaining, number = size, 0
        while remaining > 0:
            raw = fh.readline(min(remaining, MAX_ENTRY_BYTES + 2))
            if not raw:
                break
            remaining -= len(raw)
            number += 1
            if raw.endswith(b"\n") or remaining == 0:
                yield number, raw
                continue
            while remaining > 0:  # overlong: skip to the end of this line
                more = fh.readline(min(remaining, 1 << 20))
                if not more:
                    break
                remaining -= len(more)
                if more.endswith(b"\n"):
                    break
            yield number, None


def _snapshot(directory: Path) -> tuple[list[tuple[Path, int]], Head | None, str | None,
                                         list[str]]:
    """([(segment, size)], head or None if malformed, head error, notes), taken under the lock.

    Segments are the rotated files, oldest first, then `ledger.jsonl`. The ledger only grows
    past a whole line, so the first `size` bytes read afterwards are the ones seen here, while
    writers go on (a rotation renames a file whose content no longer changes). Without write
    access (an auditor's copy) the lock cannot be taken, and reading goes ahead without it.
    """
    notes: list[str] = []
    if not directory.is_dir():
        return [], Head(-1, GENESIS), None, notes
    lock = ledger_lock(directory)
    with THREAD_LOCK:
        try:
            lock.acquire()
            locked = True
        except (OSError, filelock.Timeout):
            locked = False
            notes.append("read without the writers' lock (a write in progress may show as torn)")
        try:
            files: list[tuple[Path, int]] = []
            for path in [*segments(directory), directory / LEDGER_NAME]:
                try:
                    files.append((path, path.stat().st_size))
                except FileNotFoundError:
                    pass
            try:
                return files, read_head(directory), None, notes
            except ValueError as exc:
                return files, None, str(exc), notes
        finally:
            if locked:
                lock.release()


class _Chain:
    """The meaning of v2 lines, checked as the chain is read: sessions and what refers to them."""

    def __init__(self) -> None:
        self.sessions: dict[int, Mapping[str, Any]] = {}
        self.entry_session: dict[int, int] = {}  # entry seq -> its session's seq
        self.extra: dict[int, int] = {}  # entry seq -> tallied repeats

    def session_of(self, line: Line) -> Mapping[str, Any]:
        session = self.sessions.get(line.body["s"])
        if session is None:
            raise ValueError(f"refers to session {line.body['s']}, which is not a session record")
        return session

    def read(self, line: Line) -> tuple[ProvenanceEntry | None, int, str | None]:
        """(entry or None for a session/tally line, its count, session id); ValueError if the
        line's references do not hold."""
        body = line.body
        if body["v"] == LINE_VERSION:
            return ProvenanceEntry.from_dict(body["entry"]), 1, None
        if "session" in body:
            self.sessions[line.seq] = body["session"]
            return None, 0, None
        session = self.session_of(line)
        if "entry" in body:
            entry = ProvenanceEntry.from_dict(expand(body["entry"], session))
            self.entry_session[line.seq] = body["s"]
            return entry, body.get("n", 1), str(session.get("id"))
        for seq, _more in body["tally"]:
            if self.entry_session.get(seq) != body["s"]:
                raise ValueError(f"tallies entry {seq}, which is not an entry of its session")
        for seq, more in body["tally"]:
            self.extra[seq] = self.extra.get(seq, 0) + more
        return None, 0, None


def _all_lines(files: list[tuple[Path, int]]) -> Iterator[tuple[int, Path, bytes | None, bool]]:
    """(global line number, segment, raw line, is in the last segment) across the segments."""
    offset = 0
    for index, (path, size) in enumerate(files):
        number = 0
        for number, raw in _lines(path, size):
            yield offset + number, path, raw, index == len(files) - 1
        offset += number


def read_ledger(ledger: Path | None = None, *, anchor: str | None = None) -> LedgerState:
    """Read and verify the whole ledger, across its segments.

    Writes what this process has queued for it first (`batch.flush`), so a load's entry shows.

    Args:
        ledger: the ledger folder (default: `ledger_dir()`); may be a read-only copy.
        anchor: a head digest kept elsewhere; the chain must contain it.

    Raises:
        OSError: the ledger exists but cannot be read.
    """
    directory = ledger if ledger is not None else paths.ledger_dir()
    flush(directory)
    path = directory / LEDGER_NAME
    files, head, head_error, notes = _snapshot(directory)
    records: list[LedgerRecord] = []
    first_bad: BadEntry | None = None
    prev, expected = GENESIS, 0
    last_two: list[str] = []  # digests of the last two verified entries
    head_line_digest: str | None = None
    anchor_found = False
    torn = 0
    last_line = 0
    chain = _Chain()
    by_seq: dict[int, int] = {}  # entry seq -> index in records
    head_repairs: list[str] = []
    for number, segment, raw, is_last in _all_lines(files):
        if raw is not None and not raw.endswith(b"\n"):
            if is_last:
                torn = len(raw)  # only the last line can lack its newline
                break
            raw = None if first_bad is not None else raw
            if first_bad is None:
                first_bad = BadEntry(number, expected,
                                     f"{segment.name} ends in a partial line (a rotated segment "
                                     f"is always whole: edited or cut)")
            records.append(LedgerRecord(number, None, None, None, None, False))
            continue
        try:
            if raw is None:
                raise ValueError(f"line longer than {MAX_ENTRY_BYTES} bytes")
            line = parse_line(raw[:-1])
            good = first_bad is None
            entry, count, session = chain.read(line) if good else _unchecked(line)
        except (ValueError, ProvenanceError) as exc:
            reason = str(exc).removeprefix("invalid provenance entry: ")
            if first_bad is None:
                first_bad = BadEntry(number, expected, reason)
            records.append(LedgerRecord(number, None, None, None, None, False))
            continue
        if good and line.seq != expected:
            reason = (f"entry {expected} is missing (deleted?); found entry {line.seq}"
                      if line.seq > expected else
                      f"entry {line.seq} appears again after entry {expected - 1} "
                      f"(reordered or duplicated)")
            first_bad, good = BadEntry(number, expected, reason), False
        elif good and line.prev != prev:
            first_bad = BadEntry(number, expected,
                                 "does not chain to the previous entry (an entry before it "
                                 "was deleted, replaced or reordered)")
            good = False
        if good:
            prev, expected = line.digest, expected + 1
            last_two = [*last_two[-1:], line.digest]
            last_line = number
            if head is not None and line.seq == head.seq:
                head_line_digest = line.digest
            if anchor is not None and line.digest == anchor:
                anchor_found = True
        repair = line.body.get("repair")
        if good and isinstance(repair, Mapping) and "head" in repair:
            head_repairs.append(f"entry {line.seq}: HEAD was found {safe_text(repair['head'])} "
                                "and rewritten; the ledger may have been cut off before it")
        if entry is None and good:
            continue  # a session record or a tally: part of the chain, not an entry
        if entry is not None:
            by_seq[line.seq] = len(records)
        records.append(LedgerRecord(number, line.seq, line.digest, line.prev, entry, good,
                                    line.body.get("repair"), count, session))
    for seq, more in chain.extra.items():
        index = by_seq[seq]
        records[index] = dataclasses.replace(records[index], count=records[index].count + more)
    count = expected
    if torn:
        notes.append(f"torn tail: {torn} bytes after entry {count - 1 if count else '-'} are "
                     f"an interrupted write, not an entry (the next write moves them to torn/)")
    if first_bad is None:
        first_bad = _check_head(head, head_error, count, head_line_digest, last_line, notes)
        if first_bad is not None and first_bad.seq is not None:
            bad_from = first_bad.seq
            records = [dataclasses.replace(r, verified=False)
                       if r.seq is not None and r.seq >= bad_from else r for r in records]
    if first_bad is None and anchor is not None and not anchor_found:
        first_bad = BadEntry(last_line + 1, None,
                             f"anchor {anchor} is not in the chain (rewritten or cut off)")
    repairs = sum(1 for r in records if r.repair and "torn_bytes" in r.repair)
    if repairs:
        notes.append(f"{repairs} entries record the repair of a torn write")
    notes.extend(head_repairs)
    report = VerifyReport(
        ok=first_bad is None, entries=count, head=last_two[-1] if last_two else None,
        head_seq=count - 1 if count else None,
        recorded_head=head.digest if head is not None and head.seq >= 0 else None,
        first_bad=first_bad, torn_tail_bytes=torn, notes=tuple(notes), path=str(path),
        loads=sum(r.count for r in records if r.verified), segments=max(1, len(files)))
    return LedgerState(tuple(records), report)


def chain_lines(ledger: Path | None = None) -> Iterator[Line]:
    """Every whole line that parses, in chain order across the segments; no chain check (run
    `read_ledger` first). What `shipping` exports: session and tally lines included."""
    directory = ledger if ledger is not None else paths.ledger_dir()
    flush(directory)
    files, _head, _err, _notes = _snapshot(directory)
    for _number, _segment, raw, _last in _all_lines(files):
        if raw is None or not raw.endswith(b"\n"):
            continue
        try:
            yield parse_line(raw[:-1])
        except ValueError:
            continue


def _unchecked(line: Line) -> tuple[ProvenanceEntry | None, int, str | None]:
    """A line after the first bad one: shown for what it says, its references not followed."""
    body = line.body
    if body["v"] == LINE_VERSION:
        return ProvenanceEntry.from_dict(body["entry"]), 1, None
    if "entry" in body:
        return ProvenanceEntry.from_dict(body["entry"]), body.get("n", 1), None
    return None, 0, None


def _check_head(head: Head | None, head_error: str | None, count: int,
                head_line_digest: str | None, last_line: int, notes: list[str]) -> BadEntry | None:
    """Compare HEAD with the verified chain; None when they agree or HEAD is merely behind.

    Behind is what crashes and power losses leave (see `ledger._write_head`); ahead of the
    chain, on a different chain, or missing next to more than one entry is damage.
    """
    if head is None:
        return BadEntry(0, None, f"{head_error}")
    last_seq = count - 1
    # Fail closed: an empty or missing HEAD next to entries is what a crash can leave, and also
    # exactly what someone who cut the ledger's end would leave. Nothing rules truncation out,
    # so it does not verify; the next write rewrites HEAD and records the repair on the chain.
    if head.lost and count:
        return BadEntry(0, None, "empty (emptied, or its update was lost in a crash) while the "
                        "ledger has entries: the ledger may have been cut off")
    if head.seq == -1 and count:
        return BadEntry(0, None, "missing (deleted, or not yet written after a crash) while the "
                        "ledger has entries: the ledger may have been cut off")
    if head.seq == -1:
        return None
    if head.seq > last_seq:
        return BadEntry(last_line + 1, last_seq + 1,
                        f"ledger cut off: the head names entry {head.seq} but the ledger ends at "
                        f"entry {last_seq if count else 'none'} (entries {last_seq + 1}.."
                        f"{head.seq} truncated or deleted)")
    if head_line_digest != head.digest:
        return BadEntry(head.seq + 1, head.seq,
                        f"the head names entry {head.seq} with digest {head.digest}, the chain "
                        f"has {head_line_digest} (ledger or head rewritten)")
    if head.seq < last_seq:
        behind = last_seq - head.seq
        notes.append(f"head is {behind} {'entry' if behind == 1 else 'entries'} behind (a write "
                     f"was interrupted, or a power loss undid head updates); the next write "
                     f"moves it on")
    return None


def verify(ledger: Path | None = None, *, anchor: str | None = None) -> VerifyReport:
    """Verify the ledger's hash chain and its head. Never raises for a broken ledger.

    Detects edited, deleted, reordered, inserted and truncated entries and names the first bad
    one; a torn last line from an interrupted write is reported as such and does not fail.

    Raises:
        OSError: the ledger exists but cannot be read.
    """
    report = read_ledger(ledger, anchor=anchor).report
    if anchor is None and report.ok:
        # Review P-3: a chain in a folder others may write can be rewritten whole and re-sealed
        # (the digests are no secret); only a head kept elsewhere tells.
        found = others_could_replace(Path(report.path) if report.path else
                                     (ledger or paths.ledger_dir()) / LEDGER_NAME)
        if found is not None:
            problem, fix = found
            report = dataclasses.replace(report, ok=False, exposed=(
                f"{problem}: anyone who can write there could have rewritten the whole chain; "
                f"{fix}, or verify with --anchor and a head kept elsewhere"))
    return report


def require_intact(state: LedgerState) -> None:
    """Raise if the ledger does not verify.

    Raises:
        LedgerIntegrityError: names the first bad entry.
    """
    if not state.report.ok:
        raise LedgerIntegrityError(
            state.report.describe(),
            hint="run `safeload provenance verify` for details; the head to compare with a kept "
                 "anchor is printed there")


__all__ = ["BadEntry", "LedgerRecord", "LedgerState", "VerifyReport", "chain_lines", "read_ledger",
           "require_intact", "verify"]
