"""`safeload verify`: a model's signature, then every signed weight file through the pipeline.

A signature that verifies says who published the bytes; it does not say the bytes may be used.
So after `signing.verify_model`, each weight file the signature covers goes through the same
verify and admit stages as a load (revocations, pins, revision locks, the licence policy, the
inspection verdict and `pickles: refuse`), without recording first-use observations; files that
are not weights (configs, tokenizers) are covered by the signature alone. The entry records one
provenance entry for the verification.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload import pipeline
from safeload._internal.reach import text_level
from safeload.inspection import inspect_bytes

if TYPE_CHECKING:
    from safeload._internal.record import ModelContext
    from safeload.signing import VerificationResult
    from safeload.trust import TrustStore

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ModelVerification:
    signature: VerificationResult
    context: ModelContext
    weights: tuple[str, ...]  # the signed weight files that passed the pipeline's gates


def verify_directory(target: PathLike, signature: PathLike | None = None, *,
                     store: TrustStore | None = None, **verify_args: Any) -> ModelVerification:
    """Verify `target`'s signature, then admit each signed weight file as a load would.

    `verify_args` go to `signing.verify_model` (a one-off key, chain or identity replaces the
    store's publishers for the signature only; every other gate still uses the store).

    Raises:
        VerificationError: the signature, a file digest or the manifest does not match.
        RefusedError: a weight file is refused by the trust store, the licence policy,
            inspection or the pickle policy.
    """
    from safeload._internal.record import record_verification
    from safeload.signing import default_signature_path, verify_model

    root = Path(target)
    sig = Path(signature) if signature is not None else default_signature_path(root)
    store = store if store is not None else pipeline.load_store()
    result = verify_model(root, sig, trust_store=store, **verify_args)
    # The admission re-checks an explicit signature with the store plus a one-off key; other
    # one-off anchors (a certificate chain, an identity) are not in the store's terms yet.
    one_off = any(verify_args.get(k) for k in ("certificate_chain", "identity",
                                               "identity_provider", "sigstore_root"))
    weights = _admit_weights(root, result, _with_given_key(store, verify_args.get("key")),
                             sig if signature is not None and not one_off else None)
    context = record_verification(root, result, store)
    return ModelVerification(result, context, weights)


def _signed_files(root: Path, result: VerificationResult) -> list[Path]:
    if not root.is_dir():
        return [root]
    names = {n.rsplit(":", 2)[0] if result.serialization == "shards" else n
             for n in result.files}
    return [root / n for n in sorted(names)]


def _with_given_key(store: TrustStore, key: Any) -> TrustStore:
    """The store, plus the one-off `--key` as a publisher: each weight file's admission
    checks the same signature again, and must accept the key the caller named."""
    if key is None:
        return store
    from safeload.trust import Publisher, TrustedKey

    return store.with_publisher(Publisher("given-key", keys=(
        TrustedKey.from_pem(Path(key).read_bytes()),)))


def _admit_weights(root: Path, result: VerificationResult, store: TrustStore,
                   signature: Path | None = None) -> tuple[str, ...]:
    admitted: list[str] = []
    for path in _signed_files(root, result):
        held = pipeline.open_input(path)
        try:
            if store.policy.mode == "strict":
                held.copy_privately()  # inspected, hashed and judged: one copy (strict mode)
            ins = inspect_bytes(held.mapping(), name=held.name,
                                text_ok=text_level(held.name))
            if ins.verdict == "skipped":
                continue  # not a weight format: the signature's digest is all there is
            verified = pipeline.verify(held, pipeline.locate(held), store=store, observe=False,
                                       signature=signature)
            pipeline.admit(verified, "report", inspection=ins)
            admitted.append(str(path))
        finally:
            held.close()
    return tuple(admitted)


__all__ = ["ModelVerification", "verify_directory"]

