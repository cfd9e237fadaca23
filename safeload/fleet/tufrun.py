"""Running python-tuf's ngclient Updater: online, or over the accepted generation only (the
cache-only fetcher), and its errors mapped to `FleetError`s naming the URL."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib import parse

from safeload._internal.text import get_logger, safe_text
from safeload._version import __version__
from safeload.fleet import _clock
from safeload.fleet.document import FleetDocument, parse_document
from safeload.fleet.errors import (
    SYNC_FIX,
    FleetConfigError,
    FleetError,
    FleetExpiredError,
    FleetRollbackError,
    FleetUnreachableError,
    FleetVerificationError,
)
from safeload.fleet.subscribing import Subscription
from safeload.trust import format_time

_logger = get_logger(__name__)

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


# The socket timeout bounds one read only: a mirror sending a byte a second never trips it
# (review T-2: 41 hours for a 16 KiB timestamp, every load waiting). One refresh, all its
# files together, gets this many times the subscription's `timeout_s`.
SYNC_DEADLINE_FACTOR = 10


def online_fetcher(sub: Subscription, user_agent: str) -> Any:
    """ngclient's urllib3 fetcher, reading whatever each recv brings (never waiting for a
    whole chunk) and stopping the refresh at its deadline."""
    import urllib3
    from tuf.api.exceptions import SlowRetrievalError
    from tuf.ngclient import Urllib3Fetcher

    budget = SYNC_DEADLINE_FACTOR * sub.timeout_s
    deadline = time.monotonic() + budget

    class Bounded(Urllib3Fetcher):
        def _chunks(self, response: Any) -> Iterator[bytes]:
            try:
                while True:
                    if time.monotonic() > deadline:
                        response.close()
                        raise SlowRetrievalError(f"the refresh took over {budget} s "
                                                 f"({SYNC_DEADLINE_FACTOR}x timeout_s)")
                    chunk = response.read1(self.chunk_size)
                    if not chunk:
                        return
                    yield chunk
            except urllib3.exceptions.TimeoutError as exc:
                raise SlowRetrievalError from exc
            except urllib3.exceptions.MaxRetryError as exc:
                if isinstance(exc.reason, urllib3.exceptions.TimeoutError):
                    raise SlowRetrievalError from exc
                raise

    return Bounded(socket_timeout=sub.timeout_s, app_user_agent=user_agent)


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
        # A delegated targets role (review T-3): ngclient keeps it as `<quoted name>.json`.
        # Whatever file is served, the Updater verifies its signatures and snapshot version.
        quoted = url[len(sub.metadata_url):]
        m = re.fullmatch(r"(?:[0-9]+\.)?([^/\\]+)\.json", quoted)
        if m and m[1] not in (".", "..", "root") and parse.quote(parse.unquote(m[1]), "") == m[1]:
            return gen / "metadata" / f"{m[1]}.json"
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
            if role == named or signed.is_expired(_clock.now()):
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


