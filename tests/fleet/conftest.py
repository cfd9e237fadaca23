"""Fixtures: a TUF repository with one published store, served on 127.0.0.1, and a node
subscribed to it; a clock that moves both safeload's and ngclient's notion of now."""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("tuf")

from tuf_repo import Server, TufRepo, serving  # noqa: E402

from safeload.fleet import _clock, build_document, subscribe  # noqa: E402
from safeload.trust import TrustStore  # noqa: E402

REVOKED = "ab" * 32


def store_doc(serial: int, *, revoked: str = REVOKED, allow_local_trust: bool = False) -> bytes:
    """A small organisation document: one revoked digest, strict mode."""
    store = TrustStore().with_revoked_digest(revoked, f"serial {serial}")
    store = store.with_policy(store.policy.__class__(mode="strict"))
    return build_document(store, serial=serial, allow_local_trust=allow_local_trust)


@pytest.fixture
def repo(tmp_path: Path) -> TufRepo:
    r = TufRepo(tmp_path / "repo")
    r.publish(store_doc(1))
    return r


@pytest.fixture
def server(repo: TufRepo) -> Iterator[Server]:
    with serving(repo.base) as s:
        yield s


@pytest.fixture
def node(repo: TufRepo, server: Server, tmp_path: Path) -> Path:
    """A node subscribed with the repository's first root (SAFELOAD_HOME is per test)."""
    root = tmp_path / "root.json"
    root.write_bytes(repo.root_bytes(1))
    subscribe(server.url, root)
    return root


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[dt.timedelta], None]:
    """`clock(delta)`: from now on, every clock safeload and ngclient read is `delta` ahead."""
    from tuf.ngclient._internal import trusted_metadata_set

    real = dt.datetime

    def move(delta: dt.timedelta) -> None:
        class Shifted(real):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> Shifted:  # type: ignore[override]
                return real.now(tz) + delta  # type: ignore[return-value]

        monkeypatch.setattr(_clock, "now", lambda: real.now(dt.timezone.utc) + delta)
        monkeypatch.setattr(trusted_metadata_set, "datetime",
                            types.SimpleNamespace(datetime=Shifted, timezone=dt.timezone))

    return move
