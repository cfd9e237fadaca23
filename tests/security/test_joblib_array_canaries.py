"""joblib arrays now load (their raw bytes read as joblib reads them): what stays refused.

joblib's NumpyUnpickler reads, after a NumpyArrayWrapper's BUILD, one padding-length byte, that
many padding bytes and the array bytes straight from the file; every other unpickler reads the
same bytes as opcodes. A payload placed where joblib skips or reads raw bytes must never make a
file "clean" that another loader runs, and a payload joblib itself would run (opcodes inside an
unfinished frame, read after joblib's raw read) must be refused too. Each payload only creates
the marker; each control shows which real loader fires it.
"""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import pytest
from canary_lib import Fires, Reduce, Refused, lit, text_open

from safeload.errors import UnsafeCheckpointError

GZIP_PICKLE = "import gzip, pickle, sys\npickle.load(gzip.open(sys.argv[1]))"
BZ2_PICKLE = "import bz2, pickle, sys\npickle.load(bz2.open(sys.argv[1]))"


def _wrapper(nbytes: int, *, align: bool = True) -> bytes:
    """NEWOBJ NumpyArrayWrapper + its BUILD, as joblib pickles it (a u1 array of nbytes)."""
    dtype = (b"cnumpy\ndtype\n" + lit(("u1", False, True)) + b"R"
             + lit((3, "|", None, None, None, -1, -1, 0)) + b"b")
    state = (b"}(" + lit("subclass") + b"cnumpy\nndarray\n" + lit("shape") + lit((nbytes,))
             + lit("order") + lit("C") + lit("dtype") + dtype + lit("allow_mmap") + lit(False)
             + (lit("numpy_array_alignment_bytes") + lit(16) if align else b"") + b"u")
    return b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + state + b"b"


def _payload_in_padding(marker: Path) -> bytes:
    # The padding-length byte is 0x94 (MEMOIZE, an opcode): joblib skips 148 bytes of
    # "padding"; pickle.load memoizes the wrapper, POPs it and runs open(marker, "w").
    hidden = b"\x940" + text_open(marker)
    assert len(hidden) <= 149, "marker path too long for the padding"
    padding = hidden[1:] + b"\xff" * (148 - len(hidden) + 1)
    return b"\x80\x02" + _wrapper(4) + b"\x94" + padding + b"\0\1\2\3" + b"."


@pytest.mark.parametrize("wrap", ["none", "gzip", "bz2"])
def test_payload_in_the_padding_joblib_skips(wrap: str, tmp_path: Path, marker: Path,
                                             fires: Fires, refused: Refused) -> None:
    blob = _payload_in_padding(marker)
    path = tmp_path / "m.joblib"
    path.write_bytes({"none": lambda b: b, "gzip": gzip.compress,
                      "bz2": bz2.compress}[wrap](blob))
    assert not fires(path, "joblib")  # joblib reads the payload as padding bytes
    assert fires(path, {"none": "pickle", "gzip": GZIP_PICKLE, "bz2": BZ2_PICKLE}[wrap])
    if wrap == "none":
        assert fires(path, "torch")
    refused(path, UnsafeCheckpointError, match=r"opcodes")


def test_payload_as_unpadded_array_bytes(tmp_path: Path, marker: Path, fires: Fires,
                                         refused: Refused) -> None:
    # joblib < 1.2 layout (no padding): the array bytes ARE the payload for pickle.load.
    hidden = b"0" + text_open(marker)
    path = tmp_path / "m.pkl"
    path.write_bytes(b"\x80\x02" + _wrapper(len(hidden), align=False) + hidden + b".")
    assert not fires(path, "joblib")
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=r"opcodes")


def test_payload_after_build_inside_an_unfinished_frame(tmp_path: Path, marker: Path,
                                                        fires: Fires, refused: Refused) -> None:
    # BUILD inside a FRAME that goes on: joblib reads its raw bytes from AFTER the frame, then
    # goes on with the frame's opcodes: POP the array and open(marker, "w"). joblib fires.
    in_frame = _wrapper(2) + b"0" + text_open(marker) + b"0"
    after = b"\x01\xff" + b"\0\0" + b"N."  # padding 1, array bytes, then the frame's end
    blob = b"\x80\x04\x95" + struct.pack("<Q", len(in_frame)) + in_frame + after
    path = tmp_path / "m.joblib"
    path.write_bytes(blob)
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match=r"FRAME")


def test_wrapper_inside_a_torch_checkpoint_stays_refused(tmp_path: Path, marker: Path,
                                                         fires: Fires, refused: Refused) -> None:
    # torch.load reads a legacy/plain pickle with pickle's unpickler, never joblib's: the
    # joblib reading is for whole joblib files only, and never inside a torch zip's data.pkl.
    from canary_lib import ZEntry, build_zip

    hidden = b"0" + text_open(marker)
    data_pkl = b"\x80\x02" + _wrapper(len(hidden), align=False) + hidden + b"."
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(build_zip([ZEntry("archive/data.pkl", data_pkl),
                                ZEntry("archive/version", b"3\n"),
                                ZEntry("archive/byteorder", b"little")]))
    assert fires(path, "torch")
    refused(path, UnsafeCheckpointError, match=r"NumpyArrayWrapper")


