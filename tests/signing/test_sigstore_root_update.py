"""`safeload trust sigstore-root update`: the trusted root through a TUF repository on 127.0.0.1.

The repository is tests/fleet/tuf_repo.py's (built with `tuf.api.metadata`), laid out as
Sigstore's CDN is: metadata at the base URL, targets under `targets/`. Its first root stands in
for the TUF root shipped in safeload (monkeypatched: the real one is Sigstore's).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tuf")
pytest.importorskip("sigstore")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fleet"))
from securesystemslib.signer import CryptoSigner  # noqa: E402
from tuf_repo import Server, TufRepo, serving  # noqa: E402

from safeload._cli import main  # noqa: E402
from safeload.errors import SignatureError  # noqa: E402
from safeload.signing import sigstore_store  # noqa: E402
from safeload.signing.keyless import IdentityRule, verify_keyless  # noqa: E402
from safeload.signing.sigstore_roots import BUILTIN_SHA256  # noqa: E402

K = Path(__file__).resolve().parents[1] / "assets" / "keyless"
MODEL = K / "oms-model-transparency" / "v1.1.0-sigstore"
PROD = (K / "trusted_roots" / "sigstore-production.trusted_root.json").read_bytes()
STAGING = (K / "trusted_roots" / "sigstore-staging.trusted_root.json").read_bytes()
SAN, ISSUER = "stefanb@us.ibm.com", "https://sigstore.verify.ibm.com/oauth2"
ONE_OFF = ("--identity", SAN, "--identity-provider", ISSUER)
# The same production root, serialised differently: a new root document, a new sha256.
PROD_V2 = (json.dumps(json.loads(PROD), indent=1) + "\n").encode()


def _published(repo: TufRepo, data: bytes) -> None:
    repo.publish(data, path="trusted_root.json")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TufRepo:
    r = TufRepo(tmp_path / "repo")
    (r.metadata / "targets").symlink_to(r.targets_dir)  # Sigstore's layout: BASE/targets/
    _published(r, PROD_V2)
    monkeypatch.setattr(sigstore_store, "tuf_anchor", lambda name: r.root_bytes(1))
    return r


@pytest.fixture
def server(repo: TufRepo) -> Iterator[Server]:
    with serving(repo.base) as s:
        yield s


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, Any, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if "--json" in argv and out else None, err


def _update(capsys: pytest.CaptureFixture[str], server: Server, *extra: str
            ) -> tuple[int, Any, str]:
    return _run(capsys, "trust", "sigstore-root", "update", "--url", server.url + "metadata/",
                "--json", *extra)


def _stored() -> bytes:
    return (sigstore_store.roots_dir() / "production.json").read_bytes()


def test_valid_update_is_stored_and_used_by_verification(
        capsys: pytest.CaptureFixture[str], server: Server) -> None:
    code, out, _ = _update(capsys, server)
    assert code == 0 and out["changed"] and out["instance"] == "production"
    assert out["previous_sha256"] == BUILTIN_SHA256["production"]
    new_sha = out["sha256"]
    assert new_sha != BUILTIN_SHA256["production"]
    assert sigstore_store.resolve_root("production").sha256 == new_sha
    code, out, _ = _run(capsys, "verify", MODEL, *ONE_OFF, "--json")
    assert code == 0 and out["keyless"]["sigstore_root"] == "production"
    assert out["keyless"]["sigstore_root_sha256"] == new_sha  # the root used is recorded
    code, out, _ = _run(capsys, "trust", "sigstore-root", "list", "--json")
    prod = next(r for r in out["sigstore_roots"] if r["name"] == "production")
    assert prod["kind"] == "refreshed" and prod["sha256"] == new_sha
    # Nothing new: unchanged, exit 0, and the metadata is not downloaded again needlessly.
    code, out, _ = _update(capsys, server)
    assert code == 0 and not out["changed"]


def test_refreshed_root_is_preferred_to_the_shipped_copy(
        capsys: pytest.CaptureFixture[str], repo: TufRepo, server: Server) -> None:
    # A (test) repository that signs the staging root as production's: what it signs is used.
    _published(repo, STAGING)
    assert _update(capsys, server)[0] == 0
    assert _run(capsys, "verify", MODEL, *ONE_OFF)[0] == 1  # production-signed: refused now
    v2 = (K / "sigstore-python" / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_bytes()
    beacon = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
              ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
    res = verify_keyless(v2, source="v2", root=sigstore_store.resolve_root("production"),
                         rules=[IdentityRule(issuer="https://token.actions.githubusercontent"
                                             ".com", san=beacon)])
    assert res.root_name == "production" and res.root_sha256 == BUILTIN_SHA256["staging"]


def test_root_rotation_is_followed_and_reverified_offline(
        capsys: pytest.CaptureFixture[str], repo: TufRepo, server: Server) -> None:
    new_keys = [CryptoSigner.generate_ed25519() for _ in range(3)]
    repo.rotate_root(new_keys, sign_with=repo.signers["root"][:2] + new_keys[:2])
    repo.signers["root"] = new_keys
    code, out, _ = _update(capsys, server)
    assert code == 0 and out["tuf_root_version"] == 2
    sigstore_store._verified.clear()
    assert sigstore_store.resolve_root("production").sha256 == out["sha256"]


def test_rollback_is_refused_and_the_previous_root_stays(
        capsys: pytest.CaptureFixture[str], repo: TufRepo, server: Server) -> None:
    assert _update(capsys, server)[0] == 0
    before = _stored()
    old_ts = repo.timestamp.signed.version
    repo.bump_timestamp()
    _published(repo, STAGING)
    assert _update(capsys, server)[0] == 0
    after = _stored()
    assert after != before
    repo.timestamp.signed.version = old_ts  # an older timestamp, validly signed
    repo.write_timestamp()
    code, _, err = _update(capsys, server)
    assert code == 1 and "rollback refused" in err and "previous Sigstore root stays" in err
    assert _stored() == after


def test_expired_timestamp_is_refused_and_the_previous_root_stays(
        capsys: pytest.CaptureFixture[str], repo: TufRepo, server: Server) -> None:
    assert _update(capsys, server)[0] == 0
    before = _stored()
    _published(repo, STAGING)
    repo.bump_timestamp(expires=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    code, _, err = _update(capsys, server)
    assert code == 1 and "expired" in err and "fix:" in err
    assert _stored() == before
    assert sigstore_store.resolve_root("production").sha256 != BUILTIN_SHA256["staging"]


def test_wrong_signature_is_refused_and_the_shipped_root_stays(
        capsys: pytest.CaptureFixture[str], repo: TufRepo, server: Server) -> None:
    repo.timestamp.signed.version += 1  # signed by a key the root does not list
    (repo.metadata / "timestamp.json").write_bytes(repo._sign(
        repo.timestamp, [CryptoSigner.generate_ed25519()]))  # type: ignore[arg-type]
    code, _, err = _update(capsys, server)
    assert code == 1 and "not signed by enough trusted keys" in err and "--url" in err
    assert not (sigstore_store.roots_dir() / "production.json").exists()
    assert sigstore_store.resolve_root("production").sha256 == BUILTIN_SHA256["production"]


def test_tampered_target_is_refused(capsys: pytest.CaptureFixture[str], repo: TufRepo,
                                    server: Server) -> None:
    repo.target_file("trusted_root.json").write_bytes(STAGING)  # the mirror swaps the file
    code, _, err = _update(capsys, server)
    assert code == 1 and "length or hashes" in err


def test_unreachable_repository_could_not_decide(capsys: pytest.CaptureFixture[str],
                                                 server: Server) -> None:
    server.stop()
    code, _, err = _update(capsys, server)
    assert code == 2 and "cannot download" in err


@pytest.mark.parametrize("swap", ["trusted_root", "targets"])
def test_stored_root_swapped_on_disk_is_refused_at_use(
        capsys: pytest.CaptureFixture[str], server: Server, swap: str) -> None:
    assert _update(capsys, server)[0] == 0
    path = sigstore_store.roots_dir() / "production.json"
    doc = json.loads(path.read_text())
    if swap == "trusted_root":  # the staging root under the production name
        doc["trusted_root"] = STAGING.decode()
    else:
        doc["tuf"]["targets"] = doc["tuf"]["targets"].replace('"version": ', '"version": 1')
    path.write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="does not verify against safeload's TUF root"):
        sigstore_store.resolve_root("production")
    code, _, err = _run(capsys, "verify", MODEL, *ONE_OFF)
    assert code == 1 and "sigstore-root update" in err
    assert _run(capsys, "trust", "sigstore-root", "remove", "production", "--yes")[0] == 0
    assert _run(capsys, "verify", MODEL, *ONE_OFF)[0] == 0  # the shipped copy again


def test_update_of_an_unknown_instance_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "trust", "sigstore-root", "update", "--instance", "corp")
    assert code == 2 and "invalid choice" in err


def _plant(name: str, kind: str, root: bytes) -> Path:
    doc = {"schema": sigstore_store.SCHEMA, "name": name, "kind": kind, "source": "x",
           "updated": "", "trusted_root": root.decode()}
    d = sigstore_store.roots_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"{name}.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def test_a_plain_file_under_a_public_good_name_is_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Review T-1: a "kind": "file" record named production stood in for the shipped root with
    # no TUF check (the PoC forged a whole Sigstore instance and verified any identity).
    _plant("production", "file", STAGING)
    with pytest.raises(SignatureError, match="refreshed through TUF, not a plain file"):
        sigstore_store.resolve_root("production")
    assert _run(capsys, "verify", MODEL, *ONE_OFF)[0] == 1


@pytest.mark.parametrize("how", ["group-writable", "a-link", "shared-folder"])
def test_a_stored_root_another_user_could_have_written_is_refused(
        how: str, tmp_path: Path) -> None:
    path = _plant("corp", "file", PROD)
    assert sigstore_store.resolve_root("corp").sha256  # the control: a private instance of ours
    if how == "group-writable":
        path.chmod(0o664)
    elif how == "a-link":
        target = tmp_path / "elsewhere.json"
        target.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(target)
    else:
        path.parent.chmod(0o777)
    with pytest.raises(SignatureError, match="another user may have written it|cannot be read"):
        sigstore_store.resolve_root("corp")
