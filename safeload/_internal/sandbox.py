"""Parent side of the sandboxed conversion child.

Starts `python -I -B -m <module> <result_fd> *argv` with a scrubbed environment, no inherited fds
but the ones named, its own process group and a deadline; reads the one JSON object the child
writes to a dedicated result pipe. The child locks itself down (`safeload_conversion.
sandbox_layers.enter_sandbox`) before it touches input and refuses, exit code 3, when no isolating
layer applied unless the parent opted out. Everything the child says is untrusted: sizes are
capped, shapes validated and text escaped.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeload_conversion.budget import OPS_ENV
from safeload_conversion.sandbox_layers import (
    EXIT_LOCKDOWN_FAILED,
    EXIT_SANDBOX_UNAVAILABLE,
    ISOLATING,
    POLICY_ENV,
    LayerReport,
    Limits,
    isolating_layers,
    support_report,
)

from safeload._internal import strictjson
from safeload._internal.text import safe_text
from safeload.errors import ConversionError, ConversionTimeoutError, SandboxUnavailableError

__all__ = ["Limits", "LayerReport", "WorkerResult", "run_worker", "sandbox_support", "OPT_IN"]

OPT_IN = "unsafe_allow_unsandboxed=True (CLI: --unsafe-allow-unsandboxed-convert)"
_RESULT_CAP = 8 << 20  # the result is metadata (names, aliases, layers), never tensors
_OUTPUT_CAP = 64 << 10  # keep only the tail of the child's stdout+stderr
_TAIL_CHARS = 4000
_PATH = "/usr/local/bin:/usr/bin:/bin"
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


@dataclass(frozen=True)
class WorkerResult:
    """What a successful child reported. `result` is its JSON object, `layers` its sandbox."""

    result: dict[str, Any]
    layers: LayerReport
    returncode: int
    output: str
    elapsed: float


def worker_env(output_dir: Path, limits: Limits, *, allow_unsandboxed: bool,
               extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment: no tokens, proxies or PYTHON* from ours."""
    env = {
        "PATH": _PATH,
        "LANG": "C.UTF-8",
        "HOME": str(output_dir),
        "TMPDIR": str(output_dir),
        "OMP_NUM_THREADS": "1",  # torch's import would otherwise start a thread pool
        "MALLOC_ARENA_MAX": "2",
        POLICY_ENV: json.dumps({
            "limits": limits.to_dict(),
            "allow_unsandboxed": allow_unsandboxed,
            "parent_pid": os.getpid(),
        }),
    }
    if os.environ.get(OPS_ENV):  # a raised opcode budget holds in the child's machine too
        env[OPS_ENV] = os.environ[OPS_ENV]
    env.update(extra_env or {})
    return env


def run_worker(module: str, argv: list[str], *, pass_fds: Sequence[int], output_dir: Path,
               timeout: float, limits: Limits, allow_unsandboxed: bool = False,
               extra_env: Mapping[str, str] | None = None) -> WorkerResult:
    """Run `module` sandboxed; the child gets `<result_fd> *argv` and must answer in JSON.

    Raises `ConversionTimeoutError` (process group killed), `SandboxUnavailableError` (no
    isolating layer and no opt-in) or `ConversionError` (crash, bad or missing result).
    """
    if not _MODULE_RE.match(module):
        raise ValueError(f"not a module name: {module!r}")
    output_dir = Path(output_dir)
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-I", "-B", "-m", module, str(write_fd), *argv]
    env = worker_env(output_dir, limits, allow_unsandboxed=allow_unsandboxed, extra_env=extra_env)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd, env=env, cwd=output_dir, close_fds=True, pass_fds=(*pass_fds, write_fd),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the child holds the only write end: EOF means it is done
    try:
        raw, output, timed_out, overflow = _collect(proc, read_fd, started + timeout)
    finally:
        os.close(read_fd)
        _kill_group(proc)  # stragglers (e.g. an unsandboxed child's children) and on error
    elapsed = time.monotonic() - started
    tail = _tail(output)
    if timed_out:
        raise ConversionTimeoutError(
            f"the conversion worker did not finish within {timeout:g} s and was killed",
            hint="very large checkpoints need a longer timeout", returncode=proc.returncode,
            stderr=tail)
    if overflow:
        raise ConversionError(f"the conversion worker's result exceeded {_RESULT_CAP} bytes",
                              returncode=proc.returncode, stderr=tail)
    return _interpret(proc.returncode, raw, tail, elapsed, allow_unsandboxed=allow_unsandboxed)


