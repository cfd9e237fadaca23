"""Pickle checkpoints become safetensors in the sandboxed child; the parent never unpickles.

The parent hashes the bytes it holds, hands the child the open descriptor, and on return
re-validates the output from scratch: strict header check, the child's digest of the input equal
to the parent's, and every written tensor's digest equal to what the child read. Results are
cached under the converted store, keyed by the source digest plus converter and allowlist
versions (tightening the rules invalidates old entries).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeload._internal import paths
from safeload._internal.opened import OpenedFile
from safeload._internal.safetensors_check import SafetensorsHeader, parse_header
from safeload.errors import ConversionError, UnsafeCheckpointError
from safeload.inspection import Inspection
from safeload_conversion import __version__ as CONVERTER_VERSION
from safeload_conversion.pickle_vm import allowlist

_logger = logging.getLogger(__name__)

STRUCTURE_KEY = "safeload.structure"
OUTPUT_NAME = "model.safetensors"
REPORT_NAME = "conversion.json"
WORKER_MODULE = "safeload_conversion"


@dataclass(frozen=True)
class Converted:
    """A validated conversion: the safetensors path, its header and the child's report."""

    path: Path
    header: SafetensorsHeader
    report: dict[str, Any]
    source_sha256: str
    cache_hit: bool


def sha256_buffer(buf: Any) -> str:
    h = hashlib.sha256()
    view = memoryview(buf)
    for pos in range(0, len(view), 16 << 20):
        h.update(view[pos : pos + (16 << 20)])
    return h.hexdigest()


def _cache_key(source_sha256: str) -> str:
    return f"{source_sha256}-c{CONVERTER_VERSION}-a{allowlist().version}"


def _private_dir(path: Path) -> Path:
    """Create (0700) or check a directory: never one that others may write to."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or (
            hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise ConversionError(f"{path}: the converted store is writable by others or not yours",
                              hint=f"chmod 700 {path} (or remove it; it is regenerated)")
    return path


def _validate_output(out: Path, report: dict[str, Any], source_sha256: str,
                     check_digests: bool) -> SafetensorsHeader:
    with OpenedFile.open(out) as f:
        buf = f.mapping()
        header = parse_header(buf, str(out))
        meta = header.metadata or {}
        if meta.get("safeload.source_sha256") != source_sha256:
            raise ConversionError(f"{out}: converted file belongs to another source")
        if STRUCTURE_KEY not in meta:
            raise ConversionError(f"{out}: converted file has no structure record")
        if check_digests:
            expected = report.get("tensors")
            if not isinstance(expected, dict) or set(expected) != {e.name for e in header.tensors}:
                raise ConversionError(f"{out}: tensors differ from the worker's report")
            view = memoryview(buf)
            for e in header.tensors:
                if hashlib.sha256(view[e.begin : e.end]).hexdigest() != expected[e.name]:
                    raise ConversionError(
                        f"{out}: tensor {e.name!r} differs from the bytes the worker read")
        return header


def convert_opened(name: str, opened: OpenedFile | tuple[str, bytes], *, timeout: float = 3600,
                   allow_unsandboxed: bool = False) -> Converted:
    """Convert (or find in the cache) the checkpoint held by `opened`."""
    from safeload._internal.sandbox import Limits, run_worker

    buf = opened.mapping() if isinstance(opened, OpenedFile) else opened[1]
    source_sha256 = sha256_buffer(buf)
    store = _private_dir(paths.converted_dir())
    final = store / _cache_key(source_sha256)
    if (final / OUTPUT_NAME).is_file():
        try:
            report = json.loads((final / REPORT_NAME).read_text())
            header = _validate_output(final / OUTPUT_NAME, report, source_sha256, False)
            return Converted(final / OUTPUT_NAME, header, report, source_sha256, True)
        except (OSError, ValueError, ConversionError) as exc:
            _logger.warning("discarding a damaged converted entry %s: %s", final, exc)
            shutil.rmtree(final, ignore_errors=True)

    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=store))
    fd, close_fd = _input_fd(opened)
    try:
        result = run_worker(
            WORKER_MODULE, [str(fd), str(work)], pass_fds=(fd,), output_dir=work,
            timeout=timeout, limits=Limits.for_input(len(buf)),
            allow_unsandboxed=allow_unsandboxed)
        report = dict(result.result)
        report["layers"] = result.layers.to_dict()
        if report.get("source_sha256") != source_sha256:
            raise ConversionError(f"{name}: the worker converted different bytes than were "
                                  "verified (digest mismatch)")
        _validate_output(work / OUTPUT_NAME, report, source_sha256, True)
        (work / REPORT_NAME).write_text(json.dumps(report))
        try:
            os.rename(work, final)
        except OSError:  # a concurrent conversion won the race: use its entry
            shutil.rmtree(work, ignore_errors=True)
        header = _validate_output(final / OUTPUT_NAME, report, source_sha256, False)
        return Converted(final / OUTPUT_NAME, header, report, source_sha256, False)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if close_fd:
            os.close(fd)


def _input_fd(opened: OpenedFile | tuple[str, bytes]) -> tuple[int, bool]:
    """The descriptor the child reads; an in-memory stream goes through a sealed memfd."""
    if isinstance(opened, OpenedFile):
        return opened.fd, False
    fd = os.memfd_create("safeload-input", os.MFD_CLOEXEC)
    data = memoryview(opened[1])
    while data:
        data = data[os.write(fd, data):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd, True


def load_via_sandbox(name: str, ins: Inspection, opened: Any, *, map_location: Any,
                     mmap: bool | None) -> Any:
    """Convert a clean pickle checkpoint in the sandbox and return what torch.load would."""
    from safeload._internal.structure import rebuild
    from safeload._internal.tensors import apply_map_location, tensors_from_header

    if ins.verdict != "clean":  # never reached: load refuses first; kept as a last guard
        raise UnsafeCheckpointError(f"{name}: refused before conversion")
    conv = convert_opened(name, opened)
    with OpenedFile.open(conv.path) as f:
        buf = f.mapping()
        header = parse_header(buf, str(conv.path))
        tensors = tensors_from_header(buf, header, copy=(mmap is False))
    structure = json.loads((header.metadata or {})[STRUCTURE_KEY])
    return rebuild(structure, tensors, lambda t: apply_map_location(t, map_location))
