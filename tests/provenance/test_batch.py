"""The batched ledger writer: group commit, coalescing, session records, rotation, crashes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from safeload._internal.paths import ledger_dir
from safeload.errors import ProvenanceError, ProvenanceWarning
from safeload.provenance import (
    ConvertedFrom,
    FileRecord,
    ProvenanceEntry,
    PublisherRecord,
    SignatureRecord,
    Source,
    TrustRecord,
    batch,
    flush,
    ledger,
    read_ledger,
    record,
    record_or_warn,
    verify,
)
from safeload.sbom import to_cyclonedx

ASSETS = Path(__file__).parent.parent / "assets"


def _entry(i: int = 0, **kw: object) -> ProvenanceEntry:
    path = f"/data/shard-{i:05d}.pt"
    fields: dict[str, object] = {
        "action": "load",
        "source": Source.local(path),
        "files": (FileRecord(f"/cache/{i:064x}/model.safetensors", f"{i:064x}", 4096,
                             "safetensors"),),
        "converted_from": ConvertedFrom(f"{i + 1:064x}", "torch-zip", ("seccomp", "landlock"),
                                        path),
        "warnings": (f"{path} is unsigned; loaded because no trusted publisher claims it",),
    }
    fields.update(kw)
    return ProvenanceEntry(**fields)  # type: ignore[arg-type]


def _raw_lines() -> list[dict[str, object]]:
    """Every line on disk, all segments, without flushing (read_ledger would flush)."""
    directory = ledger_dir()
    out: list[dict[str, object]] = []
    for path in [*ledger.segments(directory), directory / ledger.LEDGER_NAME]:
        if path.exists():
            out += [json.loads(line) for line in path.read_bytes().splitlines()]
    return out


@pytest.fixture
def slow_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """No time-based flush during the test: only count, exit, strict and reads flush."""
    monkeypatch.setattr(batch, "FLUSH_SECONDS", 3600.0)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = ledger._datasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(ledger, "_datasync", counting)
    return calls


# --------------------------------------------------------------------------------------------
# Group commit


def test_n_records_cost_one_fdatasync_per_batch(slow_timer: None, syncs: list[int]) -> None:
    assert record_or_warn(_entry(0), strict=False) is not None  # a process's first: at once
    assert len(syncs) == 1
    for i in range(1, 50):
        assert record_or_warn(_entry(i), strict=False) is None  # queued
    assert len(syncs) == 1 and len(_raw_lines()) == 2  # session + first entry
    flush()
    assert len(syncs) == 2
    state = read_ledger()
    assert state.report.ok and state.report.loads == 50
    assert [r.entry.source.path for r in state.records if r.entry] == [
        f"/data/shard-{i:05d}.pt" for i in range(50)]


def test_a_full_batch_is_written_at_once(slow_timer: None, syncs: list[int],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "FLUSH_COUNT", 10)
    for i in range(21):
        record_or_warn(_entry(i), strict=False)
    assert len(syncs) == 3  # the first entry, then two batches of ten
    assert sum(1 for line in _raw_lines() if "entry" in line) == 21


def test_queued_entries_reach_the_disk_within_the_time_bound(syncs: list[int]) -> None:
    record_or_warn(_entry(0), strict=False)
    for i in range(1, 5):
        record_or_warn(_entry(i), strict=False)
    deadline = time.monotonic() + 5
    while sum(1 for line in _raw_lines() if "entry" in line) < 5:
        assert time.monotonic() < deadline, "the timer never flushed"
        time.sleep(0.01)
    assert len(syncs) == 2


def test_strict_entry_is_durable_before_record_or_warn_returns(slow_timer: None,
                                                               syncs: list[int]) -> None:
    record_or_warn(_entry(0), strict=False)
    record_or_warn(_entry(1), strict=False)  # queued
    head = record_or_warn(_entry(2), strict=True)
    assert len(syncs) == 2 and head is not None
    lines = _raw_lines()  # on disk, without any flush
    assert [line["entry"]["source"]["path"] for line in lines if "entry" in line] == [  # type: ignore[index]
        "/data/shard-00000.pt", "/data/shard-00001.pt", "/data/shard-00002.pt"]
    assert lines[-1]["digest"] == head


def _hold_writes(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """A fault hook that stops each batch write after its lock is taken, until released."""
    started, release = threading.Event(), threading.Event()

    def hook(step: str) -> None:
        if step == "locked" and threading.current_thread() is not threading.main_thread():
            started.set()
            assert release.wait(10), "the test never released the write"

    monkeypatch.setattr(ledger, "_fault_hook", hook)
    return started, release


def test_loads_go_on_queueing_while_a_batch_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # The timer's write and sync used to run under the queue's lock: every load in the loop
    # waited for the fdatasync.
    record_or_warn(_entry(0), strict=False)  # the first entry, at once (main thread)
    started, release = _hold_writes(monkeypatch)
    record_or_warn(_entry(1), strict=False)
    assert started.wait(5), "the timer never started a write"
    done = threading.Event()

    def load() -> None:
        for i in range(2, 40):
            record_or_warn(_entry(i), strict=False)
        done.set()

    threading.Thread(target=load, daemon=True).start()
    assert done.wait(5), "loads waited for the write in flight"
    release.set()
    state = read_ledger()
    assert state.report.ok and state.report.loads == 40
    assert [r.entry.source.path for r in state.records if r.entry] == [
        f"/data/shard-{i:05d}.pt" for i in range(40)]


def test_repeats_of_an_entry_whose_line_is_being_written_are_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    record_or_warn(_entry(0), strict=False)
    started, release = _hold_writes(monkeypatch)
    record_or_warn(_entry(5), strict=False)
    assert started.wait(5)
    receipt: list[tuple[Path, bytes]] = []
    for _ in range(3):  # while entry 5's line, saying n=1, is in flight
        record_or_warn(_entry(5), strict=False, receipt=receipt)
    assert batch.record_again(*receipt[0])
    release.set()
    state = read_ledger()  # (flushes, after the write in flight)
    assert state.report.ok and state.report.loads == 6
    assert [(r.entry.source.path, r.count) for r in state.records if r.entry] == [
        ("/data/shard-00000.pt", 1), ("/data/shard-00005.pt", 5)]


def test_strict_failure_raises_and_default_warns_once_per_ledger(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    target = blocker / "provenance"
    with pytest.raises(ProvenanceError, match="cannot write the provenance ledger"):
        record_or_warn(_entry(), strict=True, ledger=target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(5):
            assert record_or_warn(_entry(i), strict=False, ledger=target) is None
    assert [str(w.message).count("provenance NOT recorded") for w in caught] == [1]
    assert all(w.category is ProvenanceWarning for w in caught)


# --------------------------------------------------------------------------------------------
# Compact entries and coalescing


def _variants() -> list[ProvenanceEntry]:
    """Entries that differ from the session's defaults in every field that has one."""
    return [
        _entry(0),
        _entry(1, converted_from=None, warnings=()),
        _entry(2, publisher=PublisherRecord("acme", True, True), action="from_pretrained"),
        _entry(3, signature=SignatureRecord("verified", "acme", "kid", "sigstore"),
               trust=TrustRecord("strict", "hit")),
        _entry(4, warnings=("something about another file",), datasets=("d1",)),
        _entry(5, converted_from=ConvertedFrom("f" * 64, "pickle", (), None)),
        _entry(6, source=Source.huggingface("acme/m", "a" * 40, "model.bin"), warnings=()),
    ]


