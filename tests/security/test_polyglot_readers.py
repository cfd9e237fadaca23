"""Polyglots across container readers: a file is judged by every reader that accepts it.

Issue 9 ("Polyglots", "Wrappers judged differently than their loaders"): a safetensors file
that is also a pickle through a text opcode with a line over 64 KiB (the polyglot check gave up
there; CPython's unpicklers do not); a pickle whose first block is a tar header with a *signed*
checksum or junk after a NUL in the checksum field (tarfile accepts both, and torch's legacy
loader tries tarfile first); a safetensors file whose header JSON carries a valid V7 tar header.
Each family is generated in several variants; each has a control with the real reader.
"""

from __future__ import annotations

import json
import pickle
import struct
import tarfile
from pathlib import Path

import pytest
from canary_lib import Fires, Refused, text_open
from safetensors.numpy import load_file


def _safetensors_with_header(header: dict[str, object], data: bytes, length: int) -> bytes:
    """A safetensors file whose header JSON is padded with spaces to exactly `length` bytes."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    assert len(raw) <= length - 1
    return struct.pack("<Q", length) + raw + b" " * (length - len(raw) - 1) + b"\n" + data


@pytest.mark.parametrize("line", [65_600, 70 * 1024, 200 * 1024])
def test_safetensors_that_is_also_a_pickle_through_a_long_text_line_is_refused(
        line: int, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # The length's low byte is 'V' (UNICODE: one text line, any bytes): to an unpickler the
    # 8-byte length and the whole header JSON are one string; the tensor data is the payload.
    length = (line & ~0xFF) | ord("V")
    assert b"\n" not in struct.pack("<Q", length)
    payload = b"0" + text_open(marker) + b"."  # POP the string, then open(marker, 'w')
    header = {"t": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}}
    f = tmp_path / "model.safetensors"
    f.write_bytes(_safetensors_with_header(header, payload, length))
    assert load_file(str(f))["t"].tobytes() == payload  # a valid safetensors file ...
    assert fires(f, "pickle")  # ... and a pickle that runs the payload
    refused(f, match="polyglot|import")


def _tar_header(name: bytes, *, signed: bool, checksum_suffix: bytes = b"\0 ",
                base256: bool = False) -> bytes:
    """One V7 tar header block for a member `name` (size 0), with the checksum written the way
    the variant asks: the signed byte sum, text cut by a NUL with junk after it, or base-256."""
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = b"00000000000\0"
    block[136:148] = b"00000000000\0"
    block[156:157] = b"0"
    rest = bytes(block[:148]) + bytes(block[156:])
    total = 256 + (sum(b - 256 if b > 127 else b for b in rest) if signed else sum(rest))
    if base256:
        block[148:156] = (b"\x80" if total >= 0 else b"\xff") + (
            total % (256 ** 7)).to_bytes(7, "big")
    else:
        text = (b"-%05o" % -total) if total < 0 else (b"%06o" % total)
        block[148:156] = (text + checksum_suffix)[:8].ljust(8, b" ")
    return bytes(block)


@pytest.mark.parametrize("variant", ["signed", "junk-after-nul", "base256", "unsigned"])
def test_a_pickle_whose_first_block_tarfile_accepts_is_refused(
        variant: str, tmp_path: Path, refused: Refused) -> None:
    # The member name is a complete, harmless pickle (high bytes make the two sums differ), so
    # a pickle loader sees `{}`; tarfile sees an archive (what torch's legacy loader opens).
    name = b"\x80\x02}\x94."
    block = _tar_header(name, signed=variant == "signed",
                        checksum_suffix=b"\0X" if variant == "junk-after-nul" else b"\0 ",
                        base256=variant == "base256")
    f = tmp_path / "model.bin"
    f.write_bytes(block + bytes(1024))
    assert pickle.loads(f.read_bytes()) == {}  # one reader: a harmless pickle
    with tarfile.open(f, "r:") as t:  # another: an archive
        assert [m.name.encode("latin-1", "surrogateescape") for m in t.getmembers()]
    refused(f, match="tar")


def test_safetensors_whose_header_holds_a_v7_tar_header_is_refused(
        tmp_path: Path, refused: Refused) -> None:
    from safeload.errors import UnsafeCheckpointError

    # Every tar field the checksum covers lives inside a JSON string of the header.
    length = 1024
    header: dict[str, object] = {
        "__metadata__": {"p": "0" * 900},
        "t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}
    raw = bytearray(_safetensors_with_header(header, b"\x01", length))
    start = raw.index(b"0" * 900)
    assert start < 100 and start + 900 > 512
    for lo, hi, text in ((100, 108, b"0000644 "), (108, 116, b"0000000 "),
                         (116, 124, b"0000000 "), (124, 136, b"00000000000 "),
                         (136, 148, b"00000000000 "), (156, 157, b"0")):
        raw[lo:hi] = text
    raw[148:156] = b" " * 8
    total = 256 + sum(raw[:148]) + sum(raw[156:512])
    raw[148:156] = b"%07o " % total
    f = tmp_path / "model.safetensors"
    f.write_bytes(bytes(raw))
    assert load_file(str(f))["t"].tolist() == [1]  # safetensors reads it
    with tarfile.open(f, "r:") as t:  # and so does tarfile
        assert t.getmembers()
    refused(f, UnsafeCheckpointError, match="several readers")


@pytest.mark.parametrize("trailing", [b"junk" * 10, b"\xff\xfe", b"trailing text\n"])
def test_a_joblib_lzma_file_with_trailing_bytes_is_refused_not_reread_as_a_pickle(
        trailing: bytes, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # Issue 9: the strict decoder refused the trailing bytes, and the fallback then read the
    # raw file as a pickle ("skipped", exit 0) while joblib decompresses it and runs it.
    import lzma

    from canary_lib import Reduce

    payload = pickle.dumps(Reduce(open, str(marker), "w"), protocol=2)
    data = lzma.compress(payload, format=lzma.FORMAT_ALONE) + trailing
    assert data.startswith(b"]\x00")
    f = tmp_path / "model.joblib"
    f.write_bytes(data)
    assert fires(f, "joblib")
    refused(f)


def _safetensors_zip_polyglot(tmp_path: Path, lead: bytes) -> Path:
    """A torch zip checkpoint (torch reads its first bytes `PK\\x03\\x04` as the magic) that is
    also a valid safetensors file: those bytes and four zeros are a 67 MB header length, and
    the header JSON starts after `lead` (JSON whitespace, which safetensors skips)."""
    import io
    import zipfile

    import torch

    n = struct.unpack("<Q", b"PK\x03\x04\0\0\0\0")[0]
    src = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, src)
    members = [(i.filename, zipfile.ZipFile(src).read(i.filename))
               for i in zipfile.ZipFile(src).infolist()]
    f = tmp_path / "model.pt"
    with open(f, "wb") as out:
        out.write(b"PK\x03\x04\0\0\0\0")
        out.write(lead + b" " * (n - len(lead)))  # the header: patched below
    with zipfile.ZipFile(f, "a", compression=zipfile.ZIP_STORED) as z:  # appended archive
        for name, data in members:
            z.writestr(name, data)
    size = f.stat().st_size
    data_len = size - 8 - n
    header = json.dumps({"t": {"dtype": "U8", "shape": [data_len],
                               "data_offsets": [0, data_len]}}).encode()
    with open(f, "r+b") as out:
        out.seek(8 + len(lead))
        out.write(header)
    return f


@pytest.mark.parametrize("lead", [b"", b" ", b"\n", b"\t\r\n ", b" " * 600])
def test_a_safetensors_header_after_json_whitespace_still_makes_a_zip_a_polyglot(
        lead: bytes, tmp_path: Path) -> None:
    # safetensors (serde_json) skips leading JSON whitespace: the sniff must too, or a file
    # that torch opens as a zip and safetensors as tensors is judged as a zip alone.
    import torch
    from safetensors.torch import load_file as load_torch

    import safeload
    from safeload.errors import UnsafeCheckpointError
    from safeload.inspection import inspect_bytes

    f = _safetensors_zip_polyglot(tmp_path, lead)
    assert list(load_torch(str(f))) == ["t"]  # safetensors reads one U8 tensor ...
    assert torch.equal(torch.load(f, weights_only=True)["w"], torch.arange(4.0))  # torch, a dict
    ins = inspect_bytes(f.read_bytes(), name=f.name)
    assert ins.verdict == "unsafe" and any(x.code == "polyglot" for x in ins.findings), ins
    with pytest.raises(UnsafeCheckpointError, match="polyglot"):
        safeload.load(f)


def test_a_safetensors_file_whose_header_starts_after_whitespace_loads_as_load_file(
        tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file

    import safeload

    plain = tmp_path / "plain.safetensors"
    save_file({"b": torch.ones(3), "a": torch.zeros(2)}, str(plain))
    raw = plain.read_bytes()
    (n,) = struct.unpack_from("<Q", raw)
    for lead in (b" ", b"\n\t"):
        f = tmp_path / "lead.safetensors"
        f.write_bytes(struct.pack("<Q", n + len(lead)) + lead + raw[8:])
        want = load_torch(str(f))
        got = safeload.load(f)
        assert list(got) == list(want)
        assert all(torch.equal(got[k], want[k]) for k in want)
