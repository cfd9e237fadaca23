"""The OpenSSF Model Signing (OMS) wire format: bundle, DSSE envelope, in-toto statement, manifest.

Internal and unstable. Parsing is split in two on purpose: `parse_bundle` reads only what is
needed to check the signature (the payload stays opaque bytes), and `parse_statement` is called
on the payload only after the signature over its PAE has verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, cast

from safeload._internal import strictjson
from safeload._internal.text import safe_text
from safeload.errors import SignatureError, UnsupportedSignatureError

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
LEGACY_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"

# A manifest of 100,000 files is ~15 MB of JSON; nothing legitimate comes near this.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
MAX_RESOURCES = 1_000_000
# safeload's own extension: a marker in `publicKey.keyDetails` for Ed25519 bundles, which the
# reference tool cannot verify (it only knows ECDSA P-256/P-384/P-521).
ED25519_KEY_DETAILS = "PKIX_ED25519"

GIT_IGNORES = (".git", ".gitattributes", ".github", ".gitignore")

HashType = Literal["sha256", "blake2b", "blake3"]
_DIGEST_HEX_LEN: dict[str, int] = {"sha256": 64, "blake2b": 128, "blake3": 64}
_HEX = re.compile(r"[0-9a-f]+")
_SHARD_BOUND = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class Bundle:
    """The parts of a bundle needed to check its signature. Nothing here is trusted yet."""

    method: Literal["key", "certificate", "sigstore"]
    key_hint: str | None
    key_details: str | None
    certificates: tuple[bytes, ...]  # DER, leaf first
    payload: bytes
    payload_type: str
    signature: bytes
    sha256: str  # of the bundle file's bytes, for provenance records


@dataclass(frozen=True)
class Resource:
    """One manifest entry: a file (`files`) or a byte range of one (`shards`)."""

    name: str  # as signed: `path` or `path:start:end`
    path: str  # the file's relative POSIX path ("." for a single-file model)
    algorithm: str
    digest: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Manifest:
    """The signed statement, parsed and checked for internal consistency."""

    subject_name: str
    subject_digest: str
    method: Literal["files", "shards"]
    hash_type: HashType
    allow_symlinks: bool
    shard_size: int | None
    ignore_paths: tuple[str, ...]
    resources: tuple[Resource, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding: the exact bytes that are signed."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64(value: object, what: str, source: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureError(f"{source}: {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{source}: {what} is not valid base64") from exc


def _loads(data: bytes) -> Any:
    return strictjson.loads(data)


def parse_bundle(data: bytes, *, source: str) -> Bundle:
    """Read a Sigstore bundle v0.3 holding a DSSE envelope (the OMS `key` and `certificate`
    methods). The DSSE payload is not parsed here.

    Raises:
        SignatureError: not JSON, wrong media type, missing or malformed fields.
        UnsupportedSignatureError: a well-formed bundle of a kind safeload cannot check yet
            (keyless Sigstore certificate, message signature instead of DSSE).
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise SignatureError(f"{source}: signature file is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        doc = _loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SignatureError(f"{source}: not a JSON signature bundle ({exc})") from exc
    if not isinstance(doc, dict):
        raise SignatureError(f"{source}: the bundle is not a JSON object")
    media = doc.get("mediaType")
    if media != BUNDLE_MEDIA_TYPE:
        raise SignatureError(
            f"{source}: unsupported bundle mediaType {safe_text(media, limit=100)!s} "
            f"(expected {BUNDLE_MEDIA_TYPE})"
        )
    material = doc.get("verificationMaterial")
    if not isinstance(material, dict):
        raise SignatureError(f"{source}: the bundle has no verificationMaterial")
    kinds = [k for k in ("publicKey", "x509CertificateChain", "certificate") if k in material]
    if len(kinds) != 1:
        raise SignatureError(
            f"{source}: verificationMaterial must hold exactly one of publicKey, "
            f"x509CertificateChain, certificate (found {len(kinds)})"
        )
    if "messageSignature" in doc and kinds[0] == "certificate":
        raise SignatureError(
            f"{source}: a Sigstore message signature (hashedrekord over a blob), not a DSSE "
            "model signature: OMS signatures are DSSE envelopes"
        )
    if "messageSignature" in doc:
        raise UnsupportedSignatureError(
            f"{source}: bundles with a messageSignature are not model signatures"
        )
    envelope = doc.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise SignatureError(f"{source}: the bundle has no dsseEnvelope")
    key_hint: str | None = None
    key_details: str | None = None
    certificates: tuple[bytes, ...] = ()
    if kinds[0] == "publicKey":
        pk = material["publicKey"]
        if not isinstance(pk, dict):
            raise SignatureError(f"{source}: publicKey is not an object")
        hint = pk.get("hint")
        if hint is not None:
            if not isinstance(hint, str):
                raise SignatureError(f"{source}: publicKey.hint is not a string")
            key_hint = hint.lower() or None  # "" means "no hint", as in model_signing 1.0
        details = pk.get("keyDetails")
        if details is not None:
            if not isinstance(details, str):
                raise SignatureError(f"{source}: publicKey.keyDetails is not a string")
            key_details = details
        method: Literal["key", "certificate", "sigstore"] = "key"
    elif kinds[0] == "certificate":
        # Keyless: one Fulcio leaf; `signing.keyless` checks it with sigstore-python.
        cert = material["certificate"]
        raw = cert.get("rawBytes") if isinstance(cert, dict) else None
        certificates = (_b64(raw, "the signing certificate", source),)
        method = "sigstore"
    else:
        chain = material["x509CertificateChain"]
        certs = chain.get("certificates") if isinstance(chain, dict) else None
        if not isinstance(certs, list) or not certs:
            raise SignatureError(f"{source}: x509CertificateChain.certificates is empty")
        if len(certs) > 16:
            raise SignatureError(f"{source}: more than 16 certificates in the chain")
        certificates = tuple(
            _b64(c.get("rawBytes") if isinstance(c, dict) else None, "a certificate", source)
            for c in certs
        )
        method = "certificate"
    payload = _b64(envelope.get("payload"), "dsseEnvelope.payload", source)
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise SignatureError(f"{source}: dsseEnvelope.payloadType is missing")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs or not isinstance(sigs[0], dict):
        raise SignatureError(f"{source}: dsseEnvelope.signatures is empty")
    if method == "sigstore" and len(sigs) != 1:
        raise SignatureError(f"{source}: a keyless DSSE envelope must hold exactly one "
                             f"signature (it has {len(sigs)})")
    # Only the first signature is checked, as model_signing does (no multi-signing).
    signature = _b64(sigs[0].get("sig"), "the DSSE signature", source)
    keyid = sigs[0].get("keyid")
    if keyid is not None and not isinstance(keyid, str):
        raise SignatureError(f"{source}: dsseEnvelope keyid is not a string")
    return Bundle(
        method=method,
        key_hint=key_hint,
        key_details=key_details,
        certificates=certificates,
        payload=payload,
        payload_type=payload_type,
        signature=signature,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def check_relpath(name: str, *, source: str, what: str = "path") -> str:
    """A relative POSIX path that stays inside the model directory.

    Refused: empty, absolute, `.`/`..`/empty components, backslashes (a separator on Windows),
    NUL and other control characters.

    Raises:
        SignatureError: naming the offending path.
    """
    bad = (
        not name
        or name.startswith("/")
        or "\\" in name
        or any(ord(c) < 0x20 or c == "\x7f" for c in name)
        or any(part in ("", ".", "..") for part in name.split("/"))
        or (len(name) >= 2 and name[1] == ":")  # a Windows drive
    )
    if bad:
        raise SignatureError(
            f"{source}: the signed manifest lists a {what} outside the model directory or "
            f"malformed: {safe_text(name, limit=200)!r}"
        )
    return name


def _int_field(value: object, what: str, source: str) -> int:
    # model_signing writes shard_size as a double (4096.0): accept integral floats only.
    if isinstance(value, bool):
        raise SignatureError(f"{source}: {what} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise SignatureError(f"{source}: {what} is not an integer")


def root_digest(resources: tuple[Resource, ...] | list[Resource]) -> str:
    """SHA-256 over the raw digest bytes of the resources, in the listed order (never re-sorted)."""
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r.digest))
    return h.hexdigest()


def parse_statement(payload: bytes, payload_type: str, *, source: str) -> Manifest:
    """Parse the (already signature-checked) in-toto statement into a consistent manifest.

    Raises:
        SignatureError: wrong types, malformed or unsafe resource names, inconsistent subject
            digest, empty model, duplicate entries.
        UnsupportedSignatureError: the pre-1.0 `Digests/v0.1` predicate.
    """
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise SignatureError(
            f"{source}: unexpected DSSE payloadType {safe_text(payload_type, limit=100)}"
        )
    try:
        st = _loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SignatureError(f"{source}: the signed statement is not JSON ({exc})") from exc
    if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE:
        raise SignatureError(f"{source}: the payload is not an in-toto Statement v1")
    ptype = st.get("predicateType")
    if ptype == LEGACY_PREDICATE_TYPE:
        raise UnsupportedSignatureError(
            f"{source}: pre-1.0 model_signing signatures (Digests/v0.1) are not supported",
            hint="re-sign the model with a current model_signing or `safeload sign`",
        )
    if ptype != PREDICATE_TYPE:
        raise SignatureError(
            f"{source}: unexpected predicateType {safe_text(ptype, limit=100)} "
            f"(expected {PREDICATE_TYPE})"
        )
    subject = st.get("subject")
    if not isinstance(subject, list) or len(subject) != 1 or not isinstance(subject[0], dict):
        raise SignatureError(f"{source}: the statement must have exactly one subject")
    subj_name = subject[0].get("name", "")
    subj_digest = subject[0].get("digest")
    subj_sha = subj_digest.get("sha256") if isinstance(subj_digest, dict) else None
    if not isinstance(subj_sha, str) or len(subj_sha) != 64 or not _HEX.fullmatch(subj_sha):
        raise SignatureError(f"{source}: the subject has no sha256 digest")
    pred = st.get("predicate")
    if not isinstance(pred, dict):
        raise SignatureError(f"{source}: the statement has no predicate")
    ser = pred.get("serialization")
    if not isinstance(ser, dict):
        raise SignatureError(f"{source}: the predicate has no serialization")
    method = ser.get("method")
    hash_type = ser.get("hash_type")
    if method not in ("files", "shards"):
        raise SignatureError(f"{source}: unknown serialization method {safe_text(method)}")
    if not isinstance(hash_type, str) or hash_type not in _DIGEST_HEX_LEN:
        raise SignatureError(f"{source}: unknown hash_type {safe_text(hash_type)}")
    allow_symlinks = ser.get("allow_symlinks")
    if not isinstance(allow_symlinks, bool):
        raise SignatureError(f"{source}: serialization.allow_symlinks is missing")
    shard_size: int | None = None
    if method == "shards":
        shard_size = _int_field(ser.get("shard_size"), "serialization.shard_size", source)
        if shard_size <= 0:
            raise SignatureError(f"{source}: serialization.shard_size must be positive")
    ignore_raw = ser.get("ignore_paths", [])
    if not isinstance(ignore_raw, list) or not all(isinstance(p, str) for p in ignore_raw):
        raise SignatureError(f"{source}: serialization.ignore_paths is not a list of paths")
    ignore_paths = tuple(
        check_relpath(p.rstrip("/") or p, source=source, what="ignore path") for p in ignore_raw
    )
    raw_resources = pred.get("resources")
    if not isinstance(raw_resources, list):
        raise SignatureError(f"{source}: the predicate has no resources list")
    if not raw_resources:
        raise SignatureError(f"{source}: the signed manifest is empty (the OMS spec forbids it)")
    if len(raw_resources) > MAX_RESOURCES:
        raise SignatureError(f"{source}: more than {MAX_RESOURCES} resources")
    shard_alg = f"{hash_type}-sharded-{shard_size}"
    hex_len = _DIGEST_HEX_LEN[hash_type]
    resources: list[Resource] = []
    seen: set[str] = set()
    for item in raw_resources:
        if not isinstance(item, dict):
            raise SignatureError(f"{source}: a resource is not an object")
        name, alg, digest = item.get("name"), item.get("algorithm"), item.get("digest")
        if not isinstance(name, str) or not isinstance(alg, str) or not isinstance(digest, str):
            raise SignatureError(f"{source}: a resource lacks name, algorithm or digest")
        if name in seen:
            raise SignatureError(f"{source}: {safe_text(name, limit=200)!r} is listed twice")
        seen.add(name)
        if len(digest) != hex_len or not _HEX.fullmatch(digest):
            raise SignatureError(
                f"{source}: malformed {hash_type} digest for {safe_text(name, limit=200)!r}"
            )
        if method == "files":
            if alg != hash_type:
                raise SignatureError(
                    f"{source}: resource {safe_text(name, limit=200)!r} uses {safe_text(alg)} "
                    f"but the manifest says {hash_type}"
                )
            path = name if name == "." else check_relpath(name, source=source)
            resources.append(Resource(name=name, path=path, algorithm=alg, digest=digest))
        else:
            if alg not in (hash_type, shard_alg):
                raise SignatureError(
                    f"{source}: resource {safe_text(name, limit=200)!r} uses {safe_text(alg)}, "
                    f"expected {hash_type} or {shard_alg}"
                )
            parts = name.rsplit(":", 2)
            # ASCII digits, at most 20 (str.isdigit takes '²', int() a 5000-digit bound
            # not: review U, a traceback after the signature verified)
            if len(parts) != 3 or not _SHARD_BOUND.fullmatch(parts[1]) \
                    or not _SHARD_BOUND.fullmatch(parts[2]):
                raise SignatureError(
                    f"{source}: malformed shard name {safe_text(name, limit=200)!r}"
                )
            path = parts[0] if parts[0] == "." else check_relpath(parts[0], source=source)
            start, end = int(parts[1]), int(parts[2])
            if start >= end:
                raise SignatureError(f"{source}: empty shard {safe_text(name, limit=200)!r}")
            resources.append(
                Resource(name=name, path=path, algorithm=alg, digest=digest, start=start, end=end)
            )
    paths = {r.path for r in resources}
    if "." in paths and len(paths) > 1:
        raise SignatureError(f"{source}: a single-file manifest ('.') lists other files too")
    actual_root = root_digest(resources)
    if actual_root != subj_sha:
        raise SignatureError(
            f"{source}: the manifest is inconsistent: the subject digest is {subj_sha} but the "
            f"resources hash to {actual_root}"
        )
    return Manifest(
        subject_name=subj_name if isinstance(subj_name, str) else "",
        subject_digest=subj_sha,
        method=method,
        hash_type=cast(HashType, hash_type),
        allow_symlinks=allow_symlinks,
        shard_size=shard_size,
        ignore_paths=ignore_paths,
        resources=tuple(resources),
    )


def bundle_json(
    *,
    payload: bytes,
    signature: bytes,
    key_hint: str | None = None,
    key_details: str | None = None,
    certificates: tuple[bytes, ...] = (),
) -> bytes:
    """Serialize a bundle the way model_signing 1.1.1 does (compact JSON, its key order)."""
    material: dict[str, Any]
    if certificates:
        material = {
            "x509CertificateChain": {
                "certificates": [{"rawBytes": base64.b64encode(c).decode()} for c in certificates]
            },
            "tlogEntries": [],
        }
    else:
        pk: dict[str, str] = {"hint": key_hint or ""}
        if key_details:
            pk["keyDetails"] = key_details
        material = {"publicKey": pk, "tlogEntries": []}
    doc = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def statement_json(
    *,
    subject_name: str,
    resources: list[Resource],
    hash_type: str,
    ignore_paths: list[str],
    shard_size: int | None = None,
) -> bytes:
    """The in-toto statement for a manifest: compact JSON with sorted keys (any JSON is accepted
    by model_signing; sorted keys make our own output reproducible)."""
    ser: dict[str, Any] = {
        "method": "shards" if shard_size else "files",
        "hash_type": hash_type,
        "allow_symlinks": False,
    }
    if ignore_paths:
        ser["ignore_paths"] = ignore_paths
    if shard_size:
        ser["shard_size"] = shard_size
    doc = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": ser,
            "resources": [
                {"name": r.name, "algorithm": r.algorithm, "digest": r.digest} for r in resources
            ],
        },
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
