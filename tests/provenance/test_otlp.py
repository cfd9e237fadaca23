"""Ledger lines as OTLP log records: checked record by record at a loopback collector."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.proto")

from _loopback import Endpoint, decode_logs, otlp_reply, serve  # noqa: E402

import safeload  # noqa: E402
from safeload._cli import main  # noqa: E402
from safeload._internal.paths import ledger_dir  # noqa: E402
from safeload.provenance import flush, otlp, read_ledger  # noqa: E402
from safeload.provenance.ledger import LEDGER_NAME  # noqa: E402
from safeload.provenance.shipping import DECISIONS  # noqa: E402


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    with serve(otlp_reply) as endpoint:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "node-a")
        monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "20")
        yield endpoint
        otlp.flush()


def _models(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        p = tmp_path / f"m{i}.safetensors"
        save_file({"w": torch.full((2,), float(i))}, str(p))
        out.append(p)
    return out


def _ledger_lines() -> list[dict[str, object]]:
    return [json.loads(x) for x in (ledger_dir() / LEDGER_NAME).read_text().splitlines()]


def _check_every_record(records: list[dict[str, object]]) -> None:
    """Each record is one ledger line: body byte-identical, attributes derived from it."""
    text = (ledger_dir() / LEDGER_NAME).read_text().splitlines()
    lines = [json.loads(x) for x in text]
    by_seq = {line["seq"]: (raw, line) for raw, line in zip(text, lines, strict=True)}
    first = lines[0]["digest"]
    assert sorted(r["attributes"]["safeload.ledger.seq"] for r in records) == sorted(by_seq)
    entries = {r.seq: r.entry for r in read_ledger().records}
    for rec in records:
        attrs = rec["attributes"]
        raw, line = by_seq[attrs["safeload.ledger.seq"]]
        assert rec["body"] == raw
        assert attrs["safeload.ledger.id"] == first
        assert attrs["safeload.ledger.hash"] == line["digest"]
        assert rec["resource"]["service.name"] == "node-a"
        assert rec["resource"]["host.name"] == socket.gethostname()
        kind = next(k for k in ("session", "tally", "entry") if k in line)
        assert attrs["safeload.ledger.kind"] == kind
        if kind == "entry":
            entry = entries[line["seq"]]
            assert entry is not None
            assert attrs["safeload.decision"] in DECISIONS
            assert attrs["safeload.action"] == entry.action
            assert attrs["safeload.artifact.sha256"] == entry.files[0].sha256
            assert rec["time_unix_nano"] > 0
        else:
            assert "safeload.decision" not in attrs


def test_loads_ship_one_record_per_ledger_line(tmp_path: Path, collector: Endpoint,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_OTLP", "1")
    for p in _models(tmp_path, 3):
        safeload.load(p)
    safeload.load(tmp_path / "m0.safetensors")  # a repeat: a tally line
    flush()
    otlp.flush()
    records = decode_logs(collector)
    assert len(records) == len(_ledger_lines()) >= 5  # session, 3 entries, tally
    _check_every_record(records)
    assert {r["scope"] for r in records} == {"safeload.provenance"}


def test_off_by_default(tmp_path: Path, collector: Endpoint) -> None:
    for p in _models(tmp_path, 2):
        safeload.load(p)
    flush()
    otlp.flush()
    assert collector.requests == []


def test_a_collector_that_hangs_never_blocks_a_load(tmp_path: Path, collector: Endpoint,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_OTLP", "1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    collector.gate.clear()  # the collector takes requests and does not answer
    models = _models(tmp_path, 4)
    safeload.load(models[0])
    flush()
    assert collector.arrived.wait(10)  # an export is in flight, stuck ...
    for p in models[1:]:
        safeload.load(p)  # ... and loads go on meanwhile
    flush()
    assert read_ledger().report.ok and len(read_ledger().records) == 4
    collector.gate.set()


def test_a_missing_sdk_is_logged_once_and_loads_go_on(
        tmp_path: Path, collector: Endpoint, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SAFELOAD_OTLP", "1")

    def no_sdk(*args: object, **kwargs: object) -> None:
        raise ImportError("No module named 'opentelemetry'")

    monkeypatch.setattr(otlp, "provider", no_sdk)
    with caplog.at_level(logging.WARNING, logger="safeload.provenance"):
        for p in _models(tmp_path, 3):
            safeload.load(p)
            flush()
        otlp.flush()
    assert [r for r in caplog.records if "safeload[otel]" in r.getMessage()].__len__() == 1
    assert collector.requests == [] and len(read_ledger().records) == 3


def test_cli_ships_the_whole_ledger_and_again_without_harm(
        tmp_path: Path, collector: Endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    for p in _models(tmp_path, 3):
        safeload.load(p)
    assert main(["provenance", "export", "--format", "otlp", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["records"] == len(_ledger_lines()) == out["exported"]
    _check_every_record(decode_logs(collector))
    assert main(["provenance", "export", "--format", "otlp", "--json"]) == 0  # duplicates
    assert len(decode_logs(collector)) == 2 * len(_ledger_lines())


def test_cli_reports_a_collector_that_is_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    safeload.load(_models(tmp_path, 1)[0])
    assert main(["provenance", "export", "--format", "otlp", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert not out["ok"] and out["failed"] == out["records"] == 2


def test_a_short_script_ships_everything_before_it_exits(tmp_path: Path,
                                                         collector: Endpoint) -> None:
    import os
    import subprocess
    import sys

    script = (
        "import torch, safeload\n"
        "from safetensors.torch import save_file\n"
        "for i in range(3):\n"
        f"    p = {str(tmp_path)!r} + f'/m{{i}}.safetensors'\n"
        "    save_file({'w': torch.full((2,), float(i))}, p)\n"
        "    safeload.load(p)\n")  # and exit at once: the SDK may not even be imported yet
    env = dict(os.environ, SAFELOAD_OTLP="1")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    records = decode_logs(collector)
    assert len(records) == len(_ledger_lines()) == 4  # session and 3 entries
    _check_every_record(records)
