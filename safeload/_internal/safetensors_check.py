"""Strict validation of a safetensors file's header against the bytes that follow it.

Checked before a single tensor is made: header size bound, well-formed JSON with no duplicate
keys and no NaN literals, known dtypes, integer shapes, offsets in bounds, sorted,
non-overlapping and covering the data section exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from safeload_conversion.pickle_vm import Buf

from safeload._internal import strictjson
from safeload.errors import MalformedFileError

# The reference implementation's own bound on the header (safetensors `MAX_HEADER_SIZE`).
MAX_HEADER_BYTES = 100_000_000

# safetensors dtype code -> (torch dtype name, bits per element)
DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8), "U8": ("uint8", 8), "I8": ("int8", 8), "I16": ("int16", 16),
    "U16": ("uint16", 16), "F16": ("float16", 16), "BF16": ("bfloat16", 16),
    "I32": ("int32", 32), "U32": ("uint32", 32), "F32": ("float32", 32), "F64": ("float64", 64),
    "I64": ("int64", 64), "U64": ("uint64", 64), "C64": ("complex64", 64),
    "F8_E4M3": ("float8_e4m3fn", 8), "F8_E5M2": ("float8_e5m2", 8),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 8), "F8_E5M2FNUZ": ("float8_e5m2fnuz", 8),
    "F8_E8M0": ("float8_e8m0fnu", 8),
    # Two 4-bit floats per byte: the header counts 4-bit elements, torch counts bytes (the last
    # dimension halved), as safetensors.torch maps it.
    "F4": ("float4_e2m1fn_x2", 4),
}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # safetensors code
    shape: tuple[int, ...]
    begin: int  # absolute file offsets
    end: int

    @property
    def torch_shape(self) -> tuple[int, ...]:
        """The shape torch gives it: sub-byte dtypes pack their last dimension into bytes."""
        bits = DTYPES[self.dtype][1]
        if bits >= 8:
            return self.shape
        return (*self.shape[:-1], self.shape[-1] * bits // 8)


def file_order(tensors: tuple[TensorEntry, ...]) -> list[TensorEntry]:
    """The order `safetensors.load_file` (`get_tensors`) and `offset_keys` return: by data
    offsets (start, then end); the name breaks the ties the reference leaves to a hash map."""
    return sorted(tensors, key=lambda e: (e.begin, e.end, e.name))


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str] | None
    data_start: int


# What serde_json (the reference reader) and Python's json skip before a value.
JSON_WHITESPACE = b" \t\n\r"


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """The cheap sniff, by the reference reader's rule: an 8-byte length that fits the file,
    then a JSON object, which may follow JSON whitespace (safetensors accepts ` {`). A head
    that is whitespace to its end may still be one: it counts (the parse decides)."""
    if len(head) < 9 or size < 10:
        return False
    (n,) = struct.unpack_from("<Q", head)
    if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
        return False
    rest = head[8 : 8 + n].lstrip(JSON_WHITESPACE)
    return rest[:1] == b"{" or (not rest and len(head) < 8 + n)


# The parse is a pure function of the header's bytes and the file's size, so a header seen
# before (the same file loaded again, or the inspection's parse reused by the load) is not
# parsed twice. Only valid headers are kept (an error names its file), only small ones.
_MEMO_HEADER_BYTES = 64 * 1024
_MEMO_ENTRIES = 1024
_PARSED: dict[tuple[bytes, int], SafetensorsHeader] = {}


def parse_header(buf: Buf, path: str) -> SafetensorsHeader:
    """Validate the header and the layout; raise `MalformedFileError` naming the file."""
    def bad(why: str) -> MalformedFileError:
        return MalformedFileError(f"{path}: not a valid safetensors file: {why}",
                                  hint="fetch the file again from its source")

    size = len(buf)
    if size < 8:
        raise bad("shorter than its 8-byte header length")
    (n,) = struct.unpack_from("<Q", buf)
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise bad(f"header length {n} is out of bounds")
    raw = bytes(buf[8 : 8 + n])
    known = _PARSED.get((raw, size))
    if known is not None:
        return known
    try:
        doc = strictjson.loads(raw, unsigned=True)  # `-0` too: the crate's usize refuses it
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise bad(f"header is not well-formed JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise bad("header is not a JSON object")
    metadata = doc.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise bad("__metadata__ must map strings to strings")
    data_start = 8 + n
    data_len = size - data_start
    entries: list[TensorEntry] = []
    for name, info in doc.items():
        # Other fields are ignored, as the reference reader (serde, unknown fields allowed)
        # ignores them: the three it reads are the ones checked here.
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise bad(f"tensor {name!r}: entry must have dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise bad(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise bad(f"tensor {name!r}: shape must be a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(
            isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise bad(f"tensor {name!r}: data_offsets must be two integers")
        begin, end = offsets
        count, extent = 1, 1
        for i, d in enumerate(shape):
            count *= d
            extent *= max(d, 1) if i else 1  # the first dimension is in no stride
        if extent >= 1 << 63 or any(d >= 1 << 63 for d in shape):
            # torch cannot make it (a size or stride overflows int64), whatever numel
            raise bad(f"tensor {name!r}: shape {shape} overflows a tensor's strides")
        bits = DTYPES[dtype][1]
        if bits < 8 and (not shape or shape[-1] * bits % 8):
            raise bad(f"tensor {name!r}: {dtype} needs a last dimension of whole bytes")
        nbytes = count * bits // 8
        if not 0 <= begin <= end <= data_len or end - begin != nbytes:
            raise bad(f"tensor {name!r}: offsets [{begin}, {end}] do not match its shape "
                      f"and dtype ({nbytes} bytes) within the {data_len}-byte data section")
        entries.append(TensorEntry(name, dtype, tuple(shape), data_start + begin,
                                   data_start + end))
    cursor = data_start
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin != cursor:
            raise bad(f"tensor {e.name!r}: data overlaps another tensor or leaves a gap")
        cursor = e.end
    if cursor != size:
        raise bad("data section has bytes no tensor covers")
    header = SafetensorsHeader(tuple(entries), metadata, data_start)
    if n <= _MEMO_HEADER_BYTES:
        if len(_PARSED) >= _MEMO_ENTRIES:
            _PARSED.clear()
        _PARSED[(raw, size)] = header
    return header
