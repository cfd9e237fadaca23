"""`safeload provenance verify --from-export`: many nodes' exported lines, as pipelines deliver
them (shuffled, duplicated), and what a lost, forked or edited line looks like."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from safeload._cli import main
from safeload.provenance import (
    FileRecord,
    ProvenanceEntry,
    Source,
    TrustRecord,
    flush,
    record,
    record_or_warn,
)
from safeload.provenance.fromexport import verify_export


def _entry(i: int, tag: str = "") -> ProvenanceEntry:
    return ProvenanceEntry(
        action="load", source=Source.local(f"/models/{tag}m{i}.safetensors"),
        files=(FileRecord(f"/models/{tag}m{i}.safetensors", f"{i % 16:x}" * 64, 10 + i,
                          "safetensors"),),
        trust=TrustRecord("default", "new"), time=f"2026-03-0{1 + i % 9}T12:00:00Z")


def _node(path: Path, n: int, tag: str = "") -> Path:
    """A real ledger: v1 lines, then the batched writer's v2 lines (session, entries, tally)."""
    record(_entry(0, tag), ledger=path)
    for i in range(1, n):
        record_or_warn(_entry(i, tag), strict=False, ledger=path)
    record_or_warn(_entry(1, tag), strict=False, ledger=path)  # a repeat: a tally line
    flush(path)
    return path


def _export(ledger: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["provenance", "export", "--format", "jsonl", "--ledger", str(ledger)]) == 0
    return capsys.readouterr().out.splitlines()


