"""A long-lived sandboxed converter for small pickles: one per loading process (issue 11).

Starting a locked-down child costs 50-200 ms, which a DataLoader over small `.pt` files paid
per file. This worker is started on first use, locks itself down once (the same layers as a
one-shot child, checked the same way) and converts up to `MAX_INPUTS` inputs of at most
`SMALL_INPUT` bytes, one at a time, before it is replaced. Any trouble (a timeout, a crash, a
frame that does not parse, a refusal or failure report) discards it, and the caller falls back
to a one-shot child, which reports the error exactly as it always did.

Isolation between inputs is what one process allows (each input is closed and its objects
collected before the next). What makes a poisoned worker harmless is the parent: it copies each
output out of the worker's folder before validating it against the source it holds, so nothing
the worker does later can change the bytes that were checked. `SAFELOAD_CONVERT_WORKER=0`
turns the worker off (one child per file, as before).
"""

from __future__ import annotations

import atexit
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from safeload_conversion.protocol import OUTPUT_NAME
from safeload_conversion.sandbox_layers import LayerReport, Limits, isolating_layers

from safeload._internal import strictjson
from safeload._internal.sandbox import WorkerResult, worker_env

SMALL_INPUT = 16 << 20
MAX_INPUTS = 256
READY_SECONDS = 30.0
_FRAME_CAP = 8 << 20
WORKER_MODULE = "safeload_conversion"
ENV_SWITCH = "SAFELOAD_CONVERT_WORKER"


class WorkerUnusable(Exception):
    """The worker cannot answer for this input: fall back to a one-shot child."""


class _Worker:
    def __init__(self, store: Path, allow_unsandboxed: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=".safeload-worker-", dir=store))
        req_r, self.req_w = os.pipe()
        self.res_r, res_w = os.pipe()
        cmd = [sys.executable, "-I", "-B", "-m", WORKER_MODULE, str(res_w), str(self.dir),
               "--serve", str(req_r)]
        env = worker_env(self.dir, Limits.for_input(SMALL_INPUT),
                         allow_unsandboxed=allow_unsandboxed,
                         extra_env={"SAFELOAD_CONVERT_FSYNC": "0"})  # the parent copies it
        self.proc: subprocess.Popen[bytes] | None = None
        self.count = 0
        self.done: Path | None = None  # the last output, not yet removed
        self.allow_unsandboxed = allow_unsandboxed
        try:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=self.dir, close_fds=True, pass_fds=(req_r, res_w),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(req_r)
            os.close(res_w)
        try:
            ready = self._frame(time.monotonic() + READY_SECONDS)
            self.layers = LayerReport.from_dict(ready.get("layers"))
        except (ValueError, TypeError) as exc:
            self.close()
            raise WorkerUnusable(f"no valid ready frame: {exc}") from exc
        except WorkerUnusable:
            self.close()
            raise
        if ready.get("ready") is not True or (not isolating_layers(self.layers)
                                              and not allow_unsandboxed):
            self.close()
            raise WorkerUnusable("the worker is not locked down")

    def _read(self, n: int, deadline: float) -> bytes:
        out = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(self.res_r, selectors.EVENT_READ)
            while len(out) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise WorkerUnusable("the worker did not answer in time")
                chunk = os.read(self.res_r, n - len(out))
                if not chunk:
                    raise WorkerUnusable("the worker exited")
                out += chunk
        return bytes(out)

    def _frame(self, deadline: float) -> dict[str, Any]:
        size = int.from_bytes(self._read(8, deadline), "little")
        if size > _FRAME_CAP:
            raise WorkerUnusable("the worker's frame is too large")
        try:
            obj = strictjson.loads(self._read(size, deadline))  # untrusted bytes
        except (ValueError, RecursionError) as exc:
            raise WorkerUnusable("the worker's frame is not JSON") from exc
        if not isinstance(obj, dict):
            raise WorkerUnusable("the worker's frame is not an object")
        return {str(k): v for k, v in obj.items()}

    def convert(self, fd: int, size: int, work: Path, timeout: float) -> dict[str, Any]:
        """Convert the `size` bytes behind `fd`; the output is copied to work/OUTPUT_NAME."""
        index = self.count
        self.count += 1
        src = self.dir / f"in-{index}"
        out = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            offset = 0
            while offset < size:  # in-kernel copy; the held descriptor's position is untouched
                sent = os.sendfile(out, fd, offset, size - offset)
                if sent == 0:
                    raise WorkerUnusable("the input ended early")
                offset += sent
        finally:
            os.close(out)
        try:
            os.write(self.req_w, index.to_bytes(8, "little"))
            if self.done is not None:  # the last output, removed while this one is converted
                _remove(self.done)
                self.done = None
            obj = self._frame(time.monotonic() + timeout)
        except OSError as exc:  # EPIPE: the worker is gone
            raise WorkerUnusable(f"the worker is gone: {exc}") from exc
        finally:
            src.unlink(missing_ok=True)
        produced = self.dir / f"out-{index}"
        if obj.get("index") != index or obj.get("ok") is not True:
            _remove(produced)
            raise WorkerUnusable("the worker refused or failed (retried in a fresh child)")
        # A new inode the worker cannot reach: what is validated is what is published. The
        # worker's copy goes at the next input (unlinking it here cost more than converting).
        self.done = produced
        _copy_produced(produced, work / OUTPUT_NAME)
        return obj

    def close(self) -> None:
        for fd in (getattr(self, "req_w", -1), getattr(self, "res_r", -1)):
            try:
                os.close(fd)
            except OSError:
                pass
        self.req_w = self.res_r = -1
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


