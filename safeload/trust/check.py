"""`check_load` and `check_bytes`: the I/O shell around the pure trust decision (`decide.py`).

The shell gathers the facts (the store's observations; the signature beside the file, found,
verified against the store as the verifier's trust anchors, and checked to cover this file
with the digest it was loaded with), calls `decide`, and writes what the decision says to
record (first-use pins, "was signed" locations) to `trust.observed.json`.

No re-open by path during a load: when the caller passes `content` (the bytes it holds, from
the one descriptor it loads from), a signature whose manifest needs another hash or shards is
checked against those bytes; only without `content` is the file opened again (and its SHA-256
recomputed in the same pass, so a file replaced in between is refused).

May import: `trust.{model,store,observations,decide}`, errors, `_internal.text`; the signature
verifier (`signing.verify`, `signing._tree`, `signing.keyless`) only inside the functions that
check a signature, so cryptography stays unloaded for unsigned loads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload._internal import consulted
from safeload._internal.hubpath import physical_path
from safeload._internal.text import get_logger, safe_text
from safeload.errors import (
    DigestMismatchError,
    ManifestMismatchError,
    RevisionLockError,
    SafeloadError,
    SignatureError,
    TrustStoreError,
    UnsafePathError,
    UnsupportedSignatureError,
    VerificationError,
)
from safeload.trust._files import observed_path
from safeload.trust._schema import REPO, SHA256, format_time
from safeload.trust.decide import (
    Decision,
    HubOrigin,
    LoadFacts,
    SignatureFacts,
    TrustDecision,
    decide,
    revoked_digest,
)
from safeload.trust.observations import Observations, load_observations, observe
from safeload.trust.store import TrustStore

if TYPE_CHECKING:
    from safeload.signing.verify import SignedManifest, VerificationResult

_logger = get_logger("safeload.trust")

Content = bytes | bytearray | memoryview  # also an mmap: anything memoryview() accepts

_SIG_CACHE_TTL_S = 600.0  # certificate validity is checked against "now": re-check regularly
_SIG_CACHE_MAX = 64
_sig_cache: dict[tuple[str, str, str], tuple[float, SignedManifest]] = {}
_sig_cache_lock = threading.Lock()


def _verified_signature(sig_path: Path, store: TrustStore,
                        expect_sha256: str | None = None) -> SignedManifest:
    """`signing.verify_signature_bytes` with the store as trust anchors, and a small in-process
    cache keyed by the signature bytes and the store's state, so loading N shards checks one
    signature once. `expect_sha256`: the signature must be these bytes (the ones the weights
    were verified with), not whatever another signature file now says (review K)."""
    from safeload.signing import verify  # cryptography: only once a signature is met

    data = verify.read_signature(sig_path)
    digest = hashlib.sha256(data).hexdigest()
    if expect_sha256 is not None and digest != expect_sha256:
        raise SignatureError(
            f"{safe_text(sig_path)} changed during the load: it is not the signature the "
            "weights were verified with", hint="load again once the model folder is settled")
    key = (str(sig_path.absolute()), digest, store.state_digest())
    now = time.monotonic()
    with _sig_cache_lock:
        hit = _sig_cache.get(key)
        if hit is not None and now - hit[0] < _SIG_CACHE_TTL_S:
            return hit[1]
    result = verify.verify_signature_bytes(data, signature_path=sig_path, trust_store=store)
    with _sig_cache_lock:
        if len(_sig_cache) >= _SIG_CACHE_MAX:
            _sig_cache.pop(next(iter(_sig_cache)))
        _sig_cache[key] = (now, result)
    return result


# ------------------------------------------------------------------------------------------
# finding the signature


def _snapshot_root(path: Path) -> Path | None:
    """For a Hugging Face cache path `.../snapshots/<rev>/a/b.bin`, the `<rev>` directory."""
    parts = path.absolute().parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i - 1] == "snapshots":
            return Path(*parts[: i + 1])
    return None


@dataclass(frozen=True)
class _FoundSignature:
    path: Path
    root: Path  # the model directory the manifest's names are relative to
    location: str  # what a "was signed" record is about: the model directory, or one file


def _find_signature(path: Path, explicit: Path | None) -> _FoundSignature | None:
    """`<file>.sig` (a single-file model), else `model.sig` beside the file, else (Hub cache)
    `model.sig` in a parent up to the snapshot root. An explicit signature's directory is the
    model root when it contains the file; otherwise the file's own directory is."""
    # Beside the entry the kernel opens (review S-3: `link/..` is not spelled away).
    here = Path(physical_path(path) or os.path.abspath(path))
    if explicit is not None:
        sig_dir = Path(os.path.abspath(explicit)).parent
        root = sig_dir if sig_dir in here.parents else here.parent
        return _FoundSignature(explicit, root, f"file:{root.resolve()}")
    # os.path first: most files have no signature, and this runs on every load.
    single = str(here) + ".sig"
    consulted.note_target(single)  # a signature that appears later changes the decision
    if os.path.isfile(single):
        return _FoundSignature(Path(single), here.parent, f"file:{path.resolve()}")
    dirs = [here.parent]
    snap = _snapshot_root(here)
    if snap is not None:
        d = here.parent
        while d != snap and snap in d.parents:
            d = d.parent
            dirs.append(d)
    for d in dirs:
        consulted.note_target(os.path.join(d, "model.sig"))
        if os.path.isfile(os.path.join(d, "model.sig")):
            return _FoundSignature(d / "model.sig", d, f"file:{d.resolve()}")
    return None


