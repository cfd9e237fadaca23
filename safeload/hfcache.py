"""The local Hugging Face cache: what is in it, and converting its pickles once, in the sandbox.

`scan_cache` lists every repo revision (walking the cache by huggingface_hub's layout, see
`_hub_scan` for why not `scan_cache_dir`) and classifies each weight file by its bytes:
safetensors, a clean pickle (convertible, or already in safeload's converted store), unsafe,
tampered, malformed (a dangling link), or refused: a snapshot entry that is not what the Hub
client writes, a snapshot that names no commit, or what the trust store, the licence policy or
`pickles: refuse` would refuse at load (the same decisions, nothing recorded). The cache names an
LFS blob by the sha256 of its content, which is a free integrity check: the name is read from
the FIRST symlink hop only (hub 2.x may chain a repo blob to a shared Xet blob whose name is not
a sha256), and a blob whose bytes do not match it is refused. Scanning writes nothing.

`convert_cache` converts every clean pickle, one sandboxed child per repo revision, into the
converted store keyed by the source digest (where `safeload.load` and `from_pretrained` find
it). The Hugging Face snapshot is left untouched unless `write_to_hub_cache` is set, and nothing
is ever deleted but `.no_exist` markers that would hide a written file. An interrupted run leaves
no partial file (outputs are written under temporary names and renamed into place), and a rerun
skips what is done.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload import pipeline
from safeload._internal import strictjson, verify_cache
from safeload._internal.opened import OpenedFile
from safeload._internal.text import safe_text
from safeload.errors import ConversionError, RefusedError, SafeloadError, UnsafePathError
from safeload.inspection import Inspection, inspect_bytes
from safeload.pipeline import PICKLE_FORMATS, Admitted

if TYPE_CHECKING:
    from safeload._internal.converter import Converted
    from safeload.trust import TrustStore

_logger = logging.getLogger(__name__)

# Weight files whose bytes safeload does not read are still listed, so nothing hides.
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".safetensors",
                   ".npy", ".npz", ".h5", ".msgpack", ".onnx", ".gguf", ".tflite", ".ot")
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")
_GIT_NAME = re.compile(r"[0-9a-f]{40}")
_CHUNK = 8 << 20

# File statuses, worst first. "refused" = a trust or licence refusal, or a link out of the cache.
STATUSES = ("error", "tampered", "malformed", "unsafe", "refused", "convertible", "converted",
            "safetensors", "unsupported")
BAD_STATUSES = frozenset({"tampered", "malformed", "unsafe", "refused"})


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
    status: str  # one of STATUSES
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
        out = dict.fromkeys(STATUSES, 0)
        for _, f in self.files():
            out[f.status] += 1
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


# ------------------------------------------------------------------------------------------
# Scanning


@dataclass(frozen=True)
class _Entry:
    """A file of a snapshot found by the walk, or a problem entry (dangling or escaping link)."""

    file_path: Path  # lexical: under snapshots/<name>/
    size_on_disk: int
    problem: str | None = None  # why it cannot be read as a file of the repo
    status: str = "malformed"  # the status a problem entry is reported with

    @property
    def file_name(self) -> str:
        return self.file_path.name


@dataclass
class _Rev:
    commit_hash: str  # the resolved commit (the folder name when it resolves to none)
    refs: list[str]
    snapshot_path: Path
    files: list[_Entry]
    refusal: str | None  # set when the snapshot name is not a commit and resolves to none


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    repo_path: Path
    revisions: list[_Rev]


@dataclass
class _CacheInfo:
    repos: list[_Repo]
    warnings: list[str]


def _hub_scan(cache_dir: Path) -> _CacheInfo:
    """Every repo of the cache, walked by its layout (see `_internal/hubpath.py`).

    Not `huggingface_hub.scan_cache_dir`: it drops a whole repo for one dangling blob link
    (CorruptedCacheException, a mere warning) and does not descend into directory links, so
    files would hide from the scan. Here a broken entry is reported on its own ("malformed"),
    the rest of the repo is still classified, and directory links are followed while they stay
    inside the cache (a link leaving it is refused).
    """
    from safeload._internal.hubpath import repo_id_from_folder

    if not cache_dir.is_dir():
        raise SafeloadError(f"no Hugging Face cache at {safe_text(cache_dir)}",
                            hint="pass --cache-dir, or set HF_HUB_CACHE / HF_HOME")
    repos: list[_Repo] = []
    warnings: list[str] = []
    for child in sorted(cache_dir.iterdir()):
        if child.name.startswith(".") or not child.is_dir() or child.name == "blobs":
            continue
        ident = repo_id_from_folder(child.name)
        if ident is None:
            warnings.append(f"{child}: not a Hugging Face repo folder (no valid repo id in its "
                            "name); skipped")
            continue
        snapshots = child / "snapshots"
        if not snapshots.is_dir():
            warnings.append(f"{child}: no snapshots folder; nothing to scan")
            continue
        refs = _refs(child)
        revs = [_revision(ident, child, snap, refs, cache_dir)
                for snap in sorted(snapshots.iterdir()) if snap.is_dir()]
        repos.append(_Repo(ident[0], ident[1], child, revs))
    return _CacheInfo(repos, warnings)


def _refs(repo_dir: Path) -> dict[str, list[str]]:
    """Snapshot folder name -> ref names, read verbatim as huggingface_hub reads them."""
    out: dict[str, list[str]] = {}
    refs = repo_dir / "refs"
    for ref in sorted(refs.rglob("*")) if refs.is_dir() else []:
        try:
            if ref.is_file():
                out.setdefault(ref.read_text(errors="replace").strip(), []).append(
                    ref.relative_to(refs).as_posix())
        except OSError:
            continue
    return out


def _revision(ident: tuple[str, str], repo_dir: Path, snap: Path,
              refs: dict[str, list[str]], cache_root: Path) -> _Rev:
    from safeload._internal.hubpath import HubFile, resolve_commit

    refusal = None
    try:
        commit = resolve_commit(HubFile(ident[0], ident[1], snap.name, repo_dir, ""))
    except UnsafePathError as exc:
        commit, refusal = snap.name, safe_text(str(exc))
    names = sorted(set(refs.get(snap.name, [])) | set(refs.get(commit, [])))
    return _Rev(commit, names, snap, _walk(snap, cache_root), refusal)


def _walk(snapshot: Path, cache_root: Path) -> list[_Entry]:
    """Every file under a snapshot; directory links followed only inside the cache, once."""
    root_real = os.path.realpath(cache_root)
    out: list[_Entry] = []
    seen: set[str] = set()
    todo = [snapshot]
    while todo:
        d = todo.pop()
        real = os.path.realpath(d)
        if real in seen:
            continue
        seen.add(real)
        try:
            children = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            out.append(_Entry(d, 0, f"cannot list the folder ({exc.strerror})", "error"))
            continue
        for e in children:
            p = Path(e.path)
            try:
                is_dir = e.is_dir(follow_symlinks=True)
                is_link = e.is_symlink()
                exists = is_dir or e.is_file(follow_symlinks=True) or \
                    os.path.exists(p)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    out.append(_Entry(p, 0, "a dangling link loop: it leads to no file"))
                else:
                    out.append(_Entry(p, 0, f"cannot be read ({exc.strerror})", "error"))
                continue
            if not exists:
                target = os.readlink(p) if is_link else "?"
                out.append(_Entry(p, 0, f"a dangling link (to {safe_text(target)}): its blob "
                                        "is missing; download the file again"))
            elif is_dir:
                target_real = os.path.realpath(p)
                if is_link and not (target_real == root_real
                                    or target_real.startswith(root_real + os.sep)):
                    out.append(_Entry(p, 0, f"a folder link leaving the cache (to "
                                            f"{safe_text(target_real)}); not followed",
                                      "refused"))
                else:
                    todo.append(p)
            else:
                try:
                    size = os.stat(p).st_size
                except OSError:
                    size = 0
                out.append(_Entry(p, size))
    return out


def _selected(repos: Sequence[str] | None, cache: _CacheInfo) -> tuple[list[_Repo], list[str]]:
    infos = sorted(cache.repos, key=lambda r: (r.repo_type, r.repo_id))
    if not repos:
        return infos, []
    wanted = {r.casefold(): r for r in repos}
    chosen = [r for r in infos if r.repo_id.casefold() in wanted]
    found = {r.repo_id.casefold() for r in chosen}
    return chosen, [orig for key, orig in wanted.items() if key not in found]


def _revisions(repo: _Repo) -> list[_Rev]:
    return sorted(repo.revisions, key=lambda r: (r.commit_hash, r.snapshot_path.name))


def _first_hop(path: Path) -> str | None:
    """The file name of the first symlink hop (the blob the snapshot names), never realpath."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None  # not a link: a no-symlink cache (Windows) keeps no digest in names


