"""Attacker-chosen names (a folder, a file, a zip member, a model card field) never reach a
terminal or a log handler with their control bytes raw: every safeload logger escapes its
records, and the CLI's writer escapes every line it prints."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload._cli import main
from safeload._internal.text import terminal_text

_ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"


def _hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / f"evil{_ESC}dir"
    folder.mkdir()
    save_file({"w": torch.zeros(2)}, str(folder / f"model{_ESC}.safetensors"))
    # A card with an entry it skips: its warning names the card's path (the folder's name).
    card = f"---\nlicense: mit\nbase_model: [{{'x': 1}}, '{_ESC}']\n---\n"
    (folder / "README.md").write_text(card)
    return folder


def test_log_records_of_a_load_carry_no_raw_escape(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    folder = _hostile_folder(tmp_path)
    caplog.set_level(logging.WARNING, logger="safeload")
    safeload.load(next(folder.iterdir()))
    assert caplog.records, "the unsigned warning names the file"
    for record in caplog.records:
        assert "\x1b" not in record.getMessage() and "\x07" not in record.getMessage()
    assert any(r.getMessage().startswith("model card") for r in caplog.records)
    assert "\\x1b]0;owned" in caplog.text  # escaped, still readable


def test_a_model_card_field_is_escaped_in_its_warning(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from safeload.modelcard import read_model_card

    card = _hostile_folder(tmp_path) / "README.md"
    caplog.set_level(logging.WARNING, logger="safeload")
    assert read_model_card(card).warnings
    assert all("\x1b" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_scan_output_carries_no_raw_escape(tmp_path: Path, fmt: str,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    folder = _hostile_folder(tmp_path)
    (folder / f"junk{_ESC}.pkl").write_bytes(b"\x80\x02c" + _ESC.encode() + b"\nx\n.")
    try:
        rc = main(["scan", str(folder), "--format", fmt, "-v"])
    finally:
        logging.getLogger("safeload").handlers[:] = []
    out, err = capfd.readouterr()
    assert rc == 1
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "owned" in out


def test_terminal_text_keeps_plain_text_and_newlines() -> None:
    plain = "model.safetensors: clean\n  fix: nothing"
    assert terminal_text(plain) == plain
    assert terminal_text("a\x1b[0mb\u202e") == "a\\x1b[0mb\\u202e"
