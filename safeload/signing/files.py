"""The model's files against a verified manifest: every signed file present with its digest,
nothing extra beyond the format's ignore rules, no path leaving the directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

from safeload._internal.text import safe_text
from safeload.errors import DigestMismatchError, ManifestMismatchError
from safeload.signing._format import GIT_IGNORES
from safeload.signing._tree import (
    hash_file,
    hash_shards,
    hasher_factory,
    largest_first,
    list_files,
    run_parallel,
)
from safeload.signing.results import SignedManifest


def _relative_inside(path: Path, root: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return rel.as_posix()


def _describe(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(safe_text(n, limit=200) for n in sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_files(
    signed: SignedManifest,
    model_path: Path,
    *,
    known_digests: Mapping[str, str] | None = None,
    max_workers: int | None = None,
    ignore_paths: Sequence[str] = (),
) -> dict[str, str]:
    """Re-hash the model (a directory, or one file) against a verified manifest.

    Returns {manifest name: hex digest}. `ignore_paths` adds paths the verifier was told to
    ignore (relative to the model directory) to those the signature records.

    Raises:
        ManifestMismatchError: missing or extra files.
        DigestMismatchError: a file (or shard) whose digest differs; names the first one.
        UnsafePathError: a symlink or special file that the format does not allow.
        UnsupportedSignatureError: blake3 without the `blake3` package.
        OSError: a file cannot be read.
    """
    m = signed.manifest
    factory = hasher_factory(m.hash_type)
    follow = m.allow_symlinks
    if model_path.is_dir():
        ignore = set(GIT_IGNORES) | set(m.ignore_paths) | {p.strip("/") for p in ignore_paths}
        sig_rel = _relative_inside(Path(signed.signature_path), model_path)
        if sig_rel is not None:
            ignore.add(sig_rel)
        actual = list_files(model_path, ignore=ignore, allow_symlinks=follow)
        expected = {r.path for r in m.resources}
        if "." in expected:
            raise ManifestMismatchError(
                f"{safe_text(signed.signature_path)} signs a single file, but "
                f"{safe_text(model_path)} is a directory"
            )
    else:
        # A single-file model: model_signing 1.1.1 names it ".", the OMS spec its basename.
        names = {r.path for r in m.resources}
        if names not in ({"."}, {model_path.name}):
            raise ManifestMismatchError(
                f"{safe_text(signed.signature_path)} does not sign the single file "
                f"{safe_text(model_path)} (it lists {_describe(list(names), 3)})"
            )
        actual = {next(iter(names)): model_path}
        expected = set(names)
        follow = True  # the caller named this file; links inside a directory are what matter
    if m.method == "shards":
        # Empty files have no shards: the format cannot see them (upstream PR #653).
        actual = {k: v for k, v in actual.items() if k in expected or _size(v) > 0}
    missing = sorted(expected - actual.keys())
    extra = sorted(actual.keys() - expected)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing signed file(s): {_describe(missing)}")
        if extra:
            parts.append(f"file(s) not covered by the signature: {_describe(extra)}")
        raise ManifestMismatchError(
            f"{safe_text(model_path)} does not match {safe_text(signed.signature_path)}: "
            + "; ".join(parts),
            missing=tuple(missing), extra=tuple(extra),
        )
    known = {k: v.lower() for k, v in (known_digests or {}).items()}
    order = largest_first(actual)
    results: dict[str, str] = {}
    if m.method == "files":
        by_path = {r.path: r for r in m.resources}
        todo = [rel for rel in order if not (m.hash_type == "sha256" and rel in known)]
        for rel in order:
            if rel not in todo:
                results[by_path[rel].name] = known[rel]
        digests = run_parallel(
            [partial(hash_file, actual[rel], factory, follow_symlinks=follow) for rel in todo],
            max_workers=max_workers,
        )
        for rel, digest in zip(todo, digests, strict=True):
            results[by_path[rel].name] = digest
        for r in m.resources:
            if results[r.name] != r.digest:
                raise DigestMismatchError(
                    safe_text(model_path / r.path if r.path != "." else model_path),
                    f"{m.hash_type}:{r.digest}", f"{m.hash_type}:{results[r.name]}")
        return results
    assert m.shard_size is not None
    all_shards = run_parallel(
        [partial(hash_shards, actual[rel], factory, m.shard_size, follow_symlinks=follow)
         for rel in order],
        max_workers=max_workers,
    )
    for rel, have in sorted(zip(order, all_shards, strict=True)):
        want = {(r.start or 0, r.end or 0): r for r in m.resources if r.path == rel}
        shown = safe_text(model_path / rel if rel != "." else model_path)
        if set(want) != set(have):
            raise ManifestMismatchError(
                f"{shown}: the signed shards do not cover the file as it is now (size changed)"
            )
        for rng, digest in sorted(have.items()):
            r = want[rng]
            if r.digest != digest:
                raise DigestMismatchError(
                    f"{shown} bytes {rng[0]}..{rng[1]}", f"{m.hash_type}:{r.digest}",
                    f"{m.hash_type}:{digest}")
            results[r.name] = digest
    return results


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


__all__ = ["check_files"]
