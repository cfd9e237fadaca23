"""The ledger on disk: its line format, HEAD, and the writer (`record`, `record_or_warn`).

The line format is versioned: `"v": 1` lines hold one full entry each (`record`); `"v": 2`
lines are the batched writer's (`batch`): session records, compact entries and tallies of
repeats, described there. Both are sealed and chained the same way, and one chain may hold both
(a v1 ledger is extended with v2 lines). Nothing here reads the environment except
`SAFELOAD_HOME` (through `ledger_dir()`), `SAFELOAD_LEDGER_SEGMENT_BYTES` (`segment_limit`) and
the secret scrubbing (`scrub`). Reading and verifying is `read`; the line format and HEAD
parsing here are shared with it.

Layout, under `safeload._internal.paths.ledger_dir()` (or the `ledger` argument):

- `ledger.jsonl`: one canonical JSON object per line, `{"digest", "entry", "prev", "seq", "v"}`
  (plus `repair` when the writer cleaned up after a crash). `digest` is the SHA-256 of the line's
  canonical encoding without `digest`; `prev` is the previous line's digest (zeros for the first).
  Lines must be byte-for-byte canonical, so no edit survives, not even a duplicated JSON key that
  another parser would read differently.
- `HEAD`: `{"digest", "seq", "v"}` of the last entry, replaced atomically after each append
  (`safeload._internal.atomic.write_atomic`: temp file in the folder, rename). It
  is kept apart so a cut-off ledger shows; print it (`safeload provenance verify`) and keep it
  elsewhere to anchor the chain, since anyone who can rewrite this folder can rewrite both.
- `ledger.lock`: the writers' lock. `torn/`: fragments of interrupted writes, kept as evidence.
- `ledger.000001.jsonl`, ...: rotated segments, oldest first. After a write that leaves
  `ledger.jsonl` at or past `segment_limit()` (64 MiB by default), the writer, still under the
  lock, renames it to the next segment and syncs the folder; the next write starts a new
  `ledger.jsonl` whose first line chains to the segment's last. A rotated segment always ends
  with a whole line. A crash between the rename and the next write leaves no `ledger.jsonl`;
  the writer then takes the chain's end from the newest segment. Readers read every segment.

Writing (`record`, and `append_lines` for a batch: the same steps, several lines in the one
write and the one sync): take the lock (a `filelock` flock, plus a thread lock); read the last line
and check that it and `HEAD` agree; append the new line with one `write` on an `O_APPEND`
descriptor; fdatasync it; replace `HEAD`. Writers therefore never interleave. One sync per
record: the ledger's, which also orders the two files (HEAD is replaced only once the entry it
names is on disk, so HEAD is never ahead of the ledger). HEAD itself is made durable only when
it is created; a power loss may undo later HEAD updates, which leaves HEAD behind, and behind
verifies.

Crash safety. A process killed at any point leaves one of these states, all of which verify:
- nothing written; or the line complete but `HEAD` not yet replaced (`HEAD` behind: verify
  notes it; the next writer moves it on);
- a torn last line (a kill or a full disk mid-`write` leaves a prefix without its newline).
  Decision: a line without its newline was never acknowledged (`record` had not returned), so it
  is not an entry. `verify` reports it as a torn tail and still passes. The next writer, under
  the lock, moves the fragment to `torn/`, truncates the ledger back to the last newline, and
  notes the repair (fragment size and digest) inside the entry it appends, so the repair is
  itself on the chain.
A cut-off ledger is not mistaken for a crash: `HEAD` then names an entry that is gone.
Anything else (an edited, deleted or reordered entry; `HEAD` pointing past the end, elsewhere in
the chain, or missing) is damage: `verify` names the first bad entry. Writers check the chain's
end (the last entry's own digest, and `HEAD`) and refuse to append to a damaged end rather than
bury the damage under new entries; damage further back is `verify`'s job (O(n), not per load).

Never recorded: tokens, credentials, environment variables. Entries contain no environment
fields, and `record` passes every entry through `scrub.scrub_entry` before writing.

Test hook: `_fault_hook` (set it on this module) is called with a step name between the steps
of a write ("locked", "tail-read", "head-recreated", "fragment-kept", "truncated", "appended",
"synced", "head-replaced", "rotated", "done"), so tests can kill the writer at each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from safeload._internal import paths, strictjson
from safeload._internal.atomic import write_atomic
from safeload._internal.private_dir import others_could_replace
from safeload._internal.text import get_logger
from safeload.errors import ProvenanceError
from safeload.provenance.entry import ProvenanceEntry
from safeload.provenance.scrub import scrub_entry

_logger = get_logger("safeload.provenance")  # the package's, as before the split

LEDGER_NAME = "ledger.jsonl"
HEAD_NAME = "HEAD"
LOCK_NAME = "ledger.lock"
TORN_DIR = "torn"
LINE_VERSION = 1  # a full entry per line (`record`)
LINE_VERSION_2 = 2  # session records, compact entries and tallies (the batched writer)
SEGMENT_RE = re.compile(r"ledger\.(\d{6})\.jsonl")
DEFAULT_SEGMENT_BYTES = 64 << 20
GENESIS = "sha256:" + "0" * 64
MAX_ENTRY_BYTES = 1 << 20  # one entry; a model with thousands of shards stays far below
LOCK_TIMEOUT = 60.0  # seconds; a writer holds the lock for about a millisecond
# filelock polls a non-blocking flock; its 50 ms default turns every contended write into 50 ms.
LOCK_POLL = 0.002

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

THREAD_LOCK = threading.Lock()  # flock is per open file; threads of one process share this

# Fault injection for tests: called with a step name between the steps of a write.
_fault_hook: Callable[[str], None] | None = None

# Called with (folder, the lines just made durable) after each append, under the writers' lock:
# a listener must be quick and never block (`otlp` hands the lines to a background exporter).
listeners: list[Callable[[Path, list[Line]], None]] = []


def _step(name: str) -> None:
    if _fault_hook is not None:
        _fault_hook(name)


def ledger_lock(directory: Path) -> filelock.FileLock:
    """The writers' lock of the ledger in `directory` (take it together with THREAD_LOCK)."""
    return filelock.FileLock(directory / LOCK_NAME, timeout=LOCK_TIMEOUT, poll_interval=LOCK_POLL)


