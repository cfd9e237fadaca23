"""`safeload provenance export --format cyclonedx --upload URL`: the models in use, to a
loopback stand-in for Dependency-Track's BOM API (no Dependency-Track server runs here)."""

from __future__ import annotations

import base64
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _loopback import Endpoint, Request, json_reply, serve
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from safetensors.torch import save_file

import safeload
from safeload._cli import main
from safeload._internal.paths import data_dir
from safeload.errors import ExportError
from safeload.provenance import FileRecord, ProvenanceEntry, Source, dtrack, record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
from _hubcache import make_repo  # noqa: E402

KEY = "odt_" + "K3y" * 10  # what a Dependency-Track API key looks like
VALIDATE = JsonStrictValidator(SchemaVersion.V1_6)


class FakeDTrack:
    """PUT /api/v1/bom answers a token; the token is processing for `busy` polls."""

    def __init__(self, busy: int = 1, status: int = 200, echo_key: bool = False) -> None:
        self.busy, self.status, self.echo_key = busy, status, echo_key
        self.token = str(uuid.uuid4())
        self.boms: list[dict[str, Any]] = []
        self.payloads: list[dict[str, Any]] = []

    def __call__(self, req: Request, endpoint: Endpoint) -> tuple[int, str, bytes]:
        if self.status != 200:
            body = f"bad key {req.headers.get('x-api-key')}" if self.echo_key else "denied"
            return self.status, "text/plain", body.encode()
        if req.method == "PUT" and req.path == "/api/v1/bom":
            payload = json.loads(req.body)
            self.payloads.append(payload)
            self.boms.append(json.loads(base64.b64decode(payload["bom"], validate=True)))
            return json_reply(200, {"token": self.token})
        if req.method == "GET" and req.path == f"/api/v1/event/token/{self.token}":
            self.busy -= 1
            return json_reply(200, {"processing": self.busy >= 0})
        return 404, "text/plain", b"no such endpoint"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(dtrack.API_KEY_ENV, KEY)
    return KEY


@pytest.fixture
def fake() -> Iterator[tuple[FakeDTrack, Endpoint]]:
    handler = FakeDTrack()
    with serve(handler) as endpoint:
        yield handler, endpoint


def _use_models(tmp_path: Path) -> tuple[str, str]:
    """A Hub file (two loads), a local file loaded from two paths (one digest), and a model
    loaded long ago (outside the window). Returns the two digests in use."""
    import hashlib

    save_file({"w": torch.ones(2)}, str(tmp_path / "a.safetensors"))
    data = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "a.safetensors").write_bytes(data)
    save_file({"w": torch.zeros(3)}, str(tmp_path / "hub.safetensors"))
    hub = (tmp_path / "hub.safetensors").read_bytes()
    snap = make_repo(tmp_path / "cache", "acme/tiny", {"model.safetensors": hub})
    for p in (tmp_path / "a.safetensors", tmp_path / "copy" / "a.safetensors",
              snap / "model.safetensors", snap / "model.safetensors"):
        safeload.load(p)
    record(ProvenanceEntry(action="load", source=Source.local("/old/gone.safetensors"),
                           files=(FileRecord("/old/gone.safetensors", "e" * 64, 1,
                                             "safetensors"),),
                           time="2020-01-01T00:00:00Z"))
    return hashlib.sha256(data).hexdigest(), hashlib.sha256(hub).hexdigest()


