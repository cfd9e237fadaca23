"""One output helper for every command: results on stdout, diagnostics on stderr.

A handler builds ONE result object and calls `out.result(obj, text=..., summary=...)` once:
- text: the text lines, then the summary, on stdout (`safeload cache scan > report.txt` holds the
  report);
- json: the object as exactly one JSON line on stdout; the summary goes to stderr, for a person
  reading a CI log;
- sarif: the SARIF log the handler passed, on stdout; the summary on stderr.
Notes, warnings, errors, prompts and progress always go to stderr (pip-audit, ruff and git
do the same), so piping a result never mixes in diagnostics.

The format comes from `--format`, its alias `--json`, else `$SAFELOAD_FORMAT` (what CI sets once
for every command), else text. A command without a SARIF form answers a `SAFELOAD_FORMAT=sarif`
with JSON: still machine-readable, never a failed CI step over an output preference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, cast

from safeload._internal.text import safe_text, terminal_text
from safeload.errors import SafeloadError

Format = Literal["text", "json", "sarif"]
FORMATS: tuple[Format, ...] = ("text", "json", "sarif")
TEXT_JSON: tuple[Format, ...] = ("text", "json")
FORMAT_ENV = "SAFELOAD_FORMAT"


class Output:
    """Renders a command's one result in the chosen format; diagnostics go to stderr."""

    def __init__(self, fmt: Format = "text") -> None:
        self.format: Format = fmt
        self.emitted = False

    @property
    def machine(self) -> bool:
        """JSON or SARIF: stdout carries one document, nothing for people."""
        return self.format != "text"

    def result(self, obj: Mapping[str, Any], *, text: Iterable[str] = (),
               summary: str | None = None, sarif: Mapping[str, Any] | None = None) -> None:
        """The command's result. Attacker-chosen strings in `text` must already be escaped."""
        if self.emitted:
            raise RuntimeError("a command renders exactly one result")
        self.emitted = True
        if self.format == "text":
            for line in [text] if isinstance(text, str) else text:
                _write(sys.stdout, line)
            if summary:
                _write(sys.stdout, summary)
            return
        if self.format == "sarif":
            if sarif is None:  # the --format choices of a command without SARIF exclude it
                raise RuntimeError("this command has no SARIF form")
            _write(sys.stdout, json.dumps(sarif, ensure_ascii=True))
        else:
            _write(sys.stdout, json.dumps(obj, ensure_ascii=True))
        if summary:
            self.note(summary)

    def stream(self, line: str) -> None:
        """A line of a long-running result, printed as it happens in text mode; machine
        formats carry it in the one result object instead."""
        if not self.machine:
            _write(sys.stdout, line)

    def note(self, msg: str) -> None:
        """One line for people on stderr. Attacker-chosen strings must already be escaped."""
        _write(sys.stderr, msg)

    def warn(self, msg: str) -> None:
        self.note(f"warning: {msg}")

    def failure(self, exc: BaseException) -> None:
        """A command failed: the error object on stdout (machine formats, if nothing was
        emitted yet, so stdout still holds one JSON object), the diagnostics on stderr."""
        message = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        if self.machine and not self.emitted:
            self.emitted = True
            _write(sys.stdout, json.dumps(
                {"ok": False, "error": {"type": type(exc).__name__, "message": message}},
                ensure_ascii=True))
        if isinstance(exc, KeyboardInterrupt):
            self.note("interrupted")
            return
        text = exc.diagnostics() if isinstance(exc, SafeloadError) else message
        self.note(f"error: {safe_text(text, keep_newlines=True)}")


def _write(stream: Any, line: str) -> None:
    # The last guard: whatever a renderer forgot to escape never reaches a terminal raw.
    stream.write(terminal_text(line) + "\n")
    stream.flush()


# --------------------------------------------------------------------------------------------
# Flags


def add_common_flags(parser: argparse.ArgumentParser, *, top_level: bool,
                     formats: Sequence[Format] | None = None) -> None:
    """-v and --json everywhere; --format on the commands that print a result.

    On subparsers, SUPPRESS stops the subparser's default from silently resetting a flag given
    before the subcommand (`safeload --json scan` vs `safeload scan --json`).
    """
    verbose_default: object = 0 if top_level else argparse.SUPPRESS
    format_default: object = None if top_level else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="count", default=verbose_default,
                        help="more detail on stderr (-vv: tracebacks)")
    parser.add_argument("--json", dest="format", action="store_const", const="json",
                        default=format_default, help="alias of --format json")
    if formats is not None:
        parser.add_argument("--format", dest="format", choices=list(formats),
                            default=argparse.SUPPRESS,
                            help=f"result on stdout as {' or '.join(formats)} (default: "
                                 f"${FORMAT_ENV}, else text); json is exactly one object")
        parser.set_defaults(formats=tuple(formats))


def resolve_format(args: argparse.Namespace) -> Format:
    """The flag, else $SAFELOAD_FORMAT, else text. Raises SafeloadError on a bad variable."""
    given = getattr(args, "format", None)
    if given is not None:
        return cast(Format, given)
    env = os.environ.get(FORMAT_ENV, "").strip().lower()
    if not env:
        return "text"
    if env not in FORMATS:
        raise SafeloadError(f"{FORMAT_ENV}={safe_text(env)} is not an output format",
                            hint=f"use one of {', '.join(FORMATS)}, or unset it")
    supported: tuple[Format, ...] = getattr(args, "formats", TEXT_JSON)
    if env in supported:
        return env
    return "json" if env == "sarif" else "text"


# --------------------------------------------------------------------------------------------
# Progress and sizes


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns at GB


class ProgressBar:
    """A tqdm bar on stderr fed by `hfcache.Progress` updates (bytes done of total, current
    file). Off when stderr is not a terminal: logs and pipes stay free of bar redraws."""

    def __init__(self, *, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm  # installed with huggingface_hub; only on a terminal

            self._bar = tqdm(total=p.total, unit="B", unit_scale=True, unit_divisor=1000,
                             file=sys.stderr, leave=False, dynamic_ncols=True)
        if p.total != self._bar.total:
            self._bar.total = p.total
        self._bar.set_postfix_str(safe_text(p.current)[:60], refresh=False)
        self._bar.update(p.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


Handler = Callable[[argparse.Namespace, Output], int]
