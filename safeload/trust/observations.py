"""What loads learned, kept in `trust.observed.json` beside the store: first-use pins of Hub
files and the locations once loaded with a valid signature ("no silent downgrade").

Loads never rewrite the user's `trust.json`: `TrustStore.state_digest()` (which caches key on)
changes only with the configuration, not with what was observed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from safeload._internal import consulted
from safeload._internal.text import safe_text
from safeload.trust._files import (
    locked,
    observed_path,
    parse_json,
    read_trust_file,
    state_key,
    state_stamp,
    write_file,
)
from safeload.trust._schema import _fail, _list, _obj, _str
from safeload.trust.model import Pin
from safeload.trust.store import TrustStore

OBSERVED_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SignedRecord:
    """A location once loaded with a valid signature: loading it unsigned later is refused."""

    location: str  # "hf:<repo>" or "file:<resolved model dir>"
    publisher: str
    key_id: str
    first_seen: str


@dataclass(frozen=True)
class Observations:
    """What loads learned, kept in `trust.observed.json` beside the store."""

    pins: tuple[Pin, ...] = ()
    signed: tuple[SignedRecord, ...] = ()

    @classmethod
    def load(cls, path: Path) -> Observations:
        """Raises: TrustStoreError (unparseable, bad schema, too permissive)."""
        source = str(path)
        data = read_trust_file(path, source)
        if data is None:
            return cls()
        doc = _obj(parse_json(data, source), "the observations file", source,
                   {"schema_version", "pins", "signed"}, {"schema_version"})
        if doc["schema_version"] != OBSERVED_SCHEMA_VERSION:
            raise _fail(source, f"unknown schema_version {safe_text(doc['schema_version'])}",
                        "upgrade safeload, or delete the file (it only holds first-use pins "
                        "and signed-location records)")
        pins = tuple(Pin.from_dict(p, where=f"pins[{i}]", source=source)
                     for i, p in enumerate(_list(doc.get("pins"), "pins", source)))
        signed = []
        for i, s in enumerate(_list(doc.get("signed"), "signed", source)):
            e = _obj(s, f"signed[{i}]", source, {"location", "publisher", "key_id", "first_seen"},
                     {"location", "publisher", "key_id", "first_seen"})
            signed.append(SignedRecord(
                location=_str(e["location"], f"signed[{i}].location", source),
                publisher=_str(e["publisher"], f"signed[{i}].publisher", source),
                key_id=_str(e["key_id"], f"signed[{i}].key_id", source),
                first_seen=_str(e["first_seen"], f"signed[{i}].first_seen", source)))
        return cls(pins=pins, signed=tuple(signed))

    def to_json(self) -> bytes:
        doc = {
            "schema_version": OBSERVED_SCHEMA_VERSION,
            "pins": [p.to_dict() for p in sorted(self.pins, key=lambda p: p.target)],
            "signed": [{"location": s.location, "publisher": s.publisher, "key_id": s.key_id,
                        "first_seen": s.first_seen}
                       for s in sorted(self.signed, key=lambda s: s.location)],
        }
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    def find_pin(self, target: tuple[str, ...]) -> Pin | None:
        """The first-use pin for a target, if any."""
        return next((p for p in self.pins if p.target == target), None)

    @classmethod
    def update(cls, store_path: Path, change: Callable[[Observations], Observations]
               ) -> Observations:
        """Read, change and atomically rewrite the observations under the store's lock.

        Raises:
            TrustStoreError: unusable file or lock. OSError: cannot write.
        """
        path = observed_path(store_path)
        with locked(store_path):
            before = cls.load(path)
            after = change(before)
            if after != before:
                write_file(path, after.to_json())
            return after


# Observations read by this process, by path (the same rule as `TrustStore.load`).
_loaded: dict[Path, tuple[tuple[tuple[int, ...] | None, ...], Observations]] = {}


def load_observations(store: TrustStore) -> Observations:
    """The observations beside `store` (empty for an in-memory store).

    Raises:
        TrustStoreError: the file is unusable.
    """
    if store.path is None:
        return Observations()
    path = observed_path(store.path)
    # Read once per process, again when the file or a directory above it changes (every
    # rewrite is a rename, so a new inode even within one mtime tick).
    key = state_key(path)
    consulted.note(state_stamp, str(path), key)
    hit = _loaded.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    obs = Observations.load(path)
    if state_key(path) == key:  # unchanged while it was read: safe to reuse
        _loaded[path] = (key, obs)
    return obs


def observe(obs: Observations, pin: Pin | None, rec: SignedRecord | None) -> Observations:
    out = obs
    if pin is not None and out.find_pin(pin.target) is None:
        out = replace(out, pins=(*out.pins, pin))
    if rec is not None and not any(s.location == rec.location for s in out.signed):
        out = replace(out, signed=(*out.signed, rec))
    return out


def forget_location(store_path: Path, location: str) -> bool:
    """Drop a "was signed" record (the publisher stopped signing on purpose). True if removed.

    Raises:
        TrustStoreError, OSError: see `Observations.update`.
    """
    return _drop(store_path, "signed", lambda s: s.location == location)


def unpin_observed(store_path: Path, target: tuple[str, ...]) -> bool:
    """Drop a first-use pin. True if removed.

    Raises:
        TrustStoreError, OSError: see `Observations.update`.
    """
    return _drop(store_path, "pins", lambda p: p.target == target)


def _drop(store_path: Path, field: Literal["signed", "pins"],
          matches: Callable[[Any], bool]) -> bool:
    """Remove the records of one field that match, under the store's lock. True if any went."""
    removed = False

    def change(o: Observations) -> Observations:
        nonlocal removed
        old: tuple[Any, ...] = getattr(o, field)
        keep = tuple(r for r in old if not matches(r))
        removed = len(keep) != len(old)
        return replace(o, **{field: keep})

    Observations.update(store_path, change)
    return removed
