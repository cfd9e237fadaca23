"""The trust store: who safeload trusts, what it has pinned or revoked, and the load policy.

Stable API: `TrustStore`, `Publisher`, `TrustedKey`, `TrustedRoot`, `Pin`, `RevisionLock`,
`Revocation`, `Policy`, `check_load`, `TrustDecision`.

One JSON file (`trust.json` in the config dir; `$SAFELOAD_TRUST_STORE`, `$SAFELOAD_HOME` or
`--trust-store` move it), with a schema version. **A missing file is an empty store with the
default policy**: nothing is trusted, signatures that are present must still verify, unsigned
content loads with a warning. safeload never falls back to "trust everything": a store that is
unparseable, of an unknown schema, has unknown fields, or is writable by other users (POSIX) is
refused with a `TrustStoreError` that says how to fix it; so is a location (the store's directory
or any parent) that others could write, whether or not the file exists (`check_location`):
otherwise another user could delete or plant the store. Bytes without a file get `check_bytes`.

Writes are atomic (temp file in the same directory, fsync, `os.replace`) and serialized across
processes by a `filelock.FileLock` on the sibling `trust.json.lock`; a change is applied to a
freshly re-read store under the lock (`TrustStore.update`), so concurrent writers lose nothing.

What safeload learns while loading (first-use pins of Hub files, and which locations were once
loaded with a valid signature, for "no silent downgrade") goes to the sibling file
`trust.observed.json`, not into `trust.json`: loads never rewrite the user's configuration, and
`state_digest()` (which caches use to notice revocations and policy changes) only changes when
the configuration does.

The default policy, in one place (also printed by `safeload trust policy`)::

    mode "default":
      - revoked digests and revoked keys are refused (in every mode, audit included);
      - a pinned digest that no longer matches is refused (DigestMismatchError);
      - a repository with a revision lock loads only at the locked commits;
      - a signature that is present (model.sig beside the file / in its snapshot) must verify
        against a publisher in this store;
      - a repo in a namespace owned by a publisher with keys must be signed by that publisher;
      - content once loaded with a valid signature is refused later without one;
      - a valid signature by a trusted publisher on a Hub repo outside its namespaces (a
        re-upload) loads with a warning, marked `reupload` in the decision and the ledger;
      - keyless publishers are identities (Sigstore instance, exact OIDC issuer, exact SAN or
        opt-in full-match regex, optional Fulcio extension pins); revoking an identity, or a
        Fulcio certificate by fingerprint (`revoked_keys`), refuses it everywhere;
      - anything else (unsigned, unbound) loads with a warning;
      - Hub files (repo + commit + file) are pinned on first use; local files are not.
    mode "strict": as default, and every load needs a signature by a trusted publisher.
    mode "audit": signature, pin, lock and downgrade failures become warnings; revoked digests
      and keys are still refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import filelock

from safeload._internal import paths, strictjson
from safeload._internal.text import safe_text
from safeload.errors import (
    DigestMismatchError,
    ManifestMismatchError,
    RevisionLockError,
    RevokedError,
    SafeloadError,
    SignatureError,
    TrustStoreError,
    UnsafePathError,
    UnsupportedSignatureError,
    UntrustedPublisherError,
    VerificationError,
)
from safeload.licenses import LicensePolicy

if TYPE_CHECKING:  # cryptography loads only when keys, certificates or signatures are used
    from cryptography import x509

    from safeload.signing import _keys
    from safeload.signing.keyless import IdentityRule, KeylessResult
    from safeload.signing.sigstore_roots import SigstoreRoot
    from safeload.signing.verify import SignedManifest

_logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
OBSERVED_SCHEMA_VERSION = 1
MODES = ("strict", "default", "audit")
Mode = Literal["strict", "default", "audit"]
MAX_STORE_BYTES = 64 * 1024 * 1024  # far above any real store; bounds a hostile file
LOCK_TIMEOUT_S = 60.0  # a writer holds the lock for milliseconds

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_REPO = re.compile(rf"(?:{_REPO_PART}/)?{_REPO_PART}")
_NAMESPACE = re.compile(rf"{_REPO_PART}/(?:\*|{_REPO_PART})")
_COMMIT = re.compile(r"[0-9a-f]{40}")


# ------------------------------------------------------------------------------------------
# validation helpers


def _fail(source: str, message: str, fix: str) -> TrustStoreError:
    return TrustStoreError(f"{source}: {message}", hint=fix)


_FIX_EDIT = "correct the entry (see `safeload trust export`), or rebuild it with `safeload trust`"


def _obj(value: object, where: str, source: str, allowed: set[str],
         required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, f"{where} must be a JSON object", _FIX_EDIT)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(
            source, f"unknown field(s) {', '.join(map(repr, unknown))} in {where}",
            f"remove them; the known fields are {', '.join(sorted(allowed))}",
        )
    missing = sorted(required - set(value))
    if missing:
        raise _fail(source, f"{where} lacks {', '.join(map(repr, missing))}", _FIX_EDIT)
    return cast(dict[str, Any], value)


def _list(value: object, where: str, source: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(source, f"{where} must be a JSON list", _FIX_EDIT)
    return value


def _str(value: object, where: str, source: str, pattern: re.Pattern[str] | None = None,
         what: str = "") -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise _fail(source, f"{where} is not a valid {what or 'string'}: "
                    f"{safe_text(value, limit=120)!s}", _FIX_EDIT)
    return value


def _sha(value: object, where: str, source: str) -> str:
    if isinstance(value, str):
        value = value.lower().removeprefix("sha256:")
    return _str(value, where, source, _SHA256, "sha256 hex digest")


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 date or UTC time (`2030-01-01`, `2030-01-01T00:00:00Z`).

    Raises:
        ValueError: anything else.
    """
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00+00:00"
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a time needs a timezone (use Z for UTC)")
    return parsed.astimezone(dt.timezone.utc)


