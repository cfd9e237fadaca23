"""Turning validated bytes into tensors (imports torch: only the load path uses this module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from safeload_conversion.protocol import STRUCTURE_KEY

from safeload._internal import strictjson
from safeload._internal.safe_open import view_entry
from safeload._internal.safetensors_check import SafetensorsHeader, file_order, parse_header
from safeload._internal.str8 import Str8DecodeError
from safeload._internal.structure import StructureError, rebuild
from safeload._internal.torchmap import apply_map_location
from safeload.errors import MalformedFileError


def tensors_from_header(buf: Any, header: SafetensorsHeader, *, copy: bool
                        ) -> dict[str, torch.Tensor]:
    """Tensors viewing the (private, copy-on-write) mapping, or private copies."""
    out: dict[str, torch.Tensor] = {}
    for e in file_order(header.tensors):
        t = view_entry(buf, e)
        out[e.name] = t.clone() if copy and t.numel() else t
    return out


def load_safetensors_buffer(buf: Any, name: str, *, map_location: Any = None,
                            copy: bool = False, store_entry: bool = True,
                            source: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors buffer, as `safetensors.load_file` gives them.

    `store_entry`: the buffer is an entry of safeload's converted store, validated against its
    source by the converter engine; only then is its structure record rebuilt. Any other file's
    `safeload.structure` metadata is ignored: a downloaded file must load as every other
    safetensors reader (and the Hub) shows it. `source`: the user's file a store entry was
    converted from, named by errors about its values (a Python 2 string).
    """
    header = parse_header(buf, name)
    tensors = tensors_from_header(buf, header, copy=copy)
    structure = (header.metadata or {}).get(STRUCTURE_KEY) if store_entry else None
    if structure is not None:
        # A file safeload converted: restore the original checkpoint's structure.
        try:
            rebuilt: dict[str, torch.Tensor] = rebuild(
                strictjson.loads(structure, surrogates=True), tensors,
                lambda t, loc: apply_map_location(t, map_location, loc),
                views='"sv"' in structure)  # most checkpoints have none: no second walk
            return rebuilt
        except Str8DecodeError as exc:
            raise MalformedFileError(f"{source or name}: {exc}",
                                     hint="a Python 2 checkpoint: load it with "
                                     "encoding='latin1'") from None
        except (StructureError, ValueError, RecursionError) as exc:
            raise MalformedFileError(f"{name}: bad {STRUCTURE_KEY} metadata: {exc}",
                                     hint="convert the original checkpoint again") from None
    return {k: apply_map_location(v, map_location) for k, v in tensors.items()}


def load_numpy_inspected(ins: Any, *, map_location: Any = None,
                         unpickled: Callable[[Any], Any] | None = None) -> Any:
    """`.npy` -> one array, `.npz` -> a dict of them, built from the inspection's own parse
    of the bytes (for `.npz`, the strict zip reader's members): nothing is parsed twice, so
    no reader that disagrees with the inspection (np.load's zipfile) picks the bytes.

    A dtype torch has comes back as a tensor (native order, C-contiguous), as before; any other
    (structured records, datetime64/timedelta64, text, void, long double) as the numpy array
    np.load returns: the same dtype (byte order, fields, offsets), shape and memory order."""
    from safeload._internal.npyformat import build_dtype

    def array(spec: Any) -> Any:
        if spec is None:
            raise ValueError("array was not inspected")
        import numpy as np

        h = spec.header
        dtype = build_dtype(h)
        if dtype.hasobject or dtype.itemsize != h.itemsize:
            raise ValueError("dtype does not match the inspected header")
        # A private byte-for-byte copy (padding bytes of aligned records included): the array
        # must not depend on the file's mapping, as np.load's read does not.
        if h.count == 0 or h.itemsize == 0:
            # As np.load makes it (its strides included); zero-size records hold no bytes.
            flat = np.ndarray(h.count, dtype=dtype)
        else:
            raw = np.empty(h.count * h.itemsize, dtype=np.uint8)
            raw[:] = np.frombuffer(spec.data, dtype=np.uint8, count=raw.size, offset=h.offset)
            flat = raw.view(dtype)
        if h.torch_code is not None:
            arr = flat.reshape(h.shape, order="F" if h.fortran else "C")
            # torch.from_numpy needs native order; the tensor is C-contiguous.
            native = arr.astype(dtype.newbyteorder("="), order="C", copy=True)
            return apply_map_location(torch.from_numpy(native), map_location)
        if h.fortran:  # exactly np.load's read_array
            return flat.reshape(h.shape[::-1]).transpose()
        return flat.reshape(h.shape)

    if ins.format == "numpy":
        return array(ins.array)
    # np.load's NpzFile: keys are member names without ".npy", each looked up through
    # `_files`, where a member's full name wins over another's stripped one (`w.npy` beside
    # `w.npy.npy`: the key "w.npy" reads the member w.npy).
    names = [name for name, _ in ins.members]
    keys = [name[:-4] if name.endswith(".npy") else name for name in names]
    lookup = dict(zip(keys, names, strict=True))
    lookup.update(zip(names, names, strict=True))
    members = dict(ins.members)

    def member(inner: Any) -> Any:
        # An object array (np.load(allow_pickle=True) unpickles it): its inspected pickle,
        # converted by the caller; the inspection already refused any unclean one.
        if inner.format.startswith("npy+"):
            if unpickled is None or inner.verdict != "clean":
                raise ValueError("object array was not inspected clean")
            return unpickled(inner.members[0][1])
        return array(inner.array)

    return {key: member(members[lookup[key]]) for key in keys}
