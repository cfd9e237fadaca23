"""Static inspection: what is this file (decided by its bytes), and could loading it run code?

Nothing here unpickles. Pickle streams go through the symbolic machine of the sandboxed
converter (`safeload_conversion.pickle_vm`), which parses every opcode and checks every import and
call against the converter's allowlist. Anything that cannot be shown safe is unsafe.

Bounds: wrappers (gzip, bz2, xz, zlib, zip) are undone in memory up to `MAX_UNWRAPPED` bytes in
total and one level deep; a wrapper inside a wrapper is a nested archive and is refused. Nothing
is ever extracted to disk. Each `inspect_bytes` call opens one `safeload_conversion.budget`
scope: every pickle stream, lenient walk and inflated member of the file charges the same
opcode, byte and time budget, and crossing it refuses the whole file (a "resource-bound"
finding naming the bound and its variable).
"""

from __future__ import annotations

import lzma
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

from safeload_conversion.budget import Budget, BudgetExceeded, scope
from safeload_conversion.pickle_vm import (
    Buf,
    Finding,
    MalformedPickle,
    PickleMachine,
    plain_joblib_reading,
)
from safeload_conversion.torchfile import (
    LEGACY_MAGIC,
    TorchCheckpoint,
    read_storage_bytes,
    read_torch_legacy,
    read_torch_zip,
)
from safeload_conversion.zipstrict import ZipError, read_member, read_zip

from safeload._internal.decompress import Bomb, Cut, decompress
from safeload._internal.joblib_reading import joblib_reading
from safeload._internal.npyformat import NpyFormatError, NpyHeader, parse_npy
from safeload._internal.reach import PICKLE_OPCODES, importable, would_import
from safeload._internal.safetensors_check import looks_like_safetensors, parse_header
from safeload._internal.text import safe_text
from safeload._internal.zip_tail import archive_in_tail
from safeload.errors import MalformedFileError

MAX_UNWRAPPED = 1 << 30  # 1 GiB decompressed per file, all members together
MAX_WRAP_DEPTH = 1
MAX_TRAILING_STREAMS = 16  # extra pickles after STOP read only to report what they would do

Verdict = Literal["clean", "unsafe", "skipped"]


@dataclass(frozen=True, eq=False)
class NpyArray:
    """A .npy array as this inspection parsed it. The loader builds the returned array from
    exactly this header and these bytes (never by asking numpy to parse the file again)."""

    data: Buf  # the whole .npy (file or strict-zip member bytes)
    header: NpyHeader


@dataclass(eq=False)
class Inspection:
    """The verdict on one file (or one member of a wrapper)."""

    format: str
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    detail: str = ""
    checkpoint: TorchCheckpoint | None = None
    members: list[tuple[str, Inspection]] = field(default_factory=list)
    array: NpyArray | None = None  # a clean .npy: what its header says, over the bytes read
    unwrapped: Buf | None = None  # a wrapper's inflated bytes, exactly as inspected

    @property
    def unsafe(self) -> bool:
        return self.verdict == "unsafe"


_PICKLE_OPCODES = PICKLE_OPCODES


_JOBLIB_LZMA_PREFIX = b"]\x00"  # joblib's _detect_compressor: this prefix means lzma


def sniff(head: bytes, size: int) -> str:
    """The format named by the first bytes; "pickle?" when only a parse can tell."""
    if looks_like_safetensors(head, size):
        return "safetensors"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4] in b"123456789" and len(head) > 3:
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if _is_tar(head):
        return "tar"
    if head.startswith(b"ZF"):
        return "joblib-zfile"  # joblib's _detect_compressor: the prefix alone decides
    if head.startswith(_JOBLIB_LZMA_PREFIX) or (
            len(head) >= 13 and head[0] == 0x5D and head[1:5] != b"\x00\x00\x00\x00" and (
                head[5:13] == b"\xff" * 8 or int.from_bytes(head[5:13], "little") < (1 << 40))):
        # .lzma (joblib compress="lzma"; joblib decides by `]\0` alone, and liblzma takes a
        # zero dictionary size); also ']' (EMPTY_LIST) in a pickle: read both ways, below.
        return "lzma-alone"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    if head[:1] and head[0] in _PICKLE_OPCODES:
        return "pickle?"
    return "unknown"


_HIGH_BYTES = bytes(range(128, 256))


