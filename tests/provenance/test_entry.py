"""Entries: the on-disk values are those of the old single-module ledger; closed sets; times."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from safeload import provenance, trust
from safeload.errors import ProvenanceError
from safeload.provenance import (
    ACTIONS,
    PIN_STATES,
    ConvertedFrom,
    FileRecord,
    LicenseRecord,
    ProvenanceEntry,
    PublisherRecord,
    SignatureRecord,
    Source,
    TrustRecord,
    hf_purl,
    hf_purl_parts,
    read_ledger,
    record,
    verify,
)

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "ledger-v1"
SHA = "5" * 64
TIMES = ["2026-01-31T12:00:00.000001Z", "2026-02-01T00:00:00Z", "2026-02-02T10:20:30+02:00",
         "2026-02-03T10:20:30.5-05:30", "2026-02-04 08:00:00+00:00"]


def _golden_entries() -> list[ProvenanceEntry]:
    """The entries of tests/assets/ledger-v1, as its generator built them."""
    v = "0.1.0"
    return [
        ProvenanceEntry(action="load", source=Source.local("/models/a/model.safetensors"),
                        files=(FileRecord("/models/a/model.safetensors", SHA, 10,
                                          "safetensors"),),
                        time=TIMES[0], safeload_version=v),
        ProvenanceEntry(action="from_pretrained",
                        source=Source.huggingface("acme/model", "A" * 40, "model.safetensors"),
                        files=(FileRecord("/hub/x", SHA, 11, "safetensors"),),
                        signature=SignatureRecord("verified", "acme", "kid", "sigstore",
                                                  {"issuer": "https://accounts.example"}, True),
                        trust=TrustRecord("strict", "hit"),
                        license=LicenseRecord("Apache-2.0", "permissive", "model card", "Apache",
                                              None),
                        datasets=("d1",), base_model=("base/m",),
                        publisher=PublisherRecord("acme", True, True), task="text-generation",
                        warnings=("w",), time=TIMES[1], safeload_version=v),
        ProvenanceEntry(action="convert", source=Source.local("/models/b/m.pt"),
                        files=(FileRecord("/out/m.safetensors", "6" * 64, 12, "safetensors"),),
                        converted_from=ConvertedFrom(SHA, "torch-zip", ("seccomp", "rlimits"),
                                                     "/models/b/m.pt"),
                        trust=TrustRecord("audit", "new"),
                        license=LicenseRecord("CC-BY-NC-4.0", "non-commercial", "model card"),
                        time=TIMES[2], safeload_version=v),
        ProvenanceEntry(action="verify", source=Source.local("/models/c"),
                        signature=SignatureRecord("failed"),
                        license=LicenseRecord("LicenseRef-x", "custom", "none"),
                        time=TIMES[3], safeload_version=v),
        ProvenanceEntry(action="load", source=Source.local("/models/d/x.npy"),
                        license=LicenseRecord("GPL-3.0", "strong-copyleft", "base model card"),
                        time=TIMES[4], safeload_version=v),
    ]


def _golden_copy(tmp_path: Path) -> Path:
    d = tmp_path / "ledger"
    d.mkdir()
    for name in ("ledger.jsonl", "HEAD"):
        shutil.copy(GOLDEN / name, d / name)
    return d


# --------------------------------------------------------------------------------------------
# The on-disk format is the old one


def test_ledger_written_by_the_old_module_still_verifies(tmp_path: Path) -> None:
    state = read_ledger(_golden_copy(tmp_path))
    assert state.report.ok, state.report.describe()
    assert [r.entry for r in state.records] == _golden_entries()
    assert [r.repair is not None for r in state.records] == [False] * 4 + [True]


def test_the_same_entries_are_written_byte_for_byte_as_before(tmp_path: Path) -> None:
    d = tmp_path / "new"
    entries = _golden_entries()
    for e in entries[:4]:
        record(e, ledger=d)
    with open(d / "ledger.jsonl", "ab") as fh:  # the torn write the generator left
        fh.write(b'{"digest":"sha256:12')
    record(entries[4], ledger=d)
    assert (d / "ledger.jsonl").read_bytes() == (GOLDEN / "ledger.jsonl").read_bytes()
    assert (d / "HEAD").read_bytes() == (GOLDEN / "HEAD").read_bytes()


def test_appending_to_an_old_ledger_continues_its_chain(tmp_path: Path) -> None:
    d = _golden_copy(tmp_path)
    old_head = verify(d).head
    record(ProvenanceEntry(action="load", source=Source.local("/m/new.safetensors")), ledger=d)
    state = read_ledger(d, anchor=old_head)
    assert state.report.ok and state.report.entries == 6
    assert state.records[-1].prev == old_head


# --------------------------------------------------------------------------------------------
# Closed sets


def test_actions_are_what_safeload_records() -> None:
    assert ACTIONS == ("load", "from_pretrained", "convert", "verify")
    with pytest.raises(ProvenanceError, match="action must be one of"):
        ProvenanceEntry(action="scan", source=Source.local("/m/x"))  # scan records nothing


@pytest.mark.parametrize(("field", "value"), [
    ("status", "ok"), ("status", "VERIFIED"), ("status", ""),
])
def test_unknown_signature_status_is_refused(field: str, value: str) -> None:
    with pytest.raises(ProvenanceError, match="signature.status must be one of"):
        SignatureRecord.from_dict({field: value})


@pytest.mark.parametrize("pin", PIN_STATES)
def test_every_pin_state_of_a_trust_decision_can_be_recorded(pin: str) -> None:
    """The recordable pins are exactly the trust decision's (audit mode records "mismatch")."""
    assert TrustRecord.from_dict({"mode": "audit", "pin": pin}).pin == pin
    decision_pins = get_args(get_type_hints(trust.TrustDecision)["pin"])
    assert set(decision_pins) == set(PIN_STATES)