def _hub_filename(path: Path) -> str:
    snap = _snapshot_root(path)
    if snap is not None:
        with contextlib.suppress(ValueError):
            return path.absolute().relative_to(snap).as_posix()
    return path.name


# ------------------------------------------------------------------------------------------
# the loaded file against the verified manifest


def _hash_content(content: Content, ranges: Sequence[tuple[int, int]],
                  factory: Callable[[], Any]) -> tuple[list[str], str]:
    """Digests of byte ranges of the held bytes, and the SHA-256 of all of them (one pass)."""
    view = memoryview(content).cast("B")
    whole = hashlib.sha256()
    out: list[str] = []
    step = 8 << 20
    for start, end in ranges:
        h = factory()
        for pos in range(start, end, step):
            chunk = view[pos:min(end, pos + step)]
            h.update(chunk)
            whole.update(chunk)
        out.append(h.hexdigest())
    return out, whole.hexdigest()


def _hash_path(path: Path, size: int, ranges: list[tuple[int, int]],
               factory: Callable[[], Any]) -> tuple[list[str], str]:
    """The same, re-reading the file by path (no held bytes): refuses a file whose size
    changed; the caller compares the SHA-256 with the one it loaded."""
    from safeload.signing._tree import hash_fd_ranges, open_regular

    fd = open_regular(path, follow_symlinks=True)
    try:
        if os.fstat(fd).st_size != size:
            raise DigestMismatchError(safe_text(path), f"{size} bytes",
                                      f"{os.fstat(fd).st_size} bytes (the file changed)")
        digests, whole = hash_fd_ranges(fd, ranges, factory, also_sha256=True)
    finally:
        os.close(fd)
    assert whole is not None
    return digests, whole


def _check_loaded_file(signed: SignedManifest, path: Path, found: _FoundSignature,
                       sha256: str, size: int, content: Content | None) -> None:
    """The loaded file is covered by the verified manifest with the digest it was loaded with.

    Partial verification: only this file is checked (each file is checked when it is loaded);
    `safeload verify` checks a whole directory, extra and missing files included.
    """
    from safeload.signing._tree import hasher_factory, shard_ranges

    manifest = signed.manifest
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(found.root)).as_posix()
    except ValueError:
        rel = path.name
    entries = signed.resources_for(rel) or (signed.resources_for(".")
                                            if rel == path.name else [])
    if not entries:
        raise ManifestMismatchError(
            f"{safe_text(path)} is not covered by the signature {safe_text(found.path)}",
            hint="the file was added after signing; remove it or ask the publisher to re-sign",
            extra=(rel,))
    if manifest.method == "files" and manifest.hash_type == "sha256":
        if entries[0].digest != sha256:
            raise DigestMismatchError(safe_text(path), f"sha256:{entries[0].digest}",
                                      f"sha256:{sha256}")
        return
    # Another hash or shards: hash the bytes, and tie what we hash to what was loaded by
    # computing its SHA-256 in the same pass.
    factory = hasher_factory(manifest.hash_type)
    if manifest.method == "files":
        ranges = [(0, size)]
    else:
        ranges = shard_ranges(size, manifest.shard_size or size or 1)
        if sorted(ranges) != sorted((e.start or 0, e.end or 0) for e in entries):
            raise ManifestMismatchError(
                f"{safe_text(path)}: the signed shards do not cover the file (size changed)")
        entries = sorted(entries, key=lambda e: e.start or 0)
    if content is not None:
        digests, whole = _hash_content(content, ranges, factory)
    else:
        digests, whole = _hash_path(path, size, ranges, factory)
    if whole != sha256:
        raise DigestMismatchError(safe_text(path), f"sha256:{sha256} (as loaded)",
                                  f"sha256:{whole} (the file changed while it was checked)")
    for entry, digest in zip(entries, digests, strict=True):
        if entry.digest != digest:
            raise DigestMismatchError(safe_text(path), f"{manifest.hash_type}:{entry.digest}",
                                      f"{manifest.hash_type}:{digest}")


