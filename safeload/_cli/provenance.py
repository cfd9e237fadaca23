"""`safeload provenance list|show|verify|export`: the hash-chained ledger."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from safeload._cli import provenance_ship as ship
from safeload._cli._output import Output, add_common_flags
from safeload._internal.atomic import write_atomic
from safeload._internal.text import safe_text
from safeload._internal.times import parse_iso_time
from safeload.errors import EXIT_OK, EXIT_REFUSED, ProvenanceError, SafeloadError


def since_arg(value: str) -> datetime:
    """`--since`: an ISO 8601 date or time (UTC unless it says otherwise), or an age (30m, 12h,
    3d, 1w) before now."""
    age = re.fullmatch(r"(\d{1,6})([mhdw])", value.strip())
    if age:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[age.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{unit: int(age.group(1))})
    try:
        return parse_iso_time(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date, time or age (like 2026-01-31, 2026-01-31T12:00Z, 7d): {value!r}"
        ) from None


def _limit_arg(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 1:
        raise argparse.ArgumentTypeError(f"not a positive entry count: {value!r}")
    return n


def _entry_source(entry: Any) -> str:
    src = entry.source
    text = src.purl or src.path or "?"
    return f"{text} {src.file}" if src.purl and src.file else text


def _prov_list(args: argparse.Namespace, out: Output) -> int:
    from safeload.provenance import read_ledger

    state = read_ledger(args.ledger)
    records = ship.since_filter(state.records, args.since)
    if args.limit is not None:
        records = records[-args.limit:]  # the newest N, oldest first (as `tail`)
    report = state.report
    if not report.ok:
        out.warn(f"{safe_text(report.describe())}; run `safeload provenance verify`")
    out.result({"ok": True, "chain_ok": report.ok, "head": report.head,
                "entries": [r.to_dict() for r in records]},
               text=_list_lines(records),
               summary=f"{len(records)} entries shown; head {report.head or '(empty ledger)'}")
    return EXIT_OK


def _list_lines(records: Sequence[Any]) -> Iterator[str]:
    for r in records:
        if r.entry is None:
            yield f"{'?':>5}  line {r.line}: not a valid entry"
            continue
        e = r.entry
        lic = e.license.id if e.license else "-"
        mark = "" if r.verified else "  [UNVERIFIED]"
        if getattr(r, "count", 1) > 1:  # repeats in one process, coalesced by the writer
            mark = f"  x{r.count}{mark}"
        yield (f"{r.seq:>5}  {safe_text(e.time[:19])}  {e.action:<15}  "
               f"{safe_text(_entry_source(e), limit=160)}  licence {safe_text(lic, limit=80)}  "
               f"signature {e.signature.status}{mark}")


def _find_record(records: Sequence[Any], selector: str) -> Any:
    key = selector.strip().lower()
    if re.fullmatch(r"-?\d+", key):
        n = int(key)
        chain = [r for r in records if r.seq is not None]
        if n < 0 and -n <= len(chain):
            return chain[n]
        for r in chain:
            if r.seq == n:
                return r
    else:
        hexpart = key.removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{6,64}", hexpart):
            raise ProvenanceError(f"not an entry number or digest: {safe_text(selector)}")
        hits = [r for r in records if r.digest and r.digest[7:].startswith(hexpart)]
        if len(hits) > 1:
            raise ProvenanceError(f"digest prefix {hexpart} matches {len(hits)} entries")
        if hits:
            return hits[0]
    raise ProvenanceError(f"no ledger entry {safe_text(selector)}")


def _prov_show(args: argparse.Namespace, out: Output) -> int:
    from safeload.provenance import read_ledger

    state = read_ledger(args.ledger)
    r = _find_record(state.records, args.entry)
    status = "chain verified" if r.verified else "NOT VERIFIED (at or after a broken link)"
    out.result({"ok": True, "chain_ok": state.report.ok, "record": r.to_dict()},
               text=[f"entry {r.seq}  {r.digest}  ({status})",
                     *(f"  {label:<10} {value}" for label, value in _show_rows(r))])
    return EXIT_OK


def _show_rows(r: Any) -> list[tuple[str, str]]:
    e = r.entry
    if e is None:
        return []
    t = safe_text
    rows: list[tuple[str, str]] = [
        ("time", t(e.time)), ("action", e.action), ("safeload", t(e.safeload_version)),
        ("source", t(_entry_source(e))),
    ]
    for f in e.files:
        rows.append(("file", f"{t(f.path)}  sha256:{f.sha256}  {f.size} bytes  {t(f.format)}"))
    if e.converted_from:
        c = e.converted_from
        rows.append(("converted", f"from sha256:{c.sha256} ({t(c.format)}"
                     f"{', ' + t(c.path) if c.path else ''}); sandbox: "
                     f"{t(', '.join(c.sandbox_layers) or 'none')}"))
    s = e.signature
    rows.append(("signature", s.status + "".join(
        f"  {k} {t(v)}" for k, v in (("publisher", s.publisher), ("key", s.key_id),
                                     ("method", s.method)) if v)))
    rows.append(("trust", f"mode {t(e.trust.mode)}, pin {e.trust.pin}"))
    if e.license:
        lic = e.license
        rows.append(("licence", f"{t(lic.id)} ({lic.license_class}; from {t(lic.source)})"
                     + (f"  {t(lic.name)}" if lic.name else "")))
    if e.publisher:
        p = e.publisher
        rows.append(("publisher", f"{t(p.namespace or '-')}, trusted {'yes' if p.trusted else 'no'}"
                     f", signature verified {'yes' if p.signature_verified else 'no'}"))
    if e.task:
        rows.append(("task", t(e.task)))
    if e.datasets:
        rows.append(("datasets", t(", ".join(e.datasets))))
    if e.base_model:
        rows.append(("base model", t(", ".join(e.base_model))))
    rows += [("warning", t(w)) for w in e.warnings]
    if r.repair:
        rows.append(("repair", t(f"removed a torn write: {dict(r.repair)}")))
    return rows


def _prov_verify(args: argparse.Namespace, out: Output) -> int:
    from safeload.provenance import verify

    if args.from_export is not None:
        return ship.verify_from_export(args, out)
    from safeload.provenance.shipping import ledger_id

    report = verify(args.ledger, anchor=args.anchor)
    head = (f"head: {report.head or '(empty ledger)'}"
            + (f" (entry {report.head_seq})" if report.head_seq is not None else ""))
    ident = ledger_id(args.ledger) if args.ledger else ledger_id()  # what exports group by
    # Small enough to be all summary: a CI log shows the verdict and the head in every format.
    out.result({"ok": report.ok, "report": report.to_dict(), "ledger_id": ident},
               summary="\n".join([safe_text(report.describe()),
                                  *(f"  note: {safe_text(note)}" for note in report.notes),
                                  head, f"ledger id: {ident or '(none)'}"]))
    return EXIT_OK if report.ok else EXIT_REFUSED


def _prov_export(args: argparse.Namespace, out: Output) -> int:
    from safeload.sbom import to_cyclonedx

    if args.upload is not None and args.sbom_format != "cyclonedx":
        raise SafeloadError("--upload goes with --format cyclonedx (Dependency-Track)")
    if args.sbom_format == "jsonl":
        return ship.export_jsonl(args, out)
    if args.sbom_format == "otlp":
        return ship.export_otlp(args, out)
    if args.upload is not None:
        return ship.upload_cyclonedx(args, out)
    state = ship.intact_state(args, out)
    records = ship.since_filter([r for r in state.records if r.entry is not None], args.since)
    bom = to_cyclonedx(records, redact_paths=args.redact_paths, spec_version=args.spec_version,
                       report=state.report)
    summary = {"components": len(bom["components"]), "entries": len(records),
               "head": state.report.head, "chain_ok": state.report.ok}
    if args.output and args.output != "-":
        # One atomic writer; no-clobber unless --overwrite (FileExistsError names the fix).
        write_atomic(Path(args.output), (json.dumps(bom, indent=2) + "\n").encode(),
                     overwrite=args.overwrite)
        out.result({"ok": True, "output": args.output, **summary},
                   text=[f"wrote CycloneDX {args.spec_version} to {safe_text(args.output)}: "
                         f"{summary['components']} models from {summary['entries']} entries"])
    else:  # the document itself is the text result
        out.result({"ok": True, **summary, "bom": bom}, text=[json.dumps(bom, indent=2)])
    return EXIT_OK


def add_parser(sub: Any) -> None:
    p = sub.add_parser("provenance", help="the provenance ledger: list, show, verify, export")
    add_common_flags(p, top_level=False)
    psub = p.add_subparsers(dest="provenance_command", metavar="ACTION")
    psub.required = True
    since_help = ("only entries at or after WHEN: an ISO 8601 date or time (UTC unless it says "
                  "otherwise), or an age before now (30m, 12h, 3d, 1w)")

    def leaf(name: str, help_text: str) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = psub.add_parser(name, help=help_text)
        add_common_flags(q, top_level=False,
                         formats=None if name == "export" else ("text", "json"))
        q.add_argument("--ledger", type=Path, default=None, metavar="DIR",
                       help="ledger folder (default: the data folder's provenance/)")
        return q

    q = leaf("list", "one line per entry")
    q.add_argument("--since", type=since_arg, default=None, metavar="WHEN", help=since_help)
    q.add_argument("-n", "--limit", type=_limit_arg, default=None, metavar="N",
                   help="only the newest N entries (after --since)")
    q.set_defaults(func=_prov_list)

    q = leaf("show", "one entry in full (publisher, licence, datasets, ...)")
    q.add_argument("entry", help="entry number (-1: the last) or digest prefix")
    q.set_defaults(func=_prov_show)

    q = leaf("verify", "check the hash chain and the head; exit 1 if broken")
    q.add_argument("--anchor", default=None, metavar="DIGEST",
                   help="a head digest kept elsewhere; the chain must contain it")
    q.add_argument("--from-export", default=None, metavar="FILE",
                   help="verify an export of many nodes' ledger lines instead (JSONL, any "
                        "order, duplicates; - for stdin): exit 1 broken, 2 gaps or undecidable")
    q.set_defaults(func=_prov_verify)

    q = leaf("export", "export as an SBOM (CycloneDX JSON; --json wraps it with a summary), "
                       "as JSONL records, or to an OTLP collector")
    q.add_argument("--format", dest="sbom_format", choices=["cyclonedx", "jsonl", "otlp"],
                   default="cyclonedx",
                   help="cyclonedx: an ML-BOM; jsonl: one record per ledger line (for log "
                        "agents); otlp: ship every line as a log record to the collector the "
                        "OTEL_EXPORTER_OTLP_* variables name")
    q.add_argument("--spec-version", choices=["1.6", "1.7"], default="1.6")
    q.add_argument("--since", type=since_arg, default=None, metavar="WHEN", help=since_help)
    q.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write to FILE (default: stdout)")
    q.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    q.add_argument("--redact-paths", action="store_true",
                   help="replace home folders (user names) in paths with ~")
    q.add_argument("--allow-broken", action="store_true",
                   help="export even if the chain does not verify (marked in the metadata)")
    ship.add_export_arguments(q)
    q.set_defaults(func=_prov_export)
