"""Subscribe a node to an organisation's trust store, keep it fresh, and read it back verified.

The organisation publishes one target (default `safeload/truststore.json`, a `document` wrapper
around a trust store) in a TUF repository served as static files: `URL/metadata/` holds
`N.root.json`, `timestamp.json`, `[N.]snapshot.json`, `[N.]targets.json`; `URL/targets/` the
target (hash-prefixed when the repository uses consistent snapshots, as tuf-on-ci does).

Where things live (`home` is a safeload home: `SAFELOAD_HOME` layout; by default the per-user
platformdirs, resolved at call time)::

    <config>/fleet/subscription.json   the URL, target and sync settings
    <config>/fleet/root.json           the pinned root given at subscribe: the trust anchor
    <data>/fleet/state.json            the accepted generation: TUF targets version, serial,
                                       store sha256, sync time (written last, atomically)
    <data>/fleet/gen-*/                one verified generation: metadata/ (ngclient's cache)
                                       and targets/; immutable once published
    <data>/fleet/sync.lock             one `filelock` for every process on the node

How python-tuf's `ngclient.Updater` behaves, and what is built on it:

- `refresh()` walks root versions from the trusted root (`bootstrap`: here always the pinned
  root, so every rotation since subscribe is re-verified), then downloads `timestamp.json`
  unconditionally, and loads snapshot and targets from its metadata dir when they still match,
  downloading otherwise. It refuses: signatures below a role's threshold (root rotation needs the
  threshold of the old and of the new root), versions lower than the trusted ones (rollback),
  expired metadata (freeze), hash or length mismatches. It raises `RepositoryError` or
  `DownloadError` subclasses; this module maps each to a `FleetError` naming the URL.
- It persists each accepted file as it goes, so a refresh that fails half-way leaves a metadata
  dir that no longer matches itself. `sync` therefore runs the Updater in a private staging copy
  of the current generation and publishes the copy (rename, then `state.json` by `write_atomic`)
  only after the whole chain, the target's hashes, the document and its serial all verified: a
  reader sees the old generation or the new one, never a half-downloaded store.
- ngclient has no offline mode: `timestamp.json` is always fetched. Offline re-verification
  (`organisation_store`) runs the same Updater, from the pinned root, in a throw-away metadata
  dir with a fetcher that serves only the files of the accepted generation (and 404 for the next
  root version). So signatures, thresholds, versions, hashes and expiry are checked exactly as
  online; once any role has expired the node fails closed (`FleetExpiredError` naming the role,
  its expiry and `safeload trust sync`). The cached store is never used unverified.
- ngclient wants a single instance per metadata dir: syncs serialise on `sync.lock`; readers take
  no lock (generations are immutable, the previous one is kept, a reader retries once if a sync
  replaced the generation it was reading).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib import parse

import filelock

from safeload._internal import paths, strictjson
from safeload._internal.atomic import write_atomic
from safeload._internal.text import safe_text
from safeload._version import __version__
from safeload.fleet.document import FleetDocument, parse_document
from safeload.fleet.errors import (
    SYNC_FIX,
    FleetConfigError,
    FleetError,
    FleetExpiredError,
    FleetLockError,
    FleetNotSubscribedError,
    FleetRollbackError,
    FleetUnreachableError,
    FleetVerificationError,
)
from safeload.trust import TrustStore, check_location, format_time, parse_time

_logger = logging.getLogger(__name__)

DEFAULT_TARGET = "safeload/truststore.json"
DEFAULT_INTERVAL_S = 3600  # a sync before a load at most hourly
DEFAULT_RETRY_S = 300  # after a failed sync, wait this long before the next automatic one
DEFAULT_TIMEOUT_S = 10  # per HTTP connect/read gap; a load must not hang on a dead mirror
LOCK_TIMEOUT_S = 120.0  # a sync holds the lock for its downloads
MAX_CONFIG_BYTES = 1024 * 1024  # subscription, state and root.json files
SUBSCRIPTION_SCHEMA = 1
STATE_SCHEMA = 1

_TARGET = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_GENERATION = re.compile(r"gen-[0-9a-z_-]{1,100}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _now() -> dt.datetime:
    """The clock for sync intervals and expiry messages (tests move it)."""
    return dt.datetime.now(dt.timezone.utc)


# ------------------------------------------------------------------------------------------
# files


@dataclass(frozen=True)
class _Layout:
    config: Path
    data: Path

    @property
    def subscription(self) -> Path:
        return self.config / "subscription.json"

    @property
    def root(self) -> Path:
        return self.config / "root.json"

    @property
    def state(self) -> Path:
        return self.data / "state.json"

    @property
    def attempt(self) -> Path:
        return self.data / "attempt.json"

    @property
    def lock(self) -> Path:
        return self.data / "sync.lock"


def _layout(home: str | os.PathLike[str] | None) -> _Layout:
    if home is not None:
        base = Path(home)
        return _Layout(base / "config" / "fleet", base / "data" / "fleet")
    return _Layout(paths.config_dir() / "fleet", paths.data_dir() / "fleet")


def _read_private(path: Path, what: str) -> bytes | None:
    """A small file only this user could have written, or None when absent."""
    check_location(path, str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FleetConfigError(f"{path}: the {what} cannot be read ({exc.strerror})",
                               hint="check the path and its permissions") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if os.name == "posix" and (not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022
                                   or st.st_uid not in (os.getuid(), 0)):
            raise FleetConfigError(f"{path}: the {what} is not a regular file of this user "
                                   "writable only by them", hint=f"chmod go-w {path}, or "
                                   "subscribe again with `safeload trust subscribe`")
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise FleetConfigError(f"{path}: the {what} is larger than {MAX_CONFIG_BYTES} bytes")
    return data


def _json_file(path: Path, what: str) -> dict[str, Any] | None:
    data = _read_private(path, what)
    if data is None:
        return None
    try:
        doc = strictjson.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FleetConfigError(f"{path}: the {what} cannot be parsed ({safe_text(exc)})",
                               hint="subscribe again with `safeload trust subscribe`") from exc
    if not isinstance(doc, dict):
        raise FleetConfigError(f"{path}: the {what} is not a JSON object")
    return doc


def _dump(doc: dict[str, Any]) -> bytes:
    import json

    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


# ------------------------------------------------------------------------------------------
# subscription


@dataclass(frozen=True)
class Subscription:
    """What a node follows: the repository, the target, and how often to sync."""

    url: str
    metadata_url: str
    targets_url: str
    target: str = DEFAULT_TARGET
    interval_s: int = DEFAULT_INTERVAL_S
    retry_s: int = DEFAULT_RETRY_S
    timeout_s: int = DEFAULT_TIMEOUT_S
    # A node that must not load with a store it could not refresh (sync errors block loads).
    require_fresh: bool = False
    root_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SUBSCRIPTION_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, source: str) -> Subscription:
        """Raises: FleetConfigError on any unknown, missing or ill-typed field."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        if doc.get("schema_version") != SUBSCRIPTION_SCHEMA or set(doc) - {*fields,
                                                                         "schema_version"}:
            raise FleetConfigError(f"{source}: not a subscription this safeload reads",
                                   hint="subscribe again with `safeload trust subscribe`")
        try:
            sub = cls(**{k: v for k, v in doc.items() if k != "schema_version"})
        except TypeError as exc:
            raise FleetConfigError(f"{source}: {exc}",
                                   hint="subscribe again with `safeload trust subscribe`"
                                   ) from exc
        _validate(sub, source)
        return sub


