"""What a cache scan and a cache conversion report: statuses, files, revisions.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from safeload._internal.text import get_logger, safe_text
from safeload.errors import RefusedError
from safeload.pipeline import PICKLE_FORMATS

if TYPE_CHECKING:
    from safeload._internal.converter import Converted


_logger = get_logger(__name__)


# Weight files whose bytes safeload does not read are still listed, so nothing hides.
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".safetensors",
                   ".npy", ".npz", ".h5", ".msgpack", ".onnx", ".gguf", ".tflite", ".ot")
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")
_GIT_NAME = re.compile(r"[0-9a-f]{40}")
_CHUNK = 8 << 20

# File statuses, worst first. "refused" = a trust or licence refusal, or a link out of the cache.
Action = Literal["converted", "already-converted", "would-convert", "unsafe", "tampered",
                 "malformed", "refused", "failed", "skipped"]
Status = Literal["error", "tampered", "malformed", "unsafe", "refused", "convertible", "converted",
            "safetensors", "unsupported"]
STATUSES: tuple[Status, ...] = get_args(Status)
BAD_STATUSES: frozenset[Status] = frozenset({"tampered", "malformed", "unsafe", "refused"})


def default_cache_dir() -> Path:
    """huggingface_hub's cache directory, resolved from the environment now (not at import).

    The same precedence as `huggingface_hub.constants.HF_HUB_CACHE`: HF_HUB_CACHE, then
    HUGGINGFACE_HUB_CACHE, then $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, and
    ~/.cache/huggingface/hub.
    """
    env = os.environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


# ------------------------------------------------------------------------------------------
# Results


@dataclass
class CacheFile:
    """One weight file of one revision, classified by its bytes."""

    name: str  # path relative to the snapshot ("unet/diffusion_pytorch_model.bin")
    path: str  # the snapshot entry
    size: int
    blob: str | None  # first symlink hop's file name (the expected digest), if a link
    format: str
    status: Status | Literal[""]  # "" until classified
    sha256: str | None = None
    integrity: str = "unchecked"  # "ok", "mismatch" or "unchecked" (no digest to compare)
    converted: bool = False
    pinned: str = "no"  # "yes", "no", or "mismatch" (pinned to other bytes)
    signed: bool = False  # a signature covers the revision or this file (not verified here)
    findings: list[str] = field(default_factory=list)

    @property
    def pickle(self) -> bool:
        return self.format in PICKLE_FORMATS

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pickle"] = self.pickle
        return out


@dataclass
class CacheRevision:
    repo_id: str
    repo_type: str
    commit: str
    refs: list[str]
    snapshot: str
    signed: bool
    files: list[CacheFile] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.commit[:8]}"

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "repo_type": self.repo_type, "commit": self.commit,
                "refs": list(self.refs), "snapshot": self.snapshot, "signed": self.signed,
                "files": [f.to_dict() for f in self.files]}


@dataclass
class CacheScan:
    cache_dir: str
    revisions: list[CacheRevision]
    warnings: list[str]
    missing_repos: list[str]

    def files(self) -> list[tuple[CacheRevision, CacheFile]]:
        return [(r, f) for r in self.revisions for f in r.files]

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for _, f in self.files():
            out[f.status or "error"] += 1
        out["revisions"] = len(self.revisions)
        out["repos"] = len({(r.repo_type, r.repo_id) for r in self.revisions})
        return out

    def to_dict(self) -> dict[str, Any]:
        repos: dict[tuple[str, str], list[CacheRevision]] = {}
        for r in self.revisions:
            repos.setdefault((r.repo_type, r.repo_id), []).append(r)
        return {
            "cache_dir": self.cache_dir,
            "repos": [{"repo_id": rid, "repo_type": rtype,
                       "revisions": [r.to_dict() for r in revs]}
                      for (rtype, rid), revs in repos.items()],
            "warnings": list(self.warnings),
            "missing_repos": list(self.missing_repos),
            "summary": self.summary(),
        }


@dataclass(frozen=True)
class Progress:
    """Bytes processed so far: each weight file counts once hashed, each pickle once converted."""

    done: int
    total: int
    current: str
    elapsed: float


ProgressFn = Callable[[Progress], None]


class _Meter:
    def __init__(self, total: int, callback: ProgressFn | None) -> None:
        self.total, self.done, self.callback = total, 0, callback
        self.started = time.monotonic()
        self.current = ""

    def add(self, n: int, current: str | None = None) -> None:
        self.done = min(self.total, self.done + n)
        self.show(current)

    def show(self, current: str | None = None, extra: int = 0) -> None:
        if current is not None:
            self.current = current
        if self.callback is not None:
            self.callback(Progress(min(self.total, self.done + extra), self.total, self.current,
                                   time.monotonic() - self.started))


@dataclass
class Outcome:
    """What `convert_cache` did with one weight file."""

    repo_id: str
    commit: str
    name: str
    size: int
    action: Action
    message: str = ""
    output: str | None = None
    hub_path: str | None = None  # the snapshot entry written with write_to_hub_cache
    seconds: float = 0.0


_BAD_ACTIONS: dict[Status, Action] = {"tampered": "tampered", "malformed": "malformed",
                                      "unsafe": "unsafe", "refused": "refused"}


def plan_outcome(f: CacheFile, o: Outcome, *, dry_run: bool) -> bool:
    """Settle `o` for a file the scan classified; True if it is left for the converter."""
    if f.status in BAD_STATUSES or f.status == "error":
        o.action = _BAD_ACTIONS.get(f.status, "failed")
        o.message = "; ".join(f.findings)
    elif f.status in ("safetensors", "unsupported"):
        o.message = f"{f.format}: nothing to convert"
    elif dry_run:
        o.action = "already-converted" if f.converted else "would-convert"
    else:
        return True
    return False


def settle_conversion(o: Outcome, conv: Converted | Exception,
                      report: ConvertReport) -> Converted | None:
    """Settle `o` from the converter's answer; the conversion if it was done now (the caller
    records it in the ledger), None for a refusal, a failure or a store hit."""
    if isinstance(conv, Exception):
        o.action = "refused" if isinstance(conv, RefusedError) else "failed"
        o.message = safe_text(str(conv))
        return None
    o.output = str(conv.path)
    if conv.cache_hit:
        o.action = "already-converted"
        return None
    o.action = "converted"
    report.converted_bytes += o.size
    return conv


@dataclass
class ConvertReport:
    cache_dir: str
    dry_run: bool
    outcomes: list[Outcome]
    hub_written: list[str]
    hub_notes: list[str]
    warnings: list[str]
    missing_repos: list[str]
    seconds: float
    converted_bytes: int

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.action] = out.get(o.action, 0) + 1
        return out

    @property
    def refused(self) -> bool:
        return any(o.action in ("unsafe", "tampered", "malformed", "refused")
                   for o in self.outcomes)

    @property
    def failed(self) -> bool:
        return any(o.action == "failed" for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {"cache_dir": self.cache_dir, "dry_run": self.dry_run,
                "files": [asdict(o) for o in self.outcomes],
                "hub_written": list(self.hub_written), "hub_notes": list(self.hub_notes),
                "warnings": list(self.warnings), "missing_repos": list(self.missing_repos),
                "summary": {**self.counts(), "seconds": round(self.seconds, 3),
                            "converted_bytes": self.converted_bytes}}


HUB_SIGNATURE_WARNING = ("--write-to-hub-cache adds files to Hugging Face snapshots: a "
                         "signature made over a snapshot's original file list (model.sig) no "
                         "longer covers every file there, so `safeload verify` of that "
                         "directory reports the added files")
