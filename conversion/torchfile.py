"""Reading torch checkpoints symbolically: the zip format (torch >= 1.6) and the legacy format.

Every pickle stream of the file is run through the symbolic machine; where each storage's bytes
live is worked out from the archive structure, so a converter can copy them by offset and an
inspector can check that they are all there. Nothing is called, nothing is imported.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import Any

from safeload_conversion.pickle_vm import (
    Buf,
    Finding,
    MalformedPickle,
    PickleMachine,
    SList,
    StorageRef,
    torch_persistent_load,
    vm_itemsize,
)
from safeload_conversion.zipstrict import ZipError, ZipMember, read_member

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_PICKLE_MEMBER = 1 << 31  # a data.pkl beyond 2 GiB is not a checkpoint we read

# Members a torch.save archive may hold besides data.pkl and data/<key>.
_TORCH_META = {"version", ".format_version", ".storage_alignment", "byteorder",
               ".data/version", ".data/serialization_id"}
# Members that only TorchScript archives (code-bearing) hold.
_SCRIPT_MARKERS = ("code/", "constants.pkl", ".data/ts_code/", "attributes.pkl", "extra/")


@dataclass
class TorchCheckpoint:
    kind: str  # "torch-zip", "torch-legacy" or "torchscript"
    root: Any = None
    storages: dict[str, StorageRef] = field(default_factory=dict)
    # storage key -> (file offset, nbytes)
    storage_spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    streams: int = 0


def _run(ck: TorchCheckpoint, data: Buf, member: str, *, start: int = 0,
         end: int | None = None, persistent: bool, legacy: bool = False,
         must_end: bool = True) -> tuple[Any, int, dict[str, StorageRef]] | None:
    """Run one stream; on malformation record a finding and return None (the file is refused)."""
    load = torch_persistent_load(legacy) if persistent else None
    vm = PickleMachine(data, start=start, end=end, member=member, persistent_load=load)
    ck.streams += 1
    try:
        root = vm.run()
    except MalformedPickle as exc:
        ck.findings.extend(vm.findings)
        ck.findings.append(Finding("malformed", f"malformed pickle: {exc}", exc.offset,
                                   exc.opcode, None, member))
        return None
    ck.findings.extend(vm.findings)
    if vm.dropped_findings:
        ck.findings.append(Finding("truncated-report", f"{vm.dropped_findings} more findings",
                                   None, None, None, member))
    stop = end if end is not None else len(data)
    if must_end and vm.pos != stop:
        ck.findings.append(Finding("malformed", "bytes after STOP", vm.pos, None, None, member))
        return None
    storages: dict[str, StorageRef] = getattr(load, "storages", {}) if load else {}
    return root, vm.pos, storages


def read_torch_zip(buf: Buf, members: list[ZipMember]) -> TorchCheckpoint:
    """A torch.save (or TorchScript) zip archive whose structure `zipstrict` already checked."""
    prefixes = {m.name.split("/", 1)[0] for m in members}
    ck = TorchCheckpoint("torch-zip")
    if len(prefixes) != 1 or any("/" not in m.name for m in members):
        ck.findings.append(Finding("archive", "members do not share one top-level folder"))
        return ck
    prefix = prefixes.pop() + "/"
    by_name = {m.name[len(prefix):]: m for m in members}
    if any(n.startswith(_SCRIPT_MARKERS) for n in by_name):
        ck.kind = "torchscript"
        ck.findings.append(Finding(
            "code-bearing", "TorchScript archive: it carries code (code/, constants.pkl); "
            "safeload loads weights only", member=prefix))
    data_pkl = by_name.get("data.pkl")
    if data_pkl is None:
        ck.findings.append(Finding("archive", "no data.pkl in the archive", member=prefix))
        return ck
    for rel, m in by_name.items():
        if rel in _TORCH_META or rel == "data.pkl" or rel.endswith(".pkl"):
            continue
        if rel.startswith("data/") and rel[5:] and "/" not in rel[5:]:
            continue
        if ck.kind == "torchscript":
            continue
        ck.findings.append(Finding("archive", f"unexpected member {m.name!r}", member=m.name))
    _check_records(ck, buf, by_name)
    order = by_name.get("byteorder")
    try:
        if order is not None and bytes(
                read_member(buf, order, limit=16, zero_crc=True)) != b"little":
            ck.findings.append(Finding("unsupported", "big-endian checkpoint", member=order.name))
    except ZipError as exc:
        ck.findings.append(Finding("archive", str(exc), member=order.name if order else None))
    # Every .pkl member is read completely, data.pkl with torch's persistent ids.
    result = None
    for rel, m in sorted(by_name.items()):
        if not rel.endswith(".pkl"):
            continue
        try:
            data = read_member(buf, m, limit=MAX_PICKLE_MEMBER, zero_crc=True)
        except ZipError as exc:
            ck.findings.append(Finding("archive", str(exc), member=m.name))
            continue
        out = _run(ck, data, m.name, persistent=True)
        if rel == "data.pkl":
            result = out
    if result is None:
        return ck
    ck.root, _, ck.storages = result
    for key, ref in ck.storages.items():
        member = by_name.get(f"data/{key}")
        nbytes = ref.numel * (1 if ref.untyped else vm_itemsize(ref.dtype))
        if member is None:
            ck.findings.append(Finding("archive", f"storage {key!r} has no data member",
                                       member=f"{prefix}data/{key}"))
        elif member.method != 0 or member.size != nbytes:
            ck.findings.append(Finding(
                "archive", f"storage {key!r}: member is compressed or its size ({member.size}) is "
                f"not the declared {nbytes} bytes", member=member.name))
        else:
            ck.storage_spans[key] = (member.data_offset, nbytes)
    _unreferenced_storages(ck, by_name)
    return ck


# torch's reader (caffe2 inline_container.cc, serialization.py `_load`) refuses an archive
# whose version record is missing or outside the versions it reads, whose .storage_alignment
# is not an integer by Python's int(), or whose serialization id is not UTF-8: so does safeload,
# or a corrupted archive would load here and fail under torch.
_VERSIONS = range(1, 11)  # kMinSupportedFileFormatVersion .. kMaxSupportedFileFormatVersion
_C_SPACE = b" \t\n\v\f\r"


def _stoull_version(raw: bytes) -> int | None:
    """The version as C++ `std::stoull` reads it (leading space, a sign, digits up to the first
    other byte); None where it throws. A '-' wraps around: never a readable version."""
    text = raw.lstrip(_C_SPACE)
    sign = text[:1] if text[:1] in (b"+", b"-") else b""
    text = text[len(sign):]
    digits = len(text) - len(text.lstrip(b"0123456789"))
    if digits == 0:
        return None
    value = int(text[:digits])
    if value >= 1 << 64:
        return None
    return (-value) % (1 << 64) if sign == b"-" else value


def _check_records(ck: TorchCheckpoint, buf: Buf, by_name: dict[str, ZipMember]) -> None:
    def record(rel: str, limit: int) -> bytes | None:
        m = by_name.get(rel)
        if m is None:
            return None
        try:
            return bytes(read_member(buf, m, limit=limit, zero_crc=True))
        except ZipError as exc:
            ck.findings.append(Finding("archive", str(exc), member=m.name))
            return b""

    def bad(rel: str, why: str) -> None:
        m = by_name.get(rel)
        ck.findings.append(Finding("bad-record", f"{why} (torch refuses the archive)",
                                   member=m.name if m else rel))

    rel = ".data/version" if ".data/version" in by_name else "version"
    version = record(rel, 64)
    if version is None:
        bad(rel, "no version record")
    elif _stoull_version(version) not in _VERSIONS:
        bad(rel, f"version record {version[:20]!r} is not a version torch reads")
    alignment = record(".storage_alignment", 64)
    if alignment is not None:
        try:
            int(alignment)
        except ValueError:
            bad(".storage_alignment", f".storage_alignment {alignment[:20]!r} is not an integer")
    sid = record(".data/serialization_id", 1 << 16)
    if sid is not None:
        try:
            sid.decode("utf-8")
        except UnicodeDecodeError:
            bad(".data/serialization_id", "the serialization id is not UTF-8")


def _unreferenced_storages(ck: TorchCheckpoint, by_name: dict[str, ZipMember]) -> None:
    # torch.save writes only the storages data.pkl references; bytes nobody inspected as a
    # tensor are a second reading waiting for a loader that lists data/ instead.
    for rel, m in sorted(by_name.items()):
        if rel.startswith("data/") and rel[5:] not in ck.storages:
            ck.findings.append(Finding(
                "differential", f"storage member {m.name!r} is not referenced by data.pkl: "
                "safeload reads the pickle's storages, a loader listing data/ reads more",
                member=m.name))


def read_storage_bytes(data: Buf, start: int, size: int
                       ) -> tuple[StorageRef, tuple[int, int], list[Finding]]:
    """The storage that `torch.load(BytesIO(data[start:start + size]))` returns, where its
    bytes are in `data`, and the findings that refuse it (then the rest is meaningless).

    torch.load reads a zip when the bytes begin as one (its tar reader needs a real file
    descriptor: never tried on BytesIO), else the legacy pickles: only those are read here,
    so a zip is a differential. The legacy file must hold exactly one storage as its root
    object, and nothing after that storage's bytes."""
    view = memoryview(data).cast("B")[start : start + size]
    where = f"storage bytes at offset {start}"
    ref = StorageRef("", "uint8", 0, "cpu", True)
    if bytes(view[:4]) == b"PK\x03\x04":
        return ref, (0, 0), [Finding("differential", "storage bytes that torch.load would read "
                                     "as a zip archive", start, member=where)]
    ck = read_torch_legacy(view)
    findings = [dataclasses.replace(f, offset=None if f.offset is None else f.offset + start,
                                    member=f"{where}: {f.member}" if f.member else where)
                for f in ck.findings]
    if findings:
        return ref, (0, 0), findings
    root = ck.root
    if not isinstance(root, StorageRef) or list(ck.storages.values()) != [root]:
        return ref, (0, 0), [Finding("bad-arguments", "the legacy file in the bytes holds "
                                     "something other than one storage", start, member=where)]
    offset, nbytes = ck.storage_spans[root.key]
    root.key = f"bytes@{start}"
    return root, (start + offset, nbytes), []


