"""Licence tags -> SPDX ids and classes (every Hub tag), and the licence policy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from safeload.errors import LicenseRefusedError, TrustStoreError
from safeload.licenses import (
    HUB_LICENSES,
    SPDX_IDS,
    LicenseClass,
    LicensePolicy,
    decide_license,
    evaluate_license,
    license_info,
)
from safeload.modelcard import ModelCard

P, W, S, N, C, U = ("permissive", "weak-copyleft", "strong-copyleft", "non-commercial", "custom",
                    "unknown")

# The Hub's licence list (hub-docs repositories-licenses.md and the Hub's licence picker), with
# the expected SPDX id (None: a LicenseRef, no SPDX id fits) and class. Reviewed by hand: this
# table, not the module, is the specification.
HUB_TABLE: dict[str, tuple[str | None, str]] = {
    "apache-2.0": ("Apache-2.0", P), "mit": ("MIT", P), "openrail": (None, C),
    "openrail++": (None, C), "bigscience-openrail-m": (None, C),
    "creativeml-openrail-m": (None, C), "bigscience-bloom-rail-1.0": (None, C),
    "bigcode-openrail-m": (None, C), "afl-3.0": ("AFL-3.0", P),
    "artistic-2.0": ("Artistic-2.0", W), "bsl-1.0": ("BSL-1.0", P), "bsd": (None, P),
    "bsd-2-clause": ("BSD-2-Clause", P), "bsd-3-clause": ("BSD-3-Clause", P),
    "bsd-3-clause-clear": ("BSD-3-Clause-Clear", P), "c-uda": ("C-UDA-1.0", C),
    "cc": (None, U), "cc0-1.0": ("CC0-1.0", P), "cc-by-2.0": ("CC-BY-2.0", P),
    "cc-by-2.5": ("CC-BY-2.5", P), "cc-by-3.0": ("CC-BY-3.0", P), "cc-by-4.0": ("CC-BY-4.0", P),
    "cc-by-sa-3.0": ("CC-BY-SA-3.0", W), "cc-by-sa-4.0": ("CC-BY-SA-4.0", W),
    "cc-by-nc-2.0": ("CC-BY-NC-2.0", N), "cc-by-nc-3.0": ("CC-BY-NC-3.0", N),
    "cc-by-nc-4.0": ("CC-BY-NC-4.0", N), "cc-by-nd-4.0": ("CC-BY-ND-4.0", C),
    "cc-by-nc-nd-3.0": ("CC-BY-NC-ND-3.0", N), "cc-by-nc-nd-4.0": ("CC-BY-NC-ND-4.0", N),
    "cc-by-nc-sa-2.0": ("CC-BY-NC-SA-2.0", N), "cc-by-nc-sa-3.0": ("CC-BY-NC-SA-3.0", N),
    "cc-by-nc-sa-4.0": ("CC-BY-NC-SA-4.0", N), "cdla-sharing-1.0": ("CDLA-Sharing-1.0", W),
    "cdla-permissive-1.0": ("CDLA-Permissive-1.0", P),
    "cdla-permissive-2.0": ("CDLA-Permissive-2.0", P), "wtfpl": ("WTFPL", P),
    "ecl-2.0": ("ECL-2.0", P), "epl-1.0": ("EPL-1.0", W), "epl-2.0": ("EPL-2.0", W),
    "etalab-2.0": ("etalab-2.0", P), "eupl-1.1": ("EUPL-1.1", S), "eupl-1.2": ("EUPL-1.2", S),
    "agpl-3.0": ("AGPL-3.0-only", S), "gfdl": (None, W), "gpl": (None, S),
    "gpl-2.0": ("GPL-2.0-only", S), "gpl-3.0": ("GPL-3.0-only", S), "lgpl": (None, W),
    "lgpl-2.1": ("LGPL-2.1-only", W), "lgpl-3.0": ("LGPL-3.0-only", W), "isc": ("ISC", P),
    "h-research": (None, N), "intel-research": (None, N), "lppl-1.3c": ("LPPL-1.3c", W),
    "ms-pl": ("MS-PL", W), "apple-ascl": (None, P), "apple-amlr": (None, N),
    "mpl-2.0": ("MPL-2.0", W), "odc-by": ("ODC-By-1.0", P), "odbl": ("ODbL-1.0", W),
    "openmdw-1.0": ("OpenMDW-1.0", P), "openmdw-1.1": (None, P), "osl-3.0": ("OSL-3.0", S),
    "postgresql": ("PostgreSQL", P), "ofl-1.1": ("OFL-1.1", W), "ncsa": ("NCSA", P),
    "unlicense": ("Unlicense", P), "zlib": ("Zlib", P), "pddl": ("PDDL-1.0", P),
    "lgpl-lr": (None, W), "deepfloyd-if-license": (None, N),
    "fair-noncommercial-research-license": (None, N), "llama2": (None, C),
    "llama3": (None, C), "llama3.1": (None, C), "llama3.2": (None, C), "llama3.3": (None, C),
    "llama4": (None, C), "grok2-community": (None, C), "gemma": (None, C), "other": (None, C),
    "unknown": (None, U),
}


def _spdx_list() -> set[str]:
    """The SPDX licence ids the CycloneDX validator accepts (bundled with cyclonedx-python-lib)."""
    import cyclonedx.schema._res as res

    schema = Path(res.__file__).parent / "spdx.SNAPSHOT.schema.json"
    return set(json.loads(schema.read_text(encoding="utf-8"))["enum"])


@pytest.mark.parametrize(("tag", "expected"), sorted(HUB_TABLE.items()))
def test_every_hub_tag_maps_to_its_spdx_id_and_class(
        tag: str, expected: tuple[str | None, str]) -> None:
    spdx, cls = expected
    info = license_info(tag)
    assert info.tag == tag
    assert info.license_class.value == cls
    if spdx is None:
        assert not info.is_spdx
        assert re.fullmatch(r"LicenseRef-[A-Za-z0-9.\-]+", info.spdx_id), info.spdx_id
    else:
        assert info.is_spdx
        assert info.spdx_id == spdx


def test_table_is_exactly_the_hub_list() -> None:
    assert set(HUB_LICENSES) == set(HUB_TABLE)


def test_every_spdx_id_is_on_the_spdx_list_the_validator_uses() -> None:
    listed = _spdx_list()
    assert SPDX_IDS.issubset(listed), sorted(SPDX_IDS - listed)
    # And a LicenseRef is never claimed to be SPDX: it would fail the export's validation.
    assert all(not i.spdx_id.startswith("LicenseRef-") for i in HUB_LICENSES.values()
               if i.is_spdx)


def test_lookup_is_case_insensitive_and_accepts_spdx_ids() -> None:
    assert license_info("Apache-2.0").tag == "apache-2.0"
    assert license_info(" MIT ").spdx_id == "MIT"
    assert license_info("gpl-3.0-only").tag == "gpl-3.0"
    assert license_info("LicenseRef-hf-llama2").tag == "llama2"


@pytest.mark.parametrize("tag", [None, "", "   "])
def test_absent_licence_is_unknown(tag: str | None) -> None:
    info = license_info(tag)
    assert info.license_class is LicenseClass.UNKNOWN
    assert info.spdx_id == "LicenseRef-hf-none"


def test_unlisted_tag_is_unknown_with_a_sanitized_ref() -> None:
    info = license_info("falcon-llm license\x1b[31m!")
    assert info.license_class is LicenseClass.UNKNOWN
    assert not info.is_spdx
    assert re.fullmatch(r"LicenseRef-[A-Za-z0-9.\-]+", info.spdx_id), info.spdx_id


# --------------------------------------------------------------------------------------------
# Policy


STRICT = LicensePolicy.from_dict({"deny": ["non-commercial", "strong-copyleft"],
                                  "warn": ["custom", "unknown"]})


def test_denied_class_raises_naming_licence_and_rule() -> None:
    card = ModelCard(license=("cc-by-nc-4.0",))
    with pytest.raises(LicenseRefusedError,
                       match=r"CC-BY-NC-4\.0 \(non-commercial\) from model card .*"
                             r"'deny: non-commercial'"):
        evaluate_license(card, STRICT)


def test_strong_copyleft_denied_and_permissive_allowed() -> None:
    with pytest.raises(LicenseRefusedError, match="AGPL-3.0-only"):
        evaluate_license(ModelCard(license=("agpl-3.0",)), STRICT)
    decision = evaluate_license(ModelCard(license=("apache-2.0",)), STRICT)
    assert decision.action == "allow"
    assert decision.deciding is None
    assert decision.chain == "none"


def test_custom_warns_and_names_the_rule() -> None:
    decision = evaluate_license(ModelCard(license=("llama3.1",)), STRICT)
    assert decision.action == "warn"
    assert decision.deciding is not None
    assert decision.deciding.rule == "warn: custom"


def test_a_rule_naming_the_licence_beats_its_class() -> None:
    policy = LicensePolicy.from_dict({"deny": ["custom"], "allow": ["llama3.1"]})
    assert evaluate_license(ModelCard(license=("llama3.1",)), policy).action == "allow"
    with pytest.raises(LicenseRefusedError, match="'deny: custom'"):
        evaluate_license(ModelCard(license=("llama3",)), policy)
    # Rules may name SPDX ids too, in any case.
    policy = LicensePolicy.from_dict({"deny": ["Apache-2.0"]})
    with pytest.raises(LicenseRefusedError, match="'deny: apache-2.0'"):
        evaluate_license(ModelCard(license=("apache-2.0",)), policy)


def test_no_licence_counts_as_unknown() -> None:
    decision = decide_license(ModelCard(), STRICT)
    assert decision.action == "warn"
    assert decision.primary.license_class is LicenseClass.UNKNOWN


def test_several_licences_all_apply() -> None:
    decision = decide_license(ModelCard(license=("mit", "cc-by-nc-4.0")), STRICT)
    assert decision.action == "deny"
    assert any("lists 2 licences" in n for n in decision.notes)


def test_fine_tune_inherits_base_model_obligations() -> None:
    tune = ModelCard(license=("apache-2.0",), base_model=("meta-llama/Llama-2-7b-hf",))
    base = ModelCard(license=("llama2",))
    decision = decide_license(tune, STRICT, base_card=base)
    assert decision.chain == "complete"
    assert decision.action == "warn"
    assert decision.deciding is not None
    assert decision.deciding.origin == "base model meta-llama/Llama-2-7b-hf"
    deny_custom = LicensePolicy.from_dict({"deny": ["custom"]})
    with pytest.raises(LicenseRefusedError, match="from base model meta-llama/Llama-2-7b-hf"):
        evaluate_license(tune, deny_custom, base_card=base)


def test_missing_base_card_records_unknown_chain() -> None:
    tune = ModelCard(license=("mit",), base_model=("org/base",))
    decision = decide_license(tune, LicensePolicy())
    assert decision.chain == "unknown"
    assert "base model licence chain unknown: no card for org/base" in decision.notes
    # The unknown base counts as an unknown licence, so a policy can act on it.
    assert decide_license(tune, STRICT).action == "warn"
    with pytest.raises(LicenseRefusedError, match=r"org/base \(card not available\)"):
        evaluate_license(tune, LicensePolicy.from_dict({"deny": ["unknown"]}))


def test_chain_follows_a_mapping_through_several_hops_and_survives_cycles() -> None:
    tune = ModelCard(license=("mit",), base_model=("a/mid",))
    cards = {
        "a/mid": ModelCard(license=("apache-2.0",), base_model=("a/root",)),
        "a/root": ModelCard(license=("cc-by-nc-4.0",), base_model=("a/mid",)),  # a cycle
    }
    decision = decide_license(tune, STRICT, base_card=cards)
    assert decision.chain == "complete"
    assert decision.action == "deny"
    assert [f.origin for f in decision.findings] == [
        "model card", "base model a/mid", "base model a/root"]
    # A single card for one of several bases cannot be attributed: the chain stays unknown.
    merge = ModelCard(license=("mit",), base_model=("a/x", "a/y"))
    assert decide_license(merge, STRICT, base_card=ModelCard(license=("mit",))).chain == "unknown"


def test_default_policy_refuses_nothing_but_warns() -> None:
    policy = LicensePolicy.default()
    for tag, (_, cls) in HUB_TABLE.items():
        action = decide_license(ModelCard(license=(tag,)), policy).action
        assert action == ("allow" if cls in (P, W) else "warn"), tag


@pytest.mark.parametrize("bad", [
    [], {"deny": "non-commercial"}, {"deny": [1]}, {"deny": [""]}, {"forbid": ["x"]},
])
def test_malformed_policy_is_a_trust_store_error(bad: object) -> None:
    with pytest.raises(TrustStoreError, match="licence policy"):
        LicensePolicy.from_dict(bad)  # type: ignore[arg-type]


def test_policy_round_trips() -> None:
    assert LicensePolicy.from_dict(STRICT.to_dict()) == STRICT
    assert decide_license(ModelCard(license=("mit",)), STRICT).to_dict()["licenses"][0] == {
        "tag": "mit", "id": "MIT", "class": "permissive", "origin": "model card",
        "action": "allow", "rule": None}


@pytest.mark.parametrize("front", [
    "license: mit\nlicense: cc-by-nc-4.0",          # huggingface_hub keeps the last copy
    "license: cc-by-nc-4.0\nlicense: mit",          # another reader the first
    "license: !!str cc-by-nc-4.0",                  # yaml.safe_load reads tagged scalars
    "license: cc-by-nc-4.0\ntags: !!set {a: null}",  # a tag anywhere voided the card
])
def test_an_ambiguous_card_cannot_slip_past_a_deny_rule(front: str) -> None:
    from safeload.modelcard import parse_model_card

    card = parse_model_card(f"---\n{front}\n---\n")
    with pytest.raises(LicenseRefusedError, match="non-commercial"):
        evaluate_license(card, LicensePolicy.from_dict({"deny": ["non-commercial"]}))


def test_an_ambiguous_licence_is_unknown_as_well() -> None:
    from safeload.modelcard import parse_model_card

    card = parse_model_card("---\nlicense: mit\nlicense: apache-2.0\n---\n")
    decision = decide_license(card, STRICT)  # both permissive, and an unknown on top
    assert decision.action == "warn"
    assert {f.info.license_class for f in decision.findings} >= {LicenseClass.UNKNOWN}
    assert any("ambiguous" in n for n in decision.notes)
    unparsed = parse_model_card("---\nlicense: &a mit\nother: *a\n---\n")  # refused: aliases
    assert decide_license(unparsed, LicensePolicy.from_dict({"deny": ["unknown"]})).action == "deny"
