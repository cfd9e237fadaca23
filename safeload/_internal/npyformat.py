"""The `.npy` header, parsed by an exact grammar of what `numpy.lib.format` writes.

`np.save` writes `magic, version, header length (2 bytes for 1.0, 4 for 2.0/3.0), header`, the
header being `repr` of `{'descr': ..., 'fortran_order': ..., 'shape': ...}` with its keys in that
order and a trailing `, }`, then spaces (room to grow, and padding to a 64-byte boundary, 16 in
numpy < 1.14) and one newline. 1.0 and 2.0 headers are latin-1, 3.0 UTF-8 (field names outside
latin-1). numpy reads the header with `ast.literal_eval`; this module accepts only the canonical
text numpy writes, built from these productions, and nothing is evaluated but a single quoted
string token (a field name or dtype string, matched by `_STR` first):

    descr   := dtype-string | '[]' | '[' field (', ' field)* ']'
    field   := '(' name ', ' descr ')' | '(' name ', ' descr ', ' tuple ')'
    name    := string | '(' string ', ' string ')'            (title, name)
    dtype-string := [<>|=]? (b1 | ? | i1..i8 | u1..u8 | f2 f4 f8 f16 | c8 c16 c32
                    | U<n> | S<n> | V<n> | V0 | M8[unit] | m8[unit])

An object array (`'|O'`, top level: np.save then pickles the whole array) is returned flagged
`objects`, for the caller to inspect that pickle; object fields inside records are refused.
The parse yields the descriptor as numpy's `descr_to_dtype` takes it, the itemsize it implies
(computed here, so inspection needs no numpy) and whether torch has the dtype.
"""

from __future__ import annotations

import ast
import re
import struct
from dataclasses import dataclass
from typing import Any

MAX_HEADER_CHARS = 10000  # numpy's max_header_size (np.load without allow_pickle)
MAX_DEPTH = 16
MAX_DIMS = 64
MAX_DIM = 1 << 62

_STR = re.compile(r"""'(?:[^'\\\n\r\x00]|\\(?:[\\'"abfnrtv]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}"""
                  r"""|U[0-9a-fA-F]{8}))*'|"(?:[^"\\\n\r\x00]|\\(?:[\\'"abfnrtv]|x[0-9a-fA-F]{2}"""
                  r"""|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}))*\"""")
_INT = re.compile(r"0|[1-9][0-9]{0,18}")
_DTYPE = re.compile(r"([<>|=]?)(b1|\?|[iu][1248]|f2|f4|f8|f16|c8|c16|c32|[USV][1-9][0-9]{0,9}|V0"
                    r"|[Mm]8(?:\[(?:[1-9][0-9]{0,5})?(?:Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\])?"
                    r"|O|O8|O4)")
_ITEMSIZE = {"?": 1}
# An object array's descr: '|O' today, '|O8' / '|O4' from the numpy of Python 2 (64/32-bit).
OBJECT_DESCRS = frozenset({"|O", "|O8", "|O4"})
# Anything numpy's literal_eval could read as an object dtype ('O', '|O8', "<O4", ...).
_OBJECT_SPELLING = re.compile(r"""O[0-9]*\s*['"]""")
_TORCH_CODES = frozenset({"b1", "?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4",
                          "f8", "c8", "c16"})


class NpyFormatError(ValueError):
    """The header is not one numpy writes. `objects`: it names an object dtype."""

    def __init__(self, message: str, *, objects: bool = False, malformed: bool = False) -> None:
        super().__init__(message)
        self.objects = objects
        self.malformed = malformed


@dataclass(frozen=True)
class NpyHeader:
    descr: Any  # as numpy's descr_to_dtype takes it: a str, or a list of field tuples
    fortran: bool
    shape: tuple[int, ...]
    offset: int  # where the array bytes start
    itemsize: int
    count: int
    objects: bool = False  # descr '|O': what follows the header is one pickle (np.save)

    @property
    def torch_code(self) -> str | None:
        """The plain code ('f4') when torch has this dtype, else None (numpy array)."""
        if isinstance(self.descr, str):
            m = _DTYPE.fullmatch(self.descr)
            if m is not None and m.group(2) in _TORCH_CODES:
                return m.group(2)
        return None


# The start of every message about a file cut short (an interrupted np.save or download).
TRUNCATED = ".npy file ends early"


