"""A warning about a file is shown once per process, however often the file is loaded; the
ledger still records it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload.provenance import read_ledger


def test_an_unsigned_file_is_warned_about_once_and_still_recorded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(2)}, str(f))
    with caplog.at_level(logging.WARNING, logger="safeload"):
        for _ in range(3):
            safeload.load(f)
    unsigned = [r for r in caplog.records if "unsigned" in r.getMessage()]
    assert len(unsigned) == 1
    entries = [r.entry for r in read_ledger().records
               if r.entry is not None and r.entry.action == "load"]
    assert entries and all(any("unsigned" in w for w in e.warnings) for e in entries)


def test_another_file_gets_its_own_warning(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    for i in range(2):
        save_file({"w": torch.full((2,), float(i))}, str(tmp_path / f"{i}.safetensors"))
    with caplog.at_level(logging.WARNING, logger="safeload"):
        for i in range(2):
            safeload.load(tmp_path / f"{i}.safetensors")
    assert len([r for r in caplog.records if "unsigned" in r.getMessage()]) == 2
