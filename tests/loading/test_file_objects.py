"""File objects are read as the streams they are (issue 12, "File objects").

A decompressing wrapper's `fileno()` is the compressed file's and a tar member's is the
archive's: only a plain binary file is read through its descriptor. Each case is loaded by
`torch.load` first, so the test pins the drop-in promise.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
import torch

import safeload

STD = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2), "n": 1}


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_HOME", str(tmp_path / "safeload-home"))


def _same(ref: dict[str, Any], got: dict[str, Any]) -> None:
    assert list(got) == list(ref)
    for k, v in ref.items():
        assert type(got[k]) is type(v)
        if isinstance(v, torch.Tensor):
            assert got[k].dtype == v.dtype and torch.equal(got[k], v)
        else:
            assert got[k] == v


OPENERS: dict[str, Callable[[str, str], IO[bytes]]] = {
    "gzip": gzip.open, "bz2": bz2.open, "lzma": lzma.open,  # type: ignore[dict-item]
}


# torch.load itself cannot read a legacy file from a bz2 or lzma stream (it seeks backwards)
@pytest.mark.parametrize("kind,fmt", [("gzip", "zip"), ("gzip", "legacy"), ("bz2", "zip"),
                                      ("lzma", "zip")])
def test_a_decompressing_stream_is_read_as_its_decompressed_bytes(
        kind: str, fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"ckpt.pt.{kind}"
    kwargs: dict[str, Any] = {} if fmt == "zip" else {"_use_new_zipfile_serialization": False}
    with OPENERS[kind](str(path), "wb") as f:
        torch.save(STD, f, **kwargs)
    with OPENERS[kind](str(path), "rb") as f:
        ref = torch.load(f, weights_only=True)
    with OPENERS[kind](str(path), "rb") as f:
        assert f.fileno() >= 0, "the wrapper has a descriptor: of the compressed file"
        got = safeload.load(f)
    _same(ref, got)


def test_a_tar_member_is_read_as_a_stream(tmp_path: Path) -> None:
    torch.save(STD, tmp_path / "std.pt")
    with tarfile.open(tmp_path / "ckpts.tar", "w") as tf:
        tf.add(tmp_path / "std.pt", arcname="a/std.pt")
    with tarfile.open(tmp_path / "ckpts.tar") as tf:
        ref = torch.load(tf.extractfile("a/std.pt"), weights_only=True)  # type: ignore[arg-type]
        got = safeload.load(tf.extractfile("a/std.pt"))  # type: ignore[arg-type]
    _same(ref, got)


def test_any_object_with_read_is_a_stream(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save(STD, buf)

    class Reader:
        def __init__(self, data: bytes) -> None:
            self._f = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._f.read(n)

    _same(torch.load(io.BytesIO(buf.getvalue()), weights_only=True),
          safeload.load(Reader(buf.getvalue())))  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["open", "bytesio"])
def test_the_position_after_a_legacy_load_is_where_torch_leaves_it(
        how: str, tmp_path: Path) -> None:
    path = tmp_path / "std.pt"
    torch.save(STD, path, _use_new_zipfile_serialization=False)

    def fresh() -> IO[bytes]:
        return open(path, "rb") if how == "open" else io.BytesIO(path.read_bytes())

    with fresh() as a, fresh() as b:
        torch.load(a, weights_only=True)
        safeload.load(b)
        assert b.tell() == a.tell() == path.stat().st_size
