"""From a symbolic checkpoint to a safetensors plan: which bytes go where, plus the structure.

Tensors become safetensors entries named by their path in the checkpoint ("model.layer.weight";
a plain state dict keeps its own keys). Views that are identical (same storage, offset, size,
stride) are written once and the duplicates become aliases. Everything else (containers, ints,
strings, `torch.Size`, NumPy values, paths, datetimes, `argparse.Namespace`) is described by a
small JSON "structure" kept in the file's metadata, so the loader rebuilds exactly what
`torch.load` would have returned. Object identity (the pickle memo) is kept with references.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from safeload_conversion.pickle_vm import (
    PACKED_PER_BYTE,
    Global,
    Obj,
    Opaque,
    SDict,
    SList,
    SSet,
    StorageRef,
    Str8,
    TensorRef,
    allowlist,
    is_type_value,
    vm_itemsize,
)

MAX_DEPTH = 200
MAX_NODES = 5_000_000
# Strings and bytes written into the structure record, counted each time they are written: one
# memoised 64 KiB string referenced 200,000 times is 13 GB of record (review U: 4 GB in the
# child, then a failure with no reason given).
MAX_RECORD_TEXT = 256 << 20
_DEC_MAX = 10 ** 4000  # below sys.int_info.default_max_str_digits (4300)


class PlanError(Exception):
    """The checkpoint cannot be represented faithfully; the message names the value and why."""


@dataclass
class Entry:
    name: str
    dtype: str  # safetensors code
    shape: tuple[int, ...]
    nbytes: int
    # Where the bytes come from: ("span", file_offset) for a contiguous range of the input,
    # ("strided", storage_file_offset, itemsize, offset, size, stride), or ("bytes", data).
    source: tuple[Any, ...]


@dataclass
class Plan:
    entries: list[Entry] = field(default_factory=list)
    structure: Any = None


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(size):
        strides.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(strides))


def _numel(size: tuple[int, ...]) -> int:
    n = 1
    for d in size:
        n *= d
    return n


class _Planner:
    def __init__(self, spans: dict[str, tuple[int, int]]) -> None:
        self.spans = spans
        self.plan = Plan()
        self.names: set[str] = set()
        self.views: dict[tuple[Any, ...], str] = {}
        self.ids: dict[int, int] = {}
        self.active: set[int] = set()
        self.nodes = 0
        self.text = 0  # bytes of strings and bytes values written so far
        self.keep: list[Any] = []  # keeps encoded objects alive so id() stays unique
        self.by_storage: dict[str, list[tuple[dict[str, Any], TensorRef]]] = {}
        self.bare: dict[str, str] = {}  # storage key -> entry of a storage saved as a value

    def name_for(self, path: list[str]) -> str:
        # A key with a lone surrogate is a Python string, never a safetensors name: escaped.
        base = (".".join(path) or "tensor").encode("utf-8", "backslashreplace").decode()
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}#{n}"
        self.names.add(name)
        return name

    def _count_text(self, value: str | bytes | memoryview | Str8, path: list[str]) -> None:
        self.text += len(value.raw) if isinstance(value, Str8) else len(value)
        if self.text > MAX_RECORD_TEXT:
            raise PlanError(
                f"the non-tensor values hold more than {MAX_RECORD_TEXT >> 20} MiB of strings "
                f"and bytes (each reference to a shared one counts; at {'.'.join(path)!r}): "
                "too large for the structure record; save such data outside the checkpoint")

    def encode(self, value: Any, path: list[str], depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise PlanError(f"more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise PlanError(f"nesting deeper than {MAX_DEPTH} at {'.'.join(path)!r}")
        if value is None or isinstance(value, bool):
            return {"t": "const", "v": value}
        if isinstance(value, int):
            # hex has no digit limit (str() of an int over 4300 digits raises: review U)
            return {"t": "int", "v": str(value)} if -_DEC_MAX < value < _DEC_MAX else {
                "t": "int", "v": ("-" if value < 0 else "") + format(abs(value), "x"), "b": 16}
        if isinstance(value, float) and value == value:
            return {"t": "float", "v": value.hex()}
        if isinstance(value, (str, bytes, memoryview, Str8)):
            self._count_text(value, path)
        if isinstance(value, str):
            return {"t": "str", "v": value}
        if isinstance(value, (bytes, memoryview)):
            return {"t": "bytes", "v": base64.b64encode(bytes(value)).decode()}
        if isinstance(value, Str8):  # decoded by the loader with the caller's encoding
            return {"t": "s8", "v": base64.b64encode(value.raw).decode()}
        if isinstance(value, Global):
            if value.rule == "dtype":
                return {"t": "dtype", "v": value.params["dtype"]}
            if value.rule == "qscheme":  # `torch.per_tensor_affine` as a value (review O)
                return {"t": "qscheme", "v": value.qualname.rpartition(".")[2]}
            if is_type_value(value) or (value.rule == "omegaconf"
                                        and value.params.get("role") == "container"):
                # Lightning stores `hparams_type`: the omegaconf container class, as a value.
                return {"t": "type", "v": value.qualname}
            raise PlanError(f"{value.qualname} at {'.'.join(path)!r} is not a value")
        if isinstance(value, Opaque):
            raise PlanError(f"refused value at {'.'.join(path)!r}")
        # Objects with identity: keep references so aliasing survives.
        key = id(value)
        if key in self.active:
            # A list, dict or Namespace exists before its items are rebuilt (the parent
            # registers it first), so a cycle through one is a reference (torch.load returns
            # `d["self"] is d`); through anything else (a tuple) it cannot be rebuilt.
            if isinstance(value, (SList, SDict)) or (isinstance(value, Obj)
                                                     and value.kind == "namespace"):
                return {"t": "ref", "v": self.ids[key]}
            raise PlanError(f"reference cycle at {'.'.join(path)!r}")
        if key in self.ids:
            return {"t": "ref", "v": self.ids[key]}
        ident = len(self.ids)
        self.ids[key] = ident
        self.keep.append(value)
        self.active.add(key)
        try:
            body = self._encode_object(value, path, depth)
        finally:
            self.active.discard(key)
        body["id"] = ident
        return body

    def _encode_object(self, value: Any, path: list[str], depth: int) -> dict[str, Any]:
        # Tuples go through identity too: a tuple DAG (one tuple referenced from many places
        # via the memo) is then written once, not once per path (exponential).
        if isinstance(value, float):
            # A NaN: only identity makes it one dict key or set item (`d[x] = ...` twice with
            # one memoised NaN is one entry; review N), so it keeps its identity.
            return {"t": "float", "v": value.hex()}
        if isinstance(value, tuple):
            return {"t": "tuple", "v": [self.encode(x, [*path, str(i)], depth + 1)
                                        for i, x in enumerate(value)]}
        if isinstance(value, SList):
            return {"t": "list", "v": [self.encode(x, [*path, str(i)], depth + 1)
                                       for i, x in enumerate(value.items)]}
        if isinstance(value, SSet):
            return {"t": "frozenset" if value.frozen else "set",
                    "v": [self.encode(x, [*path, str(i)], depth + 1)
                          for i, x in enumerate(value.items)]}
        if isinstance(value, SDict):
            items = []
            for k, v in value.items:
                label = k if isinstance(k, str) else str(k) if isinstance(k, int) else "key"
                items.append([self.encode(k, [*path, "key"], depth + 1),
                              self.encode(v, [*path, label], depth + 1)])
            kind = value.kind if value.kind in ("counter", "defaultdict", "attrdict") else (
                "odict" if value.ordered else "dict")
            out: dict[str, Any] = {"t": kind, "v": items}
            if value.kind in ("defaultdict", "attrdict"):
                out["f"] = None if value.factory is None else value.factory.qualname
            if value.attrs:
                out["attrs"] = [[k, self.encode(v, [*path, k], depth + 1)]
                                for k, v in value.attrs.items()]
            return out
        if isinstance(value, TensorRef):
            return self._tensor(value, path, depth)
        if isinstance(value, StorageRef):
            return self._storage(value, path)
        if isinstance(value, Obj):
            return self._obj(value, path, depth)
        raise PlanError(f"unsupported value {type(value).__name__} at {'.'.join(path)!r}")

    def _tensor(self, t: TensorRef, path: list[str], depth: int) -> dict[str, Any]:
        view = (t.storage.key, t.offset, t.size, t.stride, t.dtype)
        name = self.views.get(view)
        if name is None:
            name = self.name_for(path)
            self.views[view] = name
            self._add_entry(name, t)
        out = {"t": "tensor", "k": name, "dt": t.dtype, "sh": list(t.size),
               "g": t.requires_grad, "p": t.parameter, "loc": t.storage.location}
        if t.bits:
            out["b"] = list(t.bits)
        if t.attrs:
            out["a"] = [[a, self.encode(v, [*path, a], depth + 1)] for a, v in t.attrs]
        if t.quant is None:
            self.by_storage.setdefault(t.storage.key, []).append((out, t))
        if t.quant is not None:
            scheme = t.quant[0]
            if scheme == "per_tensor_affine":
                out["q"] = [scheme, t.quant[1].hex(), str(t.quant[2])]
            else:
                out["q"] = [scheme, self.encode(t.quant[1], [*path, "scales"], depth + 1),
                            self.encode(t.quant[2], [*path, "zero_points"], depth + 1),
                            t.quant[3]]
        return out

    def _storage(self, s: StorageRef, path: list[str]) -> dict[str, Any]:
        """A storage saved as a value (`torch.save({"s": t.untyped_storage()})`): its bytes as
        one U8 entry; tensors over the same storage become views of it (`record_views`), so
        the loader gives them one storage, as torch.load does."""
        nbytes = s.numel * vm_itemsize(s.dtype)
        name = self.bare.get(s.key)
        if name is None:
            name = self.bare[s.key] = self.name_for(path)
            span = self.spans.get(s.key)
            if span is None or span[1] != nbytes:
                raise PlanError(f"storage {s.key!r} at {'.'.join(path)!r} has no bytes")
            source: tuple[Any, ...] = ("span", span[0]) if nbytes else ("bytes", b"")
            self.plan.entries.append(Entry(name, "U8", (nbytes,), nbytes, source))
        return {"t": "storage", "k": name, "dt": s.dtype, "loc": s.location,
                "sv": [s.key, nbytes]}

    def _add_entry(self, name: str, t: TensorRef) -> None:
        itemsize = vm_itemsize(t.dtype)
        count = _numel(t.size)
        nbytes = count * itemsize
        if t.dtype in PACKED_PER_BYTE:
            # Contiguous from offset 0 (checked): the whole storage, as torch.load gives it
            # (torch allocates these a byte more than the values fill).
            nbytes = count = t.storage.numel * vm_itemsize(t.storage.dtype)
        code = allowlist().dtypes[t.dtype]["safetensors"]
        dtype, shape = (code, t.size) if code else ("U8", (nbytes,))
        span = self.spans.get(t.storage.key)
        if span is None:
            raise PlanError(f"storage {t.storage.key!r} of {name!r} has no bytes")
        start = span[0]
        if count == 0:
            source: tuple[Any, ...] = ("bytes", b"")
        elif t.stride == _contiguous_strides(t.size) or count == 1:
            source = ("span", start + t.offset * itemsize)
        else:
            source = ("strided", start, itemsize, t.offset, t.size, t.stride)
        self.plan.entries.append(Entry(name, dtype, tuple(shape), nbytes, source))

    def _obj(self, o: Obj, path: list[str], depth: int) -> dict[str, Any]:
        f = o.fields
        k = o.kind
        if k == "torch_size":
            return {"t": "size", "v": list(f["dims"])}
        if k == "layout":  # a value (`t.layout`); inside a sparse rebuild it is a field
            return {"t": "layout", "v": f["name"]}
        if k == "torch_device":
            return {"t": "device", "v": f["type"], "i": f["index"]}
        if k == "complex":
            return {"t": "complex", "v": [f["real"].hex(), f["imag"].hex()]}
        if k == "bytearray":
            return {"t": "bytearray", "v": base64.b64encode(f["data"]).decode()}
        if k == "namespace":
            attrs = f["attrs"]
            return {"t": "namespace", "v": [[a, self.encode(v, [*path, a], depth + 1)]
                                            for a, v in attrs.items]}
        if k == "path":
            return {"t": "path", "c": f["class"], "v": f["parts"]}
        if k == "torch_version":
            return {"t": "torch_version", "v": f["v"]}
        if k in ("decimal", "fraction"):
            return {"t": k, "v": f["v"]}
        if k in ("range", "slice"):
            return {"t": k, "v": [None if x is None else str(x) for x in f["v"]]}
        if k in ("datetime", "date", "time"):
            tz = f["tz"]
            return {"t": k, "v": base64.b64encode(f["state"]).decode(),
                    "tz": None if tz is None else self.encode(tz, [*path, "tz"], depth + 1)}
        if k == "timedelta":
            return {"t": "timedelta", "v": [f["days"], f["seconds"], f["us"]]}
        if k == "timezone":
            return {"t": "timezone", "v": self.encode(f["offset"], path, depth + 1),
                    "n": f["name"]}
        if k == "np_scalar":
            dt = f["dtype"].fields
            out = {"t": "np_scalar", "dt": dt["code"], "bo": dt["byteorder"],
                   "v": base64.b64encode(f["data"]).decode()}
            return out | ({"s8": True} if f.get("s8") else {})
        if k == "np_dtype":
            return {"t": "np_dtype", "dt": f["code"], "bo": f["byteorder"]}
        if k == "meta_tensor":  # no bytes: the parent makes it on the meta device
            out = {"t": "meta", "dt": f["dtype"], "sh": list(f["size"]), "st": list(f["stride"]),
                   "g": f["requires_grad"], "p": f["parameter"]}
            if f["attrs"]:
                out["a"] = [[a, self.encode(v, [*path, a], depth + 1)] for a, v in f["attrs"]]
            return out
        if k == "omegaconf":
            return self._omegaconf(o, path, depth)
        if k == "sparse":
            return {"t": "sparse", "l": f["layout"], "sz": list(f["size"]), "co": f["coalesced"],
                    "v": [self.encode(part, [*path, str(i)], depth + 1)
                          for i, part in enumerate(f["parts"])]}
        if k == "ndarray":
            if not f.get("built"):
                raise PlanError(f"incomplete NumPy array at {'.'.join(path)!r}")
            dt = f["dtype"].fields
            if f.get("objects") is not None:  # an object array: its elements, as values
                return {"t": "ndarray", "dt": dt["code"], "bo": "|", "sh": list(f["shape"]),
                        "fortran": f["fortran"],
                        "v": [self.encode(x, [*path, str(i)], depth + 1)
                              for i, x in enumerate(f["objects"])]}
            name = self.name_for(path)
            data = bytes(f["data"])
            self.plan.entries.append(Entry(name, "U8", (len(data),), len(data), ("bytes", data)))
            node = {"t": "ndarray", "k": name, "dt": dt["code"], "bo": dt["byteorder"],
                    "sh": list(f["shape"]), "fortran": f["fortran"]}
            return node | ({"s8": True} if f.get("s8") else {})
        raise PlanError(f"unsupported {k} at {'.'.join(path)!r}")


    def _omegaconf(self, o: Obj, path: list[str], depth: int) -> dict[str, Any]:
        """An omegaconf node as its plain content (parents and metadata are not kept: the
        parent process rebuilds the container from this, with its flags)."""
        f = o.fields
        if not f["built"]:
            raise PlanError(f"incomplete omegaconf object at {'.'.join(path)!r}")
        if f["role"] == "node":
            value: dict[str, Any] = self.encode(f["val"], path, depth + 1)
            return value
        if f["role"] != "container":
            raise PlanError(f"omegaconf metadata as a value at {'.'.join(path)!r}")
        content = f["content"]
        out: dict[str, Any] = {"t": "omegaconf", "c": "dict" if f["cls"] == "DictConfig"
                               else "list"}
        flags = f["flags"]
        if flags is not None:
            out["flags"] = [[k, v] for k, v in flags.items]
        if content is None or isinstance(content, str):
            out["v"] = content
        elif isinstance(content, SDict):
            out["v"] = [[self.encode(k, [*path, "key"], depth + 1),
                         self.encode(v, [*path, str(k)], depth + 1)] for k, v in content.items]
        else:
            out["v"] = [self.encode(v, [*path, str(i)], depth + 1)
                        for i, v in enumerate(content.items)]
        return out


    def record_views(self) -> None:
        """Where a storage is more than one plain tensor (views of it, a non-contiguous or
        offset tensor), each tensor's node records its place in the storage, "sv": [storage,
        offset, stride, storage bytes], so the loader rebuilds the views over one storage. The
        entries stay each tensor's own values, as `load_file` reads them."""
        for refs in self.by_storage.values():
            views = {(t.offset, t.size, t.stride, t.dtype) for _, t in refs}
            t0 = refs[0][1]
            nbytes = t0.storage.numel * vm_itemsize(t0.storage.dtype)
            if t0.storage.key not in self.bare and len(views) == 1 and t0.offset == 0 and (
                    t0.stride == _contiguous_strides(t0.size) or _numel(t0.size) <= 1) and \
                    _numel(t0.size) * vm_itemsize(t0.dtype) == nbytes:
                continue  # the whole storage, once: the entry is the storage
            for out, t in refs:
                out["sv"] = [t.storage.key, t.offset, list(t.stride), nbytes]


def make_plan(root: Any, spans: dict[str, tuple[int, int]]) -> Plan:
    """Plan the conversion of a symbolic checkpoint (see module docstring)."""
    planner = _Planner(spans)
    # A top-level state dict keeps its own keys as tensor names (what transformers expects).
    planner.plan.structure = planner.encode(root, [], 0)
    planner.record_views()
    return planner.plan

