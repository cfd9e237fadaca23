"""What torch.load does with a tensor's saved location: `map_location` and the default restore.

A leaf (torch only): the tensor builder and the structure rebuilder both use it.
"""

from __future__ import annotations

from typing import Any

import torch


def torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"this torch has no dtype {name}")
    return dt


def _restore(t: torch.Tensor, location: str) -> torch.Tensor:
    """torch's default restore: back to the device the tensor was saved on."""
    if location == "cpu":
        return t
    if location.startswith("cuda") and not torch.cuda.is_available():
        # torch.load's own words, so callers see the error they know.
        raise RuntimeError(
            "Attempting to deserialize object on a CUDA device but torch.cuda.is_available() "
            "is False. If you are running on a CPU-only machine, please use torch.load with "
            "map_location=torch.device('cpu') to map your storages to the CPU.")
    return t.to(torch.device(location))


def apply_map_location(t: torch.Tensor, map_location: Any, saved: str = "cpu") -> torch.Tensor:
    """What torch.load's `map_location` does to a tensor saved on `saved`."""
    if map_location is None:
        return _restore(t, saved)
    if isinstance(map_location, dict):
        return _restore(t, str(map_location.get(saved, saved)))
    if isinstance(map_location, (str, torch.device)):
        return t.to(torch.device(map_location))
    if callable(map_location):
        storage = map_location(t.untyped_storage(), saved)
        if storage is None:
            return _restore(t, saved)
        device = getattr(storage, "device", None)
        return t if device is None else t.to(device)
    raise TypeError(f"unsupported map_location {type(map_location).__name__}")


__all__ = ["apply_map_location", "torch_dtype"]