def _tree_digests(repo_path: Path, commit: str) -> dict[str, str]:
    """`trees/<commit>.json` (hub 2.x, snapshot_download): LFS path -> sha256, when present."""
    try:
        doc = strictjson.loads((repo_path / "trees" / f"{commit}.json").read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    files = doc.get("files") if isinstance(doc, dict) else None
    out: dict[str, str] = {}
    if isinstance(files, dict):
        for name, info in files.items():
            sha = info.get("lfs_sha256") if isinstance(info, dict) else None
            if isinstance(name, str) and isinstance(sha, str) and _SHA256_NAME.fullmatch(sha):
                out[name] = sha
    return out


def _hash(opened: OpenedFile, *, git: bool) -> tuple[str, str | None]:
    """sha256 (and the git blob sha1 when `git`) of the held descriptor, in one pass."""
    size = opened.identity.size
    h = hashlib.sha256()
    g = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False) if git else None
    scratch = memoryview(bytearray(_CHUNK))
    pos = 0
    while pos < size:
        n = os.preadv(opened.fd, [scratch], pos)
        if n <= 0:
            raise OSError(f"{opened.path}: file shrank while it was being read")
        h.update(scratch[:n])
        if g is not None:
            g.update(scratch[:n])
        pos += n
    return h.hexdigest(), (g.hexdigest() if g is not None else None)