def _time(value: object, where: str, source: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(source, f"{where} must be an ISO 8601 string", _FIX_EDIT)
    try:
        return parse_time(value)
    except ValueError as exc:
        raise _fail(source, f"{where} is not an ISO 8601 date or time ({exc})",
                    "write it as 2030-01-01 or 2030-01-01T00:00:00Z") from exc


def format_time(value: dt.datetime | None) -> str | None:
    """UTC, seconds precision, `Z` suffix."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ------------------------------------------------------------------------------------------
# the data model


@dataclass(frozen=True)
class Policy:
    """How loads are judged. Unknown fields in the store are refused, not ignored."""

    mode: Mode = "default"
    pin_hub_on_first_use: bool = True
    pin_local_files: bool = False
    # "convert": clean pickles are converted in the sandbox; "refuse": every pickle is refused.
    pickles: str = "convert"
    # Which model licences to deny or warn about (read from the model card at load).
    licenses: LicensePolicy = field(default_factory=LicensePolicy.default)

    _FIELDS = frozenset({"mode", "pin_hub_on_first_use", "pin_local_files", "pickles",
                         "licenses"})

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<policy>") -> Policy:
        """Raises: TrustStoreError on unknown fields or bad values."""
        d = _obj(data, "policy", source, set(cls._FIELDS))
        mode = d.get("mode", "default")
        if mode not in MODES:
            raise _fail(source, f"policy.mode must be one of {', '.join(MODES)}, not "
                        f"{safe_text(mode, limit=40)}", "safeload trust policy --mode default")
        out: dict[str, bool] = {}
        for name in ("pin_hub_on_first_use", "pin_local_files"):
            if name in d:
                if not isinstance(d[name], bool):
                    raise _fail(source, f"policy.{name} must be true or false", _FIX_EDIT)
                out[name] = d[name]
        pickles = d.get("pickles", "convert")
        if pickles not in ("convert", "refuse"):
            raise _fail(source, "policy.pickles must be \"convert\" or \"refuse\"", _FIX_EDIT)
        licenses = LicensePolicy.default()
        if "licenses" in d:
            try:
                licenses = LicensePolicy.from_dict(d["licenses"])
            except TrustStoreError as exc:
                raise _fail(source, f"policy.{exc}", _FIX_EDIT) from None
        return cls(mode=cast(Mode, mode), pickles=pickles, licenses=licenses, **out)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "pin_hub_on_first_use": self.pin_hub_on_first_use,
                "pin_local_files": self.pin_local_files, "pickles": self.pickles,
                "licenses": self.licenses.to_dict()}


@dataclass(frozen=True)
class TrustedKey:
    """A publisher's public key (ECDSA P-256/P-384/P-521, or Ed25519: safeload's extension)."""

    key_id: str  # SHA-256 of the DER SubjectPublicKeyInfo
    pem: str
    algorithm: str
    expires: dt.datetime | None = None
    hint: str = field(default="", compare=False)  # model_signing's publicKey.hint

    @classmethod
    def from_pem(cls, pem: bytes | str, *, expires: dt.datetime | None = None) -> TrustedKey:
        """Raises: TrustStoreError when the PEM is not a supported public key."""
        from safeload.signing import _keys

        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = _keys.load_public_key(data)
        except _keys.BadKeyError as exc:
            raise TrustStoreError(f"not a usable public key: {exc}",
                                  hint="export the public key as PEM (SubjectPublicKeyInfo)"
                                  ) from exc
        return cls(key_id=_keys.key_id(key), pem=_keys.public_pem(key).decode(),
                   algorithm=_keys.algorithm_name(key), expires=expires,
                   hint=_keys.pem_hint(key))

    def public_key(self) -> _keys.PublicKey:
        """The key object (parsed when the store was loaded, so this cannot fail)."""
        from safeload.signing import _keys

        return _keys.load_public_key(self.pem.encode())

    @classmethod
    def from_dict(cls, data: object, *, where: str, source: str) -> TrustedKey:
        d = _obj(data, where, source, {"id", "pem", "algorithm", "expires"}, {"pem"})
        try:
            key = cls.from_pem(_str(d["pem"], f"{where}.pem", source),
                               expires=_time(d.get("expires"), f"{where}.expires", source))
        except TrustStoreError as exc:
            raise _fail(source, f"{where}: {exc}", _FIX_EDIT) from exc
        if "id" in d and _sha(d["id"], f"{where}.id", source) != key.key_id:
            raise _fail(source, f"{where}.id does not match its PEM (the key is {key.key_id})",
                        "fix the id, or remove it and let safeload compute it")
        return key

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key_id, "algorithm": self.algorithm, "pem": self.pem}
        if self.expires:
            out["expires"] = format_time(self.expires)
        return out


@dataclass(frozen=True)
class TrustedRoot:
    """An X.509 root whose leaves may sign for the publisher, as one of `identities` (SAN)."""

    fingerprint: str  # SHA-256 of the certificate DER
    pem: str
    identities: tuple[str, ...]
    expires: dt.datetime | None = None

    @classmethod
    def from_pem(cls, pem: bytes | str, *, identities: tuple[str, ...],
                 expires: dt.datetime | None = None) -> TrustedRoot:
        """Raises: TrustStoreError for a non-certificate, several certificates, or no identity."""
        from cryptography.hazmat.primitives import serialization

        from safeload.signing import _keys

        data = pem.encode() if isinstance(pem, str) else pem
        try:
            certs = _keys.load_pem_certificates(data)
        except _keys.BadKeyError as exc:
            raise TrustStoreError(f"not a root certificate: {exc}") from exc
        if len(certs) != 1:
            raise TrustStoreError(f"expected one root certificate, found {len(certs)}",
                                  hint="add each root separately")
        if not identities:
            raise TrustStoreError(
                "a root certificate needs at least one allowed identity (SAN), otherwise any "
                "certificate under it could sign as the publisher",
                hint="pass --identity publisher@example.org (repeatable)")
        cert = certs[0]
        pem_text = cert.public_bytes(serialization.Encoding.PEM).decode()
        return cls(fingerprint=_keys.certificate_fingerprint(cert), pem=pem_text,
                   identities=tuple(sorted(set(identities))), expires=expires)

    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        from cryptography import x509

        return x509.load_pem_x509_certificate(self.pem.encode())

    @classmethod
    def from_dict(cls, data: object, *, where: str, source: str) -> TrustedRoot:
        d = _obj(data, where, source, {"fingerprint", "pem", "identities", "expires"},
                 {"pem", "identities"})
        ids = tuple(_str(i, f"{where}.identities[]", source)
                    for i in _list(d["identities"], f"{where}.identities", source))
        try:
            root = cls.from_pem(_str(d["pem"], f"{where}.pem", source), identities=ids,
                                expires=_time(d.get("expires"), f"{where}.expires", source))
        except TrustStoreError as exc:
            raise _fail(source, f"{where}: {exc}", exc.hint or _FIX_EDIT) from exc
        if "fingerprint" in d and _sha(d["fingerprint"], f"{where}.fingerprint", source) \
                != root.fingerprint:
            raise _fail(source, f"{where}.fingerprint does not match its PEM",
                        "fix the fingerprint, or remove it and let safeload compute it")
        return root

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fingerprint": self.fingerprint, "pem": self.pem,
                               "identities": list(self.identities)}
        if self.expires:
            out["expires"] = format_time(self.expires)
        return out


_IDENTITY_FIELDS = {"instance", "issuer", "san", "san_regex", "extensions"}


@dataclass(frozen=True)
class TrustedIdentity:
    """A keyless signer: an exact OIDC issuer and an exact SAN (or, opted in, a full-match SAN
    regex) on one Sigstore instance (a trusted root name), plus optional exact pins on other
    Fulcio extensions (dotted OID -> value; `signing.keyless.EXTENSION_NAMES` has names)."""

    issuer: str
    san: str | None = None
    san_regex: str | None = None
    instance: str = "production"
    extensions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        from safeload.signing.sigstore_roots import BUILTIN_ROOTS

        if (self.san is None) == (self.san_regex is None):
            raise TrustStoreError("an identity needs exactly one of --san and --san-regex")
        if not self.issuer:
            raise TrustStoreError("an identity needs its exact OIDC issuer (--issuer)")
        if self.instance not in BUILTIN_ROOTS:
            raise TrustStoreError(f"unknown Sigstore instance {safe_text(self.instance)}",
                                  hint=f"use one of {', '.join(BUILTIN_ROOTS)}")
        if self.san_regex is not None:
            try:
                re.compile(self.san_regex)
            except re.error as exc:
                raise TrustStoreError(f"--san-regex is not a regular expression: {exc}"
                                      ) from exc
        for oid, _ in self.extensions:
            if not re.fullmatch(r"1\.3\.6\.1\.4\.1\.57264\.1\.[0-9]{1,3}", oid):
                raise TrustStoreError(f"not a Fulcio extension OID: {safe_text(oid)}")

    def describe(self) -> str:
        """`SAN from ISSUER on INSTANCE (pins)` for listings."""
        san = self.san if self.san is not None else f"regex {self.san_regex}"
        pins = "".join(f", {k}={v}" for k, v in self.extensions)
        return safe_text(f"{san} from {self.issuer} on {self.instance}{pins}")

    @classmethod
    def from_dict(cls, data: object, *, where: str, source: str) -> TrustedIdentity:
        d = _obj(data, where, source, _IDENTITY_FIELDS, {"issuer"})
        exts = d.get("extensions", {})
        if not isinstance(exts, dict) or not all(isinstance(v, str) for v in exts.values()):
            raise _fail(source, f"{where}.extensions must map OIDs to strings", _FIX_EDIT)
        try:
            return cls(
                issuer=_str(d["issuer"], f"{where}.issuer", source),
                san=_str(d["san"], f"{where}.san", source) if "san" in d else None,
                san_regex=_str(d["san_regex"], f"{where}.san_regex", source)
                if "san_regex" in d else None,
                instance=_str(d.get("instance", "production"), f"{where}.instance", source),
                extensions=tuple(sorted(exts.items())))
        except TrustStoreError as exc:
            raise _fail(source, f"{where}: {exc}", exc.hint or _FIX_EDIT) from exc

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instance": self.instance, "issuer": self.issuer}
        if self.san is not None:
            out["san"] = self.san
        if self.san_regex is not None:
            out["san_regex"] = self.san_regex
        if self.extensions:
            out["extensions"] = dict(self.extensions)
        return out


def identity_key(issuer: str, san: str) -> str:
    """The revocation key of a keyless identity (issuers are URLs: no spaces)."""
    if " " in issuer or not issuer:
        raise TrustStoreError(f"not an OIDC issuer: {safe_text(issuer)}")
    return f"{issuer} {san}"


def _norm_namespace(ns: str) -> str:
    return ns if "/" in ns else f"{ns}/*"


@dataclass(frozen=True)
class Publisher:
    """A named publisher: the Hub namespaces it owns and the keys/roots it signs with."""

    name: str
    namespaces: tuple[str, ...] = ()
    keys: tuple[TrustedKey, ...] = ()
    roots: tuple[TrustedRoot, ...] = ()
    expires: dt.datetime | None = None
    identities: tuple[TrustedIdentity, ...] = ()  # keyless (Sigstore) signers

    def owns(self, repo: str) -> bool:
        """True when `repo` (`org/name`) falls in one of the namespaces (`org/*` or exact)."""
        r = repo.casefold()
        org = r.split("/", 1)[0] if "/" in r else None
        for ns in self.namespaces:
            n = ns.casefold()
            if n == r or (n.endswith("/*") and org is not None and n[:-2] == org):
                return True
        return False

    @property
    def binds(self) -> bool:
        """A publisher with keys, roots or keyless identities binds its namespaces: unsigned
        content is refused."""
        return bool(self.keys or self.roots or self.identities)

    @classmethod
    def from_dict(cls, data: object, *, where: str, source: str) -> Publisher:
        d = _obj(data, where, source,
                 {"name", "namespaces", "keys", "roots", "expires", "identities"}, {"name"})
        name = _str(d["name"], f"{where}.name", source, _NAME, "publisher name")
        where = f"publisher {name!r}"
        namespaces = tuple(
            _norm_namespace(_str(n, f"{where}.namespaces[]", source,
                                 re.compile(rf"{_NAMESPACE.pattern}|{_REPO_PART}"),
                                 "namespace (org/* or org/name)"))
            for n in _list(d.get("namespaces"), f"{where}.namespaces", source))
        keys = tuple(TrustedKey.from_dict(k, where=f"{where}.keys[{i}]", source=source)
                     for i, k in enumerate(_list(d.get("keys"), f"{where}.keys", source)))
        roots = tuple(TrustedRoot.from_dict(r, where=f"{where}.roots[{i}]", source=source)
                      for i, r in enumerate(_list(d.get("roots"), f"{where}.roots", source)))
        identities = tuple(
            TrustedIdentity.from_dict(x, where=f"{where}.identities[{i}]", source=source)
            for i, x in enumerate(_list(d.get("identities"), f"{where}.identities", source)))
        if len({k.key_id for k in keys}) != len(keys):
            raise _fail(source, f"{where} lists a key twice", _FIX_EDIT)
        if len(set(identities)) != len(identities):
            raise _fail(source, f"{where} lists an identity twice", _FIX_EDIT)
        return cls(name=name, namespaces=tuple(sorted(set(namespaces))), keys=keys,
                   roots=roots, expires=_time(d.get("expires"), f"{where}.expires", source),
                   identities=identities)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "namespaces": list(self.namespaces),
            "keys": [k.to_dict() for k in self.keys],
            "roots": [r.to_dict() for r in self.roots],
        }
        if self.identities:
            out["identities"] = [i.to_dict() for i in self.identities]
        if self.expires:
            out["expires"] = format_time(self.expires)
        return out


@dataclass(frozen=True)
class Revocation:
    """A revoked key id or file digest, with an optional reason."""

    value: str
    reason: str = ""

    def to_dict(self, field_name: str) -> dict[str, Any]:
        out: dict[str, Any] = {field_name: self.value}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Pin:
    """A digest pinned for a Hub file (repo + revision + file) or a local path."""

    sha256: str
    repo: str | None = None
    revision: str | None = None
    file: str | None = None
    path: str | None = None

    @property
    def target(self) -> tuple[str, ...]:
        """What the pin is about, independent of its digest."""
        if self.path is not None:
            return ("path", self.path)
        return ("hub", (self.repo or "").casefold(), self.revision or "", self.file or "")

    def describe(self) -> str:
        """`org/name@rev:file` or the local path."""
        if self.path is not None:
            return self.path
        return f"{self.repo}@{self.revision}:{self.file}"

    @classmethod
    def from_dict(cls, data: object, *, where: str, source: str) -> Pin:
        d = _obj(data, where, source, {"sha256", "repo", "revision", "file", "path"}, {"sha256"})
        sha = _sha(d["sha256"], f"{where}.sha256", source)
        if "path" in d:
            if {"repo", "revision", "file"} & set(d):
                raise _fail(source, f"{where} has both a path and a repo", _FIX_EDIT)
            return cls(sha256=sha, path=_str(d["path"], f"{where}.path", source))
        if not {"repo", "revision", "file"} <= set(d):
            raise _fail(source, f"{where} needs either path, or repo + revision + file",
                        _FIX_EDIT)
        return cls(sha256=sha, repo=_str(d["repo"], f"{where}.repo", source, _REPO, "repo id"),
                   revision=_str(d["revision"], f"{where}.revision", source),
                   file=_str(d["file"], f"{where}.file", source))

    def to_dict(self) -> dict[str, Any]:
        if self.path is not None:
            return {"path": self.path, "sha256": self.sha256}
        return {"repo": self.repo, "revision": self.revision, "file": self.file,
                "sha256": self.sha256}


@dataclass(frozen=True)
class RevisionLock:
    """A repository allowed only at the listed revisions (commit hashes), like a lock file."""

    repo: str
    revisions: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: object, *, where: str, source: str) -> RevisionLock:
        d = _obj(data, where, source, {"repo", "revisions"}, {"repo", "revisions"})
        revs = tuple(_str(r, f"{where}.revisions[]", source)
                     for r in _list(d["revisions"], f"{where}.revisions", source))
        if not revs:
            raise _fail(source, f"{where}.revisions is empty",
                        "list at least one commit, or remove the lock")
        return cls(repo=_str(d["repo"], f"{where}.repo", source, _REPO, "repo id"),
                   revisions=tuple(sorted(set(revs))))

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "revisions": list(self.revisions)}


# ------------------------------------------------------------------------------------------
# files: permissions, locking, atomic writes


def _check_permissions(path: Path, st: os.stat_result, source: str) -> None:
    """Refuse a trust file that another user could have written (ssh StrictModes style)."""
    if os.name != "posix":
        return
    if not stat.S_ISREG(st.st_mode):
        raise _fail(source, "is not a regular file", "replace it with a regular file")
    if st.st_mode & 0o022:
        raise _fail(source, f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                    "anyone who can write it decides what safeload trusts",
                    f"chmod go-w {path}")
    uid = os.getuid()
    if st.st_uid not in (uid, 0):
        raise _fail(source, f"is owned by another user (uid {st.st_uid})",
                    f"chown {uid} {path}, or point --trust-store at your own copy")
    parent = path.parent
    try:
        pst = os.stat(parent)
    except OSError:
        return
    sticky = bool(pst.st_mode & stat.S_ISVTX)
    if pst.st_mode & 0o022 and not sticky:
        raise _fail(source, f"its directory {parent} is writable by group or others, so the "
                    "file can be replaced", f"chmod go-w {parent}")


def check_location(path: Path, source: str) -> None:
    """Refuse a store location that another user could write, whether or not the file exists.

    OpenSSH's secure-path rule: every existing directory from the store's up to `/` must be
    owned by this user or root and not writable by group or others, except a sticky directory
    (`/tmp`), where others may add entries but not replace or remove ours. A directory that
    does not exist yet is judged by its parent (whoever can create it there could have).

    Raises:
        TrustStoreError: naming the directory and the fix.
    """
    if os.name != "posix":
        return
    uid = os.getuid()
    for d in Path(os.path.abspath(path)).parents:
        try:
            st = os.stat(d)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _fail(source, f"its directory {safe_text(d)} cannot be checked "
                        f"({exc.strerror})", "check the permissions of the path") from None
        if st.st_uid not in (uid, 0):
            raise _fail(source, f"its directory {safe_text(d)} is owned by another user "
                        f"(uid {st.st_uid}), who decides what safeload trusts",
                        f"keep the store in a directory of your own (SAFELOAD_HOME or "
                        f"--trust-store), or chown {uid} {safe_text(d)}")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise _fail(source, f"its directory {safe_text(d)} is writable by group or "
                        f"others (mode {stat.S_IMODE(st.st_mode):o}), so anyone can put a "
                        "trust store there", f"chmod go-w {safe_text(d)}")


def _read_trust_file(path: Path, source: str) -> bytes | None:
    """The file's bytes, or None when it does not exist (in a location only we can write)."""
    check_location(path, source)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fail(source, f"cannot be read ({exc.strerror})",
                    "check the path and its permissions") from exc
    try:
        st = os.fstat(fd)
        _check_permissions(path, st, source)
        if st.st_size > MAX_STORE_BYTES:
            raise _fail(source, f"is larger than {MAX_STORE_BYTES} bytes", _FIX_EDIT)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_STORE_BYTES + 1)
    finally:
        os.close(fd)