def parse_npy(data: Any) -> NpyHeader:
    """The header of a whole `.npy` file's bytes; the data size must match it exactly.

    Raises:
        NpyFormatError: anything numpy does not write (or an object dtype: `objects`).
    """
    head = bytes(data[:12])
    if len(head) < 10 or head[:6] != b"\x93NUMPY":
        raise NpyFormatError("truncated .npy header", malformed=True)
    version = (head[6], head[7])
    if version == (1, 0):
        hlen, start, encoding = struct.unpack_from("<H", head, 8)[0], 10, "latin-1"
    elif version in ((2, 0), (3, 0)) and len(head) == 12:
        hlen, start = struct.unpack_from("<I", head, 8)[0], 12
        encoding = "latin-1" if version == (2, 0) else "utf-8"
    else:
        raise NpyFormatError("unknown .npy version", malformed=True)
    if start + hlen > len(data):  # np.load fails reading the header too
        raise NpyFormatError(f"{TRUNCATED} inside its header", malformed=True)
    # np.load itself reads long and unpadded headers (the length limit is lifted with
    # allow_pickle=True): refused, but "malformed" (cannot run code) only without objects.
    raw = bytes(data[start:start + min(hlen, 4 * MAX_HEADER_CHARS + 64)])
    head_text = raw.decode(encoding, "replace")
    # An escape could spell the O too ('\x4f'): a header with one is not judged harmless.
    plain = _OBJECT_SPELLING.search(head_text) is None and "\\" not in head_text
    if hlen > 4 * MAX_HEADER_CHARS + 64:
        raise NpyFormatError(".npy header out of bounds", malformed=plain)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise NpyFormatError(".npy header is not valid UTF-8", malformed=True) from None
    if len(text) > MAX_HEADER_CHARS:
        raise NpyFormatError(".npy header out of bounds", malformed=plain)
    if (start + hlen) % 16:
        raise NpyFormatError(".npy header is not padded to an alignment boundary",
                             malformed=plain)
    p = _Parser(text, longs=version <= (2, 0))
    descr, fortran, shape = p.header()
    count = 1
    for d in shape:
        count *= d
    if isinstance(descr, str) and descr in OBJECT_DESCRS:
        # np.save pickles an object array whole; np.load(allow_pickle=True) returns what
        # pickle.load reads there (the caller inspects that pickle like any other).
        return NpyHeader(descr, fortran, shape, start + hlen, 8, count, objects=True)
    item = _itemsize(descr)
    if start + hlen + count * item > len(data):  # np.load: "EOF: reading array data"
        raise NpyFormatError(f"{TRUNCATED}: the header's array needs {count * item} bytes, "
                             f"{len(data) - start - hlen} follow it", malformed=True)
    if start + hlen + count * item != len(data):
        raise NpyFormatError(".npy data size does not match its header", malformed=True)
    if item == 0 and count >= 1 << 63:  # np.ndarray(count) itself would refuse it
        raise NpyFormatError(".npy shape out of bounds", malformed=True)
    return NpyHeader(descr, fortran, shape, start + hlen, item, count)


