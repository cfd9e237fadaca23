"""Provenance entries: the record types of one ledger line, and their validation.

`ProvenanceEntry` is what `record` appends; its parts (`Source`, `FileRecord`, `ConvertedFrom`,
`SignatureRecord`, `TrustRecord`, `LicenseRecord`, `PublisherRecord`) each validate themselves on
construction, so an entry built here or read back from a ledger line (`from_dict`) is well
formed. The closed sets (`Action`, `SignatureStatus`, `PinState`, `LicenseClassName`, and the
trust `Mode`) are Literals whose values are what the ledger stores.

Times: one rule for writing and reading, `safeload.trust.parse_time` (ISO 8601 / RFC 3339 with a
time zone, or a bare date read as UTC midnight), which accepts everything the ledger's own
parser accepted before.

Imports: errors, `_version`, licenses and trust types only (layer L2; trust never imports this).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args
from urllib.parse import quote, unquote

from safeload._version import __version__
from safeload.errors import ProvenanceError
from safeload.licenses import license_info, strictest
from safeload.trust import Mode, parse_time

if TYPE_CHECKING:
    from safeload.modelcard import ModelCard

# What an entry records. "scan" is not one: `scan` inspects only and writes no provenance.
Action = Literal["load", "from_pretrained", "convert", "verify"]
SignatureStatus = Literal["verified", "unsigned", "failed"]
# "mismatch": audit mode only, the pin did not match and the load went on (trust.TrustDecision).
PinState = Literal["hit", "new", "none", "mismatch"]
LicenseClassName = Literal["permissive", "weak-copyleft", "strong-copyleft", "non-commercial",
                           "custom", "unknown"]

ACTIONS: tuple[Action, ...] = get_args(Action)
SIGNATURE_STATUSES: tuple[SignatureStatus, ...] = get_args(SignatureStatus)
PIN_STATES: tuple[PinState, ...] = get_args(PinState)
LICENSE_CLASSES: tuple[LicenseClassName, ...] = get_args(LicenseClassName)
TRUST_MODES: tuple[Mode, ...] = get_args(Mode)

_HEX64 = re.compile(r"[0-9a-f]{64}")

_T = TypeVar("_T", bound=str)


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


def _choice(value: object, allowed: tuple[_T, ...], what: str) -> _T:
    """`value` if it is one of the closed set `allowed` (typed as that set), else an error."""
    for option in allowed:
        if value == option:
            return option
    raise _bad(f"{what} must be one of {', '.join(allowed)}")


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


def hf_purl_parts(purl: str) -> tuple[str | None, str, str | None] | None:
    """(namespace, name, revision) of a `pkg:huggingface/...` purl (`hf_purl` backwards); None
    for any other purl."""
    if not purl.startswith("pkg:huggingface/"):
        return None
    rest = purl[len("pkg:huggingface/") :].split("?", 1)[0].split("#", 1)[0]
    rest, _, version = rest.partition("@")
    parts = [unquote(p) for p in rest.split("/") if p]
    if len(parts) == 1:
        return None, parts[0], unquote(version) or None
    if len(parts) == 2:
        return parts[0], parts[1], unquote(version) or None
    return None


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

    status: SignatureStatus = "unsigned"
    publisher: str | None = None
    key_id: str | None = None
    method: str | None = None
    # Keyless (sigstore method) only: `signing.keyless.summary`, plus `reupload` when a
    # trusted publisher's bytes come from a repo outside its namespaces.
    keyless: Mapping[str, Any] | None = None
    reupload: bool = False

    def __post_init__(self) -> None:
        _choice(self.status, SIGNATURE_STATUSES, "signature.status")
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
        return cls(_choice(data.get("status"), SIGNATURE_STATUSES, "signature.status"),
                   _opt_str(data, "publisher"),
                   _opt_str(data, "key_id"), _opt_str(data, "method"),
                   data.get("keyless"), reupload)


@dataclass(frozen=True)
class TrustRecord:
    """The trust decision: the policy mode, whether a digest pin was hit, made or absent (or, in
    audit mode, did not match), and the exact store it was judged by (`store_record`)."""

    mode: Mode = "default"
    pin: PinState = "none"
    store: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _choice(self.mode, TRUST_MODES, "trust.mode")
        _choice(self.pin, PIN_STATES, "trust.pin")
        if self.store is not None:
            _check_store(self.store)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "pin": self.pin}
        if self.store is not None:  # omitted when absent: older entries hash as they did
            out["store"] = {k: dict(v) if isinstance(v, Mapping) else v
                            for k, v in self.store.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustRecord:
        store = data.get("store")
        return cls(_choice(data.get("mode"), TRUST_MODES, "trust.mode"),
                   _choice(data.get("pin"), PIN_STATES, "trust.pin"),
                   _mapping(store, "trust.store") if store is not None else None)


def store_record(state_sha256: str, origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`trust.store` of an entry: the sha256 of the store applied (`TrustStore.state_digest`,
    the merged store on a subscribed node) and, for a fleet subscription, `tuf`: the URL,
    target, TUF targets version, target sha256 and serial of the organisation store."""
    out: dict[str, Any] = {"sha256": state_sha256}
    if origin is not None:
        out["tuf"] = {k: origin[k] for k in _TUF_KEYS if k in origin}
    return out


