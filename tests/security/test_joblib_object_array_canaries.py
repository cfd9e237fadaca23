"""joblib object arrays now load (issue 12): what stays refused.

joblib writes an object array as a second, complete pickle right after the NumpyArrayWrapper's
BUILD, and its read_array runs `pickle.load(file_handle)` there: a fresh unpickler, with its own
memo and stack. pickle.load (and torch.load) reading the same file take those bytes as more
opcodes of the outer stream, in the outer memo and stack. Both readings are checked: a payload
in the nested pickle (joblib fires it), and a nested pickle that is clean on its own but, read
in the outer memo, calls something else (pickle.load fires it). Each payload only creates the
marker; each control shows which real loader fires it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from canary_lib import Fires, Op, Refused, call, g, lit, opener

import safeload
from safeload.errors import SafeloadError, UnsafeCheckpointError

_OBJECT_DTYPE = (b"cnumpy\ndtype\n" + lit(("O8", False, True)) + b"R"
                 + lit((3, "|", None, None, None, -1, -1, 63)) + b"b")


def _wrapper(n: int) -> bytes:
    """NEWOBJ NumpyArrayWrapper + BUILD, as joblib pickles an object array of n elements."""
    state = (b"}(" + lit("subclass") + b"cnumpy\nndarray\n" + lit("shape") + lit((n,))
             + lit("order") + lit("C") + lit("dtype") + _OBJECT_DTYPE + lit("allow_mmap")
             + lit(False) + b"u")
    return b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + state + b"b"


def _array_state(elements: list[object]) -> bytes:
    return lit((1, (len(elements),), Op(_OBJECT_DTYPE), False, elements)) + b"b"


def _nested_payload(marker: Path) -> bytes:
    """joblib reads a nested pickle whose element is the payload."""
    nested = (b"\x80\x04" + call(g("numpy._core.multiarray", "_reconstruct"),
                                 g("numpy", "ndarray"), (0,), b"b").b
              + _array_state(["a", opener(marker)]) + b".")
    return b"\x80\x02" + _wrapper(2) + nested + b"."


def _outer_memo_payload(marker: Path, module: str = "builtins", name: str = "open",
                        proto: int = 4) -> bytes:
    """Clean for joblib; pickle.load's reading calls builtins.open through the outer memo.

    The outer stream memoizes "builtins", "open" and (marker, "w") at 0, 1, 2. The nested
    pickle memoizes its own _reconstruct names and arguments at 0, 1, 2 (fresh memo), then
    calls BINGET 0 . BINGET 1 with BINGET 2: _reconstruct(...) for joblib, open(marker) for
    pickle.load, where the nested MEMOIZEs land after the outer entries."""
    outer = (b"\x80\x02" + lit(module) + b"\x94" + lit(name) + b"\x94"
             + lit((str(marker), "w")) + b"\x94" + b"000")
    nested = (bytes([0x80, proto]) + lit("numpy._core.multiarray") + b"\x94" + lit("_reconstruct")
              + b"\x94" + lit((Op(g("numpy", "ndarray").b), (0,), b"b")) + b"\x94" + b"000"
              + b"h\x00h\x01\x93h\x02R" + _array_state(["a"]) + b".")
    return outer + _wrapper(1) + nested + b"."


def test_a_payload_in_joblibs_nested_pickle_is_refused(tmp_path: Path, marker: Path,
                                                       fires: Fires, refused: Refused) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(_nested_payload(marker))
    assert fires(path, "joblib")
    refused(path, UnsafeCheckpointError, match=r"builtins\.open")


# Hostile review C (2026-12-07): the plain reading stopped at an import this machine could
# not resolve, but CPython maps protocol-2 names (`StringIO` -> `io`) and multiprocessing
# aliases `__mp_main__` once joblib is imported: no import is ever a stop.
@pytest.mark.parametrize(("module", "name", "proto"), [
    ("builtins", "open", 4), ("StringIO", "open", 2), ("__mp_main__", "__builtins__.open", 4)],
    ids=["builtins", "py2-compat-name", "mp-main-alias"])
def test_a_nested_pickle_clean_alone_but_not_in_the_outer_memo_is_refused(
        module: str, name: str, proto: int, tmp_path: Path, marker: Path, fires: Fires,
        refused: Refused) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(_outer_memo_payload(marker, module, name, proto))
    assert joblib.load(path).tolist() == ["a"]  # joblib's reading: a plain object array
    assert not marker.exists()
    assert fires(path, "pickle")  # pickle.load's reading of the same bytes
    refused(path, UnsafeCheckpointError, match=r"open is not allowlisted")


def test_a_nested_pickle_that_is_no_array_is_refused(tmp_path: Path) -> None:
    # joblib asks what it unpickled for its dtype: a dict there is no array joblib returns.
    path = tmp_path / "model.joblib"
    path.write_bytes(b"\x80\x02" + _wrapper(1) + b"\x80\x04" + lit({"a": 1}) + b"." + b".")
    with pytest.raises(UnsafeCheckpointError, match="no object array"):
        safeload.load(path)


@pytest.mark.parametrize("compress", [0, 3, ("lzma", 3)], ids=["raw", "zlib", "lzma"])
def test_joblib_object_arrays_of_plain_data_load_as_joblib_loads_them(
        compress: object, tmp_path: Path) -> None:
    # Layouts whose pickle.load reading stops for certain (there: STACK_GLOBAL of non-strings)
    value = [np.array(["the", "a", None], dtype=object), np.arange(3),
             {"x": np.arange(2), "rows": np.array([{"k": 1}, (2, b"x")], dtype=object)}]
    path = tmp_path / "vocab.joblib"
    joblib.dump(value, path, compress=compress)
    got, ref = safeload.load(path), joblib.load(path)
    assert [a.tolist() for a in got[:2]] == [a.tolist() for a in ref[:2]]
    assert got[0].dtype == ref[0].dtype == object
    assert got[2]["rows"].tolist() == ref[2]["rows"].tolist()


def test_an_object_array_whose_plain_reading_imports_is_refused_with_the_reason(
        tmp_path: Path) -> None:
    # pickle.load reads this layout's nested pickle in the outer memo and imports
    # `NumpyArrayWrapper.dtype`: a module no machine should have, but whether one does is the
    # loading machine's business (multiprocessing aliases `__mp_main__`, say), never a stop.
    path = tmp_path / "vocab.joblib"
    joblib.dump({"vocab": np.array(["the", "a"], dtype=object)}, path)
    with pytest.raises(Exception):  # noqa: B017  (pickle.load's reading fails on this machine)
        pickle.loads(path.read_bytes())
    with pytest.raises(UnsafeCheckpointError, match="pickle.load and torch.load run joblib"):
        safeload.load(path)


def test_python2_strings_in_a_joblib_file_decode_as_joblib_decodes_them(tmp_path: Path) -> None:
    # Review C (2026-12-07): joblib.load has no `encoding` and decodes as ASCII; safeload
    # used torch's UTF-8 default and returned 'é' where joblib fails.
    def nested(raw: bytes) -> bytes:
        return (b"\x80\x04" + call(g("numpy._core.multiarray", "_reconstruct"),
                                   g("numpy", "ndarray"), (0,), b"b").b
                + _array_state([Op(b"U" + bytes([len(raw)]) + raw)]) + b".")

    ascii_path, utf8_path = tmp_path / "a.joblib", tmp_path / "u.joblib"
    ascii_path.write_bytes(b"\x80\x02" + _wrapper(1) + nested(b"ab") + b".")
    utf8_path.write_bytes(b"\x80\x02" + _wrapper(1) + nested("é".encode()) + b".")
    assert safeload.load(ascii_path).tolist() == joblib.load(ascii_path).tolist() == ["ab"]
    with pytest.raises(ValueError):
        joblib.load(utf8_path)
    with pytest.raises(SafeloadError, match="ascii"):
        safeload.load(utf8_path)


def test_bytes_after_the_nested_stop_are_read_as_a_stream_reader_reads_them(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # pickle.load returns at the nested pickle's STOP; `while True: pickle.load(f)` starts a
    # fresh unpickler after it. The outer stream's continuation calls BINGET 0 . BINGET 1 with
    # BINGET 2: OrderedDict() for joblib (the outer memo), open(marker) for that fresh reader.
    outer = (b"\x80\x02" + lit("collections") + b"\x94" + lit("OrderedDict") + b"\x94"
             + lit(()) + b"\x94" + b"000")
    nested = (b"\x80\x04" + call(g("numpy._core.multiarray", "_reconstruct"),
                                 g("numpy", "ndarray"), (0,), b"b").b
              + _array_state(["a"]) + b".")
    tail = (lit("builtins") + b"\x94" + lit("open") + b"\x94" + lit((str(marker), "w"))
            + b"\x94" + b"000" + b"h\x00h\x01\x93h\x02R" + b"\x86.")
    path = tmp_path / "model.joblib"
    path.write_bytes(outer + _wrapper(1) + nested + tail)
    array, ordered = joblib.load(path)
    assert array.tolist() == ["a"] and ordered == {} and not marker.exists()
    assert fires(path, "pickle_stream")
    refused(path, UnsafeCheckpointError, match=r"open is not allowlisted")
