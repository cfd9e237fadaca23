"""What torch.load does with a tensor's saved location: `map_location` and the default restore.

A leaf (torch only): the tensor builder and the structure rebuilder both use it.
"""

from __future__ import annotations

from typing import Any

import torch

from safeload._internal.caller_raised import MapLocationRaised
from safeload.errors import MapLocationError, MapLocationTypeError


def torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"this torch has no dtype {name}")
    return dt


# torch.load's own words (torch/serialization.py `_validate_device`), so callers see the
# error they know; the pipeline adds the user's file name.
CUDA_UNAVAILABLE = (
    "Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is False. "
    "If you are running on a CPU-only machine, please use torch.load with "
    "map_location=torch.device('cpu') to map your storages to the CPU.")


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`, refusing as torch.load does when the device is not there."""
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MapLocationError(CUDA_UNAVAILABLE)
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise MapLocationError(
                f"Attempting to deserialize object on CUDA device {index} but "
                f"torch.cuda.device_count() is {torch.cuda.device_count()}. Please use "
                "torch.load with map_location to map your storages to an existing device.")
    try:
        return t.to(device)
    # A device type this torch build has not: mps raises RuntimeError, xpu an AssertionError,
    # hpu an ImportError (review O); torch.load raises RuntimeError for each.
    except (RuntimeError, AssertionError, ImportError, AttributeError, ValueError) as exc:
        raise MapLocationError(
            f"Attempting to deserialize object on device {str(device)!r}, which this torch "
            f"cannot use ({exc}); please use torch.load with map_location=torch.device('cpu') "
            "to map your storages to the CPU.") from None


def _device(spec: str | torch.device) -> torch.device:
    """`torch.device(spec)`, its RuntimeError for a string that names no device ("gpu",
    "cuda:x") as torch.load's own (review O: it read as a malformed file)."""
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise MapLocationError(f"{exc} (map_location={spec!r})") from None


def _restore(t: torch.Tensor, location: str) -> torch.Tensor:
    """torch's default restore: back to the device the tensor was saved on."""
    return t if location == "cpu" else _to_device(t, _device(location))


def check_map_location(map_location: Any) -> None:
    """The types torch.load accepts for `map_location` (it calls anything else, and fails)."""
    if map_location is None or isinstance(map_location, (str, torch.device, dict)):
        return
    if not callable(map_location):
        raise MapLocationTypeError(
            f"map_location must be a str, torch.device, dict or callable, not "
            f"{type(map_location).__name__} (torch.load: {type(map_location).__name__!r} "
            "object is not callable)")


def apply_map_location(t: torch.Tensor, map_location: Any, saved: str = "cpu") -> torch.Tensor:
    """What torch.load's `map_location` does to a tensor saved on `saved`.

    Raises:
        MapLocationError: the target device is not available (torch raises RuntimeError).
        MapLocationTypeError: a `map_location` of a type torch does not accept.
    """
    if map_location is None:
        return _restore(t, saved)
    if isinstance(map_location, dict):
        return _restore(t, str(map_location.get(saved, saved)))
    if isinstance(map_location, (str, torch.device)):
        return _to_device(t, _device(map_location))
    check_map_location(map_location)
    try:
        storage = map_location(t.untyped_storage(), saved)
    except Exception as exc:
        raise MapLocationRaised(exc) from exc
    if storage is None:
        return _restore(t, saved)
    device = getattr(storage, "device", None)
    return t if device is None else t.to(device)


__all__ = ["apply_map_location", "check_map_location", "torch_dtype"]
