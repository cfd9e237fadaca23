"""A warning about a file is shown once per process, however often the file is loaded; the
default policy's "unsigned" note is shown for the first two unsigned files only (issue 11: "an
unsigned local file under the default policy is recorded, not warned about again"); the ledger
records every load's signature status."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload.provenance import read_ledger


def _unsigned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "unsigned" in r.getMessage()]


def _loads() -> list[safeload.provenance.ProvenanceEntry]:
    return [r.entry for r in read_ledger().records
            if r.entry is not None and r.entry.action == "load"]


def test_an_unsigned_file_is_warned_about_once_and_still_recorded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(2)}, str(f))
    with caplog.at_level(logging.WARNING, logger="safeload"):
        for _ in range(3):
            safeload.load(f)
    assert len(_unsigned(caplog)) == 1
    entries = _loads()
    assert entries and all(e.signature.status == "unsigned" for e in entries)
    assert all(e.trust.mode == "default" for e in entries)
    # The note says only what those fields say: the ledger does not repeat it per entry.
    assert not any("unsigned" in w for e in entries for w in e.warnings)


def test_a_dataset_of_unsigned_files_warns_twice_then_records_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(5):
        save_file({"w": torch.full((2,), float(i))}, str(tmp_path / f"{i}.safetensors"))
    with caplog.at_level(logging.WARNING, logger="safeload"):
        for i in range(5):
            safeload.load(tmp_path / f"{i}.safetensors")
    shown = _unsigned(caplog)
    assert len(shown) == 2
    assert "0.safetensors" in shown[0] and "1.safetensors" in shown[1]
    assert "not warned about again" in shown[1]
    assert len({e.files[0].sha256 for e in _loads()}) == 5
    assert all(e.signature.status == "unsigned" for e in _loads())


def test_other_warnings_are_still_shown_per_file(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from safeload import pipeline
    from safeload.trust import TrustDecision

    def decision(sha: str) -> TrustDecision:
        return TrustDecision(mode="audit", signed=False, publisher=None, key_id=None,
                             method=None, identity=None, pin="none", sha256=sha,
                             warnings=(f"audit: would refuse {sha}",))

    with caplog.at_level(logging.WARNING, logger="safeload"):
        for sha in ("a" * 64, "b" * 64, "c" * 64, "a" * 64):
            pipeline._log_warnings(decision(sha), sha)
    assert [r.getMessage() for r in caplog.records] == [
        f"audit: would refuse {s * 64}" for s in "abc"]


def test_no_loaded_note_precedes_a_refusal(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    # "X is unsigned; loaded because ..." is said of files that are loaded, not of one that
    # inspection then refuses (the refusal is the only message about it).
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.ones(2)}, str(good))
    with caplog.at_level(logging.WARNING, logger="safeload"):
        with pytest.raises(safeload.errors.UnsafeCheckpointError):
            safeload.load(bad)
        assert _unsigned(caplog) == []
        safeload.load(good)
    shown = _unsigned(caplog)
    assert len(shown) == 1 and "good.safetensors" in shown[0] and "loaded because" in shown[0]