def _is_weight(name: str, ins: Inspection) -> bool:
    return ins.verdict != "skipped" or name.lower().endswith(WEIGHT_SUFFIXES)


@dataclass
class _Held:
    """A classified file, the handle its bytes were read through, and what the pipeline's
    verify and admit stages made of it (kept for conversion)."""

    info: CacheFile
    opened: OpenedFile | None
    admitted: Admitted | None = None

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()


@dataclass
class _Context:
    """What every file of one run is judged against (read once, not per file)."""

    root: Path
    store: TrustStore
    state: str
    observations: Any
    meter: _Meter
    remember: bool  # keep computed digests in the verification cache (never in a dry run)
    converting: bool  # admit pickles for conversion (records first-use observations)

    @classmethod
    def make(cls, root: Path, meter: _Meter, *, remember: bool,
             converting: bool = False) -> _Context:
        from safeload.trust import TrustStore, load_observations

        store = TrustStore.load()
        return cls(root, store, store.state_digest(), load_observations(store), meter, remember,
                   converting)


def _classify(rev: CacheRevision, entry: _Entry, refusal: str | None, tree: dict[str, str],
              ctx: _Context) -> _Held | None:
    """Classify one snapshot entry; None when it is not a weight file. The handle stays open.

    A problem entry (dangling or escaping link), an entry that is not what the Hub client
    writes, and every file of a snapshot whose name resolves to no commit are reported on
    their own, whatever their name: nothing hides behind a broken entry.
    """
    from safeload._internal.hubpath import HubFile, check_held

    file_path = entry.file_path
    name = Path(file_path).relative_to(rev.snapshot).as_posix()
    blob = _first_hop(file_path)
    if entry.problem is not None:
        return _Held(CacheFile(name, str(file_path), 0, blob, "unknown", entry.status,
                               findings=[entry.problem]), None)
    if refusal is not None:
        return _Held(CacheFile(name, str(file_path), entry.size_on_disk, blob, "unknown",
                               "refused", findings=[refusal]), None)
    snap = Path(rev.snapshot)
    hub = HubFile(rev.repo_type, rev.repo_id, snap.name, snap.parent.parent, name)
    try:
        # A snapshot link must resolve inside the cache (the shared Xet store included).
        opened = OpenedFile.open(file_path, root=ctx.root)
    except UnsafePathError as exc:
        return _Held(CacheFile(name, str(file_path), 0, blob, "unknown", "refused",
                               findings=[safe_text(str(exc))]), None)
    except OSError as exc:
        return _Held(CacheFile(name, str(file_path), 0, blob, "unknown", "error",
                               findings=[safe_text(str(exc))]), None)
    try:
        try:
            check_held(hub, opened.fd)
        except UnsafePathError as exc:
            opened.close()
            return _Held(CacheFile(name, str(file_path), entry.size_on_disk, blob, "unknown",
                                   "refused", findings=[safe_text(str(exc))]), None)
        ins = inspect_bytes(opened.mapping(), name=name)
        if not _is_weight(name, ins):
            opened.close()
            return None
        info = CacheFile(name, str(file_path), opened.identity.size, blob, ins.format, "")
        _check(info, opened, ins, rev, tree, ctx)
        admitted = None
        if info.status not in BAD_STATUSES:
            admitted = _admit(info, opened, ins, rev, ctx)
        return _Held(info, opened, admitted)
    except BaseException:
        opened.close()
        raise


