"""`safeload convert --merge`: one summary and one ML-BOM from every shard's results file.

Results files come from `safeload convert --manifest` shards (or any list of `convert_one`
records written as JSON lines, from Dask or Ray). A shard's file exists only once the shard has
finished (`run_shard` renames it from `.partial`), so a missing shard index is reported, as are
inputs decided twice (a manifest that lists a file twice, or two runs with different shard
counts), damaged lines, and the temporary folders interrupted workers left in an output root.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from safeload._internal.text import safe_text
from safeload.bulk import DECISIONS
from safeload.errors import ResultsError

# The sandboxed converter's work folders (`converter.convert_opened`) beside an output.
LEFTOVER_PREFIX = ".safeload-convert-"


@dataclass
class Merged:
    records: list[dict[str, Any]]
    files: list[str]
    headers: list[dict[str, Any]] = field(default_factory=list)  # the files' shard lines
    shards: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> shard line
    problems: list[str] = field(default_factory=list)

    def check_shards(self) -> None:
        """Shards agree on the count and the manifest; none is missing, short or doubled."""
        if not self.headers:
            return  # records from Dask, Ray or convert_one: no shard lines to check
        counts = {h["shard"][1] for h in self.headers}
        digests = {h.get("manifest_sha256") for h in self.headers}
        if len(counts) > 1:
            self.problems.append("results of different shard counts are mixed: "
                                 + ", ".join(str(n) for n in sorted(counts)))
            return
        if len(digests) > 1:
            self.problems.append("the shards converted different manifests")
        (count,) = counts
        missing = sorted(set(range(count)) - set(self.shards))
        if missing:
            self.problems.append("shards with no results file: "
                                 + ", ".join(str(i) for i in missing))
        decided = Counter(r["shard"][0] for r in self.records if r.get("shard"))
        for i, h in sorted(self.shards.items()):
            if decided.get(i, 0) != h.get("entries"):
                self.problems.append(f"shard {i}: {decided.get(i, 0)} records for "
                                     f"{h.get('entries')} entries")


def read_results(files: Iterable[str | os.PathLike[str]]) -> Merged:
    """Every record of every results file, checked line by line.

    Raises:
        ResultsError: a file cannot be read, is a `.partial` (its shard did not finish), or
            holds a line that is not a results record.
    """
    names = [os.fspath(f) for f in files]
    merged = Merged([], names)
    for name in names:
        if name.endswith(".partial"):
            raise ResultsError(f"{name}: an unfinished shard's results (it was interrupted)",
                               hint="run that shard again; its rerun reuses every output")
        try:
            with open(name, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ResultsError(f"{name}: cannot read the results file: {exc}",
                               hint="pass the results-*.jsonl files the shards wrote") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            rec = _parse(line, f"{name}:{number}")
            if rec.get("kind") != "shard":
                merged.records.append(rec)
                continue
            merged.headers.append(rec)
            if rec["shard"][0] in merged.shards:
                merged.problems.append(f"shard {rec['shard'][0]} appears in two results files")
            else:
                merged.shards[rec["shard"][0]] = rec
    merged.check_shards()
    return merged


def _parse(line: str, where: str) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except ValueError as exc:
        raise ResultsError(f"{where}: not a JSON line ({exc})",
                           hint="the file was damaged: run its shard again") from None
    if isinstance(rec, dict) and rec.get("kind") == "shard":
        ok = isinstance(rec.get("entries"), int) and "shard" in rec
    else:
        ok = (isinstance(rec, dict) and isinstance(rec.get("source"), str)
              and rec.get("decision") in DECISIONS)
    shard = rec.get("shard") if isinstance(rec, dict) else None
    if ok and shard is not None:
        ok = (isinstance(shard, list) and len(shard) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
              and 0 <= shard[0] < shard[1])
    if not ok:
        raise ResultsError(f"{where}: not a convert_one record",
                           hint="pass only the results files safeload wrote")
    return rec  # type: ignore[no-any-return]


def leftovers(records: Iterable[dict[str, Any]]) -> list[Path]:
    """Temporary folders of interrupted conversions in the output roots the records name."""
    roots = {os.path.dirname(r["output"]) for r in records if isinstance(r.get("output"), str)}
    found: list[Path] = []
    for root in sorted(roots):
        try:
            found += [Path(root) / n for n in sorted(os.listdir(root))
                      if n.startswith(LEFTOVER_PREFIX)]
        except OSError:
            continue
    return found


def summarize(merged: Merged, *, remove_leftovers: bool = False) -> dict[str, Any]:
    """The store-wide summary: counts, the refused and failed inputs, the output map."""
    records = merged.records
    counts = Counter(r["decision"] for r in records)
    by_source = Counter(r["source"] for r in records)
    twice = sorted(s for s, n in by_source.items() if n > 1)
    problems = list(merged.problems)
    if twice:
        problems.append(f"{len(twice)} inputs decided more than once")
    left = leftovers(records)
    if left and remove_leftovers:
        for p in left:
            shutil.rmtree(p, ignore_errors=True)
    outputs = {r["source"]: r["output"] for r in records
               if r["decision"] in ("converted", "reused")}
    return {
        "ok": not problems and not counts.get("refused") and not counts.get("error"),
        "results_files": merged.files,
        "inputs": len(records),
        "counts": {d: counts.get(d, 0) for d in DECISIONS},
        "distinct_inputs": len({r["input_sha256"] for r in records if r.get("input_sha256")}),
        "input_bytes": sum(r.get("input_size") or 0 for r in records),
        "output_bytes": sum(r.get("output_size") or 0 for r in records
                            if r["decision"] in ("converted", "reused")),
        "seconds": round(sum(r.get("seconds") or 0.0 for r in records), 3),
        "refused": [{"source": r["source"], "error": r.get("error")}
                    for r in records if r["decision"] == "refused"],
        "errors": [{"source": r["source"], "error": r.get("error"),
                    "error_type": r.get("error_type")}
                   for r in records if r["decision"] == "error"],
        "decided_twice": twice,
        "leftover_temp_folders": [str(p) for p in left],
        "leftovers_removed": bool(left and remove_leftovers),
        "problems": problems,
        "outputs": outputs,
    }


def store_bom(merged: Merged, *, name: str = "model store",
              timestamp: datetime | None = None) -> dict[str, Any]:
    """A CycloneDX 1.6 ML-BOM of the store: one component per distinct input digest, with the
    converted output's digest, the sandbox layers, and the decision."""
    from safeload.sbom import _generic_purl, _hash, _prop, to_cyclonedx

    by_sha: dict[str, list[dict[str, Any]]] = {}
    for r in merged.records:
        if r.get("input_sha256"):
            by_sha.setdefault(r["input_sha256"], []).append(r)
    components = []
    for sha, recs in sorted(by_sha.items()):
        first = recs[0]
        base = os.path.basename(first["source"]) or "model"
        props = [_prop("source:path", p) for p in dict.fromkeys(r["source"] for r in recs)]
        props.append(_prop("decision", ",".join(sorted({r["decision"] for r in recs}))))
        if first.get("format"):
            props.append(_prop("format", first["format"]))
        done = [r for r in recs if r.get("output_sha256")]
        if done:
            props += [_prop("converted-to:sha256", done[0]["output_sha256"]),
                      _prop("converted-to:path", done[0]["output"])]
            layers: list[str] = next(
                (r["sandbox_layers"] for r in done if r.get("sandbox_layers")), [])
            props.append(_prop("sandbox:layers", ",".join(layers) or "none (reused output)"))
        components.append({"type": "machine-learning-model", "bom-ref": f"sha256:{sha}",
                           "name": base, "purl": _generic_purl(base, sha),
                           "hashes": [_hash(sha)], "properties": props})
    bom = to_cyclonedx([], spec_version="1.6", timestamp=timestamp)
    bom["metadata"]["component"] = {"type": "data", "bom-ref": "model-store", "name": name}
    bom["components"] = components
    return bom


def _line(label: str, r: dict[str, Any]) -> str:
    error = str(r.get("error") or "")
    if not error.startswith(r["source"]):  # errors name their file already
        error = f"{r['source']}: {error}"
    return f"{label} {safe_text(error)}"


def text_lines(summary: dict[str, Any]) -> list[str]:
    """The human form: one line per refused or failed input, then the problems."""
    out = [_line("REFUSED", r) for r in summary["refused"]]
    out += [_line("ERROR", r) for r in summary["errors"]]
    out += [f"problem: {p}" for p in summary["problems"]]
    if summary["leftover_temp_folders"] and not summary["leftovers_removed"]:
        out.append(f"{len(summary['leftover_temp_folders'])} temporary folders of interrupted "
                   "workers remain (no output was published from them); --remove-leftovers "
                   "deletes them once no shard is running")
    return out


__all__ = ["LEFTOVER_PREFIX", "Merged", "ResultsError", "leftovers",
           "read_results", "store_bom", "summarize", "text_lines"]
