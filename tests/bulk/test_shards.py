"""`safeload convert --manifest` shards and `--merge` over a 40-checkpoint store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from bulk_store import Store, build_store, fires
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from safetensors.torch import load_file

from safeload import bulk, bulkmerge
from safeload._cli import main
from safeload.errors import ResultsError
from safeload.provenance import verify as verify_ledger


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = build_store(tmp_path_factory.mktemp("bulk-store"))
    assert fires(s)  # the control: the canaries do fire under the real loaders
    return s


def _cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    run = subprocess.run([sys.executable, "-m", "safeload", "convert", "--json", *args],
                         capture_output=True, text=True, env={**os.environ, **(env or {})},
                         timeout=600)
    assert run.stdout.count("\n") == 1, run.stderr  # --json prints one object
    return run.returncode, json.loads(run.stdout)


def _flatten(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint by dotted path, as the converter names them."""
    out: dict[str, torch.Tensor] = {}
    for k, v in value.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[prefix + k] = v
    return out


def test_shards_are_deterministic_disjoint_and_cover_the_manifest() -> None:
    entries = [bulk.ManifestEntry(i + 1, i, f"/m/{i}") for i in range(23)]
    for count in range(1, 6):
        shards = [bulk.shard_of(entries, i, count) for i in range(count)]
        seen = [e.index for s in shards for e in s]
        assert sorted(seen) == list(range(23)) and len(seen) == len(set(seen))
        assert all(e.index % count == i for i, s in enumerate(shards) for e in s)
        assert shards == [bulk.shard_of(entries, i, count) for i in range(count)]
    with pytest.raises(ValueError, match="0..2"):
        bulk.shard_of(entries, 3, 3)


def test_manifest_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    m = tmp_path / "sub" / "inputs.txt"
    m.parent.mkdir()
    m.write_text("# comment\n\n a/b.pt \n/abs/c.pt\n")
    got = bulk.read_manifest(m)
    assert [(e.line, e.index, e.path) for e in got] == [
        (3, 0, str(tmp_path / "sub" / "a" / "b.pt")), (4, 1, "/abs/c.pt")]
    m.write_bytes(b"\xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        bulk.read_manifest(m)


def test_shard_index_comes_from_the_indexed_job_environment() -> None:
    assert bulk.shard_index(None, {"JOB_COMPLETION_INDEX": "3"}) == 3
    assert bulk.shard_index(1, {"JOB_COMPLETION_INDEX": "3"}) == 1
    with pytest.raises(ValueError, match="JOB_COMPLETION_INDEX"):
        bulk.shard_index(None, {})
    with pytest.raises(ValueError, match="not an integer"):
        bulk.shard_index(None, {"JOB_COMPLETION_INDEX": "x"})


def test_three_shards_convert_the_store_and_merge_into_one_summary_and_bom(
        store: Store, tmp_path: Path) -> None:
    out = tmp_path / "converted"
    codes = []
    for i in range(3):
        code, shard = _cli(["--manifest", str(store.manifest), "--shard-count", "3",
                            "--out", str(out)], env={"JOB_COMPLETION_INDEX": str(i)})
        codes.append(code)
        assert shard["shard"] == i and Path(shard["results"]).is_file()
        assert verify_ledger(Path(shard["ledger"])).ok  # each shard's own ledger verifies
    assert not store.marker.exists()
    assert 1 in codes and 2 not in codes  # refusals exit 1 without --refused-ok
    sbom = tmp_path / "store.cdx.json"
    code, summary = _cli(["--merge", *sorted(map(str, out.glob("results-*.jsonl"))),
                          "--sbom", str(sbom), "--refused-ok"])
    assert code == 0, summary
    n = len(store.benign)
    assert summary["counts"] == {"converted": n, "reused": 0, "skipped": 2, "refused": 4,
                                 "error": 0}
    assert summary["inputs"] == 40 and not summary["problems"]
    assert {r["source"] for r in summary["refused"]} == {str(p) for p in store.hostile}
    for src in store.benign:
        got = load_file(summary["outputs"][str(src)])
        want = _flatten(torch.load(src, weights_only=True))
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in got)
    text = sbom.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert len(bom["components"]) == 40  # every distinct input, refused ones included
    assert not store.marker.exists()

    # A rerun converts nothing: every output is reused, byte for byte the same file.
    inodes = {p: p.stat().st_ino for p in out.glob("*.safetensors")}
    for i in range(3):
        _cli(["--manifest", str(store.manifest), "--shard-count", "3", "--shard-index", str(i),
              "--out", str(out), "--refused-ok"])
    code, again = _cli(["--merge", *sorted(map(str, out.glob("results-*.jsonl")))])
    assert code == 1  # the refusals, without --refused-ok
    assert again["counts"]["converted"] == 0 and again["counts"]["reused"] == n
    assert {p: p.stat().st_ino for p in out.glob("*.safetensors")} == inodes
    assert not store.marker.exists()


