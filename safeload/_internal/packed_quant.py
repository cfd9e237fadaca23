"""Quantized tensors packed several values to a byte (quint4x2, quint2x4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

PACKED = {"quint4x2": (torch.quint4x2, 2), "quint2x4": (torch.quint2x4, 4)}


class PackedError(ValueError):
    pass


def packed_quantized(raw: torch.Tensor, dt: str, shape: tuple[int, ...], q: list[Any],
                      build: Callable[[Any, int], Any]) -> torch.Tensor:
    """Values packed several to a byte (int_repr does not unpack them): an empty quantized
    tensor given the saved bytes as its storage, as torch's `_rebuild_qtensor` does."""
    dtype, per_byte = PACKED[dt]
    numel = 1
    for d in shape:
        numel *= d
    if raw.dtype != torch.uint8 or raw.dim() != 1 or raw.numel() < -(-numel // per_byte):
        raise PackedError("packed quantized bytes do not match the shape")
    if q[0] == "per_tensor_affine":
        t = torch._empty_affine_quantized(shape, scale=float.fromhex(q[1]),
                                          zero_point=int(q[2]), dtype=dtype)
    elif q[0] in ("per_channel_affine", "per_channel_affine_float_qparams"):
        t = torch._empty_per_channel_affine_quantized(
            shape, scales=build(q[1], 1), zero_points=build(q[2], 1), axis=int(q[3]),
            dtype=dtype)
    else:
        raise PackedError(f"unknown quantization scheme {q[0]!r}")
    storage = torch.TypedStorage(wrap_storage=raw.clone().untyped_storage(), dtype=dtype,
                                 _internal=True)  # type: ignore[no-untyped-call]
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return t.set_(storage, 0, shape, tuple(reversed(strides)))
