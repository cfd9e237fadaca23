"""Conversion proper (runs inside the locked-down worker; stdlib only, no torch)."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import threading
import time
from typing import Any

from safeload_conversion import __version__
from safeload_conversion.pickle_vm import MalformedPickle, PickleMachine, allowlist
from safeload_conversion.plan import Plan, PlanError, make_plan
from safeload_conversion.protocol import OUTPUT_NAME, SOURCE_SHA256_KEY, STRUCTURE_KEY
from safeload_conversion.torchfile import (
    LEGACY_MAGIC,
    TorchCheckpoint,
    read_storage_bytes,
    read_torch_legacy,
    read_torch_zip,
)
from safeload_conversion.writer import write_safetensors
from safeload_conversion.zipstrict import ZipError, read_zip


class ConvertRefused(Exception):
    """The input is not something the converter will reconstruct; the message says why."""


def sha256_fd(fd: int, size: int) -> str:
    """sha256 of the whole input, read with pread into one buffer (no mapping, flat memory)."""
    h = hashlib.sha256()
    scratch = memoryview(bytearray(8 << 20))
    pos = 0
    while pos < size:
        n = os.preadv(fd, [scratch], pos)
        if n <= 0:
            raise OSError("input shrank while it was being read")
        h.update(scratch[:n])
        pos += n
    return h.hexdigest()


def read_checkpoint(buf: Any) -> TorchCheckpoint:
    """The symbolic checkpoint, or `ConvertRefused` naming the first finding."""
    if bytes(buf[:4]) == b"PK\x03\x04":
        try:
            ck = read_torch_zip(buf, read_zip(buf))
        except ZipError as exc:
            raise ConvertRefused(f"archive: {exc}") from None
    else:
        # a whole file: joblib's arrays and pickle.dump's storage bytes are read
        vm = PickleMachine(buf, joblib_arrays=True, storage_bytes=read_storage_bytes)
        try:
            root = vm.run()
        except MalformedPickle as exc:
            raise ConvertRefused(f"malformed pickle at offset {exc.offset}: {exc}") from None
        if isinstance(root, int) and not isinstance(root, bool) and root == LEGACY_MAGIC:
            ck = read_torch_legacy(buf)
        else:
            # storages written by pickle.dump (`_load_from_bytes`): their bytes lie in the file
            ck = TorchCheckpoint("pickle", root=root, findings=list(vm.findings),
                                 storage_spans=dict(vm.storage_spans))
            if vm.pos != len(buf):
                raise ConvertRefused("bytes after STOP")
    if ck.findings:
        f = ck.findings[0]
        raise ConvertRefused(f"{f.code}: {f.message} (member {f.member}, offset {f.offset})")
    return ck


def output_metadata(plan: Plan, source_sha256: str) -> dict[str, str]:
    """The output's safetensors metadata: a pure function of the plan and the source digest,
    so the parent derives the expected header itself from the bytes it holds."""
    return {
        "format": "pt",
        STRUCTURE_KEY: json.dumps(plan.structure, separators=(",", ":")),
        "safeload.converter": __version__,
        "safeload.allowlist": allowlist().version,
        SOURCE_SHA256_KEY: source_sha256,
    }


HASH_THREAD_MIN = 4 << 20  # below this the source digest is computed before converting


def convert_fd(in_fd: int, out_dir: str, out_name: str = OUTPUT_NAME) -> dict[str, Any]:
    """Convert the checkpoint behind `in_fd` into OUT_DIR/OUT_NAME; report it."""
    started = time.monotonic()
    size = os.fstat(in_fd).st_size
    buf: Any = mmap.mmap(in_fd, size, access=mmap.ACCESS_READ) if size else b""
    timings: dict[str, float] = {}
    # The digest of everything read is computed on the other core while tensors are copied
    # (hashlib and pread release the GIL); the parent checks it against its own.
    digest: list[str | BaseException] = []

    def hash_source() -> None:
        mark = time.monotonic()
        try:
            digest.append(sha256_fd(in_fd, size))
        except BaseException as exc:  # reported below, never swallowed
            digest.append(exc)
        timings["hash_source"] = time.monotonic() - mark

    def source_digest() -> str:
        if hasher is not None:
            hasher.join()
        if not digest or isinstance(digest[0], BaseException):
            raise ConvertRefused(f"could not hash the input: {digest[0] if digest else '?'}")
        return digest[0]

    hasher: threading.Thread | None = None
    if size >= HASH_THREAD_MIN:
        hasher = threading.Thread(target=hash_source, name="source-sha256")
        hasher.start()
    else:  # a thread costs more than hashing a small input (a DataLoader's .pt files)
        hash_source()
    try:
        mark = time.monotonic()
        ck = read_checkpoint(buf)
        try:
            plan = make_plan(ck.root, ck.storage_spans)
        except PlanError as exc:
            raise ConvertRefused(str(exc)) from None
        timings["read_and_plan"] = time.monotonic() - mark
        mark = time.monotonic()
        metadata = output_metadata(plan, "0" * 64)  # digest filled in once known
        out_path = os.path.join(out_dir, out_name)
        digests = write_safetensors(
            plan, buf, out_path, metadata, timings, in_fd=in_fd,
            late_metadata=lambda: {SOURCE_SHA256_KEY: source_digest()},
            durable=os.environ.get("SAFELOAD_CONVERT_FSYNC", "1") != "0")
        timings["write"] = time.monotonic() - mark
    finally:
        if hasher is not None:
            hasher.join()
    return {
        "source_sha256": source_digest(),
        "source_format": ck.kind,
        "output": out_name,
        "tensors": digests,
        "converter": __version__,
        "allowlist": allowlist().version,
        "seconds": round(time.monotonic() - started, 4),
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
