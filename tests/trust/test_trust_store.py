"""The trust store file: validation, permissions, atomic and concurrent writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safeload._internal import paths
from safeload.errors import TrustStoreError
from safeload.trust import (
    SCHEMA_VERSION,
    Pin,
    Policy,
    Publisher,
    TrustedKey,
    TrustedRoot,
    TrustStore,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def _write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    path.chmod(0o644)
    return path


def _minimal(**extra: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, **extra}


def test_missing_store_is_empty_with_default_policy(tmp_path: Path) -> None:
    store = TrustStore.load(tmp_path / "nope.json")
    assert not store.exists
    assert store.publishers == () and store.pins == ()
    assert store.policy == Policy(mode="default", pin_hub_on_first_use=True,
                                  pin_local_files=False)
    assert not (tmp_path / "nope.json").exists()  # loading never creates


def test_default_location_follows_safeload_home(isolated_home: Path) -> None:
    assert TrustStore.load().path == isolated_home / "config" / "trust.json"


def test_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFELOAD_TRUST_STORE", str(tmp_path / "elsewhere.json"))
    assert paths.trust_store_path() == tmp_path / "elsewhere.json"
    assert TrustStore.load().path == tmp_path / "elsewhere.json"


def test_round_trip_and_state_digest(oms: Path, tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    key = TrustedKey.from_pem((oms / "keys/p256.pub.pem").read_bytes())
    root = TrustedRoot.from_pem((oms / "pki/root-ca.cert.pem").read_bytes(),
                                identities=("publisher@example.test",))
    _, after = TrustStore.update(
        lambda s: s.with_publisher(Publisher("acme", ("acme/*",), (key,), (root,))), path)
    again = TrustStore.load(path)
    assert again == after
    assert again.state_digest() == after.state_digest()
    digest = again.state_digest()
    _, revoked = TrustStore.update(lambda s: s.with_revoked_key(key.key_id, "leaked"), path)
    assert revoked.state_digest() != digest
    assert TrustStore.load(path).key_revocation(key.key_id) is not None


@pytest.mark.parametrize(("doc", "match"), [
    ("{not json", r"cannot parse"),
    ("[]", r"is not a JSON object"),
    ({"schema_version": 99}, r"schema_version 99; this safeload reads 1"),
    ({"schema_version": "1"}, r"unknown schema_version"),
    ({}, r"unknown schema_version None"),
    (_minimal(extra=1), r"unknown field\(s\) 'extra'"),
    (_minimal(policy={"mode": "default", "allow_pickles": True}),
     r"unknown field\(s\) 'allow_pickles' in policy"),
    (_minimal(policy={"mode": "yolo"}), r"policy.mode must be one of strict, default, audit"),
    (_minimal(policy={"pin_local_files": "yes"}), r"pin_local_files must be true or false"),
    (_minimal(publishers=[{"name": "a", "keys": [{"pem": "junk"}]}]),
     r"publisher 'a'.keys\[0\]: not a usable public key"),
    (_minimal(pins=[{"sha256": "abc", "path": "/x"}]), r"pins\[0\].sha256 is not a valid"),
    (_minimal(pins=[{"sha256": "a" * 64}]), r"needs either path, or repo"),
    ('{"schema_version": 1, "schema_version": 1}', r"duplicate key"),
])
def test_bad_store_is_refused_with_the_file_and_a_fix(tmp_path: Path, doc: Any,
                                                      match: str) -> None:
    path = _write(tmp_path / "trust.json", doc)
    with pytest.raises(TrustStoreError, match=match) as info:
        TrustStore.load(path)
    assert str(path) in str(info.value)
    assert info.value.hint  # says how to fix it


def test_root_without_identity_is_refused(oms: Path, tmp_path: Path) -> None:
    pem = (oms / "pki/root-ca.cert.pem").read_text()
    path = _write(tmp_path / "trust.json",
                  _minimal(publishers=[{"name": "a", "roots": [{"pem": pem, "identities": []}]}]))
    with pytest.raises(TrustStoreError, match="at least one allowed identity"):
        TrustStore.load(path)


def test_key_id_must_match_pem(oms: Path, tmp_path: Path) -> None:
    pem = (oms / "keys/p256.pub.pem").read_text()
    path = _write(tmp_path / "trust.json",
                  _minimal(publishers=[{"name": "a", "keys": [{"pem": pem, "id": "0" * 64}]}]))
    with pytest.raises(TrustStoreError, match="id does not match its PEM"):
        TrustStore.load(path)


@posix_only
@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_store_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "trust.json", _minimal())
    path.chmod(mode)
    with pytest.raises(TrustStoreError, match="writable by group or others") as info:
        TrustStore.load(path)
    assert f"chmod go-w {path}" in info.value.diagnostics()


@posix_only
def test_store_in_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    path = _write(d / "trust.json", _minimal())
    _refused_while_shared(d, path, "its directory .* is writable")


def _refused_while_shared(d: Path, path: Path, match: str) -> None:
    """`path` is refused while folder `d` is writable by everyone (mode 0777, not sticky)."""
    d.chmod(0o777)
    try:
        with pytest.raises(TrustStoreError, match=match):
            TrustStore.load(path)
    finally:
        d.chmod(0o755)


@posix_only
def test_written_store_passes_its_own_checks(tmp_path: Path) -> None:
    old = os.umask(0o002)  # a user-private-group umask must not make us refuse our own file
    try:
        _, after = TrustStore.update(lambda s: s.with_policy(Policy(mode="strict")),
                                     tmp_path / "cfg" / "trust.json")
    finally:
        os.umask(old)
    assert TrustStore.load(after.path).policy.mode == "strict"
    assert (tmp_path / "cfg" / "trust.json").stat().st_mode & 0o022 == 0


def test_update_leaves_no_temp_files_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    TrustStore.update(lambda s: s.with_pin(Pin("a" * 64, path="/x")), path)
    with pytest.raises(TrustStoreError, match="already pinned"):
        TrustStore.update(lambda s: s.with_pin(Pin("b" * 64, path="/x")), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust.json", "trust.json.lock"]
    assert TrustStore.load(path).find_pin(("path", "/x")) == Pin("a" * 64, path="/x")


def test_failed_change_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    TrustStore.update(lambda s: s.with_pin(Pin("a" * 64, path="/x")), path)
    before = path.read_bytes()

    def boom(s: TrustStore) -> TrustStore:
        raise TrustStoreError("no")

    with pytest.raises(TrustStoreError):
        TrustStore.update(boom, path)
    assert path.read_bytes() == before


_WORKER = """
import sys
from safeload.trust import Pin, TrustStore
path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    pin = Pin(f"{worker:032x}{i:032x}", repo="org/m", revision="0" * 40, file=f"w{worker}-{i}")
    TrustStore.update(lambda s: s.with_pin(pin), path)
