"""One trust store for a fleet, distributed with TUF (optional extra `safeload[fleet]`).

Stable API: `subscribe`, `sync`, `organisation_store`, `merge`, `effective_store`,
`build_document`, `parse_document`, `StoreIdentity`, `SyncResult`, `Subscription`, the errors in
`safeload.fleet.errors`. Importing this package does not import `tuf`; the first subscribe, sync
or read does (install `safeload[fleet]`).

A node subscribes once (`subscribe(URL, root.json)`), syncs explicitly or before loads
(`sync`), and reads the organisation store re-verified offline every time
(`organisation_store`). Its own `trust.json` is an overlay merged by one documented rule
(`merge`). `effective_store` is what a load uses; the CLI commands are thin wrappers.
"""

from __future__ import annotations

import os

from safeload._internal.text import get_logger
from safeload.fleet import _clock
from safeload.fleet.client import (
    DEFAULT_TARGET,
    StoreIdentity,
    Subscription,
    SyncResult,
    organisation_store,
    subscribe,
    subscription,
    sync,
)
from safeload.fleet.document import FleetDocument, build_document, parse_document
from safeload.fleet.errors import (
    SYNC_FIX,
    FleetConfigError,
    FleetError,
    FleetExpiredError,
    FleetLockError,
    FleetNotSubscribedError,
    FleetRollbackError,
    FleetUnreachableError,
    FleetVerificationError,
)
from safeload.fleet.merge import StricterLicensePolicy, merge
from safeload.trust import TrustStore

_logger = get_logger(__name__)


def effective_store(local: TrustStore | None = None, *, home: str | os.PathLike[str] | None = None,
                    sync_first: bool = True) -> tuple[TrustStore, StoreIdentity | None]:
    """The store a load uses, and the organisation store it came from (None: no subscription).

    With `sync_first`, a sync runs when one is due (`sync(force=False)`). A sync that fails
    does not block the load: the cached store, re-verified offline, is used until its metadata
    expires, and the failure is logged as a warning; a subscription with `require_fresh` makes
    the failure, or a store last synced more than the interval ago, the load's error instead.
    `local` defaults to `TrustStore.load()`.

    Raises:
        TrustStoreError: the local store is unusable, or (any `FleetError`) the organisation
            store cannot be verified, has expired, or the overlay conflicts with it.
    """
    local = TrustStore.load() if local is None else local
    sub = subscription(home=home)
    if sub is None:
        return local, None
    if sync_first:
        try:
            sync(home=home)
        except (FleetUnreachableError, FleetVerificationError, FleetLockError) as exc:
            if sub.require_fresh:
                raise
            _logger.warning("organisation trust store not refreshed, using the cached one: %s",
                            exc.diagnostics())
    org, identity = organisation_store(home=home)
    if sub.require_fresh:
        _require_fresh(sub, identity)
    return merge(org, local, identity.allow_local_trust), identity


def _require_fresh(sub: Subscription, identity: StoreIdentity) -> None:
    age = (_clock.now() - identity.synced_at).total_seconds()
    if age > sub.interval_s:
        raise FleetUnreachableError(
            f"organisation trust store {sub.url}: last synced at "
            f"{identity.to_dict()['synced_at']}, more than {sub.interval_s} s ago, and this "
            "node's subscription requires a fresh store", hint=SYNC_FIX)


__all__ = [
    "DEFAULT_TARGET", "FleetConfigError", "FleetDocument", "FleetError", "FleetExpiredError",
    "FleetLockError", "FleetNotSubscribedError", "FleetRollbackError", "FleetUnreachableError",
    "FleetVerificationError", "StoreIdentity", "StricterLicensePolicy", "Subscription",
    "SyncResult", "build_document", "effective_store", "merge", "organisation_store",
    "parse_document", "subscribe", "subscription", "sync",
]