def _admit(info: CacheFile, opened: OpenedFile, ins: Inspection, rev: CacheRevision,
           ctx: _Context) -> Admitted | None:
    """What a load (or, converting, a conversion) of this file decides: the pipeline's verify
    and admit stages: revocations, pins, signatures, namespace bindings, revision locks, the
    licence policy and `pickles: refuse`. A refusal makes the file "refused"; a check that
    cannot be decided (a signature safeload cannot read) makes it "error"."""
    assert info.sha256 is not None
    converting = ctx.converting and ins.format in PICKLE_FORMATS
    try:
        verified = pipeline.verify(
            opened, pipeline.Origin(rev.repo_id, rev.commit, info.name), store=ctx.store,
            observe=converting, remember=ctx.remember, sha256=info.sha256)
        return pipeline.admit(verified, "convert" if converting else "report", inspection=ins)
    except RefusedError as exc:
        info.status = "refused"
        info.findings.insert(0, safe_text(str(exc)))
    except SafeloadError as exc:
        info.status = "error"
        info.findings.insert(0, safe_text(str(exc)))
    return None


def _check(info: CacheFile, opened: OpenedFile, ins: Inspection, rev: CacheRevision,
           tree: dict[str, str], ctx: _Context) -> None:
    from safeload._internal.converter import converted_path
    from safeload.trust import Pin

    blob = info.blob
    git = blob is not None and bool(_GIT_NAME.fullmatch(blob))
    sha = None if git else verify_cache.lookup(opened.identity, ctx.state)
    git_sha = None
    if sha is None:
        sha, git_sha = _hash(opened, git=git)
        if ctx.remember and not opened.changed():
            verify_cache.remember(opened.identity, ctx.state, sha)
    info.sha256 = sha
    ctx.meter.add(info.size, f"{rev.label}: {info.name}")
    expected = [e for e in (blob if blob and _SHA256_NAME.fullmatch(blob) else None,
                            tree.get(info.name)) if e]
    if expected or git:
        good = all(e == sha for e in expected) and (not git or git_sha == blob)
        info.integrity = "ok" if good else "mismatch"
    if info.integrity == "mismatch":
        info.findings.append(f"content (sha256 {sha}) does not match the name the cache gives "
                             f"it ({', '.join(expected) or blob})")
    info.findings.extend(safe_text(f.message) for f in ins.findings[:5])
    info.converted = ins.format in PICKLE_FORMATS and converted_path(sha) is not None
    info.signed = rev.signed or (Path(rev.snapshot) / f"{info.name}.sig").is_file()
    target = Pin(sha, repo=rev.repo_id, revision=rev.commit, file=info.name).target
    pin = ctx.store.find_pin(target) or ctx.observations.find_pin(target)
    info.pinned = "no" if pin is None else "yes" if pin.sha256 == sha else "mismatch"
    info.status = _status(info, ins)


