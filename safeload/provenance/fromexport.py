"""Central verification of an export of many nodes' ledger lines (`verify --from-export`).

Log pipelines are at-least-once and reorder, so an export holds the lines of many ledgers in
any order, some more than once. `verify_export` groups them by ledger id, orders each group by
seq, checks every line on its own (canonical, digest) and the chain between neighbours, and
reports per ledger:
- duplicates: the same line again (identical digest): harmless, counted;
- forks: two different valid lines with one seq (a rewritten or second chain): broken;
- breaks: a line whose `prev` is not its predecessor's digest: broken;
- tampered: a record whose line does not verify on its own (edited, not canonical): broken;
- gaps: seqs missing between the first and the last line present: undecidable (lost in the
  pipeline, or deleted on the node: only the node's ledger can tell);
- a ledger id that is not the digest of the ledger's line 0 (when line 0 is present): broken.
A group that starts after seq 0 is a window (`--since`), noted, not a gap.

Verdict: `broken` if anything above is broken, else `undecidable` if there are gaps, records
that are not ledger lines at all, or nothing to check, else `ok`.

Accepted records, one JSON object per line of the file (what common backends export):
- safeload's own (`export --format jsonl`, and the shape log agents are told to produce):
  `{"safeload.ledger.id": ID, "body": LINE, ...}`; `ledger_id` for the id and `line`, `log`
  (Fluent Bit) or `message` (Vector) for the line are accepted too; LINE is the ledger line as
  a JSON string (exact bytes) or object;
- OTLP JSON records (`{"attributes": [{"key", "value": {"stringValue"}}], "body":
  {"stringValue": LINE}}`) and whole `ExportLogsServiceRequest`s (`{"resourceLogs": [...]}`,
  what the OpenTelemetry Collector's file exporter writes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from safeload.provenance.ledger import GENESIS, Line, canonical, parse_line

Verdict = Literal["ok", "broken", "undecidable"]
_ID_KEYS = ("safeload.ledger.id", "ledger_id")
_BODY_KEYS = ("body", "line", "log", "message")
_MAX_LISTED = 50  # per kind and ledger: a report stays readable when a whole node is lost


@dataclass
class LedgerCheck:
    """One ledger's lines in the export, and what is wrong with them."""

    ledger_id: str
    lines: dict[int, Line] = field(default_factory=dict)  # seq -> the first valid line seen
    duplicates: int = 0
    forks: dict[int, list[str]] = field(default_factory=dict)  # seq -> distinct digests
    tampered: list[str] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    id_mismatch: bool = False

    def add(self, line: Line) -> None:
        seen = self.lines.get(line.seq)
        if seen is None:
            self.lines[line.seq] = line
        elif seen.digest == line.digest:
            self.duplicates += 1
        else:
            digests = self.forks.setdefault(line.seq, [seen.digest])
            if line.digest not in digests:
                digests.append(line.digest)
            else:
                self.duplicates += 1

    def check_chain(self) -> None:
        seqs = sorted(self.lines)
        if not seqs:
            return
        if seqs[0] == 0:
            first = self.lines[0]
            self.id_mismatch = first.digest != self.ledger_id and 0 not in self.forks
            if first.prev != GENESIS:
                self.breaks.append("entry 0 does not start a chain (prev is not the genesis)")
        for before, seq in zip(seqs, seqs[1:], strict=False):
            if seq != before + 1:
                self.gaps.append((before + 1, seq - 1))
                continue
            candidates = self.forks.get(before, [self.lines[before].digest])
            if self.lines[seq].prev not in candidates:
                self.breaks.append(f"entry {seq} does not chain to entry {before}")

    @property
    def broken(self) -> bool:
        return bool(self.forks or self.tampered or self.breaks or self.id_mismatch)

    def to_dict(self) -> dict[str, Any]:
        seqs = sorted(self.lines)
        return {
            "ledger_id": self.ledger_id, "lines": len(seqs),
            "first_seq": seqs[0] if seqs else None, "last_seq": seqs[-1] if seqs else None,
            "head": self.lines[seqs[-1]].digest if seqs else None,
            "duplicates": self.duplicates,
            "gaps": [list(g) for g in self.gaps[:_MAX_LISTED]],
            "missing": sum(b - a + 1 for a, b in self.gaps),
            "forks": [{"seq": s, "digests": d} for s, d in sorted(self.forks.items())][
                :_MAX_LISTED],
            "tampered": self.tampered[:_MAX_LISTED], "breaks": self.breaks[:_MAX_LISTED],
            "id_mismatch": self.id_mismatch, "broken": self.broken,
        }

    def describe(self) -> list[str]:
        d = self.to_dict()
        state = "BROKEN" if self.broken else ("GAPS" if self.gaps else "ok")
        out = [f"ledger {self.ledger_id}: {state}: {d['lines']} lines, seq {d['first_seq']}.."
               f"{d['last_seq']}, {self.duplicates} duplicates"]
        if d["first_seq"]:
            out.append(f"  note: starts at entry {d['first_seq']} (earlier entries are not in "
                       f"the export)")
        out += [f"  gap: entries {a}..{b} missing" for a, b in self.gaps[:_MAX_LISTED]]
        out += [f"  fork: entry {s} has {len(ds)} different versions"
                for s, ds in sorted(self.forks.items())[:_MAX_LISTED]]
        out += [f"  tampered: {t}" for t in self.tampered[:_MAX_LISTED]]
        out += [f"  break: {b}" for b in self.breaks[:_MAX_LISTED]]
        if self.id_mismatch:
            out.append("  the ledger id is not the digest of the ledger's entry 0")
        return out