def _verify(tmp_path: Path, records: list[str], capsys: pytest.CaptureFixture[str]
            ) -> tuple[int, dict[str, Any]]:
    f = tmp_path / "export.jsonl"
    f.write_text("".join(r + "\n" for r in records))
    code = main(["provenance", "verify", "--from-export", str(f), "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[list[str], list[str]]:
    a = _export(_node(tmp_path / "a", 6, "a"), capsys)
    b = _export(_node(tmp_path / "b", 4, "b"), capsys)
    return a, b


def test_shuffled_duplicated_export_of_two_nodes_verifies(
        tmp_path: Path, nodes: tuple[list[str], list[str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes
    records = a + b + a[2:5] + b[:1]  # at-least-once: some delivered twice
    random.Random(7).shuffle(records)
    code, out = _verify(tmp_path, records, capsys)
    assert code == 0 and out["ok"] and out["verdict"] == "ok"
    ledgers = {g["ledger_id"]: g for g in out["ledgers"]}
    ida, idb = (json.loads(x[0])["safeload.ledger.id"] for x in (a, b))
    assert set(ledgers) == {ida, idb}
    assert ledgers[ida]["lines"] == len(a) and ledgers[ida]["duplicates"] == 3
    assert ledgers[idb]["duplicates"] == 1 and ledgers[idb]["first_seq"] == 0
    assert ledgers[ida]["head"] == json.loads(a[-1])["safeload.ledger.hash"]


def test_a_lost_line_is_a_gap_and_undecidable(tmp_path: Path,
                                              nodes: tuple[list[str], list[str]],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes
    code, out = _verify(tmp_path, a[:3] + a[4:] + b, capsys)
    assert code == 2 and out["verdict"] == "undecidable"
    [gapped] = [g for g in out["ledgers"] if g["gaps"]]
    assert gapped["gaps"] == [[3, 3]] and gapped["missing"] == 1 and not gapped["broken"]


def test_a_window_that_starts_late_is_not_a_gap(tmp_path: Path,
                                                nodes: tuple[list[str], list[str]],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = nodes
    code, out = _verify(tmp_path, a[3:], capsys)
    assert code == 0 and out["ledgers"][0]["first_seq"] == 3


def test_an_edited_line_is_tampered(tmp_path: Path, nodes: tuple[list[str], list[str]],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes
    rec = json.loads(a[3])
    rec["body"] = re.sub(r'"size":(\d+)', lambda m: f'"size":{int(m.group(1)) + 1}', rec["body"])
    assert rec["body"] != json.loads(a[3])["body"]
    code, out = _verify(tmp_path, a[:3] + [json.dumps(rec)] + a[4:] + b, capsys)
    assert code == 1 and out["verdict"] == "broken"
    [bad] = [g for g in out["ledgers"] if g["broken"]]
    assert "digest mismatch" in bad["tampered"][0] or "canonical" in bad["tampered"][0]


def test_a_forked_chain_is_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _node(tmp_path / "a", 3)
    shutil.copytree(base, tmp_path / "copy")  # the same chain, then two different futures
    record(_entry(7, "left"), ledger=base)
    record(_entry(8, "right"), ledger=tmp_path / "copy")
    left, right = _export(base, capsys), _export(tmp_path / "copy", capsys)
    code, out = _verify(tmp_path, left + right, capsys)
    assert code == 1
    [ledger] = out["ledgers"]
    assert [f["seq"] for f in ledger["forks"]] == [len(left) - 1]
    assert ledger["duplicates"] == len(left) - 1  # the shared history, delivered twice
    # One branch's line before the fork and the other's after it: a broken link, too.
    record(_entry(9, "more"), ledger=tmp_path / "copy")
    right = _export(tmp_path / "copy", capsys)
    code, out = _verify(tmp_path, left + right[-1:], capsys)
    assert code == 1 and out["ledgers"][0]["breaks"]


def test_a_wrong_ledger_id_is_broken(tmp_path: Path, nodes: tuple[list[str], list[str]],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes
    other = json.loads(b[0])["safeload.ledger.id"]
    moved = [json.dumps({**json.loads(r), "safeload.ledger.id": other}) for r in a]
    code, out = _verify(tmp_path, moved + b, capsys)
    assert code == 1 and out["ledgers"][0]["forks"]  # two seq 0 lines under one id
    renamed = [json.dumps({**json.loads(r), "safeload.ledger.id": "sha256:" + "1" * 64})
               for r in a]
    code, out = _verify(tmp_path, renamed, capsys)
    assert code == 1 and out["ledgers"][0]["id_mismatch"] and not out["ledgers"][0]["forks"]


def test_records_that_are_not_ledger_lines_are_undecidable(
        tmp_path: Path, nodes: tuple[list[str], list[str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = nodes
    code, out = _verify(tmp_path, [*a, "not json", json.dumps({"body": "x"})], capsys)
    assert code == 2 and out["malformed"] == 2
    code, out = _verify(tmp_path, [], capsys)
    assert code == 2


def test_backend_shapes_otlp_json_fluent_bit_and_vector(
        nodes: tuple[list[str], list[str]]) -> None:
    a, b = nodes

    def otlp_record(r: str) -> dict[str, Any]:
        rec = json.loads(r)
        return {"body": {"stringValue": rec["body"]}, "attributes": [
            {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else
             {"stringValue": v}} for k, v in rec.items() if k.startswith("safeload.")]}

    request = {"resourceLogs": [{"scopeLogs": [{"logRecords": [otlp_record(r) for r in a]}]}]}
    fluent = [json.dumps({"log": json.loads(r)["body"], "ledger_id": json.loads(r)[
        "safeload.ledger.id"], "host": "n2"}) for r in b]
    vector = [json.dumps({"message": json.loads(json.loads(r)["body"]),  # parsed to an object
                          "safeload.ledger.id": json.loads(r)["safeload.ledger.id"]}) for r in b]
    lines = [json.dumps(request).encode(), *(x.encode() for x in fluent + vector)]
    report = verify_export(lines)
    assert report.verdict == "ok" and report.records == len(a) + 2 * len(b)
    assert sorted(c.duplicates for c in report.ledgers.values()) == [0, len(b)]


def test_verify_prints_the_ledger_id_exports_group_by(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = _node(tmp_path / "a", 2)
    first = json.loads(_export(ledger, capsys)[0])
    assert main(["provenance", "verify", "--ledger", str(ledger), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ledger_id"] == first["safeload.ledger.id"] == \
        json.loads((ledger / "ledger.jsonl").read_text().splitlines()[0])["digest"]
