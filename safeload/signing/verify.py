"""Verify OpenSSF Model Signing (OMS) signatures: `key` and `certificate` methods.

Order of checks, each one refusing on failure:

1. the bundle (Sigstore bundle v0.3 holding a DSSE envelope) is read, the payload kept opaque;
2. the DSSE signature is checked over the PAE bytes, with a key from the trust store or the
   caller (key method), or with the leaf of a certificate chain that ends at a trusted root,
   whose identity (SAN) the trust store allows for that publisher (certificate method);
3. only then the payload is parsed: in-toto statement, manifest, subject digest;
4. `verify_model` re-hashes the model directory: every signed file present with the signed
   digest, no extra files beyond the format's ignore rules, no path leaving the directory.

Trust comes from what the caller hands over (sigstore-python's `Verifier(trusted_root=...)`):
a one-off key, root or identity, or `trust_store`, any object with the `signing.anchors.
TrustAnchors` shape (`safeload.trust.TrustStore` is one). This module never imports the trust
store and never loads one.

Stricter than model_signing 1.1.1: the leaf certificate must be valid now (not only when it
signed), the leaf must allow digital signatures (and code signing when it has an EKU), the
certificate identity is bound to the publisher, resource names with `..` are refused, an empty
manifest is refused.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from cryptography import x509

from safeload._internal.text import get_logger, safe_text
from safeload.errors import (
    SignatureError,
    UntrustedPublisherError,
)
from safeload.signing import _keys
from safeload.signing._format import (
    INTOTO_PAYLOAD_TYPE,
    MAX_BUNDLE_BYTES,
    Bundle,
    pae,
    parse_bundle,
    parse_statement,
)
from safeload.signing._tree import (
    open_regular,
)
from safeload.signing.anchors import (
    TrustAnchors,
    check_identity_revoked,
    check_key_revoked,
    keyless_rules,
    publisher_named,
)
from safeload.signing.files import check_files
from safeload.signing.results import Method, SignedManifest, VerificationResult

if TYPE_CHECKING:
    from safeload.signing.sigstore_roots import SigstoreRoot

_logger = get_logger(__name__)

DEFAULT_SIGNATURE_NAME = "model.sig"
PathLike = str | os.PathLike[str]


def default_signature_path(model_path: Path) -> Path:
    """`model.sig` inside a model directory, `<file>.sig` beside a single-file model."""
    return model_path / DEFAULT_SIGNATURE_NAME if model_path.is_dir() else \
        model_path.with_name(model_path.name + ".sig")


def read_signature(path: Path) -> bytes:
    """The bytes of a signature file (bounded; FIFOs and devices refused).

    Raises:
        UnsafePathError: not a regular file. OSError: cannot read.
    """
    fd = open_regular(path, follow_symlinks=True)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    finally:
        os.close(fd)
    return data


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _verify_key_method(
    bundle: Bundle, signed: bytes, *, source: str, store: TrustAnchors | None,
    key: PathLike | None, now: dt.datetime,
) -> tuple[str | None, str]:
    """(publisher, key id) of the key whose signature verifies."""
    if key is not None:
        try:
            pub = _keys.load_public_key(Path(key).read_bytes())
        except _keys.BadKeyError as exc:
            raise SignatureError(f"{safe_text(key)}: {exc}") from exc
        if bundle.key_hint and bundle.key_hint != _keys.pem_hint(pub):
            raise SignatureError(
                f"{source}: key mismatch: the signature was made with another key (bundle hint "
                f"{safe_text(bundle.key_hint, limit=80)}, given key hint {_keys.pem_hint(pub)})"
            )
        if not _keys.verify_raw(pub, bundle.signature, signed):
            raise SignatureError(f"{source}: the signature does not verify with {safe_text(key)}")
        kid = _keys.key_id(pub)
        check_key_revoked(store, [kid], source)
        return None, kid
    assert store is not None
    candidates = [
        (p, k) for p in store.publishers for k in p.keys
        if bundle.key_hint is None or k.hint == bundle.key_hint
    ]
    if not candidates:
        raise UntrustedPublisherError(
            f"{source}: signed by a key that is not in the trust store"
            + (f" (key hint {safe_text(bundle.key_hint, limit=80)})" if bundle.key_hint else ""),
            hint="if you trust this publisher, add its public key: "
                 "safeload trust add-key PUBLISHER KEY.pem",
        )
    for publisher, tkey in candidates:
        if not _keys.verify_raw(tkey.public_key(), bundle.signature, signed):
            continue
        check_key_revoked(store, [tkey.key_id], source)
        expiry = min((e for e in (tkey.expires, publisher.expires) if e is not None), default=None)
        if expiry is not None and now > expiry:
            raise SignatureError(
                f"{source}: signed by publisher {safe_text(publisher.name)} with key "
                f"{tkey.key_id[:16]}..., which the trust store trusts only until "
                f"{expiry:%Y-%m-%d}"
            )
        return publisher.name, tkey.key_id
    names = sorted({safe_text(p.name) for p, _ in candidates})
    raise SignatureError(
        f"{source}: the signature does not verify with the trusted key(s) of "
        f"{', '.join(names)} (the bundle or its payload was altered, or it was signed by "
        "another key)"
    )


def _load_certs(bundle: Bundle, source: str) -> list[x509.Certificate]:
    try:
        return [x509.load_der_x509_certificate(der) for der in bundle.certificates]
    except ValueError as exc:
        raise SignatureError(f"{source}: a certificate in the bundle is malformed") from exc


def _verify_certificate_method(
    bundle: Bundle, signed: bytes, *, source: str, store: TrustAnchors | None,
    roots_paths: Sequence[PathLike] | None, identity: str | None, now: dt.datetime,
) -> tuple[str | None, str, str]:
    """(publisher, leaf key id, matched identity)."""
    certs = _load_certs(bundle, source)
    candidates: list[tuple[str | None, list[x509.Certificate], tuple[str, ...],
                           dt.datetime | None]] = []
    if roots_paths is not None:
        roots: list[x509.Certificate] = []
        for rp in roots_paths:
            try:
                roots.extend(_keys.load_pem_certificates(Path(rp).read_bytes()))
            except _keys.BadKeyError as exc:
                raise SignatureError(f"{safe_text(rp)}: {exc}") from exc
        candidates.append((None, roots, (identity,) if identity else (), None))
    else:
        assert store is not None
        for pub in store.publishers:
            for root in pub.roots:
                allowed = root.identities if identity is None else \
                    tuple(i for i in root.identities if i == identity)
                expiry = min((e for e in (root.expires, pub.expires) if e is not None),
                             default=None)
                candidates.append((pub.name, [root.certificate()], allowed, expiry))
        if not candidates:
            raise UntrustedPublisherError(
                f"{source}: signed with a certificate, and the trust store has no root "
                "certificates",
                hint="add the publisher's root: safeload trust add-key PUBLISHER ROOT.pem "
                     "--identity SAN",
            )
    leaf_errors: list[SignatureError] = []
    chain_errors: list[_keys.ChainError] = []
    identity_refusals: list[str] = []
    for publisher, roots, allowed, expiry in candidates:
        try:
            chain = _keys.verify_chain(certs, roots, now=now)
        except _keys.ChainError as exc:
            chain_errors.append(exc)
            continue
        except SignatureError as exc:
            leaf_errors.append(exc)
            continue
        if allowed or publisher is not None:
            matched = [i for i in chain.identities if i in allowed]
            if not matched:
                identity_refusals.append(
                    f"the leaf identity {safe_text(', '.join(chain.identities) or '(none)')} is "
                    f"not allowed" + (f" for publisher {safe_text(publisher)}" if publisher
                                     else f" (expected {safe_text(identity)})")
                )
                continue
            ident: str | None = matched[0]
        else:
            ident = chain.identities[0] if chain.identities else None
            _logger.warning(
                "%s: no --identity given: any certificate under the given root is accepted "
                "(leaf identity: %s)", source, safe_text(ident))
        if expiry is not None and now > expiry:
            raise SignatureError(
                f"{source}: publisher {safe_text(publisher)}'s root is trusted only until "
                f"{expiry:%Y-%m-%d}"
            )
        try:
            leaf_key = _keys.certificate_key(chain.leaf)
        except _keys.BadKeyError as exc:
            raise SignatureError(f"{source}: signing certificate: {exc}") from exc
        if not _keys.verify_raw(leaf_key, bundle.signature, signed):
            raise SignatureError(
                f"{source}: the signature does not verify with the signing certificate's key "
                "(the bundle or its payload was altered)"
            )
        ids = [_keys.key_id(leaf_key)]
        for c in chain.chain[1:]:
            try:
                ids.append(_keys.key_id(_keys.certificate_key(c)))
            except _keys.BadKeyError:
                continue  # an RSA CA cannot be in our revocation list anyway
        check_key_revoked(store, ids, source)
        return publisher, ids[0], ident or ""
    if leaf_errors:
        raise SignatureError(f"{source}: {leaf_errors[0]}") from leaf_errors[0]
    if identity_refusals:
        raise UntrustedPublisherError(f"{source}: {identity_refusals[0]}")
    raise UntrustedPublisherError(
        f"{source}: the signing certificate does not chain to a trusted root"
        + (f" ({chain_errors[0]})" if chain_errors else ""),
        hint="add the publisher's root certificate with its allowed identities: "
             "safeload trust add-key PUBLISHER ROOT.pem --identity SAN",
    )


def verify_signature(
    signature_path: PathLike,
    *,
    trust_store: TrustAnchors | None = None,
    key: PathLike | None = None,
    certificate_chain: Sequence[PathLike] | None = None,
    identity: str | None = None,
    now: dt.datetime | None = None,
    identity_provider: str | None = None,
    sigstore_root: SigstoreRoot | None = None,
) -> SignedManifest:
    """Check a signature file and return its manifest, without reading any model file.

    Trust comes from `key` (a PEM public key file) or `certificate_chain` (PEM root files) for a
    one-off check, or for a keyless bundle from `identity` (SAN) + `identity_provider` (OIDC
    issuer) under `sigstore_root` (default: the shipped production root), otherwise from
    `trust_store`: the trust anchors (`signing.anchors.TrustAnchors`, e.g. a
    `safeload.trust.TrustStore`). The verifier never loads a store itself; pass one, or use
    `safeload.trust.verify_with_store`. With a one-off key, root or identity, the anchors' key
    and identity revocations still apply when `trust_store` is passed.

    Raises:
        SignatureError: malformed bundle, signature that does not verify, expired or unusable
            certificate, inconsistent or unsafe manifest.
        UntrustedPublisherError: valid-looking signature by a key, root or identity that the
            trust store does not trust.
        RevokedError: signed by a revoked key.
        UnsupportedSignatureError: a keyless Sigstore bundle without the `sigstore` extra, or
            another kind safeload cannot check (could not decide).
        ValueError: no trust anchors at all (no `trust_store`, key, root or identity).
        OSError: the signature file cannot be read.
    """
    sig_path = Path(signature_path)
    return verify_signature_bytes(
        read_signature(sig_path), signature_path=sig_path, trust_store=trust_store, key=key,
        certificate_chain=certificate_chain, identity=identity, now=now,
        identity_provider=identity_provider, sigstore_root=sigstore_root)


def _verify_sigstore_method(
    data: bytes, bundle: Bundle, *, source: str, sig_path: Path, store: TrustAnchors | None,
    identity: str | None, issuer: str | None, root: SigstoreRoot | None, now: dt.datetime,
) -> SignedManifest:
    """A keyless bundle: a one-off identity + issuer, or the trust store's keyless publishers."""
    from safeload.signing import keyless
    from safeload.signing.sigstore_store import resolve_root

    if (identity is None) != (issuer is None):
        raise SignatureError(f"{source}: a keyless check needs both --identity and "
                             "--identity-provider")
    results: list[tuple[str | None, keyless.KeylessResult]] = []
    if identity is not None and issuer is not None:
        rule = keyless.IdentityRule(issuer=issuer, san=identity)
        results.append((None, keyless.verify_keyless(
            data, source=source, root=root or resolve_root("production"), rules=[rule])))
    else:
        if store is None:
            raise SignatureError(f"{source}: a keyless check needs an identity or a trust store")
        groups = keyless_rules(store)
        if not groups:
            raise UntrustedPublisherError(
                f"{source}: signed keyless, and the trust store has no keyless identities",
                hint="if you trust the signer: safeload trust add-identity PUBLISHER "
                     "--issuer ISSUER --san SAN")
        # One pass per trusted Sigstore root; an identity only counts on its own instance.
        failures: list[SignatureError | UntrustedPublisherError] = []
        for instance, rules in groups:
            try:
                results.append((None, keyless.verify_keyless(
                    data, source=source, root=resolve_root(instance), rules=rules)))
                break
            except (UntrustedPublisherError, SignatureError) as exc:
                failures.append(exc)
        if not results:
            # A bundle that verifies under a root but names another identity says most.
            raise next((f for f in failures if isinstance(f, UntrustedPublisherError)),
                       failures[0])
    _, res = results[0]
    if store is not None:
        check_key_revoked(store, [res.key_id, res.cert_fingerprint], source)
        check_identity_revoked(store, res, source=source)
        pub = publisher_named(store, res.rule.publisher) if res.rule.publisher else None
        if pub is not None and pub.expires is not None and now > pub.expires:
            raise SignatureError(f"{source}: publisher {safe_text(pub.name)} is trusted only "
                                 f"until {pub.expires:%Y-%m-%d}")
    manifest = parse_statement(res.payload, res.payload_type, source=source)
    return SignedManifest(
        manifest=manifest, method="sigstore", publisher=res.rule.publisher, key_id=res.key_id,
        identity=res.identity, signature_path=str(sig_path), signature_sha256=bundle.sha256,
        keyless=res)


