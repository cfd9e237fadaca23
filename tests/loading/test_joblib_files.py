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
