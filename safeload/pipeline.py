"""The stages every entry point composes: open, locate, verify, admit, materialize, record.

`load`, `from_pretrained`/`load_state_dict`, the guard, `convert` (file and directory),
`cache scan`, `cache convert` and `verify` are each a composition of these functions, so a gate
added here holds everywhere (the gate table test pins it):

    held = open_input(f)                      # one regular file and one descriptor, or a buffer
    origin = locate(held)                     # the Hub file it is, from the cache layout
    verified = verify(held, origin)           # digest (memo), blob name, trust decision
    admitted = admit(verified, "load")        # licence, inspection verdict, pickle policy
    value = materialize(admitted, ...)        # tensors directly, or through the converter
    record(admitted, "load", conversion)      # provenance

Every stage reads the held descriptor and its mapping, never the path again. A stage refuses by
raising a `RefusedError`; entry points that report rather than raise (`cache scan`) turn the
refusal into the file's status. Imports: `_internal`, inspection, licences, trust, provenance.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple

from safeload_conversion.budget import BYTES_ENV, OPS_ENV, SECONDS_ENV

from safeload._internal.caller_raised import MapLocationRaised
from safeload._internal.opened import Held, InMemory, OpenedFile, read_to_end
from safeload._internal.reach import text_level
from safeload._internal.text import get_logger
from safeload.errors import (
    DigestMismatchError,
    EmptyFileError,
    MalformedFileError,
    MapLocationError,
    TruncatedFileError,
    UnsafeCheckpointError,
    UnsupportedFormatError,
)
from safeload.inspection import Inspection, inspect_bytes
from safeload.refusal import refuse_if_unsafe

if TYPE_CHECKING:
    from collections.abc import Callable

    from safeload._internal.converter import Converted
    from safeload._internal.hubpath import HubFile
    from safeload._internal.record import ModelContext
    from safeload.trust import TrustDecision, TrustStore

_logger = get_logger(__name__)

FileLike = str | os.PathLike[str] | IO[bytes]
# What a file is admitted for: loading it, converting it, or a report that loads nothing.
Purpose = Literal["load", "convert", "report"]
Action = Literal["load", "from_pretrained", "convert"]

PICKLE_FORMATS = frozenset({"torch-zip", "torch-legacy", "pickle", "joblib"})
# A pickle inside one layer: a compression (joblib's compress=: joblib.load decompresses it),
# or an object `.npy` (np.load(allow_pickle=True) unpickles what follows the header).
WRAPPERS = ("gzip", "bz2", "xz", "zlib", "lzma-alone", "joblib-zfile", "npy")


def wrapped_pickle(fmt: str) -> bool:
    """`gzip+joblib`, `bz2+pickle`, ...: a plain pickle or joblib stream in one wrapper."""
    outer, _, inner = fmt.partition("+")
    return outer in WRAPPERS and inner in ("pickle", "joblib")
MAX_STREAM_BYTES = 1 << 34  # a file object without a descriptor is read into memory: 16 GiB max


class Origin(NamedTuple):
    """The Hub file held bytes are: repo id, commit, repo-relative name."""

    repo: str
    revision: str
    filename: str


@dataclass(frozen=True)
class Verified:
    """What verification established about the bytes held."""
    held: Held
    origin: Origin | None
    sha256: str
    store: TrustStore
    decision: TrustDecision | None
    cached: bool
    # When only part of a file is used (one of several objects saved into one stream): the
    # whole file's digest and size, which the trust checks and the ledger are about.
    whole: tuple[str, int] | None = None

    @property
    def size(self) -> int:
        return self.held.size


@dataclass(frozen=True)
class Admitted:
    """Bytes that may be used: verified, licence accepted, inspected clean."""

    verified: Verified
    context: ModelContext
    inspection: Inspection

    @property
    def name(self) -> str:
        return self.verified.held.name

    @property
    def is_pickle(self) -> bool:
        return self.inspection.format in PICKLE_FORMATS


# 1. open ------------------------------------------------------------------------------------------


def plain_file(f: object) -> bool:
    """A plain binary file, whose descriptor holds exactly the bytes its `read()` returns.

    Wrappers with a descriptor of their own bytes (gzip/bz2/lzma files: the COMPRESSED
    bytes), tar members (the archive's) and any subclass are streams: read as streams.
    """
    if _is_fsspec_local(f):  # fsspec's local file (Lightning opens with it): a plain file inside
        f = getattr(f, "f", None)
    if type(f) in (io.BufferedReader, io.BufferedRandom):
        return type(getattr(f, "raw", None)) is io.FileIO
    return type(f) is io.FileIO


def _is_fsspec_local(f: object) -> bool:
    t = type(f)
    return t.__module__ == "fsspec.implementations.local" and t.__name__ == "LocalFileOpener"


def open_input(f: FileLike, *, root: str | os.PathLike[str] | None = None,
               anywhere: bool = False) -> Held:
    """Hold what `f` names: a path or a plain binary file at position 0 (`anywhere`: at any
    position, the caller loads from there) keeps one descriptor of the whole file; any other
    stream (a decompressing wrapper, a tar member, BytesIO, anything with `read()`) is read
    into a private buffer from the caller's position, where torch.load would start.

    Raises:
        UnsafePathError: not a regular file, or a link out of `root`.
        UnsupportedFormatError: a text stream, or a stream over MAX_STREAM_BYTES.
    """
    if isinstance(f, (str, os.PathLike)):
        return OpenedFile.open(f, root=root)
    name = str(getattr(f, "name", "<file object>"))
    if plain_file(f):
        plain: Any = getattr(f, "f", None) if _is_fsspec_local(f) else f
        try:
            fd = os.dup(plain.fileno())
        except (OSError, io.UnsupportedOperation, ValueError):
            fd = -1
        if fd >= 0:
            if plain.seekable() and (anywhere or plain.tell() == 0):
                return OpenedFile(fd, name)
            os.close(fd)
    read = getattr(f, "read", None)
    if read is None:
        raise UnsupportedFormatError(f"{name}: not a path or a file object with read()")
    data = read_to_end(read, name, MAX_STREAM_BYTES)
    if len(data) > MAX_STREAM_BYTES:
        raise UnsupportedFormatError(f"{name}: stream larger than {MAX_STREAM_BYTES} bytes",
                                     hint="pass a path instead of a stream")
    return InMemory(name, data)


# 2. locate and verify -----------------------------------------------------------------------------


def locate(held: Held, hub: HubFile | None = None) -> Origin | None:
    """The Hub file `held` is: given by the caller (from_pretrained knows it), or decided from
    its path's cache layout. A path that does not conform to the layout is a local file.

    Raises:
        UnsafePathError: a snapshot entry that is not what the Hub client writes, a held file
            that is not the entry's blob, or a snapshot that names no commit.
    """
    from safeload._internal import hubpath

    if hub is None:
        path = held.local_path()
        hub, blob = hubpath.hub_origin(path) if path is not None else (None, None)
        if blob is not None and path is not None:
            from safeload.trust import check_blob_path  # (a blob by its path: review X)
            check_blob_path(path, blob, load_store())
    if hub is None:
        return None
    if held.descriptor is not None:
        hubpath.check_held(hub, held.descriptor)
    return Origin(hub.repo_id, hubpath.resolve_commit(hub), hub.filename)


def blob_digest(held: Held) -> str | None:
    """The sha256 a Hugging Face cache blob's name asserts, from the link's FIRST hop.

    Snapshot files link to `../../blobs/<sha256>` for LFS files. Only the first hop counts: a
    shared store further down (Xet) names things differently.
    """
    from safeload._internal.hubpath import first_hop

    path = held.local_path()
    if path is None or held.descriptor is None:
        return None
    name = first_hop(path)
    if name is not None and len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    return None


def torch_hub_prefix(held: Held) -> str | None:
    """The sha256 prefix a torch hub checkpoint's name asserts (`resnet18-f37072fd.pth`), for a
    file held directly in the torch hub checkpoints folder; see `_internal/torchhub.py`."""
    from safeload._internal.torchhub import expected_prefix

    path = held.local_path()
    if path is None or held.descriptor is None:
        return None
    return expected_prefix(path)


def load_store() -> TrustStore:
    """The trust store every gate judges by: the local store, or, on a node subscribed to an
    organisation's store (`safeload trust subscribe`), that store re-verified through TUF with
    the local one merged over it (`safeload.fleet.merge`: the organisation's refusals win).

    Raises:
        TrustStoreError: a store is unusable; a subscribed store cannot be verified or expired.
    """
    from safeload import fleet

    store, identity = fleet.effective_store()
    # The ledger names the organisation store (TUF targets version, target sha256) it came from.
    return store if identity is None else replace(store, origin=identity.to_ledger())


def verify(held: Held, origin: Origin | None, *, store: TrustStore | None = None,
           observe: bool = True, remember: bool = True, sha256: str | None = None,
           signature: Path | None = None) -> Verified:
    """Hash what is held (or reuse a memoised digest) and apply the trust store's policy.

    `observe=False` writes no first-use pins or signed-location records (reports, dry runs);
    `remember=False` keeps the digest out of the verification memo. `sha256` is a digest the
    caller computed from this very handle.

    Raises:
        DigestMismatchError: the content does not match its cache blob name.
        RefusedError: revoked, pin or revision lock mismatch, bad or missing signature.
        TrustStoreError: the trust store is unusable (never "trust everything").
    """
    from safeload._internal import verify_cache
    from safeload.trust import check_bytes, check_load

    store = store if store is not None else load_store()
    repo, revision, filename = origin if origin is not None else (None, None, None)
    key, strict = held.memo_key, store.policy.mode == "strict"
    if strict:
        # Strict mode trusts no stamp (a dirty shared page takes writes without a new mtime):
        # the bytes are copied once, hashed, and every later stage uses that very copy.
        held.copy_privately()
        sha256 = None if key is not None else sha256
    if key is None:  # bytes without a file: every check that applies to bytes
        sha = sha256 or held.sha256()
        decision = check_bytes(held.name, sha256=sha, store=store, repo=repo, revision=revision,
                               anonymous=getattr(held, "anonymous", False))
        return Verified(held, origin, sha, store, decision, False)
    state = store.state_digest()
    hit = verify_cache.lookup(key, state) if sha256 is None and not strict else None
    sha = hit or sha256 or held.sha256()
    named = blob_digest(held)
    if named is not None and named != sha:
        raise DigestMismatchError(held.name, f"sha256:{named} (its cache blob name)",
                                  f"sha256:{sha}")
    prefix = torch_hub_prefix(held)
    if prefix is not None and not sha.startswith(prefix):
        raise DigestMismatchError(held.name, f"sha256:{prefix}... (its torch hub file name)",
                                  f"sha256:{sha}")
    # `content`: a signature's manifest check hashes the held bytes, never the path again.
    decision = check_load(Path(held.name), sha256=sha, size=held.size, store=store,
                          repo=repo, revision=revision, filename=filename, record=observe,
                          content=memoryview(held.mapping()), signature=signature)
    if remember and hit is None and not strict and not held.changed():
        verify_cache.remember(key, state, sha)
    return Verified(held, origin, sha, store, decision, hit is not None)


def window(verified: Verified, start: int, end: int) -> Verified:
    """The bytes [start, end) of a verified file, to be inspected and used on their own: the
    trust checks were made on the whole file (its pins, revocations, signatures, blob name),
    and this copy is taken from the very bytes they hashed."""
    held = verified.held
    part = InMemory(held.name, bytes(held.mapping()[start:end]), strict=held.private)
    check_unchanged(held)  # a copy: no rename-over excuse
    return Verified(part, verified.origin, part.sha256(), verified.store, verified.decision,
                    False, whole=verified.whole or (verified.sha256, held.size))


# (content digest, warning) pairs already shown: a warning is logged once per file per process
# (a DataLoader loop must not print it per batch); the ledger records it on every entry.
_warned: set[tuple[str, str]] = set()
# Files loaded unsigned under the default policy: the first is warned about, the next gets one
# line saying the rest are recorded only (the ledger's `signature` says "unsigned" for each).
_unsigned_default: list[str] = []  # the first such file's digest, then "more" once said


def _log_warnings(decision: TrustDecision, sha256: str) -> None:
    from safeload.trust.decide import is_unsigned_default_note

    for w in decision.warnings:
        if is_unsigned_default_note(w):
            if not _unsigned_default:
                _unsigned_default.append(sha256)
                _logger.warning("%s", w)
            elif len(_unsigned_default) == 1 and _unsigned_default[0] != sha256:
                _unsigned_default.append("more")
                _logger.warning("%s; further unsigned files are recorded in the provenance "
                                "ledger (`safeload provenance list`), not warned about again in "
                                "this process", w)
        elif (sha256, w) not in _warned:
            _warned.add((sha256, w))
            _logger.warning("%s", w)


# 3. admit -----------------------------------------------------------------------------------------


def admit(verified: Verified, purpose: Purpose, *,
          inspection: Inspection | None = None) -> Admitted:
    """The licence policy, the inspection verdict and the pickle policy.

    `inspection` is one the caller already made of the same held bytes.

    Raises:
        LicenseRefusedError: the model card's licence is denied.
        UnsafeCheckpointError: the file could run code; a pickle under `pickles: refuse`; a
            conversion asked of a file that is not a pickle.
        MalformedFileError, UnsupportedFormatError: see `refuse_if_unsafe`.
    """
    from safeload._internal.record import model_context

    held = verified.held
    if held.size == 0:
        raise EmptyFileError(f"{held.name}: the file is empty (0 bytes)",
                             hint="the download or save was interrupted: fetch or save it again")
    context = model_context(held.local_path(), verified.store, origin=verified.origin,
                            located=True, signed=verified.decision)
    ins = inspection if inspection is not None else _inspect(held, verified.sha256)
    if ins.verdict == "unsafe":
        from safeload._internal.damage import damage

        broken = damage(ins, held.mapping())
        if broken is not None:
            cls = TruncatedFileError if broken[1] else MalformedFileError
            raise cls(f"{held.name}: the file is damaged ({ins.format}): {broken[0]}",
                      hint="the save or download was interrupted or corrupted: fetch or save "
                      "it again")
    refuse_if_unsafe(held.name, ins)
    # Converting runs the converter on the pickle: `pickles: refuse` holds for every purpose.
    if (ins.format in PICKLE_FORMATS or wrapped_pickle(ins.format)) \
            and verified.store.policy.pickles == "refuse":
        raise UnsafeCheckpointError(
            f"{held.name}: a pickle checkpoint ({ins.format}), and the policy refuses every "
            "pickle (policy.pickles = refuse)",
            hint="ask for safetensors, or `safeload trust policy --pickles convert`")
    if purpose == "convert" and ins.format not in PICKLE_FORMATS:
        raise UnsafeCheckpointError(f"{held.name}: {ins.format} is not a pickle checkpoint; "
                                    "nothing to convert")
    # Only now: "X is unsigned; loaded because ..." must not precede a refusal of X.
    if verified.decision is not None:
        _log_warnings(verified.decision, (verified.whole or (verified.sha256,))[0])
    return Admitted(verified, context, ins)


# Clean pickle verdicts by (content sha256, inspection bounds): a repeat load of the same bytes
# is not walked by the symbolic machine again (half a millisecond for a small checkpoint). Only
# the format is kept: after admission a pickle is used only through the converted store, which
# validates its entries against the source itself. Unsafe or other verdicts are never kept.
_clean_pickles: dict[tuple[str, tuple[str, ...]], str] = {}
_CLEAN_PICKLES_MAX = 4096
_BOUNDS_ENV = (OPS_ENV, BYTES_ENV, SECONDS_ENV)


def _inspect(held: Held, sha256: str) -> Inspection:
    key = (sha256, tuple(os.environ.get(v, "") for v in _BOUNDS_ENV))
    fmt = _clean_pickles.get(key)
    if fmt is not None:
        return Inspection(fmt, "clean")
    ins = inspect_bytes(held.mapping(), name=held.name, text_ok=text_level(held.name))
    if ins.verdict == "clean" and ins.format in PICKLE_FORMATS:
        if len(_clean_pickles) >= _CLEAN_PICKLES_MAX:
            _clean_pickles.pop(next(iter(_clean_pickles)))
        _clean_pickles[key] = ins.format
    return ins


# 4. materialize -----------------------------------------------------------------------------------


def materialize(admitted: Admitted, *, map_location: Any = None,
                mmap: bool | None = None) -> tuple[Any, Converted | None]:
    """What torch.load would return, and the conversion it came from (pickles only).

    Raises:
        ConversionError: the sandboxed conversion failed or its output did not validate.
        MalformedFileError: NumPy cannot read the arrays; the file changed while loading.
        UnsupportedFormatError: a recognised format safeload does not load.
        MapLocationError: the saved device or `map_location` is not on this machine.
    """
    from safeload._internal.str8 import STR8_ENCODING

    held = admitted.verified.held
    # joblib.load has no `encoding`: its unpicklers decode Python 2 strings as ASCII.
    token = STR8_ENCODING.set("ascii") if admitted.inspection.format.endswith("joblib") else None
    try:
        value, conversion = _materialize(admitted, map_location=map_location, mmap=mmap)
    except MapLocationError as exc:
        raise MapLocationError(f"{held.name}: {exc}") from None  # naming the user's file
    except MapLocationRaised as exc:
        raise exc.original from None  # the caller's own callable: as torch.load, unchanged
    finally:
        if token is not None:
            STR8_ENCODING.reset(token)
    # A re-hash tells a rename-over from a write only where the result reads the held file
    # (its mapping; a conversion checked against it), never for copies (review E).
    fmt, sha = admitted.inspection.format, admitted.verified.sha256
    reads = admitted.is_pickle or (fmt == "safetensors" and mmap is not False)
    check_unchanged(held, sha if reads else None)
    return value, conversion


def _materialize(admitted: Admitted, *, map_location: Any, mmap: bool | None
                 ) -> tuple[Any, Converted | None]:
    held, ins = admitted.verified.held, admitted.inspection
    name, fmt = held.name, ins.format
    conversion: Converted | None = None
    if fmt == "safetensors":
        from safeload._internal.tensors import load_safetensors_buffer

        # A user's file: its tensors as safetensors reads them, never a structure record.
        value = load_safetensors_buffer(held.mapping(), name, map_location=map_location,
                                        copy=(mmap is False), store_entry=False)
    elif fmt in ("numpy", "npz"):
        from safeload._internal.tensors import load_numpy_inspected

        def unpickled(inner: Inspection) -> Any:  # an object member: as a wrapped pickle
            return _convert_unwrapped(name, inner, held.private, map_location, mmap)[0]

        try:
            value = load_numpy_inspected(ins, map_location=map_location, unpickled=unpickled)
        except (ValueError, TypeError, OverflowError, NotImplementedError, OSError) as exc:
            raise MalformedFileError(f"{name}: NumPy could not read it: {exc}") from None
    elif wrapped_pickle(fmt) and ins.members and ins.members[0][1].unwrapped is not None:
        value, conversion = _convert_unwrapped(name, ins.members[0][1], held.private,
                                               map_location, mmap)
    elif admitted.is_pickle:
        from safeload._internal.converter import convert_opened, load_converted

        conversion = convert_opened(name, held, source_sha256=admitted.verified.sha256,
                                    reading=_clean_reading(ins))
        value = load_converted(conversion, map_location=map_location, mmap=mmap, source=name)
    else:
        raise UnsupportedFormatError(
            f"{name}: {fmt} files are recognised but not loaded by safeload.load",
            hint="decompress or extract the file and load the checkpoint inside")
    return value, conversion


def _convert_unwrapped(name: str, inner: Inspection, private: bool, map_location: Any,
                       mmap: bool | None) -> tuple[Any, Converted]:
    """joblib.load's or np.load's reading of a wrapped pickle: the bytes the inspection
    inflated (exactly those, never decompressed again), converted like any other pickle."""
    from safeload._internal.converter import convert_opened, load_converted

    assert inner.unwrapped is not None
    data = InMemory(name, bytes(inner.unwrapped), strict=private)
    conversion = convert_opened(name, data, reading=_clean_reading(inner))
    return load_converted(conversion, map_location=map_location, mmap=mmap,
                          source=name), conversion


def _clean_reading(ins: Inspection) -> Any:
    """The inspection's own symbolic checkpoint, when it found nothing: the output check
    derives the expected file from it (one walk of the pickle per load)."""
    ck = ins.checkpoint
    return ck if ins.verdict == "clean" and ck is not None and not ck.findings else None


def convert_to(admitted: Admitted, destination: Path | None, *, overwrite: bool = False,
               unsafe_allow_unsandboxed: bool = False) -> Converted:
    """Materialize a pickle as a safetensors file: at `destination`, or in the converted store.

    Raises:
        ConversionError: the sandboxed conversion failed; nothing is written.
        FileExistsError: `destination` exists and `overwrite` is false.
    """
    from safeload._internal.converter import convert_opened

    held = admitted.verified.held
    conv = convert_opened(held.name, held, unsafe_allow_unsandboxed=unsafe_allow_unsandboxed,
                          destination=destination, overwrite=overwrite,
                          source_sha256=admitted.verified.sha256,
                          reading=_clean_reading(admitted.inspection))
    check_unchanged(held, admitted.verified.sha256)
    return conv


def check_unchanged(held: Held, sha256: str | None = None,
                    copies_match: Callable[[], bool] | None = None) -> None:
    """Refuse bytes a writer modified in place while they were used (`sha256`: see
    `OpenedFile.changed`; `copies_match`: the copies made equal the held bytes now)."""
    if held.changed(None) and (held.changed(sha256) or (copies_match and not copies_match())):
        raise MalformedFileError(f"{held.name}: the file was modified while it was being loaded",
                                 hint="load it again once the writer has finished")


# 5. record ----------------------------------------------------------------------------------------


def record(admitted: Admitted, action: Action, conversion: Converted | None = None, *,
           receipt: list[tuple[Path, bytes]] | None = None) -> None:
    """Append the provenance entry (fails closed in strict mode only). `receipt`: see
    `provenance.record_or_warn`.

    Raises:
        ProvenanceError: strict mode and the ledger cannot be written.
    """
    from safeload._internal.record import record as append

    v = admitted.verified
    sha256, size = v.whole or (v.sha256, v.size)
    append(action=action, path=v.held.name, sha256=sha256, size=size,
           fmt=admitted.inspection.format, decision=v.decision, context=admitted.context,
           store=v.store, converted=conversion.report if conversion else None,
           output=conversion.output_record() if conversion else None, receipt=receipt)


# --------------------------------------------------------------------------------------------
# The load composition (load, from_pretrained, guard)


def load_held(held: Held, *, map_location: Any = None, mmap: bool | None = None,
              action: Action = "load", hub: HubFile | None = None,
              part: tuple[int, int] | None = None) -> Any:
    """open -> locate -> verify -> admit -> materialize -> record, for bytes already held.

    `part`: only the bytes [start, end) are loaded, once the whole file is verified (one of
    several objects in one stream). A repeat load of a file this process admitted, unchanged,
    reuses that decision (`_internal/repeat.py` says exactly when); materialize always reads
    the held bytes.
    """
    from safeload._internal import consulted, repeat

    key = repeat.key(held, action) if hub is None and part is None else None
    memo = repeat.lookup(key) if key is not None else None
    if memo is not None:
        admitted = memo.admitted
        admitted = replace(admitted, verified=replace(admitted.verified, held=held))
        value, conversion = materialize(admitted, map_location=map_location, mmap=mmap)
        output = conversion.output_record() if conversion else None
        strict = admitted.verified.store.policy.mode == "strict"
        if strict or memo.receipt is None or output != memo.output or not _count_again(memo):
            record(admitted, action, conversion)
        return value
    with consulted.recording() as inputs:
        if key is not None:
            consulted.note_entry(key[1])  # the path itself: a swapped link is another entry
        verified = verify(held, locate(held, hub))
        if part is not None:
            verified = window(verified, *part)
        admitted = admit(verified, "load")
    value, conversion = materialize(admitted, map_location=map_location, mmap=mmap)
    receipt: list[tuple[Path, bytes]] = []
    record(admitted, action, conversion, receipt=receipt)
    strict = admitted.verified.store.policy.mode == "strict"  # (strict: every load hashes)
    if key is not None and not strict and admitted.verified.origin is None and \
            (admitted.inspection.format == "safetensors" or admitted.is_pickle):
        v = admitted.verified
        # Only the verdict is kept: a repeat builds what it returns from its own bytes.
        slim = replace(admitted, inspection=Inspection(admitted.inspection.format, "clean"))
        repeat.remember(key, slim, inputs, signed=bool(v.decision and v.decision.signed),
                        receipt=receipt[0] if receipt else None,
                        output=conversion.output_record() if conversion else None)
    return value


def _count_again(memo: Any) -> bool:
    from safeload.provenance import record_again
    return bool(record_again(*memo.receipt))


__all__ = ["PICKLE_FORMATS", "Admitted", "Origin", "Verified", "admit", "blob_digest",
           "check_unchanged", "convert_to", "load_held", "locate", "materialize", "open_input",
           "plain_file", "record", "refuse_if_unsafe", "verify", "window"]
