"""Stream generators and oracles shared by `test_fuzz_inspector.py` and
`benchmarks/fuzz_inspector.py`.

Every generator takes a *chooser* (`RandomChooser` for the benchmark, `DataChooser` for
hypothesis) so the very same code produces the streams in both places.

Generators:
- `gen_soup`: random opcodes with random (often hostile) arguments, plus random bytes;
- `gen_structured`: stack-aware streams that mostly parse, built from allowlisted and
  refused globals with argument templates close to what torch/numpy/pickle write, so a good
  share of them pass the machine as clean and feed the differential oracle;
- `gen_plain_values`: literal/container-only streams (no import at all) for the value oracle;
- `mutate_corpus`: byte and opcode-level mutations of real `torch.save` / `pickle.dump` /
  safetensors / NumPy outputs, including a mutated `data.pkl` re-zipped with valid CRCs.

Oracles:
- `find_class_oracle`: for a stream the machine passes as clean, the real unpicklers (C
  `pickle.Unpickler` and pure-Python `pickle._Unpickler`), with `find_class` and
  `persistent_load` returning inert recording stubs, must never import a global outside the
  allowlist (after the real protocol<3 `_compat_pickle` renames) nor call a method on an
  object the machine says stays plain data.
- `value_oracle`: for a clean import-free stream both real unpicklers must succeed and return
  exactly the value the machine computed (the machine claims to be stricter than pickle,
  never looser, and exact).
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import math
import pickle
import pickletools
import random
import re
import struct
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safeload_conversion
from safeload_conversion.pickle_vm import (
    MalformedPickle,
    Obj,
    PickleMachine,
    SDict,
    SList,
    SSet,
    Str8,
    torch_persistent_load,
)

ALLOWLIST_PATH = Path(safeload_conversion.__file__).with_name("allowlist.json")


# ------------------------------------------------------------------------------------------
# Choosers


class RandomChooser:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def boolean(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def raw(self, n: int) -> bytes:
        return self.rng.randbytes(n)


class DataChooser:
    """Hypothesis `st.data()` behind the chooser interface (shrinks like any strategy)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, lo: int, hi: int) -> int:
        return int(self.data.draw(self.st.integers(lo, hi)))

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.integer(0, len(seq) - 1)]

    def boolean(self, p: float = 0.5) -> bool:
        # integers shrink towards 0: "False" is the simpler choice
        return self.integer(0, 999) >= int(1000 * (1 - p))

    def raw(self, n: int) -> bytes:
        return bytes(self.data.draw(self.st.binary(min_size=n, max_size=n)))


# ------------------------------------------------------------------------------------------
# Encoding


OPS: dict[str, tuple[int, str]] = {
    name: (code, kind)
    for code, (name, kind) in {
        0x28: ("MARK", ""), 0x2E: ("STOP", ""), 0x30: ("POP", ""), 0x31: ("POP_MARK", ""),
        0x32: ("DUP", ""), 0x46: ("FLOAT", "line"), 0x49: ("INT", "line"),
        0x4A: ("BININT", "i4"), 0x4B: ("BININT1", "u1"), 0x4C: ("LONG", "line"),
        0x4D: ("BININT2", "u2"), 0x4E: ("NONE", ""), 0x50: ("PERSID", "line"),
        0x51: ("BINPERSID", ""), 0x52: ("REDUCE", ""), 0x53: ("STRING", "line"),
        0x54: ("BINSTRING", "len4s"), 0x55: ("SHORT_BINSTRING", "len1"),
        0x56: ("UNICODE", "line"), 0x58: ("BINUNICODE", "len4"), 0x61: ("APPEND", ""),
        0x62: ("BUILD", ""), 0x63: ("GLOBAL", "line2"), 0x64: ("DICT", ""),
        0x7D: ("EMPTY_DICT", ""), 0x65: ("APPENDS", ""), 0x67: ("GET", "line"),
        0x68: ("BINGET", "u1"), 0x69: ("INST", "line2"), 0x6A: ("LONG_BINGET", "u4"),
        0x6C: ("LIST", ""), 0x5D: ("EMPTY_LIST", ""), 0x6F: ("OBJ", ""),
        0x70: ("PUT", "line"), 0x71: ("BINPUT", "u1"), 0x72: ("LONG_BINPUT", "u4"),
        0x73: ("SETITEM", ""), 0x74: ("TUPLE", ""), 0x29: ("EMPTY_TUPLE", ""),
        0x75: ("SETITEMS", ""), 0x47: ("BINFLOAT", "f8"), 0x80: ("PROTO", "u1"),
        0x81: ("NEWOBJ", ""), 0x82: ("EXT1", "u1"), 0x83: ("EXT2", "u2"), 0x84: ("EXT4", "i4"),
        0x85: ("TUPLE1", ""), 0x86: ("TUPLE2", ""), 0x87: ("TUPLE3", ""),
        0x88: ("NEWTRUE", ""), 0x89: ("NEWFALSE", ""), 0x8A: ("LONG1", "len1"),
        0x8B: ("LONG4", "len4s"), 0x42: ("BINBYTES", "len4"), 0x43: ("SHORT_BINBYTES", "len1"),
        0x8C: ("SHORT_BINUNICODE", "len1"), 0x8D: ("BINUNICODE8", "len8"),
        0x8E: ("BINBYTES8", "len8"), 0x8F: ("EMPTY_SET", ""), 0x90: ("ADDITEMS", ""),
        0x91: ("FROZENSET", ""), 0x92: ("NEWOBJ_EX", ""), 0x93: ("STACK_GLOBAL", ""),
        0x94: ("MEMOIZE", ""), 0x95: ("FRAME", "u8"), 0x96: ("BYTEARRAY8", "len8"),
        0x97: ("NEXT_BUFFER", ""), 0x98: ("READONLY_BUFFER", ""),
    }.items()
}
OP_NAMES = sorted(OPS)
LEN_OPS = [n for n, (_, k) in OPS.items() if k.startswith("len")]


def op(name: str, arg: Any = None) -> bytes:
    """Encode one opcode with a well-formed argument."""
    code, kind = OPS[name]
    head = bytes([code])
    if kind == "":
        return head
    if kind == "u1":
        return head + bytes([arg & 0xFF])
    if kind == "u2":
        return head + struct.pack("<H", arg & 0xFFFF)
    if kind in ("u4",):
        return head + struct.pack("<I", arg & 0xFFFFFFFF)
    if kind == "i4":
        return head + struct.pack("<i", arg)
    if kind == "u8":
        return head + struct.pack("<Q", arg)
    if kind == "f8":
        return head + struct.pack(">d", arg)
    if kind == "line":
        return head + arg + b"\n"
    if kind == "line2":
        return head + arg[0] + b"\n" + arg[1] + b"\n"
    if kind == "len1":
        return head + bytes([len(arg)]) + arg
    if kind == "len4":
        return head + struct.pack("<I", len(arg)) + arg
    if kind == "len4s":
        return head + struct.pack("<i", len(arg)) + arg
    if kind == "len8":
        return head + struct.pack("<Q", len(arg)) + arg
    raise AssertionError(kind)


def long_bytes(n: int) -> bytes:
    """Two's complement little-endian, as pickle's LONG1/LONG4 write it."""
    if n == 0:
        return b""
    nbytes = (n.bit_length() >> 3) + 1
    out = n.to_bytes(nbytes, "little", signed=True)
    if n < 0 and nbytes > 1 and out[-1] == 0xFF and (out[-2] & 0x80) != 0:
        out = out[:-1]
    return out