_TUF_KEYS = ("url", "target", "targets_version", "sha256", "serial")


def _check_store(store: Mapping[str, Any]) -> None:
    store = _mapping(store, "trust.store")
    _check_sha256(_req_str(store, "sha256"), "trust.store.sha256")
    tuf = store.get("tuf")
    if tuf is None:
        return
    tuf = _mapping(tuf, "trust.store.tuf")
    _check_sha256(_req_str(tuf, "sha256"), "trust.store.tuf.sha256")
    for key in ("targets_version", "serial"):
        value = tuf.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad(f"trust.store.tuf.{key} must be a non-negative integer")


@dataclass(frozen=True)
class LicenseRecord:
    """The licence: SPDX id (or `LicenseRef-...`), its class, where it was read (`source`)."""

    id: str
    license_class: LicenseClassName
    source: str  # "model card", "base model card", "none", ...
    name: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        _choice(self.license_class, LICENSE_CLASSES, "license.class")

    @classmethod
    def from_card(cls, card: ModelCard) -> LicenseRecord:
        """From a `ModelCard`: its licence tags resolved (several are joined with AND)."""
        infos = [license_info(t) for t in card.license] or [license_info(None)]
        ident = " AND ".join(i.spdx_id for i in infos)
        name = card.license_name if card.license_name else "; ".join(i.name for i in infos)
        return cls(ident, _choice(strictest(infos).value, LICENSE_CLASSES, "license.class"),
                   "model card" if card.license else "none", name, card.license_link)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "class": self.license_class, "source": self.source,
                "name": self.name, "url": self.url}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LicenseRecord:
        return cls(_req_str(data, "id"), _choice(data.get("class"), LICENSE_CLASSES,
                                                 "license.class"), _req_str(data, "source"),
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


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ProvenanceEntry:
    """One ledger entry: what safeload did, to what, and what it decided.

    `time` and `safeload_version` default to now and this version. Strings from model cards and
    files are stored as data; show them with `safeload._internal.text.safe_text`.
    """

    # One of ACTIONS. Typed `str` while `_internal/record.py` passes its own `str` through;
    # checked against the closed set on construction either way.
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
    time: str = field(default_factory=utc_now)
    safeload_version: str = __version__

    def __post_init__(self) -> None:
        _choice(self.action, ACTIONS, "action")
        try:
            parse_time(self.time)
        except (ValueError, TypeError, AttributeError):
            raise _bad("time must be an RFC 3339 timestamp with a time zone") from None
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
            action=_choice(data.get("action"), ACTIONS, "action"),
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



__all__ = [
    "ACTIONS", "LICENSE_CLASSES", "PIN_STATES", "SIGNATURE_STATUSES", "TRUST_MODES", "Action",
    "ConvertedFrom", "FileRecord", "LicenseClassName", "LicenseRecord", "PinState",
    "ProvenanceEntry", "PublisherRecord", "SignatureRecord", "SignatureStatus", "Source",
    "TrustRecord", "hf_purl", "hf_purl_parts", "parse_time", "store_record", "utc_now",
]