def _is_tar(head: bytes) -> bool:
    """Would `tarfile` (what torch's legacy loader tries first) take this as a tar header?

    Exactly tarfile's rule (`TarInfo.frombuf`, `nti`, `calc_chksums`), wider where it is
    cheaper to be: no magic needed (V7 tars have none); the checksum field is base-256 when its
    first byte is 0x80/0xff, else text cut at the first NUL and read by `int(..., 8)` (signs,
    spaces and underscores included); the sum may be the unsigned OR the signed byte sum. The
    other fields are not checked: accepting a header tarfile would reject only refuses more.
    """
    if len(head) < 512 or head[:512].count(0) == 512:
        return False
    field = head[148:156]
    if field[0] in (0o200, 0o377):
        stored = int.from_bytes(field[1:], "big")
        if field[0] == 0o377:
            stored = -(256 ** 7 - stored)
    else:
        text = field.split(b"\0", 1)[0]
        try:
            stored = int(text.decode("ascii").strip() or "0", 8)
        except (UnicodeDecodeError, ValueError):
            return False
    rest = bytes(head[:148]) + bytes(head[156:512])
    unsigned = 256 + sum(rest)
    # tar also accepts the sum of signed chars: each byte > 127 counts 256 less.
    signed = unsigned - 256 * (len(rest) - len(rest.translate(None, _HIGH_BYTES)))
    return stored in (unsigned, signed)


def inspect_bytes(buf: Buf, *, name: str = "", depth: int = 0,
                  text_ok: int = 0) -> Inspection:
    """Inspect a whole file's bytes. Never raises for hostile input: it returns a verdict.

    `text_ok` (`reach.text_level`): 1, the file's name says text, so a first line that reads
    as a GLOBAL or INST of a name with whitespace is text (skipped), not an import; 2, text
    no loader is given (a RECORD, a LICENSE), where one top-level word is text too."""
    try:
        with scope(Budget.from_env()):
            return _archive_in_tail(_inspect(buf, name, depth, text_ok), buf, name)
    except BudgetExceeded as exc:
        label = safe_text(name, limit=200) if name else "the file"
        return Inspection(sniff(bytes(buf[:512]), len(buf)), "unsafe", [Finding(
            "resource-bound", f"{label} {exc}", member=name or None)])
    except (MalformedFileError, ZipError) as exc:
        return Inspection("unknown", "unsafe",
                          [Finding("malformed", str(exc), member=name or None)])
    except (RecursionError, MemoryError, OverflowError, ValueError, struct.error,
            IndexError, KeyError, TypeError) as exc:
        # Defence in depth: a parser bug is still a refusal, never a pass.
        return Inspection("unknown", "unsafe",
                          [Finding("malformed", f"cannot inspect: {type(exc).__name__}: {exc}",
                                   member=name or None)])


def _archive_in_tail(result: Inspection, buf: Buf, name: str) -> Inspection:
    """A file that is not a zip but ends with one is a polyglot (`_internal/zip_tail.py`)."""
    if result.verdict == "unsafe" or result.format in ("zip", "torch-zip", "npz", "torchscript"):
        return result
    found = archive_in_tail(buf)
    if found is None:
        return result
    return Inspection(result.format, "unsafe", [Finding(
        "polyglot", f"a zip reader (Python's zipfile, torch.package, torch.jit.load) also reads "
        f"this {result.format} file as an archive: {found}", member=name or None)],
        detail=result.detail)


def _readers(head: bytes, size: int) -> list[str]:
    """Every container reader that would accept these first bytes, by its own rule (not a
    first-match order): safetensors (an 8-byte length and a JSON header), torch's zip reader
    (`_is_zipfile`: the local-header magic), tarfile (the header checksum: torch's legacy
    loader tries it first). More than one is a polyglot: two loaders would see two files."""
    out = []
    if looks_like_safetensors(head, size):
        out.append("safetensors")
    if head.startswith(b"PK\x03\x04"):
        out.append("zip")
    if _is_tar(head):
        out.append("tar")
    return out


