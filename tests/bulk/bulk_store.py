"""A small shared model store for the bulk tests: benign checkpoints of several kinds and
hostile canaries (each one's only effect would be creating `marker`)."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path


class Canary:
    """A pickled call to `open(marker, 'w')` on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


@dataclass
class Store:
    root: Path
    manifest: Path
    benign: list[Path]
    hostile: list[Path]
    safe: list[Path]  # already safetensors: skipped
    marker: Path


def build_store(root: Path, *, benign: int = 34) -> Store:
    """`benign` pickle checkpoints, 2 safetensors files and 4 hostile files (40 in all by
    default), listed in `root/manifest.txt` with relative paths and a comment line."""
    import torch
    from safetensors.torch import save_file

    models = root / "models"
    models.mkdir(parents=True)
    marker = root / "MARKER"
    good: list[Path] = []
    for i in range(benign):
        sub = models / f"team{i % 3}"
        sub.mkdir(exist_ok=True)
        g = torch.Generator().manual_seed(i)
        state = {"layer.weight": torch.randn(8, 4 + i % 5, generator=g),
                 "layer.bias": torch.arange(i % 7 + 1, dtype=torch.int64),
                 "half": torch.ones(3, dtype=torch.bfloat16) * i}
        if i % 4 == 1:
            state = {"state_dict": state, "epoch": i, "name": f"model-{i}"}  # type: ignore[dict-item]
        p = sub / f"ckpt{i:02d}.pt"
        torch.save(state, p, _use_new_zipfile_serialization=i % 5 != 3)
        good.append(p)
    safe = []
    for i in range(2):
        p = models / f"already{i}.safetensors"
        save_file({"w": torch.full((2, 2), float(i))}, str(p))
        safe.append(p)
    bad = models / "bad"
    bad.mkdir()
    hostile = [bad / "reduce.pkl", bad / "zip_reduce.pt", bad / "legacy_reduce.pt",
               bad / "truncated.pt"]
    with open(hostile[0], "wb") as f:
        pickle.dump({"w": Canary(marker)}, f)
    torch.save({"w": Canary(marker)}, hostile[1])
    torch.save({"w": Canary(marker)}, hostile[2], _use_new_zipfile_serialization=False)
    torch.save({"w": torch.ones(64)}, hostile[3])
    hostile[3].write_bytes(hostile[3].read_bytes()[:300])
    manifest = root / "manifest.txt"
    lines = ["# the shared store, one checkpoint per line", ""]
    lines += [os.path.relpath(p, root) for p in [*good, *safe, *hostile]]
    manifest.write_text("\n".join(lines) + "\n")
    return Store(root, manifest, good, hostile, safe, marker)


def fires(store: Store) -> bool:
    """The control: every hostile pickle does run under the real loaders."""
    import torch

    for p in store.hostile[:3]:
        store.marker.unlink(missing_ok=True)
        if zipfile.is_zipfile(p) or p.suffix == ".pt":
            torch.load(p, weights_only=False)
        else:
            with open(p, "rb") as f:
                pickle.load(f)  # noqa: S301 - the control: this is what safeload prevents
        if not store.marker.exists():
            return False
    store.marker.unlink()
    return True
