"""Where `safeload convert` writes: a relative -o is the caller's cwd, two inputs never share
an output name (refused before anything is written), an output never replaces its source."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from safeload._cli import main
from safeload.convert import convert_directory, convert_file
from safeload.errors import OutputCollisionError


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def test_a_relative_output_is_resolved_against_the_cwd(in_tmp: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    torch.save({"w": torch.arange(3.0)}, in_tmp / "single.pt")
    assert main(["convert", "single.pt", "-o", "out/../single.safetensors"]) == 0
    assert torch.equal(load_file(in_tmp / "single.safetensors")["w"], torch.arange(3.0))
    (in_tmp / "m").mkdir()
    torch.save({"w": torch.ones(2)}, in_tmp / "m" / "pytorch_model.bin")
    assert main(["convert", "m", "-o", "converted"]) == 0
    assert (in_tmp / "converted" / "model.safetensors").is_file()
    capsys.readouterr()


def test_two_inputs_with_one_output_name_are_refused_before_any_write(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    torch.save({"a": torch.zeros(2)}, model / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.ones(2)}, model / "model-00001-of-00002.bin")
    out = tmp_path / "out"
    with pytest.raises(OutputCollisionError, match="would both be written to "
                                                   "model-00001-of-00002.safetensors"):
        convert_directory(model, out)
    assert not list(out.iterdir())


def test_names_that_differ_only_in_case_collide(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    torch.save({"a": torch.zeros(2)}, model / "Weights.pt")
    torch.save({"b": torch.ones(2)}, model / "weights.pt")
    with pytest.raises(OutputCollisionError):
        convert_directory(model, tmp_path / "out")


def test_an_output_never_replaces_its_source(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2)}, src)
    before = src.read_bytes()
    with pytest.raises(OutputCollisionError, match="replace its own source"):
        convert_file(src, src, overwrite=True)
    assert main(["convert", str(src), "-o", str(src), "--overwrite"]) == 2
    assert src.read_bytes() == before
    capsys.readouterr()

