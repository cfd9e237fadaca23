"""Sandbox layers the conversion child applies to itself before it reads any input.

Linux x86_64/aarch64 only; elsewhere every layer is reported missing with the reason. Each layer is
best effort and the `LayerReport` says exactly which applied, so the parent can refuse (no
isolating layer) and the SBOM can record the truth. Stdlib only, and never imports `safeload`:
this module runs in the child that will meet the untrusted bytes.

Why each layer (measured facts: shared/reference/ecosystem.md part C):
- single-thread: seccomp and Landlock bind only the calling thread and its later children.
- userns/netns/mountns: no network at all and no init-namespace capabilities; not always allowed
  (Ubuntu 24.04 AppArmor, Docker), hence best effort.
- Landlock: filesystem allow-list, TCP deny (ABI >= 4), signal/abstract-socket scoping (ABI >= 6).
- seccomp: the only layer that stops pathname AF_UNIX sockets; also fork/exec/ptrace/mount.
- Already-open fds bypass every layer, so everything but 0-2 and the caller's keep-list is closed
  before the layers go on.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import platform
import struct
import sys
import sysconfig
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

LAYERS: Final = (
    "single-thread", "pdeathsig", "userns", "netns", "mountns", "no-dumpable", "rlimits",
    "no-new-privs", "landlock", "seccomp",
)
# A layer that keeps the child off the network or away from the user's files on its own.
ISOLATING: Final = frozenset({"netns", "landlock", "seccomp"})

# Read by the child only; the parent builds the child's whole environment, so neither variable can
# be set by a checkpoint (which is read only after the layers are on).
DISABLE_ENV: Final = "SAFELOAD_SANDBOX_DISABLE"  # tests only: comma list of layers to skip
POLICY_ENV: Final = "SAFELOAD_SANDBOX_POLICY"  # JSON: limits, allow_unsandboxed, parent_pid

EXIT_SANDBOX_UNAVAILABLE: Final = 3
EXIT_LOCKDOWN_FAILED: Final = 4

_KiB, _MiB, _GiB = 1 << 10, 1 << 20, 1 << 30


class LockdownError(RuntimeError):
    """The sandbox cannot be set up safely at all (e.g. threads already run): fail closed."""


class _Unavailable(Exception):
    """One layer is not available here; the reason goes into the report."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for the child (bytes, seconds, fds)."""

    address_space: int
    cpu_seconds: int
    file_size: int
    open_files: int = 256

    @classmethod
    def for_input(cls, size_bytes: int) -> Limits:
        """Limits for converting `size_bytes` of checkpoint.

        mmap counts against RLIMIT_AS, so plan for input + reloaded output + interpreter/torch.
        CPU: the reference machine converts about 5 CPU-s per GiB; allow 30 s per GiB, >= 60 s.
        """
        size = max(0, int(size_bytes))
        cpu = -(-size * 30 // _GiB)  # ceil
        return cls(
            address_space=max(4 * _GiB, 3 * size + 2 * _GiB),
            cpu_seconds=max(60, cpu),
            file_size=2 * size + 64 * _MiB,
            open_files=256,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "address_space": self.address_space,
            "cpu_seconds": self.cpu_seconds,
            "file_size": self.file_size,
            "open_files": self.open_files,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Limits:
        values: dict[str, int] = {}
        for name in ("address_space", "cpu_seconds", "file_size", "open_files"):
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"limit {name!r} must be a positive integer, got {value!r}")
            values[name] = value
        return cls(**values)


@dataclass
class LayerReport:
    """Which layers applied, which did not and why; `details` adds facts like the Landlock ABI."""

    applied: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": list(self.applied),
            "missing": dict(self.missing),
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: object) -> LayerReport:
        """Validate a report that crossed the process boundary (the parent must not trust shape)."""
        if not isinstance(data, dict):
            raise ValueError("layer report is not an object")
        applied, missing = data.get("applied"), data.get("missing")
        details = data.get("details", {})
        if not (isinstance(applied, list) and all(isinstance(x, str) for x in applied)):
            raise ValueError("layer report: 'applied' must be a list of strings")
        for name, value in (("missing", missing), ("details", details)):
            if not (isinstance(value, dict)
                    and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
                raise ValueError(f"layer report: {name!r} must map strings to strings")
        assert isinstance(missing, dict) and isinstance(details, dict)
        return cls(list(applied), dict(missing), dict(details))


def isolating_layers(report: LayerReport) -> bool:
    """True when at least one layer that isolates on its own (netns, Landlock, seccomp) applied."""
    return any(name in ISOLATING for name in report.applied)


# ---------------------------------------------------------------------------------------------
# libc access

_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
        _libc_handle.syscall.restype = ctypes.c_long
    return _libc_handle


def _check(result: int, what: str) -> int:
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _syscall(nr: int, *args: object) -> int:
    # Variadic: every argument must be a C long or pointer, never a bare Python int (32-bit).
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return _check(int(_libc().syscall(ctypes.c_long(nr), *cargs)), f"syscall {nr}")


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(_libc().prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                         ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl({option})")


def _errname(exc: OSError) -> str:
    code = exc.errno or 0
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


def _arch() -> str | None:
    """'x86_64' or 'aarch64' for a 64-bit Linux process, else None (syscall tables are per ABI)."""
    if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
        return None
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "aarch64"
    return None


# ---------------------------------------------------------------------------------------------
# Pre-layer steps

def _disabled_layers() -> frozenset[str]:
    raw = os.environ.pop(DISABLE_ENV, "")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = names - set(LAYERS)
    if unknown or "single-thread" in names:
        bad = sorted(unknown | (names & {"single-thread"}))
        raise LockdownError(f"{DISABLE_ENV}: cannot disable {', '.join(bad)}")
    return names


def _close_fds(keep: Iterable[int]) -> None:
    """Close every fd but 0-2 and `keep`: Landlock and seccomp never restrict an open fd."""
    keep_set = {0, 1, 2, *keep}
    try:
        fds = sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:
        fds = []
        # No /proc: close the gaps between kept fds up to a generous bound.
        bound = max(int(os.sysconf("SC_OPEN_MAX")), 65536) if hasattr(os, "sysconf") else 65536
        low = 0
        for fd in sorted(keep_set) + [bound]:
            if fd > low:
                os.closerange(low, fd)
            low = fd + 1
    for fd in fds:
        if fd not in keep_set:
            try:
                os.close(fd)
            except OSError:
                pass  # the listdir fd itself, already closed


def _check_single_thread() -> None:
    try:
        count = len(os.listdir("/proc/self/task"))
    except OSError as exc:
        raise LockdownError(f"cannot count this process's threads: {_errname(exc)}") from exc
    if count != 1:
        raise LockdownError(
            f"{count} threads are running; seccomp and Landlock would not bind the others")


# ---------------------------------------------------------------------------------------------
# Namespaces

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18


def _unshare(flag: int, name: str) -> None:
    try:
        _check(_libc().unshare(ctypes.c_int(flag)), f"unshare({name})")
    except OSError as exc:
        raise _Unavailable(f"unshare({name}): {_errname(exc)}") from exc


def _write_proc(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enter_userns() -> None:
    uid, gid = os.getuid(), os.getgid()  # before unshare: afterwards they read as overflow ids
    _unshare(_CLONE_NEWUSER, "CLONE_NEWUSER")
    try:
        # setgroups must be denied before an unprivileged gid_map write is accepted.
        _write_proc("/proc/self/setgroups", "deny")
        _write_proc("/proc/self/uid_map", f"0 {uid} 1")
        _write_proc("/proc/self/gid_map", f"0 {gid} 1")
    except OSError as exc:
        raise _Unavailable(f"user namespace created but id maps failed: {_errname(exc)}") from exc


def _enter_mountns() -> None:
    _unshare(_CLONE_NEWNS, "CLONE_NEWNS")
    try:
        # Private propagation: nothing done in here can ever reach the host's mount table.
        _check(_libc().mount(b"none", b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None),
               "mount(/, MS_REC|MS_PRIVATE)")
    except OSError as exc:
        raise _Unavailable(
            f"mount namespace created but not made private: {_errname(exc)}") from exc


# ---------------------------------------------------------------------------------------------
# rlimits

def _apply_rlimits(limits: Limits) -> None:
    try:
        import resource
    except ImportError as exc:
        raise _Unavailable("no resource module on this platform") from exc

    def lower(which: int, soft: int, hard: int) -> None:
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:  # an unprivileged process can only lower
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))

    try:
        lower(resource.RLIMIT_AS, limits.address_space, limits.address_space)
        # SIGXCPU at the soft limit, SIGKILL two seconds later.
        lower(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 2)
        lower(resource.RLIMIT_FSIZE, limits.file_size, limits.file_size)
        lower(resource.RLIMIT_NOFILE, limits.open_files, limits.open_files)
        lower(resource.RLIMIT_CORE, 0, 0)
        # Never RLIMIT_NPROC: it counts threads of every process of the real uid (breaks libgomp).
    except (OSError, ValueError) as exc:
        raise _Unavailable(f"setrlimit failed: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Landlock (syscalls 444-446 on every architecture)

_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_CREATE_RULESET_VERSION = 1
_LL_RULE_PATH_BENEATH = 1

_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_REMOVE_DIR, _FS_REMOVE_FILE, _FS_MAKE_DIR, _FS_MAKE_REG = 1 << 4, 1 << 5, 1 << 7, 1 << 8
_FS_ABI1_ALL = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_READ_ONLY = _FS_READ_FILE | _FS_READ_DIR
# No EXECUTE, no device/socket/fifo/symlink creation: only plain files and directories.
_READ_WRITE = (_READ_ONLY | _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE_DIR
               | _FS_MAKE_REG | _FS_REFER | _FS_TRUNCATE)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel struct is packed: u64 then s32, 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> tuple[int | None, str]:
    """(ABI version, reason), asked of the kernel: securityfs may not be mounted to list LSMs."""
    if _arch() is None:
        return None, f"not available on {sys.platform}/{platform.machine()}"
    try:
        abi = _syscall(_LL_CREATE, None, 0, _LL_CREATE_RULESET_VERSION)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return None, "kernel built without Landlock (ENOSYS)"
        if exc.errno == errno.EOPNOTSUPP:
            return None, "Landlock built but not enabled at boot (EOPNOTSUPP; add lsm=landlock)"
        return None, f"Landlock version query failed: {_errname(exc)}"
    return abi, f"ABI {abi}"


def runtime_read_paths(extra: Sequence[str] = ()) -> list[str]:
    """Read-only paths the interpreter needs after lockdown (lazy imports, torch's cpuinfo...)."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
        sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"), here,
        *sys.path, "/usr/lib", "/usr/lib64", *sorted(glob.glob("/lib*")),
        "/etc/ld.so.cache",  # dlopen of extension modules' dependencies
        "/dev/urandom", "/proc/cpuinfo", "/sys/devices/system/cpu", *extra,
    ]
    # Never grant the whole filesystem or the user's home, even if a .pth put it on sys.path.
    forbidden = {"/", os.path.expanduser("~"), os.environ.get("HOME", "/")}
    try:
        import pwd

        forbidden.add(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError):
        pass
    out: list[str] = []
    for path in candidates:
        if not path:
            continue
        path = os.path.abspath(path)
        if path in forbidden and path not in extra:
            continue
        if path not in out and os.path.exists(path):
            out.append(path)
    return out


def _apply_landlock(write_dir: str | None, read_paths: Sequence[str], report: LayerReport) -> None:
    abi, why = landlock_abi()
    if abi is None:
        raise _Unavailable(why)
    handled_fs = _FS_ABI1_ALL
    if abi >= 2:
        handled_fs |= _FS_REFER
    if abi >= 3:
        handled_fs |= _FS_TRUNCATE
    if abi >= 5:
        handled_fs |= _FS_IOCTL_DEV
    attr = _RulesetAttr(handled_fs, 0, 0)
    size = 8
    features = ["fs"]
    if abi >= 4:
        # Handling TCP with no net rule denies every TCP bind and connect.
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size, features = 16, [*features, "tcp"]
    if abi >= 6:
        # Abstract Unix sockets and signals are confined to this process's own domain.
        attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
        size, features = 24, [*features, "scope"]
    try:
        ruleset = _syscall(_LL_CREATE, ctypes.byref(attr), size, 0)
    except OSError as exc:
        raise _Unavailable(f"landlock_create_ruleset: {_errname(exc)}") from exc
    skipped: list[str] = []
    try:
        for path in read_paths:
            if not _landlock_rule(ruleset, path, _READ_ONLY & handled_fs):
                skipped.append(path)
        if write_dir is not None and not _landlock_rule(ruleset, write_dir,
                                                        _READ_WRITE & handled_fs):
            raise _Unavailable(f"cannot add the read-write rule for {write_dir!r}")
        try:
            _syscall(_LL_RESTRICT, ruleset, 0)
        except OSError as exc:
            raise _Unavailable(f"landlock_restrict_self: {_errname(exc)}") from exc
    finally:
        os.close(ruleset)
    report.details["landlock"] = f"ABI {abi}: {'+'.join(features)}"
    if skipped:
        report.details["landlock-skipped"] = ", ".join(skipped)


def _landlock_rule(ruleset: int, path: str, access: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not os.path.isdir(path):
            access &= _FS_FILE_ONLY  # directory rights on a file are EINVAL
        rule = _PathBeneathAttr(access, fd)
        _syscall(_LL_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH, ctypes.byref(rule), 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


# ---------------------------------------------------------------------------------------------
# seccomp: classic BPF, built with struct (no libseccomp)

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_SECCOMP_NR = {"x86_64": 317, "aarch64": 277}

# Denied with EPERM: network, new processes, code injection, mounts, kernel attack surface.
_DENY_EPERM: dict[str, dict[str, int]] = {
    "x86_64": {
        "socket": 41, "connect": 42, "accept": 43, "sendto": 44, "sendmsg": 46, "bind": 49,
        "listen": 50, "socketpair": 53, "accept4": 288, "sendmmsg": 307,
        "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
        "pidfd_open": 434, "pidfd_getfd": 438, "pidfd_send_signal": 424,
        "process_madvise": 440, "tkill": 200,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272,
        "setns": 308, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442, "open_tree_attr": 467,
        "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "keyctl": 250, "add_key": 248, "request_key": 249,
        "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
        "syslog": 103, "iopl": 172, "ioperm": 173, "modify_ldt": 154, "uselib": 134,
        "lookup_dcookie": 212, "quotactl": 179, "name_to_handle_at": 303,
        "open_by_handle_at": 304, "mknod": 133, "mknodat": 259, "settimeofday": 164,
        "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305, "vhangup": 153,
        "sethostname": 170, "setdomainname": 171,
        # acting on another process of the same uid (review W: nice 19, SCHED_IDLE, pinned)
        "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
        "sched_setaffinity": 203, "sched_setattr": 314, "ioprio_set": 251,
        "migrate_pages": 256, "move_pages": 279, "get_robust_list": 274,
    },
    "aarch64": {
        "socket": 198, "connect": 203, "accept": 202, "sendto": 206, "sendmsg": 211,
        "bind": 200, "listen": 201, "socketpair": 199, "accept4": 242, "sendmmsg": 269,
        "execve": 221, "execveat": 281,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "pidfd_open": 434, "pidfd_getfd": 438, "pidfd_send_signal": 424,
        "process_madvise": 440, "tkill": 130,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97,
        "setns": 268, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442, "open_tree_attr": 467,
        "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "keyctl": 219, "add_key": 217, "request_key": 218,
        "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "syslog": 116, "lookup_dcookie": 18, "quotactl": 60, "name_to_handle_at": 264,
        "open_by_handle_at": 265, "mknodat": 33, "settimeofday": 170, "clock_settime": 112,
        "adjtimex": 171, "clock_adjtime": 266, "vhangup": 58, "sethostname": 161,
        "setdomainname": 162,
        "setpriority": 140, "sched_setparam": 118, "sched_setscheduler": 119,
        "sched_setaffinity": 122, "sched_setattr": 274, "ioprio_set": 30,
        "migrate_pages": 238, "move_pages": 239, "get_robust_list": 100,
    },
}
# prlimit64 on another process set RLIMIT_CPU=1 on the parent, which the kernel then killed
# (review W): allowed only on this process (pid 0 or its own), as setrlimit needs.
_SELF_PRLIMIT = {"x86_64": 302, "aarch64": 261}
# fcntl commands that make the kernel signal another process (F_SETOWN/F_SETSIG: SIGKILL to
# the parent when it read the pipe, where Landlock has no signal scope) or stall one
# (F_SETLEASE: every open of the output blocked 45 s). None is needed to convert.
_FCNTL = {"x86_64": 72, "aarch64": 25}
_FCNTL_DENIED = (8, 10, 15, 1024)  # F_SETOWN, F_SETSIG, F_SETOWN_EX, F_SETLEASE
# prctl(PR_SET_PDEATHSIG, ...) after lock-down would let a worker outlive its parent.
_PRCTL = {"x86_64": 157, "aarch64": 167}
# clone3 passes its flags in memory BPF cannot read: ENOSYS makes glibc fall back to clone.
_CLONE3 = 435
_CLONE = {"x86_64": 56, "aarch64": 220}
# Signals: allowed only when the target (arg 0: pid or tgid) is this process itself, so raise()
# and abort() keep working while every other process is out of reach.
_SELF_SIGNAL = {
    "x86_64": {"kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297},
    "aarch64": {"kill": 129, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240},
}
_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000

_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_JSET_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_KILL_PROCESS, _RET_ALLOW, _RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000
# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]. Both arches are little-endian.
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LO, _OFF_ARG1_LO = 0, 4, 16, 24


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def seccomp_program(arch: str, self_pid: int) -> bytes:
    """The filter as raw `struct sock_filter` array (8 bytes per instruction)."""
    eperm, enosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS
    prog = [
        _ins(_BPF_LD_W_ABS, _OFF_ARCH),
        _ins(_BPF_JEQ_K, _AUDIT_ARCH[arch], jt=1),
        _ins(_BPF_RET_K, _RET_KILL_PROCESS),  # foreign ABI (e.g. int 0x80): its numbers differ
        _ins(_BPF_LD_W_ABS, _OFF_NR),
    ]
    if arch == "x86_64":  # x32 numbers alias the 64-bit ones with bit 30 set
        prog += [_ins(_BPF_JGE_K, _X32_SYSCALL_BIT, jf=1), _ins(_BPF_RET_K, _RET_KILL_PROCESS)]
    for nr in sorted(_DENY_EPERM[arch].values()):
        prog += [_ins(_BPF_JEQ_K, nr, jf=1), _ins(_BPF_RET_K, eperm)]
    prog += [_ins(_BPF_JEQ_K, _CLONE3, jf=1), _ins(_BPF_RET_K, enosys)]
    # Each block below returns on every path, so skipping it keeps the syscall number in A.
    prog += [
        _ins(_BPF_JEQ_K, _CLONE[arch], jf=4),
        _ins(_BPF_LD_W_ABS, _OFF_ARG0_LO),
        _ins(_BPF_JSET_K, _CLONE_THREAD, jf=1),  # a thread: fine; a process: no
        _ins(_BPF_RET_K, _RET_ALLOW),
        _ins(_BPF_RET_K, eperm),
    ]
    for nr in sorted(_SELF_SIGNAL[arch].values()):
        prog += [
            _ins(_BPF_JEQ_K, nr, jf=4),
            _ins(_BPF_LD_W_ABS, _OFF_ARG0_LO),
            _ins(_BPF_JEQ_K, self_pid, jf=1),
            _ins(_BPF_RET_K, _RET_ALLOW),
            _ins(_BPF_RET_K, eperm),
        ]
    prog += [  # prlimit64(pid, ...): pid 0 or this process
        _ins(_BPF_JEQ_K, _SELF_PRLIMIT[arch], jf=5),
        _ins(_BPF_LD_W_ABS, _OFF_ARG0_LO),
        _ins(_BPF_JEQ_K, 0, jt=1),
        _ins(_BPF_JEQ_K, self_pid, jf=1),
        _ins(_BPF_RET_K, _RET_ALLOW),
        _ins(_BPF_RET_K, eperm),
    ]
    n = len(_FCNTL_DENIED)
    prog += [_ins(_BPF_JEQ_K, _FCNTL[arch], jf=n + 3), _ins(_BPF_LD_W_ABS, _OFF_ARG1_LO)]
    prog += [_ins(_BPF_JEQ_K, cmd, jt=n - i) for i, cmd in enumerate(_FCNTL_DENIED)]
    prog += [_ins(_BPF_RET_K, _RET_ALLOW), _ins(_BPF_RET_K, eperm)]
    prog += [  # prctl(PR_SET_PDEATHSIG, ...)
        _ins(_BPF_JEQ_K, _PRCTL[arch], jf=4),
        _ins(_BPF_LD_W_ABS, _OFF_ARG0_LO),
        _ins(_BPF_JEQ_K, _PR_SET_PDEATHSIG, jf=1),
        _ins(_BPF_RET_K, eperm),
        _ins(_BPF_RET_K, _RET_ALLOW),
    ]
    prog.append(_ins(_BPF_RET_K, _RET_ALLOW))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_SECCOMP, _PR_SET_NO_NEW_PRIVS = 1, 4, 22, 38
_SECCOMP_MODE_FILTER = 2
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1


def _apply_seccomp(report: LayerReport) -> None:
    arch = _arch()
    if arch is None:
        raise _Unavailable(f"no syscall table for {sys.platform}/{platform.machine()}")
    code = seccomp_program(arch, os.getpid())
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    try:
        # TSYNC: would also bind any thread that exists despite the single-thread check.
        _syscall(_SECCOMP_NR[arch], _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC,
                 ctypes.byref(fprog))
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise _Unavailable(f"seccomp(SET_MODE_FILTER): {_errname(exc)}") from exc
        try:
            _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
        except OSError as exc2:
            raise _Unavailable(f"prctl(PR_SET_SECCOMP): {_errname(exc2)}") from exc2
    report.details["seccomp"] = f"{arch}, {len(code) // 8} BPF instructions"


# ---------------------------------------------------------------------------------------------
# Orchestration

def _step(report: LayerReport, name: str, disabled: frozenset[str],
          apply: Callable[[], None]) -> bool:
    if name in disabled:
        report.missing[name] = f"disabled by {DISABLE_ENV}"
        return False
    try:
        apply()
    except _Unavailable as exc:
        report.missing[name] = str(exc)
        return False
    except OSError as exc:
        report.missing[name] = _errname(exc)
        return False
    report.applied.append(name)
    return True


def lock_down(*, write_dir: str | None, limits: Limits, extra_read_paths: Sequence[str] = (),
              keep_fds: Sequence[int] = ()) -> LayerReport:
    """Apply every available layer to this (single-threaded) process, irreversibly.

    Call it first thing in the child, before importing torch (which starts threads) and before
    touching input. Raises `LockdownError` when it cannot be done safely at all.
    """
    disabled = _disabled_layers()
    report = LayerReport()
    read_paths = runtime_read_paths(extra_read_paths)  # resolved before anything is denied
    if write_dir is not None:
        write_dir = os.path.abspath(write_dir)
    _close_fds(keep_fds)

    if _arch() is None:
        unsupported = f"not available on {sys.platform}/{platform.machine()}"
        report.missing["single-thread"] = "cannot count threads without Linux /proc"
        for name in LAYERS[1:]:
            if name == "rlimits":
                _step(report, name, disabled, lambda: _apply_rlimits(limits))
            else:
                report.missing[name] = unsupported
        return report

    _check_single_thread()
    report.applied.append("single-thread")
    _step(report, "pdeathsig", disabled, lambda: _prctl(_PR_SET_PDEATHSIG, 9))  # SIGKILL
    # userns first: as an unprivileged user it is what grants the right to create the others.
    _step(report, "userns", disabled, _enter_userns)
    _step(report, "netns", disabled, lambda: _unshare(_CLONE_NEWNET, "CLONE_NEWNET"))
    _step(report, "mountns", disabled, _enter_mountns)
    # After the id maps: a non-dumpable process's /proc/self files belong to root, and an
    # unprivileged process could no longer write its own uid_map.
    _step(report, "no-dumpable", disabled, lambda: _prctl(_PR_SET_DUMPABLE, 0))
    _step(report, "rlimits", disabled, lambda: _apply_rlimits(limits))
    _step(report, "no-new-privs", disabled, lambda: _prctl(_PR_SET_NO_NEW_PRIVS, 1))
    _step(report, "landlock", disabled, lambda: _apply_landlock(write_dir, read_paths, report))
    _step(report, "seccomp", disabled, lambda: _apply_seccomp(report))
    return report


# ---------------------------------------------------------------------------------------------
# Worker protocol (child side): the result pipe and the policy the parent put in the environment

@dataclass(frozen=True)
class Policy:
    limits: Limits
    allow_unsandboxed: bool
    parent_pid: int | None


def read_policy() -> Policy:
    """The parent's policy; a missing one means the safe defaults (refuse when unsandboxed)."""
    raw = os.environ.pop(POLICY_ENV, "")
    if not raw:
        return Policy(Limits.for_input(0), allow_unsandboxed=False, parent_pid=None)
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{POLICY_ENV} is not a JSON object")
    limits = data.get("limits")
    parent = data.get("parent_pid")
    return Policy(
        Limits.from_dict(limits if isinstance(limits, dict) else {}),
        allow_unsandboxed=data.get("allow_unsandboxed") is True,
        parent_pid=parent if isinstance(parent, int) else None,
    )


def send_result(result_fd: int, obj: Mapping[str, Any]) -> None:
    """Write the one JSON result object to the result pipe and close it."""
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(result_fd, view):]
    finally:
        os.close(result_fd)


def _die(result_fd: int, code: int, payload: Mapping[str, Any]) -> None:
    try:
        send_result(result_fd, payload)
    except OSError:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def enter_sandbox(result_fd: int, write_dir: str | None, *, extra_read_paths: Sequence[str] = (),
                  keep_fds: Sequence[int] = ()) -> LayerReport:
    """The worker prologue: lock down, then refuse unless an isolating layer applied.

    Exits the process (code 3 or 4, with a JSON error on the result pipe) instead of returning
    when the sandbox is unavailable and the parent did not opt out, or cannot be set up at all.
    """
    try:
        policy = read_policy()
        report = lock_down(write_dir=write_dir, limits=policy.limits,
                           extra_read_paths=extra_read_paths, keep_fds=(result_fd, *keep_fds))
    except (LockdownError, ValueError) as exc:
        _die(result_fd, EXIT_LOCKDOWN_FAILED,
             {"ok": False, "error": {"kind": "lockdown-failed", "message": str(exc)}})
        raise  # unreachable: _die exits
    if policy.parent_pid is not None and os.getppid() != policy.parent_pid:
        os._exit(EXIT_LOCKDOWN_FAILED)  # the parent died before PDEATHSIG was armed
    if not isolating_layers(report) and not policy.allow_unsandboxed:
        missing = ", ".join(f"{name} ({report.missing.get(name, '?')})"
                            for name in sorted(ISOLATING))
        _die(result_fd, EXIT_SANDBOX_UNAVAILABLE, {
            "ok": False,
            "error": {"kind": "sandbox-unavailable",
                      "message": f"no isolating sandbox layer could be applied: {missing}"},
            "layers": report.to_dict(),
        })
    return report


# ---------------------------------------------------------------------------------------------
# What this platform can do, without starting a child (for `safeload doctor`)

def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def support_report() -> dict[str, Any]:
    """A prediction of which layers a child would get here, with the reasons."""
    arch = _arch()
    info: dict[str, Any] = {"platform": sys.platform, "machine": platform.machine(),
                            "supported_arch": arch}
    if arch is None:
        info.update(landlock={"abi": None, "reason": "Linux x86_64/aarch64 only"},
                    seccomp={"available": False, "reason": "Linux x86_64/aarch64 only"},
                    userns={"likely": False, "reason": "Linux only"},
                    isolating_possible=False)
        return info
    abi, why = landlock_abi()
    info["landlock"] = {
        "abi": abi, "reason": why,
        "tcp": abi is not None and abi >= 4, "scoping": abi is not None and abi >= 6,
    }
    actions = None
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as fh:
            actions = fh.read().split()
    except OSError:
        pass
    seccomp_ok = actions is not None and "errno" in actions and "kill_process" in actions
    info["seccomp"] = {"available": seccomp_ok,
                       "reason": "filter mode with errno and kill_process" if seccomp_ok
                       else "no seccomp filter support reported by /proc/sys/kernel/seccomp"}
    userns_reason, userns_likely = "unprivileged user namespaces look enabled", True
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        userns_reason, userns_likely = "user.max_user_namespaces=0", False
    elif _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0 and os.geteuid() != 0:
        userns_reason, userns_likely = "kernel.unprivileged_userns_clone=0", False
    elif (_read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1
          and os.geteuid() != 0):
        userns_reason = ("AppArmor restricts unprivileged user namespaces: netns/mountns will "
                         "likely fail; Landlock and seccomp still isolate")
        userns_likely = False
    info["userns"] = {"likely": userns_likely, "reason": userns_reason,
                      "note": "container seccomp profiles may still deny unshare"}
    info["isolating_possible"] = bool(abi) or seccomp_ok or userns_likely
    return info
