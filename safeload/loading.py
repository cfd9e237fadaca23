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
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from safeload._internal.opened import Held, OpenedFile, sha256_buffer
from safeload._internal.record import model_context, record
from safeload.errors import (
    MalformedFileError,
    UnsafeCheckpointError,
    UnsupportedFormatError,
)
from safeload.inspection import Inspection, inspect_bytes
from safeload.scanning import describe

if TYPE_CHECKING:
    from safeload._internal.hubpath import HubFile
    from safeload.convert import Converted
    from safeload.trust import TrustDecision, TrustStore

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
        return load_opened(opened, map_location=map_location, mmap=mmap)
    finally:
        if isinstance(opened, OpenedFile):
            opened.close()


def blob_digest(path: Path) -> str | None:
    """The sha256 a Hugging Face cache blob's name asserts, from the link's FIRST hop.

    Snapshot files link to `../../blobs/<sha256>` for LFS files (the Hub names them by their
    content). Only the first hop counts: a shared store further down (Xet) names things
    differently, and following to the end would compare against the wrong name.
    """
    try:
        target = os.readlink(path)
    except OSError:
        return None
    name = os.path.basename(target)
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    return None


def load_opened(opened: Held, *, map_location: MapLocation = None,
                mmap: bool | None = None, action: str = "load",
                hub: HubFile | None = None) -> Any:
    """The one pipeline: verify, licence, inspect, convert, load, record (see module doc).

    `hub` is the Hub file `opened` is (from_pretrained knows it); otherwise it is decided from
    the path's cache layout.
    """
    buf = opened.mapping() if isinstance(opened, OpenedFile) else opened[1]
    name = opened.path if isinstance(opened, OpenedFile) else opened[0]
    path = Path(name) if isinstance(opened, OpenedFile) else _stream_path(name)
    origin = _hub_origin(opened, path, hub)
    repo, revision, filename = origin if origin else (None, None, None)
    verified = verify_opened(opened, repo=repo, revision=revision, filename=filename,
                             blob_sha256=blob_digest(path)
                             if path is not None and isinstance(opened, OpenedFile) else None)
    context = model_context(path, verified.store, origin=origin)  # licence policy (may refuse)
    ins = inspect_bytes(buf, name=name)
    _refuse_if_unsafe(name, ins)
    if ins.format in _PICKLE_FORMATS and verified.store.policy.pickles == "refuse":
        raise UnsafeCheckpointError(
            f"{name}: a pickle checkpoint ({ins.format}), and the policy refuses every pickle",
            hint="ask for safetensors, or `safeload trust policy --pickles convert`")
    result, conversion = _load_inspected(name, ins, buf, map_location, mmap, opened,
                                         verified.sha256)
    if isinstance(opened, OpenedFile) and opened.changed():
        raise MalformedFileError(
            f"{name}: the file was modified while it was being loaded",
            hint="load it again once the writer has finished")
    record(action=action, path=name, sha256=verified.sha256, size=verified.size,
           fmt=ins.format, decision=verified.decision, context=context,
           store=verified.store,
           converted=conversion.report if conversion else None,
           output=conversion.output_record() if conversion else None)
    return result


def _stream_path(name: str) -> Path | None:
    """The file a stream's `name` names (its model card and Hub origin still apply), if any."""
    if not name or name.startswith("<"):
        return None
    p = Path(name)
    try:
        return p if p.is_file() else None
    except OSError:
        return None


def _hub_origin(opened: Held, path: Path | None, hub: HubFile | None
                ) -> tuple[str, str, str] | None:
    """(repo, commit, file) of a Hub file; a held snapshot entry must be what the client wrote.

    Raises:
        UnsafePathError: the entry is not a blob link or file of its repo, or its snapshot
            names no commit.
    """
    from safeload._internal import hubpath

    if hub is None and path is not None:
        hub = hubpath.hub_file(path)
    if hub is None:
        return None
    if isinstance(opened, OpenedFile):
        hubpath.check_held(hub, opened.fd)
    return hub.repo_id, hubpath.resolve_commit(hub), hub.filename


_PICKLE_FORMATS = ("torch-zip", "torch-legacy", "pickle", "joblib")


@dataclass(frozen=True)
class Verified:
    """What verification established about the bytes safeload holds."""

    sha256: str
    size: int
    store: TrustStore
    decision: TrustDecision | None
    cached: bool