def test_compact_entries_read_back_exactly(slow_timer: None) -> None:
    written = _variants()
    for e in written:
        record_or_warn(e, strict=False)
    records = [r for r in read_ledger().records if r.entry is not None]
    assert [r.entry.to_dict() for r in records if r.entry] == [e.to_dict() for e in written]


def test_compact_entries_leave_the_session_fields_out(slow_timer: None) -> None:
    for i in range(3):
        record_or_warn(_entry(i), strict=False)
    flush()
    lines = _raw_lines()
    assert "session" in lines[0]
    assert lines[0]["session"]["pid"] == os.getpid()  # type: ignore[index]
    for line in lines[1:]:
        stored = line["entry"]
        assert isinstance(stored, dict)
        assert not {"safeload_version", "signature", "trust", "warnings"} & set(stored)
        assert line["s"] == 0


def _converted(i: int, store: str = "/cache/converted") -> ProvenanceEntry:
    src = f"{i:064x}"
    out = FileRecord(f"{store}/{src}-c0.1.0-a1/model.safetensors", f"{i + 7:064x}", 4096,
                     "safetensors")
    return _entry(i, files=(out,), converted_from=ConvertedFrom(src, "torch-zip", (), None))


def test_converted_outputs_on_the_store_pattern_leave_their_path_out(slow_timer: None) -> None:
    written = [_converted(i) for i in range(3)]
    written.append(_converted(3, store="/elsewhere"))  # off the pattern: kept whole
    for e in written:
        record_or_warn(e, strict=False)
    flush()
    lines = _raw_lines()
    assert lines[0]["session"]["output_template"] == (  # type: ignore[index]
        "/cache/converted/{sha256}-c0.1.0-a1/model.safetensors")
    stored = [line["entry"]["files"][0] for line in lines[1:]]  # type: ignore[index]
    assert [("path" in f, f.get("path_from_template")) for f in stored] == [
        (False, True), (False, True), (False, True), (True, None)]
    records = [r for r in read_ledger().records if r.entry is not None]
    assert [r.entry.to_dict() for r in records if r.entry] == [e.to_dict() for e in written]


