"""`cache scan` / `cache convert`: nothing hides behind a broken entry, and the trust store and
policy decide as a load would (issue 9: cache scan blind spots; issue 10: drift)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save

from safeload._cli import main
from safeload._internal import sandbox
from safeload.trust import TrustStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
from _hubcache import make_repo  # noqa: E402

REPO = "org/model"


def _pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _scan(cache: Path, capsys: pytest.CaptureFixture[str], *argv: str
          ) -> tuple[int, dict[str, dict[str, Any]]]:
    code = main(["cache", "scan", "--cache-dir", str(cache), "--json", *argv])
    doc = json.loads(capsys.readouterr().out)
    files = {f["name"]: f for r in doc["repos"] for rev in r["revisions"] for f in rev["files"]}
    return code, files


def _dangling_variants(snap: Path) -> list[str]:
    """Entries whose link leads nowhere: a missing blob, a missing folder, a link loop."""
    (snap / "gone.safetensors").symlink_to("../../blobs/" + "0" * 64)
    (snap / "sub").mkdir()
    (snap / "sub" / "gone.bin").symlink_to("../../../blobs/missing")
    (snap / "loop.bin").symlink_to("loop.bin")
    return ["gone.safetensors", "sub/gone.bin", "loop.bin"]


def test_one_dangling_link_does_not_drop_the_repo(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    snap = make_repo(tmp_path, REPO, {"model.safetensors": save({"w": torch.ones(2)}),
                                      "README.md": b"# hi\n"})
    broken = _dangling_variants(snap)
    code, files = _scan(tmp_path, capsys)
    assert code == 1
    assert files["model.safetensors"]["status"] == "safetensors"  # the rest is still listed
    for name in broken:
        assert files[name]["status"] == "malformed", files[name]
        assert "dangling" in files[name]["findings"][0]


def test_directory_links_are_walked_inside_the_cache_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "hub"
    snap = make_repo(cache, REPO, {"unet/model.safetensors": save({"w": torch.ones(2)})},
                     commit="a" * 40)
    other = make_repo(cache, REPO, {"vae/model.safetensors": save({"v": torch.ones(1)})},
                      commit="b" * 40)
    (snap / "vae").symlink_to(os.path.relpath(other / "vae", snap), target_is_directory=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.bin").write_bytes(_pickle({"w": torch.ones(1)}))
    (snap / "escape").symlink_to(outside, target_is_directory=True)
    (snap / "unet" / "self").symlink_to("..", target_is_directory=True)  # a loop
    code, files = _scan(cache, capsys, "--repo", REPO)
    assert code == 1
    assert files["vae/model.safetensors"]["status"] == "safetensors"  # found through the link
    assert files["unet/model.safetensors"]["status"] == "safetensors"
    assert files["escape"]["status"] == "refused"
    assert "leaving the cache" in files["escape"]["findings"][0]
    assert not any(n.startswith("escape/") for n in files)


def test_revoked_digest_is_refused_by_the_scan(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = save({"w": torch.ones(2)})
    make_repo(tmp_path, REPO, {"model.safetensors": data})
    assert _scan(tmp_path, capsys)[0] == 0
    TrustStore.update(lambda s: s.with_revoked_digest(hashlib.sha256(data).hexdigest(),
                                                      "leaked"))
    code, files = _scan(tmp_path, capsys)
    assert code == 1
    assert files["model.safetensors"]["status"] == "refused"
    assert "revoked" in files["model.safetensors"]["findings"][0]
    assert "leaked" in files["model.safetensors"]["findings"][0]


def test_non_commit_snapshot_files_are_refused_by_the_scan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_repo(tmp_path, REPO, {"model.safetensors": save({"w": torch.ones(2)})}, commit="v2")
    code, files = _scan(tmp_path, capsys)
    assert code == 1 and files["model.safetensors"]["status"] == "refused"
    assert "not a commit hash" in files["model.safetensors"]["findings"][0]


def test_convert_respects_pickles_refuse_and_starts_no_child(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_repo(tmp_path, REPO, {"pytorch_model.bin": _pickle({"w": torch.ones(2)})})
    TrustStore.update(lambda s: s.with_policy(replace(s.policy, pickles="refuse")))
    started: list[object] = []
    monkeypatch.setattr(sandbox, "run_worker", lambda *a, **k: started.append(a))
    monkeypatch.setenv("SAFELOAD_CONVERT_WORKER", "0")  # one-shot children only
    code = main(["cache", "convert", "--cache-dir", str(tmp_path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and not started
    (outcome,) = doc["files"]
    assert outcome["action"] == "refused" and "refuses every pickle" in outcome["message"]
    code, files = _scan(tmp_path, capsys)
    assert code == 1 and files["pytorch_model.bin"]["status"] == "refused"


@pytest.mark.parametrize("how", ["fifo", "sparse-tree", "sparse-ref", "device"])
def test_hostile_metadata_files_never_hang_or_exhaust_the_scan(
        how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # review U: a FIFO at trees/<commit>.json held `cache scan` forever; a sparse 50 GB
    # refs/x (no disk used) was read whole (MemoryError, a traceback, no JSON)
    commit = "c" * 40
    snap = make_repo(tmp_path, REPO, {"model.safetensors": save({"w": torch.ones(2)})},
                     commit=commit)
    repo = snap.parent.parent
    (repo / "trees").mkdir()
    tree, ref = repo / "trees" / f"{commit}.json", repo / "refs" / "other"
    if how == "fifo":
        os.mkfifo(tree)
    elif how == "sparse-tree":
        with open(tree, "wb") as f:
            f.truncate(100 << 30)
    elif how == "sparse-ref":
        with open(ref, "wb") as f:
            f.truncate(50 << 30)
    else:
        ref.symlink_to("/dev/zero")
    code, files = _scan(tmp_path, capsys)
    assert code == 0 and files["model.safetensors"]["status"] == "safetensors"