def _parse_json(data: bytes, source: str) -> Any:
    try:
        return strictjson.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(source, f"cannot parse ({exc})",
                    "fix the JSON, or move the file away and run `safeload trust init` "
                    "(keep a copy: it holds your keys and pins)") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if os.name == "posix":
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def _locked(store_path: Path) -> Iterator[None]:
    store_path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    lock = filelock.FileLock(str(store_path) + ".lock", timeout=LOCK_TIMEOUT_S, mode=0o644)
    try:
        with lock:
            yield
    except filelock.Timeout as exc:
        raise TrustStoreError(
            f"{store_path}: another process holds the trust store lock for more than "
            f"{LOCK_TIMEOUT_S:.0f} s", hint=f"check for a stuck safeload process; the lock "
            f"file is {store_path}.lock") from exc


def observed_path(store_path: Path) -> Path:
    """The sibling file with what loads learned: `trust.json` -> `trust.observed.json`."""
    return store_path.with_name(f"{store_path.stem}.observed.json")


# ------------------------------------------------------------------------------------------
# the store


_TOP_FIELDS = {"schema_version", "policy", "publishers", "revoked_keys", "revoked_digests",
               "pins", "revision_locks", "revoked_identities"}


@dataclass(frozen=True)
class TrustStore:
    """An immutable snapshot of the trust store. Change it with `TrustStore.update`."""

    publishers: tuple[Publisher, ...] = ()
    revoked_keys: tuple[Revocation, ...] = ()
    # keyless identities revoked everywhere: value = "ISSUER SAN" (a space cannot be in either)
    revoked_identities: tuple[Revocation, ...] = ()
    revoked_digests: tuple[Revocation, ...] = ()
    pins: tuple[Pin, ...] = ()
    revision_locks: tuple[RevisionLock, ...] = ()
    policy: Policy = field(default_factory=Policy)
    path: Path | None = field(default=None, compare=False)
    exists: bool = field(default=False, compare=False)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def default(cls) -> TrustStore:
        """An empty in-memory store with the default policy (what a missing file means)."""
        return cls()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> TrustStore:
        """Read the store at `path` (default: `paths.trust_store_path()`).

        A missing file gives an empty store with the default policy (`exists=False`).

        Raises:
            TrustStoreError: unreadable, unparseable, unknown schema or fields, invalid entries,
                or writable by group/others.
        """
        p = Path(path) if path is not None else paths.trust_store_path()
        source = str(p)
        data = _read_trust_file(p, source)
        if data is None:
            return cls(path=p, exists=False)
        return replace(cls.from_dict(_parse_json(data, source), source=source), path=p,
                       exists=True)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> TrustStore:
        """Parse and validate store JSON (e.g. a file to import). No permission checks.

        Raises:
            TrustStoreError: unparseable or invalid.
        """
        return cls.from_dict(_parse_json(data, source), source=source)

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<trust store>") -> TrustStore:
        """Validate a store document.

        Raises:
            TrustStoreError: naming the source, the entry and the fix.
        """
        if not isinstance(data, dict):
            raise _fail(source, "is not a JSON object", _FIX_EDIT)
        version = data.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and \
                version > SCHEMA_VERSION:
            raise _fail(source, f"has schema_version {version}; this safeload reads "
                        f"{SCHEMA_VERSION}", "upgrade safeload, or use the newer version's "
                        "`safeload trust export` from a matching install")
        if version != SCHEMA_VERSION:
            raise _fail(source, f"unknown schema_version {safe_text(version, limit=40)} "
                        f"(expected {SCHEMA_VERSION})",
                        f'set "schema_version": {SCHEMA_VERSION}, or rebuild the store')
        d = _obj(data, "the trust store", source, _TOP_FIELDS, {"schema_version"})
        publishers = tuple(
            Publisher.from_dict(p, where=f"publishers[{i}]", source=source)
            for i, p in enumerate(_list(d.get("publishers"), "publishers", source)))
        if len({p.name for p in publishers}) != len(publishers):
            raise _fail(source, "two publishers have the same name", _FIX_EDIT)
        revoked_keys = tuple(
            Revocation(_sha(r.get("key_id"), f"revoked_keys[{i}].key_id", source),
                       _str(r.get("reason", ""), f"revoked_keys[{i}].reason", source))
            for i, r in enumerate(
                _obj(x, f"revoked_keys[{j}]", source, {"key_id", "reason"}, {"key_id"})
                for j, x in enumerate(_list(d.get("revoked_keys"), "revoked_keys", source))))
        revoked_digests = tuple(
            Revocation(_sha(r.get("sha256"), f"revoked_digests[{i}].sha256", source),
                       _str(r.get("reason", ""), f"revoked_digests[{i}].reason", source))
            for i, r in enumerate(
                _obj(x, f"revoked_digests[{j}]", source, {"sha256", "reason"}, {"sha256"})
                for j, x in enumerate(_list(d.get("revoked_digests"), "revoked_digests",
                                            source))))
        revoked_identities = tuple(
            Revocation(identity_key(_str(r.get("issuer"), f"revoked_identities[{i}].issuer",
                                         source),
                                    _str(r.get("san"), f"revoked_identities[{i}].san", source)),
                       _str(r.get("reason", ""), f"revoked_identities[{i}].reason", source))
            for i, r in enumerate(
                _obj(x, f"revoked_identities[{j}]", source, {"issuer", "san", "reason"},
                     {"issuer", "san"})
                for j, x in enumerate(_list(d.get("revoked_identities"), "revoked_identities",
                                            source))))
        pins = tuple(Pin.from_dict(p, where=f"pins[{i}]", source=source)
                     for i, p in enumerate(_list(d.get("pins"), "pins", source)))
        if len({p.target for p in pins}) != len(pins):
            raise _fail(source, "the same file is pinned twice", _FIX_EDIT)
        locks = tuple(RevisionLock.from_dict(x, where=f"revision_locks[{i}]", source=source)
                      for i, x in enumerate(_list(d.get("revision_locks"), "revision_locks",
                                                  source)))
        policy = Policy.from_dict(d.get("policy", {}), source=source)
        return cls(publishers=publishers, revoked_keys=revoked_keys,
                   revoked_digests=revoked_digests, pins=pins, revision_locks=locks,
                   policy=policy, revoked_identities=revoked_identities)

    def to_dict(self) -> dict[str, Any]:
        """The store document (what `export` prints and the file holds)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "policy": self.policy.to_dict(),
            "publishers": [p.to_dict() for p in sorted(self.publishers, key=lambda p: p.name)],
            "revoked_keys": [r.to_dict("key_id") for r in
                             sorted(self.revoked_keys, key=lambda r: r.value)],
            "revoked_digests": [r.to_dict("sha256") for r in
                                sorted(self.revoked_digests, key=lambda r: r.value)],
            "pins": [p.to_dict() for p in sorted(self.pins, key=lambda p: p.target)],
            "revision_locks": [x.to_dict() for x in
                               sorted(self.revision_locks, key=lambda x: x.repo.casefold())],
            **({"revoked_identities": [
                {"issuer": r.value.split(" ", 1)[0], "san": r.value.split(" ", 1)[1],
                 **({"reason": r.reason} if r.reason else {})}
                for r in sorted(self.revoked_identities, key=lambda r: r.value)]}
               if self.revoked_identities else {}),
        }

    def to_json(self) -> bytes:
        """Pretty, sorted JSON for the file (stable diffs)."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
                + "\n").encode("utf-8")

    def state_digest(self) -> str:
        """SHA-256 of the canonical store: changes with any key, pin, revocation or policy change.

        Caches of verification results key on it so that a revocation or a policy change
        invalidates them. What loads observe (`trust.observed.json`) is not included.
        """
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    # -- persistence --------------------------------------------------------------------

    @classmethod
    def update(cls, change: Callable[[TrustStore], TrustStore],
               path: str | os.PathLike[str] | None = None) -> tuple[TrustStore, TrustStore]:
        """Apply `change` to a freshly read store under the lock and write it atomically.

        Returns (before, after). Nothing is written when `change` returns an equal store.

        Raises:
            TrustStoreError: the store is unusable, the lock cannot be taken, or `change`
                refused (it may raise TrustStoreError itself).
            OSError: the file cannot be written.
        """
        p = Path(path) if path is not None else paths.trust_store_path()
        with _locked(p):
            before = cls.load(p)
            after = change(before)
            # Round-trip through the validator: never write what load() would refuse.
            checked = cls.from_dict(json.loads(after.to_json()), source=str(p))
            if checked != before or not before.exists:
                _write_atomic(p, checked.to_json())
            return before, replace(checked, path=p, exists=True)

    # -- queries ------------------------------------------------------------------------

    def publisher(self, name: str) -> Publisher | None:
        """The publisher with this name (case-sensitive), if any."""
        return next((p for p in self.publishers if p.name == name), None)

    def owners_of(self, repo: str) -> list[Publisher]:
        """Publishers with keys or roots whose namespaces cover `repo`."""
        return [p for p in self.publishers if p.binds and p.owns(repo)]

    def key_revocation(self, key_id: str) -> Revocation | None:
        """The revocation of this key id, if revoked."""
        k = key_id.lower()
        return next((r for r in self.revoked_keys if r.value == k), None)

    def keyless_rules(self) -> list[tuple[SigstoreRoot, list[IdentityRule]]]:
        """The keyless identities of every publisher, grouped by the Sigstore root they use."""
        from safeload.signing.keyless import IdentityRule
        from safeload.signing.sigstore_roots import builtin_root

        groups: dict[str, list[IdentityRule]] = {}
        for p in self.publishers:
            for ident in p.identities:
                groups.setdefault(ident.instance, []).append(IdentityRule(
                    issuer=ident.issuer, san=ident.san, san_regex=ident.san_regex,
                    extensions=dict(ident.extensions), publisher=p.name,
                    instance=ident.instance))
        return [(builtin_root(name), rules) for name, rules in sorted(groups.items())]

    def identity_revocation(self, issuer: str, san: str) -> Revocation | None:
        """The revocation of this keyless identity, if revoked."""
        k = identity_key(issuer, san)
        return next((r for r in self.revoked_identities if r.value == k), None)

    def check_identity_revoked(self, result: KeylessResult, *, source: str) -> None:
        """Raises: RevokedError when the keyless signer's identity is revoked."""
        rev = self.identity_revocation(result.issuer, result.identity)
        if rev is not None:
            why = f" ({safe_text(rev.reason)})" if rev.reason else ""
            raise RevokedError(f"{source}: signed keyless by the revoked identity "
                               f"{safe_text(result.identity)} from {safe_text(result.issuer)}"
                               f"{why}")

    def with_identity(self, publisher: str, ident: TrustedIdentity) -> TrustStore:
        """Add a keyless identity to a publisher (created when missing)."""
        old = self.publisher(publisher) or Publisher(name=publisher)
        if ident in old.identities:
            return self
        new = replace(old, identities=(*old.identities, ident))
        rest = tuple(p for p in self.publishers if p.name != publisher)
        return replace(self, publishers=(*rest, new))

    def without_identity(self, publisher: str, issuer: str, san: str) -> TrustStore:
        """Remove the publisher's identities with this issuer and SAN (or SAN regex).

        Raises: TrustStoreError when there is none.
        """
        old = self.publisher(publisher)
        keep = tuple(i for i in (old.identities if old else ())
                     if not (i.issuer == issuer and san in (i.san, i.san_regex)))
        if old is None or len(keep) == len(old.identities):
            raise TrustStoreError(f"publisher {safe_text(publisher)} has no identity "
                                  f"{safe_text(san)} from {safe_text(issuer)}",
                                  hint="see `safeload trust list`")
        return replace(self, publishers=tuple(replace(p, identities=keep) if p.name == publisher
                                              else p for p in self.publishers))

    def with_revoked_identity(self, issuer: str, san: str, reason: str = "") -> TrustStore:
        """Revoke a keyless identity everywhere, whoever trusts it."""
        if self.identity_revocation(issuer, san):
            return self
        return replace(self, revoked_identities=(
            *self.revoked_identities, Revocation(identity_key(issuer, san), reason)))

    def digest_revocation(self, sha256: str) -> Revocation | None:
        """The revocation of this file digest, if revoked."""
        s = sha256.lower()
        return next((r for r in self.revoked_digests if r.value == s), None)

    def revision_lock(self, repo: str) -> RevisionLock | None:
        """The revision lock of `repo`, if any."""
        r = repo.casefold()
        return next((x for x in self.revision_locks if x.repo.casefold() == r), None)

    def find_pin(self, target: tuple[str, ...]) -> Pin | None:
        """The pin for a `Pin.target`, if any."""
        return next((p for p in self.pins if p.target == target), None)

    def find_key(self, key_id: str) -> tuple[Publisher, TrustedKey] | None:
        """The publisher and key with this id (a prefix of 8+ hex digits also matches)."""
        k = key_id.lower()
        hits = [(p, tk) for p in self.publishers for tk in p.keys
                if tk.key_id == k or (len(k) >= 8 and tk.key_id.startswith(k))]
        return hits[0] if len(hits) == 1 else None

    # -- changes (pure: return a new store) ---------------------------------------------

    def with_publisher(self, publisher: Publisher) -> TrustStore:
        """Add a publisher, or merge namespaces/keys/roots into the one with the same name."""
        old = self.publisher(publisher.name)
        if old is None:
            return replace(self, publishers=(*self.publishers, publisher))
        merged = Publisher(
            name=old.name,
            namespaces=tuple(sorted(set(old.namespaces) | set(publisher.namespaces))),
            keys=old.keys + tuple(k for k in publisher.keys
                                  if k.key_id not in {o.key_id for o in old.keys}),
            roots=_merge_roots(old.roots, publisher.roots),
            expires=publisher.expires if publisher.expires is not None else old.expires,
            identities=old.identities + tuple(i for i in publisher.identities
                                              if i not in old.identities),
        )
        return replace(self, publishers=tuple(merged if p.name == old.name else p
                                              for p in self.publishers))

    def without_publisher(self, name: str) -> TrustStore:
        """Remove a publisher (its keys stop being trusted; they are not revoked)."""
        return replace(self, publishers=tuple(p for p in self.publishers if p.name != name))

    def with_revoked_key(self, key_id: str, reason: str = "") -> TrustStore:
        """Revoke a key id (kept listed under its publisher, refused everywhere)."""
        if self.key_revocation(key_id):
            return self
        return replace(self, revoked_keys=(*self.revoked_keys, Revocation(key_id.lower(),
                                                                            reason)))

    def with_revoked_digest(self, sha256: str, reason: str = "") -> TrustStore:
        """Revoke a file digest: refused wherever it appears, in every mode."""
        if self.digest_revocation(sha256):
            return self
        return replace(self, revoked_digests=(*self.revoked_digests,
                                              Revocation(sha256.lower(), reason)))

    def with_pin(self, pin: Pin, *, replace_existing: bool = False) -> TrustStore:
        """Add a pin.

        Raises:
            TrustStoreError: the target is already pinned to another digest and
                `replace_existing` is false.
        """
        old = self.find_pin(pin.target)
        if old is not None:
            if old.sha256 == pin.sha256:
                return self
            if not replace_existing:
                raise TrustStoreError(
                    f"{safe_text(pin.describe())} is already pinned to {old.sha256}",
                    hint="unpin it first, or pass --replace")
        rest = tuple(p for p in self.pins if p.target != pin.target)
        return replace(self, pins=(*rest, pin))

    def without_pin(self, target: tuple[str, ...]) -> TrustStore:
        """Remove the pin for a target (no-op when absent)."""
        return replace(self, pins=tuple(p for p in self.pins if p.target != target))

    def with_policy(self, policy: Policy) -> TrustStore:
        """Replace the policy."""
        return replace(self, policy=policy)

    def with_revision_lock(self, lock: RevisionLock) -> TrustStore:
        """Add or replace the revision lock of a repository."""
        rest = tuple(x for x in self.revision_locks if x.repo.casefold() != lock.repo.casefold())
        return replace(self, revision_locks=(*rest, lock))

    def merged(self, other: TrustStore, *, replace_pins: bool = False) -> TrustStore:
        """Union of two stores (import): publishers merged by name, revocations and locks
        unioned, pins added. The policy of `self` is kept.

        Raises:
            TrustStoreError: a pin conflicts and `replace_pins` is false.
        """
        out = self
        for p in other.publishers:
            out = out.with_publisher(p)
        for r in other.revoked_keys:
            out = out.with_revoked_key(r.value, r.reason)
        for r in other.revoked_digests:
            out = out.with_revoked_digest(r.value, r.reason)
        for pin in other.pins:
            out = out.with_pin(pin, replace_existing=replace_pins)
        for lock in other.revision_locks:
            old = out.revision_lock(lock.repo)
            revs = set(lock.revisions) | (set(old.revisions) if old else set())
            out = out.with_revision_lock(RevisionLock(lock.repo, tuple(sorted(revs))))
        return out


