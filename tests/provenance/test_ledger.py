"""The hash-chained provenance ledger: tampering, concurrency, kill -9 at any point, secrets."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from safeload import provenance
from safeload._internal.paths import ledger_dir
from safeload.errors import LedgerIntegrityError, ProvenanceError, ProvenanceWarning
from safeload.provenance import (
    GENESIS,
    ConvertedFrom,
    FileRecord,
    LicenseRecord,
    ProvenanceEntry,
    PublisherRecord,
    SignatureRecord,
    Source,
    TrustRecord,
    ledger,
    read_ledger,
    record,
    record_or_warn,
    require_intact,
    verify,
)

SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def _entry(i: int = 0, **kw: object) -> ProvenanceEntry:
    fields: dict[str, object] = {
        "action": "load",
        "source": Source.local(f"/models/m{i}/model.safetensors"),
        "files": (FileRecord(f"/models/m{i}/model.safetensors", SHA, 1000 + i, "safetensors"),),
    }
    fields.update(kw)
    return ProvenanceEntry(**fields)  # type: ignore[arg-type]


def _ledger() -> Path:
    return ledger_dir() / provenance.LEDGER_NAME


def _lines() -> list[bytes]:
    return _ledger().read_bytes().splitlines(keepends=True)


def _write_lines(lines: list[bytes]) -> None:
    _ledger().write_bytes(b"".join(lines))


def _fill(n: int) -> list[str]:
    return [record(_entry(i)) for i in range(n)]


# --------------------------------------------------------------------------------------------
# Entries


def test_entry_round_trips_with_every_field() -> None:
    entry = ProvenanceEntry(
        action="convert",
        source=Source.huggingface("org/model", "A" * 40, "pytorch_model.bin"),
        files=(FileRecord("model.safetensors", SHA, 10, "safetensors"),),
        converted_from=ConvertedFrom("b" * 64, "pickle", ("user", "net", "seccomp"),
                                     "pytorch_model.bin"),
        signature=SignatureRecord("verified", "org", "ed25519:SHA256:abc", "sigstore"),
        trust=TrustRecord("strict", "hit"),
        license=LicenseRecord("Apache-2.0", "permissive", "model card", "Apache license 2.0"),
        datasets=("a/b",), base_model=("org/base",),
        publisher=PublisherRecord("org", True, True), task="fill-mask", warnings=("w",),
    )
    data = entry.to_dict()
    assert data["source"]["purl"] == "pkg:huggingface/org/model@" + "a" * 40
    assert data["license"]["class"] == "permissive"
    assert ProvenanceEntry.from_dict(json.loads(json.dumps(data))) == entry
    assert set(data) == {
        "time", "safeload_version", "action", "source", "files", "converted_from", "signature",
        "trust", "license", "datasets", "base_model", "publisher", "task", "warnings"}


@pytest.mark.parametrize(("change", "message"), [
    ({"action": "exec"}, "action must be one of"),
    ({"time": "yesterday"}, "RFC 3339"),
    ({"files": [{"path": "x", "sha256": "XYZ", "size": 1, "format": "f"}]}, "64 lowercase hex"),
    ({"files": [{"path": "x", "sha256": SHA, "size": -1, "format": "f"}]}, "non-negative"),
    ({"signature": {"status": "maybe"}}, "signature.status"),
    ({"trust": {"mode": "strict", "pin": "sometimes"}}, "trust.pin"),
    ({"license": {"id": "MIT", "class": "nice", "source": "card"}}, "license.class"),
    ({"source": {}}, "source needs a path or a purl"),
    ({"datasets": "abc"}, "datasets must be a list"),
])
def test_invalid_entries_are_provenance_errors(change: dict[str, object], message: str) -> None:
    data = _entry().to_dict()
    data.update(change)
    with pytest.raises(ProvenanceError, match=message):
        record(data)
    assert not _ledger().exists()


def test_record_returns_the_head_and_verify_agrees() -> None:
    heads = _fill(5)
    report = verify()
    assert report.ok
    assert report.entries == 5
    assert report.head == report.recorded_head == heads[-1]
    assert report.head_seq == 4
    lines = [json.loads(x) for x in _lines()]
    assert [x["seq"] for x in lines] == list(range(5))
    assert lines[0]["prev"] == GENESIS
    assert [x["prev"] for x in lines[1:]] == heads[:-1]
    head = json.loads((ledger_dir() / "HEAD").read_text())
    assert head == {"digest": heads[-1], "seq": 4, "v": 1}


def test_empty_ledger_verifies() -> None:
    report = verify()
    assert report.ok and report.entries == 0 and report.head is None


def test_ledger_is_private() -> None:
    record(_entry())
    assert _ledger().stat().st_mode & 0o077 == 0
    assert ledger_dir().stat().st_mode & 0o077 == 0


# --------------------------------------------------------------------------------------------
# Tampering: each kind is detected, and the first bad entry is named


def _resealed(raw: bytes, **changes: object) -> bytes:
    """A line edited by someone who also recomputes its own digest."""
    body = json.loads(raw)
    body.pop("digest")
    body["entry"].update(changes)
    line, _ = ledger.seal(body)
    return line


def test_edited_entry_is_detected() -> None:
    _fill(5)
    lines = _lines()
    lines[2] = lines[2].replace(b'"action":"load"', b'"action":"convert"')
    _write_lines(lines)
    report = verify()
    assert not report.ok
    assert report.first_bad is not None
    assert (report.first_bad.line, report.first_bad.seq) == (3, 2)
    assert "digest mismatch" in report.first_bad.reason
    assert report.entries == 2


def test_edited_and_resealed_entry_breaks_the_next_link() -> None:
    _fill(5)
    lines = _lines()
    lines[1] = _resealed(lines[1], action="verify")
    _write_lines(lines)
    report = verify()
    assert report.first_bad is not None
    assert (report.first_bad.line, report.first_bad.seq) == (3, 2)
    assert "does not chain" in report.first_bad.reason


def test_resealed_last_entry_disagrees_with_head() -> None:
    _fill(3)
    lines = _lines()
    lines[2] = _resealed(lines[2], action="verify")
    _write_lines(lines)
    state = read_ledger()
    report = state.report
    assert report.first_bad is not None
    assert (report.first_bad.line, report.first_bad.seq) == (3, 2)
    assert "head names entry 2" in report.first_bad.reason
    assert [r.verified for r in state.records] == [True, True, False]


def test_whitespace_or_duplicate_key_edits_are_not_canonical() -> None:
    _fill(3)
    lines = _lines()
    # A duplicated key: json.loads keeps the last, another parser may show the first.
    lines[1] = lines[1].replace(b'"action":"load"', b'"action":"convert","action":"load"')
    _write_lines(lines)
    report = verify()
    assert report.first_bad is not None and report.first_bad.line == 2
    assert "canonical" in report.first_bad.reason
    lines = _lines()
    lines[1] = lines[1].replace(b'"action":"convert",', b"").replace(b",", b", ", 1)
    _write_lines(lines)
    assert "canonical" in verify().first_bad.reason  # type: ignore[union-attr]


def test_deleted_entry_is_detected() -> None:
    _fill(5)
    lines = _lines()
    del lines[2]
    _write_lines(lines)
    report = verify()
    assert report.first_bad is not None
    assert (report.first_bad.line, report.first_bad.seq) == (3, 2)
    assert "entry 2 is missing" in report.first_bad.reason


def test_reordered_entries_are_detected() -> None:
    _fill(5)
    lines = _lines()
    lines[1], lines[3] = lines[3], lines[1]
    _write_lines(lines)
    report = verify()
    assert report.first_bad is not None
    assert (report.first_bad.line, report.first_bad.seq) == (2, 1)


def test_duplicated_entry_is_detected() -> None:
    _fill(3)
    lines = _lines()
    lines.insert(2, lines[1])
    _write_lines(lines)
    report = verify()
    assert report.first_bad is not None
    assert "appears again" in report.first_bad.reason


def test_truncated_whole_entries_are_detected() -> None:
    _fill(5)
    _write_lines(_lines()[:3])
    report = verify()
    assert report.first_bad is not None
    assert report.first_bad.seq == 3
    assert "cut off" in report.first_bad.reason
    assert "entries 3..4" in report.first_bad.reason


def test_truncated_mid_entry_is_not_mistaken_for_a_crash() -> None:
    _fill(5)
    data = _ledger().read_bytes()
    _ledger().write_bytes(data[: len(data) - 40])  # the last entry loses its end and newline
    report = verify()
    assert report.torn_tail_bytes > 0
    assert not report.ok  # the head names entry 4, which is gone
    assert report.first_bad is not None and "cut off" in report.first_bad.reason


def test_deleted_head_and_garbage_head_are_detected() -> None:
    _fill(3)
    head = ledger_dir() / "HEAD"
    head.unlink()
    report = verify()
    assert report.first_bad is not None and report.first_bad.line == 0
    assert report.describe() == ("ledger BROKEN at HEAD file: missing (deleted, or not yet "
                                 "written after a crash) while the ledger has entries: the "
                                 "ledger may have been cut off")
    head.write_text("{not json")
    assert "not JSON" in verify().first_bad.reason  # type: ignore[union-attr]


def test_garbage_line_is_detected() -> None:
    _fill(3)
    lines = _lines()
    lines.insert(1, b"\x00\xff garbage\n")
    _write_lines(lines)
    report = verify()
    assert report.first_bad is not None and report.first_bad.line == 2
    assert "not a JSON object" in report.first_bad.reason
    state = read_ledger()
    assert [r.verified for r in state.records] == [True, False, False, False]


def test_anchor_catches_a_fully_rewritten_chain() -> None:
    anchor = _fill(3)[-1]
    assert verify(anchor=anchor).ok
    # Someone who can write the folder rewrites everything, head included: only the anchor
    # kept elsewhere shows it.
    for name in ("ledger.jsonl", "HEAD"):
        (ledger_dir() / name).unlink()
    _fill(4)
    assert verify().ok
    report = verify(anchor=anchor)
    assert not report.ok
    assert report.first_bad is not None and "anchor" in report.first_bad.reason


def test_require_intact_raises_integrity_error() -> None:
    _fill(3)
    lines = _lines()
    del lines[0]
    _write_lines(lines)
    with pytest.raises(LedgerIntegrityError, match=r"entry 0 \(line 1\)"):
        require_intact(read_ledger())


def test_writers_refuse_to_extend_a_broken_chain() -> None:
    _fill(3)
    lines = _lines()
    lines[2] = lines[2].replace(b'"load"', b'"convert"')
    _write_lines(lines)
    before = _ledger().read_bytes()
    with pytest.raises(ProvenanceError, match="does not verify"):
        record(_entry())
    _write_lines(_lines()[:2])  # now cut off: the head names entry 2
    with pytest.raises(ProvenanceError, match="disagrees"):
        record(_entry())
    assert _ledger().read_bytes() == before[: len(b"".join(_lines()))]


def test_torn_fragment_is_left_alone_when_the_chain_end_is_bad() -> None:
    _fill(2)
    lines = _lines()
    lines[1] = lines[1].replace(b'"load"', b'"convert"')
    _write_lines([*lines, b'{"digest":"sha'])
    before = _ledger().read_bytes()
    with pytest.raises(ProvenanceError, match="does not verify"):
        record(_entry())
    assert _ledger().read_bytes() == before  # evidence untouched
    assert not (ledger_dir() / "torn").exists()


def test_deleted_ledger_with_head_left_is_detected() -> None:
    _fill(2)
    _ledger().unlink()
    report = verify()
    assert report.first_bad is not None and "cut off" in report.first_bad.reason
    with pytest.raises(ProvenanceError, match="disagrees"):
        record(_entry())


# --------------------------------------------------------------------------------------------
# Unwritable ledger policy


def test_unwritable_ledger_strict_fails_closed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ProvenanceError, match="cannot write the provenance ledger"):
        record_or_warn(_entry(), strict=True, ledger=blocker / "provenance")


def test_unwritable_ledger_default_warns_loudly(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.warns(ProvenanceWarning, match="provenance NOT recorded"):
        assert record_or_warn(_entry(), strict=False, ledger=blocker / "provenance") is None
    assert "provenance NOT recorded" in caplog.text


def test_record_or_warn_records_when_it_can() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        head = record_or_warn(_entry(), strict=False)
    assert head == verify().head


# --------------------------------------------------------------------------------------------
# Never recorded: tokens, credentials, environment variables


def test_credentials_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "s3cr3t-value-from-env")
    token = "hf_" + "A1b2C3d4" * 5
    entry = _entry(
        source=Source(path=f"/cache/{token}/model.bin"),
        warnings=(
            "fetched https://user:hunter2pass@example.com/m.bin",
            "url https://bucket.s3.amazonaws.com/m?X-Amz-Signature=deadbeef&x=1",
            "Authorization: Bearer abcdefghijklmnop",
            "aws AKIAABCDEFGHIJKLMNOP ghp_" + "z" * 36,
            "config said s3cr3t-value-from-env",
        ),
    )
    record(entry)
    raw = _ledger().read_text()
    for secret in (token, "hunter2pass", "deadbeef", "abcdefghijklmnop", "AKIAABCDEFGHIJKLMNOP",
                   "ghp_", "s3cr3t-value-from-env"):
        assert secret not in raw
    saved = read_ledger().records[0].entry
    assert saved is not None
    assert saved.source.path == "/cache/<redacted>/model.bin"
    assert any("redacted a credential-like string from source.path" in w
               for w in saved.warnings)
    assert verify().ok


def test_a_secret_set_after_earlier_entries_is_still_scrubbed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The secret-variable scan is memoised per process: a change of the environment must
    # invalidate it (a token exported by a later step of the same script).
    record(_entry(warnings=("nothing secret yet",)))
    monkeypatch.setenv("LATE_SERVICE_TOKEN", "late-secret-value-42")
    record(_entry(warnings=("config said late-secret-value-42",)))
    assert "late-secret-value-42" not in _ledger().read_text()


def test_entries_have_no_environment_field() -> None:
    record(_entry())
    body = json.loads(_lines()[0])
    assert not any("env" in key for key in body["entry"])


# --------------------------------------------------------------------------------------------
# Crashes: torn lines, a head one behind


def test_torn_tail_verifies_and_next_writer_repairs_it() -> None:
    _fill(3)
    line, _ = ledger.seal({"entry": _entry(9).to_dict(), "prev": GENESIS, "seq": 3, "v": 1})
    with open(_ledger(), "ab") as fh:
        fh.write(line[:57])  # what a kill or a full disk mid-write leaves
    report = verify()
    assert report.ok
    assert report.torn_tail_bytes == 57
    assert any("torn tail" in n for n in report.notes)
    head = record(_entry(4))
    state = read_ledger()
    assert state.report.ok and state.report.entries == 4 and state.report.head == head
    assert state.records[-1].repair == {"torn_bytes": 57,
                                        "torn_sha256": hashlib.sha256(line[:57]).hexdigest()}
    kept = list((ledger_dir() / "torn").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == line[:57]


def test_torn_first_line_is_repaired() -> None:
    _ledger().parent.mkdir(parents=True)
    _ledger().write_bytes(b'{"digest":"sha256:')
    assert verify().ok
    record(_entry())
    assert verify().ok and verify().entries == 1


def test_head_one_behind_verifies_and_is_moved_on() -> None:
    _fill(3)
    old_head = (ledger_dir() / "HEAD").read_bytes()
    record(_entry(3))
    (ledger_dir() / "HEAD").write_bytes(old_head)  # crash between append and head update
    report = verify()
    assert report.ok
    assert any("head is 1 entry behind" in n for n in report.notes)
    head = record(_entry(4))
    report = verify()
    assert report.ok and not report.notes and report.recorded_head == head


@pytest.mark.parametrize("content", [b"", b"\0" * 60])
def test_an_empty_head_does_not_verify_and_its_rewrite_stays_on_the_chain(content: bytes) -> None:
    _fill(3)
    (ledger_dir() / "HEAD").write_bytes(content)  # a power loss, or someone hiding a cut
    report = verify()
    assert not report.ok and report.first_bad is not None and report.first_bad.line == 0
    assert "empty" in report.first_bad.reason
    record(_entry())  # the next write rewrites HEAD and records that it had to
    report = verify()
    assert report.ok and report.recorded_head == report.head
    assert any("HEAD was found empty" in n for n in report.notes)


@pytest.mark.parametrize("how", ["emptied", "deleted"])
def test_a_cut_ledger_with_its_head_emptied_or_deleted_is_detected(how: str) -> None:
    _fill(5)
    lines = _lines()
    _write_lines(lines[:2])  # the last three entries cut off
    head = ledger_dir() / "HEAD"
    if how == "emptied":
        head.write_bytes(b"")
    else:
        head.unlink()
    report = verify()
    assert not report.ok and report.first_bad is not None and report.first_bad.line == 0
    assert "cut off" in report.first_bad.reason
    _write_lines(lines[:1])  # down to one entry: still not a state to trust silently
    assert not verify().ok


def test_head_left_behind_by_a_power_loss_verifies() -> None:
    _fill(2)
    stale = (ledger_dir() / "HEAD").read_bytes()
    _fill(3)  # these head updates were never made durable, and a power loss undid them
    (ledger_dir() / "HEAD").write_bytes(stale)
    report = verify()
    assert report.ok and any("head is 3 entries behind" in n for n in report.notes)
    record(_entry())
    assert verify().ok and not verify().notes


def test_stale_head_on_another_chain_is_detected() -> None:
    _fill(2)
    head = json.loads((ledger_dir() / "HEAD").read_text())
    _fill(3)
    head["digest"] = "sha256:" + "f" * 64
    (ledger_dir() / "HEAD").write_text(json.dumps(head))
    report = verify()
    assert report.first_bad is not None and "the head names entry 1" in report.first_bad.reason


@pytest.mark.parametrize("duplicate", ['"seq":0', '"seq":4', '"digest":"sha256:%s"' % ("f" * 64)])
def test_head_with_a_duplicated_key_is_damage(duplicate: str) -> None:
    """Two JSON readers may keep different copies of a duplicated key: neither is trusted."""
    _fill(5)
    head = (ledger_dir() / "HEAD").read_bytes()
    (ledger_dir() / "HEAD").write_bytes(head.replace(b"{", b"{" + duplicate.encode() + b",", 1))
    report = verify()
    assert not report.ok and report.first_bad is not None and report.first_bad.line == 0
    assert "not JSON" in report.first_bad.reason
    with pytest.raises(ProvenanceError, match="head unreadable"):
        record(_entry())


def test_one_sync_per_record_and_head_durable_only_when_created(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented cost: the entry's fdatasync; HEAD (and the folder) synced on creation."""
    syncs: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(ledger, "_datasync", lambda fd: syncs.append("entry"))

    def fsync(fd: int) -> None:
        syncs.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    record(_entry(0))  # a new ledger: its name, then HEAD created (file and folder)
    assert syncs == ["entry", "dir", "file", "dir"]
    syncs.clear()
    record(_entry(1))
    assert syncs == ["entry"]
    (ledger_dir() / "HEAD").unlink()  # a crash before HEAD was first written, one entry on
    _write_lines(_lines()[:1])
    syncs.clear()
    record(_entry(2))  # HEAD recreated durably before the append, then moved on
    assert syncs == ["file", "dir", "entry"]
    assert verify().ok


