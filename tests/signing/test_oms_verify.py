"""OMS verification against the shared interop fixture (made by the real model_signing 1.1.1)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safeload.errors import (
    DigestMismatchError,
    ManifestMismatchError,
    RevokedError,
    SignatureError,
    UnsafePathError,
    UnsupportedSignatureError,
    UntrustedPublisherError,
)
from safeload.signing import _keys, verify_model, verify_signature
from safeload.signing._format import INTOTO_PAYLOAD_TYPE, bundle_json, pae
from safeload.trust import Publisher, TrustedKey, TrustedRoot, TrustStore, parse_time

ROOT_DIGEST = "bfb111134494dab750d91f656f52ed7b7d2292b82c6acb04f4dc9f35232f080c"
FILE_DIGESTS = {
    "README.md": "033091387e546914777b9fbce6576edca674847141c362344af0a58b742ebe4b",
    "config.json": "884459af72a9173ea450fbbf272cb2db4a98a024db1f3d6aa435950a287084fa",
    "model.safetensors": "85073f58c17bea1ecfa7bcf7b83235613c5238309fadfebad5ce1ad37b1c196d",
}
IDENTITY = "publisher@example.test"


def _has_blake3() -> bool:
    try:
        import blake3  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# positives


@pytest.mark.parametrize(("model", "sig", "key", "subject"), [
    ("model", "signatures/key-p256.sig", "keys/p256.pub.pem", ROOT_DIGEST),
    ("model", "signatures/key-p384.sig", "keys/p384.pub.pem", ROOT_DIGEST),
    ("model", "signatures/key-p521.sig", "keys/p521.pub.pem", ROOT_DIGEST),
    ("model-inplace", "model-inplace/model.sig", "keys/p256.pub.pem", ROOT_DIGEST),
    ("model", "signatures/independent-p256.sig", "keys/p256.pub.pem", ROOT_DIGEST),
    ("model", "signatures/key-p256.shards4096.sig", "keys/p256.pub.pem",
     "572412549c44f6298ff04b05892de23a026b6511131891df9f64e0b38bcfa560"),
    ("negative/git-files-added", "signatures/key-p256.sig", "keys/p256.pub.pem", ROOT_DIGEST),
])
def test_positive_key_fixtures_verify(oms: Path, model: str, sig: str, key: str,
                                      subject: str) -> None:
    result = verify_model(oms / model, oms / sig, key=oms / key)
    assert result.method == "key"
    assert result.subject_digest == subject
    assert result.publisher is None
    if result.serialization == "files":
        assert dict(result.files) == FILE_DIGESTS


def test_git_files_fixture_really_has_git_files(oms: Path) -> None:
    d = oms / "negative" / "git-files-added"
    assert (d / ".git" / "HEAD").is_file() and (d / ".gitattributes").is_file()


def test_certificate_fixture_verifies_with_root(oms: Path) -> None:
    result = verify_model(oms / "model", oms / "signatures/cert-leaf.sig",
                          certificate_chain=[oms / "pki/root-ca.cert.pem"], identity=IDENTITY)
    assert result.method == "certificate"
    assert result.identity == IDENTITY
    assert result.subject_digest == ROOT_DIGEST


@pytest.mark.skipif(not _has_blake3(), reason="the optional blake3 package is not installed")
def test_blake3_fixture_verifies(oms: Path) -> None:
    result = verify_model(oms / "model", oms / "signatures/key-p256.blake3.sig",
                          key=oms / "keys/p256.pub.pem")
    assert result.hash_type == "blake3"


@pytest.mark.skipif(_has_blake3(), reason="blake3 is installed")
def test_blake3_without_package_is_a_clear_could_not_decide(oms: Path) -> None:
    with pytest.raises(UnsupportedSignatureError, match="blake3") as info:
        verify_model(oms / "model", oms / "signatures/key-p256.blake3.sig",
                     key=oms / "keys/p256.pub.pem")
    assert "pip install blake3" in info.value.diagnostics()


def test_pae_is_byte_exact(oms: Path) -> None:
    payload = (oms / "decoded/key-p256.payload.json").read_bytes()
    assert pae(INTOTO_PAYLOAD_TYPE, payload) == (oms / "decoded/key-p256.pae.bin").read_bytes()


# --------------------------------------------------------------------------------------------
# negatives from the fixture


P256 = "keys/p256.pub.pem"


@pytest.mark.parametrize(("model", "sig", "error", "match"), [
    ("negative/byte-flipped", "signatures/key-p256.sig", DigestMismatchError,
     r"model\.safetensors: expected sha256:85073f58.*got sha256:352d59e7"),
    ("negative/file-added", "signatures/key-p256.sig", ManifestMismatchError,
     r"not covered by the signature: pytorch_model\.bin"),
    ("negative/file-removed", "signatures/key-p256.sig", ManifestMismatchError,
     r"missing signed file\(s\): config\.json"),
    ("model", "signatures/key-other-p256.sig", SignatureError,
     r"key-other-p256\.sig: key mismatch"),
    ("model", "negative/sig-otherkey-hint-removed.sig", SignatureError,
     r"sig-otherkey-hint-removed\.sig: the signature does not verify"),
    ("model", "negative/sig-payload-tampered.sig", SignatureError,
     r"sig-payload-tampered\.sig: the signature does not verify"),
    ("model", "negative/sig-path-escape.sig", SignatureError,
     r"sig-path-escape\.sig: .*outside the model directory.*\.\./gen_model\.py"),
])
def test_negative_key_fixtures_are_refused(oms: Path, model: str, sig: str,
                                           error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        verify_model(oms / model, oms / sig, key=oms / P256)


def test_path_escape_never_reads_outside(oms: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = os.open

    def spy(path: Any, *a: Any, **k: Any) -> int:
        opened.append(str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    with pytest.raises(SignatureError):
        verify_model(oms / "model", oms / "negative/sig-path-escape.sig", key=oms / P256)
    assert not any(p.endswith("gen_model.py") for p in opened)


def test_expired_leaf_is_refused(oms: Path) -> None:
    # model_signing 1.1.1 accepts this one (it checks the chain at the leaf's notBefore).
    with pytest.raises(SignatureError, match=r"cert-leaf-expired\.sig: .*expired on 2020-12-31"):
        verify_model(oms / "model", oms / "signatures/cert-leaf-expired.sig",
                     certificate_chain=[oms / "pki/root-ca.cert.pem"])


def test_leaf_without_signing_usage_is_refused(oms: Path) -> None:
    with pytest.raises(SignatureError, match=r"cert-leaf-nosign\.sig: .*digitalSignature"):
        verify_model(oms / "model", oms / "signatures/cert-leaf-nosign.sig",
                     certificate_chain=[oms / "pki/root-ca.cert.pem"])


def test_wrong_root_is_refused(oms: Path) -> None:
    with pytest.raises(UntrustedPublisherError, match="does not chain to a trusted root"):
        verify_model(oms / "model", oms / "signatures/cert-leaf.sig",
                     certificate_chain=[oms / "pki/other-root-ca.cert.pem"])


def test_an_intermediate_ca_as_the_only_anchor_is_refused(oms: Path) -> None:
    # The fixture's `cert-intermediate-only-anchor`: model_signing refuses it ("unable to get
    # issuer certificate"); cryptography's verifier took any store certificate as an anchor.
    with pytest.raises(UntrustedPublisherError, match="self-signed root CA"):
        verify_model(oms / "model", oms / "signatures/cert-leaf.sig",
                     certificate_chain=[oms / "pki/intermediate-ca.cert.pem"])


def test_a_chain_file_with_the_intermediate_and_the_root_verifies(oms: Path) -> None:
    result = verify_model(oms / "model", oms / "signatures/cert-leaf.sig",
                          certificate_chain=[oms / "pki/chain.pem"])
    assert result.method == "certificate"


def test_wrong_identity_is_refused(oms: Path) -> None:
    with pytest.raises(UntrustedPublisherError, match="identity publisher@example.test"):
        verify_model(oms / "model", oms / "signatures/cert-leaf.sig",
                     certificate_chain=[oms / "pki/root-ca.cert.pem"],
                     identity="someone@else.test")


def test_key_given_for_certificate_bundle_is_refused(oms: Path) -> None:
    with pytest.raises(SignatureError, match="certificate method but a public key"):
        verify_model(oms / "model", oms / "signatures/cert-leaf.sig", key=oms / P256)


# --------------------------------------------------------------------------------------------
# trust-store based verification


def _store(oms: Path, **kw: Any) -> TrustStore:
    key = TrustedKey.from_pem((oms / P256).read_bytes(), expires=kw.pop("key_expires", None))
    root = TrustedRoot.from_pem((oms / "pki/root-ca.cert.pem").read_bytes(),
                                identities=kw.pop("identities", (IDENTITY,)))
    return TrustStore(publishers=(Publisher("acme", ("acme/*",), (key,), (root,)),), **kw)


def test_store_key_names_the_publisher(oms: Path) -> None:
    result = verify_model(oms / "model", oms / "signatures/key-p256.sig",
                          trust_store=_store(oms))
    assert (result.publisher, result.method) == ("acme", "key")
    assert result.key_id == TrustedKey.from_pem((oms / P256).read_bytes()).key_id


def test_store_certificate_binds_identity(oms: Path) -> None:
    result = verify_model(oms / "model", oms / "signatures/cert-leaf.sig",
                          trust_store=_store(oms))
    assert (result.publisher, result.identity) == ("acme", IDENTITY)


def test_leaf_under_trusted_root_cannot_sign_as_anyone(oms: Path) -> None:
    with pytest.raises(UntrustedPublisherError, match="not allowed for publisher acme"):
        verify_model(oms / "model", oms / "signatures/cert-leaf.sig",
                     trust_store=_store(oms, identities=("release@acme.test",)))


def test_unknown_key_is_untrusted(oms: Path) -> None:
    with pytest.raises(UntrustedPublisherError, match="not in the trust store"):
        verify_model(oms / "model", oms / "signatures/key-p384.sig", trust_store=_store(oms))


def test_revoked_key_is_refused(oms: Path) -> None:
    kid = TrustedKey.from_pem((oms / P256).read_bytes()).key_id
    store = _store(oms).with_revoked_key(kid, "leaked")
    with pytest.raises(RevokedError, match=f"revoked key {kid} \\(leaked\\)"):
        verify_model(oms / "model", oms / "signatures/key-p256.sig", trust_store=store)


def test_revoked_intermediate_is_refused(oms: Path) -> None:
    inter = _keys.load_pem_certificates((oms / "pki/intermediate-ca.cert.pem").read_bytes())[0]
    store = _store(oms).with_revoked_key(_keys.key_id(_keys.certificate_key(inter)))
    with pytest.raises(RevokedError):
        verify_model(oms / "model", oms / "signatures/cert-leaf.sig", trust_store=store)


def test_expired_trust_in_key_is_refused(oms: Path) -> None:
    store = _store(oms, key_expires=parse_time("2021-01-01"))
    with pytest.raises(SignatureError, match="trusts only until 2021-01-01"):
        verify_model(oms / "model", oms / "signatures/key-p256.sig", trust_store=store)


# --------------------------------------------------------------------------------------------
# crafted bundles: what the fixture does not cover


@pytest.fixture
def craft(oms: Path) -> Callable[..., Path]:
    """Write a bundle signing `payload` with the p256 test key; returns its path."""
    priv = _keys.load_private_key((oms / "keys/p256.priv.pem").read_bytes())
    pub = priv.public_key()

    def make(payload: bytes, *, name: str = "crafted.sig", sign: bytes | None = None,
             mutate: Callable[[dict[str, Any]], None] | None = None) -> Path:
        sig = _keys.sign_raw(priv, pae(INTOTO_PAYLOAD_TYPE, sign if sign is not None else payload))
        doc = json.loads(bundle_json(payload=payload, signature=sig,
                                     key_hint=_keys.pem_hint(pub)))
        if mutate is not None:
            mutate(doc)
        out = oms / name
        out.write_text(json.dumps(doc))
        return out

    return make


def _statement(resources: list[dict[str, str]], subject: str | None = None) -> dict[str, Any]:
    import hashlib

    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model", "digest": {"sha256": subject or root}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {"serialization": {"method": "files", "hash_type": "sha256",
                                        "allow_symlinks": False},
                      "resources": resources},
    }


def _resources() -> list[dict[str, str]]:
    return [{"name": n, "algorithm": "sha256", "digest": d} for n, d in FILE_DIGESTS.items()]


def test_signature_is_checked_before_the_payload_is_parsed(oms: Path,
                                                           craft: Callable[..., Path]) -> None:
    # Garbage payload with a signature over other bytes: the error is the signature, not JSON.
    sig = craft(b"{not json", sign=b"something else")
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(sig, key=oms / P256)


def test_signed_garbage_payload_is_refused_after_the_signature(oms: Path,
                                                               craft: Callable[..., Path]) -> None:
    with pytest.raises(SignatureError, match="not JSON"):
        verify_signature(craft(b"{not json"), key=oms / P256)


def test_duplicate_json_keys_are_refused(oms: Path, craft: Callable[..., Path]) -> None:
    text = json.dumps(_statement(_resources()))
    dup = text.replace('"_type":', '"_type": "x", "_type":', 1).encode()
    with pytest.raises(SignatureError, match="duplicate key"):
        verify_signature(craft(dup), key=oms / P256)


def test_inconsistent_subject_digest_is_refused(oms: Path, craft: Callable[..., Path]) -> None:
    payload = json.dumps(_statement(_resources(), subject="0" * 64)).encode()
    with pytest.raises(SignatureError, match="manifest is inconsistent"):
        verify_signature(craft(payload), key=oms / P256)


def test_empty_manifest_is_refused(oms: Path, craft: Callable[..., Path]) -> None:
    with pytest.raises(SignatureError, match="empty"):
        verify_signature(craft(json.dumps(_statement([])).encode()), key=oms / P256)


@pytest.mark.parametrize("name", ["/etc/passwd", "a/../../x", "a//b", "./a", "a\\b", "C:x"])
def test_unsafe_resource_names_are_refused(oms: Path, craft: Callable[..., Path],
                                           name: str) -> None:
    res = [*_resources(), {"name": name, "algorithm": "sha256", "digest": "0" * 64}]
    with pytest.raises(SignatureError, match="outside the model directory"):
        verify_signature(craft(json.dumps(_statement(res)).encode()), key=oms / P256)


def test_keyless_bundle_checked_with_a_key_is_refused(oms: Path,
                                                      craft: Callable[..., Path]) -> None:
    def keyless(doc: dict[str, Any]) -> None:
        doc["verificationMaterial"] = {"certificate": {"rawBytes": base64.b64encode(b"x").decode()},
                                       "tlogEntries": [{}]}

    sig = craft(json.dumps(_statement(_resources())).encode(), mutate=keyless)
    with pytest.raises(SignatureError, match="keyless .* a public key was given"):
        verify_signature(sig, key=oms / P256)


def test_wrong_media_type_is_refused(oms: Path, craft: Callable[..., Path]) -> None:
    def old(doc: dict[str, Any]) -> None:
        doc["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.3"

    with pytest.raises(SignatureError, match="mediaType"):
        verify_signature(craft(json.dumps(_statement(_resources())).encode(), mutate=old),
                         key=oms / P256)


# --------------------------------------------------------------------------------------------
# the directory walk


def test_symlink_leaving_the_directory_is_refused(oms: Path) -> None:
    model = oms / "model"
    (model / "README.md").unlink()
    (model / "README.md").symlink_to(oms / "model-inplace" / "README.md")
    with pytest.raises(UnsafePathError, match="README.md is a symlink"):
        verify_model(model, oms / "signatures/key-p256.sig", key=oms / P256)


def test_symlink_leaving_is_refused_even_when_symlinks_are_allowed(
        oms: Path, craft: Callable[..., Path]) -> None:
    stmt = _statement(_resources())
    stmt["predicate"]["serialization"]["allow_symlinks"] = True
    sig = craft(json.dumps(stmt).encode())
    model = oms / "model"
    (model / "README.md").unlink()
    (model / "README.md").symlink_to(oms / "model-inplace" / "README.md")
    with pytest.raises(UnsafePathError, match="leaves the model directory"):
        verify_model(model, sig, key=oms / P256)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_fifo_in_model_is_refused_without_blocking(oms: Path) -> None:
    os.mkfifo(oms / "model" / "pipe")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        verify_model(oms / "model", oms / "signatures/key-p256.sig", key=oms / P256)


def test_known_digests_are_used_instead_of_reading(oms: Path) -> None:
    wrong = {"model.safetensors": "f" * 64}
    with pytest.raises(DigestMismatchError, match="got sha256:ffff"):
        verify_model(oms / "model", oms / "signatures/key-p256.sig", key=oms / P256,
                     known_digests=wrong)
    ok = verify_model(oms / "model", oms / "signatures/key-p256.sig", key=oms / P256,
                      known_digests={"model.safetensors": FILE_DIGESTS["model.safetensors"]})
    assert ok.files["model.safetensors"] == FILE_DIGESTS["model.safetensors"]


def test_missing_signature_is_refused(oms: Path) -> None:
    with pytest.raises(SignatureError, match="no signature at"):
        verify_model(oms / "model", key=oms / P256)


def _sharded(name_bounds: str) -> dict[str, Any]:
    st = _statement([{"name": "model.safetensors:" + name_bounds, "algorithm": "sha256",
                      "digest": "0" * 64}])
    st["predicate"]["serialization"].update(method="shards", shard_size=1000)
    return st


@pytest.mark.parametrize("edit", [
    lambda st: st["predicate"]["serialization"].update(hash_type=["sha256"]),
    lambda st: st.update(_sharded("\u00b9:\u00b2")),
    lambda st: st.update(_sharded("0:" + "9" * 5000)),
], ids=["hash-type-list", "unicode-digits", "5000-digit-bound"])
def test_hostile_fields_of_a_signed_statement_are_signature_errors(
        oms: Path, craft: Callable[..., Path], edit: Callable[[dict[str, Any]], None]) -> None:
    # review U: after the signature verified, these raised TypeError/ValueError tracebacks
    st = _statement(_resources())
    edit(st)
    with pytest.raises(SignatureError):
        verify_signature(craft(json.dumps(st).encode()), key=oms / P256)
