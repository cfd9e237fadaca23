"""A strict ZIP reader for torch archives, `.npz` files and zip wrappers.

Python's `zipfile` trusts the central directory and tolerates prepended data, gaps, overlapping
and duplicated entries: exactly the ambiguities a polyglot or a parser-differential attack uses.
This reader accepts one reading only:
- the end-of-central-directory record ends the file (after its comment), single disk;
- the central directory ends exactly where that record (or the zip64 record) starts;
- local headers tile the file from offset 0 to the central directory with no gap or overlap,
  each agreeing with its central entry on name, method, flags, CRC and sizes;
- names are unique, relative, without `..`, backslashes, NUL or absolute parts;
- methods are stored or deflate, nothing is encrypted.
Everything else is a `ZipError`.

How the real readers find the data (and so what must agree before a file is clean):
- miniz (torch's PyTorchStreamReader): `mz_zip_reader_locate_header_sig` scans backwards from
  the end for the first EOCD signature with 22 bytes after it, giving up ~64 KiB back; with a
  zip64 locator 20 bytes before it, the zip64 record is read at locator-56 and only if that
  fails where the locator points; bytes before the central directory are tolerated
  (`archive_ofs`). Names are looked up with `mz_zip_reader_locate_file` without
  MZ_ZIP_FLAG_CASE_SENSITIVE: ASCII case-insensitive (binary search over the sorted directory,
  so of duplicate names any one may win). torch takes the archive prefix from the directory of
  the first central record and reads `<prefix>/data.pkl`, `<prefix>/data/<key>`, `byteorder`.
- Python's zipfile (np.load, zipfile+pickle): `_EndRecData` takes the EOCD at EOF-22 when its
  comment is empty, else the last signature in the last 65557 bytes; `_EndRecData64` reads the
  zip64 record at locator-56 ("assume no zip64 extensible data"); `concat` shifts every offset
  by prepended data; later duplicates win in `NameToInfo`; names are cut at the first NUL.
So a second EOCD signature in the searched tail, archive signatures in the comment, a zip64
record with extensible data or a locator pointing elsewhere than locator-56, EOCD fields that
disagree with the zip64 record, and names that collide case-insensitively, after NUL
truncation or modulo trailing slashes are refused as `ZipDifferential`: readers could disagree
(case alone is allowed in an `.npz`, which only zipfile's exact lookup reads). Members come back
in central-directory order, as `zipfile.namelist()` lists them.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from dataclasses import dataclass

from safeload_conversion.budget import current

MAX_MEMBERS = 1 << 20
Buf = bytes | bytearray | memoryview | mmap.mmap


class ZipError(Exception):
    """The bytes are not a zip archive this reader accepts."""

    kind = "archive"


class ZipDifferential(ZipError):
    """Two real zip readers could read different content from these bytes."""

    kind = "differential"


@dataclass(frozen=True)
class ZipMember:
    name: str
    method: int  # 0 stored, 8 deflate
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int  # where the (compressed) bytes start


_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_LOC64 = b"PK\x06\x07"
_CEN = b"PK\x01\x02"
_LOC = b"PK\x03\x04"
_DD = b"PK\x07\x08"


def _u(fmt: str, buf: Buf, off: int) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if off < 0 or off + size > len(buf):
        raise ZipError("truncated zip structure")
    return struct.unpack_from(fmt, buf, off)


def _find_eocd(buf: Buf) -> int:
    n = len(buf)
    if n >= 22 and bytes(buf[n - 22 : n - 18]) == _EOCD and _u("<H", buf, n - 2)[0] == 0:
        return n - 22
    # With a comment: the record whose comment length ends exactly at EOF.
    lo = max(0, n - 22 - 0xFFFF)
    tail = bytes(buf[lo:n])
    idx = tail.rfind(_EOCD)
    while idx >= 0:
        off = lo + idx
        if off + 22 <= n and off + 22 + _u("<H", buf, off + 20)[0] == n:
            return off
        idx = tail.rfind(_EOCD, 0, idx)
    raise ZipError("no end-of-central-directory record at the end of the file")


_TAIL = 22 + 0xFFFF  # how far back zipfile and miniz search for the end record
_SIGS = (_CEN, _LOC, _EOCD, _EOCD64, _LOC64)


def _check_tail(buf: Buf, eocd: int) -> None:
    """One end record in the searched tail, and no archive structure in its comment."""
    n = len(buf)
    lo = max(0, n - _TAIL)
    tail = bytes(buf[lo:n])
    others = [lo + i for i in _find_all(tail, _EOCD) if lo + i != eocd and lo + i + 22 <= n]
    if others:
        raise ZipDifferential(
            f"differential: two end records of the central directory (offsets {eocd} and "
            f"{others[-1]}): miniz (torch) and zipfile read the last one, safeload the one "
            "whose comment ends the file")
    comment = bytes(buf[eocd + 22 : n])
    for sig in _SIGS:
        if sig in comment:
            raise ZipDifferential(
                f"differential: the archive comment holds a zip structure ({sig!r}): "
                "a reader that searches for it reads another archive than safeload")


def _find_all(hay: bytes, needle: bytes) -> list[int]:
    out, i = [], hay.find(needle)
    while i >= 0:
        out.append(i)
        i = hay.find(needle, i + 1)
    return out


def _name_key(name: str) -> str:
    # What miniz (ASCII case-insensitive) and zipfile (NUL-truncated) could treat as one name.
    return name.split("\x00", 1)[0].replace("\\", "/").rstrip("/").casefold()


def _zip64_extra(extra: bytes, need: list[str], values: dict[str, int]) -> None:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        if len(body) != size:
            raise ZipError("truncated extra field")
        if tag == 0x0001:
            fields = [f for f in ("size", "csize", "offset") if f in need]
            if len(body) < 8 * len(fields):
                raise ZipError("short zip64 extra field")
            for i, f in enumerate(fields):
                values[f] = struct.unpack_from("<Q", body, 8 * i)[0]
            return
        pos += 4 + size
    if pos != len(extra):
        raise ZipError("malformed extra field")
    if need:
        raise ZipError("zip64 sizes announced but no zip64 extra field")


def _check_name(raw: bytes, utf8: bool) -> str:
    try:
        name = raw.decode("utf-8" if utf8 else "cp437")
    except UnicodeDecodeError:
        raise ZipError("member name is not valid UTF-8") from None
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(p in ("..", ".") for p in parts)
        or ":" in parts[0]
    ):
        raise ZipError(f"unsafe member name {name!r}")
    return name


def read_zip(buf: Buf) -> list[ZipMember]:
    """Parse and cross-check the whole archive structure; raise `ZipError` on any doubt."""
    eocd = _find_eocd(buf)
    _check_tail(buf, eocd)
    disk, cd_disk, n_disk, n_total, cd_size, cd_offset, _ = _u("<HHHHIIH", buf, eocd + 4)
    cd_end = eocd
    loc = eocd - 20
    has_loc64 = loc >= 0 and bytes(buf[loc : loc + 4]) == _LOC64
    if 0xFFFF in (n_disk, n_total) or 0xFFFFFFFF in (cd_size, cd_offset) or has_loc64:
        # torch writes zip64 records even for small archives; when present they govern.
        if not has_loc64:
            raise ZipError("zip64 values without a zip64 locator")
        _, rec_off, total_disks = _u("<IQI", buf, loc + 4)
        if total_disks != 1 or rec_off + 56 > loc or bytes(buf[rec_off : rec_off + 4]) != _EOCD64:
            raise ZipError("bad zip64 end-of-central-directory locator")
        if rec_off != loc - 56:
            raise ZipDifferential(
                f"differential: the zip64 locator points at offset {rec_off}, zipfile and "
                f"miniz read the zip64 record at {loc - 56} (zip64 extensible data)")
        eocd32 = (n_disk, n_total, cd_size, cd_offset)
        (rec_size, _, _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset) = _u(
            "<QHHIIQQQQ", buf, rec_off + 4)
        if rec_size != 44:
            raise ZipDifferential(
                f"differential: zip64 record size field {rec_size} (extensible data): readers "
                "that honour it and zipfile (which assumes none) disagree")
        for v32, v64, full in zip(eocd32, (n_disk, n_total, cd_size, cd_offset),
                                  (0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF), strict=True):
            if v32 not in (v64, full):
                raise ZipDifferential(
                    "differential: the end record and the zip64 record disagree: readers "
                    "that only use zip64 values for 0xFFFF placeholders read another directory")
        cd_end = rec_off
    if disk != 0 or cd_disk != 0 or n_disk != n_total:
        raise ZipError("multi-disk archives are not supported")
    if n_total > MAX_MEMBERS:
        raise ZipError("too many members")
    if cd_offset + cd_size != cd_end:
        raise ZipError("central directory does not end where the end record starts")

    members: list[ZipMember] = []
    names: set[str] = set()
    keys: dict[str, str] = {}
    collisions: list[tuple[str, str]] = []
    pos = cd_offset
    for _ in range(n_total):
        if bytes(buf[pos : pos + 4]) != _CEN:
            raise ZipError("bad central directory entry")
        (_, needed, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, dstart, _, _,
         hoff) = _u("<HHHHHHIIIHHHHHII", buf, pos + 4)
        if needed & 0xFF > 63:  # what Python's zipfile (np.load) refuses: version 6.3 is the top
            raise ZipError(f"member needs zip version {(needed & 0xFF) / 10}")
        raw_name = bytes(buf[pos + 46 : pos + 46 + nlen])
        extra = bytes(buf[pos + 46 + nlen : pos + 46 + nlen + xlen])
        if len(raw_name) != nlen or len(extra) != xlen:
            raise ZipError("truncated central directory")
        need = [f for f, v in (("size", usize), ("csize", csize), ("offset", hoff))
                if v == 0xFFFFFFFF]
        values: dict[str, int] = {}
        _zip64_extra(extra, need, values)
        usize, csize, hoff = (values.get("size", usize), values.get("csize", csize),
                              values.get("offset", hoff))
        if flags & 0x41:
            raise ZipError("encrypted members are not supported")
        if method not in (0, 8):
            raise ZipError(f"compression method {method} is not supported")
        if method == 0 and usize != csize:
            raise ZipError("stored member with differing sizes")
        if dstart != 0:
            raise ZipError("multi-disk member")
        name = _check_name(raw_name, bool(flags & 0x800))
        if name in names:
            raise ZipError(f"duplicate member {name!r}")
        names.add(name)
        key = _name_key(name)
        if key in keys:
            collisions.append((keys[key], name))
        keys[key] = name
        members.append(ZipMember(name, method, crc, csize, usize, hoff, -1))
        pos += 46 + nlen + xlen + clen
    if pos != cd_end:
        raise ZipError("central directory size disagrees with its entries")
    _check_collisions(collisions, names)

    # Local headers must tile [0, cd_offset) exactly.
    out: list[ZipMember] = []
    expect = 0
    for m in sorted(members, key=lambda m: m.header_offset):
        if m.header_offset != expect:
            raise ZipError(f"gap or overlap before member {m.name!r}")
        off = m.header_offset
        if bytes(buf[off : off + 4]) != _LOC:
            raise ZipError(f"bad local header for {m.name!r}")
        (_, lflags, lmethod, _, _, lcrc, lcsize, lusize, nlen, xlen) = _u(
            "<HHHHHIIIHH", buf, off + 4)
        lname = bytes(buf[off + 30 : off + 30 + nlen])
        lextra = bytes(buf[off + 30 + nlen : off + 30 + nlen + xlen])
        if _check_name(lname, bool(lflags & 0x800)) != m.name or lmethod != m.method:
            raise ZipError(f"local header disagrees with central directory for {m.name!r}")
        data_off = off + 30 + nlen + xlen
        end = data_off + m.compressed_size
        if end > cd_offset:
            raise ZipError(f"member {m.name!r} runs into the central directory")
        if lflags & 0x08:
            # Sizes follow the data in a descriptor; the local fields may be zero.
            # Each local field is a placeholder (0, or 0xFFFFFFFF for zip64 sizes) or the value.
            if (lcrc not in (0, m.crc)
                    or lcsize not in (0, 0xFFFFFFFF, m.compressed_size)
                    or lusize not in (0, 0xFFFFFFFF, m.size)):
                raise ZipError(f"local header disagrees with central directory for {m.name!r}")
            end = _skip_descriptor(buf, end, m, zip64=_has_zip64(lextra) or max(
                m.size, m.compressed_size) >= 0xFFFFFFFF)
        else:
            lneed = [f for f, v in (("size", lusize), ("csize", lcsize)) if v == 0xFFFFFFFF]
            lvals: dict[str, int] = {}
            _zip64_extra(lextra, lneed, lvals)
            if (lcrc, lvals.get("csize", lcsize), lvals.get("size", lusize)) != (
                    m.crc, m.compressed_size, m.size):
                raise ZipError(f"local header disagrees with central directory for {m.name!r}")
        out.append(ZipMember(m.name, m.method, m.crc, m.compressed_size, m.size,
                             m.header_offset, data_off))
        expect = end
    if expect != cd_offset:
        raise ZipError("unaccounted bytes before the central directory")
    # Central-directory order: zipfile's namelist() (so np.load's keys) follows it.
    located = {m.name: m for m in out}
    return [located[m.name] for m in members]


def _check_collisions(collisions: list[tuple[str, str]], names: set[str]) -> None:
    """Names one reader could take for one another are a differential, with one exception.

    An archive whose every member ends in `.npy` is an `.npz`: only np.load reads it, through
    zipfile, whose lookup is exact (`W.npy` and `w.npy` are `np.savez(W=..., w=...)`); torch
    cannot read it (no `data.pkl`), so a case-only collision is harmless there."""
    npz = all(n.endswith(".npy") for n in names)
    for first, second in collisions:
        if npz and first.rstrip("/") != second.rstrip("/"):
            continue
        raise ZipDifferential(
            f"differential: members {first!r} and {second!r} are one name to miniz "
            "(torch: case-insensitive lookup) or zipfile: which one is read is up to the "
            "reader")


def _has_zip64(extra: bytes) -> bool:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            return True
        pos += 4 + size
    return False


def _skip_descriptor(buf: Buf, pos: int, m: ZipMember, *, zip64: bool) -> int:
    # APPNOTE 4.3.9: sizes are 8 bytes when the local header carries a zip64 extra field.
    if bytes(buf[pos : pos + 4]) == _DD:
        pos += 4
    fmt = "<IQQ" if zip64 else "<III"
    crc, csize, usize = _u(fmt, buf, pos)
    if (crc, csize, usize) != (m.crc, m.compressed_size, m.size):
        raise ZipError(f"data descriptor disagrees with central directory for {m.name!r}")
    return pos + struct.calcsize(fmt)


def read_member(buf: Buf, m: ZipMember, *, limit: int, check_crc: bool = True,
                zero_crc: bool = False) -> bytes | memoryview:
    """The member's bytes: a view for stored members, bounded inflation for deflated ones.

    `zero_crc`: a stored member whose CRC-32 is recorded as 0 is read unchecked, as torch
    reads it (`torch.save` with `compute_crc32=False` writes 0 for every member).
    """
    if m.size > limit:
        raise ZipError(f"member {m.name!r} is larger than the {limit}-byte limit")
    raw = memoryview(buf)[m.data_offset : m.data_offset + m.compressed_size]
    if m.method == 0:
        data: bytes | memoryview = raw
    else:
        budget = current()
        if budget is not None:
            budget.charge_bytes(m.size)  # before inflating: a bomb is refused unread
        d = zlib.decompressobj(-15)
        try:
            data = d.decompress(raw, m.size + 1)
        except zlib.error as exc:
            raise ZipError(f"member {m.name!r} is not a valid deflate stream: {exc}") from None
        if len(data) != m.size or not d.eof or d.unconsumed_tail or d.unused_data:
            raise ZipError(f"member {m.name!r} does not inflate to its declared size")
    if check_crc and not (zero_crc and m.crc == 0 and m.method == 0) \
            and zlib.crc32(data) != m.crc:
        raise ZipError(f"CRC mismatch in member {m.name!r}")
    return data
