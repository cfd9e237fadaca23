"""Several objects saved one after the other into one stream load one by one, as torch.load.

`torch.save(a, f); torch.save(b, f)` with the legacy format (`_use_new_zipfile_serialization=
False`): torch.load(f) returns `a` and leaves `f` right after it, so a second torch.load(f)
returns `b`. safeload does the same, loading exactly the bytes of each object in turn. (The zip
format is different: torch.load returns the first object but leaves the stream inside it, and
a second load fails; safeload refuses two concatenated zips, see the last test.)
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import safeload
from safeload.errors import SafeloadError, UnsafeCheckpointError


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "safeload-home"
    monkeypatch.setenv("SAFELOAD_HOME", str(home))
    warnings.simplefilter("ignore", UserWarning)
    return home


OBJECTS: list[Any] = [
    {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.float16)},
    [torch.zeros(4, dtype=torch.int64), "between", 3.5],
    7,
    {"empty": torch.empty(0), "nested": {"t": torch.tensor([True, False])}},
]


def _same(ref: Any, got: Any) -> None:
    assert type(got) is type(ref)
    if isinstance(ref, torch.Tensor):
        assert got.dtype == ref.dtype and got.shape == ref.shape and torch.equal(got, ref)
    elif isinstance(ref, dict):
        assert list(got) == list(ref)
        for k in ref:
            _same(ref[k], got[k])
    elif isinstance(ref, list):
        assert len(got) == len(ref)
        for a, b in zip(ref, got, strict=True):
            _same(a, b)
    else:
        assert got == ref


def _stream() -> bytes:
    f = io.BytesIO()
    for obj in OBJECTS:
        torch.save(obj, f, _use_new_zipfile_serialization=False)
    return f.getvalue()


def test_objects_in_one_bytesio_load_one_by_one() -> None:
    data = _stream()
    ref_f, got_f = io.BytesIO(data), io.BytesIO(data)
    for _ in OBJECTS:
        ref = torch.load(ref_f, weights_only=True)
        got = safeload.load(got_f)
        _same(ref, got)
        assert got_f.tell() == ref_f.tell()
    assert got_f.tell() == len(data)


@pytest.mark.parametrize("buffering", [-1, 0])
def test_objects_in_one_open_file_load_one_by_one(buffering: int, tmp_path: Path) -> None:
    path = tmp_path / "many.pt"
    with open(path, "wb") as w:  # written as a training loop would: one open file
        for obj in OBJECTS:
            torch.save(obj, w, _use_new_zipfile_serialization=False)
    positions = []
    with open(path, "rb", buffering=buffering) as f:
        for obj in OBJECTS:
            _same(obj, torch.load(f, weights_only=True))
            positions.append(f.tell())
    with open(path, "rb", buffering=buffering) as f:
        for obj, pos in zip(OBJECTS, positions, strict=True):
            _same(obj, safeload.load(f))
            assert f.tell() == pos


def test_trailing_bytes_that_are_no_object(tmp_path: Path) -> None:
    # torch.load returns the first object and stops there; so does safeload. The rest is no
    # checkpoint: both fail on the next load.
    f = io.BytesIO()
    torch.save(OBJECTS[0], f, _use_new_zipfile_serialization=False)
    end = f.tell()
    f.write(b"not a checkpoint\n")
    raw = f.getvalue()
    ref_f, got_f = io.BytesIO(raw), io.BytesIO(raw)
    _same(torch.load(ref_f, weights_only=True), safeload.load(got_f))
    assert got_f.tell() == ref_f.tell() == end
    with pytest.raises(Exception):  # noqa: B017 - torch's own error
        torch.load(ref_f, weights_only=True)
    with pytest.raises(SafeloadError):
        safeload.load(got_f)


def test_a_path_to_a_multi_object_file_is_still_refused(tmp_path: Path) -> None:
    # Only a stream has a position to leave after the first object; a path names the whole
    # file, whose trailing bytes torch.load ignores: safeload refuses them (a known limit).
    path = tmp_path / "many.pt"
    path.write_bytes(_stream())
    _same(OBJECTS[0], torch.load(path, weights_only=True))
    with pytest.raises(SafeloadError):
        safeload.load(path)


def test_two_zip_checkpoints_in_one_stream_stay_refused() -> None:
    # torch.load has no one-by-one reading for zips: on two archives in one stream it fails
    # ("invalid header or archive is corrupted"), or (for some contents) returns the first
    # object and leaves the stream inside the first archive, so the next torch.load fails.
    # safeload refuses the stream (two end-of-central-directory records).
    f = io.BytesIO()
    torch.save(OBJECTS[0], f)
    torch.save(OBJECTS[1], f)
    raw = f.getvalue()
    ref_f = io.BytesIO(raw)
    with pytest.raises(Exception):  # noqa: B017 - torch's own error, on the first or second
        torch.load(ref_f, weights_only=True)
        torch.load(ref_f, weights_only=True)
    with pytest.raises(UnsafeCheckpointError, match="end records"):
        safeload.load(io.BytesIO(raw))
