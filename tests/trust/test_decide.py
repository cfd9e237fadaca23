"""The pure trust decision: each policy step on facts alone (no files), and audit wrapping."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from safeload.errors import (
    DigestMismatchError,
    RevisionLockError,
    RevokedError,
    SafeloadError,
    SignatureError,
    UntrustedPublisherError,
)
from safeload.signing._format import Manifest, Resource
from safeload.signing.verify import SignedManifest
from safeload.trust import (
    AuditOnly,
    HubOrigin,
    LoadFacts,
    Observations,
    Pin,
    Policy,
    Publisher,
    RevisionLock,
    SignatureFacts,
    SignedRecord,
    TrustStore,
)
from safeload.trust.decide import (
    NamespaceBinding,
    NoSilentDowngrade,
    Pinned,
    RevisionLocked,
    Revoked,
    SignatureVerifies,
    StrictNeedsSignature,
    decide,
    policy_steps,
)

SHA = "1" * 64
OTHER = "2" * 64
COMMIT = "a" * 40
KEY = "k" * 64
HUB = HubOrigin("acme/m", COMMIT, "model.safetensors")
# A publisher that binds its namespace (a key): built without cryptography through a stand-in.
ACME = Publisher("acme", ("acme/*",), keys=(object(),))  # type: ignore[arg-type]


def _signed(publisher: str | None = "acme") -> SignatureFacts:
    manifest = Manifest("m", "0" * 64, "files", "sha256", False, None, (),
                        (Resource("model.safetensors", "model.safetensors", "sha256", SHA),))
    return SignatureFacts(path="/m/model.sig", location="file:/m", verified=SignedManifest(
        manifest=manifest, method="key", publisher=publisher, key_id=KEY, identity=None,
        signature_path="/m/model.sig", signature_sha256="3" * 64))


def _facts(store: TrustStore | None = None, **kw: Any) -> LoadFacts:
    base: dict[str, Any] = {
        "sha256": SHA, "shown": "/m/model.safetensors", "store": store or TrustStore(),
        "observations": Observations(), "signature": SignatureFacts(),
        "first_seen": "2030-01-01T00:00:00Z", "local_path": "/m/model.safetensors"}
    base.update(kw)
    if "hub" in kw:
        base["local_path"] = None
    return LoadFacts(**base)


def _refusal(step: Any, facts: LoadFacts) -> SafeloadError | None:
    return step.check(facts).refusal  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# one test per step


def test_revoked_step_refuses_a_revoked_digest_only() -> None:
    store = TrustStore().with_revoked_digest(SHA, "malware")
    assert isinstance(_refusal(Revoked(), _facts(store)), RevokedError)
    assert _refusal(Revoked(), _facts(TrustStore().with_revoked_digest(OTHER))) is None


def test_revision_lock_step_allows_only_locked_commits_of_hub_content() -> None:
    store = TrustStore().with_revision_lock(RevisionLock("acme/m", ("b" * 40,)))
    assert isinstance(_refusal(RevisionLocked(), _facts(store, hub=HUB)), RevisionLockError)
    locked_here = TrustStore().with_revision_lock(RevisionLock("ACME/m", (COMMIT,)))
    assert _refusal(RevisionLocked(), _facts(locked_here, hub=HUB)) is None
    assert _refusal(RevisionLocked(), _facts(store)) is None  # a local file has no revision


def test_pinned_step_refuses_a_mismatch_from_store_or_observations() -> None:
    path_pin = Pin(OTHER, path="/m/model.safetensors")
    assert isinstance(_refusal(Pinned(), _facts(TrustStore(pins=(path_pin,)))),
                      DigestMismatchError)
    hub_pin = Pin(OTHER, repo="acme/m", revision=COMMIT, file="model.safetensors")
    observed = Observations(pins=(hub_pin,))
    assert isinstance(_refusal(Pinned(), _facts(observations=observed, hub=HUB)),
                      DigestMismatchError)
    assert _refusal(Pinned(), _facts(TrustStore(pins=(replace(path_pin, sha256=SHA),)))) is None


def test_signature_step_replays_the_verifier_failure() -> None:
    bad = SignatureFacts(path="/m/model.sig", failure=SignatureError("does not verify"))
    assert isinstance(_refusal(SignatureVerifies(), _facts(signature=bad)), SignatureError)
    assert _refusal(SignatureVerifies(), _facts(signature=_signed())) is None
    assert _refusal(SignatureVerifies(), _facts()) is None  # unsigned is not this step's case


def test_namespace_binding_needs_the_owners_signature() -> None:
    store = TrustStore(publishers=(ACME,))
    unsigned = _refusal(NamespaceBinding(), _facts(store, hub=HUB))
    assert isinstance(unsigned, SignatureError) and "namespace of publisher acme" in str(unsigned)
    rival = _refusal(NamespaceBinding(), _facts(store, hub=HUB, signature=_signed("rival")))
    assert isinstance(rival, UntrustedPublisherError)
    assert _refusal(NamespaceBinding(), _facts(store, hub=HUB, signature=_signed())) is None
    assert _refusal(NamespaceBinding(), _facts(store)) is None  # local files are not bound


def test_no_silent_downgrade_refuses_unsigned_after_signed() -> None:
    seen = Observations(signed=(SignedRecord("file:/m", "acme", KEY, "2029-01-01"),))
    refused = _refusal(NoSilentDowngrade(), _facts(observations=seen))
    assert isinstance(refused, SignatureError) and "was loaded signed by acme" in str(refused)
    assert _refusal(NoSilentDowngrade(), _facts(observations=seen, signature=_signed())) is None
    elsewhere = Observations(signed=(SignedRecord("file:/other", "acme", KEY, "2029"),))
    assert _refusal(NoSilentDowngrade(), _facts(observations=elsewhere)) is None


def test_strict_needs_a_signature() -> None:
    strict = TrustStore(policy=Policy(mode="strict"))
    assert isinstance(_refusal(StrictNeedsSignature(), _facts(strict)), SignatureError)
    assert _refusal(StrictNeedsSignature(), _facts(strict, signature=_signed())) is None
    assert _refusal(StrictNeedsSignature(), _facts()) is None


# --------------------------------------------------------------------------------------------
# audit wrapping and the whole decision


def test_audit_wrapper_turns_a_refusal_into_a_waiver() -> None:
    store = TrustStore(pins=(Pin(OTHER, path="/m/model.safetensors"),))
    outcome = AuditOnly(Pinned()).check(_facts(store))
    assert outcome.refusal is None and isinstance(outcome.waived, DigestMismatchError)


def test_audit_wrapper_keeps_a_revoked_key_refused() -> None:
    revoked_key = SignatureFacts(path="/m/model.sig", failure=RevokedError("revoked key"))
    outcome = AuditOnly(SignatureVerifies()).check(_facts(signature=revoked_key))
    assert isinstance(outcome.refusal, RevokedError) and outcome.waived is None


def test_revoked_digest_is_refused_in_audit_mode() -> None:
    store = TrustStore(policy=Policy(mode="audit")).with_revoked_digest(SHA)
    assert not any(isinstance(s, AuditOnly) and isinstance(s.step, Revoked)
                   for s in policy_steps("audit"))
    with pytest.raises(RevokedError):
        decide(_facts(store))


def test_audit_mode_loads_with_every_waived_refusal_as_a_warning() -> None:
    store = TrustStore(publishers=(ACME,), policy=Policy(mode="audit"),
                       pins=(Pin(OTHER, repo="acme/m", revision=COMMIT,
                                 file="model.safetensors"),))
    d = decide(_facts(store, hub=HUB))
    assert d.trust.pin == "mismatch" and len(d.waived) == 2
    assert all(w.startswith("audit: would refuse:") for w in d.trust.warnings)
    with pytest.raises(DigestMismatchError):  # the same facts refuse in default mode
        decide(_facts(replace(store, policy=Policy()), hub=HUB))


def test_decision_asks_to_record_a_first_use_pin_and_a_signed_location() -> None:
    d = decide(_facts(hub=HUB, signature=_signed()))
    assert d.trust.pin == "new" and d.trust.signed and d.trust.publisher == "acme"
    assert d.new_pin == Pin(SHA, repo="acme/m", revision=COMMIT, file="model.safetensors")
    assert d.new_record == SignedRecord("hf:acme/m", "acme", KEY, "2030-01-01T00:00:00Z")
    # a re-upload: signed by acme, but the repo is outside acme's namespaces
    reup = decide(_facts(TrustStore(publishers=(ACME,)), signature=_signed(),
                         hub=replace(HUB, repo="mirror/m")))
    assert reup.trust.reupload and any("re-upload" in w for w in reup.trust.warnings)


def test_local_files_are_not_pinned_unless_asked() -> None:
    assert decide(_facts()).new_pin is None
    assert decide(_facts(pin_local=True)).new_pin == Pin(SHA, path="/m/model.safetensors")
    tag = decide(_facts(hub=replace(HUB, revision="main")))
    assert tag.new_pin is None and any("not a commit hash" in w for w in tag.trust.warnings)
