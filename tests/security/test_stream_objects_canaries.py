"""Objects saved one after another into one stream load one by one: the next object's bytes are
never used to load the first, and are inspected in full when they are loaded in turn.

Each payload only creates the marker; the control shows a second torch.load on the same open
file fires it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import pytest
import torch
from canary_lib import Fires, Reduce

import safeload
from safeload.errors import (
    DigestMismatchError,
    RevokedError,
    SafeloadError,
    UnsafeCheckpointError,
)
from safeload.trust import TrustStore

SECOND_LOAD = ("import torch, sys\nf = open(sys.argv[1], 'rb')\n"
               "torch.load(f, weights_only=False)\ntorch.load(f, weights_only=False)")


@pytest.mark.parametrize("second", ["pickle", "legacy_torch"])
def test_hostile_second_object(second: str, tmp_path: Path, marker: Path,
                               fires: Fires) -> None:

    path = tmp_path / "many.pt"
    with open(path, "wb") as f:
        torch.save({"w": torch.ones(3)}, f, _use_new_zipfile_serialization=False)
        end = f.tell()
        evil = Reduce(open, str(marker), "w")
        if second == "pickle":
            pickle.dump(evil, f, protocol=2)
        else:
            torch.save({"x": evil}, f, _use_new_zipfile_serialization=False)
    assert fires(path, SECOND_LOAD)
    with open(path, "rb") as f:
        first = safeload.load(f)  # torch.load returns it without touching the rest: so do we
        assert torch.equal(first["w"], torch.ones(3)) and f.tell() == end
        with pytest.raises(UnsafeCheckpointError, match=r"(io|builtins)\.open"):
            safeload.load(f)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):  # the whole file by path: refused
        safeload.load(path)
    buf = io.BytesIO(path.read_bytes())
    safeload.load(buf)
    with pytest.raises(UnsafeCheckpointError):
        safeload.load(buf)
    assert not marker.exists()


# Hostile review of 2026-12-06 (F8): the first object of a multi-object stream was cut out
# into memory BEFORE verification, so the pins, revocations and signatures of the file were
# checked against the digest of a prefix, which no trust store entry names.
def _two_objects(path: Path, first: object, second: object) -> None:
    with open(path, "wb") as w:
        torch.save(first, w, _use_new_zipfile_serialization=False)
        torch.save(second, w, _use_new_zipfile_serialization=False)


def test_revoked_file_stays_refused_when_read_object_by_object(tmp_path: Path) -> None:
    path = tmp_path / "two.pt"
    _two_objects(path, {"w": torch.ones(2)}, {"b": torch.zeros(2)})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    TrustStore.update(lambda s: s.with_revoked_digest(digest, "known bad"))
    with open(path, "rb") as f:
        with pytest.raises(RevokedError):
            safeload.load(f)
        torch.load(f, weights_only=True)  # to the second object, as torch.load reads it
        with pytest.raises(RevokedError):
            safeload.load(f)  # a position inside the file is still this file


def test_signed_file_replaced_by_two_objects_is_refused_from_an_open_file(
        tmp_path: Path) -> None:
    from safeload.signing import sign_model
    from safeload.trust import Publisher, TrustedKey

    keys = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"
    d = tmp_path / "model"
    d.mkdir()
    path = d / "model.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    sign_model(d, private_key_pem_path=keys / "p256.priv.pem")
    key = TrustedKey.from_pem((keys / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(Publisher("acme", keys=(key,))))
    with open(path, "rb") as f:
        assert torch.equal(safeload.load(f)["w"], torch.ones(2))
    _two_objects(path, {"w": torch.full((2,), 666.0)}, {})  # tampered weights, then anything
    with open(path, "rb") as f, pytest.raises(DigestMismatchError, match="model.pt"):
        safeload.load(f)


def test_ledger_names_the_whole_file_for_each_object(tmp_path: Path) -> None:
    from safeload.provenance import read_ledger

    path = tmp_path / "two.pt"
    _two_objects(path, {"w": torch.ones(2)}, {"b": torch.zeros(2)})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with open(path, "rb") as f:
        safeload.load(f)
        safeload.load(f)
    entries = [r.entry for r in read_ledger().records if r.entry is not None]
    assert [e.converted_from.sha256 for e in entries if e.converted_from] == [digest] * 2
    assert entries[0].files[0].sha256 != entries[1].files[0].sha256  # each its own object


class _ShortReads(io.RawIOBase):
    """A seekable raw stream that returns at most 4 KiB per call (legal for any stream)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = {0: pos, 1: self._pos + pos, 2: len(self._data) + pos}[whence]
        return self._pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), 4096, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def test_a_stream_that_reads_short_is_read_to_its_end(tmp_path: Path, marker: Path) -> None:
    # Hostile review A (2026-12-07), finding 3: one read() was taken for the whole stream, so
    # safeload judged the first 64 KiB while torch.load read on to a payload after them.
    buf = io.BytesIO()
    torch.save({"w": torch.arange(3)}, buf)
    tail = pickle.dumps(Reduce(open, str(marker), "w"))
    data = buf.getvalue() + b"\0" * (8192 - len(buf.getvalue()) % 8192) + tail
    seen: list[int] = []
    real = safeload.pipeline.InMemory.__init__

    def spy(self: object, name: str, data: bytes, **kw: object) -> None:
        seen.append(len(data))
        real(self, name, data, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(safeload.pipeline.InMemory, "__init__", spy)
        with pytest.raises(SafeloadError):  # bytes after the archive: refused
            safeload.load(_ShortReads(data))
    assert seen == [len(data)]  # the whole stream, not its first read
    assert not marker.exists()
