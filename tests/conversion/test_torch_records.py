"""A torch zip's metadata records are read as torch's reader reads them: a `version` record
missing or outside the versions torch reads, a `.storage_alignment` that is not an integer,
a serialization id that is not UTF-8 and a `byteorder` other than little/big make torch refuse
the archive, so safeload refuses it too (a MalformedFileError, a RuntimeError like torch's);
every variant torch reads loads as torch loads it. Found by the differential mutation fuzz:
safeload loaded corrupted archives torch refused."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

import safeload
from safeload.errors import MalformedFileError, RefusedError

W = {"w": torch.arange(3.0)}


def _members() -> list[tuple[str, bytes]]:
    src = io.BytesIO()
    torch.save(W, src)
    with zipfile.ZipFile(src) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def _variant(tmp_path: Path, record: str, value: bytes | None) -> Path:
    out = tmp_path / "model.pt"
    with zipfile.ZipFile(out, "w") as z:
        for name, data in _members():
            if name.split("/", 1)[1] == record:
                if value is None:
                    continue
                data = value
            z.writestr(name, data)
    return out


CASES = [
    ("version", v) for v in (None, b"3", b" 3", b"3abc", b"+3", b"-3", b"0", b"1", b"10", b"11",
                             b"", b"x", b"3\n\n", b"0x3", b"18446744073709551616", b"\xf6\n")
] + [
    (".storage_alignment", v) for v in (None, b"64", b" 64 ", b"6_4", b"-1", b"x", b"", b"\xdfe")
] + [
    (".data/serialization_id", v) for v in (None, b"abc", b"\xff", b"")
] + [
    ("byteorder", v) for v in (None, b"little", b"LITTLE", b"little\n")
]


@pytest.mark.parametrize("record,value", CASES, ids=[f"{r}={v!r}" for r, v in CASES])
def test_torch_zip_records_are_judged_as_torch_reads_them(
        record: str, value: bytes | None, tmp_path: Path) -> None:
    f = _variant(tmp_path, record, value)
    try:
        want = torch.load(f, weights_only=True)
    except Exception:  # torch refuses the archive: so does safeload, as a corrupt file
        with pytest.raises(RefusedError) as info:
            safeload.load(f)
        if record != "byteorder":  # a byte order safeload does not load is "unsupported"
            assert isinstance(info.value, MalformedFileError), info.value
            assert isinstance(info.value, RuntimeError)
        return
    assert torch.equal(safeload.load(f)["w"], want["w"])


def test_the_cases_cover_both_verdicts(tmp_path: Path) -> None:
    # The reference's rules, pinned: a case list that stopped exercising a refusal would pass.
    def reads(record: str, value: bytes | None) -> bool:
        try:
            torch.load(_variant(tmp_path, record, value), weights_only=True)
        except Exception:
            return False
        return True

    assert reads("version", b"3abc") and reads("version", b"10")
    assert not reads("version", None) and not reads("version", b"11")
    assert reads(".storage_alignment", b"6_4") and not reads(".storage_alignment", b"x")
    assert not reads(".data/serialization_id", b"\xff")