def _collect(proc: subprocess.Popen[bytes], result_fd: int,
             deadline: float) -> tuple[bytes, bytes, bool, bool]:
    """Read the result and output pipes together until EOF and exit, or the deadline.

    Returns (result, output, timed_out, overflow). The child is left unreaped so that its
    process group id cannot be reused before `_kill_group` runs.
    """
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    result, output = bytearray(), bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(result_fd, selectors.EVENT_READ)
        sel.register(out_fd, selectors.EVENT_READ)
        exited_at: float | None = None
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                return bytes(result), bytes(output), True, False
            if exited_at is None and _exited(proc.pid):
                exited_at = now
            if exited_at is not None and now - exited_at > 1.0:
                break  # exited, but something it left behind holds a pipe open
            for key, _ in sel.select(min(deadline - now, 0.25)):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                elif fd == result_fd:
                    result += chunk
                    if len(result) > _RESULT_CAP:
                        return bytes(result), bytes(output), False, True
                else:
                    output += chunk
                    del output[:-_OUTPUT_CAP]
    delay = 0.001
    while not _exited(proc.pid):  # pipes closed; the exit follows within microseconds
        if time.monotonic() >= deadline:
            return bytes(result), bytes(output), True, False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return bytes(result), bytes(output), False, False


def _exited(pid: int) -> bool:
    """Has the child exited? WNOWAIT leaves it a zombie, so its pid and group stay ours."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group (start_new_session: group id == child pid), then reap."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _tail(output: bytes) -> str:
    text = output.decode("utf-8", "replace")[-_TAIL_CHARS:]
    return safe_text(text, keep_newlines=True, limit=_TAIL_CHARS)


def _parse(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        obj = strictjson.loads(raw)  # the child's result is untrusted bytes
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    return {str(key): value for key, value in obj.items()}


def _error_message(obj: dict[str, Any] | None) -> tuple[str, str]:
    error = obj.get("error") if obj else None
    if not isinstance(error, dict):
        return "", ""
    return safe_text(error.get("kind", "")), safe_text(error.get("message", ""))


def _describe_exit(returncode: int) -> str:
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


def _unavailable(report: LayerReport | None, detail: str, returncode: int | None,
                 tail: str) -> SandboxUnavailableError:
    if report is not None:
        detail = "; ".join(f"{name}: {safe_text(report.missing.get(name, 'not reported'))}"
                           for name in sorted(ISOLATING))
    return SandboxUnavailableError(
        f"no isolating sandbox layer ({', '.join(sorted(ISOLATING))}) could be applied, so the "
        f"pickle was not converted. Missing: {detail}",
        hint=("enable unprivileged user namespaces, Landlock or seccomp for this process, or "
              f"opt in with {OPT_IN}; weights_only=True still applies without a sandbox"),
        returncode=returncode, stderr=tail)


def _interpret(returncode: int, raw: bytes, tail: str, elapsed: float, *,
               allow_unsandboxed: bool) -> WorkerResult:
    obj = _parse(raw)
    kind, message = _error_message(obj)
    report: LayerReport | None = None
    if obj is not None and "layers" in obj:
        try:
            report = LayerReport.from_dict(obj["layers"])
        except ValueError:
            report = None
    if returncode == EXIT_SANDBOX_UNAVAILABLE and kind == "sandbox-unavailable":
        raise _unavailable(report, message, returncode, tail)
    if returncode != 0:
        what = "could not set up its sandbox" if (
            returncode == EXIT_LOCKDOWN_FAILED and kind == "lockdown-failed") else "failed"
        hint = ""
        if -returncode in (getattr(signal, "SIGXCPU", -1), signal.SIGKILL):
            hint = "it may have hit its CPU or memory limit"
        raise ConversionError(
            f"the conversion worker {what} ({_describe_exit(returncode)})"
            + (f": {message}" if message else ""),
            hint=hint, returncode=returncode, stderr=tail)
    if obj is None:
        raise ConversionError("the conversion worker exited without a valid JSON result",
                              returncode=returncode, stderr=tail)
    if obj.get("ok") is not True:
        raise ConversionError(f"the conversion worker reported failure: {message or kind}",
                              returncode=returncode, stderr=tail)
    if report is None:
        raise ConversionError("the conversion worker's result has no valid sandbox layer report",
                              returncode=returncode, stderr=tail)
    if not isolating_layers(report) and not allow_unsandboxed:
        # The child should have refused itself; never accept its output if it did not.
        raise _unavailable(report, "", returncode, tail)
    return WorkerResult(result=obj, layers=report, returncode=returncode, output=tail,
                        elapsed=elapsed)


def sandbox_support() -> dict[str, Any]:
    """What a conversion child would likely get on this machine, without starting one."""
    info: dict[str, Any] = dict(support_report())
    info["opt_in"] = OPT_IN
    info["isolating_layers"] = sorted(ISOLATING)
    return info
