"""Strict mode returns exactly the bytes it hashed, whatever a writer the stamps cannot see does.

Hostile review B (2026-12-07), findings 5 and 6: a process holding a writable MAP_SHARED mapping
of a model file whose page it dirtied once can rewrite that page without a new mtime or ctime
(Linux updates the times on the write fault of a clean page only). Every stamp-keyed shortcut
(the verification cache, the repeat-load memo) and the after-use `changed()` check miss it, and
a MAP_PRIVATE mapping shows the new bytes until its own page is copied. In strict mode the bytes
are copied once, hashed, and every stage uses that copy; no stamp-keyed digest is reused.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload._internal import opened, repeat, verify_cache
from safeload.errors import SafeloadError
from safeload.signing import sign_model
from safeload.trust import Policy, Publisher, TrustedKey, TrustStore

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux page-cache behaviour")

KEYS = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"
SIGNED = [1.0, 2.0, 3.0, 4.0]
FORGED = [666.0] * 4


def _signed_model(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "model.safetensors"
    save_file({"w": torch.tensor(SIGNED)}, str(path))
    sign_model(folder, private_key_pem_path=KEYS / "p256.priv.pem")
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(Publisher("acme", keys=(key,)))
                      .with_policy(Policy(mode="strict")))
    return path


class _Writer:
    """The attacker: a shared writable mapping whose last page is already dirty."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR)
        self.map = mmap.mmap(self.fd, path.stat().st_size, flags=mmap.MAP_SHARED)
        self.map[-1:] = self.map[-1:]  # the one write that does update the times

    def forge(self) -> None:
        before = os.stat(self.path)
        self.map[-16:] = struct.pack("<4f", *FORGED)
        after = os.stat(self.path)
        # The premise: the file changed and its stamps did not (else this test proves nothing).
        assert (before.st_mtime_ns, before.st_ctime_ns) == (after.st_mtime_ns, after.st_ctime_ns)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Files count as quiescent at once, so every stamp-keyed shortcut would apply."""
    monkeypatch.setattr(repeat, "QUIESCENT_SECONDS", 0)
    monkeypatch.setattr(verify_cache, "QUIESCENT_SECONDS", 0)
    repeat.forget()
    yield
    repeat.forget()


@pytest.mark.parametrize("mmap_arg", [False, None], ids=["copies", "default"])
def test_strict_mode_returns_the_bytes_it_hashed_during_a_hidden_write(
        mmap_arg: bool | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        quiet: None) -> None:
    path = _signed_model(tmp_path / "model")
    writer = _Writer(path)
    real = opened.OpenedFile.sha256

    def hash_then_forge(self: opened.OpenedFile) -> str:
        digest = real(self)
        writer.forge()  # stands in for winning the race: the inspection runs after the hash
        return digest

    monkeypatch.setattr(opened.OpenedFile, "sha256", hash_then_forge)
    try:
        assert safeload.load(path, mmap=mmap_arg)["w"].tolist() == SIGNED
    finally:
        writer.close()


def test_strict_mode_reuses_no_digest_a_hidden_write_made_stale(tmp_path: Path,
                                                                quiet: None) -> None:
    path = _signed_model(tmp_path / "model")
    writer = _Writer(path)
    try:
        assert safeload.load(path)["w"].tolist() == SIGNED
        writer.forge()
        with pytest.raises(SafeloadError, match="digest mismatch|does not match"):
            safeload.load(path)  # the same process (repeat memo)
        repeat.forget()
        with pytest.raises(SafeloadError, match="digest mismatch|does not match"):
            safeload.load(path)  # a new process would consult only the verification cache
    finally:
        writer.close()


def test_strict_mode_returns_the_converted_bytes_it_validated(tmp_path: Path,
                                                              quiet: None) -> None:
    # Review E (issue 9): a pickle's tensors came from the converted store entry, re-opened by
    # path (MAP_PRIVATE) and, on a repeat, accepted by an inode-stamp memo: a hidden write to
    # the entry changed tensors already returned and every later strict load.
    from safeload._internal import paths

    folder = tmp_path / "model"
    folder.mkdir()
    src = folder / "pytorch_model.bin"
    torch.save({"w": torch.tensor(SIGNED)}, src)
    sign_model(folder, private_key_pem_path=KEYS / "p256.priv.pem")
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(Publisher("acme", keys=(key,)))
                      .with_policy(Policy(mode="strict")))
    assert safeload.load(src)["w"].tolist() == SIGNED
    entry = next(Path(paths.converted_dir()).glob("*/model.safetensors"))
    writer = _Writer(entry)
    try:
        held = safeload.load(src)
        assert held["w"].tolist() == SIGNED
        writer.forge()
        assert held["w"].tolist() == SIGNED  # already returned: a private copy
        repeat.forget()
        assert safeload.load(src)["w"].tolist() == SIGNED  # the entry is compared again
    finally:
        writer.close()
