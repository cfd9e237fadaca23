"""A checkpoint whose storages are recorded on 'cuda:0', as a GPU-saved file's are, written on
a CPU-only machine by registering a location tagger for the save only."""

from __future__ import annotations

from pathlib import Path

import torch


def cuda_saved(tmp: Path, location: str = "cuda:0", **save_kwargs: object) -> Path:
    import torch.serialization as ts

    def tagger(obj: object) -> str | None:
        dev = getattr(obj, "device", None)
        return location if dev is not None and dev.type == "cpu" else None

    entry = (0, tagger, lambda obj, loc: None)
    ts._package_registry.append(entry)  # type: ignore[attr-defined]
    ts._package_registry.sort(key=lambda e: e[0])  # type: ignore[attr-defined]
    try:
        path = tmp / "gpu-saved.pt"
        torch.save({"w": torch.arange(4.0)}, path, **save_kwargs)  # type: ignore[arg-type]
    finally:
        ts._package_registry.remove(entry)  # type: ignore[attr-defined]
    return path
