"""`safeload.load`: the drop-in for `torch.load` that never unpickles in this process.

One pipeline for every load, in this order: open the file once (a regular file) and keep the
handle; verify; inspect; convert (pickles, in the sandboxed child); record. Every step reads the
same descriptor and mapping, never the path again.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Callable
from typing import IO, Any

from safeload._internal.opened import OpenedFile
from safeload.errors import (
    MalformedFileError,
    UnsafeCheckpointError,
    UnsupportedFormatError,
)
from safeload.inspection import Inspection, inspect_bytes
from safeload.scanning import describe

_logger = logging.getLogger(__name__)

MapLocation = str | Any | dict[str, str] | Callable[..., Any] | None
FileLike = str | os.PathLike[str] | IO[bytes]

_warned: set[str] = set()
MAX_STREAM_BYTES = 1 << 34  # a file object without a descriptor is read into memory: 16 GiB max


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


def load(
    f: FileLike,
    map_location: MapLocation = None,
    pickle_module: Any = None,
    *,
    weights_only: bool | None = True,
    mmap: bool | None = None,
    **pickle_load_args: Any,
) -> Any:
    """Load a checkpoint like `torch.load(f, map_location, weights_only=True)`, safely.

    Accepts what `torch.load` accepts (a path, a PathLike or a binary file object) and returns
    what it returns for weights files; `.safetensors` files load too (a `dict[str, Tensor]`).
    `weights_only=False` and `pickle_module` are accepted for compatibility and never honoured.

    Raises:
        UnsafeCheckpointError: the file could run code, or cannot be shown not to.
        UnsupportedFormatError: the bytes are not a format safeload loads.
        MalformedFileError: a known format that does not parse exactly.
    """
    if weights_only is False or pickle_module is not None or pickle_load_args:
        _warn_once("unsafe-args", "safeload.load does not honour weights_only=False, "
                   "pickle_module or pickle load arguments: its own policy applies")
    opened = _open(f)
    try:
        buf = opened.mapping() if isinstance(opened, OpenedFile) else opened[1]
        name = opened.path if isinstance(opened, OpenedFile) else opened[0]
        ins = inspect_bytes(buf, name=name)
        _refuse_if_unsafe(name, ins)
        result = _load_inspected(name, ins, buf, map_location, mmap, opened)
        if isinstance(opened, OpenedFile) and opened.changed():
            raise MalformedFileError(
                f"{name}: the file was modified while it was being loaded",
                hint="load it again once the writer has finished")
        return result
    finally:
        if isinstance(opened, OpenedFile):
            opened.close()


def _open(f: FileLike) -> OpenedFile | tuple[str, bytes]:
    if isinstance(f, (str, os.PathLike)):
        return OpenedFile.open(f)
    name = str(getattr(f, "name", "<file object>"))
    fileno = getattr(f, "fileno", None)
    if fileno is not None:
        try:
            fd = os.dup(fileno())
        except (OSError, io.UnsupportedOperation):
            fd = -1
        if fd >= 0:
            # The caller's position is where torch.load would start reading.
            if f.seekable() and f.tell() == 0:
                return OpenedFile(fd, name)
            os.close(fd)
    data = f.read(MAX_STREAM_BYTES + 1)
    if not isinstance(data, bytes):
        raise UnsupportedFormatError(f"{name}: file object did not return bytes (open it 'rb')")
    if len(data) > MAX_STREAM_BYTES:
        raise UnsupportedFormatError(f"{name}: stream larger than {MAX_STREAM_BYTES} bytes",
                                     hint="pass a path instead of a stream")
    return name, data


def _refuse_if_unsafe(name: str, ins: Inspection) -> None:
    if ins.verdict == "skipped":
        raise UnsupportedFormatError(
            f"{name}: not a checkpoint format safeload loads (found: {ins.detail or ins.format})",
            hint="safeload loads safetensors, torch zip and legacy files, pickles and .npy/.npz")
    if ins.verdict == "unsafe" and ins.format == "safetensors":
        # Safetensors cannot run code: a bad one is malformed, not unsafe.
        raise MalformedFileError(ins.findings[0].message,
                                 hint="fetch the file again from its source")
    if ins.verdict == "unsafe":
        lines = "; ".join(describe(x) for x in ins.findings[:5])
        more = f" (+{len(ins.findings) - 5} more)" if len(ins.findings) > 5 else ""
        code_bearing = any(x.code == "code-bearing" for x in ins.findings)
        hint = ("save a state_dict (model.state_dict()) instead of code, or export safetensors"
                if code_bearing else
                "do not load this file; if you trust its source, ask for a safetensors export")
        raise UnsafeCheckpointError(f"{name}: refused ({ins.format}): {lines}{more}", hint=hint,
                                    findings=tuple(ins.findings))


def _load_inspected(name: str, ins: Inspection, buf: Any, map_location: MapLocation,
                    mmap: bool | None, opened: Any) -> Any:
    fmt = ins.format
    if fmt == "safetensors":
        from safeload._internal.tensors import load_safetensors_buffer

        return load_safetensors_buffer(buf, name, map_location=map_location,
                                       copy=(mmap is False))
    if fmt in ("numpy", "npz"):
        from safeload._internal.tensors import load_numpy_buffer

        return load_numpy_buffer(buf, fmt, map_location=map_location)
    if fmt in ("torch-zip", "torch-legacy", "pickle"):
        from safeload.convert import load_via_sandbox

        return load_via_sandbox(name, ins, opened, map_location=map_location, mmap=mmap)
    raise UnsupportedFormatError(
        f"{name}: {fmt} files are recognised but not loaded by safeload.load",
        hint="decompress or extract the file and load the checkpoint inside")
