"""The organisation document: the wrapper carrying the serial and the overlay permission."""

from __future__ import annotations

import json

import pytest

from safeload.fleet import FleetVerificationError, build_document, parse_document
from safeload.fleet.document import MAX_SERIAL
from safeload.trust import TrustStore

GOOD = {"schema_version": 1, "serial": 3, "policy": {"allow_local_trust": True},
        "store": TrustStore().with_revoked_digest("a" * 64).to_dict()}


def test_build_then_parse_round_trips() -> None:
    store = TrustStore().with_revoked_digest("a" * 64, "bad")
    doc = parse_document(build_document(store, serial=7, allow_local_trust=True), source="t")
    assert (doc.serial, doc.allow_local_trust, doc.store) == (7, True, store)
    assert parse_document(build_document(store, serial=0), source="t").allow_local_trust is False


def _bad_documents() -> dict[str, bytes]:
    def variant(**change: object) -> bytes:
        doc = {**GOOD, **change}
        return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()

    return {
        "unknown top-level field": variant(expires="2030-01-01"),
        "unknown policy field": variant(policy={"allow_local_trust": False, "trust_all": True}),
        "no serial": variant(serial=...),
        "serial is a string": variant(serial="4"),
        "serial is a bool": variant(serial=True),
        "serial is a float": variant(serial=4.0),
        "serial is negative": variant(serial=-1),
        "serial too large": variant(serial=MAX_SERIAL + 1),
        "newer schema": variant(schema_version=2),
        "no schema": variant(schema_version=...),
        "allow_local_trust a string": variant(policy={"allow_local_trust": "false"}),
        "no store": variant(store=...),
        "store with an unknown field": variant(store={**GOOD["store"], "trust_all": True}),  # type: ignore[dict-item]
        "store not an object": variant(store=[]),
        "duplicate key": b'{"schema_version": 1, "serial": 1, "serial": 9, "store": {}}',
        "NaN": b'{"schema_version": 1, "serial": NaN, "store": {}}',
        "not JSON": b"\x00\xff",
        "a list": b"[]",
    }


@pytest.mark.parametrize("how", list(_bad_documents()))
def test_a_malformed_document_is_refused_naming_its_source(how: str) -> None:
    with pytest.raises(FleetVerificationError, match=r"^https://x/t\.json: "):
        parse_document(_bad_documents()[how], source="https://x/t.json")


@pytest.mark.parametrize("serial", [-1, MAX_SERIAL + 1, True, 1.5])
def test_build_refuses_a_serial_a_node_would_refuse(serial: object) -> None:
    with pytest.raises(ValueError, match="serial"):
        build_document(TrustStore(), serial=serial)  # type: ignore[arg-type]
