"""The strict zip reader accepts one reading of an archive only."""

from __future__ import annotations

import io
import zipfile

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