def _http_url(url: object, what: str, source: str) -> str:
    if not isinstance(url, str) or parse.urlsplit(url).scheme not in ("http", "https") \
            or not parse.urlsplit(url).netloc:
        raise FleetConfigError(f"{source}: the {what} {safe_text(url, limit=200)} is not an "
                               "http(s) URL", hint="give the repository's base URL, e.g. "
                               "https://trust.example.org/")
    return url


def _validate(sub: Subscription, source: str) -> None:
    for what in ("url", "metadata_url", "targets_url"):
        _http_url(getattr(sub, what), what.replace("_", " "), source)
    if not isinstance(sub.target, str) or not _TARGET.fullmatch(sub.target) \
            or ".." in sub.target.split("/"):
        raise FleetConfigError(f"{source}: the target {safe_text(sub.target)} is not a relative "
                               "TUF target path", hint="use e.g. safeload/truststore.json")
    for what in ("interval_s", "retry_s", "timeout_s"):
        value = getattr(sub, what)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**7:
            raise FleetConfigError(f"{source}: {what} must be a number of seconds")
    if not isinstance(sub.require_fresh, bool):
        raise FleetConfigError(f"{source}: require_fresh must be true or false")
    if not isinstance(sub.root_sha256, str) or not _SHA256.fullmatch(sub.root_sha256):
        raise FleetConfigError(f"{source}: root_sha256 is not a sha256 digest")


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _check_root(data: bytes, source: str) -> int:
    """A root that verifies itself (its own threshold of its own keys); returns its version."""
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata[Root].from_bytes(data)
        if not isinstance(md.signed, Root):
            raise ValueError(f"it is {md.signed.type} metadata, not root")
        md.verify_delegate(Root.type, md)
    except Exception as exc:  # tuf raises DeserializationError, UnsignedMetadataError, ...
        raise FleetConfigError(f"{source}: not a usable TUF root ({safe_text(exc, limit=300)})",
                               hint="pass the repository's root.json as distributed by the "
                               "organisation (e.g. metadata/1.root.json)") from exc
    return md.signed.version