"""


def test_concurrent_pins_from_many_processes_lose_none(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    workers, per_worker = 6, 8
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), str(w), str(per_worker)])
             for w in range(workers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers
    store = TrustStore.load(path)
    assert len(store.pins) == workers * per_worker
    assert {p.file for p in store.pins} == {f"w{w}-{i}" for w in range(workers)
                                            for i in range(per_worker)}


def test_merge_reports_and_keeps_our_policy(oms: Path) -> None:
    key = TrustedKey.from_pem((oms / "keys/p256.pub.pem").read_bytes())
    ours = TrustStore(policy=Policy(mode="strict"))
    theirs = TrustStore(publishers=(Publisher("acme", ("acme/*",), (key,)),),
                        policy=Policy(mode="audit"))
    merged = ours.merged(theirs)
    assert merged.policy.mode == "strict"
    assert merged.publisher("acme") is not None


def test_an_import_keeps_every_rule_of_the_imported_store(oms: Path) -> None:
    # Hostile review B (2026-12-07), finding 1: `trust import` dropped revoked_identities,
    # so a revoked keyless identity kept verifying. Every rule-holding field is checked, so a
    # field added later and forgotten by `merged` fails here too.
    import dataclasses

    from safeload.trust import RevisionLock

    key = TrustedKey.from_pem((oms / "keys/p256.pub.pem").read_bytes())
    theirs = (TrustStore(publishers=(Publisher("acme", ("acme/*",), (key,)),))
              .with_revoked_key("ab" * 32, "lost")
              .with_revoked_digest("cd" * 32, "bad file")
              .with_revoked_identity("https://issuer.example", "me@example.com", "phished")
              .with_pin(Pin("ef" * 32, repo="acme/m", file="model.safetensors"))
              .with_revision_lock(RevisionLock("acme/m", ("a" * 40,))))
    merged = TrustStore().merged(theirs)
    rules = [f.name for f in dataclasses.fields(TrustStore) if f.compare and f.name != "policy"]
    assert rules  # the store's rule fields, whatever they are
    for name in rules:
        assert getattr(theirs, name), f"the test store has no {name}"
        assert getattr(merged, name) == getattr(theirs, name), name
    assert merged.identity_revocation("https://issuer.example", "me@example.com") is not None


def test_publisher_namespace_binding() -> None:
    p = Publisher("acme", ("acme/*", "other/exact"))
    assert p.owns("acme/model") and p.owns("ACME/Model")
    assert p.owns("other/exact") and not p.owns("other/else")
    assert not p.owns("acmex/model") and not p.owns("gpt2")


@posix_only
def test_a_store_behind_a_folder_link_is_judged_by_the_real_folders(tmp_path: Path) -> None:
    # Hostile review B (2026-12-07), finding 4: only the lexical folders were checked, so
    # `mine/cfg -> shared/cfg` (shared: mode 0777) passed, and whoever could rename entries
    # in `shared` chose the store.
    shared, mine = tmp_path / "shared", tmp_path / "mine"
    path = _write(shared / "cfg" / "trust.json", _minimal())
    mine.mkdir()
    (mine / "cfg").symlink_to(shared / "cfg")
    assert TrustStore.load(mine / "cfg" / "trust.json").exists  # a folder of one's own: fine
    _refused_while_shared(shared, mine / "cfg" / "trust.json", f"{shared} is writable")
    assert path.exists()


@posix_only
def test_a_linked_store_is_judged_by_its_target(tmp_path: Path) -> None:
    # Hostile review 2026-12-07: a trust.json link was checked by the link's folders only, and
    # a link whose target had gone meant "no store" (the default policy, no pins, no
    # revocations): whoever could remove the target chose the policy.
    own = tmp_path / "own"
    target = _write(own / "real.json", _minimal())
    link = tmp_path / "config" / "trust.json"
    link.parent.mkdir()
    link.symlink_to(target)
    assert TrustStore.load(link).exists  # a link into a folder of one's own is fine
    shared = tmp_path / "shared"
    moved = _write(shared / "real.json", _minimal())
    link.unlink()
    link.symlink_to(moved)
    _refused_while_shared(shared, link, "writable by group or others")
    moved.unlink()
    with pytest.raises(TrustStoreError, match="does not exist"):
        TrustStore.load(link)
