"""Trust anchors: what the signature verifier is handed to decide who signed.

sigstore-python's `Verifier(trusted_root=...)` pattern: the verifier never finds or loads trust
material itself; the caller passes an object with the publishers' keys, X.509 roots and keyless
identities, and the revocations of keys, certificates and identities. `safeload.trust.TrustStore`
satisfies `TrustAnchors` (structurally: this module never imports the trust store, so `signing`
sits below `trust` in the layers and the two never import each other's way up).

Also here: the checks the verifier makes against the anchors (revoked key ids, revoked keyless
identities, keyless rules grouped by Sigstore instance), so that every consumer of a
`TrustAnchors` applies them the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from safeload._internal.text import safe_text
from safeload.errors import RevokedError
from safeload.signing.keyless import IdentityRule, KeylessResult

if TYPE_CHECKING:
    from cryptography import x509

    from safeload.signing._keys import PublicKey


class AnchorKey(Protocol):
    """A trusted public key (the key method)."""

    @property
    def key_id(self) -> str: ...  # SHA-256 of the DER SubjectPublicKeyInfo
    @property
    def hint(self) -> str: ...  # model_signing's publicKey.hint
    @property
    def expires(self) -> dt.datetime | None: ...
    def public_key(self) -> PublicKey: ...


class AnchorRoot(Protocol):
    """A trusted X.509 root and the leaf identities (SANs) it may vouch for."""

    @property
    def identities(self) -> tuple[str, ...]: ...
    @property
    def expires(self) -> dt.datetime | None: ...
    def certificate(self) -> x509.Certificate: ...


class AnchorIdentity(Protocol):
    """A keyless signer: exact issuer, exact SAN or full-match SAN regex, on one instance."""

    @property
    def issuer(self) -> str: ...
    @property
    def san(self) -> str | None: ...
    @property
    def san_regex(self) -> str | None: ...
    @property
    def instance(self) -> str: ...
    @property
    def extensions(self) -> tuple[tuple[str, str], ...]: ...


class AnchorPublisher(Protocol):
    """A named publisher and everything it signs with."""

    @property
    def name(self) -> str: ...
    @property
    def expires(self) -> dt.datetime | None: ...
    @property
    def keys(self) -> Sequence[AnchorKey]: ...
    @property
    def roots(self) -> Sequence[AnchorRoot]: ...
    @property
    def identities(self) -> Sequence[AnchorIdentity]: ...


class Revoked(Protocol):
    """A revocation entry; only its reason is shown."""

    @property
    def reason(self) -> str: ...


class TrustAnchors(Protocol):
    """Everything the verifier trusts or distrusts. `safeload.trust.TrustStore` is one."""

    @property
    def publishers(self) -> Sequence[AnchorPublisher]: ...
    def key_revocation(self, key_id: str) -> Revoked | None: ...
    def identity_revocation(self, issuer: str, san: str) -> Revoked | None: ...


def publisher_named(anchors: TrustAnchors, name: str) -> AnchorPublisher | None:
    """The publisher with this exact name, if any."""
    return next((p for p in anchors.publishers if p.name == name), None)


def check_key_revoked(anchors: TrustAnchors | None, key_ids: Iterable[str], what: str) -> None:
    """Raises: RevokedError when one of `key_ids` (keys, CA keys, certificate fingerprints)
    is revoked. No anchors (a one-off check with a given key or root): nothing is revoked."""
    if anchors is None:
        return
    for kid in key_ids:
        rev = anchors.key_revocation(kid)
        if rev is not None:
            why = f" ({safe_text(rev.reason)})" if rev.reason else ""
            raise RevokedError(f"{what} was made with revoked key {kid}{why}")


def check_identity_revoked(anchors: TrustAnchors, result: KeylessResult, *, source: str
                           ) -> None:
    """Raises: RevokedError when the keyless signer's identity is revoked."""
    rev = anchors.identity_revocation(result.issuer, result.identity)
    if rev is not None:
        why = f" ({safe_text(rev.reason)})" if rev.reason else ""
        raise RevokedError(f"{source}: signed keyless by the revoked identity "
                           f"{safe_text(result.identity)} from {safe_text(result.issuer)}"
                           f"{why}")


def keyless_rules(anchors: TrustAnchors) -> list[tuple[str, list[IdentityRule]]]:
    """The keyless identities of every publisher, grouped by the Sigstore instance (trusted
    root name) they use; the caller resolves each root only when a keyless bundle needs it."""
    groups: dict[str, list[IdentityRule]] = {}
    for p in anchors.publishers:
        for ident in p.identities:
            groups.setdefault(ident.instance, []).append(IdentityRule(
                issuer=ident.issuer, san=ident.san, san_regex=ident.san_regex,
                extensions=dict(ident.extensions), publisher=p.name,
                instance=ident.instance))
    return sorted(groups.items())


__all__ = [
    "AnchorIdentity", "AnchorKey", "AnchorPublisher", "AnchorRoot", "Revoked", "TrustAnchors",
    "check_identity_revoked", "check_key_revoked", "keyless_rules", "publisher_named",
]
