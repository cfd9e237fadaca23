"""The torch hub cache (`$TORCH_HOME/hub/checkpoints`): `cache scan|convert --torch-hub`, and the
guard's `torch.hub.load_state_dict_from_url` (a `file://` URL, and a pre-filled hub cache).

Hostile files are loaded in this process only under the guard or the scan; the control that
shows the pre-filled hostile file really fires under torch's own loader runs in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.hub
from safetensors.torch import save_file

import safeload
from safeload import guard as guard_module
from safeload._cli import main
from safeload._internal import sandbox, torchhub
from safeload.errors import DigestMismatchError, UnsafeCheckpointError
from safeload.provenance import read_ledger


class Canary:
    """Pickles as `os.system("touch <marker>")`: the payload only ever creates a marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _hub_name(stem: str, path: Path) -> str:
    """torch's `check_hash` convention: `stem-<first 8 hex of the sha256>.pth`."""
    return f"{stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}.pth"


@pytest.fixture(autouse=True)
def always_uninstalled() -> Iterator[None]:
    yield
    while guard_module.installed():
        guard_module.uninstall()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub checkpoints folder under a private TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no set_dir from another test
    d = tmp_path / "torch-home" / "hub" / "checkpoints"
    d.mkdir(parents=True)
    return d


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A folder of files served by `file://` URLs: a torchvision-style state dict."""
    src = tmp_path / "served"
    src.mkdir()
    torch.manual_seed(0)
    tmp = src / "tmp.pth"
    torch.save({"conv.weight": torch.randn(4, 3), "bn.bias": torch.arange(4.0)}, tmp)
    tmp.rename(src / _hub_name("tinynet", tmp))
    return src


def _one(src: Path) -> Path:
    return next(src.glob("tinynet-*.pth"))


def _fill(hub: Path, marker: Path) -> dict[str, Path]:
    """A pre-filled hub cache: clean, tampered, hostile, safetensors."""
    torch.manual_seed(1)
    tmp = hub / "tmp"
    torch.save({"fc.weight": torch.randn(3, 2)}, tmp)
    clean = hub / _hub_name("resnet-ish", tmp)
    tmp.rename(clean)
    torch.save({"fc.weight": torch.zeros(5)}, tmp)
    tampered = hub / _hub_name("vgg-ish", tmp)
    tmp.rename(tampered)
    data = bytearray(tampered.read_bytes())
    data[-30] ^= 0xFF  # the name no longer gives this content's digest
    tampered.write_bytes(bytes(data))
    hostile = hub / "hostile_model.pth"
    torch.save({"w": torch.ones(2), "x": Canary(marker)}, hostile)
    st = hub / "vit.safetensors"
    save_file({"w": torch.ones(3)}, str(st))
    return {"clean": clean, "tampered": tampered, "hostile": hostile, "safetensors": st}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def _statuses(doc: dict[str, Any]) -> dict[str, str]:
    (repo,) = doc["repos"]
    assert repo["repo_type"] == "torch-hub"
    return {f["name"]: f["status"] for r in repo["revisions"] for f in r["files"]}


# ------------------------------------------------------------------------------------------
# Where the cache is


def test_the_folder_follows_torch_home_and_set_dir(hub: Path, tmp_path: Path) -> None:
    assert torchhub.checkpoints_dir() == hub
    assert torchhub.checkpoints_dir() == Path(torch.hub.get_dir()) / "checkpoints"
    torch.hub.set_dir(str(tmp_path / "elsewhere"))
    assert torchhub.checkpoints_dir() == tmp_path / "elsewhere" / "checkpoints"


def test_without_torch_imported_the_environment_rule_is_torchs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
    code = ("import sys; from safeload._internal import torchhub; "
            "print(torchhub.checkpoints_dir()); assert 'torch' not in sys.modules")
    cases = (({"TORCH_HOME": str(tmp_path / "th")}, tmp_path / "th" / "hub"),
             ({"XDG_CACHE_HOME": str(tmp_path / "x")}, tmp_path / "x" / "torch" / "hub"))
    for extra, want in cases:
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, check=True,
                             capture_output=True, text=True).stdout.strip()
        assert out == str(want / "checkpoints")


def test_the_name_prefix_is_torchs_hash_regex() -> None:
    assert torchhub.name_prefix("resnet18-f37072fd.pth") == "f37072fd"
    assert torchhub.name_prefix("efficientnet_b0_rwightman-7f5810bc.pth") == "7f5810bc"
    assert torchhub.name_prefix("model-abc.pth") is None  # fewer than 8 digits: not a digest
    assert torchhub.name_prefix("model.pth") is None


# ------------------------------------------------------------------------------------------
# cache scan / convert --torch-hub


def test_scan_classifies_by_bytes_and_the_canary_never_fires(
        hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "CANARY-FIRED"
    files = _fill(hub, marker)
    code, doc = _run(["cache", "scan", "--torch-hub", "--json"], capsys)
    assert code == 1 and doc["cache_dir"] == str(hub)
    assert _statuses(doc) == {files["clean"].name: "convertible",
                              files["tampered"].name: "tampered",
                              "hostile_model.pth": "unsafe", "vit.safetensors": "safetensors"}
    assert not marker.exists()
    code = main(["cache", "scan", "--torch-hub"])
    text = capsys.readouterr().out
    assert code == 1 and "torch hub checkpoints" in text and "does not start with" in text


def test_scan_with_an_explicit_folder_and_a_clean_cache_exits_zero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "ckpts"
    d.mkdir()
    torch.save({"w": torch.ones(2)}, d / "plain.pth")
    code, doc = _run(["cache", "scan", "--torch-hub", "--cache-dir", str(d), "--json"], capsys)
    assert code == 0 and _statuses(doc) == {"plain.pth": "convertible"}


def test_torch_hub_refuses_hf_only_flags(hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "scan", "--torch-hub", "--repo", "a/b"]) == 2
    assert main(["cache", "convert", "--torch-hub", "--write-to-hub-cache"]) == 2
    assert "--torch-hub" in capsys.readouterr().err


def test_a_refused_pickle_policy_is_the_files_status(
        hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(hub, tmp_path / "CANARY-FIRED")
    assert main(["trust", "init"]) == 0
    assert main(["trust", "policy", "--pickles", "refuse"]) == 0
    capsys.readouterr()
    _, doc = _run(["cache", "scan", "--torch-hub", "--json"], capsys)
    assert {s for n, s in _statuses(doc).items() if n.startswith("resnet")} == {"refused"}


def test_convert_then_the_guarded_load_is_served_from_the_store(
        hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "CANARY-FIRED"
    files = _fill(hub, marker)
    before = {p.name: p.read_bytes() for p in hub.iterdir()}
    code, doc = _run(["cache", "convert", "--torch-hub", "--dry-run", "--json"], capsys)
    assert {f["name"]: f["action"] for f in doc["files"]}[files["clean"].name] == "would-convert"
    code, doc = _run(["cache", "convert", "--torch-hub", "--json"], capsys)
    actions = {f["name"]: f["action"] for f in doc["files"]}
    assert code == 1  # the tampered and hostile files are reported
    assert actions == {files["clean"].name: "converted", files["tampered"].name: "tampered",
                       "hostile_model.pth": "unsafe", "vit.safetensors": "skipped"}
    assert {p.name: p.read_bytes() for p in hub.iterdir()} == before  # the folder is untouched
    assert not marker.exists()
    _, doc = _run(["cache", "convert", "--torch-hub", "--json"], capsys)
    assert {f["name"]: f["action"] for f in doc["files"]}[files["clean"].name] == \
        "already-converted"
    _, doc = _run(["cache", "scan", "--torch-hub", "--json"], capsys)
    assert _statuses(doc)[files["clean"].name] == "converted"

    def no_child(*a: Any, **k: Any) -> Any:
        raise AssertionError("a converter child ran: the store entry was not used")

    monkeypatch.setattr(sandbox, "run_worker", no_child)
    monkeypatch.setenv("SAFELOAD_CONVERT_WORKER", "0")  # one-shot children only
    url = f"file://{tmp_path}/nowhere/{files['clean'].name}"  # never fetched: it is cached
    with safeload.guard():
        sd = torch.hub.load_state_dict_from_url(url, map_location="cpu")
    torch.manual_seed(1)
    assert torch.equal(sd["fc.weight"], torch.randn(3, 2))


# ------------------------------------------------------------------------------------------
# The guard's load_state_dict_from_url


def test_file_url_download_loads_verified_and_is_recorded(hub: Path, served: Path) -> None:
    src = _one(served)
    with safeload.guard():
        sd = torch.hub.load_state_dict_from_url(src.as_uri(), check_hash=True,
                                                progress=False)
    torch.manual_seed(0)
    assert torch.equal(sd["conv.weight"], torch.randn(4, 3))
    assert (hub / src.name).read_bytes() == src.read_bytes()
    safeload.provenance.flush()
    entry = [r.entry for r in read_ledger().records if r.entry is not None][-1]
    assert entry.source.path == str(hub / src.name)
    assert entry.converted_from is not None
    assert entry.converted_from.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


def test_prefilled_hostile_file_is_refused_and_never_fires(
        hub: Path, served: Path, tmp_path: Path) -> None:
    marker = tmp_path / "CANARY-FIRED"
    src = _one(served)
    plain = served / "tinynet.pth"  # a URL whose name asserts no digest
    plain.write_bytes(src.read_bytes())
    # An attacker wrote the cache entries before the download: torch.hub never fetches again.
    for name in (src.name, plain.name):
        torch.save({"w": torch.ones(2), "x": Canary(marker)}, hub / name)
    with safeload.guard(), pytest.raises(DigestMismatchError):  # its name already refuses it
        torch.hub.load_state_dict_from_url(src.as_uri(), weights_only=False)
    with safeload.guard(), pytest.raises(UnsafeCheckpointError):  # its bytes do
        torch.hub.load_state_dict_from_url(plain.as_uri(), weights_only=False)
    assert not marker.exists()


def test_prefilled_tampered_file_is_refused_by_its_name(hub: Path, served: Path) -> None:
    src = _one(served)
    data = bytearray(src.read_bytes())
    data[-30] ^= 0xFF
    (hub / src.name).write_bytes(bytes(data))
    with safeload.guard(), pytest.raises(DigestMismatchError, match="torch hub file name"):
        torch.hub.load_state_dict_from_url(src.as_uri())
    # The same bytes outside the checkpoints folder assert nothing by their name.
    other = hub.parent / src.name
    other.write_bytes(bytes(data))
    with safeload.guard(), pytest.raises(UnsafeCheckpointError):
        safeload.load(other)  # refused for its broken zip, not for its name


def test_control_the_prefilled_hostile_file_fires_under_torchs_own_loader(
        tmp_path: Path, served: Path) -> None:
    marker = tmp_path / "CANARY-FIRED"
    home = tmp_path / "control-home"
    ckpts = home / "hub" / "checkpoints"
    ckpts.mkdir(parents=True)
    src = _one(served)
    torch.save({"w": torch.ones(2), "x": Canary(marker)}, ckpts / src.name)
    code = textwrap.dedent(f"""
        import torch.hub
        torch.hub.load_state_dict_from_url({src.as_uri()!r}, weights_only=False)
    """)
    env = {**os.environ, "TORCH_HOME": str(home), "PYTHONPATH": str(Path(__file__).parent)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                   cwd=Path(__file__).parent)
    assert marker.exists()
