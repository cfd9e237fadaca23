"""`safeload.guard()`: third-party code that calls torch.load gets safeload.load instead.

Hostile files are only ever loaded in this process under the guard; every control that shows
the payload really fires runs in a subprocess.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload import guard as guard_module
from safeload.errors import UnsafeCheckpointError

ORIGINAL_LOAD = torch.serialization.load

LIBRARY = '''
import torch


def load_weights(path):
    # What libraries do: an attribute lookup at call time, and the old unsafe default.
    return torch.load(path, map_location="cpu", weights_only=False)
'''

EARLY_BINDING = '''
from torch import load


def load_weights(path):
    return load(path, map_location="cpu")
'''


class Canary:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def always_uninstalled() -> Iterator[None]:
    yield
    while guard_module.installed():  # a failed test must not leave torch patched
        guard_module.uninstall()
    assert torch.load is ORIGINAL_LOAD and torch.serialization.load is ORIGINAL_LOAD


def _module(tmp_path: Path, name: str, source: str) -> ModuleType:
    (tmp_path / f"{name}.py").write_text(source)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def _canary(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "CANARY-FIRED"
    path = tmp_path / "hostile.pt"
    torch.save({"w": torch.ones(2), "x": Canary(marker)}, path)
    return path, marker


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "SAFELOAD_HOME": str(home), "HF_HUB_OFFLINE": "1",
            "PYTHONWARNINGS": "ignore"}


@pytest.mark.filterwarnings("ignore:safeload.load does not honour")
def test_library_call_on_a_canary_is_refused_under_guard(tmp_path: Path) -> None:
    path, marker = _canary(tmp_path)
    lib = _module(tmp_path, "thirdparty_lib", LIBRARY)
    with safeload.guard(), pytest.raises(UnsafeCheckpointError, match="system"):
        lib.load_weights(path)
    safeload.install()
    try:
        with pytest.raises(UnsafeCheckpointError):
            torch.serialization.load(path, weights_only=False)
    finally:
        safeload.uninstall()
    assert not marker.exists()


def test_control_without_guard_the_payload_fires(tmp_path: Path, isolated_home: Path) -> None:
    path, marker = _canary(tmp_path)
    (tmp_path / "thirdparty_lib.py").write_text(LIBRARY)
    code = f"import thirdparty_lib; thirdparty_lib.load_weights({str(path)!r})"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(isolated_home),
                   check=False, timeout=120, capture_output=True)
    assert marker.exists()  # so the refusal above is real


def test_benign_files_load_identically(tmp_path: Path) -> None:
    lib = _module(tmp_path, "thirdparty_lib", LIBRARY)
    sd = {"w": torch.randn(3, 4), "b": torch.arange(5), "nested": {"h": torch.ones(2)}}
    zipped, legacy, st = tmp_path / "z.pt", tmp_path / "legacy.pt", tmp_path / "w.safetensors"
    torch.save(sd, zipped)
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    save_file({"w": sd["w"]}, str(st))
    direct = {p: ORIGINAL_LOAD(p, weights_only=True) for p in (zipped, legacy)}
    with safeload.guard():
        assert getattr(torch.load, "__safeload_guard__", False)
        for p, expected in direct.items():
            got = lib.load_weights(p)
            assert got.keys() == expected.keys()
            assert torch.equal(got["w"], expected["w"]) and torch.equal(got["b"], expected["b"])
            assert torch.equal(got["nested"]["h"], expected["nested"]["h"])
        assert torch.equal(lib.load_weights(st)["w"], sd["w"])  # safetensors load too


def test_uninstall_restores_the_originals_and_counts(tmp_path: Path) -> None:
    safeload.install()
    safeload.install()
    wrapped = torch.load
    assert wrapped is not ORIGINAL_LOAD and torch.serialization.load is not ORIGINAL_LOAD
    safeload.uninstall()
    assert torch.load is wrapped  # still one install outstanding
    safeload.uninstall()
    assert torch.load is ORIGINAL_LOAD and torch.serialization.load is ORIGINAL_LOAD
    with pytest.raises(RuntimeError, match="not installed"):
        safeload.uninstall()
    # A wrapper that escaped (kept by someone) falls through to torch once uninstalled.
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(1)}, path)
    assert torch.equal(wrapped(path, weights_only=True)["w"], torch.ones(1))
    # Nested context managers: the outer one keeps the guard on.
    with safeload.guard():
        with safeload.guard():
            pass
        assert guard_module.installed()
    assert not guard_module.installed()


def test_install_counting_is_thread_safe() -> None:
    barrier = threading.Barrier(8)

    def churn() -> None:
        barrier.wait()
        for _ in range(200):
            with safeload.guard():
                assert getattr(torch.load, "__safeload_guard__", False)

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not guard_module.installed() and torch.load is ORIGINAL_LOAD


def test_what_it_cannot_catch_a_load_bound_before_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = safeload.load

    def spy(f: Any, *a: Any, **k: Any) -> Any:
        calls.append(f)
        return real(f, *a, **k)

    monkeypatch.setattr("safeload.loading.load", spy)
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, path)
    early = _module(tmp_path, "early_binding", EARLY_BINDING)  # `from torch import load` now
    with safeload.guard():
        late = _module(tmp_path, "late_binding", EARLY_BINDING)  # bound while guarded
        early.load_weights(path)
        assert calls == []  # the documented gap: the early binding is torch's own load
        late.load_weights(path)
        assert calls == [path]
    assert "from torch import load" in (guard_module.__doc__ or "")


def test_the_module_is_the_context_manager_too() -> None:
    import safeload.guard

    assert callable(safeload.guard)  # the package attribute is now the module
    with safeload.guard():
        assert guard_module.installed()
    assert not guard_module.installed()


def test_transformers_imported_after_install_is_patched(tmp_path: Path,
                                                        isolated_home: Path) -> None:
    pytest.importorskip("transformers")
    path, marker = _canary(tmp_path)
    good = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.arange(3.0)}, good)
    code = textwrap.dedent(f"""
        import sys, torch, safeload
        from safeload.errors import UnsafeCheckpointError
        safeload.install()
        from transformers import modeling_utils as mu
        assert getattr(mu.load_state_dict, "__safeload_guard__", False), "not patched"
        assert torch.equal(mu.load_state_dict({str(good)!r})["w"], torch.arange(3.0))
        try:
            mu.load_state_dict({str(path)!r}, weights_only=False)
        except UnsafeCheckpointError:
            print("REFUSED")
        safeload.uninstall()
        assert not getattr(mu.load_state_dict, "__safeload_guard__", False), "not restored"
        with safeload.guard():  # already imported this time: patched directly
            assert getattr(mu.load_state_dict, "__safeload_guard__", False), "not re-patched"
        assert not getattr(mu.load_state_dict, "__safeload_guard__", False), "not restored"
        print("RESTORED")
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(isolated_home),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REFUSED" in done.stdout and "RESTORED" in done.stdout
    assert not marker.exists()
