"""`safeload scan`: open + inspect only, by design (no trust store, no signature checks)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from typing import Any

from safeload._cli._output import FORMATS, Output, add_common_flags
from safeload._internal.text import safe_text
from safeload.errors import EXIT_ERROR, EXIT_OK, EXIT_REFUSED

HELP = ("classify files by their bytes (open + inspect only: no trust store or signature "
        "checks; use `safeload verify`/`safeload.load` for those); exit 1 if anything is unsafe "
        "or a model file is malformed, "
        "2 if something could not be decided")


def _scan(args: argparse.Namespace, out: Output) -> int:
    from safeload.scanning import scan_paths, to_sarif

    reports, errors = scan_paths([os.fspath(p) for p in args.paths])
    unsafe = [r for r in reports if r.status in ("unsafe", "malformed")]
    summary = scan_summary(reports)
    out.result(
        {"ok": not unsafe and not errors, "files": [r.to_dict() for r in reports],
         "errors": [{"path": p, "message": m} for p, m in errors], "summary": summary},
        text=_lines(reports, errors, verbose=args.verbose),
        summary=f"{summary['clean']} clean, {summary['unsafe']} unsafe, "
                f"{summary['malformed']} malformed, {summary['skipped']} skipped, "
                f"{len(errors)} errors",
        sarif=to_sarif(reports, errors) if out.format == "sarif" else None)
    if errors:
        return EXIT_ERROR
    return EXIT_REFUSED if unsafe else EXIT_OK


def _lines(reports: Sequence[Any], errors: Sequence[tuple[str, str]], *,
           verbose: int) -> Iterator[str]:
    from safeload.scanning import describe

    for r in reports:
        if r.status in ("unsafe", "malformed"):
            yield f"{r.status.upper()}  {safe_text(r.path)}  [{r.format}]"
            for f in r.findings:
                yield f"        {describe(f)}"
        elif r.status == "clean":
            lic = f"  licence {safe_text(r.license)}" if r.license else ""
            yield f"clean   {safe_text(r.path)}  [{r.format}]{lic}"
        elif verbose:
            yield f"skipped {safe_text(r.path)}  ({safe_text(r.detail)})"
    for path, message in errors:
        yield f"error   {safe_text(path)}: {safe_text(message)}"


def scan_summary(reports: Sequence[Any]) -> dict[str, int]:
    counts = {"clean": 0, "unsafe": 0, "malformed": 0, "skipped": 0}
    for r in reports:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scan", help=HELP, description=HELP)
    add_common_flags(p, top_level=False, formats=FORMATS)
    p.add_argument("paths", nargs="+", help="files or directories (recursive)")
    p.set_defaults(func=_scan)