@dataclass
class ExportReport:
    ledgers: dict[str, LedgerCheck]
    records: int
    malformed: list[str]

    @property
    def verdict(self) -> Verdict:
        if any(c.broken for c in self.ledgers.values()):
            return "broken"
        if self.malformed or not self.ledgers or any(c.gaps for c in self.ledgers.values()):
            return "undecidable"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "records": self.records,
                "malformed": len(self.malformed), "malformed_first": self.malformed[:10],
                "ledgers": [c.to_dict() for _, c in sorted(self.ledgers.items())]}


def _otlp_value(value: Any) -> Any:
    if isinstance(value, Mapping) and len(value) == 1:
        ((kind, inner),) = value.items()
        if kind in ("stringValue", "intValue", "boolValue", "doubleValue"):
            return int(inner) if kind == "intValue" else inner
    return value


def _attributes(record: Mapping[str, Any]) -> dict[str, Any]:
    attrs = record.get("attributes")
    if isinstance(attrs, list):  # OTLP JSON: a list of {key, value}
        return {str(a.get("key")): _otlp_value(a.get("value")) for a in attrs
                if isinstance(a, Mapping)}
    return dict(attrs) if isinstance(attrs, Mapping) else {}


def _records(obj: Any) -> Iterator[Mapping[str, Any]]:
    """The log records in one exported JSON value (a record, or an OTLP request)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("resourceLogs"), list):
        for rl in obj["resourceLogs"]:
            for sl in (rl or {}).get("scopeLogs") or []:
                yield from ((sl or {}).get("logRecords") or [])
    elif isinstance(obj, Mapping):
        yield obj


def _extract(record: Mapping[str, Any]) -> tuple[str, bytes]:
    """(ledger id, the line's bytes); ValueError when the record is not a ledger line."""
    attrs = _attributes(record)
    ident = next((v for k in _ID_KEYS for v in (record.get(k), attrs.get(k)) if v), None)
    if not isinstance(ident, str):
        raise ValueError("no safeload.ledger.id")
    body = next((record[k] for k in _BODY_KEYS if k in record), None)
    body = _otlp_value(body)
    if isinstance(body, str):
        return ident, body.rstrip("\n").encode("utf-8")
    if isinstance(body, Mapping):  # parsed by the pipeline: the canonical form is rebuilt
        return ident, canonical(body)
    raise ValueError("no ledger line in body")


def verify_export(lines: Iterable[bytes]) -> ExportReport:
    """Check an export (JSON values, one per line; blank lines skipped)."""
    ledgers: dict[str, LedgerCheck] = {}
    malformed: list[str] = []
    count = 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            malformed.append(f"line {number}: not JSON")
            continue
        for record in _records(obj):
            count += 1
            try:
                ident, line_bytes = _extract(record)
            except ValueError as exc:
                malformed.append(f"line {number}: {exc}")
                continue
            check = ledgers.setdefault(ident, LedgerCheck(ident))
            try:
                check.add(parse_line(line_bytes))
            except ValueError as exc:
                check.tampered.append(f"export line {number}: {exc}")
    for check in ledgers.values():
        check.check_chain()
    return ExportReport(ledgers, count, malformed)


__all__ = ["ExportReport", "LedgerCheck", "Verdict", "verify_export"]
