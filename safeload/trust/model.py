"""The trust store's data model: the policy, publishers and their keys, roots and keyless
identities, revocations, pins and revision locks. Immutable values with their JSON form.

May import: `trust._schema`, `licenses`, errors and `_internal.text`; `signing` (keys,
certificates, Sigstore roots) only inside the functions that parse key material, so that
cryptography stays unloaded until a key is used.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from safeload._internal.text import safe_text
from safeload.errors import TrustStoreError
from safeload.licenses import LicensePolicy
from safeload.trust._schema import (
    _FIX_EDIT,
    NAME,
    NAMESPACE,
    REPO,
    REPO_PART,
    _fail,
    _list,
    _obj,
    _sha,
    _str,
    _time,
    format_time,
)

if TYPE_CHECKING:  # cryptography loads only when keys or certificates are used
    from cryptography import x509

    from safeload.signing import _keys

Mode = Literal["strict", "default", "audit"]
MODES: tuple[Mode, ...] = get_args(Mode)
# "convert": clean pickles are converted in the sandbox; "refuse": every pickle is refused.
Pickles = Literal["convert", "refuse"]
PICKLES: tuple[Pickles, ...] = get_args(Pickles)
# How much each mode refuses: a change to a lower rank weakens the policy.
MODE_RANK: Mapping[Mode, int] = MappingProxyType({"audit": 0, "default": 1, "strict": 2})

# The policy in words, once (the package docstring and `safeload trust policy` point here).
POLICY_TEXT = """\
The default policy (mode "default"):
  - revoked digests and revoked keys are refused, in every mode (audit included);
  - a pinned digest that no longer matches is refused;
  - a repository with a revision lock loads only at the locked commits;
  - a signature that is present (model.sig beside the file, or in its Hub snapshot) must
    verify against a trusted publisher;
  - a repo in a namespace owned by a publisher with keys must be signed by it;
  - content once loaded with a valid signature is refused later without one;
  - a valid signature by a trusted publisher on a Hub repo outside its namespaces (a
    re-upload) loads with a warning, marked `reupload` in the decision and the ledger;
  - keyless publishers are identities (Sigstore instance, exact OIDC issuer, exact SAN or
    opt-in full-match regex, optional Fulcio extension pins); revoking an identity, or a
    Fulcio certificate by fingerprint, refuses it everywhere;
  - anything else (unsigned, unbound) loads with a warning;
  - Hub files (repo + commit + file) are pinned on first use; local files are not;
  - pickles that inspect clean are converted in the sandbox (pickles "refuse": all refused);
  - no mode ever executes pickled code: pickles with findings are always refused.
mode "strict": every load needs a signature by a trusted publisher.
mode "audit": signature, pin, lock and downgrade failures are warnings (UNSAFE for production);
  revoked digests and keys are still refused."""


@dataclass(frozen=True)
class Policy:
    """How loads are judged. Unknown fields in the store are refused, not ignored."""

    mode: Mode = "default"
    pin_hub_on_first_use: bool = True
    pin_local_files: bool = False
    pickles: Pickles = "convert"
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
        if pickles not in PICKLES:
            raise _fail(source, "policy.pickles must be \"convert\" or \"refuse\"", _FIX_EDIT)
        licenses = LicensePolicy.default()
        if "licenses" in d:
            try:
                licenses = LicensePolicy.from_dict(d["licenses"])
            except TrustStoreError as exc:
                raise _fail(source, f"policy.{exc}", _FIX_EDIT) from None
        return cls(mode=cast(Mode, mode), pickles=cast(Pickles, pickles), licenses=licenses,
                   **out)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "pin_hub_on_first_use": self.pin_hub_on_first_use,
                "pin_local_files": self.pin_local_files, "pickles": self.pickles,
                "licenses": self.licenses.to_dict()}

    def weakenings_from(self, before: Policy) -> tuple[str, ...]:
        """What changing from `before` to this policy gives up (empty: not weaker).

        Weaker: a lower mode (strict > default > audit), no more first-use pins of Hub files,
        or pickles converted where they were refused. (The licence policy and local pins are
        the user's configuration, not a safety ranking.)
        """
        out: list[str] = []
        if MODE_RANK[self.mode] < MODE_RANK[before.mode]:
            out.append(f"mode {before.mode} -> {self.mode}")
        if before.pin_hub_on_first_use and not self.pin_hub_on_first_use:
            out.append("Hub files no longer pinned on first use")
        if before.pickles == "refuse" and self.pickles == "convert":
            out.append("pickles converted instead of refused")
        return tuple(out)

    def is_weaker_than(self, before: Policy) -> bool:
        """True when moving from `before` to this policy refuses less (see `weakenings_from`)."""
        return bool(self.weakenings_from(before))


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
        if (self.san is None) == (self.san_regex is None):
            raise TrustStoreError("an identity needs exactly one of --san and --san-regex")
        if not self.issuer:
            raise TrustStoreError("an identity needs its exact OIDC issuer (--issuer)")
        # production, staging, or a private instance added with `trust sigstore-root add`
        # (whether its root exists is checked when it is used: a missing one refuses).
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", self.instance):
            raise TrustStoreError(f"not a Sigstore instance name: {safe_text(self.instance)}",
                                  hint="production, staging, or a name from "
                                       "`safeload trust sigstore-root list`")
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
        name = _str(d["name"], f"{where}.name", source, NAME, "publisher name")
        where = f"publisher {name!r}"
        namespaces = tuple(
            _norm_namespace(_str(n, f"{where}.namespaces[]", source,
                                 re.compile(rf"{NAMESPACE.pattern}|{REPO_PART}"),
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

    def conflicts_with(self, other: Pin) -> bool:
        """Same file, another digest: adding one while the other is pinned needs a replace."""
        return self.target == other.target and self.sha256 != other.sha256

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
        return cls(sha256=sha, repo=_str(d["repo"], f"{where}.repo", source, REPO, "repo id"),
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
        return cls(repo=_str(d["repo"], f"{where}.repo", source, REPO, "repo id"),
                   revisions=tuple(sorted(set(revs))))

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "revisions": list(self.revisions)}
