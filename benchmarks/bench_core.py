"""Core benchmarks (issues 2 and 3): scan cost vs size, scan vs peers, load vs load_file,
conversion vs Hugging Face's own recipe, sandbox start-up and cache hits.

    python benchmarks/bench_core.py [--repeat 5] [--sizes 1,4] [--peers /path/to/venv/bin]

Peers (picklescan, modelscan) live in their own venv so they never mix with ours:
    python -m venv /tmp/peers && /tmp/peers/bin/pip install picklescan modelscan
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import compare, make_checkpoints, ratio, wheel_python  # noqa: E402

HF_BASELINE = """
import sys, torch
from safetensors.torch import save_file, load_file
src, dst = sys.argv[1], sys.argv[2]
sd = torch.load(src, map_location="cpu", weights_only=True)
sd = {k: v.contiguous() for k, v in sd.items()}
save_file(sd, dst, metadata={"format": "pt"})
re = load_file(dst)
for k in sd:
    assert torch.equal(sd[k], re[k])
"""

PY = sys.executable
LOAD_ALL = """
import sys, torch
t = {lib}.{fn}(sys.argv[1])
s = 0.0
for v in t.values():
    s += float(v.view(-1)[-1])  # touch each tensor once, like a model would
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="1,4")
    ap.add_argument("--peers", default="", help="bin/ folder holding picklescan and modelscan")
    args = ap.parse_args()
    sizes = [float(x) for x in args.sizes.split(",")]
    global PY
    PY = wheel_python()
    files = make_checkpoints(sizes)
    home = tempfile.mkdtemp(prefix="safeload-bench-")
    env = {**os.environ, "SAFELOAD_HOME": home}
    # Installed packages have their bytecode compiled at install time; measure that case.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    tags = [f"{s:g}gb" for s in sizes]

    print("\n== scan: cost must not grow with tensor bytes")
    res = compare({f"safeload scan {t}": ([PY, "-m", "safeload", "scan", str(files[f"pt-{t}"])],
                                          None) for t in tags}, args.repeat, env)
    if len(tags) > 1:
        print(ratio(res[f"safeload scan {tags[-1]}"], res[f"safeload scan {tags[0]}"]))

    if args.peers:
        print("\n== scan vs peers (same file, whole process)")
        f = str(files[f"pt-{tags[0]}"])
        res = compare({
            "safeload scan": ([PY, "-m", "safeload", "scan", f], None),
            "picklescan": ([os.path.join(args.peers, "picklescan"), "-p", f], None),
            "modelscan": ([os.path.join(args.peers, "modelscan"), "-p", f], None),
        }, args.repeat, env)
        print(ratio(res["safeload scan"], res["picklescan"]))
        print(ratio(res["safeload scan"], res["modelscan"]))

    for t in tags:
        print(f"\n== load {t} safetensors: safeload.load vs safetensors.torch.load_file")
        st = str(files[f"st-{t}"])
        res = compare({
            "safeload.load": ([PY, "-c", LOAD_ALL.format(lib="safeload", fn="load")
                               .replace("import sys, torch", "import sys, torch, safeload"), st],
                              None),
            "load_file": ([PY, "-c", LOAD_ALL.format(lib="safetensors.torch", fn="load_file")
                           .replace("import sys, torch", "import sys, torch, safetensors.torch"),
                           st], None),
        }, args.repeat, env)
        print(ratio(res["safeload.load"], res["load_file"]))

    for t in tags:
        print(f"\n== convert {t} pytorch_model.bin: safeload convert (sandbox) vs HF recipe")
        src = str(files[f"pt-{t}"])
        out_dir = Path(home) / "out"
        out_dir.mkdir(exist_ok=True)

        def fresh(out_dir: Path = out_dir) -> None:
            shutil.rmtree(Path(home) / "cache", ignore_errors=True)
            for p in out_dir.iterdir():
                p.unlink()

        res = compare({
            "safeload convert": ([PY, "-m", "safeload", "convert", src, "-o",
                                  str(out_dir / "a.safetensors")], fresh),
            "HF torch.load+save_file+reload": ([PY, "-c", HF_BASELINE, src,
                                                str(out_dir / "b.safetensors")], fresh),
        }, max(2, args.repeat // 2), env)
        print(ratio(res["safeload convert"], res["HF torch.load+save_file+reload"]))
        print("  peak RSS is per process (parent or sandboxed child, the larger)")

        print(f"\n== second safeload.load of {t} pickle (cache hit) vs load_file of the output")
        run_load = LOAD_ALL.format(lib="safeload", fn="load").replace(
            "import sys, torch", "import sys, torch, safeload")
        import subprocess

        subprocess.run([PY, "-m", "safeload", "convert", src, "-o",
                        str(out_dir / "c.safetensors"), "--overwrite"], env=env, check=True)
        res = compare({
            "safeload.load (cache hit)": ([PY, "-c", run_load, src], None),
            "load_file(converted)": ([PY, "-c", LOAD_ALL.format(
                lib="safetensors.torch", fn="load_file").replace(
                "import sys, torch", "import sys, torch, safetensors.torch"),
                str(out_dir / "c.safetensors")], None),
        }, args.repeat, env)
        print(ratio(res["safeload.load (cache hit)"], res["load_file(converted)"]))

    print("\n== fixed cost of the sandboxed child (a tiny checkpoint, cache cleared each run)")
    tiny = Path(home) / "tiny.pt"
    subprocess.run([PY, "-c", f"import torch; torch.save({{'w': torch.ones(2)}}, {str(tiny)!r})"],
                   check=True)
    res = compare({
        "convert tiny (child start + layers)": (
            [PY, "-m", "safeload", "convert", str(tiny), "-o", str(Path(home) / "t.st"),
             "--overwrite"], lambda: shutil.rmtree(Path(home) / "cache", ignore_errors=True)),
        "scan tiny (no child)": ([PY, "-m", "safeload", "scan", str(tiny)], None),
        "python -c 'import torch'": ([PY, "-c", "import torch"], None),
    }, args.repeat, env)
    print(ratio(res["convert tiny (child start + layers)"], res["scan tiny (no child)"]))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
