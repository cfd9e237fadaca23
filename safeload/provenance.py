"""The provenance ledger: one hash-chained JSON line per load, conversion and verification.

Public and stable: `ProvenanceEntry` (and its parts), `record`, `record_or_warn`, `verify`,
`VerifyReport`, `read_ledger`, `LedgerRecord`, `require_intact`. The line format is versioned
(`"v": 1`). No torch import, and nothing here reads the environment except `SAFELOAD_HOME`
(through `ledger_dir()`) and the secret scrubbing described below.

Layout, under `safeload._internal.paths.ledger_dir()` (or the `ledger` argument):

- `ledger.jsonl`: one canonical JSON object per line, `{"digest", "entry", "prev", "seq", "v"}`
  (plus `repair` when the writer cleaned up after a crash). `digest` is the SHA-256 of the line's
  canonical encoding without `digest`; `prev` is the previous line's digest (zeros for the first).
  Lines must be byte-for-byte canonical, so no edit survives, not even a duplicated JSON key that
  another parser would read differently.
- `HEAD`: `{"digest", "seq", "v"}` of the last entry, replaced atomically after each append. It
  is kept apart so a cut-off ledger shows; print it (`safeload provenance verify`) and keep it
  elsewhere to anchor the chain, since anyone who can rewrite this folder can rewrite both.
- `ledger.lock`: the writers' lock. `torn/`: fragments of interrupted writes, kept as evidence.

Writing (`record`): take the lock (a `filelock` flock, plus a thread lock); read the last line
and check that it and `HEAD` agree; append the new line with one `write` on an `O_APPEND`
descriptor; fdatasync it; replace `HEAD`. Writers therefore never interleave. One sync per
record: the ledger's, which also orders the two files (HEAD is replaced only once the entry it
names is on disk, so HEAD is never ahead of the ledger). HEAD itself is made durable only when
it is created; a power loss may undo later HEAD updates, which leaves HEAD behind, and behind
verifies.

Crash safety. A process killed at any point leaves one of these states, all of which verify:
- nothing written; or the line complete but `HEAD` not yet replaced (`HEAD` behind: verify
  notes it; the next writer moves it on);
- a torn last line (a kill or a full disk mid-`write` leaves a prefix without its newline).
  Decision: a line without its newline was never acknowledged (`record` had not returned), so it
  is not an entry. `verify` reports it as a torn tail and still passes. The next writer, under
  the lock, moves the fragment to `torn/`, truncates the ledger back to the last newline, and
  notes the repair (fragment size and digest) inside the entry it appends, so the repair is
  itself on the chain.
A cut-off ledger is not mistaken for a crash: `HEAD` then names an entry that is gone.
Anything else (an edited, deleted or reordered entry; `HEAD` pointing past the end, elsewhere in
the chain, or missing) is damage: `verify` names the first bad entry. Writers check the chain's
end (the last entry's own digest, and `HEAD`) and refuse to append to a damaged end rather than
bury the damage under new entries; damage further back is `verify`'s job (O(n), not per load).

Never recorded: tokens, credentials, environment variables. Entries contain no environment
fields, and before writing every string is scrubbed of credential-shaped text (Hub, GitHub, AWS
tokens, `Bearer ...`, URL passwords and signed-URL parameters) and of the values of environment
variables named like secrets; each scrub is noted in the entry's warnings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import stat
import threading
import warnings as _warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import filelock

from safeload._internal import paths
from safeload._version import __version__
from safeload.errors import LedgerIntegrityError, ProvenanceError, ProvenanceWarning

if TYPE_CHECKING:
    from safeload.modelcard import ModelCard

__all__ = [
    "ACTIONS",
    "BadEntry",
    "ConvertedFrom",
    "FileRecord",
    "LedgerRecord",
    "LedgerState",
    "LicenseRecord",
    "ProvenanceEntry",
    "PublisherRecord",
    "SignatureRecord",
    "Source",
    "TrustRecord",
    "VerifyReport",
    "hf_purl",
    "parse_time",
    "read_ledger",
    "record",
    "record_or_warn",
    "require_intact",
    "verify",
]

_logger = logging.getLogger(__name__)

LEDGER_NAME = "ledger.jsonl"
HEAD_NAME = "HEAD"
LOCK_NAME = "ledger.lock"
TORN_DIR = "torn"
LINE_VERSION = 1
GENESIS = "sha256:" + "0" * 64
MAX_ENTRY_BYTES = 1 << 20  # one entry; a model with thousands of shards stays far below
LOCK_TIMEOUT = 60.0  # seconds; a writer holds the lock for about a millisecond
# filelock polls a non-blocking flock; its 50 ms default turns every contended write into 50 ms.
LOCK_POLL = 0.002

ACTIONS = ("load", "from_pretrained", "convert", "verify", "scan")
SIGNATURE_STATUSES = ("verified", "unsigned", "failed")
PIN_STATES = ("hit", "new", "none")
LICENSE_CLASSES = ("permissive", "weak-copyleft", "strong-copyleft", "non-commercial", "custom",
                   "unknown")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# Fault injection for tests: called with a step name between the steps of a write.
_fault_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _fault_hook is not None:
        _fault_hook(name)


# --------------------------------------------------------------------------------------------
# Entries


def _bad(msg: str) -> ProvenanceError:
    return ProvenanceError(f"invalid provenance entry: {msg}")


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    return value


def _req_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"{key} must be a non-empty string")
    return value


def _str_tuple(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{key} must be a list of strings")
    return tuple(value)


def _mapping(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(f"{key} must be an object")
    return value


def _check_sha256(value: str, what: str) -> None:
    if not _HEX64.fullmatch(value):
        raise _bad(f"{what} must be 64 lowercase hex digits")


@dataclass(frozen=True)
class Source:
    """Where the model came from: a local `path`, or a Hub `purl` plus the `file` in the repo."""

    path: str | None = None
    purl: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if not self.path and not self.purl:
            raise _bad("source needs a path or a purl")
        if self.purl is not None and not self.purl.startswith("pkg:"):
            raise _bad("source purl must start with 'pkg:'")

    @classmethod
    def local(cls, path: str | os.PathLike[str]) -> Source:
        return cls(path=os.path.abspath(os.fspath(path)))

    @classmethod
    def huggingface(cls, repo_id: str, revision: str, file: str | None = None) -> Source:
        """`pkg:huggingface/<ns>/<name>@<revision>`; the revision should be a commit hash."""
        return cls(purl=hf_purl(repo_id, revision), file=file)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "purl": self.purl, "file": self.file}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Source:
        return cls(_opt_str(data, "path"), _opt_str(data, "purl"), _opt_str(data, "file"))


def hf_purl(repo_id: str, revision: str | None = None) -> str:
    """The package URL of a Hub model (purl type `huggingface`; commit hashes lowercased)."""
    parts = [p for p in repo_id.strip("/").split("/") if p]
    if not parts or len(parts) > 2:
        raise _bad(f"not a Hub repo id: {repo_id!r}")
    purl = "pkg:huggingface/" + "/".join(quote(p, safe=".-_~") for p in parts)
    if revision:
        rev = revision.lower() if re.fullmatch(r"[0-9a-fA-F]{40}", revision) else revision
        purl += "@" + quote(rev, safe=".-_~")
    return purl


@dataclass(frozen=True)
class FileRecord:
    """One file the action read or wrote."""

    path: str
    sha256: str
    size: int
    format: str

    def __post_init__(self) -> None:
        _check_sha256(self.sha256, "files[].sha256")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise _bad("files[].size must be a non-negative integer")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size,
                "format": self.format}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileRecord:
        size = data.get("size")
        if not isinstance(size, int):
            raise _bad("files[].size must be an integer")
        return cls(_req_str(data, "path"), _req_str(data, "sha256"), size,
                   _req_str(data, "format"))


@dataclass(frozen=True)
class ConvertedFrom:
    """The original a converted file was made from, and the sandbox layers that applied."""

    sha256: str
    format: str
    sandbox_layers: tuple[str, ...] = ()
    path: str | None = None

    def __post_init__(self) -> None:
        _check_sha256(self.sha256, "converted_from.sha256")

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "format": self.format,
                "sandbox_layers": list(self.sandbox_layers), "path": self.path}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConvertedFrom:
        return cls(_req_str(data, "sha256"), _req_str(data, "format"),
                   _str_tuple(data, "sandbox_layers"), _opt_str(data, "path"))


@dataclass(frozen=True)
class SignatureRecord:
    """The signature check: `verified`, `unsigned` or `failed`, and by whom."""

    status: str = "unsigned"
    publisher: str | None = None
    key_id: str | None = None
    method: str | None = None
    # Keyless (sigstore method) only: `signing.keyless.summary`, plus `reupload` when a
    # trusted publisher's bytes come from a repo outside its namespaces.
    keyless: Mapping[str, Any] | None = None
    reupload: bool = False

    def __post_init__(self) -> None:
        if self.status not in SIGNATURE_STATUSES:
            raise _bad(f"signature.status must be one of {', '.join(SIGNATURE_STATUSES)}")
        if self.keyless is not None and not isinstance(self.keyless, Mapping):
            raise _bad("signature.keyless must be an object")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "publisher": self.publisher,
                               "key_id": self.key_id, "method": self.method}
        # Omitted when absent: entries written before these fields hash as they did.
        if self.keyless is not None:
            out["keyless"] = dict(self.keyless)
        if self.reupload:
            out["reupload"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignatureRecord:
        reupload = data.get("reupload", False)
        if not isinstance(reupload, bool):
            raise _bad("signature.reupload must be a boolean")
        return cls(_req_str(data, "status"), _opt_str(data, "publisher"),
                   _opt_str(data, "key_id"), _opt_str(data, "method"),
                   data.get("keyless"), reupload)


@dataclass(frozen=True)
class TrustRecord:
    """The trust decision: the policy mode, and whether a digest pin was hit, made or absent."""

    mode: str = "default"
    pin: str = "none"

    def __post_init__(self) -> None:
        if self.pin not in PIN_STATES:
            raise _bad(f"trust.pin must be one of {', '.join(PIN_STATES)}")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "pin": self.pin}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustRecord:
        return cls(_req_str(data, "mode"), _req_str(data, "pin"))


@dataclass(frozen=True)
class LicenseRecord:
    """The licence: SPDX id (or `LicenseRef-...`), its class, where it was read (`source`)."""

    id: str
    license_class: str
    source: str  # "model card", "base model card", "none", ...
    name: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if self.license_class not in LICENSE_CLASSES:
            raise _bad(f"license.class must be one of {', '.join(LICENSE_CLASSES)}")

    @classmethod
    def from_card(cls, card: ModelCard) -> LicenseRecord:
        """From a `ModelCard`: its licence tags resolved (several are joined with AND)."""
        from safeload.licenses import license_info, strictest

        infos = [license_info(t) for t in card.license] or [license_info(None)]
        ident = " AND ".join(i.spdx_id for i in infos)
        name = card.license_name if card.license_name else "; ".join(i.name for i in infos)
        return cls(ident, strictest(infos).value, "model card" if card.license else "none",
                   name, card.license_link)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "class": self.license_class, "source": self.source,
                "name": self.name, "url": self.url}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LicenseRecord:
        return cls(_req_str(data, "id"), _req_str(data, "class"), _req_str(data, "source"),
                   _opt_str(data, "name"), _opt_str(data, "url"))


@dataclass(frozen=True)
class PublisherRecord:
    """Who published a Hub model: the namespace, whether trusted, whether its signature held."""

    namespace: str | None = None
    trusted: bool = False
    signature_verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "trusted": self.trusted,
                "signature_verified": self.signature_verified}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PublisherRecord:
        trusted, verified = data.get("trusted"), data.get("signature_verified")
        if not isinstance(trusted, bool) or not isinstance(verified, bool):
            raise _bad("publisher.trusted and publisher.signature_verified must be booleans")
        return cls(_opt_str(data, "namespace"), trusted, verified)


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    """An entry's `time` (RFC 3339, UTC) as an aware datetime.

    Raises:
        ValueError: not an RFC 3339 timestamp.
    """
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    return parsed


@dataclass(frozen=True)
class ProvenanceEntry:
    """One ledger entry: what safeload did, to what, and what it decided.

    `time` and `safeload_version` default to now and this version. Strings from model cards and
    files are stored as data; show them with `safeload._internal.text.safe_text`.
    """

    action: str
    source: Source
    files: tuple[FileRecord, ...] = ()
    converted_from: ConvertedFrom | None = None
    signature: SignatureRecord = field(default_factory=SignatureRecord)
    trust: TrustRecord = field(default_factory=TrustRecord)
    license: LicenseRecord | None = None
    datasets: tuple[str, ...] = ()
    base_model: tuple[str, ...] = ()
    publisher: PublisherRecord | None = None
    task: str | None = None
    warnings: tuple[str, ...] = ()
    time: str = field(default_factory=_utc_now)
    safeload_version: str = __version__

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise _bad(f"action must be one of {', '.join(ACTIONS)}")
        try:
            parse_time(self.time)
        except (ValueError, TypeError, AttributeError):
            raise _bad("time must be an RFC 3339 UTC timestamp") from None
        for name in ("files", "datasets", "base_model", "warnings"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "safeload_version": self.safeload_version,
            "action": self.action,
            "source": self.source.to_dict(),
            "files": [f.to_dict() for f in self.files],
            "converted_from": self.converted_from.to_dict() if self.converted_from else None,
            "signature": self.signature.to_dict(),
            "trust": self.trust.to_dict(),
            "license": self.license.to_dict() if self.license else None,
            "datasets": list(self.datasets),
            "base_model": list(self.base_model),
            "publisher": self.publisher.to_dict() if self.publisher else None,
            "task": self.task,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProvenanceEntry:
        """Build and validate an entry. Unknown keys are ignored (newer writers may add some).

        Raises:
            ProvenanceError: a field is missing or malformed.
        """
        data = _mapping(data, "entry")
        files = data.get("files") or []
        if not isinstance(files, list):
            raise _bad("files must be a list")
        conv, lic, pub = data.get("converted_from"), data.get("license"), data.get("publisher")
        kwargs: dict[str, Any] = {}
        if data.get("time") is not None:
            kwargs["time"] = _req_str(data, "time")
        if data.get("safeload_version") is not None:
            kwargs["safeload_version"] = _req_str(data, "safeload_version")
        return cls(
            action=_req_str(data, "action"),
            source=Source.from_dict(_mapping(data.get("source"), "source")),
            files=tuple(FileRecord.from_dict(_mapping(f, "files[]")) for f in files),
            converted_from=ConvertedFrom.from_dict(_mapping(conv, "converted_from"))
            if conv is not None else None,
            signature=SignatureRecord.from_dict(_mapping(data.get("signature"), "signature"))
            if data.get("signature") is not None else SignatureRecord(),
            trust=TrustRecord.from_dict(_mapping(data.get("trust"), "trust"))
            if data.get("trust") is not None else TrustRecord(),
            license=LicenseRecord.from_dict(_mapping(lic, "license")) if lic is not None else None,
            datasets=_str_tuple(data, "datasets"),
            base_model=_str_tuple(data, "base_model"),
            publisher=PublisherRecord.from_dict(_mapping(pub, "publisher"))
            if pub is not None else None,
            task=_opt_str(data, "task"),
            warnings=_str_tuple(data, "warnings"),
            **kwargs,
        )


# --------------------------------------------------------------------------------------------
# Scrubbing secrets

_REDACTED = "<redacted>"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), _REDACTED),  # Hugging Face user tokens
    (re.compile(r"\bapi_org_[A-Za-z0-9]{20,}"), _REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), _REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), _REDACTED),  # AWS access key ids
    (re.compile(r"(?i:\bbearer\s+[A-Za-z0-9._~+/-]{8,}=*)"), "Bearer " + _REDACTED),
    (re.compile(r"(?i:\b([a-z][a-z0-9+.-]*://)[^/\s@:]*:[^/\s@]*@)"), r"\1" + _REDACTED + "@"),
    (re.compile(r"(?i:([?&](?:token|access_token|api_key|apikey|key|sig|signature|password"
                r"|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&#\s]+)"),
     r"\1" + _REDACTED),
)
# One pass to rule out the common case (no match at all) before the substitutions.
_ANY_SECRET = re.compile("|".join(f"(?:{p.pattern})" for p, _ in _SECRET_PATTERNS))
_SECRET_ENV_NAME = re.compile(
    r"(?i)(token|secret|passw|credential|api_?key|access_?key|private_?key|auth)")
_MIN_SECRET_LEN = 8


def _secret_env_values() -> list[str]:
    return sorted(
        (v for k, v in os.environ.items()
         if _SECRET_ENV_NAME.search(k) and len(v) >= _MIN_SECRET_LEN
         and not os.path.isabs(v)),  # SSH_AUTH_SOCK and the like are paths, not secrets
        key=len, reverse=True)


def _scrub(value: Any, where: str, env_secrets: Sequence[str], found: list[str]) -> Any:
    if isinstance(value, str):
        out = value
        for secret in env_secrets:
            if secret in out:
                out = out.replace(secret, _REDACTED)
        if _ANY_SECRET.search(out):
            for pattern, replacement in _SECRET_PATTERNS:
                out = pattern.sub(replacement, out)
        if out != value:
            found.append(where)
        return out
    if isinstance(value, dict):
        return {k: _scrub(v, f"{where}.{k}" if where else k, env_secrets, found)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, f"{where}[]", env_secrets, found) for v in value]
    return value


def _scrub_entry(payload: dict[str, Any]) -> dict[str, Any]:
    """The entry dict with credential-shaped strings redacted, each redaction noted."""
    found: list[str] = []
    clean: dict[str, Any] = _scrub(payload, "", _secret_env_values(), found)
    if found:
        notes = [f"redacted a credential-like string from {w}" for w in dict.fromkeys(found)]
        clean["warnings"] = list(clean.get("warnings") or []) + notes
        _logger.warning("provenance: %s", "; ".join(notes))
    return clean


# --------------------------------------------------------------------------------------------
# The line format


def _canonical(obj: Mapping[str, Any]) -> bytes:
    """The one byte encoding of a JSON object: sorted keys, no spaces, ASCII only.

    ASCII-only also means no raw newline or U+2028 can split a line.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _digest(body: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()


def _seal(body: dict[str, Any]) -> tuple[bytes, str]:
    """The full line (with newline) for a body without `digest`, and that digest."""
    digest = _digest(body)
    return _canonical({**body, "digest": digest}) + b"\n", digest


@dataclass(frozen=True)
class _Line:
    seq: int
    prev: str
    digest: str
    body: dict[str, Any]


def _parse_line(raw: bytes) -> _Line:
    """One ledger line (without its newline), checked in isolation.

    Raises:
        ValueError: with the reason (not JSON, not canonical, bad digest, missing fields).
    """
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError(f"line longer than {MAX_ENTRY_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("not a JSON object") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    try:
        canonical = _canonical(obj)
    except (ValueError, TypeError):
        raise ValueError("not canonical JSON") from None
    if canonical != raw:
        raise ValueError("not in canonical form (the line was edited)")
    digest = obj.pop("digest", None)
    seq, prev = obj.get("seq"), obj.get("prev")
    if obj.get("v") != LINE_VERSION:
        raise ValueError(f"unknown line version {obj.get('v')!r}")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError("missing or malformed digest")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError("missing or malformed seq")
    if not isinstance(prev, str) or not _DIGEST.fullmatch(prev):
        raise ValueError("missing or malformed prev")
    if not isinstance(obj.get("entry"), dict):
        raise ValueError("missing entry")
    if _digest(obj) != digest:
        raise ValueError("digest mismatch (the entry was edited)")
    return _Line(seq, prev, digest, obj)


@dataclass(frozen=True)
class _Head:
    seq: int  # -1: no head file (yet), or its content was lost
    digest: str
    lost: bool = False  # the file exists but is empty or zeros: a power loss artifact


def _read_head(directory: Path) -> _Head:
    """The head file; (-1, GENESIS) when there is none.

    Raises:
        ValueError: the head file exists but is malformed.
    """
    try:
        raw = (directory / HEAD_NAME).read_bytes()
    except FileNotFoundError:
        return _Head(-1, GENESIS)
    if not raw.strip(b"\0"):
        # A rename that reached the disk before the file's data did: nothing to check against.
        return _Head(-1, GENESIS, lost=True)
    if len(raw) > 4096:
        raise ValueError("head file too large")
    try:
        obj = json.loads(raw)
    except ValueError:
        raise ValueError("head file is not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("head file is not a JSON object")
    seq, digest = obj.get("seq"), obj.get("digest")
    if (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0
            or not isinstance(digest, str) or not _DIGEST.fullmatch(digest)):
        raise ValueError("head file is malformed")
    return _Head(seq, digest)


# --------------------------------------------------------------------------------------------
# Writing

_THREAD_LOCK = threading.Lock()  # flock is per open file; threads of one process share this


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_head(directory: Path, seq: int, digest: str, *, durable: bool) -> None:
    """Replace HEAD atomically (temp file, rename).

    Made durable (fsync of the file and the folder) only when HEAD is created or recreated. A
    later update that a power loss undoes leaves HEAD behind the ledger, which verifies; HEAD can
    never get ahead of it, because the ledger is synced before HEAD is replaced.
    """
    tmp = directory / (HEAD_NAME + ".tmp")
    data = _canonical({"digest": digest, "seq": seq, "v": LINE_VERSION}) + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        _write_fully(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    _step("head-tmp-written")
    os.replace(tmp, directory / HEAD_NAME)
    _step("head-replaced")
    if durable:
        _fsync_dir(directory)


_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _pread_full(fd: int, size: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


_TAIL_CAP = 2 * MAX_ENTRY_BYTES + 2  # the last whole line plus a torn fragment of the next


def _read_tail(fd: int, size: int) -> tuple[int, bytes | None, bytes]:
    """(end of the last whole line, that line without newline or None, torn bytes after it).

    Reads backwards from the end in a growing window, so a record costs one small read however
    long the ledger is. Returns end -1 when the end of the file cannot be ledger lines (a line or
    fragment longer than any entry).
    """
    window = 1 << 16
    while True:
        width = min(size, window)
        start = size - width
        buf = _pread_full(fd, width, start)
        nl = buf.rfind(b"\n")
        if nl >= 0:
            prev_nl = buf.rfind(b"\n", 0, nl)
            if prev_nl >= 0 or start == 0:
                torn = buf[nl + 1 :]
                if len(torn) > MAX_ENTRY_BYTES:
                    return -1, None, b""
                return start + nl + 1, buf[prev_nl + 1 : nl], torn
        elif start == 0:
            return (0, None, buf) if len(buf) <= MAX_ENTRY_BYTES else (-1, None, b"")
        if width >= _TAIL_CAP:
            return -1, None, b""
        window *= 4


def _quarantine(directory: Path, offset: int, fragment: bytes) -> str:
    """Keep a torn fragment as evidence; returns its sha256."""
    digest = hashlib.sha256(fragment).hexdigest()
    torn = directory / TORN_DIR
    torn.mkdir(mode=0o700, exist_ok=True)
    name = torn / f"{offset:012d}-{digest[:16]}.frag"
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        _write_fully(fd, fragment)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest


_START_OVER = ("run `safeload provenance verify` to see what is wrong; to start a new ledger, move "
               "the whole provenance folder aside and keep it as evidence")


def _append(directory: Path, payload: dict[str, Any]) -> str:
    """Append one entry. The caller holds the lock."""
    path = directory / LEDGER_NAME
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProvenanceError(f"{path} is not a regular file")
        whole_end, last, torn = _read_tail(fd, st.st_size)
        if whole_end < 0:
            raise ProvenanceError(f"the end of {path} is not a ledger line; refusing to append",
                                  hint=_START_OVER)
        _step("tail-read")
        seq, prev = 0, GENESIS
        if last is not None:
            try:
                line = _parse_line(last)
            except ValueError as exc:
                raise ProvenanceError(
                    f"the last entry of {path} does not verify ({exc}); refusing to append",
                    hint=_START_OVER) from None
            seq, prev = line.seq + 1, line.digest
            head = _check_head_before_append(directory, line)
        else:
            head = _check_head_before_append(directory, None)
        head_missing = head.seq == -1
        # Only now, with the chain's end known good, touch the torn fragment (if any).
        repair: dict[str, Any] | None = None
        if torn:
            fragment_digest = _quarantine(directory, whole_end, torn)
            _step("fragment-kept")
            os.ftruncate(fd, whole_end)
            os.fsync(fd)
            _step("truncated")
            repair = {"torn_bytes": len(torn), "torn_sha256": fragment_digest}
            _logger.warning("provenance: removed a torn %d-byte fragment left by an interrupted "
                            "write (kept in %s)", len(torn), directory / TORN_DIR)
        body: dict[str, Any] = {"entry": payload, "prev": prev, "seq": seq, "v": LINE_VERSION}
        if repair is not None:
            body["repair"] = repair
        data, digest = _seal(body)
        if len(data) > MAX_ENTRY_BYTES:
            raise ProvenanceError(f"provenance entry too large ({len(data)} bytes)")
        _write_all(fd, data, whole_end)
        _step("appended")
        _datasync(fd)  # the entry is on disk before HEAD may name it
        if st.st_size == 0:
            _fsync_dir(directory)  # a new ledger file: make its name durable too
        _step("synced")
    finally:
        os.close(fd)
    _write_head(directory, seq, digest, durable=head_missing)
    _step("done")
    return digest


def _check_head_before_append(directory: Path, last: _Line | None) -> _Head:
    """Refuse to extend a chain whose HEAD disagrees with its end, other than by a crash.

    Crashes and power losses leave HEAD behind the ledger (or absent or empty), never ahead of
    it or on a different chain. A HEAD missing next to a single entry is recreated (durably)
    before the append, so that "HEAD missing" with more entries always means deletion.
    """
    try:
        head = _read_head(directory)
    except ValueError as exc:
        raise ProvenanceError(f"provenance head unreadable ({exc}); refusing to append",
                              hint=_START_OVER) from None
    if last is None:
        ok = head.seq == -1
    elif head.seq == -1:
        ok = head.lost or last.seq == 0
        if ok and not head.lost:
            _write_head(directory, last.seq, last.digest, durable=True)
            _step("head-recreated")
            head = _Head(last.seq, last.digest)
    elif head.seq == last.seq:
        ok = head.digest == last.digest
    elif head.seq == last.seq - 1:
        ok = head.digest == last.prev
    else:  # further behind: only a power loss does that; verify checks the digest there
        ok = head.seq < last.seq
    if not ok:
        raise ProvenanceError(
            f"provenance head (entry {head.seq}) disagrees with the ledger's last entry "
            f"({last.seq if last else 'none'}): the ledger was cut off or rewritten; "
            f"refusing to append",
            hint=_START_OVER)
    return head


def _write_fully(fd: int, data: bytes) -> None:
    """os.write until done: a regular file may take a short write (full disk, signal)."""
    written = 0
    while written < len(data):
        n = os.write(fd, data[written:])
        if n <= 0:
            raise OSError(f"write returned {n}")
        written += n


def _write_all(fd: int, data: bytes, restore_size: int) -> None:
    """One write on O_APPEND; a short write (full disk, signal) is finished or rolled back."""
    try:
        _write_fully(fd, data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, restore_size)  # leave no torn line behind when we still can
        raise


def record(entry: ProvenanceEntry | Mapping[str, Any], *, ledger: Path | None = None) -> str:
    """Append one entry to the ledger and return the new head digest (`sha256:<hex>`).

    Safe across threads and processes; crash-safe as the module docstring describes.

    Raises:
        ProvenanceError: the entry is invalid, or the ledger cannot be written (read-only, disk
            full, lock timeout), or its end does not verify (writers do not extend a broken
            chain).
    """
    item = entry if isinstance(entry, ProvenanceEntry) else ProvenanceEntry.from_dict(entry)
    payload = _scrub_entry(item.to_dict())
    directory = ledger if ledger is not None else paths.ledger_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _THREAD_LOCK, filelock.FileLock(directory / LOCK_NAME, timeout=LOCK_TIMEOUT,
                                   poll_interval=LOCK_POLL):
            _step("locked")
            return _append(directory, payload)
    except filelock.Timeout:
        raise ProvenanceError(
            f"timed out after {LOCK_TIMEOUT:.0f}s waiting for the provenance ledger lock in "
            f"{directory}") from None
    except OSError as exc:
        raise ProvenanceError(
            f"cannot write the provenance ledger in {directory}: {exc.strerror or exc}",
            hint="make the data folder writable, or set SAFELOAD_HOME") from exc


def record_or_warn(entry: ProvenanceEntry | Mapping[str, Any], *, strict: bool,
                   ledger: Path | None = None) -> str | None:
    """`record`, with the policy for a ledger that cannot be written.

    strict: fail closed (the caller's load must not go ahead). Otherwise warn loudly, through
    `warnings.warn(ProvenanceWarning)` and the log, and return None: never silently.

    Raises:
        ProvenanceError: only when `strict`.
    """
    try:
        return record(entry, ledger=ledger)
    except ProvenanceError as exc:
        if strict:
            raise
        message = f"provenance NOT recorded: {exc}"
        _logger.warning("%s", message)
        _warnings.warn(message, ProvenanceWarning, stacklevel=2)
        return None


# --------------------------------------------------------------------------------------------
# Reading and verifying


@dataclass(frozen=True)
class LedgerRecord:
    """One whole ledger line: its place in the chain and its entry.

    `verified` is False for lines at or after the first bad one. `entry` is None when the line
    is not a valid entry at all.
    """

    line: int  # 1-based line number in ledger.jsonl
    seq: int | None
    digest: str | None
    prev: str | None
    entry: ProvenanceEntry | None
    verified: bool
    repair: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "seq": self.seq, "digest": self.digest, "prev": self.prev,
                "verified": self.verified, "repair": dict(self.repair) if self.repair else None,
                "entry": self.entry.to_dict() if self.entry else None}


@dataclass(frozen=True)
class BadEntry:
    """The first entry that does not verify."""

    line: int  # 1-based line in ledger.jsonl; 0 for the HEAD file itself
    seq: int | None  # the seq the entry should have had
    reason: str

    def describe(self) -> str:
        if self.line == 0:
            return f"HEAD file: {self.reason}"
        where = f"entry {self.seq} (line {self.line})" if self.seq is not None else (
            f"line {self.line}")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found. `ok` means the whole chain verifies up to its last whole entry."""

    ok: bool
    entries: int  # whole entries that verify
    head: str | None  # digest of the last entry that verifies
    head_seq: int | None
    recorded_head: str | None  # what the HEAD file says
    first_bad: BadEntry | None
    torn_tail_bytes: int = 0
    notes: tuple[str, ...] = ()
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "head": self.head, "head_seq": self.head_seq,
            "recorded_head": self.recorded_head,
            "first_bad": dataclasses.asdict(self.first_bad) if self.first_bad else None,
            "torn_tail_bytes": self.torn_tail_bytes, "notes": list(self.notes),
            "path": self.path,
        }

    def describe(self) -> str:
        if self.ok:
            return f"ledger OK: {self.entries} entries, head {self.head or '(empty)'}"
        assert self.first_bad is not None
        return f"ledger BROKEN at {self.first_bad.describe()}"


@dataclass(frozen=True)
class LedgerState:
    """Everything `read_ledger` found: the records and the verification report."""

    records: tuple[LedgerRecord, ...]
    report: VerifyReport


def _lines(path: Path, size: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line with its newline if it has one) over the first `size` bytes.

    A line longer than any entry is yielded as None (read through, never held in memory).
    """
    with open(path, "rb") as fh:
        remaining, number = size, 0
        while remaining > 0:
            raw = fh.readline(min(remaining, MAX_ENTRY_BYTES + 2))
            if not raw:
                break
            remaining -= len(raw)
            number += 1
            if raw.endswith(b"\n") or remaining == 0:
                yield number, raw
                continue
            while remaining > 0:  # overlong: skip to the end of this line
                more = fh.readline(min(remaining, 1 << 20))
                if not more:
                    break
                remaining -= len(more)
                if more.endswith(b"\n"):
                    break
            yield number, None


def _snapshot(directory: Path) -> tuple[int, _Head | None, str | None, list[str]]:
    """(ledger size, head or None if malformed, head error, notes), taken under the lock.

    The ledger only grows past a whole line, so the first `size` bytes read afterwards are the
    ones seen here, while writers go on. Without write access (an auditor's copy) the lock cannot
    be taken, and reading goes ahead without it.
    """
    notes: list[str] = []
    if not directory.is_dir():
        return 0, _Head(-1, GENESIS), None, notes
    lock = filelock.FileLock(directory / LOCK_NAME, timeout=LOCK_TIMEOUT,
                                   poll_interval=LOCK_POLL)
    with _THREAD_LOCK:
        try:
            lock.acquire()
            locked = True
        except (OSError, filelock.Timeout):
            locked = False
            notes.append("read without the writers' lock (a write in progress may show as torn)")
        try:
            try:
                size = (directory / LEDGER_NAME).stat().st_size
            except FileNotFoundError:
                size = 0
            try:
                return size, _read_head(directory), None, notes
            except ValueError as exc:
                return size, None, str(exc), notes
        finally:
            if locked:
                lock.release()


def read_ledger(ledger: Path | None = None, *, anchor: str | None = None) -> LedgerState:
    """Read and verify the whole ledger.

    Args:
        ledger: the ledger folder (default: `ledger_dir()`); may be a read-only copy.
        anchor: a head digest kept elsewhere; the chain must contain it.

    Raises:
        OSError: the ledger exists but cannot be read.
    """
    directory = ledger if ledger is not None else paths.ledger_dir()
    path = directory / LEDGER_NAME
    size, head, head_error, notes = _snapshot(directory)
    records: list[LedgerRecord] = []
    first_bad: BadEntry | None = None
    prev, expected = GENESIS, 0
    last_two: list[str] = []  # digests of the last two verified entries
    head_line_digest: str | None = None
    anchor_found = False
    torn = 0
    if size:
        for number, raw in _lines(path, size):
            if raw is not None and not raw.endswith(b"\n"):
                torn = len(raw)  # only the last line can lack its newline
                break
            try:
                if raw is None:
                    raise ValueError(f"line longer than {MAX_ENTRY_BYTES} bytes")
                line = _parse_line(raw[:-1])
                entry: ProvenanceEntry | None = ProvenanceEntry.from_dict(line.body["entry"])
            except (ValueError, ProvenanceError) as exc:
                reason = str(exc).removeprefix("invalid provenance entry: ")
                if first_bad is None:
                    first_bad = BadEntry(number, expected, reason)
                records.append(LedgerRecord(number, None, None, None, None, False))
                continue
            good = first_bad is None
            if good and line.seq != expected:
                reason = (f"entry {expected} is missing (deleted?); found entry {line.seq}"
                          if line.seq > expected else
                          f"entry {line.seq} appears again after entry {expected - 1} "
                          f"(reordered or duplicated)")
                first_bad, good = BadEntry(number, expected, reason), False
            elif good and line.prev != prev:
                first_bad = BadEntry(number, expected,
                                     "does not chain to the previous entry (an entry before it "
                                     "was deleted, replaced or reordered)")
                good = False
            if good:
                prev, expected = line.digest, expected + 1
                last_two = [*last_two[-1:], line.digest]
                if head is not None and line.seq == head.seq:
                    head_line_digest = line.digest
                if anchor is not None and line.digest == anchor:
                    anchor_found = True
            records.append(LedgerRecord(number, line.seq, line.digest, line.prev, entry, good,
                                        line.body.get("repair")))
    count = expected
    last_line = records[count - 1].line if count else 0
    if torn:
        notes.append(f"torn tail: {torn} bytes after entry {count - 1 if count else '-'} are "
                     f"an interrupted write, not an entry (the next write moves them to torn/)")
    if first_bad is None:
        first_bad = _check_head(head, head_error, count, head_line_digest, last_line, notes)
        if first_bad is not None and first_bad.seq is not None:
            bad_from = first_bad.seq
            records = [dataclasses.replace(r, verified=False)
                       if r.seq is not None and r.seq >= bad_from else r for r in records]
    if first_bad is None and anchor is not None and not anchor_found:
        first_bad = BadEntry(last_line + 1, None,
                             f"anchor {anchor} is not in the chain (rewritten or cut off)")
    repairs = sum(1 for r in records if r.repair)
    if repairs:
        notes.append(f"{repairs} entries record the repair of a torn write")
    report = VerifyReport(
        ok=first_bad is None, entries=count, head=last_two[-1] if last_two else None,
        head_seq=count - 1 if count else None,
        recorded_head=head.digest if head is not None and head.seq >= 0 else None,
        first_bad=first_bad, torn_tail_bytes=torn, notes=tuple(notes), path=str(path))
    return LedgerState(tuple(records), report)


def _check_head(head: _Head | None, head_error: str | None, count: int,
                head_line_digest: str | None, last_line: int, notes: list[str]) -> BadEntry | None:
    """Compare HEAD with the verified chain; None when they agree or HEAD is merely behind.

    Behind is what crashes and power losses leave (see `_write_head`); ahead of the chain, on a
    different chain, or missing next to more than one entry is damage.
    """
    if head is None:
        return BadEntry(0, None, f"{head_error}")
    last_seq = count - 1
    if head.lost:
        notes.append("HEAD is empty (its update was lost in a crash); truncation of the last "
                     "entries cannot be ruled out until the next write rewrites it")
        return None
    if head.seq == -1:
        if count <= 1:
            if count:
                notes.append("HEAD not written yet (a write was interrupted after its entry "
                             "was committed); the next write creates it")
            return None
        return BadEntry(0, None, "missing (deleted?) while the ledger has entries")
    if head.seq > last_seq:
        return BadEntry(last_line + 1, last_seq + 1,
                        f"ledger cut off: the head names entry {head.seq} but the ledger ends at "
                        f"entry {last_seq if count else 'none'} (entries {last_seq + 1}.."
                        f"{head.seq} truncated or deleted)")
    if head_line_digest != head.digest:
        return BadEntry(head.seq + 1, head.seq,
                        f"the head names entry {head.seq} with digest {head.digest}, the chain "
                        f"has {head_line_digest} (ledger or head rewritten)")
    if head.seq < last_seq:
        behind = last_seq - head.seq
        notes.append(f"head is {behind} {'entry' if behind == 1 else 'entries'} behind (a write "
                     f"was interrupted, or a power loss undid head updates); the next write "
                     f"moves it on")
    return None


def verify(ledger: Path | None = None, *, anchor: str | None = None) -> VerifyReport:
    """Verify the ledger's hash chain and its head. Never raises for a broken ledger.

    Detects edited, deleted, reordered, inserted and truncated entries and names the first bad
    one; a torn last line from an interrupted write is reported as such and does not fail.

    Raises:
        OSError: the ledger exists but cannot be read.
    """
    return read_ledger(ledger, anchor=anchor).report


def require_intact(state: LedgerState) -> None:
    """Raise if the ledger does not verify.

    Raises:
        LedgerIntegrityError: names the first bad entry.
    """
    if not state.report.ok:
        raise LedgerIntegrityError(
            state.report.describe(),
            hint="run `safeload provenance verify` for details; the head to compare with a kept "
                 "anchor is printed there")
