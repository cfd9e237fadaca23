"""Tensors written by pickle.dump and joblib.dump: `torch.storage._load_from_bytes(b)`.

pickle.load runs `torch.load(BytesIO(b), weights_only=False)` on those bytes: an unrestricted
torch.load, which tries a zip, or else the legacy pickles (its tar reader needs a file
descriptor). safeload reads the legacy pickles under the same rules and refuses a zip. Each
payload only creates the marker; each control shows pickle.load fires it.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch
import torch.storage
from canary_lib import Fires, Reduce, Refused

from safeload.errors import UnsafeCheckpointError


def _storage_pickle(nested: bytes, path: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump({"w": Reduce(torch.storage._load_from_bytes, nested)}, f, protocol=4)
    return path


def _payload(marker: Path) -> Reduce:
    return Reduce(open, str(marker), "w")


def test_a_payload_in_the_storage_bytes_legacy_pickles_is_refused(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    buf = io.BytesIO()
    torch.save({"x": _payload(marker)}, buf, _use_new_zipfile_serialization=False)
    path = _storage_pickle(buf.getvalue(), tmp_path / "m.pkl")
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=r"storage bytes at offset")


def test_storage_bytes_torch_would_read_as_a_zip_are_refused(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # torch.load(BytesIO) takes bytes beginning `PK\x03\x04` as a torch zip: its data.pkl is
    # unpickled without restriction.
    buf = io.BytesIO()
    torch.save({"x": _payload(marker)}, buf)
    path = _storage_pickle(buf.getvalue(), tmp_path / "m.pkl")
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=r"as a zip archive")


def test_storage_bytes_nested_twice_are_refused(tmp_path: Path, marker: Path, fires: Fires,
                                                refused: Refused) -> None:
    inner = io.BytesIO()
    torch.save({"x": _payload(marker)}, inner, _use_new_zipfile_serialization=False)
    outer = io.BytesIO()
    torch.save({"y": Reduce(torch.storage._load_from_bytes, inner.getvalue())}, outer,
               _use_new_zipfile_serialization=False)
    path = _storage_pickle(outer.getvalue(), tmp_path / "m.pkl")
    assert fires(path, "pickle")
    refused(path, UnsafeCheckpointError, match=r"_load_from_bytes")


@pytest.mark.parametrize("where", ["zip", "legacy"])
def test_storage_bytes_inside_a_torch_file_stay_refused(
        where: str, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # torch.save never writes them; torch.load(weights_only=False) would run the nested load.
    buf = io.BytesIO()
    torch.save({"x": _payload(marker)}, buf, _use_new_zipfile_serialization=False)
    path = tmp_path / "m.pt"
    torch.save({"w": Reduce(torch.storage._load_from_bytes, buf.getvalue())}, path,
               _use_new_zipfile_serialization=(where == "zip"))
    assert fires(path, "torch")
    refused(path, UnsafeCheckpointError)
