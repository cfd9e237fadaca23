"""The last two steps of every load: the model card's licence policy, and the provenance entry.

A file inside a model directory (a Hugging Face snapshot or a local copy of one) is judged by
that directory's model card; a fine-tune also by its base model's card when that card is in the
local Hugging Face cache (otherwise the record says the licence chain is unknown).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload._internal import consulted
from safeload._internal.cardpath import find_model_card
from safeload._internal.hashing import sha256_path
from safeload._internal.text import get_logger
from safeload.errors import LicenseRefusedError
from safeload.licenses import LicenseDecision, decide_license, evaluate_license
from safeload.trust.decide import is_unsigned_default_note

if TYPE_CHECKING:
    from safeload.modelcard import ModelCard
    from safeload.trust import TrustDecision, TrustStore

_logger = get_logger(__name__)


@dataclass(frozen=True)
class ModelContext:
    card: ModelCard | None
    card_path: Path | None
    license: LicenseDecision | None
    repo: str | None
    revision: str | None
    filename: str | None


def hub_origin(path: Path) -> tuple[str, str, str] | None:
    """(repo id, commit, file) when `path` lies in a Hugging Face cache snapshot (by layout).

    Raises:
        UnsafePathError: a snapshot whose name is not a commit and resolves to none.
    """
    from safeload._internal.hubpath import hub_file, resolve_commit

    hf = hub_file(path)
    return None if hf is None else (hf.repo_id, resolve_commit(hf), hf.filename)


MAX_SIGNED_CARD_BYTES = 16 << 20


def _base_cards(card: ModelCard, store: TrustStore) -> dict[str, ModelCard]:
    """Cards of the base models that are in the local Hugging Face cache (never the network),
    each checked as a file of its own repo (review K): where the base is signed, its card must
    be the one its signature lists, or a cache writer could lift a denial its licence states.

    Raises:
        SafeloadError: as `check_load` for the base card (audit mode: warnings).
    """
    import hashlib

    from safeload._internal.opened import OpenedFile
    from safeload.modelcard import parse_model_card
    from safeload.trust import check_load

    out: dict[str, ModelCard] = {}
    if card.base_model:
        consulted.opaque("a base model's card is read from the Hub cache")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a declared dependency
        return out
    for base in card.base_model:
        try:
            found = try_to_load_from_cache(base, "README.md")
        except Exception:  # noqa: BLE001 - a malformed repo id in a card is the card's problem
            continue
        if not isinstance(found, str):
            continue
        origin = hub_origin(Path(found))
        try:
            with OpenedFile.open(found) as f:
                if f.size > MAX_SIGNED_CARD_BYTES:
                    raise OSError(f"over {MAX_SIGNED_CARD_BYTES} bytes")
                f.copy_privately()
                data = bytes(f.mapping())
        except OSError as exc:
            _logger.warning("base model card %s unreadable (%s); ignored", found, exc)
            continue
        if origin is not None:
            check_load(Path(found), sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                       store=store, repo=origin[0], revision=origin[1], filename=origin[2],
                       record=False, content=data)
        out[base] = parse_model_card(data)
    return out


def _signed_card(card_path: Path, decision: TrustDecision, store: TrustStore) -> ModelCard | None:
    """The card the signature of the weights lists, parsed from bytes that same signature (the
    very bytes the weights were verified with) vouches for. A listed card that cannot be read,
    is too large to check, or does not match is refused (audit mode: warned, None): weights
    would otherwise escape the licence it states (review K).

    Raises:
        DigestMismatchError, ManifestMismatchError: the card is not the one signed.
        SignatureError: the signature changed since the weights were verified.
    """
    import hashlib

    from safeload._internal.opened import OpenedFile
    from safeload.modelcard import parse_model_card
    from safeload.trust import check_load

    assert decision.signature_path is not None
    signature = Path(decision.signature_path)
    try:
        with OpenedFile.open(card_path) as f:
            if f.size > MAX_SIGNED_CARD_BYTES:
                _unusable_signed_card(card_path, signature, store,
                                      f"it is over {MAX_SIGNED_CARD_BYTES} bytes")
                return None
            f.copy_privately()
            data = bytes(f.mapping())
    except OSError as exc:
        _unusable_signed_card(card_path, signature, store, f"it cannot be read ({exc})")
        return None
    checked = check_load(card_path, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                         store=store, signature=signature, record=False, content=data,
                         signature_sha256=decision.signature_sha256)
    if not checked.signed:  # audit mode: warned, and used as it is
        _logger.warning("model card %s: %s", card_path, "; ".join(checked.warnings))
    return parse_model_card(data)


def _read_card(path: Path) -> ModelCard:
    from safeload.modelcard import read_model_card  # YAML only when there is a card

    return read_model_card(path)


def _listed_card(signature: Path, weights: Path, store: TrustStore,
                 signature_sha256: str | None) -> Path | None:
    """The model card the signature vouches for, for weights at `weights`: the nearest
    README.md it lists in the weights' folder or one above it, up to the signature's folder
    (reviews I and J: the card found on disk may be another, unsigned one)."""
    from safeload.trust.check import signed_paths

    root = Path(os.path.abspath(signature)).parent
    here = Path(os.path.abspath(weights)).parent
    listed = signed_paths(signature, store, signature_sha256)
    while True:
        rel = os.path.relpath(here / "README.md", root).replace(os.sep, "/")
        if rel in listed:
            return here / "README.md"
        if here == root or root not in here.parents:
            return None
        here = here.parent


def _unusable_signed_card(card: Path, signature: Path, store: TrustStore, why: str) -> None:
    """Raises ManifestMismatchError (audit mode: warns): a card the signature lists cannot be
    used, so weights would escape the licence it states."""
    from safeload.errors import ManifestMismatchError

    if store.policy.mode == "audit":
        _logger.warning("audit mode, not refusing: %s is listed by %s and %s", card,
                        signature, why)
        return
    raise ManifestMismatchError(
        f"{card}: the signature {signature} lists this model card, and {why}",
        hint="restore the card (its licence applies to these weights), or fetch the "
             "model again", missing=(card.name,))


def _no_card(path: Path | None, store: TrustStore) -> None:
    """No model card vouches for the weights: their licence is unknown. A policy that denies
    `unknown` refuses (review P-2: deleting the card got past it); nothing is warned (most
    local checkpoints have no card).

    Raises:
        LicenseRefusedError: the policy denies an unknown licence.
    """
    from safeload.modelcard import ModelCard

    decision = decide_license(ModelCard(no_header=True), store.policy.licenses)
    if decision.action == "deny" and decision.deciding is not None:
        what = path if path is not None else "bytes with no file name (a stream)"
        raise LicenseRefusedError(
            f"{what}: no model card vouches for these weights, so their licence is unknown, "
            f"and the licence policy rule '{decision.deciding.rule}' refuses that",
            hint="put the model's card (README.md) beside the weights, or take 'unknown' off "
                 "the policy's 'deny' list" if path is not None else
                 "load the file by its path, beside its model card (README.md), or take "
                 "'unknown' off the policy's 'deny' list")


def model_context(path: Path | None, store: TrustStore, *,
                  origin: tuple[str, str, str] | None = None,
                  located: bool = False, signed: TrustDecision | None = None) -> ModelContext:
    """Read the model card next to `path` and apply the licence policy.

    `origin` (repo, commit, file) when the caller already knows the Hub file; `located` when
    the caller already decided it (None then means a local file: not decided again). `signed`:
    the weights' trust decision; when they are signed, the card must be too (`_signed_card`).

    Raises:
        LicenseRefusedError: the licence (or a base model's) is denied by the policy.
        UnsafePathError: see `hub_origin`.
        DigestMismatchError: the signature of the weights lists the card with other bytes.
    """
    if origin is None and path is not None and not located:
        origin = hub_origin(path)
    repo, rev, fname = origin if origin else (None, None, None)
    card_path = find_model_card(path) if path is not None else None
    card: ModelCard | None = None
    if signed is not None and signed.signed and signed.signature_path and path is not None:
        signature = Path(signed.signature_path)
        listed = _listed_card(signature, path, store, signed.signature_sha256)
        if listed is not None:
            if not os.path.isfile(listed):
                _unusable_signed_card(listed, signature, store, "it is missing or not a file")
            else:
                card = _signed_card(listed, signed, store)  # the digest must match
        if card_path is not None and card_path != listed:
            # A card nobody vouches for can still only make the decision stricter: its
            # denial holds (the load is refused), its allowance does not.
            unvouched = _read_card(card_path)
            evaluate_license(unvouched, store.policy.licenses,
                             base_card=_base_cards(unvouched, store))
        if card is None:
            _no_card(path, store)
            return ModelContext(None, None, None, repo, rev, fname)
        card_path = listed
    elif card_path is None:
        # (bytes with no name too, review S-4: a BytesIO of a non-commercial model got past a
        # policy denying unknown licences)
        _no_card(path, store)
        return ModelContext(None, None, None, repo, rev, fname)
    else:
        card = _read_card(card_path)
    for w in card.warnings:
        _logger.warning("model card %s: %s", card_path, w)
    decision = evaluate_license(card, store.policy.licenses, base_card=_base_cards(card, store))
    # A README with no metadata block says nothing about a licence: recorded as unknown (and
    # refused if the policy denies unknown), but not warned about on every load.
    if decision.action == "warn" and decision.deciding is not None and not card.no_header:
        _logger.warning("licence: %s", decision.deciding.describe())
    return ModelContext(card, card_path, decision, repo, rev, fname)


def record(*, action: str, path: str, sha256: str, size: int, fmt: str,
           decision: TrustDecision | None, context: ModelContext | None,
           store: TrustStore, converted: dict[str, Any] | None = None,
           output: tuple[str, str, int] | None = None,
           receipt: list[tuple[Path, bytes]] | None = None) -> None:
    """Append one provenance entry; an unwritable ledger fails closed in strict mode only.

    `converted` is the sandbox report of a conversion (the entry then lists the safetensors
    output, `output` = (path, sha256, size), with the original pickle as `converted_from`).

    Raises:
        ProvenanceError: strict mode and the ledger cannot be written.
    """
    from safeload.provenance import (
        ConvertedFrom,
        FileRecord,
        LicenseRecord,
        ProvenanceEntry,
        PublisherRecord,
        SignatureRecord,
        Source,
        TrustRecord,
        record_or_warn,
        store_record,
    )

    ctx = context
    if ctx is not None and ctx.repo and ctx.revision:
        source = Source.huggingface(ctx.repo, ctx.revision, ctx.filename)
    else:
        source = Source.local(path)
    files: list[FileRecord] = []
    converted_from = None
    if converted is not None and output is not None:
        files.append(FileRecord(output[0], output[1], output[2], "safetensors"))
        layers = tuple(converted.get("layers", {}).get("applied", []))
        converted_from = ConvertedFrom(sha256, fmt, layers, path)
    else:
        files.append(FileRecord(path, sha256, size, fmt))
    signed = bool(decision and decision.signed)
    signature = SignatureRecord(
        "verified" if signed else "unsigned",
        decision.publisher if decision else None,
        decision.key_id if decision else None,
        decision.method if decision else None,
        decision.keyless if decision else None,
        bool(decision and decision.reupload))
    trust = TrustRecord(store.policy.mode, decision.pin if decision else "none",
                        store_record(store.state_digest(), store.origin))
    card = ctx.card if ctx else None
    # The default policy's "unsigned" note is what `signature` and `trust.mode` already say.
    warnings = [w for w in decision.warnings if not is_unsigned_default_note(w)] \
        if decision else []
    if ctx is not None and ctx.license is not None:
        warnings.extend(ctx.license.notes)
    namespace = ctx.repo.split("/", 1)[0] if ctx and ctx.repo and "/" in ctx.repo else None
    entry = ProvenanceEntry(
        action=action,
        source=source,
        files=tuple(files),
        converted_from=converted_from,
        signature=signature,
        trust=trust,
        license=LicenseRecord.from_card(card) if card is not None else None,
        datasets=tuple(card.datasets) if card else (),
        base_model=tuple(card.base_model) if card else (),
        publisher=PublisherRecord(namespace, bool(decision and decision.publisher), signed),
        task=card.pipeline_tag if card else None,
        warnings=tuple(warnings),
    )
    record_or_warn(entry, strict=store.policy.mode == "strict", receipt=receipt)


def record_verification(target: Path, result: Any, store: TrustStore) -> ModelContext:
    """The provenance entry of a `safeload verify`, with the model card's licence decision.

    Raises:
        LicenseRefusedError: the model's licence is denied by the policy.
        ProvenanceError: strict mode and the ledger cannot be written.
    """
    from safeload.provenance import (
        FileRecord,
        LicenseRecord,
        ProvenanceEntry,
        PublisherRecord,
        SignatureRecord,
        Source,
        TrustRecord,
        record_or_warn,
        store_record,
    )

    ctx = model_context(target / "config.json" if target.is_dir() else target, store)
    files = []
    sha256_manifest = result.hash_type == "sha256" and result.serialization == "files"
    names = sorted(result.files) if sha256_manifest else sorted(
        {n.rsplit(":", 2)[0] if result.serialization == "shards" else n for n in result.files})
    for name in names:
        p = target / name if target.is_dir() and name != "." else target
        # The ledger speaks sha256: other manifests (blake2b, blake3, shards) get one more pass.
        digest = result.files[name] if sha256_manifest else sha256_path(p)
        files.append(FileRecord(str(p), digest, p.stat().st_size, "file"))
    card = ctx.card
    entry = ProvenanceEntry(
        action="verify",
        source=Source.local(target),
        files=tuple(files),
        signature=SignatureRecord("verified", result.publisher, result.key_id, result.method,
                                  _keyless_summary(result.keyless)),
        trust=TrustRecord(store.policy.mode, "none",
                          store_record(store.state_digest(), store.origin)),
        license=LicenseRecord.from_card(card) if card is not None else None,
        datasets=tuple(card.datasets) if card else (),
        base_model=tuple(card.base_model) if card else (),
        publisher=PublisherRecord(None, result.publisher is not None, True),
        task=card.pipeline_tag if card else None,
        warnings=tuple(ctx.license.notes) if ctx.license else (),
    )
    record_or_warn(entry, strict=store.policy.mode == "strict")
    return ctx


def _keyless_summary(k: Any) -> dict[str, Any] | None:
    if k is None:
        return None
    from safeload.signing.keyless import summary

    return summary(k)
