"""What OTLP export costs a load: loads with SAFELOAD_OTLP off and on, side by side.

    .venv/bin/python benchmarks/bench_otlp.py [LOADS_PER_ROUND] [ROUNDS]   (default: 200 7)

Each round loads LOADS_PER_ROUND distinct small safetensors files (one new ledger entry each)
with export off, then on (a collector on 127.0.0.1 that decodes nothing and answers at once),
alternating; per-load medians with min-max over the rounds, and their ratio. Also the append
listener alone (what a ledger write pays under its lock), per line.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Collector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def main(argv: list[str]) -> int:
    per_round = int(argv[0]) if argv else 200
    rounds = int(argv[1]) if len(argv) > 1 else 7
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as d:
        root = Path(d)
        os.environ.update(SAFELOAD_HOME=str(root / "home"),
                          OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}")
        import torch
        from safetensors.torch import save_file

        import safeload
        from safeload.provenance import flush, otlp
        from safeload.provenance.ledger import Line

        files = []
        for i in range(per_round * rounds * 2 + 1):
            p = root / f"m{i}.safetensors"
            save_file({"w": torch.full((4,), float(i))}, str(p))
            files.append(p)
        safeload.load(files[-1])  # warm: imports, trust store, the session record
        times: dict[str, list[float]] = {"off": [], "on": []}
        it = iter(files[:-1])
        for _ in range(rounds):
            for mode in ("off", "on"):
                os.environ["SAFELOAD_OTLP"] = "1" if mode == "on" else "0"
                start = time.perf_counter()
                for _ in range(per_round):
                    safeload.load(next(it))
                flush()
                times[mode].append((time.perf_counter() - start) / per_round)
        otlp.flush()
        for mode, ts in times.items():
            print(f"SAFELOAD_OTLP {mode:<3}  per load median {statistics.median(ts) * 1e3:7.3f} ms "
                  f"(min {min(ts) * 1e3:.3f}, max {max(ts) * 1e3:.3f})")
        ratio = statistics.median(times["on"]) / statistics.median(times["off"])
        print(f"ratio on/off: {ratio:.3f}")
        os.environ["SAFELOAD_OTLP"] = "1"
        line = Line(5, "sha256:" + "0" * 64, "sha256:" + "1" * 64, {
            "entry": {"action": "load", "files": [{"sha256": "2" * 64}]}, "s": 0, "seq": 5,
            "v": 2, "prev": "sha256:" + "0" * 64})
        n = 20000
        start = time.perf_counter()
        for _ in range(n):
            otlp.on_append(root / "home" / "x", [line])
        print(f"append listener alone: {(time.perf_counter() - start) / n * 1e6:.2f} us per line")
        otlp.flush()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