def verify_signature_bytes(
    data: bytes,
    *,
    signature_path: PathLike,
    trust_store: TrustAnchors | None = None,
    key: PathLike | None = None,
    certificate_chain: Sequence[PathLike] | None = None,
    identity: str | None = None,
    now: dt.datetime | None = None,
    identity_provider: str | None = None,
    sigstore_root: SigstoreRoot | None = None,
) -> SignedManifest:
    """`verify_signature` on bundle bytes already read (`signature_path` names them in errors).

    Raises:
        The same as `verify_signature`.
    """
    if key is not None and certificate_chain is not None:
        raise ValueError("pass key or certificate_chain, not both")
    sig_path = Path(signature_path)
    source = safe_text(sig_path)
    store = trust_store
    if store is None and key is None and certificate_chain is None and (
            identity is None or identity_provider is None):
        raise ValueError("no trust anchors: pass trust_store (e.g. safeload.trust.TrustStore"
                         ".load()), a key, a certificate_chain, or identity + identity_provider")
    when = now or _now()
    bundle = parse_bundle(data, source=source)
    # model_signing builds the PAE with the constant in-toto type and checks payloadType after
    # the signature; doing the same keeps both tools agreeing on what was signed.
    signed = pae(INTOTO_PAYLOAD_TYPE, bundle.payload)
    ident: str | None = None
    if bundle.method == "sigstore":
        if key is not None or certificate_chain is not None:
            raise SignatureError(
                f"{source}: the bundle is keyless (sigstore method) but a "
                f"{'public key' if key is not None else 'certificate chain'} was given",
                hint="verify it with --identity SAN --identity-provider ISSUER")
        return _verify_sigstore_method(
            data, bundle, source=source, sig_path=sig_path, store=store, identity=identity,
            issuer=identity_provider, root=sigstore_root, now=when)
    if identity_provider is not None or sigstore_root is not None:
        raise SignatureError(f"{source}: --identity-provider and a Sigstore root apply to "
                             f"keyless signatures; this one uses the {bundle.method} method")
    if bundle.method == "key":
        if certificate_chain is not None:
            raise SignatureError(
                f"{source}: the bundle uses the key method but a certificate chain was given"
            )
        publisher, kid = _verify_key_method(
            bundle, signed, source=source, store=store, key=key, now=when)
    else:
        if key is not None:
            raise SignatureError(
                f"{source}: the bundle uses the certificate method but a public key was given"
            )
        publisher, kid, ident = _verify_certificate_method(
            bundle, signed, source=source, store=store, roots_paths=certificate_chain,
            identity=identity, now=when)
    manifest = parse_statement(bundle.payload, bundle.payload_type, source=source)
    return SignedManifest(
        manifest=manifest,
        method=bundle.method,
        publisher=publisher,
        key_id=kid,
        identity=ident or None,
        signature_path=str(sig_path),
        signature_sha256=bundle.sha256,
    )


