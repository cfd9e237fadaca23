"""Writing a planned safetensors file: bytes copied straight out of the input by offset.

Each tensor's source bytes are hashed as they are copied (sha256, reported per tensor) so the
parent can check the written file against what the child read. The output is written to a
temporary name in the output directory and renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from safeload_conversion.plan import Entry, Plan

_CHUNK = 8 << 20


def _strided_bytes(buf: Any, entry: Entry) -> bytes:
    """Gather a non-contiguous view into C order (NumPy, loaded only for such views)."""
    import numpy as np

    _, start, itemsize, offset, size, stride = entry.source
    base = np.frombuffer(buf, dtype=np.uint8)
    elems = np.lib.stride_tricks.as_strided(
        base[start + offset * itemsize:], shape=(*size, itemsize),
        strides=(*(s * itemsize for s in stride), 1), writeable=False)
    return np.ascontiguousarray(elems).tobytes()


def _chunks(buf: Any, entry: Entry, in_fd: int | None, scratch: memoryview) -> Any:
    kind = entry.source[0]
    if kind == "bytes":
        yield memoryview(entry.source[1])
    elif kind == "span" and in_fd is not None:
        # pread into one reused buffer: no page faults on a mapping, flat memory.
        pos, end = entry.source[1], entry.source[1] + entry.nbytes
        while pos < end:
            n = os.preadv(in_fd, [scratch[: min(_CHUNK, end - pos)]], pos)
            if n <= 0:
                raise OSError(f"input ended inside tensor {entry.name!r}")
            yield scratch[:n]
            pos += n
    elif kind == "span":
        start = entry.source[1]
        view = memoryview(buf)
        for pos in range(start, start + entry.nbytes, _CHUNK):
            yield view[pos : min(pos + _CHUNK, start + entry.nbytes)]
    else:
        yield memoryview(_strided_bytes(buf, entry))


def header_bytes(plan: Plan, metadata: dict[str, str]) -> bytes:
    doc: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for e in plan.entries:
        doc[e.name] = {"dtype": e.dtype, "shape": list(e.shape),
                       "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()
    raw += b" " * (-(len(raw) + 8) % 8)  # align the data section to 8 bytes
    return len(raw).to_bytes(8, "little") + raw


def write_safetensors(plan: Plan, buf: Any, out_path: str, metadata: dict[str, str],
                      timings: dict[str, float] | None = None, in_fd: int | None = None,
                      late_metadata: Callable[[], dict[str, str]] | None = None,
                      durable: bool = True) -> dict[str, str]:
    """Write `plan` to `out_path` atomically; return {tensor name: sha256 of its bytes}.

    `late_metadata` supplies values known only once the data is written (the source digest);
    each must have the length of its placeholder in `metadata`, so the header is rewritten in
    place before the file is committed.
    """
    digests: dict[str, str] = {}
    scratch = memoryview(bytearray(_CHUNK))
    tmp = out_path + ".partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, header_bytes(plan, metadata))
        for e in plan.entries:
            h = hashlib.sha256()
            written = 0
            for chunk in _chunks(buf, e, in_fd, scratch):
                h.update(chunk)
                _write_all(fd, chunk)
                written += len(chunk)
            if written != e.nbytes:
                raise OSError(f"tensor {e.name!r}: wrote {written} of {e.nbytes} bytes")
            digests[e.name] = h.hexdigest()
        if late_metadata is not None:
            header = header_bytes(plan, metadata)
            final = header_bytes(plan, {**metadata, **late_metadata()})
            if len(final) != len(header):
                raise OSError("late metadata changed the header length")
            os.pwrite(fd, final, 0)
        mark = time.monotonic()
        if durable:  # cache entries must survive a crash; a user's output is like cp's
            os.fsync(fd)
        if timings is not None:
            timings["fsync"] = time.monotonic() - mark
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, out_path)
    return digests


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