def _merge_roots(old: tuple[TrustedRoot, ...], new: tuple[TrustedRoot, ...]) -> tuple[
        TrustedRoot, ...]:
    out = {r.fingerprint: r for r in old}
    for r in new:
        if r.fingerprint in out:
            prev = out[r.fingerprint]
            out[r.fingerprint] = replace(prev, identities=tuple(sorted(set(prev.identities)
                                                                       | set(r.identities))),
                                         expires=r.expires or prev.expires)
        else:
            out[r.fingerprint] = r
    return tuple(out.values())


def diff_stores(before: TrustStore, after: TrustStore) -> list[str]:
    """Human-readable lines describing what changed (for CLI output and import previews)."""
    lines: list[str] = []
    b, a = before.to_dict(), after.to_dict()
    if b["policy"] != a["policy"]:
        for k in sorted(set(b["policy"]) | set(a["policy"])):
            if b["policy"].get(k) != a["policy"].get(k):
                lines.append(f"policy.{k}: {b['policy'].get(k)} -> {a['policy'].get(k)}")
    bp = {p.name: p for p in before.publishers}
    for p in after.publishers:
        old = bp.get(p.name)
        if old is None:
            lines.append(f"+ publisher {safe_text(p.name)} ({len(p.keys)} key(s), "
                         f"{len(p.roots)} root(s), {len(p.identities)} keyless identities, "
                         f"namespaces: {', '.join(p.namespaces) or '-'})")
            continue
        for ns in sorted(set(p.namespaces) - set(old.namespaces)):
            lines.append(f"+ namespace {safe_text(ns)} for {safe_text(p.name)}")
        for ns in sorted(set(old.namespaces) - set(p.namespaces)):
            lines.append(f"- namespace {safe_text(ns)} for {safe_text(p.name)}")
        for k in p.keys:
            if k.key_id not in {o.key_id for o in old.keys}:
                lines.append(f"+ key {k.key_id} ({k.algorithm}) for {safe_text(p.name)}")
        for k in old.keys:
            if k.key_id not in {n.key_id for n in p.keys}:
                lines.append(f"- key {k.key_id} for {safe_text(p.name)}")
        old_roots = {r.fingerprint: r for r in old.roots}
        for r in p.roots:
            if r.fingerprint not in old_roots:
                lines.append(f"+ root {r.fingerprint[:16]}... for {safe_text(p.name)} "
                             f"(identities: {safe_text(', '.join(r.identities))})")
            elif old_roots[r.fingerprint].identities != r.identities:
                lines.append(f"~ root {r.fingerprint[:16]}... identities: "
                             f"{safe_text(', '.join(r.identities))}")
        for i in p.identities:
            if i not in old.identities:
                lines.append(f"+ keyless identity {i.describe()} for {safe_text(p.name)}")
        for i in old.identities:
            if i not in p.identities:
                lines.append(f"- keyless identity {i.describe()} for {safe_text(p.name)}")
    for name in sorted(set(bp) - {p.name for p in after.publishers}):
        lines.append(f"- publisher {safe_text(name)}")
    b.setdefault("revoked_identities", [])
    a.setdefault("revoked_identities", [])
    for label, key in (("revoked key", "revoked_keys"), ("revoked digest", "revoked_digests"),
                       ("revoked identity", "revoked_identities"),
                       ("pin", "pins"), ("revision lock", "revision_locks")):
        old_items = [json.dumps(x, sort_keys=True) for x in b[key]]
        new_items = [json.dumps(x, sort_keys=True) for x in a[key]]
        for x in new_items:
            if x not in old_items:
                lines.append(f"+ {label} {safe_text(_short(json.loads(x)))}")
        for x in old_items:
            if x not in new_items:
                lines.append(f"- {label} {safe_text(_short(json.loads(x)))}")
    return lines


