"""Every `.npy` numpy itself writes without objects loads as `np.load` returns it.

Each file is written by numpy (`np.save`, `np.savez`, `np.savez_compressed`, or
`numpy.lib.format.write_array` for an explicit 2.0/3.0 header), read with `np.load` and with
`safeload.load`, and compared field by field: dtype (byte order, field names, titles, offsets,
itemsize), shape, strides, memory order and every field's values. Dtypes torch has come back as
tensors (as for plain `.npy` before); structured, datetime64/timedelta64, text, void and long
double arrays come back as the numpy arrays np.load returns.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.lib import format as npformat

import safeload
from safeload.errors import MalformedFileError, UnsafeCheckpointError
from safeload.inspection import inspect_bytes


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "safeload-home"
    monkeypatch.setenv("SAFELOAD_HOME", str(home))
    return home


def assert_same_array(ref: np.ndarray, got: Any, where: str = "array") -> None:
    assert type(got) is np.ndarray, f"{where}: {type(got).__name__}"
    assert got.dtype == ref.dtype, where
    assert got.dtype.descr == ref.dtype.descr, where
    assert got.dtype.str == ref.dtype.str and got.dtype.itemsize == ref.dtype.itemsize, where
    assert got.dtype.names == ref.dtype.names and got.dtype.fields == ref.dtype.fields, where
    assert got.dtype.byteorder == ref.dtype.byteorder, where
    assert got.shape == ref.shape and got.strides == ref.strides, where
    assert got.flags.c_contiguous == ref.flags.c_contiguous, where
    assert got.flags.f_contiguous == ref.flags.f_contiguous, where
    assert got.flags.writeable, where
    _assert_values(ref, got, where)


def _assert_values(ref: np.ndarray, got: np.ndarray, where: str) -> None:
    if ref.dtype.names is None:
        # Bytewise, so NaT and NaN compare; padding bytes only exist inside records.
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(ref).tobytes(), where
        return
    for name in ref.dtype.names:
        _assert_values(ref[name], got[name], f"{where}[{name!r}]")


def _tensor_of(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=a.dtype.newbyteorder("="), order="C"))


def _save(path: Path, arr: np.ndarray, version: tuple[int, int] | None = None) -> None:
    with open(path, "wb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Stored array in format 3.0"
        npformat.write_array(f, arr, version=version)


def _load_both(path: Path) -> tuple[Any, Any]:
    assert inspect_bytes(path.read_bytes(), name=path.name).verdict == "clean", path
    ref = np.load(path, allow_pickle=False)
    return ref, safeload.load(path)


STRUCTURED: dict[str, np.dtype[Any]] = {
    "records": np.dtype([("id", "<i8"), ("score", "<f4"), ("flag", "?")]),
    "subarray": np.dtype([("pos", "<f8", (3,)), ("m", ">i2", (2, 2))]),
    "nested": np.dtype([("point", [("x", "<f4"), ("y", "<f4")]), ("name", "<U6"),
                        ("tag", "S3")]),
    "aligned": np.dtype([("a", "u1"), ("b", "<i4"), ("c", "u1"), ("d", "<f8")], align=True),
    "offsets": np.dtype({"names": ["a", "b"], "formats": ["<i2", "<i4"], "offsets": [0, 8],
                         "itemsize": 16}),
    "titles": np.dtype([(("Width in px", "w"), "<i4"), (("Height", "h"), "<i4")]),
    "big_endian": np.dtype([("a", ">f8"), ("b", ">i4"), ("c", ">M8[s]")]),
    "datetimes": np.dtype([("when", "<M8[us]"), ("took", "<m8[ms]")]),
    "utf8_names": np.dtype([("größe", "<f4"), ("名前", "<U3"), ("ключ", "<i2")]),
    "void": np.dtype([("raw", "V5"), ("n", "<u2")]),
}


def _filled(dtype: np.dtype[Any], shape: tuple[int, ...] = (4,)) -> np.ndarray:
    n = int(np.prod(shape))
    raw = np.arange(n * dtype.itemsize, dtype=np.uint64) * 37 % 251
    arr = raw.astype(np.uint8).view(dtype).reshape(shape)
    for name in dtype.names or ():  # valid text in text fields
        if dtype[name].kind == "U":
            arr[name] = "ab" if dtype[name].shape == () else arr[name]
    return arr.copy()


@pytest.mark.parametrize("kind", sorted(STRUCTURED))
def test_structured_npy(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.npy"
    arr = np.zeros(5, dtype=STRUCTURED[kind])
    if kind == "datetimes":
        arr["when"] = np.array(["2024-02-29T12:00:00.5", "NaT", "1970-01-01", "1900-01-01",
                                "2262-01-01"], dtype="M8[us]")
        arr["took"] = np.arange(5) * 1500
    elif kind != "utf8_names":
        arr = _filled(STRUCTURED[kind], (5,))
    np.save(path, arr)
    ref, got = _load_both(path)
    assert_same_array(ref, got)
    assert ref.dtype == arr.dtype
    if kind == "utf8_names":
        assert path.read_bytes()[6:8] == b"\x03\x00"  # np.save chose format 3.0 itself


@pytest.mark.parametrize(("kind", "version"), [
    (k, v) for k in ("nested", "utf8_names", "plain") for v in ((1, 0), (2, 0), (3, 0))
    if k != "utf8_names" or v == (3, 0)])  # numpy writes non-latin-1 names only in 3.0
def test_header_versions(kind: str, version: tuple[int, int], tmp_path: Path) -> None:
    arr = np.arange(12.0).reshape(3, 4) if kind == "plain" else np.zeros(3, STRUCTURED[kind])
    path = tmp_path / "v.npy"
    _save(path, arr, version)
    assert path.read_bytes()[6:8] == bytes(version)
    ref, got = _load_both(path)
    if kind == "plain":
        assert isinstance(got, torch.Tensor) and torch.equal(got, _tensor_of(ref))
    else:
        assert_same_array(ref, got)


@pytest.mark.parametrize("dtype", ["datetime64[ns]", "datetime64[D]", ">M8[s]", "M8[10m]",
                                   "timedelta64[us]", ">m8[h]", "<M8"])
def test_datetime_arrays(dtype: str, tmp_path: Path) -> None:
    base = np.dtype(dtype)
    if np.datetime_data(base)[0] == "generic":
        arr = np.array(["NaT", "NaT"], dtype=base)
    else:
        arr = (np.arange(6, dtype=np.int64) * 1000 - 2000).view(base.newbyteorder("=")).astype(
            base).reshape(2, 3)
        arr[0, 1] = np.array("NaT", dtype=base)
    path = tmp_path / "t.npy"
    np.save(path, arr)
    ref, got = _load_both(path)
    assert_same_array(ref, got)


@pytest.mark.parametrize("dtype", ["<U7", ">U2", "|S5", "|V4", np.longdouble, np.clongdouble])
def test_other_numpy_only_dtypes(dtype: Any, tmp_path: Path) -> None:
    arr = _filled(np.dtype(dtype), (2, 3)) if np.dtype(dtype).kind == "V" else (
        np.array([["a", "bcd", "é"], ["", "zz", "名"]], dtype=dtype)
        if np.dtype(dtype).kind == "U" else np.arange(6).astype(dtype).reshape(2, 3))
    path = tmp_path / "x.npy"
    np.save(path, arr)
    ref, got = _load_both(path)
    assert_same_array(ref, got)


@pytest.mark.parametrize("kind", ["records", "subarray", "big_endian", "datetimes"])
def test_fortran_order_records(kind: str, tmp_path: Path) -> None:
    arr = np.asfortranarray(_filled(STRUCTURED[kind], (3, 4)) if kind != "datetimes"
                            else np.zeros((3, 4), STRUCTURED[kind]))
    path = tmp_path / "f.npy"
    np.save(path, arr)
    assert b"'fortran_order': True" in path.read_bytes()[:200]
    ref, got = _load_both(path)
    assert ref.flags.f_contiguous and not ref.flags.c_contiguous
    assert_same_array(ref, got)


@pytest.mark.parametrize("dtype", [">f4", ">i8", ">c16", ">u2", "<f8"])
def test_fortran_and_big_endian_plain_arrays(dtype: str, tmp_path: Path) -> None:
    # dtypes torch has: a tensor, as for every plain .npy (native order, C-contiguous values)
    arr = np.asfortranarray(np.arange(24).astype(dtype).reshape(2, 3, 4))
    path = tmp_path / "p.npy"
    np.save(path, arr)
    ref, got = _load_both(path)
    assert isinstance(got, torch.Tensor)
    assert torch.equal(got, _tensor_of(ref)) and got.is_contiguous()


@pytest.mark.parametrize("shape", [(), (0,), (0, 3), (2, 0, 1)])
def test_structured_zero_d_and_empty(shape: tuple[int, ...], tmp_path: Path) -> None:
    arr = np.zeros(shape, dtype=STRUCTURED["nested"])
    path = tmp_path / "e.npy"
    np.save(path, arr)
    ref, got = _load_both(path)
    assert_same_array(ref, got)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_with_every_kind(compressed: bool, tmp_path: Path) -> None:
    members: dict[str, np.ndarray] = {k: _filled(dt, (3,)) for k, dt in STRUCTURED.items()
                                      if k not in ("datetimes", "utf8_names")}
    members["datetimes"] = np.zeros(3, STRUCTURED["datetimes"])
    members["utf8_names"] = np.zeros(2, STRUCTURED["utf8_names"])
    members["when"] = np.array(["2020-01-01", "NaT"], dtype="M8[D]")
    members["fortran_be"] = np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3))
    members["plain"] = np.arange(4, dtype=np.int16)
    path = tmp_path / "all.npz"
    (np.savez_compressed if compressed else np.savez)(path, **members)
    assert inspect_bytes(path.read_bytes(), name=path.name).verdict == "clean"
    got = safeload.load(path)
    with np.load(path, allow_pickle=False) as ref:
        assert list(got) == list(ref.files)
        for k in ref.files:
            if k in ("fortran_be", "plain"):
                assert torch.equal(got[k], _tensor_of(ref[k])), k
            else:
                assert_same_array(ref[k], got[k], k)


def test_file_object_and_bytesio(tmp_path: Path) -> None:
    arr = _filled(STRUCTURED["subarray"], (4,))
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_array(np.load(io.BytesIO(data)), safeload.load(io.BytesIO(data)))


def _npy(header: str, data: bytes, version: bytes = b"\x01\x00") -> bytes:
    h = header.encode("latin-1" if version != b"\x03\x00" else "utf-8")
    size = 2 if version == b"\x01\x00" else 4
    pad = 64 - (8 + size + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY" + version + len(h).to_bytes(size, "little") + h + data


@pytest.mark.parametrize("header", [
    # what numpy's literal_eval would accept but np.save never writes: refused, not guessed
    "{'shape': (2,), 'fortran_order': False, 'descr': [('a', '<i4')], }",
    "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,)}",
    "{'descr': [('a', '<i4'),], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': [('a', '<i4')], 'fortran_order': 0, 'shape': (2,), }",
    "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,), 'x': 1, }",
    "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1+1,), }",
    "{'descr': [('a', 'i4'.upper())], 'fortran_order': False, 'shape': (2,), }",
    # dtypes outside the grammar; duplicate and empty field names
    "{'descr': [('a', '<i3')], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': [('a', '<M8[fortnight]')], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': [('a', '<i4'), ('a', '<i4')], 'fortran_order': False, 'shape': (1,), }",
    "{'descr': [('', '<i4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }",
])
def test_non_canonical_headers_are_refused(header: str, tmp_path: Path) -> None:
    path = tmp_path / "h.npy"
    path.write_bytes(_npy(header, b"\0" * 8))
    assert inspect_bytes(path.read_bytes(), name="h.npy").verdict == "unsafe"
    with pytest.raises((UnsafeCheckpointError, MalformedFileError)):
        safeload.load(path)


def test_header_alignment_and_size_are_checked(tmp_path: Path) -> None:
    good = _npy("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,), }", b"\0" * 8)
    path = tmp_path / "g.npy"
    path.write_bytes(good)
    assert_same_array(np.load(path), safeload.load(path))
    for bad in (good[:-1], good + b"\0", good.replace(b" \n", b"\n ", 1)):
        path.write_bytes(bad)
        assert inspect_bytes(bad, name="b.npy").verdict == "unsafe"


@pytest.mark.parametrize("dtype", [np.dtype([]), np.dtype([("a", "<i4", (0,))]),
                                   np.dtype("V0"), np.dtype([("e", [])])],
                         ids=["no_fields", "empty_subarray", "void0", "nested_empty"])
@pytest.mark.parametrize("shape", [(3,), (2, 0), (), (4, 5)])
def test_zero_itemsize_records(dtype: np.dtype[Any], shape: tuple[int, ...],
                               tmp_path: Path) -> None:
    # np.save writes them (no data bytes at all); np.load returns an array of that shape.
    # np.load itself returns other contiguity flags for these from a path (np.fromfile) than
    # from a stream (np.ndarray): safeload matches the stream reading, as for .npz members.
    path = tmp_path / "z.npy"
    np.save(path, np.zeros(shape, dtype=dtype))
    assert inspect_bytes(path.read_bytes(), name=path.name).verdict == "clean"
    ref = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
    assert_same_array(ref, safeload.load(path))


def test_zero_itemsize_shape_beyond_numpy_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    path.write_bytes(_npy("{'descr': [], 'fortran_order': False, "
                          "'shape': (4611686018427387903, 4), }", b""))
    assert inspect_bytes(path.read_bytes(), name=path.name).verdict == "unsafe"
    with pytest.raises(MalformedFileError):
        safeload.load(path)


def test_empty_npz_loads_as_np_load_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "empty.npz"
    np.savez(path)
    assert inspect_bytes(path.read_bytes(), name=path.name).verdict == "clean"
    with np.load(path) as ref:
        assert ref.files == []
    assert safeload.load(path) == {}


def test_npz_keys_follow_the_central_directory_as_np_load(tmp_path: Path) -> None:
    # zipfile (np.load's NpzFile.files) lists members in central-directory order, which a
    # writer may order otherwise than the local headers.
    path = tmp_path / "order.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("first", "second", "third"):
            member = io.BytesIO()
            np.save(member, np.arange(3.0) + len(name))
            zf.writestr(f"{name}.npy", member.getvalue())
        zf.filelist.reverse()  # written at close: the directory lists third, second, first
    with np.load(path) as ref:
        assert ref.files == ["third", "second", "first"]
        got = safeload.load(path)
        assert list(got) == ref.files
        for k in ref.files:
            assert torch.equal(got[k], _tensor_of(ref[k]))


def _object_arrays() -> dict[str, np.ndarray]:
    pair = np.empty(2, dtype=object)
    pair[0], pair[1] = [1, 2], [3]  # elements that are lists stay lists
    shared = {"k": [1, 2]}
    return {
        "strings": np.array(["ab", "cde", "f"], dtype=object),
        "mixed": np.array(["ab", None, 1.5, {"k": [1, 2]}, (1, 2), b"raw", True], dtype=object),
        "fortran": np.asfortranarray(np.array([[1, "a", 3], [4, 5, None]], dtype=object)),
        "zero_d": np.array({"a": 1}, dtype=object),
        "empty": np.empty((0, 3), dtype=object),
        "arrays": np.array([np.arange(3), np.ones(2, dtype=np.float32)], dtype=object),
        "lists": pair,
        "shared": np.array([shared, shared], dtype=object),
    }


def _same_objects(ref: np.ndarray, got: Any, where: str) -> None:
    assert type(got) is np.ndarray and got.dtype == ref.dtype == object, where
    assert got.shape == ref.shape and got.strides == ref.strides, where
    assert got.flags.f_contiguous == ref.flags.f_contiguous, where
    assert got.flags.c_contiguous == ref.flags.c_contiguous, where
    for a, b in zip(ref.flat, got.flat, strict=True):
        assert type(a) is type(b) and repr(a) == repr(b), where


@pytest.mark.parametrize("kind", sorted(_object_arrays()))
def test_object_npy_of_plain_data_loads_as_np_load(kind: str, tmp_path: Path) -> None:
    # np.save pickles an object array whole; np.load(allow_pickle=True) unpickles it. Its
    # elements are judged by the same data rules as any pickle's values (issue 12).
    arr = _object_arrays()[kind]
    path = tmp_path / f"{kind}.npy"
    np.save(path, arr, allow_pickle=True)
    assert inspect_bytes(path.read_bytes(), name=path.name).verdict == "clean"
    ref = np.load(path, allow_pickle=True)
    _same_objects(ref, safeload.load(path), kind)
    with open(path, "rb") as f:
        _same_objects(ref, safeload.load(f), f"{kind} (file object)")
    if kind == "shared":  # one dict referenced twice stays one object, as pickle keeps it
        got = safeload.load(path)
        assert got[0] is got[1]


def test_object_array_inside_a_torch_checkpoint_loads_as_torch_load(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"w": torch.ones(2), "vocab": np.array(["a", "b", None], dtype=object)}, path)
    ref = torch.load(path, weights_only=False)
    got = safeload.load(path)
    assert torch.equal(got["w"], ref["w"])
    _same_objects(ref["vocab"], got["vocab"], "vocab")


@pytest.mark.parametrize("compressed", [False, True])
def test_object_npz_members_of_plain_data_load_as_np_load(compressed: bool,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "o.npz"
    objects = {"o": np.array(["a", None, {"k": [1.5, (2, b"x")]}], dtype=object),
               "grid": np.array([[1, "b"], [2.5, None]], dtype=object)}
    (np.savez_compressed if compressed else np.savez)(path, w=np.arange(2), **objects)
    ref = dict(np.load(path, allow_pickle=True))
    got = safeload.load(path)
    assert list(got) == list(ref)
    assert torch.equal(got["w"], torch.from_numpy(ref["w"]))
    for key in objects:
        _same_objects(ref[key], got[key], key)


def test_object_npz_member_naming_a_global_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.npz"
    np.savez(path, o=np.array([np.random.RandomState], dtype=object), w=np.arange(2))
    with pytest.raises(UnsafeCheckpointError, match="RandomState"):
        safeload.load(path)


def test_numpy_dtypes_as_values_load_as_pickle_loads_them(tmp_path: Path) -> None:
    import pickle

    value = {"o": np.dtype("O"), "t": np.dtype("M8[ns]"), "g": np.dtype(np.longdouble),
             "s": np.dtype("S3"), "a": np.array([1, "x"], dtype=object)}
    path = tmp_path / "dtypes.pkl"
    path.write_bytes(pickle.dumps(value, protocol=4))
    got = safeload.load(path)
    assert list(got) == list(value)
    for k in ("o", "t", "g", "s"):
        assert got[k] == value[k] and got[k].str == value[k].str, k
    _same_objects(value["a"], got["a"], "a")


def test_npz_keys_resolve_as_npzfile_resolves_them(tmp_path: Path) -> None:
    # Hostile review 2026-12-07: beside `w.npy.npy`, np.load's key "w.npy" reads the member
    # `w.npy` (a full member name wins over a stripped one), never the array of `w.npy.npy`.
    path = tmp_path / "suffix.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in (("w.npy", 1.0), ("w.npy.npy", 666.0)):
            member = io.BytesIO()
            np.save(member, np.array([value, value]))
            zf.writestr(name, member.getvalue())
    got = safeload.load(path)
    with np.load(path) as ref:
        assert list(got) == ref.files == ["w", "w.npy"]
        for k in ref.files:
            assert torch.equal(got[k], _tensor_of(ref[k])), k


def test_python2_long_dimensions_in_headers_load_as_np_load(tmp_path: Path) -> None:
    # The numpy of Python 2 wrote `'shape': (2L,)`; np.load drops the L for 1.0/2.0 headers.
    data = np.arange(2.0).tobytes()
    path = tmp_path / "py2.npy"
    path.write_bytes(_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }", data))
    assert torch.equal(safeload.load(path), torch.from_numpy(np.load(path)))
    path.write_bytes(_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }", data,
                          version=b"\x03\x00"))
    with pytest.raises(ValueError):  # 3.0 headers are read as they are
        np.load(path)
    with pytest.raises((UnsafeCheckpointError, MalformedFileError)):
        safeload.load(path)


def test_python2_object_descr_spelling_loads(tmp_path: Path) -> None:
    import pickle

    value = np.array(["a", None, 3], dtype=object)
    path = tmp_path / "o8.npy"
    path.write_bytes(_npy("{'descr': '|O8', 'fortran_order': False, 'shape': (3,), }",
                          pickle.dumps(value, protocol=2)))
    _same_objects(np.load(path, allow_pickle=True), safeload.load(path), "o8")


@pytest.mark.parametrize("name,encoding", [("py3-objarr.npy", None), ("py2-objarr.npy", "latin1")])
def test_numpys_own_object_array_files_load_as_np_load(name: str, encoding: str | None) -> None:
    # Fidelity run G: numpy's test data holds the `range` type (Python 2: `xrange`) as a value
    import numpy as np

    path = Path(np.__file__).parent / "lib" / "tests" / "data" / name
    if not path.exists():
        pytest.skip(f"{path} is not shipped with this numpy")
    ref = np.load(path, allow_pickle=True, encoding=encoding or "ASCII")
    got = safeload.load(path, **({"encoding": encoding} if encoding else {}))
    assert got.dtype == ref.dtype and got.tolist() == ref.tolist()
