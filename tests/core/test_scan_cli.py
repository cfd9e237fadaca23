"""`safeload scan`: verdicts by bytes, exit codes, JSON and SARIF output, escaping."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safeload._cli import main


class _Canary:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


class _Eval:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, ("1",))


def _tree(tmp_path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    root = tmp_path / "model"
    root.mkdir()
    torch.save({"w": torch.ones(2)}, root / "weights.bin")
    save_file({"w": torch.ones(2)}, str(root / "model.safetensors"))
    (root / "config.json").write_text('{"hidden": 4}')
    (root / "README.md").write_text("---\nlicense: mit\n---\n# card\n")
    return root


def test_clean_tree_exits_0_and_skips_non_model_files(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path)
    assert main(["scan", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    status = {Path(f["path"]).name: f["status"] for f in out["files"]}
    assert status == {"weights.bin": "clean", "model.safetensors": "clean",
                      "config.json": "skipped", "README.md": "skipped"}
    assert out["ok"] is True


def test_unsafe_file_with_innocent_name_exits_1(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path)
    marker = tmp_path / "marker"
    (root / "config.json").write_bytes(pickle.dumps(_Canary(marker)))  # name says JSON
    assert main(["scan", str(root), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    bad = [f for f in out["files"] if f["status"] == "unsafe"]
    assert [Path(f["path"]).name for f in bad] == ["config.json"]
    finding = bad[0]["findings"][0]
    assert finding["code"] == "global-not-allowed"
    assert finding["global"] == "io.open"
    assert finding["opcode"] == "STACK_GLOBAL"
    assert not marker.exists()


def test_canary_control_fires_under_plain_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    data = pickle.dumps(_Canary(marker))
    code = "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=data, check=True)
    assert marker.exists()


def test_verdict_text_goes_to_stdout_and_redirects(tmp_path: Path) -> None:
    """`safeload scan F > out` puts the verdict in the file; stderr stays for diagnostics."""
    bad = tmp_path / "x.pt"
    bad.write_bytes(pickle.dumps(_Canary(tmp_path / "m")))
    good = tmp_path / "ok.pkl"
    good.write_bytes(pickle.dumps({"a": 1}))
    report = tmp_path / "out.txt"
    with open(report, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "safeload", "scan", str(bad), str(good)],
                              stdout=fh, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1
    text = report.read_text()
    assert f"UNSAFE  {bad}" in text and "[global-not-allowed]" in text
    assert f"clean   {good}" in text
    assert "1 clean, 1 unsafe, 0 malformed, 0 skipped, 0 errors" in text
    assert "UNSAFE" not in proc.stderr and "clean" not in proc.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("argv", [["--json"], ["--format", "json"], ["--format=json"]])
def test_json_and_format_json_print_exactly_one_object(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    bad = tmp_path / "x.pt"
    bad.write_bytes(pickle.dumps(_Canary(tmp_path / "m")))
    assert main(["scan", str(bad), *argv]) == 1
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["ok"] is False and doc["summary"]["unsafe"] == 1
    assert "0 clean, 1 unsafe" in err  # the summary, for a person reading the CI log


def test_safeload_format_env_sets_the_default_and_a_flag_wins(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "a.pkl"
    f.write_bytes(pickle.dumps({"a": 1}))
    monkeypatch.setenv("SAFELOAD_FORMAT", "json")
    assert main(["scan", str(f)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    monkeypatch.setenv("SAFELOAD_FORMAT", "sarif")
    assert main(["scan", str(f)]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "2.1.0"
    assert main(["scan", str(f), "--format", "text"]) == 0
    assert capsys.readouterr().out.startswith("clean   ")
    monkeypatch.setenv("SAFELOAD_FORMAT", "yaml")
    assert main(["scan", str(f)]) == 2
    assert "SAFELOAD_FORMAT=yaml is not an output format" in capsys.readouterr().err


def test_sarif_has_the_required_structure_and_one_result_per_finding(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        sarif_shape: Callable[[dict[str, Any]], None]) -> None:
    bad = tmp_path / "x.pt"
    # Two different disallowed globals (io.open, builtins.eval): two findings, two results.
    bad.write_bytes(pickle.dumps([_Canary(tmp_path / "m"), _Eval()]))
    os.mkfifo(tmp_path / "pipe.pt")  # could not be decided: a result too
    (tmp_path / "ok.json").write_text("{}")
    assert main(["scan", str(tmp_path), "--format", "sarif"]) == 2
    sarif = json.loads(capsys.readouterr().out)
    sarif_shape(sarif)
    assert sarif["runs"][0]["results"]
    results = sarif["runs"][0]["results"]
    by_rule: dict[str, int] = {}
    for r in results:
        by_rule[r["ruleId"]] = by_rule.get(r["ruleId"], 0) + 1
    assert by_rule.get("scan-error") == 1
    findings = json.loads(_scan_json(tmp_path / "x.pt"))["files"][0]["findings"]
    assert sum(n for rule, n in by_rule.items() if rule != "scan-error") == len(findings) >= 2
    rules = {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert rules == set(by_rule)


def _scan_json(path: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "safeload", "scan", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    return proc.stdout


def test_scan_help_says_it_does_not_check_trust_or_signatures(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "no trust store or signature checks" in text and "safeload verify" in text


def test_sarif_output_names_the_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.pt"
    bad.write_bytes(pickle.dumps(_Canary(tmp_path / "m")))
    assert main(["scan", str(bad), "--format", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0"
    result = sarif["runs"][0]["results"][0]
    assert result["ruleId"] == "global-not-allowed"
    assert "io.open" in result["message"]["text"]


def test_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(tmp_path / "nope"), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["errors"]


def test_bad_usage_exits_2() -> None:
    assert main(["scan"]) == 2
    assert main(["no-such-command"]) == 2


def test_fifo_is_reported_never_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "pipe.pt")
    (tmp_path / "ok.json").write_text("{}")
    assert main(["scan", str(tmp_path), "--json"]) == 2  # returns: the FIFO was not opened
    out = json.loads(capsys.readouterr().out)
    assert any("FIFO" in e["message"] for e in out["errors"])


def test_symlink_loop_and_escape_are_reported(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(pickle.dumps({"a": 1}))
    (root / "loop").symlink_to(root / "loop")
    (root / "escape.pkl").symlink_to(outside)
    assert main(["scan", str(root), "--json"]) == 2
    messages = " ".join(e["message"] for e in json.loads(capsys.readouterr().out)["errors"])
    assert "looping" in messages and "leaves the tree" in messages


def test_attacker_strings_are_escaped_on_the_terminal(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # A global whose name carries a terminal escape sequence and a bidi override.
    evil_name = "x\x1b[2J\u202e"
    payload = (b"\x80\x04\x8c\x02os\x94\x8c" + bytes([len(evil_name.encode())])
               + evil_name.encode() + b"\x94\x93)R.")
    f = tmp_path / "e.pkl"
    f.write_bytes(payload)
    assert main(["scan", str(f)]) == 1
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\u202e" not in out + err
    assert "\\x1b" in out  # the verdict (a result) is on stdout


def test_scan_does_not_import_torch(tmp_path: Path) -> None:
    f = tmp_path / "a.pkl"
    f.write_bytes(pickle.dumps({"a": 1}))
    code = ("import sys; from safeload._cli import main; rc = main(['scan', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
