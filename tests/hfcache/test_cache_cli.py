"""`safeload cache scan|convert` on Hugging Face cache layouts built on disk (no network).

Layouts follow shared/reference/ecosystem.md part A: blobs named by sha256 (LFS) or git sha1,
relative snapshot symlinks, refs/main without a newline, `.no_exist` markers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import safeload
from safeload._cli import main
from safeload._internal import paths, sandbox
from safeload.provenance import read_ledger

LFS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_repo(cache: Path, repo_id: str, src: Path, commit: str,
             no_exist: tuple[str, ...] = ()) -> Path:
    """The verified helper of the reference note: what a real download leaves behind."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    for p in sorted(x for x in src.rglob("*") if x.is_file()):
        rel, data = p.relative_to(src).as_posix(), p.read_bytes()
        etag = hashlib.sha256(data).hexdigest() if rel.endswith(LFS) else _git_sha1(data)
        blob = repo / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(p, blob)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)  # no trailing newline, as the hub writes it
    for f in no_exist:
        (repo / ".no_exist" / commit / f).parent.mkdir(parents=True, exist_ok=True)
        (repo / ".no_exist" / commit / f).touch()
    return snap


class Canary:
    """Pickles as `os.system("touch <marker>")`: the payload only ever creates a marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Cache:
    root: Path
    marker: Path
    tensors: dict[str, dict[str, torch.Tensor]]  # repo -> the original state dict
    commits: dict[str, str]


def _commit(n: int) -> str:
    return f"{n:040x}"


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry under `root`: links by target, files by size (what "untouched" means)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = (os.readlink(p), 0)
        else:
            out[rel] = ("dir", 0) if p.is_dir() else ("file", p.stat().st_size)
    return out


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    root, src, marker = tmp_path / "hub", tmp_path / "src", tmp_path / "CANARY-FIRED"
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    commits: dict[str, str] = {}
    config = json.dumps({"model_type": "gpt2"}).encode()

    def repo(name: str, n: int, files: dict[str, Any], no_exist: tuple[str, ...] = ()) -> Path:
        d = src / name
        d.mkdir(parents=True)
        (d / "config.json").write_bytes(config)
        for fname, obj in files.items():
            if fname.endswith(".safetensors"):
                save_file(obj, str(d / fname))
            elif isinstance(obj, bytes):
                (d / fname).write_bytes(obj)
            else:
                torch.save(obj, d / fname)
        commits[name] = _commit(n)
        return add_repo(root, name, d, _commit(n), no_exist)

    torch.manual_seed(0)
    single = {"wte.weight": torch.randn(16, 8), "ln.bias": torch.arange(8.0)}
    tensors["org/pickle-only"] = single
    repo("org/pickle-only", 1, {"pytorch_model.bin": single}, no_exist=("model.safetensors",))
    a, b = {"h.0.w": torch.randn(4, 4)}, {"h.1.w": torch.randn(6), "h.1.b": torch.ones(2)}
    tensors["org/sharded"] = {**a, **b}
    index = {"metadata": {"total_size": 1}, "weight_map": {
        "h.0.w": "pytorch_model-00001-of-00002.bin", "h.1.w": "pytorch_model-00002-of-00002.bin",
        "h.1.b": "pytorch_model-00002-of-00002.bin"}}
    repo("org/sharded", 2, {"pytorch_model-00001-of-00002.bin": a,
                            "pytorch_model-00002-of-00002.bin": b,
                            "pytorch_model.bin.index.json": json.dumps(index).encode()},
         no_exist=("model.safetensors", "model.safetensors.index.json"))
    repo("org/hostile", 3, {"pytorch_model.bin": {"w": torch.ones(2), "x": Canary(marker)}})
    snap = repo("org/tampered", 4, {"pytorch_model.bin": {"w": torch.zeros(3)}})
    blob = snap / os.readlink(snap / "pytorch_model.bin")
    data = bytearray(blob.read_bytes())
    data[-30] ^= 0xFF  # inside the zip's central directory: the file is no longer what was named
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    tensors["org/safe"] = {"w": torch.ones(3)}
    snap = repo("org/safe", 5, {"model.safetensors": tensors["org/safe"]})
    (snap / "model.sig").write_text("{}")  # presence only: scan reports, it does not verify
    return Cache(root, marker, tensors, commits)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, json.loads(out.out) if "--json" in argv else None, out.err


def _files(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["repo_id"], f["name"]): f for r in doc["repos"] for rev in r["revisions"]
            for f in rev["files"]}


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Records each conversion child's argv (one child per repo revision, not per file)."""
    calls: list[list[str]] = []
    real = sandbox.run_worker

    def counting(module: str, argv: list[str], **kw: Any) -> Any:
        calls.append(list(argv))
        return real(module, argv, **kw)

    monkeypatch.setattr(sandbox, "run_worker", counting)
    monkeypatch.setenv("SAFELOAD_CONVERT_WORKER", "0")  # one-shot children only
    yield calls


