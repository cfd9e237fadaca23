"""A subscribed node's loads are judged by the organisation's store, through every entry point
(the pipeline's `load_store`), and the CLI's subscribe/sync/subscription commands."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import store_doc
from tuf_repo import Server, TufRepo

import safeload
from safeload import fleet
from safeload._cli import main
from safeload.errors import RevokedError
from safeload.fleet import build_document
from safeload.hfcache import scan_cache
from safeload.trust import TrustStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
from _hubcache import make_repo  # noqa: E402


def _weights() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(3.0)}, buf)
    return buf.getvalue()


def _revoking(data: bytes, serial: int) -> bytes:
    store = TrustStore().with_revoked_digest(hashlib.sha256(data).hexdigest(), "org: bad")
    return build_document(store, serial=serial)


def test_a_digest_the_organisation_revokes_is_refused_by_load_and_cache_scan(
        node: Path, repo: TufRepo, server: Server, tmp_path: Path) -> None:
    data = _weights()
    snap = make_repo(tmp_path / "cache", "acme/tiny", {"pytorch_model.bin": data})
    repo.publish(_revoking(data, 2))
    fleet.sync(force=True)
    assert TrustStore.load().digest_revocation(hashlib.sha256(data).hexdigest()) is None
    with pytest.raises(RevokedError, match="org: bad"):
        safeload.load(snap / "pytorch_model.bin")
    [(_, f)] = scan_cache(tmp_path / "cache").files()
    assert f.status == "refused" and "org: bad" in f.findings[0]


def test_without_a_subscription_the_local_store_alone_decides(tmp_path: Path) -> None:
    data = _weights()
    (tmp_path / "m.bin").write_bytes(data)
    assert torch.equal(safeload.load(tmp_path / "m.bin")["w"], torch.arange(3.0))


def test_cli_subscribe_sync_and_show(repo: TufRepo, server: Server, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(repo.root_bytes(1))
    assert main(["trust", "subscribe", server.url, "--root", str(root), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["store"]["serial"] == 1
    repo.publish(store_doc(2))
    assert main(["trust", "sync", "--json"]) == 0
    synced = json.loads(capsys.readouterr().out)
    assert synced["status"] == "updated" and synced["store"]["serial"] == 2
    assert main(["trust", "subscription"]) == 0
    assert "store serial 2" in capsys.readouterr().out


def test_cli_sync_without_a_subscription_could_not_decide(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trust", "sync"]) == 2
    assert "subscribe" in capsys.readouterr().err


def test_every_entry_names_the_organisation_store_it_was_judged_by(
        node: Path, repo: TufRepo, server: Server, tmp_path: Path) -> None:
    from safeload._internal import paths
    from safeload.provenance import read_ledger
    from safeload.provenance.ledger import LEDGER_NAME

    def lenient(serial: int) -> bytes:  # default mode: unsigned local files load
        return build_document(TrustStore().with_revoked_digest("cd" * 32, "x"), serial=serial)

    data = _weights()
    (tmp_path / "a.bin").write_bytes(data)
    (tmp_path / "b.bin").write_bytes(data)
    repo.publish(lenient(2))
    fleet.sync(force=True)
    safeload.load(tmp_path / "a.bin")
    repo.publish(lenient(3))
    fleet.sync(force=True)
    safeload.load(tmp_path / "b.bin")
    records = [r for r in read_ledger().records if r.entry is not None]
    stores = [r.entry.trust.store for r in records if r.entry is not None]
    org, ident = fleet.organisation_store()
    effective, _ = fleet.effective_store(sync_first=False)
    assert stores[-1] is not None and stores[-1]["tuf"] == ident.to_ledger()
    assert stores[-1]["tuf"]["serial"] == 3 and stores[-1]["sha256"] == effective.state_digest()
    assert stores[0] is not None and stores[0]["tuf"]["serial"] == 2
    assert stores[0]["tuf"]["targets_version"] < stores[-1]["tuf"]["targets_version"]
    # What does not change within a process is written once: the session record's defaults.
    lines = (paths.ledger_dir() / LEDGER_NAME).read_text().splitlines()
    assert sum('"targets_version"' in line for line in lines) == 2  # session default + change
