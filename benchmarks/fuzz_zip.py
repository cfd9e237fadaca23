"""Zip differential fuzz at scale: `python benchmarks/fuzz_zip.py --count 20000`.

Runs the seeded mutator of tests/security/test_zip_differentials.py and prints how many cases
were refused and how many scanned clean (every clean case was checked against zipfile and
torch.load(weights_only=True)); an AssertionError means a differential got through.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "security"), str(ROOT / "tests")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from security.test_zip_differentials import fuzz

    t0 = time.perf_counter()
    stats = fuzz(args.count, seed=args.seed)
    print(f"{stats} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