# ------------------------------------------------------------------------------------------
# The allowlist, read independently of the machine


def load_allowlist() -> dict[tuple[str, str], str]:
    doc = json.loads(ALLOWLIST_PATH.read_text(encoding="utf-8"))
    return {(g["module"], g["name"]): g["rule"] for g in doc["globals"]}


def importable_allowlist() -> set[tuple[str, str]]:
    """(module, name) pairs a clean stream may make an unpickler import."""
    return {k for k, rule in load_allowlist().items() if rule != "unsupported"}


def real_find_class_target(module: str, name: str, proto: int) -> tuple[str, str]:
    """What CPython's find_class imports for (module, name), fix_imports on (the default)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


# ------------------------------------------------------------------------------------------
# Interesting values

INT_LINES = [b"0", b"00", b"01", b"1", b"-1", b"+7", b"010", b"007", b"08", b"0x10", b"1_0",
             b" 5", b"5 ", b"5L", b"99999999999999999999", b"-0", b"", b"-", b"1e3", b"+"]
LONG_LINES = [b"5L", b"0L", b"-12L", b"010L", b"123", b"99999999999999999999999L", b"L",
              b"0x1L", b"1_0L"]
FLOAT_LINES = [b"1.5", b"-0.0", b"nan", b"inf", b"-inf", b"1e999", b"1e-400", b"1_0.5",
               b" 1.0", b"1.0 ", b"0x1p3", b"infinity", b"+1.", b".5", b"", b"1e5"]
STRING_LINES = [b"'abc'", b'"x"', b"'\\x41'", b"'\\xff'", b"'a", b"''", b"'\\n'", b"'a\"",
                b"'\\'", b"'\\q'", b"'\x80'"]
UNICODE_LINES = [b"abc", b"\\u2603", b"\\x41", b"\\U0001F600", b"\\ud800", b"\xe9", b"",
                 b"\\u12", b"\\"]
MEMO_LINES = [b"0", b"1", b"2", b"01", b" 1", b"-1", b"+1", b"", b"4294967296"]
TEXTS = ["", "a", "storage", "cpu", "cuda:0", "latin1", "latin-1", "weight", "_metadata",
         "f4", "<", "\u2603", "\ud800", "0", "key", "version"]
BYTES = [b"", b"b", b"\x00" * 4, b"\x00\x01\x02\x03" * 3, b"\xff" * 10, b"\x07\xe4\x01\x02"]
INTS = [0, 1, -1, 2, 3, 4, 7, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**63, -(2**64),
        2**100, 10]
FLOATS = [0.0, -0.0, 1.5, float("inf"), float("nan"), 1e308]

REFUSED_GLOBALS = [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
    ("builtins", "getattr"), ("__builtin__", "eval"), ("__builtin__", "getattr"),
    ("subprocess", "Popen"), ("torch", "load"), ("numpy", "load"), ("pickle", "loads"),
    ("torch.storage", "_load_from_bytes"), ("torch", "Tensor.__reduce_ex__"),
    ("collections", "OrderedDict.fromkeys"), ("builtins", "bytes"), ("builtins", "dict"),
    ("copyreg", "__newobj__"), ("UserDict", "OrderedDict"), ("exceptions", "Exception"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_qtensor"),
    ("numpy._core.numeric", "_frombuffer"), ("builtins", "setattr"), ("functools", "partial"),
    ("webbrowser", "open"), ("runpy", "_run_code"), ("__main__", "Evil"),
]
COMPAT_GLOBALS = [("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "complex"),
                  ("__builtin__", "bytearray"), ("__builtin__", "object"),
                  ("copy_reg", "_reconstructor"), ("__builtin__", "unicode")]
WEIRD_GLOBALS = [("", "x"), ("os", ""), ("a b", "c"), ("torch", "float32 "), ("1x", "y"),
                 ("torch", "nn.parameter.Parameter"), ("tørch", "x")]


# ------------------------------------------------------------------------------------------
# Random opcode soup


def _soup_arg(c: Any, name: str) -> bytes:
    code, kind = OPS[name]
    head = bytes([code])
    if kind == "":
        return head
    if kind == "u1":
        return head + bytes([c.choice([0, 1, 2, 3, 4, 5, 6, 255, c.integer(0, 255)])])
    if kind == "u2":
        return head + struct.pack("<H", c.choice([0, 1, 2, 65535, c.integer(0, 65535)]))
    if kind in ("u4", "i4"):
        return head + struct.pack("<I", c.choice(
            [0, 1, 2, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, c.integer(0, 0xFFFFFFFF)]))
    if kind == "u8":
        return head + struct.pack("<Q", c.choice(
            [0, 1, 5, 9, 2**63, 2**64 - 1, c.integer(0, 64), c.integer(0, 2**64 - 1)]))
    if kind == "f8":
        return head + c.raw(8)
    if kind == "line":
        pool = {"INT": INT_LINES, "LONG": LONG_LINES, "FLOAT": FLOAT_LINES,
                "STRING": STRING_LINES, "UNICODE": UNICODE_LINES}.get(name, MEMO_LINES)
        line = c.choice(pool) if c.boolean(0.8) else c.raw(c.integer(0, 6))
        return head + line + (b"\n" if c.boolean(0.95) else b"")
    if kind == "line2":
        m, n = c.choice(
            [*load_allowlist().keys(), *REFUSED_GLOBALS, *COMPAT_GLOBALS, *WEIRD_GLOBALS])
        return head + m.encode() + b"\n" + n.encode() + (b"\n" if c.boolean(0.95) else b"")
    # length-prefixed: honest, short, or huge declared lengths
    payload = c.raw(c.integer(0, 12))
    mode = c.integer(0, 9)
    if kind == "len1":
        n = len(payload) if mode < 7 else c.integer(0, 255)
        return head + bytes([n]) + payload
    if kind in ("len4", "len4s"):
        n = len(payload) if mode < 6 else c.choice(
            [0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, len(payload) + 1, c.integer(0, 0xFFFFFFFF)])
        return head + struct.pack("<I", n) + payload
    n = len(payload) if mode < 6 else c.choice(
        [2**63 - 1, 2**64 - 1, 2**40, 2**32, len(payload) + 1, c.integer(0, 2**64 - 1)])
    return head + struct.pack("<Q", n) + payload


def gen_soup(c: Any, max_ops: int = 40) -> bytes:
    """Random opcodes with random arguments; usually malformed, sometimes not."""
    parts: list[bytes] = []
    if c.boolean(0.7):
        parts.append(op("PROTO", c.choice([0, 1, 2, 3, 4, 5, 5, 6, 255])))
    for _ in range(c.integer(0, max_ops)):
        r = c.integer(0, 19)
        if r == 0:
            parts.append(c.raw(c.integer(1, 8)))
        elif r < 4:
            parts.append(_soup_arg(c, c.choice(["MARK", "NONE", "EMPTY_TUPLE", "EMPTY_LIST",
                                                "EMPTY_DICT", "BININT1", "SHORT_BINUNICODE",
                                                "TUPLE", "REDUCE", "BUILD", "STACK_GLOBAL",
                                                "GLOBAL", "MEMOIZE", "BINGET", "BINPUT"])))
        else:
            parts.append(_soup_arg(c, c.choice(OP_NAMES)))
    if c.boolean(0.8):
        parts.append(op("STOP"))
    if c.boolean(0.1):
        parts.append(c.raw(c.integer(1, 16)))
    return b"".join(parts)


QUIRKS = [
    b"(0", b"(1", b"N0", b"(t0", b"\x95\x01\x00\x00\x00\x00\x00\x00\x00",
    b"\x80\x02", b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00",
    b"U\x02\xc3\xa90", b"S'\xc3\xa9'\n0", b"Vx\n0", b"p 1\n", b"Np 1\n0", b"Np01\n0",
    b"Np-1\n0", b"Ng0\n0", b"I0\nI1\n00", b"\x8c\x01a\x8c\x01b\x860",
    b"}q\x00h\x000", b"N\x94\x94h\x0000",
]


def gen_prefix_then_import(c: Any) -> bytes:
    """A few odd-but-maybe-legal opcodes, then an import and a call: does the inspector still
    see the import (or at least call the file unsafe)?"""
    parts: list[bytes] = []
    for _ in range(c.integer(1, 3)):
        r = c.integer(0, 4)
        if r == 0:
            parts.append(c.choice(QUIRKS))
        elif r == 1:
            parts.append(op(c.choice(["INT", "LONG", "FLOAT"]),
                            c.choice([*INT_LINES, *LONG_LINES, *FLOAT_LINES])) + op("POP"))
        elif r == 2:
            parts.append(op(c.choice(["STRING", "UNICODE", "GET", "PUT"]),
                            c.choice([*STRING_LINES, *UNICODE_LINES, *MEMO_LINES])) + op("POP"))
        else:
            parts.append(_soup_arg(c, c.choice(OP_NAMES)))
    m, n = c.choice(REFUSED_GLOBALS + COMPAT_GLOBALS)
    parts.append(op("GLOBAL", (m.encode(), n.encode())) if c.boolean(0.8) else
                 op("MARK") + op("INST", (m.encode(), n.encode())))
    parts.append(op("MARK") + op("STRING", b"'x'") + op("TUPLE") + op("REDUCE") + op("STOP"))
    return b"".join(parts)


# ------------------------------------------------------------------------------------------
# Stack-aware structured streams


@dataclass
class _State:
    mode: str  # "plain" | "torch" | "values"
    proto: int
    memo: set[int] = field(default_factory=set)
    budget: int = 60
    storages: int = 0


def _literal(c: Any, s: _State) -> bytes:
    r = c.integer(0, 22)
    if r == 0:
        return op("NONE")
    if r == 1:
        return op(c.choice(["NEWTRUE", "NEWFALSE"]))
    if r == 2:
        return op("BININT1", c.integer(0, 255))
    if r == 3:
        return op("BININT2", c.integer(0, 65535))
    if r == 4:
        return op("BININT", c.integer(-(2**31), 2**31 - 1))
    if r == 5:
        return op(c.choice(["LONG1", "LONG4"]), long_bytes(c.choice(INTS)))
    if r == 6:
        return op("INT", c.choice(INT_LINES))
    if r == 7:
        return op("LONG", c.choice(LONG_LINES))
    if r == 8:
        return op("BINFLOAT", c.choice(FLOATS))
    if r == 9:
        return op("FLOAT", c.choice(FLOAT_LINES))
    if r == 10:
        return op(c.choice(["SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"]),
                  c.choice(TEXTS).encode("utf-8", "surrogatepass"))
    if r == 11:
        return op("UNICODE", c.choice(UNICODE_LINES))
    if r == 12:
        return op("STRING", c.choice(STRING_LINES))
    if r == 13:
        return op(c.choice(["SHORT_BINSTRING", "BINSTRING"]),
                  c.choice([b"abc", b"", b"\x80", b"latin1", b"\x00"]))
    if r == 14:
        return op(c.choice(["SHORT_BINBYTES", "BINBYTES", "BINBYTES8"]), c.choice(BYTES))
    if r == 15:
        body = op("BYTEARRAY8", c.choice(BYTES))
        return body + (op("READONLY_BUFFER") if c.boolean(0.2) else b"")
    if r == 16 and s.memo:
        idx = c.choice(sorted(s.memo))
        return c.choice([op("BINGET", idx) if idx < 256 else op("LONG_BINGET", idx),
                         op("LONG_BINGET", idx), op("GET", str(idx).encode())])
    if r == 17:
        return op("EMPTY_TUPLE")
    if r == 18:
        return op("EMPTY_LIST")
    if r == 19:
        return op("EMPTY_DICT")
    if r == 20:
        return op("EMPTY_SET")
    return op("SHORT_BINUNICODE", c.choice(TEXTS).encode("utf-8", "surrogatepass"))


def _memo_put(c: Any, s: _State) -> bytes:
    r = c.integer(0, 9)
    if r < 5:
        return b""
    if r == 5:
        idx = len(s.memo)
        s.memo.add(idx)
        return op("MEMOIZE")
    idx = c.choice([len(s.memo), len(s.memo) + 1, 0, 255, 256, 2**16, c.integer(0, 300)])
    s.memo.add(idx)
    if r == 6:
        return op("PUT", str(idx).encode())
    if r == 7 or idx > 255:
        return op("LONG_BINPUT", idx)
    return op("BINPUT", idx)


def _global(c: Any, s: _State, pair: tuple[str, str] | None = None) -> bytes:
    if pair is None:
        pool = [*load_allowlist().keys()] * 3 + REFUSED_GLOBALS + COMPAT_GLOBALS + WEIRD_GLOBALS
        pair = c.choice(pool)
    m, n = pair
    if s.proto >= 4 and c.boolean(0.6):
        return (op("SHORT_BINUNICODE", m.encode("utf-8")) + _memo_put(c, s)
                + op("SHORT_BINUNICODE", n.encode("utf-8")) + _memo_put(c, s)
                + op("STACK_GLOBAL"))
    return op("GLOBAL", (m.encode("utf-8"), n.encode("utf-8")))


def _tuple_of(parts: list[bytes], c: Any) -> bytes:
    if len(parts) == 0 and c.boolean(0.7):
        return op("EMPTY_TUPLE")
    if 1 <= len(parts) <= 3 and c.boolean(0.6):
        return b"".join(parts) + op(("TUPLE1", "TUPLE2", "TUPLE3")[len(parts) - 1])
    return op("MARK") + b"".join(parts) + op("TUPLE")


def _s(text: str) -> bytes:
    return op("BINUNICODE", text.encode("utf-8", "surrogatepass"))


def _i(n: int) -> bytes:
    if 0 <= n < 256:
        return op("BININT1", n)
    if -(2**31) <= n < 2**31:
        return op("BININT", n)
    return op("LONG1", long_bytes(n))


def _ints_tuple(c: Any, vals: list[int]) -> bytes:
    return _tuple_of([_i(v) for v in vals], c)


def _empty_odict(c: Any, s: _State) -> bytes:
    return _global(c, s, ("collections", "OrderedDict")) + op("EMPTY_TUPLE") + op("REDUCE")


_STORAGE_TYPES = [
    ("torch", "FloatStorage", "float32"), ("torch", "LongStorage", "int64"),
    ("torch", "HalfStorage", "float16"), ("torch", "BFloat16Storage", "bfloat16"),
    ("torch", "BoolStorage", "bool"), ("torch", "ComplexDoubleStorage", "complex128"),
    ("torch.storage", "UntypedStorage", "uint8"),
]
_DTYPES = {"float32": 4, "int64": 8, "float16": 2, "bfloat16": 2, "bool": 1, "complex128": 16,
           "uint8": 1, "float8_e5m2": 1, "uint16": 2, "int8": 1}


def _storage(c: Any, s: _State, stype: tuple[str, str, str], numel: int, valid: bool) -> bytes:
    """A torch persistent id for a storage (a broken one when not `valid`)."""
    m, n, _ = stype if valid or c.boolean(0.7) else c.choice(
        [("os", "system", ""), ("torch", "Tensor", "")])
    if not valid:
        numel = c.choice([numel, 0, 2**62, -1])
    key = str(s.storages) if valid or c.boolean() else c.choice(["", "a\nb", "x" * 300])
    s.storages += 1
    loc = c.choice(["cpu", "cuda:0", "meta"]) if valid or c.boolean() else "x" * 100
    pid = _tuple_of([_s("storage"), _global(c, s, (m, n)), _s(key), _s(loc), _i(numel)]
                    + ([op("NONE")] if not valid and c.boolean(0.2) else []), c)
    return pid + op("BINPERSID")


def _tensor_call(c: Any, s: _State) -> bytes:
    """torch's tensor record; valid (as torch.save writes it) three times in four."""
    valid = c.boolean(0.75)
    size = c.choice([(), (0,), (1,), (2, 3), (3, 2), (4,), (2, 2, 2)])
    contiguous = [1] * len(size)
    for k in range(len(size) - 2, -1, -1):
        contiguous[k] = contiguous[k + 1] * max(size[k + 1], 1)
    stride = tuple(contiguous)
    if len(size) == 2 and c.boolean(0.3):  # a transposed view
        stride = (1, size[0])
    offset = c.choice([0, 0, 0, 1, 2])
    extent = offset + sum((d - 1) * st for d, st in zip(size, stride, strict=True)) + 1 \
        if 0 not in size else 0
    stype = c.choice(_STORAGE_TYPES)
    untyped = stype[1] == "UntypedStorage"
    v3 = untyped or c.boolean(0.3)
    tensor_dt = c.choice(list(_DTYPES)) if untyped else stype[2]
    numel = extent + c.choice([0, 0, 1, 5])
    if untyped:
        numel *= _DTYPES[tensor_dt]
    pid = _storage(c, s, stype, numel, valid)
    if not valid:
        stride = c.choice([stride, (), (0,), (1, 1), (-1,)])
        offset = c.choice([offset, -1, 10**6])
    grad = op("NEWFALSE") if valid and c.boolean(0.8) else c.choice(
        [op("NEWTRUE"), op("NONE"), op("NEWFALSE")])
    hooks = _empty_odict(c, s) if valid else c.choice([op("NONE"), op("EMPTY_DICT"),
                                                       _empty_odict(c, s)])
    fn = ("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
    args = [pid, _i(offset), _ints_tuple(c, list(size)), _ints_tuple(c, list(stride)), grad,
            hooks]
    if v3:
        args.append(_global(c, s, ("torch", tensor_dt if valid or c.boolean() else "Size")))
    if c.boolean(0.5):
        args.append(c.choice([_empty_odict(c, s), op("EMPTY_DICT")]))
    call = _global(c, s, fn) + _tuple_of(args, c) + op("REDUCE")
    r = c.integer(0, 5)
    if r == 0:  # nn.Parameter
        return (_global(c, s, ("torch._utils", "_rebuild_parameter"))
                + _tuple_of([call, c.choice([op("NEWTRUE"), op("NEWFALSE")]),
                             _empty_odict(c, s)], c) + op("REDUCE"))
    if r == 1:  # tensor subclass wrapper (what torch writes for Parameter subclasses)
        cls = (c.choice([("torch", "Tensor"), ("torch.nn.parameter", "Parameter")])
               if valid else ("builtins", "object"))
        return (_global(c, s, ("torch._tensor", "_rebuild_from_type_v2"))
                + _tuple_of([_global(c, s, fn), _global(c, s, cls), _tuple_of(args, c),
                             _empty_odict(c, s)], c) + op("REDUCE"))
    return call


def _template_call(c: Any, s: _State, depth: int) -> bytes:
    """A call of an allowlisted global with arguments close to the real ones."""
    kind = c.integer(0, 15)
    if kind == 0:  # OrderedDict(list of pairs) / OrderedDict()
        pairs = [_tuple_of([_s(c.choice(TEXTS)), _value(c, s, depth + 1)], c)
                 for _ in range(c.integer(0, 2))]
        args = c.choice([op("EMPTY_TUPLE"),
                         _tuple_of([op("MARK") + b"".join(pairs) + op("LIST")], c)])
        return _global(c, s, ("collections", "OrderedDict")) + args + op("REDUCE")
    if kind == 1:
        return (_global(c, s, ("torch", "Size"))
                + _tuple_of([_ints_tuple(c, [c.integer(0, 4) for _ in range(c.integer(0, 3))])],
                            c) + op("REDUCE"))
    if kind == 2:
        args = [_s(c.choice(["cpu", "cuda", "meta"]))] + (
            [c.choice([_i(0), op("NONE"), _i(-2)])] if c.boolean() else [])
        return _global(c, s, ("torch", "device")) + _tuple_of(args, c) + op("REDUCE")
    if kind == 3:
        g = c.choice([("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set")])
        items = op("MARK") + b"".join(_literal(c, s) for _ in range(c.integer(0, 3))) + op("LIST")
        return _global(c, s, g) + _tuple_of([items], c) + op("REDUCE")
    if kind == 4:
        return (_global(c, s, ("builtins", "complex"))
                + _tuple_of([op("BINFLOAT", c.choice(FLOATS)), _i(c.choice(INTS))][
                    : c.integer(1, 2)], c) + op("REDUCE"))
    if kind == 5:
        return (_global(c, s, ("_codecs", "encode"))
                + _tuple_of([_s(c.choice(["abc", "\xff\x00", "\u2603"])),
                             _s(c.choice(["latin1", "latin-1", "utf-8"]))], c) + op("REDUCE"))
    if kind == 6:
        return (_global(c, s, ("builtins", "bytearray"))
                + _tuple_of([op("SHORT_BINBYTES", c.choice(BYTES))], c) + op("REDUCE"))
    if kind == 7:  # argparse.Namespace via NEWOBJ / copyreg, then BUILD
        if c.boolean():
            obj = _global(c, s, ("argparse", "Namespace")) + op("EMPTY_TUPLE") + op("NEWOBJ")
        else:
            obj = (_global(c, s, ("copyreg", "_reconstructor"))
                   + _tuple_of([_global(c, s, ("argparse", "Namespace")),
                                _global(c, s, ("builtins", "object")), op("NONE")], c)
                   + op("REDUCE"))
        state = (op("EMPTY_DICT") + op("MARK") + _s(c.choice(["lr", "name", "_x"]))
                 + _value(c, s, depth + 1) + op("SETITEMS"))
        return obj + _memo_put(c, s) + state + op("BUILD")
    if kind == 8:
        g = c.choice([("pathlib", "PosixPath"), ("pathlib", "Path"), ("pathlib._local", "Path"),
                      ("pathlib", "PureWindowsPath")])
        return (_global(c, s, g) + _tuple_of([_s(t) for t in c.choice([[], ["a"], ["/", "b"]])],
                                             c) + op("REDUCE"))
    if kind == 9:
        g, n = c.choice([(("datetime", "datetime"), 10), (("datetime", "date"), 4),
                         (("datetime", "time"), 6)])
        state = op("SHORT_BINBYTES", c.choice([b"\x07\xe4\x01\x02\x03\x04\x05\x00\x00\x06",
                                               b"\x07\xe4\x01\x02", b"\x01\x02\x03\x00\x00\x00",
                                               b"\xff" * n]))
        return _global(c, s, g) + _tuple_of([state], c) + op("REDUCE")
    if kind == 10:
        td = (_global(c, s, ("datetime", "timedelta"))
              + _ints_tuple(c, [c.integer(-2, 2), c.integer(0, 86399), c.integer(0, 999999)])
              + op("REDUCE"))
        if c.boolean():
            return td
        return (_global(c, s, ("datetime", "timezone"))
                + _tuple_of([td] + ([_s("UTC")] if c.boolean() else []), c) + op("REDUCE"))
    if kind == 11:  # numpy dtype + BUILD
        code = c.choice(["f4", "i8", "b1", "U1", "O8", "c16"])
        dt = (_global(c, s, ("numpy", "dtype"))
              + _tuple_of([_s(code), op("NEWFALSE"), op("NEWTRUE")], c) + op("REDUCE"))
        state = _tuple_of([_i(3), _s(c.choice(["<", ">", "|", "x"])), op("NONE"), op("NONE"),
                           op("NONE"), _i(-1), _i(-1), _i(0)], c)
        return dt + _memo_put(c, s) + state + op("BUILD")
    if kind == 12:  # numpy array via _reconstruct + BUILD
        mod = c.choice(["numpy._core.multiarray", "numpy.core.multiarray"])
        arr = (_global(c, s, (mod, "_reconstruct"))
               + _tuple_of([_global(c, s, ("numpy", "ndarray")), _ints_tuple(c, [0]),
                            op("SHORT_BINBYTES", b"b")], c) + op("REDUCE"))
        dt = (_global(c, s, ("numpy", "dtype"))
              + _tuple_of([_s("f4"), op("NEWFALSE"), op("NEWTRUE")], c) + op("REDUCE")
              + _tuple_of([_i(3), _s("<"), op("NONE"), op("NONE"), op("NONE"), _i(-1), _i(-1),
                           _i(0)], c) + op("BUILD"))
        n = c.choice([0, 1, 2])
        state = _tuple_of([_i(1), _ints_tuple(c, [n]), dt, op("NEWFALSE"),
                           op("SHORT_BINBYTES", b"\x00" * (4 * n + c.choice([0, 0, 1])))], c)
        return arr + _memo_put(c, s) + state + op("BUILD")
    if kind == 13 and s.mode == "torch":
        return _tensor_call(c, s)
    if kind == 14:  # OrderedDict then _metadata BUILD (what state_dict() writes)
        meta = (op("EMPTY_DICT") + _s(c.choice(["_metadata", "other"]))
                + _empty_odict(c, s) + op("SETITEM"))
        return (_empty_odict(c, s) + _memo_put(c, s) + op("MARK") + _s("w")
                + _value(c, s, depth + 1) + op("SETITEMS") + meta + op("BUILD"))
    # any global, any arguments, any call flavour
    g = _global(c, s)
    args = _tuple_of([_value(c, s, depth + 1) for _ in range(c.integer(0, 2))], c)
    flavour = c.integer(0, 4)
    if flavour == 0:
        return g + args + op("NEWOBJ")
    if flavour == 1:
        return g + args + op("EMPTY_DICT") + op("NEWOBJ_EX")
    if flavour == 2:
        return op("MARK") + g + b"".join(_value(c, s, depth + 1) for _ in range(c.integer(0, 1))) \
            + op("OBJ")
    if flavour == 3:
        m, n = c.choice([*load_allowlist().keys(), *REFUSED_GLOBALS, *COMPAT_GLOBALS])
        return op("MARK") + op("INST", (m.encode(), n.encode()))
    return g + args + op("REDUCE")


def _container(c: Any, s: _State, depth: int) -> bytes:
    n = c.integer(0, 3)
    kind = c.integer(0, 9)
    vals = [_value(c, s, depth + 1) for _ in range(n)]
    if kind == 0:
        return _tuple_of(vals, c)
    if kind == 1:
        out = op("EMPTY_LIST") + _memo_put(c, s)
        if vals:
            out += (op("MARK") + b"".join(vals) + op("APPENDS")) if c.boolean() else \
                b"".join(v + op("APPEND") for v in vals)
        return out
    if kind == 2:
        return op("MARK") + b"".join(vals) + op("LIST")
    if kind in (3, 4):
        keys = [_literal(c, s) if c.boolean(0.8) else _value(c, s, depth + 1) for _ in vals]
        out = op("EMPTY_DICT") + _memo_put(c, s)
        if vals:
            if c.boolean():
                pairs = b"".join(k + v for k, v in zip(keys, vals, strict=False))
                out += op("MARK") + pairs + op("SETITEMS")
            else:
                out += b"".join(k + v + op("SETITEM") for k, v in zip(keys, vals, strict=False))
        return out
    if kind == 5:
        keys = [_literal(c, s) for _ in vals]
        return op("MARK") + b"".join(k + v for k, v in zip(keys, vals, strict=False)) + op("DICT")
    if kind == 6 and s.proto >= 4:
        out = op("EMPTY_SET") + _memo_put(c, s)
        return out + (op("MARK") + b"".join(vals) + op("ADDITEMS") if vals else b"")
    if kind == 7 and s.proto >= 4:
        return op("MARK") + b"".join(vals) + op("FROZENSET")
    if kind == 8:  # a value then DUP POP, or a dropped value
        return (vals[0] + op("DUP") + op("POP")) if vals else (_literal(c, s) + _literal(c, s)
                                                                + op("POP"))
    # MARK ... POP_MARK before a value
    return op("MARK") + b"".join(vals) + op("POP_MARK") + _literal(c, s)


def _value(c: Any, s: _State, depth: int) -> bytes:
    s.budget -= 1
    if depth > 4 or s.budget <= 0:
        out = _literal(c, s)
    else:
        r = c.integer(0, 9)
        if r < 4:
            out = _literal(c, s)
        elif r < 7 or s.mode == "values":
            out = _container(c, s, depth)
        elif r == 7 and s.mode == "torch":
            out = _tensor_call(c, s)
        elif r == 8 and c.boolean(0.2):  # BUILD on anything / a persistent id anywhere
            out = _value(c, s, depth + 1) + _value(c, s, depth + 1) + op("BUILD")
        else:
            out = _template_call(c, s, depth)
    return out + _memo_put(c, s)


def gen_structured(c: Any, mode: str | None = None) -> bytes:
    """A stack-aware stream that usually parses: globals, calls, BUILD, memo, frames."""
    mode = mode or c.choice(["plain", "torch"])
    proto = c.choice([0, 1, 2, 2, 3, 4, 5])
    s = _State(mode=mode, proto=proto, budget=c.integer(5, 60))
    body = _value(c, s, 0)
    head = op("PROTO", proto) if proto >= 2 or c.boolean(0.2) else b""
    if proto >= 4 and c.boolean(0.5):
        straddle = c.boolean(0.1)
        body = op("FRAME", len(body) + (1 if straddle else 0)) + body
    return head + body + op("STOP")


def gen_plain_values(c: Any) -> bytes:
    """Import-free literal/container streams for the value oracle."""
    proto = c.choice([0, 1, 2, 3, 4, 5])
    s = _State(mode="values", proto=proto, budget=c.integer(3, 40))
    body = _value(c, s, 0)
    head = op("PROTO", proto) if proto >= 2 or c.boolean(0.3) else b""
    return head + body + op("STOP")


# ------------------------------------------------------------------------------------------
# Real files and their mutations


@dataclass
class Corpus:
    files: list[tuple[str, str, bytes]]  # (name, kind, bytes); kind in zip/legacy/pickle/...
    pickles: list[tuple[str, bool, bytes]]  # (name, torch persistent ids?, stream)
    ops: dict[str, list[bytes]] = field(default_factory=dict)  # name -> raw opcode chunks


def build_corpus() -> Corpus:
    """Small real outputs of torch.save / pickle.dump / safetensors / NumPy (made here)."""
    import argparse
    import collections
    import datetime

    import numpy as np
    import torch
    from safetensors.torch import save as st_save

    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    w = torch.randn(3, 3, generator=g)
    objs: dict[str, Any] = {
        "state_dict": lin.state_dict(),
        "tied": {"a": w, "b": w, "c": w[1:], "d": w.t(), "p": torch.nn.Parameter(torch.ones(2))},
        "dtypes": {str(dt): torch.ones(2, dtype=dt) for dt in
                   (torch.float16, torch.bfloat16, torch.int8, torch.bool, torch.complex64,
                    torch.uint16, torch.float8_e4m3fn)},
        "ckpt": {"epoch": 3, "step": 10, "args": argparse.Namespace(lr=0.1, name="x"),
                 "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
                 "np": np.arange(3, dtype=np.float32), "npscalar": np.float64(2.5),
                 "set": {1, 2}, "c": 1 + 2j, "od": collections.OrderedDict(a=1),
                 "size": torch.Size([2, 3]), "dev": torch.device("cpu"), "dt": torch.float16},
    }
    files: list[tuple[str, str, bytes]] = []
    pickles: list[tuple[str, bool, bytes]] = []
    for name, obj in objs.items():
        for proto in (2, 4, 5):
            b = io.BytesIO()
            torch.save(obj, b, pickle_protocol=proto)
            files.append((f"{name}-zip-p{proto}", "zip", b.getvalue()))
            with zipfile.ZipFile(io.BytesIO(b.getvalue())) as z:
                pk = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                pickles.append((f"{name}-data.pkl-p{proto}", True, z.read(pk)))
        b = io.BytesIO()
        torch.save(obj, b, _use_new_zipfile_serialization=False)
        files.append((f"{name}-legacy", "legacy", b.getvalue()))
    plain = {"a": [1, 2.5, "x", b"y", None, True], "b": (1, (2,)), "c": {"k": {1, 2}},
             "d": bytearray(b"z"), "e": 10**30, "f": -0.0,
             "g": datetime.timedelta(1, 2, 3), "h": datetime.date(2020, 1, 1)}
    for proto in range(0, 6):
        data = pickle.dumps(plain, protocol=proto)
        files.append((f"plain-p{proto}", "pickle", data))
        pickles.append((f"plain-p{proto}", False, data))
    files.append(("safetensors", "safetensors",
                  st_save({"a": torch.ones(2, 3), "b": torch.arange(4)}, {"k": "v"})))
    nb = io.BytesIO()
    np.save(nb, np.arange(6, dtype="<f4").reshape(2, 3))
    files.append(("npy", "npy", nb.getvalue()))
    zb = io.BytesIO()
    np.savez(zb, a=np.arange(3), b=np.ones((2, 2), dtype=np.float16))
    files.append(("npz", "npz", zb.getvalue()))
    corpus = Corpus(files, pickles)
    for name, _, data in pickles:
        corpus.ops[name] = op_chunks(data)
    return corpus


def op_chunks(data: bytes) -> list[bytes]:
    """The raw bytes of each opcode (with its argument) of a well-formed pickle."""
    positions = [pos for _, _, pos in pickletools.genops(data)]
    positions.append(len(data))
    return [data[a:b] for a, b in zip(positions, positions[1:], strict=False)]


INTERESTING_BYTES = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x2E, 0x28, 0x63, 0x52, 0x0A, 0x95, 0x8E]