def test_scan_classifies_by_bytes_and_writes_nothing(
        cache: Cache, capsys: pytest.CaptureFixture[str], isolated_home: Path) -> None:
    before = _tree(cache.root)
    code, doc, err = _run(["cache", "scan", "--cache-dir", str(cache.root), "--json"], capsys)
    assert code == 1 and doc["ok"] is False  # hostile and tampered files
    files = _files(doc)
    assert set(files) == {  # weight files only: no config.json, no index
        ("org/pickle-only", "pytorch_model.bin"),
        ("org/sharded", "pytorch_model-00001-of-00002.bin"),
        ("org/sharded", "pytorch_model-00002-of-00002.bin"),
        ("org/hostile", "pytorch_model.bin"), ("org/tampered", "pytorch_model.bin"),
        ("org/safe", "model.safetensors")}
    status = {k: f["status"] for k, f in files.items()}
    assert status[("org/pickle-only", "pytorch_model.bin")] == "convertible"
    assert status[("org/sharded", "pytorch_model-00002-of-00002.bin")] == "convertible"
    assert status[("org/hostile", "pytorch_model.bin")] == "unsafe"
    assert status[("org/tampered", "pytorch_model.bin")] == "tampered"
    # A model.sig that does not verify: a load refuses the file, so the scan says so too.
    assert status[("org/safe", "model.safetensors")] == "refused"
    assert "model.sig" in " ".join(files[("org/safe", "model.safetensors")]["findings"])
    good = files[("org/pickle-only", "pytorch_model.bin")]
    assert good["pickle"] and good["format"] == "torch-zip" and good["integrity"] == "ok"
    assert good["blob"] == good["sha256"] and good["converted"] is False
    assert good["pinned"] == "no" and good["signed"] is False
    assert files[("org/tampered", "pytorch_model.bin")]["integrity"] == "mismatch"
    hostile = files[("org/hostile", "pytorch_model.bin")]
    assert "system is not allowlisted" in " ".join(hostile["findings"])
    assert files[("org/safe", "model.safetensors")]["signed"] is True
    revs = {r["repo_id"]: r["revisions"][0] for r in doc["repos"]}
    assert revs["org/sharded"]["refs"] == ["main"]
    assert revs["org/sharded"]["commit"] == cache.commits["org/sharded"]
    assert doc["summary"]["convertible"] == 3 and doc["summary"]["repos"] == 5
    assert "tampered" in err  # the human summary still goes to stderr
    assert _tree(cache.root) == before
    assert not paths.converted_dir().exists()
    assert not cache.marker.exists()
    # The human table names each file; --repo narrows the scan.
    code = main(["cache", "scan", "--cache-dir", str(cache.root), "--repo", "org/safe"])
    out, err = capsys.readouterr()
    assert code == 1 and "model.safetensors" in out and "org/hostile" not in out
    assert "1 refused" in out and out.index("model.safetensors") < out.index("1 refused")
    assert "model.safetensors" not in err  # the report is a result: stdout only
    (cache.root / "models--org--safe" / "snapshots" / cache.commits["org/safe"]
     / "model.sig").unlink()
    code, doc, _ = _run(["cache", "scan", "--cache-dir", str(cache.root), "--repo", "org/safe",
                         "--json"], capsys)
    assert code == 0 and _files(doc)[("org/safe", "model.safetensors")]["status"] == \
        "safetensors"


