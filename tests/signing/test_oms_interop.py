"""Interop with the reference OpenSSF `model_signing` CLI (1.1.1).

The reference tool is never installed into safeload's venv. These tests look for its CLI in
`$SAFELOAD_MODEL_SIGNING` (path to the `model_signing` executable), then `/tmp/msvenv` (made with
`python -m venv /tmp/msvenv && /tmp/msvenv/bin/pip install model-signing==1.1.1 pyopenssl`),
then PATH, and are skipped when none works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from safeload.signing import sign_model

REPO = Path(__file__).resolve().parents[2]


def _find_cli() -> str | None:
    for cand in (os.environ.get("SAFELOAD_MODEL_SIGNING"), "/tmp/msvenv/bin/model_signing",
                 shutil.which("model_signing")):
        if cand and Path(cand).is_file():
            try:
                ok = subprocess.run([cand, "--help"], capture_output=True, timeout=60).returncode
            except (OSError, subprocess.TimeoutExpired):
                continue
            if ok == 0:
                return cand
    return None


MS = _find_cli()
needs_ms = pytest.mark.skipif(
    MS is None,
    reason="model_signing CLI unavailable (set SAFELOAD_MODEL_SIGNING, or: python -m venv "
           "/tmp/msvenv && /tmp/msvenv/bin/pip install model-signing==1.1.1 pyopenssl)")


def _ms(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert MS is not None
    return subprocess.run([MS, *map(str, args)], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


@pytest.fixture
def model(oms: Path, tmp_path: Path) -> Path:
    m = tmp_path / "m"
    shutil.copytree(oms / "model", m)
    (m / "sub").mkdir()
    (m / "sub" / "w.bin").write_bytes(b"\x07" * 3000)
    (m / "empty").write_bytes(b"")
    return m


@needs_ms
@pytest.mark.parametrize("stem", ["p256", "p521"])
def test_reference_verifies_our_key_signature(oms: Path, model: Path, stem: str) -> None:
    sign_model(model, private_key_pem_path=oms / f"keys/{stem}.priv.pem")
    r = _ms("verify", "key", model, "--signature", model / "model.sig",
            "--public_key", oms / f"keys/{stem}.pub.pem")
    assert r.returncode == 0, r.stderr
    # and from inside the directory, the upstream way
    r = _ms("verify", "key", ".", "--signature", "model.sig", "--public_key",
            oms / f"keys/{stem}.pub.pem", cwd=model)
    assert r.returncode == 0, r.stderr


@needs_ms
def test_reference_verifies_our_certificate_signature(oms: Path, model: Path,
                                                      tmp_path: Path) -> None:
    sig = tmp_path / "cert.sig"
    sign_model(model, private_key_pem_path=oms / "pki/leaf.priv.pem", output=sig,
               certificate_chain=[oms / "pki/leaf.cert.pem", oms / "pki/intermediate-ca.cert.pem"])
    r = _ms("verify", "certificate", model, "--signature", sig, "--certificate_chain",
            oms / "pki/root-ca.cert.pem")
    assert r.returncode == 0, r.stderr


@needs_ms
def test_reference_verifies_our_single_file_signature(oms: Path, model: Path) -> None:
    target = model / "model.safetensors"
    res = sign_model(target, private_key_pem_path=oms / "keys/p384.priv.pem",
                     output=model.parent / "single.sig")
    r = _ms("verify", "key", target, "--signature", res.output, "--public_key",
            oms / "keys/p384.pub.pem")
    assert r.returncode == 0, r.stderr


@needs_ms
def test_reference_refuses_our_ed25519_extension(oms: Path, model: Path) -> None:
    sign_model(model, private_key_pem_path=oms / "keys/ed25519.priv.pem")
    r = _ms("verify", "key", model, "--signature", model / "model.sig", "--public_key",
            oms / "keys/ed25519.pub.pem")
    assert r.returncode != 0  # documented: the extension is not readable by the reference tool


@needs_ms
def test_reference_detects_tampering_of_our_signature(oms: Path, model: Path) -> None:
    sign_model(model, private_key_pem_path=oms / "keys/p256.priv.pem")
    (model / "config.json").write_text("{}")
    r = _ms("verify", "key", model, "--signature", model / "model.sig", "--public_key",
            oms / "keys/p256.pub.pem")
    assert r.returncode == 1


@needs_ms
def test_our_verifier_reads_blake3_with_the_package(oms: Path) -> None:
    """The reference venv has `blake3`: run safeload's verifier there on the blake3 fixture."""
    assert MS is not None
    python = Path(MS).parent / "python"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from safeload.signing import verify_model;"
        "r = verify_model(sys.argv[2], sys.argv[3], key=sys.argv[4]);"
        "print(r.hash_type, r.subject_digest)"
    )
    r = subprocess.run([str(python), "-c", code, str(REPO), str(oms / "model"),
                        str(oms / "signatures/key-p256.blake3.sig"),
                        str(oms / "keys/p256.pub.pem")], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"the reference venv cannot import safeload's dependencies: {r.stderr[-200:]}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [
        "blake3", "8447b6a4ab0a296e18b1e015fa3b43c15b22047d281031c4532f2dd1ac4334fc"]

