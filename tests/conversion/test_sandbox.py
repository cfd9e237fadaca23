"""The sandbox proves itself: a probe child tries, from inside, what code execution in the
conversion worker would try, and its layer report must agree with what the probes see.

The unsandboxed run (every layer disabled, opt-in given) shows each probe CAN succeed, so the
"denied" results elsewhere are real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from safeload_conversion import sandbox_layers
from safeload_conversion.sandbox_layers import (
    DISABLE_ENV,
    LAYERS,
    LayerReport,
    Limits,
    isolating_layers,
)

from safeload._internal import sandbox as sandbox_mod
from safeload._internal.sandbox import WorkerResult, run_worker, sandbox_support, worker_env
from safeload.errors import ConversionError, ConversionTimeoutError, SandboxUnavailableError

PROBE = "safeload_conversion._probe"
NOBODY = 65534
DISABLEABLE = [name for name in LAYERS if name != "single-thread"]
NAMESPACES = {"userns", "netns", "mountns"}

_SUPPORT = sandbox_support() if sys.platform.startswith("linux") else {}
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the sandbox layers are Linux-only")
needs_layers = pytest.mark.skipif(
    not (_SUPPORT.get("landlock", {}).get("abi") and _SUPPORT.get("seccomp", {}).get("available")),
    reason="needs Landlock and seccomp on this kernel to assert exact denials")

# What each probe must report with Landlock and seccomp on (namespaces or not).
DENIED = {
    "secret_read": "denied: EACCES",  # Landlock: not in the read allow-list
    "outside_write": "denied: EACCES",  # Landlock: only write_dir is writable
    "tcp_connect": "denied: EPERM",  # seccomp: socket()
    "unix_connect": "denied: EPERM",  # seccomp: socket() (netns/Landlock would not stop this)
    "fork": "denied: EPERM",  # seccomp: clone without CLONE_THREAD
    "kill_parent": "denied: EPERM",  # seccomp (and Landlock signal scoping on ABI >= 6)
    "exec": "denied: EPERM",  # seccomp: execve
    "inside_write": "ok",
    "thread": "ok",  # clone(CLONE_THREAD) stays allowed; torch needs threads
    "input_read": "ok",  # extra_read_paths
}


@dataclass
class Targets:
    """What the probe attacks: live listeners, a secret, open fds, a world-writable dir."""

    base: Path
    out: Path
    secret: Path
    input: Path
    outside: Path
    unix_path: str
    tcp: socket.socket
    unix: socket.socket
    stray_fd: int  # opened here, never passed (close_fds must drop it)
    passed_fd: int  # passed to the child but not kept (lock_down must close it)

    def spec(self, **overrides: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "marker": True, "inside": True, "thread": True, "fork": True, "exec": True,
            "input_path": str(self.input), "secret_path": str(self.secret),
            "outside_path": str(self.outside), "tcp_port": self.tcp.getsockname()[1],
            "unix_path": self.unix_path, "kill_pid": os.getpid(),
            "stray_fds": [self.stray_fd, self.passed_fd],
        }
        spec.update(overrides)
        return spec

    def stray_keys(self) -> list[str]:
        return [f"stray_fd_{self.stray_fd}", f"stray_fd_{self.passed_fd}"]


@pytest.fixture
def targets() -> Iterator[Targets]:
    # Short, world-traversable base: AF_UNIX paths are limited to 108 bytes, and the uid 65534
    # run must reach it (pytest's tmp_path is 0700).
    base = Path(tempfile.mkdtemp(prefix="slp-"))
    base.chmod(0o755)
    out = base / "out"
    out.mkdir()
    outside_dir = base / "outside"
    outside_dir.mkdir()
    outside_dir.chmod(0o1777)  # so only Landlock, not file modes, can deny the write
    secret = base / "token"
    secret.write_text("hf_SECRETSECRET\n")
    secret.chmod(0o644)  # world-readable: a denial must come from Landlock
    inp = base / "input.bin"
    inp.write_bytes(b"checkpoint bytes")
    inp.chmod(0o644)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    unix_path = str(base / "s.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(unix_path)
    os.chmod(unix_path, 0o777)
    unix.listen(8)
    stray_fd = os.open(secret, os.O_RDONLY)
    passed_fd = os.open(secret, os.O_RDONLY)
    try:
        yield Targets(base, out, secret, inp, outside_dir / "escaped", unix_path, tcp, unix,
                      stray_fd, passed_fd)
    finally:
        for fd in (stray_fd, passed_fd):
            os.close(fd)
        tcp.close()
        unix.close()
        shutil.rmtree(base, ignore_errors=True)


LIMITS = Limits.for_input(1 << 20)


def run_probe(t: Targets, spec: dict[str, Any], *, disable: list[str] | None = None,
              allow: bool = False, timeout: float = 20.0) -> WorkerResult:
    extra_env = {DISABLE_ENV: ",".join(disable)} if disable else None
    return run_worker(PROBE, [str(t.out), json.dumps(spec)], pass_fds=[t.passed_fd],
                      output_dir=t.out, timeout=timeout, limits=LIMITS,
                      allow_unsandboxed=allow, extra_env=extra_env)


def assert_attrs_locked(attrs: dict[str, Any]) -> None:
    """The kernel agrees with the report on the non-isolating layers."""
    assert attrs["pdeathsig"] == signal.SIGKILL
    assert attrs["dumpable"] == 0
    assert attrs["no_new_privs"] == 1
    assert attrs["seccomp_mode"] == 2
    assert attrs["rlimits"] == {
        "as": [LIMITS.address_space] * 2,
        "cpu": [LIMITS.cpu_seconds, LIMITS.cpu_seconds + 2],
        "fsize": [LIMITS.file_size] * 2,
        "nofile": [LIMITS.open_files] * 2,
        "core": [0, 0],
    }


def accepted(listener: socket.socket) -> bool:
    """Did anything connect to this listener?"""
    listener.settimeout(0.2)
    try:
        conn, _ = listener.accept()
    except (TimeoutError, BlockingIOError):
        return False
    conn.close()
    return True


def assert_report_is_a_partition(report: LayerReport) -> None:
    assert set(report.applied).isdisjoint(report.missing)
    assert set(report.applied) | set(report.missing) == set(LAYERS)
    assert all(reason for reason in report.missing.values())


def assert_all_denied(t: Targets, probes: dict[str, str]) -> None:
    expected = dict(DENIED, **dict.fromkeys(t.stray_keys(), "denied: EBADF"))
    assert probes == expected
    assert (t.out / "probe.out").read_bytes() == b"written inside the sandbox\n"
    assert not t.outside.exists()
    assert not accepted(t.tcp) and not accepted(t.unix)


# ---------------------------------------------------------------------------------------------
# Children

@linux_only
@needs_layers
def test_all_layers_deny_every_probe(targets: Targets) -> None:
    res = run_probe(targets, targets.spec(attrs=True))
    report = res.layers
    assert_report_is_a_partition(report)
    assert_attrs_locked(res.result["attrs"])
    assert {"single-thread", "pdeathsig", "no-dumpable", "rlimits", "no-new-privs", "landlock",
            "seccomp"} <= set(report.applied)
    if _SUPPORT["userns"]["likely"] or os.geteuid() == 0:
        assert set(report.applied) >= NAMESPACES, report.missing
    assert isolating_layers(report)
    assert report.details["landlock"].startswith("ABI ")
    assert_all_denied(targets, res.result["probes"])


@linux_only
@needs_layers
def test_without_namespaces_every_probe_is_still_denied(targets: Targets) -> None:
    res = run_probe(targets, targets.spec(), disable=sorted(NAMESPACES))
    report = res.layers
    assert_report_is_a_partition(report)
    assert report.missing == dict.fromkeys(NAMESPACES, f"disabled by {DISABLE_ENV}")
    assert_all_denied(targets, res.result["probes"])


def _python_usable_by(uid: int) -> str | None:
    """An interpreter uid can execute (this venv's may live under a 0700 /root)."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if not candidate:
            continue
        try:
            probe = subprocess.run([candidate, "-I", "-c", "pass"], user=uid, group=uid,
                                   extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin"},
                                   capture_output=True, timeout=30, check=False)
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


@linux_only
@needs_layers
def test_as_uid_65534_the_layers_apply_unprivileged(targets: Targets) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to uid 65534 (nobody)")
    python = _python_usable_by(NOBODY)
    if python is None:
        pytest.skip("no Python interpreter that uid 65534 can execute")
    # The layers and the probe are stdlib-only: give nobody a readable copy of the two modules.
    lib = targets.base / "lib"
    pkg = lib / "safeload_conversion"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in ("sandbox_layers.py", "_probe.py"):
        shutil.copy(Path(sandbox_layers.__file__).with_name(name), pkg / name)
    for path in (lib, pkg, *pkg.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    os.chown(targets.out, NOBODY, NOBODY)

    read_fd, write_fd = os.pipe()
    bootstrap = (f"import sys, runpy; sys.path.insert(0, {str(lib)!r}); "
                 f"runpy.run_module({PROBE!r}, run_name='__main__', alter_sys=True)")
    env = worker_env(targets.out, Limits.for_input(1 << 20), allow_unsandboxed=False)
    try:
        proc = subprocess.run(
            [python, "-I", "-B", "-c", bootstrap, str(write_fd), str(targets.out),
             json.dumps(targets.spec(attrs=True))],
            env=env, cwd=targets.out, pass_fds=(write_fd, targets.passed_fd),
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False,
            user=NOBODY, group=NOBODY, extra_groups=[], start_new_session=True)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        raw = fh.read()
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(raw)
    report = LayerReport.from_dict(result["layers"])
    print(f"\nuid 65534 ({python}): applied={report.applied} missing={report.missing}")
    assert_report_is_a_partition(report)
    assert_attrs_locked(result["attrs"])
    if "userns" in report.applied:
        assert result["attrs"]["uid"] == 0  # mapped to root inside its own user namespace

    # Unprivileged, seccomp and Landlock need no-new-privs; both must still apply.
    assert {"single-thread", "no-new-privs", "rlimits", "landlock", "seccomp"} <= set(
        report.applied)
    if _SUPPORT["userns"]["likely"]:
        assert set(report.applied) >= NAMESPACES, report.missing
    else:  # e.g. Ubuntu 24.04: the reason must be recorded
        assert NAMESPACES & set(report.missing)
    assert_all_denied(targets, result["probes"])


def _alone_expectations() -> dict[str, dict[str, str]]:
    abi = _SUPPORT.get("landlock", {}).get("abi") or 0
    landlock = {
        "secret_read": "denied: EACCES", "outside_write": "denied: EACCES",
        "exec": "denied: EACCES",  # no EXECUTE right anywhere
        "unix_connect": "ALLOWED",  # pathname sockets are not Landlock's (hence seccomp)
        "fork": "ALLOWED",
        "tcp_connect": "denied: EACCES" if abi >= 4 else "ALLOWED",
    }
    if abi >= 6:
        landlock["kill_parent"] = "denied: EPERM"  # signal scoping
    return {
        "netns": {"tcp_connect": "denied: ENETUNREACH", "unix_connect": "ALLOWED",
                  "secret_read": "ALLOWED", "outside_write": "ALLOWED", "fork": "ALLOWED",
                  "exec": "ALLOWED"},
        "landlock": landlock,
        "seccomp": {"tcp_connect": "denied: EPERM", "unix_connect": "denied: EPERM",
                    "fork": "denied: EPERM", "exec": "denied: EPERM",
                    "kill_parent": "denied: EPERM", "secret_read": "ALLOWED",
                    "outside_write": "ALLOWED"},
    }


# Each isolating layer with just what it needs: userns gives an unprivileged netns its rights,
# no-new-privs is what lets an unprivileged process install Landlock and seccomp.
_ALONE = {"netns": {"userns", "netns"}, "landlock": {"no-new-privs", "landlock"},
          "seccomp": {"no-new-privs", "seccomp"}}


@linux_only
@needs_layers
@pytest.mark.parametrize("layer", sorted(_ALONE))
def test_each_isolating_layer_alone_denies_what_it_claims(targets: Targets, layer: str) -> None:
    if layer == "netns" and not (_SUPPORT["userns"]["likely"] or os.geteuid() == 0):
        pytest.skip(f"no network namespace here: {_SUPPORT['userns']['reason']}")
    keep = _ALONE[layer]
    res = run_probe(targets, targets.spec(), disable=[n for n in DISABLEABLE if n not in keep])
    assert set(res.layers.applied) == {"single-thread"} | keep
    probes = res.result["probes"]
    expected = _alone_expectations()[layer]
    assert {name: probes[name] for name in expected} == expected
    assert probes["inside_write"] == probes["thread"] == probes["input_read"] == "ok"


OTHER_PROCESS = {
    "prlimit_other": "denied: EPERM", "setpriority_other": "denied: EPERM",
    "sched_setaffinity_other": "denied: EPERM", "fcntl_setown": "denied: EPERM",
    "fcntl_setsig": "denied: EPERM", "fcntl_setlease": "denied: EPERM",
    "pdeathsig_clear": "denied: EPERM", "prlimit_self": "ok", "fcntl_getfl": "ok",
}


@linux_only
@needs_layers
@pytest.mark.parametrize("disable", [[], ["landlock"]], ids=["all-layers", "seccomp-only"])
def test_no_other_process_is_reached_through_limits_priorities_or_fcntl(
        targets: Targets, disable: list[str]) -> None:
    # review W: prlimit(parent, RLIMIT_CPU=1) had the kernel kill the parent; F_SETOWN plus
    # F_SETSIG sent it SIGKILL where Landlock has no signal scope (before Linux 6.12);
    # F_SETLEASE stalled every open of the output 45 s. seccomp alone must deny them.
    res = run_probe(targets, {"other_pid": os.getpid()}, disable=disable)
    probes = res.result["probes"]
    assert {k: probes[k] for k in OTHER_PROCESS} == OTHER_PROCESS


@linux_only
def test_control_without_seccomp_the_other_process_probes_succeed(targets: Targets) -> None:
    res = run_probe(targets, {"other_pid": os.getpid()}, disable=DISABLEABLE, allow=True)
    probes = res.result["probes"]
    assert probes["prlimit_other"] == probes["setpriority_other"] == "ALLOWED"
    assert probes["fcntl_setown"] == probes["pdeathsig_clear"] == "ALLOWED"


@linux_only
@pytest.mark.parametrize("pdeathsig", [True, False], ids=["pdeathsig", "no-pdeathsig"])
def test_parent_death_kills_the_child(targets: Targets, pdeathsig: bool) -> None:
    """The child is in its own session, so only PR_SET_PDEATHSIG ties it to its parent."""
    pid_file = targets.out / "pids.json"
    spec = json.dumps({"pid_file": str(pid_file), "sleep": 60})
    extra_env = None if pdeathsig else {DISABLE_ENV: "pdeathsig"}
    launcher_code = textwrap.dedent(f"""
        from pathlib import Path
        from safeload._internal.sandbox import Limits, run_worker
        out = Path({str(targets.out)!r})
        run_worker({PROBE!r}, [str(out), {spec!r}], pass_fds=(), output_dir=out, timeout=60,
                   limits=Limits.for_input(0), extra_env={extra_env!r})
    """)
    launcher = subprocess.Popen([sys.executable, "-c", launcher_code],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid: int | None = None
    try:
        deadline = time.monotonic() + 15
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and launcher.poll() is None
            time.sleep(0.02)
        pid = int(json.loads(pid_file.read_text())["pid"])
        assert _alive(pid)
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + (3 if pdeathsig else 0.5)
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _alive(pid) is not pdeathsig
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


@linux_only
def test_no_isolating_layer_means_the_child_refuses(targets: Targets) -> None:
    with pytest.raises(SandboxUnavailableError) as info:
        run_probe(targets, targets.spec(), disable=["netns", "landlock", "seccomp"])
    err = info.value
    assert err.returncode == sandbox_layers.EXIT_SANDBOX_UNAVAILABLE
    message = err.diagnostics()
    for name in ("netns", "landlock", "seccomp"):
        assert f"{name}: disabled by {DISABLE_ENV}" in message
    assert "allow_unsandboxed=True" in message and "--unsafe-allow-unsandboxed-convert" in message
    assert not (targets.out / "started").exists()  # refused before reaching the probes/input


@linux_only
def test_unsandboxed_opt_in_reports_honestly_and_the_probes_can_succeed(
        targets: Targets) -> None:
    res = run_probe(targets, targets.spec(attrs=True), disable=DISABLEABLE, allow=True)
    report = res.layers
    attrs = res.result["attrs"]
    assert (attrs["pdeathsig"], attrs["dumpable"], attrs["no_new_privs"],
            attrs["seccomp_mode"]) == (0, 1, 0, 0)
    assert attrs["rlimits"]["as"][0] != LIMITS.address_space
    assert report.applied == ["single-thread"]
    assert report.missing == dict.fromkeys(DISABLEABLE, f"disabled by {DISABLE_ENV}")
    assert not isolating_layers(report)
    probes = res.result["probes"]
    for name in ("secret_read", "outside_write", "tcp_connect", "unix_connect", "fork",
                 "kill_parent", "exec"):
        assert probes[name] == "ALLOWED", name
    # fd hygiene is not a layer: inherited descriptors are closed even here.
    assert [probes[key] for key in targets.stray_keys()] == ["denied: EBADF"] * 2
    assert targets.outside.read_text() == "escaped\n"
    assert accepted(targets.tcp) and accepted(targets.unix)


@linux_only
@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "unsandboxed"])
def test_timeout_kills_the_whole_process_group(targets: Targets, sandboxed: bool) -> None:
    pid_file = targets.out / "pids.json"
    spec = {"pid_file": str(pid_file), "fork_sleeper": True, "sleep": 60}
    started = time.monotonic()
    with pytest.raises(ConversionTimeoutError) as info:
        run_probe(targets, spec, timeout=1.5, allow=not sandboxed,
                  disable=None if sandboxed else DISABLEABLE)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 5
    pids = json.loads(pid_file.read_text())
    # Sandboxed, fork is denied; unsandboxed, a grandchild shares the group and must die too.
    assert (pids["grandchild"] is None) == sandboxed
    group = [p for p in (pids["pid"], pids["grandchild"]) if p is not None]
    deadline = time.monotonic() + 3
    while any(_alive(p) for p in group) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(p) for p in group)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie is dead, merely not reaped yet


