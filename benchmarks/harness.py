"""The benchmark harness: whole-process commands, interleaved, medians with min-max, ratios.

The machine is shared and noisy, so every claim is a ratio of two commands measured side by side
in the same run (A B A B ...), with the median and range of each. Peak RSS comes from wait4 on
each child (parent and its children, e.g. the sandboxed converter, counted separately: the peak
of the process tree is reported as the larger of the two, plus both).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "_data"
PY = sys.executable


@dataclass
class Samples:
    name: str
    wall: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)

    def summary(self) -> str:
        w = self.wall
        peak = statistics.median(self.peak_mib)
        return (f"{self.name:<44} median {statistics.median(w):8.3f} s "
                f"(min {min(w):.3f}, max {max(w):.3f})  peak {peak:8.0f} MiB")


def run_once(argv: Sequence[str], env: dict[str, str] | None = None,
             setup: Callable[[], None] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole-process run (children included)."""
    if setup:
        setup()
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv} failed with {proc.returncode}")
    # ru_maxrss is the peak of the largest single process in the waited tree (KiB on Linux).
    return wall, usage.ru_maxrss / 1024


def compare(cases: dict[str, tuple[Sequence[str], Callable[[], None] | None]], repeat: int,
            env: dict[str, str] | None = None, warmup: int = 1) -> dict[str, Samples]:
    """Run every case `repeat` times, interleaved, after `warmup` unrecorded rounds."""
    out = {name: Samples(name) for name in cases}
    for round_ in range(warmup + repeat):
        for name, (argv, setup) in cases.items():
            wall, peak = run_once(argv, env, setup)
            if round_ >= warmup:
                out[name].wall.append(wall)
                out[name].peak_mib.append(peak)
    for s in out.values():
        print(s.summary(), flush=True)
    return out


def ratio(a: Samples, b: Samples) -> str:
    """Median of the paired ratios a/b, with their min-max."""
    pairs = [x / y for x, y in zip(a.wall, b.wall, strict=True)]
    return (f"{a.name} / {b.name}: {statistics.median(pairs):.2f}x "
            f"(min {min(pairs):.2f}, max {max(pairs):.2f}, n={len(pairs)})")


def make_checkpoints(sizes_gb: Sequence[float]) -> dict[str, Path]:
    """1 GB / 4 GB checkpoints in both formats (generated once, reused)."""
    DATA.mkdir(exist_ok=True)
    made: dict[str, Path] = {}
    for gb in sizes_gb:
        tag = f"{gb:g}gb"
        pt, st = DATA / f"ckpt-{tag}.bin", DATA / f"ckpt-{tag}.safetensors"
        made[f"pt-{tag}"], made[f"st-{tag}"] = pt, st
        if pt.exists() and st.exists():
            continue
        code = f"""
import torch
from safetensors.torch import save_file
n = int({gb} * (1 << 30) / (4 * 4096 * 4096))
g = torch.Generator().manual_seed(0)
sd = {{f"layer{{i}}.weight": torch.empty(4096, 4096).uniform_(generator=g) for i in range(n)}}
sd.update({{f"layer{{i}}.bias": torch.zeros(4096) for i in range(n)}})
torch.save(sd, {str(pt)!r})
save_file(sd, {str(st)!r})
"""
        subprocess.run([PY, "-c", code], check=True)
    return made


def drop_caches_hint() -> None:
    print("(page cache warm: every case reads files already in memory, as after a first load)")


def wheel_python() -> str:
    """A venv with safeload installed from its wheel (as users get it: no editable finder in
    every start-up, bytecode compiled), reusing the dev venv's torch and other dependencies."""
    import sysconfig

    root = ROOT.parent
    venv = DATA / "wheel-venv"
    dist = DATA / "dist"
    subprocess.run([PY, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(root)],
                   check=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = str(venv / "bin" / "python")
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([vpy, "-c", code], check=True, capture_output=True,
                             text=True).stdout.strip()
    Path(purelib, "devdeps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = sorted(dist.glob("safeload-*.whl"))[-1]
    for old in ("safeload", "safeload_conversion"):
        shutil.rmtree(Path(purelib) / old, ignore_errors=True)
    for old_info in Path(purelib).glob("safeload-*.dist-info"):
        shutil.rmtree(old_info, ignore_errors=True)
    subprocess.run([PY, "-m", "pip", "install", "-q", "--no-deps", "--upgrade",
                    "--target", purelib, str(wheel)], check=True)
    subprocess.run([vpy, "-m", "compileall", "-q", purelib + "/safeload",
                    purelib + "/safeload_conversion"], check=True)
    return vpy
