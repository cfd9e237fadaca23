"""The trust store is read once per process and again whenever the file or its folders change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safeload._internal import paths
from safeload.errors import TrustStoreError
from safeload.trust import TrustStore, _files


def test_an_unchanged_store_is_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    TrustStore.update(lambda s: s.with_revoked_digest("ab" * 32, "bad"))
    first = TrustStore.load()
    reads: list[Path] = []
    real = _files.read_trust_file
    monkeypatch.setattr("safeload.trust.store.read_trust_file",
                        lambda p, src: reads.append(p) or real(p, src))
    assert TrustStore.load() is first and reads == []


def test_every_change_is_seen_by_the_next_load() -> None:
    TrustStore.load()
    TrustStore.update(lambda s: s.with_revoked_digest("cd" * 32, "later"))
    assert TrustStore.load().digest_revocation("cd" * 32) is not None
    p = paths.trust_store_path()
    p.write_text(p.read_text().replace("later", "LATER"))  # an in-place edit
    assert TrustStore.load().digest_revocation("cd" * 32).reason == "LATER"  # type: ignore[union-attr]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_folder_made_writable_by_others_is_refused_after_a_cached_read() -> None:
    TrustStore.update(lambda s: s.with_revoked_digest("ab" * 32, "bad"))
    TrustStore.load()
    folder = paths.trust_store_path().parent
    mode = folder.stat().st_mode
    folder.chmod(mode | 0o002)
    try:
        with pytest.raises(TrustStoreError, match="writable by group or others"):
            TrustStore.load()
    finally:
        folder.chmod(mode)
