"""Fleet (issue 15 section 1) costs on a loopback TUF repository built like tests/fleet's.

    python benchmarks/bench_fleet.py [--repeat 30]

Measures `import safeload.fleet` (tuf is not imported by it), the first sync (imports tuf), a
forced sync after a new timestamp with an unchanged store (not downloaded again), the offline
re-verification a load runs (`organisation_store`), and a sync that is not due.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _ms(xs: list[float]) -> str:
    return (f"median {statistics.median(xs) * 1e3:.1f} ms "
            f"(min {min(xs) * 1e3:.1f}, max {max(xs) * 1e3:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fleet"))
    d = Path(tempfile.mkdtemp())
    os.environ["SAFELOAD_HOME"] = str(d / "home")
    t0 = time.perf_counter()
    from safeload import fleet
    t_import = time.perf_counter() - t0
    print("tuf imported by `import safeload.fleet`:", "tuf" in sys.modules)
    from conftest import store_doc
    from tuf_repo import TufRepo, serving

    repo = TufRepo(d / "repo")
    repo.publish(store_doc(1))
    with serving(repo.base) as server:
        (d / "root.json").write_bytes(repo.root_bytes(1))
        fleet.subscribe(server.url, d / "root.json")
        t0 = time.perf_counter()
        fleet.sync()
        first = time.perf_counter() - t0
        syncs, reads, skips = [], [], []
        for _ in range(args.repeat):
            repo.bump_timestamp()
            t0 = time.perf_counter()
            fleet.sync(force=True)
            syncs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fleet.organisation_store()
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fleet.sync()
            skips.append(time.perf_counter() - t0)
    print(f"import safeload.fleet {t_import * 1e3:.0f} ms; first sync {first * 1e3:.0f} ms")
    print("forced sync (new timestamp, unchanged store):", _ms(syncs))
    print("organisation_store (offline re-verification):", _ms(reads))
    print("sync not due (skipped):", _ms(skips))


if __name__ == "__main__":
    main()
