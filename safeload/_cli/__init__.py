"""The `safeload` command: the only package that parses argv, configures logging and prints.

Owns the parser, logging setup and the error -> exit code mapping; one module per command group:
  _output.py      Output (one result -> text, JSON or SARIF; diagnostics on stderr), flags, tqdm
  scan.py         scan (open + inspect only)
  convert.py      convert
  cache.py        cache scan, cache convert
  provenance.py   provenance list, show, verify, export
  trust.py        trust ... (with _trust_args.py: command-line values -> trust-store values)
  signing.py      sign, verify
  demo.py         demo (the end-to-end run on all-MiniLM-L6-v2)
Layer L6: it may import every other safeload module; nothing imports it (`from safeload._cli
import main` is its public name).

Exit codes (`safeload.errors.EXIT_*`): 0 ok, 1 refused (a policy decision), 2 could not decide
(usage or operational error), 130 interrupted. Results go to stdout; diagnostics, warnings,
prompts and progress to stderr. With `--format json` (or `--json`), stdout holds exactly one
JSON object, on success and on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from safeload._cli._output import FORMAT_ENV, Handler, Output, add_common_flags, resolve_format
from safeload._internal.text import get_logger
from safeload._version import __version__
from safeload.errors import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, RefusedError, SafeloadError

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_REFUSED", "build_parser", "entry", "main"]

_logger = get_logger("safeload")

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

ENVIRONMENT = f"""\
environment (defaults for the flags CI sets; a flag wins):
  {FORMAT_ENV}=FMT            --format of every command: text, json or sarif (sarif:
                                 scan and cache scan; other commands answer it with json)
  SAFELOAD_TRUST_STORE=PATH      the trust store (--trust-store)
  SAFELOAD_HOME=DIR              relocates config, data and cache (tests, CI, containers)
  SAFELOAD_LOGLEVEL=LEVEL        log level on stderr (debug, info, warning, error)
  SAFELOAD_SIGNING_KEY_PASSWORD  password of an encrypted signing key (sign --key)

exit codes: 0 ok, 1 refused (a policy decision), 2 could not decide"""


# Each command's parser builder, by name: `main` builds only the one argv names first
# (a whole parser costs more than a small scan: `safeload scan FILE` starts faster than peers).
# The modules are imported only for the parser that is built.
_COMMANDS: dict[str, tuple[str, str]] = {
    "scan": ("scan", "add_parser"), "convert": ("convert", "add_parser"),
    "cache": ("cache", "add_parser"), "demo": ("demo", "add_parser"),
    "provenance": ("provenance", "add_parser"), "trust": ("trust", "add_parser"),
    "verify": ("signing", "add_verify_parser"), "sign": ("signing", "add_sign_parser"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (`only`, a command name) one with that command alone."""
    parser = argparse.ArgumentParser(
        prog="safeload",
        description="Load third-party model checkpoints without running their code.",
        epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"safeload {__version__}")
    add_common_flags(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, builder) in _COMMANDS.items():
        if only is None or name == only:
            getattr(importlib.import_module(f"safeload._cli.{module}"), builder)(sub)
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever sys.stderr is now (callers and test runners replace it)."""

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _configure_logging(verbose: int) -> None:
    level_name = os.environ.get("SAFELOAD_LOGLEVEL", "")
    level = getattr(logging, level_name.upper(), None) if level_name else None
    if not isinstance(level, int):
        level = logging.DEBUG if verbose >= 1 else logging.WARNING
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    # The package logger, not the root logger: third-party libraries stay quiet.
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False


def exit_code(exc: BaseException) -> int:
    """A refusal exits 1; anything else that stopped a command exits 2."""
    return EXIT_REFUSED if isinstance(exc, RefusedError) else EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # A command as the first word parses exactly as with the whole parser (argparse never
    # abbreviates command names); anything else (flags first, --help, a typo) gets it all.
    first = args_list[0] if args_list else None
    parser = build_parser(first if first in _COMMANDS else None)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help/--version exit 0
        sys.stderr.write(said.getvalue())
        code = int(exc.code) if isinstance(exc.code, int) else EXIT_ERROR
        machine = "--json" in args_list or "--format=json" in args_list or any(
            a == "--format" and b == "json"
            for a, b in zip(args_list, args_list[1:], strict=False))
        if code and machine:  # still one JSON object on stdout (review U)
            last = said.getvalue().strip().rpartition("\n")[2]
            sys.stdout.write(json.dumps({"ok": False, "error": {"type": "UsageError",
                                                                "message": last}},
                                        ensure_ascii=True) + "\n")
        return code
    sys.stderr.write(said.getvalue())
    _configure_logging(args.verbose)
    out = Output()
    func: Handler = args.func
    try:
        out.format = resolve_format(args)
        return func(args, out)
    except BrokenPipeError:
        # The reader went away (`safeload scan DIR | head`): nothing to say, and nowhere to
        # say it; stdout goes to /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (SafeloadError, OSError) as exc:
        out.failure(exc)
        if args.verbose >= 2:
            raise
        return exit_code(exc)
    except KeyboardInterrupt as exc:
        out.failure(exc)
        return EXIT_INTERRUPTED


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())

