"""A repo id that is also a folder under the cwd: the folder must not silently take the place of
a repo the trust store governs (hostile review B (2026-12-07), finding 2)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save, save_file

import safeload
from safeload.errors import UnsupportedArgumentError
from safeload.trust import Pin, Policy, Publisher, RevisionLock, TrustedKey, TrustStore

KEYS = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"
REPO = "acme/model"
COMMIT = "c" * 40


def _binding(s: TrustStore) -> TrustStore:
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    return s.with_publisher(Publisher("acme", namespaces=("acme/*",), keys=(key,)))


def _lock(s: TrustStore) -> TrustStore:
    return s.with_revision_lock(RevisionLock(REPO, (COMMIT,)))


def _pin(s: TrustStore) -> TrustStore:
    return s.with_pin(Pin("0" * 64, repo=REPO, revision=COMMIT, file="model.safetensors"))


def _strict(s: TrustStore) -> TrustStore:
    return s.with_policy(Policy(mode="strict"))


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An unsigned ./acme/model in the cwd (a cloned project, say)."""
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "acme" / "model"
    d.mkdir(parents=True)
    save_file({"w": torch.full((2,), 6.66)}, str(d / "model.safetensors"))
    return d


# hostile review B (2026-12-07), finding 2: from_pretrained("acme/model") loaded ./acme/model
# as an unsigned local folder, skipping every rule the store has for hf:acme/model.
@pytest.mark.parametrize("rule", [_binding, _lock, _pin, _strict],
                         ids=["namespace-binding", "revision-lock", "pin", "strict-mode"])
def test_a_repo_id_that_is_also_a_local_folder_is_refused_while_the_store_has_rules_for_it(
        folder: Path, rule: Callable[[TrustStore], TrustStore]) -> None:
    TrustStore.update(rule)
    with pytest.raises(UnsupportedArgumentError, match="both a local folder") as info:
        safeload.from_pretrained(REPO)
    assert "./acme/model" in info.value.hint and "pathlib.Path" in info.value.hint


# hostile review B (2026-12-07), finding 2: a "was signed" record of hf:acme/model (the
# no-downgrade rule) governs the repo id too.
def test_a_repo_once_loaded_signed_is_not_shadowed_by_a_local_folder(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from _hubcache import make_repo

    from safeload.signing import sign_model

    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(save({"w": torch.ones(2)}))
    sign_model(src, private_key_pem_path=KEYS / "p256.priv.pem")
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(Publisher("acme", keys=(key,))))  # no binding
    cache = tmp_path / "cache"
    make_repo(cache, REPO, {p.name: p.read_bytes() for p in src.iterdir()})
    monkeypatch.chdir(cache)  # away from ./acme/model: the Hub repo itself
    safeload.from_pretrained(REPO, cache_dir=cache)  # records hf:acme/model as signed
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedArgumentError, match="loaded signed"):
        safeload.from_pretrained(REPO)


@pytest.mark.parametrize("spelling", [lambda: "./acme/model", lambda: Path("acme/model"),
                                      lambda: str(Path("acme/model").absolute())],
                         ids=["dot-slash", "pathlib", "absolute"])
def test_an_explicit_path_still_means_the_local_folder(
        folder: Path, spelling: Callable[[], str | Path]) -> None:
    TrustStore.update(_binding)
    state = safeload.from_pretrained(spelling())
    assert torch.equal(state["w"], torch.full((2,), 6.66))


def test_a_folder_named_like_a_repo_the_store_has_no_rules_for_loads_as_before(
        folder: Path) -> None:
    TrustStore.update(lambda s: _binding(s).without_publisher("acme"))
    assert torch.equal(safeload.from_pretrained(REPO)["w"], torch.full((2,), 6.66))


def test_audit_mode_warns_about_a_shadowed_repo_and_loads_the_folder(
        folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    TrustStore.update(lambda s: _lock(s).with_policy(Policy(mode="audit")))
    with caplog.at_level(logging.WARNING, logger="safeload.trust"):
        state = safeload.from_pretrained(REPO)
    assert torch.equal(state["w"], torch.full((2,), 6.66))
    assert "both a local folder" in caplog.text