def _inspect(buf: Buf, name: str, depth: int, text_ok: int = 0) -> Inspection:
    size = len(buf)
    head = bytes(buf[:512])
    kind = sniff(head, size)
    readers = _readers(head, size)
    if len(readers) > 1:
        return Inspection(kind, "unsafe", [Finding(
            "polyglot", f"the file is accepted by several readers ({', '.join(readers)}): "
            "each loader would read a different file", 0, None, None, name or None)])
    if readers == ["tar"] and kind != "tar":
        kind = "tar"  # tarfile takes it whatever else its first bytes look like
    if kind == "safetensors":
        try:
            header = parse_header(buf, name or "file")
        except MalformedFileError as exc:
            return Inspection("safetensors", "unsafe",
                              [Finding("malformed", str(exc), member=None)])
        polyglot = _pickle_reading(buf, name) or joblib_reading(buf, name)
        if polyglot is not None:
            return Inspection("safetensors", "unsafe", [polyglot])
        return Inspection("safetensors", "clean", detail=f"{len(header.tensors)} tensors")
    if kind == "zip":
        return _inspect_zip(buf, name, depth)
    if kind == "numpy":
        return _inspect_npy(buf, name, depth)
    if kind in ("gzip", "bz2", "xz", "zlib", "joblib-zfile"):
        # (a text name, `data.csv.gz`, says what the inflated bytes are)
        return _also_a_pickle(_inspect_wrapped(kind, buf, name, depth, text_ok), buf, name)
    if kind == "lzma-alone":
        wrapped = _inspect_wrapped(kind, buf, name, depth)
        if (wrapped.findings and wrapped.findings[0].code == "malformed"
                and not head.startswith(_JOBLIB_LZMA_PREFIX)):
            # Not an LZMA stream after all: a pickle starting with EMPTY_LIST. Never for
            # joblib's prefix: joblib decompresses those (ignoring trailing bytes), so a stream
            # we cannot read exactly is refused, not re-read as the pickle it is not.
            return _inspect_pickle(buf, name)
        # An exact LZMA stream can still be a pickle too (']' then SHORT_BINBYTES over the
        # header): pickle.load and torch.load read the raw bytes, joblib the inflated ones.
        return _also_a_pickle(wrapped, buf, name)
    if kind in ("7z", "zstd", "lz4", "tar"):
        what = {"tar": "a tar archive (legacy tar-format torch files included)"}.get(
            kind, f"a {kind} archive")
        return Inspection(kind, "unsafe", [Finding(
            "unsupported", f"{what}: safeload cannot inspect its contents; extract it and "
            "scan the files inside", member=name or None)])
    if kind == "pickle?":
        return _inspect_pickle(buf, name, text_ok)
    return Inspection("unknown", "skipped", detail="not a format any model loader reads")


def _also_a_pickle(wrapped: Inspection, buf: Buf, name: str) -> Inspection:
    """A wrapper's verdict, refused when its raw bytes are also a pickle (a polyglot): every
    loader that is not the wrapper's (pickle.load, torch.load) reads those bytes as opcodes."""
    if wrapped.verdict == "unsafe":
        return wrapped
    polyglot = _pickle_reading(buf, name)
    if polyglot is None:
        return wrapped
    return Inspection(wrapped.format, "unsafe", [polyglot, *wrapped.findings],
                      detail=wrapped.detail, members=wrapped.members)


def _pickle_reading(buf: Buf, name: str) -> Finding | None:
    """A file of another format that is also a pickle (a polyglot): what a pickle loader given
    it would do. torch.load picks its reader by the bytes and a name, not by the format."""
    if not buf[:1] or buf[0] not in _PICKLE_OPCODES:
        return None
    vm = PickleMachine(buf, member=name or None)
    try:
        vm.run()
        return Finding("polyglot", "the file is also a complete pickle", 0, None, None,
                       name or None)
    except MalformedPickle:
        pass
    # An import by name (not an extension code: nothing is registered in a normal process,
    # and a safetensors length byte of 0x82-0x84 must not condemn a valid file).
    named = [f for f in vm.findings if f.global_name is not None
             and importable(f.global_name.encode("utf-8", "surrogatepass"))]
    if named:
        return named[0]
    reach = would_import(buf, extensions=False)
    if reach is not None:
        return Finding("polyglot", "read as a pickle, the file reaches an import", reach[0],
                       reach[1], None, name or None)
    return None


