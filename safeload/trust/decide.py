"""The trust decision as a pure function: facts in, a decision and the observations to write out.

python-tuf's trusted-metadata-set split: `check.py` (the I/O shell) finds and verifies the
signature, reads the store and the observations, and hands everything over as one frozen
`LoadFacts`; `decide` reads nothing, writes nothing and logs nothing. It runs the policy steps
in order, each a small named object with one rule:

    Revoked              a revoked digest (every mode, audit included)
    RevisionLocked       a Hub repo with a revision lock loads only at the locked commits
    Pinned               a pinned digest (user pin or first-use pin) must match
    SignatureVerifies    a signature that is present must verify and cover this file
    NamespaceBinding     a namespace owned by a signing publisher needs its signature
    NoSilentDowngrade    a location once loaded signed is refused unsigned
    StrictNeedsSignature strict mode needs a trusted signature

In audit mode every step but `Revoked` is wrapped in `AuditOnly`, which turns the step's
refusal into a warning, except a `RevokedError` (a revoked signing key found by
`SignatureVerifies`): revocations are refused in every mode.

The first refusal is raised (the exception types of `check_load`'s docstring). Otherwise the
`Decision` carries the `TrustDecision` for provenance and what to record: a first-use pin and a
"was signed" location, which the shell writes to `trust.observed.json`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from safeload._internal.text import safe_text
from safeload.errors import (
    DigestMismatchError,
    RevisionLockError,
    RevokedError,
    SafeloadError,
    SignatureError,
    UntrustedPublisherError,
)
from safeload.trust._schema import COMMIT
from safeload.trust.model import Mode, Pin, Publisher
from safeload.trust.observations import Observations, SignedRecord
from safeload.trust.store import TrustStore

if TYPE_CHECKING:
    from safeload.signing.verify import SignedManifest

PinState = Literal["hit", "new", "none", "mismatch"]


@dataclass(frozen=True)
class TrustDecision:
    """Why a load was allowed; what the provenance record stores.

    `pin` is "hit" (matched a pin), "new" (pinned now, on first use), "none" (not pinned), or
    "mismatch" (audit mode only: the pin did not match and the load went on with a warning).
    """

    mode: Mode
    signed: bool
    publisher: str | None
    key_id: str | None
    method: str | None  # "key" | "certificate" | "sigstore" | None
    identity: str | None
    pin: PinState
    warnings: tuple[str, ...]
    sha256: str
    signature_path: str | None = None
    signature_sha256: str | None = None
    subject_digest: str | None = None
    # A valid signature by a trusted publisher on a Hub repo outside its namespaces: the bytes
    # are the publisher's, the repository is not (a re-upload).
    reupload: bool = False
    keyless: dict[str, Any] | None = None  # `signing.keyless.summary` of a keyless signature

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "reupload": self.reupload, "keyless": self.keyless,
            "mode": self.mode, "signed": self.signed, "publisher": self.publisher,
            "key_id": self.key_id, "method": self.method, "identity": self.identity,
            "pin": self.pin, "warnings": list(self.warnings), "sha256": self.sha256,
            "signature_path": self.signature_path, "signature_sha256": self.signature_sha256,
            "subject_digest": self.subject_digest,
        }


# ------------------------------------------------------------------------------------------
# facts


@dataclass(frozen=True)
class HubOrigin:
    """Where Hub content comes from: the repo id, the commit (if known), the repo-relative name."""

    repo: str
    revision: str | None
    filename: str


@dataclass(frozen=True)
class SignatureFacts:
    """What the shell found: the signature's path and location, and either the verified
    manifest (it covers this file with this digest) or why it failed. Both None: unsigned."""

    path: str | None = None
    location: str | None = None  # the "was signed" location: the model directory or one file
    verified: SignedManifest | None = None
    failure: SafeloadError | None = None
    keyless: dict[str, Any] | None = None  # `signing.keyless.summary` of a keyless signature


@dataclass(frozen=True)
class LoadFacts:
    """Everything the decision depends on. `local_path` is the resolved path of a local file
    and `lexical_path` the absolute path it was loaded by (both are pin targets and give "was
    signed" locations: a file swapped for a link to other bytes keeps the pins and records of
    the name it replaced, review K); `hub` is set for Hub content instead."""

    sha256: str
    shown: str  # the file as messages show it (already escaped)
    store: TrustStore
    observations: Observations
    signature: SignatureFacts
    first_seen: str  # the time a new "was signed" record gets
    hub: HubOrigin | None = None
    local_path: str | None = None
    pin_local: bool | None = None
    lexical_path: str | None = None

    @property
    def mode(self) -> Mode:
        return self.store.policy.mode

    @property
    def signed(self) -> SignedManifest | None:
        return self.signature.verified

    @property
    def pin_target(self) -> tuple[str, ...] | None:
        """What a pin of this file is about; None for Hub content without a revision."""
        if self.hub is not None:
            if self.hub.revision is None:
                return None
            return Pin(self.sha256, repo=self.hub.repo, revision=self.hub.revision,
                       file=self.hub.filename).target
        return ("path", self.local_path or "")

    @property
    def pin_targets(self) -> list[tuple[str, ...]]:
        """Every target a pin of this file may be recorded under: the pin target, and for a
        local file loaded through a link, the name it was loaded by."""
        target = self.pin_target
        if target is None:
            return []
        lexical = ("path", self.lexical_path) if self.hub is None and self.lexical_path else None
        return [target] if lexical in (None, target) else [target, lexical]

    @property
    def pins(self) -> list[Pin]:
        """The user's pins of this file, else its first-use pins, one per target."""
        found = (self.store.find_pin(t) or self.observations.find_pin(t)
                 for t in self.pin_targets)
        return [p for p in found if p is not None]

    @property
    def pinned(self) -> Pin | None:
        """A pin of this file that does not match, else any pin of it."""
        pins = self.pins
        wrong = [p for p in pins if p.sha256 != self.sha256]
        return (wrong or pins)[0] if pins else None

    @property
    def locations(self) -> frozenset[str]:
        """Every location whose "was signed" record applies to this load."""
        if self.hub is not None:
            return frozenset({f"hf:{self.hub.repo.casefold()}"})
        out: set[str] = set()
        for path in {self.local_path or "", self.lexical_path or self.local_path or ""}:
            p = PurePath(path)
            out |= {f"file:{d}" for d in p.parents} | {f"file:{p}"}
        return frozenset(out)

    @property
    def owners(self) -> list[Publisher]:
        return self.store.owners_of(self.hub.repo) if self.hub is not None else []


