"""Trust benchmarks (issue 4): verification vs model_signing, verified load vs load_file.

    python benchmarks/bench_trust.py [--repeat 5] [--model-signing PATH/TO/model_signing]

A ~2 GB model directory of four safetensors shards is generated once, signed with the OMS test
key, and its publisher trusted in a temporary SAFELOAD_HOME.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import DATA, compare, ratio, wheel_python  # noqa: E402

KEYS = Path(__file__).resolve().parents[1] / "tests" / "assets" / "oms" / "keys"

TOUCH_ALL = """
import sys, torch
{imp}
s = 0.0
for p in sys.argv[1:]:
    t = {fn}(p)
    for v in t.values():
        s += float(v.view(-1)[-1])
"""
HASH_ALL = """
import hashlib, sys
for p in sys.argv[1:]:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(8 << 20):
            h.update(b)
"""


def make_model(py: str) -> Path:
    model = DATA / "signed-2gb"
    if (model / "model.sig").exists():
        return model
    model.mkdir(parents=True, exist_ok=True)
    code = f"""
import torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(1)
for i in range(4):
    sd = {{f"l{{i}}.{{j}}": torch.empty(4096, 8192).uniform_(generator=g) for j in range(4)}}
    save_file(sd, {str(model)!r} + f"/model-0000{{i + 1}}-of-00004.safetensors")
"""
    subprocess.run([py, "-c", code], check=True)
    (model / "config.json").write_text("{}")
    subprocess.run([py, "-m", "safeload", "sign", str(model), "--key",
                    str(KEYS / "p256.priv.pem")], check=True)
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model-signing", default=str(Path(__file__).resolve().parents[1]
                                                   / ".venv-model-signing/bin/model_signing"))
    args = ap.parse_args()
    py = wheel_python()
    model = make_model(py)
    shards = sorted(str(p) for p in model.glob("*.safetensors"))
    home = tempfile.mkdtemp(prefix="safeload-bench-")
    env = {**os.environ, "SAFELOAD_HOME": home}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([py, "-m", "safeload", "trust", "add-publisher", "bench"], env=env, check=True,
                   capture_output=True)
    subprocess.run([py, "-m", "safeload", "trust", "add-key", "bench", str(KEYS / "p256.pub.pem")],
                   env=env, check=True, capture_output=True)

    print("\n== safeload verify vs model_signing verify key (2 GB, 4 shards)")
    cases = {"safeload verify": ([py, "-m", "safeload", "verify", str(model)], None)}
    if Path(args.model_signing).exists():
        cases["model_signing verify key"] = (
            [args.model_signing, "verify", "key", str(model), "--signature",
             str(model / "model.sig"), "--public_key", str(KEYS / "p256.pub.pem")], None)
    res = compare(cases, args.repeat, env)
    if len(res) == 2:
        print(ratio(res["safeload verify"], res["model_signing verify key"]))

    def no_cache() -> None:
        Path(home, "cache", "verified.json").unlink(missing_ok=True)

    print("\n== verified safeload.load of all shards vs load_file vs sha256 of the same bytes")
    ours = TOUCH_ALL.format(imp="import safeload", fn="safeload.load")
    ref = TOUCH_ALL.format(imp="from safetensors.torch import load_file", fn="load_file")
    res = compare({
        "safeload.load (hash + verify)": ([py, "-c", ours, *shards], no_cache),
        "load_file": ([py, "-c", ref, *shards], None),
        "hashlib sha256 only": ([py, "-c", HASH_ALL, *shards], None),
    }, args.repeat, env)
    print(ratio(res["safeload.load (hash + verify)"], res["hashlib sha256 only"]))
    print(ratio(res["safeload.load (hash + verify)"], res["load_file"]))

    print("\n== repeated load of unchanged files (verification cache) vs load_file")
    subprocess.run([py, "-c", ours, *shards], env=env, check=True, capture_output=True)
    res = compare({
        "safeload.load (cached verdict)": ([py, "-c", ours, *shards], None),
        "load_file": ([py, "-c", ref, *shards], None),
    }, args.repeat, env)
    print(ratio(res["safeload.load (cached verdict)"], res["load_file"]))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