def _inspect_pickle(buf: Buf, name: str, text_ok: int = 0) -> Inspection:
    vm = PickleMachine(buf, member=name or None, joblib_arrays=True,
                       storage_bytes=read_storage_bytes)
    try:
        root = vm.run()
    except MalformedPickle as exc:
        reach = would_import(buf, persistent_calls=True, text_start=text_ok > 0,
                             quiet=text_ok > 1)
        if buf[:1] != b"\x80" and reach is None:
            # No protocol header claims a pickle, and no unpickler, however lenient, reaches an
            # import before the bytes stop parsing: some other file (a README, a config).
            return Inspection("unknown", "skipped", detail="not a pickle")
        findings = [*vm.findings, Finding("malformed", f"malformed pickle: {exc}", exc.offset,
                                          exc.opcode, None, name or None)]
        # (also at or before the break when the machine named no import there: a module line
        # cut by the end of the file is one to pickle.py, the machine stopped at it)
        if reach is not None and (reach[0] > exc.offset or reach[1].startswith("(undecided")
                                  or not any(f.global_name for f in vm.findings)):
            findings.append(Finding(
                "global-not-allowed", "a lenient unpickler reads past this point and reaches "
                "an import (or cannot be shown not to)", reach[0], reach[1], None,
                name or None))
        return Inspection("pickle", "unsafe", findings)
    if isinstance(root, int) and not isinstance(root, bool) and root == LEGACY_MAGIC:
        ck = read_torch_legacy(buf)
        return Inspection("torch-legacy", "unsafe" if ck.findings else "clean",
                          list(ck.findings), checkpoint=ck)
    findings = list(vm.findings)
    if vm.nested_pickles:  # joblib object arrays: pickle.load reads the same bytes otherwise
        findings.extend(plain_joblib_reading(buf, member=name or None))
    pos = vm.pos
    if pos != len(buf) and buf[:1] != b"\x80" and not findings and 0x95 not in buf[:pos] \
            and isinstance(root, (bytes, str, int, float)) \
            and would_import(bytes(buf[pos:]), persistent_calls=True,
                             text_start=text_ok > 0, after_stop=True,
                             quiet=text_ok > 1) is None:
        # Text that happens to begin with a scalar pickle (`Copyright (c)`: SHORT_BINBYTES,
        # then STOP) and goes on without reaching an import: a LICENSE, not a checkpoint.
        return Inspection("unknown", "skipped", detail="not a pickle")
    if pos != len(buf):
        findings.append(Finding("malformed", "bytes after STOP", pos, None, None, name or None))
        findings.extend(_trailing_findings(buf, pos, name))
    fmt = "joblib" if any(g.startswith("joblib.") for g in vm.globals_seen) else "pickle"
    return Inspection(fmt, "unsafe" if findings else "clean", findings,
                      detail=f"protocol {vm.proto}")


def _trailing_findings(buf: Buf, pos: int, name: str) -> list[Finding]:
    """What the streams after the first STOP would do: reported, never a reason to pass."""
    out: list[Finding] = []
    # The verdict is already "unsafe": this is a report, so its work is bounded too.
    end = min(len(buf), pos + (4 << 20))
    for _ in range(MAX_TRAILING_STREAMS):
        if pos >= end:
            break
        vm = PickleMachine(buf, start=pos, end=end, member=name or None)
        try:
            vm.run()
        except MalformedPickle:
            out.extend(vm.findings)
            break
        out.extend(vm.findings)
        pos = vm.pos
    return out


def _inspect_zip(buf: Buf, name: str, depth: int) -> Inspection:
    try:
        members = read_zip(buf)
    except ZipError as exc:
        return Inspection("zip", "unsafe", [Finding(exc.kind, str(exc), member=name or None)])
    names = [m.name for m in members]
    if not names:  # np.savez() with no arrays: only np.load opens it, as an empty NpzFile
        return Inspection("npz", "clean", detail="an empty archive")
    # casefold: torch finds data.pkl case-insensitively (miniz)
    if any(n.count("/") == 1 and n.casefold().endswith("/data.pkl") for n in names):
        ck = read_torch_zip(buf, members)
        findings = [*ck.findings, *_npz_readings(buf, members, name, depth)]
        return Inspection(ck.kind, "unsafe" if findings else "clean", findings,
                          checkpoint=ck)
    if names and all(n.endswith(".npy") for n in names):
        npz = _inspect_members("npz", buf, members, name, depth, nested_ok=True)
        # An .npz holds .npy arrays only: anything else inside (text, nested archives) would
        # reach np.load's fallbacks, or walk archives within archives.
        # An object array member is its pickle, inspected as a top-level object .npy is
        # (np.load(allow_pickle=True) runs it): clean only if that pickle is plain data.
        for member, inner in npz.members:
            if inner.format != "numpy" and inner.format != "npy+pickle":
                npz.verdict = "unsafe"
                npz.findings.append(Finding("archive", f"npz member is {inner.format}, not "
                                            "a .npy array",
                                            member=f"{name}:{member}" if name else member))
        return npz
    if depth >= MAX_WRAP_DEPTH:
        return Inspection("zip", "unsafe", [Finding(
            "archive", "nested archive (a zip inside a wrapper) is refused", member=name or None)])
    return _inspect_members("zip", buf, members, name, depth, nested_ok=False)