def test_convert_one_child_per_revision_records_and_resumes(
        cache: Cache, capsys: pytest.CaptureFixture[str], children: list[list[str]]) -> None:
    before = _tree(cache.root)
    code, doc, err = _run(["cache", "convert", "--cache-dir", str(cache.root), "--json"], capsys)
    assert code == 1 and doc["ok"] is False  # unsafe files are reported...
    actions = {(f["repo_id"], f["name"]): f["action"] for f in doc["files"]}
    assert actions == {
        ("org/pickle-only", "pytorch_model.bin"): "converted",
        ("org/sharded", "pytorch_model-00001-of-00002.bin"): "converted",
        ("org/sharded", "pytorch_model-00002-of-00002.bin"): "converted",
        ("org/hostile", "pytorch_model.bin"): "unsafe",
        ("org/tampered", "pytorch_model.bin"): "tampered",
        ("org/safe", "model.safetensors"): "refused"}  # its model.sig does not verify
    assert _tree(cache.root) == before  # ...and left untouched, like the whole Hub cache
    assert not cache.marker.exists()
    # One child per revision with something to convert; both shards went to the same child.
    assert len(children) == 2 and sorted(len(c) - 2 for c in children) == [1, 2]
    assert all(c[1] == "--batch" for c in children)
    entries = [r.entry for r in read_ledger().records]
    assert [e.action for e in entries if e] == ["convert"] * 3
    assert {e.source.file for e in entries if e} == {
        "pytorch_model.bin", "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin"}
    # safeload.load finds the conversion by the source digest: no new child.
    snap = cache.root / "models--org--pickle-only" / "snapshots" / cache.commits["org/pickle-only"]
    loaded = safeload.load(snap / "pytorch_model.bin")
    assert len(children) == 2
    for k, v in cache.tensors["org/pickle-only"].items():
        assert torch.equal(loaded[k], v)
    # A rerun skips what is done: no child, no new provenance entry.
    count = len(read_ledger().records)
    code, doc, _ = _run(["cache", "convert", "--cache-dir", str(cache.root), "--json"], capsys)
    assert code == 1
    assert sorted(f["action"] for f in doc["files"] if f["action"] != "skipped") == [
        "already-converted"] * 3 + ["refused", "tampered", "unsafe"]
    assert len(children) == 2 and len(read_ledger().records) == count
    code, doc, _ = _run(["cache", "scan", "--cache-dir", str(cache.root), "--json"], capsys)
    assert _files(doc)[("org/sharded", "pytorch_model-00001-of-00002.bin")]["status"] == \
        "converted"


def test_dry_run_writes_nothing(cache: Cache, capsys: pytest.CaptureFixture[str],
                                isolated_home: Path, children: list[list[str]]) -> None:
    before = _tree(cache.root)
    code, doc, err = _run(["cache", "convert", "--cache-dir", str(cache.root), "--dry-run",
                           "--write-to-hub-cache", "--json"], capsys)
    assert code == 1 and doc["dry_run"] is True
    assert doc["summary"]["would-convert"] == 3 and doc["hub_written"] == []
    assert children == [] and _tree(cache.root) == before
    assert [p for p in isolated_home.rglob("*") if p.is_file()] == []  # no store, cache, ledger
    assert "nothing was written" in err
    would = [f for f in doc["files"] if f["action"] == "would-convert"]
    assert doc["summary"]["would_convert_bytes"] == sum(f["size"] for f in would) > 0
    code = main(["cache", "convert", "--cache-dir", str(cache.root), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 1 and "would convert 3 file(s) (" in out and "would convert 3 file(s) (0 B" \
        not in out
    assert all(f"{f['name']}" in out for f in would)


def test_write_to_hub_cache_serves_plain_hub_users(
        cache: Cache, capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import hf_hub_download

    repos = ["--repo", "org/pickle-only", "--repo", "org/sharded"]
    code, doc, err = _run(["cache", "convert", "--cache-dir", str(cache.root), *repos,
                           "--write-to-hub-cache", "--json"], capsys)
    assert code == 0 and doc["ok"], err
    assert "breaks" in err or "no longer covers" in err  # says what it does to signatures
    assert "signature" in doc["warning"]
    got = hf_hub_download("org/pickle-only", "model.safetensors", cache_dir=cache.root,
                          local_files_only=True)
    link = Path(got)
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    blob = link.parent / os.readlink(link)
    assert blob.parent.name == "blobs"
    assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()
    plain = load_file(got)
    assert plain.keys() == cache.tensors["org/pickle-only"].keys()
    for k, v in cache.tensors["org/pickle-only"].items():
        assert torch.equal(plain[k], v)
    assert (link.parent / "pytorch_model.bin").is_symlink()  # the original stays
    # Sharded: shards plus a recomputed index; the .no_exist markers that hid them are gone.
    index_path = hf_hub_download("org/sharded", "model.safetensors.index.json",
                                 cache_dir=cache.root, local_files_only=True)
    index = json.loads(Path(index_path).read_text())
    expected = cache.tensors["org/sharded"]
    assert index["weight_map"] == {"h.0.w": "model-00001-of-00002.safetensors",
                                   "h.1.b": "model-00002-of-00002.safetensors",
                                   "h.1.w": "model-00002-of-00002.safetensors"}
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in expected.values())
    merged: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        merged.update(load_file(hf_hub_download("org/sharded", shard, cache_dir=cache.root,
                                                local_files_only=True)))
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[k], v) for k, v in expected.items())
    def markers(repo: str) -> list[str]:
        return [p.name for p in (cache.root / repo / ".no_exist").rglob("*") if p.is_file()]

    assert markers("models--org--pickle-only") == []
    assert markers("models--org--sharded") == ["model.safetensors"]  # still true: kept
    # A rerun writes nothing new and is still fine.
    before = _tree(cache.root)
    code, doc, _ = _run(["cache", "convert", "--cache-dir", str(cache.root), *repos,
                         "--write-to-hub-cache", "--json"], capsys)
    assert code == 0 and doc["hub_written"] == [] and _tree(cache.root) == before