# --------------------------------------------------------------------------------------------
# The line format (shared with `read`)


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The one byte encoding of a JSON object: sorted keys, no spaces, ASCII only.

    ASCII-only also means no raw newline or U+2028 can split a line.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _digest(body: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical(body)).hexdigest()


def seal(body: dict[str, Any]) -> tuple[bytes, str]:
    """The full line (with newline) for a body without `digest`, and that digest."""
    digest = _digest(body)
    return canonical({**body, "digest": digest}) + b"\n", digest


@dataclass(frozen=True)
class Line:
    seq: int
    prev: str
    digest: str
    body: dict[str, Any]


def parse_line(raw: bytes) -> Line:
    """One ledger line (without its newline), checked in isolation.

    Raises:
        ValueError: with the reason (not JSON, not canonical, bad digest, missing fields).
    """
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError(f"line longer than {MAX_ENTRY_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("not a JSON object") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    try:
        reencoded = canonical(obj)
    except (ValueError, TypeError):
        raise ValueError("not canonical JSON") from None
    if reencoded != raw:
        raise ValueError("not in canonical form (the line was edited)")
    digest = obj.pop("digest", None)
    seq, prev = obj.get("seq"), obj.get("prev")
    version = obj.get("v")
    if version not in (LINE_VERSION, LINE_VERSION_2) or isinstance(version, bool):
        raise ValueError(f"unknown line version {version!r}")
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise ValueError("missing or malformed digest")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError("missing or malformed seq")
    if not isinstance(prev, str) or not DIGEST_RE.fullmatch(prev):
        raise ValueError("missing or malformed prev")
    if version == LINE_VERSION and not isinstance(obj.get("entry"), dict):
        raise ValueError("missing entry")
    if version == LINE_VERSION_2:
        _check_v2_shape(obj)
    if _digest(obj) != digest:
        raise ValueError("digest mismatch (the entry was edited)")
    return Line(seq, prev, digest, obj)


_V2_KINDS = ("entry", "session", "tally")


def _check_v2_shape(obj: Mapping[str, Any]) -> None:
    """A v2 line is exactly one of: a session record, a compact entry, a tally of repeats."""
    kinds = [k for k in _V2_KINDS if k in obj]
    if len(kinds) != 1:
        raise ValueError("a v2 line must hold exactly one of entry, session, tally")
    kind = kinds[0]
    if kind == "session":
        if not isinstance(obj["session"], dict):
            raise ValueError("malformed session record")
        return
    s = obj.get("s")
    if isinstance(s, bool) or not isinstance(s, int) or s < 0 or s >= obj["seq"]:
        raise ValueError("missing or malformed session reference")
    if kind == "entry":
        n = obj.get("n", 1)
        if not isinstance(obj["entry"], dict) or isinstance(n, bool) or not isinstance(n, int) \
                or n < 1:
            raise ValueError("malformed compact entry")
        return
    tally = obj["tally"]
    if not isinstance(tally, list) or not tally or not isinstance(obj.get("time"), str):
        raise ValueError("malformed tally")
    for pair in tally:
        if (not isinstance(pair, list) or len(pair) != 2
                or any(isinstance(x, bool) or not isinstance(x, int) for x in pair)
                or not 0 <= pair[0] < obj["seq"] or pair[1] < 1):
            raise ValueError("malformed tally")


@dataclass(frozen=True)
class Head:
    seq: int  # -1: no head file (yet), or its content was lost
    digest: str
    lost: bool = False  # the file exists but is empty or zeros: a power loss artifact
    recreated: bool = False  # the writer rewrote a missing HEAD before this append


def read_head(directory: Path) -> Head:
    """The head file; (-1, GENESIS) when there is none.

    Raises:
        ValueError: the head file exists but is malformed.
    """
    try:
        raw = (directory / HEAD_NAME).read_bytes()
    except FileNotFoundError:
        return Head(-1, GENESIS)
    if not raw.strip(b"\0"):
        # A rename that reached the disk before the file's data did: nothing to check against.
        return Head(-1, GENESIS, lost=True)
    if len(raw) > 4096:
        raise ValueError("head file too large")
    try:
        obj = strictjson.loads(raw)  # a duplicated key is not a HEAD two readers agree on
    except (ValueError, RecursionError):
        raise ValueError("head file is not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("head file is not a JSON object")
    seq, digest = obj.get("seq"), obj.get("digest")
    if (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0
            or not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest)):
        raise ValueError("head file is malformed")
    return Head(seq, digest)


# --------------------------------------------------------------------------------------------
# Writing


def _fsync_dir(directory: Path) -> None:
    """Make a new name in `directory` durable; raises (a ledger file whose name a power loss
    may undo is a write that failed, not one to acknowledge)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_head(directory: Path, seq: int, digest: str, *, durable: bool) -> None:
    """Replace HEAD atomically (temp file, rename).

    Made durable (fsync of the file and the folder: `write_atomic(durable=True)`) only when HEAD
    is created or recreated. A later update that a power loss undoes leaves HEAD behind the
    ledger, which verifies; HEAD can never get ahead of it, because the ledger is synced before
    HEAD is replaced.
    """
    data = canonical({"digest": digest, "seq": seq, "v": LINE_VERSION}) + b"\n"
    write_atomic(directory / HEAD_NAME, data, durable=durable, mode=0o600, dir_mode=0o700)
    _step("head-replaced")


_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _pread_full(fd: int, size: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


_TAIL_CAP = 2 * MAX_ENTRY_BYTES + 2  # the last whole line plus a torn fragment of the next


def _read_tail(fd: int, size: int) -> tuple[int, bytes | None, bytes]:
    """(end of the last whole line, that line without newline or None, torn bytes after it).

    Reads backwards from the end in a growing window, so a record costs one small read however
    long the ledger is. Returns end -1 when the end of the file cannot be ledger lines (a line or
    fragment longer than any entry).
    """
    window = 1 << 16
    while True:
        width = min(size, window)
        start = size - width
        buf = _pread_full(fd, width, start)
        nl = buf.rfind(b"\n")
        if nl >= 0:
            prev_nl = buf.rfind(b"\n", 0, nl)
            if prev_nl >= 0 or start == 0:
                torn = buf[nl + 1 :]
                if len(torn) > MAX_ENTRY_BYTES:
                    return -1, None, b""
                return start + nl + 1, buf[prev_nl + 1 : nl], torn
        elif start == 0:
            return (0, None, buf) if len(buf) <= MAX_ENTRY_BYTES else (-1, None, b"")
        if width >= _TAIL_CAP:
            return -1, None, b""
        window *= 4


def _quarantine(directory: Path, offset: int, fragment: bytes) -> str:
    """Keep a torn fragment as evidence (durably: the ledger is truncated next); its sha256."""
    digest = hashlib.sha256(fragment).hexdigest()
    name = directory / TORN_DIR / f"{offset:012d}-{digest[:16]}.frag"
    write_atomic(name, fragment, durable=True, mode=0o600, dir_mode=0o700)
    return digest


_START_OVER = ("run `safeload provenance verify` to see what is wrong; to start a new ledger, move "
               "the whole provenance folder aside and keep it as evidence")


def segment_limit() -> int:
    """The size at which the active ledger file is rotated (bytes).

    `SAFELOAD_LEDGER_SEGMENT_BYTES` (at least 4096), else `DEFAULT_SEGMENT_BYTES` (64 MiB). A
    value that is not a number is ignored: rotation is housekeeping, not a reason to fail a load.
    """
    raw = os.environ.get("SAFELOAD_LEDGER_SEGMENT_BYTES", "")
    try:
        return max(4096, int(raw)) if raw else DEFAULT_SEGMENT_BYTES
    except ValueError:
        return DEFAULT_SEGMENT_BYTES


def segments(directory: Path) -> list[Path]:
    """The rotated segments, oldest first (`ledger.000001.jsonl`, ...), without `ledger.jsonl`."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [(int(m.group(1)), name) for name in names if (m := SEGMENT_RE.fullmatch(name))]
    return [directory / name for _, name in sorted(found)]


def _segment_tail(directory: Path) -> bytes | None:
    """The last line of the newest rotated segment (None: no segment). A rotated segment always
    ends with a whole line (it is rotated right after a synced write, under the lock)."""
    found = segments(directory)
    if not found:
        return None
    fd = os.open(found[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        end, last, torn = _read_tail(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    if end < 0 or torn or last is None:
        raise ProvenanceError(f"the end of {found[-1]} is not a ledger line; refusing to append",
                              hint=_START_OVER)
    return last


def _rotate(directory: Path) -> None:
    """Rename the active file to the next segment; the chain goes on in a new `ledger.jsonl`."""
    found = segments(directory)
    number = int(SEGMENT_RE.fullmatch(found[-1].name).group(1)) + 1 if found else 1  # type: ignore[union-attr]
    os.rename(directory / LEDGER_NAME, directory / f"ledger.{number:06d}.jsonl")
    _fsync_dir(directory)
    _step("rotated")


# The bodies of the lines to append, given the seq the first one gets: without seq, prev, v.
Compose = Callable[[int], list[dict[str, Any]]]


def _append(directory: Path, compose: Compose, version: int) -> tuple[int, str]:
    """Append lines in one write and one sync; (last seq, its digest). The caller holds the lock."""
    path = directory / LEDGER_NAME
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProvenanceError(f"{path} is not a regular file")
        whole_end, last, torn = _read_tail(fd, st.st_size)
        if whole_end < 0:
            raise ProvenanceError(f"the end of {path} is not a ledger line; refusing to append",
                                  hint=_START_OVER)
        if last is None:  # a fresh active file: the chain's end is in the newest segment
            last = _segment_tail(directory)
        _step("tail-read")
        seq, prev = 0, GENESIS
        if last is not None:
            try:
                line = parse_line(last)
            except ValueError as exc:
                raise ProvenanceError(
                    f"the last entry of {path} does not verify ({exc}); refusing to append",
                    hint=_START_OVER) from None
            seq, prev = line.seq + 1, line.digest
            head = _check_head_before_append(directory, line)
        else:
            head = _check_head_before_append(directory, None)
        head_missing = head.seq == -1
        # Only now, with the chain's end known good, touch the torn fragment (if any).
        repair: dict[str, Any] | None = None
        if torn:
            fragment_digest = _quarantine(directory, whole_end, torn)
            _step("fragment-kept")
            os.ftruncate(fd, whole_end)
            os.fsync(fd)
            _step("truncated")
            repair = {"torn_bytes": len(torn), "torn_sha256": fragment_digest}
            _logger.warning("provenance: removed a torn %d-byte fragment left by an interrupted "
                            "write (kept in %s)", len(torn), directory / TORN_DIR)
        if head.lost or head.recreated:
            # A HEAD rewritten without a witness: a crash leaves this, and so does someone who
            # cut the ledger and emptied or deleted HEAD. The evidence stays on the chain.
            lost = "empty" if head.lost else "missing"
            repair = {**(repair or {}), "head": lost, "head_seq": seq - 1}
            _logger.warning("provenance: HEAD was %s; rewritten at entry %d (entries after it "
                            "may have been cut off: `safeload provenance verify` reports it)",
                            lost, seq - 1)
        chunks: list[bytes] = []
        written: list[Line] = []
        digest = prev
        for i, extra in enumerate(compose(seq)):
            body: dict[str, Any] = {**extra, "prev": digest, "seq": seq + i, "v": version}
            if repair is not None and i == 0:
                body["repair"] = repair
            data, digest = seal(body)
            if len(data) > MAX_ENTRY_BYTES:
                raise ProvenanceError(f"provenance entry too large ({len(data)} bytes)")
            chunks.append(data)
            written.append(Line(seq + i, body["prev"], digest, body))
        if not chunks:
            return seq - 1, prev
        data = b"".join(chunks)
        _write_all(fd, data, whole_end)
        _step("appended")
        _datasync(fd)  # the entries are on disk before HEAD may name them
        if st.st_size == 0:
            _fsync_dir(directory)  # a new ledger file: make its name durable too
        _step("synced")
    finally:
        os.close(fd)
    last_seq = seq + len(chunks) - 1
    _write_head(directory, last_seq, digest, durable=head_missing)
    _notify(directory, written)
    if whole_end + len(data) >= segment_limit():
        _rotate(directory)
    _step("done")
    return last_seq, digest


def _notify(directory: Path, written: list[Line]) -> None:
    for listener in listeners:
        try:
            listener(directory, written)
        except Exception:  # noqa: BLE001 - an exporter's fault is never the write's
            _logger.debug("provenance: an append listener failed", exc_info=True)


def _check_head_before_append(directory: Path, last: Line | None) -> Head:
    """Refuse to extend a chain whose HEAD disagrees with its end, other than by a crash.

    Crashes and power losses leave HEAD behind the ledger (or absent or empty), never ahead of
    it or on a different chain. A HEAD missing next to a single entry is recreated (durably)
    before the append, so that "HEAD missing" with more entries always means deletion; an
    empty or recreated HEAD is recorded as a repair in the appended entry (verify reports it).
    """
    try:
        head = read_head(directory)
    except ValueError as exc:
        raise ProvenanceError(f"provenance head unreadable ({exc}); refusing to append",
                              hint=_START_OVER) from None
    if last is None:
        ok = head.seq == -1
    elif head.seq == -1:
        ok = head.lost or last.seq == 0
        if ok and not head.lost:
            _write_head(directory, last.seq, last.digest, durable=True)
            _step("head-recreated")
            head = Head(last.seq, last.digest, recreated=True)
    elif head.seq == last.seq:
        ok = head.digest == last.digest
    elif head.seq == last.seq - 1:
        ok = head.digest == last.prev
    else:  # further behind: only a power loss does that; verify checks the digest there
        ok = head.seq < last.seq
    if not ok:
        raise ProvenanceError(
            f"provenance head (entry {head.seq}) disagrees with the ledger's last entry "
            f"({last.seq if last else 'none'}): the ledger was cut off or rewritten; "
            f"refusing to append",
            hint=_START_OVER)
    return head


def _write_fully(fd: int, data: bytes) -> None:
    """os.write until done: a regular file may take a short write (full disk, signal)."""
    written = 0
    while written < len(data):
        n = os.write(fd, data[written:])
        if n <= 0:
            raise OSError(f"write returned {n}")
        written += n


def _write_all(fd: int, data: bytes, restore_size: int) -> None:
    """One write on O_APPEND; a short write (full disk, signal) is finished or rolled back."""
    try:
        _write_fully(fd, data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, restore_size)  # leave no torn line behind when we still can
        raise


_exposed_warned: set[Path] = set()


def _warn_if_exposed(directory: Path) -> None:
    """Once per folder per process: a ledger others may write can be rewritten whole (review
    P-3); `provenance verify` then says NOT VERIFIED unless given a head kept elsewhere."""
    if directory in _exposed_warned:
        return
    _exposed_warned.add(directory)
    found = others_could_replace(directory / LEDGER_NAME)
    if found is not None:
        _logger.warning("provenance: the ledger %s: %s, so others could rewrite it undetected "
                        "(%s, or keep its head elsewhere)", directory, found[0], found[1])


def append_lines(directory: Path, compose: Compose, *, version: int = LINE_VERSION) -> tuple[
        int, str]:
    """Append the lines `compose(first_seq)` returns, under the lock, in one write and one sync.

    Returns (last seq, its digest). Safe across threads and processes; crash-safe as the module
    docstring describes.

    Raises:
        ProvenanceError: the ledger cannot be written (read-only, disk full, lock timeout), or
            its end does not verify (writers do not extend a broken chain).
    """
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _warn_if_exposed(directory)
        with THREAD_LOCK, ledger_lock(directory):
            _step("locked")
            return _append(directory, compose, version)
    except filelock.Timeout:
        raise ProvenanceError(
            f"timed out after {LOCK_TIMEOUT:.0f}s waiting for the provenance ledger lock in "
            f"{directory}") from None
    except OSError as exc:
        raise ProvenanceError(
            f"cannot write the provenance ledger in {directory}: {exc.strerror or exc}",
            hint="make the data folder writable, or set SAFELOAD_HOME") from exc


def record(entry: ProvenanceEntry | Mapping[str, Any], *, ledger: Path | None = None) -> str:
    """Append one full entry (a v1 line) now, durably, and return the new head digest.

    Loads go through `record_or_warn`, which batches; this is the direct, one-sync-per-call
    form.

    Raises:
        ProvenanceError: the entry is invalid, or the ledger cannot be written (read-only, disk
            full, lock timeout), or its end does not verify (writers do not extend a broken
            chain).
    """
    payload = entry_payload(entry)
    directory = ledger if ledger is not None else paths.ledger_dir()
    return append_lines(directory, lambda seq: [{"entry": payload}])[1]


def entry_payload(entry: ProvenanceEntry | Mapping[str, Any]) -> dict[str, Any]:
    """The validated, scrubbed dict of an entry, as a line stores it."""
    item = entry if isinstance(entry, ProvenanceEntry) else ProvenanceEntry.from_dict(entry)
    return scrub_entry(item.to_dict())


__all__ = [
    "GENESIS", "HEAD_NAME", "LEDGER_NAME", "LINE_VERSION", "LOCK_NAME", "MAX_ENTRY_BYTES",
    "TORN_DIR", "append_lines", "entry_payload", "record", "segment_limit", "segments",
]