def subscribe(url: str, root_json_path: str | os.PathLike[str], target: str = DEFAULT_TARGET,
              *, home: str | os.PathLike[str] | None = None, metadata_url: str | None = None,
              targets_url: str | None = None, interval_s: int = DEFAULT_INTERVAL_S,
              retry_s: int = DEFAULT_RETRY_S, timeout_s: int = DEFAULT_TIMEOUT_S,
              require_fresh: bool = False, replace: bool = False) -> Subscription:
    """Follow the organisation store `target` of the TUF repository at `url`.

    `root_json_path` is the pinned trust anchor; it is copied under the safeload home. Nothing
    is downloaded: call `sync` next. Subscribing again with the same URL, target and root only
    updates the settings; a different one needs `replace=True`, which also drops the cached
    generations and the accepted serial (they belong to the old trust anchor).

    Raises:
        FleetConfigError: a bad URL, target or settings, a root.json that does not verify
            itself, or an existing different subscription without `replace`.
        OSError: the root file cannot be read or the config cannot be written.
    """
    lay = _layout(home)
    root = Path(root_json_path).read_bytes()
    if len(root) > MAX_CONFIG_BYTES:
        raise FleetConfigError(f"{root_json_path}: larger than {MAX_CONFIG_BYTES} bytes")
    _check_root(root, str(root_json_path))
    base = _slash(_http_url(url, "repository URL", "subscribe"))
    sub = Subscription(url=base, metadata_url=_slash(metadata_url or base + "metadata/"),
                       targets_url=_slash(targets_url or base + "targets/"), target=target,
                       interval_s=interval_s, retry_s=retry_s, timeout_s=timeout_s,
                       require_fresh=require_fresh,
                       root_sha256=hashlib.sha256(root).hexdigest())
    _validate(sub, "subscribe")
    check_location(lay.subscription, str(lay.subscription))
    check_location(lay.state, str(lay.state))
    with _locked(lay):
        old = _load_subscription(lay)
        same = old is not None and (old.url, old.metadata_url, old.targets_url, old.target,
                                    old.root_sha256) == (sub.url, sub.metadata_url,
                                                         sub.targets_url, sub.target,
                                                         sub.root_sha256)
        if old is not None and not same:
            if not replace:
                raise FleetConfigError(
                    f"{lay.subscription}: this node already follows {safe_text(old.url)} "
                    f"(target {safe_text(old.target)})",
                    hint="pass --replace to follow the new repository instead (the cached "
                         "store of the old one is dropped)")
            _drop_generations(lay)
        write_atomic(lay.root, root, mode=0o644, dir_mode=0o755)
        write_atomic(lay.subscription, _dump(sub.to_dict()), mode=0o644, dir_mode=0o755)
    return sub


