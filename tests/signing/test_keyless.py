"""Keyless (sigstore method) OMS verification, offline, against real public-Sigstore bundles."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safeload.errors import (
    DigestMismatchError,
    ManifestMismatchError,
    SignatureError,
    UnsupportedSignatureError,
    UntrustedPublisherError,
)
from safeload.signing import keyless
from safeload.signing.keyless import IdentityRule, verify_keyless
from safeload.signing.sigstore_roots import (
    BUILTIN_SHA256,
    builtin_root,
    root_from_bytes,
    root_from_file,
)
from safeload.signing.verify import verify_model

pytest.importorskip("sigstore")

K = Path(__file__).resolve().parents[1] / "assets" / "keyless"
OMS = K / "oms-model-transparency"
NEG = K / "oms-negative"
CONF = K / "sigstore-conformance"
SAN, ISSUER = "stefanb@us.ibm.com", "https://sigstore.verify.ibm.com/oauth2"
BEACON = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
          ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
GHA = "https://token.actions.githubusercontent.com"
SUBJECT = "61d4849d9d90076d6215f4d525f13d6574af8e3f67aef3e6f36fc40a14fdd226"


def _one_off(model: Path, sig: Path | None = None, **kw: Any) -> Any:
    return verify_model(model, sig, identity=kw.pop("identity", SAN),
                        identity_provider=kw.pop("issuer", ISSUER), **kw)


@pytest.mark.parametrize(("model", "sig", "ignore", "log_index"), [
    ("v0.3.1-sigstore", None, (), 206342049),
    ("v1.0.0-sigstore", None, (), 206344181),
    ("v1.0.1-sigstore", None, ("ignore-me",), 588939812),
    ("v1.1.0-sigstore", None, (), 598151086),
    ("v1.1.0-sigstore", OMS / "oms-spec-test-vector-sigstore.bundle.json", (), 598151086),
    # review T-4: without its SET nothing binds the sharded entry's global index
    ("v1.1.0-sigstore", NEG / "v1.1.0-tsa-only.VALID.sig", (), None),
])
def test_every_positive_oms_keyless_fixture_verifies_offline(
        model: str, sig: Path | None, ignore: tuple[str, ...], log_index: int | None) -> None:
    result = _one_off(OMS / model, sig, ignore_paths=ignore)
    assert result.method == "sigstore"
    assert result.subject_digest == SUBJECT
    assert result.keyless is not None
    assert (result.keyless.identity, result.keyless.issuer) == (SAN, ISSUER)
    assert result.keyless.log_index == log_index
    assert result.keyless.root_name == "production"
    assert result.keyless.root_sha256 == BUILTIN_SHA256["production"]
    assert result.keyless.signed_time.year == 2025


def test_tsa_only_bundle_has_no_integrated_time_but_a_signed_time() -> None:
    res = _one_off(OMS / "v1.1.0-sigstore", NEG / "v1.1.0-tsa-only.VALID.sig").keyless
    assert res.integrated_time is None and res.signed_time.year == 2025


def test_unrecorded_ignore_path_must_be_given_explicitly() -> None:
    with pytest.raises(ManifestMismatchError, match="ignore-me"):
        _one_off(OMS / "v1.0.1-sigstore")


@pytest.mark.parametrize(("model", "sig", "root", "error", "reason"), [
    ("v1.0.0-sigstore", "v1.0.0-payload-tampered.sig", None, SignatureError, "DSSE"),
    ("v1.1.0-sigstore", "v1.1.0-payload-type-changed.sig", None, SignatureError,
     "payloadType application/json"),
    ("v1.0.0-sigstore", "v1.0.0-no-inclusion-proof.sig", None, SignatureError, "inclusion"),
    ("v1.0.0-sigstore", "v1.0.0-no-set-no-tsa.sig", None, SignatureError,
     "inclusion promise or signed timestamp"),
    ("v1.1.0-sigstore", None, "trusted-root-no-ctlogs.json", SignatureError, "CT"),
    ("v1.1.0-sigstore", None, "trusted-root-no-tsa.json", SignatureError,
     "Timestamp Authorities"),
])
def test_every_negative_oms_keyless_fixture_is_refused_with_its_reason(
        model: str, sig: str | None, root: str | None, error: type[Exception],
        reason: str) -> None:
    with pytest.raises(error, match=reason):
        _one_off(OMS / model, NEG / sig if sig else None,
                 sigstore_root=root_from_file(NEG / root) if root else None)


def test_byte_flipped_model_passes_the_signature_and_fails_the_manifest() -> None:
    with pytest.raises(DigestMismatchError, match="signme-1"):
        _one_off(NEG / "v1.1.0-byte-flipped")


@pytest.mark.parametrize(("san", "issuer"), [
    ("stefanb@us.ibm.co", ISSUER),  # prefix of the real SAN
    ("Stefanb@us.ibm.com", ISSUER),  # case differs
    (SAN, "https://sigstore.verify.ibm.com/oauth"),
    (SAN, "https://github.com/login/oauth"),
])
def test_wrong_identity_or_issuer_is_untrusted_and_names_the_signer(san: str,
                                                                    issuer: str) -> None:
    with pytest.raises(UntrustedPublisherError, match="stefanb@us.ibm.com"):
        _one_off(OMS / "v1.1.0-sigstore", identity=san, issuer=issuer)


def test_san_regex_is_a_full_match() -> None:
    data = (OMS / "v1.1.0-sigstore" / "model.sig").read_bytes()
    root = builtin_root("production")
    ok = verify_keyless(data, source="t", root=root,
                        rules=[IdentityRule(issuer=ISSUER, san_regex=r"[a-z]+@us\.ibm\.com")])
    assert ok.identity == SAN
    with pytest.raises(UntrustedPublisherError):
        verify_keyless(data, source="t", root=root,
                       rules=[IdentityRule(issuer=ISSUER, san_regex=r"stefanb@us\.ibm")])


def _conf(case: str) -> tuple[bytes, Any]:
    d = CONF / case
    root = root_from_file(d / "trusted_root.json") if (d / "trusted_root.json").exists() \
        else builtin_root("production")
    return (d / "bundle.sigstore.json").read_bytes(), root


@pytest.mark.parametrize("case", ["happy-path-intoto-in-dsse-v3", "rekor2-dsse-happy-path"])
def test_conformance_dsse_happy_paths_verify(case: str) -> None:
    data, root = _conf(case)
    res = verify_keyless(data, source=case, root=root,
                         rules=[IdentityRule(issuer=GHA, san=BEACON)])
    assert res.identity == BEACON and res.payload_type == "application/vnd.in-toto+json"


@pytest.mark.parametrize("case", [
    "dsse-invalid-sig_fail", "dsse-mismatch-envelope_fail", "dsse-mismatch-sig_fail",
    "rekor2-dsse-invalid-sig_fail", "rekor2-dsse-mismatch-envelope_fail",
    "rekor2-dsse-mismatch-sig_fail",
])
def test_conformance_dsse_fail_cases_are_refused(case: str) -> None:
    data, root = _conf(case)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_keyless(data, source=case, root=root,
                       rules=[IdentityRule(issuer=GHA, san=BEACON)])


def test_bundle_of_another_instance_is_refused() -> None:
    with pytest.raises(SignatureError):
        verify_model(OMS / "v1.1.0-sigstore", CONF / "bundle-from-wrong-instance_fail" /
                     "bundle.sigstore.json", identity=BEACON, identity_provider=GHA)


def test_rekor_v2_staging_bundle_verifies_on_staging_only() -> None:
    data = (K / "sigstore-python" / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_bytes()
    rule = IdentityRule(issuer=GHA, san=BEACON)
    res = verify_keyless(data, source="v2", root=builtin_root("staging"), rules=[rule])
    assert res.integrated_time is None and res.root_name == "staging"
    with pytest.raises(SignatureError):
        verify_keyless(data, source="v2", root=builtin_root("production"), rules=[rule])


def test_a_log_index_no_set_or_proof_binds_is_not_recorded() -> None:
    # review T-4: a TSA-only (Rekor v2) bundle has no SET; the logIndex the ledger records
    # must be the index its verified inclusion proof proves, or none
    doc = json.loads((K / "sigstore-python" / "a.dsse.staging-rekor-v2.txt.sigstore.json")
                     .read_bytes())
    rule = IdentityRule(issuer=GHA, san=BEACON)
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    proved = int(entry["inclusionProof"]["logIndex"])
    res = verify_keyless(json.dumps(doc).encode(), source="v2", root=builtin_root("staging"),
                         rules=[rule])
    assert res.log_index == proved
    entry["logIndex"] = "1"
    res = verify_keyless(json.dumps(doc).encode(), source="v2", root=builtin_root("staging"),
                         rules=[rule])
    assert res.log_index is None


@pytest.mark.parametrize(("bundle", "san", "issuer"), [
    ("bundle_v3.txt.sigstore", "william@yossarian.net", "https://github.com/login/oauth"),
    ("bundle_v3_github.whl.sigstore",
     "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2",
     GHA),
])
def test_message_signature_bundles_are_refused_not_undecided(bundle: str, san: str,
                                                             issuer: str) -> None:
    # The v0.2 bundle is refused by its media type already (OMS bundles are v0.3).
    with pytest.raises(SignatureError, match="message signature|mediaType"):
        verify_model(OMS / "v1.1.0-sigstore", K / "sigstore-python" / bundle, identity=san,
                     identity_provider=issuer)


def test_fulcio_extension_pins_must_all_match() -> None:
    data, root = _conf("happy-path-intoto-in-dsse-v3")
    repo = keyless.EXTENSION_NAMES["source-repository"]
    good = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon"
    verify_keyless(data, source="c", root=root,
                   rules=[IdentityRule(issuer=GHA, san=BEACON, extensions={repo: good})])
    with pytest.raises(UntrustedPublisherError):
        verify_keyless(data, source="c", root=root, rules=[
            IdentityRule(issuer=GHA, san=BEACON, extensions={repo: good + "-fork"})])


# --- the checks sigstore-python does not make ------------------------------------------------

def _derived_root(edit: Callable[[dict[str, Any]], None]) -> Any:
    doc = json.loads(builtin_root("production").data)
    edit(doc)
    return root_from_bytes(json.dumps(doc).encode(), name="derived", source="derived root")


def _end_all(section: str, end: str = "2025-01-01T00:00:00Z") -> Callable[[dict[str, Any]],
                                                                           None]:
    def edit(doc: dict[str, Any]) -> None:
        for e in doc[section]:
            holder = e if section == "certificateAuthorities" else e["publicKey"]
            holder["validFor"]["end"] = end
    return edit


@pytest.mark.parametrize(("section", "reason"), [
    ("certificateAuthorities", "Fulcio CA .* not valid at the signed time"),
    ("tlogs", "Rekor log key was not valid at the signed time"),
    ("ctlogs", "CT log key was not valid at the signed time"),
])
def test_root_whose_keys_ended_before_the_signature_is_refused(section: str,
                                                               reason: str) -> None:
    import sigstore.models
    import sigstore.verify

    root = _derived_root(_end_all(section))
    data = (OMS / "v1.1.0-sigstore" / "model.sig").read_bytes()
    # Control: sigstore-python alone accepts this root (it compares validFor with now).
    trusted = sigstore.models.TrustedRoot(
        sigstore.models.trustroot_v1.TrustedRoot.from_json(root.data))
    sigstore.verify.Verifier(trusted_root=trusted).verify_dsse(
        sigstore.models.Bundle.from_json(data),
        sigstore.verify.policy.Identity(identity=SAN, issuer=ISSUER))
    with pytest.raises(SignatureError, match=reason):
        verify_keyless(data, source="t", root=root, rules=[IdentityRule(issuer=ISSUER, san=SAN)])


def test_root_whose_keys_started_after_the_signature_is_refused() -> None:
    def late(doc: dict[str, Any]) -> None:
        for ca in doc["certificateAuthorities"]:
            ca["validFor"]["start"] = "2026-01-01T00:00:00Z"
    with pytest.raises(SignatureError, match="Fulcio CA"):
        verify_keyless((OMS / "v1.0.0-sigstore" / "model.sig").read_bytes(), source="t",
                       root=_derived_root(late), rules=[IdentityRule(issuer=ISSUER, san=SAN)])


def _edited_bundle(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads((OMS / "v1.1.0-sigstore" / "model.sig").read_bytes())
    edit(doc)
    out = tmp_path / "model.sig"
    out.write_text(json.dumps(doc))
    return out


def test_two_dsse_signatures_are_refused(tmp_path: Path) -> None:
    def dup(doc: dict[str, Any]) -> None:
        doc["dsseEnvelope"]["signatures"].append(dict(doc["dsseEnvelope"]["signatures"][0]))
    with pytest.raises(SignatureError, match="exactly one signature"):
        _one_off(OMS / "v1.1.0-sigstore", _edited_bundle(tmp_path, dup))


@pytest.mark.parametrize("when", ["1600000000", "1900000000"])
def test_integrated_time_outside_the_leaf_validity_is_refused(tmp_path: Path,
                                                              when: str) -> None:
    def move(doc: dict[str, Any]) -> None:
        doc["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = when
    with pytest.raises(SignatureError):
        _one_off(OMS / "v1.1.0-sigstore", _edited_bundle(tmp_path, move))


def test_statement_subject_must_match_the_manifest(tmp_path: Path) -> None:
    # A payload edit breaks the signature first; the subject check itself is exercised by
    # parse_statement for every method (tests/signing/test_oms_verify.py).
    def subj(doc: dict[str, Any]) -> None:
        st = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
        st["subject"][0]["digest"]["sha256"] = "0" * 64
        doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    with pytest.raises(SignatureError):
        _one_off(OMS / "v1.1.0-sigstore", _edited_bundle(tmp_path, subj))


def test_without_the_extra_a_keyless_bundle_is_undecided_with_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sigstore", None)
    with pytest.raises(UnsupportedSignatureError) as info:
        _one_off(OMS / "v1.1.0-sigstore")
    assert "pip install 'safeload[sigstore]'" in str(info.value) + str(info.value.hint)


def test_shipped_root_is_checked_against_its_recorded_digest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_SHA256, "staging", "0" * 64)
    with pytest.raises(SignatureError, match="altered"):
        builtin_root("staging")


def test_key_signed_verification_never_imports_sigstore() -> None:
    oms = Path(__file__).resolve().parents[1] / "assets" / "oms"
    code = (
        "import sys\n"
        "from safeload.signing.verify import verify_model\n"
        f"verify_model({str(oms / 'model')!r}, {str(oms / 'signatures/key-p256.sig')!r}, "
        f"key={str(oms / 'keys/p256.pub.pem')!r})\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'sigstore'], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _flip_tsa(pos: int) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        ts = doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
        raw = bytearray(base64.b64decode(ts["signedTimestamp"]))
        raw[pos] ^= 1
        ts["signedTimestamp"] = base64.b64encode(bytes(raw)).decode()
    return edit


@pytest.mark.parametrize("pos", [-1, -5, -40, -100, -300])
def test_altered_timestamp_is_refused_even_with_a_valid_set(tmp_path: Path, pos: int) -> None:
    # sigstore-python alone accepts these: it drops the bad timestamp and keeps the SET time.
    with pytest.raises(SignatureError, match="RFC 3161 timestamp .* does not verify"):
        _one_off(OMS / "v1.1.0-sigstore", _edited_bundle(tmp_path, _flip_tsa(pos)))


@pytest.mark.parametrize("entries", [0, 2])
def test_bundle_needs_exactly_one_log_entry(tmp_path: Path, entries: int) -> None:
    def edit(doc: dict[str, Any]) -> None:
        tl = doc["verificationMaterial"]["tlogEntries"]
        doc["verificationMaterial"]["tlogEntries"] = (tl * entries)[:entries]
    with pytest.raises(SignatureError):
        _one_off(OMS / "v1.1.0-sigstore", _edited_bundle(tmp_path, edit))


def test_leaf_of_another_signature_is_refused(tmp_path: Path) -> None:
    other = json.loads((OMS / "v1.0.0-sigstore" / "model.sig").read_bytes())

    def swap(doc: dict[str, Any]) -> None:
        doc["verificationMaterial"]["certificate"] = other["verificationMaterial"]["certificate"]
    with pytest.raises(SignatureError):
        _one_off(OMS / "v1.1.0-sigstore", _edited_bundle(tmp_path, swap))
