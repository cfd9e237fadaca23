"""Bulk conversion (issue 15 section 3): a 2-worker local cluster vs the sequential CLI.

    python benchmarks/bench_bulk.py [--files 200] [--repeat 3] [--no-ray]

One store of `--files` small pickle checkpoints (a few tensors each, like tests/bulk's) plus 4
hostile files; every case starts from an empty output folder and an empty SAFELOAD_HOME (no
converted-store hits), whole process, interleaved. Cases: the sequential CLI (one shard), two
CLI shards in parallel (what a 2-pod Indexed Job does on one node), the Dask example
(LocalCluster, 2 workers), the Ray Data example (2 CPUs), and a rerun of the sequential CLI
over a finished output (every output reused). Prints medians with min-max, files per second
and the ratios to the sequential CLI.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from harness import PY, compare, ratio

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "bulk"))
    from bulk_store import build_store

    work = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    store = build_store(work / "store", benign=args.files)
    total = args.files + 6
    home, out = work / "home", work / "out"
    env = {**os.environ, "SAFELOAD_HOME": str(home)}

    def fresh() -> None:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)

    def keep_outputs() -> None:  # a rerun: outputs present, the converted store emptied
        shutil.rmtree(home, ignore_errors=True)

    cli = [PY, "-m", "safeload", "convert", "--manifest", str(store.manifest), "--out", str(out),
           "--refused-ok"]
    two = " & ".join(" ".join([*cli, "--shard-count", "2", "--shard-index", str(i)])
                     for i in range(2)) + " & wait"
    cases = {
        "sequential CLI (1 shard)": ([*cli, "--shard-index", "0"], fresh),
        "2 CLI shards in parallel": (["sh", "-c", two], fresh),
        "Dask LocalCluster, 2 workers": (
            [PY, str(ROOT / "examples" / "dask_convert.py"), str(store.manifest), str(out),
             "--workers", "2"], fresh),
    }
    if not args.no_ray and importlib.util.find_spec("ray") is not None:
        cases["Ray Data, 2 CPUs"] = (
            [PY, str(ROOT / "examples" / "ray_convert.py"), str(store.manifest), str(out),
             "--workers", "2"], fresh)
    cases["rerun, sequential (all reused)"] = ([*cli, "--shard-index", "0"], keep_outputs)
    print(f"{total} inputs ({args.files} pickles, 2 safetensors, 4 hostile), "
          f"{os.cpu_count()} cores, repeat {args.repeat}")
    got = compare(cases, args.repeat, env=env)
    base = got["sequential CLI (1 shard)"]
    for name, s in got.items():
        print(f"{name:<44} {total / statistics.median(s.wall):7.1f} files/s")
        if s is not base:
            print("  " + ratio(s, base))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