def _load_subscription(lay: _Layout) -> Subscription | None:
    doc = _json_file(lay.subscription, "fleet subscription")
    return None if doc is None else Subscription.from_dict(doc, source=str(lay.subscription))


def subscription(*, home: str | os.PathLike[str] | None = None) -> Subscription | None:
    """The node's subscription, or None when it follows no organisation store.

    Raises:
        FleetConfigError: the subscription file is unusable.
    """
    return _load_subscription(_layout(home))


def _require(lay: _Layout) -> tuple[Subscription, bytes]:
    sub = _load_subscription(lay)
    if sub is None:
        raise FleetNotSubscribedError(
            f"{lay.subscription}: this node follows no organisation trust store",
            hint="safeload trust subscribe URL --root root.json")
    root = _read_private(lay.root, "pinned TUF root")
    if root is None or hashlib.sha256(root).hexdigest() != sub.root_sha256:
        raise FleetConfigError(f"{lay.root}: the pinned root is missing or is not the one "
                               "given at subscribe",
                               hint="subscribe again with the organisation's root.json "
                                    "(`safeload trust subscribe URL --root root.json "
                                    "--replace`)")
    return sub, root


# ------------------------------------------------------------------------------------------
# state: the accepted generation


@dataclass(frozen=True)
class StoreIdentity:
    """Which organisation store a node used: what every ledger entry records.

    `targets_version` is the TUF targets role version that signed the store and `sha256` the
    digest of the target bytes (the document, exactly as the targets metadata lists it), so an
    entry can be checked against the repository's history. `serial` is the document's own.
    """

    url: str
    target: str
    targets_version: int
    sha256: str
    serial: int
    synced_at: dt.datetime
    expires: dt.datetime  # the accepted timestamp's expiry: offline use ends here
    allow_local_trust: bool = False

    def to_ledger(self) -> dict[str, Any]:
        """The fields a ledger entry names the store by."""
        return {"url": self.url, "target": self.target, "targets_version": self.targets_version,
                "sha256": self.sha256, "serial": self.serial}

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_ledger(), "synced_at": format_time(self.synced_at),
                "expires": format_time(self.expires),
                "allow_local_trust": self.allow_local_trust}


@dataclass(frozen=True)
class _State:
    generation: str
    identity: StoreIdentity


def _read_state(lay: _Layout, sub: Subscription) -> _State | None:
    doc = _json_file(lay.state, "fleet state")
    if doc is None:
        return None
    fix = f"delete {lay.data} and run `safeload trust sync`"
    try:
        gen = doc["generation"]
        ident = StoreIdentity(
            url=doc["url"], target=doc["target"], targets_version=doc["targets_version"],
            sha256=doc["sha256"], serial=doc["serial"], synced_at=parse_time(doc["synced_at"]),
            expires=parse_time(doc["expires"]), allow_local_trust=doc["allow_local_trust"])
        ok = (doc.get("schema_version") == STATE_SCHEMA and isinstance(gen, str)
              and _GENERATION.fullmatch(gen) is not None
              and isinstance(ident.targets_version, int) and isinstance(ident.serial, int)
              and isinstance(ident.sha256, str) and isinstance(ident.allow_local_trust, bool))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FleetConfigError(f"{lay.state}: unusable fleet state ({safe_text(exc)})",
                               hint=fix) from exc
    if not ok:
        raise FleetConfigError(f"{lay.state}: unusable fleet state", hint=fix)
    if (ident.url, ident.target) != (sub.url, sub.target):
        raise FleetConfigError(f"{lay.state}: the cached store belongs to another subscription",
                               hint=fix)
    return _State(gen, ident)


def _write_state(lay: _Layout, state: _State) -> None:
    doc = {"schema_version": STATE_SCHEMA, "generation": state.generation,
           **state.identity.to_dict()}
    write_atomic(lay.state, _dump(doc), mode=0o644)