def test_missing_head_after_first_entry_is_reported_then_repaired_on_the_chain() -> None:
    record(_entry())
    (ledger_dir() / "HEAD").unlink()  # a crash before HEAD was created, or a deletion
    assert not verify().ok
    record(_entry(1))
    report = verify()
    assert report.ok and report.entries == 2
    assert any("HEAD was found missing" in n for n in report.notes)


def test_failed_write_is_rolled_back(monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(2)
    before = _ledger().read_bytes()
    real_write = os.write

    def half_then_fail(fd: int, data: bytes) -> int:
        if len(data) > 200 and fd != 1:
            monkeypatch.setattr(os, "write", fail)
            return real_write(fd, data[: len(data) // 2])
        return real_write(fd, data)

    def fail(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(ProvenanceError, match="No space left"):
        record(_entry())
    monkeypatch.setattr(os, "write", real_write)
    assert _ledger().read_bytes() == before
    assert verify().ok


# --------------------------------------------------------------------------------------------
# Concurrency and kill -9 (real processes)

_CHILD = textwrap.dedent("""
    import os, signal, sys
    from safeload import provenance as p
    from safeload.provenance import ledger

    tag, count, crash_at = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def hook(step):
        if step == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    # The HEAD temp file is written by write_atomic: its last step before the rename is here.
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == "HEAD":
            hook("head-tmp-written")
        real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    ledger._fault_hook = hook
    sha = "ab" * 32
    for i in range(count):
        p.record(p.ProvenanceEntry(
            action="load", source=p.Source(path=f"/models/{tag}/{i}"),
            files=(p.FileRecord(f"/models/{tag}/{i}/model.safetensors", sha, i,
                                "safetensors"),)))
""")


def _child(tag: str, count: int, crash_at: str = "never") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-c", _CHILD, tag, str(count), crash_at], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _sources() -> list[str]:
    return [r.entry.source.path or "" for r in read_ledger().records if r.entry is not None]


def test_eight_processes_times_one_hundred_records() -> None:
    children = [_child(f"p{i}", 100) for i in range(8)]
    for c in children:
        _, err = c.communicate(timeout=120)
        assert c.returncode == 0, err.decode()
    state = read_ledger()
    assert state.report.ok, state.report.describe()
    assert state.report.entries == 800
    assert [r.seq for r in state.records] == list(range(800))
    sources = _sources()
    for i in range(8):
        mine = [s for s in sources if s.startswith(f"/models/p{i}/")]
        # Nothing lost, and each writer's own records stay in its order.
        assert mine == [f"/models/p{i}/{n}" for n in range(100)]


def test_threads_share_the_ledger() -> None:
    def work(t: int) -> None:
        for i in range(25):
            record(_entry(t * 100 + i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = verify()
    assert report.ok and report.entries == 100


WRITE_STEPS = ["locked", "tail-read", "head-recreated", "fragment-kept", "truncated", "appended",
               "synced", "head-tmp-written", "head-replaced", "done"]


@pytest.mark.parametrize("step", WRITE_STEPS)
def test_kill_at_every_step_of_a_write(step: str) -> None:
    """SIGKILL between each pair of write steps (a torn tail first, so repair steps run too)."""
    if step == "head-recreated":  # only runs when HEAD is missing next to a single entry
        _fill(1)
        (ledger_dir() / "HEAD").unlink()
    else:
        _fill(2)
    with open(_ledger(), "ab") as fh:
        fh.write(b'{"digest":"sha256:00')
    proc = _child("crash", 1, crash_at=step)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    report = verify()
    assert report.ok, report.describe()
    assert report.entries in (1, 2, 3)
    # The next writer, after the crash, repairs what is left and the chain goes on.
    record(_entry(7))
    report = verify()
    assert report.ok, report.describe()
    assert not any("behind" in n or "torn tail" in n for n in report.notes)


def test_kill_mid_write_leaves_a_torn_line_the_next_writer_repairs() -> None:
    """A write cut short by SIGKILL: the child appends part of a line under the lock, dies."""
    _fill(3)
    code = textwrap.dedent("""
        import os, signal, sys, filelock
        from safeload._internal import paths
        from safeload.provenance import ledger as p
        d = paths.ledger_dir()
        line, _ = p.seal({"entry": {}, "prev": p.GENESIS, "seq": 3, "v": 1})
        with filelock.FileLock(d / p.LOCK_NAME):
            fd = os.open(d / p.LEDGER_NAME, os.O_WRONLY | os.O_APPEND)
            os.write(fd, line[: int(sys.argv[1])])
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    rng = random.Random(5)
    for _ in range(3):
        cut = rng.randrange(1, 150)
        proc = subprocess.run([sys.executable, "-c", code, str(cut)], check=False, timeout=60)
        assert proc.returncode == -signal.SIGKILL
        report = verify()
        assert report.ok and report.torn_tail_bytes == cut
        record(_entry(1))  # the lock died with the child; the next writer repairs the tail
        assert verify().ok and verify().torn_tail_bytes == 0


def test_kill_at_random_times_during_a_write_loop() -> None:
    rng = random.Random(1234)
    rounds = 20
    for n in range(rounds):
        proc = _child(f"r{n}", 100_000)
        deadline = time.monotonic() + 30
        # Wait until the child is writing, then kill it at a random moment.
        while (not _ledger().exists() or verify().entries <= n) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        report = verify()
        assert report.ok, f"round {n}: {report.describe()}"
    record(_entry())
    report = verify()
    assert report.ok and report.entries > rounds
    assert not any("torn tail" in n for n in report.notes)
