"""OpenSSF Model Signing (OMS) signatures: verify and sign models. Stable API.

`verify_model` checks a model directory (or single file) against its `model.sig`;
`verify_signature` checks only the signature and returns the signed manifest; `sign_model`
writes a bundle that the reference `model_signing verify key|certificate` accepts (ECDSA keys),
or, as safeload's own extension, an Ed25519 bundle that only safeload can read.

Layer L1: imports errors and `_internal` only. It never imports the trust store: the verifier
is handed its anchors (`signing.anchors.TrustAnchors`, which `safeload.trust.TrustStore`
satisfies), as sigstore-python's `Verifier(trusted_root=...)` is.
"""

from __future__ import annotations

from safeload.signing.sign import sign_model
from safeload.signing.verify import (
    DEFAULT_SIGNATURE_NAME,
    SignedManifest,
    VerificationResult,
    default_signature_path,
    verify_model,
    verify_signature,
    verify_signature_bytes,
)

__all__ = [
    "DEFAULT_SIGNATURE_NAME",
    "SignedManifest",
    "VerificationResult",
    "default_signature_path",
    "sign_model",
    "verify_model",
    "verify_signature",
    "verify_signature_bytes",
]
