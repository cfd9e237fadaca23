"""`safetensors.safe_open`'s interface, served from bytes safeload already holds and checked.

The guard hands libraries a `SafeOpen` in place of `safetensors.safe_open`: the same methods
(`keys`, `offset_keys`, `metadata`, `get_tensor`, `get_tensors`, `get_slice`, the context
manager) over the held descriptor's mapping, so the tensors served are the bytes that were
verified, never a re-open by path. How the real reader (safetensors 0.4-0.8, Rust) behaves, and
what is modelled here:

- `keys()` is sorted by name; `offset_keys()` (0.5+) and `get_tensors()` follow file offsets
  (ties, i.e. empty tensors, by name). `safetensors.torch.load(bytes)` returns its dict in Rust
  hash-map order: an order nobody can rely on; here it is the offset order.
- `get_tensor` returns a tensor that owns its memory (a copy out of the mapping).
- `get_slice(name)[index]` accepts ints, slices and `...` (as tensor indexing does: negative
  indices and starts count from the end, a slice past the end is clipped, `step > 0` only:
  a negative step is a `ValueError`, an int out of range an `IndexError`, too many indices an
  `IndexError`); `get_shape()` is a list, `get_dtype()` the header code ("F32"). Other index
  types (None, lists, tensors) are not slicing in safetensors; they are refused here with a
  `SafetensorError`.
- A missing tensor, an unknown framework or device, a use after `__exit__`: `SafetensorError`.
- Frameworks: `pt` (also `torch`, `pytorch`) and `np` (`numpy`). Others (tf, flax, mlx, paddle)
  are refused: fail closed rather than hand them an unverified path.

After every tensor is copied out, `changed()` is asked of the held file: a writer modifying the
inode in place is refused, not served.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from safeload._internal.opened import Held
from safeload._internal.safetensors_check import (
    DTYPES,
    SafetensorsHeader,
    TensorEntry,
    file_order,
)
from safeload._internal.torchmap import torch_dtype


def view_entry(buf: Any, e: Any) -> torch.Tensor:
    """The tensor of one checked header entry, viewing `buf` (empty tensors view nothing)."""
    dtype = torch_dtype(DTYPES[e.dtype][0])
    shape = e.torch_shape
    count = 1
    for d in shape:
        count *= d
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    if dtype.itemsize == 1:  # frombuffer knows no sub-byte or float8 element: view the bytes
        raw = torch.frombuffer(buf, dtype=torch.uint8, count=count, offset=e.begin)
        return raw.view(dtype).view(shape)
    return torch.frombuffer(buf, dtype=dtype, count=count, offset=e.begin).view(shape)


_TORCH = frozenset({"pt", "torch", "pytorch"})
_NUMPY = frozenset({"np", "numpy"})
BACKENDS = frozenset({"mmap", "pread"})


def safetensor_error(message: str) -> Exception:
    """safetensors' own exception type, so `except SafetensorError` keeps working."""
    from safetensors import SafetensorError

    err: Exception = SafetensorError(message)
    return err


def check_framework(framework: str) -> str:
    """'pt' or 'np' for the names safetensors accepts and safeload serves.

    Raises:
        SafetensorError: a framework safeload does not serve (unknown ones included).
    """
    if framework in _TORCH:
        return "pt"
    if framework in _NUMPY:
        return "np"
    raise safetensor_error(f"framework {framework} is invalid (safeload.guard serves pt and np)")


def check_device(device: Any) -> torch.device:
    """Raises: SafetensorError: not a device torch knows."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise safetensor_error(f"device {device} is invalid") from None


class SafeOpen:
    """A verified safetensors file, read through the held mapping."""

    def __init__(self, held: Held, header: SafetensorsHeader, framework: str = "pt",
                 device: Any = "cpu", *,
                 after_read: Callable[[Callable[[], bool]], None] | None = None) -> None:
        self._held: Held | None = held
        self._buf = held.mapping()
        self._header = header
        self._entries = {e.name: e for e in header.tensors}
        self._framework = check_framework(framework)
        self._device = check_device(device) if self._framework == "pt" else torch.device("cpu")
        self._after_read = after_read

    # -- the context manager: __exit__ closes, as safetensors does
    def __enter__(self) -> SafeOpen:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # Tensors served are copies: dropping the mapping never pulls bytes from under them.
        if self._held is not None:
            self._held.close()
        self._held = None
        self._buf = b""

    def _open(self) -> Held:
        if self._held is None:
            raise safetensor_error("File is closed")
        return self._held

    # -- the header
    def keys(self) -> list[str]:
        self._open()
        return sorted(self._entries)

    def offset_keys(self) -> list[str]:
        self._open()
        return [e.name for e in file_order(self._header.tensors)]

    def metadata(self) -> dict[str, str] | None:
        self._open()
        return dict(self._header.metadata) if self._header.metadata is not None else None

    # -- tensors
    def _entry(self, name: str) -> TensorEntry:
        self._open()
        entry = self._entries.get(name)
        if entry is None:
            raise safetensor_error(f"File does not contain tensor {name}")
        return entry

    def _view(self, entry: TensorEntry) -> torch.Tensor:
        """The tensor viewing the mapping (not served: the caller copies what it needs)."""
        return view_entry(self._buf, entry)

    def _serve(self, view: torch.Tensor) -> Any:
        t = view.clone(memory_format=torch.contiguous_format)
        if self._after_read is not None:
            # The copy is done: refuse bytes a writer changed meanwhile. After a rename-over,
            # the copy must still equal the held file's bytes (which hash as verified).
            self._after_read(lambda: _same_bytes(t, view))
        if self._framework == "np":
            return t.numpy()
        return t if self._device.type == "cpu" else t.to(self._device)

    def get_tensor(self, name: str) -> Any:
        return self._serve(self._view(self._entry(name)))

    def get_tensors(self) -> dict[str, Any]:
        return {k: self.get_tensor(k) for k in self.offset_keys()}

    def get_slice(self, name: str) -> SafeSlice:
        return SafeSlice(self, self._entry(name))


def _same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.numel() == 0:
        return b.numel() == 0
    flat = [t.contiguous().reshape(-1).view(torch.uint8) for t in (a, b)]
    return bool(torch.equal(flat[0], flat[1]))


def _check_index(index: Any) -> tuple[Any, ...]:
    items = index if isinstance(index, tuple) else (index,)
    for item in items:
        if item is Ellipsis or isinstance(item, slice):
            continue
        if isinstance(item, int) and not isinstance(item, bool):
            continue
        raise safetensor_error(f"invalid index {item!r}: safetensors slices take ints, "
                               "slices and ...")
    return items


class SafeSlice:
    """`get_slice(name)`: shape and dtype from the header; `[...]` reads only on indexing."""

    def __init__(self, owner: SafeOpen, entry: TensorEntry) -> None:
        self._owner = owner
        self._entry = entry

    def get_shape(self) -> list[int]:
        return list(self._entry.shape)

    def get_dtype(self) -> str:
        return self._entry.dtype

    def __getitem__(self, index: Any) -> Any:
        items = _check_index(index)
        view = self._owner._view(self._owner._entry(self._entry.name))
        return self._owner._serve(view[items])


__all__ = ["BACKENDS", "SafeOpen", "SafeSlice", "check_device", "check_framework",
           "safetensor_error"]
