"""Clean pickle verdicts are remembered by content digest (a repeat load is not walked by the
symbolic machine again), and never let other bytes, or tighter bounds, through."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import safeload
from safeload import pipeline
from safeload.errors import SafeloadError, UnsafeCheckpointError


class _Canary:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _count_inspections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = pipeline.inspect_bytes

    def counting(buf: object, *, name: str = "", depth: int = 0, text_ok: bool = False) -> object:
        calls.append(name)
        return real(buf, name=name, depth=depth, text_ok=text_ok)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "inspect_bytes", counting)
    return calls


def test_a_repeat_load_of_a_clean_pickle_is_not_inspected_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_inspections(monkeypatch)
    path = tmp_path / "w.pt"
    torch.save({"w": torch.arange(6.0)}, path)
    for _ in range(3):
        assert torch.equal(safeload.load(path)["w"], torch.arange(6.0))
    assert len(calls) == 1


def test_a_payload_after_a_clean_load_of_the_same_name_is_still_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_inspections(monkeypatch)
    marker = tmp_path / "fired"
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, path)
    safeload.load(path)
    torch.save({"w": torch.zeros(2), "x": _Canary(marker)}, path)  # same name, same size class
    with pytest.raises(UnsafeCheckpointError):
        safeload.load(path)
    assert len(calls) == 2 and not marker.exists()
    # control: the real unpickler fires it
    subprocess.run([sys.executable, "-c", "import torch,sys; torch.load(sys.argv[1], "
                    "weights_only=False)", str(path)], check=False, capture_output=True,
                   cwd=Path(__file__).resolve().parent)
    assert marker.exists()


def test_tighter_inspection_bounds_inspect_again(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"w": list(range(2000))}, protocol=4))
    safeload.load(path)
    monkeypatch.setenv("SAFELOAD_MAX_PICKLE_OPS", "100")
    with pytest.raises(SafeloadError, match="SAFELOAD_MAX_PICKLE_OPS"):
        safeload.load(path)
    monkeypatch.delenv("SAFELOAD_MAX_PICKLE_OPS")
    assert safeload.load(path) == {"w": list(range(2000))}
