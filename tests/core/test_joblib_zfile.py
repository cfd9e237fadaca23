"""Legacy joblib `ZF` files are read as joblib's read_zfile reads them."""

from __future__ import annotations

import pickle
import zlib

import pytest

from safeload.inspection import inspect_bytes

_EVIL = b"\x80\x02cbuiltins\nopen\nq\x00X\x01\x00\x00\x00xq\x01\x85q\x02Rq\x03."


def _zf(payload: bytes, *, space: bool, wbits: int) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    head = b"ZF" + b"0x%x" % len(payload)
    return head.ljust(21) + (b" " if space else b"") + c.compress(payload) + c.flush()


@pytest.mark.parametrize("space", [False, True])
@pytest.mark.parametrize("wbits", [9, 12, 15])
def test_zfile_with_optional_space_or_small_window_is_inspected(space: bool, wbits: int) -> None:
    evil = inspect_bytes(_zf(_EVIL, space=space, wbits=wbits))
    assert evil.verdict == "unsafe" and evil.format == "joblib-zfile+pickle", evil
    clean = inspect_bytes(_zf(pickle.dumps({"a": 1}, protocol=2), space=space, wbits=wbits))
    assert clean.verdict == "clean", clean


def test_zfile_with_unparsable_length_is_refused_not_skipped() -> None:
    assert inspect_bytes(b"ZFnot-a-length-at-all" + zlib.compress(_EVIL)).verdict == "unsafe"
