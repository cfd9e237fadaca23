"""Cache conversion benchmark (issue 6): a Hugging Face cache of several pickle repos, a few GB
in all, converted by `safeload cache convert` (one sandboxed child per revision), whole process.

    python benchmarks/bench_cache.py [--repeat 2]

Reports GB/min and the peak RSS of the parent and of the children (wait4 of the whole tree).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import DATA, make_checkpoints, wheel_python  # noqa: E402


def _repo(cache: Path, repo_id: str, files: dict[str, Path]) -> None:
    root = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, src in files.items():
        h = hashlib.sha256()
        with open(src, "rb") as f:
            while b := f.read(8 << 20):
                h.update(b)
        blob = root / "blobs" / h.hexdigest()
        os.link(src, blob) if src.stat().st_dev == blob.parent.stat().st_dev else shutil.copy(
            src, blob)
        (snap / name).symlink_to(os.path.relpath(blob, snap))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    py = wheel_python()
    files = make_checkpoints([1, 4])
    small = DATA / "ckpt-256mb.bin"
    if not small.exists():
        subprocess.run([py, "-c", "import torch; torch.save({f'w{i}': torch.randn(4096, 4096) "
                        f"for i in range(4)}}, {str(small)!r})"], check=True)
    cache = Path(tempfile.mkdtemp(prefix="safeload-bench-cache-", dir=DATA))
    _repo(cache, "org/one", {"pytorch_model.bin": files["pt-1gb"]})
    _repo(cache, "org/two", {"pytorch_model.bin": files["pt-4gb"]})
    _repo(cache, "org/three", {"pytorch_model.bin": small})
    total = sum(p.stat().st_size for p in cache.rglob("blobs/*"))
    print(f"cache: 3 repos, {total / 1e9:.2f} GB of pickles")
    for run in range(args.repeat):
        home = tempfile.mkdtemp(prefix="safeload-bench-")
        env = {**os.environ, "SAFELOAD_HOME": home}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        start = time.perf_counter()
        proc = subprocess.Popen([py, "-m", "safeload", "cache", "convert", "--cache-dir",
                                 str(cache), "--json"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        print(f"run {run + 1}: exit {os.waitstatus_to_exitcode(status)}, {wall:.1f} s, "
              f"{total / 1e9 / (wall / 60):.1f} GB/min, peak RSS {usage.ru_maxrss / 1024:.0f} MiB "
              "(largest single process of the tree)")
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