# ------------------------------------------------------------------------------------------
# the steps


@dataclass(frozen=True)
class Outcome:
    """A step's word: refuse, or (audit mode) a refusal waived into a warning, or nothing."""

    refusal: SafeloadError | None = None
    waived: SafeloadError | None = None


class Step(Protocol):
    """One policy rule over the facts."""

    @property
    def name(self) -> str: ...
    def check(self, facts: LoadFacts) -> Outcome: ...


class _Rule(ABC):
    """A step that refuses or not; `check` wraps `refusal` into an `Outcome`."""

    name: ClassVar[str] = ""

    @abstractmethod
    def refusal(self, facts: LoadFacts) -> SafeloadError | None:
        """The step's refusal of these facts, or None."""

    def check(self, facts: LoadFacts) -> Outcome:
        return Outcome(refusal=self.refusal(facts))


def revoked_digest(store: TrustStore, sha: str, shown: str) -> RevokedError | None:
    """The refusal of a revoked digest, if it is revoked (shared with `check_bytes`)."""
    rev = store.digest_revocation(sha)
    if rev is None:
        return None
    why = f" ({safe_text(rev.reason)})" if rev.reason else ""
    return RevokedError(f"{shown} has revoked digest sha256:{sha}{why}",
                        hint="this exact file is known bad; do not load it")


class Revoked(_Rule):
    name = "revoked"

    def refusal(self, facts: LoadFacts) -> SafeloadError | None:
        return revoked_digest(facts.store, facts.sha256, facts.shown)


class RevisionLocked(_Rule):
    name = "revision lock"

    def refusal(self, facts: LoadFacts) -> SafeloadError | None:
        if facts.hub is None:
            return None
        lock = facts.store.revision_lock(facts.hub.repo)
        if lock is None or facts.hub.revision in lock.revisions:
            return None
        return RevisionLockError(
            f"{safe_text(facts.hub.repo)} is locked to revision(s) {', '.join(lock.revisions)}; "
            f"refusing {safe_text(facts.hub.revision or '(unknown revision)')}",
            hint="load one of the locked commits, or update the lock")


class Pinned(_Rule):
    name = "pinned"

    def refusal(self, facts: LoadFacts) -> SafeloadError | None:
        pinned = facts.pinned
        if pinned is None or pinned.sha256 == facts.sha256:
            return None
        return DigestMismatchError(facts.shown, f"sha256:{pinned.sha256}",
                                   f"sha256:{facts.sha256}")


class SignatureVerifies(_Rule):
    name = "present signature verifies"

    def refusal(self, facts: LoadFacts) -> SafeloadError | None:
        return facts.signature.failure