def mutate_bytes(c: Any, data: bytes, rounds: int | None = None) -> bytes:
    buf = bytearray(data)
    for _ in range(rounds if rounds is not None else c.integer(1, 4)):
        if not buf:
            buf += c.raw(c.integer(1, 8))
            continue
        pos = c.integer(0, len(buf) - 1)
        r = c.integer(0, 7)
        if r == 0:
            buf[pos] ^= 1 << c.integer(0, 7)
        elif r == 1:
            buf[pos] = c.choice(INTERESTING_BYTES)
        elif r == 2:
            buf[pos:pos] = c.raw(c.integer(1, 8))
        elif r == 3:
            del buf[pos:pos + c.integer(1, 16)]
        elif r == 4:
            del buf[pos:]
        elif r == 5:  # overwrite a 4/8-byte field with a huge or small value
            width = c.choice([4, 8])
            buf[pos:pos + width] = c.choice([b"\xff", b"\x00", b"\x7f"]) * width
        elif r == 6:  # duplicate a chunk
            end = min(len(buf), pos + c.integer(1, 64))
            buf[pos:pos] = buf[pos:end]
        else:
            buf[pos] = c.integer(0, 255)
    return bytes(buf)


def mutate_ops(c: Any, chunks: list[bytes]) -> bytes:
    """Opcode-level mutations: delete, duplicate, swap, splice in, rename globals, unframe."""
    ops_ = [ch for ch in chunks if ch[:1] != b"\x95" or c.boolean(0.2)]
    for _ in range(c.integer(1, 3)):
        if not ops_:
            break
        i = c.integer(0, len(ops_) - 1)
        r = c.integer(0, 6)
        if r == 0:
            del ops_[i]
        elif r == 1:
            ops_.insert(i, ops_[i])
        elif r == 2 and len(ops_) > 1:
            j = c.integer(0, len(ops_) - 1)
            ops_[i], ops_[j] = ops_[j], ops_[i]
        elif r == 3:
            ops_.insert(i, _soup_arg(c, c.choice(OP_NAMES)))
        elif r == 4:
            globals_ = [k for k, ch in enumerate(ops_) if ch[:1] == b"c"]
            if globals_:
                k = c.choice(globals_)
                m, n = c.choice([*load_allowlist().keys(), *REFUSED_GLOBALS, *COMPAT_GLOBALS])
                ops_[k] = op("GLOBAL", (m.encode(), n.encode()))
        elif r == 5:
            texts = [k for k, ch in enumerate(ops_) if ch[:1] in (b"X", b"\x8c")]
            if texts:
                k = c.choice(texts)
                ops_[k] = op("SHORT_BINUNICODE", c.choice(
                    [*TEXTS, "os", "system", "builtins", "eval", "torch", "load"]).encode(
                        "utf-8", "surrogatepass"))
        else:
            ops_[i] = mutate_bytes(c, ops_[i], 1)
    return b"".join(ops_)


