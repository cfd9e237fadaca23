"""`safeload sign --keyless`: what can be tested offline (arguments, token, no network)."""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import pytest

from safeload._cli import main
from safeload.errors import SigningError
from safeload.signing.sign import sign_model_keyless

pytest.importorskip("sigstore")

MODEL = Path(__file__).resolve().parents[1] / "assets" / "keyless" / "oms-model-transparency" \
    / "v1.0.0-sigstore"


def _jwt(**claims: object) -> str:
    def part(x: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(x).encode()).rstrip(b"=").decode()
    now = int(time.time())
    body = {"iss": "https://oauth2.sigstore.dev/auth", "aud": "sigstore", "sub": "x",
            "email": "a@example.org", "email_verified": True, "iat": now, "exp": now + 600,
            "federated_claims": {"connector_id": "https://github.com/login/oauth"}} | claims
    return f"{part({'alg': 'none'})}.{part(body)}.c2ln"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    out = tmp_path / "m"
    shutil.copytree(MODEL, out)
    (out / "model.sig").unlink()
    return out


def test_keyless_without_a_token_says_where_to_put_one(
        model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SIGSTORE_ID_TOKEN", raising=False)
    assert main(["sign", str(model), "--keyless"]) != 0
    assert "SIGSTORE_ID_TOKEN" in capsys.readouterr().err
    assert not (model / "model.sig").exists()


@pytest.mark.parametrize("argv", [["--key", "k.pem"], ["--certificate-chain", "c.pem"]])
def test_keyless_refuses_key_material(model: Path, argv: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", str(model), "--keyless", *argv]) != 0
    assert "ephemeral key" in capsys.readouterr().err


@pytest.mark.parametrize("token", ["garbage", _jwt(exp=1), _jwt(aud="other")])
def test_malformed_or_expired_token_is_refused_before_any_network(model: Path,
                                                                  token: str) -> None:
    with pytest.raises(SigningError, match="token is unusable"):
        sign_model_keyless(model, identity_token=token)


def test_token_from_file_without_network_fails_cleanly(
        model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    tok = tmp_path / "token"
    tok.write_text(_jwt() + "\n")
    # A proxy that refuses connections: the signer fails at once, wherever this runs.
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert main(["sign", str(model), "--keyless", "--identity-token", str(tok)]) != 0
    assert "needs network access to Fulcio" in capsys.readouterr().err
    assert not (model / "model.sig").exists()
