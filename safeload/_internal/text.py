"""Escaping attacker-chosen strings (global names, member names, model-card fields) for display."""

from __future__ import annotations

_MAX = 300


def safe_text(value: object, *, keep_newlines: bool = False, limit: int = _MAX * 10) -> str:
    """Printable, bounded text: control and non-printable characters become escapes.

    A terminal must never receive an attacker's escape sequences, bidi overrides or line breaks.
    """
    text = value if isinstance(value, str) else str(value)
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


def _is_bidi(ch: str) -> bool:
    return ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
