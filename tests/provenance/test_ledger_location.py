"""A ledger others may write proves nothing by its chain alone (review P-3)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from safeload.provenance import ProvenanceEntry, Source, verify
from safeload.provenance.ledger import record

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")


def _entry() -> ProvenanceEntry:
    return ProvenanceEntry(action="load", source=Source.local("/m/model.safetensors"))


def test_a_chain_in_a_folder_others_may_write_is_not_verified(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Review P-3: another user replaced the victim's 0600 ledger files whole, with a re-sealed
    # chain and HEAD, and `provenance verify` said OK.
    ledger = tmp_path / "shared" / "ledger"
    ledger.mkdir(parents=True, mode=0o700)
    head = record(_entry(), ledger=ledger)
    assert verify(ledger).ok  # the control: a private folder
    ledger.chmod(0o2777)
    report = verify(ledger)
    assert not report.ok and report.exposed and "writable by group" in report.exposed
    assert "NOT VERIFIED" in report.describe()
    assert verify(ledger, anchor=head).ok  # a head kept elsewhere still tells


def test_writing_a_ledger_others_may_write_warns_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ledger = tmp_path / "team-ledger"
    ledger.mkdir(mode=0o700)
    ledger.chmod(0o2777)
    with caplog.at_level(logging.WARNING, logger="safeload"):
        record(_entry(), ledger=ledger)
        record(_entry(), ledger=ledger)
    assert sum("could rewrite it" in r.getMessage() for r in caplog.records) == 1