def test_interrupt_leaves_nothing_partial_and_a_rerun_finishes(
        cache: Cache, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sandbox.run_worker

    def interrupted(module: str, argv: list[str], *, output_dir: Path, **kw: Any) -> Any:
        (Path(output_dir) / "0" / "model.safetensors.partial").write_bytes(b"half")
        raise KeyboardInterrupt

    before = _tree(cache.root)
    monkeypatch.setattr(sandbox, "run_worker", interrupted)
    monkeypatch.setenv("SAFELOAD_CONVERT_WORKER", "0")  # one-shot children only
    assert main(["cache", "convert", "--cache-dir", str(cache.root)]) == 130
    store = paths.converted_dir()
    assert list(store.iterdir()) == []  # no entry, no half-written work directory
    assert _tree(cache.root) == before
    monkeypatch.setattr(sandbox, "run_worker", real)
    code, doc, _ = _run(["cache", "convert", "--cache-dir", str(cache.root), "--repo",
                         "org/pickle-only", "--json"], capsys)
    assert code == 0 and [f["action"] for f in doc["files"]] == ["converted"]


def test_cache_scan_report_redirects_to_a_file(cache: Cache, tmp_path: Path) -> None:
    """`safeload cache scan > report.txt` holds the report (it was empty when all went to
    stderr)."""
    import subprocess
    import sys

    report = tmp_path / "report.txt"
    with open(report, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "safeload", "cache", "scan", "--cache-dir",
                               str(cache.root)], stdout=fh, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert proc.returncode == 1
    text = report.read_text()
    assert "org/hostile" in text and "unsafe" in text and "tampered" in text
    assert "5 repos, 5 revisions" in text
    assert "org/hostile" not in proc.stderr
    assert not cache.marker.exists()


def test_cache_scan_sarif_has_one_result_per_refused_file(
        cache: Cache, capsys: pytest.CaptureFixture[str],
        sarif_shape: Callable[[dict[str, Any]], None]) -> None:
    code = main(["cache", "scan", "--cache-dir", str(cache.root), "--format", "sarif"])
    sarif = json.loads(capsys.readouterr().out)
    assert code == 1
    sarif_shape(sarif)
    got = sorted((r["properties"]["repo_id"], r["ruleId"]) for r in sarif["runs"][0]["results"])
    assert got == [("org/hostile", "unsafe"), ("org/safe", "refused"),
                   ("org/tampered", "tampered")]
    hostile = next(r for r in sarif["runs"][0]["results"] if r["ruleId"] == "unsafe")
    assert "system is not allowlisted" in hostile["message"]["text"]
    assert hostile["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(
        "pytorch_model.bin")


def test_report_on_stdout_and_no_progress_bar_off_a_terminal(
        cache: Cache, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cache", "convert", "--cache-dir", str(cache.root), "--repo", "org/sharded"])
    out = capsys.readouterr()
    assert code == 0
    assert "converted 2 file(s)" in out.out and "pytorch_model-00001-of-00002.bin" in out.out
    assert "converted 2 file(s)" not in out.err  # the report is a result: stdout only
    assert "\r" not in out.err and "%|" not in out.err  # stderr is not a terminal: no bar


def test_progress_bar_on_a_terminal_goes_to_stderr(
        cache: Cache, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code = main(["cache", "convert", "--cache-dir", str(cache.root), "--repo", "org/sharded"])
    out = capsys.readouterr()
    assert code == 0 and "converted 2 file(s)" in out.out
    assert "%|" in out.err and "B/s" in out.err  # tqdm: percentage bar, byte rate
    assert "%|" not in out.out


def test_missing_cache_and_unknown_repo_could_not_decide(
        cache: Cache, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "scan", "--cache-dir", str(tmp_path / "nope")]) == 2
    code, doc, _ = _run(["cache", "convert", "--cache-dir", str(cache.root), "--repo",
                         "org/absent", "--json"], capsys)
    assert code == 2 and doc["missing_repos"] == ["org/absent"]


@pytest.mark.parametrize(("name", "expected"), [
    ("pytorch_model.bin", "model.safetensors"),
    ("pytorch_model-00001-of-00002.bin", "model-00001-of-00002.safetensors"),
    ("pytorch_model.fp16.bin", "model.fp16.safetensors"),
    ("unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors"),
    ("adapter_model.bin", "adapter_model.safetensors"),
])
def test_hub_names_are_what_loaders_look_for(name: str, expected: str) -> None:
    from safeload.hfcache import hub_name

    assert hub_name(name) == expected
