"""The Sigstore trusted roots a user keeps: refreshed through TUF, or private instances.

One file per instance, `<data dir>/sigstore-roots/<name>.json` (the data dir resolved at call
time; `SAFELOAD_HOME` relocates it), each replaced atomically, so a reader sees the previous
root or the whole new one:

- `production` / `staging` refreshed by `safeload trust sigstore-root update` keep the TUF
  metadata that signed them, and are re-verified offline at every use against the TUF root
  shipped in the package (`sigstore_tuf.verify_offline`): a file swapped in the data dir (the
  staging root under the production name, say) is refused, never trusted;
- a private instance (`safeload trust sigstore-root add NAME FILE`: Red Hat Trusted Artifact
  Signer and the like) is the user's own trust decision, like a key in the trust store.

`resolve_root(name)` is what verification uses: the stored root of that name, else the copy
shipped in the package. The root used (name and sha256) is recorded in provenance.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from safeload._internal import paths, strictjson
from safeload._internal.atomic import write_atomic
from safeload._internal.private_dir import others_could_replace
from safeload._internal.text import safe_text
from safeload.errors import SignatureError, SigstoreRootError, SigstoreRootRefusedError
from safeload.signing.sigstore_roots import (
    BUILTIN_ROOTS,
    MAX_ROOT_BYTES,
    SigstoreRoot,
    builtin_root,
    root_from_bytes,
)

SCHEMA = "safeload.sigstore-root/1"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# The TUF repositories of the public-good instances, and the TUF roots shipped to start from
# (copied unchanged from the sigstore 4.5.1 wheel).
TUF_URLS = {"production": "https://tuf-repo-cdn.sigstore.dev/",
            "staging": "https://tuf-repo-cdn.sigstage.dev/"}
TUF_ANCHOR_SHA256 = {
    "production": "73747011d0857ada15479a16c4cae0f3ed03aac698b523b97e1de314ac9d9ca8",
    "staging": "353d172f05f9e73b4a647b1a464f16726d929cbfd030cc42bffb86cd742fb61f",
}
_UPDATE_FIX = "safeload trust sigstore-root update --instance {name}, or " \
              "safeload trust sigstore-root remove {name} to use the shipped copy"


def roots_dir() -> Path:
    return paths.data_dir() / "sigstore-roots"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise SigstoreRootError(f"not a Sigstore instance name: {safe_text(name)!r}",
                                hint="use lower-case letters, digits, '.', '_' and '-'")
    return name


def tuf_anchor(name: str) -> bytes:
    """The shipped TUF root of `production` or `staging`, checked against its sha256."""
    data = resources.files("safeload.signing").joinpath("_roots", f"{name}.tuf-root.json"
                                                        ).read_bytes()
    if hashlib.sha256(data).hexdigest() != TUF_ANCHOR_SHA256[name]:
        raise SignatureError(f"safeload's packaged {name} TUF root was altered",
                             hint="reinstall safeload")
    return data


@dataclass(frozen=True)
class StoredRoot:
    """A stored root file: its instance, kind ("tuf" or "file"), bytes and history."""

    name: str
    kind: str
    trusted_root: bytes
    updated: str
    source: str
    tuf: dict[str, Any] | None


def _path(name: str) -> Path:
    return roots_dir() / f"{check_name(name)}.json"


def _check_private(p: Path, st: os.stat_result, fix: str) -> None:
    """A stored root is a trust anchor, held to the trust store's rule: a regular file of ours
    alone, in folders no other user controls (review T-1: a planted file was used).

    Raises:
        SigstoreRootRefusedError: naming what another user could change.
    """
    if os.name != "posix":
        return
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "it is not a regular file"
    elif st.st_mode & 0o022:
        problem = f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    elif st.st_uid not in (os.getuid(), 0):
        problem = f"it is owned by another user (uid {st.st_uid})"
    else:
        above = others_could_replace(p)
        problem = None if above is None else above[0]
    if problem is not None:
        raise SigstoreRootRefusedError(f"{safe_text(p)}: refused as a stored Sigstore root: "
                                       f"{problem}, so another user may have written it",
                                       hint=fix)


def read_stored(name: str) -> StoredRoot | None:
    """The stored file of `name`, parsed (not yet verified), or None when there is none.

    Raises:
        SigstoreRootRefusedError: the file is unreadable or not one of ours (fail closed).
    """
    p = _path(name)
    fix = _UPDATE_FIX.format(name=name)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a link, which another user may have placed
        raise SigstoreRootRefusedError(f"{safe_text(p)}: cannot be read as a stored Sigstore "
                                       f"root ({exc.strerror})", hint=fix) from None
    with os.fdopen(fd, "rb") as f:
        _check_private(p, os.fstat(f.fileno()), fix)
        raw = f.read(4 * MAX_ROOT_BYTES + 1)
    try:
        d = strictjson.loads(raw)
        ok = isinstance(d, dict) and d.get("schema") == SCHEMA and d.get("name") == name \
            and d.get("kind") in ("tuf", "file") and isinstance(d.get("trusted_root"), str)
    except (ValueError, UnicodeDecodeError, RecursionError):
        ok = False
    if not ok or len(raw) > 4 * MAX_ROOT_BYTES:
        raise SigstoreRootRefusedError(f"{safe_text(p)}: not a stored Sigstore root of "
                                       f"{safe_text(name)}", hint=fix)
    tuf = d.get("tuf")
    if d["kind"] == "file" and name in BUILTIN_ROOTS:
        # `add` refuses public-good names: such a file was put there by hand, and would stand
        # in for the shipped root with no TUF check (review T-1)
        raise SigstoreRootRefusedError(f"{safe_text(p)}: the {name} root must be the shipped "
                                       "one or refreshed through TUF, not a plain file",
                                       hint=fix)
    if d["kind"] == "tuf" and (name not in BUILTIN_ROOTS or not isinstance(tuf, dict)):
        raise SigstoreRootRefusedError(f"{safe_text(p)}: a TUF-refreshed root without its "
                                       "metadata", hint=fix)
    return StoredRoot(name=name, kind=d["kind"], trusted_root=d["trusted_root"].encode(),
                      updated=str(d.get("updated", "")), source=str(d.get("source", "")),
                      tuf=tuf if isinstance(tuf, dict) else None)


_verified: dict[str, SigstoreRoot] = {}
_lock = threading.Lock()


def _from_stored(rec: StoredRoot) -> SigstoreRoot:
    src = str(_path(rec.name))
    if rec.kind == "file":
        return root_from_bytes(rec.trusted_root, name=rec.name, source=src)
    key = hashlib.sha256(json.dumps([rec.name, rec.tuf]).encode() + rec.trusted_root).hexdigest()
    with _lock:
        hit = _verified.get(key)
    if hit is not None:
        return hit
    from safeload.signing import sigstore_tuf

    assert rec.tuf is not None
    try:
        sigstore_tuf.verify_offline(tuf_anchor(rec.name), rec.tuf, rec.trusted_root, what=src)
    except SigstoreRootRefusedError as exc:
        raise SigstoreRootRefusedError(f"the refreshed {rec.name} Sigstore root does not "
                                       f"verify against safeload's TUF root: {exc}",
                                       hint=_UPDATE_FIX.format(name=rec.name)) from exc
    root = root_from_bytes(rec.trusted_root, name=rec.name, source=src)
    with _lock:
        _verified[key] = root
    return root


def resolve_root(name: str) -> SigstoreRoot:
    """The trusted root verification uses for instance `name`: stored, else shipped.

    Raises:
        SignatureError: no such instance, or a stored root that does not verify (refused).
    """
    try:
        rec = read_stored(check_name(name))
        if rec is not None:
            return _from_stored(rec)
    except SigstoreRootRefusedError as exc:
        raise SignatureError(str(exc), hint=exc.hint) from exc
    except SigstoreRootError as exc:
        raise SignatureError(str(exc), hint=exc.hint) from exc
    if name in BUILTIN_ROOTS:
        return builtin_root(name)
    raise SignatureError(f"unknown Sigstore instance {safe_text(name)}",
                         hint=f"safeload trust sigstore-root add {name} TRUSTED_ROOT.json")


def validate_root(data: bytes, *, name: str, source: str) -> SigstoreRoot:
    """A trusted root safeload can verify with: the media type, at least one Fulcio CA with a
    certificate and one Rekor log, and (with the sigstore extra) sigstore-python's parser.

    Raises:
        SignatureError: with what is missing.
    """
    root = root_from_bytes(data, name=name, source=source)
    cas = [ca for ca in root.doc.get("certificateAuthorities") or [] if isinstance(ca, dict)
           and ((ca.get("certChain") or {}).get("certificates") or [])]
    if not cas:
        raise SignatureError(f"{safe_text(source)}: the trusted root has no Fulcio CA "
                             "certificate (certificateAuthorities)")
    if not [t for t in root.doc.get("tlogs") or [] if isinstance(t, dict)]:
        raise SignatureError(f"{safe_text(source)}: the trusted root has no Rekor log (tlogs)")
    try:
        import sigstore  # noqa: F401 (only whether the extra is installed)
    except ImportError:
        return root  # the structure is checked; verification will need the extra anyway
    from safeload.signing import keyless

    keyless._verifier(keyless._load_sigstore(), root)  # parses every key, as verification does
    return root


def _write(name: str, kind: str, data: bytes, source: str, tuf: dict[str, Any] | None) -> None:
    doc: dict[str, Any] = {
        "schema": SCHEMA, "name": name, "kind": kind, "source": source,
        "updated": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "trusted_root": data.decode("utf-8"),
    }
    if tuf is not None:
        doc["tuf"] = tuf
    write_atomic(_path(name), json.dumps(doc, indent=1).encode() + b"\n", mode=0o600,
                 dir_mode=0o700)


def add_private(name: str, file: Path, *, replace: bool = False) -> SigstoreRoot:
    """Store the trusted root of a private instance under `name`.

    Raises:
        SigstoreRootError: a public-good name, or `name` exists without `replace`.
        SignatureError: not a usable trusted root. OSError: cannot read `file`.
    """
    check_name(name)
    if name in BUILTIN_ROOTS:
        raise SigstoreRootError(f"{name} is the public-good instance: its root is refreshed, "
                                "not replaced", hint=f"safeload trust sigstore-root update "
                                                     f"--instance {name}")
    with file.open("rb") as f:
        data = f.read(MAX_ROOT_BYTES + 1)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError(f"{safe_text(file)}: a trusted root is UTF-8 JSON") from exc
    root = validate_root(data, name=name, source=str(file))
    if _path(name).exists() and not replace:
        raise SigstoreRootError(f"a Sigstore instance {name} exists",
                                hint="pass --replace to change its root")
    _write(name, "file", data, str(file.resolve()), None)
    return root


@dataclass(frozen=True)
class Updated:
    name: str
    sha256: str
    previous_sha256: str
    changed: bool
    root_version: int
    targets_version: int
    url: str


def update_root(name: str, *, url: str | None = None) -> Updated:
    """Refresh `production` or `staging` through its TUF repository; store it atomically.

    A refused refresh changes nothing: the previous root stays in use.

    Raises:
        SigstoreRootRefusedError: TUF refused it, or the new root is unusable;
        SigstoreRootError: unknown instance, repository unreachable.
    """
    from safeload.signing import sigstore_tuf

    if name not in BUILTIN_ROOTS:
        raise SigstoreRootError(f"only {', '.join(BUILTIN_ROOTS)} are refreshed through TUF, "
                                f"not {safe_text(name)}",
                                hint=f"safeload trust sigstore-root add {name} FILE --replace")
    try:
        previous_sha = resolve_root(name).sha256
        rec = read_stored(name)
    except SignatureError:  # a stored root that no longer verifies: start from the anchor
        previous_sha, rec = "", None
    # Seeding from the last refresh is what makes ngclient refuse older metadata.
    previous = rec.tuf if rec is not None and rec.kind == "tuf" else None
    src = url or TUF_URLS[name]
    got = sigstore_tuf.fetch(src, tuf_anchor(name), previous)
    try:
        got.trusted_root.decode("utf-8")
        new = validate_root(got.trusted_root, name=name, source=f"{src}{sigstore_tuf.TARGET}")
    except (SignatureError, UnicodeDecodeError) as exc:
        raise SigstoreRootRefusedError(f"the {name} root signed by {src} is unusable: {exc}",
                                       hint="the previous Sigstore root stays in use") from exc
    _write(name, "tuf", got.trusted_root, src, got.metadata)
    return Updated(name=name, sha256=new.sha256, previous_sha256=previous_sha,
                   changed=new.sha256 != previous_sha, root_version=got.root_version,
                   targets_version=got.targets_version, url=src)


def remove(name: str) -> bool:
    """Forget a stored root (a refreshed public-good root falls back to the shipped copy)."""
    try:
        _path(name).unlink()
    except FileNotFoundError:
        return False
    return True


def list_roots() -> list[dict[str, Any]]:
    """Every instance verification can use, with the root it would use now."""
    names = set(BUILTIN_ROOTS)
    d = roots_dir()
    if d.is_dir():
        names |= {p.stem for p in d.glob("*.json") if NAME.fullmatch(p.stem)}
    out: list[dict[str, Any]] = []
    for name in sorted(names):
        entry: dict[str, Any] = {"name": name}
        try:
            rec = read_stored(name)
            root = resolve_root(name)
        except (SignatureError, SigstoreRootError) as exc:
            out.append(entry | {"ok": False, "error": str(exc)})
            continue
        entry |= {"ok": True, "sha256": root.sha256,
                  "kind": "shipped" if rec is None else
                  ("refreshed" if rec.kind == "tuf" else "private"),
                  "updated": rec.updated if rec else None,
                  "source": rec.source if rec else "safeload package"}
        out.append(entry)
    return out