def _inflated_head(raw: memoryview, n: int) -> bytes:
    """The first `n` bytes a deflate stream inflates to, however much input it takes to get
    there (empty stored blocks cost 5 bytes each and inflate to nothing: review M)."""
    d = zlib.decompressobj(-15)
    out = b""
    step = 1 << 16
    for pos in range(0, len(raw), step):
        out += d.decompress(bytes(raw[pos : pos + step]), n - len(out))
        if len(out) >= n or d.eof or d.unconsumed_tail:
            break
    return out[:n]


def _npz_readings(buf: Buf, members: list[Any], name: str, depth: int) -> list[Finding]:
    """np.load opens any zip as an .npz, and reads every member that begins with the .npy
    magic as an array (`dict(np.load(f, allow_pickle=True))` reads them all): a torch
    storage whose bytes are an object .npy is a pickle np.load runs. The CRC is checked only
    once the member is read to its end, after the unpickling."""
    out: list[Finding] = []
    for m in members:
        raw = memoryview(buf)[m.data_offset : m.data_offset + m.compressed_size]
        try:
            head = bytes(raw[:6]) if m.method == 0 else _inflated_head(raw, 6)
        except zlib.error:
            continue  # zipfile fails on it too
        if head != b"\x93NUMPY":
            continue
        label = f"{name}:{m.name}" if name else m.name
        try:
            data = read_member(buf, m, limit=MAX_UNWRAPPED, check_crc=False)
        except ZipError as exc:
            out.append(Finding("archive", str(exc), member=label))
            continue
        inner = _inspect_npy(data, label, depth)
        # Only a clean numeric array is harmless: np.load's reading of a header we call
        # malformed may still be an object dtype (`'object'`, unpadded: numpy reads it).
        if inner.verdict != "clean" or inner.format != "numpy":
            out.append(Finding("polyglot", "np.load reads this zip as an .npz, and this member "
                               "as an .npy array it unpickles", member=label))
            out.extend(inner.findings)
    return out


def _inspect_members(fmt: str, buf: Buf, members: list[Any], name: str,
                     depth: int, *, nested_ok: bool) -> Inspection:
    result = Inspection(fmt, "skipped", detail="no model file inside")
    budget = MAX_UNWRAPPED
    for m in members:
        label = f"{name}:{m.name}" if name else m.name
        if m.name.endswith("/") and m.size == 0:
            continue
        if m.size > budget:
            result.findings.append(Finding("archive", "decompressed size exceeds the "
                                           f"{MAX_UNWRAPPED}-byte bound", member=label))
            result.verdict = "unsafe"
            break
        budget -= m.size
        try:
            data = read_member(buf, m, limit=MAX_UNWRAPPED)
        except ZipError as exc:
            result.findings.append(Finding("archive", str(exc), member=label))
            result.verdict = "unsafe"
            continue
        if nested_ok and bytes(data[:6]) != b"\x93NUMPY":
            inner = Inspection("unknown", "unsafe", detail="not .npy")
        else:
            inner = _inspect(data, label, depth if nested_ok else depth + 1)
        result.members.append((m.name, inner))
        result.findings.extend(inner.findings)
        if inner.verdict == "unsafe":
            result.verdict = "unsafe"
        elif inner.verdict == "clean" and result.verdict == "skipped":
            result.verdict, result.detail = "clean", ""
    return result


