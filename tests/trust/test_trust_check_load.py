"""check_load: the policy enforced on every load (pins, signatures, namespaces, modes)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from safeload import trust
from safeload.errors import (
    DigestMismatchError,
    ManifestMismatchError,
    RevisionLockError,
    RevokedError,
    SignatureError,
    UntrustedPublisherError,
)
from safeload.signing import sign_model
from safeload.trust import (
    Pin,
    Policy,
    Publisher,
    RevisionLock,
    TrustedKey,
    TrustStore,
    check_load,
    load_observations,
)
from safeload.trust import check as trust_check

COMMIT = "a" * 40
COMMIT2 = "b" * 40
ST = "model.safetensors"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path: Path, store: TrustStore, **kw: object) -> trust.TrustDecision:
    return check_load(path, sha256=_sha(path), size=path.stat().st_size, store=store,
                      **kw)  # type: ignore[arg-type]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "trust.json"


@pytest.fixture
def store(oms: Path, store_path: Path) -> TrustStore:
    key = TrustedKey.from_pem((oms / "keys/p256.pub.pem").read_bytes())
    other = TrustedKey.from_pem((oms / "keys/p384.pub.pem").read_bytes())
    _, s = TrustStore.update(lambda s: s.with_publisher(Publisher("acme", ("acme/*",), (key,)))
                             .with_publisher(Publisher("rival", ("rival/*",), (other,))),
                             store_path)
    return s


def _set(store: TrustStore, change: object) -> TrustStore:
    return TrustStore.update(change, store.path)[1]  # type: ignore[arg-type]


@pytest.fixture
def signed_dir(oms: Path, tmp_path: Path) -> Path:
    """The model-inplace fixture: model.sig (p256, by acme) inside the directory."""
    d = tmp_path / "signed"
    shutil.copytree(oms / "model-inplace", d)
    return d


@pytest.fixture
def plain_dir(oms: Path, tmp_path: Path) -> Path:
    d = tmp_path / "plain"
    shutil.copytree(oms / "model", d)
    return d


# --------------------------------------------------------------------------------------------
# signatures


def test_signed_local_file_loads_with_publisher(store: TrustStore, signed_dir: Path) -> None:
    d = _load(signed_dir / ST, store)
    assert (d.signed, d.publisher, d.method, d.pin, d.mode) == (True, "acme", "key", "none",
                                                                "default")
    assert d.subject_digest == "bfb111134494dab750d91f656f52ed7b7d2292b82c6acb04f4dc9f35232f080c"
    assert d.signature_path == str(signed_dir / "model.sig") and d.warnings == ()


def test_loaded_bytes_must_match_the_signed_digest(store: TrustStore, signed_dir: Path) -> None:
    path = signed_dir / ST
    with pytest.raises(DigestMismatchError) as info:
        check_load(path, sha256="0" * 64, size=path.stat().st_size, store=store)
    assert info.value.expected == (
        "sha256:85073f58c17bea1ecfa7bcf7b83235613c5238309fadfebad5ce1ad37b1c196d")
    assert info.value.actual == "sha256:" + "0" * 64


def test_file_added_next_to_a_signature_is_refused(store: TrustStore, signed_dir: Path) -> None:
    extra = signed_dir / "pytorch_model.bin"
    extra.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ManifestMismatchError, match="not covered by the signature"):
        _load(extra, store)


def test_signature_by_unknown_key_is_refused(oms: Path, store: TrustStore,
                                             plain_dir: Path) -> None:
    shutil.copy(oms / "signatures/key-other-p256.sig", plain_dir / "model.sig")
    with pytest.raises(UntrustedPublisherError, match="not in the trust store"):
        _load(plain_dir / ST, store)


def test_tampered_signature_is_refused(oms: Path, store: TrustStore, plain_dir: Path) -> None:
    shutil.copy(oms / "negative/sig-payload-tampered.sig", plain_dir / "model.sig")
    with pytest.raises(SignatureError, match="does not verify"):
        _load(plain_dir / ST, store)


def test_unsigned_unbound_loads_with_a_warning(store: TrustStore, plain_dir: Path) -> None:
    d = _load(plain_dir / ST, store)
    assert (d.signed, d.publisher, d.pin) == (False, None, "none")
    assert any("unsigned" in w for w in d.warnings)


def test_shards_manifest_rehashes_and_ties_to_loaded_digest(oms: Path, store: TrustStore,
                                                           plain_dir: Path) -> None:
    shutil.copy(oms / "signatures/key-p256.shards4096.sig", plain_dir / "model.sig")
    assert _load(plain_dir / ST, store).signed
    path = plain_dir / ST
    with pytest.raises(DigestMismatchError, match="changed while it was checked"):
        check_load(path, sha256="1" * 64, size=path.stat().st_size, store=store)


def test_signature_checked_once_for_many_files(store: TrustStore, signed_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from safeload.signing import verify as signing_verify

    calls = []
    real = signing_verify.verify_signature_bytes

    def counting(*a: object, **k: object) -> object:
        calls.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    # trust.check imports the verifier when a signature is first checked (cryptography stays
    # unloaded for unsigned loads), so the module attribute is what it finds.
    monkeypatch.setattr(signing_verify, "verify_signature_bytes", counting)
    trust_check._sig_cache.clear()
    for name in ("README.md", "config.json", ST):
        assert _load(signed_dir / name, store).signed
    assert len(calls) == 1


# --------------------------------------------------------------------------------------------
# no silent downgrade


def test_deleting_the_signature_later_is_refused(store: TrustStore, signed_dir: Path) -> None:
    assert _load(signed_dir / ST, store).signed
    (signed_dir / "model.sig").unlink()
    with pytest.raises(SignatureError, match="was loaded signed by acme"):
        _load(signed_dir / ST, store)
    trust.forget_location(store.path, f"file:{signed_dir.resolve()}")  # type: ignore[arg-type]
    assert not _load(signed_dir / ST, store).signed


def test_hub_repo_once_signed_stays_signed(store: TrustStore, signed_dir: Path,
                                           plain_dir: Path) -> None:
    assert _load(signed_dir / ST, store, repo="someone/model", revision=COMMIT).signed
    with pytest.raises(SignatureError, match="hf:someone/model"):
        _load(plain_dir / ST, store, repo="someone/model", revision=COMMIT2)


# --------------------------------------------------------------------------------------------
# namespaces, pins, locks, revocations


def test_bound_namespace_requires_its_publishers_signature(store: TrustStore,
                                                           plain_dir: Path) -> None:
    with pytest.raises(SignatureError, match="namespace of publisher acme"):
        _load(plain_dir / ST, store, repo="acme/model", revision=COMMIT)
    # other namespaces are not bound
    assert not _load(plain_dir / ST, store, repo="stranger/model", revision=COMMIT).signed


def test_bound_namespace_refuses_another_publishers_signature(store: TrustStore,
                                                              signed_dir: Path) -> None:
    with pytest.raises(UntrustedPublisherError, match="belongs to publisher rival"):
        _load(signed_dir / ST, store, repo="rival/model", revision=COMMIT)
    assert _load(signed_dir / ST, store, repo="acme/model", revision=COMMIT).publisher == "acme"


def test_hub_file_pinned_on_first_use(store: TrustStore, plain_dir: Path, tmp_path: Path) -> None:
    assert _load(plain_dir / ST, store, repo="org/m", revision=COMMIT).pin == "new"
    assert _load(plain_dir / ST, store, repo="org/m", revision=COMMIT).pin == "hit"
    swapped = tmp_path / "swap" / ST
    swapped.parent.mkdir()
    swapped.write_bytes(b"other bytes")
    with pytest.raises(DigestMismatchError) as info:
        _load(swapped, store, repo="org/m", revision=COMMIT)
    assert info.value.expected == f"sha256:{_sha(plain_dir / ST)}"
    assert info.value.actual == f"sha256:{_sha(swapped)}"
    pins = load_observations(store).pins
    assert [(p.repo, p.revision, p.file) for p in pins] == [("org/m", COMMIT, ST)]


def test_branch_names_are_not_pinned(store: TrustStore, plain_dir: Path) -> None:
    d = _load(plain_dir / ST, store, repo="org/m", revision="main")
    assert d.pin == "none" and any("not a commit" in w for w in d.warnings)


def test_hub_filename_from_cache_layout(store: TrustStore, oms: Path, tmp_path: Path) -> None:
    snap = tmp_path / "models--org--m" / "snapshots" / COMMIT
    (snap / "sub").mkdir(parents=True)
    shutil.copy(oms / "model" / ST, snap / "sub" / ST)
    _load(snap / "sub" / ST, store, repo="org/m", revision=COMMIT)
    assert load_observations(store).pins[0].file == f"sub/{ST}"


def test_signature_found_at_snapshot_root(oms: Path, store: TrustStore, tmp_path: Path) -> None:
    snap = tmp_path / "models--x--m" / "snapshots" / COMMIT
    (snap / "sub").mkdir(parents=True)
    shutil.copy(oms / "model" / ST, snap / "sub" / ST)
    key = oms / "keys/p256.priv.pem"
    sign_model(snap, private_key_pem_path=key)
    d = _load(snap / "sub" / ST, store, repo="x/m", revision=COMMIT)
    assert d.signed and d.signature_path == str(snap / "model.sig")


def test_local_files_not_pinned_unless_asked(store: TrustStore, plain_dir: Path) -> None:
    path = plain_dir / ST
    assert _load(path, store).pin == "none"
    assert _load(path, store, pin_local=True).pin == "new"
    assert _load(path, store).pin == "hit"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DigestMismatchError):
        _load(path, store)


def test_user_pin_in_store(store: TrustStore, plain_dir: Path) -> None:
    path = plain_dir / ST
    s = _set(store, lambda s: s.with_pin(Pin("0" * 64, path=str(path.resolve()))))
    with pytest.raises(DigestMismatchError, match="expected sha256:0000"):
        _load(path, s)


def test_revision_lock(store: TrustStore, plain_dir: Path) -> None:
    s = _set(store, lambda s: s.with_revision_lock(RevisionLock("org/m", (COMMIT,))))
    assert _load(plain_dir / ST, s, repo="org/m", revision=COMMIT).pin == "new"
    with pytest.raises(RevisionLockError, match="locked to revision"):
        _load(plain_dir / ST, s, repo="org/m", revision=COMMIT2)


def test_revoked_digest_is_refused_in_every_mode(store: TrustStore, plain_dir: Path) -> None:
    path = plain_dir / ST
    for mode in ("strict", "default", "audit"):
        s = _set(store, lambda s, m=mode: s.with_policy(Policy(mode=m))
                 .with_revoked_digest(_sha(path), "known bad"))
        with pytest.raises(RevokedError, match="known bad"):
            _load(path, s)


# --------------------------------------------------------------------------------------------
# modes


def test_strict_refuses_unsigned(store: TrustStore, plain_dir: Path, signed_dir: Path) -> None:
    s = _set(store, lambda s: s.with_policy(Policy(mode="strict")))
    with pytest.raises(SignatureError, match="strict mode requires a signature"):
        _load(plain_dir / ST, s)
    assert _load(signed_dir / ST, s).signed


def test_audit_warns_instead_of_refusing(oms: Path, store: TrustStore, plain_dir: Path) -> None:
    s = _set(store, lambda s: s.with_policy(Policy(mode="audit")))
    shutil.copy(oms / "negative/sig-payload-tampered.sig", plain_dir / "model.sig")
    d = _load(plain_dir / ST, s, repo="acme/model", revision=COMMIT)
    assert not d.signed and d.mode == "audit"
    assert any("does not verify" in w for w in d.warnings)
    assert any("namespace of publisher acme" in w for w in d.warnings)


def test_audit_reports_pin_mismatch(store: TrustStore, plain_dir: Path) -> None:
    path = plain_dir / ST
    s = _set(store, lambda s: s.with_policy(Policy(mode="audit"))
             .with_pin(Pin("0" * 64, path=str(path.resolve()))))
    d = _load(path, s)
    assert d.pin == "mismatch" and any("digest mismatch" in w for w in d.warnings)


def test_default_policy_is_pinned(store: TrustStore) -> None:
    """The documented default; change the docs (trust.POLICY_TEXT) with it."""
    assert TrustStore.default().policy == Policy("default", pin_hub_on_first_use=True,
                                                 pin_local_files=False)


def test_in_memory_store_cannot_record(plain_dir: Path) -> None:
    d = _load(plain_dir / ST, TrustStore.default(), repo="org/m", revision=COMMIT)
    assert d.pin == "none" and any("in-memory" in w for w in d.warnings)


def test_single_file_signature_only_binds_that_file(oms: Path, store: TrustStore,
                                                    plain_dir: Path) -> None:
    target = plain_dir / ST
    sign_model(target, private_key_pem_path=oms / "keys/p256.priv.pem")
    d = _load(target, store)
    assert d.signed and d.signature_path == str(plain_dir / f"{ST}.sig")
    # a sibling without a signature is not "downgraded": it was never signed
    assert not _load(plain_dir / "config.json", store).signed
    (plain_dir / f"{ST}.sig").unlink()
    with pytest.raises(SignatureError, match="was loaded signed"):
        _load(target, store)


def test_explicit_signature_outside_the_model_dir(oms: Path, store: TrustStore,
                                                  plain_dir: Path) -> None:
    d = _load(plain_dir / "config.json", store, signature=oms / "signatures/key-p256.sig")
    assert d.signed and d.publisher == "acme"
    with pytest.raises(SignatureError, match="no signature at"):
        _load(plain_dir / ST, store, signature=oms / "nope.sig")
