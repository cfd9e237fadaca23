"""Keys, key ids and X.509 chains for the signing package. Internal and unstable.

Two identifiers exist for one public key, and both are lowercase hex SHA-256:

- the **key id** (safeload's, used in the trust store and in revocations): SHA-256 of the DER
  SubjectPublicKeyInfo; it does not depend on how a PEM file was wrapped or commented;
- the **hint** (model_signing's `publicKey.hint`): SHA-256 of the PEM text exactly as
  `cryptography` writes SubjectPublicKeyInfo. Unauthenticated: only used to pick a key early.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import verification as x509v
from cryptography.x509.oid import ExtendedKeyUsageOID

from safeload._internal.text import safe_text
from safeload.errors import SignatureError

PublicKey: TypeAlias = "ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey"
PrivateKey: TypeAlias = "ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey"

# The OMS algorithm registry: exactly these curves, each with its own hash (reference 2).
_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_CURVE_NAME = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}

# Chains longer than this are refused (a root, a few intermediates, the leaf).
MAX_CHAIN_DEPTH = 6


class ChainError(SignatureError):
    """No path from the leaf to a trusted root (as opposed to a leaf that is unusable itself)."""


class BadKeyError(ValueError):
    """A key that is not one safeload accepts; callers turn it into their own error."""


def algorithm_name(key: PublicKey | PrivateKey) -> str:
    """`ecdsa-p256`, `ecdsa-p384`, `ecdsa-p521` or `ed25519`.

    Raises:
        BadKeyError: any other key type or curve.
    """
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        name = _CURVE_NAME.get(key.curve.name)
        if name is not None:
            return name
        raise BadKeyError(
            f"unsupported elliptic curve {key.curve.name!r} (use P-256, P-384, P-521)")
    raise BadKeyError(
        f"unsupported key type {type(key).__name__} (use ECDSA P-256/P-384/P-521 or Ed25519)"
    )


def load_public_key(pem: bytes) -> PublicKey:
    """A PEM SubjectPublicKeyInfo, restricted to the key types safeload verifies with.

    Raises:
        BadKeyError: not PEM, not a public key, or an unsupported type.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadKeyError(f"not a PEM public key ({exc})") from exc
    if not isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise BadKeyError(
            f"unsupported key type {type(key).__name__} (use ECDSA P-256/P-384/P-521 or Ed25519)"
        )
    algorithm_name(key)
    return key


def load_private_key(pem: bytes, password: bytes | None = None) -> PrivateKey:
    """A PEM private key (SEC1, PKCS#8, optionally encrypted) of a supported type.

    Raises:
        BadKeyError: unreadable, wrong password, or an unsupported type.
        TypeError: the key is encrypted and no password was given (cryptography's own error).
    """
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadKeyError(f"cannot read the private key ({exc})") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise BadKeyError(
            f"unsupported key type {type(key).__name__} (use ECDSA P-256/P-384/P-521 or Ed25519)"
        )
    algorithm_name(key)
    return key


def key_id(key: PublicKey) -> str:
    """safeload's key id: hex SHA-256 of the DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_pem(key: PublicKey) -> bytes:
    """The canonical PEM text (what model_signing hashes for its hint)."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_hint(key: PublicKey) -> str:
    """model_signing's `publicKey.hint`: hex SHA-256 of the canonical PEM text."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def verify_raw(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """True when `signature` (DER ECDSA, or raw Ed25519) is valid for `data` under `key`."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(_CURVE_HASH[key.curve.name]()))
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


def sign_raw(key: PrivateKey, data: bytes) -> bytes:
    """DER ECDSA with the curve's hash, or an Ed25519 signature."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(_CURVE_HASH[key.curve.name]()))


# ------------------------------------------------------------------------------------------
# X.509


def certificate_key(cert: x509.Certificate) -> PublicKey:
    """The certificate's public key, if it is of a type safeload verifies with.

    Raises:
        BadKeyError: RSA, DSA, an unsupported curve...
    """
    key = cert.public_key()
    if not isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise BadKeyError(f"unsupported certificate key type {type(key).__name__}")
    algorithm_name(key)
    return key


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's DER."""
    return cert.fingerprint(hashes.SHA256()).hex()


def load_pem_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle.

    Raises:
        BadKeyError: no certificate, or a malformed one.
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise BadKeyError(f"not a PEM certificate bundle ({exc})") from exc
    if not certs:
        raise BadKeyError("no certificate in the PEM data")
    return certs