@linux_only
def test_child_environment_is_scrubbed(targets: Targets, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETSECRET")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("PYTHONPATH", "/nonexistent")
    # The parent's own environment cannot weaken the child either: only extra_env can.
    monkeypatch.setenv(DISABLE_ENV, ",".join(DISABLEABLE))
    res = run_probe(targets, {"env": True})
    env = res.result["env"]
    assert set(env) == {"PATH", "LANG", "HOME", "TMPDIR", "OMP_NUM_THREADS", "MALLOC_ARENA_MAX"}
    assert env["HOME"] == env["TMPDIR"] == str(targets.out)
    assert "hf_SECRETSECRET" not in json.dumps(env)
    assert not res.layers.missing or set(res.layers.missing) <= NAMESPACES


@linux_only
def test_crash_is_a_conversion_error_with_returncode_and_output(targets: Targets) -> None:
    with pytest.raises(ConversionError) as info:
        run_probe(targets, {"crash": "boom \x1b[31m"})
    err = info.value
    assert type(err) is ConversionError and err.returncode == 1
    assert "exit code 1" in str(err)
    assert "RuntimeError: boom" in err.stderr
    assert "\x1b" not in err.stderr  # the child's output is escaped before it reaches a terminal


@linux_only
def test_oversized_result_is_refused(targets: Targets, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_mod, "_RESULT_CAP", 10_000)
    with pytest.raises(ConversionError, match="exceeded 10000 bytes"):
        run_probe(targets, {"pad": 200_000})


@linux_only
def test_lockdown_fails_closed_when_a_thread_already_runs(targets: Targets) -> None:
    with pytest.raises(ConversionError, match="threads are running") as info:
        run_probe(targets, {"thread_before_lockdown": True, "marker": True})
    assert info.value.returncode == sandbox_layers.EXIT_LOCKDOWN_FAILED
    assert not isinstance(info.value, SandboxUnavailableError)
    assert not (targets.out / "started").exists()


@linux_only
def test_unknown_or_forbidden_disable_names_fail_closed(targets: Targets) -> None:
    for bad in ("landlok", "single-thread"):
        with pytest.raises(ConversionError, match=f"cannot disable {bad}"):
            run_probe(targets, {}, disable=[bad])


# ---------------------------------------------------------------------------------------------
# Pure functions

def test_limits_for_input() -> None:
    gib, mib = 1 << 30, 1 << 20
    small = Limits.for_input(1 << 20)
    assert small == Limits(address_space=4 * gib, cpu_seconds=60, file_size=2 * mib + 64 * mib,
                           open_files=256)
    big = Limits.for_input(10 * gib)
    assert big.address_space == 32 * gib
    assert big.file_size == 20 * gib + 64 * mib
    assert big.cpu_seconds == 300
    assert Limits.from_dict(big.to_dict()) == big
    with pytest.raises(ValueError):
        Limits.from_dict({**big.to_dict(), "cpu_seconds": True})


def test_layer_report_round_trip_and_validation() -> None:
    report = LayerReport(["single-thread", "seccomp"], {"landlock": "ENOSYS"}, {"seccomp": "x"})
    assert LayerReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    assert isolating_layers(report)
    assert not isolating_layers(LayerReport(["single-thread", "userns", "rlimits"], {}))
    bad: object
    for bad in ([], {"applied": "seccomp", "missing": {}}, {"applied": [], "missing": {"a": 1}}):
        with pytest.raises(ValueError):
            LayerReport.from_dict(bad)


def test_seccomp_program_shape() -> None:
    for arch in ("x86_64", "aarch64"):
        program = sandbox_layers.seccomp_program(arch, 1234)
        assert len(program) % 8 == 0 and len(program) // 8 < 4096
        # Starts by loading the arch and killing on mismatch; ends by allowing.
        assert program[:8] == sandbox_layers._ins(0x20, 4)
        assert program[-8:] == sandbox_layers._ins(0x06, 0x7FFF0000)


def test_run_worker_rejects_option_like_module_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        run_worker("-c", [], pass_fds=(), output_dir=tmp_path, timeout=1,
                   limits=Limits.for_input(0))


@linux_only
def test_sandbox_support_predicts_without_a_child() -> None:
    info = sandbox_support()
    assert info["isolating_layers"] == ["landlock", "netns", "seccomp"]
    assert "--unsafe-allow-unsandboxed-convert" in info["opt_in"]
    assert {"landlock", "seccomp", "userns", "isolating_possible"} <= set(info)
    assert isinstance(info["isolating_possible"], bool)
