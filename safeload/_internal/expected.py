"""The converter child's output, derived by the parent from the source bytes it holds.

The child is sandboxed because parsing a hostile pickle might compromise it; so nothing it
reports is believed. The parent parses the same bytes with the same static machine (no
unpickling: the inspection already ran it on these bytes), plans the output itself and compares
the child's file with that plan: the whole header byte for byte (tensor names, dtypes, shapes,
offsets, the structure record, the source digest, the versions), the file size, and every
tensor's bytes against the bytes of the held source they come from. Contiguous tensors are a
byte range of the source; strided views are gathered from the parent's own mapping (their extent
within the storage was checked by the machine); NumPy array bytes come from the parent's own
parse of the pickle (an inflated `data.pkl` included). Compressed storages and big-endian
checkpoints are refused by the reader, so no other decoding exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from safeload_conversion.convert import ConvertRefused, output_metadata, read_checkpoint
from safeload_conversion.plan import Entry, PlanError, make_plan
from safeload_conversion.writer import _strided_bytes, header_bytes

_CHUNK = 16 << 20


class OutputMismatch(Exception):
    """The child's file is not the conversion of the source; the message says where."""


@dataclass(frozen=True)
class Expected:
    header: bytes  # the exact header (length prefix + JSON + padding)
    entries: list[Entry]
    size: int  # the exact file size


def derive(source: Any, source_sha256: str, reading: Any = None) -> Expected:
    """The output the converter must have written for `source` (the held mapping).

    `reading` is the parent's own clean reading of the same held bytes (the inspection's
    `TorchCheckpoint`), so the pickle is walked once per load, not once to inspect and again
    here; without it the bytes are read now."""
    try:
        ck = reading if reading is not None and not reading.findings else read_checkpoint(source)
        plan = make_plan(ck.root, ck.storage_spans)
    except (ConvertRefused, PlanError) as exc:
        raise OutputMismatch(f"the parent's own reading of the source fails: {exc}") from None
    header = header_bytes(plan, output_metadata(plan, source_sha256))
    return Expected(header, plan.entries, len(header) + sum(e.nbytes for e in plan.entries))


def compare(expected: Expected, output: Any, source: Any) -> None:
    """Raise `OutputMismatch` unless `output` (a mapping of the child's file) is exactly the
    expected file: a byte comparison, never a digest."""
    import numpy as np

    if len(output) != expected.size:
        raise OutputMismatch(f"size {len(output)} instead of {expected.size} bytes")
    n = len(expected.header)
    if bytes(output[:n]) != expected.header:
        raise OutputMismatch("the header (tensor names, dtypes, shapes, offsets or the "
                             "structure record) is not the one derived from the source")
    out = np.frombuffer(output, dtype=np.uint8)
    src = np.frombuffer(source, dtype=np.uint8) if len(source) else np.empty(0, np.uint8)
    pos = n
    for e in expected.entries:
        kind = e.source[0]
        if kind == "span":
            start = e.source[1]
            if start < 0 or start + e.nbytes > len(src):
                raise OutputMismatch(f"tensor {e.name!r} lies outside the source")
            for off in range(0, e.nbytes, _CHUNK):
                m = min(_CHUNK, e.nbytes - off)
                if not np.array_equal(out[pos + off: pos + off + m],
                                      src[start + off: start + off + m]):
                    raise OutputMismatch(f"tensor {e.name!r} differs from its source bytes")
        else:
            want = e.source[1] if kind == "bytes" else _strided_bytes(source, e)
            if len(want) != e.nbytes or bytes(output[pos: pos + e.nbytes]) != bytes(want):
                raise OutputMismatch(f"tensor {e.name!r} differs from its source bytes")
        pos += e.nbytes
