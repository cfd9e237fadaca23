"""`TrustStore`: an immutable snapshot of `trust.json`, its queries and its pure changes.

A missing file is an empty store with the default policy; anything unreadable, unparseable, of
an unknown schema or with unknown fields is refused (`TrustStoreError`), never "trust
everything". Changes go through `TrustStore.update`: re-read under the lock, change, validate
by a round trip, write atomically. The store satisfies `signing.anchors.TrustAnchors`, which is
how the signature verifier sees it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload._internal import consulted, paths
from safeload._internal.text import safe_text
from safeload.errors import TrustStoreError
from safeload.trust._files import (
    locked,
    parse_json,
    read_trust_file,
    state_key,
    state_stamp,
    write_file,
)
from safeload.trust._schema import _FIX_EDIT, _fail, _list, _obj, _sha, _str
from safeload.trust.model import (
    Pin,
    Policy,
    Publisher,
    RevisionLock,
    Revocation,
    TrustedIdentity,
    TrustedKey,
    TrustedRoot,
    identity_key,
)

if TYPE_CHECKING:
    from safeload.signing.keyless import IdentityRule, KeylessResult

SCHEMA_VERSION = 1

_TOP_FIELDS = {"schema_version", "policy", "publishers", "revoked_keys", "revoked_digests",
               "pins", "revision_locks", "revoked_identities"}


# Stores read by this process, by path: (state_key at read time, the store). A store is
# immutable, so sharing one between loads and threads is safe.
_loaded: dict[Path, tuple[tuple[tuple[int, ...] | None, ...], TrustStore]] = {}


@dataclass(frozen=True)
class TrustStore:
    """An immutable snapshot of the trust store. Change it with `TrustStore.update`."""

    publishers: tuple[Publisher, ...] = ()
    revoked_keys: tuple[Revocation, ...] = ()
    # keyless identities revoked everywhere: value = "ISSUER SAN" (a space cannot be in either)
    revoked_identities: tuple[Revocation, ...] = ()
    revoked_digests: tuple[Revocation, ...] = ()
    pins: tuple[Pin, ...] = ()
    revision_locks: tuple[RevisionLock, ...] = ()
    policy: Policy = field(default_factory=Policy)
    path: Path | None = field(default=None, compare=False)
    exists: bool = field(default=False, compare=False)
    # Where this snapshot came from when not the local file alone: a fleet subscription's TUF
    # identity (`fleet.StoreIdentity.to_ledger()`), named in every ledger entry. Not content.
    origin: dict[str, Any] | None = field(default=None, compare=False)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def default(cls) -> TrustStore:
        """An empty in-memory store with the default policy (what a missing file means)."""
        return cls()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> TrustStore:
        """Read the store at `path` (default: `paths.trust_store_path()`).

        A missing file gives an empty store with the default policy (`exists=False`).

        Raises:
            TrustStoreError: unreadable, unparseable, unknown schema or fields, invalid entries,
                or writable by group/others.
        """
        p = Path(path) if path is not None else paths.trust_store_path()
        # Loaded once per process, again only when the file or its directories change.
        key = state_key(p)
        consulted.note(state_stamp, str(p), key)
        hit = _loaded.get(p)
        if hit is not None and hit[0] == key:
            return hit[1]
        source = str(p)
        data = read_trust_file(p, source)
        if data is None:
            store = cls(path=p, exists=False)
        else:
            store = replace(cls.from_dict(parse_json(data, source), source=source), path=p,
                            exists=True)
        if state_key(p) == key:  # unchanged while it was read: safe to reuse
            _loaded[p] = (key, store)
        return store

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> TrustStore:
        """Parse and validate store JSON (e.g. a file to import). No permission checks.

        Raises:
            TrustStoreError: unparseable or invalid.
        """
        return cls.from_dict(parse_json(data, source), source=source)

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<trust store>") -> TrustStore:
        """Validate a store document.

        Raises:
            TrustStoreError: naming the source, the entry and the fix.
        """
        if not isinstance(data, dict):
            raise _fail(source, "is not a JSON object", _FIX_EDIT)
        version = data.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and \
                version > SCHEMA_VERSION:
            raise _fail(source, f"has schema_version {version}; this safeload reads "
                        f"{SCHEMA_VERSION}", "upgrade safeload, or use the newer version's "
                        "`safeload trust export` from a matching install")
        if version != SCHEMA_VERSION:
            raise _fail(source, f"unknown schema_version {safe_text(version, limit=40)} "
                        f"(expected {SCHEMA_VERSION})",
                        f'set "schema_version": {SCHEMA_VERSION}, or rebuild the store')
        d = _obj(data, "the trust store", source, _TOP_FIELDS, {"schema_version"})
        publishers = tuple(
            Publisher.from_dict(p, where=f"publishers[{i}]", source=source)
            for i, p in enumerate(_list(d.get("publishers"), "publishers", source)))
        if len({p.name for p in publishers}) != len(publishers):
            raise _fail(source, "two publishers have the same name", _FIX_EDIT)
        revoked_keys = tuple(
            Revocation(_sha(r.get("key_id"), f"revoked_keys[{i}].key_id", source),
                       _str(r.get("reason", ""), f"revoked_keys[{i}].reason", source))
            for i, r in enumerate(
                _obj(x, f"revoked_keys[{j}]", source, {"key_id", "reason"}, {"key_id"})
                for j, x in enumerate(_list(d.get("revoked_keys"), "revoked_keys", source))))
        revoked_digests = tuple(
            Revocation(_sha(r.get("sha256"), f"revoked_digests[{i}].sha256", source),
                       _str(r.get("reason", ""), f"revoked_digests[{i}].reason", source))
            for i, r in enumerate(
                _obj(x, f"revoked_digests[{j}]", source, {"sha256", "reason"}, {"sha256"})
                for j, x in enumerate(_list(d.get("revoked_digests"), "revoked_digests",
                                            source))))
        revoked_identities = tuple(
            Revocation(identity_key(_str(r.get("issuer"), f"revoked_identities[{i}].issuer",
                                         source),
                                    _str(r.get("san"), f"revoked_identities[{i}].san", source)),
                       _str(r.get("reason", ""), f"revoked_identities[{i}].reason", source))
            for i, r in enumerate(
                _obj(x, f"revoked_identities[{j}]", source, {"issuer", "san", "reason"},
                     {"issuer", "san"})
                for j, x in enumerate(_list(d.get("revoked_identities"), "revoked_identities",
                                            source))))
        pins = tuple(Pin.from_dict(p, where=f"pins[{i}]", source=source)
                     for i, p in enumerate(_list(d.get("pins"), "pins", source)))
        if len({p.target for p in pins}) != len(pins):
            raise _fail(source, "the same file is pinned twice", _FIX_EDIT)
        locks = tuple(RevisionLock.from_dict(x, where=f"revision_locks[{i}]", source=source)
                      for i, x in enumerate(_list(d.get("revision_locks"), "revision_locks",
                                                  source)))
        policy = Policy.from_dict(d.get("policy", {}), source=source)
        return cls(publishers=publishers, revoked_keys=revoked_keys,
                   revoked_digests=revoked_digests, pins=pins, revision_locks=locks,
                   policy=policy, revoked_identities=revoked_identities)

    def to_dict(self) -> dict[str, Any]:
        """The store document (what `export` prints and the file holds)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "policy": self.policy.to_dict(),
            "publishers": [p.to_dict() for p in sorted(self.publishers, key=lambda p: p.name)],
            "revoked_keys": [r.to_dict("key_id") for r in
                             sorted(self.revoked_keys, key=lambda r: r.value)],
            "revoked_digests": [r.to_dict("sha256") for r in
                                sorted(self.revoked_digests, key=lambda r: r.value)],
            "pins": [p.to_dict() for p in sorted(self.pins, key=lambda p: p.target)],
            "revision_locks": [x.to_dict() for x in
                               sorted(self.revision_locks, key=lambda x: x.repo.casefold())],
            **({"revoked_identities": [
                {"issuer": r.value.split(" ", 1)[0], "san": r.value.split(" ", 1)[1],
                 **({"reason": r.reason} if r.reason else {})}
                for r in sorted(self.revoked_identities, key=lambda r: r.value)]}
               if self.revoked_identities else {}),
        }

    def to_json(self) -> bytes:
        """Pretty, sorted JSON for the file (stable diffs)."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
                + "\n").encode("utf-8")

    def state_digest(self) -> str:
        """SHA-256 of the canonical store: changes with any key, pin, revocation or policy change.

        Caches of verification results key on it so that a revocation or a policy change
        invalidates them. What loads observe (`trust.observed.json`) is not included.
        """
        cached: str | None = self.__dict__.get("_state_digest")
        if cached is None:  # immutable, so computed once (every load and ledger entry asks)
            canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=True)
            cached = hashlib.sha256(canonical.encode()).hexdigest()
            self.__dict__["_state_digest"] = cached
        return cached

    # -- persistence --------------------------------------------------------------------

    @classmethod
    def update(cls, change: Callable[[TrustStore], TrustStore],
               path: str | os.PathLike[str] | None = None) -> tuple[TrustStore, TrustStore]:
        """Apply `change` to a freshly read store under the lock and write it atomically.

        Returns (before, after). Nothing is written when `change` returns an equal store.

        Raises:
            TrustStoreError: the store is unusable, the lock cannot be taken, or `change`
                refused (it may raise TrustStoreError itself).
            OSError: the file cannot be written.
        """
        p = Path(path) if path is not None else paths.trust_store_path()
        with locked(p):
            before = cls.load(p)
            after = change(before)
            # Round-trip through the validator: never write what load() would refuse.
            checked = cls.from_dict(json.loads(after.to_json()), source=str(p))
            if checked != before or not before.exists:
                write_file(p, checked.to_json())
            return before, replace(checked, path=p, exists=True)

    # -- queries ------------------------------------------------------------------------

    def publisher(self, name: str) -> Publisher | None:
        """The publisher with this name (case-sensitive), if any."""
        return next((p for p in self.publishers if p.name == name), None)

    def owners_of(self, repo: str) -> list[Publisher]:
        """Publishers with keys or roots whose namespaces cover `repo`."""
        return [p for p in self.publishers if p.binds and p.owns(repo)]

    def key_revocation(self, key_id: str) -> Revocation | None:
        """The revocation of this key id, if revoked."""
        k = key_id.lower()
        return next((r for r in self.revoked_keys if r.value == k), None)

    def keyless_rules(self) -> list[tuple[str, list[IdentityRule]]]:
        """The keyless identities of every publisher, grouped by Sigstore instance name."""
        from safeload.signing import anchors  # the signing package loads cryptography

        return anchors.keyless_rules(self)

    def identity_revocation(self, issuer: str, san: str) -> Revocation | None:
        """The revocation of this keyless identity, if revoked."""
        k = identity_key(issuer, san)
        return next((r for r in self.revoked_identities if r.value == k), None)

    def check_identity_revoked(self, result: KeylessResult, *, source: str) -> None:
        """Raises: RevokedError when the keyless signer's identity is revoked."""
        from safeload.signing import anchors  # the signing package loads cryptography

        anchors.check_identity_revoked(self, result, source=source)

    def with_identity(self, publisher: str, ident: TrustedIdentity) -> TrustStore:
        """Add a keyless identity to a publisher (created when missing)."""
        old = self.publisher(publisher) or Publisher(name=publisher)
        if ident in old.identities:
            return self
        new = replace(old, identities=(*old.identities, ident))
        rest = tuple(p for p in self.publishers if p.name != publisher)
        return replace(self, publishers=(*rest, new))

    def without_identity(self, publisher: str, issuer: str, san: str) -> TrustStore:
        """Remove the publisher's identities with this issuer and SAN (or SAN regex).

        Raises: TrustStoreError when there is none.
        """
        old = self.publisher(publisher)
        keep = tuple(i for i in (old.identities if old else ())
                     if not (i.issuer == issuer and san in (i.san, i.san_regex)))
        if old is None or len(keep) == len(old.identities):
            raise TrustStoreError(f"publisher {safe_text(publisher)} has no identity "
                                  f"{safe_text(san)} from {safe_text(issuer)}",
                                  hint="see `safeload trust list`")
        return replace(self, publishers=tuple(replace(p, identities=keep) if p.name == publisher
                                              else p for p in self.publishers))

    def with_revoked_identity(self, issuer: str, san: str, reason: str = "") -> TrustStore:
        """Revoke a keyless identity everywhere, whoever trusts it."""
        if self.identity_revocation(issuer, san):
            return self
        return replace(self, revoked_identities=(
            *self.revoked_identities, Revocation(identity_key(issuer, san), reason)))

    def digest_revocation(self, sha256: str) -> Revocation | None:
        """The revocation of this file digest, if revoked."""
        s = sha256.lower()
        return next((r for r in self.revoked_digests if r.value == s), None)

    def revision_lock(self, repo: str) -> RevisionLock | None:
        """The revision lock of `repo`, if any."""
        r = repo.casefold()
        return next((x for x in self.revision_locks if x.repo.casefold() == r), None)

    def find_pin(self, target: tuple[str, ...]) -> Pin | None:
        """The pin for a `Pin.target`, if any."""
        return next((p for p in self.pins if p.target == target), None)

    def find_key(self, key_id: str) -> tuple[Publisher, TrustedKey] | None:
        """The publisher and key with this id (a prefix of 8+ hex digits also matches)."""
        k = key_id.lower()
        hits = [(p, tk) for p in self.publishers for tk in p.keys
                if tk.key_id == k or (len(k) >= 8 and tk.key_id.startswith(k))]
        return hits[0] if len(hits) == 1 else None

    # -- changes (pure: return a new store) ---------------------------------------------

    def with_publisher(self, publisher: Publisher) -> TrustStore:
        """Add a publisher, or merge namespaces/keys/roots into the one with the same name."""
        old = self.publisher(publisher.name)
        if old is None:
            return replace(self, publishers=(*self.publishers, publisher))
        merged = Publisher(
            name=old.name,
            namespaces=tuple(sorted(set(old.namespaces) | set(publisher.namespaces))),
            keys=old.keys + tuple(k for k in publisher.keys
                                  if k.key_id not in {o.key_id for o in old.keys}),
            roots=_merge_roots(old.roots, publisher.roots),
            expires=publisher.expires if publisher.expires is not None else old.expires,
            identities=old.identities + tuple(i for i in publisher.identities
                                              if i not in old.identities),
        )
        return replace(self, publishers=tuple(merged if p.name == old.name else p
                                              for p in self.publishers))

    def without_publisher(self, name: str) -> TrustStore:
        """Remove a publisher (its keys stop being trusted; they are not revoked)."""
        return replace(self, publishers=tuple(p for p in self.publishers if p.name != name))

    def with_revoked_key(self, key_id: str, reason: str = "") -> TrustStore:
        """Revoke a key id (kept listed under its publisher, refused everywhere)."""
        if self.key_revocation(key_id):
            return self
        return replace(self, revoked_keys=(*self.revoked_keys, Revocation(key_id.lower(),
                                                                            reason)))

    def with_revoked_digest(self, sha256: str, reason: str = "") -> TrustStore:
        """Revoke a file digest: refused wherever it appears, in every mode."""
        if self.digest_revocation(sha256):
            return self
        return replace(self, revoked_digests=(*self.revoked_digests,
                                              Revocation(sha256.lower(), reason)))

    def pin_conflict(self, pin: Pin) -> Pin | None:
        """The pin of the same file with another digest, if any (the pin-conflict rule)."""
        old = self.find_pin(pin.target)
        return old if old is not None and pin.conflicts_with(old) else None

    def with_pin(self, pin: Pin, *, replace_existing: bool = False) -> TrustStore:
        """Add a pin.

        Raises:
            TrustStoreError: the target is already pinned to another digest and
                `replace_existing` is false.
        """
        old = self.pin_conflict(pin)
        if old is not None and not replace_existing:
            raise TrustStoreError(
                f"{safe_text(pin.describe())} is already pinned to {old.sha256}",
                hint="unpin it first, or pass --replace")
        if old is None and self.find_pin(pin.target) is not None:
            return self  # the same pin again
        rest = tuple(p for p in self.pins if p.target != pin.target)
        return replace(self, pins=(*rest, pin))

    def without_pin(self, target: tuple[str, ...]) -> TrustStore:
        """Remove the pin for a target (no-op when absent)."""
        return replace(self, pins=tuple(p for p in self.pins if p.target != target))

    def with_policy(self, policy: Policy) -> TrustStore:
        """Replace the policy."""
        return replace(self, policy=policy)

    def with_revision_lock(self, lock: RevisionLock) -> TrustStore:
        """Add or replace the revision lock of a repository."""
        rest = tuple(x for x in self.revision_locks if x.repo.casefold() != lock.repo.casefold())
        return replace(self, revision_locks=(*rest, lock))

    def merged(self, other: TrustStore, *, replace_pins: bool = False) -> TrustStore:
        """Union of two stores (import): publishers merged by name, revocations and locks
        unioned, pins added. The policy of `self` is kept.

        Raises:
            TrustStoreError: a pin conflicts and `replace_pins` is false.
        """
        out = self
        for p in other.publishers:
            out = out.with_publisher(p)
        for r in other.revoked_keys:
            out = out.with_revoked_key(r.value, r.reason)
        for r in other.revoked_digests:
            out = out.with_revoked_digest(r.value, r.reason)
        for r in other.revoked_identities:
            issuer, san = r.value.split(" ", 1)
            out = out.with_revoked_identity(issuer, san, r.reason)
        for pin in other.pins:
            out = out.with_pin(pin, replace_existing=replace_pins)
        for lock in other.revision_locks:
            old = out.revision_lock(lock.repo)
            revs = set(lock.revisions) | (set(old.revisions) if old else set())
            out = out.with_revision_lock(RevisionLock(lock.repo, tuple(sorted(revs))))
        return out


def _merge_roots(old: tuple[TrustedRoot, ...], new: tuple[TrustedRoot, ...]) -> tuple[
        TrustedRoot, ...]:
    out = {r.fingerprint: r for r in old}
    for r in new:
        if r.fingerprint in out:
            prev = out[r.fingerprint]
            out[r.fingerprint] = replace(prev, identities=tuple(sorted(set(prev.identities)
                                                                       | set(r.identities))),
                                         expires=r.expires or prev.expires)
        else:
            out[r.fingerprint] = r
    return tuple(out.values())
