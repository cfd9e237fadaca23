"""Trust skipped by the path (issue 9), and Hub cache entries (issue 12).

Each family has a generator of variants: snapshot names that are not commits, snapshot entries
the Hub client never writes, in-memory objects that carry no descriptor, trust-store locations
others can write. Every variant must get the trust decision a 40-hex snapshot / a file gets.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save, save_file

import safeload
from safeload._internal import paths
from safeload._internal.private_dir import _private_group
from safeload.errors import (
    LicenseRefusedError,
    RevisionLockError,
    RevokedError,
    SignatureError,
    TrustStoreError,
    UnsafeCheckpointError,
    UnsafePathError,
)
from safeload.licenses import LicensePolicy
from safeload.provenance import read_ledger
from safeload.trust import Pin, Publisher, RevisionLock, TrustedKey, TrustStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
from _hubcache import make_repo  # noqa: E402

KEYS = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"
COMMIT = "c" * 40
REPO = "acme/model"
WEIGHTS = {"w": torch.arange(4.0)}


def _bind_acme() -> None:
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(Publisher("acme", namespaces=("acme/*",),
                                                           keys=(key,))))


def _lock(commit: str) -> None:
    TrustStore.update(lambda s: s.with_revision_lock(RevisionLock(REPO, (commit,))))


def _policy(**kw: Any) -> None:
    TrustStore.update(lambda s: s.with_policy(replace(s.policy, **kw)))


# ------------------------------------------------------------------------------------------
# 1. Hub origins from the layout: snapshot names that are not commits


def _non_commit_repo(cache: Path, name: str) -> Path:
    """refs/main = <name>, snapshots/<name>/ (huggingface_hub reads refs verbatim)."""
    snap = make_repo(cache, REPO, {"model.safetensors": save(WEIGHTS)}, commit=name)
    return snap / "model.safetensors"


NON_COMMITS = ["v2", "main", "1.0", "c" * 39, "C" * 40, "c" * 41, "g" * 40]


@pytest.mark.parametrize("name", NON_COMMITS)
def test_non_commit_snapshot_is_refused_by_from_pretrained_and_load(tmp_path: Path,
                                                                     name: str) -> None:
    f = _non_commit_repo(tmp_path, name)
    with pytest.raises(UnsafePathError, match="not a commit hash"):
        safeload.from_pretrained(REPO, cache_dir=tmp_path)
    with pytest.raises(UnsafePathError, match="not a commit hash"):
        safeload.load(f)


def _aliased_repo(cache: Path, alias: str, how: str) -> Path:
    """snapshots/<alias> resolved to COMMIT: a link to the sibling, or refs/<alias> = COMMIT."""
    snap = make_repo(cache, REPO, {"model.safetensors": save(WEIGHTS)}, commit=COMMIT)
    repo_dir = snap.parent.parent
    (repo_dir / "refs" / "main").write_text(alias)
    if how == "link":
        (repo_dir / "snapshots" / alias).symlink_to(COMMIT)
    else:
        (repo_dir / "refs" / alias).write_text(COMMIT)
        (repo_dir / "snapshots" / alias).symlink_to(COMMIT, target_is_directory=True)
    return repo_dir / "snapshots" / alias / "model.safetensors"


@pytest.mark.parametrize("how", ["link", "ref"])
def test_resolved_alias_gets_the_revision_lock_of_its_commit(tmp_path: Path, how: str) -> None:
    f = _aliased_repo(tmp_path, "v2", how)
    _lock("d" * 40)
    with pytest.raises(RevisionLockError, match="c{40}"):
        safeload.from_pretrained(REPO, cache_dir=tmp_path)
    with pytest.raises(RevisionLockError):
        safeload.load(f)
    _lock(COMMIT)
    assert torch.equal(safeload.from_pretrained(REPO, cache_dir=tmp_path)["w"], WEIGHTS["w"])
    assert torch.equal(safeload.load(f)["w"], WEIGHTS["w"])


@pytest.mark.parametrize("how", ["link", "ref"])
def test_resolved_alias_gets_the_namespace_binding(tmp_path: Path, how: str) -> None:
    f = _aliased_repo(tmp_path, "v2", how)
    _bind_acme()
    with pytest.raises(SignatureError, match="namespace of publisher acme"):
        safeload.from_pretrained(REPO, cache_dir=tmp_path)
    with pytest.raises(SignatureError, match="namespace of publisher acme"):
        safeload.load(f)


@pytest.mark.parametrize("how", ["dotdot-through-a-folder-link", "file-link", "link-to-link"])
def test_a_snapshot_entry_reached_another_way_keeps_its_hub_rules(tmp_path: Path,
                                                                    how: str) -> None:
    # review S-3: `elsewhere/lnk/../model.safetensors` (lnk -> a snapshot sub-folder) opens
    # the snapshot entry, but `abspath` spelled it `elsewhere/model.safetensors`: a local file,
    # so the namespace binding, revision locks and Hub pins were skipped. So did a file link.
    snap = make_repo(tmp_path / "hub", REPO, {"model.safetensors": save(WEIGHTS),
                                              "sub/keep.txt": b"x"}, commit=COMMIT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if how == "dotdot-through-a-folder-link":
        (elsewhere / "lnk").symlink_to(snap / "sub", target_is_directory=True)
        f = elsewhere / "lnk" / ".." / "model.safetensors"
    else:
        f = elsewhere / "filelink.safetensors"
        f.symlink_to(snap / "model.safetensors")
        if how == "link-to-link":
            (elsewhere / "again.safetensors").symlink_to(f)
            f = elsewhere / "again.safetensors"
    assert torch.equal(safeload.load(f)["w"], WEIGHTS["w"])  # the control: no binding yet
    _bind_acme()
    with pytest.raises(SignatureError, match="namespace of publisher acme"):
        safeload.load(f)
    with pytest.raises(SignatureError, match="namespace of publisher acme"):
        safeload.load(snap / "model.safetensors")


@pytest.mark.parametrize("how", ["blob-path", "proc-fd", "link-to-blob"])
def test_a_blob_by_its_own_path_is_refused_while_its_repo_has_rules(tmp_path: Path,
                                                                   how: str) -> None:
    # review X: `blobs/<sha>` (or /proc/self/fd/N of it) loaded as a local file, so the
    # namespace binding and revision locks of its repo were skipped
    snap = make_repo(tmp_path / "hub", REPO, {"model.safetensors": save(WEIGHTS)}, commit=COMMIT)
    blob = (snap / "model.safetensors").resolve()
    assert blob.parent.name == "blobs"
    link = tmp_path / "elsewhere.safetensors"
    link.symlink_to(blob)
    fd = os.open(blob, os.O_RDONLY)
    try:
        f = {"blob-path": blob, "proc-fd": Path(f"/proc/self/fd/{fd}"), "link-to-blob": link}[how]
        assert torch.equal(safeload.load(f)["w"], WEIGHTS["w"])  # the control: no rules yet
        _bind_acme()
        with pytest.raises(UnsafePathError, match="snapshot entry"):
            safeload.load(f)
    finally:
        os.close(fd)


def test_alias_is_pinned_as_its_commit(tmp_path: Path) -> None:
    f = _aliased_repo(tmp_path, "v2", "link")
    digest = hashlib.sha256(save(WEIGHTS)).hexdigest()
    TrustStore.update(lambda s: s.with_pin(Pin("0" * 64, repo=REPO, revision=COMMIT,
                                                file="model.safetensors")))
    with pytest.raises(safeload.errors.DigestMismatchError, match=digest):
        safeload.load(f)


@pytest.mark.parametrize("folder", ["models--evil name", "models--a--b--c", "models--",
                                    "models--ünï--x", "models--a--.."])
def test_invalid_repo_folder_is_a_local_file_with_a_warning(
        tmp_path: Path, folder: str, caplog: pytest.LogCaptureFixture) -> None:
    snap = tmp_path / folder / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    save_file(WEIGHTS, str(snap / "model.safetensors"))
    _bind_acme()  # binds acme/*; a local file is unbound
    assert torch.equal(safeload.load(snap / "model.safetensors")["w"], WEIGHTS["w"])
    assert any("not a valid repo folder name" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------
# 2. Snapshot entries: only a regular file or a link to ../../blobs/<name> of the same repo


def _hostile_entries(cache: Path, snap: Path) -> Iterator[tuple[str, str]]:
    """(entry name, link target) variants the Hub client never writes."""
    outside = cache.parent / "outside.safetensors"
    outside.write_bytes(save(WEIGHTS))
    other = make_repo(cache, "other/repo", {"model.safetensors": save(WEIGHTS)})
    other_blob = os.readlink(other / "model.safetensors")  # ../../blobs/<sha>
    yield "abs.safetensors", str(outside)
    yield "up.safetensors", os.path.relpath(outside, snap)
    yield "other.safetensors", "../../../models--other--repo/blobs/" + Path(other_blob).name
    fake = snap.parent / "blobs" / "fake"  # snapshots/blobs/: one `../` short of the repo's
    fake.parent.mkdir()
    fake.write_bytes(save(WEIGHTS))
    yield "shallow.safetensors", "../blobs/fake"
    yield "sibling.safetensors", "model.safetensors"
    blob = cache / "models--acme--model" / "blobs" / "deep"
    blob.write_bytes(save(WEIGHTS))
    yield "deeper.safetensors", "../../../models--acme--model/blobs/deep"


def test_hostile_snapshot_entries_are_refused_everywhere(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safeload._cli import main

    cache = tmp_path / "hub"
    snap = make_repo(cache, REPO, {"model.safetensors": save(WEIGHTS)}, commit=COMMIT)
    variants = list(_hostile_entries(cache, snap))
    assert len(variants) >= 5
    for name, target in variants:
        (snap / name).symlink_to(target)
        with pytest.raises(UnsafePathError, match=name):
            safeload.load(snap / name)
    assert main(["cache", "scan", "--cache-dir", str(cache), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    status = {f["name"]: f for r in doc["repos"] if r["repo_id"] == REPO
              for rev in r["revisions"] for f in rev["files"]}
    for name, _ in variants:
        assert status[name]["status"] == "refused", status[name]
    assert status["model.safetensors"]["status"] == "safetensors"


@pytest.mark.parametrize("target", ["abs", "up"])
def test_from_pretrained_refuses_a_weights_link_out_of_the_cache(tmp_path: Path,
                                                                  target: str) -> None:
    cache = tmp_path / "hub"
    snap = make_repo(cache, REPO, {"config.json": b"{}"}, commit=COMMIT)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(save(WEIGHTS))
    (snap / "model.safetensors").symlink_to(outside if target == "abs"
                                            else os.path.relpath(outside, snap))
    with pytest.raises(UnsafePathError, match="model.safetensors"):
        safeload.from_pretrained(REPO, cache_dir=cache)


def test_subfolder_blob_links_and_regular_files_load(tmp_path: Path) -> None:
    snap = make_repo(tmp_path, REPO, {"unet/model.safetensors": save(WEIGHTS)}, commit=COMMIT)
    assert os.readlink(snap / "unet" / "model.safetensors").startswith("../../../blobs/")
    assert torch.equal(safeload.load(snap / "unet" / "model.safetensors")["w"], WEIGHTS["w"])
    save_file(WEIGHTS, str(snap / "plain.safetensors"))  # a no-symlink cache (Windows)
    assert torch.equal(safeload.load(snap / "plain.safetensors")["w"], WEIGHTS["w"])


# ------------------------------------------------------------------------------------------
# 3. In-memory loads: every check that applies to bytes


class _NoDescriptor:
    """A stream with `read()` and a `name`, but no usable descriptor."""

    def __init__(self, data: bytes, name: str) -> None:
        self._buf, self.name = io.BytesIO(data), name

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


def _streams(data: bytes, name: str = "<memory>") -> Iterator[Any]:
    yield io.BytesIO(data)
    yield _NoDescriptor(data, name)
    yield io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]


def test_revoked_digest_is_refused_from_every_stream_and_under_guard() -> None:
    data = save(WEIGHTS)
    TrustStore.update(lambda s: s.with_revoked_digest(hashlib.sha256(data).hexdigest(), "bad"))
    for stream in _streams(data):
        with pytest.raises(RevokedError, match="bad"):
            safeload.load(stream)
    with safeload.guard(), pytest.raises(RevokedError):
        torch.load(io.BytesIO(data))


def test_strict_mode_refuses_streams_it_cannot_check() -> None:
    data = save(WEIGHTS)
    _policy(mode="strict")
    for stream in _streams(data):
        with pytest.raises(SignatureError, match="strict mode"):
            safeload.load(stream)
    with safeload.guard(), pytest.raises(SignatureError, match="strict mode"):
        torch.load(io.BytesIO(data))
    _policy(mode="audit")  # audit: a warning, and the provenance says so
    assert torch.equal(safeload.load(io.BytesIO(data))["w"], WEIGHTS["w"])
    entry = read_ledger().records[-1].entry
    assert entry is not None and entry.trust.mode == "audit"
    assert any("strict" in w or "unsigned" in w for w in entry.warnings)


def test_pinned_digest_is_a_pin_hit_in_the_provenance() -> None:
    data = save(WEIGHTS)
    TrustStore.update(lambda s: s.with_pin(Pin(hashlib.sha256(data).hexdigest(),
                                               path="/anywhere/model.safetensors")))
    safeload.load(io.BytesIO(data))
    entry = read_ledger().records[-1].entry
    assert entry is not None and entry.trust.pin == "hit"
    assert entry.files[0].sha256 == hashlib.sha256(data).hexdigest()
    safeload.load(io.BytesIO(save({"w": torch.zeros(1)})))
    other = read_ledger().records[-1].entry
    assert other is not None and other.trust.pin == "none"


def test_stream_named_after_a_hub_file_gets_the_hub_rules(tmp_path: Path) -> None:
    snap = make_repo(tmp_path, REPO, {"model.safetensors": save(WEIGHTS)}, commit=COMMIT)
    name = str(snap / "model.safetensors")
    _bind_acme()
    with pytest.raises(SignatureError, match="namespace of publisher acme"):
        safeload.load(_NoDescriptor(save(WEIGHTS), name))
    TrustStore.update(lambda s: s.without_publisher("acme"))
    _lock("d" * 40)
    with pytest.raises(RevisionLockError):
        safeload.load(_NoDescriptor(save(WEIGHTS), name))


def test_licence_policy_applies_to_a_stream_whose_card_is_known(tmp_path: Path) -> None:
    d = tmp_path / "model"
    d.mkdir()
    save_file(WEIGHTS, str(d / "model.safetensors"))
    (d / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# model\n")
    _policy(licenses=LicensePolicy.from_dict({"deny": ["non-commercial"]}))
    data = (d / "model.safetensors").read_bytes()
    with pytest.raises(LicenseRefusedError, match="non-commercial|cc-by-nc"):
        safeload.load(_NoDescriptor(data, str(d / "model.safetensors")))
    with open(d / "model.safetensors", "rb") as fh, pytest.raises(LicenseRefusedError):
        fh.read(1)  # a real file past its start is read as bytes: its card still applies
        safeload.load(fh)
    assert torch.equal(safeload.load(io.BytesIO(data))["w"], WEIGHTS["w"])  # no card known


def test_pickles_refuse_applies_to_streams() -> None:
    buf = io.BytesIO()
    torch.save(WEIGHTS, buf)
    _policy(pickles="refuse")
    with pytest.raises(UnsafeCheckpointError, match="refuses every pickle"):
        safeload.load(io.BytesIO(buf.getvalue()))


# ------------------------------------------------------------------------------------------
# 4. Trust-store locations others can write, whether or not the store exists


def _writable_locations(base: Path) -> Iterator[tuple[Path, Path]]:
    """(store path, the directory to blame) variants."""
    d = base / "open"
    d.mkdir()
    d.chmod(0o777)
    yield d / "trust.json", d
    g = base / "group"
    g.mkdir()
    g.chmod(0o770)
    if _private_group(os.getuid()) == g.stat().st_gid:
        # group write by the user's own private group is private (as Debian's OpenSSH): a
        # group others are in, where a test may choose one
        if os.getuid() != 0:
            g.chmod(0o777)
        else:
            os.chown(g, -1, 65534)
    yield g / "trust.json", g
    parent = base / "parent"
    (parent / "sub").mkdir(parents=True)
    parent.chmod(0o757)
    yield parent / "sub" / "trust.json", parent
    missing = base / "open2"
    missing.mkdir()
    missing.chmod(0o777)
    yield missing / "not" / "yet" / "trust.json", missing


def test_store_in_a_location_others_can_write_is_refused_even_when_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for store, blame in _writable_locations(tmp_path):
        assert not store.exists()
        with pytest.raises(TrustStoreError, match=f"{blame}.*writable") as info:
            TrustStore.load(store)
        assert f"chmod go-w {blame}" in (info.value.hint or "")
        monkeypatch.setenv("SAFELOAD_TRUST_STORE", str(store))
        with pytest.raises(TrustStoreError):
            safeload.load(io.BytesIO(save(WEIGHTS)))


def test_sticky_world_writable_directory_is_fine(tmp_path: Path) -> None:
    d = tmp_path / "sticky"
    d.mkdir()
    d.chmod(0o1777)
    assert TrustStore.load(d / "trust.json").exists is False
    assert TrustStore.load(paths.trust_store_path()).exists is False  # tmp_path itself


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_store_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "theirs"
    d.mkdir(mode=0o755)
    os.chown(d, 65534, 65534)
    with pytest.raises(TrustStoreError, match="owned by another user"):
        TrustStore.load(d / "trust.json")
