"""One compression layer undone in memory, bounded: gzip, zlib, bz2, xz, LZMA-alone and joblib's
legacy `ZF` (the wrappers `inspection` reads through)."""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any

from safeload_conversion.budget import Budget, current

# liblzma allocates the dictionary the header asks for: 13 bytes of LZMA-alone header asked for
# 640 MiB, and up to 4 GiB. xz -9 (and joblib's highest level) needs 64 MiB for it.
LZMA_MEMLIMIT = 160 << 20


class Bomb(Exception):
    """The output bound was reached (a decompression bomb, or the file's byte budget)."""


class Cut(ValueError):
    """A compressed stream that ends early; `partial` is what it inflated to."""

    def __init__(self, partial: bytes) -> None:
        super().__init__("truncated stream")
        self.partial = partial


def _bomb(budget: Budget | None, limit: int, bound: int) -> None:
    if budget is not None and limit < bound:
        budget.charge_bytes(limit + 1)  # the file's budget ran out first: say which bound
    raise Bomb(f"decompresses past the {limit}-byte bound")


def decompress(kind: str, buf: Any, bound: int) -> bytes:
    """Undo one compression layer with a hard output bound (decompression bombs): `bound`,
    or what is left of the file's byte budget.

    Raises:
        Bomb: past the bound. Cut: the stream ends early. ValueError, zlib.error, ...: corrupt.
    """
    budget = current()
    limit = bound if budget is None else min(bound, budget.bytes_left())
    data = bytes(buf)
    if kind == "gzip":
        d: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif kind == "zlib":
        d = zlib.decompressobj()
    elif kind == "joblib-zfile":
        d, data, kind = zlib.decompressobj(15), _zfile_stream(data), "zlib"
    elif kind == "bz2":
        d = bz2.BZ2Decompressor()
    elif kind == "lzma-alone":
        d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT)
    else:
        d = lzma.LZMADecompressor(memlimit=LZMA_MEMLIMIT)
    zlib_like = kind in ("gzip", "zlib")
    out = d.decompress(data, limit + 1) if zlib_like else d.decompress(data, max_length=limit + 1)
    # more output was waiting: zlib keeps the unread input, bz2/lzma say they need none
    more = bool(d.unconsumed_tail) if zlib_like else not d.needs_input and not d.eof
    if len(out) > limit or more:
        _bomb(budget, limit, bound)
    if not d.eof:
        raise Cut(bytes(out))
    if d.unused_data:
        raise ValueError("data after the compressed stream")
    _charge(budget, len(out))
    return bytes(out)


def _charge(budget: Budget | None, n: int) -> None:
    if budget is not None:
        budget.charge_bytes(n)


def _zfile_stream(data: bytes) -> bytes:
    """The zlib stream of a legacy joblib `ZF` file, found as joblib's read_zfile finds it:
    `int(bytes[2:21], 16)` is the length (ValueError: joblib fails too), then one optional
    space, then a zlib stream read with wbits=15 (any window up to 32 KiB)."""
    int(data[2:21], 16)
    return data[22:] if data[21:22] == b" " else data[21:]


__all__ = ["Bomb", "Cut", "decompress"]
