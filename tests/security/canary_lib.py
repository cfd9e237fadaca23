"""Building blocks for the canary tests: a tiny pickle assembler, a raw zip writer, polyglot
builders, and the assertions shared by every family.

A canary payload's only effect is to create a marker file; every hostile file here is built at
test time (nothing is fetched, nothing binary is checked in).
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The two fixtures every canary uses (see conftest.py).
Fires = Callable[..., bool]
Refused = Callable[..., tuple[BaseException, dict[str, Any]]]

# ------------------------------------------------------------------------------------------
# Pickle assembler (opcode by opcode)


@dataclass(frozen=True)
class Op:
    """Raw opcode bytes, spliced in verbatim."""

    b: bytes


def lit(v: Any) -> bytes:
    """Opcodes that push `v` (protocol 2+ forms)."""
    if isinstance(v, Op):
        return v.b
    if v is None:
        return b"N"
    if v is True:
        return b"\x88"
    if v is False:
        return b"\x89"
    if isinstance(v, int):
        if 0 <= v < 256:
            return b"K" + bytes([v])
        if -(2**31) <= v < 2**31:
            return b"J" + struct.pack("<i", v)
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if isinstance(v, str):
        b = v.encode("utf-8")
        if len(b) < 256:
            return b"\x8c" + bytes([len(b)]) + b
        return b"X" + struct.pack("<I", len(b)) + b
    if isinstance(v, bytes):
        if len(v) < 256:
            return b"C" + bytes([len(v)]) + v
        return b"B" + struct.pack("<I", len(v)) + v
    if isinstance(v, tuple):
        return b"(" + b"".join(lit(x) for x in v) + b"t"
    if isinstance(v, list):
        return b"]" + (b"(" + b"".join(lit(x) for x in v) + b"e" if v else b"")
    if isinstance(v, dict):
        body = b"".join(lit(k) + lit(x) for k, x in v.items())
        return b"}" + (b"(" + body + b"u" if v else b"")
    raise TypeError(type(v))


def g(module: str, name: str) -> Op:
    """STACK_GLOBAL module.name (protocol 4: dotted names reach class attributes)."""
    return Op(lit(module) + lit(name) + b"\x93")


def call(fn: Any, *args: Any) -> Op:
    """fn(*args) with REDUCE."""
    return Op(lit(fn) + lit(tuple(args)) + b"R")


def p4(*body: Any) -> bytes:
    """A protocol-4 stream pushing `body` (one value) then STOP."""
    return b"\x80\x04" + b"".join(lit(x) for x in body) + b"."


def p2(*body: Any) -> bytes:
    return b"\x80\x02" + b"".join(lit(x) for x in body) + b"."


def open_code(marker: Path) -> str:
    """Python source whose only effect is creating the marker."""
    return f"open({str(marker)!r}, 'w').close()"


def opener(marker: Path) -> Op:
    """builtins.open(marker, 'w'): the canary call itself."""
    return call(g("builtins", "open"), str(marker), "w")


def text_open(marker: Path) -> bytes:
    """Protocol-0 text opcodes for open(marker, 'w') (GLOBAL + TUPLE + REDUCE)."""
    return b"cbuiltins\nopen\n(" + _s0(str(marker)) + _s0("w") + b"tR"


def _s0(s: str) -> bytes:
    return b"V" + s.encode("raw-unicode-escape") + b"\n"


class Reduce:
    """A __reduce__ payload: pickling it writes `fn(*args)`."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.fn, self.args)


# ------------------------------------------------------------------------------------------
# Raw zip writer: every header field is the caller's to tamper with


@dataclass
class ZEntry:
    name: str
    data: bytes
    local_name: str | None = None
    flags: int = 0
    local_flags: int | None = None
    crc: int | None = None
    method: int = 0
    offset: int | None = None  # central directory's idea of where the local header is
    write_local: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    deflated: bytes | None = None  # the member's own deflate stream (method 8), else zlib's


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _stored(e: ZEntry) -> bytes:
    if e.method == 0:
        return e.data
    return e.deflated if e.deflated is not None else _deflate(e.data)


def local_header(e: ZEntry) -> bytes:
    comp = _stored(e)
    name = (e.local_name if e.local_name is not None else e.name).encode()
    crc = zlib.crc32(e.data) if e.crc is None else e.crc
    flags = e.flags if e.local_flags is None else e.local_flags
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, e.method, 0, 0x21, crc,
                       len(comp), len(e.data), len(name), 0) + name + comp


