"""Tensors saved with pickle.dump or joblib.dump (not torch.save) load as pickle.load and
joblib.load return them: each storage is `torch.storage._load_from_bytes(b)`, a legacy torch
file inside the pickle, read under the same rules; its bytes are copied from where they lie.
The hostile variants are in tests/security/test_storage_bytes_canaries.py."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import torch

import safeload
from safeload.errors import UnsafeCheckpointError


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_HOME", str(tmp_path / "safeload-home"))


def _state() -> dict[str, Any]:
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    shared = torch.ones(4, dtype=torch.float16)
    return {"a": a, "row": a[1], "t": a.t(), "p": torch.nn.Parameter(torch.randn(3, 2)),
            "i": torch.tensor([1, 2, 3]), "empty": torch.zeros(0),
            "bf": torch.randn(5).to(torch.bfloat16), "big": torch.randn(600, 500),
            "s1": shared, "s2": shared, "nested": [shared, {"n": np.arange(3)}]}


def _same(ref: Any, got: Any) -> None:
    assert type(got) is type(ref)
    if isinstance(ref, torch.Tensor):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        assert got.stride() == ref.stride() and got.storage_offset() == ref.storage_offset()
        assert got.requires_grad == ref.requires_grad and torch.equal(got, ref)
    elif isinstance(ref, dict):
        assert list(got) == list(ref)
        for k in ref:
            _same(ref[k], got[k])
    elif isinstance(ref, list):
        assert len(got) == len(ref)
        for r, g in zip(ref, got, strict=True):
            _same(r, g)
    elif isinstance(ref, np.ndarray):
        assert got.dtype == ref.dtype and np.array_equal(got, ref)
    else:
        assert got == ref


@pytest.mark.parametrize("how", ["pickle3", "pickle4", "pickle5", "joblib", "joblib-zlib"])
def test_pickled_tensors_load_as_their_loader_returns_them(how: str, tmp_path: Path) -> None:
    path = tmp_path / f"m.{how}"
    if how.startswith("pickle"):
        path.write_bytes(pickle.dumps(_state(), protocol=int(how[-1])))
        ref = pickle.loads(path.read_bytes())
    else:
        joblib.dump(_state(), path, compress=3 if how.endswith("zlib") else 0)
        ref = joblib.load(path)
    got = safeload.load(path)
    _same(ref, got)
    # Object identity as the pickle memo has it: one storage pickled once is one tensor.
    assert (got["s1"] is got["s2"] is got["nested"][0]) == \
        (ref["s1"] is ref["s2"] is ref["nested"][0])
    assert got["a"].untyped_storage().data_ptr() != got["row"].untyped_storage().data_ptr()


def test_protocol_2_storage_bytes_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"a": torch.ones(3)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"protocol 2.*torch\.save"):
        safeload.load(path)