class NamespaceBinding(_Rule):
    name = "namespace binding"

    def refusal(self, facts: LoadFacts) -> SafeloadError | None:
        owners, signed = facts.owners, facts.signed
        if facts.hub is None or not owners:
            return None
        if signed is not None and signed.publisher in {o.name for o in owners}:
            return None
        names = ", ".join(safe_text(o.name) for o in owners)
        repo, fname = safe_text(facts.hub.repo), safe_text(facts.hub.filename)
        if signed is None:
            return SignatureError(
                f"{repo} is in a namespace of publisher {names}, and {fname} has no valid "
                "signature by it",
                hint="download the publisher's model.sig with the model, or remove the "
                     "namespace from the publisher if it does not sign")
        return UntrustedPublisherError(f"{repo} belongs to publisher {names}, but {fname} is "
                                       f"signed by {safe_text(signed.publisher)}")


class NoSilentDowngrade(_Rule):
    name = "no silent downgrade"

    def refusal(self, facts: LoadFacts) -> SafeloadError | None:
        if facts.signed is not None:
            return None
        prior = sorted((s for s in facts.observations.signed if s.location in facts.locations),
                       key=lambda s: s.location)
        if not prior:
            return None
        first = prior[0]
        return SignatureError(
            f"{facts.shown} has no valid signature, but {safe_text(first.location)} was loaded "
            f"signed by {safe_text(first.publisher)} on {first.first_seen}",
            hint="restore its model.sig; if the publisher stopped signing on purpose: "
                 f"safeload trust forget {safe_text(first.location)}")


class StrictNeedsSignature(_Rule):
    name = "strict needs a signature"

    def refusal(self, facts: LoadFacts) -> SafeloadError | None:
        if facts.mode != "strict" or facts.signed is not None:
            return None
        return SignatureError(f"{facts.shown}: strict mode requires a signature by a "
                              "publisher in the trust store",
                              hint="sign it (safeload sign) and trust the key, or relax the "
                                   "policy: safeload trust policy --mode default")


@dataclass(frozen=True)
class AuditOnly:
    """Audit mode: the wrapped step's refusal becomes a warning, except a revocation."""

    step: Step

    @property
    def name(self) -> str:
        return f"audit({self.step.name})"

    def check(self, facts: LoadFacts) -> Outcome:
        inner = self.step.check(facts)
        if inner.refusal is None or isinstance(inner.refusal, RevokedError):
            return inner
        return Outcome(waived=inner.refusal)


CHECKS: tuple[Step, ...] = (RevisionLocked(), Pinned(), SignatureVerifies(), NamespaceBinding(),
                            NoSilentDowngrade(), StrictNeedsSignature())


def policy_steps(mode: Mode, checks: Sequence[Step] = CHECKS) -> tuple[Step, ...]:
    """The steps in order: `Revoked` first and never waived, the rest audit-wrapped in audit
    mode."""
    if mode == "audit":
        return (Revoked(), *(AuditOnly(s) for s in checks))
    return (Revoked(), *checks)


def run_steps(steps: Sequence[Step], facts: LoadFacts) -> tuple[SafeloadError, ...]:
    """Raise the first refusal; return the waived ones (audit mode) in order."""
    waived: list[SafeloadError] = []
    for step in steps:
        outcome = step.check(facts)
        if outcome.refusal is not None:
            raise outcome.refusal
        if outcome.waived is not None:
            waived.append(outcome.waived)
    return tuple(waived)


# ------------------------------------------------------------------------------------------
# the decision


@dataclass(frozen=True)
class Decision:
    """The decision, and what the shell should record in `trust.observed.json`.

    `trust.pin` is "new" when `new_pin` is set: the shell reports "none" instead when it could
    not record the pin. `waived` are the refusals audit mode let through (for the log).
    """

    trust: TrustDecision
    new_pin: Pin | None = None
    new_record: SignedRecord | None = None
    waived: tuple[SafeloadError, ...] = field(default=())


# The note on an unsigned file loaded under the default policy. It says nothing the decision's
# fields do not (signed False, mode "default"): the ledger leaves it out and a process shows it
# for its first two such files only, so a loop over a dataset is not a wall of warnings.
UNSIGNED_DEFAULT_NOTE = ("is unsigned; loaded because no trusted publisher claims it "
                         "(policy mode default)")


def is_unsigned_default_note(warning: str) -> bool:
    return warning.endswith(UNSIGNED_DEFAULT_NOTE)


