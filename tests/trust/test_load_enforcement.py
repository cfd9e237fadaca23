"""The trust store is enforced on every `safeload.load`, from the handle that is loaded."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload._internal import verify_cache
from safeload.errors import (
    DigestMismatchError,
    RevokedError,
    SignatureError,
    TrustStoreError,
    UnsafeCheckpointError,
    UntrustedPublisherError,
)
from safeload.signing import sign_model
from safeload.trust import Policy, Publisher, TrustedKey, TrustStore

KEYS = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"


def _model(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    save_file({"w": torch.arange(6.0)}, str(d / "model.safetensors"))
    (d / "config.json").write_text("{}")
    return d


def _trust_p256() -> None:
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(Publisher("acme", keys=(key,))))


def test_revoked_digest_is_refused(tmp_path: Path) -> None:
    f = _model(tmp_path) / "model.safetensors"
    import hashlib

    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    TrustStore.update(lambda s: s.with_revoked_digest(digest, "known bad"))
    with pytest.raises(RevokedError, match="revoked"):
        safeload.load(f)


def test_signed_model_loads_and_tampering_is_refused(tmp_path: Path) -> None:
    d = _model(tmp_path)
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    assert torch.equal(safeload.load(d / "model.safetensors")["w"], torch.arange(6.0))
    save_file({"w": torch.zeros(6)}, str(d / "model.safetensors"))  # swapped weights
    with pytest.raises(DigestMismatchError, match="model.safetensors"):
        safeload.load(d / "model.safetensors")


def test_signature_by_an_untrusted_key_is_refused(tmp_path: Path) -> None:
    d = _model(tmp_path)
    sign_model(d, private_key_pem_path=KEYS / "other-p256.priv.pem")
    _trust_p256()
    with pytest.raises(UntrustedPublisherError, match="not in the trust store"):
        safeload.load(d / "model.safetensors")


def test_no_silent_downgrade_by_deleting_the_signature(tmp_path: Path) -> None:
    d = _model(tmp_path)
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    safeload.load(d / "model.safetensors")
    (d / "model.sig").unlink()
    with pytest.raises(SignatureError, match="signed"):
        safeload.load(d / "model.safetensors")


def test_strict_mode_refuses_unsigned(tmp_path: Path) -> None:
    d = _model(tmp_path)
    TrustStore.update(lambda s: s.with_policy(Policy(mode="strict")))
    with pytest.raises(SignatureError):
        safeload.load(d / "model.safetensors")


def test_policy_can_refuse_every_pickle(tmp_path: Path) -> None:
    f = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, f)
    TrustStore.update(lambda s: s.with_policy(Policy(pickles="refuse")))
    with pytest.raises(UnsafeCheckpointError, match="refuses every pickle"):
        safeload.load(f)


def test_corrupt_trust_store_fails_closed(tmp_path: Path, isolated_home: Path) -> None:
    f = _model(tmp_path) / "model.safetensors"
    store = isolated_home / "config" / "trust.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text("{not json")
    with pytest.raises(TrustStoreError, match="trust.json"):
        safeload.load(f)


def test_bytes_verified_are_bytes_loaded_even_if_the_file_is_swapped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _model(tmp_path)
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    evil = tmp_path / "evil.safetensors"
    save_file({"w": torch.full((6,), 666.0)}, str(evil))
    import safeload.pipeline as loading  # the stage that inspects

    real = loading.inspect_bytes

    def swap_then_inspect(buf: object, **kw: object) -> object:
        # Between verification and use, an attacker replaces the file by path.
        shutil.copy(evil, tmp_path / "tmp.bin")
        os.replace(tmp_path / "tmp.bin", d / "model.safetensors")
        return real(buf, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(loading, "inspect_bytes", swap_then_inspect)
    out = safeload.load(d / "model.safetensors")
    assert torch.equal(out["w"], torch.arange(6.0))  # the verified bytes, not the swapped ones


def test_in_place_modification_during_load_is_detected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeload.errors import MalformedFileError

    f = _model(tmp_path) / "model.safetensors"
    import safeload.pipeline as loading  # the stage that inspects

    real = loading.inspect_bytes

    def write_in_place(buf: object, **kw: object) -> object:
        with open(f, "r+b") as fh:
            fh.seek(-4, os.SEEK_END)
            fh.write(b"\0\0\0\0")
        return real(buf, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(loading, "inspect_bytes", write_in_place)
    with pytest.raises(MalformedFileError, match="modified while it was being loaded"):
        safeload.load(f)


def test_verification_cache_skips_the_hash_until_the_store_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeload._internal.opened import OpenedFile

    monkeypatch.setattr(verify_cache, "QUIESCENT_SECONDS", 0)
    f = _model(tmp_path) / "model.safetensors"
    safeload.load(f)  # hashes and remembers
    calls: list[str] = []
    real = OpenedFile.sha256

    def counting(self: OpenedFile) -> str:
        calls.append(self.path)
        return real(self)

    monkeypatch.setattr(OpenedFile, "sha256", counting)
    safeload.load(f)
    assert calls == []  # cache hit: no second hash
    import hashlib

    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    TrustStore.update(lambda s: s.with_revoked_digest(digest))
    with pytest.raises(RevokedError):
        safeload.load(f)  # the store changed: the cached verdict does not apply
    assert calls == [str(f)]


def _plant_verified_record(tmp_path: Path, how: str) -> Path:
    """A signed model whose file is then swapped for other weights, with a verification-cache
    record that maps the new file's inode state to the digest the publisher signed."""
    import hashlib
    import json
    import os

    from safeload._internal import paths

    _trust_p256()
    d = _model(tmp_path)
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    f = d / "model.safetensors"
    signed = hashlib.sha256(f.read_bytes()).hexdigest()
    save_file({"w": torch.full((6,), 666.0)}, str(d / "swap.tmp"))
    os.rename(d / "swap.tmp", f)
    st = os.stat(f)
    key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    record = json.dumps({key: {"sha256": signed, "store": TrustStore.load().state_digest()}})
    cache = paths.cache_dir()
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = cache / "verified.json"
    if how == "link":  # a file of ours, but reached through a link someone else placed
        (tmp_path / "elsewhere.json").write_text(record)
        target.symlink_to(tmp_path / "elsewhere.json")
    else:
        target.write_text(record)
        target.chmod(0o600)
        if how == "shared-folder":  # a folder others may write: they could have put it there
            cache.chmod(0o777)
    verify_cache._parsed = None
    return f


