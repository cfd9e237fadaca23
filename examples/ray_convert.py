"""Convert a shared model store with Ray Data: `ray.data.from_items(...).map(convert_one)`.

    python examples/ray_convert.py MANIFEST OUT [--workers 2] [--address ray://head:10001]

Without `--address` it starts a local Ray instance of `--workers` CPUs. Each row is one
input; `convert_one` verifies, inspects and converts it through the same pipeline as
`safeload.load` and returns its record (never raises for what a file is). `SAFELOAD_*`
variables of this process are passed to the workers (`runtime_env`), so they judge by the same
trust store. The records go to `--results` as JSON lines for `safeload convert --merge`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import ray

from safeload.bulk import convert_one, read_manifest, write_results


def convert_row(row: dict[str, Any], dst_root: str) -> dict[str, Any]:
    rec = convert_one(row["source"], dst_root)
    # Arrow columns need one type: the list of layers is kept as one comma-separated string.
    rec["sandbox_layers"] = ",".join(rec["sandbox_layers"])
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", help="input paths, one per line")
    ap.add_argument("out", help="the converted store: OUT/<input sha256>.safetensors")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--address", help="an existing cluster (default: start a local one)")
    ap.add_argument("--results", default=None, help="default: OUT/results-ray.jsonl")
    args = ap.parse_args(argv)
    sources = [e.path for e in read_manifest(args.manifest)]
    out = os.path.abspath(args.out)
    env = {k: v for k, v in os.environ.items() if k.startswith("SAFELOAD_")}
    ray.init(address=args.address, num_cpus=None if args.address else args.workers,
             include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"source": s} for s in sources])
        rows = ds.map(convert_row, fn_kwargs={"dst_root": out}, num_cpus=1,
                      concurrency=args.workers).take_all()
    finally:
        ray.shutdown()
    records = []
    for row in rows:
        rec = dict(row)
        layers = rec.get("sandbox_layers") or ""
        rec["sandbox_layers"] = layers.split(",") if layers else []
        records.append(rec)
    results = args.results or os.path.join(out, "results-ray.jsonl")
    counts = write_results(records, results)
    print(json.dumps({"results": results, "counts": counts}))
    return 2 if counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
