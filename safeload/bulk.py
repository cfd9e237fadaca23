"""Bulk conversion of a shared model store: one pure function, and deterministic shards of it.

`convert_one(src, dst_root)` is what a Kubernetes Indexed Job, a Dask cluster or a Ray Data
pipeline runs per file. It is idempotent (the output is named by the input's sha256 and an
existing output that matches the input byte for byte is reused), publishes atomically (the
sandboxed converter writes into a temporary folder, the validated file is renamed into place,
so a killed worker leaves no file under an output name), verifies the input through the same
pipeline stages as `safeload.load` (trust store, licence, inspection, pickle policy, provenance
entry), and returns one JSON-able record instead of raising, so a cluster's result list is
the report.

`run_shard` is `safeload convert --manifest`: line j of the manifest goes to shard j mod N.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safeload._internal.text import safe_text
from safeload._version import __version__
from safeload.errors import (
    ConversionError,
    RefusedError,
    SafeloadError,
)

Decision = Literal["converted", "reused", "skipped", "refused", "error"]
DECISIONS: tuple[Decision, ...] = ("converted", "reused", "skipped", "refused", "error")
RECORD_VERSION = 1
OUTPUT_SUFFIX = ".safetensors"
SHARD_ENV = "JOB_COMPLETION_INDEX"  # set by a Kubernetes Indexed Job in every pod


def output_path(dst_root: str | os.PathLike[str], sha256: str) -> Path:
    """Where the conversion of the input with this digest lives under `dst_root`."""
    return Path(os.path.abspath(dst_root)) / f"{sha256}{OUTPUT_SUFFIX}"


def _record(src: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": RECORD_VERSION, "safeload": __version__, "source": src,
        "input_sha256": None, "input_size": None, "format": None, "output": None,
        "output_sha256": None, "output_size": None, "tensors": None, "decision": "error",
        "sandbox_layers": [], "error": None, "error_type": None, "note": None, "seconds": 0.0}
    out.update(fields)
    return out


def _policy_store(policy: Any) -> Any:
    """The trust store every gate judges by, with `policy` applied on top of its own: the
    stricter of the two on every field (a job may tighten a node's policy, never loosen it)."""
    from dataclasses import replace

    from safeload import pipeline
    from safeload.fleet.merge import stricter_policy
    from safeload.trust.model import Policy

    store = pipeline.load_store()
    if policy is None:
        return store
    if isinstance(policy, Mapping):
        policy = Policy.from_dict(dict(policy), source="convert_one(policy=...)")
    if not isinstance(policy, Policy):
        raise TypeError("policy must be a safeload.trust.Policy, a dict of its fields, or None")
    return replace(store, policy=stricter_policy(
        store.policy, policy, names=("trust store", "convert_one(policy=...)")))


def convert_one(src: str | os.PathLike[str], dst_root: str | os.PathLike[str], *,
                policy: Any = None, unsafe_allow_unsandboxed: bool = False) -> dict[str, Any]:
    """Convert one checkpoint into `dst_root/<input sha256>.safetensors`; never raises for
    what the file is (a refusal or a failed conversion is the record's `decision`).

    `policy`: a `safeload.trust.Policy` (or a dict of its fields) applied over the trust
    store's own; each field takes the stricter value. Returns a JSON-able dict: `source`,
    `input_sha256`, `input_size`, `format`, `output`, `output_sha256`, `output_size`,
    `tensors`, `decision` (converted, reused, skipped: not a pickle, refused, error),
    `sandbox_layers` (none for a reused output: this run did not convert it), `error`,
    `error_type`, `note`, `seconds`.
    """
    started = time.monotonic()
    name = os.path.abspath(os.fspath(src))
    try:
        fields = _convert(name, dst_root, policy, unsafe_allow_unsandboxed)
    except RefusedError as exc:
        fields = {"decision": "refused", "error": str(exc), "error_type": type(exc).__name__}
    except (SafeloadError, OSError, ValueError, TypeError) as exc:
        fields = {"decision": "error", "error": safe_text(str(exc), limit=2000),
                  "error_type": type(exc).__name__}
    fields.setdefault("error", None)
    return _record(name, **fields, seconds=round(time.monotonic() - started, 6))


def _convert(name: str, dst_root: str | os.PathLike[str], policy: Any,
             unsafe: bool) -> dict[str, Any]:
    from safeload import pipeline

    store = _policy_store(policy)
    held = pipeline.open_input(name)
    fields: dict[str, Any] = {"input_size": held.size}
    try:
        verified = pipeline.verify(held, pipeline.locate(held), store=store)
        fields["input_sha256"] = verified.sha256
        try:
            # "report", not "convert": a safetensors file is skipped, not refused.
            admitted = pipeline.admit(verified, "report")
        except RefusedError as exc:
            fields.update(decision="refused", error=str(exc), error_type=type(exc).__name__)
            return fields
        fields["format"] = admitted.inspection.format
        if not admitted.is_pickle:  # safetensors, numpy: already safe to load, nothing to do
            return {**fields, "decision": "skipped",
                    "note": f"{admitted.inspection.format}: not a pickle, nothing to convert"}
        dst = output_path(dst_root, verified.sha256)
        dst.parent.mkdir(parents=True, exist_ok=True)
        conv, reused = _publish(admitted, dst, unsafe)
    finally:
        held.close()
    pipeline.record(admitted, "convert", conv)
    fields.update(
        decision="reused" if reused else "converted", output=str(dst),
        output_sha256=conv.report.get("output_sha256"),
        output_size=conv.report.get("output_size"), tensors=len(conv.header.tensors),
        sandbox_layers=list(conv.report.get("layers", {}).get("applied", [])))
    return fields


def _publish(admitted: Any, dst: Path, unsafe: bool) -> tuple[Any, bool]:
    """Convert into `dst`, or reuse what is there if it matches the input byte for byte.

    Returns (Converted, reused). An existing file that does not match (damaged, or written by
    something else) is replaced by a fresh conversion, never trusted.
    """
    from safeload import pipeline
    from safeload._internal.atomic import copy_atomic
    from safeload._internal.convert_worker import SMALL_INPUT
    from safeload._internal.converter import existing_output

    held = admitted.verified.held
    sha = admitted.verified.sha256
    replace = False
    if dst.exists():
        found = existing_output(dst, held, sha)
        if found is not None:
            return found, True
        replace = True
    try:
        if held.size <= SMALL_INPUT:
            # Through the process's long-lived converter worker and the converted store (no
            # process start per file), then copied: the store entry was validated against
            # the source, and the copy is published whole (temp file, then link or rename).
            conv = pipeline.convert_to(admitted, None, unsafe_allow_unsandboxed=unsafe)
            copy_atomic(conv.path, dst, overwrite=replace)
            published = existing_output(dst, held, sha)  # what was published, checked again
            if published is None:
                raise ConversionError(f"{dst}: the published copy does not match the input",
                                      hint="convert again")
            return replace_path(conv, dst), False
        return pipeline.convert_to(admitted, dst, overwrite=replace,
                                   unsafe_allow_unsandboxed=unsafe), False
    except FileExistsError:  # another worker published the same content meanwhile
        found = existing_output(dst, held, sha)
        if found is None:
            raise ConversionError(f"{dst}: another writer published a file here that does not "
                                  "match the input", hint="remove it and convert again") from None
        return found, True


def replace_path(conv: Any, path: Path) -> Any:
    from dataclasses import replace

    return replace(conv, path=path)


# --------------------------------------------------------------------------------------------
# Shards


@dataclass(frozen=True)
class ManifestEntry:
    line: int  # 1-based line number in the manifest (for messages)
    index: int  # 0-based position among the manifest's entries: the shard key
    path: str


def read_manifest(manifest: str | os.PathLike[str]) -> list[ManifestEntry]:
    """One input path per line; blank lines and lines starting with `#` are not entries.
    Relative paths are relative to the manifest's folder (a manifest on a shared volume reads
    the same from every pod)."""
    with open(manifest, "rb") as f:
        return parse_manifest(f.read(), manifest)


def parse_manifest(data: bytes, manifest: str | os.PathLike[str]) -> list[ManifestEntry]:
    base = os.path.dirname(os.path.abspath(manifest))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{os.fspath(manifest)}: not UTF-8 text ({exc})") from None
    out: list[ManifestEntry] = []
    for number, raw in enumerate(text.splitlines(), 1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        out.append(ManifestEntry(number, len(out), os.path.normpath(os.path.join(base, entry))))
    return out


def shard_of(entries: list[ManifestEntry], index: int, count: int) -> list[ManifestEntry]:
    """Entry j belongs to shard j mod count: deterministic and disjoint."""
    if count < 1:
        raise ValueError(f"the shard count must be at least 1, not {count}")
    if not 0 <= index < count:
        raise ValueError(f"the shard index must be in 0..{count - 1}, not {index}")
    return [e for e in entries if e.index % count == index]


def shard_index(given: int | None, environ: Mapping[str, str] | None = None) -> int:
    """`--shard-index`, else the Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`."""
    if given is not None:
        return given
    env = os.environ if environ is None else environ
    raw = env.get(SHARD_ENV)
    if raw is None:
        raise ValueError(f"no --shard-index and no {SHARD_ENV} in the environment")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{SHARD_ENV}={safe_text(raw, limit=40)} is not an integer") from None


def results_name(index: int, count: int) -> str:
    return f"results-{index:05d}-of-{count:05d}.jsonl"


def ledger_name(index: int, count: int) -> str:
    return f"ledger-{index:05d}-of-{count:05d}"


def run_shard(manifest: str | os.PathLike[str], index: int, count: int, dst_root: Path,
              results: Path, *, policy: Any = None,
              unsafe_allow_unsandboxed: bool = False) -> Iterator[dict[str, Any]]:
    """Convert this shard's entries of `manifest`, yielding each record as it is decided.

    The results file starts with a shard line (index, count, the manifest's digest and entry
    counts: `--merge` checks that shards agree and that none is missing or short). It is
    written as `<results>.partial` and renamed when the shard is done, so a results file that
    exists is whole (a killed shard leaves only a `.partial`; its rerun reuses every output
    already published and writes the file again).

    Raises:
        OSError, ValueError: the manifest cannot be read; the index is not in 0..count-1.
    """
    import hashlib

    with open(manifest, "rb") as f:
        data = f.read()
    entries = parse_manifest(data, manifest)
    mine = shard_of(entries, index, count)
    results.parent.mkdir(parents=True, exist_ok=True)
    partial = results.with_name(results.name + ".partial")
    head = {"kind": "shard", "version": RECORD_VERSION, "shard": [index, count],
            "manifest": os.path.abspath(manifest),
            "manifest_sha256": hashlib.sha256(data).hexdigest(),
            "manifest_entries": len(entries), "entries": len(mine)}
    with open(partial, "w", encoding="utf-8") as out:
        out.write(json.dumps(head, sort_keys=True) + "\n")
        for e in mine:
            rec = convert_one(e.path, dst_root, policy=policy,
                              unsafe_allow_unsandboxed=unsafe_allow_unsandboxed)
            rec.update(shard=[index, count], entry=e.index)
            out.write(json.dumps(rec, sort_keys=True) + "\n")
            out.flush()
            yield rec
        os.fsync(out.fileno())
    os.replace(partial, results)


def write_results(records: list[dict[str, Any]], path: str | os.PathLike[str]) -> dict[str, int]:
    """Write `convert_one` records as a results file for `--merge` (whole or not at all:
    a temporary `.partial`, then a rename); returns the count of each decision."""
    tmp = f"{os.fspath(path)}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)
        os.fsync(f.fileno())
    os.replace(tmp, path)
    counts: dict[str, int] = dict.fromkeys(DECISIONS, 0)
    for r in records:
        counts[r["decision"]] += 1
    return counts


__all__ = ["DECISIONS", "ManifestEntry", "convert_one", "output_path", "parse_manifest",
           "read_manifest",
           "results_name", "run_shard", "shard_index", "shard_of", "write_results"]
