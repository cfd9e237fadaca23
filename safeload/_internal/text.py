"""Escaping attacker-chosen strings (global names, member names, model-card fields) for display."""

from __future__ import annotations

import logging
import os

_MAX = 300


def safe_text(value: object, *, keep_newlines: bool = False, limit: int = _MAX * 10) -> str:
    """Printable, bounded text: control and non-printable characters become escapes.

    A terminal must never receive an attacker's escape sequences, bidi overrides or line breaks.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit and text.isprintable() and _BIDI.isdisjoint(text):
        return text  # the common case: nothing to escape (a path on every load)
    if len(text) > limit:
        text = text[:limit] + f"...[{len(text) - limit} more chars]"
    out: list[str] = []
    for ch in text:
        if ch == "\n" and keep_newlines or ch.isprintable() and not _is_bidi(ch):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
    return "".join(out)


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _is_bidi(ch: str) -> bool:
    return ch in _BIDI


def terminal_text(text: str) -> str:
    """`text` with every control, non-printable or bidi character escaped except newlines: the
    last guard before a terminal or a log (whatever a caller forgot to escape, an attacker's
    file, member or folder name included). Unbounded: the text is ours, only its parts are not."""
    if text.isprintable() and _BIDI.isdisjoint(text):
        return text  # the common case, without building a new string
    return safe_text(text, keep_newlines=True, limit=max(len(text), 1))


class EscapingFilter(logging.Filter):
    """Escapes a record's message (its arguments merged in) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = terminal_text(message)
        if escaped is not message:
            record.msg, record.args = escaped, None
        return True


_FILTER = EscapingFilter()


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with the escaping filter: every safeload logger uses this, so
    a library user's own handlers never receive raw escape sequences either."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    _apply_env_level()
    return logger


_env_level_applied = False


def _apply_env_level() -> None:
    """`SAFELOAD_LOGLEVEL` (debug, info, warning, error) for the library too, once per process,
    on the package logger "safeload" (the CLI sets it again with its own handler)."""
    global _env_level_applied
    if _env_level_applied:
        return
    _env_level_applied = True
    name = os.environ.get("SAFELOAD_LOGLEVEL", "")
    level = getattr(logging, name.upper(), None) if name else None
    if isinstance(level, int):
        logging.getLogger("safeload").setLevel(level)
