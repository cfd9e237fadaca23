"""Compression wrappers whose raw bytes other loaders read as a pickle.

Found by the hostile review of 2026-12-07. `]` opens both an LZMA-alone stream (joblib's
`compress="lzma"`) and a pickle (EMPTY_LIST). safeload judged an exact LZMA stream only by its
inflated bytes, so a file liblzma inflates to a harmless pickle, whose raw bytes are a pickle
reaching `open(marker)`, was "clean" while pickle.load, torch.load, np.load and joblib.load ran
it; and a joblib `]\\0` file with a zero dictionary size was "skipped" though joblib inflates it.
Every wrapper's raw bytes are now read as a pickle too, and `]\\0` is always LZMA.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest
from canary_lib import Fires, Refused, text_open
from lzma_polyglot import polyglot

import safeload
from safeload.errors import UnsafeCheckpointError
from safeload.inspection import inspect_bytes

LZMA_PICKLE = ("import lzma, pickle, sys\n"
               "pickle.load(lzma.open(sys.argv[1], format=lzma.FORMAT_ALONE))")


def test_lzma_stream_that_is_also_a_pickle_is_refused(tmp_path: Path, marker: Path,
                                                      fires: Fires, refused: Refused) -> None:
    data = polyglot(text_open(marker) + b".")
    inner = lzma.decompress(data, format=lzma.FORMAT_ALONE)
    assert inner[:1] == b"B" and inner.endswith(b".")  # inflated: BINBYTES(zeros) STOP
    path = tmp_path / "weights.pkl"
    path.write_bytes(data)
    for loader in ("pickle", "joblib", "torch", "numpy"):
        assert fires(path, loader), loader
    refused(path, UnsafeCheckpointError, match=r"builtins\.open")


@pytest.mark.parametrize("dictionary", [b"\x00\x00\x00\x00", b"\x00\x00\x80\x00"],
                         ids=["zero", "joblib_default"])
def test_joblib_lzma_prefix_is_always_lzma(dictionary: bytes, tmp_path: Path, marker: Path,
                                           fires: Fires, refused: Refused) -> None:
    packed = lzma.compress(text_open(marker) + b".", format=lzma.FORMAT_ALONE)
    path = tmp_path / "model.joblib"
    path.write_bytes(packed[:1] + dictionary + packed[5:])
    assert fires(path, "joblib") and fires(path, LZMA_PICKLE)
    assert inspect_bytes(path.read_bytes(), name=path.name).format.startswith("lzma-alone")
    refused(path, UnsafeCheckpointError, match=r"builtins\.open")


def test_safetensors_that_joblib_inflates_to_a_pickle_is_refused(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # Hostile review A (2026-12-07), finding 1: a valid safetensors header that begins with
    # gzip's magic; joblib.load inflates it and runs the pickle it finds (load_file agrees
    # with safeload's old "clean" reading).
    from gzip_polyglot import safetensors_gzip_polyglot

    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_gzip_polyglot(text_open(marker) + b"."))
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match="joblib.load read it as gzip")


def test_safetensors_that_joblib_inflates_past_the_bound_is_refused(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # Hostile review D (2026-12-07): the payload past the inflation bound was never seen, and
    # a prefix that stops short of any import passed. Inflating that far is refused.
    from gzip_polyglot import safetensors_gzip_polyglot

    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors_gzip_polyglot(text_open(marker) + b".", skip=17 << 20))
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match="inflates past")


def test_lenient_inflation_reads_every_member_as_the_stream_readers_do() -> None:
    import bz2
    import gzip
    import zlib

    from safeload._internal.joblib_reading import inflate_leniently as _inflate_leniently

    for kind, pack in (("gzip", gzip.compress), ("bz2", bz2.compress), ("xz", lzma.compress),
                       ("zlib", zlib.compress)):
        data = pack(b"first ") + pack(b"second")
        assert _inflate_leniently(kind, data, 1 << 20) == b"first second", kind
        assert len(_inflate_leniently(kind, pack(bytes(1 << 22)), 1 << 20)) == 1 << 20, kind


def test_safetensors_whose_first_byte_is_zlibs_prefix_still_loads(tmp_path: Path) -> None:
    # joblib reads any file starting with `x` as zlib; a header length whose low byte is 0x78
    # is an ordinary safetensors file (zlib fails at once on the rest).
    import json as _json
    import struct as _struct

    header = _json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    header += b" " * (0x178 - len(header))
    path = tmp_path / "model.safetensors"
    path.write_bytes(_struct.pack("<Q", len(header)) + header + b"\0\0\x80?")
    assert path.read_bytes()[:1] == b"x"
    assert safeload.load(path)["w"].tolist() == [1.0]
