"""Shared fixtures. Every test runs with its own SAFELOAD_HOME: nothing touches the user's files."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# No test may reach a model hub: set before huggingface_hub reads its constants at import (a
# monkeypatched variable comes too late for libraries that check the constant, e.g.
# transformers' adapter lookup, which otherwise retries the network for minutes).
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                  ) -> Iterator[Path]:
    from safeload.provenance import flush

    flush()  # a batch queued by an earlier test lands in its own home, not in this one
    home = tmp_path_factory.mktemp("safeload-home")
    monkeypatch.setenv("SAFELOAD_HOME", str(home))
    monkeypatch.delenv("SAFELOAD_TRUST_STORE", raising=False)
    monkeypatch.delenv("SAFELOAD_FORMAT", raising=False)  # a CI default must not leak in
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from safeload import pipeline

    pipeline._warned.clear()  # warnings are once per file per process: per test here
    pipeline._unsigned_default.clear()
    yield home
    flush()


# A copy of ../shared/fixtures/oms lives in tests/assets/oms so CI never depends on that folder.
OMS_FIXTURE = Path(os.environ.get("SAFELOAD_OMS_FIXTURE",
                                  Path(__file__).resolve().parent / "assets" / "oms"))


def copy_oms(dest: Path) -> Path:
    """Copy the read-only fixture, make it writable, recreate `.git/HEAD` (git cannot store it)."""
    if not OMS_FIXTURE.is_dir():
        pytest.skip(f"OMS fixture not found at {OMS_FIXTURE}")
    out = dest / "oms"
    shutil.copytree(OMS_FIXTURE, out)
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            p = Path(root) / name
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    out.chmod(out.stat().st_mode | stat.S_IWUSR)
    git = out / "negative" / "git-files-added" / ".git"
    git.mkdir(exist_ok=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    return out


@pytest.fixture
def oms(tmp_path: Path) -> Path:
    """A private, writable copy of fixtures/oms."""
    return copy_oms(tmp_path)


def _assert_sarif_shape(sarif: dict[str, Any]) -> None:
    """The keys a SARIF 2.1.0 consumer requires (GitHub code scanning reads these)."""
    assert sarif["version"] == "2.1.0"
    runs = sarif["runs"]
    assert isinstance(runs, list) and len(runs) == 1
    assert runs[0]["tool"]["driver"]["name"] == "safeload"
    assert isinstance(runs[0]["results"], list)
    rule_ids = {r["id"] for r in runs[0]["tool"]["driver"]["rules"]}
    for r in runs[0]["results"]:
        assert isinstance(r["ruleId"], str) and r["ruleId"] in rule_ids
        assert r["level"] in ("error", "warning", "note", "none")
        assert isinstance(r["message"]["text"], str) and r["message"]["text"]
        uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert isinstance(uri, str) and uri


@pytest.fixture
def sarif_shape() -> Callable[[dict[str, Any]], None]:
    """Asserts a SARIF log's required structure (version, tool.driver.name, results[])."""
    return _assert_sarif_shape
