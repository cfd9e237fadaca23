"""Lightning's `AttributeDict` (Lightning 1.0-1.1 saved hyper-parameters as one, see
Lightning-AI/pytorch-lightning#4542): a dict subclass that only adds attribute access. It loads
as torch.load loads it when Lightning is installed, as a plain dict (one warning) when not;
nothing the pickle names is called. The 1.x module is a stand-in with Lightning's class body
under its real name; the 2.x classes are the installed Lightning's (a test dependency)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import safeload

_CLASS = '''
from typing import Any, Dict
class AttributeDict(Dict):
    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as exp:
            raise AttributeError(f'Missing attribute "{key}"') from exp
    def __setattr__(self, key: str, val: Any) -> None:
        self[key] = val
'''


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_HOME", str(tmp_path / "safeload-home"))


@pytest.fixture
def lightning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    root = tmp_path / "site"
    pkg = root / "pytorch_lightning" / "utilities"
    pkg.mkdir(parents=True)
    (root / "pytorch_lightning" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "parsing.py").write_text(_CLASS)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield importlib.import_module("pytorch_lightning.utilities.parsing")
    for name in [m for m in sys.modules if m.startswith("pytorch_lightning")]:
        del sys.modules[name]


def _checkpoint(lightning: Any, path: Path) -> dict[str, Any]:
    attr = lightning.AttributeDict
    obj = {"state_dict": {"w": torch.ones(2)},
           "hyper_parameters": attr(lr=0.1, layers=[1, 2], nested=attr(x=1))}
    torch.save(obj, path)
    return obj


def test_attribute_dict_loads_as_torch_load(lightning: Any, tmp_path: Path) -> None:
    path = tmp_path / "old.ckpt"
    _checkpoint(lightning, path)
    ref = torch.load(path, weights_only=False)
    got = safeload.load(path)
    hp = got["hyper_parameters"]
    assert type(hp) is lightning.AttributeDict and hp == ref["hyper_parameters"]
    assert type(hp["nested"]) is lightning.AttributeDict and hp.lr == 0.1
    assert list(hp) == list(ref["hyper_parameters"])


def test_attribute_dict_without_lightning_is_a_plain_dict(lightning: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    path = tmp_path / "old.ckpt"
    obj = _checkpoint(lightning, path)
    for name in [m for m in sys.modules if m.startswith("pytorch_lightning")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)  # import fails: not installed
    monkeypatch.setattr("safeload._internal.structure._warned_attribute_dict", False)
    got = safeload.load(path)
    hp = got["hyper_parameters"]
    assert type(hp) is dict and type(hp["nested"]) is dict
    assert hp == {"lr": 0.1, "layers": [1, 2], "nested": {"x": 1}} == obj["hyper_parameters"]
    assert any("plain dicts" in r.getMessage() for r in caplog.records)


def test_attribute_dict_with_a_state_or_arguments_is_refused(lightning: Any,
                                                             tmp_path: Path) -> None:
    # Only NEWOBJ with no arguments and dict items: a BUILD state or constructor arguments
    # would be something else than the class Lightning pickles.
    from safeload.errors import UnsafeCheckpointError

    g = b"\x80\x02cpytorch_lightning.utilities.parsing\nAttributeDict\n"
    for body in (g + b"(K\x01t\x81.", g + b")\x81}(X\x01\x00\x00\x00aK\x01ub."):
        path = tmp_path / "odd.pkl"
        path.write_bytes(body)
        with pytest.raises(UnsafeCheckpointError):
            safeload.load(path)


@pytest.mark.parametrize("module", ["lightning.fabric.utilities.data",
                                    "lightning_fabric.utilities.data"])
def test_installed_lightning_attribute_dicts_load(module: str, tmp_path: Path) -> None:
    attr = importlib.import_module(module).AttributeDict
    path = tmp_path / "new.ckpt"
    torch.save({"hparams": attr(lr=0.5, name="m")}, path)
    got, ref = safeload.load(path), torch.load(path, weights_only=False)
    assert type(got["hparams"]) is type(ref["hparams"]) is attr
    assert got["hparams"] == ref["hparams"] and got["hparams"].lr == 0.5
