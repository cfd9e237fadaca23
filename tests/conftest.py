"""Shared fixtures. Every test runs with its own SAFELOAD_HOME: nothing touches the user's files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                  ) -> Path:
    home = tmp_path_factory.mktemp("safeload-home")
    monkeypatch.setenv("SAFELOAD_HOME", str(home))
    monkeypatch.delenv("SAFELOAD_TRUST_STORE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home
