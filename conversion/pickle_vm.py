"""A symbolic, allowlisted pickle machine: it parses every opcode exactly and calls nothing.

The same machine serves two masters. The inspector (in `safeload`, the parent process) runs it to
decide whether a pickle stream is safe; the sandboxed converter runs it to learn the structure of
a checkpoint (names, dtypes, shapes, storage offsets) without importing torch. Both therefore
apply the very same rules, read from `allowlist.json`.

What it models, exactly as CPython's C unpickler (what `torch.load` uses) would act:
- the stack, split into segments by MARK (popping below the current mark is an error, as in C);
- the memo (PUT/BINPUT/LONG_BINPUT at explicit indices, MEMOIZE at `len(memo)`, GET of a missing
  index is an error);
- every import (GLOBAL, STACK_GLOBAL, INST, EXT*) and every call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ,
  INST, BUILD through `__setstate__`, APPEND/SETITEM through methods of non-containers,
  persistent ids).
Where CPython's two unpicklers (C and pure Python) disagree, or a construct is legal but never
written by torch, numpy or the standard pickler (frames that straddle opcodes, leftovers on the
stack at STOP), the machine refuses: stricter than pickle, never looser.

Values are symbolic. A global is a `Global`; the result of an allowed call is a typed record
(`TensorRef`, `Obj`, ...); a refused operation records a `Finding` and leaves an `Opaque` on the
stack so that the rest of the stream is still read and every finding is reported.
"""

from __future__ import annotations

import codecs
import json
import math
import mmap
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeload_conversion.budget import CHARGE_EVERY, OPS_ENV, current, env_int

# Limits. Real checkpoints stay far below these; an input past them is refused, never truncated.
MAX_FINDINGS = 200  # per stream; the rest are counted, not listed
MAX_LINE = 1 << 16  # text-mode opcode arguments (GLOBAL names, INT literals; not strings)
MAX_LONG_BYTES = 1 << 12  # LONG1/LONG4 payloads: 32768-bit integers are plenty
# One string value: the structure record holds at most 256 MiB of text (plan.MAX_RECORD_TEXT),
# so a longer one could never be converted; refused before it is built (review U: one 1 GiB
# string from a 1 MB gzip took 3.2 GB to inspect).
MAX_STR_BYTES = 256 << 20
MAX_STREAM = 1 << 40  # nothing larger than a terabyte is a pickle we read
# Opcodes per stream. A data.pkl for 10,000 tensors has about 300,000; past this bound the
# stream is refused rather than walked for minutes (a denial of service made of tiny opcodes).
# Raising the whole-file budget (`budget.OPS_ENV`) raises this bound with it, in the child too.
MAX_OPS = max(20_000_000, env_int(OPS_ENV, 0))

_HIGHEST_PROTOCOL = 5


# ------------------------------------------------------------------------------------------
# Findings and symbolic values


@dataclass(frozen=True)
class Finding:
    """One reason a stream is unsafe. Strings here are attacker-chosen: escape before display."""

    code: str
    message: str
    offset: int | None = None
    opcode: str | None = None
    global_name: str | None = None
    member: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "member": self.member,
            "offset": self.offset,
            "opcode": self.opcode,
            "global": self.global_name,
        }


class MalformedPickle(Exception):
    """The stream is not a pickle that parses exactly. Always a refusal."""

    def __init__(self, message: str, offset: int, opcode: str | None = None) -> None:
        super().__init__(message)
        self.offset, self.opcode = offset, opcode


class _MarkType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MARK"


MARK = _MarkType()


@dataclass(eq=False)
class Global:
    module: str
    name: str
    rule: str
    params: dict[str, Any]

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Str8:
    """A Python 2 8-bit string (STRING/BINSTRING/SHORT_BINSTRING) that is not ASCII: what it
    means depends on the unpickler's `encoding` (torch.load passes "utf-8" unless told
    "latin1"), so the raw bytes travel and the loading process decodes them as torch would."""

    raw: bytes


@dataclass(eq=False)
class Opaque:
    """Stands in for the result of a refused operation."""

    why: str


@dataclass(eq=False)
class SList:
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class SDict:
    """A dict (or OrderedDict) kept as ordered pairs: keys are symbolic, maybe unhashable."""

    items: list[tuple[Any, Any]] = field(default_factory=list)
    ordered: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)  # OrderedDict.__dict__ (e.g. _metadata)
    kind: str = "dict"  # or "counter" (collections.Counter), "defaultdict", "attrdict"
    factory: Any = None  # a defaultdict's default factory (None or a type value); an
    # attrdict's class


@dataclass(eq=False)
class SSet:
    items: list[Any] = field(default_factory=list)
    frozen: bool = False


@dataclass(eq=False)
class StorageRef:
    key: str
    dtype: str  # torch dtype name; "uint8" for untyped (byte) storages
    numel: int  # elements of `dtype`
    location: str
    untyped: bool


@dataclass(eq=False)
class TensorRef:
    storage: StorageRef
    offset: int  # in elements of `dtype`
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    requires_grad: bool
    parameter: bool = False
    # Python attributes set by torch's `_set_obj_state` after the rebuild (a saved nn.Buffer's
    # `_is_buffer`/`persistent`, user tags): plain names, values under the same rules.
    attrs: list[tuple[str, Any]] = field(default_factory=list)
    # A quantized tensor's parameters: ("per_tensor_affine", scale, zero_point) or
    # ("per_channel_affine", scales TensorRef, zero_points TensorRef, axis). Bytes are int_repr.
    quant: tuple[Any, ...] | None = None
    # torch's tensor metadata bits ("conj", "neg"): a lazily conjugated or negated view, whose
    # storage holds the un-conjugated values; the loader sets the bits again.
    bits: tuple[str, ...] = ()


@dataclass(eq=False)
class Obj:
    """A harmless non-tensor value with a precise rule: kind plus plain-data fields."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


class RuleViolation(Exception):
    """Arguments outside an allowlisted callable's rule."""


# ------------------------------------------------------------------------------------------
# The allowlist


@dataclass(frozen=True)
class Allowlist:
    version: str
    globals: dict[tuple[str, str], tuple[str, dict[str, Any]]]
    dtypes: dict[str, dict[str, Any]]
    numpy_dtypes: dict[str, str]

    @classmethod
    def load(cls) -> Allowlist:
        doc = json.loads(Path(__file__).with_name("allowlist.json").read_text(encoding="utf-8"))
        if doc.get("schema") != 1:
            raise ValueError("allowlist.json: unknown schema")
        table: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        for entry in doc["globals"]:
            params = {k: v for k, v in entry.items() if k not in ("module", "name", "rule")}
            key = (entry["module"], entry["name"])
            if key in table:  # a second rule would silently replace the first
                raise ValueError(f"allowlist.json: {'.'.join(key)} is listed twice")
            table[key] = (entry["rule"], params)
        return cls(doc["version"], table, doc["dtypes"], doc["numpy_dtypes"])


_ALLOWLIST: Allowlist | None = None


def allowlist() -> Allowlist:
    global _ALLOWLIST
    if _ALLOWLIST is None:
        _ALLOWLIST = Allowlist.load()
    return _ALLOWLIST


# CPython's `_compat_pickle` renames, applied by find_class when the protocol is < 3 and
# fix_imports is on (the default). Only names that lead into the allowlist matter: any other
# name is refused whatever it maps to, so an incomplete table can only refuse, never admit.
_COMPAT_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
# ... and its NAME_MAPPING entries that lead into the allowlist (Python 2's `long`, `unicode`).
_COMPAT_NAMES = {("__builtin__", "xrange"): ("builtins", "range"),
                 ("__builtin__", "long"): ("builtins", "int"),
                 ("__builtin__", "unicode"): ("builtins", "str")}


