"""Cost of the parent's independent validation of a converted checkpoint.

    .venv/bin/python benchmarks/bench_validate.py [SIZE_MB ...]   (default: 200 1024)

For a torch.save state dict of SIZE_MB: a first load (convert + validate), a store hit
(validate against the held source + load), and the validation alone (derive the expected output
from the source, compare every byte) next to what the previous scheme spent: one sha256 pass
over the output for per-tensor digests (in parallel with the whole-file digest, kept now), and
nothing but a header parse on a store hit.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def _best(fn: object, n: int = 3) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best


def bench(size_mb: int, tmp: Path) -> None:
    import safeload
    from safeload._internal import expected, paths
    from safeload._internal.opened import OpenedFile

    src = tmp / f"m{size_mb}.pt"
    per = 16 << 20  # 16 MiB tensors
    count = max(1, (size_mb << 20) // per)
    torch.save({f"layer{i}.weight": torch.randn(per // 4) for i in range(count)}, src)
    t = time.perf_counter()
    safeload.load(src)
    first = time.perf_counter() - t
    hit = _best(lambda: safeload.load(src))
    (out,) = paths.converted_dir().glob("*/model.safetensors")
    with OpenedFile.open(src) as s, OpenedFile.open(out) as o:
        sha = s.sha256()
        validate = _best(lambda: expected.compare(expected.derive(s.mapping(), sha),
                                                  o.mapping(), s.mapping()))
        old = _best(o.sha256)
    print(f"{size_mb:5d} MB  first load {first:6.2f} s  store hit {hit:6.3f} s  "
          f"validation alone {validate:6.3f} s  (previous: per-tensor digests ~{old:.3f} s "
          "on a fresh conversion, ~0 on a hit)")
    src.unlink()


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [200, 1024]
    with tempfile.TemporaryDirectory() as d:
        os.environ["SAFELOAD_HOME"] = str(Path(d) / "home")
        for mb in sizes:
            bench(mb, Path(d))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
