"""The `safeload` command. The only module that parses argv, configures logging and prints.

Exit codes: 0 ok, 1 refused (a policy decision), 2 could not decide (usage or operational error).
With `--json`, exactly one JSON object goes to stdout, on success and on failure; everything for
people goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from safeload import __version__
from safeload._internal.text import safe_text
from safeload.errors import RefusedError, SafeloadError

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2

_logger = logging.getLogger("safeload")

Handler = Callable[[argparse.Namespace], int]


def _emit_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False, ensure_ascii=True))


def _err(msg: str) -> None:
    """One line for people, on stderr. Attacker-chosen strings must already be escaped."""
    print(msg, file=sys.stderr)


def _add_common_flags(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Flags accepted both before and after the subcommand."""
    # On subparsers, SUPPRESS stops the subparser's default from silently resetting a flag given
    # before the subcommand (`safeload --json scan` vs `safeload scan --json`).
    verbose_default: object = 0 if top_level else argparse.SUPPRESS
    json_default: object = False if top_level else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="count", default=verbose_default,
                        help="more detail on stderr (-vv: tracebacks)")
    parser.add_argument("--json", action="store_true", default=json_default,
                        help="print one JSON object on stdout")


# --------------------------------------------------------------------------------------------
# scan


def _scan(args: argparse.Namespace) -> int:
    from safeload.scanning import describe, scan_paths, to_sarif

    reports, errors = scan_paths([os.fspath(p) for p in args.paths])
    unsafe = [r for r in reports if r.status == "unsafe"]
    if args.format == "sarif":
        print(json.dumps(to_sarif(reports), ensure_ascii=True))
    elif args.json:
        _emit_json({
            "ok": not unsafe and not errors,
            "files": [r.to_dict() for r in reports],
            "errors": [{"path": p, "message": m} for p, m in errors],
            "summary": _scan_summary(reports),
        })
    for r in reports:
        if r.status == "unsafe":
            _err(f"UNSAFE  {safe_text(r.path)}  [{r.format}]")
            for f in r.findings:
                _err(f"        {describe(f)}")
        elif args.verbose or not args.json:
            if r.status == "clean":
                _err(f"clean   {safe_text(r.path)}  [{r.format}]")
            elif args.verbose:
                _err(f"skipped {safe_text(r.path)}  ({safe_text(r.detail)})")
    for path, message in errors:
        _err(f"error   {safe_text(path)}: {safe_text(message)}")
    summary = _scan_summary(reports)
    _err(
        f"{summary['clean']} clean, {summary['unsafe']} unsafe, {summary['skipped']} skipped, "
        f"{len(errors)} errors"
    )
    if errors:
        return EXIT_ERROR
    return EXIT_REFUSED if unsafe else EXIT_OK


def _scan_summary(reports: Sequence[Any]) -> dict[str, int]:
    out = {"clean": 0, "unsafe": 0, "skipped": 0}
    for r in reports:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def _add_scan(sub: Any) -> None:
    p = sub.add_parser("scan", help="classify files by their bytes; exit 1 if anything is unsafe")
    _add_common_flags(p, top_level=False)
    p.add_argument("paths", nargs="+", help="files or directories (recursive)")
    p.add_argument("--format", choices=["text", "sarif"], default="text",
                   help="sarif prints a SARIF 2.1.0 log on stdout")
    p.set_defaults(func=_scan)


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safeload",
        description="Load third-party model checkpoints without running their code.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"safeload {__version__}")
    _add_common_flags(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_scan(sub)
    return parser


def _configure_logging(verbose: int) -> None:
    level_name = os.environ.get("SAFELOAD_LOGLEVEL", "")
    level = getattr(logging, level_name.upper(), None) if level_name else None
    if not isinstance(level, int):
        level = logging.DEBUG if verbose >= 1 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    # The package logger, not the root logger: third-party libraries stay quiet.
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help/--version exit 0
        return int(exc.code) if isinstance(exc.code, int) else EXIT_ERROR
    _configure_logging(args.verbose)
    func: Handler = args.func
    try:
        return func(args)
    except (SafeloadError, OSError) as exc:
        code = EXIT_REFUSED if isinstance(exc, RefusedError) else EXIT_ERROR
        if args.json:
            _emit_json({"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}})
        text = exc.diagnostics() if isinstance(exc, SafeloadError) else str(exc)
        _err(f"error: {safe_text(text, keep_newlines=True)}")
        if args.verbose >= 2:
            raise
        return code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
