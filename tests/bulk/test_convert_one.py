"""`safeload.convert_one`: pure, idempotent, atomic, verified like a load, one record."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from bulk_store import Canary, build_store, fires
from safetensors.torch import load_file

import safeload
from safeload import bulk, pipeline
from safeload.provenance import read_ledger


def _one(tmp_path: Path, name: str = "m.pt") -> Path:
    p = tmp_path / "src" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int8)}, p)
    return p


def test_output_is_named_by_input_digest_and_holds_the_same_tensors(tmp_path: Path) -> None:
    src = _one(tmp_path)
    rec = safeload.convert_one(src, tmp_path / "out")
    assert rec["decision"] == "converted", rec
    assert rec["output"] == str(tmp_path / "out" / f"{rec['input_sha256']}.safetensors")
    got = load_file(rec["output"])
    want = torch.load(src, weights_only=True)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype
    assert rec["tensors"] == 2 and rec["output_size"] == os.path.getsize(rec["output"])
    assert rec["sandbox_layers"], "the record names the sandbox layers that applied"
    json.dumps(rec)  # JSON-able as it is


def test_rerun_reuses_the_output_without_converting(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = _one(tmp_path)
    first = safeload.convert_one(src, tmp_path / "out")
    before = os.stat(first["output"])

    def no_conversion(*a: object, **k: object) -> None:
        raise AssertionError("a rerun must not convert again")

    monkeypatch.setattr(pipeline, "convert_to", no_conversion)
    again = safeload.convert_one(src, tmp_path / "out")
    assert again["decision"] == "reused"
    assert again["output_sha256"] == first["output_sha256"]
    after = os.stat(first["output"])
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("damage", ["flip", "truncate", "other-tensors"])
def test_an_existing_output_that_does_not_match_is_converted_again(tmp_path: Path,
                                                                   damage: str) -> None:
    src = _one(tmp_path)
    rec = safeload.convert_one(src, tmp_path / "out")
    out = Path(rec["output"])
    data = bytearray(out.read_bytes())
    if damage == "flip":
        data[-1] ^= 1
        out.write_bytes(bytes(data))
    elif damage == "truncate":
        out.write_bytes(bytes(data[:len(data) // 2]))
    else:  # a valid safetensors file planted under the name: not the conversion of the input
        from safetensors.torch import save_file

        save_file({"a": torch.zeros(2, 3), "b": torch.ones(2, dtype=torch.int8)}, str(out))
    again = safeload.convert_one(src, tmp_path / "out")
    assert again["decision"] == "converted"
    assert again["output_sha256"] == rec["output_sha256"]
    assert torch.equal(load_file(str(out))["a"], torch.arange(6.0).reshape(2, 3))


def test_a_hostile_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    src = tmp_path / "evil.pt"
    torch.save({"w": Canary(marker)}, src)
    torch.load(src, weights_only=False)  # the control: it does fire under the real loader
    assert marker.exists()
    marker.unlink()
    rec = safeload.convert_one(src, tmp_path / "out")
    assert rec["decision"] == "refused" and rec["error_type"] == "UnsafeCheckpointError"
    assert "io.open" in rec["error"] and rec["output"] is None
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_safetensors_is_skipped_and_missing_files_are_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    st = tmp_path / "a.safetensors"
    save_file({"w": torch.ones(2)}, str(st))
    rec = safeload.convert_one(st, tmp_path / "out")
    assert rec["decision"] == "skipped" and rec["output"] is None and rec["error"] is None
    assert rec["format"] == "safetensors"
    gone = safeload.convert_one(tmp_path / "nope.pt", tmp_path / "out")
    assert gone["decision"] == "error" and gone["error_type"] == "FileNotFoundError"
    assert "nope.pt" in gone["error"]


def test_policy_can_tighten_the_store_policy_but_never_loosen_it(tmp_path: Path) -> None:
    from safeload._cli import main

    src = _one(tmp_path)
    rec = safeload.convert_one(src, tmp_path / "out", policy={"pickles": "refuse"})
    assert rec["decision"] == "refused" and "policy.pickles = refuse" in rec["error"]
    assert main(["trust", "policy", "--pickles", "refuse"]) == 0
    rec = safeload.convert_one(src, tmp_path / "out", policy={"pickles": "convert"})
    assert rec["decision"] == "refused"
    bad = safeload.convert_one(src, tmp_path / "out", policy={"pickles": "sometimes"})
    assert bad["decision"] == "error" and bad["error_type"] == "TrustStoreError"


def test_each_conversion_writes_a_provenance_entry(tmp_path: Path) -> None:
    src = _one(tmp_path)
    rec = safeload.convert_one(src, tmp_path / "out")
    safeload.convert_one(src, tmp_path / "out")
    entries = [r.entry for r in read_ledger().records if r.entry is not None]
    converts = [e for e in entries if e.action == "convert"]
    assert converts and all(e.converted_from is not None for e in converts)
    assert converts[-1].converted_from.sha256 == rec["input_sha256"]  # type: ignore[union-attr]
    assert converts[-1].files[0].sha256 == rec["output_sha256"]


def test_a_concurrent_publisher_of_the_same_content_is_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeload._internal import atomic

    src = _one(tmp_path)
    ref = safeload.convert_one(src, tmp_path / "ref")

    def racing(source: Path, dst: Path, **kw: object) -> None:
        shutil.copyfile(ref["output"], dst)  # another worker published first
        raise FileExistsError(dst)

    monkeypatch.setattr(atomic, "copy_atomic", racing)
    rec = safeload.convert_one(src, tmp_path / "out")
    assert rec["decision"] == "reused" and rec["output_sha256"] == ref["output_sha256"]


def test_convert_one_ships_by_reference(tmp_path: Path) -> None:
    # Dask and Ray pickle the function to send it to workers: it must resolve by name.
    assert pickle.loads(pickle.dumps(safeload.convert_one)) is bulk.convert_one
    assert bulk.convert_one.__module__ == "safeload.bulk"


def test_the_store_canaries_fire_under_the_real_loaders(tmp_path: Path) -> None:
    # The control for every bulk test that uses this store.
    assert fires(build_store(tmp_path, benign=1))
