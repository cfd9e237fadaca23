"""Fuzz the inspector and the symbolic pickle machine at scale, with the differential oracles.

Runs the generators of tests/inspection/_safeload_fuzzgen.py (the same ones the property tests
use) for N streams over several processes and reports: count, time, streams/s, verdict counts,
any exception other than MalformedPickle (from `inspect_bytes` or `PickleMachine.run`), every
oracle violation (the real unpicklers, fed inert recording stubs, import a global outside the
allowlist or call a forbidden method on a stream the inspector did not call unsafe; or an
import-free stream loads to a different value than the machine computed), and the slowest
stream. Violations are grouped by kind; the shortest example of each is printed in hex.

    python benchmarks/fuzz_inspector.py --count 1000000 --workers 2 --seed 1

Exit status: 0 when no exception and no oracle violation was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "inspection"))

MIX = [  # (generator, weight)
    ("soup", 28), ("structured", 30), ("mutated", 25), ("prefix-import", 5), ("bytes", 5),
    ("values", 7),
]
SLOW_SECONDS = 1.0
EXAMPLES_PER_KIND = 3

_STATE: dict[str, Any] = {}


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import _safeload_fuzzgen as fg

    _STATE["fg"] = fg
    _STATE["corpus"] = fg.build_corpus()
    _STATE["allowed"] = fg.importable_allowlist()


def _normalise(message: str) -> str:
    message = re.sub(r"'[^']*'", "'…'", message)
    message = re.sub(r"\b\d+\b", "N", message)
    return message[:160]


def _one(fg: Any, rng_chooser: Any, kind: str) -> tuple[bytes, list[str], str, bool, int]:
    c = rng_chooser
    if kind == "values":
        stream = fg.gen_plain_values(c)
        run = fg.run_machine(stream, False)
        problems = [f"value: {p}" for p in fg.value_oracle(stream, run)]
        return stream, problems, "clean" if run.clean else "refused", run.clean, 1
    if kind == "soup":
        stream = fg.gen_soup(c)
    elif kind == "structured":
        stream = fg.gen_structured(c)
    elif kind == "mutated":
        stream = fg.mutate_corpus(c, _STATE["corpus"])[1]
    elif kind == "prefix-import":
        stream = fg.gen_prefix_then_import(c)
    else:
        stream = c.raw(c.integer(0, 64))
    checked = fg.check_stream(stream, _STATE["allowed"])
    return stream, checked.violations, checked.verdict, checked.machine_clean, checked.oracle_runs


def _chunk(args: tuple[int, int]) -> dict[str, Any]:
    import random

    seed, count = args
    fg = _STATE["fg"]
    rng = random.Random(seed)
    chooser = fg.RandomChooser(rng)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    verdicts: collections.Counter[str] = collections.Counter()
    by_kind: collections.Counter[str] = collections.Counter()
    machine_clean: collections.Counter[str] = collections.Counter()
    problems: dict[str, list[Any]] = {}
    oracle_runs = 0
    slowest = (0.0, b"", "")
    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        t0 = time.perf_counter()
        try:
            stream, violations, verdict, clean, runs = _one(fg, chooser, kind)
        except Exception as exc:  # a generator or harness bug: report it, keep going
            stream, violations, verdict, clean, runs = (
                b"", [f"harness raised {type(exc).__name__}: {exc}"], "error", False, 0)
        dt = time.perf_counter() - t0
        if dt > slowest[0]:
            slowest = (dt, stream, kind)
        if dt > SLOW_SECONDS:
            violations = [*violations, f"slow: {dt:.2f}s"]
        verdicts[f"{kind}:{verdict}"] += 1
        by_kind[kind] += 1
        machine_clean[kind] += clean
        oracle_runs += runs
        for v in violations:
            key = f"[{kind}] {_normalise(v)}"
            entry = problems.setdefault(key, [0, []])
            entry[0] += 1
            entry[1].append(stream)
            entry[1] = sorted(entry[1], key=len)[:EXAMPLES_PER_KIND]
    return {"count": count, "verdicts": verdicts, "by_kind": by_kind,
            "machine_clean": machine_clean, "problems": problems, "oracle_runs": oracle_runs,
            "slowest": slowest}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=2000)
    args = ap.parse_args(argv)

    os.environ.setdefault("SAFELOAD_HOME", str(Path(os.environ.get("TMPDIR", "/tmp"))
                                              / "safeload-fuzz-home"))
    jobs = []
    left, i = args.count, 0
    while left > 0:
        n = min(args.chunk, left)
        jobs.append((args.seed * 1_000_003 + i, n))
        left -= n
        i += 1

    total: dict[str, Any] = {"count": 0, "verdicts": collections.Counter(),
                             "by_kind": collections.Counter(),
                             "machine_clean": collections.Counter(), "problems": {},
                             "oracle_runs": 0, "slowest": (0.0, b"", "")}
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, initializer=_init_worker) as pool:
        setup = time.perf_counter() - t0
        t_run = time.perf_counter()
        next_report = 0.0
        for res in pool.imap_unordered(_chunk, jobs):
            total["count"] += res["count"]
            total["verdicts"].update(res["verdicts"])
            total["by_kind"].update(res["by_kind"])
            total["machine_clean"].update(res["machine_clean"])
            total["oracle_runs"] += res["oracle_runs"]
            if res["slowest"][0] > total["slowest"][0]:
                total["slowest"] = res["slowest"]
            for key, (n, examples) in res["problems"].items():
                entry = total["problems"].setdefault(key, [0, []])
                entry[0] += n
                entry[1] = sorted(entry[1] + examples, key=len)[:EXAMPLES_PER_KIND]
            elapsed = time.perf_counter() - t_run
            if elapsed >= next_report:
                print(f"  {total['count']:>9} streams  {elapsed:7.1f}s  "
                      f"{total['count'] / max(elapsed, 1e-9):8.0f}/s  "
                      f"problem kinds: {len(total['problems'])}", flush=True)
                next_report = elapsed + 30
    elapsed = time.perf_counter() - t_run

    print()
    print(f"streams:        {total['count']}")
    print(f"workers:        {args.workers} (worker setup {setup:.1f}s, not counted)")
    print(f"time:           {elapsed:.1f}s")
    print(f"streams/s:      {total['count'] / elapsed:.0f}")
    print(f"oracle runs:    {total['oracle_runs']} (real-unpickler differential checks)")
    print("by generator (count, machine clean):")
    for kind, n in sorted(total["by_kind"].items()):
        print(f"  {kind:14} {n:>9}  clean {total['machine_clean'][kind]:>8}")
    print("verdicts:")
    for key, n in sorted(total["verdicts"].items()):
        print(f"  {key:28} {n:>9}")
    dt, stream, kind = total["slowest"]
    print(f"slowest stream: {dt * 1000:.1f} ms ({kind}, {len(stream)} bytes)")
    if len(stream) <= 2000:
        print(f"    {stream.hex()}")
    problems = total["problems"]
    print(f"problem kinds:  {len(problems)} "
          f"({sum(n for n, _ in problems.values())} streams)")
    for key, (n, examples) in sorted(problems.items(), key=lambda kv: -kv[1][0]):
        print(f"\n* {n:>7} x {key}")
        for ex in examples:
            print(f"    {ex.hex() if len(ex) <= 400 else ex[:400].hex() + '…'} ({len(ex)} B)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
