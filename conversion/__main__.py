"""The sandboxed conversion worker: `python -I -B -m safeload_conversion RESULT_FD IN_FD OUT_DIR`.

It locks itself down first (while still single-threaded), then reads the checkpoint it was
handed as an open descriptor (never a path), reconstructs it symbolically under the allowlist,
copies tensor bytes into a safetensors file in OUT_DIR, and reports one JSON object: the digest
of the bytes it read, each written tensor's digest, the structure and the sandbox layers.
"""

from __future__ import annotations

import sys

from safeload_conversion.sandbox_layers import enter_sandbox, send_result


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[0].isdigit() or not argv[1].isdigit():
        print("usage: python -I -B -m safeload_conversion RESULT_FD IN_FD OUT_DIR",
              file=sys.stderr)
        return 2
    result_fd, in_fd, out_dir = int(argv[0]), int(argv[1]), argv[2]
    report = enter_sandbox(result_fd, out_dir, keep_fds=(in_fd,))
    # Only now, locked down, does the worker look at the input.
    from safeload_conversion.convert import ConvertRefused, convert_fd

    try:
        result = convert_fd(in_fd, out_dir)
    except ConvertRefused as exc:
        send_result(result_fd, {"ok": False, "error": {"kind": "refused", "message": str(exc)},
                                "layers": report.to_dict()})
        return 1
    result.update(ok=True, layers=report.to_dict())
    send_result(result_fd, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
