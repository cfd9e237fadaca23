"""Hugging Face licence tags: their SPDX ids, their class, and the licence policy.

Public and stable: `license_info`, `LicenseClass`, `LicensePolicy`, `evaluate_license`,
`decide_license`, `LicenseDecision`. The table follows the Hub's licence list (hub-docs
`repositories-licenses.md`, plus the tags the Hub's licence picker offers on top of it).

The class answers "may we use this?" at a glance:

- permissive: attribution at most (MIT, Apache-2.0, BSD, CC-BY, CC0, ...);
- weak-copyleft: share-alike bound to the work itself (LGPL, MPL, EPL, CC-BY-SA, ODbL, ...);
- strong-copyleft: share-alike reaching whatever the work is combined into (GPL, AGPL, EUPL, OSL);
- non-commercial: CC-BY-NC*, research-only licences;
- custom: bespoke terms with use restrictions (Llama, OpenRAIL, Gemma, `other`, CC-BY-ND, ...);
- unknown: no licence, `unknown`, a family tag that hides the real one (`cc`), or a tag not on
  the Hub's list.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from safeload.errors import LicenseRefusedError, TrustStoreError

if TYPE_CHECKING:
    from safeload.modelcard import ModelCard

__all__ = [
    "HUB_LICENSES",
    "SPDX_IDS",
    "LicenseClass",
    "LicenseDecision",
    "LicenseFinding",
    "LicenseInfo",
    "LicensePolicy",
    "decide_license",
    "evaluate_license",
    "license_info",
    "strictest",
]


@enum.unique
class LicenseClass(str, enum.Enum):
    """What a licence asks of its users, coarsely."""

    PERMISSIVE = "permissive"
    WEAK_COPYLEFT = "weak-copyleft"
    STRONG_COPYLEFT = "strong-copyleft"
    NON_COMMERCIAL = "non-commercial"
    CUSTOM = "custom"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class LicenseInfo:
    """One licence tag, resolved.

    `spdx_id` is an SPDX licence id when `is_spdx`, else a `LicenseRef-` id (the licence has no
    SPDX id, or the tag names a family of licences rather than one).
    """

    tag: str
    spdx_id: str
    license_class: LicenseClass
    name: str
    is_spdx: bool


_P, _W, _S = LicenseClass.PERMISSIVE, LicenseClass.WEAK_COPYLEFT, LicenseClass.STRONG_COPYLEFT
_N, _C, _U = LicenseClass.NON_COMMERCIAL, LicenseClass.CUSTOM, LicenseClass.UNKNOWN

# tag -> (SPDX id or None for a LicenseRef, class, full name). SPDX ids checked against the SPDX
# list bundled with cyclonedx-python-lib (the export's validator); tests/provenance enforces it.
# NOTE: versioned GNU tags map to the "-only" ids: the tag names one version, and "-only" is the
# reading that promises nothing the card did not say. Family tags (`gpl`, `bsd`, `cc`, ...) get a
# LicenseRef: no single SPDX id is honest for them.
_TABLE: dict[str, tuple[str | None, LicenseClass, str]] = {
    "apache-2.0": ("Apache-2.0", _P, "Apache license 2.0"),
    "mit": ("MIT", _P, "MIT"),
    "openrail": (None, _C, "OpenRAIL license family"),
    "openrail++": (None, _C, "Open Rail++-M License"),
    "bigscience-openrail-m": (None, _C, "BigScience OpenRAIL-M"),
    "creativeml-openrail-m": (None, _C, "CreativeML OpenRAIL-M"),
    "bigscience-bloom-rail-1.0": (None, _C, "BigScience BLOOM RAIL 1.0"),
    "bigcode-openrail-m": (None, _C, "BigCode Open RAIL-M v1"),
    "afl-3.0": ("AFL-3.0", _P, "Academic Free License v3.0"),
    "artistic-2.0": ("Artistic-2.0", _W, "Artistic license 2.0"),
    "bsl-1.0": ("BSL-1.0", _P, "Boost Software License 1.0"),
    "bsd": (None, _P, "BSD license family"),
    "bsd-2-clause": ("BSD-2-Clause", _P, 'BSD 2-clause "Simplified" license'),
    "bsd-3-clause": ("BSD-3-Clause", _P, 'BSD 3-clause "New" or "Revised" license'),
    "bsd-3-clause-clear": ("BSD-3-Clause-Clear", _P, "BSD 3-clause Clear license"),
    # C-UDA allows computational use of the data only; bespoke terms, so reviewed by a person.
    "c-uda": ("C-UDA-1.0", _C, "Computational Use of Data Agreement"),
    # The bare family tag could be CC-BY or CC-BY-NC: it says nothing a policy can rely on.
    "cc": (None, _U, "Creative Commons license family"),
    "cc0-1.0": ("CC0-1.0", _P, "Creative Commons Zero v1.0 Universal"),
    "cc-by-2.0": ("CC-BY-2.0", _P, "Creative Commons Attribution 2.0"),
    "cc-by-2.5": ("CC-BY-2.5", _P, "Creative Commons Attribution 2.5"),
    "cc-by-3.0": ("CC-BY-3.0", _P, "Creative Commons Attribution 3.0"),
    "cc-by-4.0": ("CC-BY-4.0", _P, "Creative Commons Attribution 4.0"),
    # Share-alike binds adaptations of the work, not the software that uses it: weak copyleft.
    "cc-by-sa-3.0": ("CC-BY-SA-3.0", _W, "Creative Commons Attribution Share Alike 3.0"),
    "cc-by-sa-4.0": ("CC-BY-SA-4.0", _W, "Creative Commons Attribution Share Alike 4.0"),
    "cc-by-nc-2.0": ("CC-BY-NC-2.0", _N, "Creative Commons Attribution Non Commercial 2.0"),
    "cc-by-nc-3.0": ("CC-BY-NC-3.0", _N, "Creative Commons Attribution Non Commercial 3.0"),
    "cc-by-nc-4.0": ("CC-BY-NC-4.0", _N, "Creative Commons Attribution Non Commercial 4.0"),
    # No derivatives: commercial use is fine, fine-tuning and sharing the result are not.
    "cc-by-nd-4.0": ("CC-BY-ND-4.0", _C, "Creative Commons Attribution No Derivatives 4.0"),
    "cc-by-nc-nd-3.0": (
        "CC-BY-NC-ND-3.0", _N, "Creative Commons Attribution Non Commercial No Derivatives 3.0"),
    "cc-by-nc-nd-4.0": (
        "CC-BY-NC-ND-4.0", _N, "Creative Commons Attribution Non Commercial No Derivatives 4.0"),
    "cc-by-nc-sa-2.0": (
        "CC-BY-NC-SA-2.0", _N, "Creative Commons Attribution Non Commercial Share Alike 2.0"),
    "cc-by-nc-sa-3.0": (
        "CC-BY-NC-SA-3.0", _N, "Creative Commons Attribution Non Commercial Share Alike 3.0"),
    "cc-by-nc-sa-4.0": (
        "CC-BY-NC-SA-4.0", _N, "Creative Commons Attribution Non Commercial Share Alike 4.0"),
    "cdla-sharing-1.0": (
        "CDLA-Sharing-1.0", _W, "Community Data License Agreement - Sharing, Version 1.0"),
    "cdla-permissive-1.0": (
        "CDLA-Permissive-1.0", _P, "Community Data License Agreement - Permissive, Version 1.0"),
    "cdla-permissive-2.0": (
        "CDLA-Permissive-2.0", _P, "Community Data License Agreement - Permissive, Version 2.0"),
    "wtfpl": ("WTFPL", _P, "Do What The F*ck You Want To Public License"),
    "ecl-2.0": ("ECL-2.0", _P, "Educational Community License v2.0"),
    "epl-1.0": ("EPL-1.0", _W, "Eclipse Public License 1.0"),
    "epl-2.0": ("EPL-2.0", _W, "Eclipse Public License 2.0"),
    "etalab-2.0": ("etalab-2.0", _P, "Etalab Open License 2.0"),
    "eupl-1.1": ("EUPL-1.1", _S, "European Union Public License 1.1"),
    "eupl-1.2": ("EUPL-1.2", _S, "European Union Public License 1.2"),
    "agpl-3.0": ("AGPL-3.0-only", _S, "GNU Affero General Public License v3.0"),
    "gfdl": (None, _W, "GNU Free Documentation License family"),
    "gpl": (None, _S, "GNU General Public License family"),
    "gpl-2.0": ("GPL-2.0-only", _S, "GNU General Public License v2.0"),
    "gpl-3.0": ("GPL-3.0-only", _S, "GNU General Public License v3.0"),
    "lgpl": (None, _W, "GNU Lesser General Public License family"),
    "lgpl-2.1": ("LGPL-2.1-only", _W, "GNU Lesser General Public License v2.1"),
    "lgpl-3.0": ("LGPL-3.0-only", _W, "GNU Lesser General Public License v3.0"),
    "isc": ("ISC", _P, "ISC"),
    "h-research": (None, _N, "H Research License"),
    "intel-research": (None, _N, "Intel Research Use License"),
    "lppl-1.3c": ("LPPL-1.3c", _W, "LaTeX Project Public License v1.3c"),
    "ms-pl": ("MS-PL", _W, "Microsoft Public License"),
    "apple-ascl": (None, _P, "Apple Sample Code License"),
    "apple-amlr": (None, _N, "Apple Machine Learning Research Model License"),
    "mpl-2.0": ("MPL-2.0", _W, "Mozilla Public License 2.0"),
    "odc-by": ("ODC-By-1.0", _P, "Open Data Commons License Attribution family"),
    "odbl": ("ODbL-1.0", _W, "Open Database License family"),
    "openmdw-1.0": ("OpenMDW-1.0", _P, "OpenMDW License Agreement v1.0"),
    # Not in the SPDX list the validator bundles (yet): a LicenseRef keeps the export valid.
    "openmdw-1.1": (None, _P, "OpenMDW License Agreement v1.1"),
    "osl-3.0": ("OSL-3.0", _S, "Open Software License 3.0"),
    "postgresql": ("PostgreSQL", _P, "PostgreSQL License"),
    "ofl-1.1": ("OFL-1.1", _W, "SIL Open Font License 1.1"),
    "ncsa": ("NCSA", _P, "University of Illinois/NCSA Open Source License"),
    "unlicense": ("Unlicense", _P, "The Unlicense"),
    "zlib": ("Zlib", _P, "zLib License"),
    "pddl": ("PDDL-1.0", _P, "Open Data Commons Public Domain Dedication and License"),
    "lgpl-lr": (None, _W, "Lesser General Public License For Linguistic Resources"),
    "deepfloyd-if-license": (None, _N, "DeepFloyd IF Research License Agreement"),
    "fair-noncommercial-research-license": (None, _N, "FAIR Noncommercial Research License"),
    "llama2": (None, _C, "Llama 2 Community License Agreement"),
    "llama3": (None, _C, "Llama 3 Community License Agreement"),
    "llama3.1": (None, _C, "Llama 3.1 Community License Agreement"),
    "llama3.2": (None, _C, "Llama 3.2 Community License Agreement"),
    "llama3.3": (None, _C, "Llama 3.3 Community License Agreement"),
    "llama4": (None, _C, "Llama 4 Community License Agreement"),
    "grok2-community": (None, _C, "Grok 2 Community License Agreement"),
    "gemma": (None, _C, "Gemma Terms of Use"),
    # `other` means "see license_name / license_link": bespoke terms a person has to read.
    "other": (None, _C, "Other"),
    "unknown": (None, _U, "Unknown"),
}


def _ref(tag: str) -> str:
    """A LicenseRef id for a tag: SPDX idstrings allow letters, digits, '.' and '-' only."""
    cleaned = re.sub(r"[^A-Za-z0-9.\-]+", "-", tag.replace("+", "plus")).strip("-")[:64]
    return f"LicenseRef-hf-{cleaned or 'empty'}"


HUB_LICENSES: Mapping[str, LicenseInfo] = {
    tag: LicenseInfo(tag, spdx or _ref(tag), cls, name, spdx is not None)
    for tag, (spdx, cls, name) in _TABLE.items()
}
"""Every Hub licence tag, resolved."""

SPDX_IDS: frozenset[str] = frozenset(i.spdx_id for i in HUB_LICENSES.values() if i.is_spdx)
"""The SPDX ids this table uses (the only ones an export writes as `license.id`)."""

_BY_SPDX = {i.spdx_id.lower(): i for i in HUB_LICENSES.values()}
_MAX_TAG = 128


def license_info(tag: str | None) -> LicenseInfo:
    """Resolve a licence tag from a model card. Never raises.

    Matches Hub tags and the SPDX or LicenseRef ids of this table case-insensitively. Anything
    else (absent, empty, off the Hub's list) is `unknown`, keeping the tag for the record.
    """
    raw = (tag or "").strip()[:_MAX_TAG]
    key = raw.lower()
    if not key:
        return LicenseInfo("", "LicenseRef-hf-none", _U, "no licence given", False)
    hit = HUB_LICENSES.get(key) or _BY_SPDX.get(key)
    if hit is not None:
        return hit
    return LicenseInfo(raw, _ref(f"unlisted-{raw}"), _U, f"unlisted licence tag {raw!r}", False)


# --------------------------------------------------------------------------------------------
# Policy

Action = Literal["allow", "warn", "deny"]
_ACTIONS: tuple[Action, ...] = ("deny", "warn", "allow")  # precedence, strictest first
_CLASS_NAMES = frozenset(c.value for c in LicenseClass)


@dataclass(frozen=True)
class LicensePolicy:
    """Which licences to refuse, warn about, or accept.

    Each rule names a licence class (`non-commercial`) or one licence (a Hub tag such as
    `llama3.1`, or an SPDX id). A rule naming the licence wins over a rule naming its class, so
    `{"warn": ["custom"], "allow": ["llama3.1"]}` accepts Llama 3.1 quietly; at the same level,
    deny beats warn beats allow. A licence no rule names is allowed.
    """

    deny: frozenset[str] = frozenset()
    warn: frozenset[str] = frozenset()
    allow: frozenset[str] = frozenset()

    @classmethod
    def default(cls) -> LicensePolicy:
        """Refuse nothing; warn about anything a person should read before shipping."""
        return cls(warn=frozenset({"non-commercial", "strong-copyleft", "custom", "unknown"}))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LicensePolicy:
        """Parse the trust store's `licenses` section.

        Raises:
            TrustStoreError: not a mapping of `deny`/`warn`/`allow` to lists of strings.
        """
        if not isinstance(data, Mapping):
            raise TrustStoreError("licence policy must be an object")
        unknown = set(data) - {"deny", "warn", "allow"}
        if unknown:
            raise TrustStoreError(f"licence policy: unknown keys {sorted(map(str, unknown))}")
        rules: dict[str, frozenset[str]] = {}
        for key in ("deny", "warn", "allow"):
            items = data.get(key, [])
            if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
                raise TrustStoreError(f"licence policy: {key!r} must be a list of strings")
            rules[key] = frozenset(i.strip().lower() for i in items)
        return cls(deny=rules["deny"], warn=rules["warn"], allow=rules["allow"])

    def to_dict(self) -> dict[str, list[str]]:
        return {"deny": sorted(self.deny), "warn": sorted(self.warn), "allow": sorted(self.allow)}

    def rule_for(self, info: LicenseInfo) -> tuple[Action, str | None]:
        """The action for one licence and the rule that chose it (None: no rule, allowed)."""
        names = {info.tag.lower(), info.spdx_id.lower()} - {""}
        for action in _ACTIONS:
            hit = sorted(names & self._rules(action))
            if hit:
                return action, f"{action}: {hit[0]}"
        for action in _ACTIONS:
            if info.license_class.value in self._rules(action):
                return action, f"{action}: {info.license_class.value}"
        return "allow", None

    def _rules(self, action: Action) -> frozenset[str]:
        return {"deny": self.deny, "warn": self.warn, "allow": self.allow}[action]


@dataclass(frozen=True)
class LicenseFinding:
    """One licence that applies to the model, where it came from, and what the policy said."""

    info: LicenseInfo
    origin: str  # "model card", or "base model <id>" for inherited obligations
    action: Action
    rule: str | None

    def describe(self) -> str:
        rule = f" (rule {self.rule})" if self.rule else ""
        return (f"{self.info.spdx_id} [{self.info.license_class}] from {self.origin}: "
                f"{self.action}{rule}")


@dataclass(frozen=True)
class LicenseDecision:
    """The verdict for a model: the strictest action over its own and its inherited licences."""

    action: Action
    findings: tuple[LicenseFinding, ...]
    chain: Literal["none", "complete", "unknown"]  # none: the card names no base model
    notes: tuple[str, ...] = field(default=())

    @property
    def primary(self) -> LicenseInfo:
        """The model's own licence (the first one its card gives)."""
        return self.findings[0].info

    @property
    def deciding(self) -> LicenseFinding | None:
        """The first finding with the decision's action, unless everything was allowed."""
        if self.action == "allow":
            return None
        return next(f for f in self.findings if f.action == self.action)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "chain": self.chain,
            "licenses": [
                {"tag": f.info.tag, "id": f.info.spdx_id, "class": f.info.license_class.value,
                 "origin": f.origin, "action": f.action, "rule": f.rule}
                for f in self.findings
            ],
            "notes": list(self.notes),
        }


