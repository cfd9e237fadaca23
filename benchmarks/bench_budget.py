"""The whole-file budget at its defaults: `python benchmarks/bench_budget.py [--repeat 3]`;
`--baseline DIR` (a tree from `git archive <commit> | tar -x -C DIR`) compares before/after.

Inspects (in-process, `inspect_bytes`) each costly variant of tests/security/budget_variants.py
at the size that defeated per-member bounds (four deflated members of about 6.7M opcodes each:
the issue's 79 KB zip took 37 s) and a real 100 MB state dict, interleaved, and prints medians
with min-max, the verdict and the share of the opcode budget the real checkpoint used.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "security"), str(ROOT / "tests")]


def _real_checkpoint(folder: Path) -> bytes:
    import torch

    torch.manual_seed(0)
    sd = {f"layer{i}.{p}": torch.randn(1024, 24) for i in range(500) for p in ("w", "b")}
    path = folder / "real.pt"  # 1,000 tensors, 98 MB
    torch.save(sd, path)
    return path.read_bytes()


_CHILD = """
import sys, time
from safeload.inspection import inspect_bytes
data = open(sys.argv[1], "rb").read()
t0 = time.perf_counter()
ins = inspect_bytes(data)
print(time.perf_counter() - t0, ins.verdict)
"""


def _baseline(tree: Path, cases: list[tuple[str, bytes]], repeat: int,
              timeout: float = 120.0) -> None:
    """The same cases inspected by another source tree (e.g. `git archive <commit>` of main)
    and by this one, each in a fresh process, interleaved: before/after side by side. A run
    past `timeout` is killed and shown as the timeout (the ratio is then a lower bound)."""
    import os
    import subprocess

    shim = Path(tempfile.mkdtemp())
    (shim / "safeload_conversion").symlink_to(tree / "conversion")
    trees = {"before": f"{tree}{os.pathsep}{shim}", "after": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'case':<26}{'before s':>10}{'after s':>10}  ratio  before -> after verdict")
        for name, data in cases:
            path = Path(tmp) / name
            path.write_bytes(data)
            got: dict[str, list[float]] = {"before": [], "after": []}
            verdict: dict[str, str] = {}
            for _ in range(repeat):
                for label, pythonpath in trees.items():
                    env = {**os.environ, "PYTHONPATH": pythonpath}
                    try:
                        out = subprocess.run([sys.executable, "-c", _CHILD, str(path)],
                                             env=env, capture_output=True, text=True,
                                             check=True, timeout=timeout).stdout
                    except subprocess.TimeoutExpired:  # quadratic before: stopped, not waited
                        out = f"{timeout} (killed)"
                    seconds, verdict[label] = out.strip().split(maxsplit=1)
                    got[label].append(float(seconds))
            b, a = statistics.median(got["before"]), statistics.median(got["after"])
            print(f"{name:<26}{b:>10.2f}{a:>10.2f}  {b / a:5.1f}  "  # >= when killed
                  f"{verdict['before']} -> {verdict['after']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="a source tree to compare with (before)")
    args = ap.parse_args()
    from budget_variants import bombs, variants
    from safeload_conversion.budget import DEFAULT_OPS, Budget, scope

    from safeload.inspection import inspect_bytes

    with tempfile.TemporaryDirectory() as tmp:
        real = _real_checkpoint(Path(tmp))
    cases = [("real-100MB-state-dict", real)]
    cases += [(v.id, v.data) for v in variants(20_000_000)]
    cases += [(v.id, v.data) for v in bombs(300_000_000)]
    if args.baseline is not None:
        _baseline(args.baseline.resolve(), cases, args.repeat)
        return
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    verdicts: dict[str, str] = {}
    for _ in range(args.repeat):
        for name, data in cases:  # interleaved: the machine's noise hits every case alike
            t0 = time.perf_counter()
            ins = inspect_bytes(data, name=name)
            times[name].append(time.perf_counter() - t0)
            verdicts[name] = ins.verdict + (f" [{ins.findings[0].code}]" if ins.findings else "")
    base = statistics.median(times["real-100MB-state-dict"])
    print(f"{'case':<26}{'bytes':>12}  median s (min-max)      x real  verdict")
    for name, data in cases:
        w = times[name]
        med = statistics.median(w)
        print(f"{name:<26}{len(data):>12}  {med:7.3f} ({min(w):.3f}-{max(w):.3f})"
              f"  {med / base:7.1f}  {verdicts[name]}")
    with scope(Budget()) as b:
        inspect_bytes(real)
    print(f"real checkpoint: {b.ops_used:,} of {DEFAULT_OPS:,} opcodes "
          f"({100 * b.ops_used / DEFAULT_OPS:.2f}% of the budget), {b.bytes_used} bytes inflated")


if __name__ == "__main__":
    main()