_LOCK = threading.Lock()
_worker: _Worker | None = None
_exit_registered = False


def _remove(output: Path) -> None:
    """One output of the worker and its partial file (a folder, should a worker make one)."""
    for path in (output, output.with_name(output.name + ".partial")):
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip() not in {"0", "false", "no", "off"}


def try_convert(fd: int, size: int, work: Path, store: Path, *, timeout: float,
                allow_unsandboxed: bool) -> WorkerResult | None:
    """Convert through the process's worker when the input is small and the worker free.

    Returns None when the caller should run a one-shot child instead (large input, worker
    busy in another thread, disabled, or any trouble, after which the worker is replaced).
    """
    global _worker, _exit_registered
    if size > SMALL_INPUT or not enabled() or not _LOCK.acquire(blocking=False):
        return None
    started = time.monotonic()
    try:
        if _worker is not None and (_worker.count >= MAX_INPUTS
                                    or _worker.allow_unsandboxed != allow_unsandboxed):
            _worker.close()
            _worker = None
        if _worker is None:
            _worker = _Worker(store, allow_unsandboxed)
            if not _exit_registered:
                atexit.register(shutdown)
                mp_util = sys.modules.get("multiprocessing.util")
                if mp_util is not None:  # a DataLoader worker leaves through os._exit
                    mp_util.Finalize(None, shutdown, exitpriority=50)
                _exit_registered = True
        obj = _worker.convert(fd, size, work, min(timeout, 60.0))
        return WorkerResult(result=obj, layers=_worker.layers, returncode=0, output="",
                            elapsed=time.monotonic() - started)
    except (WorkerUnusable, OSError):
        if _worker is not None:
            _worker.close()
            _worker = None
        return None
    finally:
        _LOCK.release()


def shutdown() -> None:
    """Stop the worker (at exit; tests). Never raises."""
    global _worker
    with _LOCK:
        if _worker is not None:
            try:
                _worker.close()
            except OSError:
                pass
            _worker = None


def _after_fork_child() -> None:
    # The worker belongs to the parent: close our copies of its pipes, never kill it.
    global _worker, _LOCK, _exit_registered
    if _worker is not None:
        for fd in (_worker.req_w, _worker.res_r):
            try:
                os.close(fd)
            except OSError:
                pass
    _worker, _LOCK, _exit_registered = None, threading.Lock(), False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def _copy_produced(src: Path, dst: Path) -> None:
    """The worker's output into a new file of the parent's: only a regular file with one name,
    opened without following a link and without waiting on a lease (review W: a symlink to a
    file the worker kept was copied as the link; a lease held every open 45 s)."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise WorkerUnusable(f"the worker's output cannot be opened as a file: {exc}") from exc
    with os.fdopen(fd, "rb") as fin:
        st = os.fstat(fin.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise WorkerUnusable("the worker's output is not one regular file")
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o600)
        with os.fdopen(out, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