@contextlib.contextmanager
def _locked(lay: _Layout) -> Iterator[None]:
    lay.data.mkdir(parents=True, exist_ok=True, mode=0o755)
    lock = filelock.FileLock(str(lay.lock), timeout=LOCK_TIMEOUT_S, mode=0o644)
    try:
        with lock:
            yield
    except filelock.Timeout as exc:
        raise FleetLockError(f"{lay.lock}: another safeload process has been syncing the "
                             f"organisation store for more than {LOCK_TIMEOUT_S:.0f} s",
                             hint="check for a stuck `safeload trust sync`") from exc


def _drop_generations(lay: _Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lay.state)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lay.attempt)
    _prune(lay, keep=())


def _prune(lay: _Layout, keep: tuple[str, ...]) -> None:
    """Remove generations not in `keep` and stale staging dirs (the lock is held)."""
    if not lay.data.is_dir():
        return
    for entry in lay.data.iterdir():
        stale = entry.name.startswith(".staging-") or (
            _GENERATION.fullmatch(entry.name) is not None and entry.name not in keep)
        if stale and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# running the Updater


def _cache_fetcher(gen: Path, sub: Subscription) -> Any:
    """A fetcher that serves one accepted generation instead of the network (built here so that
    `tuf` is imported only when a fleet is used)."""
    from tuf.api import exceptions
    from tuf.ngclient import FetcherInterface

    class CacheFetcher(FetcherInterface):
        def _fetch(self, url: str) -> Iterator[bytes]:
            path = _cached_file(gen, sub, url)
            if path is None or not path.is_file():
                raise exceptions.DownloadHTTPError(f"{url} is not in the local cache", 404)
            return _chunks(path)

    return CacheFetcher()