def _inspect_wrapped(kind: str, buf: Buf, name: str, depth: int,
                     text_ok: int = 0) -> Inspection:
    if depth >= MAX_WRAP_DEPTH:
        return Inspection(kind, "unsafe", [Finding(
            "archive", f"nested archive ({kind} inside a wrapper) is refused",
            member=name or None)])
    try:
        data = decompress(kind, buf, MAX_UNWRAPPED)
    except Bomb as exc:
        return Inspection(kind, "unsafe", [Finding("archive", str(exc), member=name or None)])
    except Cut as exc:
        # What is there is read all the same: joblib.load and pickle.load run a payload
        # before the end they never reach (review Q: a cut stream was "damaged", uninspected)
        cut = Finding("malformed", f"corrupt {kind} stream: {exc}", member=name or None)
        inner = _inspect(exc.partial, f"{name}[{kind}]" if name else f"[{kind}]", depth + 1,
                         text_ok) if exc.partial else None
        seen = inner.findings if inner is not None and inner.verdict == "unsafe" else []
        return Inspection(kind, "unsafe", [cut, *seen])
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        return Inspection(kind, "unsafe", [Finding(
            "malformed", f"corrupt {kind} stream: {exc}", member=name or None)])
    inner = _inspect(data, f"{name}[{kind}]" if name else f"[{kind}]", depth + 1, text_ok)
    inner.unwrapped = data
    out = Inspection(f"{kind}+{inner.format}", inner.verdict, list(inner.findings),
                     detail=inner.detail, members=[(kind, inner)])
    return out


def _inspect_npy(buf: Buf, name: str, depth: int) -> Inspection:
    try:
        header = parse_npy(buf)
    except NpyFormatError as exc:
        code = "malformed" if exc.malformed else "unsupported"
        return Inspection("numpy", "unsafe", [Finding(code, str(exc), member=name or None)])
    if header.objects:
        return _inspect_npy_objects(buf, header, name, depth)
    return Inspection("numpy", "clean", detail=f"{header.descr!r:.60} {header.shape}",
                      array=NpyArray(buf, header))


def _inspect_npy_objects(buf: Buf, header: NpyHeader, name: str, depth: int) -> Inspection:
    """An object `.npy`: np.load(allow_pickle=True) returns `pickle.load` of the bytes after
    the header. That pickle is inspected as any other (its values by the same rules), and must
    be exactly a plain pickle ending at the end of the file."""
    label = f"{name}[pickle]" if name else "[pickle]"
    if depth >= MAX_WRAP_DEPTH:
        return Inspection("numpy", "unsafe", [Finding(
            "archive", "an object .npy inside a wrapper is refused", member=name or None)])
    data = bytes(buf[header.offset:])
    inner = _inspect(data, label, depth + 1)
    if inner.format != "pickle" and inner.verdict != "unsafe":
        inner = Inspection(inner.format, "unsafe", [Finding(
            "numpy", f"an object .npy holds {inner.format}, not a pickle", member=label)])
    inner.unwrapped = data
    return Inspection(f"npy+{inner.format}", inner.verdict, list(inner.findings),
                      detail=inner.detail, members=[("npy", inner)])


_LEGACY_HEAD = re.compile(rb"\x80[\x02-\x05]\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19\.")


def legacy_object_end(buf: Buf) -> int | None:
    """Where the first object of a legacy torch stream ends, when more bytes follow it (two
    `torch.save(..., _use_new_zipfile_serialization=False)` calls into one open file): the end
    of its last storage, exactly where torch.load's reads stop. None for anything else."""
    if _LEGACY_HEAD.match(bytes(buf[:16])) is None:
        return None
    try:
        with scope(Budget.from_env()):
            ck = read_torch_legacy(buf)
    except (BudgetExceeded, MalformedPickle, ValueError, struct.error, IndexError,
            RecursionError):
        return None
    if len(ck.findings) != 1 or ck.findings[0].message != "bytes after the last storage":
        return None
    return ck.findings[0].offset


def describe(f: Finding) -> str:
    """One escaped line for a terminal."""
    where = []
    if f.member:
        where.append(f"member {safe_text(f.member, limit=200)}")
    if f.offset is not None:
        where.append(f"offset {f.offset}")
    if f.opcode:
        where.append(f"opcode {f.opcode}")
    if f.global_name:
        where.append(f"global {safe_text(f.global_name, limit=200)}")
    suffix = f" ({', '.join(where)})" if where else ""
    return f"[{f.code}] {safe_text(f.message, limit=400)}{suffix}"
