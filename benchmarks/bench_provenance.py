"""What provenance adds to a load: the model card, the ledger's cost per record, bytes per load.

    .venv/bin/python benchmarks/bench_provenance.py [--records 1000] [--prefill 20000]
        [--files 200] [--kind pt|safetensors|both]

Three figures:
1. `record()` (one full v1 entry, one fdatasync each) on a pre-filled ledger, and
   `record_or_warn()` (the path loads take: batched, one fdatasync per batch) with the same
   entries; the entry is a realistic one (the all-MiniLM-L6-v2 card: Apache-2.0, 21 datasets).
2. Real loads (`safeload.load`) of `--files` distinct small files (a 64x64 tensor each), each
   loaded once and then again, as a DataLoader loop does: ledger bytes per load averaged over
   both passes (issue 11 goal: <= 400), all segments counted, after a final flush.
3. `read_model_card()` and `verify()`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ASSET = Path(__file__).parent.parent / "tests" / "assets" / "all-minilm-l6-v2" / "README.md"


def flush() -> None:
    """The batched writer's flush (absent before issue 11: then every record was written)."""
    from safeload import provenance

    getattr(provenance, "flush", lambda: None)()


def _ledger_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("ledger*.jsonl"))


def _summary(label: str, seconds: list[float]) -> str:
    ms = sorted(t * 1000 for t in seconds)
    return (f"{label}median {statistics.median(ms):.3f} ms, mean {statistics.fmean(ms):.3f} ms, "
            f"p95 {ms[int(len(ms) * 0.95)]:.3f} ms, max {ms[-1]:.2f} ms")


def _records(args: argparse.Namespace) -> None:
    from safeload._internal.paths import ledger_dir
    from safeload.modelcard import read_model_card
    from safeload.provenance import (
        FileRecord,
        LicenseRecord,
        ProvenanceEntry,
        PublisherRecord,
        SignatureRecord,
        Source,
        TrustRecord,
        record,
        record_or_warn,
        verify,
    )

    card = read_model_card(ASSET)

    def entry(i: int) -> ProvenanceEntry:
        return ProvenanceEntry(
            action="from_pretrained",
            source=Source.huggingface("sentence-transformers/all-MiniLM-L6-v2", "c" * 40,
                                      "model.safetensors"),
            files=(FileRecord("model.safetensors", f"{i:064x}", 90868376, "safetensors"),),
            signature=SignatureRecord("verified", "sentence-transformers", "key", "sigstore"),
            trust=TrustRecord("strict", "hit"), license=LicenseRecord.from_card(card),
            datasets=card.datasets, task=card.pipeline_tag,
            publisher=PublisherRecord("sentence-transformers", True, True))

    card_times = []
    for _ in range(200):
        start = time.perf_counter()
        read_model_card(ASSET)
        card_times.append(time.perf_counter() - start)
    for i in range(args.prefill):
        record(entry(i))

    def timed(fn: object, n: int, base: int) -> list[float]:
        out = []
        for i in range(n):
            e = entry(base + i)
            start = time.perf_counter()
            fn(e)  # type: ignore[operator]
            out.append(time.perf_counter() - start)
        return out

    direct = timed(record, args.records, args.prefill)
    batched_start = time.perf_counter()
    batched = timed(lambda e: record_or_warn(e, strict=False), args.records, 10**6)
    flush()
    batched_total = time.perf_counter() - batched_start
    strict = timed(lambda e: record_or_warn(e, strict=True), min(args.records, 200), 2 * 10**6)
    start = time.perf_counter()
    report = verify()
    verify_s = time.perf_counter() - start
    assert report.ok, report.describe()
    size = _ledger_bytes(ledger_dir())
    print(_summary("record() (v1 line, 1 fdatasync each):   ", direct))
    print(_summary("record_or_warn() batched:               ", batched)
          + f"; {batched_total / args.records * 1000:.3f} ms per record with the flush")
    print(_summary("record_or_warn(strict=True):            ", strict))
    print(f"read_model_card(): median {statistics.median(card_times) * 1000:.2f} ms "
          f"(all-MiniLM-L6-v2 card, 10 KB)")
    print(f"verify():          {verify_s:.2f} s for {report.entries} lines "
          f"({size / 1e6:.1f} MB, {report.entries / verify_s:,.0f} lines/s)")


def _loads(args: argparse.Namespace, kind: str) -> None:
    import torch

    import safeload
    from safeload._internal.paths import ledger_dir
    from safeload.provenance import verify

    with tempfile.TemporaryDirectory(prefix="safeload-bench-files-") as folder:
        files = []
        for i in range(args.files):
            tensor = torch.full((64, 64), float(i))
            if kind == "pt":
                path = Path(folder) / f"f{i}.pt"
                torch.save({"w": tensor}, path)
            else:
                from safetensors.torch import save_file

                path = Path(folder) / f"f{i}.safetensors"
                save_file({"w": tensor}, str(path))
            files.append(path)
        flush()
        before = _ledger_bytes(ledger_dir())
        passes = []
        for _ in range(2):
            start = time.perf_counter()
            for path in files:
                safeload.load(path)
            passes.append((time.perf_counter() - start) / len(files))
        flush()
        grown = _ledger_bytes(ledger_dir()) - before
    report = verify()
    assert report.ok, report.describe()
    loads = 2 * len(files)
    print(f"{kind:>11}: {len(files)} distinct files x 2 passes: first {passes[0] * 1000:.2f} ms, "
          f"again {passes[1] * 1000:.2f} ms per load; ledger +{grown} bytes = "
          f"{grown / loads:.0f} bytes per load (goal <= 400): "
          f"{'OK' if grown / loads <= 400 else 'OVER'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--prefill", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--kind", choices=("pt", "safetensors", "both"), default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="safeload-bench-") as home:
        os.environ["SAFELOAD_HOME"] = home
        _records(args)
    for kind in ("safetensors", "pt") if args.kind == "both" else (args.kind,):
        with tempfile.TemporaryDirectory(prefix="safeload-bench-") as home:
            os.environ["SAFELOAD_HOME"] = home
            _loads(args, kind)


if __name__ == "__main__":
    main()
