"""One rule for a node's local overlay on top of the organisation's store.

The organisation's store is the floor; the overlay (the node's own `trust.json`) may only raise
it, except that it may add trust where the organisation allows (`policy.allow_local_trust` in the
organisation document, false by default):

- revocations (keys, digests, keyless identities): the union. An organisation revocation cannot
  be undone locally, and the overlay may revoke more.
- mode: the stricter of the two (strict > default > audit): the organisation's mode is a floor.
- pickles: "refuse" if either says so; first-use pinning of Hub files and pinning of local files:
  on if either turns it on.
- licences: every licence is judged by both policies and the stricter verdict wins
  (deny > warn > allow), so an overlay rule can never lift an organisation denial, even where a
  licence-name rule would beat a class rule inside one policy.
- pins: the overlay adds pins; where both pin the same file, the organisation's pin stands.
- revision locks: the overlay adds locks; where both lock a repository, only the commits both
  allow remain, and no common commit is a `TrustStoreError` (the node cannot satisfy both).
- publishers (keys, certificate roots, keyless identities, namespaces) are trust: the overlay's
  are added only when the organisation allows local trust, and an organisation publisher's
  expiry can only be brought forward.

A missing overlay file (`exists=False`) is no overlay: its built-in default policy does not count
as a local choice. The merged store keeps the overlay's `path`, so what loads observe (first-use
pins) stays beside the node's own file. A merged store is for reading: its licence policy does
not serialise to a store `load()` accepts, so writing it back fails closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from safeload._internal.text import safe_text
from safeload.errors import TrustStoreError
from safeload.licenses import Action, LicenseInfo, LicensePolicy
from safeload.trust import MODES, Mode, Policy, Publisher, RevisionLock, TrustStore

_RANK: dict[str, int] = {"allow": 0, "warn": 1, "deny": 2}


@dataclass(frozen=True)
class StricterLicensePolicy(LicensePolicy):
    """Judges a licence by every layer and keeps the strictest verdict (the first on a tie)."""

    layers: tuple[tuple[str, LicensePolicy], ...] = field(default=())

    def rule_for(self, info: LicenseInfo) -> tuple[Action, str | None]:
        best: tuple[Action, str | None] = ("allow", None)
        for name, layer in self.layers:
            action, rule = layer.rule_for(info)
            if _RANK[action] > _RANK[best[0]]:
                best = (action, f"{rule} ({name})" if rule else None)
        return best

    def to_dict(self) -> dict[str, Any]:
        # Distinct per layer set, so `state_digest()` (cache keys) follows any layer's change.
        return {"stricter_of": {name: layer.to_dict() for name, layer in self.layers}}


def _stricter_mode(a: Mode, b: Mode) -> Mode:
    return a if MODES.index(a) <= MODES.index(b) else b  # MODES lists strictest first


def stricter_policy(org: Policy, local: Policy, *,
                    names: tuple[str, str] = ("organisation store", "local overlay")) -> Policy:
    """Each field at the stricter of the two values (licence rules: both layers apply)."""
    licenses: LicensePolicy = org.licenses
    if local.licenses != org.licenses:
        licenses = StricterLicensePolicy(layers=((names[0], org.licenses),
                                                 (names[1], local.licenses)))
    return replace(
        org,
        mode=_stricter_mode(org.mode, local.mode),
        pickles="refuse" if "refuse" in (org.pickles, local.pickles) else "convert",
        pin_hub_on_first_use=org.pin_hub_on_first_use or local.pin_hub_on_first_use,
        pin_local_files=org.pin_local_files or local.pin_local_files,
        licenses=licenses,
    )


def _merge_lock(org: RevisionLock, local: RevisionLock) -> RevisionLock:
    common = tuple(sorted(set(org.revisions) & set(local.revisions)))
    if not common:
        raise TrustStoreError(
            f"the local revision lock of {safe_text(org.repo)} shares no commit with the "
            "organisation's lock, so nothing could load",
            hint="remove the repository's lock from the local trust store "
                 "(`safeload trust unlock`), or lock it to a commit the organisation allows")
    return RevisionLock(org.repo, common)


def _add_publisher(out: TrustStore, local: Publisher) -> TrustStore:
    org = out.publisher(local.name)
    merged = out.with_publisher(local)
    if org is None or org.expires is None:
        return merged
    # with_publisher takes the overlay's expiry; an overlay may only bring the org's forward.
    expires = org.expires if local.expires is None else min(org.expires, local.expires)
    return replace(merged, publishers=tuple(replace(p, expires=expires) if p.name == local.name
                                            else p for p in merged.publishers))


def merge(org: TrustStore, local: TrustStore, allow_local_trust: bool = False) -> TrustStore:
    """The store a node uses: `org` with `local`'s overlay, by the rule in the module docstring.

    Raises:
        TrustStoreError: the two stores cannot both hold (disjoint revision locks).
    """
    if not local.exists:
        return replace(org, path=local.path, exists=False)
    out = replace(org, policy=stricter_policy(org.policy, local.policy))
    for r in local.revoked_keys:
        out = out.with_revoked_key(r.value, r.reason)
    for r in local.revoked_digests:
        out = out.with_revoked_digest(r.value, r.reason)
    for r in local.revoked_identities:
        out = replace(out, revoked_identities=(*out.revoked_identities, r)) \
            if out.identity_revocation(*r.value.split(" ", 1)) is None else out
    for pin in local.pins:
        if out.find_pin(pin.target) is None:
            out = out.with_pin(pin)
    for lock in local.revision_locks:
        old = out.revision_lock(lock.repo)
        out = out.with_revision_lock(lock if old is None else _merge_lock(old, lock))
    if allow_local_trust:
        for p in local.publishers:
            out = _add_publisher(out, p)
    return replace(out, path=local.path, exists=local.exists)


__all__ = ["StricterLicensePolicy", "merge", "stricter_policy"]