@pytest.mark.parametrize("files", [
    [{"path_from_template": True, "path": "/x"}],
    [{"path_from_template": "yes"}],
    [{"path_from_template": True}, {"path": "/y"}],
])
def test_a_malformed_path_from_template_is_refused(files: list[dict[str, object]]) -> None:
    session = {"output_template": "/c/{sha256}/m.safetensors", "safeload_version": "0"}
    stored = {"files": files, "converted_from": {"sha256": "a" * 64}}
    with pytest.raises(ValueError, match="path_from_template"):
        batch.expand(stored, session)
    with pytest.raises(ValueError, match="path_from_template"):  # no template in the session
        batch.expand({"files": [{"path_from_template": True}],
                      "converted_from": {"sha256": "a" * 64}}, {"safeload_version": "0"})


def test_repeats_add_a_count_not_an_entry(slow_timer: None) -> None:
    for _ in range(4):
        record_or_warn(_entry(7), strict=False)  # the first written at once, three queued
    record_or_warn(_entry(8), strict=False)
    flush()
    for _ in range(5):
        record_or_warn(_entry(8), strict=False)  # after its entry is on disk: a tally
        record_or_warn(_entry(7), strict=False)
    record_or_warn(_entry(8, trust=TrustRecord("audit", "mismatch")), strict=False)  # decision
    state = read_ledger()
    assert state.report.ok
    counts = [(r.entry.source.path, r.entry.trust.pin, r.count) for r in state.records if r.entry]
    assert counts == [("/data/shard-00007.pt", "none", 9), ("/data/shard-00008.pt", "none", 6),
                      ("/data/shard-00008.pt", "mismatch", 1)]
    assert state.report.loads == 16
    bom = json.dumps(to_cyclonedx(state.records, report=state.report))
    assert "shard-00007" in bom and "shard-00008" in bom


def _append_v2(bodies: list[dict[str, object]]) -> None:
    ledger.append_lines(ledger_dir(), lambda seq: bodies, version=ledger.LINE_VERSION_2)


def test_a_tally_naming_another_sessions_entry_is_damage(slow_timer: None) -> None:
    record_or_warn(_entry(0), strict=False)  # session 0, entry 1
    _append_v2([{"session": {"id": "other", "safeload_version": "0.1.0"}}])  # seq 2
    _append_v2([{"tally": [[1, 1000]], "s": 2, "time": "2026-01-01T00:00:00Z"}])
    report = verify()
    assert not report.ok and report.first_bad is not None
    assert "not an entry of its session" in report.first_bad.reason


def test_an_entry_naming_no_session_is_damage() -> None:
    record(_entry(0))
    _append_v2([{"entry": {"action": "load", "source": {"path": "/x"}}, "s": 0}])
    report = verify()
    assert not report.ok and "not a session record" in report.describe()