def _short(entry: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(entry.items()))


# ------------------------------------------------------------------------------------------
# observations: first-use pins and "was signed" records (no silent downgrade)


@dataclass(frozen=True)
class SignedRecord:
    """A location once loaded with a valid signature: loading it unsigned later is refused."""

    location: str  # "hf:<repo>" or "file:<resolved model dir>"
    publisher: str
    key_id: str
    first_seen: str


@dataclass(frozen=True)
class Observations:
    """What loads learned, kept in `trust.observed.json` beside the store."""

    pins: tuple[Pin, ...] = ()
    signed: tuple[SignedRecord, ...] = ()

    @classmethod
    def load(cls, path: Path) -> Observations:
        """Raises: TrustStoreError (unparseable, bad schema, too permissive)."""
        source = str(path)
        data = _read_trust_file(path, source)
        if data is None:
            return cls()
        doc = _obj(_parse_json(data, source), "the observations file", source,
                   {"schema_version", "pins", "signed"}, {"schema_version"})
        if doc["schema_version"] != OBSERVED_SCHEMA_VERSION:
            raise _fail(source, f"unknown schema_version {safe_text(doc['schema_version'])}",
                        "upgrade safeload, or delete the file (it only holds first-use pins "
                        "and signed-location records)")
        pins = tuple(Pin.from_dict(p, where=f"pins[{i}]", source=source)
                     for i, p in enumerate(_list(doc.get("pins"), "pins", source)))
        signed = []
        for i, s in enumerate(_list(doc.get("signed"), "signed", source)):
            e = _obj(s, f"signed[{i}]", source, {"location", "publisher", "key_id", "first_seen"},
                     {"location", "publisher", "key_id", "first_seen"})
            signed.append(SignedRecord(
                location=_str(e["location"], f"signed[{i}].location", source),
                publisher=_str(e["publisher"], f"signed[{i}].publisher", source),
                key_id=_str(e["key_id"], f"signed[{i}].key_id", source),
                first_seen=_str(e["first_seen"], f"signed[{i}].first_seen", source)))
        return cls(pins=pins, signed=tuple(signed))

    def to_json(self) -> bytes:
        doc = {
            "schema_version": OBSERVED_SCHEMA_VERSION,
            "pins": [p.to_dict() for p in sorted(self.pins, key=lambda p: p.target)],
            "signed": [{"location": s.location, "publisher": s.publisher, "key_id": s.key_id,
                        "first_seen": s.first_seen}
                       for s in sorted(self.signed, key=lambda s: s.location)],
        }
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    def find_pin(self, target: tuple[str, ...]) -> Pin | None:
        """The first-use pin for a target, if any."""
        return next((p for p in self.pins if p.target == target), None)

    @classmethod
    def update(cls, store_path: Path, change: Callable[[Observations], Observations]
               ) -> Observations:
        """Read, change and atomically rewrite the observations under the store's lock.

        Raises:
            TrustStoreError: unusable file or lock. OSError: cannot write.
        """
        path = observed_path(store_path)
        with _locked(store_path):
            before = cls.load(path)
            after = change(before)
            if after != before:
                _write_atomic(path, after.to_json())
            return after


