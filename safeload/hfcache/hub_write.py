"""Writing conversions into the Hub snapshots (opt-in, `--write-to-hub-cache`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload._internal import strictjson
from safeload._internal.atomic import write_atomic
from safeload._internal.hashing import git_blob_id
from safeload._internal.opened import OpenedFile
from safeload._internal.text import get_logger, safe_text
from safeload.errors import ConversionError
from safeload.hfcache.report import (
    _CHUNK,
    _GIT_NAME,
    _SHA256_NAME,
    CacheRevision,
    ConvertReport,
    Outcome,
)
from safeload.hfcache.scan import _first_hop, _hash

if TYPE_CHECKING:
    from safeload._internal.converter import Converted


_logger = get_logger(__name__)

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
    final = blobs / git_blob_id(data)
    if final.exists():
        return final
    write_atomic(final, data, durable=True)
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
    if blob is not None and _GIT_NAME.fullmatch(blob) and git_blob_id(data) != blob:
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


__all__ = ["hub_name"]
