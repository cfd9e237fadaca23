"""A hostile file is never "damaged": a cut or a stray tail must not turn an unsafe verdict into
a TruncatedFileError a resume loop skips over (review Q, 2026-12-07)."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from canary_lib import Fires

import safeload
from safeload.errors import TruncatedFileError, UnsafeCheckpointError

COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda b: gzip.compress(b, mtime=0), "zlib": zlib.compress}


# (bz2 and xz inflate a block only once it is whole: cut in its only block, nothing runs)
@pytest.mark.parametrize("kind", ["gzip", "zlib"])
def test_a_compressed_pickle_cut_after_its_payload_is_unsafe(
        kind: str, tmp_path: Path, marker: Path, fires: Fires) -> None:
    # joblib.load inflates as it unpickles: the payload runs before the cut it never reaches
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    full = COMPRESS[kind](payload + os.urandom(64 * 1024))  # filler: the cut comes after it
    path = tmp_path / "model.joblib"
    path.write_bytes(full[: len(full) - 1024])
    assert fires(path, "joblib")  # the control
    with pytest.raises(UnsafeCheckpointError) as info:
        safeload.load(path)
    assert not isinstance(info.value, TruncatedFileError)
    assert not marker.exists()


def test_a_cut_compressed_pickle_of_plain_data_is_still_truncated(tmp_path: Path) -> None:
    import pickle

    full = gzip.compress(pickle.dumps(list(range(20000))) , mtime=0)
    path = tmp_path / "data.pkl.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(TruncatedFileError):
        safeload.load(path)


def test_bytes_after_a_zips_end_record_are_no_cut(tmp_path: Path) -> None:
    # torch's reader and zipfile search back for the record: the archive opens, so this is no
    # interrupted download (it stays refused: safeload reads the record at the end only)
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    path.write_bytes(path.read_bytes() + b"\0" * 100)
    assert torch.load(path, weights_only=True)["w"].shape == (2,)
    with pytest.raises(UnsafeCheckpointError) as info:
        safeload.load(path)
    assert not isinstance(info.value, TruncatedFileError)