def _shard_results(tmp_path: Path, store: Store, count: int) -> list[Path]:
    out = tmp_path / "out"
    for i in range(count):
        list(bulk.run_shard(store.manifest, i, count, out,
                            out / bulk.results_name(i, count)))
    return sorted(out.glob("results-*.jsonl"))


def test_merge_reports_missing_short_and_mixed_shards(store: Store, tmp_path: Path) -> None:
    files = _shard_results(tmp_path, store, 4)
    assert not bulkmerge.read_results(files).problems
    assert "shards with no results file: 2" in bulkmerge.read_results(
        files[:2] + files[3:]).problems
    lines = files[1].read_text().splitlines()
    files[1].write_text("\n".join(lines[:-1]) + "\n")  # one record lost
    assert any("shard 1:" in p for p in bulkmerge.read_results(files).problems)
    other = _shard_results(tmp_path / "b", store, 2)
    assert any("different shard counts" in p
               for p in bulkmerge.read_results([files[0], other[0]]).problems)
    assert main(["convert", "--merge", *map(str, files)]) == 2


@pytest.mark.parametrize("damage", ["partial", "not-json", "not-a-record"])
def test_merge_refuses_unfinished_or_damaged_results(tmp_path: Path, damage: str) -> None:
    f = tmp_path / "results-00000-of-00001.jsonl"
    if damage == "partial":
        f = f.with_name(f.name + ".partial")
        f.write_text("")
    else:
        f.write_text("{oops\n" if damage == "not-json" else '{"source": 1}\n')
    with pytest.raises(ResultsError, match=f.name):
        bulkmerge.read_results([f])
    assert main(["convert", "--merge", str(f)]) == 2


def test_a_worker_killed_mid_file_leaves_no_partial_output(tmp_path: Path) -> None:
    src = tmp_path / "big.pt"
    torch.save({f"t{i}": torch.randn(1 << 20) for i in range(48)}, src)  # ~200 MB
    (tmp_path / "inputs.txt").write_text("big.pt\n")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "safeload", "convert", "--manifest",
            str(tmp_path / "inputs.txt"), "--shard-index", "0", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(bulkmerge.LEFTOVER_PREFIX + "*")):
        assert proc.poll() is None, "the conversion ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(out.glob("*.safetensors")), "nothing is published under an output name"
    assert not (out / bulk.results_name(0, 1)).exists()
    assert (out / (bulk.results_name(0, 1) + ".partial")).exists()
    assert subprocess.run(args, capture_output=True, timeout=600).returncode == 0
    merged = bulkmerge.read_results([out / bulk.results_name(0, 1)])
    summary = bulkmerge.summarize(merged)
    assert summary["counts"]["converted"] == 1 and summary["leftover_temp_folders"]
    assert all(torch.equal(load_file(summary["outputs"][str(src)])[k], v)
               for k, v in torch.load(src, weights_only=True).items())
    assert bulkmerge.summarize(merged, remove_leftovers=True)["leftovers_removed"]
    assert not list(out.glob(bulkmerge.LEFTOVER_PREFIX + "*"))
