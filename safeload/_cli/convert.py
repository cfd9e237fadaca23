"""`safeload convert`: pickle checkpoints to safetensors in the sandboxed converter."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from safeload._cli._output import TEXT_JSON, Output, add_common_flags
from safeload._internal.text import get_logger, safe_text
from safeload.errors import EXIT_OK, EXIT_REFUSED

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


def add_parser(sub: Any) -> None:
    p = sub.add_parser("convert", help="convert pickle checkpoints to safetensors in the sandbox")
    add_common_flags(p, top_level=False, formats=TEXT_JSON)
    p.add_argument("src", help="a checkpoint file, or a model directory (sharded ones included)")
    p.add_argument("-o", "--output", help="output file (or directory for a directory source)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--unsafe-allow-unsandboxed-convert", action="store_true",
                   help=UNSANDBOXED_HELP)
    p.set_defaults(func=_convert)
