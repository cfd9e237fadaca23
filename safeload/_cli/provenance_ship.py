"""`safeload provenance export --format jsonl|otlp`, `--format cyclonedx --upload URL`, and
`safeload provenance verify --from-export FILE`: provenance to the organisation's collectors."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from safeload._cli._output import Output
from safeload._internal.atomic import write_atomic
from safeload._internal.text import safe_text
from safeload.errors import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, SafeloadError

UPLOAD_WINDOW = timedelta(days=30)  # "in use": loaded within this window, unless --since


def service_name(args: argparse.Namespace) -> str:
    """--service, else $OTEL_SERVICE_NAME, else the host name."""
    return str(getattr(args, "service", None) or os.environ.get("OTEL_SERVICE_NAME")
               or socket.gethostname())


def since_filter(records: Sequence[Any], since: datetime | None) -> list[Any]:
    """Entries at or after `since`; an entry whose time does not parse is left out (it cannot
    be shown to be recent)."""
    from safeload.provenance import parse_time

    if since is None:
        return list(records)
    out = []
    for r in records:
        try:
            if r.entry is not None and parse_time(r.entry.time) >= since:
                out.append(r)
        except ValueError:
            continue
    return out


def intact_state(args: argparse.Namespace, out: Output) -> Any:
    from safeload.provenance import read_ledger, require_intact

    state = read_ledger(args.ledger)
    if args.allow_broken:
        if not state.report.ok:
            out.warn(f"exporting a ledger that does not verify: "
                     f"{safe_text(state.report.describe())}")
    else:
        require_intact(state)
    return state


def _lines(args: argparse.Namespace) -> list[Any]:
    from safeload.provenance import parse_time
    from safeload.provenance.shipping import shipped_lines

    items = list(shipped_lines(args.ledger))
    if args.since is None:
        return items
    out = []
    for item in items:
        try:
            if item.time is not None and parse_time(item.time) >= args.since:
                out.append(item)
        except ValueError:
            continue
    return out


def export_jsonl(args: argparse.Namespace, out: Output) -> int:
    from safeload.provenance.shipping import ledger_id, resource

    intact_state(args, out)
    res = resource(service_name(args))
    text = "".join(json.dumps(i.to_record(res), sort_keys=True) + "\n" for i in _lines(args))
    n = text.count("\n")
    ident = ledger_id(args.ledger) if args.ledger else ledger_id()
    if args.output and args.output != "-":
        write_atomic(Path(args.output), text.encode("utf-8"), overwrite=args.overwrite)
        out.result({"ok": True, "output": args.output, "records": n, "ledger_id": ident},
                   text=[f"wrote {n} ledger lines to {safe_text(args.output)}"])
        return EXIT_OK
    sys.stdout.write(text)  # the records are the result; a summary for people on stderr
    out.note(f"{n} ledger lines of ledger {ident}")
    return EXIT_OK


def export_otlp(args: argparse.Namespace, out: Output) -> int:
    from safeload.provenance import otlp
    from safeload.provenance.shipping import ledger_id

    intact_state(args, out)
    try:
        report = otlp.ship(_lines(args), service_name=service_name(args))
    except ImportError:
        raise SafeloadError("the OpenTelemetry SDK is not installed",
                            hint=otlp.INSTALL_HINT) from None
    endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318")
    obj = {"ok": report.ok, "records": report.records, "exported": report.exported,
           "failed": report.failed, "ledger_id": ledger_id(args.ledger) if args.ledger
           else ledger_id()}
    verdict = "sent" if report.ok else "NOT all accepted"
    out.result(obj, summary=f"OTLP: {report.exported} of {report.records} ledger lines {verdict}"
                            f" ({safe_text(endpoint.split('?', 1)[0], limit=120)})")
    return EXIT_OK if report.ok else EXIT_ERROR


def upload_cyclonedx(args: argparse.Namespace, out: Output) -> int:
    from safeload.provenance import dtrack
    from safeload.sbom import to_inventory

    state = intact_state(args, out)
    since = args.since or datetime.now(timezone.utc) - UPLOAD_WINDOW
    records = since_filter([r for r in state.records if r.entry is not None], since)
    service = service_name(args)
    bom = to_inventory(records, service=service, redact_paths=args.redact_paths,
                       report=state.report)
    if not bom["components"]:
        out.warn("no model was used in the window: the upload empties the project")
    result = dtrack.upload(args.upload, bom, project=service, version=args.project_version,
                           api_key=os.environ.get(dtrack.API_KEY_ENV, ""), wait_s=args.wait)
    obj = {"ok": result.processed, **result.to_dict(), "components": len(bom["components"]),
           "since": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    state_text = "processed" if result.processed else f"not processed after {args.wait:g} s"
    out.result(obj, summary=f"uploaded {len(bom['components'])} models in use to "
                            f"{safe_text(result.url)} (project {safe_text(service)} "
                            f"{safe_text(args.project_version)}): {state_text}")
    return EXIT_OK if result.processed else EXIT_ERROR


def verify_from_export(args: argparse.Namespace, out: Output) -> int:
    from safeload.provenance.fromexport import verify_export

    if args.from_export == "-":
        report = verify_export(sys.stdin.buffer)
    else:
        with open(args.from_export, "rb") as fh:
            report = verify_export(fh)
    verdict = report.verdict
    text = [line for c in sorted(report.ledgers.values(), key=lambda c: c.ledger_id)
            for line in c.describe()]
    if report.malformed:
        text.append(f"{len(report.malformed)} records are not ledger lines (first: "
                    f"{safe_text(report.malformed[0])})")
    out.result({"ok": verdict == "ok", **report.to_dict()}, text=text,
               summary=f"export {verdict.upper()}: {report.records} records, "
                       f"{len(report.ledgers)} ledgers")
    return {"ok": EXIT_OK, "broken": EXIT_REFUSED}.get(verdict, EXIT_ERROR)


def add_export_arguments(q: argparse.ArgumentParser) -> None:
    q.add_argument("--upload", default=None, metavar="URL",
                   help="cyclonedx only: PUT the models in use (deduplicated by digest over "
                        "--since, default 30d) to Dependency-Track at URL; API key from "
                        "$SAFELOAD_DTRACK_API_KEY")
    q.add_argument("--service", default=None, metavar="NAME",
                   help="this node or service: OTLP/JSONL service.name and the "
                        "Dependency-Track project (default: $OTEL_SERVICE_NAME, else the "
                        "host name)")
    q.add_argument("--project-version", default="current", metavar="V",
                   help="the Dependency-Track project version (default: current)")
    q.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to poll Dependency-Track until the BOM is processed")


__all__ = ["add_export_arguments", "export_jsonl", "export_otlp", "intact_state",
           "service_name", "since_filter", "upload_cyclonedx", "verify_from_export"]
