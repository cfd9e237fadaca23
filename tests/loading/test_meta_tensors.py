"""Meta-device tensors (shape and dtype, no data) load as torch.load(weights_only=True) loads
them: `_rebuild_meta_tensor_no_storage`, also wrapped as a Parameter, kept on `meta` whatever
`map_location` is (torch ignores it for them too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import safeload
from safeload.errors import UnsafeCheckpointError
from safeload.inspection import inspect_bytes


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_HOME", str(tmp_path / "safeload-home"))


def _skeleton() -> dict[str, Any]:
    param = torch.nn.Parameter(torch.empty(2, 3, device="meta", dtype=torch.float16))
    param.tag = "lazy"  # type: ignore[attr-defined]
    return {"m": torch.empty(3, 4, device="meta"), "p": param,
            "column": torch.empty(4, 4, device="meta")[:, 1],
            "grad": torch.empty(2, device="meta", dtype=torch.bfloat16).requires_grad_(),
            "empty": torch.empty(0, 5, device="meta", dtype=torch.int64),
            "real": torch.arange(3.0)}


def _same(ref: torch.Tensor, got: Any, key: str) -> None:
    assert type(got) is type(ref), key
    assert got.device == ref.device and got.dtype == ref.dtype, key
    assert got.shape == ref.shape and got.stride() == ref.stride(), key
    assert got.requires_grad == ref.requires_grad and got.__dict__ == ref.__dict__, key
    if ref.device.type != "meta":
        assert torch.equal(got, ref), key


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("map_location", [None, "cpu"])
def test_meta_tensors_load_as_torch_load(legacy: bool, map_location: str | None,
                                         tmp_path: Path) -> None:
    path = tmp_path / "skeleton.pt"
    torch.save(_skeleton(), path, _use_new_zipfile_serialization=not legacy)
    assert inspect_bytes(path.read_bytes(), name=path.name).verdict == "clean"
    ref = torch.load(path, weights_only=True, map_location=map_location)
    got = safeload.load(path, map_location=map_location)
    assert list(got) == list(ref)
    for key in ref:
        _same(ref[key], got[key], key)


def test_meta_tensor_whose_size_overflows_is_refused(tmp_path: Path) -> None:
    # torch.load fails on it too ("numel: integer multiplication overflow").
    huge = b"\x8a\x08" + (1 << 62).to_bytes(8, "little")
    data = (b"\x80\x02ctorch._utils\n_rebuild_meta_tensor_no_storage\n(ctorch\nfloat32\n"
            + huge + huge + b"\x86K\x01K\x01\x86\x89tR.")
    path = tmp_path / "huge.pkl"
    path.write_bytes(data)
    with pytest.raises(RuntimeError):
        torch.load(path, weights_only=True)
    with pytest.raises(UnsafeCheckpointError, match="overflows"):
        safeload.load(path)
