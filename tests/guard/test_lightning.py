"""Lightning under the guard: `LightningModule.load_from_checkpoint` and Trainer resume
(`fit(ckpt_path=...)`) read checkpoints with `torch.load` (through lightning's `pl_load`), so a
benign checkpoint is converted in the sandbox, loaded and recorded; a hostile one is refused
before its payload runs; a tampered one (refused by its pin) never loads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import safeload
from safeload import guard as guard_module
from safeload.errors import DigestMismatchError, UnsafeCheckpointError
from safeload.provenance import flush, read_ledger

pl = pytest.importorskip("lightning.pytorch")


class Canary:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class Tiny(pl.LightningModule):  # type: ignore[misc]
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(width, 1)

    def training_step(self, batch: Any, _: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> Any:
        data = torch.utils.data.TensorDataset(torch.ones(4, self.hparams.width))
        return torch.utils.data.DataLoader(data, batch_size=2)


@pytest.fixture(autouse=True)
def always_uninstalled() -> Iterator[None]:
    yield
    while guard_module.installed():
        guard_module.uninstall()


def _trainer(tmp: Path, epochs: int) -> Any:
    return pl.Trainer(max_epochs=epochs, default_root_dir=tmp, logger=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, accelerator="cpu")


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Tiny, Path]:
    torch.manual_seed(0)
    model = Tiny()
    trainer = _trainer(tmp_path, 1)
    trainer.fit(model)
    path = tmp_path / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return model, path


def test_load_from_checkpoint_is_converted_loaded_and_recorded(
        checkpoint: tuple[Tiny, Path]) -> None:
    model, path = checkpoint
    with safeload.guard():
        loaded = Tiny.load_from_checkpoint(path)
    assert loaded.hparams.width == 3
    assert torch.equal(loaded.layer.weight, model.layer.weight)
    flush()
    entry = [r.entry for r in read_ledger().records if r.entry is not None][-1]
    assert entry.source.path == str(path) and entry.converted_from is not None
    assert entry.converted_from.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_trainer_resume_reads_the_checkpoint_through_safeload(
        checkpoint: tuple[Tiny, Path], tmp_path: Path) -> None:
    _, path = checkpoint
    trainer = _trainer(tmp_path / "resume", 2)
    with safeload.guard():
        trainer.fit(Tiny(), ckpt_path=str(path))
    assert trainer.current_epoch == 2  # resumed at epoch 1, trained one more
    flush()
    assert any(r.entry is not None and r.entry.source.path == str(path)
               for r in read_ledger().records)


def test_hostile_checkpoint_is_refused_by_both_entry_points(
        checkpoint: tuple[Tiny, Path], tmp_path: Path) -> None:
    _, path = checkpoint
    marker = tmp_path / "CANARY-FIRED"
    ckpt = torch.load(path, weights_only=False)  # our own file: the clean one
    ckpt["callbacks"] = {"x": Canary(marker)}
    hostile = tmp_path / "hostile.ckpt"
    torch.save(ckpt, hostile)
    with safeload.guard(), pytest.raises(UnsafeCheckpointError):
        Tiny.load_from_checkpoint(hostile)
    with safeload.guard(), pytest.raises(UnsafeCheckpointError):
        _trainer(tmp_path / "r", 2).fit(Tiny(), ckpt_path=str(hostile))
    assert not marker.exists()
    torch.load(hostile, weights_only=False)  # control: the payload is real
    assert marker.exists()


def test_tampered_checkpoint_is_refused(checkpoint: tuple[Tiny, Path]) -> None:
    from safeload._cli import main

    _, path = checkpoint
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert main(["trust", "init"]) == 0
    assert main(["trust", "pin", str(path), "--sha256", digest, "-y"]) == 0
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(bytes(data))
    with safeload.guard(), pytest.raises(DigestMismatchError):
        Tiny.load_from_checkpoint(path)
