"""`safeload scan FILE` starts fast: only the scan command's parser and modules are loaded
(issue 11, goal 5), and the commands parse exactly as with the whole parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from safeload._cli import main

PROBE = """
import sys
from safeload._cli import main
code = main(["scan", sys.argv[1]])
heavy = [m for m in ("safeload._cli.cache", "safeload._cli.trust", "safeload._cli.demo",
                     "safeload.hfcache", "yaml", "torch", "huggingface_hub") if m in sys.modules]
print("RESULT", code, heavy)
"""


def test_a_scan_loads_neither_the_other_commands_nor_yaml_nor_torch(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"\x80\x04K\x01.")  # pickle.dumps(1)
    out = subprocess.run([sys.executable, "-c", PROBE, str(f)], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "RESULT 0 []"


def test_flags_before_the_command_and_typos_get_the_whole_parser(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"\x80\x04K\x01.")
    assert main(["--json", "scan", str(f)]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["clean"] == 1
    assert main(["scna", str(f)]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'scna'" in err and "'provenance'" in err
