"""Signing with safeload, then verifying with safeload (interop with model_signing: see
test_oms_interop.py)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from safeload.errors import DigestMismatchError, SigningError, UnsafePathError
from safeload.signing import sign_model, verify_model
from safeload.signing._format import ED25519_KEY_DETAILS


@pytest.fixture
def model(oms: Path, tmp_path: Path) -> Path:
    m = tmp_path / "my-model"
    shutil.copytree(oms / "model", m)
    (m / "sub").mkdir()
    (m / "sub" / "weights.bin").write_bytes(b"\x00" * 1000)
    (m / "empty.txt").write_bytes(b"")
    return m


@pytest.mark.parametrize("stem", ["p256", "p384", "p521", "ed25519"])
def test_round_trip_key_method(oms: Path, model: Path, stem: str) -> None:
    res = sign_model(model, private_key_pem_path=oms / f"keys/{stem}.priv.pem")
    assert res.output == model / "model.sig"
    assert res.reference_compatible == (stem != "ed25519")
    out = verify_model(model, key=oms / f"keys/{stem}.pub.pem")
    assert out.subject_digest == res.subject_digest
    assert set(out.files) == {"README.md", "config.json", "model.safetensors", "sub/weights.bin",
                              "empty.txt"}
    bundle = json.loads(res.output.read_text())
    details = bundle["verificationMaterial"]["publicKey"].get("keyDetails")
    assert details == (ED25519_KEY_DETAILS if stem == "ed25519" else None)
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert "model.sig" in payload["predicate"]["serialization"]["ignore_paths"]
    assert payload["subject"][0]["name"] == "my-model"


def test_round_trip_certificate_method(oms: Path, model: Path, tmp_path: Path) -> None:
    sig = tmp_path / "cert.sig"
    res = sign_model(model, private_key_pem_path=oms / "pki/leaf.priv.pem", output=sig,
                     certificate_chain=[oms / "pki/leaf.cert.pem",
                                        oms / "pki/intermediate-ca.cert.pem"])
    assert res.method == "certificate"
    out = verify_model(model, sig, certificate_chain=[oms / "pki/root-ca.cert.pem"],
                       identity="publisher@example.test")
    assert out.identity == "publisher@example.test"


def test_certificate_must_match_the_key(oms: Path, model: Path) -> None:
    with pytest.raises(SigningError, match="not for this private key"):
        sign_model(model, private_key_pem_path=oms / "keys/p256.priv.pem",
                   certificate_chain=[oms / "pki/leaf.cert.pem"])
    assert not (model / "model.sig").exists()


def test_tampering_after_signing_is_detected(oms: Path, model: Path) -> None:
    sign_model(model, private_key_pem_path=oms / "keys/p256.priv.pem")
    (model / "sub" / "weights.bin").write_bytes(b"\x01" * 1000)
    with pytest.raises(DigestMismatchError, match="weights.bin"):
        verify_model(model, key=oms / "keys/p256.pub.pem")


def test_existing_signature_is_not_overwritten(oms: Path, model: Path) -> None:
    sign_model(model, private_key_pem_path=oms / "keys/p256.priv.pem")
    before = (model / "model.sig").read_bytes()
    with pytest.raises(SigningError, match="exists"):
        sign_model(model, private_key_pem_path=oms / "keys/p384.priv.pem")
    assert (model / "model.sig").read_bytes() == before
    sign_model(model, private_key_pem_path=oms / "keys/p384.priv.pem", overwrite=True)
    verify_model(model, key=oms / "keys/p384.pub.pem")


def test_symlinks_are_never_signed(oms: Path, model: Path) -> None:
    (model / "link").symlink_to(model / "config.json")
    with pytest.raises(UnsafePathError, match="symlink"):
        sign_model(model, private_key_pem_path=oms / "keys/p256.priv.pem")


def test_single_file_round_trip(oms: Path, model: Path) -> None:
    target = model / "model.safetensors"
    res = sign_model(target, private_key_pem_path=oms / "keys/p256.priv.pem")
    assert res.output == model / "model.safetensors.sig"
    assert list(res.files) == ["."]  # what model_signing 1.1.1 writes for a single file
    out = verify_model(target, key=oms / "keys/p256.pub.pem")
    assert out.files["."] == "85073f58c17bea1ecfa7bcf7b83235613c5238309fadfebad5ce1ad37b1c196d"


def test_manifest_order_is_model_signings(oms: Path, tmp_path: Path) -> None:
    m = tmp_path / "order"
    (m / "a").mkdir(parents=True)
    (m / "a" / "b").write_bytes(b"1")
    (m / "a-c").write_bytes(b"2")
    res = sign_model(m, private_key_pem_path=oms / "keys/p256.priv.pem")
    # PurePosixPath component order: ("a", "b") < ("a-c",); code-point order would differ.
    assert list(res.files) == ["a/b", "a-c"]


def test_nothing_to_sign(oms: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SigningError, match="no files to sign"):
        sign_model(tmp_path / "empty", private_key_pem_path=oms / "keys/p256.priv.pem",
                   output=tmp_path / "x.sig")


def test_encrypted_key_needs_password(oms: Path, model: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from safeload.signing import _keys

    key = _keys.load_private_key((oms / "keys/p256.priv.pem").read_bytes())
    enc = tmp_path / "enc.pem"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(SigningError, match="encrypted"):
        sign_model(model, private_key_pem_path=enc)
    sign_model(model, private_key_pem_path=enc, password=b"pw")
    verify_model(model, key=oms / "keys/p256.pub.pem")


def test_blake2b_round_trip(oms: Path, model: Path) -> None:
    res = sign_model(model, private_key_pem_path=oms / "keys/p256.priv.pem", hash_type="blake2b")
    assert not res.reference_compatible  # the model_signing CLI only re-hashes with sha256
    out = verify_model(model, key=oms / "keys/p256.pub.pem")
    assert out.hash_type == "blake2b" and len(out.files["config.json"]) == 128
    (model / "config.json").write_text("{}")
    with pytest.raises(DigestMismatchError, match="blake2b:"):
        verify_model(model, key=oms / "keys/p256.pub.pem")
