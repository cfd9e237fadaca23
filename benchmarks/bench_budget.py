"""The whole-file budget at its defaults: `python benchmarks/bench_budget.py [--repeat 3]`.

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from budget_variants import bombs, variants
    from safeload_conversion.budget import DEFAULT_OPS, Budget, scope

    from safeload.inspection import inspect_bytes

    with tempfile.TemporaryDirectory() as tmp:
        real = _real_checkpoint(Path(tmp))
    cases = [("real-100MB-state-dict", real)]
    cases += [(v.id, v.data) for v in variants(20_000_000)]
    cases += [(v.id, v.data) for v in bombs(300_000_000)]
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
