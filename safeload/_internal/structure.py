"""Rebuilding a checkpoint's structure from the converter's JSON description (parent side).

Only the kinds the converter writes are accepted; each is rebuilt with a plain constructor
(no pickle, no imports chosen by the data).
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import decimal
import fractions
import pathlib
import re
from typing import Any

import torch

from safeload._internal.caller_raised import MapLocationRaised
from safeload._internal.packed_quant import PACKED as _PACKED
from safeload._internal.packed_quant import packed_quantized as _packed_quantized
from safeload._internal.str8 import Str8DecodeError, decode_str8, numpy_str8_bytes
from safeload._internal.text import get_logger
from safeload._internal.torchmap import torch_dtype
from safeload.errors import MapLocationError, MapLocationTypeError

MAX_DEPTH = 220

_PATH_CLASSES: dict[str, type[pathlib.PurePath]] = {
    "Path": pathlib.Path, "PosixPath": pathlib.PurePosixPath,
    "WindowsPath": pathlib.PureWindowsPath,
    "PurePath": pathlib.PurePath, "PurePosixPath": pathlib.PurePosixPath,
    "PureWindowsPath": pathlib.PureWindowsPath,
}


class StructureError(ValueError):
    pass



class Rebuilder:
    def __init__(self, tensors: dict[str, torch.Tensor], map_tensor: Any) -> None:
        self.tensors = tensors
        self.map_tensor = map_tensor
        self.objects: dict[int, Any] = {}
        self.made: dict[str, torch.Tensor] = {}
        self.storages: dict[str, torch.Tensor] = {}  # storage key -> its bytes (uint8), on CPU
        self.filled: set[str] = set()  # entries whose values are in their storage already
        self.mapped: dict[str, torch.Tensor] = {}  # storage key -> storage after map_location

    def build(self, node: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH or not isinstance(node, dict):
            raise StructureError("malformed structure")
        t = node.get("t")
        if t == "ref":
            try:
                return self.objects[node["v"]]
            except (KeyError, TypeError):
                raise StructureError("dangling reference") from None
        value = self._build(t, node, depth)
        if "id" in node:
            self.objects[node["id"]] = value
        return value

    def _register(self, node: dict[str, Any], value: Any) -> Any:
        if "id" in node:
            self.objects[node["id"]] = value
        return value

    def _build(self, t: Any, n: dict[str, Any], depth: int) -> Any:
        v: Any = n.get("v")
        d = depth + 1
        if t == "const":
            if v is not None and not isinstance(v, bool):
                raise StructureError("bad constant")
            return v
        if t == "int":
            return int(v, 16) if n.get("b") == 16 else int(v)
        if t == "float":
            return float.fromhex(v)
        if t == "str":
            return str(v)
        if t == "bytes":
            return base64.b64decode(v)
        if t == "s8":
            return decode_str8(base64.b64decode(v))
        if t == "tuple":
            return tuple(self.build(x, d) for x in v)
        if t == "list":
            out_list: list[Any] = self._register(n, [])
            out_list.extend(self.build(x, d) for x in v)
            return out_list
        if t in ("set", "frozenset"):
            items = [self.build(x, d) for x in v]
            return set(items) if t == "set" else frozenset(items)
        if t in ("dict", "odict", "counter", "defaultdict", "attrdict"):
            empty: dict[Any, Any] = (
                collections.OrderedDict() if t == "odict" else collections.Counter()
                if t == "counter" else collections.defaultdict(_type_value(n["f"]))
                if t == "defaultdict" else _attribute_dict(n["f"])
                if t == "attrdict" else {})
            out: dict[Any, Any] = self._register(n, empty)
            for k, val in v:
                out[self.build(k, d)] = self.build(val, d)
            for name, val in n.get("attrs", []):
                if name != "_metadata":
                    raise StructureError(f"unexpected OrderedDict attribute {name!r}")
                out._metadata = self.build(val, d)  # type: ignore[attr-defined]
            return out
        if t == "tensor":
            return self._tensor(n)
        if t == "sparse":
            return self._sparse(n)
        if t == "storage":
            return self._storage(n)
        if t == "meta":
            return self._attributes(self._meta(n), n)
        if t == "type":
            return _type_value(v)
        if t == "omegaconf":
            return self._register(n, _omegaconf(n, self._content(n, d)))
        if t == "dtype":
            return torch_dtype(v)
        if t == "layout":
            if v not in _LAYOUT_NAMES:
                raise StructureError(f"unknown layout {v!r}")
            return torch.serialization._get_layout(v)  # type: ignore[no-untyped-call]
        if t == "qscheme":
            if v not in _QSCHEMES:
                raise StructureError(f"unknown quantization scheme {v!r}")
            return getattr(torch, v)
        if t == "size":
            return torch.Size(int(x) for x in v)
        if t == "device":
            return torch.device(v) if n.get("i") is None else torch.device(v, int(n["i"]))
        if t == "complex":
            return complex(float.fromhex(v[0]), float.fromhex(v[1]))
        if t == "bytearray":
            return bytearray(base64.b64decode(v))
        if t == "namespace":
            ns = self._register(n, argparse.Namespace())
            for name, val in v:
                setattr(ns, str(name), self.build(val, d))
            return ns
        if t in ("range", "slice"):
            if not isinstance(v, list) or not 1 <= len(v) <= 3:
                raise StructureError(f"malformed {t}")
            parts = [None if x is None else int(x) for x in v]
            return range(*parts) if t == "range" else slice(*parts)  # type: ignore[arg-type]
        if t == "decimal":
            return decimal.Decimal(str(v))
        if t == "fraction":
            return fractions.Fraction(str(v))
        if t == "torch_version":
            from torch.torch_version import TorchVersion

            if not isinstance(v, str):
                raise StructureError("a torch version must be a string")
            return TorchVersion(v)
        if t == "path":
            cls = _PATH_CLASSES.get(n.get("c", ""))
            if cls is None:
                raise StructureError("unknown path class")
            if cls is pathlib.PurePosixPath and n.get("c") == "PosixPath":
                return pathlib.PosixPath(*v) if hasattr(pathlib, "PosixPath") else cls(*v)
            return cls(*v)
        if t in ("datetime", "date", "time"):
            state = base64.b64decode(v)
            tz = n.get("tz")
            cls2: Any = {"datetime": datetime.datetime, "date": datetime.date,
                         "time": datetime.time}[t]
            # The pickle-state constructors validate the bytes themselves.
            return cls2(state) if tz is None or t == "date" else cls2(state, self.build(tz, d))
        if t == "timedelta":
            return datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
        if t == "timezone":
            offset = self.build(v, d)
            return datetime.timezone(offset) if n.get("n") is None else datetime.timezone(
                offset, n["n"])
        if t == "ndarray" and n.get("dt") == "O8":
            return self._object_array(n, d)
        if t in ("ndarray", "np_scalar", "np_dtype"):
            return self._numpy(t, n)
        raise StructureError(f"unknown structure kind {t!r}")

    def _content(self, n: dict[str, Any], d: int) -> Any:
        v = n.get("v")
        if v is None or isinstance(v, str):  # None, "???" (missing) or an interpolation
            return v
        if n.get("c") == "dict":
            return {self.build(k, d): self.build(x, d) for k, x in v}
        return [self.build(x, d) for x in v]

    def _quantized(self, n: dict[str, Any]) -> torch.Tensor:
        """int_repr bytes plus affine parameters, made quantized with torch's constructors."""
        q = n["q"]
        shape = tuple(int(x) for x in n["sh"])
        if n["dt"] in _PACKED:
            return self.map_tensor(_packed_quantized(  # type: ignore[no-any-return]
                self.tensors[n["k"]], n["dt"], shape, q, self.build), str(n.get("loc", "cpu")))
        ints = _as_dtype(self.tensors[n["k"]], _QUANT_REPR[n["dt"]]).reshape(shape)
        if q[0] == "per_tensor_affine":
            t = torch._make_per_tensor_quantized_tensor(ints, float.fromhex(q[1]), int(q[2]))
        elif q[0] in ("per_channel_affine", "per_channel_affine_float_qparams"):
            scales, zero_points = self.build(q[1], 1), self.build(q[2], 1)
            t = torch._make_per_channel_quantized_tensor(ints, scales, zero_points, int(q[3]))
        else:
            raise StructureError(f"unknown quantization scheme {q[0]!r}")
        if t.dtype != torch_dtype(n["dt"]):
            raise StructureError("quantized dtype does not match")
        return self.map_tensor(t, str(n.get("loc", "cpu")))  # type: ignore[no-any-return]

    def _sparse(self, n: dict[str, Any]) -> torch.Tensor:
        """A sparse tensor from its parts; invariants checked as torch.load checks them, so
        out-of-range indices are an error here, not memory corruption later."""
        parts = [self.build(x, 1) for x in n["v"]]
        size = tuple(int(x) for x in n["sz"])
        layout = n["l"]
        if layout == "torch.sparse_coo" and len(parts) == 2:
            t = torch.sparse_coo_tensor(parts[0], parts[1], size, check_invariants=True,
                                        is_coalesced=n.get("co"))
        elif layout in _COMPRESSED and len(parts) == 3:
            t = torch.sparse_compressed_tensor(parts[0], parts[1], parts[2], size,
                                               layout=_COMPRESSED[layout],
                                               check_invariants=True)
        else:
            raise StructureError(f"unknown sparse layout {layout!r}")
        return t

    def _tensor(self, n: dict[str, Any]) -> torch.Tensor:
        if "q" in n:
            return self._quantized(n)
        key = n["k"]
        if "sv" in n:
            base = self._view(n)
        elif key in self.made:
            # Another tensor object over the same bytes (tied weights in a state_dict): torch
            # gives two tensors sharing one storage, never one object under both names.
            base = _sharing(self.made[key])
        else:
            raw = self.tensors[key]
            dtype = torch_dtype(n["dt"])
            shape = tuple(int(x) for x in n["sh"])
            if raw.dtype != dtype:  # stored as raw bytes (no safetensors dtype)
                raw = _as_dtype(raw, dtype).reshape(shape)
            base = self.map_tensor(raw, str(n.get("loc", "cpu")))
            self.made[key] = base
        if "b" in n:
            base = _with_bits(_sharing(base), n["b"])
        return self._attributes(base, n)

    def _meta(self, n: dict[str, Any]) -> torch.Tensor:
        """A meta-device tensor (no data): torch.load keeps it on `meta` whatever map_location."""
        return torch.empty_strided(tuple(int(x) for x in n["sh"]), tuple(int(x) for x in n["st"]),
                                   dtype=torch_dtype(n["dt"]), device="meta")

    def _attributes(self, base: torch.Tensor, n: dict[str, Any]) -> torch.Tensor:
        """Parameter, requires_grad and `__dict__` attributes, as torch's rebuild sets them."""
        t = base
        if n.get("p"):
            t = torch.nn.Parameter(t, requires_grad=bool(n.get("g")))
        elif n.get("g"):
            t = t.detach().requires_grad_(True)
        for name, value in n.get("a", []):
            # As torch's _set_obj_state: plain attributes only, never one of Tensor's own
            # (a property setter such as `data`, `grad` or `__class__`).
            if not (isinstance(name, str) and name.isidentifier() and not name.startswith("__")
                    and not hasattr(type(t), name)):
                raise StructureError(f"tensor attribute {name!r} is not allowed")
            setattr(t, name, self.build(value, 1))
        return t

    def fill_views(self, node: Any) -> None:
        """Before building: every storage that views share, with each view's values written
        through it, so each storage is mapped once (as torch.load maps storages, then builds
        views over them). Bytes of a storage no tensor covers are zeros."""
        if isinstance(node, list):
            for x in node:
                self.fill_views(x)
            return
        if not isinstance(node, dict):
            return
        if node.get("t") == "tensor" and "sv" in node:
            skey, _, _, nbytes = node["sv"]
            if not isinstance(skey, str) or not isinstance(nbytes, int) or nbytes < 0:
                raise StructureError("bad storage view")
            storage = self.storages.get(skey)
            if storage is None:
                storage = self.storages[skey] = torch.zeros(nbytes, dtype=torch.uint8)
            elif storage.numel() != nbytes:
                raise StructureError("one storage with two sizes")
            key = node["k"]
            if key not in self.filled:
                dtype = torch_dtype(node["dt"])
                view = _view_of(storage, node, dtype)
                raw = self.tensors[key]
                if raw.dtype != dtype:  # stored as raw bytes (no safetensors dtype)
                    raw = _as_dtype(raw, dtype)
                _fill(view, raw.reshape(view.shape))
                self.filled.add(key)
        if node.get("t") == "storage":
            self._fill_storage(node)
        for v in node.values():
            if isinstance(v, (list, dict)):
                self.fill_views(v)

    def _fill_storage(self, node: dict[str, Any]) -> None:
        """A storage saved as a value: its whole bytes, which views of it share."""
        skey, nbytes = node["sv"]
        if not isinstance(skey, str) or not isinstance(nbytes, int) or nbytes < 0:
            raise StructureError("bad storage")
        storage = self.storages.get(skey)
        if storage is None:
            storage = self.storages[skey] = torch.zeros(nbytes, dtype=torch.uint8)
        elif storage.numel() != nbytes:
            raise StructureError("one storage with two sizes")
        key = node["k"]
        if key not in self.filled:
            raw = self.tensors[key]
            if raw.dtype != torch.uint8 or raw.shape != (nbytes,):
                raise StructureError("a storage's bytes do not match its size")
            storage.copy_(raw)
            self.filled.add(key)

    def _mapped(self, skey: Any, location: str) -> torch.Tensor:
        """A shared storage's bytes after map_location, mapped once."""
        mapped = self.mapped.get(skey)
        if mapped is None:
            if skey not in self.storages:
                raise StructureError("storage view before its storage")
            mapped = self.mapped[skey] = self.map_tensor(self.storages[skey], location)
        return mapped

    def _view(self, n: dict[str, Any]) -> torch.Tensor:
        """A tensor over its storage (mapped once), shared with every other view of it."""
        mapped = self._mapped(n["sv"][0], str(n.get("loc", "cpu")))
        return _view_of(mapped, n, torch_dtype(n["dt"]))

    def _storage(self, n: dict[str, Any]) -> Any:
        """torch.load gives a TypedStorage (of uint8 for an untyped one) over the bytes."""
        mapped = self._mapped(n["sv"][0], str(n.get("loc", "cpu")))
        return torch.storage.TypedStorage(  # type: ignore[no-untyped-call]
            wrap_storage=mapped.untyped_storage(), dtype=torch_dtype(n["dt"]), _internal=True)

    def _object_array(self, n: dict[str, Any], d: int) -> Any:
        """An object array as numpy's setstate builds it: elements listed in C order, the
        memory order from the fortran flag."""
        import numpy as np

        shape = tuple(int(x) for x in n["sh"])
        values = n.get("v")
        if not values and 0 in shape:
            # numpy's setstate gives an empty array C (or, with the fortran flag, F) strides,
            # counting a 0 dimension as 1.
            from numpy.lib.stride_tricks import as_strided

            strides: list[int] = []
            step = 8
            fortran = bool(n.get("fortran"))
            for dim in (shape if fortran else reversed(shape)):
                strides.append(step)
                step *= max(dim, 1)
            order = strides if fortran else strides[::-1]
            return as_strided(np.empty(0, dtype=object), shape, tuple(order), writeable=True)
        flat = np.empty(len(values) if isinstance(values, list) else -1, dtype=object)
        for i, x in enumerate(values or ()):
            flat[i] = self.build(x, d)  # one element each: a list stays a list
        arr = np.empty(shape, dtype=object, order="F" if n.get("fortran") else "C")
        arr[...] = flat.reshape(shape)
        return arr

    def _numpy(self, t: str, n: dict[str, Any]) -> Any:
        import numpy as np

        bo = n.get("bo", "=")
        dtype = np.dtype((bo if bo in "<>" else "=") + n["dt"])
        if t == "np_dtype":  # a dtype as a value (dtype('O') included) holds no data
            return dtype
        if dtype.hasobject or dtype.names is not None:  # raw bytes of plain-data codes only
            raise StructureError(f"unexpected NumPy dtype {n['dt']!r}")
        native = dtype.newbyteorder("=")  # NumPy's own unpickling returns native byte order
        if t == "np_scalar":
            data = base64.b64decode(n["v"])
            data = numpy_str8_bytes(data) if n.get("s8") else data
            return np.frombuffer(data, dtype=dtype).astype(native)[0]
        raw = self.tensors[n["k"]].numpy().tobytes()
        raw = numpy_str8_bytes(raw) if n.get("s8") else raw
        arr = np.frombuffer(raw, dtype=dtype).astype(native)
        shape = tuple(int(x) for x in n["sh"])
        return arr.reshape(shape, order="F" if n.get("fortran") else "C")


