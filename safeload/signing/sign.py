"""Sign a model in the OpenSSF Model Signing (OMS) format.

With an ECDSA P-256/P-384/P-521 key the output is what `model_signing sign key|certificate`
1.1.1 writes: a Sigstore bundle v0.3 around a DSSE envelope, a `files` + `sha256` manifest,
`publicKey.hint` (key method) or `x509CertificateChain` (certificate method). The reference
`model_signing verify` accepts it.

Ed25519 keys are **safeload's own extension**: the bundle is marked with
`publicKey.keyDetails = "PKIX_ED25519"` and the reference tool cannot verify it (model_signing
only implements ECDSA); only safeload reads it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ed25519

from safeload._internal.atomic import write_atomic
from safeload._internal.text import get_logger, safe_text
from safeload.errors import SigningError
from safeload.signing import _keys
from safeload.signing._format import (
    ED25519_KEY_DETAILS,
    GIT_IGNORES,
    INTOTO_PAYLOAD_TYPE,
    Resource,
    bundle_json,
    check_relpath,
    pae,
    root_digest,
    statement_json,
)
from safeload.signing._tree import hash_file, hasher_factory, list_files, run_parallel
from safeload.signing.verify import default_signature_path

_logger = get_logger(__name__)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class SigningResult:
    """What `sign_model` wrote."""

    output: Path
    method: Literal["key", "certificate", "sigstore"]
    key_id: str  # SHA-256 of the signing key's DER SPKI
    algorithm: str  # ecdsa-p256 | ecdsa-p384 | ecdsa-p521 | ed25519
    subject_digest: str
    files: dict[str, str]  # relative path -> hex digest
    reference_compatible: bool  # False for Ed25519 (safeload extension)


def _model_and_output(model_dir: str | os.PathLike[str], output: str | os.PathLike[str] | None,
                      overwrite: bool) -> tuple[Path, Path]:
    """The model folder and where its signature goes; refused before any work is done."""
    root = Path(model_dir)
    if not root.exists():
        raise SigningError(f"no such model: {safe_text(root)}")
    out = Path(output) if output is not None else default_signature_path(root)
    if out.exists() and not overwrite:
        raise SigningError(f"{safe_text(out)} exists", hint="pass --overwrite to replace it")
    return root, out


def _sort_key(rel: str) -> tuple[str, ...]:
    # model_signing's order (PurePosixPath components), so both tools write the same manifest.
    return tuple(rel.split("/"))


def sign_model(
    model_dir: PathLike,
    *,
    private_key_pem_path: PathLike,
    certificate_chain: Sequence[PathLike] | None = None,
    output: PathLike | None = None,
    password: bytes | None = None,
    ignore_paths: Sequence[str] = (),
    hash_type: Literal["sha256", "blake2b", "blake3"] = "sha256",
    overwrite: bool = False,
    max_workers: int | None = None,
) -> SigningResult:
    """Hash every file of `model_dir` (or the single file it names) and write a signature.

    `certificate_chain` switches to the certificate method: PEM files holding the signing
    (leaf) certificate first, then its intermediates; the leaf must hold the private key's
    public key. `output` defaults to `model.sig` inside the directory (`<file>.sig` beside a
    single file); a signature inside the directory is excluded and listed in `ignore_paths`.
    `ignore_paths` are relative to `model_dir`. The top-level `.git*` paths are always ignored.
    Only `sha256` manifests are readable by the `model_signing` CLI.

    Raises:
        SigningError: unusable key or certificate, the leaf does not match the key, nothing to
            sign, the output exists (without `overwrite`).
        UnsafePathError: symlinks or special files in the model (never signed).
        UnsupportedSignatureError: blake3 without the `blake3` package.
        OSError: unreadable files, or the output cannot be written.
    """
    root, out = _model_and_output(model_dir, output, overwrite)
    try:
        key = _keys.load_private_key(Path(private_key_pem_path).read_bytes(), password)
    except TypeError as exc:
        raise SigningError(f"{safe_text(private_key_pem_path)} is encrypted; a password is "
                           "needed") from exc
    except _keys.BadKeyError as exc:
        raise SigningError(f"{safe_text(private_key_pem_path)}: {exc}") from exc
    public = key.public_key()
    algorithm = _keys.algorithm_name(key)
    is_ed25519 = isinstance(key, ed25519.Ed25519PrivateKey)

    certificates: tuple[bytes, ...] = ()
    if certificate_chain:
        certs = []
        for cp in certificate_chain:
            try:
                certs.extend(_keys.load_pem_certificates(Path(cp).read_bytes()))
            except _keys.BadKeyError as exc:
                raise SigningError(f"{safe_text(cp)}: {exc}") from exc
        if certs[0].public_key() != public:
            raise SigningError(
                "the first certificate of the chain is not for this private key (the signing "
                "certificate must come first)")
        from cryptography.hazmat.primitives import serialization

        certificates = tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)

    payload, resources = _statement(root, out, ignore_paths, hash_type, max_workers)
    signature = _keys.sign_raw(key, pae(INTOTO_PAYLOAD_TYPE, payload))
    data = bundle_json(
        payload=payload, signature=signature,
        key_hint=None if certificates else _keys.pem_hint(public),
        key_details=ED25519_KEY_DETAILS if is_ed25519 and not certificates else None,
        certificates=certificates,
    )
    if is_ed25519:
        _logger.warning(
            "Ed25519 signature: a safeload extension; the reference model_signing tool cannot "
            "verify it (it supports ECDSA P-256/P-384/P-521 only)")
    _write_new(out, data, overwrite=overwrite)
    return SigningResult(
        output=out,
        method="certificate" if certificates else "key",
        key_id=_keys.key_id(public),
        algorithm=algorithm,
        subject_digest=root_digest(resources),
        files={r.name: r.digest for r in resources},
        reference_compatible=not is_ed25519 and hash_type == "sha256",
    )


def _statement(root: Path, out: Path, ignore_paths: Sequence[str], hash_type: Literal[
        "sha256", "blake2b", "blake3"], max_workers: int | None) -> tuple[bytes, list[Resource]]:
    """Hash the model and build the in-toto statement (the payload every method signs).

    Raises: as `sign_model` for the files.
    """
    factory = hasher_factory(hash_type)
    if root.is_dir():
        ignore = set(GIT_IGNORES)
        for ip in ignore_paths:
            ignore.add(check_relpath(ip.strip("/"), source="ignore_paths", what="ignore path"))
        with contextlib.suppress(ValueError):
            ignore.add(out.resolve().relative_to(root.resolve()).as_posix())
        files = list_files(root, ignore=ignore, allow_symlinks=False)
        names = sorted(files, key=_sort_key)
        recorded_ignores = sorted(ignore)
        subject_name = root.resolve().name
    else:
        # model_signing 1.1.1 names a single file "."; its verifier would refuse the basename.
        files = {".": root}
        names = ["."]
        recorded_ignores = []
        subject_name = root.name
    if not names:
        raise SigningError(f"{safe_text(root)} has no files to sign")
    digests = run_parallel(
        [partial(hash_file, files[n], factory, follow_symlinks=(n == ".")) for n in names],
        max_workers=max_workers,
    )
    resources = [Resource(name=n, path=n, algorithm=hash_type, digest=d)
                 for n, d in zip(names, digests, strict=True)]
    payload = statement_json(subject_name=subject_name, resources=resources,
                             hash_type=hash_type, ignore_paths=recorded_ignores)
    return payload, resources


CLIENT_TRUST_CONFIG_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"


def sign_model_keyless(
    model_dir: PathLike,
    *,
    identity_token: str,
    output: PathLike | None = None,
    ignore_paths: Sequence[str] = (),
    overwrite: bool = False,
    max_workers: int | None = None,
) -> SigningResult:
    """Sign keyless on public-good Sigstore through sigstore-python's signer: an ephemeral key,
    a Fulcio certificate for the OIDC identity of `identity_token`, a Rekor entry.

    Needs network access (Fulcio, Rekor, the timestamp authority) and a valid token; only the
    offline failures are tested here. The instance is the shipped production root and signing
    config (no TUF refresh, no sigstore-python user cache).

    Raises:
        UnsupportedSignatureError: the `sigstore` extra is not installed.
        SigningError: no model, the output exists, the token is malformed or expired, or
            Sigstore cannot be reached.
    """
    from safeload.signing import keyless
    from safeload.signing.sigstore_roots import builtin_root

    root, out = _model_and_output(model_dir, output, overwrite)
    keyless._load_sigstore()  # UnsupportedSignatureError with the install hint
    import sigstore.dsse
    import sigstore.errors
    import sigstore.models
    import sigstore.oidc
    import sigstore.sign

    try:
        token = sigstore.oidc.IdentityToken(identity_token.strip())
    except sigstore.oidc.IdentityError as exc:
        raise SigningError(f"the OIDC identity token is unusable: {safe_text(str(exc))}",
                           hint="get a fresh token from your OIDC provider") from exc
    payload, resources = _statement(root, out, ignore_paths, "sha256", max_workers)
    import json
    from importlib import resources as pkg

    signing_config = pkg.files("safeload.signing").joinpath(
        "_roots", "production.signing_config.json").read_text()
    config = sigstore.models.ClientTrustConfig.from_json(json.dumps({
        "mediaType": CLIENT_TRUST_CONFIG_TYPE,
        "trustedRoot": json.loads(builtin_root("production").data),
        "signingConfig": json.loads(signing_config)}))
    try:
        ctx = sigstore.sign.SigningContext.from_trust_config(config)
        with ctx.signer(token) as signer:
            bundle = signer.sign_dsse(sigstore.dsse.Statement(payload))
    except (sigstore.errors.Error, OSError) as exc:  # requests' errors are OSErrors
        raise SigningError(f"keyless signing failed (it needs network access to Fulcio and "
                           f"Rekor): {safe_text(str(exc), limit=300)}") from exc
    cert = bundle.signing_certificate
    _write_new(out, bundle.to_json().encode(), overwrite=overwrite)
    return SigningResult(
        output=out, method="sigstore", key_id=_keys.key_id(_keys.certificate_key(cert)),
        algorithm="ecdsa-p256", subject_digest=root_digest(resources),
        files={r.name: r.digest for r in resources}, reference_compatible=True)


def _write_new(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Atomic, durable write; without `overwrite`, refuse to replace a file, even one that
    appeared meanwhile.

    Raises:
        SigningError: `path` exists and `overwrite` is false.
    """
    try:
        write_atomic(path, data, overwrite=overwrite)
    except FileExistsError as exc:
        raise SigningError(f"{safe_text(path)} exists",
                           hint="pass --overwrite to replace it") from exc


__all__ = ["SigningResult", "sign_model", "sign_model_keyless"]

