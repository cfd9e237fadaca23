"""subscribe / sync / organisation_store against a real TUF repository on 127.0.0.1.

Every refusal test asserts the exact error, its message, and that the node's accepted state did
not move (the store it reads afterwards is still the last good one).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import filelock
import pytest
from conftest import REVOKED, store_doc
from tuf_repo import Server, TufRepo, sha256

from safeload import fleet
from safeload.errors import RefusedError, TrustStoreError
from safeload.fleet import (
    FleetConfigError,
    FleetExpiredError,
    FleetNotSubscribedError,
    FleetRollbackError,
    FleetUnreachableError,
    FleetVerificationError,
    StoreIdentity,
    subscribing,
)
from safeload.trust import TrustStore

Clock = Callable[[dt.timedelta], None]


def fleet_data(home: Path) -> Path:
    return home / "data" / "fleet"


def accepted(home: Path) -> dict[str, object]:
    return json.loads((fleet_data(home) / "state.json").read_text())


def assert_still(identity: StoreIdentity, home: Path) -> None:
    """The node still reads, verified, exactly the store it had accepted."""
    store, now = fleet.organisation_store()
    assert now.to_ledger() == identity.to_ledger()
    assert accepted(home)["sha256"] == identity.sha256
    assert not [p for p in fleet_data(home).iterdir() if p.name.startswith(".staging-")]
    assert store.digest_revocation(REVOKED) is not None


# ------------------------------------------------------------------------------------------
# first fetch, update, interval


def test_first_sync_fetches_verifies_and_names_the_store(node: Path, repo: TufRepo,
                                                          isolated_home: Path) -> None:
    result = fleet.sync()
    assert result.status == "updated" and result.previous is None
    ident = result.identity
    assert ident is not None
    data = repo.target_file().read_bytes()
    assert ident.sha256 == sha256(data)
    assert ident.targets_version == repo.targets.signed.version
    assert ident.serial == 1
    assert ident.to_ledger() == {"url": ident.url, "target": "safeload/truststore.json",
                                 "targets_version": ident.targets_version,
                                 "sha256": sha256(data), "serial": 1}
    store, again = fleet.organisation_store()
    assert again.to_ledger() == ident.to_ledger()
    assert store.policy.mode == "strict"
    assert store.digest_revocation(REVOKED).reason == "serial 1"  # type: ignore[union-attr]
    assert (isolated_home / "config" / "fleet" / "root.json").read_bytes() == repo.root_bytes(1)


def test_a_store_signed_by_a_delegated_role_syncs_and_loads_offline(
        node: Path, repo: TufRepo, server: Server) -> None:
    # review T-3: the sync followed the delegation, but the offline re-verification of the
    # cached generation could not serve the delegated role's metadata, so every load failed
    repo.publish_delegated(store_doc(2))
    ident = fleet.sync(force=True).identity
    assert ident is not None and ident.serial == 2
    server.stop()
    store, again = fleet.organisation_store()
    assert again.to_ledger() == ident.to_ledger() and store.policy.mode == "strict"


def test_an_update_replaces_the_store_and_keeps_one_previous_generation(
        node: Path, repo: TufRepo, isolated_home: Path) -> None:
    first = fleet.sync().identity
    repo.publish(store_doc(2, revoked="cd" * 32))
    result = fleet.sync(force=True)
    assert result.status == "updated"
    assert result.previous == first
    assert result.identity is not None and result.identity.serial == 2
    store, ident = fleet.organisation_store()
    assert ident.serial == 2 and store.digest_revocation("cd" * 32) is not None
    assert store.digest_revocation(REVOKED) is None
    gens = sorted(p.name for p in fleet_data(isolated_home).iterdir() if p.name.startswith("gen-"))
    assert len(gens) == 2  # the new one, and the previous one for readers mid-way


def test_sync_runs_at_most_once_per_interval_unless_forced(node: Path, repo: TufRepo,
                                                           server: Server) -> None:
    fleet.sync()
    assert fleet.sync().status == "skipped"
    assert server.fetched("timestamp.json") == 1
    repo.bump_timestamp()
    assert fleet.sync(force=True).status == "refreshed"  # same store, fresher timestamp
    assert server.fetched("timestamp.json") == 2


def test_an_unchanged_store_is_not_downloaded_again(node: Path, repo: TufRepo,
                                                     server: Server) -> None:
    fleet.sync()
    repo.bump_timestamp()
    assert fleet.sync(force=True).status == "refreshed"
    assert server.fetched(".truststore.json") == 1
    repo.publish(store_doc(2))
    assert fleet.sync(force=True).status == "updated"
    assert server.fetched(".truststore.json") == 2


def test_sync_is_due_again_after_the_interval(node: Path, server: Server, clock: Clock) -> None:
    fleet.sync()
    clock(dt.timedelta(seconds=subscribing.DEFAULT_INTERVAL_S + 1))
    assert fleet.sync().status == "refreshed"
    assert server.fetched("timestamp.json") == 2


# ------------------------------------------------------------------------------------------
# attacks on the wire or the mirror


def test_rollback_to_an_older_timestamp_is_refused(node: Path, repo: TufRepo,
                                                   isolated_home: Path) -> None:
    old_timestamp = (repo.metadata / "timestamp.json").read_bytes()
    repo.bump_timestamp()
    good = fleet.sync().identity
    assert good is not None
    (repo.metadata / "timestamp.json").write_bytes(old_timestamp)  # the mirror replays v(n-1)
    with pytest.raises(FleetRollbackError, match=r"rollback refused.*timestamp version"):
        fleet.sync(force=True)
    assert_still(good, isolated_home)


def test_freeze_with_an_expired_timestamp_is_refused_and_names_the_expiry(
        node: Path, repo: TufRepo, isolated_home: Path) -> None:
    good = fleet.sync().identity
    assert good is not None
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).replace(microsecond=0)
    repo.bump_timestamp(expires=past)
    with pytest.raises(FleetExpiredError) as info:
        fleet.sync(force=True)
    assert info.value.role == "timestamp"
    assert info.value.expires == past.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"timestamp.json expired at {info.value.expires}" in str(info.value)
    assert isinstance(info.value, RefusedError)
    assert_still(good, isolated_home)


def _tamperings(data: bytes) -> dict[str, bytes]:
    """Ways a mirror can serve other bytes than the targets role signed."""
    doc = json.loads(data)
    doc["store"]["revoked_digests"] = []
    doc["serial"] += 10
    return {
        "one byte flipped": data[:-2] + bytes([data[-2] ^ 1]) + data[-1:],
        "one byte appended": data + b" ",
        "truncated": data[: len(data) // 2],
        "another valid document, unsigned": json.dumps(doc).encode(),
        "empty": b"",
    }


@pytest.mark.parametrize("how", list(_tamperings(b'{"serial": 1, "store": {}}')))
def test_a_tampered_target_on_the_mirror_is_refused(node: Path, repo: TufRepo,
                                                    isolated_home: Path, how: str) -> None:
    repo.bump_timestamp()
    mirror = repo.target_file()
    original = mirror.read_bytes()
    mirror.write_bytes(_tamperings(original)[how])
    with pytest.raises(FleetVerificationError, match="does not match its signed length or "
                                                      "hashes"):
        fleet.sync()
    assert not (fleet_data(isolated_home) / "state.json").exists()
    assert not [p for p in fleet_data(isolated_home).iterdir() if p.name.startswith(("gen-",
                                                                                     ".stag"))]
    with pytest.raises(fleet.FleetError, match="no organisation store has been synced"):
        fleet.organisation_store()


def test_a_target_the_repository_does_not_sign_is_refused(repo: TufRepo, server: Server,
                                                          tmp_path: Path) -> None:
    root = tmp_path / "r.json"
    root.write_bytes(repo.root_bytes(1))
    fleet.subscribe(server.url, root, target="safeload/other.json")
    with pytest.raises(FleetVerificationError, match="signs no target safeload/other.json"):
        fleet.sync()


# ------------------------------------------------------------------------------------------
# keys: root rotation and thresholds


def test_root_rotation_signed_two_of_three_by_old_and_new_keys_is_followed(
        node: Path, repo: TufRepo) -> None:
    from securesystemslib.signer import CryptoSigner

    fleet.sync()
    old = repo.signers["root"]
    new = [CryptoSigner.generate_ed25519() for _ in range(3)]
    repo.rotate_timestamp_key()
    repo.rotate_root(new, sign_with=[old[0], old[2], new[1], new[2]])  # 2 of 3 old, 2 of 3 new
    repo.signers["root"] = new
    repo.publish(store_doc(2))  # signed with the new timestamp key
    result = fleet.sync(force=True)
    assert result.status == "updated" and result.identity is not None
    assert result.identity.serial == 2
    _, ident = fleet.organisation_store()  # offline: v1 -> v2 re-verified from the pinned root
    assert ident.serial == 2


@pytest.mark.parametrize(("old_signers", "new_signers"), [
    ((0,), (0, 1, 2)),   # one old key: below the old root's threshold
    ((), (0, 1, 2)),     # only new keys: a root that vouches for itself
    ((0, 1), (2,)),      # one new key: below the new root's own threshold
])
def test_a_new_root_signed_by_too_few_keys_is_refused(
        node: Path, repo: TufRepo, isolated_home: Path, old_signers: tuple[int, ...],
        new_signers: tuple[int, ...]) -> None:
    from securesystemslib.signer import CryptoSigner

    good = fleet.sync().identity
    assert good is not None
    old = repo.signers["root"]
    new = [CryptoSigner.generate_ed25519() for _ in range(3)]
    repo.rotate_timestamp_key()  # what an attacker holding one old key wants to do
    repo.rotate_root(new, sign_with=[old[i] for i in old_signers] + [new[i] for i in new_signers])
    repo.bump_timestamp()
    with pytest.raises(FleetVerificationError, match="not signed by enough trusted keys"):
        fleet.sync(force=True)
    assert_still(good, isolated_home)


# ------------------------------------------------------------------------------------------
# the serial inside the store


def test_a_signed_store_with_an_older_serial_is_refused(node: Path, repo: TufRepo,
                                                        isolated_home: Path) -> None:
    repo.publish(store_doc(5))
    good = fleet.sync().identity
    assert good is not None and good.serial == 5
    repo.publish(store_doc(4, revoked="ef" * 32))  # properly signed, newer TUF versions
    with pytest.raises(FleetRollbackError, match="serial 4, lower than serial 5"):
        fleet.sync(force=True)
    assert_still(good, isolated_home)


def test_a_different_store_with_the_same_serial_is_refused(node: Path, repo: TufRepo,
                                                           isolated_home: Path) -> None:
    good = fleet.sync().identity
    assert good is not None
    repo.publish(store_doc(1, revoked="ef" * 32))
    with pytest.raises(FleetRollbackError, match="same serial 1"):
        fleet.sync(force=True)
    assert_still(good, isolated_home)


# ------------------------------------------------------------------------------------------
# offline: the server is down


def test_offline_the_cached_chain_is_reverified_then_fails_closed_after_expiry(
        node: Path, server: Server, clock: Clock) -> None:
    good = fleet.sync().identity
    assert good is not None
    server.stop()
    with pytest.raises(FleetUnreachableError, match="cannot download"):
        fleet.sync(force=True)
    store, ident = fleet.organisation_store()  # no network needed
    assert ident.to_ledger() == good.to_ledger()
    clock(dt.timedelta(hours=23))
    fleet.organisation_store()  # still inside the timestamp's validity
    clock(dt.timedelta(days=1, hours=1))
    with pytest.raises(FleetExpiredError) as info:
        fleet.organisation_store()
    expires = good.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert info.value.role == "timestamp" and info.value.expires == expires
    assert f"timestamp.json expired at {expires}" in str(info.value)
    assert "safeload trust sync" in info.value.diagnostics()
    assert isinstance(info.value, TrustStoreError)


def test_effective_store_survives_a_dead_server_until_expiry_unless_fresh_is_required(
        node: Path, repo: TufRepo, server: Server, clock: Clock, tmp_path: Path) -> None:
    fleet.sync()
    server.stop()
    clock(dt.timedelta(hours=2))  # a sync is due, and fails
    store, ident = fleet.effective_store(TrustStore())
    assert ident is not None and store.policy.mode == "strict"
    fleet.subscribe(server.url, node, require_fresh=True)
    with pytest.raises(FleetUnreachableError, match="requires a fresh store"):
        fleet.effective_store(TrustStore())  # inside the retry delay: no sync, and stale
    clock(dt.timedelta(hours=3))  # past the retry delay: the sync itself fails
    with pytest.raises(FleetUnreachableError, match="cannot download"):
        fleet.effective_store(TrustStore())


def test_a_failed_sync_is_not_retried_before_the_retry_delay(node: Path, server: Server,
                                                             clock: Clock) -> None:
    server.stop()
    with pytest.raises(FleetUnreachableError):
        fleet.sync()
    assert fleet.sync().status == "skipped"  # no hammering a dead mirror before every load
    clock(dt.timedelta(seconds=subscribing.DEFAULT_RETRY_S + 1))
    with pytest.raises(FleetUnreachableError):
        fleet.sync()


def _cache_tamperings(gen: Path) -> dict[str, Callable[[], None]]:
    target = gen / "targets" / "safeload%2Ftruststore.json"
    ts = gen / "metadata" / "timestamp.json"

    def edit_json(path: Path, change: Callable[[dict[str, object]], None]) -> Callable[[], None]:
        def do() -> None:
            doc = json.loads(path.read_text())
            change(doc)
            path.write_text(json.dumps(doc))
        return do

    def lengthen(doc: dict[str, object]) -> None:
        doc["signed"]["expires"] = "2099-01-01T00:00:00Z"  # type: ignore[index]

    def drop_store(doc: dict[str, object]) -> None:
        doc["store"]["revoked_digests"] = []  # type: ignore[index]

    return {
        "target edited": edit_json(target, drop_store),
        "timestamp expiry extended": edit_json(ts, lengthen),
        "timestamp removed": ts.unlink,
        "snapshot removed": (gen / "metadata" / "snapshot.json").unlink,
    }


@pytest.mark.parametrize("how", ["target edited", "timestamp expiry extended",
                                 "timestamp removed", "snapshot removed"])
def test_a_tampered_cache_is_never_used(node: Path, isolated_home: Path, how: str) -> None:
    fleet.sync()
    gen = fleet_data(isolated_home) / str(accepted(isolated_home)["generation"])
    _cache_tamperings(gen)[how]()
    with pytest.raises(FleetVerificationError):
        fleet.organisation_store()


def test_a_crashed_sync_leaves_nothing_a_reader_uses(node: Path, repo: TufRepo,
                                                     isolated_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    good = fleet.sync().identity
    assert good is not None
    repo.publish(store_doc(2))
    real_rename = os.rename

    def crash(src: object, dst: object) -> None:
        raise KeyboardInterrupt  # killed between download and publish

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        fleet.sync(force=True)
    monkeypatch.setattr(os, "rename", real_rename)
    (fleet_data(isolated_home) / ".staging-killed").mkdir()  # what a SIGKILL leaves
    _, ident = fleet.organisation_store()
    assert ident.to_ledger() == good.to_ledger()
    assert fleet.sync(force=True).identity.serial == 2  # type: ignore[union-attr]
    assert not (fleet_data(isolated_home) / ".staging-killed").exists()


# ------------------------------------------------------------------------------------------
# many processes, one lock


_SYNC = textwrap.dedent("""
    import json, sys
    from safeload import fleet
    r = fleet.sync(home=sys.argv[1])
    print(json.dumps({"status": r.status, "serial": r.identity.serial}))