def _recording(inner: Any, seen: dict[str, bytes], sub: Subscription) -> Any:
    """Wraps a fetcher and keeps the last metadata bytes per role, only to name an expiry in a
    message: an expired file is refused before ngclient persists it."""
    from tuf.ngclient import FetcherInterface

    class Recording(FetcherInterface):
        def _fetch(self, url: str) -> Iterator[bytes]:
            chunks: Iterator[bytes] = inner.fetch(url)
            if not url.startswith(sub.metadata_url):
                return chunks
            name = parse.unquote(url[len(sub.metadata_url):])
            role = re.sub(r"^[0-9]+\.", "", name).removesuffix(".json")
            return self._keep(role, chunks)

        @staticmethod
        def _keep(role: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
            got = bytearray()
            for chunk in chunks:
                got += chunk
                yield chunk
            seen[role] = bytes(got)

    return Recording()


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            yield chunk


def _cached_file(gen: Path, sub: Subscription, url: str) -> Path | None:
    """The generation's file for a URL the Updater asks for, or None."""
    if url.startswith(sub.metadata_url):
        name = parse.unquote(url[len(sub.metadata_url):])
        if m := re.fullmatch(r"([0-9]+)\.root\.json", name):
            return gen / "metadata" / "root_history" / f"{int(m[1])}.root.json"
        if m := re.fullmatch(r"(?:[0-9]+\.)?(timestamp|snapshot|targets)\.json", name):
            return gen / "metadata" / f"{m[1]}.json"  # the Updater checks the version
        return None
    if url.startswith(sub.targets_url):
        rest = url[len(sub.targets_url):]
        folder, _, base = sub.target.rpartition("/")
        prefix = f"{folder}/" if folder else ""
        hashed = re.fullmatch(re.escape(prefix) + r"[0-9a-f]{32,128}\." + re.escape(base), rest)
        if rest == sub.target or hashed:
            return gen / "targets" / parse.quote(sub.target, "")
    return None


def _translate(exc: Exception, sub: Subscription, seen: dict[str, bytes], where: str
               ) -> FleetError:
    """A tuf exception as the fleet error that names the attack, the URL and the fix."""
    from tuf.api import exceptions as te

    what = f"organisation trust store {sub.url} ({where})"
    detail = safe_text(exc, limit=300) or type(exc).__name__
    if isinstance(exc, te.ExpiredMetadataError):
        role, expires = _expired_role(seen, str(exc))
        return FleetExpiredError(
            f"{what}: {role}.json expired at {expires or 'an unknown time'}; safeload refuses "
            "a store it cannot show is current (freeze protection)", role=role,
            expires=expires, hint=SYNC_FIX if where == "offline" else
            "the repository's timestamp must be re-signed: tell its maintainers; this node "
            "keeps its cached store until that expires")
    if isinstance(exc, te.BadVersionNumberError):
        return FleetRollbackError(f"{what}: rollback refused: {detail}",
                                  hint="the repository served metadata older than this node "
                                       "already trusts; check the mirror")
    if isinstance(exc, te.UnsignedMetadataError):
        return FleetVerificationError(
            f"{what}: metadata not signed by enough trusted keys: {detail}",
            hint="a root rotation needs the threshold of the old and of the new root keys; "
                 "check the repository, never the node")
    if isinstance(exc, (te.LengthOrHashMismatchError, te.DownloadLengthMismatchError)):
        return FleetVerificationError(f"{what}: a file does not match its signed length or "
                                      f"hashes (tampered or corrupt): {detail}",
                                      hint="check the mirror; the signed metadata is the truth")
    if isinstance(exc, te.RepositoryError):
        return FleetVerificationError(f"{what}: {detail}", hint="check the repository")
    if where == "offline":
        return FleetVerificationError(f"{what}: the cached generation is incomplete: {detail}",
                                      hint=SYNC_FIX)
    if isinstance(exc, te.DownloadHTTPError):
        return FleetUnreachableError(f"{what}: HTTP {exc.status_code}: {detail}",
                                     hint="check the URL and that the repository is published")
    return FleetUnreachableError(f"{what}: cannot download ({detail}; "
                                 f"{safe_text(exc.__cause__ or exc.__context__, limit=200)})",
                                 hint="check the network, proxy settings and the URL; loads go "
                                      "on with the cached store until it expires")


def _expired_role(seen: dict[str, bytes], message: str) -> tuple[str, str]:
    """Which role expired and when, for the message (from the bytes ngclient just refused)."""
    from tuf.api.metadata import Metadata

    order = ("root", "timestamp", "snapshot", "targets")
    named = next((r for r in order if r in message), None)
    for role in ([named] if named else []) + list(order):
        with contextlib.suppress(Exception):
            signed = Metadata.from_bytes(seen[role]).signed
            if role == named or signed.is_expired(_now()):
                return role, format_time(signed.expires) or ""
    return named or "metadata", ""


def _updater(meta: Path, targets: Path, sub: Subscription, root: bytes, fetcher: Any) -> Any:
    from tuf.ngclient import Updater, UpdaterConfig

    return Updater(str(meta), sub.metadata_url, str(targets), sub.targets_url, fetcher=fetcher,
                   config=UpdaterConfig(app_user_agent=f"safeload/{__version__}"),
                   bootstrap=root)


@dataclass(frozen=True)
class _Verified:
    data: bytes
    document: FleetDocument
    targets_version: int
    expires: dt.datetime


def _run(meta: Path, targets: Path, sub: Subscription, root: bytes, fetcher: Any,
         where: Literal["online", "offline"]) -> _Verified:
    """refresh, find the target, download it and parse it; every failure a FleetError."""
    from tuf.api import exceptions as te
    from tuf.api.metadata import Metadata, Targets, Timestamp

    seen: dict[str, bytes] = {"root": root}
    try:
        updater = _updater(meta, targets, sub, root, _recording(fetcher, seen, sub))
        updater.refresh()
        info = updater.get_targetinfo(sub.target)
        if info is None:
            raise FleetVerificationError(
                f"organisation trust store {sub.url}: the repository signs no target "
                f"{safe_text(sub.target)}", hint="check --target, or ask the repository's "
                "maintainers to publish the store")
        local = str(targets / parse.quote(sub.target, ""))
        # An unchanged store is not downloaded again (find_cached_target checks its hashes).
        path = Path(updater.find_cached_target(info, local)
                    or updater.download_target(info, local))
        data = path.read_bytes()
        info.verify_length_and_hashes(data)  # the bytes parsed are the bytes verified
        tv = Metadata[Targets].from_bytes((meta / "targets.json").read_bytes()).signed.version
        ts = Metadata[Timestamp].from_bytes((meta / "timestamp.json").read_bytes()).signed
    except (te.RepositoryError, te.DownloadError) as exc:
        raise _translate(exc, sub, seen, where) from exc
    except ValueError as exc:  # tuf's argument checks: a URL it cannot use
        raise FleetConfigError(f"organisation trust store {sub.url}: {safe_text(exc)}",
                               hint="subscribe again with a usable URL") from exc
    doc = parse_document(data, source=f"{sub.targets_url}{sub.target}")
    return _Verified(data, doc, tv, ts.expires)


# ------------------------------------------------------------------------------------------
# sync


@dataclass(frozen=True)
class SyncResult:
    """What `sync` did: `updated` (a new store), `refreshed` (same store, fresher metadata),
    `skipped` (synced less than the interval ago, or retrying too soon after a failure)."""

    status: Literal["updated", "refreshed", "skipped"]
    identity: StoreIdentity | None
    previous: StoreIdentity | None = None


def _due(lay: _Layout, sub: Subscription, state: _State | None, now: dt.datetime) -> bool:
    if state is not None and (now - state.identity.synced_at).total_seconds() < sub.interval_s:
        return False
    with contextlib.suppress(FleetConfigError, KeyError, TypeError, ValueError,
                             AttributeError):  # an unreadable record only means "due"
        attempt = _json_file(lay.attempt, "last sync attempt") or {}
        if attempt.get("error") and (now - parse_time(attempt["at"])).total_seconds() \
                < sub.retry_s:
            return False
    return True


def _check_serial(new: _Verified, sha: str, state: _State | None, sub: Subscription) -> None:
    if state is None:
        return
    old = state.identity
    if new.document.serial < old.serial:
        raise FleetRollbackError(
            f"organisation trust store {sub.url}: the signed store has serial "
            f"{new.document.serial}, lower than serial {old.serial} already accepted (targets "
            f"version {old.targets_version}); an older store was republished",
            hint="the organisation must publish the store with a serial above "
                 f"{old.serial}")
    if new.document.serial == old.serial and sha != old.sha256:
        raise FleetRollbackError(
            f"organisation trust store {sub.url}: a different store with the same serial "
            f"{old.serial} as the one already accepted",
            hint="the organisation must bump the serial with every change to the store")


def sync(*, home: str | os.PathLike[str] | None = None, force: bool = False) -> SyncResult:
    """Refresh the TUF metadata and the organisation store; at most once per interval unless
    `force` (the explicit `safeload trust sync`).

    Many processes may call it at once: they serialise on one file lock, and a process that
    waited finds the fresh store and skips.

    Raises:
        FleetNotSubscribedError, FleetConfigError: nothing usable to sync.
        FleetUnreachableError: the repository cannot be reached (the cached store stays).
        FleetVerificationError (FleetRollbackError, FleetExpiredError): the repository served
            something that does not verify; nothing is accepted and the cached store stays.
        FleetLockError: another process held the lock too long.
    """
    lay = _layout(home)
    sub, root = _require(lay)
    with _locked(lay):
        state = _read_state(lay, sub)
        now = _now().replace(microsecond=0)  # what state.json keeps
        if not force and not _due(lay, sub, state, now):
            return SyncResult("skipped", state.identity if state else None)
        try:
            new = _stage(lay, sub, root, state, now)
        except FleetError as exc:
            write_atomic(lay.attempt, _dump({"at": format_time(now), "error": str(exc)}),
                         durable=False)
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lay.attempt)
        _prune(lay, keep=(new.generation, state.generation) if state else (new.generation,))
    previous = state.identity if state else None
    changed = previous is None or (previous.sha256, previous.targets_version) != (
        new.identity.sha256, new.identity.targets_version)
    _logger.info("organisation store %s: targets v%d serial %d (%s)", sub.url,
                 new.identity.targets_version, new.identity.serial,
                 "updated" if changed else "refreshed")
    return SyncResult("updated" if changed else "refreshed", new.identity, previous)


