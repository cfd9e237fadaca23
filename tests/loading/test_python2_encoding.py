"""Python 2 checkpoints: `safeload.load(f, encoding="latin1")` behaves as torch.load does.

Python 2 pickled `str` as 8-bit strings (SHORT_BINSTRING/BINSTRING), NumPy array data included.
torch.load hands `encoding` to the unpickler (default "utf-8"): "latin1" decodes every byte, and
numpy's setstate encodes the str back as latin-1, so the array bytes round-trip. The files are
written here with torch.save and a pickler that writes `bytes` as Python 2 wrote `str`, then
loaded with torch.load (in-process: we wrote them) and with safeload, and compared.
"""

from __future__ import annotations

import io
import pickle
import struct
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import safeload
from safeload.errors import MalformedFileError


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "safeload-home"
    monkeypatch.setenv("SAFELOAD_HOME", str(home))
    return home


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """pickle.py's pickler, writing `bytes` as Python 2's cPickle wrote `str`."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_str8(self, obj: bytes) -> None:
        n = len(obj)
        self.write(b"U" + bytes([n]) + obj if n < 256 else b"T" + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str8


def _py2_module() -> Any:
    def dump(obj: Any, f: Any, protocol: int = 2) -> None:
        Py2Pickler(f, protocol=protocol).dump(obj)

    return types.SimpleNamespace(Pickler=Py2Pickler, dump=dump, __name__="py2pickle")


def _checkpoint() -> dict[str, Any]:
    return {
        "weight": torch.arange(6.0).reshape(2, 3),
        "mean": np.array([0.485, 0.456, 0.406], dtype=np.float32),  # data bytes > 0x7f
        "table": np.arange(300, dtype=np.int64).reshape(30, 10),
        "scalar": np.float64(3.75),
        "name": b"caf\xe9 na\xefve",  # a Python 2 str (latin-1 text)
        b"r\xe9sum\xe9": 1,  # as a key
        "ascii": b"plain",
    }


def _save(path: Path, legacy: bool) -> None:
    torch.save(_checkpoint(), path, pickle_module=_py2_module(), pickle_protocol=2,
               _use_new_zipfile_serialization=not legacy)


def _same(ref: Any, got: Any, where: str = "root") -> None:
    assert type(got) is type(ref), f"{where}: {type(got).__name__} for {type(ref).__name__}"
    if isinstance(ref, dict):
        assert list(got) == list(ref), where
        for k in ref:
            _same(ref[k], got[k], f"{where}[{k!r}]")
    elif isinstance(ref, torch.Tensor):
        assert got.dtype == ref.dtype and got.shape == ref.shape and torch.equal(got, ref), where
    elif isinstance(ref, np.ndarray):
        assert got.dtype == ref.dtype and got.shape == ref.shape, where
        assert got.tobytes() == ref.tobytes(), where
    elif isinstance(ref, np.generic):
        assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes(), where
    else:
        assert got == ref, where


@pytest.mark.parametrize("legacy", [False, True])
def test_latin1_checkpoint_loads_as_torch_load(legacy: bool, tmp_path: Path) -> None:
    path = tmp_path / "py2.pt"
    _save(path, legacy)
    assert b"U\ncaf\xe9" in path.read_bytes() or not legacy  # SHORT_BINSTRING
    ref = torch.load(path, weights_only=False, encoding="latin1")
    assert ref["name"] == "café naïve" and "résumé" in ref
    got = safeload.load(path, encoding="latin1")
    _same(ref, got)
    with open(path, "rb") as f:
        _same(ref, safeload.load(f, encoding="latin1"))


def test_python2_numpy_dtype_int_arguments_load_as_torch_load(tmp_path: Path) -> None:
    # numpy of the Python 2 era pickled dtype('f4', 0, 1) (descriptor.c: "(Nii)"), not the
    # (False, True) of today's numpy (hostile review of 2026-12-06, F4). A legacy file: its
    # pickles are not inside zip members whose CRC the rewrite would break.
    path = tmp_path / "py2.pt"
    _save(path, legacy=True)
    blob = path.read_bytes()
    assert blob.count(b"\x89\x88\x87") >= 3  # NEWFALSE NEWTRUE TUPLE3, one per dtype
    path.write_bytes(blob.replace(b"\x89\x88\x87", b"K\x00K\x01\x87"))
    ref = torch.load(path, weights_only=False, encoding="latin1")
    _same(ref, safeload.load(path, encoding="latin1"))


@pytest.mark.parametrize("legacy", [False, True])
def test_default_utf8_fails_as_torch_load_fails(legacy: bool, tmp_path: Path) -> None:
    path = tmp_path / "py2.pt"
    _save(path, legacy)
    with pytest.raises(UnicodeDecodeError):
        torch.load(path, weights_only=False)
    with pytest.raises(MalformedFileError, match="latin1") as info:
        safeload.load(path)
    assert "encoding='latin1'" in (info.value.hint or "")
    # Fidelity run G: the message named safeload's converted-store entry, not the user's file
    assert str(path) in str(info.value) and "converted" not in str(info.value)


def test_a_plain_python2_pickle_error_names_the_users_file(tmp_path: Path) -> None:
    path = tmp_path / "py2.pkl"  # {'k': '\xe9'} as Python 2 wrote it (SHORT_BINSTRING)
    path.write_bytes(b"\x80\x02}q\x00U\x01kq\x01U\x01\xe9q\x02s.")
    with pytest.raises(MalformedFileError, match="latin1") as info:
        safeload.load(path)
    assert str(info.value).startswith(str(path)), str(info.value)
    assert safeload.load(path, encoding="latin1") == {"k": "\xe9"}


def test_utf8_text_under_the_default_encoding(tmp_path: Path) -> None:
    # A Python 2 str holding UTF-8 text decodes under torch.load's default "utf-8".
    path = tmp_path / "b.pt"
    obj = {"w": torch.ones(2), "t": "é".encode(), "k": b"x"}
    torch.save(obj, path, pickle_module=_py2_module(), pickle_protocol=2)
    _same(torch.load(path, weights_only=False), safeload.load(path))
    assert safeload.load(path)["t"] == "é"
    _same(torch.load(path, weights_only=False, encoding="latin1"),
          safeload.load(path, encoding="latin1"))


def test_the_same_file_loads_under_each_encoding_from_the_converted_store(
        tmp_path: Path) -> None:
    # The converted store keeps the raw bytes: a second load with another encoding decodes
    # them afresh, as torch.load would, never the first load's strings.
    path = tmp_path / "py2.pt"
    _save(path, legacy=False)
    assert safeload.load(path, encoding="latin1")["name"] == "café naïve"
    with pytest.raises(MalformedFileError):
        safeload.load(path)
    assert safeload.load(path, encoding="latin-1")["name"] == "café naïve"


def test_unknown_encoding_is_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"a": torch.ones(1)}, path)
    with pytest.raises(ValueError, match="encoding"):
        safeload.load(path, encoding="koi8-r")
    with pytest.raises(ValueError, match="encoding"):
        safeload.load(path, encoding="bytes")  # ASCII strings are decoded before the loader
    buf = io.BytesIO(path.read_bytes())
    assert torch.equal(safeload.load(buf, encoding="ASCII")["a"], torch.ones(1))


def test_protocol0_strings_longer_than_64k_load_as_pickle_loads_them(tmp_path: Path) -> None:
    # A real gensim file (varembed_vectors.pkl): protocol-0 STRING lines of array bytes over
    # 64 KiB. CPython reads text lines of any length; safeload refused them as malformed.
    obj = {"w": np.arange(10000.0), "s": "x" * 100_000, "b": b"y" * 80_000}
    path = tmp_path / "p0.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=0))
    ref = pickle.loads(path.read_bytes(), encoding="latin1")
    got = safeload.load(path, encoding="latin1")
    assert list(got) == list(ref) and got["s"] == ref["s"] and got["b"] == ref["b"]
    assert np.array_equal(got["w"], ref["w"]) and got["w"].dtype == ref["w"].dtype