def read_torch_legacy(buf: Buf) -> TorchCheckpoint:
    """The pre-1.6 format: magic, protocol, sys_info, data and key-list pickles, raw storages."""
    ck = TorchCheckpoint("torch-legacy")
    pos = 0
    values: list[Any] = []
    for index, name in enumerate(("magic", "protocol", "sys_info", "data", "storage keys")):
        member = f"pickle #{index + 1} ({name})"
        out = _run(ck, buf, member, start=pos, persistent=(name == "data"), legacy=True,
                   must_end=False)
        if out is None:
            return ck
        root, pos, storages = out
        values.append(root)
        if name == "data":
            ck.root, ck.storages = root, storages
        if name == "magic" and root != LEGACY_MAGIC:
            ck.findings.append(Finding("malformed", "not a legacy torch file (bad magic)",
                                       member=member))
            return ck
        if name == "protocol" and root != LEGACY_PROTOCOL:
            ck.findings.append(Finding("unsupported", f"legacy protocol {root!r}", member=member))
            return ck
    keys = values[4]
    if not (isinstance(keys, SList) and all(isinstance(k, str) for k in keys.items)):
        ck.findings.append(Finding("malformed", "storage key list is not a list of strings"))
        return ck
    if len(set(keys.items)) != len(keys.items) or set(keys.items) != set(ck.storages):
        ck.findings.append(Finding("malformed", "storage key list disagrees with the data pickle"))
        return ck
    for key in keys.items:
        ref = ck.storages[key]
        if pos + 8 > len(buf):
            ck.findings.append(Finding("malformed", f"truncated before storage {key!r}", pos))
            return ck
        (numel,) = struct.unpack_from("<q", buf, pos)
        nbytes = numel * vm_itemsize(ref.dtype)
        if numel != ref.numel or pos + 8 + nbytes > len(buf):
            ck.findings.append(Finding("malformed", f"storage {key!r} size disagrees", pos))
            return ck
        ck.storage_spans[key] = (pos + 8, nbytes)
        pos += 8 + nbytes
    if pos != len(buf):
        ck.findings.append(Finding("malformed", "bytes after the last storage", pos))
    return ck