_TYPE_VALUES: dict[str, Any] = {
    f"builtins.{t.__name__}": t
    for t in (int, float, str, bool, list, dict, tuple, set, frozenset, bytes, bytearray, complex,
              range, slice)
} | {"typing.Any": Any}


_ATTRIBUTE_DICTS = frozenset({
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning_lite.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict"})
_warned_attribute_dict = False


def _attribute_dict(name: Any) -> dict[Any, Any]:
    """An empty Lightning `AttributeDict` of the class the checkpoint names, when that package
    is installed (the class adds attribute access only); else a plain dict, with one warning."""
    global _warned_attribute_dict
    if name not in _ATTRIBUTE_DICTS:
        raise StructureError(f"unexpected AttributeDict class {name!r}")
    module, _, cls_name = str(name).rpartition(".")
    try:
        import importlib

        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError):
        if not _warned_attribute_dict:
            _warned_attribute_dict = True
            get_logger("safeload").warning(
                "%s is not installed: Lightning AttributeDicts in the checkpoint come back as "
                "plain dicts", module.split(".")[0])
        return {}
    if not (isinstance(cls, type) and issubclass(cls, dict)):
        raise StructureError(f"{name} is not a dict class")
    value: dict[Any, Any] = cls()
    return value


_OMEGACONF_TYPES = {"omegaconf.dictconfig.DictConfig": ("DictConfig", dict),
                    "omegaconf.listconfig.ListConfig": ("ListConfig", list)}


def _type_value(name: Any) -> Any:
    if name is None:
        return None
    if isinstance(name, str) and name in _OMEGACONF_TYPES:
        # The class itself (a Lightning checkpoint's `hparams_type`); without omegaconf, the
        # plain type its containers come back as.
        cls_name, plain = _OMEGACONF_TYPES[name]
        try:
            import omegaconf
        except ImportError:
            return plain
        return getattr(omegaconf, cls_name)
    try:
        return _TYPE_VALUES[name]
    except (KeyError, TypeError):
        raise StructureError(f"unknown type value {name!r}") from None


_QUANT_REPR = {"quint8": torch.uint8, "qint8": torch.int8, "qint32": torch.int32}
_QSCHEMES = frozenset({"per_tensor_affine", "per_channel_affine",
                       "per_channel_affine_float_qparams"})
_COMPRESSED = {"torch.sparse_csr": torch.sparse_csr, "torch.sparse_csc": torch.sparse_csc,
               "torch.sparse_bsr": torch.sparse_bsr, "torch.sparse_bsc": torch.sparse_bsc}

_warned_omegaconf = False


def _omegaconf(n: dict[str, Any], content: Any) -> Any:
    """An omegaconf container rebuilt from plain content with omegaconf's own constructor, or
    the plain content (one warning) where omegaconf is not installed."""
    global _warned_omegaconf
    try:
        from omegaconf import DictConfig, ListConfig
    except ImportError:
        if not _warned_omegaconf:
            _warned_omegaconf = True
            get_logger("safeload").warning(
                "omegaconf is not installed: omegaconf containers in the checkpoint come back as "
                "plain dicts and lists (pip install omegaconf to get DictConfig/ListConfig)")
        return content
    # An unset flag (None) inherits from the parent: leaving it out is the same.
    flags: dict[str, bool] = {str(k): v for k, v in n.get("flags") or [] if isinstance(v, bool)}
    cls = DictConfig if n.get("c") == "dict" else ListConfig
    return cls(content=_inert(content, (DictConfig, ListConfig)), flags=flags or None)


# `${a.b}`: a reference to another node of the same config (no resolver runs); a live `${`
# is one after an even number of backslashes (omegaconf's `\${` is a literal).
_NODE_REFERENCE = re.compile(r"(?<!\\)(?:\\\\)*\$\{[\w.\[\]\- ]*\}")
_LIVE = re.compile(r"(?<!\\)((?:\\\\)*)\$\{")


def _inert(value: Any, built: tuple[type, ...]) -> Any:
    """The checkpoint's strings, with every resolver interpolation made literal text (review
    S: `${oc.env:TOKEN}` copied a secret into the config, an application's `eval` resolver ran
    the file's code on access). References to other nodes stay live: they call nothing."""
    if isinstance(value, str):
        rest = value
        while (shorter := _NODE_REFERENCE.sub("", rest)) != rest:
            rest = shorter  # innermost references first: `${a.${b}}`
        if not _LIVE.search(rest):
            return value
        _warn_resolvers()
        return _LIVE.sub(lambda m: "\\" * (len(m[1]) + 1) + "${", value)  # k -> k+1
    if isinstance(value, built):  # built from its own node, made inert there
        return value
    if isinstance(value, dict):
        return {k: _inert(v, built) for k, v in value.items()}
    if isinstance(value, list):
        return [_inert(v, built) for v in value]
    return value


_warned_resolvers = False


def _warn_resolvers() -> None:
    global _warned_resolvers
    if not _warned_resolvers:
        _warned_resolvers = True
        get_logger("safeload").warning(
            "omegaconf values in the checkpoint use resolvers (`${name:...}`, such as "
            "oc.env): they come back as literal text, so no resolver runs on the file's "
            "arguments (references to other config nodes still resolve)")


def _view_of(storage: torch.Tensor, n: dict[str, Any], dtype: torch.dtype) -> torch.Tensor:
    """The tensor node `n` describes, over `storage` (uint8): torch's own bounds checks."""
    _, offset, stride, _ = n["sv"]
    shape = tuple(int(x) for x in n["sh"])
    out = torch.empty((0,), dtype=dtype, device=storage.device)
    return out.set_(storage.untyped_storage(), int(offset), shape,
                    tuple(int(x) for x in stride))


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _fill(view: torch.Tensor, values: torch.Tensor) -> None:
    """Write `values` through `view`; a view whose elements overlap (`expand`: a stride of
    0) is written element by element, by storage index (the repeated values agree). Bytes
    are moved as integers of the element's size: every dtype, float8 and bool included."""
    same_size = _INT_OF_SIZE.get(view.element_size())
    if same_size is not None and view.dtype != same_size:
        view, values = view.view(same_size), values.view(same_size)
    if torch._debug_has_internal_overlap(view) != 1:  # 1: YES; 2: too hard to tell, no error
        view.copy_(values)
        return
    flat = torch.empty((0,), dtype=view.dtype).set_(view.untyped_storage())
    extent = view.storage_offset() + sum((d - 1) * st for d, st in zip(
        view.shape, view.stride(), strict=True) if d > 0)
    if view.numel() == 0:
        return
    if extent >= flat.numel():  # as_strided does not check: never index past the storage
        raise StructureError("a view reaches past its storage")
    index = torch.arange(flat.numel()).as_strided(view.shape, view.stride(),
                                                  view.storage_offset())
    flat[index.reshape(-1)] = values.reshape(-1)


_LAYOUT_NAMES = frozenset({"torch.strided", "torch.sparse_coo", "torch.sparse_csr",
                           "torch.sparse_csc", "torch.sparse_bsr", "torch.sparse_bsc",
                           "torch._mkldnn", "torch.jagged"})


def _as_dtype(raw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Raw bytes (no safetensors dtype) viewed as `dtype`, aligned for it: the converted file
    aligns entries to 8 bytes, and a complex128 view at 8 mod 16 crashed torch's strided copy
    with SIGSEGV (review U). A misaligned entry is copied first (a fresh, aligned buffer)."""
    align = torch.empty((), dtype=dtype).element_size()
    if raw.numel() and raw.data_ptr() % align:
        raw = raw.clone()
    return raw.view(dtype)


def _with_bits(t: torch.Tensor, bits: Any) -> torch.Tensor:
    """The conj/neg bits torch's rebuild sets from the saved metadata (`t` is a fresh object,
    so another tensor over the same storage keeps its own bits)."""
    if not (isinstance(bits, list) and bits and set(bits) <= {"conj", "neg"}
            and len(set(bits)) == len(bits)):
        raise StructureError(f"bad tensor bits {bits!r}")
    if "conj" in bits and not t.is_complex():
        raise StructureError("a conj bit on a tensor that is not complex")
    torch._utils.set_tensor_metadata(t, dict.fromkeys(bits, True))  # type: ignore[no-untyped-call]
    return t


def _sharing(base: torch.Tensor) -> torch.Tensor:
    """A new tensor object over `base`'s storage, as torch's `_rebuild_tensor` makes one."""
    out = torch.empty((0,), dtype=base.dtype, device=base.device)
    return out.set_(base.untyped_storage(), base.storage_offset(), base.size(), base.stride())


def rebuild(structure: Any, tensors: dict[str, torch.Tensor], map_tensor: Any, *,
            views: bool = True) -> Any:
    """`views`: the structure may hold storage views ("sv"); False skips looking for them."""
    try:
        builder = Rebuilder(tensors, map_tensor)
        if views:
            builder.fill_views(structure)
        return builder.build(structure)
    except (MapLocationError, MapLocationTypeError, MapLocationRaised, Str8DecodeError):
        raise  # the caller's map_location or encoding, not the file: torch raises these too
    except (KeyError, TypeError, ValueError, RecursionError, IndexError, RuntimeError,
            OverflowError) as exc:
        raise StructureError(f"converted file has a malformed structure: {exc}") from None
