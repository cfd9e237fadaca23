"""The secure-path rule shared by the trust store, the caches, stored roots and the ledger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safeload._internal.private_dir import _private_group, others_could_replace

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")


def _folder(path: Path, mode: int) -> Path:
    path.mkdir(parents=True)
    path.chmod(mode)
    return path


def test_a_link_then_dot_dot_is_judged_where_the_link_leads(tmp_path: Path) -> None:
    # Review Q (F4): abspath dropped `link/..` before the link was followed
    shared = _folder(tmp_path / "shared", 0o777)
    _folder(shared / "sub", 0o700)
    _folder(shared / "store", 0o700)
    mine = _folder(tmp_path / "mine", 0o700)
    (mine / "link").symlink_to(shared / "sub")
    assert others_could_replace(shared / "store" / "trust.json") is not None
    found = others_could_replace(mine / "link" / ".." / "store" / "trust.json")
    assert found is not None and "shared" in found[0]
    assert others_could_replace(mine / "trust.json") is None  # the control


def test_group_write_by_the_users_own_group_is_private(tmp_path: Path) -> None:
    # Review Q (F4b): with user private groups and umask 002, ~/.cache is 0775, and every
    # pickle load failed on the converted store's check
    own = _private_group(os.getuid())
    if own is None:
        pytest.skip("this user has no private group")
    cache = _folder(tmp_path / "cache", 0o775)
    os.chown(cache, -1, own)
    assert others_could_replace(cache / "verified.json") is None
    if os.getuid() == 0:  # a group others are in: not private
        os.chown(cache, -1, 65534 if own != 65534 else 65533)
        assert others_could_replace(cache / "verified.json") is not None