def test_an_edited_tally_is_detected(slow_timer: None) -> None:
    record_or_warn(_entry(0), strict=False)
    record_or_warn(_entry(0), strict=False)
    flush()
    path = ledger_dir() / ledger.LEDGER_NAME
    data = path.read_bytes()
    assert b'"tally":[[1,1]]' in data
    path.write_bytes(data.replace(b'"tally":[[1,1]]', b'"tally":[[1,9]]'))
    assert not verify().ok


# --------------------------------------------------------------------------------------------
# Rotation


def _rotated(monkeypatch: pytest.MonkeyPatch, n: int) -> list[Path]:
    monkeypatch.setenv("SAFELOAD_LEDGER_SEGMENT_BYTES", "4096")
    for i in range(n):
        record(_entry(i)) if i % 2 else record_or_warn(_entry(i), strict=True)
    found = ledger.segments(ledger_dir())
    assert len(found) >= 3
    return found


def test_rotation_keeps_one_chain_across_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    found = _rotated(monkeypatch, 40)
    assert all(p.stat().st_size >= 4096 for p in found)
    report = verify()
    assert report.ok, report.describe()
    assert report.segments == len(found) + (1 if (ledger_dir() / "ledger.jsonl").exists() else 0)
    assert report.loads == 40
    state = read_ledger()
    assert [r.entry.source.path for r in state.records if r.entry] == [
        f"/data/shard-{i:05d}.pt" for i in range(40)]
    seqs = [line["seq"] for line in _raw_lines()]
    assert seqs == list(range(len(seqs)))


