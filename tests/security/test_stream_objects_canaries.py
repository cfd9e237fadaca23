"""Objects saved one after another into one stream load one by one: the next object's bytes are
never used to load the first, and are inspected in full when they are loaded in turn.

Each payload only creates the marker; the control shows a second torch.load on the same open
file fires it.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
from canary_lib import Fires, Reduce

import safeload
from safeload.errors import UnsafeCheckpointError

SECOND_LOAD = ("import torch, sys\nf = open(sys.argv[1], 'rb')\n"
               "torch.load(f, weights_only=False)\ntorch.load(f, weights_only=False)")


@pytest.mark.parametrize("second", ["pickle", "legacy_torch"])
def test_hostile_second_object(second: str, tmp_path: Path, marker: Path,
                               fires: Fires) -> None:
    import torch

    path = tmp_path / "many.pt"
    with open(path, "wb") as f:
        torch.save({"w": torch.ones(3)}, f, _use_new_zipfile_serialization=False)
        end = f.tell()
        evil = Reduce(open, str(marker), "w")
        if second == "pickle":
            pickle.dump(evil, f, protocol=2)
        else:
            torch.save({"x": evil}, f, _use_new_zipfile_serialization=False)
    assert fires(path, SECOND_LOAD)
    with open(path, "rb") as f:
        first = safeload.load(f)  # torch.load returns it without touching the rest: so do we
        assert torch.equal(first["w"], torch.ones(3)) and f.tell() == end
        with pytest.raises(UnsafeCheckpointError, match=r"(io|builtins)\.open"):
            safeload.load(f)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):  # the whole file by path: refused
        safeload.load(path)
    buf = io.BytesIO(path.read_bytes())
    safeload.load(buf)
    with pytest.raises(UnsafeCheckpointError):
        safeload.load(buf)
    assert not marker.exists()
