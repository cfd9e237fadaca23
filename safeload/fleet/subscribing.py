"""A node's subscription: where the organisation's TUF repository is, the pinned root, and
the files the fleet keeps under the safeload home (see `safeload.fleet.client`)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib import parse

import filelock

from safeload._internal import consulted, paths, strictjson
from safeload._internal.atomic import write_atomic
from safeload._internal.text import get_logger, safe_text
from safeload.fleet.errors import (
    FleetConfigError,
    FleetLockError,
    FleetNotSubscribedError,
)
from safeload.trust import check_location

_logger = get_logger(__name__)

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
    try:
        os.lstat(path)
    except FileNotFoundError:  # the common case (no subscription): no location walk
        return None
    except OSError:
        pass  # reported below, after the location check
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
    if home is None:  # every load asks: the common answer (no file) without building a layout
        config = paths.config_dir()
        marker = os.path.join(config, "fleet", "subscription.json")
        consulted.note_entry(marker)  # subscribing later changes the store every load uses
        if not os.path.lexists(marker):
            return None
    # A subscribed node syncs on a schedule and its store expires: not a stamp's business.
    consulted.opaque("the trust store comes from an organisation subscription")
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