""")


def test_concurrent_syncs_from_two_processes_serialise_on_one_lock(
        node: Path, server: Server, isolated_home: Path) -> None:
    lock = filelock.FileLock(str(fleet_data(isolated_home) / "sync.lock"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with lock:  # hold it: both processes must wait
        procs = [subprocess.Popen([sys.executable, "-c", _SYNC, str(isolated_home)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        time.sleep(0.5)
        assert all(p.poll() is None for p in procs)
        assert server.fetched("timestamp.json") == 0
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    statuses = sorted(json.loads(out)["status"] for out, _ in outs)
    assert statuses == ["skipped", "updated"]  # the second found the first one's store
    assert server.fetched("timestamp.json") == 1
    assert fleet.organisation_store()[1].serial == 1


# ------------------------------------------------------------------------------------------
# subscription


def test_subscribe_refuses_a_root_that_does_not_verify_itself(repo: TufRepo,
                                                              tmp_path: Path) -> None:
    doc = json.loads(repo.root_bytes(1))
    doc["signatures"] = doc["signatures"][:1]  # one of three, threshold two
    bad = tmp_path / "root.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(FleetConfigError, match="not a usable TUF root"):
        fleet.subscribe("https://trust.example.org/", bad)
    (tmp_path / "t.json").write_bytes(repo.metadata.joinpath("timestamp.json").read_bytes())
    with pytest.raises(FleetConfigError, match="not a usable TUF root"):
        fleet.subscribe("https://trust.example.org/", tmp_path / "t.json")
    assert fleet.subscription() is None


@pytest.mark.parametrize(("url", "target"), [
    ("ftp://trust.example.org/", "safeload/truststore.json"),
    ("trust.example.org", "safeload/truststore.json"),
    ("https://trust.example.org/", "../truststore.json"),
    ("https://trust.example.org/", "/etc/passwd"),
])
def test_subscribe_refuses_bad_urls_and_targets(repo: TufRepo, tmp_path: Path, url: str,
                                                target: str) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(repo.root_bytes(1))
    with pytest.raises(FleetConfigError):
        fleet.subscribe(url, root, target)


def test_another_repository_needs_replace_and_drops_the_old_cache(
        node: Path, repo: TufRepo, isolated_home: Path) -> None:
    fleet.sync()
    with pytest.raises(FleetConfigError, match="already follows"):
        fleet.subscribe("https://other.example.org/", node)
    fleet.subscribe("https://other.example.org/", node, replace=True)
    assert not (fleet_data(isolated_home) / "state.json").exists()
    with pytest.raises(fleet.FleetError, match="no organisation store has been synced"):
        fleet.organisation_store()


def test_without_a_subscription_the_fleet_is_inert() -> None:
    with pytest.raises(FleetNotSubscribedError, match="follows no organisation") as info:
        fleet.sync()
    assert "safeload trust subscribe URL --root root.json" in info.value.diagnostics()
    with pytest.raises(FleetNotSubscribedError):
        fleet.organisation_store()
    local = TrustStore()
    assert fleet.effective_store(local) == (local, None)


def test_a_swapped_pinned_root_is_refused(node: Path, isolated_home: Path,
                                          repo: TufRepo) -> None:
    fleet.sync()
    pinned = isolated_home / "config" / "fleet" / "root.json"
    pinned.write_bytes(pinned.read_bytes() + b"\n")
    with pytest.raises(FleetConfigError, match="not the one given at subscribe"):
        fleet.organisation_store()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_fleet_dir_others_can_write_is_refused(node: Path, isolated_home: Path) -> None:
    fleet.sync()
    cfg = isolated_home / "config" / "fleet"
    cfg.chmod(0o777)
    try:
        with pytest.raises(TrustStoreError, match="writable by group or others"):
            fleet.organisation_store()
    finally:
        cfg.chmod(0o755)


def test_a_mirror_that_drips_bytes_is_cut_off_at_the_refresh_deadline(
        repo: TufRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Review T-2: the socket timeout bounds one read only; a byte every 0.2 s never trips it,
    # and every load waited for the whole timestamp.json (hours at the default timeout).
    import http.server
    import threading

    from safeload.fleet import tufrun

    drip = threading.Event()

    class Dripping(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object) -> None:
            super().__init__(*args, directory=str(repo.base))  # type: ignore[arg-type]

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if drip.is_set() and self.path.endswith("/timestamp.json"):
                data = (repo.metadata / "timestamp.json").read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for b in data:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        time.sleep(0.2)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the node hung up: what the test expects
                return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dripping)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    try:
        root = tmp_path / "root.json"
        root.write_bytes(repo.root_bytes(1))
        fleet.subscribe(f"http://127.0.0.1:{httpd.server_address[1]}/", root, timeout_s=1,
                        interval_s=0)
        fleet.sync(force=True)
        monkeypatch.setattr(tufrun, "SYNC_DEADLINE_FACTOR", 2)
        drip.set()
        start = time.monotonic()
        with pytest.raises(FleetUnreachableError, match="the refresh took over 2 s"):
            fleet.sync(force=True)
        assert time.monotonic() - start < 6
    finally:
        drip.clear()
        httpd.shutdown()
        httpd.server_close()
