"""The torch hub cache (`torch.hub.get_dir()/checkpoints`): scan it, convert its pickles once.

torchvision and timm download pickled weights there with `torch.hub.load_state_dict_from_url`.
The folder has no repos or revisions: it is reported as one revision of repo type `torch-hub`
(so `cache scan --torch-hub` prints, exits and speaks JSON/SARIF as the Hugging Face scan does).
Every file goes through the pipeline's verify and admit stages, like a load (trust store, pins,
licence, `pickles: refuse`); a name carrying torch's `-<sha256 prefix>.` convention must match
the content, or the file is "tampered". Conversion puts each clean pickle into safeload's
converted store, keyed by its digest: a guarded `load_state_dict_from_url` (torch.load of the
cached file) is then served from the converted file with no child. The folder is never written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from safeload import pipeline
from safeload._internal import torchhub
from safeload._internal.opened import OpenedFile
from safeload._internal.reach import text_level
from safeload._internal.text import safe_text
from safeload.errors import SafeloadError, UnsafePathError
from safeload.hfcache.report import (
    BAD_STATUSES,
    CacheFile,
    CacheRevision,
    CacheScan,
    ConvertReport,
    Outcome,
    ProgressFn,
    Status,
    _Meter,
    plan_outcome,
    settle_conversion,
)
from safeload.hfcache.scan import (
    _admit,
    _Context,
    _hash,
    _Held,
    _is_weight,
    _pickle_name,
    _status,
)
from safeload.inspection import inspect_bytes
from safeload.pipeline import PICKLE_FORMATS

REPO_TYPE = "torch-hub"
REPO_ID = "torch-hub"

def _root(checkpoints: str | os.PathLike[str] | None) -> Path:
    root = Path(checkpoints) if checkpoints is not None else torchhub.checkpoints_dir()
    if not root.is_dir():
        raise SafeloadError(f"no torch hub checkpoints folder at {safe_text(root)}",
                            hint="pass the folder, or set TORCH_HOME (torch.hub.get_dir())")
    return root


def _entries(root: Path) -> tuple[list[Path], list[str]]:
    """Every file under the folder (folder links are not followed: torch writes none)."""
    files: list[Path] = []
    warnings: list[str] = []
    for d, dirs, names in os.walk(root):
        for n in sorted(dirs):
            if os.path.islink(os.path.join(d, n)):
                warnings.append(f"{safe_text(os.path.join(d, n))}: a folder link; not followed")
        dirs.sort()
        files.extend(Path(d) / n for n in sorted(names))
    return files, warnings


def _classify(rev: CacheRevision, path: Path, ctx: _Context) -> _Held | None:
    name = path.relative_to(rev.snapshot).as_posix()
    try:
        opened = OpenedFile.open(path, root=ctx.root)
    except UnsafePathError as exc:
        return _Held(CacheFile(name, str(path), 0, None, "unknown", "refused",
                               findings=[safe_text(str(exc))]), None)
    except OSError as exc:
        status: Status = "malformed" if os.path.islink(path) else "error"  # a dangling link
        return _Held(CacheFile(name, str(path), 0, None, "unknown", status,
                               findings=[safe_text(str(exc))]), None)
    try:
        if ctx.store.policy.mode == "strict":
            opened.copy_privately()  # inspected, hashed, judged, converted: one copy
        ins = inspect_bytes(opened.mapping(), name=name, text_ok=text_level(name))
        if not _is_weight(name, ins):
            opened.close()
            return None
        info = CacheFile(name, str(path), opened.identity.size, None, ins.format, "")
        info.sha256, _ = _hash(opened, git=False)
        ctx.meter.add(info.size, f"torch hub: {name}")
        prefix = torchhub.name_prefix(name) if path.parent == ctx.root else None
        if prefix is not None:
            info.integrity = "ok" if info.sha256.startswith(prefix) else "mismatch"
        if info.integrity == "mismatch":
            info.findings.append(f"content (sha256 {info.sha256}) does not start with the "
                                 f"digest its torch hub name gives ({prefix})")
        info.findings.extend(safe_text(f.message) for f in ins.findings[:5])
        from safeload._internal.converter import converted_path

        info.converted = ins.format in PICKLE_FORMATS and converted_path(info.sha256) is not None
        info.signed = (path.parent / f"{path.name}.sig").is_file()
        info.status = _status(info, ins)
        held = _Held(info, opened)
        if info.status not in BAD_STATUSES:
            held.admitted = _admit(info, opened, ins, None, ctx)
        return held
    except BaseException:
        opened.close()
        raise


def _walk(root: Path, ctx: _Context) -> tuple[CacheRevision, list[_Held], list[str]]:
    rev = CacheRevision(REPO_ID, REPO_TYPE, "", [], str(root), False)
    paths, warnings = _entries(root)
    held: list[_Held] = []
    try:
        for p in paths:
            h = _classify(rev, p, ctx)
            if h is not None:
                held.append(h)
                rev.files.append(h.info)
    except BaseException:
        for h in held:
            h.close()
        raise
    return rev, held, warnings


def _estimate(root: Path) -> tuple[int, int]:
    weights = pickles = 0
    for p in _entries(root)[0]:
        try:
            size = p.stat().st_size
        except OSError:
            continue
        weights += size
        pickles += size if _pickle_name(p.name) else 0
    return weights, pickles


def scan_torch_hub(checkpoints: str | os.PathLike[str] | None = None, *,
                   progress: ProgressFn | None = None) -> CacheScan:
    """Classify every weight file of the torch hub checkpoints folder. Writes nothing.

    Raises:
        SafeloadError: there is no such folder.
        TrustStoreError: the trust store is unusable.
    """
    root = _root(checkpoints)
    ctx = _Context.make(root, _Meter(_estimate(root)[0], progress), remember=False)
    rev, held, warnings = _walk(root, ctx)
    for h in held:
        h.close()
    return CacheScan(str(root), [rev], warnings, [])


def convert_torch_hub(checkpoints: str | os.PathLike[str] | None = None, *,
                      dry_run: bool = False, unsafe_allow_unsandboxed: bool = False,
                      progress: ProgressFn | None = None) -> ConvertReport:
    """Convert every clean pickle of the folder into the converted store, in one sandboxed
    child. Unsafe, tampered and refused files are reported and left untouched.

    Raises:
        SafeloadError: there is no such folder.
        TrustStoreError: the trust store is unusable.
    """
    from safeload._internal.converter import convert_many

    started = time.monotonic()
    root = _root(checkpoints)
    weights, pickles = _estimate(root)
    ctx = _Context.make(root, _Meter(weights + (0 if dry_run else pickles), progress),
                        remember=not dry_run, converting=not dry_run)
    rev, held, warnings = _walk(root, ctx)
    report = ConvertReport(str(root), dry_run, [], [], [], warnings, [], 0.0, 0)
    try:
        todo: list[tuple[_Held, Outcome]] = []
        for h in held:
            f = h.info
            o = Outcome(REPO_ID, "", f.name, f.size, "skipped")
            report.outcomes.append(o)
            if plan_outcome(f, o, dry_run=dry_run):
                todo.append((h, o))
        if todo:
            items = []
            for h, _ in todo:
                assert h.opened is not None  # only problem entries have no handle
                items.append((h.info.path, h.opened))
            convs = convert_many(
                items,
                source_sha256s=[h.info.sha256 for h, _ in todo],
                unsafe_allow_unsandboxed=unsafe_allow_unsandboxed)
            for (h, o), conv in zip(todo, convs, strict=True):
                if (done := settle_conversion(o, conv, report)) is not None:
                    assert h.admitted is not None
                    pipeline.record(h.admitted, "convert", done)
    finally:
        for h in held:
            h.close()
    report.seconds = time.monotonic() - started
    return report
