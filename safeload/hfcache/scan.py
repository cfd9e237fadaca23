"""Scanning the cache: walk it by the Hub layout, classify each weight file through the
pipeline's verify and admit stages (nothing recorded).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload import pipeline
from safeload._internal import strictjson, verify_cache
from safeload._internal.hashing import digest_fd
from safeload._internal.hubpath import first_hop
from safeload._internal.opened import OpenedFile
from safeload._internal.reach import text_level
from safeload._internal.small_file import REF_LIMIT, TREE_LIMIT, read_small
from safeload._internal.text import get_logger, safe_text
from safeload.errors import RefusedError, SafeloadError, UnsafePathError
from safeload.hfcache.report import (
    _GIT_NAME,
    _SHA256_NAME,
    BAD_STATUSES,
    WEIGHT_SUFFIXES,
    CacheFile,
    CacheRevision,
    CacheScan,
    ProgressFn,
    Status,
    _Meter,
    default_cache_dir,
)
from safeload.inspection import Inspection, inspect_bytes
from safeload.pipeline import PICKLE_FORMATS, Admitted

if TYPE_CHECKING:
    from safeload.trust import TrustStore


_logger = get_logger(__name__)

# ------------------------------------------------------------------------------------------
# Scanning


@dataclass(frozen=True)
class _Entry:
    """A file of a snapshot found by the walk, or a problem entry (dangling or escaping link)."""

    file_path: Path  # lexical: under snapshots/<name>/
    size_on_disk: int
    problem: str | None = None  # why it cannot be read as a file of the repo
    status: Status = "malformed"  # the status a problem entry is reported with

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
        data = read_small(ref, REF_LIMIT) if ref.is_file() else None
        if data is not None:
            out.setdefault(data.decode(errors="replace").strip(), []).append(
                ref.relative_to(refs).as_posix())
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
    return first_hop(path)  # a no-symlink cache (Windows) keeps no digest in names


def _tree_digests(repo_path: Path, commit: str) -> dict[str, str]:
    """`trees/<commit>.json` (hub 2.x, snapshot_download): LFS path -> sha256, when present."""
    data = read_small(repo_path / "trees" / f"{commit}.json", TREE_LIMIT)
    try:
        doc = strictjson.loads(data) if data is not None else None
    except (ValueError, RecursionError):
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
    """sha256 (and the git blob sha1 when `git`) of the held descriptor, in one pass; of the
    private copy in strict mode."""
    if opened.private:
        data = memoryview(opened.mapping())
        g = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False) if git else None
        if g is not None:
            g.update(data)
        return opened.sha256(), (g.hexdigest() if g is not None else None)
    return digest_fd(opened.fd, opened.size, git=git, name=opened.path)


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
        from safeload.trust import load_observations

        store = pipeline.load_store()
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
        if ctx.store.policy.mode == "strict":
            opened.copy_privately()  # inspected, hashed, judged, converted: one copy
        ins = inspect_bytes(opened.mapping(), name=name, text_ok=text_level(name))
        if not _is_weight(name, ins):
            opened.close()
            return None
        info = CacheFile(name, str(file_path), opened.identity.size, blob, ins.format, "")
        _check(info, opened, ins, rev, tree, ctx)
        admitted = None
        if info.status not in BAD_STATUSES:
            admitted = _admit(info, opened, ins,
                              pipeline.Origin(rev.repo_id, rev.commit, info.name), ctx)
        return _Held(info, opened, admitted)
    except BaseException:
        opened.close()
        raise


def _admit(info: CacheFile, opened: OpenedFile, ins: Inspection,
           origin: pipeline.Origin | None, ctx: _Context) -> Admitted | None:
    """What a load (or, converting, a conversion) of this file decides: the pipeline's verify
    and admit stages: revocations, pins, signatures, namespace bindings, revision locks, the
    licence policy and `pickles: refuse`. A refusal makes the file "refused"; a check that
    cannot be decided (a signature safeload cannot read) makes it "error"."""
    assert info.sha256 is not None
    converting = ctx.converting and ins.format in PICKLE_FORMATS
    try:
        verified = pipeline.verify(opened, origin, store=ctx.store, observe=converting,
                                   remember=ctx.remember, sha256=info.sha256)
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
    strict = ctx.store.policy.mode == "strict"  # no stamp-keyed digest in strict mode
    sha = None if git or strict else verify_cache.lookup(opened.identity, ctx.state)
    git_sha = None
    if sha is None:
        sha, git_sha = _hash(opened, git=git)
        if ctx.remember and not strict and not opened.changed():
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


def _status(info: CacheFile, ins: Inspection) -> Status:
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


