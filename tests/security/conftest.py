"""Fixtures for the canary tests.

Controls (showing that a payload DOES fire under the loader it targets) never run in the test
process: they run in a child of a small fork server started once per session with torch, numpy
and joblib already imported, so each control is a fresh forked process that costs milliseconds
instead of a full `import torch`. A control that hangs is killed after its timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from canary_lib import Fires, Refused

_SERVER = textwrap.dedent(r'''
    import json, os, signal, sys, time, warnings
    warnings.simplefilter("ignore")
    import pickle, numpy, torch, joblib  # preloaded: forked children start warm
    proto_out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    print("ready", file=proto_out, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(devnull, 0); os.dup2(devnull, 2)
                os.chdir(req["cwd"])
                sys.path[:0] = req.get("sys_path", [])
                sys.argv = ["control", *req["argv"]]
                exec(compile(req["code"], "<control>", "exec"), {"__name__": "__control__"})
            except BaseException:
                pass
            finally:
                os._exit(0)
        deadline = time.monotonic() + req.get("timeout", 30)
        status = None
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = -9
            else:
                time.sleep(0.005)
        print(json.dumps({"status": status}), file=proto_out, flush=True)
''')


class ControlRunner:
    """Runs loader code on a hostile file in an isolated (forked) child process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["OMP_NUM_THREADS"] = "1"
        proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", "control server failed to start"
        return proc

    def run(self, code: str, *argv: str | os.PathLike[str], cwd: Path, timeout: float = 30,
            sys_path: list[str] | None = None) -> int:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"code": code, "argv": [os.fspath(a) for a in argv], "cwd": str(cwd),
               "timeout": timeout, "sys_path": sys_path or []}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return int(reply["status"])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def control_runner() -> Iterator[ControlRunner]:
    runner = ControlRunner()
    try:
        yield runner
    finally:
        runner.close()


# Loaders a control can name.
LOADERS = {
    "pickle": "import pickle, sys\npickle.loads(open(sys.argv[1], 'rb').read())",
    "pickle_stream": ("import pickle, sys\nf = open(sys.argv[1], 'rb')\n"
                      "while True:\n    pickle.load(f)"),
    # one Unpickler reading object after object keeps its memo across the STOPs
    "one_unpickler": ("import pickle, sys\nu = pickle.Unpickler(open(sys.argv[1], 'rb'))\n"
                      "while True:\n    u.load()"),
    "torch": "import torch, sys\ntorch.load(sys.argv[1], weights_only=False)",
    "numpy": ("import numpy, sys\nr = numpy.load(sys.argv[1], allow_pickle=True)\n"
              "if hasattr(r, 'files'):\n    [r[k] for k in r.files]"),
    "joblib": "import joblib, sys\njoblib.load(sys.argv[1])",
}


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """The canary's marker: its existence means the payload ran."""
    return tmp_path / "CANARY_FIRED"


@pytest.fixture
def fires(control_runner: ControlRunner, marker: Path, tmp_path: Path) -> Fires:
    """`fires(path, loader)`: run the control and report whether the marker appeared.

    The marker is removed afterwards, so the same test can then prove safeload does not fire."""

    def _fires(path: Path, loader: str = "pickle", *, args: tuple[str, ...] = (),
               timeout: float = 30, setup: str = "", sys_path: list[str] | None = None,
               wait: float = 2.0) -> bool:
        assert not marker.exists()
        code = setup + "\n" + LOADERS.get(loader, loader)
        control_runner.run(code, path, *args, cwd=tmp_path, timeout=timeout, sys_path=sys_path)
        deadline = time.monotonic() + wait  # some payloads spawn a process that finishes later
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        fired = marker.exists()
        if marker.is_dir():
            import shutil

            shutil.rmtree(marker)
        elif fired:
            marker.unlink()
        return fired

    return _fires


@pytest.fixture
def refused(marker: Path, capsys: pytest.CaptureFixture[str]) -> Refused:
    """`refused(path, exc, match)`: safeload.load raises exactly `exc` (matching `match`), scan
    exits 1 with the file unsafe in its JSON, and the marker never appears. Returns
    (exception, the file's JSON report)."""
    from canary_lib import scan_json

    import safeload
    from safeload._cli import main
    from safeload.errors import UnsafeCheckpointError

    def _refused(path: Path, exc: type[BaseException] = UnsafeCheckpointError,
                 match: str | None = None) -> tuple[BaseException, dict[str, object]]:
        with pytest.raises(exc, match=match) as info:
            safeload.load(path)
        assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
        assert not marker.exists(), "the canary fired under safeload.load"
        rc, out = scan_json(main, path, capsys)
        assert not marker.exists(), "the canary fired under safeload scan"
        assert rc == 1, out
        assert out["ok"] is False
        (report,) = out["files"]
        assert report["status"] == "unsafe", report
        assert report["findings"], report
        return info.value, report

    return _refused
