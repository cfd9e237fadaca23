"""How joblib.load reads a file of another format whose first bytes name a compressor.

joblib's `_detect_compressor` picks a decompressor by the first bytes alone (zlib: one byte,
`x`) and unpickles while it inflates, checking no trailer before a REDUCE runs. A safetensors
file whose header length begins with such bytes is therefore also read that way.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any

from safeload_conversion.pickle_vm import Buf, Finding

from safeload._internal.decompress import LZMA_MEMLIMIT
from safeload._internal.reach import would_import

_PREFIXES = ((b"x", "zlib"), (b"\x1f\x8b", "gzip"), (b"BZ", "bz2"), (b"]\x00", "lzma-alone"),
             (b"\xfd7zXZ", "xz"))
# A real safetensors header inflates to a few bytes before the stream breaks: anything that
# inflates this far is refused, never read further (a payload may lie past any bound).
LENIENT_BOUND = 16 << 20


def joblib_reading(buf: Buf, name: str) -> Finding | None:
    """What the inflated prefix would do to joblib's unpickler, if joblib would inflate this
    file: a prefix that reaches no import cannot run code; anything else is a polyglot."""
    head = bytes(buf[:8])
    kind = next((k for prefix, k in _PREFIXES if head.startswith(prefix)), None)
    if kind is None:
        return None
    inflated = inflate_leniently(kind, buf, LENIENT_BOUND)
    if len(inflated) >= LENIENT_BOUND:  # joblib inflates on: what lies past it is unread
        return Finding("polyglot", f"its first bytes make joblib.load read it as {kind}, and it "
                       f"inflates past {LENIENT_BOUND} bytes", 0, None, None, name or None)
    if not inflated or would_import(inflated, persistent_calls=True) is None:
        return None
    return Finding("polyglot", f"its first bytes make joblib.load read it as {kind}, and the "
                   "inflated bytes are a pickle that reaches an import", 0, None, None,
                   name or None)


def inflate_leniently(kind: str, buf: Buf, bound: int) -> bytes:
    """What a streaming decompressor yields before it stops (an error, the end or `bound`):
    a reader that unpickles as it inflates has read that much. At the end of one stream the
    next one is read on, as gzip.GzipFile and joblib's zlib, bz2 and lzma files read them."""
    d = _decompressor(kind)
    out = bytearray()
    view = memoryview(buf)
    pos, pending = 0, b""
    while len(out) < bound:
        if not pending and getattr(d, "needs_input", True):
            if pos >= len(view):
                break
            pending, pos = bytes(view[pos:pos + (1 << 16)]), pos + (1 << 16)
        try:
            out += d.decompress(pending, bound - len(out))
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError):
            break
        pending = getattr(d, "unconsumed_tail", b"")
        if d.eof:
            pending = d.unused_data + pending
            if not pending and pos >= len(view):
                break
            d = _decompressor(kind)  # the next member or stream
    return bytes(out)


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "lzma-alone":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT)
    return lzma.LZMADecompressor(memlimit=LZMA_MEMLIMIT)


__all__ = ["LENIENT_BOUND", "inflate_leniently", "joblib_reading"]
