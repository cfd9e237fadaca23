"""The overlay rule, clause by clause: the organisation's revocations, licence denials and mode
floor always win; the overlay adds restrictions always and trust only when allowed."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace
from pathlib import Path

import pytest
from tuf_repo import TufRepo

from safeload import fleet
from safeload.errors import RevokedError, TrustStoreError
from safeload.fleet import StricterLicensePolicy, build_document, merge
from safeload.licenses import LicensePolicy, license_info
from safeload.trust import (
    MODES,
    Pin,
    Policy,
    Publisher,
    RevisionLock,
    TrustedKey,
    TrustStore,
    check_bytes,
)

A, B, C = "a" * 64, "b" * 64, "c" * 64
C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40


def key() -> TrustedKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return TrustedKey.from_pem(pem)


def overlay(store: TrustStore | None = None) -> TrustStore:
    """A local store that exists on disk (a missing one is no overlay)."""
    return replace(store or TrustStore(), path=Path("/nonexistent/trust.json"), exists=True)


def with_mode(store: TrustStore, mode: str, **kw: object) -> TrustStore:
    return store.with_policy(replace(store.policy, mode=mode, **kw))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# revocations


def test_organisation_revocations_always_win_and_the_overlay_may_revoke_more() -> None:
    k = key()
    org = (TrustStore().with_revoked_digest(A, "org").with_revoked_key(k.key_id, "org")
           .with_revoked_identity("https://issuer.example", "ci@example.org", "org"))
    local = overlay(TrustStore().with_publisher(Publisher("mine", ("me/*",), keys=(k,)))
                    .with_revoked_digest(B, "local"))
    for allow in (False, True):
        merged = merge(org, local, allow_local_trust=allow)
        assert merged.digest_revocation(A) and merged.digest_revocation(B)
        assert merged.key_revocation(k.key_id) is not None  # listed under "mine", still revoked
        assert merged.identity_revocation("https://issuer.example", "ci@example.org")
        with pytest.raises(RevokedError):
            check_bytes("model.safetensors", sha256=A, store=merged)


# ------------------------------------------------------------------------------------------
# mode floor and the other policy switches


@pytest.mark.parametrize(("org_mode", "local_mode"), list(itertools.product(MODES, MODES)))
def test_the_mode_is_the_stricter_of_the_two(org_mode: str, local_mode: str) -> None:
    merged = merge(with_mode(TrustStore(), org_mode), overlay(with_mode(TrustStore(), local_mode)))
    assert merged.policy.mode == MODES[min(MODES.index(org_mode), MODES.index(local_mode))]


@pytest.mark.parametrize(("org_kw", "local_kw", "expected"), [
    ({"pickles": "refuse"}, {"pickles": "convert"}, {"pickles": "refuse"}),
    ({"pickles": "convert"}, {"pickles": "refuse"}, {"pickles": "refuse"}),
    ({"pin_hub_on_first_use": True}, {"pin_hub_on_first_use": False},
     {"pin_hub_on_first_use": True}),
    ({"pin_hub_on_first_use": False}, {"pin_hub_on_first_use": True},
     {"pin_hub_on_first_use": True}),
    ({"pin_local_files": True}, {"pin_local_files": False}, {"pin_local_files": True}),
    ({"pin_local_files": False}, {"pin_local_files": True}, {"pin_local_files": True}),
])
def test_policy_switches_take_the_restrictive_side(org_kw: dict[str, object],
                                                   local_kw: dict[str, object],
                                                   expected: dict[str, object]) -> None:
    org = TrustStore().with_policy(replace(Policy(), **org_kw))  # type: ignore[arg-type]
    local = overlay(TrustStore().with_policy(replace(Policy(), **local_kw)))  # type: ignore[arg-type]
    merged = merge(org, local).policy
    assert {k: getattr(merged, k) for k in expected} == expected


def test_a_missing_overlay_leaves_the_organisation_policy_alone() -> None:
    org = with_mode(TrustStore(), "audit", pin_hub_on_first_use=False)
    merged = merge(org, TrustStore.default())  # exists=False: the built-in default policy
    assert merged.policy == org.policy


# ------------------------------------------------------------------------------------------
# licences


def _licences(org: LicensePolicy, local: LicensePolicy, tag: str) -> str:
    o = TrustStore().with_policy(replace(Policy(), licenses=org))
    m = merge(o, overlay(TrustStore().with_policy(replace(Policy(), licenses=local))))
    return m.policy.licenses.rule_for(license_info(tag))[0]


@pytest.mark.parametrize(("org", "local", "tag", "expected"), [
    # an overlay allow naming the licence would beat a class deny inside one policy: not here
    ({"deny": ["non-commercial"]}, {"allow": ["cc-by-nc-4.0"]}, "cc-by-nc-4.0", "deny"),
    ({"deny": ["non-commercial"]}, {"warn": ["cc-by-nc-4.0"]}, "cc-by-nc-4.0", "deny"),
    ({"deny": ["cc-by-nc-4.0"]}, {"allow": ["non-commercial", "cc-by-nc-4.0"]},
     "cc-by-nc-4.0", "deny"),
    # the overlay adds restrictions, even against an organisation allow by name
    ({"allow": ["gpl-3.0"]}, {"deny": ["strong-copyleft"]}, "gpl-3.0", "deny"),
    ({}, {"warn": ["mit"]}, "mit", "warn"),
    ({"warn": ["custom"], "allow": ["llama3.1"]}, {"warn": ["custom"]}, "llama3.1", "warn"),
    # and nothing changes where neither objects
    ({}, {}, "mit", "allow"),
    ({"warn": ["custom"], "allow": ["llama3.1"]}, {"warn": ["custom"], "allow": ["llama3.1"]},
     "llama3.1", "allow"),
])
def test_each_licence_gets_the_stricter_verdict(org: dict[str, list[str]],
                                                local: dict[str, list[str]], tag: str,
                                                expected: str) -> None:
    assert _licences(LicensePolicy.from_dict(org), LicensePolicy.from_dict(local), tag) \
        == expected


def test_a_layered_licence_policy_changes_the_state_digest_and_is_not_writable() -> None:
    org = TrustStore()
    a = merge(org, overlay(TrustStore().with_policy(
        replace(Policy(), licenses=LicensePolicy.from_dict({"deny": ["mit"]})))))
    b = merge(org, overlay(TrustStore().with_policy(
        replace(Policy(), licenses=LicensePolicy.from_dict({"deny": ["gpl-3.0"]})))))
    assert isinstance(a.policy.licenses, StricterLicensePolicy)
    assert a.state_digest() != b.state_digest() != org.state_digest()
    rule = a.policy.licenses.rule_for(license_info("mit"))
    assert rule == ("deny", "deny: mit (local overlay)")
    with pytest.raises(TrustStoreError):  # a merged store is for reading, never written back
        TrustStore.from_dict(a.to_dict())


# ------------------------------------------------------------------------------------------
# pins and revision locks


def test_the_overlay_adds_pins_and_the_organisation_pin_stands_on_conflict() -> None:
    org = TrustStore().with_pin(Pin(A, path="/models/a.safetensors"))
    local = overlay(TrustStore().with_pin(Pin(B, path="/models/a.safetensors"))
                    .with_pin(Pin(C, path="/models/c.safetensors")))
    merged = merge(org, local)
    assert merged.find_pin(("path", "/models/a.safetensors")).sha256 == A  # type: ignore[union-attr]
    assert merged.find_pin(("path", "/models/c.safetensors")).sha256 == C  # type: ignore[union-attr]


def test_revision_locks_are_added_and_intersected() -> None:
    org = TrustStore().with_revision_lock(RevisionLock("org/model", (C1, C2)))
    local = overlay(TrustStore().with_revision_lock(RevisionLock("org/model", (C2, C3)))
                    .with_revision_lock(RevisionLock("me/other", (C1,))))
    merged = merge(org, local)
    assert merged.revision_lock("org/model").revisions == (C2,)  # type: ignore[union-attr]
    assert merged.revision_lock("me/other").revisions == (C1,)  # type: ignore[union-attr]


def test_disjoint_revision_locks_fail_closed() -> None:
    org = TrustStore().with_revision_lock(RevisionLock("org/model", (C1,)))
    local = overlay(TrustStore().with_revision_lock(RevisionLock("org/model", (C3,))))
    with pytest.raises(TrustStoreError, match="shares no commit") as info:
        merge(org, local)
    assert "safeload trust" in info.value.diagnostics()


# ------------------------------------------------------------------------------------------
# publishers: trust only where the organisation allows it


def test_local_publishers_are_dropped_unless_the_organisation_allows_local_trust() -> None:
    mine = Publisher("mine", ("me/*",), keys=(key(),))
    local = overlay(TrustStore().with_publisher(mine))
    assert merge(TrustStore(), local).publisher("mine") is None
    assert merge(TrustStore(), local, allow_local_trust=False).owners_of("me/x") == []
    assert merge(TrustStore(), local, allow_local_trust=True).publisher("mine") == mine


def test_an_overlay_cannot_extend_an_organisation_publishers_expiry() -> None:
    soon = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    later, earlier = soon.replace(year=2040), soon.replace(year=2029)
    k = key()
    org = TrustStore().with_publisher(Publisher("org", ("org/*",), keys=(k,), expires=soon))
    for local_exp, expected in ((later, soon), (None, soon), (earlier, earlier)):
        local = overlay(TrustStore().with_publisher(
            Publisher("org", ("org/*",), keys=(key(),), expires=local_exp)))
        merged = merge(org, local, allow_local_trust=True)
        assert merged.publisher("org").expires == expected  # type: ignore[union-attr]
        assert len(merged.publisher("org").keys) == 2  # type: ignore[union-attr]


def test_the_merged_store_keeps_the_overlays_path_for_observations() -> None:
    local = overlay()
    assert merge(TrustStore(), local).path == local.path


# ------------------------------------------------------------------------------------------
# end to end: the organisation document decides allow_local_trust


@pytest.mark.parametrize("allow", [False, True])
def test_effective_store_applies_the_documents_allow_local_trust(
        node: Path, repo: TufRepo, allow: bool) -> None:
    repo.publish(build_document(TrustStore().with_revoked_digest(A), serial=2,
                                allow_local_trust=allow))
    mine = Publisher("mine", ("me/*",), keys=(key(),))
    local = overlay(TrustStore().with_publisher(mine).with_revoked_digest(B))
    store, ident = fleet.effective_store(local)
    assert ident is not None and ident.allow_local_trust is allow and ident.serial == 2
    assert (store.publisher("mine") is not None) is allow
    assert store.digest_revocation(A) and store.digest_revocation(B)


def test_an_audit_overlay_cannot_lower_the_organisations_strict_mode(node: Path) -> None:
    store, _ = fleet.effective_store(overlay(with_mode(TrustStore(), "audit")))
    assert store.policy.mode == "strict"  # conftest.store_doc publishes mode strict
