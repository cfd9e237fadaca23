"""Conversion proper (runs inside the locked-down worker; stdlib only, no torch)."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import time
from typing import Any

from safeload_conversion import __version__
from safeload_conversion.pickle_vm import MalformedPickle, PickleMachine, allowlist
from safeload_conversion.plan import PlanError, make_plan
from safeload_conversion.torchfile import (
    LEGACY_MAGIC,
    TorchCheckpoint,
    read_torch_legacy,
    read_torch_zip,
)
from safeload_conversion.writer import write_safetensors
from safeload_conversion.zipstrict import ZipError, read_zip

OUTPUT_NAME = "model.safetensors"
STRUCTURE_KEY = "safeload.structure"


class ConvertRefused(Exception):
    """The input is not something the converter will reconstruct; the message says why."""


def _sha256(buf: Any) -> str:
    h = hashlib.sha256()
    view = memoryview(buf)
    for pos in range(0, len(view), 16 << 20):
        h.update(view[pos : pos + (16 << 20)])
    return h.hexdigest()


def read_checkpoint(buf: Any) -> TorchCheckpoint:
    """The symbolic checkpoint, or `ConvertRefused` naming the first finding."""
    if bytes(buf[:4]) == b"PK\x03\x04":
        try:
            ck = read_torch_zip(buf, read_zip(buf))
        except ZipError as exc:
            raise ConvertRefused(f"archive: {exc}") from None
    else:
        vm = PickleMachine(buf)
        try:
            root = vm.run()
        except MalformedPickle as exc:
            raise ConvertRefused(f"malformed pickle at offset {exc.offset}: {exc}") from None
        if isinstance(root, int) and not isinstance(root, bool) and root == LEGACY_MAGIC:
            ck = read_torch_legacy(buf)
        else:
            ck = TorchCheckpoint("pickle", root=root, findings=list(vm.findings))
            if vm.pos != len(buf):
                raise ConvertRefused("bytes after STOP")
    if ck.findings:
        f = ck.findings[0]
        raise ConvertRefused(f"{f.code}: {f.message} (member {f.member}, offset {f.offset})")
    return ck


def convert_fd(in_fd: int, out_dir: str) -> dict[str, Any]:
    started = time.monotonic()
    size = os.fstat(in_fd).st_size
    buf: Any = mmap.mmap(in_fd, size, access=mmap.ACCESS_READ) if size else b""
    source_sha256 = _sha256(buf)
    ck = read_checkpoint(buf)
    try:
        plan = make_plan(ck.root, ck.storage_spans, buf)
    except PlanError as exc:
        raise ConvertRefused(str(exc)) from None
    metadata = {
        "format": "pt",
        STRUCTURE_KEY: json.dumps(plan.structure, separators=(",", ":")),
        "safeload.converter": __version__,
        "safeload.allowlist": allowlist().version,
        "safeload.source_sha256": source_sha256,
    }
    out_path = os.path.join(out_dir, OUTPUT_NAME)
    digests = write_safetensors(plan, buf, out_path, metadata)
    return {
        "source_sha256": source_sha256,
        "source_format": ck.kind,
        "output": OUTPUT_NAME,
        "tensors": digests,
        "converter": __version__,
        "allowlist": allowlist().version,
        "seconds": round(time.monotonic() - started, 4),
    }