def decide(facts: LoadFacts) -> Decision:
    """Apply the policy to the facts. Pure: reads and writes nothing.

    Raises:
        RevokedError, RevisionLockError, DigestMismatchError, SignatureError,
        UntrustedPublisherError, ManifestMismatchError, UnsupportedSignatureError: the first
        step that refuses (in audit mode only RevokedError).
    """
    waived = run_steps(policy_steps(facts.mode), facts)
    warnings = [f"audit: would refuse: {exc}" for exc in waived]
    reupload = _reupload(facts)
    if reupload is not None:
        warnings.append(reupload)
    if facts.signed is None and not warnings:
        warnings.append(f"{facts.shown} {UNSIGNED_DEFAULT_NOTE}")
    new_pin, pin_warnings = _first_use_pin(facts)
    warnings.extend(pin_warnings)
    pinned = facts.pinned
    state: PinState = "new" if new_pin is not None else "none" if pinned is None else \
        "hit" if pinned.sha256 == facts.sha256 else "mismatch"
    return Decision(trust=_trust_decision(facts, state, tuple(warnings), reupload is not None),
                    new_pin=new_pin, new_record=_signed_record(facts), waived=waived)


def _reupload(facts: LoadFacts) -> str | None:
    """A warning when a trusted publisher signed these bytes for a repo outside its namespaces."""
    signed, hub = facts.signed, facts.hub
    if hub is None or signed is None or signed.publisher is None:
        return None
    pub = facts.store.publisher(signed.publisher)
    if pub is None or pub.owns(hub.repo):
        return None
    return (f"re-upload: {safe_text(hub.filename)} is signed by publisher "
            f"{safe_text(signed.publisher)}, but {safe_text(hub.repo)} is not one of its "
            "namespaces (the bytes are the publisher's, the repository is not)")


def _first_use_pin(facts: LoadFacts) -> tuple[Pin | None, list[str]]:
    """The pin to record on first use, and why a Hub file is not pinned."""
    hub, policy = facts.hub, facts.store.policy
    warnings: list[str] = []
    if hub is not None and hub.revision is None:
        warnings.append("not pinned: no revision given for Hub content")
    target = facts.pin_target
    if facts.pinned is not None or target is None:
        return None, warnings
    if hub is not None:
        if not policy.pin_hub_on_first_use:
            return None, warnings
        if hub.revision is not None and COMMIT.fullmatch(hub.revision):
            return Pin(facts.sha256, repo=hub.repo, revision=hub.revision,
                       file=hub.filename), warnings
        warnings.append(f"not pinned: revision {safe_text(hub.revision)} is not a commit hash")
        return None, warnings
    pin_local = facts.pin_local if facts.pin_local is not None else policy.pin_local_files
    # Pinned under the name it was loaded by: a link later re-pointed (or the file swapped for
    # a link) is a mismatch of that name's pin, whatever it now resolves to.
    return (Pin(facts.sha256, path=facts.pin_targets[-1][1]) if pin_local else None), warnings


def _signed_record(facts: LoadFacts) -> SignedRecord | None:
    """A "was signed" record for a location not yet recorded."""
    signed = facts.signed
    if signed is None or signed.publisher is None:
        return None
    if facts.hub is not None:
        loc = f"hf:{facts.hub.repo.casefold()}"
    else:
        loc = facts.signature.location or f"file:{facts.local_path}"
    if any(s.location == loc for s in facts.observations.signed):
        return None
    return SignedRecord(loc, signed.publisher, signed.key_id, facts.first_seen)


def _trust_decision(facts: LoadFacts, pin: PinState, warnings: tuple[str, ...],
                    reupload: bool) -> TrustDecision:
    signed = facts.signed
    if signed is None:
        return TrustDecision(mode=facts.mode, signed=False, publisher=None, key_id=None,
                             method=None, identity=None, pin=pin, warnings=warnings,
                             sha256=facts.sha256, reupload=reupload)
    return TrustDecision(
        mode=facts.mode, signed=True, publisher=signed.publisher, key_id=signed.key_id,
        method=signed.method, identity=signed.identity, pin=pin, warnings=warnings,
        sha256=facts.sha256, signature_path=facts.signature.path,
        signature_sha256=signed.signature_sha256,
        subject_digest=signed.manifest.subject_digest, reupload=reupload,
        keyless=facts.signature.keyless)


__all__ = [
    "CHECKS", "AuditOnly", "Decision", "HubOrigin", "LoadFacts", "NamespaceBinding",
    "NoSilentDowngrade", "Outcome", "Pinned", "RevisionLocked", "Revoked", "SignatureFacts",
    "SignatureVerifies", "Step", "StrictNeedsSignature", "TrustDecision", "UNSIGNED_DEFAULT_NOTE",
    "decide", "is_unsigned_default_note",
    "policy_steps", "revoked_digest", "run_steps",
]