def _status(info: CacheFile, ins: Inspection) -> str:
    if info.integrity == "mismatch":
        return "tampered"
    if ins.verdict == "unsafe":
        return "unsafe"
    # A pin mismatch is refused by the trust stage (`_admit`), with the reason.
    if ins.format == "safetensors":
        return "safetensors"
    if ins.format in PICKLE_FORMATS:
        return "converted" if info.converted else "convertible"
    return "unsupported"  # numpy, or a weight format safeload does not read (gguf, onnx...)


def _revision_info(repo: _Repo, rev: _Rev) -> CacheRevision:
    snap = Path(rev.snapshot_path)
    return CacheRevision(repo.repo_id, repo.repo_type, rev.commit_hash, sorted(rev.refs),
                         str(snap), (snap / "model.sig").is_file())


def _weight_candidates(rev: _Rev) -> list[_Entry]:
    """Snapshot entries in a stable order."""
    return sorted(rev.files, key=lambda e: e.file_path.as_posix())


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")


def _pickle_name(name: str) -> bool:
    return name.lower().endswith(_PICKLE_SUFFIXES)


def _estimate(revs: list[tuple[Any, Any]]) -> tuple[int, int]:
    """Cheap totals for the progress bar: (weight-ish bytes, pickle-ish bytes), by name only."""
    weights = pickles = 0
    for _, rev in revs:
        for f in rev.files:
            name = str(f.file_name)
            if name.lower().endswith(WEIGHT_SUFFIXES):
                weights += f.size_on_disk
            if _pickle_name(name):
                pickles += f.size_on_disk
    return weights, pickles