@pytest.mark.parametrize("compress", [0, ("bz2", 3), ("gzip", 3), ("xz", 3)])
def test_joblib_object_array_payload(compress: object, tmp_path: Path, marker: Path,
                                     fires: Fires, refused: Refused) -> None:
    # An object array: joblib pickles its elements as a nested stream and runs them.
    import joblib
    import numpy as np

    path = tmp_path / "m.joblib"
    arr = np.array([Reduce(open, str(marker), "w"), 1], dtype=object)
    joblib.dump({"w": np.arange(3.0), "o": arr}, path, compress=compress)
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError)


@pytest.mark.parametrize("compress", [("bz2", 3), ("zlib", 3), ("lzma", 3)])
def test_compressed_joblib_reduce_payload(compress: object, tmp_path: Path, marker: Path,
                                          fires: Fires, refused: Refused) -> None:
    # Compressed joblib files now load: a compressed payload is still refused.
    import joblib
    import numpy as np

    path = tmp_path / "m.joblib"
    joblib.dump({"w": np.arange(3.0), "x": Reduce(open, str(marker), "w")}, path,
                compress=compress)
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match=r"open")


def _text_wrapper(code: str, count: int, elsize: int) -> bytes:
    """A NumpyArrayWrapper of `count` elements of text dtype `code`, its dtype state claiming
    `elsize` bytes per element (numpy takes a text dtype's itemsize from the state)."""
    dtype = (b"cnumpy\ndtype\n" + lit((code, False, True)) + b"R"
             + lit((3, "|", None, None, None, elsize, 1, 0)) + b"b")
    state = (b"}(" + lit("subclass") + b"cnumpy\nndarray\n" + lit("shape") + lit((count,))
             + lit("order") + lit("C") + lit("dtype") + dtype + lit("allow_mmap") + lit(False)
             + lit("numpy_array_alignment_bytes") + lit(16) + b"u")
    return b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + state + b"b" + b"\x01\xff"


# Found by the hostile review of 2026-12-06 (F1): `numpy.dtype.__setstate__` sizes S/U/V dtypes
# by the state's elsize, not the code. joblib read elsize*count array bytes and ran what
# followed; the machine read 4*count and found only data and a BINBYTES.
@pytest.mark.parametrize("wrap", ["none", "gzip"])
def test_text_dtype_state_smaller_than_its_code_cannot_hide_opcodes(
        wrap: str, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    payload = b"0" + text_open(marker) + b"."  # joblib: after count bytes, POP, open, STOP
    count = len(payload)
    data = b"A" * count + payload
    blob = b"\x80\x02" + _text_wrapper("S4", count, 1) + data.ljust(4 * count, b"Z") + b"."
    path = tmp_path / "m.joblib"
    path.write_bytes(gzip.compress(blob) if wrap == "gzip" else blob)
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match=r"not what numpy writes for 'S4'")


def test_text_dtype_state_larger_than_its_code_cannot_hide_opcodes(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    count = 4
    payload = b"0" + text_open(marker) + b"."
    body = b"Y" * (12 * count - 5) + payload  # joblib reads 16*count bytes: up to the payload
    swallowed = b"B" + struct.pack("<I", len(body)) + body + b"0"  # the machine: one BINBYTES
    blob = b"\x80\x02" + _text_wrapper("S4", count, 16) + b"A" * (4 * count) + swallowed + b"."
    path = tmp_path / "m.joblib"
    path.write_bytes(blob)
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match=r"not what numpy writes for 'S4'")


@pytest.mark.parametrize("state", [(-1, -1, 0x54), (-1, -1, 1), (4, 4, 0)])
def test_numeric_dtype_state_must_be_what_numpy_writes(state: tuple[int, int, int],
                                                       tmp_path: Path, refused: Refused) -> None:
    # Flags 0x54 make numpy read the element as a pointer (fuzzer find, same review): the
    # machine sized the data by the code and returned other values than joblib.load.
    dtype = (b"cnumpy\ndtype\n" + lit(("f4", False, True)) + b"R"
             + lit((3, "<", None, None, None, *state)) + b"b")
    blob = (b"\x80\x02cnumpy.core.multiarray\nscalar\n(" + dtype + lit(b"\0\0\x20\x40")
            + b"tR.")
    path = tmp_path / "m.joblib"
    path.write_bytes(blob)
    refused(path, UnsafeCheckpointError, match=r"not what numpy writes for 'f4'")
