"""TEST ONLY: attack the sandbox from inside, the way code execution in the worker would.

Run as ``python -I -m safeload_conversion._probe <result_fd> <write_dir> <probe-spec-json>``,
normally through `safeload._internal.sandbox.run_worker`. The real worker never imports this
module and it refuses to be imported: it runs only as its own ``__main__``. It locks down with
`enter_sandbox` exactly as the worker does, then tries each probe named in the spec and reports
"denied: <ERRNO>" or "ALLOWED" (in-sandbox operations that must work report "ok").

Spec keys (all optional): thread_before_lockdown, marker, input_path, inside, thread,
stray_fds, secret_path, outside_path, tcp_port, unix_path, fork, kill_pid, attrs, env,
crash, pad, pid_file, fork_sleeper, sleep, exec, other_pid.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

if __name__ != "__main__":
    raise ImportError("safeload_conversion._probe is a test-only entry point, not a library")

from safeload_conversion.sandbox_layers import enter_sandbox, send_result  # noqa: E402


def _outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except OSError as exc:
        code = exc.errno or 0
        return f"denied: {errno.errorcode.get(code, str(code))}"
    return "ALLOWED"


def _must_work(action: Callable[[], object]) -> str:
    try:
        action()
    except Exception as exc:  # report, do not hide: the test asserts "ok"
        return f"failed: {type(exc).__name__}: {exc}"
    return "ok"


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _inside(write_dir: str) -> None:
    part, final = os.path.join(write_dir, "probe.partial"), os.path.join(write_dir, "probe.out")
    _write(part, b"written inside the sandbox\n")
    os.replace(part, final)
    if _read(final) != b"written inside the sandbox\n":
        raise OSError(errno.EIO, "read back differs")


def _thread() -> None:
    box: list[int] = []
    worker = threading.Thread(target=lambda: box.append(42))
    worker.start()
    worker.join()
    if box != [42]:
        raise RuntimeError("thread did not run")


def _connect(family: int, address: Any) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(address)


def _fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _sleeper() -> int | None:
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    return pid


def _attrs() -> dict[str, Any]:
    """The kernel's own view of the non-isolating layers, to check the report against."""
    libc = ctypes.CDLL(None, use_errno=True)
    pdeathsig = ctypes.c_int(-1)
    libc.prctl(2, ctypes.byref(pdeathsig), 0, 0, 0)  # PR_GET_PDEATHSIG
    limits = {name: list(resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}")))
              for name in ("as", "cpu", "fsize", "nofile", "core")}
    return {
        "pdeathsig": pdeathsig.value,
        "dumpable": libc.prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
        "no_new_privs": libc.prctl(39, 0, 0, 0, 0),  # PR_GET_NO_NEW_PRIVS
        "seccomp_mode": libc.prctl(21, 0, 0, 0, 0),  # PR_GET_SECCOMP: 2 = filter
        "uid": os.getuid(),
        "rlimits": limits,
    }


def _prctl_pdeathsig_clear() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, 0, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _lease(write_dir: str) -> None:
    import fcntl

    path = os.path.join(write_dir, "leased")
    _write(path, b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, 1024, fcntl.F_RDLCK)  # F_SETLEASE
    finally:
        os.close(fd)


def _other_process(pid: int, result_fd: int, write_dir: str) -> dict[str, str]:
    """Syscalls that act on another process of the same uid (review W): each is harmless
    here if allowed (it sets what is already set), and must be denied."""
    import fcntl

    prio = os.getpriority(os.PRIO_PROCESS, pid)
    cpus = os.sched_getaffinity(pid)
    return {
        "prlimit_other": _outcome(lambda: resource.prlimit(pid, resource.RLIMIT_CORE)),
        "setpriority_other": _outcome(lambda: os.setpriority(os.PRIO_PROCESS, pid, prio)),
        "sched_setaffinity_other": _outcome(lambda: os.sched_setaffinity(pid, cpus)),
        "fcntl_setown": _outcome(lambda: fcntl.fcntl(result_fd, fcntl.F_SETOWN, pid)),
        "fcntl_setsig": _outcome(lambda: fcntl.fcntl(result_fd, 10, 0)),  # F_SETSIG
        "fcntl_setlease": _outcome(lambda: _lease(write_dir)),
        "pdeathsig_clear": _outcome(_prctl_pdeathsig_clear),
        "prlimit_self": _must_work(lambda: resource.prlimit(0, resource.RLIMIT_CORE, (0, 0))),
        "fcntl_getfl": _must_work(lambda: fcntl.fcntl(result_fd, fcntl.F_GETFL)),
    }