class _Parser:
    def __init__(self, text: str, *, longs: bool = False) -> None:
        # `longs`: Python 2 wrote shape dimensions as `2L`; np.load drops the `L` for 1.0 and
        # 2.0 headers (`_filter_header`), never for 3.0.
        self.s, self.i, self.longs = text, 0, longs

    def fail(self, what: str) -> NpyFormatError:
        return NpyFormatError(f".npy header is not one numpy writes ({what} at {self.i})")

    def lit(self, token: str) -> None:
        if not self.s.startswith(token, self.i):
            raise self.fail(f"expected {token!r}")
        self.i += len(token)

    def peek(self, token: str) -> bool:
        return self.s.startswith(token, self.i)

    def header(self) -> tuple[Any, bool, tuple[int, ...]]:
        self.lit("{'descr': ")
        descr = self.descr(0)
        self.lit(", 'fortran_order': ")
        fortran = self.peek("True")
        self.lit("True" if fortran else "False")
        self.lit(", 'shape': ")
        shape = self.tuple(allow_empty=True)
        self.lit(", }")
        rest = self.s[self.i:]
        if not rest.endswith("\n") or rest[:-1].strip(" "):
            raise self.fail("expected spaces and a newline")
        if len(shape) > MAX_DIMS:
            raise NpyFormatError(".npy shape out of bounds", malformed=True)
        return descr, fortran, shape

    def string(self) -> str:
        m = _STR.match(self.s, self.i)
        if m is None:
            raise self.fail("expected a string")
        self.i = m.end()
        value = ast.literal_eval(m.group(0))  # one quoted token, matched above
        assert isinstance(value, str)
        return value

    def descr(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail("structured dtype nested too deep")
        if not self.peek("["):
            code = self.string()
            m = _DTYPE.fullmatch(code)
            if m is None:
                raise self.fail(f"dtype {code!r} outside the allowlist")
            if m.group(2).startswith("O") and (depth or code not in OBJECT_DESCRS):
                raise NpyFormatError("NumPy object array field (or an object dtype spelling "
                                     "np.save never writes): loading it unpickles arbitrary "
                                     "objects", objects=True)
            return code
        if self.peek("[]"):  # np.dtype([]): a record without fields
            self.lit("[]")
            return []
        self.lit("[")
        fields: list[tuple[Any, ...]] = []
        while True:
            self.lit("(")
            if self.peek("("):
                self.lit("(")
                title = self.string()
                self.lit(", ")
                name: Any = (title, self.string())
                self.lit(")")
            else:
                name = self.string()
            self.lit(", ")
            sub = self.descr(depth + 1)
            if self.peek(", ("):
                self.lit(", ")
                fields.append((name, sub, self.tuple(allow_empty=False)))
            else:
                fields.append((name, sub))
            self.lit(")")
            if self.peek("]"):
                break
            self.lit(", ")
        self.lit("]")
        _check_names(fields)
        return fields

    def tuple(self, *, allow_empty: bool) -> tuple[int, ...]:
        self.lit("(")
        dims: list[int] = []
        if self.peek(")"):
            if not allow_empty:
                raise self.fail("empty subarray shape")
            self.lit(")")
            return ()
        while True:
            m = _INT.match(self.s, self.i)
            if m is None:
                raise self.fail("expected a dimension")
            self.i = m.end()
            if self.longs and self.peek("L"):
                self.lit("L")
            dims.append(int(m.group(0)))
            if dims[-1] >= MAX_DIM:
                raise NpyFormatError(".npy shape out of bounds", malformed=True)
            if len(dims) == 1:
                if self.peek(",)"):
                    self.lit(",)")
                    return (dims[0],)
                self.lit(", ")
                continue
            if self.peek(")"):
                self.lit(")")
                return tuple(dims)
            self.lit(", ")


def _check_names(fields: list[tuple[Any, ...]]) -> None:
    seen: set[str] = set()
    for f in fields:
        name, sub = f[0], f[1]
        if name == "":
            if not (isinstance(sub, str) and _DTYPE.fullmatch(sub).group(2)[:1] == "V"  # type: ignore[union-attr]
                    and len(f) == 2):
                raise NpyFormatError(".npy field without a name")
            continue  # padding (align=True): numpy's descr_to_dtype drops it
        labels = list(name) if isinstance(name, tuple) else [name]
        for label in labels:
            if label == "" or label in seen:
                raise NpyFormatError(".npy field names are empty or repeated")
            seen.add(label)


def _itemsize(descr: Any) -> int:
    if isinstance(descr, str):
        code = _DTYPE.fullmatch(descr).group(2)  # type: ignore[union-attr]
        if code in _ITEMSIZE:
            return _ITEMSIZE[code]
        if code[0] in "Mm":
            return 8
        if code[0] == "U":
            return 4 * int(code[1:])
        return int(code[1:])  # S<n>, V<n>, b1, i4, f16, c32, ...
    total = 0
    for f in descr:
        n = _itemsize(f[1])
        for d in f[2] if len(f) == 3 else ():
            n *= d
        total += n
    return total


def build_dtype(header: NpyHeader) -> Any:
    """The dtype np.load builds: numpy's own `descr_to_dtype` on the validated descriptor."""
    from numpy.lib.format import descr_to_dtype

    return descr_to_dtype(header.descr)


__all__ = ["NpyFormatError", "NpyHeader", "build_dtype", "parse_npy"]
