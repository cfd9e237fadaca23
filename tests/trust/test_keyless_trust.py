"""Keyless publishers in the trust store: identities, revocation, namespaces, re-uploads, CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from safeload._cli import main
from safeload._internal.record import record_verification
from safeload.errors import (
    RevokedError,
    SignatureError,
    TrustStoreError,
    UntrustedPublisherError,
)
from safeload.provenance import read_ledger
from safeload.signing.verify import verify_model
from safeload.trust import Publisher, TrustedIdentity, TrustStore, check_load

pytest.importorskip("sigstore")

K = Path(__file__).resolve().parents[1] / "assets" / "keyless"
MODEL = K / "oms-model-transparency" / "v1.1.0-sigstore"
SAN, ISSUER = "stefanb@us.ibm.com", "https://sigstore.verify.ibm.com/oauth2"
COMMIT = "c" * 40


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "trust.json"


def _store(store_path: Path, *idents: TrustedIdentity, name: str = "ibm",
           namespaces: tuple[str, ...] = ("ibm-granite/*",)) -> TrustStore:
    def change(s: TrustStore) -> TrustStore:
        s = s.with_publisher(Publisher(name, namespaces))
        for i in idents:
            s = s.with_identity(name, i)
        return s
    return TrustStore.update(change, store_path)[1]


IBM = TrustedIdentity(issuer=ISSUER, san=SAN)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(MODEL, out)
    return out


def _load(path: Path, store: TrustStore, **kw: Any) -> Any:
    return check_load(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                      size=path.stat().st_size, store=store, **kw)


def test_trusted_identity_verifies_as_its_publisher(store_path: Path) -> None:
    res = verify_model(MODEL, trust_store=_store(store_path, IBM))
    assert res.publisher == "ibm" and res.identity == SAN and res.method == "sigstore"


@pytest.mark.parametrize("ident", [
    TrustedIdentity(issuer=ISSUER, san="someone@us.ibm.com"),
    TrustedIdentity(issuer="https://github.com/login/oauth", san=SAN),
    TrustedIdentity(issuer=ISSUER, san=SAN, instance="staging"),
    TrustedIdentity(issuer=ISSUER, san_regex=r"stefanb@"),  # not a full match
    TrustedIdentity(issuer=ISSUER, san=SAN,
                    extensions=(("1.3.6.1.4.1.57264.1.12", "https://github.com/ibm/x"),)),
])
def test_identity_that_does_not_match_exactly_is_refused(store_path: Path,
                                                          ident: TrustedIdentity) -> None:
    with pytest.raises((UntrustedPublisherError, SignatureError)):
        verify_model(MODEL, trust_store=_store(store_path, ident))


def test_store_without_keyless_identities_is_untrusted(store_path: Path) -> None:
    with pytest.raises(UntrustedPublisherError, match="no keyless identities"):
        verify_model(MODEL, trust_store=_store(store_path))


def test_revoked_identity_is_refused_everywhere(store_path: Path) -> None:
    _store(store_path, IBM)
    _, store = TrustStore.update(lambda s: s.with_revoked_identity(ISSUER, SAN, "left"),
                                 store_path)
    with pytest.raises(RevokedError, match="revoked identity .*left"):
        verify_model(MODEL, trust_store=store)
    with pytest.raises(RevokedError):  # one-off checks honour the store's revocations too
        verify_model(MODEL, trust_store=store, identity=SAN, identity_provider=ISSUER)


def test_certificate_revoked_by_fingerprint_is_refused(store_path: Path) -> None:
    fp = verify_model(MODEL, trust_store=_store(store_path, IBM)).keyless.cert_fingerprint
    _, store = TrustStore.update(lambda s: s.with_revoked_key(fp, "leaked"), store_path)
    with pytest.raises(RevokedError, match="leaked"):
        verify_model(MODEL, trust_store=store)


def test_identities_round_trip_and_bad_ones_are_refused(store_path: Path) -> None:
    ident = TrustedIdentity(issuer=ISSUER, san_regex=r".*@us\.ibm\.com",
                            extensions=(("1.3.6.1.4.1.57264.1.12", "x"),))
    store = _store(store_path, ident)
    again = TrustStore.load(store_path)
    assert again.publisher("ibm").identities == (ident,) == store.publisher("ibm").identities
    for bad in ({"issuer": ISSUER}, {"issuer": ISSUER, "san": "a", "san_regex": "a"},
                {"issuer": ISSUER, "san": "a", "instance": "Else where"},
                {"issuer": ISSUER, "san_regex": "("},
                {"issuer": ISSUER, "san": "a", "extensions": {"1.2.3": "x"}},
                {"issuer": ISSUER, "san": "a", "unknown": 1}):
        doc = json.loads(again.to_json())
        doc["publishers"][0]["identities"] = [bad]
        with pytest.raises(TrustStoreError):
            TrustStore.from_dict(doc)


def test_load_in_the_publishers_namespace_verifies_and_records_the_identity(
        store_path: Path, model: Path) -> None:
    d = _load(model / "signme-1", _store(store_path, IBM), repo="ibm-granite/m",
              revision=COMMIT)
    assert d.signed and d.publisher == "ibm" and not d.reupload
    assert d.keyless["identity"] == SAN and d.keyless["log_index"] == 598151086
    assert d.keyless["sigstore_root"] == "production"


def test_reupload_outside_the_namespaces_is_reported(store_path: Path, model: Path) -> None:
    d = _load(model / "signme-1", _store(store_path, IBM), repo="someone/granite-copy",
              revision=COMMIT)
    assert d.signed and d.reupload and d.publisher == "ibm"
    assert any("re-upload" in w for w in d.warnings)


def test_namespace_bound_to_another_publisher_refuses_the_keyless_signature(
        store_path: Path, model: Path) -> None:
    _store(store_path, IBM)
    _, store = TrustStore.update(
        lambda s: s.with_publisher(Publisher("rival", ("rival/*",))).with_identity(
            "rival", TrustedIdentity(issuer=ISSUER, san="rival@example.org")), store_path)
    with pytest.raises(UntrustedPublisherError, match="belongs to publisher rival"):
        _load(model / "signme-1", store, repo="rival/m", revision=COMMIT)


def test_keyless_signed_content_cannot_silently_lose_its_signature(store_path: Path,
                                                                    model: Path) -> None:
    store = _store(store_path, IBM)
    _load(model / "signme-1", store, repo="ibm-granite/m", revision=COMMIT)
    (model / "model.sig").unlink()
    with pytest.raises(SignatureError):
        _load(model / "signme-1", store, repo="ibm-granite/m", revision=COMMIT)


def test_ledger_entry_records_the_keyless_signer(store_path: Path, model: Path) -> None:
    store = _store(store_path, IBM)
    record_verification(model, verify_model(model, trust_store=store), store)
    entry = read_ledger().records[-1].entry
    assert entry is not None
    sig = entry.signature.to_dict()
    assert sig["method"] == "sigstore" and sig["keyless"]["identity"] == SAN
    assert sig["keyless"]["issuer"] == ISSUER and sig["keyless"]["log_index"] == 598151086
    assert sig["keyless"]["sigstore_root_sha256"].startswith("6494e21e")


# --- CLI -----------------------------------------------------------------------------------

def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, Any, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if "--json" in argv else None, err


def test_cli_add_identity_list_and_verify(capsys: pytest.CaptureFixture[str],
                                          store_path: Path) -> None:
    ts = ("--trust-store", store_path)
    code, _, _ = _run(capsys, "trust", "add-identity", "ibm", "--issuer", ISSUER, "--san", SAN,
                      "--extension", "source-repository=x", *ts)
    assert code == 0
    _, listed, _ = _run(capsys, "trust", "list", "--json", *ts)
    assert listed["publishers"][0]["identities"][0]["san"] == SAN
    code, _, _ = _run(capsys, "verify", MODEL, *ts)
    assert code == 1  # the extension pin does not match this e-mail identity
    _run(capsys, "trust", "remove-identity", "ibm", "--issuer", ISSUER, "--san", SAN,
         "--yes", *ts)
    _run(capsys, "trust", "add-identity", "ibm", "--issuer", ISSUER, "--san", SAN, *ts)
    code, out, _ = _run(capsys, "verify", MODEL, "--json", *ts)
    assert code == 0 and out["publisher"] == "ibm"


def test_cli_one_off_keyless_verify_exit_codes_and_json(
        capsys: pytest.CaptureFixture[str], store_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    one_off = ("--identity", SAN, "--identity-provider", ISSUER, "--trust-store", store_path)
    code, out, _ = _run(capsys, "verify", MODEL, *one_off, "--sigstore-instance",
                        "production", "--json")
    assert code == 0
    assert out["keyless"]["identity"] == SAN and out["keyless"]["log_index"] == 598151086
    assert out["keyless"]["signed_time"].startswith("2025-10-10")
    assert out["keyless"]["sigstore_root"] == "production"
    v101 = K / "oms-model-transparency" / "v1.0.1-sigstore"
    assert _run(capsys, "verify", v101, *one_off)[0] == 1
    assert _run(capsys, "verify", v101, *one_off, "--ignore-path", "ignore-me")[0] == 0
    assert _run(capsys, "verify", MODEL, *one_off, "--sigstore-instance", "staging")[0] == 1
    assert _run(capsys, "verify", MODEL, "--identity", "x@y", "--identity-provider", ISSUER,
                "--trust-store", store_path)[0] == 1
    monkeypatch.setitem(sys.modules, "sigstore", None)
    code, _, err = _run(capsys, "verify", MODEL, *one_off)
    assert code == 2 and "safeload[sigstore]" in err


def test_identity_on_both_instances_verifies_under_the_right_root(store_path: Path) -> None:
    staging = TrustedIdentity(issuer=ISSUER, san=SAN, instance="staging")
    res = verify_model(MODEL, trust_store=_store(store_path, staging, IBM))
    assert res.keyless is not None and res.keyless.root_name == "production"


def test_expired_keyless_publisher_is_refused(store_path: Path) -> None:
    import datetime as dt

    _store(store_path, IBM)
    _, store = TrustStore.update(lambda s: s.with_publisher(
        Publisher("ibm", expires=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))), store_path)
    with pytest.raises(SignatureError, match="trusted only until 2024-01-01"):
        verify_model(MODEL, trust_store=store)


def test_sbom_exports_the_keyless_signer(store_path: Path, model: Path) -> None:
    from safeload.sbom import to_cyclonedx

    store = _store(store_path, IBM)
    record_verification(model, verify_model(model, trust_store=store), store)
    entry = read_ledger().records[-1].entry
    assert entry is not None
    props = {p["name"]: p["value"] for p in to_cyclonedx([entry])["components"][0]["properties"]}
    assert props["safeload:signature:keyless:identity"] == SAN
    assert props["safeload:signature:keyless:log_index"] == "598151086"
    assert props["safeload:signature:keyless:sigstore_root"] == "production"


def test_private_instance_added_from_a_file_is_used_by_its_identities(
        capsys: pytest.CaptureFixture[str], store_path: Path) -> None:
    ts = ("--trust-store", store_path)
    root = K / "trusted_roots" / "sigstore-production.trusted_root.json"
    corp = TrustedIdentity(issuer=ISSUER, san=SAN, instance="corp")
    _store(store_path, corp)
    with pytest.raises(SignatureError, match="unknown Sigstore instance corp"):
        verify_model(MODEL, trust_store=TrustStore.load(store_path))
    assert _run(capsys, "trust", "add-identity", "x", "--issuer", ISSUER, "--san", SAN,
                "--instance", "other", *ts)[0] == 2  # no such root: refused when added
    no_ca = store_path.parent / "no-ca.json"
    doc = json.loads(root.read_text())
    no_ca.write_text(json.dumps(doc | {"certificateAuthorities": []}))
    code, _, err = _run(capsys, "trust", "sigstore-root", "add", "corp", no_ca)
    assert code == 1 and "no Fulcio CA" in err
    no_log = store_path.parent / "no-log.json"
    no_log.write_text(json.dumps(doc | {"tlogs": []}))
    assert "no Rekor log" in _run(capsys, "trust", "sigstore-root", "add", "corp", no_log)[2]
    assert _run(capsys, "trust", "sigstore-root", "add", "production", root)[0] == 2
    assert _run(capsys, "trust", "sigstore-root", "add", "corp", root)[0] == 0
    res = verify_model(MODEL, trust_store=TrustStore.load(store_path))
    assert res.keyless is not None and res.keyless.root_name == "corp"
    code, out, _ = _run(capsys, "trust", "list", "--json", *ts)
    assert {"corp", "production", "staging"} <= {r["name"] for r in out["sigstore_roots"]}
    code, out, _ = _run(capsys, "verify", MODEL, "--identity", SAN, "--identity-provider",
                        ISSUER, "--sigstore-instance", "corp", "--json", *ts)
    assert code == 0 and out["keyless"]["sigstore_root"] == "corp"