def load_observations(store: TrustStore) -> Observations:
    """The observations beside `store` (empty for an in-memory store).

    Raises:
        TrustStoreError: the file is unusable.
    """
    if store.path is None:
        return Observations()
    return Observations.load(observed_path(store.path))


# ------------------------------------------------------------------------------------------
# check_load: the policy, enforced on every load


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
    method: str | None  # "key" | "certificate" | None
    identity: str | None
    pin: Literal["hit", "new", "none", "mismatch"]
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


_SIG_CACHE_TTL_S = 600.0  # certificate validity is checked against "now": re-check regularly
_SIG_CACHE_MAX = 64
_sig_cache: dict[tuple[str, str, str], tuple[float, SignedManifest]] = {}
_sig_cache_lock = threading.Lock()


def _verified_signature(sig_path: Path, store: TrustStore) -> SignedManifest:
    """`signing.verify_signature_bytes` with a small in-process cache keyed by the signature
    bytes and the store's state, so loading N shards checks one signature once."""
    from safeload.signing.verify import read_signature, verify_signature_bytes

    data = read_signature(sig_path)
    key = (str(sig_path.absolute()), hashlib.sha256(data).hexdigest(), store.state_digest())
    now = time.monotonic()
    with _sig_cache_lock:
        hit = _sig_cache.get(key)
        if hit is not None and now - hit[0] < _SIG_CACHE_TTL_S:
            return hit[1]
    result = verify_signature_bytes(data, signature_path=sig_path, trust_store=store)
    with _sig_cache_lock:
        if len(_sig_cache) >= _SIG_CACHE_MAX:
            _sig_cache.pop(next(iter(_sig_cache)))
        _sig_cache[key] = (now, result)
    return result


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
    here = Path(os.path.abspath(path))
    if explicit is not None:
        sig_dir = Path(os.path.abspath(explicit)).parent
        root = sig_dir if sig_dir in here.parents else here.parent
        return _FoundSignature(explicit, root, f"file:{root.resolve()}")
    single = path.with_name(path.name + ".sig")
    if single.is_file():
        return _FoundSignature(single, here.parent, f"file:{path.resolve()}")
    dirs = [here.parent]
    snap = _snapshot_root(here)
    if snap is not None:
        d = here.parent
        while d != snap and snap in d.parents:
            d = d.parent
            dirs.append(d)
    for d in dirs:
        if (d / "model.sig").is_file():
            return _FoundSignature(d / "model.sig", d, f"file:{d.resolve()}")
    return None


