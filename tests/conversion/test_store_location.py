"""The converted store is used only where no other user could swap it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")
@pytest.mark.parametrize("shared", ["store", "folder-above"])
def test_a_converted_store_others_could_swap_is_refused(shared: str, tmp_path: Path) -> None:
    # Review P: only the store's own folder was checked; a folder above it that others may
    # write lets them swap the whole store, tensors and all, for a genuine pickle.
    import safeload
    from safeload._internal import paths
    from safeload.errors import ConversionError

    src = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, src)
    store = paths.converted_dir()
    store.mkdir(parents=True, mode=0o700)
    (store if shared == "store" else store.parent).chmod(0o775 if shared == "store" else 0o777)
    with pytest.raises(ConversionError, match="converted store"):
        safeload.load(src)


def test_work_folders_a_killed_load_left_are_swept_once_stale(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # review U: a load killed during its conversion left `.safeload-convert-*` in the store
    import time

    import safeload
    from safeload._internal import converter, paths

    store = paths.converted_dir()
    store.mkdir(parents=True, mode=0o700)
    old, fresh = store / ".safeload-convert-old", store / ".safeload-convert-fresh"
    for d in (old, fresh):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"partial")
    past = time.time() - converter.STALE_WORK_SECONDS - 60
    os.utime(old, (past, past))
    monkeypatch.setattr(converter, "_swept", set())
    src = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, src)
    safeload.load(src)
    assert not old.exists() and fresh.exists()  # a running conversion's folder stays