def verify_opened(opened: Held, *, repo: str | None = None,
                  revision: str | None = None, filename: str | None = None,
                  blob_sha256: str | None = None) -> Verified:
    """Hash what is held (or reuse a cached digest) and apply the trust store's policy.

    `blob_sha256` is the digest a Hugging Face cache blob's name asserts: a free integrity
    check, made before anything is pinned.

    Raises:
        RefusedError: revoked, pinned digest mismatch, bad or missing required signature.
        TrustStoreError: the trust store is unusable (never "trust everything").
    """
    from safeload._internal import verify_cache
    from safeload.trust import TrustStore, check_bytes, check_load

    store = TrustStore.load()
    if not isinstance(opened, OpenedFile):
        # Bytes without a file: every check that applies to bytes (see trust.check_bytes).
        name, data = opened
        sha = sha256_buffer(data)
        decision = check_bytes(name, sha256=sha, store=store, repo=repo, revision=revision)
        for w in decision.warnings:
            _logger.warning("%s", w)
        return Verified(sha, len(data), store, decision, False)
    state = store.state_digest()
    hit = verify_cache.lookup(opened.identity, state)
    cached = hit is not None
    sha = hit if hit is not None else opened.sha256()
    if blob_sha256 is not None and blob_sha256 != sha:
        from safeload.errors import DigestMismatchError

        raise DigestMismatchError(opened.path, f"sha256:{blob_sha256} (its cache blob name)",
                                  f"sha256:{sha}")
    decision = check_load(Path(opened.path), sha256=sha, size=opened.identity.size, store=store,
                          repo=repo, revision=revision, filename=filename)
    if not cached and not opened.changed():
        verify_cache.remember(opened.identity, state, sha)
    for w in decision.warnings:
        _logger.warning("%s", w)
    return Verified(sha, opened.identity.size, store, decision, cached)


def _open(f: FileLike) -> Held:
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
    if not isinstance(data, (bytes, bytearray)):
        raise UnsupportedFormatError(f"{name}: file object did not return bytes (open it 'rb')")
    if len(data) > MAX_STREAM_BYTES:
        raise UnsupportedFormatError(f"{name}: stream larger than {MAX_STREAM_BYTES} bytes",
                                     hint="pass a path instead of a stream")
    # A private, writable copy: tensors made from it must not alias (or try to write into)
    # the caller's immutable bytes.
    return name, bytearray(data)


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
        # torch.save(model) pickles the model's classes: nn.Module subclasses, often __main__.
        whole_model = any((x.global_name or "").startswith(("torch.nn.modules.", "__main__."))
                          for x in ins.findings)
        if code_bearing or whole_model:
            hint = ("this file holds a whole model object or code: save model.state_dict() "
                    "instead (or export safetensors) and load that")
        else:
            hint = "do not load this file; if you trust its source, ask for a safetensors export"
        raise UnsafeCheckpointError(f"{name}: refused ({ins.format}): {lines}{more}", hint=hint,
                                    findings=tuple(ins.findings))


def _load_inspected(name: str, ins: Inspection, buf: Any, map_location: MapLocation,
                    mmap: bool | None, opened: Any, sha256: str) -> tuple[Any, Converted | None]:
    """The loaded object, and the conversion it came from (pickles only)."""
    fmt = ins.format
    if fmt == "safetensors":
        from safeload._internal.tensors import load_safetensors_buffer

        return load_safetensors_buffer(buf, name, map_location=map_location,
                                       copy=(mmap is False)), None
    if fmt in ("numpy", "npz"):
        from safeload._internal.tensors import load_numpy_inspected

        try:
            return load_numpy_inspected(ins, map_location=map_location), None
        except (ValueError, TypeError, OverflowError, NotImplementedError, OSError) as exc:
            raise MalformedFileError(f"{name}: NumPy could not read it: {exc}") from None
    if fmt in _PICKLE_FORMATS:
        from safeload.convert import load_via_sandbox

        return load_via_sandbox(name, ins, opened, map_location=map_location, mmap=mmap,
                                source_sha256=sha256)
    raise UnsupportedFormatError(
        f"{name}: {fmt} files are recognised but not loaded by safeload.load",
        hint="decompress or extract the file and load the checkpoint inside")