def _hub_filename(path: Path) -> str:
    snap = _snapshot_root(path)
    if snap is not None:
        with contextlib.suppress(ValueError):
            return path.absolute().relative_to(snap).as_posix()
    return path.name


def _check_loaded_file(
    signed: SignedManifest, path: Path, found: _FoundSignature, sha256: str, size: int
) -> None:
    """The loaded file is covered by the verified manifest with the digest it was loaded with.

    Partial verification: only this file is checked (each file is checked when it is loaded);
    `safeload verify` checks a whole directory, extra and missing files included.
    """
    from safeload.signing._tree import hash_fd_ranges, hasher_factory, open_regular, shard_ranges

    manifest = signed.manifest
    sig_path, root = found.path, found.root
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        rel = path.name
    entries = signed.resources_for(rel) or (signed.resources_for(".")
                                            if rel == path.name else [])
    if not entries:
        raise ManifestMismatchError(
            f"{safe_text(path)} is not covered by the signature {safe_text(sig_path)}",
            hint="the file was added after signing; remove it or ask the publisher to re-sign",
            extra=(rel,))
    if manifest.method == "files" and manifest.hash_type == "sha256":
        if entries[0].digest != sha256:
            raise DigestMismatchError(safe_text(path), f"sha256:{entries[0].digest}",
                                      f"sha256:{sha256}")
        return
    # Another hash or shards: re-read the file, and tie what we hash to what was loaded by
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
    fd = open_regular(path, follow_symlinks=True)
    try:
        if os.fstat(fd).st_size != size:
            raise DigestMismatchError(safe_text(path), f"{size} bytes",
                                      f"{os.fstat(fd).st_size} bytes (the file changed)")
        digests, whole = hash_fd_ranges(fd, ranges, factory, also_sha256=True)
    finally:
        os.close(fd)
    if whole != sha256:
        raise DigestMismatchError(safe_text(path), f"sha256:{sha256} (as loaded)",
                                  f"sha256:{whole} (the file changed while it was checked)")
    for entry, digest in zip(entries, digests, strict=True):
        if entry.digest != digest:
            raise DigestMismatchError(safe_text(path), f"{manifest.hash_type}:{entry.digest}",
                                      f"{manifest.hash_type}:{digest}")


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
) -> TrustDecision:
    """Decide whether the bytes of `path` (whose SHA-256 the caller computed from the very handle
    it will load from) may be loaded, under `store`'s policy.

    `repo`/`revision` identify Hub content (`revision` should be the commit hash); `filename`
    overrides the repo-relative name (default: derived from a cache `snapshots/<rev>/` path, else
    the basename). `signature` overrides where the signature is looked for (default:
    `<file>.sig`, `model.sig` beside the file, `model.sig` in the Hub snapshot root).
    `pin_local` pins a local file on first use (default: the policy's `pin_local_files`).
    `record=False` leaves `trust.observed.json` untouched (dry runs).

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
        (In audit mode only RevokedError and TrustStoreError are raised; the rest become
        warnings.)
    """
    sha = sha256.lower().removeprefix("sha256:")
    if not _SHA256.fullmatch(sha):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    path = Path(path)
    mode = store.policy.mode
    warnings: list[str] = []

    refuse = _refuser(mode, warnings)

    # 1. Revoked digests: always.
    _refuse_revoked(store, sha, safe_text(path))

    hub = repo is not None
    if hub and not _REPO.fullmatch(repo or ""):
        raise ValueError(f"not a Hugging Face repo id: {safe_text(repo)}")
    fname = filename or (_hub_filename(path) if hub else None)

    # 2. Revision locks.
    if hub:
        assert repo is not None
        lock = store.revision_lock(repo)
        if lock is not None and revision not in lock.revisions:
            refuse(RevisionLockError(
                f"{safe_text(repo)} is locked to revision(s) {', '.join(lock.revisions)}; "
                f"refusing {safe_text(revision or '(unknown revision)')}",
                hint="load one of the locked commits, or update the lock"))

    # 3. Pins (user pins in the store, then first-use pins).
    observations = load_observations(store)
    target: tuple[str, ...] | None = None
    if hub and revision is not None:
        target = Pin(sha, repo=repo, revision=revision, file=fname).target
    elif not hub:
        target = ("path", str(path.resolve()))
    pin_state: Literal["hit", "new", "none", "mismatch"] = "none"
    pinned = None
    if target is not None:
        pinned = store.find_pin(target) or observations.find_pin(target)
    if pinned is not None:
        if pinned.sha256 == sha:
            pin_state = "hit"
        else:
            pin_state = "mismatch"
            refuse(DigestMismatchError(safe_text(path), f"sha256:{pinned.sha256}",
                                       f"sha256:{sha}"))

    # 4. A signature that is present must verify.
    found = _find_signature(path, signature)
    sig_path = found.path if found is not None else None
    signed: SignedManifest | None = None
    if signature is not None and not signature.is_file():
        refuse(SignatureError(f"no signature at {safe_text(signature)}"))
    elif found is not None:
        try:
            candidate = _verified_signature(found.path, store)
            _check_loaded_file(candidate, path, found, sha, size)
            signed = candidate
        except (VerificationError, UnsupportedSignatureError, UnsafePathError) as exc:
            refuse(exc)
        except OSError as exc:
            refuse(SignatureError(f"cannot read {safe_text(sig_path)}: {exc}"))

    # 5. Namespace binding: a trusted publisher's namespace needs that publisher's signature.
    if hub:
        assert repo is not None
        owners = store.owners_of(repo)
        if owners and (signed is None or signed.publisher not in {o.name for o in owners}):
            names = ", ".join(safe_text(o.name) for o in owners)
            if signed is None:
                refuse(SignatureError(
                    f"{safe_text(repo)} is in a namespace of publisher {names}, and "
                    f"{safe_text(fname)} has no valid signature by it",
                    hint="download the publisher's model.sig with the model, or remove the "
                         "namespace from the publisher if it does not sign"))
            else:
                refuse(UntrustedPublisherError(
                    f"{safe_text(repo)} belongs to publisher {names}, but "
                    f"{safe_text(fname)} is signed by {safe_text(signed.publisher)}"))

    # 5b. Re-upload: the publisher signed these bytes, but this repo is not in its namespaces.
    reupload = False
    if hub and signed is not None and signed.publisher is not None:
        pub = store.publisher(signed.publisher)
        if pub is not None and not pub.owns(repo or ""):
            reupload = True
            warnings.append(
                f"re-upload: {safe_text(fname)} is signed by publisher "
                f"{safe_text(signed.publisher)}, but {safe_text(repo)} is not one of its "
                "namespaces (the bytes are the publisher's, the repository is not)")

    # 6. No silent downgrade.
    locations = _locations(path, repo)
    if signed is None:
        prior = [s for s in observations.signed if s.location in locations]
        if prior:
            refuse(SignatureError(
                f"{safe_text(path)} has no valid signature, but {safe_text(prior[0].location)} "
                f"was loaded signed by {safe_text(prior[0].publisher)} on {prior[0].first_seen}",
                hint="restore its model.sig; if the publisher stopped signing on purpose: "
                     f"safeload trust forget {safe_text(prior[0].location)}"))

    # 7. Strict mode needs a trusted signature.
    if mode == "strict" and signed is None:
        refuse(SignatureError(f"{safe_text(path)}: strict mode requires a signature by a "
                              "publisher in the trust store",
                              hint="sign it (safeload sign) and trust the key, or relax the "
                                   "policy: safeload trust policy --mode default"))
    if signed is None and not warnings:
        warnings.append(f"{safe_text(path)} is unsigned; loaded because no trusted publisher "
                        "claims it (policy mode default)")

    # 8. Record first-use pins and signed locations.
    new_pin: Pin | None = None
    if hub and revision is None:
        warnings.append("not pinned: no revision given for Hub content")
    if pinned is None and target is not None:
        if hub and store.policy.pin_hub_on_first_use:
            if revision is not None and _COMMIT.fullmatch(revision):
                new_pin = Pin(sha, repo=repo, revision=revision, file=fname)
            else:
                warnings.append(f"not pinned: revision {safe_text(revision)} is not a commit "
                                "hash")
        elif not hub and (pin_local if pin_local is not None else store.policy.pin_local_files):
            new_pin = Pin(sha, path=target[1])
    new_record: SignedRecord | None = None
    if signed is not None and signed.publisher is not None:
        loc = f"hf:{repo.casefold()}" if hub and repo else \
            (found.location if found is not None else f"file:{path.resolve()}")
        if not any(s.location == loc for s in observations.signed):
            new_record = SignedRecord(loc, signed.publisher, signed.key_id,
                                      format_time(_now()) or "")
    if record and (new_pin is not None or new_record is not None):
        if store.path is None:
            warnings.append("not recorded: the trust store has no file (in-memory store)")
        else:
            try:
                Observations.update(store.path, lambda o: _observe(o, new_pin, new_record))
                if new_pin is not None:
                    pin_state = "new"
            except (TrustStoreError, OSError) as exc:
                warnings.append(f"could not record the first-use pin / signed location: {exc}")
                _logger.warning("could not record to %s: %s", observed_path(store.path), exc)
    elif new_pin is not None and not record:
        pin_state = "new"

    return TrustDecision(
        mode=mode, signed=signed is not None,
        publisher=signed.publisher if signed is not None else None,
        key_id=signed.key_id if signed is not None else None,
        method=signed.method if signed is not None else None,
        identity=signed.identity if signed is not None else None,
        pin=pin_state, warnings=tuple(warnings), sha256=sha,
        signature_path=str(sig_path) if signed is not None and sig_path else None,
        signature_sha256=signed.signature_sha256 if signed is not None else None,
        subject_digest=signed.manifest.subject_digest if signed is not None else None,
        reupload=reupload, keyless=_keyless_summary(signed),
    )


