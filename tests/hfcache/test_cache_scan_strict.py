"""`cache scan` in strict mode judges one private copy of each file, with no stamp-keyed digest.

Hostile review E (2026-12-07, issue 9): strict mode's loads already copy each file once
(`OpenedFile.copy_privately`), but `cache scan` still took a file's digest from the verification
cache by its stamps and inspected the original mapping. A writer holding a dirty shared mapping
of a blob rewrites it with no new mtime or ctime: the scan then called forged bytes "ok".
"""

from __future__ import annotations

import json
import mmap
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from safeload._cli import main
from safeload._internal import verify_cache
from safeload.trust import Policy, TrustStore

sys.path.insert(0, str(Path(__file__).parent))
from test_cache_cli import add_repo  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux page-cache behaviour")


def _status(cache: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    main(["cache", "scan", "--cache-dir", str(cache), "--json"])
    doc = json.loads(capsys.readouterr().out)
    (f,) = [f for r in doc["repos"] for rev in r["revisions"] for f in rev["files"]]
    return f["status"], f["integrity"]


def test_strict_cache_scan_rehashes_what_a_hidden_write_changed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_cache, "QUIESCENT_SECONDS", 0)  # every digest may be kept
    src, cache = tmp_path / "src", tmp_path / "hub"
    src.mkdir()
    save_file({"w": torch.arange(4.0)}, str(src / "model.safetensors"))
    snap = add_repo(cache, "org/m", src, "a" * 40)
    blob = (snap / "model.safetensors").resolve()
    assert _status(cache, capsys)[1] == "ok"  # the digest is now in the verification cache
    TrustStore.update(lambda s: s.with_policy(Policy(mode="strict")))
    os.chmod(blob, 0o644)
    fd = os.open(blob, os.O_RDWR)
    shared = mmap.mmap(fd, blob.stat().st_size, flags=mmap.MAP_SHARED)
    try:
        shared[-1:] = shared[-1:]  # the one write fault that updates the times
        before = os.stat(blob)
        shared[-4:] = b"\x00\x00\x80\x7f"  # forged, with no new mtime or ctime
        after = os.stat(blob)
        assert (before.st_mtime_ns, before.st_ctime_ns) == (after.st_mtime_ns, after.st_ctime_ns)
        assert _status(cache, capsys) == ("tampered", "mismatch")
    finally:
        shared.close()
        os.close(fd)
