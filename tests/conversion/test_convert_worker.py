"""The long-lived converter worker: one sandboxed child serves a process's small pickles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import safeload
from safeload._internal import convert_worker, paths
from safeload.errors import UnsafeCheckpointError


@pytest.fixture(autouse=True)
def _fresh_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(convert_worker.ENV_SWITCH, "1")
    convert_worker.shutdown()
    yield
    convert_worker.shutdown()


def _small(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        p = tmp_path / f"f{i}.pt"
        torch.save({"w": torch.full((4, 4), float(i)), "step": i}, p)
        out.append(p)
    return out


def test_one_worker_serves_many_small_pickles(tmp_path: Path) -> None:
    files = _small(tmp_path, 5)
    first = safeload.load(files[0])
    worker = convert_worker._worker
    assert worker is not None and worker.proc is not None
    pid = worker.proc.pid
    for i, p in enumerate(files[1:], 1):
        got = safeload.load(p)
        assert torch.equal(got["w"], torch.full((4, 4), float(i))) and got["step"] == i
    assert convert_worker._worker is worker and worker.proc.pid == pid and worker.count == 5
    assert first["step"] == 0
    # Each output is a copy the worker cannot reach; the worker's own copy of the last one is
    # removed while the next input converts, so at most one output is left in its folder.
    assert [p.name for p in worker.dir.iterdir()] == ["out-4"]
    convert_worker.shutdown()
    assert not worker.dir.exists()


def test_a_killed_worker_is_replaced_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    files = _small(tmp_path, 2)
    safeload.load(files[0])
    worker = convert_worker._worker
    assert worker is not None and worker.proc is not None
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    got = safeload.load(files[1])  # falls back to a fresh child, then a new worker
    assert got["step"] == 1
    entries = [p for p in paths.converted_dir().iterdir() if not p.name.startswith(".")]
    assert len(entries) == 2 and all((e / "model.safetensors").is_file() for e in entries)


def test_worker_input_limit_starts_a_new_worker(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert_worker, "MAX_INPUTS", 2)
    pids = set()
    for p in _small(tmp_path, 4):
        safeload.load(p)
        assert convert_worker._worker is not None and convert_worker._worker.proc is not None
        pids.add(convert_worker._worker.proc.pid)
    assert len(pids) == 2


class _Canary:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_after_the_worker_started_never_fires(tmp_path: Path) -> None:
    safeload.load(_small(tmp_path, 1)[0])  # the worker is up
    marker = tmp_path / "fired"
    bad = tmp_path / "bad.pt"
    torch.save({"w": torch.ones(2), "x": _Canary(marker)}, bad)
    with pytest.raises(UnsafeCheckpointError):
        safeload.load(bad)
    assert not marker.exists()
    # The control: the real loader runs the same file's payload.
    subprocess.run([sys.executable, "-c", "import sys, torch; torch.load(sys.argv[1], "
                    "weights_only=False)", str(bad)], check=True, capture_output=True)
    assert marker.exists()


def test_no_worker_folder_outlives_the_process(tmp_path: Path) -> None:
    files = _small(tmp_path, 2)
    code = ("import sys, safeload\n"
            "for p in sys.argv[1:]:\n"
            "    safeload.load(p)\n")
    env = {**os.environ, convert_worker.ENV_SWITCH: "1"}
    subprocess.run([sys.executable, "-c", code, *map(str, files)], check=True, env=env,
                   capture_output=True)
    leftovers = [p.name for p in paths.converted_dir().iterdir() if p.name.startswith(".")]
    assert leftovers == []