def _refuser(mode: str, warnings: list[str]) -> Callable[[SafeloadError], None]:
    """Raise a refusal, or in audit mode record it as a warning (revocation always raises)."""
    def refuse(exc: SafeloadError) -> None:
        if mode == "audit" and not isinstance(exc, RevokedError):
            warnings.append(f"audit: would refuse: {exc}")
            _logger.warning("audit mode, not refusing: %s", exc)
            return
        raise exc

    return refuse


def _refuse_revoked(store: TrustStore, sha: str, shown: str) -> None:
    rev = store.digest_revocation(sha)
    if rev is not None:
        why = f" ({safe_text(rev.reason)})" if rev.reason else ""
        raise RevokedError(f"{shown} has revoked digest sha256:{sha}{why}",
                           hint="this exact file is known bad; do not load it")


def check_bytes(
    name: str,
    *,
    sha256: str,
    store: TrustStore,
    repo: str | None = None,
    revision: str | None = None,
) -> TrustDecision:
    """`check_load` for bytes without a file (a stream, `io.BytesIO`, bytes under `guard()`).

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
    warnings: list[str] = []
    shown = safe_text(name)

    refuse = _refuser(mode, warnings)
    _refuse_revoked(store, sha, shown)
    no_sig = ("pass the file's path instead of a stream, so its signature can be checked")
    if repo is not None:
        lock = store.revision_lock(repo)
        if lock is not None and revision not in lock.revisions:
            refuse(RevisionLockError(
                f"{shown}: {safe_text(repo)} is locked to revision(s) "
                f"{', '.join(lock.revisions)}; refusing {safe_text(revision or '(unknown)')}",
                hint="load one of the locked commits, or update the lock"))
        owners = store.owners_of(repo)
        if owners:
            refuse(SignatureError(
                f"{shown}: {safe_text(repo)} is in a namespace of publisher "
                f"{', '.join(safe_text(o.name) for o in owners)}, and bytes read from a stream "
                "carry no signature safeload can check", hint=no_sig))
        prior = [s for s in load_observations(store).signed
                 if s.location == f"hf:{repo.casefold()}"]
        if prior:
            refuse(SignatureError(
                f"{shown}: {safe_text(repo)} was loaded signed by "
                f"{safe_text(prior[0].publisher)}; a stream carries no signature", hint=no_sig))
    if mode == "strict":
        refuse(SignatureError(f"{shown}: strict mode requires a signature by a publisher in "
                              "the trust store, and bytes read from a stream cannot be checked "
                              "against one", hint=no_sig))
    observed = load_observations(store)
    pinned = any(p.sha256 == sha for p in (*store.pins, *observed.pins))
    if not warnings:
        warnings.append(f"{shown} is unsigned (bytes from a stream, no signature can be "
                        f"checked); loaded under policy mode {mode}")
    return TrustDecision(mode=mode, signed=False, publisher=None, key_id=None, method=None,
                         identity=None, pin="hit" if pinned else "none",
                         warnings=tuple(warnings), sha256=sha)


def _keyless_summary(signed: SignedManifest | None) -> dict[str, Any] | None:
    if signed is None or signed.keyless is None:
        return None
    from safeload.signing.keyless import summary

    return summary(signed.keyless)


def _locations(path: Path, repo: str | None) -> set[str]:
    """Every location whose "was signed" record applies to this load."""
    if repo is not None:
        return {f"hf:{repo.casefold()}"}
    resolved = path.resolve()
    return {f"file:{d}" for d in resolved.parents} | {f"file:{resolved}"}


def _observe(obs: Observations, pin: Pin | None, rec: SignedRecord | None) -> Observations:
    out = obs
    if pin is not None and out.find_pin(pin.target) is None:
        out = replace(out, pins=(*out.pins, pin))
    if rec is not None and not any(s.location == rec.location for s in out.signed):
        out = replace(out, signed=(*out.signed, rec))
    return out


def forget_location(store_path: Path, location: str) -> bool:
    """Drop a "was signed" record (the publisher stopped signing on purpose). True if removed.

    Raises:
        TrustStoreError, OSError: see `Observations.update`.
    """
    removed = False

    def change(o: Observations) -> Observations:
        nonlocal removed
        keep = tuple(s for s in o.signed if s.location != location)
        removed = len(keep) != len(o.signed)
        return replace(o, signed=keep)

    Observations.update(store_path, change)
    return removed


def unpin_observed(store_path: Path, target: tuple[str, ...]) -> bool:
    """Drop a first-use pin. True if removed.

    Raises:
        TrustStoreError, OSError: see `Observations.update`.
    """
    removed = False

    def change(o: Observations) -> Observations:
        nonlocal removed
        keep = tuple(p for p in o.pins if p.target != target)
        removed = len(keep) != len(o.pins)
        return replace(o, pins=keep)

    Observations.update(store_path, change)
    return removed


__all__ = [
    "MODES", "SCHEMA_VERSION", "Observations", "Pin", "Policy", "Publisher", "RevisionLock",
    "Revocation", "SignedRecord", "TrustDecision", "TrustStore", "TrustedKey", "TrustedRoot",
    "check_bytes", "check_load", "check_location", "diff_stores", "forget_location",
    "load_observations", "observed_path", "unpin_observed",
]