def san_identities(cert: x509.Certificate) -> list[str]:
    """The leaf's Subject Alternative Names as plain strings (e-mail, URI, DNS name)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        out.extend(str(v) for v in ext.get_values_for_type(kind))
    return out


def _check_signing_usage(cert: x509.Certificate) -> None:
    """The leaf must be meant for signing: KeyUsage digitalSignature and, when an EKU is present,
    codeSigning. Stricter than model_signing, which accepts either one alone.

    Raises:
        SignatureError: naming the missing usage.
    """
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if ku is None and eku is None:
        raise SignatureError(
            "the signing certificate has neither a KeyUsage nor an ExtendedKeyUsage extension; "
            "it cannot be used for code signing"
        )
    if ku is not None and not ku.digital_signature:
        raise SignatureError(
            "the signing certificate cannot be used for signing: its KeyUsage lacks "
            "digitalSignature"
        )
    if eku is not None and ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise SignatureError(
            "the signing certificate cannot be used for signing: its ExtendedKeyUsage lacks "
            "codeSigning"
        )


def _ku_validator(
    policy: x509v.Policy, cert: x509.Certificate, ext: x509.KeyUsage | None
) -> None:
    if ext is not None and not ext.digital_signature:
        raise ValueError("KeyUsage lacks digitalSignature")


def _eku_validator(
    policy: x509v.Policy, cert: x509.Certificate, ext: x509.ExtendedKeyUsage | None
) -> None:
    if ext is not None and ExtendedKeyUsageOID.CODE_SIGNING not in ext:
        raise ValueError("ExtendedKeyUsage lacks codeSigning")


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class VerifiedChain:
    """A leaf that chains to one of the given roots, valid at `time`."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    identities: tuple[str, ...]
    root_fingerprint: str


def verify_chain(
    certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    now: dt.datetime | None = None,
) -> VerifiedChain:
    """Build and check the chain from `certificates[0]` (the leaf; the rest are untrusted
    intermediates) to one of `roots`, with `cryptography.x509.verification`.

    The leaf must be valid at `now` (default: the current time), not merely when it signed:
    model_signing accepts an expired leaf, safeload does not. WebPKI CA rules apply to the
    issuers; the leaf must allow digital signatures and, if it has an EKU, code signing.

    Raises:
        SignatureError: expired or not-yet-valid leaf, wrong usage.
        ChainError: no valid path to one of the roots.
    """
    if not certificates:
        raise SignatureError("the bundle carries no signing certificate")
    if not roots:
        raise SignatureError("no trusted root certificate to check the signing certificate with")
    # Only a self-signed CA is a trust anchor, as in OpenSSL without PARTIAL_CHAIN (what
    # model_signing verifies with): an intermediate given as a root only helps build the path.
    anchors = [r for r in roots if _self_signed(r)]
    helpers = [r for r in roots if not _self_signed(r)]
    if not anchors:
        raise ChainError(
            "no given trust anchor is a self-signed root CA (an intermediate CA cannot be the "
            "only anchor, as with model_signing): give the root CA certificate")
    when = now or dt.datetime.now(dt.timezone.utc)
    leaf = certificates[0]
    if when < leaf.not_valid_before_utc:
        raise SignatureError(
            f"the signing certificate is not valid yet (from {leaf.not_valid_before_utc:%Y-%m-%d})"
        )
    if when > leaf.not_valid_after_utc:
        raise SignatureError(
            f"the signing certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}; "
            "safeload requires it to be valid at verification time"
        )
    _check_signing_usage(leaf)
    ee_policy = (
        x509v.ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.KeyUsage, x509v.Criticality.AGNOSTIC, _ku_validator)
        .may_be_present(x509.ExtendedKeyUsage, x509v.Criticality.AGNOSTIC, _eku_validator)
    )
    verifier = (
        x509v.PolicyBuilder()
        .store(x509v.Store(anchors))
        .time(when)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=x509v.ExtensionPolicy.webpki_defaults_ca(),
                            ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, [*certificates[1:], *helpers])
    except x509v.VerificationError as exc:
        raise ChainError(safe_text(str(exc), limit=300)) from exc
    chain = tuple(verified.chain)
    return VerifiedChain(
        leaf=leaf,
        chain=chain,
        identities=tuple(san_identities(leaf)),
        root_fingerprint=certificate_fingerprint(chain[-1]),
    )