def verify_model(
    model_dir: PathLike,
    signature_path: PathLike | None = None,
    *,
    trust_store: TrustAnchors | None = None,
    key: PathLike | None = None,
    certificate_chain: Sequence[PathLike] | None = None,
    identity: str | None = None,
    known_digests: Mapping[str, str] | None = None,
    max_workers: int | None = None,
    identity_provider: str | None = None,
    sigstore_root: SigstoreRoot | None = None,
    ignore_paths: Sequence[str] = (),
) -> VerificationResult:
    """Verify a model directory (or single file) against its OMS signature.

    `signature_path` defaults to `model.sig` inside the directory (`<file>.sig` for a single
    file). `known_digests` maps relative paths to SHA-256 hex digests the caller already computed
    from its own open handle; they are used instead of re-reading those files when the manifest is
    `files` + `sha256` (otherwise the files are re-hashed).

    Raises:
        SignatureError, UntrustedPublisherError, RevokedError: see `verify_signature`.
        ManifestMismatchError: a signed file is missing or an unsigned one is present.
        DigestMismatchError: a file differs from its signed digest.
        UnsafePathError: a symlink leaving the directory (or any symlink when the signature does
            not allow them), a FIFO or another special file.
        UnsupportedSignatureError: keyless bundle, or blake3 without the `blake3` package.
        ValueError: no trust anchors (see `verify_signature`).
        OSError: a file cannot be read.
    """
    root = Path(model_dir)
    if not root.exists():
        raise FileNotFoundError(f"no such model: {root}")
    sig = Path(signature_path) if signature_path is not None else default_signature_path(root)
    if not sig.exists():
        raise SignatureError(f"no signature at {safe_text(sig)}",
                             hint="pass the signature file with --signature")
    signed = verify_signature(sig, trust_store=trust_store, key=key,
                              certificate_chain=certificate_chain, identity=identity,
                              identity_provider=identity_provider, sigstore_root=sigstore_root)
    files = check_files(signed, root, known_digests=known_digests, max_workers=max_workers,
                        ignore_paths=ignore_paths)
    return VerificationResult(
        publisher=signed.publisher,
        key_id=signed.key_id,
        method=signed.method,
        files=MappingProxyType(dict(sorted(files.items()))),
        subject_digest=signed.manifest.subject_digest,
        hash_type=signed.manifest.hash_type,
        serialization=signed.manifest.method,
        identity=signed.identity,
        signature_path=str(sig),
        signature_sha256=signed.signature_sha256,
        keyless=signed.keyless,
    )


__all__ = ["DEFAULT_SIGNATURE_NAME", "Method", "SignedManifest", "VerificationResult",
           "check_files", "default_signature_path", "read_signature", "verify_model",
           "verify_signature", "verify_signature_bytes"]
