"""The sandboxed conversion worker.

    python -I -B -m safeload_conversion RESULT_FD IN_FD OUT_DIR
    python -I -B -m safeload_conversion RESULT_FD OUT_DIR --batch IN_FD [IN_FD ...]
    python -I -B -m safeload_conversion RESULT_FD OUT_DIR --serve REQUEST_FD

It locks itself down first (while still single-threaded), then reads the checkpoints it was
handed as open descriptors (never paths), reconstructs each symbolically under the allowlist,
copies tensor bytes into a safetensors file, and reports one JSON object: the digest of the bytes
it read, each written tensor's digest, the structure and the sandbox layers.

The single form writes OUT_DIR/model.safetensors. The batch form (one child per model, not per
file) writes OUT_DIR/<i>/model.safetensors for the i-th descriptor and reports `results`, one
entry per input in order: a refused or failed input is reported and the others still convert.

The serve form is a long-lived worker (one per loading process, for small inputs): locked down
once, it answers a "ready" frame with its layers, then for each 8-byte little-endian index N read
from REQUEST_FD converts OUT_DIR/in-N (placed there by the parent) into OUT_DIR/out-N and answers
one frame (8-byte length, then the JSON report); EOF on REQUEST_FD ends it. Frames, not one
object, because the result pipe stays open. The parent copies each output out of OUT_DIR before
validating it, so nothing this process does later can change what was checked.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any

from safeload_conversion.protocol import OUTPUT_NAME
from safeload_conversion.sandbox_layers import enter_sandbox, send_result

USAGE = ("usage: python -I -B -m safeload_conversion RESULT_FD IN_FD OUT_DIR\n"
         "       python -I -B -m safeload_conversion RESULT_FD OUT_DIR --batch IN_FD [IN_FD ...]\n"
         "       python -I -B -m safeload_conversion RESULT_FD OUT_DIR --serve REQUEST_FD")


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[2] == "--serve":
        if not argv[0].isdigit() or not argv[3].isdigit() or argv[0] == argv[3]:
            print(USAGE, file=sys.stderr)
            return 2
        return _serve(int(argv[0]), argv[1], int(argv[3]))
    if len(argv) >= 4 and argv[2] == "--batch":
        if not argv[0].isdigit() or not all(a.isdigit() for a in argv[3:]):
            print(USAGE, file=sys.stderr)
            return 2
        return _batch(int(argv[0]), argv[1], [int(a) for a in argv[3:]])
    if len(argv) != 3 or not argv[0].isdigit() or not argv[1].isdigit():
        print(USAGE, file=sys.stderr)
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


def _batch(result_fd: int, out_dir: str, in_fds: list[int]) -> int:
    if len(set(in_fds)) != len(in_fds) or result_fd in in_fds:
        print(USAGE, file=sys.stderr)
        return 2
    report = enter_sandbox(result_fd, out_dir, keep_fds=tuple(in_fds))

    results: list[dict[str, Any]] = []
    for i, fd in enumerate(in_fds):
        sub = os.path.join(out_dir, str(i))
        try:
            os.makedirs(sub, exist_ok=True)
            one = _convert_one(fd, sub)
        except OSError as exc:
            one = _failed(exc)
        finally:
            try:
                os.close(fd)  # done with this input: fewer live mappings and descriptors
            except OSError:
                pass
        results.append(one)
        gc.collect()  # drop the input's mapping before the next one counts against RLIMIT_AS
    send_result(result_fd, {"ok": True, "batch": True, "results": results,
                            "layers": report.to_dict()})
    return 0


def _failed(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": {"kind": "failed", "message": f"{type(exc).__name__}: {exc}"}}


def _convert_one(fd: int, sub: str, name: str = OUTPUT_NAME) -> dict[str, Any]:
    """One input of a batch or a long-lived worker: its report, or why it failed. One input
    hitting a limit or an I/O error must not cost the others their result."""
    from safeload_conversion.convert import ConvertRefused, convert_fd

    try:
        one = convert_fd(fd, sub, name)
    except ConvertRefused as exc:
        return {"ok": False, "error": {"kind": "refused", "message": str(exc)}}
    except (OSError, MemoryError, RecursionError, ValueError, OverflowError) as exc:
        return _failed(exc)
    one["ok"] = True
    return one


def _send_frame(result_fd: int, obj: dict[str, Any]) -> None:
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:
        view = view[os.write(result_fd, view):]


def _read_index(request_fd: int) -> int | None:
    head = b""
    while len(head) < 8:
        chunk = os.read(request_fd, 8 - len(head))
        if not chunk:
            return None
        head += chunk
    return int.from_bytes(head, "little")


def _serve(result_fd: int, out_dir: str, request_fd: int) -> int:
    report = enter_sandbox(result_fd, out_dir, keep_fds=(request_fd,))
    import safeload_conversion.convert  # noqa: F401  (the converter loaded before "ready")

    layers = report.to_dict()
    _send_frame(result_fd, {"ok": True, "ready": True, "layers": layers})
    while (index := _read_index(request_fd)) is not None:
        fd = -1
        try:
            fd = os.open(os.path.join(out_dir, f"in-{index}"), os.O_RDONLY | os.O_NOFOLLOW)
            # A file beside the input, not a folder per output: an ext4 rmdir costs ~3 ms,
            # more than converting a small file.
            one = _convert_one(fd, out_dir, f"out-{index}")
        except OSError as exc:
            one = _failed(exc)
        finally:
            if fd >= 0:
                os.close(fd)
        one.update(index=index, layers=layers)
        _send_frame(result_fd, one)
        gc.collect()  # drop the input's mapping before the next one counts against RLIMIT_AS
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