def _stage(lay: _Layout, sub: Subscription, root: bytes, state: _State | None,
           now: dt.datetime) -> _State:
    """Run the Updater in a staging copy; publish it only once everything verified."""
    from tuf.ngclient import Urllib3Fetcher

    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=lay.data))
    try:
        meta, targets = staging / "metadata", staging / "targets"
        if state is not None:  # ngclient's rollback protection starts from what we trust
            shutil.copytree(lay.data / state.generation / "metadata", meta, symlinks=True)
            shutil.copytree(lay.data / state.generation / "targets", targets)
        else:
            meta.mkdir()
        fetcher = Urllib3Fetcher(socket_timeout=sub.timeout_s,
                                 app_user_agent=f"safeload/{__version__}")
        new = _run(meta, targets, sub, root, fetcher, "online")
        sha = hashlib.sha256(new.data).hexdigest()
        _check_serial(new, sha, state, sub)
        name = f"gen-{new.targets_version}-{new.document.serial}-{sha[:16]}-" \
               f"{os.urandom(4).hex()}"
        os.rename(staging, lay.data / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    published = _State(name, StoreIdentity(
        url=sub.url, target=sub.target, targets_version=new.targets_version, sha256=sha,
        serial=new.document.serial, synced_at=now, expires=new.expires,
        allow_local_trust=new.document.allow_local_trust))
    _write_state(lay, published)  # the switch: readers now see the new generation
    return published


# ------------------------------------------------------------------------------------------
# offline re-verification


def organisation_store(*, home: str | os.PathLike[str] | None = None,
                       ) -> tuple[TrustStore, StoreIdentity]:
    """The accepted organisation store, re-verified from the pinned root with no network.

    Raises:
        FleetNotSubscribedError: the node follows no organisation store.
        FleetError: nothing was synced yet.
        FleetExpiredError: a role of the cached chain has expired (names it and
            `safeload trust sync`).
        FleetVerificationError: the cache does not verify (tampered, incomplete, mismatched).
    """
    lay = _layout(home)
    sub, root = _require(lay)
    for attempt in range(2):
        state = _read_state(lay, sub)
        if state is None:
            raise FleetError(f"{lay.state}: no organisation store has been synced on this node "
                             f"from {safe_text(sub.url)}", hint=SYNC_FIX)
        try:
            return _verify_cached(lay, sub, root, state)
        except FleetError:
            again = _read_state(lay, sub)
            if attempt == 0 and again is not None and again.generation != state.generation:
                continue  # a sync replaced the generation while we read it
            raise
    raise AssertionError("unreachable")


def _verify_cached(lay: _Layout, sub: Subscription, root: bytes,
                   state: _State) -> tuple[TrustStore, StoreIdentity]:
    gen = lay.data / state.generation
    with tempfile.TemporaryDirectory(prefix="safeload-fleet-") as tmp:
        meta, targets = Path(tmp) / "metadata", Path(tmp) / "targets"
        meta.mkdir()
        new = _run(meta, targets, sub, root, _cache_fetcher(gen, sub), "offline")
    sha = hashlib.sha256(new.data).hexdigest()
    ident = state.identity
    if (sha, new.document.serial, new.targets_version) != (ident.sha256, ident.serial,
                                                            ident.targets_version):
        raise FleetVerificationError(
            f"{gen}: the cached store is not the one accepted at the last sync "
            f"(state: targets v{ident.targets_version} serial {ident.serial}; cache: targets "
            f"v{new.targets_version} serial {new.document.serial})", hint=SYNC_FIX)
    store = new.document.store
    return store, dataclasses.replace(ident, expires=new.expires)


__all__ = ["DEFAULT_TARGET", "StoreIdentity", "Subscription", "SyncResult",
           "organisation_store", "subscribe", "subscription", "sync"]
