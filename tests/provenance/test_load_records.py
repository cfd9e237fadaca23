"""Every load leaves a provenance entry; the model card's licence policy applies at load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload.errors import LicenseRefusedError
from safeload.licenses import LicensePolicy
from safeload.provenance import read_ledger, verify
from safeload.trust import Policy, TrustStore

CARD = Path(__file__).resolve().parents[1] / "assets" / "all-minilm-l6-v2" / "README.md"


def _model(tmp_path: Path, card: str | None = None) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    save_file({"w": torch.ones(3)}, str(d / "model.safetensors"))
    (d / "config.json").write_text("{}")
    if card is not None:
        (d / "README.md").write_text(card)
    return d


def test_load_records_licence_datasets_and_hashes(tmp_path: Path) -> None:
    d = _model(tmp_path)
    shutil.copy(CARD, d / "README.md")
    safeload.load(d / "model.safetensors")
    state = read_ledger()
    assert state.report.ok and len(state.records) == 1
    entry = state.records[0].entry
    assert entry is not None and entry.action == "load"
    assert entry.license is not None and entry.license.id == "Apache-2.0"
    assert {"s2orc", "ms_marco", "code_search_net"} <= set(entry.datasets)
    import hashlib

    digest = hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
    assert entry.files[0].sha256 == digest
    assert entry.signature.status == "unsigned"


def test_converted_pickle_records_its_ancestor(tmp_path: Path) -> None:
    f = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, f)
    safeload.load(f)
    entry = read_ledger().records[-1].entry
    assert entry is not None and entry.converted_from is not None
    assert entry.converted_from.format == "torch-zip"
    assert "seccomp" in entry.converted_from.sandbox_layers or entry.converted_from.sandbox_layers
    assert entry.files[0].format == "safetensors"
    assert verify().ok


def test_denied_licence_is_refused_naming_licence_and_rule(tmp_path: Path) -> None:
    d = _model(tmp_path, "---\nlicense: cc-by-nc-4.0\n---\n# a model\n")
    policy = Policy(licenses=LicensePolicy(deny=frozenset({"non-commercial"})))
    TrustStore.update(lambda s: s.with_policy(policy))
    with pytest.raises(LicenseRefusedError, match=r"CC-BY-NC-4\.0.*non-commercial"):
        safeload.load(d / "model.safetensors")
    assert list(read_ledger().records) == []  # refused: nothing loaded, nothing recorded


def test_unwritable_ledger_warns_by_default_and_fails_closed_in_strict(
        tmp_path: Path, isolated_home: Path) -> None:
    from safeload.errors import ProvenanceError

    d = _model(tmp_path)
    # A file where the ledger folder should be: no write can succeed (even as root).
    (isolated_home / "data").mkdir(parents=True)
    (isolated_home / "data" / "provenance").write_text("not a folder")
    with pytest.warns(Warning, match="provenance"):
        safeload.load(d / "model.safetensors")
    TrustStore.update(lambda s: s.with_policy(Policy(mode="strict", pin_local_files=False)))
    # Strict also wants a trusted signature; audit that part away by signing is out of scope
    # here, so check the ledger refusal directly through the recorder.
    from safeload._internal.record import record
    from safeload.trust import TrustStore as TS

    with pytest.raises(ProvenanceError):
        record(action="load", path=str(d / "model.safetensors"), sha256="0" * 64, size=1,
               fmt="safetensors", decision=None, context=None, store=TS.load())


def test_audit_load_past_a_pin_mismatch_is_recorded_as_a_mismatch(tmp_path: Path) -> None:
    """Audit mode loads a file whose pin does not match: the ledger must say so (it used to
    refuse the entry, and so the load, because "mismatch" was not a pin state it knew)."""
    from safeload.trust import Pin

    d = _model(tmp_path)
    path = (d / "model.safetensors").resolve()
    TrustStore.update(lambda s: s.with_policy(Policy(mode="audit"))
                      .with_pin(Pin("0" * 64, path=str(path))))
    safeload.load(path)
    state = read_ledger()
    assert state.report.ok
    entry = state.records[-1].entry
    assert entry is not None and (entry.trust.mode, entry.trust.pin) == ("audit", "mismatch")


def test_every_entry_names_the_local_store_by_its_sha256(tmp_path: Path) -> None:
    from safeload._internal import paths
    from safeload.provenance.ledger import LEDGER_NAME

    d = _model(tmp_path)
    safeload.load(d / "model.safetensors")
    first = TrustStore.load().state_digest()
    TrustStore.update(lambda s: s.with_policy(Policy(mode="audit")))
    safeload.load(d / "model.safetensors")
    safeload.load(d / "model.safetensors")
    entries = [r.entry for r in read_ledger().records if r.entry is not None]
    assert entries[0].trust.store == {"sha256": first}
    assert entries[-1].trust.store == {"sha256": TrustStore.load().state_digest()} != {
        "sha256": first}
    text = (paths.ledger_dir() / LEDGER_NAME).read_text()
    assert text.count(first) == 1  # once, in the session record's defaults
