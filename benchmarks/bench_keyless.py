"""Keyless (sigstore method) verification cost (issue 14): target at most 10 ms per bundle
beyond hashing the files, after the first import.

    python benchmarks/bench_keyless.py [--repeat 50]

Measures, on the real OMS fixture bundles (no model file is read: the signature check only):
the sigstore-python import in a fresh process, the first verification (builds the Verifier from
the root), and the median per-bundle cost after that, for a Rekor v1 bundle with a SET, one with
SET + RFC 3161 timestamp, and a TSA-only one.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
K = ROOT / "tests" / "assets" / "keyless"
SAN, ISSUER = "stefanb@us.ibm.com", "https://sigstore.verify.ibm.com/oauth2"
BUNDLES = {
    "v1.0.0 (SET)": K / "oms-model-transparency" / "v1.0.0-sigstore" / "model.sig",
    "v1.1.0 (SET+TSA)": K / "oms-model-transparency" / "v1.1.0-sigstore" / "model.sig",
    "v1.1.0 (TSA only)": K / "oms-negative" / "v1.1.0-tsa-only.VALID.sig",
}


def import_cost(repeat: int) -> list[float]:
    code = ("import time; t=time.perf_counter(); import sigstore.verify, sigstore.models; "
            "print(time.perf_counter()-t)")
    return [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                 text=True).stdout) for _ in range(repeat)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    imports = import_cost(5)
    print(f"import sigstore (fresh process): median {statistics.median(imports) * 1e3:.0f} ms "
          f"(min {min(imports) * 1e3:.0f}, max {max(imports) * 1e3:.0f})")

    from safeload.signing.verify import verify_signature_bytes

    def once(path: Path) -> float:
        data = path.read_bytes()
        t = time.perf_counter()
        verify_signature_bytes(data, signature_path=path, identity=SAN,
                               identity_provider=ISSUER)
        return time.perf_counter() - t

    first = once(BUNDLES["v1.0.0 (SET)"])
    print(f"first keyless verification (import + Verifier): {first * 1e3:.0f} ms")
    for name, path in BUNDLES.items():
        times = [once(path) for _ in range(args.repeat)]
        print(f"{name}: median {statistics.median(times) * 1e3:.2f} ms per bundle "
              f"(min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f}, n={args.repeat})")


if __name__ == "__main__":
    main()
