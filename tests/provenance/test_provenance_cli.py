"""`safeload provenance list|show|verify|export`: exit codes, one JSON object, escaping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from safeload._cli import main
from safeload._internal.paths import ledger_dir
from safeload.provenance import (
    FileRecord,
    LicenseRecord,
    ProvenanceEntry,
    PublisherRecord,
    Source,
    record,
)

EVIL = "evil\x1b[2J\x1b]0;pwned\x07\u202etxt"


def _fill(n: int = 3) -> list[str]:
    heads = []
    for i in range(n):
        heads.append(record(ProvenanceEntry(
            action="load",
            source=Source.huggingface("org/model", "e" * 40, f"model-{i}.safetensors"),
            files=(FileRecord(f"model-{i}.safetensors", f"{i:x}" * 64, 10 + i, "safetensors"),),
            license=LicenseRecord("Apache-2.0", "permissive", "model card"),
            datasets=(EVIL,), base_model=("org/base",),
            publisher=PublisherRecord("org", trusted=True, signature_verified=False),
            time=f"2026-01-0{i + 1}T12:00:00Z")))
    return heads


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_json(out: str) -> dict[str, Any]:
    lines = [x for x in out.splitlines() if x.strip()]
    assert len(lines) == 1, out
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


def _tamper() -> None:
    path = ledger_dir() / "ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"load"', b'"convert"')
    path.write_bytes(b"".join(lines))


def test_verify_empty_ledger(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "provenance", "verify", "--json")
    assert code == 0
    assert _one_json(out)["report"]["entries"] == 0
    assert "(empty ledger)" in err


def test_verify_prints_the_head(capsys: pytest.CaptureFixture[str]) -> None:
    heads = _fill()
    code, out, err = _run(capsys, "provenance", "verify")
    assert code == 0 and err == ""  # the result is on stdout
    assert f"head: {heads[-1]} (entry 2)" in out
    code, out, _ = _run(capsys, "--json", "provenance", "verify", "--anchor", heads[0])
    obj = _one_json(out)
    assert code == 0 and obj["ok"] and obj["report"]["head"] == heads[-1]


def test_verify_broken_chain_exits_1_and_names_the_entry(
        capsys: pytest.CaptureFixture[str]) -> None:
    _fill()
    _tamper()
    code, out, err = _run(capsys, "provenance", "verify", "--json")
    assert code == 1
    obj = _one_json(out)
    assert obj["ok"] is False
    assert obj["report"]["first_bad"] == {"line": 2, "seq": 1,
                                          "reason": "digest mismatch (the entry was edited)"}
    assert "ledger BROKEN at entry 1 (line 2): digest mismatch" in err
    # Same exit code without --json.
    assert _run(capsys, "provenance", "verify")[0] == 1


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    _fill()
    code, out, err = _run(capsys, "provenance", "list", "--json")
    obj = _one_json(out)
    assert code == 0 and obj["chain_ok"] is True
    assert [e["seq"] for e in obj["entries"]] == [0, 1, 2]
    assert obj["entries"][0]["entry"]["datasets"] == [EVIL]  # data stays data in JSON
    code, out, err = _run(capsys, "provenance", "list")
    assert code == 0 and err == ""  # the listing is a result: stdout
    assert "pkg:huggingface/org/model@" + "e" * 40 + " model-0.safetensors" in out
    assert "3 entries shown; head " in out
    code, out, _ = _run(capsys, "provenance", "list", "--since", "2026-01-02", "--json")
    assert [e["seq"] for e in _one_json(out)["entries"]] == [1, 2]


def _seqs(capsys: pytest.CaptureFixture[str], *argv: str) -> list[int]:
    code, out, _ = _run(capsys, "provenance", "list", *argv, "--json")
    assert code == 0
    return [e["seq"] for e in _one_json(out)["entries"]]


def test_list_limit_shows_the_newest_n_oldest_first(capsys: pytest.CaptureFixture[str]) -> None:
    _fill(5)
    assert _seqs(capsys, "--limit", "2") == [3, 4]
    assert _seqs(capsys, "-n", "1") == [4]
    assert _seqs(capsys, "--limit", "99") == [0, 1, 2, 3, 4]
    assert _seqs(capsys, "--since", "2026-01-02", "--limit", "3") == [2, 3, 4]
    assert _seqs(capsys, "--since", "2026-01-04T00:00:00Z", "--limit", "3") == [3, 4]
    code, out, _ = _run(capsys, "provenance", "list", "--limit", "2")
    assert [ln.split()[0] for ln in out.splitlines()[:2]] == ["3", "4"]
    for bad in ("0", "-1", "two"):
        assert _run(capsys, "provenance", "list", "--limit", bad)[0] == 2


def test_list_since_takes_iso_times_and_relative_ages(capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    for i, age in enumerate((timedelta(days=10), timedelta(hours=30), timedelta(minutes=90))):
        record(ProvenanceEntry(action="load", source=Source.local(f"/m/{i}.pt"),
                               time=(now - age).strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert _seqs(capsys, "--since", "2h") == [2]
    assert _seqs(capsys, "--since", "2d") == [1, 2]
    assert _seqs(capsys, "--since", "3w") == [0, 1, 2]
    assert _seqs(capsys, "--since", "120m") == [2]
    day = (now - timedelta(days=2)).strftime("%Y-%m-%d")
    assert _seqs(capsys, "--since", day) == [1, 2]  # an ISO date: midnight UTC
    stamp = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    assert _seqs(capsys, "--since", stamp) == [2]
    assert _seqs(capsys, "--since", "1m") == []


def test_list_warns_on_a_broken_chain(capsys: pytest.CaptureFixture[str]) -> None:
    _fill()
    _tamper()
    code, out, err = _run(capsys, "provenance", "list", "--json")
    assert code == 0
    obj = _one_json(out)
    assert obj["chain_ok"] is False
    assert [e["verified"] for e in obj["entries"]] == [True, False, False]
    assert "warning: ledger BROKEN" in err  # warnings are diagnostics: stderr in every format
    code, out, err = _run(capsys, "provenance", "list")
    assert "warning: ledger BROKEN" in err and "warning" not in out
    lines = out.splitlines()
    assert "line 2: not a valid entry" in lines[1]  # the edited entry no longer parses as one
    assert [("[UNVERIFIED]" in ln) for ln in lines[:3]] == [False, False, True]


def test_show_escapes_attacker_strings(capsys: pytest.CaptureFixture[str]) -> None:
    heads = _fill()
    code, out, err = _run(capsys, "provenance", "show", "-1")
    assert code == 0 and err == ""  # the entry is a result: stdout
    assert f"entry 2  {heads[-1]}  (chain verified)" in out
    assert "publisher  org, trusted yes, signature verified no" in out
    assert "licence    Apache-2.0 (permissive; from model card)" in out
    assert "base model org/base" in out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "evil\\x1b[2J" in out
    code, out, _ = _run(capsys, "provenance", "show", heads[0][7:19], "--json")
    assert code == 0 and _one_json(out)["record"]["seq"] == 0


@pytest.mark.parametrize("selector", ["7", "-9", "zz", "abc"])
def test_show_unknown_entry_exits_2(capsys: pytest.CaptureFixture[str], selector: str) -> None:
    _fill()
    code, out, _ = _run(capsys, "provenance", "show", selector, "--json")
    assert code == 2
    assert _one_json(out)["error"]["type"] == "ProvenanceError"


def test_export_to_file_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill()
    out_file = tmp_path / "bom.json"
    code, out, err = _run(capsys, "provenance", "export", "--format", "cyclonedx", "-o",
                          str(out_file), "--json")
    assert code == 0
    obj = _one_json(out)
    assert obj["components"] == 1 and obj["entries"] == 3
    text = out_file.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    # No silent overwrite.
    code, out, _ = _run(capsys, "provenance", "export", "-o", str(out_file), "--json")
    assert code == 2 and "overwrite" in _one_json(out)["error"]["message"]
    code, _, _ = _run(capsys, "provenance", "export", "-o", str(out_file), "--overwrite",
                      "--spec-version", "1.7", "--since", "2026-01-03")
    assert code == 0
    bom = json.loads(out_file.read_text())
    assert bom["specVersion"] == "1.7"
    assert JsonStrictValidator(SchemaVersion.V1_7).validate_str(out_file.read_text()) is None


def test_export_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    _fill(1)
    code, out, _ = _run(capsys, "provenance", "export")
    assert code == 0
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out) is None
    code, out, _ = _run(capsys, "provenance", "export", "--json")
    obj = _one_json(out)
    assert obj["ok"] and obj["bom"]["bomFormat"] == "CycloneDX"


def test_export_redacts_paths(capsys: pytest.CaptureFixture[str]) -> None:
    record(ProvenanceEntry(action="load",
                           source=Source.local("/home/carol/models/m.safetensors"),
                           files=(FileRecord("/home/carol/models/m.safetensors", "a" * 64, 1,
                                             "safetensors"),)))
    _, out, _ = _run(capsys, "provenance", "export")
    assert "carol" in out
    _, out, _ = _run(capsys, "provenance", "export", "--redact-paths")
    assert "carol" not in out and "~/models/m.safetensors" in out


def test_export_refuses_a_broken_chain(capsys: pytest.CaptureFixture[str]) -> None:
    _fill()
    _tamper()
    code, out, err = _run(capsys, "provenance", "export", "--json")
    assert code == 1
    assert _one_json(out)["error"]["type"] == "LedgerIntegrityError"
    code, out, err = _run(capsys, "provenance", "export", "--allow-broken", "--json")
    assert code == 0
    obj = _one_json(out)
    assert obj["chain_ok"] is False
    props = {p["name"]: p["value"] for p in obj["bom"]["metadata"]["properties"]}
    assert props["safeload:ledger:verified"] == "false"
    assert "warning: exporting a ledger that does not verify" in err


def test_ledger_option_reads_a_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "audit"
    record(ProvenanceEntry(action="verify", source=Source.local("/m/x.pt")), ledger=copy)
    code, out, _ = _run(capsys, "provenance", "verify", "--ledger", str(copy), "--json")
    assert code == 0 and _one_json(out)["report"]["entries"] == 1
    assert _run(capsys, "provenance", "verify", "--json")[0] == 0  # the default ledger: empty


def test_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "provenance", "list", "--since", "last tuesday")[0] == 2


def test_cli_does_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; from safeload._cli import main; "
            "rc = main(['provenance', 'verify', '--json']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