def _signature_facts(path: Path, explicit: Path | None, store: TrustStore, sha: str,
                     size: int, content: Content | None,
                     signature_sha256: str | None = None) -> SignatureFacts:
    """Find the signature, verify it against the store, check it covers this file."""
    if explicit is not None and not explicit.is_file():
        return SignatureFacts(failure=SignatureError(f"no signature at {safe_text(explicit)}"))
    found = _find_signature(path, explicit)
    if found is None:
        return SignatureFacts()
    where = SignatureFacts(path=str(found.path), location=found.location)
    try:
        signed = _verified_signature(found.path, store, signature_sha256)
        _check_loaded_file(signed, path, found, sha, size, content)
    except (VerificationError, UnsupportedSignatureError, UnsafePathError) as exc:
        return replace(where, failure=exc)
    except OSError as exc:
        return replace(where, failure=SignatureError(
            f"cannot read {safe_text(found.path)}: {exc}"))
    keyless = None
    if signed.keyless is not None:
        from safeload.signing.keyless import summary

        keyless = summary(signed.keyless)
    return replace(where, verified=signed, keyless=keyless)


# ------------------------------------------------------------------------------------------
# check_load


def _normal_sha(sha256: str) -> str:
    sha = sha256.lower().removeprefix("sha256:")
    if not SHA256.fullmatch(sha):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    return sha


def check_load(
    path: Path,
    *,
    sha256: str,
    size: int,
    store: TrustStore,
    repo: str | None = None,
    revision: str | None = None,
    filename: str | None = None,
    signature: Path | None = None,
    pin_local: bool | None = None,
    record: bool = True,
    content: Content | None = None,
    signature_sha256: str | None = None,
) -> TrustDecision:
    """Decide whether the bytes of `path` (whose SHA-256 the caller computed from the very handle
    it will load from) may be loaded, under `store`'s policy.

    `repo`/`revision` identify Hub content (`revision` should be the commit hash); `filename`
    overrides the repo-relative name (default: derived from a cache `snapshots/<rev>/` path, else
    the basename). `signature` overrides where the signature is looked for (default:
    `<file>.sig`, `model.sig` beside the file, `model.sig` in the Hub snapshot root).
    `pin_local` pins a local file on first use (default: the policy's `pin_local_files`).
    `record=False` leaves `trust.observed.json` untouched (dry runs). `content` is the bytes
    the caller holds (e.g. its mapping of the file): a signature check that must hash the file
    hashes these instead of opening `path` again. `signature_sha256`: the signature must be
    exactly these bytes (a model card checked against the signature its weights were).

    Raises:
        RevokedError: the digest, or the signing key, is revoked (every mode).
        DigestMismatchError: a pin, or the signed digest, does not match.
        RevisionLockError: the revision is not one the lock allows.
        SignatureError: a present signature does not verify; strict mode without a signature;
            content once loaded signed is now unsigned; a bound namespace without a signature.
        UntrustedPublisherError: signed by a key/identity the store does not trust, or by a
            publisher other than the one owning the repo's namespace.
        ManifestMismatchError: the file is not covered by the signature next to it.
        UnsupportedSignatureError: a signature safeload cannot check (could not decide).
        TrustStoreError: the observations file is unusable.
        ValueError: `sha256` or `repo` is malformed, or `content` is not `size` bytes.
        (In audit mode only RevokedError and TrustStoreError are raised; the rest become
        warnings.)
    """
    sha = _normal_sha(sha256)
    path = Path(path)
    shown = safe_text(path)
    if content is not None and memoryview(content).nbytes != size:
        raise ValueError(f"content holds {memoryview(content).nbytes} bytes, not size={size}")
    # A revoked file is refused before anything else is read (decide checks it again).
    early = revoked_digest(store, sha, shown)
    if early is not None:
        raise early
    hub = None
    if repo is not None:
        if not REPO.fullmatch(repo):
            raise ValueError(f"not a Hugging Face repo id: {safe_text(repo)}")
        hub = HubOrigin(repo, revision, filename or _hub_filename(path))
    facts = LoadFacts(
        sha256=sha, shown=shown, store=store, observations=load_observations(store),
        signature=_signature_facts(path, signature, store, sha, size, content,
                                   signature_sha256),
        first_seen=format_time(dt.datetime.now(dt.timezone.utc)) or "", hub=hub,
        local_path=None if hub is not None else os.path.realpath(path), pin_local=pin_local,
        lexical_path=None if hub is not None else os.path.abspath(path))
    decision = decide(facts)
    for exc in decision.waived:
        _logger.warning("audit mode, not refusing: %s", exc)
    return _record(decision, store, record=record)