def build_zip(entries: list[ZEntry], *, prepend: bytes = b"", comment: bytes = b"",
              base: int = 0) -> bytes:
    """Local headers in order, then the central directory and the end record.

    `base` is added to every recorded offset (for archives glued after other bytes)."""
    out = bytearray(prepend)
    central = []
    for e in entries:
        off = len(out)
        if e.write_local:
            out += local_header(e)
        comp_len = len(_stored(e))
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        name = e.name.encode()
        central.append(struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, e.flags, e.method, 0, 0x21, crc,
            comp_len, len(e.data), len(name), 0, 0, 0, 0, 0,
            (off if e.offset is None else e.offset) + base) + name)
    cd_off = len(out)
    cd = b"".join(central)
    out += cd
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(central), len(central), len(cd),
                       cd_off + base, len(comment)) + comment
    return bytes(out)


def torch_members(path: Path, prefix: str = "archive") -> list[tuple[str, bytes]]:
    """The members of a torch.save archive, renamed under one `prefix`."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        out = []
        for info in z.infolist():
            rest = info.filename.split("/", 1)[1]
            out.append((f"{prefix}/{rest}", z.read(info.filename)))
        return out


# ------------------------------------------------------------------------------------------
# Polyglots


_JSON_SAFE_LEN = [k for k in range(32, 127) if k not in (0x22, 0x5C)]


def safetensors_pickle_polyglot(ops: bytes) -> bytes:
    """A valid safetensors file whose bytes are also a pickle that runs `ops`.

    Byte 0 is SHORT_BINSTRING: its length byte and the next six bytes are the low bytes of the
    header length, and its string swallows the start of the JSON header. Inside a metadata
    string value the pickle hops over the rest of the header with SHORT_BINSTRING+POP pairs
    (printable length bytes), lands on the data section and runs `ops` from there. The data
    section is a U8 tensor holding those opcodes."""
    prefix = b'{"__metadata__":{"x":"'
    n = struct.unpack("<Q", bytes([0x55, 6 + len(prefix), 0, 0, 0, 0, 0, 0]))[0]
    data = b"0" + ops
    tail = b'"},"t":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (len(data), len(data))
    k_last = 126
    middle = n - len(prefix) - 1 - (2 + k_last)
    body = bytearray(b"0")
    while middle > 0:
        k = 97 if (middle - 100 >= 35 or middle == 100) else middle - 3
        assert k in _JSON_SAFE_LEN, k
        body += b"U" + bytes([k]) + b"a" * k + b"0"
        middle -= k + 3
    body += b"U" + bytes([k_last]) + b"aaaa" + tail + b" " * (k_last - 4 - len(tail))
    header = prefix + bytes(body)
    assert len(header) == n
    return struct.pack("<Q", n) + header + data


def v7_tar(members: list[tuple[str, bytes]], *, first_name: bytes | None = None,
           trailer: bytes = b"") -> bytes:
    """A tar whose first header has no 'ustar' magic (old V7 format: tarfile still reads it).

    With `first_name`, the first member's raw name field is replaced (to hide a pickle
    opcode in it); the checksum is recomputed."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = bytearray(bio.getvalue())
    hdr = raw[:512]
    if first_name is not None:
        hdr[0:100] = first_name.ljust(100, b"\0")
    hdr[257:265] = b"\0" * 8
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    raw[:512] = hdr
    return bytes(raw) + trailer


def tar_pickle_polyglot(storages_payload: bytes) -> bytes:
    """A legacy torch .tar checkpoint that is also a clean pickle (BINBYTES8 over the whole
    tar, then STOP): the pickle is harmless bytes, the tar's 'storages' member is not."""
    members = [("x", b""), ("storages", storages_payload), ("tensors", b""), ("pickle", b"")]
    probe = v7_tar(members, first_name=b"\x8e" + b"\0" * 8, trailer=b".")
    total = len(probe)
    return v7_tar(members, first_name=b"\x8e" + struct.pack("<Q", total - 10), trailer=b".")


# ------------------------------------------------------------------------------------------
# Scan helpers


def scan_json(main: Any, path: Path, capsys: Any) -> tuple[int, dict[str, Any]]:
    """`safeload scan PATH --json` in-process: (exit code, parsed JSON)."""
    import logging

    capsys.readouterr()
    try:
        rc = main(["scan", str(path), "--json"])
    finally:
        # main() binds a handler to the (captured) stderr of this test; drop it so later
        # tests do not log into a closed capture stream.
        logging.getLogger("safeload").handlers[:] = []
    out = json.loads(capsys.readouterr().out)
    return rc, out


