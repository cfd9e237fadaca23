"""The I/O shell: held content instead of a re-open by path; policy judgements lifted from the
CLI; the verifier handed its trust anchors (no import of the trust store, no default store)."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from safeload.errors import DigestMismatchError, TrustStoreError
from safeload.signing import _tree, sign_model
from safeload.signing import verify as signing_verify
from safeload.trust import (
    Pin,
    Policy,
    Publisher,
    TrustedKey,
    TrustStore,
    check_load,
    policy_weakenings,
    verify_with_store,
)

ST = "model.safetensors"


@pytest.fixture
def blake2b_model(oms: Path, tmp_path: Path) -> tuple[Path, TrustStore]:
    """A model signed with blake2b digests (so checking a file must hash it) and its store."""
    model = tmp_path / "model"
    model.mkdir()
    (model / ST).write_bytes(b"weights " * 4096)
    sign_model(model, private_key_pem_path=oms / "keys/p256.priv.pem", hash_type="blake2b")
    key = TrustedKey.from_pem((oms / "keys/p256.pub.pem").read_bytes())
    _, store = TrustStore.update(lambda s: s.with_publisher(Publisher("acme", (), (key,))),
                                 tmp_path / "config" / "trust.json")
    return model, store


def test_held_content_is_hashed_and_the_path_never_reopened(
        blake2b_model: tuple[Path, TrustStore], monkeypatch: pytest.MonkeyPatch) -> None:
    model, store = blake2b_model
    target = model / ST
    content = target.read_bytes()
    sha = hashlib.sha256(content).hexdigest()
    target.write_bytes(b"X" * len(content))  # replaced on disk after it was read
    opened: list[str] = []
    real = _tree.open_regular
    monkeypatch.setattr(_tree, "open_regular",
                        lambda p, **kw: (opened.append(str(p)), real(p, **kw))[1])
    d = check_load(target, sha256=sha, size=len(content), store=store, content=content,
                   record=False)
    assert d.signed and d.publisher == "acme"
    assert str(target) not in opened  # only the signature file may be opened
    with pytest.raises(DigestMismatchError):  # the control: without content it re-opens
        check_load(target, sha256=sha, size=len(content), store=store, record=False)
    assert str(target) in opened


def test_without_content_the_replaced_file_is_refused(
        blake2b_model: tuple[Path, TrustStore]) -> None:
    model, store = blake2b_model
    target = model / ST
    content = target.read_bytes()
    target.write_bytes(b"X" * len(content))
    with pytest.raises(DigestMismatchError):
        check_load(target, sha256=hashlib.sha256(content).hexdigest(), size=len(content),
                   store=store, record=False)


def test_held_content_that_is_not_the_loaded_digest_is_refused(
        blake2b_model: tuple[Path, TrustStore]) -> None:
    model, store = blake2b_model
    content = (model / ST).read_bytes()
    with pytest.raises(DigestMismatchError, match="as loaded"):
        check_load(model / ST, sha256="0" * 64, size=len(content), store=store,
                   content=content, record=False)
    with pytest.raises(ValueError, match="not size"):
        check_load(model / ST, sha256="0" * 64, size=1, store=store, content=content)


def test_policy_weakening_ranks_modes_pins_and_pickles() -> None:
    strict, default, audit = (Policy(mode=m) for m in ("strict", "default", "audit"))
    assert audit.is_weaker_than(default) and default.is_weaker_than(strict)
    assert not strict.is_weaker_than(default) and not default.is_weaker_than(default)
    assert Policy(pin_hub_on_first_use=False).is_weaker_than(default)
    assert Policy(pickles="convert").is_weaker_than(Policy(pickles="refuse"))
    assert not Policy(pickles="refuse").is_weaker_than(default)
    assert policy_weakenings(strict, audit) == ("mode strict -> audit",)


def test_pin_conflict_is_same_target_other_digest() -> None:
    pin = Pin("1" * 64, path="/m/a")
    store = TrustStore(pins=(pin,))
    assert store.pin_conflict(Pin("2" * 64, path="/m/a")) == pin
    assert store.pin_conflict(pin) is None and store.with_pin(pin) is store
    assert store.pin_conflict(Pin("2" * 64, path="/m/b")) is None
    with pytest.raises(TrustStoreError, match="already pinned"):
        store.with_pin(Pin("2" * 64, path="/m/a"))
    assert store.with_pin(Pin("2" * 64, path="/m/a"), replace_existing=True).pins[0].sha256 \
        == "2" * 64


def test_verifier_never_imports_the_trust_store() -> None:
    for module in (signing_verify.__file__, Path(signing_verify.__file__).with_name(
            "anchors.py")):
        tree = ast.parse(Path(str(module)).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(n == "safeload.trust" or n.startswith("safeload.trust.") for n in names)


def test_verifier_without_anchors_refuses_and_the_wrapper_loads_the_default_store(
        blake2b_model: tuple[Path, TrustStore], monkeypatch: pytest.MonkeyPatch) -> None:
    model, store = blake2b_model
    with pytest.raises(ValueError, match="no trust anchors"):
        signing_verify.verify_model(model)
    assert store.path is not None
    monkeypatch.setenv("SAFELOAD_TRUST_STORE", str(store.path))
    assert verify_with_store(model).publisher == "acme"