def _record(decision: Decision, store: TrustStore, *, record: bool) -> TrustDecision:
    """Write the first-use pin and "was signed" location; a failure to write is a warning."""
    trust = decision.trust
    pin, rec = decision.new_pin, decision.new_record
    if not record or (pin is None and rec is None):
        return trust  # a dry run reports the pin it would make as "new"
    if store.path is None:
        return _not_recorded(trust, "not recorded: the trust store has no file (in-memory "
                                    "store)")
    try:
        Observations.update(store.path, lambda o: observe(o, pin, rec))
    except (TrustStoreError, OSError) as exc:
        _logger.warning("could not record to %s: %s", observed_path(store.path), exc)
        return _not_recorded(trust, f"could not record the first-use pin / signed location: "
                                    f"{exc}")
    return trust


def _not_recorded(trust: TrustDecision, warning: str) -> TrustDecision:
    return replace(trust, pin="none" if trust.pin == "new" else trust.pin,
                   warnings=(*trust.warnings, warning))


# ------------------------------------------------------------------------------------------
# check_bytes


def check_bytes(
    name: str,
    *,
    sha256: str,
    store: TrustStore,
    repo: str | None = None,
    revision: str | None = None,
    anonymous: bool = False,
) -> TrustDecision:
    """`check_load` for bytes without a file (a stream, `io.BytesIO`, bytes under `guard()`).

    `anonymous`: bytes a library read from a file it did not name (transformers' and diffusers'
    `disable_mmap` under `guard()`). They may be any file's, so while the store has a rule tied
    to a file's identity (a namespace binding, a revision lock, a pin, a signed location), they
    are refused unless their digest is pinned: the rule cannot be shown not to apply.

    Every rule that can be applied to bytes is: revocation (every mode); a digest that is
    pinned anywhere counts as a pin hit (bytes have no target a pin could mismatch); with a Hub
    origin (the stream's name is a cache path), the revision lock, the namespace binding and
    the no-downgrade rule, which all need a signature that bytes cannot carry, so they refuse;
    strict mode refuses, because it cannot check a signature. Audit mode turns all but
    revocation into warnings. Nothing is recorded (no first-use pin: there is no target).

    Raises:
        RevokedError, RevisionLockError, SignatureError: as `check_load`.
    """
    sha = sha256.lower().removeprefix("sha256:")
    mode = store.policy.mode
    shown = safe_text(name)
    revoked = revoked_digest(store, sha, shown)
    if revoked is not None:
        raise revoked
    observed = load_observations(store)
    warnings: list[str] = []
    for exc in _stream_refusals(shown, store, observed, repo, revision):
        if mode != "audit":
            raise exc
        warnings.append(f"audit: would refuse: {exc}")
        _logger.warning("audit mode, not refusing: %s", exc)
    pinned = any(p.sha256 == sha for p in (*store.pins, *observed.pins))
    if anonymous and not pinned and mode != "audit":
        bound = _identity_rules(store, observed)
        if bound:
            raise SignatureError(
                f"{shown}: a library passed bytes it read from a file it did not name, and the "
                f"trust store has rules tied to files ({bound}) that cannot be checked on them",
                hint="load by path: with transformers or diffusers, do not pass "
                "disable_mmap=True (off hf-mount), so the file itself is verified")
    if not warnings:
        warnings.append(f"{shown} is unsigned (bytes from a stream, no signature can be "
                        f"checked); loaded under policy mode {mode}")
    return TrustDecision(mode=mode, signed=False, publisher=None, key_id=None, method=None,
                         identity=None, pin="hit" if pinned else "none",
                         warnings=tuple(warnings), sha256=sha)


