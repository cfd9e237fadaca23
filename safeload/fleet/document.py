"""The organisation store document: the one TUF target a fleet subscribes to.

The trust store schema refuses unknown top-level fields (an older safeload must not silently drop
a newer rule), so the fleet's own fields travel in a wrapper document around an ordinary store::

    {
      "schema_version": 1,
      "serial": 42,                             # monotonic; a node refuses a lower one
      "policy": {"allow_local_trust": false},   # what a node's local overlay may add
      "store": { ...a trust store, exactly what `safeload trust export` prints... }
    }

`serial` is safeload's rollback guard on top of TUF's: TUF refuses older metadata, and the serial
refuses an older store that the targets role signed again later (a republished old file). The
organisation bumps it on every change (`build_document` takes it explicitly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from safeload._internal import strictjson
from safeload._internal.text import safe_text
from safeload.fleet.errors import FleetVerificationError
from safeload.trust import TrustStore

SCHEMA_VERSION = 1
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # the trust store's own bound
MAX_SERIAL = 2**63 - 1  # fits every JSON reader's integers exactly

_FIELDS = frozenset({"schema_version", "serial", "policy", "store"})
_POLICY_FIELDS = frozenset({"allow_local_trust"})
_FIX = "republish the store with `safeload.fleet.build_document` (see README, Fleet)"


@dataclass(frozen=True)
class FleetDocument:
    """A parsed organisation store document."""

    serial: int
    store: TrustStore
    allow_local_trust: bool = False


def build_document(store: TrustStore, *, serial: int, allow_local_trust: bool = False) -> bytes:
    """The target bytes an organisation publishes (sorted, indented JSON).

    Raises:
        ValueError: `serial` is not an integer in 0..2**63-1.
    """
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 <= serial <= MAX_SERIAL:
        raise ValueError(f"serial must be an integer in 0..{MAX_SERIAL}")
    doc = {"schema_version": SCHEMA_VERSION, "serial": serial,
           "policy": {"allow_local_trust": allow_local_trust}, "store": store.to_dict()}
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _fail(source: str, message: str) -> FleetVerificationError:
    return FleetVerificationError(f"{source}: {message}", hint=_FIX)


def _object(value: object, where: str, source: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, f"{where} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(source, f"unknown field(s) {safe_text(', '.join(unknown), limit=200)} in "
                    f"{where}")
    return value


def parse_document(data: bytes, *, source: str) -> FleetDocument:
    """Parse and validate a document (the wrapper and the store inside it).

    The bytes reached here only after TUF verified them, so a failure is a repository that
    signed something malformed: refused, never half-used.

    Raises:
        FleetVerificationError: not a valid document (the message names `source`).
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _fail(source, f"is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        raw = strictjson.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(source, f"cannot parse ({safe_text(exc, limit=200)})") from exc
    doc = _object(raw, "the document", source, _FIELDS)
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise _fail(source, f"unknown schema_version {safe_text(doc.get('schema_version'))} "
                    f"(this safeload reads {SCHEMA_VERSION}; upgrade it if the repository is "
                    "newer)")
    serial = doc.get("serial")
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 <= serial <= MAX_SERIAL:
        raise _fail(source, f"serial must be an integer in 0..{MAX_SERIAL}, not "
                    f"{safe_text(serial, limit=40)}")
    policy = _object(doc.get("policy", {}), "policy", source, _POLICY_FIELDS)
    allow = policy.get("allow_local_trust", False)
    if not isinstance(allow, bool):
        raise _fail(source, "policy.allow_local_trust must be true or false")
    if "store" not in doc:
        raise _fail(source, "lacks 'store'")
    try:
        store = TrustStore.from_dict(doc["store"], source=f"{source} (store)")
    except FleetVerificationError:
        raise
    except Exception as exc:  # TrustStoreError, and anything a hostile store provokes
        raise _fail(source, f"the store inside does not validate: {exc}") from exc
    return FleetDocument(serial=serial, store=store, allow_local_trust=allow)
