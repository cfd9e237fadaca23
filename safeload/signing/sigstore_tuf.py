"""Sigstore's trusted root through Sigstore's TUF repository (python-tuf), online and offline.

`fetch` runs python-tuf's `ngclient.Updater` from the TUF root shipped in safeload (and the
metadata of the last successful refresh, so a rollback to older metadata is refused), in a
private temporary folder: nothing of a refused refresh is kept. `verify_offline` re-checks a
stored refresh at use time without a network: the chain of root versions from the shipped
anchor (each signed by the threshold of the previous and of its own root keys), then
timestamp -> snapshot -> targets (signatures, versions, lengths and hashes) -> the trusted
root's length and hashes. Expiry is checked by `fetch` only: a root refreshed once stays usable
offline, like the copy shipped in the package.

`tuf` is imported only here, and only when a refresh runs or a refreshed root is used.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeload._internal.text import safe_text
from safeload._version import __version__
from safeload.errors import SigstoreRootError, SigstoreRootRefusedError

TARGET = "trusted_root.json"
ROLES = ("timestamp", "snapshot", "targets")


@dataclass(frozen=True)
class Fetched:
    """A verified refresh: the metadata to keep and the trusted root it signs."""

    metadata: dict[str, Any]  # {"roots": [text, ...] after the anchor, role: text}
    trusted_root: bytes
    root_version: int
    targets_version: int


def _load(cls: Any, data: bytes, what: str) -> Any:
    from tuf.api.metadata import Metadata

    try:
        md = Metadata.from_bytes(data)
    except Exception as exc:  # tuf raises DeserializationError and plain ValueErrors
        raise SigstoreRootRefusedError(f"{what} is not TUF metadata: {safe_text(exc)}") from exc
    if not isinstance(md.signed, cls):
        raise SigstoreRootRefusedError(f"{what} is not {cls.type} metadata")
    return md


def verify_offline(anchor: bytes, meta: Mapping[str, Any], trusted_root: bytes, *,
                   what: str) -> int:
    """Check a stored refresh against the shipped TUF anchor; returns the root version.

    Raises:
        SigstoreRootRefusedError: any signature, version, length or hash that does not match.
    """
    from tuf.api import exceptions as te
    from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

    try:
        root = _load(Root, anchor, f"{what}: the shipped TUF root")
        roots = meta.get("roots")
        if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
            raise SigstoreRootRefusedError(f"{what}: no root history")
        for text in roots:
            new = _load(Root, text.encode(), f"{what}: a root version")
            if new.signed.version != root.signed.version + 1:
                raise SigstoreRootRefusedError(f"{what}: root versions are not consecutive")
            root.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)  # old keys
            new.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)  # its own
            root = new
        parts: dict[str, bytes] = {}
        for role in ROLES:
            text = meta.get(role)
            if not isinstance(text, str):
                raise SigstoreRootRefusedError(f"{what}: no {role} metadata")
            parts[role] = text.encode()
        ts = _load(Timestamp, parts["timestamp"], f"{what}: timestamp")
        root.signed.verify_delegate(Timestamp.type, ts.signed_bytes, ts.signatures)
        snap = _load(Snapshot, parts["snapshot"], f"{what}: snapshot")
        root.signed.verify_delegate(Snapshot.type, snap.signed_bytes, snap.signatures)
        ts.signed.snapshot_meta.verify_length_and_hashes(parts["snapshot"])
        if snap.signed.version != ts.signed.snapshot_meta.version:
            raise SigstoreRootRefusedError(f"{what}: snapshot version differs from timestamp's")
        targets = _load(Targets, parts["targets"], f"{what}: targets")
        root.signed.verify_delegate(Targets.type, targets.signed_bytes, targets.signatures)
        tmeta = snap.signed.meta.get("targets.json")
        if tmeta is None or tmeta.version != targets.signed.version:
            raise SigstoreRootRefusedError(f"{what}: targets version differs from snapshot's")
        tmeta.verify_length_and_hashes(parts["targets"])
        info = targets.signed.targets.get(TARGET)
        if info is None:
            raise SigstoreRootRefusedError(f"{what}: the targets metadata signs no {TARGET}")
        info.verify_length_and_hashes(trusted_root)
    except te.RepositoryError as exc:
        raise SigstoreRootRefusedError(f"{what}: {safe_text(exc, limit=300)}") from exc
    return int(root.signed.version)


def _translate(exc: Exception, url: str) -> SigstoreRootError:
    """A tuf exception as an error naming the attack and the fix (the previous root stays)."""
    from tuf.api import exceptions as te

    keep = "the previous Sigstore root stays in use"
    detail = safe_text(exc, limit=300) or type(exc).__name__
    if isinstance(exc, te.ExpiredMetadataError):
        return SigstoreRootRefusedError(
            f"{url}: expired TUF metadata ({detail}): refused, a repository that cannot show "
            "it is current may be frozen by an attacker",
            hint=f"{keep}; retry later, or use another mirror with --url")
    if isinstance(exc, te.BadVersionNumberError):
        return SigstoreRootRefusedError(
            f"{url}: rollback refused: the repository served metadata older than this machine "
            f"already trusts ({detail})", hint=f"{keep}; check the mirror (--url)")
    if isinstance(exc, te.UnsignedMetadataError):
        return SigstoreRootRefusedError(
            f"{url}: TUF metadata not signed by enough trusted keys ({detail})",
            hint=f"{keep}; the repository or the connection is not Sigstore's: check --url")
    if isinstance(exc, (te.LengthOrHashMismatchError, te.DownloadLengthMismatchError)):
        return SigstoreRootRefusedError(
            f"{url}: a file does not match its signed length or hashes ({detail})",
            hint=f"{keep}; check the mirror (--url)")
    if isinstance(exc, te.RepositoryError):
        return SigstoreRootRefusedError(f"{url}: {detail}", hint=f"{keep}; check --url")
    cause = safe_text(exc.__cause__ or exc.__context__, limit=200)
    return SigstoreRootError(f"{url}: cannot download ({detail}{'; ' + cause if cause else ''})",
                             hint=f"{keep}; check the network, the proxy settings and --url")


def _seed(meta_dir: Path, anchor_version: int, previous: Mapping[str, Any] | None) -> None:
    """The last accepted metadata, so that ngclient compares versions with it (rollback)."""
    hist = meta_dir / "root_history"
    hist.mkdir(parents=True)
    if previous is None:
        return
    for i, text in enumerate(previous.get("roots") or []):
        (hist / f"{anchor_version + 1 + i}.root.json").write_text(text, encoding="utf-8")
    for role in ROLES:
        if isinstance(previous.get(role), str):
            (meta_dir / f"{role}.json").write_text(previous[role], encoding="utf-8")


def fetch(url: str, anchor: bytes, previous: Mapping[str, Any] | None) -> Fetched:
    """Refresh from the TUF repository at `url` (metadata there, targets under `targets/`).

    Raises:
        SigstoreRootRefusedError: TUF refused the metadata (rollback, expiry, signatures,
            hashes); SigstoreRootError: the repository could not be reached.
    """
    from tuf.api import exceptions as te
    from tuf.api.metadata import Metadata, Root
    from tuf.ngclient import Updater, UpdaterConfig

    base = url if url.endswith("/") else url + "/"
    anchor_version = Metadata[Root].from_bytes(anchor).signed.version
    with tempfile.TemporaryDirectory(prefix="safeload-tuf-") as tmp:
        meta_dir, target_dir = Path(tmp) / "metadata", Path(tmp) / "targets"
        _seed(meta_dir, anchor_version, previous)
        target_dir.mkdir()
        try:
            updater = Updater(str(meta_dir), base, str(target_dir), base + "targets/",
                              config=UpdaterConfig(app_user_agent=f"safeload/{__version__}"),
                              bootstrap=anchor)
            updater.refresh()
            info = updater.get_targetinfo(TARGET)
            if info is None:
                raise SigstoreRootRefusedError(f"{base}: the repository signs no {TARGET}",
                                               hint="check --url")
            data = Path(updater.download_target(info, str(target_dir / TARGET))).read_bytes()
            info.verify_length_and_hashes(data)  # the bytes kept are the bytes verified
        except (te.RepositoryError, te.DownloadError) as exc:
            raise _translate(exc, base) from exc
        except ValueError as exc:  # tuf's argument checks: a URL it cannot use
            raise SigstoreRootError(f"{safe_text(base)}: {safe_text(exc)}",
                                    hint="pass a usable --url") from exc
        versions = sorted(int(m[1]) for p in (meta_dir / "root_history").iterdir()
                          if (m := re.fullmatch(r"([0-9]+)\.root\.json", p.name)))
        roots = [(meta_dir / "root_history" / f"{v}.root.json").read_text(encoding="utf-8")
                 for v in versions if v > anchor_version]
        metadata: dict[str, Any] = {"roots": roots} | {
            role: (meta_dir / f"{role}.json").read_text(encoding="utf-8") for role in ROLES}
    version = verify_offline(anchor, metadata, data, what=base)  # what use will check
    targets_version = Metadata.from_bytes(metadata["targets"].encode()).signed.version
    return Fetched(metadata=metadata, trusted_root=data, root_version=version,
                   targets_version=targets_version)