_NO_SIG = "pass the file's path instead of a stream, so its signature can be checked"


def check_blob_path(path: str | os.PathLike[str], repo: str, store: TrustStore) -> None:
    """A blob of `repo`'s Hub cache loaded by its own path (`hubpath.hub_origin`): it names no
    revision or file, so revision locks, namespace bindings and Hub pins of its repo could not
    be applied; refused while the store has such a rule for that repo (review X).

    Raises:
        UnsafePathError: the store has a rule for the blob's repo.
    """
    folded = repo.casefold()
    pins = (*store.pins, *load_observations(store).pins)
    if store.revision_lock(repo) or store.owners_of(repo) or any(
            (p.repo or "").casefold() == folded for p in pins):
        raise UnsafePathError(
            f"{safe_text(os.fspath(path))}: a blob of the Hugging Face cache of "
            f"{safe_text(repo)}, which the trust store has rules for; a blob names no revision "
            "or file, so they cannot be applied",
            hint="load the file through its snapshot entry (snapshots/<commit>/<name>) or "
                 "with safeload.from_pretrained")


def _identity_rules(store: TrustStore, observed: Observations) -> str:
    """The kinds of rule in the store that name files or repos (empty: none)."""
    kinds = [what for what, present in (
        ("namespace bindings", any(p.binds and p.namespaces for p in store.publishers)),
        ("revision locks", bool(store.revision_locks)),
        ("pins", bool(store.pins or observed.pins)),
        ("signed locations", bool(observed.signed))) if present]
    return ", ".join(kinds)


def _stream_refusals(shown: str, store: TrustStore, observed: Observations, repo: str | None,
                     revision: str | None) -> list[SafeloadError]:
    """What refuses bytes that cannot carry a signature, in `check_load`'s order."""
    out: list[SafeloadError] = []
    if repo is not None:
        lock = store.revision_lock(repo)
        if lock is not None and revision not in lock.revisions:
            out.append(RevisionLockError(
                f"{shown}: {safe_text(repo)} is locked to revision(s) "
                f"{', '.join(lock.revisions)}; refusing {safe_text(revision or '(unknown)')}",
                hint="load one of the locked commits, or update the lock"))
        owners = store.owners_of(repo)
        if owners:
            out.append(SignatureError(
                f"{shown}: {safe_text(repo)} is in a namespace of publisher "
                f"{', '.join(safe_text(o.name) for o in owners)}, and bytes read from a stream "
                "carry no signature safeload can check", hint=_NO_SIG))
        prior = [s for s in observed.signed if s.location == f"hf:{repo.casefold()}"]
        if prior:
            out.append(SignatureError(
                f"{shown}: {safe_text(repo)} was loaded signed by "
                f"{safe_text(prior[0].publisher)}; a stream carries no signature", hint=_NO_SIG))
    if store.policy.mode == "strict":
        out.append(SignatureError(f"{shown}: strict mode requires a signature by a publisher "
                                  "in the trust store, and bytes read from a stream cannot be "
                                  "checked against one", hint=_NO_SIG))
    return out


# ------------------------------------------------------------------------------------------
# the old default-store call form of the verifier


def verify_with_store(model_dir: str | os.PathLike[str],
                      signature_path: str | os.PathLike[str] | None = None, *,
                      trust_store: TrustStore | None = None, **kwargs: Any
                      ) -> VerificationResult:
    """`signing.verify_model`, loading the default trust store when none is given and no
    one-off key or root is (what `verify_model` did before it was handed its anchors).

    Raises:
        TrustStoreError: the default store is unusable; otherwise as `signing.verify_model`.
    """
    from safeload.signing import verify  # cryptography: only when verifying

    store = trust_store
    if store is None and kwargs.get("key") is None and kwargs.get("certificate_chain") is None:
        store = TrustStore.load()
    return verify.verify_model(model_dir, signature_path, trust_store=store, **kwargs)


def signed_paths(signature_path: Path, store: TrustStore,
                 signature_sha256: str | None = None) -> frozenset[str]:
    """The file names a signature that verifies against `store` lists (relative to its
    folder), from the same in-process cache the loads use; `signature_sha256` as `check_load`.

    Raises:
        VerificationError, UnsupportedSignatureError: as `check_load` for that signature.
    """
    signed = _verified_signature(signature_path, store, signature_sha256)
    return frozenset(r.path for r in signed.manifest.resources)


__all__ = ["check_bytes", "check_load", "signed_paths", "verify_with_store"]
