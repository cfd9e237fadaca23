"""Keyless OMS signatures (`sigstore` method): a Fulcio certificate, a Rekor entry, offline.

The cryptography of Sigstore is sigstore-python's (the optional extra `safeload[sigstore]`,
imported here only when a keyless bundle is met): `Verifier(trusted_root=...)` built from an
explicit root file (never `Verifier.production(offline=True)`, which trusts sigstore-python's
user-writable cache), then `verify_dsse` with a policy that holds the trusted identities.
sigstore-python 4.5.1 checks: the chain to a Fulcio CA at each signed time, the SCT against the
CT keys, the Rekor inclusion proof + signed checkpoint and the SET when present, RFC 3161
timestamps against the TSAs (and the TSA's validFor), the leaf's validity at the signed times,
key usage + code-signing EKU, the DSSE signature and the log entry's consistency with it.

What it does not check, and this module does (each refusal names the reason):

- the `validFor` windows of the Fulcio CA that issued the leaf, of the Rekor log key and of the
  CT log key must contain every signed time (sigstore-python compares them with *now*, so a
  root whose CAs ended before the signature would still verify);
- a message signature (hashedrekord over a blob) is not a model signature (refused earlier, in
  `_format.parse_bundle`), and the DSSE envelope holds exactly one signature;
- the payload type is `application/vnd.in-toto+json` (the statement and manifest are then
  checked by the caller exactly as for the key and certificate methods);
- the leaf is valid at every signed time (again, belt and braces), and the OIDC issuer of the
  v2 extension (1.3.6.1.4.1.57264.1.8) agrees with the legacy one (1.1) when both are present.

Identities: a rule is an exact OIDC issuer plus an exact SAN (e-mail, URI or Fulcio's otherName
username), or a full-match regex on the SAN when the user opted in, plus optional exact pins on
other Fulcio extensions (source repository, workflow ref, ...).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeload._internal import strictjson
from safeload._internal.text import safe_text
from safeload.errors import SignatureError, UnsupportedSignatureError, UntrustedPublisherError
from safeload.signing._format import INTOTO_PAYLOAD_TYPE
from safeload.signing.sigstore_roots import SigstoreRoot, parse_time

INSTALL_HINT = "install the keyless extra: pip install 'safeload[sigstore]'"
FULCIO_OID = "1.3.6.1.4.1.57264.1."
ISSUER_V2_OID = FULCIO_OID + "8"
ISSUER_V1_OID = FULCIO_OID + "1"
OTHERNAME_OID = FULCIO_OID + "7"
# Friendly names of the Fulcio extensions a CI identity is usually pinned on.
EXTENSION_NAMES: Mapping[str, str] = {
    "build-signer-uri": FULCIO_OID + "9",
    "build-signer-digest": FULCIO_OID + "10",
    "runner-environment": FULCIO_OID + "11",
    "source-repository": FULCIO_OID + "12",
    "source-repository-digest": FULCIO_OID + "13",
    "source-repository-ref": FULCIO_OID + "14",
    "source-repository-owner": FULCIO_OID + "16",
    "build-config-uri": FULCIO_OID + "18",
    "build-trigger": FULCIO_OID + "20",
    "run-invocation-uri": FULCIO_OID + "21",
}
_OID = re.compile(r"1\.3\.6\.1\.4\.1\.57264\.1\.[0-9]{1,3}")


@dataclass(frozen=True)
class IdentityRule:
    """Who may have signed: an exact issuer, an exact SAN or (opt-in) a full-match SAN regex,
    and exact values of other Fulcio extensions (dotted OIDs)."""

    issuer: str
    san: str | None = None
    san_regex: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)
    publisher: str | None = None
    instance: str | None = None  # the trusted root's name this identity is bound to

    def __post_init__(self) -> None:
        if (self.san is None) == (self.san_regex is None):
            raise ValueError("an identity needs exactly one of san and san_regex")
        for oid in self.extensions:
            if not _OID.fullmatch(oid):
                raise ValueError(f"not a Fulcio extension OID: {oid!r}")

    def describe(self) -> str:
        san = self.san if self.san is not None else f"regex {self.san_regex}"
        pins = "".join(f", {k}={v}" for k, v in sorted(self.extensions.items()))
        return f"{safe_text(san)} from {safe_text(self.issuer)}{safe_text(pins)}"


@dataclass(frozen=True)
class CertIdentity:
    """What a Fulcio leaf says about its subject (read before anything is trusted)."""

    sans: tuple[str, ...]
    issuer: str | None
    extensions: Mapping[str, str]


@dataclass(frozen=True)
class KeylessResult:
    """A keyless bundle whose signature verified against `root` for `rule`."""

    identity: str
    issuer: str
    rule: IdentityRule
    log_index: int | None  # None: no SET, and the proof's tree index is not the entry's
    integrated_time: dt.datetime | None
    signed_time: dt.datetime  # the earliest verified signed time
    root_name: str
    root_sha256: str
    cert_fingerprint: str  # sha256 of the leaf DER
    key_id: str  # sha256 of the leaf's DER SPKI
    payload: bytes
    payload_type: str


def summary(k: KeylessResult) -> dict[str, Any]:
    """What provenance, `--json` and trust decisions record about a keyless signature."""
    return {
        "identity": k.identity, "issuer": k.issuer, "log_index": k.log_index,
        "signed_time": k.signed_time.isoformat(),
        "integrated_time": k.integrated_time.isoformat() if k.integrated_time else None,
        "sigstore_root": k.root_name, "sigstore_root_sha256": k.root_sha256,
        "certificate_sha256": k.cert_fingerprint,
    }


def _der_utf8(raw: bytes) -> str | None:
    """The text of a DER UTF8String (tag 0x0c), or None when `raw` is not exactly one."""
    if len(raw) < 2 or raw[0] != 0x0C:
        return None
    n, off = raw[1], 2
    if n & 0x80:
        width = n & 0x7F
        if width not in (1, 2, 3) or len(raw) < 2 + width:
            return None
        n, off = int.from_bytes(raw[2:2 + width], "big"), 2 + width
    if len(raw) != off + n:
        return None
    try:
        return raw[off:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _ext_text(oid: str, raw: bytes) -> str | None:
    # 1.1-1.6 are raw strings (deprecated); 1.7 and later are DER-encoded UTF8Strings.
    if int(oid.rsplit(".", 1)[1]) < 7:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return _der_utf8(raw)


def cert_identity(cert: Any, *, source: str) -> CertIdentity:
    """SANs, OIDC issuer and Fulcio extensions of a leaf (a `cryptography` certificate).

    Raises:
        SignatureError: the v1 and v2 issuer extensions disagree.
    """
    from cryptography import x509

    exts: dict[str, str] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if oid.startswith(FULCIO_OID) and isinstance(ext.value, x509.UnrecognizedExtension):
            text = _ext_text(oid, ext.value.value)
            if text is not None:
                exts[oid] = text
    sans: list[str] = []
    try:
        gn = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        gn = []
    for name in gn:
        if isinstance(name, (x509.RFC822Name, x509.UniformResourceIdentifier)):
            sans.append(name.value)
        elif isinstance(name, x509.OtherName) and name.type_id.dotted_string == OTHERNAME_OID:
            text = _der_utf8(name.value)
            if text is not None:
                sans.append(text)
    v2, v1 = exts.get(ISSUER_V2_OID), exts.get(ISSUER_V1_OID)
    if v2 is not None and v1 is not None and v1 != v2:
        raise SignatureError(f"{source}: the certificate names two different OIDC issuers")
    return CertIdentity(sans=tuple(sans), issuer=v2 if v2 is not None else v1, extensions=exts)


def match_rule(ident: CertIdentity, rule: IdentityRule) -> str | None:
    """The SAN that `rule` accepts, or None."""
    if ident.issuer is None or ident.issuer != rule.issuer:
        return None
    if any(ident.extensions.get(oid) != want for oid, want in rule.extensions.items()):
        return None
    for san in ident.sans:
        if rule.san is not None and san == rule.san:
            return san
        if rule.san_regex is not None and re.fullmatch(rule.san_regex, san):
            return san
    return None


def _load_sigstore() -> Any:
    try:
        import sigstore.errors
        import sigstore.models
        import sigstore.verify
    except ImportError as exc:
        raise UnsupportedSignatureError(
            "keyless Sigstore signatures need the optional sigstore package", hint=INSTALL_HINT
        ) from exc
    return sigstore


_verifiers: dict[str, Any] = {}
_verifiers_lock = threading.Lock()


def _verifier(sigstore: Any, root: SigstoreRoot) -> Any:
    """One `Verifier` per root content (building one parses every key of the root)."""
    with _verifiers_lock:
        ver = _verifiers.get(root.sha256)
        if ver is None:
            import tempfile

            # TrustedRoot.from_file is the documented constructor; the bytes we checked are
            # the bytes it reads (a private temporary file, not a path someone could swap).
            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / "trusted_root.json"
                p.write_bytes(root.data)
                try:
                    trusted = sigstore.models.TrustedRoot.from_file(str(p))
                    ver = sigstore.verify.Verifier(trusted_root=trusted)
                except (sigstore.errors.Error, ValueError) as exc:
                    raise SignatureError(
                        f"{safe_text(root.source)}: unusable Sigstore trusted root: "
                        f"{safe_text(str(exc), limit=300)}") from exc
            _verifiers[root.sha256] = ver
        return ver


class _RulesPolicy:
    """A sigstore `VerificationPolicy`: the leaf must match one of the rules."""

    def __init__(self, rules: Sequence[IdentityRule], source: str, error: type[Exception]):
        self.rules, self.source, self.error = rules, source, error
        self.matched: tuple[IdentityRule, str, CertIdentity] | None = None
        self.refused: CertIdentity | None = None

    def verify(self, cert: Any) -> None:
        ident = cert_identity(cert, source=self.source)
        for rule in self.rules:
            san = match_rule(ident, rule)
            if san is not None:
                self.matched = (rule, san, ident)
                return
        self.refused = ident
        raise self.error("the certificate identity is not trusted")


def _in_window(window: object, when: dt.datetime) -> bool:
    if not isinstance(window, dict):
        return False
    start, end = parse_time(window.get("start")), parse_time(window.get("end"))
    if start is None or when < start:
        return False
    return window.get("end") is None or (end is not None and when <= end)


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def _check_ca_windows(cert: Any, root: SigstoreRoot, times: Sequence[dt.datetime],
                      source: str) -> None:
    """The Fulcio CA that issued the leaf must have been valid at every signed time."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    issuing: list[object] = []
    for ca in root.doc.get("certificateAuthorities") or []:
        certs = (ca.get("certChain") or {}).get("certificates") if isinstance(ca, dict) else None
        der = _b64(certs[0].get("rawBytes")) if isinstance(certs, list) and certs and \
            isinstance(certs[0], dict) else None
        if der is None:
            continue
        try:
            cert.verify_directly_issued_by(x509.load_der_x509_certificate(der))
        except (ValueError, TypeError, InvalidSignature):  # not this CA
            continue
        issuing.append(ca.get("validFor"))
    if not issuing:
        raise SignatureError(f"{source}: no Fulcio CA of the trusted root issued the certificate")
    for when in times:
        if not any(_in_window(w, when) for w in issuing):
            raise SignatureError(
                f"{source}: the Fulcio CA that issued the certificate was not valid at the "
                f"signed time {when:%Y-%m-%d %H:%M:%S} UTC (validFor in "
                f"{safe_text(root.source)})")