def test_upload_puts_the_deduplicated_models_in_use(
        tmp_path: Path, key: str, fake: tuple[FakeDTrack, Endpoint],
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    handler, endpoint = fake
    local, hub = _use_models(tmp_path)
    with caplog.at_level(logging.DEBUG):
        code = main(["provenance", "export", "--format", "cyclonedx", "--upload", endpoint.url,
                     "--service", "node-7", "--wait", "10", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] and result["processed"] and result["components"] == 2
    put, *polls = endpoint.requests
    assert (put.method, put.path) == ("PUT", "/api/v1/bom")
    assert put.headers["x-api-key"] == key and put.headers["content-type"] == "application/json"
    assert [p.path for p in polls] == [f"/api/v1/event/token/{handler.token}"] * 2
    assert all(p.method == "GET" and p.headers["x-api-key"] == key for p in polls)
    [payload] = handler.payloads
    assert payload["projectName"] == "node-7" and payload["autoCreate"] is True
    assert payload["projectVersion"] == "current"
    [bom] = handler.boms
    assert VALIDATE.validate_str(json.dumps(bom)) is None
    assert bom["specVersion"] == "1.6" and bom["metadata"]["component"]["name"] == "node-7"
    by_hash = {c["hashes"][0]["content"]: c for c in bom["components"]}
    assert set(by_hash) == {local, hub}  # two paths, one digest; the old load is outside
    assert by_hash[hub]["purl"] == f"pkg:huggingface/acme/tiny@{'a' * 40}#model.safetensors"
    assert by_hash[local]["purl"] == f"pkg:generic/a.safetensors?checksum=sha256:{local}"
    props = {p["name"]: p["value"] for p in by_hash[hub]["properties"]}
    assert props["safeload:loads"] == "2"
    for c in bom["components"]:
        assert c["purl"] and c["hashes"][0]["alg"] == "SHA-256"
    # The key is in the header only: never in the output, the logs or the data folder.
    assert key not in out + err + caplog.text
    assert not [p for p in data_dir().rglob("*") if p.is_file() and key.encode() in
                p.read_bytes()]


def test_the_window_decides_what_is_in_use(tmp_path: Path, key: str,
                                           fake: tuple[FakeDTrack, Endpoint],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    handler, endpoint = fake
    _use_models(tmp_path)
    assert main(["provenance", "export", "--upload", endpoint.url, "--since", "2019-01-01",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["components"] == 3
    assert VALIDATE.validate_str(json.dumps(handler.boms[0])) is None


def test_a_refusal_never_shows_the_key(tmp_path: Path, key: str,
                                       capsys: pytest.CaptureFixture[str],
                                       caplog: pytest.LogCaptureFixture) -> None:
    _use_models(tmp_path)
    with serve(FakeDTrack(status=401, echo_key=True)) as endpoint, \
            caplog.at_level(logging.DEBUG):
        code = main(["provenance", "export", "--upload", endpoint.url, "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and "HTTP 401" in out + err and "<redacted>" in out + err
    assert key not in out + err + caplog.text


def test_a_redirect_is_refused_and_the_key_does_not_follow(tmp_path: Path, key: str) -> None:
    with serve(FakeDTrack()) as elsewhere:
        token = str(uuid.uuid4())

        def redirect(req: Request, endpoint: Endpoint) -> tuple[Any, ...]:
            if req.method == "PUT":  # accepted; the status poll (a GET) is redirected
                return json_reply(200, {"token": token})
            return 307, "text/plain", b"", {"Location": elsewhere.url + req.path}

        with serve(redirect) as endpoint, pytest.raises(ExportError, match="HTTP 307") as info:
            dtrack.upload(endpoint.url, {"bomFormat": "CycloneDX"}, project="p",
                          version="v", api_key=key, wait_s=0)
        assert key not in str(info.value) and elsewhere.requests == []


def test_missing_key_unprocessed_and_bad_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _use_models(tmp_path)
    monkeypatch.delenv(dtrack.API_KEY_ENV, raising=False)
    assert main(["provenance", "export", "--upload", "http://127.0.0.1:9"]) == 2
    assert dtrack.API_KEY_ENV in capsys.readouterr().err
    monkeypatch.setenv(dtrack.API_KEY_ENV, KEY)
    with serve(FakeDTrack(busy=100)) as endpoint:
        assert main(["provenance", "export", "--upload", endpoint.url + "/api/v1/bom",
                     "--wait", "0", "--json"]) == 2
        assert json.loads(capsys.readouterr().out)["processed"] is False
    with pytest.raises(ExportError, match="credentials"):
        dtrack.endpoint(f"https://user:{KEY}@dtrack.example/")
    with pytest.raises(ExportError, match="http"):
        dtrack.endpoint("file:///etc/passwd")
    assert dtrack.endpoint("https://d.example/x/api/v1/bom/") == (
        "https://d.example/x", "https://d.example/x/api/v1/bom")
    assert main(["provenance", "export", "--format", "jsonl", "--upload", "http://x"]) == 2
