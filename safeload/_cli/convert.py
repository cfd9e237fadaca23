"""`safeload convert`: pickle checkpoints to safetensors in the sandboxed converter."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from safeload._cli._output import TEXT_JSON, Output, add_common_flags
from safeload._internal.text import get_logger, safe_text
from safeload.errors import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, SafeloadError

_logger = get_logger("safeload")

UNSANDBOXED_HELP = "unsafe: convert even where no isolating sandbox layer is available"


def warn_unsandboxed(args: argparse.Namespace) -> bool:
    allow = bool(args.unsafe_allow_unsandboxed_convert)
    if allow:
        _logger.warning("unsafe: --unsafe-allow-unsandboxed-convert lets the converter run without "
                        "an isolating sandbox layer if none is available")
    return allow


def _convert(args: argparse.Namespace, out: Output) -> int:
    from safeload.convert import convert_directory, convert_file, output_name

    if args.merge:
        return _merge(args, out)
    if args.manifest:
        return _shard(args, out)
    if args.src is None:
        raise SafeloadError("give a checkpoint file or model directory, --manifest FILE, or "
                         "--merge RESULTS...")
    src = Path(args.src)
    allow = warn_unsandboxed(args)

    def converted(f: Any) -> None:  # live: a sharded model converts for minutes
        out.stream(f"converted {safe_text(f.source)} -> {safe_text(f.output)}  "
                   f"({f.tensors} tensors, {f.bytes / 1e6:.1f} MB, {f.seconds:.2f} s"
                   f"{', cached' if f.cache_hit else ''})")

    if src.is_dir():
        dst = Path(args.output) if args.output else src
        done, refused = convert_directory(src, dst, overwrite=args.overwrite,
                                          unsafe_allow_unsandboxed=allow, progress=converted)
    else:
        dst = Path(args.output) if args.output else src.with_name(output_name(src))
        done, refused = [convert_file(src, dst, overwrite=args.overwrite,
                                      unsafe_allow_unsandboxed=allow)], []
        converted(done[0])
    summary = (f"{len(done)} converted, {len(refused)} refused" if done or refused
               else "nothing to convert: no pickle checkpoint found")
    out.result({"ok": not refused, "converted": [f.__dict__ for f in done],
                "refused": [{"path": p, "reason": r} for p, r in refused]},
               text=[f"REFUSED {safe_text(path)}: {safe_text(why)}" for path, why in refused],
               summary=summary)
    return EXIT_REFUSED if refused else EXIT_OK


def _shard(args: argparse.Namespace, out: Output) -> int:
    import os

    from safeload import bulk

    if args.src is not None or args.output:
        raise SafeloadError("--manifest takes no SRC and no -o: outputs go to --out")
    if not args.out:
        raise SafeloadError("--manifest needs --out DIR (the converted store's root)")
    try:
        index = bulk.shard_index(args.shard_index)
        bulk.read_manifest(args.manifest)  # readable, UTF-8: a usage error, before any work
        bulk.shard_of([], index, args.shard_count)  # checks the index against the count
    except (ValueError, OSError) as exc:
        raise SafeloadError(f"{safe_text(args.manifest)}: {safe_text(str(exc))}") from None
    dst = Path(args.out)
    results = (Path(args.results) if args.results
               else dst / bulk.results_name(index, args.shard_count))
    # The shard's own ledger (its pod may be gone tomorrow): beside its results by default.
    ledger = args.ledger or str(results.parent / bulk.ledger_name(index, args.shard_count))
    os.environ["SAFELOAD_LEDGER_DIR"] = os.path.abspath(ledger)
    allow = warn_unsandboxed(args)
    counts = dict.fromkeys(bulk.DECISIONS, 0)
    lines = []
    for rec in bulk.run_shard(args.manifest, index, args.shard_count, dst, results,
                              unsafe_allow_unsandboxed=allow):
        counts[rec["decision"]] += 1
        line = _record_line(rec)
        out.stream(line)
        if rec["decision"] in ("refused", "error"):
            lines.append(line)
    summary = (f"shard {index} of {args.shard_count}: "
               + ", ".join(f"{n} {d}" for d, n in counts.items()) + f"; results in {results}")
    out.result({"ok": not counts["refused"] and not counts["error"], "shard": index,
                "shard_count": args.shard_count, "results": str(results),
                "ledger": os.environ["SAFELOAD_LEDGER_DIR"], "counts": counts},
               text=lines, summary=safe_text(summary))
    if counts["error"]:
        return EXIT_ERROR
    return EXIT_OK if args.refused_ok or not counts["refused"] else EXIT_REFUSED


def _record_line(rec: dict[str, Any]) -> str:
    what = str(rec["output"] or rec["error"] or rec["note"] or "")
    if not what.startswith(rec["source"]):  # errors name their file already
        what = f"{rec['source']}: {what}"
    return f"{rec['decision'].upper()} {safe_text(what)}"


def _merge(args: argparse.Namespace, out: Output) -> int:
    import json

    from safeload import bulkmerge
    from safeload._internal.atomic import write_atomic

    if args.src is not None or args.manifest:
        raise SafeloadError("--merge takes only results files")
    merged = bulkmerge.read_results(args.merge)
    summary = bulkmerge.summarize(merged, remove_leftovers=args.remove_leftovers)
    if args.sbom:
        bom = bulkmerge.store_bom(merged, name=args.name)
        write_atomic(Path(args.sbom), (json.dumps(bom, indent=2) + "\n").encode(),
                     durable=False)
        summary["sbom"] = args.sbom
    c = summary["counts"]
    line = (f"{summary['inputs']} inputs in {len(merged.files)} results files: "
            + ", ".join(f"{n} {d}" for d, n in c.items()))
    out.result(summary, text=bulkmerge.text_lines(summary), summary=line)
    if summary["problems"] or c["error"]:
        return EXIT_ERROR
    return EXIT_OK if args.refused_ok or not c["refused"] else EXIT_REFUSED


def add_parser(sub: Any) -> None:
    p = sub.add_parser("convert", help="convert pickle checkpoints to safetensors in the sandbox")
    add_common_flags(p, top_level=False, formats=TEXT_JSON)
    p.add_argument("src", nargs="?",
                   help="a checkpoint file, or a model directory (sharded ones included)")
    p.add_argument("-o", "--output", help="output file (or directory for a directory source)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--unsafe-allow-unsandboxed-convert", action="store_true",
                   help=UNSANDBOXED_HELP)
    bulk = p.add_argument_group("bulk conversion of a model store (one shard of a fleet job)")
    bulk.add_argument("--manifest", metavar="FILE",
                      help="input paths, one per line; entry j goes to shard j mod N")
    bulk.add_argument("--shard-index", type=int, metavar="I",
                      help="this shard (default: $JOB_COMPLETION_INDEX, a Kubernetes Indexed Job)")
    bulk.add_argument("--shard-count", type=int, default=1, metavar="N", help="shards in all")
    bulk.add_argument("--out", metavar="DIR", help="outputs as DIR/<input sha256>.safetensors")
    bulk.add_argument("--results", metavar="FILE",
                      help="this shard's records (default: DIR/results-IIIII-of-NNNNN.jsonl)")
    bulk.add_argument("--ledger", metavar="DIR",
                      help="this shard's provenance ledger (default: beside its results)")
    bulk.add_argument("--refused-ok", action="store_true",
                      help="exit 0 when every input was decided, refusals included (a job "
                           "retries only what could not be decided, exit 2)")
    bulk.add_argument("--merge", nargs="+", metavar="RESULTS",
                      help="merge shards' results files into one summary")
    bulk.add_argument("--sbom", metavar="FILE", help="with --merge: write the store's ML-BOM")
    bulk.add_argument("--name", default="model store", help="with --sbom: the store's name")
    bulk.add_argument("--remove-leftovers", action="store_true",
                      help="with --merge: delete interrupted workers' temporary folders")
    p.set_defaults(func=_convert)
