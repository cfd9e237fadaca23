"""The error tree's own promises."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import pytest
import torch

import safeload
from safeload.errors import UnsafeCheckpointError


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_a_traceback_shows_the_fix_and_str_stays_the_message(tmp_path: Path) -> None:
    # Review O: the remedy lived in `.hint` only, so an uncaught refusal never showed it.
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        safeload.load(path)
    shown = "".join(traceback.format_exception(info.value))
    assert "fix: this file holds a whole model object" in shown
    assert "fix:" not in str(info.value)
    assert info.value.diagnostics().count("fix:") == 1