def scan_cache(cache_dir: str | os.PathLike[str] | None = None, *,
               repos: Sequence[str] | None = None,
               progress: ProgressFn | None = None) -> CacheScan:
    """Classify every weight file of every cached revision (or of `repos`). Writes nothing.

    Raises:
        SafeloadError: there is no cache at `cache_dir`.
        TrustStoreError: the trust store (read for pins) is unusable.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    info = _hub_scan(root)
    chosen, missing = _selected(repos, info)
    pairs = [(repo, rev) for repo in chosen for rev in _revisions(repo)]
    ctx = _Context.make(root, _Meter(_estimate(pairs)[0], progress), remember=False)
    out: list[CacheRevision] = []
    for repo, rev in pairs:
        cr = _revision_info(repo, rev)
        tree = _tree_digests(Path(repo.repo_path), rev.commit_hash)
        for p in _weight_candidates(rev):
            held = _classify(cr, p, rev.refusal, tree, ctx)
            if held is not None:
                held.close()
                cr.files.append(held.info)
        out.append(cr)
    return CacheScan(str(root), out, [safe_text(str(w)) for w in info.warnings], missing)


# ------------------------------------------------------------------------------------------
# Converting


@dataclass
class Outcome:
    """What `convert_cache` did with one weight file."""

    repo_id: str
    commit: str
    name: str
    size: int
    action: str  # converted | already-converted | would-convert | unsafe | tampered | refused
    #              | failed | skipped
    message: str = ""
    output: str | None = None
    hub_path: str | None = None  # the snapshot entry written with write_to_hub_cache
    seconds: float = 0.0


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


def convert_cache(cache_dir: str | os.PathLike[str] | None = None, *,
                  repos: Sequence[str] | None = None, dry_run: bool = False,
                  write_to_hub_cache: bool = False, unsafe_allow_unsandboxed: bool = False,
                  progress: ProgressFn | None = None) -> ConvertReport:
    """Convert every clean pickle in the cache into the converted store (one child a revision).

    Every file goes through the same checks as a load: blob integrity, inspection, the trust
    store (revocations, pins, signatures, namespace bindings) and the licence policy. Unsafe,
    tampered and refused files are reported and left untouched. `dry_run` only classifies.

    Raises:
        SafeloadError: there is no cache at `cache_dir`.
        TrustStoreError: the trust store is unusable.
        KeyboardInterrupt: passes through; nothing partial is left behind.
    """
    started = time.monotonic()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    info = _hub_scan(root)
    chosen, missing = _selected(repos, info)
    pairs = [(repo, rev) for repo in chosen for rev in _revisions(repo)]
    weights, pickles = _estimate(pairs)
    ctx = _Context.make(root, _Meter(weights + (0 if dry_run else pickles), progress),
                        remember=not dry_run, converting=not dry_run)
    report = ConvertReport(str(root), dry_run, [], [], [], [safe_text(str(w)) for w in
                                                          info.warnings], missing, 0.0, 0)
    for repo, rev in pairs:
        cr = _revision_info(repo, rev)
        tree = _tree_digests(Path(repo.repo_path), rev.commit_hash)
        held: list[_Held] = []
        try:
            for p in _weight_candidates(rev):
                h = _classify(cr, p, rev.refusal, tree, ctx)
                if h is not None:
                    held.append(h)
            _convert_revision(cr, held, ctx, report, dry_run=dry_run,
                              write_to_hub_cache=write_to_hub_cache,
                              repo_path=Path(repo.repo_path),
                              unsafe_allow_unsandboxed=unsafe_allow_unsandboxed)
        finally:
            for h in held:
                h.close()
    report.seconds = time.monotonic() - started
    return report


def _convert_revision(cr: CacheRevision, held: list[_Held], ctx: _Context,
                      report: ConvertReport, *, dry_run: bool, write_to_hub_cache: bool,
                      repo_path: Path, unsafe_allow_unsandboxed: bool) -> None:
    from safeload._internal.converter import convert_many

    todo: list[tuple[_Held, Admitted]] = []
    outcomes: dict[str, Outcome] = {}
    for h in held:
        f = h.info
        o = Outcome(cr.repo_id, cr.commit, f.name, f.size, "skipped")
        outcomes[f.name] = o
        if f.status in ("tampered", "malformed", "unsafe", "refused", "error"):
            o.action = f.status if f.status != "error" else "failed"
            o.message = "; ".join(f.findings)
        elif f.status in ("safetensors", "unsupported"):
            o.message = f"{f.format}: nothing to convert"
        elif dry_run:
            o.action = "already-converted" if f.converted else "would-convert"
        else:
            assert h.admitted is not None  # admitted by the classification (see _admit)
            todo.append((h, h.admitted))
    report.outcomes.extend(outcomes.values())
    if dry_run:
        return
    meter = ctx.meter
    start = meter.done
    # Counted like the total was estimated (by names), so the bar ends at 100%.
    rev_bytes = sum(h.info.size for h in held if _pickle_name(h.info.name))
    results: dict[str, Converted] = {}
    if todo:
        meter.show(f"{cr.label}: converting {len(todo)} file(s)")
        mark = time.monotonic()
        convs = convert_many([(t[0].info.path, t[1].verified.held) for t in todo],
                             source_sha256s=[t[0].info.sha256 for t in todo],
                             unsafe_allow_unsandboxed=unsafe_allow_unsandboxed,
                             progress=lambda n: meter.show(extra=min(n, rev_bytes)))
        seconds = round(time.monotonic() - mark, 3)
        for (h, admitted), conv in zip(todo, convs, strict=True):
            o = outcomes[h.info.name]
            o.seconds = seconds
            if isinstance(conv, Exception):
                o.action = "refused" if isinstance(conv, RefusedError) else "failed"
                o.message = safe_text(str(conv))
                continue
            results[h.info.name] = conv
            o.output = str(conv.path)
            if conv.cache_hit:
                o.action = "already-converted"
                continue
            o.action = "converted"
            report.converted_bytes += h.info.size
            pipeline.record(admitted, "convert", conv)
    meter.done = start
    meter.add(rev_bytes)
    if write_to_hub_cache and results:
        _write_hub(cr, results, outcomes, report, ctx.root, repo_path)


# ------------------------------------------------------------------------------------------
# Writing conversions into the Hub cache (opt-in)


def hub_name(name: str) -> str:
    """The name transformers/diffusers look for: `pytorch_model-00001-of-00002.bin` ->
    `model-00001-of-00002.safetensors`, `diffusion_pytorch_model.bin` ->
    `diffusion_pytorch_model.safetensors`, `model.pt` -> `model.safetensors`."""
    path = Path(name)
    base = path.name
    stem = base.rsplit(".", 1)[0] if "." in base else base
    if stem.startswith("pytorch_model"):
        stem = "model" + stem[len("pytorch_model"):]
    return (path.parent / f"{stem}.safetensors").as_posix()


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _write_blob_copy(src: Path, blobs: Path, expected: str) -> Path:
    """Copy `src` to blobs/<sha256>, hashing as it copies; atomic, never half-written."""
    blobs.mkdir(parents=True, exist_ok=True)
    final = blobs / expected
    if final.exists():
        with OpenedFile.open(final) as held:
            if _hash(held, git=False)[0] == expected:
                return final
        raise ConversionError(f"{final}: a blob with this name already exists with other "
                              "content; left untouched")
    tmp = blobs / f".{expected}.safeload-partial-{os.getpid()}"
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            while chunk := fin.read(_CHUNK):
                h.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if h.hexdigest() != expected:
            raise ConversionError(f"{src}: the converted file changed since it was validated")
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _write_blob_bytes(data: bytes, blobs: Path) -> Path:
    """A regular (non-LFS) file: its blob is named by its git blob sha1."""
    blobs.mkdir(parents=True, exist_ok=True)
    final = blobs / _git_sha1(data)
    if final.exists():
        return final
    tmp = blobs / f".{final.name}.safeload-partial-{os.getpid()}"
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _link(snapshot: Path, rel: str, blob: Path) -> str:
    """snapshots/<commit>/<rel> -> relative path to the blob; "exists" if already so linked."""
    link = snapshot / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, link.parent)
    if os.path.lexists(link):
        return "exists" if os.path.islink(link) and os.readlink(link) == target else "other"
    os.symlink(target, link)  # atomic; never replaces an entry the snapshot already has
    return "written"


def _unhide(repo_path: Path, commit: str, rel: str) -> None:
    marker = repo_path / ".no_exist" / commit / rel
    if marker.is_file() and not marker.is_symlink():
        marker.unlink()  # it would make the hub report the file as absent


def _read_index(snapshot: Path, name: str, cache_root: Path) -> dict[str, Any] | None:
    """A `*.bin.index.json`, read through a held handle and checked against its blob name."""
    path = snapshot / name
    blob = _first_hop(path)
    with OpenedFile.open(path, root=cache_root) as held:
        data = bytes(held.mapping())
    if blob is not None and _GIT_NAME.fullmatch(blob) and _git_sha1(data) != blob:
        return None
    if blob is not None and _SHA256_NAME.fullmatch(blob) and \
            hashlib.sha256(data).hexdigest() != blob:
        return None
    try:
        doc = strictjson.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("weight_map"), dict) else None


def _write_hub(cr: CacheRevision, results: dict[str, Converted],
               outcomes: dict[str, Outcome], report: ConvertReport, cache_root: Path,
               repo_path: Path) -> None:
    snapshot = Path(cr.snapshot)
    if cr.repo_type != "model":
        report.hub_notes.append(f"{cr.label}: not a model repo; the Hub cache is left as is")
        return
    blobs = repo_path / "blobs"
    present = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*")
               if p.is_file() or p.is_symlink()}
    # Sharded checkpoints: each index decides for its shards, all or nothing.
    indexes = sorted(n for n in present if n.endswith(".bin.index.json"))
    sharded: set[str] = set()
    plans: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for idx in indexes:
        doc = _read_index(snapshot, idx, cache_root)
        folder = Path(idx).parent
        if doc is None:
            report.hub_notes.append(f"{cr.label}: {idx} is unreadable or does not match its "
                                    "blob name; its shards are not written")
            continue
        shards = sorted({(folder / str(v)).as_posix() for v in doc["weight_map"].values()})
        sharded.update(shards)
        missing = [s for s in shards if s not in results]
        if missing:
            report.hub_notes.append(f"{cr.label}: {idx}: not every shard converted "
                                    f"({safe_text(', '.join(missing[:3]))}); none written")
            continue
        plans.append((idx, doc, {s: hub_name(s) for s in shards}))
    singles = [n for n in sorted(results) if n not in sharded]
    for name in singles:
        _hub_file(cr, name, hub_name(name), results[name], outcomes, report, snapshot, blobs,
                  repo_path, present)
    for idx, doc, names in plans:
        ok = all(_hub_file(cr, s, names[s], results[s], outcomes, report, snapshot, blobs,
                           repo_path, present) for s in names)
        if not ok:
            continue
        folder = Path(idx).parent
        weight_map: dict[str, str] = {}
        total = 0
        for s, out in names.items():
            for e in results[s].header.tensors:
                weight_map[e.name] = Path(out).name
                total += e.end - e.begin
        old_meta = doc.get("metadata")
        meta: dict[str, Any] = dict(old_meta) if isinstance(old_meta, dict) else {}
        new = {"metadata": {**meta, "total_size": total},
               "weight_map": dict(sorted(weight_map.items()))}
        target = hub_name(idx[: -len(".index.json")]) + ".index.json"  # keeps the folder
        if target in present:
            report.hub_notes.append(f"{cr.label}: {target} already exists; left untouched")
            continue
        data = (json.dumps(new, indent=2) + "\n").encode()
        state = _link(snapshot, target, _write_blob_bytes(data, blobs))
        _unhide(repo_path, cr.commit, target)
        if state != "other":
            report.hub_written.append(str(snapshot / target))


def _hub_file(cr: CacheRevision, name: str, target: str, conv: Converted,
              outcomes: dict[str, Outcome], report: ConvertReport, snapshot: Path, blobs: Path,
              repo_path: Path, present: set[str]) -> bool:
    link = snapshot / target
    expected = str(conv.report.get("output_sha256", ""))
    if not _SHA256_NAME.fullmatch(expected):
        report.hub_notes.append(f"{cr.label}: {name}: the converted entry has no output digest")
        return False
    if target in present:
        if os.path.islink(link) and _first_hop(link) == expected:
            outcomes[name].hub_path = str(link)  # written by an earlier run
            return True
        report.hub_notes.append(f"{cr.label}: {target} already exists; left untouched")
        return False
    try:
        blob = _write_blob_copy(conv.path, blobs, expected)
    except ConversionError as exc:
        report.hub_notes.append(f"{cr.label}: {name}: {safe_text(str(exc))}")
        return False
    if _link(snapshot, target, blob) == "other":
        report.hub_notes.append(f"{cr.label}: {target} appeared meanwhile; left untouched")
        return False
    _unhide(repo_path, cr.commit, target)
    outcomes[name].hub_path = str(link)
    report.hub_written.append(str(link))
    present.add(target)
    return True


__all__ = ["CacheFile", "CacheRevision", "CacheScan", "ConvertReport", "Outcome", "Progress",
           "HUB_SIGNATURE_WARNING", "convert_cache", "default_cache_dir", "hub_name",
           "scan_cache"]