def _check_log_window(kind: str, entries: object, key_id: bytes | None,
                      times: Sequence[dt.datetime], source: str, root: SigstoreRoot) -> None:
    """The log (Rekor or CT) whose key `key_id` signed must have been valid at every time."""
    windows = [
        (e.get("publicKey") or {}).get("validFor")
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and _b64((e.get("logId") or {}).get("keyId")) == key_id
    ]
    if key_id is None or not windows:
        raise SignatureError(f"{source}: the {kind} that logged the signature is not in the "
                             f"trusted root {safe_text(root.source)}")
    for when in times:
        if not any(_in_window(w, when) for w in windows):
            raise SignatureError(
                f"{source}: the {kind} key was not valid at the signed time "
                f"{when:%Y-%m-%d %H:%M:%S} UTC (validFor in {safe_text(root.source)})")


def _signed_times(sb: Any, doc: Mapping[str, Any], source: str
                  ) -> tuple[list[dt.datetime], dt.datetime | None, int | None]:
    """(every signed time, the SET-bound integrated time or None, the log index or None when
    nothing signed binds it)."""
    entries = (doc.get("verificationMaterial") or {}).get("tlogEntries")
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise SignatureError(f"{source}: a keyless bundle needs exactly one transparency log "
                             "entry")
    entry = entries[0]
    try:
        log_index = int(str(entry.get("logIndex")))
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"{source}: the log entry has no log index") from exc
    bound_index: int | None = log_index
    if not entry.get("inclusionPromise"):
        # Without a SET nothing signs `logIndex`; only the inclusion proof's index is bound
        # (by its Merkle path). Rekor v2 has one tree per log, so the two agree; a sharded v1
        # entry stripped of its SET has a global index nothing proves: not recorded.
        proof = entry.get("inclusionProof")
        proof_index = proof.get("logIndex") if isinstance(proof, dict) else None
        if str(proof_index) != str(entry.get("logIndex")):
            bound_index = None
    times: list[dt.datetime] = []
    integrated: dt.datetime | None = None
    raw_it = entry.get("integratedTime")
    if entry.get("inclusionPromise") and raw_it not in (None, "0", 0):
        try:
            integrated = dt.datetime.fromtimestamp(int(raw_it), tz=dt.timezone.utc)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SignatureError(f"{source}: the log entry's integratedTime is invalid") from exc
        times.append(integrated)
    tvd = sb.verification_material.timestamp_verification_data
    for tsr in (tvd.rfc3161_timestamps if tvd is not None else []):
        gen = tsr.tst_info.gen_time
        times.append(gen if gen.tzinfo else gen.replace(tzinfo=dt.timezone.utc))
    if not times:
        raise SignatureError(f"{source}: the bundle has no signed time (no SET, no RFC 3161 "
                             "timestamp)")
    return times, integrated, bound_index


