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
