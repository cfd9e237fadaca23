"""`safeload convert`: pickle checkpoints (files and model directories) to safetensors.

Each file goes through the same pipeline stages as a load (`safeload.pipeline`): locate,
verify, admit (for "convert": the pickle policy applies), then the sandboxed converter writes
the output, and a provenance entry records it. The engine (sandbox run, output validation, the
converted store) is `safeload._internal.converter`; its names are re-exported here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safeload_conversion.protocol import OUTPUT_NAME, STRUCTURE_KEY

from safeload import pipeline
from safeload._internal.atomic import write_atomic
from safeload._internal.converter import (
    REPORT_NAME,
    Converted,
    convert_many,
    convert_opened,
    converted_path,
)
from safeload._internal.text import safe_text
from safeload.errors import ConversionError, OutputCollisionError, RefusedError


@dataclass(frozen=True)
class ConvertedFile:
    source: str
    output: str
    tensors: int
    bytes: int
    cache_hit: bool
    layers: tuple[str, ...]
    seconds: float


def output_name(source: Path) -> str:
    """`pytorch_model.bin` -> `model.safetensors`; shards keep their numbering."""
    name = source.name
    if name == "pytorch_model.bin":
        return "model.safetensors"
    if name.startswith("pytorch_model-") and name.endswith(".bin"):
        return "model-" + name[len("pytorch_model-"):-len(".bin")] + ".safetensors"
    return source.stem + ".safetensors"


def convert_file(src: Path, dst: Path, *, overwrite: bool = False,
                 unsafe_allow_unsandboxed: bool = False) -> ConvertedFile:
    """Inspect `src`, convert it in the sandbox, write a standard safetensors file at `dst`.

    The same pipeline as a load: the trust store's verdict on the source's digest, the licence
    policy, inspection, the sandboxed conversion, and a provenance entry.

    Raises:
        UnsafeCheckpointError: inspection found something; nothing is converted.
        RefusedError: the trust store or the licence policy refuses the source.
        ConversionError: the sandboxed conversion failed; nothing is written.
    """
    started = time.monotonic()
    dst = Path(os.path.abspath(dst))  # relative to the caller's cwd, as any command's -o
    if dst.exists() and os.path.samefile(dst, src) or dst == Path(os.path.abspath(src)):
        raise OutputCollisionError(f"{dst}: the output would replace its own source",
                                   hint="choose another output name with -o")
    held = pipeline.open_input(src)
    try:
        admitted = pipeline.admit(pipeline.verify(held, pipeline.locate(held)), "convert")
        conv = pipeline.convert_to(admitted, dst, overwrite=overwrite,
                                   unsafe_allow_unsandboxed=unsafe_allow_unsandboxed)
    finally:
        held.close()
    pipeline.record(admitted, "convert", conv)
    nbytes = sum(e.end - e.begin for e in conv.header.tensors)
    return ConvertedFile(str(src), str(dst), len(conv.header.tensors), nbytes, conv.cache_hit,
                         tuple(conv.report.get("layers", {}).get("applied", [])),
                         time.monotonic() - started)


def convert_directory(src: Path, dst: Path, *, overwrite: bool = False,
                      unsafe_allow_unsandboxed: bool = False,
                      progress: Callable[[ConvertedFile], None] | None = None
                      ) -> tuple[list[ConvertedFile], list[tuple[str, str]]]:
    """Convert every pickle checkpoint in a model directory; rewrite a sharded index.

    Returns the converted files and the refusals (path, reason); refused files are left alone
    and, when any shard is refused, no index is written (it would name a missing shard).
    """
    from safeload._internal.shardindex import parse_index

    dst = Path(os.path.abspath(dst))
    dst.mkdir(parents=True, exist_ok=True)
    index_path = src / "pytorch_model.bin.index.json"
    done: list[ConvertedFile] = []
    refused: list[tuple[str, str]] = []
    renames: dict[str, str] = {}
    index = None
    if index_path.is_file():
        held = pipeline.open_input(index_path)
        try:
            index = parse_index(bytes(held.mapping()), str(index_path))
        finally:
            held.close()
        candidates = [src / s for s in index.shards]
    else:
        candidates = _pickle_candidates(src)
    outputs = [dst / output_name(p) for p in candidates]
    clash = _name_collision(candidates, outputs)
    if clash:  # before anything is written: never half a directory, never a silent overwrite
        raise OutputCollisionError(f"{src}: {clash}",
                                   hint="convert the files one by one with -o, or rename one")
    for p, out in zip(candidates, outputs, strict=True):
        try:
            done.append(convert_file(p, out, overwrite=overwrite,
                                     unsafe_allow_unsandboxed=unsafe_allow_unsandboxed))
            renames[p.name] = out.name
            if progress:
                progress(done[-1])
        except (RefusedError, ConversionError) as exc:
            refused.append((str(p), str(exc)))
    if index is not None and not refused:
        new_map = {k: renames[v] for k, v in index.weight_map.items()}
        new_index = {"metadata": {**index.metadata, "total_size": sum(f.bytes for f in done)},
                     "weight_map": new_map}
        write_atomic(dst / "model.safetensors.index.json",
                     (json.dumps(new_index, indent=2) + "\n").encode(), durable=False,
                     overwrite=overwrite or not (dst / "model.safetensors.index.json").exists())
    return done, refused


def _pickle_candidates(src: Path) -> list[Path]:
    """Files in `src` whose first bytes look like a pickle or a zip (inspection decides)."""
    from safeload.inspection import sniff

    out = []
    for p in sorted(src.iterdir()):
        try:
            held = pipeline.open_input(p)
        except (OSError, RefusedError):
            continue  # a directory, FIFO or dangling link: not a candidate
        try:
            head = bytes(held.mapping()[:512])
            if sniff(head, held.size) in ("zip", "pickle?"):
                out.append(p)
        finally:
            held.close()
    return out


def _name_collision(inputs: list[Path], outputs: list[Path]) -> str | None:
    """Two inputs mapped to one output name (case-insensitively: a macOS or Windows folder
    holds one of them), or an output that is one of the inputs."""
    seen: dict[str, Path] = {}
    for src, out in zip(inputs, outputs, strict=True):
        key = out.name.casefold()
        if key in seen:
            return (f"{safe_text(seen[key].name)} and {safe_text(src.name)} would both be "
                    f"written to {safe_text(out.name)}")
        seen[key] = src
    sources = {os.path.abspath(p).casefold() for p in inputs}
    for src, out in zip(inputs, outputs, strict=True):
        if os.path.abspath(out).casefold() in sources:
            return (f"the output of {safe_text(src.name)} would replace the input "
                    f"{safe_text(out.name)}")
    return None


__all__ = ["OUTPUT_NAME", "REPORT_NAME", "STRUCTURE_KEY", "Converted", "ConvertedFile",
           "convert_directory", "convert_file", "convert_many", "convert_opened",
           "converted_path", "output_name"]
