"""Mutation fuzz at scale: `python benchmarks/fuzz_mutation.py --count 20000 [--seed 0]`.

Runs the seeded mutator of tests/loading/mutation_fuzz.py (byte flips, truncations, length and
offset edits, member duplication, in-member edits re-zipped with a valid CRC) over torch zip,
legacy torch, safetensors, .npy/.npz and joblib seeds through `inspect_bytes` and
`safeload.load`, and prints the outcome counts; every escape (an exception that is not a
SafeloadError, or a hang) is printed with its traceback and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "loading"), str(ROOT / "tests")]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan-only", action="store_true", help="inspect_bytes only, no load")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as work:
        os.environ["SAFELOAD_HOME"] = home
        from mutation_fuzz import fuzz

        t0 = time.perf_counter()
        stats = fuzz(args.count, Path(work), seed=args.seed, load=not args.scan_only)
        print(f"{stats} in {time.perf_counter() - t0:.1f}s")
        for escape in stats.escapes[:20]:
            print("-----", escape, sep="\n")
    return 1 if stats.escapes else 0


if __name__ == "__main__":
    sys.exit(main())
