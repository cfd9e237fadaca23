"""joblib files load as `joblib.load` returns them: every compressor, and NumpyArrayWrapper
arrays (their bytes follow the pickle inside the stream, after joblib's alignment padding).

Each file is written by `joblib.dump`, read with `joblib.load` (in-process: we wrote it) and
with `safeload.load`, and compared field by field: container types and keys in order, array
dtype (joblib.load returns native byte order), shape, strides, memory order, bytes, and every
non-array value. The hostile variants (a payload in the region joblib reads as raw bytes) are
in tests/security/test_joblib_array_canaries.py.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

import safeload
from safeload.errors import UnsafeCheckpointError
from safeload.inspection import inspect_bytes


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "safeload-home"
    monkeypatch.setenv("SAFELOAD_HOME", str(home))
    return home


def assert_same(ref: Any, got: Any, where: str = "root") -> None:
    assert type(got) is type(ref), f"{where}: {type(got).__name__} for {type(ref).__name__}"
    if isinstance(ref, np.ndarray):
        assert got.dtype == ref.dtype and got.dtype.str == ref.dtype.str, where
        assert got.shape == ref.shape and got.strides == ref.strides, where
        assert got.flags.c_contiguous == ref.flags.c_contiguous, where
        assert got.flags.f_contiguous == ref.flags.f_contiguous, where
        assert got.flags.writeable == ref.flags.writeable, where
        if ref.dtype.hasobject:  # elements, not the pointers tobytes() would compare
            assert got.tolist() == ref.tolist(), where
        else:
            assert got.tobytes("A") == ref.tobytes("A"), where
    elif isinstance(ref, dict):
        assert list(got) == list(ref), where
        for k in ref:
            assert_same(ref[k], got[k], f"{where}[{k!r}]")
    elif isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), where
        for i, (a, b) in enumerate(zip(ref, got, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert got == ref, where


ARRAYS: dict[str, np.ndarray] = {
    "f8": np.arange(12.0).reshape(3, 4), "f4": np.linspace(0, 1, 7, dtype=np.float32),
    "f2": np.ones(5, dtype=np.float16), "i8": np.arange(-5, 5), "i1": np.arange(-3, 3, dtype="i1"),
    "u2": np.arange(9, dtype=np.uint16).reshape(3, 3), "u8": np.arange(4, dtype=np.uint64),
    "bool": np.array([True, False, True]), "c16": np.array([1 + 2j, -3j]),
    "c8": np.array([1 - 1j], dtype=np.complex64),
    "fortran": np.asfortranarray(np.arange(24, dtype=np.int32).reshape(2, 3, 4)),
    "big_endian": np.arange(6, dtype=">f8").reshape(2, 3),
    "big_endian_fortran": np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
    "zero_d": np.array(2.5), "empty": np.zeros((0, 3)), "text": np.array(["ab", "cde"]),
    "bytes": np.array([b"x", b"yz"]), "noncontig": np.arange(20.0).reshape(4, 5)[:, ::2],
}


def _obj() -> dict[str, Any]:
    return {"arrays": dict(ARRAYS), "meta": {"name": "model", "n": 3, "lr": 1e-3,
                                             "tags": ["a", "b"], "shape": (3, 4)},
            "list": [np.arange(3), "between", np.ones((2, 2))], "last": np.arange(5.0)}


COMPRESSORS = [None, "zlib", "gzip", "bz2", "lzma", "xz"]


@pytest.mark.parametrize("compress", COMPRESSORS)
def test_joblib_arrays_every_compressor(compress: str | None, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(_obj(), path, compress=(compress, 3) if compress else 0)
    ins = inspect_bytes(path.read_bytes(), name=path.name)
    assert ins.verdict == "clean", ins.findings
    assert_same(joblib.load(path), safeload.load(path))


@pytest.mark.parametrize("compress", COMPRESSORS)
@pytest.mark.parametrize("value", ["plain", "arrays_only"])
def test_joblib_plain_data_every_compressor(compress: str | None, value: str,
                                            tmp_path: Path) -> None:
    obj: Any = {"a": 1, "b": [1.5, "x", None, True], "c": {"d": (1, 2)}, "e": b"raw"}
    if value == "arrays_only":
        obj = [np.arange(1000.0), np.zeros((50, 20), dtype=np.float32)]
    path = tmp_path / "data.pkl"
    joblib.dump(obj, path, compress=(compress, 9) if compress else 0)
    assert_same(joblib.load(path), safeload.load(path))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_joblib_pickle_protocols(protocol: int, tmp_path: Path) -> None:
    path = tmp_path / "p.joblib"
    joblib.dump(_obj(), path, protocol=protocol)
    assert_same(joblib.load(path), safeload.load(path))


def test_joblib_large_array_spanning_frames(tmp_path: Path) -> None:
    obj = {"w": np.random.default_rng(0).standard_normal((512, 600)),
           "b": np.arange(600, dtype=np.float32), "name": "x" * 70000}
    path = tmp_path / "big.joblib"
    joblib.dump(obj, path)
    assert_same(joblib.load(path), safeload.load(path))


def test_joblib_file_objects(tmp_path: Path) -> None:
    buf = io.BytesIO()
    joblib.dump(_obj(), buf)
    data = buf.getvalue()
    assert_same(joblib.load(io.BytesIO(data)), safeload.load(io.BytesIO(data)))
    with open(tmp_path / "x.joblib", "wb") as f:
        f.write(data)
    with open(tmp_path / "x.joblib", "rb") as f:
        assert_same(joblib.load(tmp_path / "x.joblib"), safeload.load(f))


def test_joblib_without_alignment_padding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    # joblib < 1.2 wrote no padding (`numpy_array_alignment_bytes` None): the array bytes
    # follow BUILD directly. Loaded when their first byte is no pickle opcode (0.0 is b"\0").
    from joblib import numpy_pickle

    init = numpy_pickle.NumpyArrayWrapper.__init__
    monkeypatch.setattr(init, "__defaults__", (False, None))
    path = tmp_path / "old.joblib"
    joblib.dump({"w": np.arange(4.0), "z": np.zeros((0,))}, path)
    assert b"numpy_array_alignment_bytes\x94N" in path.read_bytes()  # None: no padding
    assert_same(joblib.load(path), safeload.load(path))
    # ... and refused when that first byte reads as an opcode ('(' is MARK) for pickle.load.
    joblib.dump({"w": np.array([40, 41], dtype=np.uint8)}, path)
    with pytest.raises(UnsafeCheckpointError, match="opcodes"):
        safeload.load(path)


def test_joblib_estimator_like_objects_stay_refused(tmp_path: Path) -> None:
    # A class instance (a scikit-learn estimator is one) carries code: refused as before.
    path = tmp_path / "est.joblib"
    joblib.dump({"w": np.arange(3.0), "obj": io.BytesIO(b"")}, path)
    with pytest.raises(UnsafeCheckpointError):
        safeload.load(path)


NUMPY_ONLY: dict[str, Any] = {
    "datetime_ns": np.array(["2020-01-01T00:00:00.123456789", "NaT"], dtype="M8[ns]"),
    "datetime_10ms": np.arange(4).astype("M8[10ms]"),
    "datetime_generic": np.array(["NaT"], dtype="M8"),
    "datetime_big_endian": np.arange(3).astype(">M8[D]"),
    "timedelta_s": np.arange(3).astype("m8[s]").reshape(3, 1),
    "longdouble": np.arange(5, dtype=np.longdouble) / 3,
    "datetime_scalar": np.datetime64("2021-05-05", "D"),
    "timedelta_scalar": np.timedelta64(7, "h"),
    "longdouble_scalar": np.longdouble(1) / 3,
}


@pytest.mark.parametrize("compress", [None, "zlib"])
def test_joblib_numpy_only_dtypes(compress: str | None, tmp_path: Path) -> None:
    # datetime64/timedelta64 (the unit travels in the dtype's pickled state) and long double:
    # numpy arrays and scalars as joblib.load returns them, though torch has no such dtype.
    path = tmp_path / "dates.joblib"
    joblib.dump(NUMPY_ONLY, path, compress=(compress, 3) if compress else 0)
    assert inspect_bytes(path.read_bytes(), name=path.name).verdict == "clean"
    ref, got = joblib.load(path), safeload.load(path)
    for k, v in ref.items():
        if isinstance(v, np.ndarray):
            assert_same(v, got[k], k)
        else:
            assert type(got[k]) is type(v) and got[k].dtype == v.dtype, k
            assert got[k].tobytes() == v.tobytes(), k


@pytest.mark.parametrize("state", [b"C\x02xs\x94K\x01", b"C\x07generiC\x94K\x01",
                                   b"C\x00\x94K\x01", b"C\x02ns\x94K\x00",
                                   b"X\x02\x00\x00\x00ns\x94K\x01"],
                         ids=["unknown_unit", "case", "empty_unit", "zero_count", "str_unit"])
def test_joblib_datetime_states_numpy_never_writes_are_refused(state: bytes,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "bad.joblib"
    joblib.dump({"t": np.arange(2).astype("M8[ns]")}, path)
    data = path.read_bytes()
    assert data.count(b"C\x02ns\x94K\x01") == 1  # the unit in the dtype state: (b'ns', 1, 1, 1)
    path.write_bytes(data.replace(b"C\x02ns\x94K\x01", state))
    with pytest.raises(UnsafeCheckpointError, match="datetime64"):
        safeload.load(path)


def _late_scalar(code: bytes, state: bytes, data: bytes) -> bytes:
    # scalar(dtype, data) with the dtype BUILT only afterwards (through the memo)
    return (b"cnumpy._core.multiarray\nscalar\ncnumpy\ndtype\nX" + len(code).to_bytes(4, "little")
            + code + b"\x89\x88\x87Rq\x00C" + bytes([len(data)]) + data + b"\x86Rh\x00" + state
            + b"b0")


def test_numpy_scalar_needs_its_dtype_built_first(tmp_path: Path) -> None:
    # Hostile review 2026-12-07: numpy copies a dtype into the scalar when the scalar is made,
    # so a BUILD afterwards changes nothing in numpy; safeload would have read the scalar's
    # bytes with the later byte order or datetime unit. numpy never writes this: refused.
    import pickle
    import struct

    big = b"(K\x03X\x01\x00\x00\x00>NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    data = b"\x80\x02" + _late_scalar(b"f8", big, struct.pack("<d", 1.5)) + b"."
    path = tmp_path / "late.pkl"
    path.write_bytes(data)
    assert pickle.loads(data) == 1.5
    assert inspect_bytes(data, name=path.name).verdict == "unsafe"
    with pytest.raises(UnsafeCheckpointError, match="built numpy dtype"):
        safeload.load(path)


def test_datetime_state_counts_must_be_ints(tmp_path: Path) -> None:
    # Hostile review 2026-12-07: (b'ns', 1, 1.0, 1) makes joblib.load fail; safeload too.
    path = tmp_path / "den.joblib"
    joblib.dump({"t": np.arange(2).astype("M8[ns]")}, path)
    data = path.read_bytes()
    old = b"C\x02ns\x94K\x01K\x01K\x01"
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, b"C\x02ns\x94K\x01G?\xf0\x00\x00\x00\x00\x00\x00K\x01"))
    with pytest.raises(TypeError):
        joblib.load(path)
    with pytest.raises(UnsafeCheckpointError, match="datetime64"):
        safeload.load(path)


@pytest.mark.parametrize("compress", [None, "zlib", "bz2"])
def test_joblib_matrix_arrays_load_as_joblib_loads_them(compress: str | None,
                                                        tmp_path: Path) -> None:
    # Fidelity run G: joblib's own test data (every Python 3 joblib_0.10/0.11 file) holds a
    # numpy.matrix; joblib.load returns its plain ndarray (numpy 2), and safeload refused it.
    path = tmp_path / "m.joblib"
    joblib.dump({"m": np.asmatrix(np.arange(6.0).reshape(2, 3)), "a": np.arange(3)}, path,
                compress=(compress, 3) if compress else 0)
    ref = joblib.load(path)
    assert type(ref["m"]) is np.ndarray  # the premise: joblib drops the subclass here
    assert_same(ref, safeload.load(path))


def _joblib_test_data() -> list[Path]:
    """joblib's own compatibility files from joblib >= 0.10 written by Python 3 (shipped in its
    wheel): real files of old joblib and numpy versions, all compressors."""
    folder = Path(joblib.__file__).parent / "test" / "data"
    return sorted(p for p in folder.glob("joblib_0.1[01].*") if "_py2" not in p.name)


@pytest.mark.parametrize("path", _joblib_test_data(), ids=lambda p: p.name)
def test_joblibs_own_compatibility_files_load_as_joblib_loads_them(path: Path) -> None:
    # Fidelity run G: each holds a numpy.matrix beside plain arrays; all were refused.
    assert_same(joblib.load(path), safeload.load(path))


def test_joblibs_compatibility_files_are_found() -> None:
    assert len(_joblib_test_data()) >= 20  # the test above is not vacuous
