"""Views of one storage come back as views of one storage (issue 12, "Loaded differently"):
strides, storage offsets and sharing as `torch.load` gives them, while the converted file's
entries stay each tensor's own values for `safetensors.load_file`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import safeload


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_HOME", str(tmp_path / "safeload-home"))


def _views() -> dict[str, torch.Tensor]:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {"base": base, "T": base.t(), "cols": base[:, ::2], "row": base[2],
            "narrow": base.narrow(1, 2, 3), "flat_tail": base.view(-1)[5:],
            "expand": base[0:1].expand(3, 6)}


CASES: dict[str, Any] = {
    "views": _views,
    "transposed-alone": lambda: {"T": torch.arange(6.0).reshape(2, 3).t()},
    "offset-alone": lambda: {"tail": torch.arange(10.0)[3:]},
    "two-storages": lambda: {"a": torch.ones(3)[1:], "b": torch.zeros(2, 2).t()},
}


def _geometry(d: dict[str, torch.Tensor]) -> dict[str, Any]:
    ptrs: dict[int, int] = {}
    out = {}
    for k, t in d.items():
        st = t.untyped_storage()
        out[k] = (tuple(t.shape), t.stride(), t.storage_offset(), st.nbytes(),
                  ptrs.setdefault(st.data_ptr(), len(ptrs)), t.dtype)
    return out


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_views_strides_and_offsets_are_rebuilt(case: str, fmt: str, tmp_path: Path) -> None:
    path = tmp_path / "views.pt"
    torch.save(CASES[case](), path,
               **({} if fmt == "zip" else {"_use_new_zipfile_serialization": False}))
    ref = torch.load(path, weights_only=True)
    got = safeload.load(path)
    assert list(got) == list(ref)
    assert _geometry(got) == _geometry(ref)
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    # one storage: writing through one view shows in the others, as under torch.load
    if case == "views":
        got["base"][2, 0] = -1.0
        assert got["row"][0] == -1.0 and got["T"][0, 2] == -1.0


def test_the_converted_entries_stay_plain_tensors(tmp_path: Path) -> None:
    path = tmp_path / "views.pt"
    torch.save(_views(), path)
    dest = tmp_path / "views.safetensors"
    from safeload.convert import convert_file

    convert_file(path, dest)
    flat = load_file(str(dest))
    for k, t in _views().items():
        if k in flat:
            assert torch.equal(flat[k], t.contiguous()), k


def test_views_to_meta_keep_their_geometry(tmp_path: Path) -> None:
    path = tmp_path / "views.pt"
    torch.save(_views(), path)
    ref = torch.load(path, weights_only=True, map_location="meta")
    got = safeload.load(path, map_location="meta")
    for k in ref:
        assert got[k].device.type == "meta"
        assert (got[k].shape, got[k].stride(), got[k].storage_offset()) == (
            ref[k].shape, ref[k].stride(), ref[k].storage_offset()), k


def _storage_facts(d: dict[str, Any]) -> dict[str, Any]:
    ptrs: dict[int, int] = {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, torch.storage.TypedStorage):
            u = v.untyped()
            out[k] = ("storage", v.dtype, len(v), bytes(u),
                      ptrs.setdefault(u.data_ptr(), len(ptrs)) if u.nbytes() else None)
        else:
            st = v.untyped_storage()
            out[k] = ("tensor", tuple(v.shape), v.stride(), v.storage_offset(), v.tolist(),
                      ptrs.setdefault(st.data_ptr(), len(ptrs)))
    return out


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_storages_saved_as_values_come_back_as_torch_load_gives_them(
        fmt: str, tmp_path: Path) -> None:
    # Review L-2: `torch.save({"s": t.untyped_storage()})` was refused ("unsupported value
    # StorageRef"); torch.load(weights_only=True) gives a TypedStorage, shared with any
    # tensor over the same bytes.
    ones, ints, shared = torch.ones(3), torch.arange(4, dtype=torch.int16), torch.arange(10.0)
    path = tmp_path / "storages.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage is deprecated
        # torch's legacy reader cannot read an UntypedStorage back: typed ones there.
        bare = ones.untyped_storage() if fmt == "zip" else ones.storage()
        obj = {"untyped": bare, "typed": ints.storage(), "view": shared[2:5],
               "its_storage": shared.storage(), "again": bare,
               "empty": torch.empty(0).untyped_storage() if fmt == "zip" else
               torch.empty(0).storage()}
        torch.save(obj, path, **({} if fmt == "zip" else
                                 {"_use_new_zipfile_serialization": False}))
    ref = torch.load(path, weights_only=True)
    got = safeload.load(path)
    assert list(got) == list(ref)
    assert _storage_facts(got) == _storage_facts(ref)
    assert got["untyped"] is got["again"]
    got["view"][0] = -1.0  # one storage, as under torch.load
    assert got["its_storage"][2] == -1.0