@pytest.mark.parametrize("how", ["link", "shared-folder"])
def test_a_verification_record_others_could_have_placed_is_ignored(
        how: str, tmp_path: Path) -> None:
    # Review P-1: the cache followed a link to verified.json and never checked its folders, so
    # another user who could write a folder above it made a swapped file pass as signed.
    f = _plant_verified_record(tmp_path, how)
    with pytest.raises(DigestMismatchError):
        safeload.load(f)


def test_a_verification_record_in_a_private_cache_is_honoured(tmp_path: Path) -> None:
    # The control: the record above, in a cache only we can write, does stand for the hash.
    f = _plant_verified_record(tmp_path, "private")
    assert float(safeload.load(f)["w"][0]) == 666.0


def test_in_place_write_with_mtime_restored_and_a_hard_link_added_is_detected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 9 (check-to-use): a ctime change used to be excused whenever the link count changed,
    # so a writer that restored mtime and added a hard link went unnoticed.
    from safeload.errors import MalformedFileError

    f = _model(tmp_path) / "model.safetensors"
    import safeload.pipeline as stages

    real = stages.inspect_bytes

    def write_restore_link(buf: object, **kw: object) -> object:
        st = os.stat(f)
        with open(f, "r+b") as fh:
            fh.seek(-4, os.SEEK_END)
            fh.write(b"\0\0\0\0")
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.link(f, tmp_path / "second-name")
        return real(buf, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(stages, "inspect_bytes", write_restore_link)
    with pytest.raises(MalformedFileError, match="modified while it was being loaded"):
        safeload.load(f)


def test_a_rename_over_the_path_during_a_load_still_serves_the_verified_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _model(tmp_path)
    import safeload.pipeline as stages

    real = stages.inspect_bytes

    def rename_over(buf: object, **kw: object) -> object:
        save_file({"w": torch.full((6,), 5.0)}, str(tmp_path / "new.safetensors"))
        os.replace(tmp_path / "new.safetensors", d / "model.safetensors")  # a re-download
        return real(buf, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(stages, "inspect_bytes", rename_over)
    assert torch.equal(safeload.load(d / "model.safetensors")["w"], torch.arange(6.0))


@pytest.mark.parametrize("how", ["mmap=False", "guard"])
def test_a_copy_taken_between_a_write_and_its_undo_is_refused_though_a_link_was_dropped(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review E (issue 9, check-to-use): a ctime change with the link count down was excused
    # when the file hashed to the verified digest again. A writer with a spare hard link wrote
    # forged bytes after the hash, let the copy be taken, wrote the genuine bytes back, restored
    # mtime and unlinked the spare link: a signed load returned the forged tensors.
    from safeload._internal.opened import OpenedFile
    from safeload.errors import MalformedFileError

    d = _model(tmp_path)
    f = d / "model.safetensors"
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    data = f.read_bytes()
    genuine = torch.arange(6.0).numpy().tobytes()
    at = data.index(genuine)
    os.link(f, tmp_path / "spare")
    st0 = os.stat(f)
    real_sha, real_changed = OpenedFile.sha256, OpenedFile.changed
    state = {"forged": False, "undone": False, "checks": 0}

    def write(chunk: bytes) -> None:
        fd = os.open(f, os.O_WRONLY)
        try:
            os.pwrite(fd, chunk, at)
        finally:
            os.close(fd)

    def hash_then_forge(self: OpenedFile) -> str:
        digest = real_sha(self)
        if not state["forged"]:
            state["forged"] = True
            write(b"\x00" * len(genuine))
        return digest

    def undo_then_check(self: OpenedFile, sha256: str | None = None) -> bool:
        state["checks"] += 1  # the first is the verification cache's, before any use
        if state["forged"] and not state["undone"] and state["checks"] > 1:
            state["undone"] = True
            write(genuine)
            os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))
            os.unlink(tmp_path / "spare")
        return real_changed(self, sha256)

    monkeypatch.setattr(OpenedFile, "sha256", hash_then_forge)
    monkeypatch.setattr(OpenedFile, "changed", undo_then_check)
    with pytest.raises(MalformedFileError, match="modified while it was being loaded"):
        if how == "guard":
            import safetensors.torch

            with safeload.guard():
                safetensors.torch.load_file(str(f))
        else:
            safeload.load(f, mmap=False)
    assert state["undone"] and f.read_bytes() == data  # the writer's trace is gone


def _carded_model(tmp_path: Path, licence: str) -> Path:
    d = _model(tmp_path)
    (d / "README.md").write_text(f"---\nlicense: {licence}\n---\n# model\n")
    return d


def _deny_non_commercial() -> None:
    from dataclasses import replace

    from safeload.licenses import LicensePolicy

    TrustStore.update(lambda s: s.with_policy(replace(
        s.policy, licenses=LicensePolicy(deny=frozenset({"non-commercial"})))))


def test_a_model_card_edited_after_signing_is_refused(tmp_path: Path) -> None:
    # Issue 9 (noticed in review B): the card feeds the licence policy, and was read without
    # checking it against the signature of the weights beside it: an edit from cc-by-nc-4.0
    # to mit passed a `deny: non-commercial` policy on signed weights.
    d = _carded_model(tmp_path, "cc-by-nc-4.0")
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    _deny_non_commercial()
    from safeload.errors import LicenseRefusedError

    with pytest.raises(LicenseRefusedError):
        safeload.load(d / "model.safetensors")
    (d / "README.md").write_text("---\nlicense: mit\n---\n# model\n")
    with pytest.raises(DigestMismatchError, match="README.md"):
        safeload.load(d / "model.safetensors")


def test_a_card_the_signature_does_not_cover_can_only_deny(tmp_path: Path) -> None:
    from safeload.errors import LicenseRefusedError

    d = _model(tmp_path)
    f = d / "model.safetensors"
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    _deny_non_commercial()
    import safeload.pipeline as stages

    # A card added after signing (model_signing lists every file, so the signature is made
    # per file here: `<file>.sig` covers the weights only).
    (d / "model.sig").rename(d / "model.safetensors.sig")
    (d / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n")
    with pytest.raises(LicenseRefusedError):
        safeload.load(f)
    (d / "README.md").write_text("---\nlicense: mit\n---\n")
    stages._warned.clear()
    assert torch.equal(safeload.load(f)["w"], torch.arange(6.0))


@pytest.mark.parametrize("how", ["deleted", "renamed", "a-folder", "dangling-link"])
def test_weights_whose_signed_card_is_gone_are_refused(how: str, tmp_path: Path) -> None:
    # Review I: the check of the card ran only when a card was found: deleting or renaming
    # the signed card let `deny: non-commercial` pass for signed weights.
    from safeload.errors import ManifestMismatchError

    d = _carded_model(tmp_path, "cc-by-nc-4.0")
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    _deny_non_commercial()
    card = d / "README.md"
    if how == "renamed":
        card.rename(d / "readme.md")
    else:
        card.unlink()
        if how == "a-folder":
            card.mkdir()
        elif how == "dangling-link":
            card.symlink_to(tmp_path / "nowhere.md")
    with pytest.raises(ManifestMismatchError, match="README.md"):
        safeload.load(d / "model.safetensors")


def test_an_unsigned_card_nearer_the_weights_does_not_hide_the_signed_one(
        tmp_path: Path) -> None:
    # Review J: in a Hub snapshot, an unsigned unet/README.md (mit) was the card found, and
    # the signed root card (cc-by-nc-4.0) was never read: `deny: non-commercial` passed.
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
    from _hubcache import make_repo

    from safeload.errors import LicenseRefusedError

    src = tmp_path / "src"
    (src / "unet").mkdir(parents=True)
    (src / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n")
    save_file({"w": torch.arange(6.0)}, str(src / "unet" / "model.safetensors"))
    (src / "unet" / "config.json").write_text("{}")
    sign_model(src, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    _deny_non_commercial()
    files = {str(p.relative_to(src)): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    snap = make_repo(tmp_path / "hub", "acme/model", files)
    (snap / "unet" / "README.md").write_text("---\nlicense: mit\n---\n")
    with pytest.raises(LicenseRefusedError):
        safeload.load(snap / "unet" / "model.safetensors")


@pytest.mark.parametrize("how", ["oversized", "unreadable"])
def test_a_signed_card_that_cannot_be_checked_is_refused(how: str, tmp_path: Path) -> None:
    # Review K (K1): a listed card over the size bound, or one that could not be read, was
    # taken for "no card": the licence it states (cc-by-nc-4.0) escaped the deny policy.
    from safeload.errors import ManifestMismatchError

    d = _carded_model(tmp_path, "cc-by-nc-4.0")
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    _deny_non_commercial()
    card = d / "README.md"
    if how == "oversized":
        with open(card, "r+b") as f:
            f.truncate(17 << 20)  # sparse: costs nothing on disk
    else:  # a regular file whose reads stop short of its st_size (a sysfs attribute)
        sysfs = Path("/sys/kernel/mm/transparent_hugepage/enabled")
        if not sysfs.is_file():
            pytest.skip(f"{sysfs} is not on this machine")
        card.unlink()
        card.symlink_to(sysfs)
    with pytest.raises(ManifestMismatchError, match="lists this model card"):
        safeload.load(d / "model.safetensors")


def test_a_card_edited_under_a_shard_signature_is_refused(tmp_path: Path) -> None:
    # Review K (K1): with shard manifests (the real model_signing fixture, 4096-byte shards),
    # a card of another length raised "not covered", which was read as "not listed": the
    # licence the edited card still states (apache-2.0 here, denied) no longer applied.
    from dataclasses import replace

    from safeload.errors import LicenseRefusedError, ManifestMismatchError
    from safeload.licenses import LicensePolicy

    oms = KEYS.parent
    d = tmp_path / "model"
    shutil.copytree(oms / "model", d)
    shutil.copy(oms / "signatures" / "key-p256.shards4096.sig", d / "model.sig")
    _trust_p256()
    TrustStore.update(lambda s: s.with_policy(replace(
        s.policy, licenses=LicensePolicy(deny=frozenset({"Apache-2.0"})))))
    with pytest.raises(LicenseRefusedError):
        safeload.load(d / "model.safetensors")
    card = d / "README.md"
    card.write_bytes(card.read_bytes() + b"\n")
    with pytest.raises(ManifestMismatchError, match="README.md"):
        safeload.load(d / "model.safetensors")


def test_the_card_is_checked_against_the_signature_the_weights_were_verified_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review K (K4): the card check read model.sig again by path; a signature of another model
    # by the same publisher, swapped in with its mit card after the weights were verified,
    # vouched for that card.
    from safeload._internal import record

    d = _carded_model(tmp_path, "cc-by-nc-4.0")
    sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
    (tmp_path / "other").mkdir()
    other = _carded_model(tmp_path / "other", "mit")
    sign_model(other, private_key_pem_path=KEYS / "p256.priv.pem")
    _trust_p256()
    _deny_non_commercial()
    listed = record._listed_card

    def swap_first(*args: object) -> object:
        shutil.copy(other / "model.sig", d / "model.sig")
        shutil.copy(other / "README.md", d / "README.md")
        return listed(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(record, "_listed_card", swap_first)
    with pytest.raises(SignatureError, match="changed during the load"):
        safeload.load(d / "model.safetensors")


@pytest.mark.parametrize("rule", ["pin", "was-signed"])
def test_a_file_swapped_for_a_link_keeps_the_rules_of_its_name(rule: str, tmp_path: Path
                                                               ) -> None:
    # Review K (K2): pins and "was loaded signed" records were looked up by the resolved
    # path only: replacing the file by a link to other bytes escaped both.
    import hashlib

    from safeload.trust import Pin

    d = _model(tmp_path)
    f = d / "model.safetensors"
    if rule == "pin":
        sha = hashlib.sha256(f.read_bytes()).hexdigest()
        TrustStore.update(lambda s: s.with_pin(Pin(sha, path=str(f.resolve()))))
    else:
        sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
        _trust_p256()
        safeload.load(f)
        (d / "model.sig").unlink()
    evil = tmp_path / "elsewhere" / "model.safetensors"
    evil.parent.mkdir()
    save_file({"w": torch.full((6,), 666.0)}, str(evil))
    f.unlink()
    f.symlink_to(evil)
    with pytest.raises(DigestMismatchError if rule == "pin" else SignatureError,
                       match="model.safetensors"):
        safeload.load(f)


def test_a_signed_base_models_card_is_checked_against_its_signature(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review K (K3): a fine-tune's `base_model` card was read from the Hub cache unchecked: a
    # cache writer who re-linked the signed base card (cc-by-nc-4.0) to an mit blob lifted
    # the denial it states for every fine-tune of it.
    import sys

    import huggingface_hub.constants

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
    from _hubcache import git_blob_id, make_repo

    from safeload.errors import LicenseRefusedError

    def signed(name: str, card: str) -> dict[str, bytes]:
        (tmp_path / name).mkdir()
        d = _model(tmp_path / name)
        (d / "README.md").write_text(card)
        sign_model(d, private_key_pem_path=KEYS / "p256.priv.pem")
        return {p.name: p.read_bytes() for p in d.iterdir()}

    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    _trust_p256()
    _deny_non_commercial()
    base = make_repo(hub, "acme/base", signed("base", "---\nlicense: cc-by-nc-4.0\n---\n"),
                     commit="b" * 40)
    tune = make_repo(hub, "acme/tune", signed(
        "tune", "---\nlicense: mit\nbase_model: acme/base\n---\n"), commit="c" * 40)
    with pytest.raises(LicenseRefusedError, match="base model acme/base"):
        safeload.load(tune / "model.safetensors")
    mit = b"---\nlicense: mit\n---\n"
    blob = hub / "models--acme--base" / "blobs" / git_blob_id(mit)
    blob.write_bytes(mit)
    (base / "README.md").unlink()
    (base / "README.md").symlink_to(f"../../blobs/{blob.name}")
    with pytest.raises(DigestMismatchError, match="models--acme--base"):
        safeload.load(tune / "model.safetensors")


@pytest.mark.parametrize("card", ["none", "a-folder", "a-dangling-link", "prose"])
def test_a_policy_that_denies_unknown_refuses_weights_no_card_vouches_for(
        card: str, tmp_path: Path) -> None:
    # Review P-2: `deny: unknown` refused a prose README but not a deleted one, a folder or a
    # dangling link in its place (no card, so no licence decision at all).
    from dataclasses import replace

    from safeload.errors import LicenseRefusedError
    from safeload.licenses import LicensePolicy

    d = _model(tmp_path)
    f = d / "model.safetensors"
    assert safeload.load(f)  # the control: no policy on licences, it loads
    TrustStore.update(lambda s: s.with_policy(replace(
        s.policy, licenses=LicensePolicy(deny=frozenset({"unknown"})))))
    if card == "a-folder":
        (d / "README.md").mkdir()
    elif card == "a-dangling-link":
        (d / "README.md").symlink_to(d / "gone.md")
    elif card == "prose":
        (d / "README.md").write_text("# a model\n\nno metadata block\n")
    with pytest.raises(LicenseRefusedError, match="unknown"):
        safeload.load(f)
    if card == "a-folder":
        (d / "README.md").rmdir()
    elif card != "none":
        (d / "README.md").unlink()
    (d / "README.md").write_text("---\nlicense: mit\n---\n")
    assert safeload.load(f)  # a card with a known licence: loads
    # review S-4: the same bytes without their name (a stream) have no card either
    with pytest.raises(LicenseRefusedError, match="no file name"):
        safeload.load(io.BytesIO(f.read_bytes()))
