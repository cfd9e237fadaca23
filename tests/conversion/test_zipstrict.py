"""The strict zip reader accepts one reading of an archive only."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from safeload_conversion.zipstrict import ZipError, read_member, read_zip


class _Unseekable(io.RawIOBase):
    """Forces zipfile to write data descriptors, as torch's writer does."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.buf += b
        return len(b)


def _zip(members: dict[str, bytes], *, zip64: bool = False, stream: bool = False) -> bytes:
    out: io.BytesIO | _Unseekable = _Unseekable() if stream else io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:  # type: ignore[arg-type]
        for name, data in members.items():
            with z.open(name, "w", force_zip64=zip64) as fh:
                fh.write(data)
    return bytes(out.buf) if isinstance(out, _Unseekable) else out.getvalue()


@pytest.mark.parametrize("zip64", [False, True])
@pytest.mark.parametrize("stream", [False, True])
def test_standard_archives_parse(zip64: bool, stream: bool) -> None:
    blob = _zip({"a/data.pkl": b"x" * 100, "a/data/0": b"\0" * 8}, zip64=zip64, stream=stream)
    members = {m.name: m for m in read_zip(blob)}
    assert bytes(read_member(blob, members["a/data.pkl"], limit=1000)) == b"x" * 100


def test_prepended_data_is_refused() -> None:
    with pytest.raises(ZipError, match="gap or overlap|central directory"):
        read_zip(b"#!/bin/sh\n" + _zip({"a": b"1"}))


def test_appended_data_is_refused() -> None:
    with pytest.raises(ZipError):
        read_zip(_zip({"a": b"1"}) + b"trailing")


def test_duplicate_names_are_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z, pytest.warns(UserWarning):
        z.writestr("a", b"1")
        z.writestr("a", b"2")
    with pytest.raises(ZipError, match="duplicate"):
        read_zip(out.getvalue())


@pytest.mark.parametrize("name", ["../evil", "/abs", "a\\b", "a/./b", "c:x"])
def test_unsafe_member_names_are_refused(name: str) -> None:
    blob = _zip({"placeholder-name-xx": b"1"}).replace(
        b"placeholder-name-xx", name.encode().ljust(19, b"_")[:19])
    with pytest.raises(ZipError, match="unsafe member name"):
        read_zip(blob)


def test_local_and_central_names_must_agree() -> None:
    blob = bytearray(_zip({"a/data.pkl": b"x"}))
    first = blob.index(b"a/data.pkl")  # the local header's copy
    blob[first : first + 10] = b"a/evil.pk1"
    with pytest.raises(ZipError, match="disagrees"):
        read_zip(bytes(blob))


def test_crc_is_checked() -> None:
    blob = bytearray(_zip({"a": b"hello"}))
    blob[blob.index(b"hello")] ^= 1
    m = read_zip(bytes(blob))[0]
    with pytest.raises(ZipError, match="CRC"):
        read_member(bytes(blob), m, limit=100)


def test_deflate_bomb_is_bounded() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big", b"\0" * (8 << 20))
    blob = out.getvalue()
    m = read_zip(blob)[0]
    with pytest.raises(ZipError, match="limit"):
        read_member(blob, m, limit=1 << 20)


def _torch_saved() -> bytes:
    import torch

    bio = io.BytesIO()
    torch.save({"w": torch.ones(2)}, bio)
    return bio.getvalue()


@pytest.mark.parametrize("size", [52, 60, 100])
def test_zip64_record_with_extensible_data_is_a_differential(size: int) -> None:
    import struct

    from safeload_conversion.zipstrict import ZipDifferential

    blob = _torch_saved()
    rec = blob.rfind(b"PK\x06\x06")
    with pytest.raises(ZipDifferential, match="differential"):
        read_zip(blob[:rec + 4] + struct.pack("<Q", size) + blob[rec + 12:])


@pytest.mark.parametrize("second", ["a/DATA.pkl", "A/data.pkl", "a/data.pkl/"])
def test_names_one_reader_treats_as_equal_are_a_differential(second: str) -> None:
    from safeload_conversion.zipstrict import ZipDifferential

    with pytest.raises(ZipDifferential, match="differential"):
        read_zip(_zip({"a/data.pkl": b"1", second: b"2"}))


@pytest.mark.parametrize("sig", [b"PK\x01\x02", b"PK\x03\x04", b"PK\x06\x06", b"PK\x06\x07"])
def test_comment_holding_zip_structures_is_a_differential(sig: bytes) -> None:
    from safeload_conversion.zipstrict import ZipDifferential

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("a", b"1")
        z.comment = b"xx" + sig + b"yy"
    with pytest.raises(ZipDifferential):
        read_zip(out.getvalue())


def test_a_torch_zip_written_without_crc32_loads_and_a_wrong_crc_is_still_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import safeload
    from safeload.inspection import inspect_bytes

    monkeypatch.setenv("SAFELOAD_HOME", str(tmp_path / "home"))
    path = tmp_path / "no-crc.pt"
    torch.serialization.set_crc32_options(False)
    try:
        torch.save({"w": torch.arange(5.0)}, path)
    finally:
        torch.serialization.set_crc32_options(True)
    assert all(i.CRC == 0 for i in zipfile.ZipFile(path).infolist())
    assert torch.equal(torch.load(path)["w"], safeload.load(path)["w"])
    # a CRC of 0 passes only unchecked-as-torch-reads-it; a real CRC must still match
    members = read_zip(path.read_bytes())
    pkl = next(m for m in members if m.name.endswith("data.pkl"))
    assert bytes(read_member(path.read_bytes(), pkl, limit=1 << 20, zero_crc=True))
    with pytest.raises(ZipError, match="CRC"):
        read_member(path.read_bytes(), pkl, limit=1 << 20)
    torch.save({"w": torch.arange(5.0)}, path)
    good = bytearray(path.read_bytes())
    m = next(m for m in read_zip(bytes(good)) if m.name.endswith("data.pkl"))
    good[m.data_offset + m.size - 2] ^= 0x01  # a flipped byte in data.pkl: CRC now wrong
    assert inspect_bytes(bytes(good)).verdict == "unsafe"