def verify_keyless(
    data: bytes, *, source: str, root: SigstoreRoot, rules: Sequence[IdentityRule],
) -> KeylessResult:
    """Verify a keyless OMS bundle's signature and identity offline against `root`.

    The payload is returned unparsed: the caller checks the statement and manifest.

    Raises:
        UnsupportedSignatureError: the sigstore extra is not installed (could not decide).
        SignatureError: anything in the bundle, certificate, log entry or times that does not
            verify, with the reason.
        UntrustedPublisherError: a valid certificate for an identity none of `rules` accepts.
    """
    sigstore = _load_sigstore()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    doc = strictjson.loads(data)
    envelope = doc.get("dsseEnvelope") if isinstance(doc, dict) else None
    ptype = envelope.get("payloadType") if isinstance(envelope, dict) else None
    if ptype != INTOTO_PAYLOAD_TYPE:
        # Refused before any cryptography: OMS signs only in-toto statements.
        raise SignatureError(f"{source}: unexpected DSSE payloadType "
                             f"{safe_text(ptype, limit=100)} (expected {INTOTO_PAYLOAD_TYPE})")
    try:
        sb = sigstore.models.Bundle.from_json(data)
    except (sigstore.errors.Error, ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"{source}: not a valid Sigstore bundle: "
                             f"{safe_text(str(exc), limit=300)}") from exc
    cert = sb.signing_certificate
    times, integrated, log_index = _signed_times(sb, doc, source)
    verifier = _verifier(sigstore, root)
    policy = _RulesPolicy(rules, source, sigstore.errors.VerificationError)
    try:
        payload_type, payload = verifier.verify_dsse(sb, policy)
    except sigstore.errors.Error as exc:
        if policy.refused is not None:
            ident = policy.refused
            raise UntrustedPublisherError(
                f"{source}: signed keyless by {safe_text(', '.join(ident.sans) or '(no SAN)')} "
                f"(issuer {safe_text(ident.issuer)}), which is not a trusted identity"
                + (f" (expected {'; '.join(r.describe() for r in rules)})" if rules else ""),
                hint="if you trust this signer: safeload trust add-identity PUBLISHER "
                     "--issuer ISSUER --san SAN",
            ) from exc
        raise SignatureError(f"{source}: the keyless signature does not verify: "
                             f"{safe_text(str(exc), limit=300)}") from exc
    assert policy.matched is not None
    rule, san, ident = policy.matched
    # sigstore-python drops a timestamp that does not verify as long as another signed time
    # remains; a bundle carrying a bad timestamp was altered, so it is refused here.
    tvd = sb.verification_material.timestamp_verification_data
    present = len(tvd.rfc3161_timestamps) if tvd is not None else 0
    if present and len(verifier._verify_timestamp_authority(sb)) != present:
        raise SignatureError(f"{source}: an RFC 3161 timestamp in the bundle does not verify "
                             "against the trusted root's timestamp authorities")
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise SignatureError(f"{source}: unexpected DSSE payloadType "
                             f"{safe_text(payload_type, limit=100)} (expected "
                             f"{INTOTO_PAYLOAD_TYPE})")
    for when in times:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise SignatureError(f"{source}: the signing certificate was not valid at the "
                                 f"signed time {when:%Y-%m-%d %H:%M:%S} UTC")
    _check_ca_windows(cert, root, times, source)
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    _check_log_window("Rekor log", root.doc.get("tlogs"),
                      _b64((entry.get("logId") or {}).get("keyId")), times, source, root)
    try:
        scts = list(cert.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps).value)
    except x509.ExtensionNotFound:
        scts = []
    sct_errors: list[SignatureError] = []
    for sct in scts:
        try:
            _check_log_window("CT log", root.doc.get("ctlogs"), sct.log_id, times, source, root)
            break
        except SignatureError as exc:
            sct_errors.append(exc)
    else:
        raise sct_errors[0] if sct_errors else SignatureError(
            f"{source}: the certificate has no SCT")
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ident.issuer is not None
    return KeylessResult(
        identity=san, issuer=ident.issuer, rule=rule, log_index=log_index,
        integrated_time=integrated, signed_time=min(times), root_name=root.name,
        root_sha256=root.sha256, cert_fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        key_id=hashlib.sha256(spki).hexdigest(), payload=payload, payload_type=payload_type,
    )
