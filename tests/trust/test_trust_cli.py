"""`safeload trust|verify|sign`, in-process: exit codes, one JSON object on stdout, --yes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safeload._cli import main
from safeload.trust import TrustStore


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, Any, str]:
    """(exit code, parsed stdout JSON or None, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    if "--json" in argv:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert len(lines) == 1, out  # exactly one JSON object
        return code, json.loads(lines[0]), err
    return code, None, err


@pytest.fixture
def ts(tmp_path: Path) -> Path:
    return tmp_path / "cfg" / "trust.json"


def test_init_list_add_show(capsys: pytest.CaptureFixture[str], ts: Path, oms: Path) -> None:
    code, doc, _ = run(capsys, "trust", "init", "--trust-store", ts, "--json")
    assert code == 0 and doc["created"] is True and ts.is_file()
    code, doc, _ = run(capsys, "trust", "init", "--trust-store", ts, "--json")
    assert code == 0 and doc["created"] is False
    code, doc, _ = run(capsys, "trust", "add-publisher", "acme", "--namespace", "acme",
                       "--key", oms / "keys/p256.pub.pem", "--root", oms / "pki/root-ca.cert.pem",
                       "--identity", "publisher@example.test", "--trust-store", ts, "--json")
    assert code == 0
    assert any(line.startswith("+ publisher acme") for line in doc["changed"])
    code, doc, _ = run(capsys, "trust", "add-key", "acme", oms / "keys/p384.pub.pem",
                       "--trust-store", ts, "--json")
    assert code == 0 and len(doc["id"]) == 64
    code, doc, _ = run(capsys, "--json", "trust", "list", "--trust-store", ts)
    assert code == 0
    (pub,) = doc["publishers"]
    assert pub["namespaces"] == ["acme/*"] and len(pub["keys"]) == 2 and len(pub["roots"]) == 1
    code, doc, _ = run(capsys, "trust", "show", "acme", "--trust-store", ts, "--json")
    assert code == 0 and "BEGIN PUBLIC KEY" in doc["publisher"]["keys"][0]["pem"]
    code, _, err = run(capsys, "trust", "show", "nobody", "--trust-store", ts)
    assert code == 2 and "no publisher or key nobody" in err


def test_text_results_on_stdout_and_the_diff_once(capsys: pytest.CaptureFixture[str],
                                                   ts: Path, oms: Path, tmp_path: Path) -> None:
    code = main(["trust", "add-publisher", "acme", "--namespace", "acme", "--key",
                 str(oms / "keys/p256.pub.pem"), "--trust-store", str(ts)])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("+ publisher acme") and err == ""
    assert out.rstrip().endswith(f"trust store: {ts}")
    assert main(["trust", "list", "--trust-store", str(ts)]) == 0
    out, err = capsys.readouterr()
    assert "publisher acme: namespaces acme/*" in out and err == ""
    other = tmp_path / "other.json"
    assert main(["trust", "add-publisher", "beta", "--trust-store", str(other)]) == 0
    capsys.readouterr()
    assert main(["trust", "import", str(other), "--yes", "--trust-store", str(ts)]) == 0
    out, err = capsys.readouterr()
    assert out.count("+ publisher beta") == 1 and "beta" not in err  # no preview without a prompt


def test_env_var_selects_the_store(capsys: pytest.CaptureFixture[str], ts: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_TRUST_STORE", str(ts))
    code, doc, _ = run(capsys, "trust", "init", "--json")
    assert code == 0 and doc["path"] == str(ts)


def test_destructive_changes_need_yes(capsys: pytest.CaptureFixture[str], ts: Path,
                                     oms: Path) -> None:
    run(capsys, "trust", "add-publisher", "acme", "--key", oms / "keys/p256.pub.pem",
        "--trust-store", ts)
    before = ts.read_bytes()
    code, doc, _ = run(capsys, "trust", "revoke-key", oms / "keys/p256.pub.pem",
                       "--trust-store", ts, "--json")
    assert code == 2 and "without confirmation" in doc["error"]["message"]
    assert ts.read_bytes() == before  # nothing changed
    code, doc, _ = run(capsys, "trust", "revoke-key", oms / "keys/p256.pub.pem", "--reason",
                       "leaked", "--yes", "--trust-store", ts, "--json")
    assert code == 0 and doc["key_id"] in TrustStore.load(ts).revoked_keys[0].value
    code, doc, _ = run(capsys, "trust", "policy", "--mode", "audit", "--trust-store", ts, "--json")
    assert code == 2 and TrustStore.load(ts).policy.mode == "default"
    code, doc, _ = run(capsys, "trust", "policy", "--mode", "strict", "--trust-store", ts,
                       "--json")  # stricter: no confirmation needed
    assert code == 0 and doc["policy"]["mode"] == "strict"


def test_policy_shows_the_default_in_one_place(capsys: pytest.CaptureFixture[str],
                                               ts: Path) -> None:
    code, doc, _ = run(capsys, "trust", "policy", "--trust-store", ts, "--json")
    assert code == 0 and doc["policy"]["mode"] == "default"
    assert "content once loaded with a valid signature is refused later" in doc["default"]


def test_pin_unpin_revoke_digest(capsys: pytest.CaptureFixture[str], ts: Path,
                                 oms: Path) -> None:
    f = oms / "model" / "config.json"
    code, doc, _ = run(capsys, "trust", "pin", f, "--trust-store", ts, "--json")
    assert code == 0 and doc["sha256"].startswith("884459af")
    code, doc, _ = run(capsys, "trust", "pin", "--repo", "org/m", "--revision", "a" * 40,
                       "--file", "w.bin", "--sha256", "b" * 64, "--trust-store", ts, "--json")
    assert code == 0
    code, _, err = run(capsys, "trust", "pin", "--repo", "org/m", "--revision", "a" * 40,
                       "--file", "w.bin", "--sha256", "c" * 64, "--trust-store", ts)
    assert code == 2 and "already pinned" in err
    assert len(TrustStore.load(ts).pins) == 2
    code, _, _ = run(capsys, "trust", "unpin", f, "--yes", "--trust-store", ts)
    assert code == 0 and len(TrustStore.load(ts).pins) == 1
    code, doc, _ = run(capsys, "trust", "revoke-digest", f, "--yes", "--trust-store", ts,
                       "--json")
    assert code == 0 and TrustStore.load(ts).digest_revocation(doc["sha256"]) is not None


def test_export_import(capsys: pytest.CaptureFixture[str], tmp_path: Path, ts: Path,
                      oms: Path) -> None:
    other = tmp_path / "other" / "trust.json"
    run(capsys, "trust", "add-publisher", "acme", "--key", oms / "keys/p256.pub.pem",
        "--trust-store", other)
    exported = tmp_path / "export.json"
    code, _, _ = run(capsys, "trust", "export", "-o", exported, "--trust-store", other)
    assert code == 0
    code, doc, _ = run(capsys, "trust", "import", exported, "--dry-run", "--trust-store", ts,
                       "--json")
    assert code == 0 and doc["dry_run"] and doc["changed"] and not ts.exists()
    code, doc, _ = run(capsys, "trust", "import", exported, "--trust-store", ts, "--json")
    assert code == 2 and not ts.exists()  # asks; --json never prompts
    code, doc, _ = run(capsys, "trust", "import", exported, "--yes", "--trust-store", ts,
                       "--json")
    assert code == 0 and TrustStore.load(ts).publisher("acme") is not None


def test_corrupt_store_exits_2(capsys: pytest.CaptureFixture[str], ts: Path) -> None:
    ts.parent.mkdir(parents=True)
    ts.write_text("{")
    code, doc, err = run(capsys, "trust", "list", "--trust-store", ts, "--json")
    assert code == 2 and doc["error"]["type"] == "TrustStoreError"
    assert "fix:" in err


@pytest.mark.parametrize(("model", "sig", "extra", "code"), [
    ("model", "signatures/key-p256.sig", ["--key", "keys/p256.pub.pem"], 0),
    ("model", "signatures/cert-leaf.sig",
     ["--certificate-chain", "pki/root-ca.cert.pem", "--identity", "publisher@example.test"], 0),
    ("negative/byte-flipped", "signatures/key-p256.sig", ["--key", "keys/p256.pub.pem"], 1),
    ("model", "signatures/cert-leaf-expired.sig", ["--certificate-chain", "pki/root-ca.cert.pem"],
     1),
    ("model", "signatures/key-p256.sig", [], 1),  # empty trust store: untrusted key
    ("model", "no-such.sig", ["--key", "keys/p256.pub.pem"], 1),
    ("no-such-model", "signatures/key-p256.sig", ["--key", "keys/p256.pub.pem"], 2),
])
def test_verify_exit_codes(capsys: pytest.CaptureFixture[str], oms: Path, ts: Path, model: str,
                           sig: str, extra: list[str], code: int) -> None:
    args = [str(oms / a) if a.endswith(".pem") else a for a in extra]
    got, doc, _ = run(capsys, "verify", oms / model, "--signature", oms / sig, *args,
                      "--trust-store", ts, "--json")
    assert got == code
    assert doc["ok"] is (code == 0)


def test_verify_with_trust_store(capsys: pytest.CaptureFixture[str], oms: Path, ts: Path) -> None:
    run(capsys, "trust", "add-publisher", "acme", "--key", oms / "keys/p256.pub.pem",
        "--trust-store", ts)
    code, doc, _ = run(capsys, "verify", oms / "model-inplace", "--trust-store", ts, "--json")
    assert code == 0 and doc["publisher"] == "acme" and doc["method"] == "key"


def test_sign_then_verify(capsys: pytest.CaptureFixture[str], oms: Path, tmp_path: Path,
                          ts: Path) -> None:
    m = tmp_path / "m"
    m.mkdir()
    (m / "w.bin").write_bytes(b"123")
    code, doc, _ = run(capsys, "sign", m, "--key", oms / "keys/p384.priv.pem", "--json")
    assert code == 0 and doc["output"] == str(m / "model.sig") and doc["reference_compatible"]
    code, _, err = run(capsys, "sign", m, "--key", oms / "keys/p384.priv.pem")
    assert code == 2 and "exists" in err
    code, doc, _ = run(capsys, "verify", m, "--key", oms / "keys/p384.pub.pem",
                       "--trust-store", ts, "--json")
    assert code == 0 and doc["files"] == {"w.bin": doc["files"]["w.bin"]}
    code, _, err = run(capsys, "sign", m, "--key", oms / "keys/ed25519.priv.pem", "-o",
                       tmp_path / "ed.sig")
    assert code == 0 and "safeload extension" in err


def test_trust_and_verify_never_import_torch(oms: Path, ts: Path) -> None:
    code = (
        "import sys; from safeload._cli import main;"
        f"rc = main(['trust', 'list', '--trust-store', {str(ts)!r}]);"
        f"rc2 = main(['verify', {str(oms / 'model')!r}, '--signature',"
        f" {str(oms / 'signatures/key-p256.sig')!r}, '--key', {str(oms / 'keys/p256.pub.pem')!r},"
        f" '--trust-store', {str(ts)!r}]);"
        "assert (rc, rc2) == (0, 0), (rc, rc2);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