_MAX_CHAIN = 8  # base_model hops followed; merges of merges stay well under this


def decide_license(
    card: ModelCard,
    policy: LicensePolicy,
    *,
    base_card: ModelCard | Mapping[str, ModelCard] | None = None,
) -> LicenseDecision:
    """Apply `policy` to the card's licences and to those the model inherits. Never raises.

    A fine-tune carries its base model's obligations, so each `base_model` the card names is
    followed: through `base_card` (the card, when the model has a single base), or a mapping from
    repo id to card (which can also cover the bases' own bases). A base whose card is not given
    counts as an `unknown` licence, and the decision notes that the chain is unknown.
    """
    notes: list[str] = []
    findings: list[LicenseFinding] = []

    def judge(of: ModelCard, origin: str) -> None:
        tags: Sequence[str] = of.license
        if of.license_ambiguous:
            # Another reader could see another licence (a duplicated key, a tag, metadata not
            # parsed): every licence read applies, and an unknown one on top of them.
            notes.append(f"{origin}: the licence is ambiguous; applied as unknown as well")
            tags = (*tags, "unknown")
        if len(tags) > 1:
            notes.append(f"{origin} lists {len(tags)} licences; all of them are applied")
        for tag in tags or ("",):
            info = license_info(tag)
            action, rule = policy.rule_for(info)
            findings.append(LicenseFinding(info, origin, action, rule))

    judge(card, "model card")
    cards: Mapping[str, ModelCard]
    if base_card is None:
        cards = {}
    elif isinstance(base_card, Mapping):
        cards = base_card
    else:
        cards = {card.base_model[0]: base_card} if len(card.base_model) == 1 else {}
        if len(card.base_model) > 1:
            notes.append("a single base card was given for several base models; pass a mapping")

    chain: Literal["none", "complete", "unknown"] = "complete" if card.base_model else "none"
    seen: set[str] = set()
    frontier = list(card.base_model)
    for _depth in range(_MAX_CHAIN):
        following: list[str] = []
        for base in (b.strip() for b in frontier):
            if base in seen:
                continue
            seen.add(base)
            origin = f"base model {base}"
            if base in cards:
                judge(cards[base], origin)
                following.extend(cards[base].base_model)
            else:
                chain = "unknown"
                notes.append(f"base model licence chain unknown: no card for {base}")
                findings.append(LicenseFinding(
                    license_info("unknown"), f"{origin} (card not available)",
                    *policy.rule_for(license_info("unknown"))))
        frontier = following
        if not frontier:
            break
    else:
        if frontier:
            chain = "unknown"
            notes.append(f"base model chain longer than {_MAX_CHAIN} hops; not followed further")

    action: Action = next((a for a in _ACTIONS if any(f.action == a for f in findings)), "allow")
    return LicenseDecision(action, tuple(findings), chain, tuple(notes))


def evaluate_license(
    card: ModelCard,
    policy: LicensePolicy,
    *,
    base_card: ModelCard | Mapping[str, ModelCard] | None = None,
) -> LicenseDecision:
    """Like `decide_license`, but a denial raises.

    Raises:
        LicenseRefusedError: a licence of the model or of its base models is denied; the message
            names the licence, where it came from, and the policy rule.
    """
    decision = decide_license(card, policy, base_card=base_card)
    finding = decision.deciding
    if decision.action == "deny" and finding is not None:
        raise LicenseRefusedError(
            f"licence {finding.info.spdx_id} ({finding.info.license_class}) from "
            f"{finding.origin} is refused by the licence policy rule '{finding.rule}'",
            hint="check the licence terms; to accept this licence add it to the policy's 'allow'",
        )
    return decision


def strictest(infos: Iterable[LicenseInfo]) -> LicenseClass:
    """The most restrictive class among `infos` (unknown when there are none)."""
    order = (_N, _S, _C, _U, _W, _P)
    classes = {i.license_class for i in infos}
    return next((c for c in order if c in classes), _U)
