"""Python 2 8-bit strings: decoded with the unpickler `encoding` the caller passed to load.

torch.load hands `encoding` to the unpickler (its default "utf-8"); the converter keeps the raw
bytes of every non-ASCII STRING/BINSTRING/SHORT_BINSTRING, and the parent decodes them here as
that unpickler would (and as numpy's setstate re-encodes array data given as str).
"""

from __future__ import annotations

import contextvars

# The unpickler `encoding` the caller passed (torch.load's default: "utf-8"), for Python 2
# 8-bit strings: set by `safeload.load` around one load.
STR8_ENCODING: contextvars.ContextVar[str] = contextvars.ContextVar("str8", default="utf-8")


class Str8DecodeError(ValueError):
    """A Python 2 string the requested encoding cannot decode (torch.load fails the same)."""


def decode_str8(raw: bytes) -> str | bytes:
    """What pickle gives for a Python 2 8-bit string under the caller's encoding."""
    encoding = STR8_ENCODING.get()
    if encoding == "bytes":
        return raw
    try:
        return raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise Str8DecodeError(f"a Python 2 string cannot be decoded as {encoding}: {exc}; "
                              "pass encoding='latin1' as for torch.load") from None


def numpy_str8_bytes(raw: bytes) -> bytes:
    """numpy's setstate for Python 2 array (or scalar) data: the str pickle decoded, encoded
    back as latin-1 (the bytes themselves under encoding='latin1' or 'bytes')."""
    text = decode_str8(raw)
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise Str8DecodeError(f"Python 2 NumPy data decoded as {STR8_ENCODING.get()} is not "
                              f"latin-1 ({exc}); pass encoding='latin1' as for torch.load"
                              ) from None

__all__ = ["STR8_ENCODING", "Str8DecodeError", "decode_str8", "numpy_str8_bytes"]
