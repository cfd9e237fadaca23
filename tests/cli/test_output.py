"""`safeload._cli._output`: one result per command, rendered once; the format's sources."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import safeload._cli as cli
from safeload import errors
from safeload._cli import main
from safeload._cli._output import Output, resolve_format


def test_exit_codes_are_public_constants_the_cli_uses() -> None:
    assert (errors.EXIT_OK, errors.EXIT_REFUSED, errors.EXIT_ERROR) == (0, 1, 2)
    assert (cli.EXIT_OK, cli.EXIT_REFUSED, cli.EXIT_ERROR) == (0, 1, 2)
    assert cli.exit_code(errors.UnsafeCheckpointError("x")) == errors.EXIT_REFUSED
    assert cli.exit_code(errors.TrustStoreError("x")) == errors.EXIT_ERROR
    assert cli.exit_code(OSError("x")) == errors.EXIT_ERROR


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_one_call_renders_one_format(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(fmt)  # type: ignore[arg-type]
    out.note("diagnostic")
    out.result({"ok": True, "n": 2}, text=["line one", "line two"], summary="2 things")
    stdout, stderr = capsys.readouterr()
    if fmt == "json":
        assert json.loads(stdout) == {"ok": True, "n": 2} and stdout.count("\n") == 1
        assert stderr == "diagnostic\n2 things\n"
    else:
        assert stdout == "line one\nline two\n2 things\n" and stderr == "diagnostic\n"


def test_a_second_result_is_a_bug_not_a_second_object() -> None:
    out = Output("json")
    out.result({"ok": True})
    with pytest.raises(RuntimeError):
        out.result({"ok": True})


def test_failure_after_a_result_prints_no_second_object(
        capsys: pytest.CaptureFixture[str]) -> None:
    out = Output("json")
    out.result({"ok": True})
    out.failure(errors.SafeloadError("late", hint="do this"))
    stdout, stderr = capsys.readouterr()
    assert [json.loads(ln) for ln in stdout.splitlines()] == [{"ok": True}]
    assert "error: late" in stderr and "fix: do this" in stderr


def test_interrupt_in_json_mode_still_prints_one_object(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    def interrupted(*a: object, **k: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr("safeload.scanning.scan_paths", interrupted)
    assert main(["scan", str(tmp_path), "--json"]) == 130
    stdout, stderr = capsys.readouterr()
    assert json.loads(stdout)["error"] == {"type": "KeyboardInterrupt", "message": "interrupted"}
    assert "interrupted" in stderr


def _ns(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def test_format_precedence_flag_then_environment_then_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAFELOAD_FORMAT", raising=False)
    assert resolve_format(_ns(format=None, formats=("text", "json"))) == "text"
    monkeypatch.setenv("SAFELOAD_FORMAT", " JSON ")
    assert resolve_format(_ns(format=None, formats=("text", "json"))) == "json"
    assert resolve_format(_ns(format="text", formats=("text", "json"))) == "text"  # flag wins
    monkeypatch.setenv("SAFELOAD_FORMAT", "sarif")
    assert resolve_format(_ns(format=None, formats=("text", "json", "sarif"))) == "sarif"
    # A command without SARIF answers the CI-wide default with JSON, still machine-readable.
    assert resolve_format(_ns(format=None, formats=("text", "json"))) == "json"
    monkeypatch.setenv("SAFELOAD_FORMAT", "xml")
    with pytest.raises(errors.SafeloadError, match="SAFELOAD_FORMAT=xml"):
        resolve_format(_ns(format=None))


def test_safeload_format_reaches_every_command(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("SAFELOAD_FORMAT", "sarif")
    store = tmp_path / "trust.json"
    assert main(["trust", "list", "--trust-store", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)["exists"] is False
    assert main(["provenance", "verify"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    monkeypatch.setenv("SAFELOAD_FORMAT", "text")
    assert main(["--json", "provenance", "verify"]) == 0  # the flag, before the command, wins
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_sarif_is_refused_where_a_command_has_no_sarif_form(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trust", "list", "--format", "sarif"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_documents_the_environment_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "SAFELOAD_FORMAT" in text and "SAFELOAD_TRUST_STORE" in text
    assert main(["cache", "scan", "--help"]) == 0
    assert "$SAFELOAD_FORMAT" in capsys.readouterr().out


# Every command, driven into a failure it must report (missing inputs, refusals): stdout holds
# exactly one JSON object either way, and the exit code says which kind of failure it was.
_FAILURES: list[tuple[list[str], int]] = [
    (["scan", "{tmp}/missing"], 2),
    (["convert", "{tmp}/missing.pt"], 2),
    (["convert", "{tmp}/evil.pt"], 1),
    (["cache", "scan", "--cache-dir", "{tmp}/missing"], 2),
    (["cache", "convert", "--cache-dir", "{tmp}/missing"], 2),
    (["provenance", "show", "7"], 2),
    (["provenance", "verify", "--anchor", "sha256:" + "0" * 63 + "1"], 1),
    (["provenance", "export", "-o", "{tmp}/exists.json"], 2),
    (["trust", "show", "nobody"], 2),
    (["trust", "revoke-digest", "a" * 64], 2),  # destructive, no --yes: refuses to ask in JSON
    (["trust", "import", "{tmp}/missing.json"], 2),
    (["verify", "{tmp}/missing"], 2),
    (["sign", "{tmp}/model"], 2),
]


@pytest.mark.parametrize(("argv", "code"), _FAILURES, ids=[" ".join(a[:2]) for a, _ in _FAILURES])
def test_json_failure_is_exactly_one_object(argv: list[str], code: int, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R.")
    (tmp_path / "exists.json").write_text("{}")
    (tmp_path / "model").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*args, "--json"]) == code
    stdout, stderr = capsys.readouterr()
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    doc = json.loads(lines[0])
    assert doc["ok"] is False
    assert stderr  # and people get the reason on stderr


@pytest.mark.parametrize("argv", [["provenance", "list", "--since", "garbage", "--json"],
                                  ["scan", "--json", "--no-such-flag", "x"],
                                  ["provenance", "list", "--format", "json", "-n", "many"]])
def test_a_usage_error_with_json_still_prints_one_json_object(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # review U: argparse's usage errors printed nothing on stdout under --json
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and "usage:" in err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"]["type"] == "UsageError"
    assert "error:" in doc["error"]["message"]