# ------------------------------------------------------------------------------------------
# torch zip archives, honest and tampered


def torch_archives(tmp_path: Path, marker: Path) -> tuple[list[tuple[str, bytes]],
                                                         list[tuple[str, bytes]]]:
    """(good, evil): members of a clean torch.save archive and of one whose data.pkl opens
    the marker, both under the top-level folder 'archive'."""
    import torch

    good_path, evil_path = tmp_path / "_good.pt", tmp_path / "_evil.pt"
    torch.save({"w": torch.arange(4.0)}, good_path)
    torch.save({"w": torch.arange(4.0), "x": Reduce(open, str(marker), "w")}, evil_path)
    good, evil = torch_members(good_path), torch_members(evil_path)
    good_path.unlink()
    evil_path.unlink()
    return good, evil


def entries(members: list[tuple[str, bytes]], **tweaks: dict[str, Any]) -> list[ZEntry]:
    """ZEntry list; `tweaks` maps a member's name after 'archive/' (dots as '_') to fields."""
    out = []
    for name, data in members:
        key = name.split("/", 1)[1].replace(".", "_").replace("/", "_")
        out.append(ZEntry(name, data, **tweaks.get(key, {})))
    return out


def tampered_zip(kind: str, good: list[tuple[str, bytes]], evil: list[tuple[str, bytes]],
                 marker: Path) -> tuple[bytes, str]:
    """A tampered torch archive and the member a loader would unpickle ('' = torch.load)."""
    import pickle

    payload = pickle.dumps(Reduce(open, str(marker), "w"), protocol=2)
    evil_pkl = dict(evil)["archive/data.pkl"]
    if kind == "local_central_name_mismatch":  # CVE-2025-1944
        return build_zip(entries(evil, data_pkl={"local_name": "archive/data.pkx"})), ""
    if kind == "bad_crc":  # CVE-2025-10156
        return build_zip(entries(evil, data_pkl={"crc": 0x12345678})), ""
    if kind == "encrypted_flag_local_only":  # GHSA-w8jq-xcqf-f792 (flag bits)
        return build_zip(entries(evil, data_pkl={"local_flags": 1})), ""
    if kind == "duplicate_data_pkl":
        return build_zip(entries(good) + [ZEntry("archive/data.pkl", evil_pkl)]), ""
    if kind == "overlapping_entries":
        # The central entry for data.pkl points into the bytes of the storage member, where
        # a second local header and the hostile pickle hide.
        hidden = local_header(ZEntry("archive/data.pkl", payload))
        ents = [ZEntry(n, d) for n, d in good if n not in ("archive/data.pkl", "archive/data/0")]
        probe = build_zip([ZEntry("archive/data/0", hidden)] + ents)
        inner = probe.index(hidden)
        ents = [ZEntry("archive/data/0", hidden)] + ents + [
            ZEntry("archive/data.pkl", payload, offset=inner, write_local=False)]
        return build_zip(ents), ""
    if kind == "second_eocd":
        # A complete clean archive, then a second archive whose end record is the real one.
        first = build_zip(entries(good))
        return first + build_zip(entries(evil), base=len(first)), ""
    if kind == "prepended_pickle_polyglot":
        return payload + build_zip(entries(good)), ""
    if kind == "extra_pkl_member":
        return build_zip(entries(good) + [ZEntry("archive/extra.pkl", payload)]), \
            "archive/extra.pkl"
    if kind == "dotdot_member":
        return build_zip(entries(good) + [ZEntry("archive/../evil.pkl", payload)]), \
            "archive/../evil.pkl"
    if kind == "backslash_member":
        return build_zip(entries(good) + [ZEntry("archive\\evil.pkl", payload)]), \
            "archive\\evil.pkl"
    if kind == "absolute_member":
        return build_zip(entries(good) + [ZEntry("/archive/evil.pkl", payload)]), \
            "/archive/evil.pkl"
    if kind == "corrupt_entry_before_data_pkl":  # modelscan#354/#355
        bad = ZEntry("archive/aaa", b"junk", crc=0)
        return build_zip([bad] + entries(evil)), ""
    raise ValueError(kind)


ZIP_MEMBER_LOADER = ("import pickle, sys, zipfile\n"
                     "pickle.loads(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))")
