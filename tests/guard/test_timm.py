"""timm under the guard, with its real loaders (`timm.models.load_checkpoint`,
`load_state_dict`): `import timm` needs torchvision, which has no CPU build for torch 2.13, so
the child process installs an inert stand-in (`_torchvision_stub.py`) first; timm's loaders
themselves are unchanged (`torch.load` and `safetensors.torch.load_file`, looked up at call
time). Skipped where timm is not installed (it is not in the test extra: pip would pull
torchvision and another torch).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if importlib.util.find_spec("timm") is None:  # never imported here: it needs the stub
    pytest.skip("timm is not installed", allow_module_level=True)

HERE = Path(__file__).resolve().parent

CHILD = '''
import os, sys, hashlib, pickle
sys.path.insert(0, {here!r})
import _torchvision_stub  # noqa: F401
import torch, timm, timm.models
from safetensors.torch import save_file
import safeload
from safeload.errors import DigestMismatchError, UnsafeCheckpointError
from safeload.provenance import flush, read_ledger

class Canary:
    def __reduce__(self):
        return (os.system, ("touch " + {marker!r},))

tmp, hub = {tmp!r}, {hub!r}
torch.manual_seed(0)
model = timm.create_model("resnet10t", pretrained=False, num_classes=3)
pt, st = os.path.join(tmp, "ok.pth"), os.path.join(tmp, "ok.safetensors")
torch.save({{"state_dict": model.state_dict()}}, pt)
save_file(model.state_dict(), st)
with safeload.guard():
    for path in (pt, st):
        other = timm.create_model("resnet10t", pretrained=False, num_classes=3)
        timm.models.load_checkpoint(other, path)
        assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(),
                                                     model.state_dict().values()))
flush()
paths = [e.entry.source.path for e in read_ledger().records if e.entry is not None]
assert pt in paths and st in paths, paths

hostile = os.path.join(tmp, "hostile.pth")
torch.save({{"state_dict": model.state_dict(), "x": Canary()}}, hostile)
with safeload.guard():
    try:
        timm.models.load_checkpoint(model, hostile)
        raise SystemExit("hostile loaded")
    except RuntimeError as exc:  # timm re-raises a weights_only refusal as RuntimeError
        assert isinstance(exc.__cause__, UnsafeCheckpointError), repr(exc)
    try:
        timm.models.load_state_dict(hostile, weights_only=False)
        raise SystemExit("hostile loaded")
    except UnsafeCheckpointError:
        pass

# timm's pretrained weights land in the torch hub cache: a tampered one is refused by its name.
data = bytearray(open(pt, "rb").read())
name = "resnet10t-" + hashlib.sha256(bytes(data)).hexdigest()[:8] + ".pth"
data[-30] ^= 0xFF
os.makedirs(hub, exist_ok=True)
open(os.path.join(hub, name), "wb").write(bytes(data))
with safeload.guard():
    try:
        timm.models.load_state_dict(os.path.join(hub, name))
        raise SystemExit("tampered loaded")
    except DigestMismatchError:
        pass
print("OK")
'''


def test_timm_loaders_under_the_guard(tmp_path: Path) -> None:
    marker = tmp_path / "CANARY-FIRED"
    torch_home = tmp_path / "torch-home"
    code = CHILD.format(here=str(HERE), marker=str(marker), tmp=str(tmp_path),
                        hub=str(torch_home / "hub" / "checkpoints"))
    env = {**os.environ, "TORCH_HOME": str(torch_home), "HF_HUB_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]
    assert not marker.exists()
    # Control: the hostile checkpoint's payload is real under torch's own loader.
    ctl = (f"import torch; torch.load({str(tmp_path / 'hostile.pth')!r}, weights_only=False)")
    subprocess.run([sys.executable, "-c", ctl], env=env, check=True, capture_output=True)
    assert marker.exists()