def _is_dotted_identifier(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


_STRUCTS = {fmt: struct.Struct(fmt) for fmt in ("<H", "<I", "<i", "<Q", ">d")}

# ------------------------------------------------------------------------------------------
# Opcode table: byte -> (name, argument kind)

_OPS: dict[int, tuple[str, str]] = {
    0x28: ("MARK", ""), 0x2E: ("STOP", ""), 0x30: ("POP", ""), 0x31: ("POP_MARK", ""),
    0x32: ("DUP", ""), 0x46: ("FLOAT", "line"), 0x49: ("INT", "line"), 0x4A: ("BININT", "i4"),
    0x4B: ("BININT1", "u1"), 0x4C: ("LONG", "line"), 0x4D: ("BININT2", "u2"), 0x4E: ("NONE", ""),
    0x50: ("PERSID", "line"), 0x51: ("BINPERSID", ""), 0x52: ("REDUCE", ""),
    0x53: ("STRING", "text"), 0x54: ("BINSTRING", "len4s"), 0x55: ("SHORT_BINSTRING", "len1"),
    0x56: ("UNICODE", "text"), 0x58: ("BINUNICODE", "len4"), 0x61: ("APPEND", ""),
    0x62: ("BUILD", ""), 0x63: ("GLOBAL", "line2"), 0x64: ("DICT", ""), 0x7D: ("EMPTY_DICT", ""),
    0x65: ("APPENDS", ""), 0x67: ("GET", "line"), 0x68: ("BINGET", "u1"), 0x69: ("INST", "line2"),
    0x6A: ("LONG_BINGET", "u4"), 0x6C: ("LIST", ""), 0x5D: ("EMPTY_LIST", ""), 0x6F: ("OBJ", ""),
    0x70: ("PUT", "line"), 0x71: ("BINPUT", "u1"), 0x72: ("LONG_BINPUT", "u4"),
    0x73: ("SETITEM", ""), 0x74: ("TUPLE", ""), 0x29: ("EMPTY_TUPLE", ""), 0x75: ("SETITEMS", ""),
    0x47: ("BINFLOAT", "f8"), 0x80: ("PROTO", "u1"), 0x81: ("NEWOBJ", ""), 0x82: ("EXT1", "u1"),
    0x83: ("EXT2", "u2"), 0x84: ("EXT4", "i4"), 0x85: ("TUPLE1", ""), 0x86: ("TUPLE2", ""),
    0x87: ("TUPLE3", ""), 0x88: ("NEWTRUE", ""), 0x89: ("NEWFALSE", ""), 0x8A: ("LONG1", "len1"),
    0x8B: ("LONG4", "len4s"), 0x42: ("BINBYTES", "len4"), 0x43: ("SHORT_BINBYTES", "len1"),
    0x8C: ("SHORT_BINUNICODE", "len1"), 0x8D: ("BINUNICODE8", "len8"),
    0x8E: ("BINBYTES8", "len8"), 0x8F: ("EMPTY_SET", ""), 0x90: ("ADDITEMS", ""),
    0x91: ("FROZENSET", ""), 0x92: ("NEWOBJ_EX", ""), 0x93: ("STACK_GLOBAL", ""),
    0x94: ("MEMOIZE", ""), 0x95: ("FRAME", "u8"), 0x96: ("BYTEARRAY8", "len8"),
    0x97: ("NEXT_BUFFER", ""), 0x98: ("READONLY_BUFFER", ""),
}

PersistentLoad = Callable[[Any, "PickleMachine"], Any]
# (data, offset, size) -> (storage, its span in data, findings): reads pickle.dump's storages
StorageBytesReader = Callable[[Any, int, int],
                              tuple["StorageRef", tuple[int, int], list["Finding"]]]
Buf = bytes | bytearray | memoryview | mmap.mmap  # what a stream can be read from


# ------------------------------------------------------------------------------------------
# The machine


class PickleMachine:
    """Runs one pickle stream symbolically.

    `persistent_load` decides what a persistent id means (torch storages); without one, a
    persistent id is an error, as it is for `pickle.load`.
    """

    def __init__(
        self,
        data: Buf,
        *,
        start: int = 0,
        end: int | None = None,
        member: str | None = None,
        persistent_load: PersistentLoad | None = None,
        rules: Allowlist | None = None,
        joblib_arrays: bool = False,
        joblib_plain: bool = False,
        storage_bytes: StorageBytesReader | None = None,
    ) -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.pos = start
        self.end = len(data) if end is None else end
        if self.end > len(data) or self.end - start > MAX_STREAM:
            raise ValueError("stream bounds outside the data")
        self.member = member
        self.persistent_load = persistent_load
        self.rules = rules or allowlist()
        self.findings: list[Finding] = []
        self.dropped_findings = 0
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        self.frame_end: int | None = None
        self.op_offset = start
        self.op_name: str | None = None
        self.globals_seen: list[str] = []  # every import attempted, allowed or not, in order
        # A whole joblib file (never a torch member): NumpyArrayWrapper's raw bytes are read
        # after its BUILD as joblib's NumpyUnpickler reads them (see _build_joblib_array).
        self.joblib_arrays = joblib_arrays
        # The same file as pickle.load (and torch.load) reads it: the wrapper is an inert
        # object, and joblib's nested pickles run in this stream's own memo and stack.
        self.joblib_plain = joblib_plain
        self.nested_pickles = 0  # joblib object arrays read (each a pickle of its own)
        # A whole file only: where each bytes value lies in it (id -> (offset, value)), for the
        # storages pickle.dump writes as `_load_from_bytes(b)`, and those storages' spans.
        self.bytes_at: dict[int, tuple[int, Any]] = {}
        self.storage_spans: dict[str, tuple[int, int]] = {}
        self.storage_bytes = storage_bytes  # `torchfile.read_storage_bytes` (no import cycle)

    # -- reading -------------------------------------------------------------------------

    def _fail(self, message: str) -> MalformedPickle:
        return MalformedPickle(message, self.op_offset, self.op_name)

    def _limit(self) -> int:
        return self.frame_end if self.frame_end is not None else self.end

    def _read(self, n: int) -> bytes | memoryview:
        if n < 0:
            raise self._fail("negative length")
        if self.pos + n > self._limit():
            if self.frame_end is not None and self.pos + n <= self.end:
                raise self._fail("opcode argument straddles a FRAME boundary")
            raise self._fail("truncated stream")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _read_line(self, *, unbounded: bool = False) -> bytes:
        limit = self._limit()
        stop = limit if unbounded else min(limit, self.pos + MAX_LINE)
        if unbounded:  # find the newline chunk by chunk: never a copy of the rest of the stream
            at = self.pos
            while at < limit:
                nl = bytes(self.data[at : min(limit, at + MAX_LINE)]).find(b"\n")
                if nl >= 0:
                    stop = at + nl + 1
                    break
                at += MAX_LINE
        data = bytes(self.data[self.pos : stop])
        idx = data.find(b"\n")
        if idx < 0:
            if stop == limit:
                raise self._fail("truncated stream (no newline)")
            raise self._fail(f"text argument longer than {MAX_LINE} bytes")
        self.pos += idx + 1
        return data[:idx]

    def _uint(self, fmt: str, n: int) -> int:
        st = _STRUCTS[fmt]
        pos, end = self.pos, self.frame_end
        if pos + n > (self.end if end is None else end):
            self._read(n)  # raises the error `_read` gives (truncated, or straddles a FRAME)
        self.pos = pos + n
        value: int = st.unpack_from(self.data, pos)[0]
        return value

    def _byte(self) -> int:
        """One byte, as `_read(1)[0]` (the same errors), without a slice: most opcodes."""
        pos, end = self.pos, self.frame_end
        if pos >= (self.end if end is None else end):
            self._read(1)  # raises
        self.pos = pos + 1
        value: int = self.data[pos]
        return value

    # -- findings ------------------------------------------------------------------------

    def finding(self, code: str, message: str, global_name: str | None = None) -> Opaque:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(
                Finding(code, message, self.op_offset, self.op_name, global_name, self.member)
            )
        else:
            self.dropped_findings += 1
        return Opaque(message)

    # -- stack ---------------------------------------------------------------------------

    def _pop(self) -> Any:
        if not self.stack:
            raise self._fail("stack underflow")
        return self.stack.pop()

    def _top(self) -> Any:
        if not self.stack:
            raise self._fail("stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise self._fail("no MARK to pop to")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    # -- main loop -----------------------------------------------------------------------

    def run(self) -> Any:
        """Read up to and including STOP; return the symbolic result. `self.pos` ends after STOP."""
        budget = current()
        ops = 0
        try:
            while True:
                ops += 1
                if ops > MAX_OPS:
                    raise self._fail(f"more than {MAX_OPS} opcodes: refused rather than walked")
                if budget is not None and ops % CHARGE_EVERY == 0:
                    budget.charge_ops(CHARGE_EVERY)  # the whole file's opcodes, every stream
                if self.frame_end is not None and self.pos == self.frame_end:
                    self.frame_end = None
                self.op_offset = self.pos
                self.op_name = None
                code = self._byte()
                op = _DISPATCH.get(code)
                if op is None:
                    raise self._fail(f"unknown opcode 0x{code:02x}")
                name, kind, handler = op
                self.op_name = name
                arg = self._read_arg(kind)
                if handler is None:  # STOP
                    if self.frame_end is not None and self.pos != self.frame_end:
                        raise self._fail("STOP inside an unfinished FRAME")
                    result = self._pop()
                    if self.stack or self.metastack:
                        raise self._fail("values left on the stack at STOP")
                    return result
                handler(self, arg)
        finally:
            if budget is not None:  # the tail since the last charge: many tiny streams add up
                budget.charge_ops(ops % CHARGE_EVERY + 1)

    def _read_arg(self, kind: str) -> Any:
        if kind == "":
            return None
        if kind == "u1":
            return self._byte()
        if kind == "u2":
            return self._uint("<H", 2)
        if kind == "u4":
            return self._uint("<I", 4)
        if kind == "i4":
            return self._uint("<i", 4)
        if kind == "u8":
            return self._uint("<Q", 8)
        if kind == "f8":
            return self._uint(">d", 8)
        if kind == "line":
            return self._read_line()
        if kind == "text":  # string data: CPython reads a line of any length
            return self._read_line(unbounded=True)
        if kind == "line2":
            return (self._read_line(), self._read_line())
        if kind == "len1":
            return self._read(self._byte())
        if kind == "len4":
            return self._read(self._uint("<I", 4))
        if kind == "len4s":
            n = self._uint("<i", 4)
            if n < 0:
                raise self._fail("negative byte count")
            return self._read(n)
        if kind == "len8":
            return self._read(self._uint("<Q", 8))
        raise AssertionError(kind)

    # -- literals --------------------------------------------------------------------------

    def _op_MARK(self, _: None) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def _op_POP(self, _: None) -> None:
        # Both CPython unpicklers pop the MARK itself when the current segment is empty.
        if not self.stack and self.metastack:
            self._pop_mark()
        else:
            self._pop()

    def _op_POP_MARK(self, _: None) -> None:
        self._pop_mark()

    def _op_DUP(self, _: None) -> None:
        self.stack.append(self._top())

    def _op_PROTO(self, version: int) -> None:
        if version > _HIGHEST_PROTOCOL:
            raise self._fail(f"unsupported pickle protocol {version}")
        self.proto = version

    def _op_FRAME(self, length: int) -> None:
        if self.frame_end is not None:
            raise self._fail("new FRAME before the end of the current one")
        if self.pos + length > self.end:
            raise self._fail("FRAME longer than the stream")
        self.frame_end = self.pos + length

    def _op_NONE(self, _: None) -> None:
        self.stack.append(None)

    def _op_NEWTRUE(self, _: None) -> None:
        self.stack.append(True)

    def _op_NEWFALSE(self, _: None) -> None:
        self.stack.append(False)

    def _op_INT(self, line: bytes) -> None:
        if line == b"00":
            self.stack.append(False)
        elif line == b"01":
            self.stack.append(True)
        else:
            self.stack.append(self._parse_decimal(line))

    def _op_LONG(self, line: bytes) -> None:
        self.stack.append(self._parse_decimal(line[:-1] if line.endswith(b"L") else line))

    def _parse_decimal(self, text: bytes) -> int:
        # One spelling only: CPython reads "010" as octal (C) or refuses it (Python), "+1" and
        # "-0" differently again. Anything but plain decimal is refused (stricter, never looser).
        digits = text[1:] if text[:1] == b"-" else text
        if (not digits or not digits.isdigit() or len(digits) > 4300
                or (len(digits) > 1 and digits[:1] == b"0") or text == b"-0"):
            raise self._fail("malformed integer literal")
        return int(text)

    def _op_BININT(self, value: int) -> None:
        self.stack.append(value)

    _op_BININT1 = _op_BININT
    _op_BININT2 = _op_BININT

    def _op_LONG1(self, data: bytes | memoryview) -> None:
        if len(data) > MAX_LONG_BYTES:
            raise self._fail("integer literal too large")
        self.stack.append(int.from_bytes(bytes(data), "little", signed=True))

    _op_LONG4 = _op_LONG1

    def _op_FLOAT(self, line: bytes) -> None:
        try:
            text = line.decode("ascii")
            value = float(text)
        except ValueError as exc:
            raise self._fail("malformed float literal") from exc
        # Both unpicklers read the same number only where float() and the C unpickler's
        # PyOS_string_to_double agree: no whitespace or underscores; an infinite value only
        # when spelt as one (protocol 0 writes `inf`, `nan`), never an overflow like 1e999,
        # which the C unpickler refuses and pickle.py reads as inf.
        spelt = text.lower().lstrip("+-") in ("inf", "infinity", "nan")
        if not text or text.strip() != text or "_" in text or \
                not (math.isfinite(value) or spelt):
            raise self._fail("malformed float literal")
        self.stack.append(value)

    def _op_BINFLOAT(self, value: float) -> None:
        self.stack.append(value)

    def _decode_str8(self, data: bytes) -> str | Str8:
        # Protocol-0/1 8-bit strings: ASCII reads the same under every encoding; other bytes
        # are kept raw (Str8) and decoded by the loader with the caller's `encoding`.
        if data.isascii():
            return data.decode("ascii")
        return Str8(bytes(data))

    def _op_STRING(self, line: bytes) -> None:
        self._check_str(line)
        if len(line) < 2 or line[:1] not in (b"'", b'"') or line[-1:] != line[:1]:
            raise self._fail("STRING argument is not quoted")
        try:
            raw = codecs.escape_decode(line[1:-1])[0]
        except ValueError as exc:
            raise self._fail("bad escape in STRING") from exc
        self.stack.append(self._decode_str8(raw))

    def _op_BINSTRING(self, data: bytes | memoryview) -> None:
        self._check_str(data)
        self.stack.append(self._decode_str8(bytes(data)))

    _op_SHORT_BINSTRING = _op_BINSTRING

    def _check_str(self, data: bytes | memoryview) -> None:
        if len(data) > MAX_STR_BYTES:
            raise self._fail(f"a string of more than {MAX_STR_BYTES >> 20} MiB (no checkpoint "
                             "safeload converts can hold one)")

    def _op_UNICODE(self, line: bytes) -> None:
        self._check_str(line)
        try:
            self.stack.append(line.decode("raw-unicode-escape"))
        except UnicodeDecodeError as exc:
            raise self._fail("bad UNICODE literal") from exc

    def _op_BINUNICODE(self, data: bytes | memoryview) -> None:
        self._check_str(data)
        try:
            self.stack.append(str(data, "utf-8", "surrogatepass"))  # (no copy of a view)
        except UnicodeDecodeError as exc:
            raise self._fail("invalid UTF-8 in string") from exc

    _op_SHORT_BINUNICODE = _op_BINUNICODE
    _op_BINUNICODE8 = _op_BINUNICODE

    def _op_BINBYTES(self, data: bytes | memoryview) -> None:
        # Large payloads stay zero-copy views of the input.
        value = bytes(data) if len(data) < (1 << 20) else data
        if self.storage_bytes is not None:
            self.bytes_at[id(value)] = (self.pos - len(data), value)
        self.stack.append(value)

    _op_SHORT_BINBYTES = _op_BINBYTES
    _op_BINBYTES8 = _op_BINBYTES

    def _op_BYTEARRAY8(self, data: bytes | memoryview) -> None:
        self.stack.append(Obj("bytearray", {"data": bytes(data)}))

    def _op_NEXT_BUFFER(self, _: None) -> None:
        raise self._fail("out-of-band buffer (NEXT_BUFFER): no loader passes buffers")

    def _op_READONLY_BUFFER(self, _: None) -> None:
        # A read-only view of a buffer: modelled as immutable bytes.
        # On bytes it changes nothing we model; on a bytearray the unpicklers make a read-only
        # memoryview of a writable object (unhashable, not bytes): refused rather than guessed.
        top = self._top()
        if not isinstance(top, (bytes, memoryview)):
            raise self._fail("READONLY_BUFFER on a non-buffer")

    # -- containers ----------------------------------------------------------------------

    def _op_EMPTY_LIST(self, _: None) -> None:
        self.stack.append(SList())

    def _op_EMPTY_DICT(self, _: None) -> None:
        self.stack.append(SDict())

    def _op_EMPTY_SET(self, _: None) -> None:
        self.stack.append(SSet())

    def _op_EMPTY_TUPLE(self, _: None) -> None:
        self.stack.append(())

    # Each pop-to-mark reads into a local first: `self.stack` is replaced by the pop, so
    # `self.stack.append(self._pop_mark())` would push onto the discarded segment.

    def _op_TUPLE(self, _: None) -> None:
        items = self._pop_mark()
        self.stack.append(tuple(items))

    def _op_TUPLE1(self, _: None) -> None:
        self.stack.append((self._pop(),))

    def _op_TUPLE2(self, _: None) -> None:
        b = self._pop()
        a = self._pop()
        self.stack.append((a, b))

    def _op_TUPLE3(self, _: None) -> None:
        c = self._pop()
        b = self._pop()
        a = self._pop()
        self.stack.append((a, b, c))

    def _op_LIST(self, _: None) -> None:
        items = self._pop_mark()
        self.stack.append(SList(items))

    def _op_DICT(self, _: None) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise self._fail("odd number of items for DICT")
        if not all(hashable(k) for k in items[::2]):
            raise self._fail("unhashable dict key (every unpickler raises TypeError)")
        self.stack.append(SDict(list(zip(items[::2], items[1::2], strict=True))))

    def _op_FROZENSET(self, _: None) -> None:
        items = self._pop_mark()
        if not all(hashable(i) for i in items):
            raise self._fail("unhashable set member (every unpickler raises TypeError)")
        self.stack.append(SSet(items, frozen=True))

    def _op_APPEND(self, _: None) -> None:
        value = self._pop()
        self._append_to(self._top(), [value])

    def _op_APPENDS(self, _: None) -> None:
        items = self._pop_mark()
        self._append_to(self._top(), items)

    def _append_to(self, target: Any, items: list[Any]) -> None:
        # On anything but a real list, pickle calls the object's `append`/`extend`: a method call.
        if isinstance(target, SList):
            target.items.extend(items)
        elif not isinstance(target, Opaque):
            self.finding("mutation-not-allowed", f"APPEND to a {_describe(target)}")

    def _op_SETITEM(self, _: None) -> None:
        value = self._pop()
        key = self._pop()
        self._setitems(self._top(), [(key, value)])

    def _op_SETITEMS(self, _: None) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise self._fail("odd number of items for SETITEMS")
        self._setitems(self._top(), list(zip(items[::2], items[1::2], strict=True)))

    def _setitems(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        # On anything but a dict, pickle calls the object's `__setitem__` (a Counter's counts
        # arrive in its constructor argument, never through SETITEM).
        # defaultdict and AttributeDict do not override __setitem__: SETITEMS is dict's.
        if isinstance(target, SDict) and target.kind in ("dict", "defaultdict", "attrdict"):
            if not all(hashable(k) for k, _ in pairs):
                raise self._fail("unhashable dict key (every unpickler raises TypeError)")
            target.items.extend(pairs)
        elif not isinstance(target, Opaque):
            self.finding("mutation-not-allowed", f"SETITEM on a {_describe(target)}")

    def _op_ADDITEMS(self, _: None) -> None:
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, SSet) and not target.frozen:
            if not all(hashable(i) for i in items):
                raise self._fail("unhashable set member (every unpickler raises TypeError)")
            target.items.extend(items)
        elif not isinstance(target, Opaque):
            self.finding("mutation-not-allowed", f"ADDITEMS on a {_describe(target)}")

    # -- memo ----------------------------------------------------------------------------

    def _memo_index(self, line: bytes) -> int:
        if not line.isdigit() or len(line) > 18:
            raise self._fail("malformed memo index")
        return int(line)

    def _put(self, index: int) -> None:
        self.memo[index] = self._top()

    def _get(self, index: int) -> None:
        try:
            self.stack.append(self.memo[index])
        except KeyError:
            raise self._fail(f"memo index {index} read before it was written") from None

    def _op_PUT(self, line: bytes) -> None:
        self._put(self._memo_index(line))

    def _op_BINPUT(self, index: int) -> None:
        self._put(index)

    _op_LONG_BINPUT = _op_BINPUT

    def _op_MEMOIZE(self, _: None) -> None:
        self._put(len(self.memo))

    def _op_GET(self, line: bytes) -> None:
        self._get(self._memo_index(line))

    def _op_BINGET(self, index: int) -> None:
        self._get(index)

    _op_LONG_BINGET = _op_BINGET

    # -- imports -------------------------------------------------------------------------

    def _import(self, module: str, name: str) -> Global | Opaque:
        """What `find_class(module, name)` would import, checked against the allowlist."""
        if self.proto < 3:
            module, name = _COMPAT_NAMES.get((module, name), (module, name))
            module = _COMPAT_MODULES.get(module, module)
        qualname = f"{module}.{name}"
        self.globals_seen.append(qualname)
        entry = self.rules.globals.get((module, name))
        if entry is None:
            return self.finding(
                "global-not-allowed", f"import of {qualname} is not allowlisted", qualname
            )
        if entry[0] == "unsupported" or (entry[0] == "joblib_array_wrapper"
                                         and not (self.joblib_arrays or self.joblib_plain)):
            # Known and harmless, but with no faithful safetensors form: refused, with the fix.
            return self.finding("unsupported", f"{qualname}: {entry[1]['reason']}", qualname)
        return Global(module, name, entry[0], entry[1])

    def _text_global(self, pair: tuple[bytes, bytes]) -> Global | Opaque:
        try:
            module, name = (part.decode("utf-8") for part in pair)
        except UnicodeDecodeError as exc:
            raise self._fail("GLOBAL name is not UTF-8") from exc
        # Any text is an import attempt: `__import__("evil-mod")` finds evil-mod.py on sys.path.
        # Such names are never allowlisted, so they are findings, not garbage.
        return self._import(module, name)

    def _op_GLOBAL(self, pair: tuple[bytes, bytes]) -> None:
        self.stack.append(self._text_global(pair))

    def _op_STACK_GLOBAL(self, _: None) -> None:
        name = self._pop()
        module = self._pop()
        if not isinstance(module, str) or not isinstance(name, str):
            if self.joblib_plain and any(_surely_not_str(x) for x in (module, name)):
                raise ReaderStops("STACK_GLOBAL requires str: pickle.load stops here")
            # pickle would raise here; but a resolvable operand is the only thing we can check,
            # so anything else is a finding (fail closed), not a silent pass.
            self.stack.append(
                self.finding("global-not-allowed", "STACK_GLOBAL with non-string operands")
            )
            return
        self.stack.append(self._import(module, name))

    def _op_EXT1(self, code: int) -> None:
        self.stack.append(self.finding(
            "global-not-allowed", f"extension-registry import (code {code}) is never allowed"
        ))

    _op_EXT2 = _op_EXT1
    _op_EXT4 = _op_EXT1

    # -- calls ---------------------------------------------------------------------------

    def _op_REDUCE(self, _: None) -> None:
        args = self._pop()
        func = self._pop()
        self.stack.append(self.call(func, args, None, "call"))

    def _op_NEWOBJ(self, _: None) -> None:
        args = self._pop()
        cls = self._pop()
        self.stack.append(self.call(cls, args, None, "new"))

    def _op_NEWOBJ_EX(self, _: None) -> None:
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        self.stack.append(self.call(cls, args, kwargs, "new"))

    def _op_OBJ(self, _: None) -> None:
        items = self._pop_mark()
        if not items:
            raise self._fail("OBJ without a class")
        self.stack.append(self.call(items[0], tuple(items[1:]), None, "call"))

    def _op_INST(self, pair: tuple[bytes, bytes]) -> None:
        cls = self._text_global(pair)
        args = tuple(self._pop_mark())
        self.stack.append(self.call(cls, args, None, "call"))

    def _charge_walk(self, values: tuple[Any, ...]) -> None:
        """Charge a rule's walk over its arguments: one memoised list handed to a call a
        million times is a million walks (quadratic work for linear opcodes)."""
        budget = current()
        if budget is not None:
            budget.charge_ops(sum(_walk_cost(v) for v in values))

    def call(self, func: Any, args: Any, kwargs: Any, flavor: str) -> Any:
        """Apply an allowlisted rule, or record why the call is refused."""
        if isinstance(func, Opaque):
            return Opaque("call of a refused value")
        if not isinstance(func, Global):
            return self.finding("call-not-allowed", f"call of a {_describe(func)}")
        if not isinstance(args, tuple):
            raise self._fail("call arguments are not a tuple")
        if any(isinstance(a, Opaque) for a in args):
            return Opaque("call with a refused argument")
        self._charge_walk(args)
        if kwargs is not None and not (isinstance(kwargs, SDict) and not kwargs.items):
            return self.finding(
                "bad-arguments", f"keyword arguments to {func.qualname}", func.qualname
            )
        handler = _RULES.get(func.rule)
        if handler is None or flavor not in handler[0]:
            return self.finding(
                "call-not-allowed",
                f"{func.qualname} may not be {'called' if flavor == 'call' else 'instantiated'}",
                func.qualname,
            )
        try:
            return handler[1](self, func, args)
        except RuleViolation as exc:
            return self.finding("bad-arguments", f"{func.qualname}: {exc}", func.qualname)

    def _op_BUILD(self, _: None) -> None:
        state = self._pop()
        target = self._top()
        if isinstance(target, Opaque) or isinstance(state, Opaque):
            return
        self._charge_walk((state,))
        try:
            _build(self, target, state)
        except RuleViolation as exc:
            self.finding("build-not-allowed", f"BUILD on a {_describe(target)}: {exc}",
                         target.qualname if isinstance(target, Global) else None)

    def _op_PERSID(self, _: bytes) -> None:
        raise self._fail("text persistent id (PERSID): no supported format writes one")

    def _op_BINPERSID(self, _: None) -> None:
        pid = self._pop()
        if self.persistent_load is None:
            raise self._fail("persistent id in a plain pickle (nothing to resolve it)")
        if isinstance(pid, Opaque):
            self.stack.append(pid)
            return
        try:
            self.stack.append(self.persistent_load(pid, self))
        except RuleViolation as exc:
            self.stack.append(self.finding("bad-persistent-id", str(exc)))


# ------------------------------------------------------------------------------------------
# Rules: one function per allowlisted callable kind. Each checks exact argument shapes.


def _walk_cost(v: Any) -> int:
    # Containers by item; text and bytes by KiB (a rule may encode or copy them).
    if isinstance(v, (SList, SDict, SSet)):
        return len(v.items)
    if isinstance(v, tuple):
        return len(v)
    return len(v) >> 10 if isinstance(v, (str, bytes, bytearray, memoryview)) else 0


def _describe(value: Any) -> str:
    if isinstance(value, Global):
        return f"global {value.qualname}"
    if isinstance(value, Obj):
        return f"{value.kind} object"
    if isinstance(value, TensorRef):
        return "tensor"
    return type(value).__name__.lstrip("S").lower() if isinstance(
        value, (SList, SDict, SSet)) else type(value).__name__


_HASHABLE_KINDS = frozenset({"torch_size", "torch_device", "complex", "path", "datetime", "date",
                             "time", "timedelta", "timezone", "np_scalar", "np_dtype",
                             "torch_version", "range", "decimal", "fraction"})


def hashable(v: Any, _seen: dict[int, bool] | None = None) -> bool:
    """Whether the value the symbol stands for could be a dict key or set member.

    Memoised by identity: a tuple DAG built with the memo is walked once per node, not once
    per path (which would be exponential).
    """
    if v is None or isinstance(v, (bool, int, float, str, bytes, Str8, Global, TensorRef,
                                        Opaque)):
        return True
    if isinstance(v, Obj):
        return v.kind in _HASHABLE_KINDS
    if not isinstance(v, (tuple, SSet)) or (isinstance(v, SSet) and not v.frozen):
        return False
    seen = {} if _seen is None else _seen
    key = id(v)
    if key not in seen:
        seen[key] = True  # a cycle through a tuple cannot be built by pickle; assume fine
        items = v if isinstance(v, tuple) else v.items
        budget = current()
        if budget is not None:
            budget.charge_ops(len(items))  # a memoised key tuple walked once per use
        seen[key] = all(hashable(x, seen) for x in items)
    return seen[key]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(v: Any, what: str) -> tuple[int, ...]:
    if not isinstance(v, tuple) or not all(_is_int(x) and x >= 0 for x in v):
        raise RuleViolation(f"{what} must be a tuple of non-negative ints")
    if len(v) > 64:
        raise RuleViolation(f"{what} has more than 64 dimensions")
    return v


def _empty_hooks(v: Any) -> bool:
    return v is None or (isinstance(v, SDict) and not v.items and not v.attrs)


def _arity(args: tuple[Any, ...], *allowed: int) -> None:
    if len(args) not in allowed:
        raise RuleViolation(f"takes {' or '.join(map(str, allowed))} arguments, got {len(args)}")


def _rule_ordered_dict(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    if args == ():
        return SDict(ordered=True)
    if len(args) == 1 and isinstance(args[0], (SList, tuple)):
        items = args[0].items if isinstance(args[0], SList) else list(args[0])
        # Pairs may be tuples or two-item lists (`OrderedDict([[k, v], ...])`, as lpips has).
        # Lengths first: a memoised million-item list as every "pair" is not copied per use.
        pairs = [tuple(p) if isinstance(p, tuple) else tuple(p.items) for p in items
                 if isinstance(p, tuple) and len(p) == 2
                 or isinstance(p, SList) and len(p.items) == 2]
        if len(pairs) == len(items):
            for key, _ in pairs:
                if not hashable(key):
                    raise RuleViolation("unhashable key")
            return SDict([(p[0], p[1]) for p in pairs], ordered=True)
    raise RuleViolation("expects () or a list of pairs")


def _rule_counter(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    # Counter.__reduce__ is (Counter, (dict(self),)): a dict of counts.
    if args == ():
        return SDict(kind="counter")
    _arity(args, 1)
    if not isinstance(args[0], SDict) or args[0].ordered or args[0].attrs:
        raise RuleViolation("expects a plain dict")
    return SDict(list(args[0].items), kind="counter")


# Globals that are only ever values (a class object: never called, never instantiated here).
TYPE_VALUE_RULES = frozenset({"type_value", "typing_any", "builtins_set", "builtins_frozenset",
                              "builtins_bytes", "builtins_bytearray", "builtins_complex",
                              "builtins_range", "builtins_slice"})


def is_type_value(v: Any) -> bool:
    return isinstance(v, Global) and v.rule in TYPE_VALUE_RULES


def _rule_defaultdict(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    # defaultdict.__reduce__ is (defaultdict, (factory,), None, None, items): SETITEMS follow.
    if args == () or args == (None,):
        return SDict(kind="defaultdict")
    _arity(args, 1)
    if not (is_type_value(args[0]) and args[0].rule != "typing_any"):
        raise RuleViolation("the default factory must be a builtin type such as int or list")
    return SDict(kind="defaultdict", factory=args[0])


# omegaconf containers as omegaconf pickles them: NEWOBJ(cls, ()) then BUILD with the
# instance __dict__. Only plain data is accepted in that state; nothing is ever called: the
# parent rebuilds the container from its plain content (`safeload._internal.structure`).
_OMEGACONF_KEYS = {
    "container": frozenset({"_metadata", "_parent", "_content", "_flags_cache"}),
    "node": frozenset({"_metadata", "_parent", "_val"}),
    "metadata": frozenset({"ref_type", "object_type", "optional", "key", "flags", "flags_root",
                           "resolver_cache", "key_type", "element_type"}),
}


def _rule_omegaconf(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    if args != ():
        raise RuleViolation("omegaconf objects are created without arguments")
    return Obj("omegaconf", {"cls": g.name, "role": g.params["role"], "built": False})


def _omegaconf_obj(v: Any, *roles: str) -> bool:
    return isinstance(v, Obj) and v.kind == "omegaconf" and v.fields["role"] in roles


def _plain_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, bytes))


def _build_omegaconf(target: Obj, state: Any) -> None:
    role = target.fields["role"]
    items = dict(_str_keyed(state).items)
    unknown = set(items) - _OMEGACONF_KEYS[role]
    if unknown:
        raise RuleViolation(f"unexpected omegaconf state {sorted(unknown)!r}")
    if role == "metadata":
        for key in ("ref_type", "object_type", "key_type", "element_type"):
            # A structured config's object_type is a user class: never allowlisted, so only
            # builtin types and typing.Any can arrive here.
            if items.get(key) is not None and not is_type_value(items[key]):
                raise RuleViolation(f"omegaconf {key} must be a builtin type or typing.Any")
        flags = items.get("flags")
        if flags is not None and not (isinstance(flags, SDict) and all(
                isinstance(k, str) and (v is None or isinstance(v, bool)) for k, v in flags.items)):
            raise RuleViolation("omegaconf flags must map names to booleans")
        if not _plain_scalar(items.get("key")):
            raise RuleViolation("omegaconf key must be plain data")
        cache = items.get("resolver_cache")
        if cache is not None and not (isinstance(cache, SDict) and not cache.items):
            raise RuleViolation("omegaconf resolver cache must be empty")
        target.fields.update(flags=flags, built=True)
        return
    meta = items.get("_metadata")
    if not _omegaconf_obj(meta, "metadata") or meta is None or not meta.fields["built"]:
        raise RuleViolation("omegaconf _metadata must be its Metadata object")
    parent = items.get("_parent")
    if parent is not None and not _omegaconf_obj(parent, "container"):
        raise RuleViolation("omegaconf _parent must be a container")
    if role == "node":
        val = items.get("_val")
        if not _plain_scalar(val):
            raise RuleViolation("omegaconf node values must be plain data")
        target.fields.update(val=val, built=True)
        return
    content = items.get("_content")
    children: list[Any]
    if content is None or isinstance(content, str):  # None, "???" (missing), "${...}"
        children = []
    elif target.fields["cls"] == "DictConfig" and isinstance(content, SDict) and (
            content.kind == "dict" and not content.attrs):
        children = [v for _, v in content.items]
        if not all(_plain_scalar(k) for k, _ in content.items):
            raise RuleViolation("omegaconf keys must be plain data")
    elif target.fields["cls"] == "ListConfig" and isinstance(content, SList):
        children = content.items
    else:
        raise RuleViolation("omegaconf _content does not match its container")
    if not all(_omegaconf_obj(c, "node", "container") and c.fields["built"] for c in children):
        raise RuleViolation("omegaconf content must be omegaconf nodes")
    target.fields.update(content=content, flags=meta.fields["flags"], built=True)


def _rule_torch_size(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 1)
    return Obj("torch_size", {"dims": _ints(args[0], "size")})


def _rule_torch_device(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 1, 2)
    if not isinstance(args[0], str) or not _DEVICE.fullmatch(args[0]):
        raise RuleViolation("device must be a device type such as 'cpu' or 'cuda:0'")
    if len(args) == 2 and not (args[1] is None or (_is_int(args[1]) and args[1] >= -1)):
        raise RuleViolation("device index must be an int")
    return Obj("torch_device", {"type": args[0], "index": args[1] if len(args) == 2 else None})


_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|meta|hpu|mtia|privateuseone|xla|ipu|lazy|vulkan)"
                     r"(:\d{1,4})?")


def _check_extent(storage: StorageRef, offset: int, size: tuple[int, ...],
                  stride: tuple[int, ...], itemsize: int) -> None:
    """The view must lie inside its storage: the converter copies bytes by these numbers."""
    if len(size) != len(stride):
        raise RuleViolation("size and stride differ in length")
    if 0 in size:
        return
    extent = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1
    storage_bytes = storage.numel * (1 if storage.untyped else vm_itemsize(storage.dtype))
    if extent * itemsize > storage_bytes:
        raise RuleViolation("tensor view reaches past the end of its storage")


# byte -> (name, argument kind, handler; None for STOP): one lookup per opcode in `run`
_DISPATCH: dict[int, tuple[str, str, Any]] = {
    code: (name, kind, None if name == "STOP" else getattr(PickleMachine, "_op_" + name))
    for code, (name, kind) in _OPS.items()
}


def vm_itemsize(dtype: str) -> int:
    return int(allowlist().dtypes[dtype]["itemsize"])


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
            hooks: Any, dtype: str | None) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise RuleViolation("first argument must be a storage")
    if not _is_int(offset) or offset < 0:
        raise RuleViolation("storage offset must be a non-negative int")
    size_t, stride_t = _ints(size, "size"), _ints(stride, "stride")
    if not isinstance(requires_grad, bool):
        raise RuleViolation("requires_grad must be a bool")
    if not _empty_hooks(hooks):
        raise RuleViolation("backward hooks must be empty")
    if dtype is not None and allowlist().dtypes.get(dtype, {}).get("value_only"):
        raise RuleViolation(f"no tensor of dtype {dtype} (torch gives it no storage)")

    if dtype is None:  # v2: the dtype is the typed storage's
        if storage.untyped:
            raise RuleViolation("an untyped storage needs an explicit dtype")
        dtype = storage.dtype
    elif not storage.untyped and dtype != storage.dtype:
        raise RuleViolation("tensor dtype differs from its typed storage")
    if dtype in PACKED_PER_BYTE:
        _check_packed(storage, offset, size_t, stride_t, PACKED_PER_BYTE[dtype])
    else:  # offsets count elements of the tensor's dtype, for typed and untyped storages alike
        _check_extent(storage, offset, size_t, stride_t, vm_itemsize(dtype))
    return TensorRef(storage, offset, size_t, stride_t, dtype, requires_grad)


# Quantized dtypes whose sizes count values packed several to a byte (storage sizes count
# bytes): torch saves them contiguous from the start of their storage.
PACKED_PER_BYTE = {"quint4x2": 2, "quint2x4": 4}


def packed_nbytes(size: tuple[int, ...], per_byte: int) -> int:
    n = 1
    for d in size:
        n *= d
    return -(-n // per_byte)


def _check_packed(storage: StorageRef, offset: int, size: tuple[int, ...],
                  stride: tuple[int, ...], per_byte: int) -> None:
    contiguous, acc = [], 1
    for d in reversed(size):
        contiguous.append(acc)
        acc *= max(d, 1)
    if offset != 0 or (stride != tuple(reversed(contiguous)) and 0 not in size):
        raise RuleViolation("a packed quantized tensor must be contiguous from the start of "
                            "its storage")
    if packed_nbytes(size, per_byte) > storage.numel * vm_itemsize(storage.dtype):
        raise RuleViolation("tensor view reaches past the end of its storage")


_COMPLEX_DTYPES = frozenset({"complex32", "complex64", "complex128"})


def _with_metadata(t: TensorRef, metadata: Any) -> TensorRef:
    """torch's `set_tensor_metadata`: a "conj" or "neg" key sets that bit (whatever its bool
    value: torch looks at the key only). Any other key or value is refused: torch never writes
    one, and a conj bit on a real dtype is an internal assert in torch."""
    if metadata is None:
        return t
    # (an OrderedDict is a dict to torch too: review X, an empty one loaded before)
    if not isinstance(metadata, SDict) or metadata.kind != "dict" or metadata.attrs:
        raise RuleViolation("tensor metadata must be a plain dict")
    bits: list[str] = []
    for key, value in metadata.items:
        if key not in ("conj", "neg") or not isinstance(value, bool) or key in bits:
            raise RuleViolation("tensor metadata holds only the conj and neg bits")
        bits.append(key)
    if "conj" in bits and t.dtype not in _COMPLEX_DTYPES:
        raise RuleViolation("a conj bit on a tensor that is not complex")
    t.bits = tuple(sorted(bits))
    return t


def _rule_rebuild_v2(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 6, 7)
    t = _plain(_tensor(args[0], args[1], args[2], args[3], args[4], args[5], None))
    return _with_metadata(t, args[6] if len(args) == 7 else None)


def _plain(t: TensorRef) -> TensorRef:
    # (review X: a quantized dtype here converted, then failed in the parent, "convert again")
    if t.dtype in _QUANT_DTYPES:
        raise RuleViolation("a quantized tensor is rebuilt by _rebuild_qtensor only")
    return t


def _rule_rebuild_legacy(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    # Pre-1.0 `_rebuild_tensor(storage, storage_offset, size, stride)`: no requires_grad, no
    # hooks (torch's weights-only unpickler accepts it too; lpips v0.0 ships such files).
    _arity(args, 4)
    return _plain(_tensor(args[0], args[1], args[2], args[3], False, None, None))


def _rule_storage_from_bytes(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """`torch.storage._load_from_bytes(b)`: how pickle.dump (and joblib.dump) writes a tensor's
    storage; pickle.load runs `torch.load(BytesIO(b), weights_only=False)`, unrestricted, on
    a legacy torch file holding the storage. Here that file's five pickles are read under the
    same rules (no nesting deeper), and the storage's bytes are located inside `b`, which must
    be a bytes value read from this whole file (its span is what a converter copies)."""
    _arity(args, 1)
    data = args[0]
    if vm.storage_bytes is None:
        raise RuleViolation("storage bytes inside a torch file (torch.save never writes them)")
    at = vm.bytes_at.get(id(data))
    if at is None or at[1] is not data:
        raise RuleViolation("expects bytes read as they are from the file (pickle protocol 3 "
                            "or later; protocol 2 spells them as text): load it with pickle "
                            "where you trust it and save it again with torch.save")
    ref, span, findings = vm.storage_bytes(vm.data, at[0], len(data))
    if findings:
        vm.findings.extend(findings[: max(0, MAX_FINDINGS - len(vm.findings))])
        raise RuleViolation(f"the bytes at offset {at[0]} are not a legacy torch file holding "
                            f"one storage, read under the same rules")
    if ref.key in vm.storage_spans:  # one memoised bytes value loaded twice: two storages
        ref.key = f"{ref.key}.{len(vm.storage_spans)}"
    vm.storage_spans[ref.key] = span
    return ref


def _rule_rebuild_v3(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 7, 8)
    dtype = args[6]
    if not (isinstance(dtype, Global) and dtype.rule == "dtype"):
        raise RuleViolation("dtype argument must be a torch dtype")
    t = _plain(_tensor(args[0], args[1], args[2], args[3], args[4], args[5],
                       dtype.params["dtype"]))
    return _with_metadata(t, args[7] if len(args) == 8 else None)


# torch.Tensor's own data descriptors (several have setters: `data`, `grad`, `requires_grad`,
# `names`, `real`, `imag`). The converter has no torch to ask; the parent also refuses every
# name that torch.Tensor or Parameter defines when it rebuilds the attributes.
_TENSOR_OWN_ATTRS = frozenset({
    "data", "grad", "_grad", "requires_grad", "names", "real", "imag", "_base", "_version",
    "grad_fn", "_grad_fn", "is_leaf", "retains_grad", "output_nr", "_cdata", "shape", "dtype",
    "device", "layout", "T", "H", "mT", "mH", "_backward_hooks", "_post_accumulate_grad_hooks",
    "_python_dispatch", "is_sparse", "is_quantized", "is_meta", "itemsize", "nbytes", "ndim",
})


def _object_state(state: Any) -> list[tuple[str, Any]]:
    """The attributes torch's `_set_obj_state` would set: a dict, or (dict, slots dict).

    Names are plain identifiers without leading double underscores; the parent also refuses
    any name torch.Tensor itself defines (a property setter such as `data` or `grad`)."""
    if state is None or state == ():
        return []
    parts = list(state) if isinstance(state, tuple) else [state]
    if len(parts) not in (1, 2):
        raise RuleViolation("tensor state must be a dict or a (dict, slots) pair")
    out: list[tuple[str, Any]] = []
    for part in parts:
        if part is None:
            continue
        if not isinstance(part, SDict) or part.ordered or part.kind != "dict":
            raise RuleViolation("tensor state must be a plain dict")
        for name, value in part.items:
            if not (isinstance(name, str) and name.isidentifier() and not name.startswith("__")
                    and name not in _TENSOR_OWN_ATTRS):
                raise RuleViolation(f"tensor attribute name {name!r} is not a plain name")
            out.append((name, value))
    return out


def _rule_rebuild_meta(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """`_rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad)`: a tensor on the
    meta device (shape and dtype, no data), as torch.load(weights_only=True) rebuilds it."""
    _arity(args, 4)
    dtype, size, stride, requires_grad = args
    if not (isinstance(dtype, Global) and dtype.rule == "dtype"):
        raise RuleViolation("dtype must be a torch dtype")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or not isinstance(requires_grad, bool):
        raise RuleViolation("size and stride must match, requires_grad a bool")
    numel = 1
    for dim in size:
        numel *= dim
    if numel >= 1 << 63:  # torch.load fails on it too ("numel: integer multiplication overflow")
        raise RuleViolation("meta tensor size overflows")
    return Obj("meta_tensor", {"dtype": dtype.params["dtype"], "size": size, "stride": stride,
                               "requires_grad": requires_grad, "parameter": False, "attrs": []})


def _rule_rebuild_parameter(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 3, 4)
    data, requires_grad, hooks = args[:3]
    if isinstance(data, Obj) and data.kind == "meta_tensor" and not data.fields["parameter"]:
        if not isinstance(requires_grad, bool) or not _empty_hooks(hooks):
            raise RuleViolation("requires_grad must be a bool and hooks empty")
        attrs = _object_state(args[3]) if len(args) == 4 else []
        return Obj("meta_tensor", {**data.fields, "requires_grad": requires_grad,
                                   "parameter": True, "attrs": attrs})
    if not isinstance(data, TensorRef) or data.parameter:
        raise RuleViolation("data must be a tensor")
    if not isinstance(requires_grad, bool) or not _empty_hooks(hooks):
        raise RuleViolation("requires_grad must be a bool and hooks empty")
    attrs = _object_state(args[3]) if len(args) == 4 else []
    return TensorRef(data.storage, data.offset, data.size, data.stride, data.dtype,
                     requires_grad, parameter=True, attrs=attrs, bits=data.bits)


def _rule_rebuild_from_type_v2(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 4)
    func, new_type, inner_args, state = args
    if not (isinstance(new_type, Global) and new_type.rule == "tensor_type"):
        raise RuleViolation("type must be torch.Tensor or torch.nn.Parameter")
    if not (isinstance(func, Global) and func.rule in ("rebuild_tensor_v2", "rebuild_tensor_v3",
                                                        "rebuild_parameter")):
        raise RuleViolation("function must be a tensor rebuild function")
    attrs = _object_state(state)
    result = vm.call(func, inner_args, None, "call")
    if isinstance(result, TensorRef):
        if new_type.name == "Parameter":
            result.parameter = True
        result.attrs = [*result.attrs, *attrs]
    return result


_SPARSE_LAYOUTS = {"torch.sparse_coo": 3, "torch.sparse_csr": 4, "torch.sparse_csc": 4,
                   "torch.sparse_bsr": 4, "torch.sparse_bsc": 4}  # layout -> parts in data


# Every layout torch's `_get_layout` table holds (a saved `t.layout` value is one of these).
_LAYOUTS = frozenset({*_SPARSE_LAYOUTS, "torch.strided", "torch._mkldnn", "torch.jagged"})


def _rule_get_layout(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    # torch.serialization._get_layout(name): a lookup in torch's own table, given a string.
    _arity(args, 1)
    if args[0] not in _LAYOUTS:
        raise RuleViolation("expects the name of a torch layout")
    return Obj("layout", {"name": args[0]})


def _size_dims(v: Any) -> tuple[int, ...]:
    if isinstance(v, Obj) and v.kind == "torch_size":
        return tuple(v.fields["dims"])
    return _ints(v, "size")


def _rule_rebuild_sparse(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """`_rebuild_sparse_tensor(layout, data)`: COO (indices, values, size[, is_coalesced]) or
    compressed (compressed_indices, plain_indices, values, size). The parent rebuilds it with
    torch's constructors and checks the invariants (indices in range), as torch.load does."""
    _arity(args, 2)
    layout, data = args
    if not (isinstance(layout, Obj) and layout.kind == "layout") or not isinstance(data, tuple):
        raise RuleViolation("expects a sparse layout and a tuple of parts")
    name = layout.fields["name"]
    n = _SPARSE_LAYOUTS[name]
    coalesced = None
    if name == "torch.sparse_coo" and len(data) == 4:
        if not isinstance(data[3], bool):
            raise RuleViolation("is_coalesced must be a bool")
        coalesced, data = data[3], data[:3]
    if len(data) != n:
        raise RuleViolation(f"{name} expects {n} parts")
    parts, size = data[:-1], _size_dims(data[-1])
    if not all(isinstance(t, TensorRef) and not t.parameter and not t.attrs and t.quant is None
               for t in parts):
        raise RuleViolation("sparse parts must be plain tensors")
    return Obj("sparse", {"layout": name, "parts": list(parts), "size": size,
                          "coalesced": coalesced})


_QUANT_DTYPES = frozenset({"quint8", "qint8", "qint32", "quint4x2", "quint2x4"})


def _rule_rebuild_qtensor(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """`_rebuild_qtensor(storage, offset, size, stride, quantizer_params, requires_grad,
    hooks)`: affine schemes only (per tensor, per channel)."""
    _arity(args, 7)
    storage, offset, size, stride, params, requires_grad, hooks = args
    t = _tensor(storage, offset, size, stride, requires_grad, hooks, None)
    if t.dtype not in _QUANT_DTYPES:
        raise RuleViolation("a quantized tensor needs a quantized storage")
    if not (isinstance(params, tuple) and params and isinstance(params[0], Global)
            and params[0].rule == "qscheme"):
        raise RuleViolation("quantizer parameters must start with a qscheme")
    scheme = params[0].name
    if scheme == "per_tensor_affine" and len(params) == 3 and isinstance(
            params[1], float) and _is_int(params[2]):
        t.quant = (scheme, params[1], params[2])
    elif scheme in ("per_channel_affine", "per_channel_affine_float_qparams") and len(
            params) == 4 and all(isinstance(p, TensorRef) and p.quant is None
                                 for p in params[1:3]) and _is_int(params[3]):
        if not 0 <= params[3] < max(len(t.size), 1):
            raise RuleViolation("quantization axis out of range")
        t.quant = (scheme, params[1], params[2], params[3])
    else:
        raise RuleViolation(f"unsupported quantizer parameters for {scheme}")
    return t


def _rule_codecs_encode(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 2)
    text, encoding = args
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RuleViolation("only (str, 'latin1') is allowed")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise RuleViolation("text is not latin-1") from None


def _rule_set(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    frozen = g.rule == "builtins_frozenset"
    if args == ():
        return SSet(frozen=frozen)
    _arity(args, 1)
    items = args[0]
    if not isinstance(items, (SList, tuple)):
        raise RuleViolation("expects a list or tuple")
    members = list(items.items) if isinstance(items, SList) else list(items)
    if not all(hashable(m) for m in members):
        raise RuleViolation("unhashable set member")
    return SSet(members, frozen=frozen)


def _rule_bytes(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    # Protocols < 3 write b"" as `bytes()`; nothing else is allowed.
    if args != ():
        raise RuleViolation("only bytes() with no arguments is allowed")
    return b""


def _rule_numpy_frombuffer(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """Protocol 5 arrays: `_frombuffer(buffer, dtype, shape, order)`."""
    _arity(args, 4)
    buf, dtype, shape, order = args
    if isinstance(buf, Obj) and buf.kind == "bytearray":
        buf = buf.fields["data"]
    if not isinstance(buf, (bytes, memoryview)):
        raise RuleViolation("buffer must be bytes")
    if not (isinstance(dtype, Obj) and dtype.kind == "np_dtype" and dtype.fields["built"]
            and dtype.fields["code"] != NP_OBJECT):
        raise RuleViolation("dtype must be a plain numeric numpy dtype")
    shape = _ints(shape, "shape")
    if order not in ("C", "F"):
        raise RuleViolation("order must be 'C' or 'F'")
    count = 1
    for dim in shape:
        count *= dim
    if len(buf) != count * np_itemsize(vm, dtype.fields["code"]):
        raise RuleViolation("buffer size does not match shape and dtype")
    return Obj("ndarray", {"built": True, "shape": shape, "dtype": dtype,
                           "fortran": order == "F", "data": buf})


def _rule_complex(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 1, 2)
    if not all(isinstance(a, (int, float)) for a in args):
        raise RuleViolation("expects real numbers")
    try:
        [float(a) for a in args]
    except OverflowError:
        raise RuleViolation("number too large for a complex") from None
    imag = float(args[1]) if len(args) > 1 else 0.0
    return Obj("complex", {"real": float(args[0]), "imag": imag})


def _plain_int(v: Any) -> bool:
    """An int (not a bool) short enough to write as text: Python refuses str() of an int over
    4300 digits, which the structure record needs."""
    return isinstance(v, int) and not isinstance(v, bool) and v.bit_length() <= 12_000


def _rule_range(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """`range(start, stop, step)`, as range pickles itself (Python 2's xrange too)."""
    _arity(args, 1, 3)
    if not all(_plain_int(a) for a in args) or (len(args) == 3 and args[2] == 0):
        raise RuleViolation("expects integers (of at most 3600 digits) and a non-zero step")
    return Obj("range", {"v": list(args)})


def _rule_slice(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 1, 3)
    if not all(a is None or _plain_int(a) for a in args):
        raise RuleViolation("expects integers (of at most 3600 digits) or None")
    return Obj("slice", {"v": list(args)})


_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,6})?|[+-]?(Infinity|s?NaN\d*)")
_FRACTION_TEXT = re.compile(r"-?\d+(/[1-9]\d*)?")


def _rule_decimal(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """`Decimal(text)`, as Decimal pickles itself: the text, as str() writes it."""
    _arity(args, 1)
    if not (isinstance(args[0], str) and len(args[0]) <= 4096
            and _DECIMAL_TEXT.fullmatch(args[0])):
        raise RuleViolation("expects the text of a decimal number")
    return Obj("decimal", {"v": args[0]})


def _rule_fraction(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """`Fraction(numerator, denominator)`, as Fraction pickles itself (Python < 3.12 wrote
    its text, `n/d`)."""
    _arity(args, 1, 2)
    if len(args) == 2:
        n, d = args
        if not (_plain_int(n) and _plain_int(d) and d > 0):
            raise RuleViolation("expects integers (of at most 3600 digits), a positive denominator")
        return Obj("fraction", {"v": f"{n}/{d}"})
    if not (isinstance(args[0], str) and len(args[0]) <= 4096
            and _FRACTION_TEXT.fullmatch(args[0])):
        raise RuleViolation("expects the text of a fraction, n/d")
    return Obj("fraction", {"v": args[0]})


def _rule_bytearray(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    if args == ():
        return Obj("bytearray", {"data": b""})
    _arity(args, 1)
    if not isinstance(args[0], (bytes, memoryview)):
        raise RuleViolation("expects bytes")
    return Obj("bytearray", {"data": bytes(args[0])})


def _rule_reconstructor(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 3)
    cls, base, state = args
    if (isinstance(cls, Global) and cls.rule == "torch_version" and is_type_value(base)
            and base.qualname == "builtins.str"):  # protocols 0 and 1: (cls, str, "2.1.0")
        return vm.call(cls, (state,), None, "new")
    if not (isinstance(base, Global) and base.rule == "builtins_object") or state is not None:
        raise RuleViolation("only (cls, object, None) is allowed")
    return vm.call(cls, (), None, "new")


def _rule_torch_version(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """`torch.__version__` (a `str` subclass with version comparisons), as checkpoints save
    it: NEWOBJ (or copyreg's reconstructor) of one string."""
    _arity(args, 1)
    if not isinstance(args[0], str) or len(args[0]) > 256:
        raise RuleViolation("a TorchVersion holds one short string")
    return Obj("torch_version", {"v": args[0]})


def _rule_attribute_dict(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    """Lightning's `AttributeDict` (a dict subclass that only adds attribute access), as
    protocol 2+ pickles it: NEWOBJ with no arguments, then SETITEMS (dict's own)."""
    _arity(args, 0)
    return SDict(kind="attrdict", factory=g)


def _rule_namespace(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 0)
    return Obj("namespace", {"attrs": SDict()})


def _rule_path(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    if not all(isinstance(a, str) for a in args) or len(args) > 4096:
        raise RuleViolation("path parts must be strings")
    return Obj("path", {"class": g.name, "parts": list(args)})


def _bytes_arg(v: Any, n: int) -> bytes:
    if isinstance(v, str):  # protocol 0/1 writes these states as latin-1 strings
        try:
            v = v.encode("latin-1")
        except UnicodeEncodeError:
            raise RuleViolation("state is not latin-1") from None
    if not isinstance(v, (bytes, memoryview)) or len(v) != n:
        raise RuleViolation(f"state must be {n} bytes")
    return bytes(v)


def _tz(v: Any) -> Any:
    if v is None or (isinstance(v, Obj) and v.kind == "timezone"):
        return v
    raise RuleViolation("tzinfo must be a datetime.timezone")


def _rule_datetime(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    kind = g.rule.removeprefix("datetime_")
    if kind in ("datetime", "date", "time"):
        n = {"datetime": 10, "date": 4, "time": 6}[kind]
        _arity(args, 1) if kind == "date" else _arity(args, 1, 2)
        return Obj(kind, {"state": _bytes_arg(args[0], n),
                          "tz": _tz(args[1]) if len(args) == 2 else None})
    if kind == "timedelta":
        _arity(args, 3)
        if not all(_is_int(a) for a in args):
            raise RuleViolation("expects three ints")
        return Obj("timedelta", {"days": args[0], "seconds": args[1], "us": args[2]})
    if kind == "timezone":
        _arity(args, 1, 2)
        if not (isinstance(args[0], Obj) and args[0].kind == "timedelta"):
            raise RuleViolation("offset must be a timedelta")
        if len(args) == 2 and not isinstance(args[1], str):
            raise RuleViolation("name must be a string")
        return Obj("timezone", {"offset": args[0], "name": args[1] if len(args) == 2 else None})
    raise RuleViolation("unknown datetime kind")


def _rule_numpy_reconstruct(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 3)
    cls, shape, typecode = args
    if not (isinstance(cls, Global) and cls.rule == "numpy_ndarray_type"):
        raise RuleViolation("only numpy.ndarray may be reconstructed")
    if shape != (0,) or typecode not in (b"b", "b"):
        raise RuleViolation("expects (ndarray, (0,), b'b')")
    return Obj("ndarray", {"built": False})


_NP_TEXT = re.compile(r"([US])([1-9]\d{0,5})")  # fixed-width text: bytes, never objects
# Plain-data dtypes torch has no dtype for: 8-byte datetime64/timedelta64 (the unit comes from
# the BUILD state) and long double (16 bytes where numpy pickles it as 'f16').
_NP_OTHER = {"M8": 8, "m8": 8, "f16": 16, "O8": 8}
# Object arrays: their elements are pickled values, each judged by the same rules as any other
# value; only an ndarray BUILD (a list of them) may carry this dtype.
NP_OBJECT = "O8"
_NP_TIME_UNITS = frozenset({"generic", "Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns",
                            "ps", "fs", "as"})
_NP_TIME_CODE = re.compile(r"[Mm]8(?:\[[1-9]?\d{0,9}(?:Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\])?")


def np_itemsize(vm: PickleMachine, code: str) -> int:
    """Bytes per element of an allowed NumPy dtype code."""
    text = _NP_TEXT.fullmatch(code)
    if text:
        return int(text[2]) * (4 if text[1] == "U" else 1)
    if _NP_TIME_CODE.fullmatch(code):
        return 8
    if code in _NP_OTHER:
        return _NP_OTHER[code]
    return vm_itemsize(vm.rules.numpy_dtypes[code])


def _np_time_code(code: str, meta: Any) -> str:
    """The full datetime64/timedelta64 code numpy's `__setstate__` builds from the state's
    metadata `(None, (unit, count, 1, 1))` (numpy's own `__reduce__` writes exactly that)."""
    if not (isinstance(meta, tuple) and len(meta) == 2 and meta[0] is None
            and isinstance(meta[1], tuple) and len(meta[1]) == 4):
        raise RuleViolation("unexpected datetime64 dtype metadata")
    unit, num, den, events = meta[1]
    if not (isinstance(unit, bytes) and unit.decode("ascii", "replace") in _NP_TIME_UNITS
            and _is_int(num) and 1 <= num < 1 << 31
            and _is_int(den) and den == 1 and _is_int(events) and events == 1):
        raise RuleViolation("unexpected datetime64 unit")
    if unit == b"generic":
        if num != 1:
            raise RuleViolation("unexpected datetime64 unit")
        return code
    return f"{code}[{'' if num == 1 else num}{unit.decode()}]"


def _np_state_sizes(code: str) -> tuple[tuple[int, int, int], ...]:
    """(elsize, alignment, flags) numpy's `dtype.__reduce__` writes for `code`: -1 (sized by
    the code) for numeric dtypes, the exact sizes for text; flag 8 (needs-init) for unicode,
    which numpy writes on some versions and not on others."""
    text = _NP_TEXT.fullmatch(code)
    if code == NP_OBJECT:
        return ((-1, -1, 63),)  # numpy's object flags (item refs, needs the Python API)
    if text is None:
        return ((-1, -1, 0),)
    if text[1] == "S":
        return ((int(text[2]), 1, 0),)
    return ((int(text[2]) * 4, 4, 8), (int(text[2]) * 4, 4, 0))


def _rule_numpy_dtype(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 3)
    code, align, copy = args
    if not isinstance(code, str) or (code not in vm.rules.numpy_dtypes
                                     and code not in _NP_OTHER
                                     and not _NP_TEXT.fullmatch(code)):
        raise RuleViolation(f"dtype {code!r} is not a plain numeric or text dtype")
    # Modern numpy pickles (code, False, True); the numpy of Python 2 wrote ints (code, 0, 1).
    if not all(isinstance(a, int) and a in (0, 1) for a in (align, copy)):
        raise RuleViolation("expects (code, bool, bool)")
    return Obj("np_dtype", {"code": code, "byteorder": "=", "built": False})


def _rule_numpy_scalar(vm: PickleMachine, g: Global, args: tuple[Any, ...]) -> Any:
    _arity(args, 2)
    dtype, data = args
    # numpy's scalar pickles BUILD the dtype first; the scalar copies the dtype as it is when
    # made, so a BUILD afterwards (byte order, datetime unit) would not reach it in numpy.
    if not (isinstance(dtype, Obj) and dtype.kind == "np_dtype" and dtype.fields["built"]):
        raise RuleViolation("first argument must be a built numpy dtype")
    if dtype.fields["code"] == NP_OBJECT:
        raise RuleViolation("an object scalar's bytes are a pointer")
    itemsize = np_itemsize(vm, dtype.fields["code"])
    s8 = isinstance(data, Str8)
    return Obj("np_scalar", {"dtype": dtype, "s8": s8,
                             "data": _bytes_arg(data.raw if s8 else data, itemsize)})


_CALL, _NEW = frozenset({"call"}), frozenset({"new"})
Rule = Callable[[PickleMachine, Global, tuple[Any, ...]], Any]
_RULES: dict[str, tuple[frozenset[str], Rule]] = {
    "ordered_dict": (_CALL, _rule_ordered_dict),
    "counter": (_CALL, _rule_counter),
    "torch_size": (_CALL, _rule_torch_size),
    "torch_device": (_CALL, _rule_torch_device),
    "rebuild_tensor_v2": (_CALL, _rule_rebuild_v2),
    "rebuild_tensor_v3": (_CALL, _rule_rebuild_v3),
    "rebuild_tensor_legacy": (_CALL, _rule_rebuild_legacy),
    "storage_from_bytes": (_CALL, _rule_storage_from_bytes),
    "rebuild_parameter": (_CALL, _rule_rebuild_parameter),
    "rebuild_meta": (_CALL, _rule_rebuild_meta),
    "rebuild_parameter_with_state": (_CALL, _rule_rebuild_parameter),
    "rebuild_from_type_v2": (_CALL, _rule_rebuild_from_type_v2),
    "codecs_encode": (_CALL, _rule_codecs_encode),
    "builtins_set": (_CALL, _rule_set),
    "builtins_frozenset": (_CALL, _rule_set),
    "builtins_complex": (_CALL, _rule_complex),
    "builtins_range": (_CALL, _rule_range),
    "builtins_slice": (_CALL, _rule_slice),
    "decimal": (_CALL, _rule_decimal),
    "fraction": (_CALL, _rule_fraction),
    "builtins_bytearray": (_CALL, _rule_bytearray),
    "copyreg_reconstructor": (_CALL, _rule_reconstructor),
    "namespace": (_NEW, _rule_namespace),
    "torch_version": (_NEW, _rule_torch_version),
    "attribute_dict": (_NEW, _rule_attribute_dict),
    "defaultdict": (_CALL, _rule_defaultdict),
    "get_layout": (_CALL, _rule_get_layout),
    "rebuild_sparse": (_CALL, _rule_rebuild_sparse),
    "rebuild_qtensor": (_CALL, _rule_rebuild_qtensor),
    "omegaconf": (_NEW, _rule_omegaconf),
    "pathlib_path": (_CALL, _rule_path),
    "datetime_datetime": (_CALL, _rule_datetime),
    "datetime_date": (_CALL, _rule_datetime),
    "datetime_time": (_CALL, _rule_datetime),
    "datetime_timedelta": (_CALL, _rule_datetime),
    "datetime_timezone": (_CALL, _rule_datetime),
    "numpy_reconstruct": (_CALL, _rule_numpy_reconstruct),
    "numpy_dtype": (_CALL, _rule_numpy_dtype),
    "numpy_scalar": (_CALL, _rule_numpy_scalar),
    "numpy_frombuffer": (_CALL, _rule_numpy_frombuffer),
    "builtins_bytes": (_CALL, _rule_bytes),
    "joblib_array_wrapper": (_NEW, lambda vm, g, args: _rule_joblib_wrapper(vm, args)),
}


def _rule_joblib_wrapper(vm: PickleMachine, args: tuple[Any, ...]) -> Any:
    """`NumpyArrayWrapper` as joblib pickles it: NEWOBJ with no arguments (then BUILD)."""
    if args != () or not (vm.joblib_arrays or vm.joblib_plain):
        raise RuleViolation("expects NEWOBJ with no arguments, in a joblib file")
    return Obj("joblib_wrapper", {"built": False})


class ReaderStops(Exception):
    """Where pickle.load itself fails (the plain reading of a joblib file): nothing after it
    is read by that reader."""


# What pickle.load fails on for certain, so reads nothing after (the plain reading).
_PLAIN_STOPS = ("unknown opcode", "stack underflow", "no MARK to pop to", "truncated stream",
                "memo index")
# STOP returns whatever the stack or frame holds; a stream reader reads on from after it.
_PLAIN_STOP_AT_STOP = ("values left on the stack at STOP", "STOP inside an unfinished FRAME")
_PLAIN_MAX_STREAMS = 64


def _surely_not_str(value: Any) -> bool:
    """A value that is no `str` whatever the reader (a Python 2 string may decode to one, and
    an opaque value could be anything): CPython's STACK_GLOBAL refuses it."""
    return value is None or isinstance(value, (bytes, memoryview, int, float, tuple, SList,
                                               SDict, Obj, Global))


def plain_joblib_reading(data: Buf, *, start: int = 0, end: int | None = None,
                         member: str | None = None) -> list[Finding]:
    """The findings of pickle.load (or torch.load) reading a joblib file that holds object
    arrays: after a wrapper's BUILD that reader goes on with joblib's nested pickle, in the
    outer memo and stack. Reading stops where that reader fails for certain, whatever the
    interpreter (never at an import: what imports depends on the machine that loads the
    file); at a STOP it returns, and a reader of several pickles from one stream
    (`while True: pickle.load(f)`) starts afresh there, so the rest is read the same way.
    Anything this machine cannot follow exactly is a finding (fail closed)."""
    limit = len(data) if end is None else end
    findings: list[Finding] = []
    pos = start
    for _ in range(_PLAIN_MAX_STREAMS):
        vm = PickleMachine(data, start=pos, end=limit, member=member, joblib_plain=True)
        try:
            vm.run()
            pos = vm.pos
        except ReaderStops:
            findings.extend(vm.findings)
            break
        except MalformedPickle as exc:
            findings.extend(vm.findings)
            if str(exc).startswith(_PLAIN_STOP_AT_STOP):  # STOP returned: read on from there
                pos = exc.offset + 1
            elif str(exc).startswith(_PLAIN_STOPS):
                break
            else:
                findings.append(Finding(
                    "malformed", f"read as a plain pickle (pickle.load, torch.load): {exc}",
                    exc.offset, exc.opcode, None, member))
                break
        else:
            findings.extend(vm.findings)
        if findings or pos >= limit:
            break
    else:
        findings.append(Finding("malformed", "more pickle streams than a plain reading follows",
                                pos, None, None, member))
    if not findings:
        return []
    return [Finding("polyglot", "pickle.load and torch.load run joblib's object-array pickle as "
                    "part of the outer one (in its memo), and that reading is not plain data: "
                    "joblib.load alone would read it safely; resave the arrays without objects",
                    start, None, None, member), *findings]


_JOBLIB_KEYS = ("subclass", "shape", "order", "dtype", "allow_mmap")


def _build_joblib_array(vm: PickleMachine, target: Obj, state: Any) -> None:
    """joblib's NumpyUnpickler.load_build: after BUILD, the wrapper's `read_array` reads (from
    the file, not the current frame) one padding-length byte and that many padding bytes
    (joblib >= 1.2: `numpy_array_alignment_bytes` set), then count * itemsize raw bytes, and
    replaces the wrapper on the stack with the array (native byte order: load's default).

    Every other unpickler of the same bytes (pickle.load, torch.load) takes the byte after
    BUILD as its next opcode: that byte must be no opcode at all (joblib's padding length,
    1-16, never is), so they all stop there, before reading any array byte as code. A raw read
    inside an unfinished FRAME (joblib would read past the frame) is refused."""
    items = dict(_str_keyed(state).items)
    keys = set(items)
    if keys != set(_JOBLIB_KEYS) and keys != {*_JOBLIB_KEYS, "numpy_array_alignment_bytes"}:
        raise RuleViolation("unexpected NumpyArrayWrapper state")
    sub, dtype, order = items["subclass"], items["dtype"], items["order"]
    # numpy.matrix: joblib.load itself returns the plain ndarray (numpy 2 dropped the
    # `__array_prepare__` it rebuilt subclasses with), and so does safeload.
    if not (isinstance(sub, Global) and sub.rule in ("numpy_ndarray_type", "numpy_matrix_type")):
        raise RuleViolation("only numpy.ndarray and numpy.matrix arrays (no memmaps)")
    if not (isinstance(dtype, Obj) and dtype.kind == "np_dtype" and dtype.fields["built"]):
        raise RuleViolation("array dtype must be a plain numeric numpy dtype")
    if order not in ("C", "F") or not isinstance(items["allow_mmap"], bool):
        raise RuleViolation("order must be 'C' or 'F', allow_mmap a bool")
    if vm.joblib_plain:  # pickle.load: BUILD sets the wrapper's attributes, reads nothing
        target.fields.update(built=True)
        return
    if dtype.fields["code"] == NP_OBJECT:
        _read_nested_object_array(vm, target)
        return
    shape = _ints(items["shape"], "shape")
    align = items.get("numpy_array_alignment_bytes")
    if align is not None and not _is_int(align):
        raise RuleViolation("alignment must be an int")
    count = 1
    for dim in shape:
        count *= dim
    nbytes = count * np_itemsize(vm, dtype.fields["code"])
    if vm.frame_end is not None:
        if vm.pos != vm.frame_end:
            raise RuleViolation("array bytes inside an unfinished FRAME")
        vm.frame_end = None
    if align is not None or nbytes:
        nxt = bytes(vm.data[vm.pos:vm.pos + 1])
        if not nxt or nxt[0] in _OPS:
            raise RuleViolation("the bytes after the wrapper read as pickle opcodes: "
                                "pickle.load and torch.load would run them")
    pos = vm.pos
    if align is not None:
        pos += 1 + vm.data[pos]
    if pos + nbytes > vm.end:
        raise RuleViolation("array bytes run past the end of the stream")
    vm.pos = pos + nbytes
    target.fields.update(built=True)
    vm.stack[-1] = Obj("ndarray", {"built": True, "shape": shape, "dtype": dtype,
                                   "fortran": order == "F", "data": vm.data[pos:vm.pos]})


def _read_nested_object_array(vm: PickleMachine, target: Obj) -> None:
    """joblib's read_array for an object dtype: `pickle.load(file_handle)` right after the
    BUILD, a second pickle with a memo and stack of its own, read under the same rules; what
    it returns replaces the wrapper (joblib then asks it for its dtype: an array or nothing).
    The same bytes read by pickle.load run in the outer stream instead: the inspection checks
    that reading too (`plain_joblib_reading`)."""
    if vm.frame_end is not None:
        if vm.pos != vm.frame_end:
            raise RuleViolation("array bytes inside an unfinished FRAME")
        vm.frame_end = None
    nested = PickleMachine(vm.data, start=vm.pos, end=vm.end, member=vm.member, rules=vm.rules,
                           persistent_load=None)
    value = nested.run()
    vm.findings.extend(nested.findings)
    vm.dropped_findings += nested.dropped_findings
    vm.globals_seen.extend(nested.globals_seen)
    if not nested.findings and not (
            isinstance(value, Obj) and value.kind == "ndarray" and value.fields["built"]
            and value.fields["dtype"].fields["code"] == NP_OBJECT):
        raise RuleViolation("joblib's nested pickle holds no object array")
    vm.pos = nested.pos
    vm.nested_pickles += 1
    target.fields.update(built=True)
    vm.stack[-1] = value


def _str_keyed(state: Any) -> SDict:
    if not isinstance(state, SDict) or not all(isinstance(k, str) for k, _ in state.items):
        raise RuleViolation("state must be a dict with string keys")
    return state


def _build(vm: PickleMachine, target: Any, state: Any) -> None:
    """BUILD, allowed only where the resulting object stays plain data."""
    if isinstance(target, SDict) and target.ordered:
        # OrderedDict has no __setstate__: BUILD updates its __dict__ (torch's `_metadata`).
        for key, value in _str_keyed(state).items:
            target.attrs[key] = value
        return
    if isinstance(target, Obj) and target.kind == "omegaconf" and not target.fields["built"]:
        _build_omegaconf(target, state)
        return
    if isinstance(target, Obj) and target.kind == "namespace":
        target.fields["attrs"].items.extend(_str_keyed(state).items)
        return
    if isinstance(target, Obj) and target.kind == "joblib_wrapper" and not target.fields["built"]:
        _build_joblib_array(vm, target, state)
        return
    if isinstance(target, Obj) and target.kind == "np_dtype" and not target.fields["built"]:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise RuleViolation("unexpected numpy dtype state")
        byteorder = state[1]
        if byteorder not in ("<", ">", "|", "=") or any(s is not None for s in state[2:5]):
            raise RuleViolation("structured or sub-array dtypes are not allowed")
        code = target.fields["code"]
        time = code in ("M8", "m8")
        if len(state) != (9 if time or state[0] == 4 else 8) or (time and state[0] != 4):
            raise RuleViolation("unexpected numpy dtype state")
        if time:
            code = target.fields["code"] = _np_time_code(code, state[8])
        if not all(_is_int(x) for x in state[5:8]) or state[5:8] not in _np_state_sizes(code):
            # numpy takes a text dtype's itemsize, and every dtype's flags, from this state,
            # not from the code: any other value is an array read with another length than
            # the code says (a stream desync in joblib files) or flagged as holding pointers.
            raise RuleViolation(f"numpy dtype state {state[5:8]!r} is not what numpy writes "
                                f"for {target.fields['code']!r}")
        target.fields.update(byteorder=byteorder, built=True)
        return
    if isinstance(target, Obj) and target.kind == "ndarray" and not target.fields["built"]:
        if not (isinstance(state, tuple) and len(state) == 5 and _is_int(state[0])
                and state[0] == 1):  # the only version numpy writes
            raise RuleViolation("unexpected ndarray state")
        _, shape, dtype, fortran, raw = state
        shape = _ints(shape, "shape")
        if not (isinstance(dtype, Obj) and dtype.kind == "np_dtype" and dtype.fields["built"]):
            raise RuleViolation("array dtype must be a plain numeric numpy dtype")
        if not isinstance(fortran, bool):
            raise RuleViolation("fortran flag must be a bool")
        count = 1
        for dim in shape:
            count *= dim
        if dtype.fields["code"] == NP_OBJECT:
            # numpy's setstate fills the array from a list, in C order whatever the memory order
            if not (isinstance(raw, SList) and len(raw.items) == count):
                raise RuleViolation("object array state must be a list of its elements")
            if dtype.fields["byteorder"] != "|":
                raise RuleViolation("an object dtype's byte order is '|'")
            budget = current()
            if budget is not None:  # the copy below: one memoised list built a million times
                budget.charge_ops(count)
            # The elements as they are now: numpy copies the list, so later APPENDS to it
            # (through the memo) do not reach the array.
            target.fields.update(shape=shape, dtype=dtype, fortran=fortran, data=None,
                                 objects=list(raw.items), built=True, s8=False)
            return
        s8 = isinstance(raw, Str8)  # Python 2: numpy encodes the decoded str as latin-1
        raw = raw.raw if isinstance(raw, Str8) else raw
        if not isinstance(raw, (bytes, memoryview)):
            raise RuleViolation("array data must be bytes")
        itemsize = np_itemsize(vm, dtype.fields["code"])
        if len(raw) != count * itemsize:
            raise RuleViolation("array data size does not match its shape")
        target.fields.update(shape=shape, dtype=dtype, fortran=fortran, data=raw, built=True,
                             s8=s8)
        return
    raise RuleViolation("not an object whose state may be set")


# ------------------------------------------------------------------------------------------
# torch persistent ids


def torch_persistent_load(legacy: bool) -> PersistentLoad:
    """The persistent-id rule of torch's zip (`legacy=False`) and pre-1.6 formats."""
    storages: dict[str, StorageRef] = {}

    def load(pid: Any, vm: PickleMachine) -> StorageRef:
        expected = 6 if legacy else 5
        if not isinstance(pid, tuple) or len(pid) != expected or pid[0] != "storage":
            raise RuleViolation("persistent id is not a ('storage', ...) record")
        _, stype, key, location, numel = pid[:5]
        if legacy and pid[5] is not None:
            raise RuleViolation("legacy storage views are not supported")
        if not (isinstance(stype, Global) and stype.rule == "storage_type"):
            raise RuleViolation("storage type is not an allowlisted storage class")
        if not isinstance(key, str) or not key or len(key) > 256 or not key.isprintable():
            raise RuleViolation("storage key must be a short printable string")
        if not isinstance(location, str) or not _DEVICE.fullmatch(location):
            raise RuleViolation("storage location must be a device such as 'cpu' or 'cuda:0'")
        if not _is_int(numel) or numel < 0:
            raise RuleViolation("storage size must be a non-negative int")
        ref = StorageRef(key, stype.params["dtype"], numel, location,
                         bool(stype.params.get("untyped")))
        seen = storages.get(key)
        if seen is not None:
            if (seen.dtype, seen.numel, seen.untyped) != (ref.dtype, ref.numel, ref.untyped):
                raise RuleViolation(f"storage {key!r} is declared twice, differently")
            return seen
        storages[key] = ref
        return ref

    load.storages = storages  # type: ignore[attr-defined]
    return load