def rezip(zip_bytes: bytes, replace: dict[str, bytes]) -> bytes:
    """The same archive with some members replaced, every CRC and size correct."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = replace.get(info.filename, src.read(info.filename))
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def mutate_corpus(c: Any, corpus: Corpus) -> tuple[str, bytes]:
    """One mutated real file; returns (label, bytes)."""
    r = c.integer(0, 9)
    if r <= 3:
        name, kind, data = c.choice(corpus.files)
        return f"bytes:{name}", mutate_bytes(c, data)
    if r <= 6:
        name, _, _ = c.choice(corpus.pickles)
        return f"ops:{name}", mutate_ops(c, corpus.ops[name])
    # a mutated data.pkl inside a structurally valid torch zip
    zips = [(n, d) for n, k, d in corpus.files if k == "zip"]
    name, data = c.choice(zips)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pk = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        inner = z.read(pk)
    mutated = mutate_ops(c, op_chunks(inner)) if c.boolean() else mutate_bytes(c, inner)
    return f"rezip:{name}", rezip(data, {pk: mutated})


# ------------------------------------------------------------------------------------------
# Running the machine


@dataclass
class MachineRun:
    root: Any = None
    malformed: MalformedPickle | None = None
    findings: int = 0
    pos: int = 0
    memo_max: int = -1

    @property
    def clean(self) -> bool:
        return self.malformed is None and self.findings == 0


def run_machine(data: bytes, torch_mode: bool) -> MachineRun:
    """Raises anything but MalformedPickle unchanged (that is a bug)."""
    vm = PickleMachine(data, persistent_load=torch_persistent_load(False) if torch_mode else None)
    out = MachineRun()
    try:
        out.root = vm.run()
    except MalformedPickle as exc:
        out.malformed = exc
    out.findings = len(vm.findings) + vm.dropped_findings
    out.pos = vm.pos
    out.memo_max = max(vm.memo, default=-1)
    return out


# ------------------------------------------------------------------------------------------
# The find_class oracle


# Methods pickle may call on an object the machine models, by the global that made it.
_ALLOWED_METHODS = {
    "__setitem__": {"collections.OrderedDict"},  # SETITEM(S) on an OrderedDict
    "add": {"builtins.set"},  # ADDITEMS on a set
    # BUILD: OrderedDict.__dict__ (torch's _metadata), Namespace, NumPy dtype and array
    "__setstate__": {"collections.OrderedDict", "argparse.Namespace", "copyreg._reconstructor",
                     "numpy.dtype", "numpy.core.multiarray._reconstruct",
                     "numpy._core.multiarray._reconstruct"},
}
C_MEMO_LIMIT = 1 << 20  # the C unpickler's memo is an array: a huge index allocates it


@dataclass
class Recorder:
    imports: list[tuple[str, str, int | None]] = field(default_factory=list)
    methods: list[tuple[str, str]] = field(default_factory=list)
    persistent: int = 0


def _make_stub_class(qualname: str, rec: Recorder) -> type:
    class StubMeta(type):
        def __call__(cls, *args: Any, **kwargs: Any) -> Any:  # REDUCE / OBJ / INST
            return _instance(qualname, rec)

    def __new__(cls: Any, *args: Any, **kwargs: Any) -> Any:  # NEWOBJ / NEWOBJ_EX
        return _instance(qualname, rec)

    return StubMeta(f"Stub[{qualname}]", (), {"__new__": __new__, "__qualname__": qualname})


class _Inst:
    """What a stub class returns: records every method pickle calls on it."""

    def __init__(self, origin: str, rec: Recorder) -> None:
        object.__setattr__(self, "_origin", origin)
        object.__setattr__(self, "_rec", rec)

    def _record(self, method: str) -> None:
        self._rec.methods.append((self._origin, method))

    def __setstate__(self, state: Any) -> None:
        self._record("__setstate__")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._record("__setitem__")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._record("__call__")
        return _Inst(f"call-of-{self._origin}", self._rec)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        rec, origin = self._rec, self._origin

        def method(*args: Any, **kwargs: Any) -> None:
            rec.methods.append((origin, name))

        return method

    def __setattr__(self, name: str, value: Any) -> None:
        self._record(f"setattr:{name}")


def _instance(origin: str, rec: Recorder) -> _Inst:
    return _Inst(origin, rec)


def _unpickler_classes(rec: Recorder) -> tuple[type, type]:
    def find_class_c(self: Any, module: str, name: str) -> Any:
        rec.imports.append((module, name, None))
        return _make_stub_class(f"{module}.{name}", rec)

    def find_class_py(self: Any, module: str, name: str) -> Any:
        rec.imports.append((module, name, self.proto))
        return _make_stub_class(f"{module}.{name}", rec)

    def persistent_load(self: Any, pid: Any) -> Any:
        rec.persistent += 1
        return _instance("persistent-id", rec)

    c_cls = type("RecordingC", (pickle.Unpickler,),
                 {"find_class": find_class_c, "persistent_load": persistent_load})
    py_cls = type("RecordingPy", (pickle._Unpickler,),  # type: ignore[attr-defined]
                  {"find_class": find_class_py, "persistent_load": persistent_load})
    return c_cls, py_cls


def _import_protos(data: bytes) -> list[int] | None:
    """The protocol in force at each import opcode, in stream order (independent of both)."""
    out: list[int] = []
    proto = 0
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "PROTO":
                proto = arg
            elif opcode.name in ("GLOBAL", "STACK_GLOBAL", "INST"):
                out.append(proto)
            elif opcode.name == "STOP":
                break
    except Exception:
        return None
    return out


def c_memo_risky(data: bytes) -> bool:
    """Could the C unpickler be asked for a huge memo array (LONG_BINPUT/PUT index)?"""
    for m in re.finditer(rb"r", data):
        idx = struct.unpack_from("<I", data.ljust(m.end() + 4, b"\0"), m.end())[0]
        if idx >= C_MEMO_LIMIT:
            return True
    return any(int(m.group(1)) >= C_MEMO_LIMIT
               for m in re.finditer(rb"p[ \t+]*(\d{7,})", data))


@dataclass
class RealRun:
    which: str
    rec: Recorder
    error: str | None


def run_real_unpicklers(data: bytes, *, c_ok: bool = True, py_ok: bool = True
                        ) -> list[RealRun]:
    """Both CPython unpicklers with inert recording stubs for every import and persistent id."""
    out = []
    for which in ("c", "py"):
        if (which == "c" and not c_ok) or (which == "py" and not py_ok):
            continue
        rec = Recorder()
        cls = _unpickler_classes(rec)[0 if which == "c" else 1]
        error = None
        try:
            cls(io.BytesIO(data)).load()
        except Exception as exc:  # stubs make many values meaningless: only calls matter
            error = f"{type(exc).__name__}: {exc}"
        out.append(RealRun(which, rec, error))
    return out


def import_violations(data: bytes, runs: list[RealRun], allowed: set[tuple[str, str]] | None
                      ) -> list[str]:
    """Imports outside `allowed` (None: any import at all) and methods the machine forbids."""
    violations: list[str] = []
    protos = _import_protos(data)
    for run in runs:
        for k, (module, name, proto) in enumerate(run.rec.imports):
            if proto is None:
                proto = protos[k] if protos is not None and k < len(protos) else 0
            target = real_find_class_target(module, name, proto)
            if allowed is None or target not in allowed:
                violations.append(f"{run.which}: find_class({module!r}, {name!r}) imports "
                                  f"{target[0]}.{target[1]} (protocol {proto})")
        for origin, method in run.rec.methods:
            if origin not in _ALLOWED_METHODS.get(method, set()):
                violations.append(f"{run.which}: {method} called on an object made by {origin}")
    return violations


def find_class_oracle(data: bytes, run: MachineRun, allowed: set[tuple[str, str]]
                      ) -> list[str]:
    """For a stream the machine passed clean: the real unpicklers stay inside the allowlist."""
    if not run.clean:
        return []
    runs = run_real_unpicklers(data, c_ok=run.memo_max < C_MEMO_LIMIT and not c_memo_risky(data))
    return import_violations(data, runs, allowed)


# ------------------------------------------------------------------------------------------
# One stream, every check (used by the tests and the benchmark)


@dataclass
class Checked:
    verdict: str
    fmt: str
    violations: list[str]
    oracle_runs: int = 0
    machine_clean: bool = False


def check_stream(data: bytes, allowed: set[tuple[str, str]], *, oracle: bool = True
                 ) -> Checked:
    """inspect_bytes never raises; the machine raises only MalformedPickle; and whatever
    inspect_bytes does not call unsafe, the real unpicklers may not use to import anything
    outside the allowlist (nothing at all for "skipped")."""
    from safeload.inspection import inspect_bytes

    violations: list[str] = []
    try:
        ins = inspect_bytes(data, name="fuzz")
        verdict, fmt = ins.verdict, ins.format
    except BaseException as exc:  # noqa: BLE001 - any escape is the finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        ins, verdict, fmt = None, "raised", "?"
        violations.append(f"inspect_bytes raised {type(exc).__name__}: {exc}")
    if verdict not in ("clean", "unsafe", "skipped", "raised"):
        violations.append(f"inspect_bytes returned verdict {verdict!r}")
    machine_clean = False
    runs: dict[bool, MachineRun] = {}
    for torch_mode in (False, True):
        try:
            runs[torch_mode] = run_machine(data, torch_mode)
        except Exception as exc:
            violations.append(f"PickleMachine.run (torch ids: {torch_mode}) raised "
                              f"{type(exc).__name__}: {exc}")
    oracle_runs = 0
    if oracle:
        plain = runs.get(False)
        if plain is not None and plain.clean:
            machine_clean = True
        if verdict in ("clean", "skipped") and fmt in ("pickle", "unknown"):
            # What pickle.load / torch.load(weights_only=False) would do with these bytes.
            risky = c_memo_risky(data) or (plain is not None and plain.memo_max >= C_MEMO_LIMIT)
            # For "skipped", judge by the C unpickler alone: pickle.load and torch.load use
            # it, and the pure-Python one calls find_class even on a truncated last line
            # (readline()[:-1] at EOF) and zero-fills a BYTEARRAY8 of any declared size.
            real = run_real_unpicklers(data, c_ok=not risky, py_ok=verdict == "clean")
            oracle_runs += 1
            violations += [f"verdict {verdict}: {v}" for v in import_violations(
                data, real, allowed if verdict == "clean" else None)]
        tm = runs.get(True)
        if tm is not None and tm.clean:
            oracle_runs += 1
            violations += [f"torch-mode clean: {v}" for v in find_class_oracle(data, tm, allowed)]
        if ins is not None and verdict == "clean" and fmt == "torch-zip":
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    pk = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                    inner = z.read(pk)
            except Exception:
                inner = None
            if inner is not None:
                tr = run_machine(inner, True)
                oracle_runs += 1
                violations += [f"clean torch zip: {v}" for v in find_class_oracle(
                    inner, tr, allowed)]
    return Checked(verdict, fmt, violations, oracle_runs, machine_clean)


# ------------------------------------------------------------------------------------------
# The value oracle (import-free streams)


class NotPlain(Exception):
    pass


def to_python(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """The Python value a symbolic import-free result stands for (identity kept)."""
    memo = {} if memo is None else memo
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, Str8):  # a Python 2 string: what the oracle's latin-1 loaders give
        return value.raw.decode("latin-1")
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, tuple):
        out_t = tuple(to_python(v, memo) for v in value)
        if key in memo:  # a cycle through a list/dict completed it first
            return memo[key]
        memo[key] = out_t
        return out_t
    if isinstance(value, SList):
        out_l: list[Any] = []
        memo[key] = out_l
        out_l.extend(to_python(v, memo) for v in value.items)
        return out_l
    if isinstance(value, SDict):
        if value.ordered or value.attrs:
            raise NotPlain("OrderedDict")
        out_d: dict[Any, Any] = {}
        memo[key] = out_d
        for k, v in value.items:
            out_d[to_python(k, memo)] = to_python(v, memo)
        return out_d
    if isinstance(value, SSet):
        items = [to_python(v, memo) for v in value.items]
        out_s = frozenset(items) if value.frozen else set(items)
        memo[key] = out_s
        return out_s
    if isinstance(value, Obj) and value.kind == "bytearray":
        out_b = bytearray(value.fields["data"])
        memo[key] = out_b
        return out_b
    raise NotPlain(type(value).__name__)


def first_difference(a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> str | None:
    """None when equal under strict rules (types, NaN == NaN, -0.0 != 0.0, cycles allowed);
    otherwise a short description of the first leaf that differs."""
    seen = set() if seen is None else seen
    if type(a) is not type(b):
        return f"{type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, float):
        if (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                 math.copysign(1, b)):
            return None
        return f"float {a!r} vs {b!r}"
    if isinstance(a, (list, tuple, dict, set, frozenset)):
        pair = (id(a), id(b))
        if pair in seen:
            return None
        seen.add(pair)
        if len(a) != len(b):
            return f"{type(a).__name__} of {len(a)} vs {len(b)} items"
        if isinstance(a, (set, frozenset)):
            rest = list(b)
            for x in a:
                k = next((i for i, y in enumerate(rest) if first_difference(x, y, seen) is None),
                         None)
                if k is None:
                    return f"set item {x!r:.60} missing"
                rest.pop(k)
            return None
        if isinstance(a, dict):
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=False):
                d = first_difference(ka, kb, seen) or first_difference(va, vb, seen)
                if d:
                    return d
            return None
        for x, y in zip(a, b, strict=False):
            d = first_difference(x, y, seen)
            if d:
                return d
        return None
    return None if a == b else f"{type(a).__name__} {a!r:.60} vs {b!r:.60}"


def same_value(a: Any, b: Any) -> bool:
    return first_difference(a, b) is None


def value_oracle(data: bytes, run: MachineRun) -> list[str]:
    """For a clean import-free stream, both real unpicklers must agree with the machine."""
    if not run.clean:
        return []
    try:
        expected = to_python(run.root)
    except (NotPlain, RecursionError):  # memo references can nest deeper than the harness
        return []
    except TypeError as exc:  # unhashable key: no unpickler can build this value
        expected_error = f"machine passed a value Python cannot build ({exc})"
        return [expected_error]
    problems: list[str] = []
    loaders: list[tuple[str, Callable[[], Any]]] = [
        # encoding="latin1": non-ASCII 8-bit strings are kept raw by the machine (Str8) and
        # decoded by the loader with the caller's encoding; latin-1 decodes every byte.
        ("py", lambda: pickle._Unpickler(  # type: ignore[attr-defined]
            io.BytesIO(data), encoding="latin1").load()),
    ]
    if run.memo_max < C_MEMO_LIMIT:
        loaders.insert(0, ("c", lambda: pickle.Unpickler(io.BytesIO(data),
                                                         encoding="latin1").load()))
    for which, load in loaders:
        try:
            got = load()
        except Exception as exc:
            problems.append(f"{which}: machine passes this stream but the unpickler raises "
                            f"{type(exc).__name__}: {exc}")
            continue
        try:
            diff = first_difference(expected, got)
        except RecursionError:
            continue
        if diff:
            problems.append(f"{which}: machine value differs from the unpickler's: {diff}")
    return problems
