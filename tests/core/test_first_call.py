"""The first load pauses the cycle collector (its imports would set off a full collection over
torch's heap) and restores it, error or not; later loads leave it alone."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from safeload._internal import first_call


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(first_call, "_done", False)


def test_only_the_first_block_runs_with_the_collector_paused(fresh: None) -> None:
    assert gc.isenabled()
    with first_call.collector_paused_once():
        assert not gc.isenabled()
    assert gc.isenabled()
    with first_call.collector_paused_once():
        assert gc.isenabled()


def test_collector_is_restored_when_the_first_load_raises(fresh: None) -> None:
    with pytest.raises(OSError), first_call.collector_paused_once():
        raise OSError("boom")
    assert gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled(fresh: None) -> None:
    gc.disable()
    try:
        with first_call.collector_paused_once():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_real_first_load_leaves_the_collector_enabled(tmp_path: object) -> None:
    code = ("import gc, torch, safeload, sys\n"
            "torch.save({'w': torch.ones(2)}, sys.argv[1])\n"
            "safeload.load(sys.argv[1])\n"
            "print(gc.isenabled())\n")
    out = subprocess.run([sys.executable, "-c", code, f"{tmp_path}/w.pt"], check=True,
                         capture_output=True, text=True,
                         env={"SAFELOAD_HOME": f"{tmp_path}/home", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "True"
