"""The library honours SAFELOAD_LOGLEVEL on its `safeload` logger, and a README without a
metadata block gives no licence warning (issue 12), while the licence policy still applies."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload.errors import LicenseRefusedError
from safeload.licenses import LicensePolicy
from safeload.trust import TrustStore

PROBE = "import sys, safeload; safeload.load(sys.argv[1]); print('loaded')"


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "m"
    folder.mkdir()
    save_file({"w": torch.zeros(2)}, folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text("# My model\n\nJust prose, no metadata block.\n")
    return folder / "model.safetensors"


def _run(path: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "SAFELOAD_LOGLEVEL"}
    full.update(SAFELOAD_HOME=str(home), **env)
    return subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True,
                          text=True, env=full, check=True)


def test_safeload_loglevel_error_silences_the_library(tmp_path: Path) -> None:
    path = _model(tmp_path)
    loud = _run(path, tmp_path / "h1")
    assert "is unsigned" in loud.stderr  # control: the default level warns
    quiet = _run(path, tmp_path / "h2", SAFELOAD_LOGLEVEL="error")
    assert quiet.stdout.strip() == "loaded" and quiet.stderr == ""


def test_a_readme_without_metadata_gives_no_licence_warning(tmp_path: Path) -> None:
    run = _run(_model(tmp_path), tmp_path / "h")
    assert "licence" not in run.stderr


def test_a_policy_denying_unknown_still_refuses_a_readme_without_metadata(
        tmp_path: Path) -> None:
    path = _model(tmp_path)
    TrustStore.update(lambda s: s.with_policy(replace(
        s.policy, licenses=LicensePolicy(deny=frozenset({"unknown"})))))
    with pytest.raises(LicenseRefusedError):
        safeload.load(path)