@pytest.mark.parametrize(("data", "message"), [
    ({"mode": "lenient", "pin": "none"}, "trust.mode"),
    ({"mode": "default", "pin": "maybe"}, "trust.pin"),
    ({"pin": "none"}, "trust.mode"),
    ({"mode": "default", "pin": None}, "trust.pin"),
])
def test_unknown_trust_values_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ProvenanceError, match=message):
        TrustRecord.from_dict(data)


def test_unknown_licence_class_is_refused() -> None:
    with pytest.raises(ProvenanceError, match="license.class must be one of"):
        LicenseRecord.from_dict({"id": "MIT", "class": "copyleft", "source": "none"})


# --------------------------------------------------------------------------------------------
# Times: one rule, trust.parse_time, accepting at least what the old ledger parser accepted


def _old_rule(value: str) -> datetime:
    """The ledger's own parser before it used trust.parse_time (the oracle for 'superset')."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    return parsed


def _time_variants() -> list[str]:
    base = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
    out: list[str] = []
    for offset in (timedelta(0), timedelta(hours=2), timedelta(hours=-5, minutes=-30)):
        when = base.astimezone(timezone(offset))
        for spec in ("seconds", "milliseconds", "microseconds", "minutes", "hours"):
            for sep in ("T", " "):
                text = when.isoformat(sep=sep, timespec=spec)
                out += [text, text.replace("+00:00", "Z"), text[:-6]]  # the last one naive
    out += ["2026-03-04", "2026-03-04T05:06:07", "yesterday", "", "2026-13-01T00:00:00Z",
            " 2026-03-04T05:06:07Z ", "2026-03-04T05:06:07+0000", "20260304T050607Z"]
    return out


def _old_accepts(value: str) -> bool:
    try:
        _old_rule(value)
    except ValueError:
        return False
    return True


OLD_ACCEPTED = [v for v in _time_variants() if _old_accepts(v)]


def test_the_time_variants_cover_both_sides_of_the_old_rule() -> None:
    assert len(OLD_ACCEPTED) >= 40
    assert len(_time_variants()) - len(OLD_ACCEPTED) >= 20  # naive and malformed ones


@pytest.mark.parametrize("value", OLD_ACCEPTED)
def test_every_time_the_old_parser_read_is_still_read_as_the_same_instant(value: str) -> None:
    assert provenance.parse_time(value) == _old_rule(value)
    assert ProvenanceEntry(action="load", source=Source.local("/m/x"), time=value).time == value


def test_provenance_and_trust_share_one_time_rule() -> None:
    assert provenance.parse_time is trust.parse_time
    # What trust also accepts is accepted in an entry too: a bare date is UTC midnight.
    assert provenance.parse_time("2026-03-04") == datetime(2026, 3, 4, tzinfo=timezone.utc)
    ProvenanceEntry(action="load", source=Source.local("/m/x"), time="2026-03-04")


@pytest.mark.parametrize("value", ["2026-03-04T05:06:07", "yesterday", "", "2026-13-01T00:00Z"])
def test_times_without_a_zone_or_not_times_are_refused(value: str) -> None:
    with pytest.raises(ProvenanceError, match="time must be"):
        ProvenanceEntry(action="load", source=Source.local("/m/x"), time=value)


# --------------------------------------------------------------------------------------------
# Hub package URLs: built and read back in one place


@pytest.mark.parametrize("repo", ["bert-base-uncased", "acme/model.v2", "a_b/c-d~e"])
@pytest.mark.parametrize("revision", [None, "main", "refs/pr/1", "A1" * 20, "v1.0 beta"])
def test_hub_purl_reads_back_as_it_was_built(repo: str, revision: str | None) -> None:
    purl = hf_purl(repo, revision)
    namespace, _, name = repo.rpartition("/")
    expected = revision.lower() if revision == "A1" * 20 else revision  # commits lowercased
    assert hf_purl_parts(purl) == (namespace or None, name, expected)


@pytest.mark.parametrize("purl", ["pkg:pypi/torch@2.0", "pkg:huggingface/a/b/c", "path:/m"])
def test_other_purls_are_not_hub_models(purl: str) -> None:
    assert hf_purl_parts(purl) is None