def main(argv: list[str]) -> int:
    result_fd, write_dir, spec = int(argv[1]), argv[2], json.loads(argv[3])
    if spec.get("thread_before_lockdown"):  # proves lock_down fails closed
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
    extra = [spec["input_path"]] if "input_path" in spec else []
    report = enter_sandbox(result_fd, write_dir, extra_read_paths=extra)
    if spec.get("marker"):  # the first thing after the prologue: absent means it refused
        _write(os.path.join(write_dir, "started"), b"")

    out: dict[str, Any] = {"ok": True, "layers": report.to_dict(), "probes": {}}
    probes: dict[str, Any] = out["probes"]
    # First, before anything else opens fds: inherited descriptors must be gone.
    for fd in spec.get("stray_fds", []):
        probes[f"stray_fd_{fd}"] = _outcome(partial(os.read, int(fd), 16))
    if "input_path" in spec:
        probes["input_read"] = _must_work(lambda: _read(spec["input_path"]))
    if spec.get("inside"):
        probes["inside_write"] = _must_work(lambda: _inside(write_dir))
    if spec.get("thread"):
        probes["thread"] = _must_work(_thread)
    if "secret_path" in spec:
        probes["secret_read"] = _outcome(lambda: _read(spec["secret_path"]))
    if "outside_path" in spec:
        probes["outside_write"] = _outcome(lambda: _write(spec["outside_path"], b"escaped\n"))
    if "tcp_port" in spec:
        probes["tcp_connect"] = _outcome(
            lambda: _connect(socket.AF_INET, ("127.0.0.1", spec["tcp_port"])))
    if "unix_path" in spec:
        probes["unix_connect"] = _outcome(lambda: _connect(socket.AF_UNIX, spec["unix_path"]))
    if spec.get("fork"):
        probes["fork"] = _outcome(_fork)
    if "kill_pid" in spec:
        probes["kill_parent"] = _outcome(lambda: os.kill(spec["kill_pid"], 0))
    if "other_pid" in spec:
        probes.update(_other_process(int(spec["other_pid"]), result_fd, write_dir))
    if spec.get("attrs"):
        out["attrs"] = _attrs()
    if spec.get("env"):
        out["env"] = dict(os.environ)
    if "crash" in spec:
        raise RuntimeError(spec["crash"])
    if "pad" in spec:
        out["pad"] = "x" * int(spec["pad"])
    if "pid_file" in spec:
        grandchild = _sleeper() if spec.get("fork_sleeper") else None
        pids = {"pid": os.getpid(), "grandchild": grandchild}
        _write(spec["pid_file"], json.dumps(pids).encode())
    if "sleep" in spec:
        time.sleep(float(spec["sleep"]))
    if spec.get("exec"):
        # Last: a successful exec replaces this process, so the exec'd shell delivers the
        # result (with "ALLOWED"); a denied exec returns here and we report the errno.
        # The shell writes to its stdout (dash cannot redirect to fds above 9), so point
        # stdout at the result pipe for the attempt and restore it if the exec is denied.
        probes["exec"] = "ALLOWED"
        payload = json.dumps(out)
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(result_fd, 1)
        try:
            os.execv("/bin/sh", ["/bin/sh", "-c", 'printf "%s" "$1"', "sh", payload])
        except OSError as exc:
            code = exc.errno or 0
            probes["exec"] = f"denied: {errno.errorcode.get(code, str(code))}"
        os.dup2(saved, 1)
        os.close(saved)
    send_result(result_fd, out)
    return 0


sys.exit(main(sys.argv))
