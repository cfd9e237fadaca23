"""torch.distributed.checkpoint (DCP) folders under the guard (review S, finding 1): DCP reads
`.metadata` with plain `pickle.load`, so a hostile folder ran its payload while guarded. The
guard refuses DCP metadata; a control shows the same folder fires under plain DCP."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import safeload
from safeload import guard as guard_module
from safeload.errors import UnsafeCheckpointError

dcp = pytest.importorskip("torch.distributed.checkpoint")


class _Canary:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def _uninstalled() -> Iterator[None]:
    yield
    while guard_module.installed():
        guard_module.uninstall()


def _hostile_dcp(tmp_path: Path) -> tuple[Path, Path]:
    folder, marker = tmp_path / "ckpt", tmp_path / "CANARY-FIRED"
    dcp.save({"w": torch.ones(3)}, checkpoint_id=str(folder))
    (folder / ".metadata").write_bytes(pickle.dumps(_Canary(marker)))
    return folder, marker


def _load(folder: Path) -> None:
    dcp.load({"w": torch.zeros(3)}, checkpoint_id=str(folder))


@pytest.mark.filterwarnings("ignore")
def test_dcp_metadata_is_refused_under_the_guard(tmp_path: Path) -> None:
    folder, marker = _hostile_dcp(tmp_path)
    with safeload.guard(), pytest.raises(BaseException) as info:  # DCP: a BaseException
        _load(folder)
    assert not marker.exists()
    # DCP wraps the reader's exception in its CheckpointException, message and all
    assert isinstance(info.value, UnsafeCheckpointError) or "safeload" in str(info.value)
    reader = dcp.FileSystemReader(str(folder))
    with safeload.guard(), pytest.raises(UnsafeCheckpointError, match=r"\.metadata.*DCP"):
        reader.read_metadata()
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore")
def test_dcp_outside_the_guard_is_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "good"
    dcp.save({"w": torch.arange(3.0)}, checkpoint_id=str(folder))
    with safeload.guard():
        pass
    state = {"w": torch.zeros(3)}
    dcp.load(state, checkpoint_id=str(folder))
    assert torch.equal(state["w"], torch.arange(3.0))


def test_control_plain_dcp_runs_the_payload(tmp_path: Path) -> None:
    folder, marker = _hostile_dcp(tmp_path)
    code = ("import torch, torch.distributed.checkpoint as dcp, sys\n"
            "try:\n    dcp.load({'w': torch.zeros(3)}, checkpoint_id=sys.argv[1])\n"
            "except Exception:\n    pass\n")
    subprocess.run([sys.executable, "-c", code, str(folder)], check=False, timeout=120,
                   capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert marker.exists()  # so the refusal above is real
