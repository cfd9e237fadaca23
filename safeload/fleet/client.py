"""Subscribe a node to an organisation's trust store, keep it fresh, and read it back verified.

The organisation publishes one target (default `safeload/truststore.json`, a `document` wrapper
around a trust store) in a TUF repository served as static files: `URL/metadata/` holds
`N.root.json`, `timestamp.json`, `[N.]snapshot.json`, `[N.]targets.json`; `URL/targets/` the
target (hash-prefixed when the repository uses consistent snapshots, as tuf-on-ci does).

Where things live (`home` is a safeload home: `SAFELOAD_HOME` layout; by default the per-user
platformdirs, resolved at call time)::

    <config>/fleet/subscription.json   the URL, target and sync settings
    <config>/fleet/root.json           the pinned root given at subscribe: the trust anchor
    <data>/fleet/state.json            the accepted generation: TUF targets version, serial,
                                       store sha256, sync time (written last, atomically)
    <data>/fleet/gen-*/                one verified generation: metadata/ (ngclient's cache)
                                       and targets/; immutable once published
    <data>/fleet/sync.lock             one `filelock` for every process on the node

How python-tuf's `ngclient.Updater` behaves, and what is built on it:

- `refresh()` walks root versions from the trusted root (`bootstrap`: here always the pinned
  root, so every rotation since subscribe is re-verified), then downloads `timestamp.json`
  unconditionally, and loads snapshot and targets from its metadata dir when they still match,
  downloading otherwise. It refuses: signatures below a role's threshold (root rotation needs the
  threshold of the old and of the new root), versions lower than the trusted ones (rollback),
  expired metadata (freeze), hash or length mismatches. It raises `RepositoryError` or
  `DownloadError` subclasses; this module maps each to a `FleetError` naming the URL.
- It persists each accepted file as it goes, so a refresh that fails half-way leaves a metadata
  dir that no longer matches itself. `sync` therefore runs the Updater in a private staging copy
  of the current generation and publishes the copy (rename, then `state.json` by `write_atomic`)
  only after the whole chain, the target's hashes, the document and its serial all verified: a
  reader sees the old generation or the new one, never a half-downloaded store.
- ngclient has no offline mode: `timestamp.json` is always fetched. Offline re-verification
  (`organisation_store`) runs the same Updater, from the pinned root, in a throw-away metadata
  dir with a fetcher that serves only the files of the accepted generation (and 404 for the next
  root version). So signatures, thresholds, versions, hashes and expiry are checked exactly as
  online; once any role has expired the node fails closed (`FleetExpiredError` naming the role,
  its expiry and `safeload trust sync`). The cached store is never used unverified.
- ngclient wants a single instance per metadata dir: syncs serialise on `sync.lock`; readers take
  no lock (generations are immutable, the previous one is kept, a reader retries once if a sync
  replaced the generation it was reading).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safeload._internal.atomic import write_atomic
from safeload._internal.text import get_logger, safe_text
from safeload._version import __version__
from safeload.fleet import _clock
from safeload.fleet.errors import (
    SYNC_FIX,
    FleetConfigError,
    FleetError,
    FleetRollbackError,
    FleetVerificationError,
)
from safeload.fleet.subscribing import (
    _GENERATION,
    DEFAULT_TARGET,
    STATE_SCHEMA,
    Subscription,
    _dump,
    _json_file,
    _Layout,
    _layout,
    _locked,
    _prune,
    _require,
    subscribe,
    subscription,
)
from safeload.fleet.tufrun import _cache_fetcher, _run, _Verified, online_fetcher
from safeload.trust import TrustStore, format_time, parse_time

_logger = get_logger(__name__)

# ------------------------------------------------------------------------------------------
# state: the accepted generation


@dataclass(frozen=True)
class StoreIdentity:
    """Which organisation store a node used: what every ledger entry records.

    `targets_version` is the TUF targets role version that signed the store and `sha256` the
    digest of the target bytes (the document, exactly as the targets metadata lists it), so an
    entry can be checked against the repository's history. `serial` is the document's own.
    """

    url: str
    target: str
    targets_version: int
    sha256: str
    serial: int
    synced_at: dt.datetime
    expires: dt.datetime  # the accepted timestamp's expiry: offline use ends here
    allow_local_trust: bool = False

    def to_ledger(self) -> dict[str, Any]:
        """The fields a ledger entry names the store by."""
        return {"url": self.url, "target": self.target, "targets_version": self.targets_version,
                "sha256": self.sha256, "serial": self.serial}

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_ledger(), "synced_at": format_time(self.synced_at),
                "expires": format_time(self.expires),
                "allow_local_trust": self.allow_local_trust}


@dataclass(frozen=True)
class _State:
    generation: str
    identity: StoreIdentity


def _read_state(lay: _Layout, sub: Subscription) -> _State | None:
    doc = _json_file(lay.state, "fleet state")
    if doc is None:
        return None
    fix = f"delete {lay.data} and run `safeload trust sync`"
    try:
        gen = doc["generation"]
        ident = StoreIdentity(
            url=doc["url"], target=doc["target"], targets_version=doc["targets_version"],
            sha256=doc["sha256"], serial=doc["serial"], synced_at=parse_time(doc["synced_at"]),
            expires=parse_time(doc["expires"]), allow_local_trust=doc["allow_local_trust"])
        ok = (doc.get("schema_version") == STATE_SCHEMA and isinstance(gen, str)
              and _GENERATION.fullmatch(gen) is not None
              and isinstance(ident.targets_version, int) and isinstance(ident.serial, int)
              and isinstance(ident.sha256, str) and isinstance(ident.allow_local_trust, bool))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FleetConfigError(f"{lay.state}: unusable fleet state ({safe_text(exc)})",
                               hint=fix) from exc
    if not ok:
        raise FleetConfigError(f"{lay.state}: unusable fleet state", hint=fix)
    if (ident.url, ident.target) != (sub.url, sub.target):
        raise FleetConfigError(f"{lay.state}: the cached store belongs to another subscription",
                               hint=fix)
    return _State(gen, ident)


def _write_state(lay: _Layout, state: _State) -> None:
    doc = {"schema_version": STATE_SCHEMA, "generation": state.generation,
           **state.identity.to_dict()}
    write_atomic(lay.state, _dump(doc), mode=0o644)


# ------------------------------------------------------------------------------------------
# sync


@dataclass(frozen=True)
class SyncResult:
    """What `sync` did: `updated` (a new store), `refreshed` (same store, fresher metadata),
    `skipped` (synced less than the interval ago, or retrying too soon after a failure)."""

    status: Literal["updated", "refreshed", "skipped"]
    identity: StoreIdentity | None
    previous: StoreIdentity | None = None


def _due(lay: _Layout, sub: Subscription, state: _State | None, now: dt.datetime) -> bool:
    if state is not None and (now - state.identity.synced_at).total_seconds() < sub.interval_s:
        return False
    with contextlib.suppress(FleetConfigError, KeyError, TypeError, ValueError,
                             AttributeError):  # an unreadable record only means "due"
        attempt = _json_file(lay.attempt, "last sync attempt") or {}
        if attempt.get("error") and (now - parse_time(attempt["at"])).total_seconds() \
                < sub.retry_s:
            return False
    return True


def _check_serial(new: _Verified, sha: str, state: _State | None, sub: Subscription) -> None:
    if state is None:
        return
    old = state.identity
    if new.document.serial < old.serial:
        raise FleetRollbackError(
            f"organisation trust store {sub.url}: the signed store has serial "
            f"{new.document.serial}, lower than serial {old.serial} already accepted (targets "
            f"version {old.targets_version}); an older store was republished",
            hint="the organisation must publish the store with a serial above "
                 f"{old.serial}")
    if new.document.serial == old.serial and sha != old.sha256:
        raise FleetRollbackError(
            f"organisation trust store {sub.url}: a different store with the same serial "
            f"{old.serial} as the one already accepted",
            hint="the organisation must bump the serial with every change to the store")


def sync(*, home: str | os.PathLike[str] | None = None, force: bool = False) -> SyncResult:
    """Refresh the TUF metadata and the organisation store; at most once per interval unless
    `force` (the explicit `safeload trust sync`).

    Many processes may call it at once: they serialise on one file lock, and a process that
    waited finds the fresh store and skips.

    Raises:
        FleetNotSubscribedError, FleetConfigError: nothing usable to sync.
        FleetUnreachableError: the repository cannot be reached (the cached store stays).
        FleetVerificationError (FleetRollbackError, FleetExpiredError): the repository served
            something that does not verify; nothing is accepted and the cached store stays.
        FleetLockError: another process held the lock too long.
    """
    lay = _layout(home)
    sub, root = _require(lay)
    with _locked(lay):
        state = _read_state(lay, sub)
        now = _clock.now().replace(microsecond=0)  # what state.json keeps
        if not force and not _due(lay, sub, state, now):
            return SyncResult("skipped", state.identity if state else None)
        try:
            new = _stage(lay, sub, root, state, now)
        except FleetError as exc:
            write_atomic(lay.attempt, _dump({"at": format_time(now), "error": str(exc)}),
                         durable=False)
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lay.attempt)
        _prune(lay, keep=(new.generation, state.generation) if state else (new.generation,))
    previous = state.identity if state else None
    changed = previous is None or (previous.sha256, previous.targets_version) != (
        new.identity.sha256, new.identity.targets_version)
    _logger.info("organisation store %s: targets v%d serial %d (%s)", sub.url,
                 new.identity.targets_version, new.identity.serial,
                 "updated" if changed else "refreshed")
    return SyncResult("updated" if changed else "refreshed", new.identity, previous)


def _stage(lay: _Layout, sub: Subscription, root: bytes, state: _State | None,
           now: dt.datetime) -> _State:
    """Run the Updater in a staging copy; publish it only once everything verified."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=lay.data))
    try:
        meta, targets = staging / "metadata", staging / "targets"
        if state is not None:  # ngclient's rollback protection starts from what we trust
            shutil.copytree(lay.data / state.generation / "metadata", meta, symlinks=True)
            shutil.copytree(lay.data / state.generation / "targets", targets)
        else:
            meta.mkdir()
        fetcher = online_fetcher(sub, f"safeload/{__version__}")
        new = _run(meta, targets, sub, root, fetcher, "online")
        sha = hashlib.sha256(new.data).hexdigest()
        _check_serial(new, sha, state, sub)
        name = f"gen-{new.targets_version}-{new.document.serial}-{sha[:16]}-" \
               f"{os.urandom(4).hex()}"
        os.rename(staging, lay.data / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    published = _State(name, StoreIdentity(
        url=sub.url, target=sub.target, targets_version=new.targets_version, sha256=sha,
        serial=new.document.serial, synced_at=now, expires=new.expires,
        allow_local_trust=new.document.allow_local_trust))
    _write_state(lay, published)  # the switch: readers now see the new generation
    return published


# ------------------------------------------------------------------------------------------
# offline re-verification


def organisation_store(*, home: str | os.PathLike[str] | None = None,
                       ) -> tuple[TrustStore, StoreIdentity]:
    """The accepted organisation store, re-verified from the pinned root with no network.

    Raises:
        FleetNotSubscribedError: the node follows no organisation store.
        FleetError: nothing was synced yet.
        FleetExpiredError: a role of the cached chain has expired (names it and
            `safeload trust sync`).
        FleetVerificationError: the cache does not verify (tampered, incomplete, mismatched).
    """
    lay = _layout(home)
    sub, root = _require(lay)
    for attempt in range(2):
        state = _read_state(lay, sub)
        if state is None:
            raise FleetError(f"{lay.state}: no organisation store has been synced on this node "
                             f"from {safe_text(sub.url)}", hint=SYNC_FIX)
        try:
            return _verify_cached(lay, sub, root, state)
        except FleetError:
            again = _read_state(lay, sub)
            if attempt == 0 and again is not None and again.generation != state.generation:
                continue  # a sync replaced the generation while we read it
            raise
    raise AssertionError("unreachable")


def _verify_cached(lay: _Layout, sub: Subscription, root: bytes,
                   state: _State) -> tuple[TrustStore, StoreIdentity]:
    gen = lay.data / state.generation
    with tempfile.TemporaryDirectory(prefix="safeload-fleet-") as tmp:
        meta, targets = Path(tmp) / "metadata", Path(tmp) / "targets"
        meta.mkdir()
        new = _run(meta, targets, sub, root, _cache_fetcher(gen, sub), "offline")
    sha = hashlib.sha256(new.data).hexdigest()
    ident = state.identity
    if (sha, new.document.serial, new.targets_version) != (ident.sha256, ident.serial,
                                                            ident.targets_version):
        raise FleetVerificationError(
            f"{gen}: the cached store is not the one accepted at the last sync "
            f"(state: targets v{ident.targets_version} serial {ident.serial}; cache: targets "
            f"v{new.targets_version} serial {new.document.serial})", hint=SYNC_FIX)
    store = new.document.store
    return store, dataclasses.replace(ident, expires=new.expires)


__all__ = ["DEFAULT_TARGET", "StoreIdentity", "Subscription", "SyncResult",
           "organisation_store", "subscribe", "subscription", "sync"]