@pytest.mark.parametrize("damage", ["edit", "delete-oldest", "delete-middle", "truncate"])
def test_damage_in_an_old_segment_is_detected(monkeypatch: pytest.MonkeyPatch,
                                              damage: str) -> None:
    found = _rotated(monkeypatch, 40)
    if damage == "edit":
        data = found[0].read_bytes()
        found[0].write_bytes(data.replace(b"shard-00002", b"shard-00099", 1))
    elif damage == "delete-oldest":
        found[0].unlink()
    elif damage == "delete-middle":
        found[1].unlink()
    else:
        data = found[1].read_bytes()
        found[1].write_bytes(data[: len(data) // 2])
    report = verify()
    assert not report.ok, report.describe()
    record(_entry(99))  # writers check only the chain's end; the damage stays visible
    assert not verify().ok


def test_a_writer_continues_from_the_newest_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    _rotated(monkeypatch, 40)
    if (ledger_dir() / ledger.LEDGER_NAME).exists():
        ledger._rotate(ledger_dir())  # the state a rotation leaves: no active file
    record_or_warn(_entry(100), strict=True)
    assert not (ledger_dir() / ledger.LEDGER_NAME).read_bytes().count(b"\n") > 2
    report = verify()
    assert report.ok and report.loads == 41, report.describe()


def test_the_v1_ledger_still_verifies_and_takes_batched_entries(tmp_path: Path,
                                                                slow_timer: None) -> None:
    copy = tmp_path / "provenance"
    shutil.copytree(ASSETS / "ledger-v1", copy)
    (copy / "README.md").unlink()
    before = read_ledger(copy)
    assert before.report.ok and before.report.entries == 5
    for i in range(3):
        record_or_warn(_entry(i), strict=False, ledger=copy)
    record_or_warn(_entry(0), strict=False, ledger=copy)
    after = read_ledger(copy)
    assert after.report.ok, after.report.describe()
    assert [r.entry for r in after.records[:5]] == [r.entry for r in before.records]
    assert after.report.loads == 5 + 4 and after.report.entries == 5 + 1 + 3 + 1


# --------------------------------------------------------------------------------------------
# Processes: exit, kill -9, concurrency, fork

_CHILD = textwrap.dedent("""
    import os, signal, sys
    from safeload.provenance import FileRecord, ProvenanceEntry, Source, batch, flush
    from safeload.provenance import record_or_warn
    tag, count, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if how != "timer":
        batch.FLUSH_SECONDS = 3600.0
    def entry(i):
        return ProvenanceEntry(action="load", source=Source.local(f"/m/{tag}/{i}"),
                               files=(FileRecord(f"/m/{tag}/{i}", "ab" * 32, i, "safetensors"),))
    for i in range(count):
        record_or_warn(entry(i), strict=how == "strict")
        if how == "flush-half" and i == count // 2:
            flush()
    if how in ("kill", "flush-half", "strict"):
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def _run(tag: str, count: int, how: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, tag, str(count), how],
                            env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _paths(tag: str) -> list[str]:
    return [r.entry.source.path or "" for r in read_ledger().records
            if r.entry and (r.entry.source.path or "").startswith(f"/m/{tag}/")]


def test_a_normal_exit_flushes_the_queue() -> None:
    child = _run("exit", 30, "exit")
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    assert _paths("exit") == [f"/m/exit/{i}" for i in range(30)]
    assert verify().ok


@pytest.mark.parametrize(("how", "kept"), [("kill", 1), ("flush-half", 16), ("strict", 30)])
def test_kill_9_loses_at_most_the_unflushed_batch(how: str, kept: int) -> None:
    child = _run(how, 30, how)
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()
    report = verify()
    assert report.ok, report.describe()
    assert _paths(how) == [f"/m/{how}/{i}" for i in range(kept)]


def test_two_processes_append_concurrently_with_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_LEDGER_SEGMENT_BYTES", "8192")
    children = [_run(f"c{i}", 150, "timer") for i in range(2)]
    for c in children:
        _, err = c.communicate(timeout=120)
        assert c.returncode == 0, err.decode()
    state = read_ledger()
    assert state.report.ok, state.report.describe()
    assert state.report.segments > 1
    for i in range(2):
        assert _paths(f"c{i}") == [f"/m/c{i}/{j}" for j in range(150)]
    seqs = [line["seq"] for line in _raw_lines()]
    assert seqs == list(range(len(seqs)))
    assert sum(1 for line in _raw_lines() if "session" in line) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_neither_repeats_nor_loses_the_parents_queue(slow_timer: None) -> None:
    record_or_warn(_entry(0), strict=False)
    for i in range(1, 4):
        record_or_warn(_entry(i), strict=False)  # queued in the parent
    pid = os.fork()
    if pid == 0:  # the child: its own session, its own entry
        try:
            record_or_warn(_entry(50), strict=False)
            flush()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    state = read_ledger()
    assert state.report.ok
    paths = sorted(r.entry.source.path or "" for r in state.records if r.entry)
    assert paths == sorted(f"/data/shard-{i:05d}.pt" for i in (0, 1, 2, 3, 50))
    assert sum(1 for line in _raw_lines() if "session" in line) == 2


def _worker(tag: str) -> None:
    batch.FLUSH_SECONDS = 3600.0
    for i in range(5):
        record_or_warn(_entry(i, source=Source.local(f"/m/{tag}/{i}")), strict=False)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_multiprocessing_worker_flushes_on_exit(method: str) -> None:
    import multiprocessing

    worker = multiprocessing.get_context(method).Process(target=_worker, args=(method,))
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0
    assert _paths(method) == [f"/m/{method}/{i}" for i in range(5)]


def test_a_fork_while_another_thread_reads_the_ledger_leaves_the_child_free_to_write(
        tmp_path: Path) -> None:
    # Review H: the ledger's thread lock was not taken across fork; a child forked while a
    # reader (`provenance verify` in a monitoring thread) held it waited forever.
    script = textwrap.dedent(f"""
        import os, sys, threading, time
        os.environ["SAFELOAD_HOME"] = {str(tmp_path / "home")!r}
        from safeload.provenance import read, record_or_warn
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_batch import _entry
        record_or_warn(_entry(0), strict=False)
        stop = False
        def reader():
            while not stop:
                read.verify()
        threading.Thread(target=reader, daemon=True).start()
        hung = 0
        for k in range(15):
            pid = os.fork()
            if pid == 0:
                record_or_warn(_entry(k + 1), strict=False)  # the child's first: written at once
                os._exit(0)
            end = time.monotonic() + 10
            while not os.waitpid(pid, os.WNOHANG)[0]:
                if time.monotonic() > end:
                    hung += 1
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
        stop = True
        print("hung", hung)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=240)
    assert out.stdout.strip().endswith("hung 0"), out.stdout + out.stderr
