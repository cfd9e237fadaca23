"""Convert a shared model store on a Dask cluster, one `safeload.convert_one` task per file.

    python examples/dask_convert.py MANIFEST OUT [--workers 2] [--scheduler tcp://host:8786]

Without `--scheduler` it starts a `distributed.LocalCluster` of `--workers` processes (one
thread each: the converter is a sandboxed child process per file, so threads buy nothing).
Every worker verifies, inspects and converts through the same pipeline as `safeload.load`,
with the trust store of the machine it runs on (`SAFELOAD_TRUST_STORE` / `SAFELOAD_HOME` in
its environment). Tasks are retried twice (a worker lost mid-file leaves no output under its
final name: the rerun converts it again). The records go to `--results` as JSON lines, which
`safeload convert --merge` turns into one summary and one ML-BOM. A rerun converts nothing
that is already there (`decision: reused`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from distributed import Client, LocalCluster

import safeload
from safeload.bulk import read_manifest, write_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", help="input paths, one per line")
    ap.add_argument("out", help="the converted store: OUT/<input sha256>.safetensors")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheduler", help="an existing cluster's scheduler address")
    ap.add_argument("--results", default=None, help="default: OUT/results-dask.jsonl")
    args = ap.parse_args(argv)
    sources = [e.path for e in read_manifest(args.manifest)]
    out = os.path.abspath(args.out)
    cluster = None if args.scheduler else LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(args.scheduler or cluster) as client:
            futures = client.map(safeload.convert_one, sources, dst_root=out, retries=2)
            records = client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()
    results = args.results or os.path.join(out, "results-dask.jsonl")
    counts = write_results(records, results)
    print(json.dumps({"results": results, "counts": counts}))
    return 2 if counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
