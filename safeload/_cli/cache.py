"""`safeload cache scan|convert`: the local Hugging Face cache."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from safeload._cli._output import (
    FORMATS,
    TEXT_JSON,
    Format,
    Output,
    ProgressBar,
    add_common_flags,
    human_size,
)
from safeload._cli.convert import UNSANDBOXED_HELP, warn_unsandboxed
from safeload._internal.sarif import SarifResult, sarif_log
from safeload._internal.text import safe_text
from safeload.errors import EXIT_ERROR, EXIT_OK, EXIT_REFUSED, SafeloadError

EXITS = ("exit 1 if any weight file is unsafe, tampered with or refused; else 2 if something "
         "could not be decided")


def _check_torch_hub(args: argparse.Namespace) -> None:
    if args.torch_hub and (args.repo or getattr(args, "write_to_hub_cache", False)):
        raise SafeloadError("--torch-hub has no repos and no Hugging Face snapshots: it takes "
                            "neither --repo nor --write-to-hub-cache")


def _cache_scan(args: argparse.Namespace, out: Output) -> int:
    from safeload.hfcache import BAD_STATUSES, scan_cache, scan_torch_hub

    _check_torch_hub(args)
    with ProgressBar() as bar:
        if args.torch_hub:
            result = scan_torch_hub(args.cache_dir, progress=bar)
        else:
            result = scan_cache(args.cache_dir, repos=args.repo, progress=bar)
    files = result.files()
    bad = any(f.status in BAD_STATUSES for _, f in files)
    errors = any(f.status == "error" for _, f in files) or bool(result.missing_repos)
    for w in result.warnings:
        out.warn(w)
    for repo in result.missing_repos:
        out.note(f"error: {safe_text(repo)} is not in the cache")
    s = result.summary()
    out.result(
        {"ok": not bad and not errors, **result.to_dict()}, text=_scan_lines(result),
        summary=f"{s['repos']} repos, {s['revisions']} revisions: {s['convertible']} "
                f"convertible, {s['converted']} converted, {s['safetensors']} safetensors, "
                f"{s['unsafe']} unsafe, {s['tampered']} tampered, {s['malformed']} malformed, "
                f"{s['refused']} refused, {s['error']} errors",
        sarif=_scan_sarif(result, BAD_STATUSES) if out.format == "sarif" else None)
    if bad:
        return EXIT_REFUSED
    return EXIT_ERROR if errors else EXIT_OK


def _scan_lines(result: Any) -> Iterator[str]:
    from safeload.hfcache import BAD_STATUSES

    yield f"  {'STATUS':<11} {'SIZE':>9}  {'FORMAT':<12} {'SIGNED':<6} {'PINNED':<8} FILE"
    for rev in result.revisions:
        if rev.repo_type == "torch-hub":
            yield f"torch hub checkpoints {safe_text(rev.snapshot)}"
            if not rev.files:
                yield "  (no weight files)"
            yield from _file_lines(rev.files, BAD_STATUSES)
            continue
        refs = f" ({', '.join(safe_text(r) for r in rev.refs)})" if rev.refs else ""
        yield (f"{safe_text(rev.repo_id)} [{rev.repo_type}] {rev.commit[:12]}{refs}"
               f"{'  signed' if rev.signed else ''}")
        if not rev.files:
            yield "  (no weight files)"
        yield from _file_lines(rev.files, BAD_STATUSES)


def _file_lines(files: Any, bad_statuses: frozenset[str]) -> Iterator[str]:
    for f in files:
        yield (f"  {f.status:<11} {human_size(f.size):>9}  {safe_text(f.format):<12} "
               f"{'yes' if f.signed else 'no':<6} {f.pinned:<8} {safe_text(f.name)}")
        if f.status in bad_statuses or f.status == "error":
            for why in f.findings[:3]:
                yield f"              {safe_text(why)}"


def _scan_sarif(result: Any, bad_statuses: frozenset[str]) -> dict[str, Any]:
    """One result per refused or undecided file; the rule id is its status (the finding kind:
    tampered, malformed, unsafe, refused, error)."""
    results = []
    for rev, f in result.files():
        if f.status not in bad_statuses and f.status != "error":
            continue
        reason = "; ".join(safe_text(w) for w in f.findings) or f.status
        results.append(SarifResult(
            f.status, f"{safe_text(rev.label)} {safe_text(f.name)}: {reason}", f.path,
            level="error" if f.status in bad_statuses else "warning",
            properties={"repo_id": rev.repo_id, "commit": rev.commit, "format": f.format,
                        "sha256": f.sha256}))
    for repo in result.missing_repos:
        results.append(SarifResult("missing-repo", f"{safe_text(repo)} is not in the cache",
                                   result.cache_dir, level="warning"))
    return sarif_log(results)


def _cache_convert(args: argparse.Namespace, out: Output) -> int:
    from safeload.hfcache import HUB_SIGNATURE_WARNING, convert_cache, convert_torch_hub

    _check_torch_hub(args)
    allow = warn_unsandboxed(args)
    if args.write_to_hub_cache and not args.dry_run:
        out.warn(HUB_SIGNATURE_WARNING)
    with ProgressBar() as bar:
        if args.torch_hub:
            report = convert_torch_hub(args.cache_dir, dry_run=args.dry_run,
                                       unsafe_allow_unsandboxed=allow, progress=bar)
        else:
            report = convert_cache(args.cache_dir, repos=args.repo, dry_run=args.dry_run,
                               write_to_hub_cache=args.write_to_hub_cache and not args.dry_run,
                               unsafe_allow_unsandboxed=allow, progress=bar)
    errors = report.failed or bool(report.missing_repos)
    for w in report.warnings:
        out.warn(w)
    for repo in report.missing_repos:
        out.note(f"error: {safe_text(repo)} is not in the cache")
    if report.refused:
        out.note("unsafe, tampered and refused files were left untouched")
    doc = {"ok": not report.refused and not errors, **report.to_dict()}
    if report.dry_run:  # what a real run would convert, so a dry run can size the job
        doc["summary"]["would_convert_bytes"] = _would_convert_bytes(report)
    if args.write_to_hub_cache:
        doc["warning"] = HUB_SIGNATURE_WARNING
    out.result(doc, text=_convert_lines(report), summary=_convert_summary(report))
    if report.refused:
        return EXIT_REFUSED
    return EXIT_ERROR if errors else EXIT_OK


def _convert_lines(report: Any) -> Iterator[str]:
    for o in report.outcomes:
        if o.action == "skipped":
            continue
        where = (f"{safe_text(o.repo_id)}@{o.commit[:8]} {safe_text(o.name)}" if o.commit
                 else f"{safe_text(o.repo_id)} {safe_text(o.name)}")
        yield f"{o.action:<17} {human_size(o.size):>9}  {where}"
        if o.action in ("unsafe", "tampered", "refused", "failed") and o.message:
            yield f"                  {safe_text(o.message)[:400]}"
    for path in report.hub_written:
        yield f"hub cache: wrote {safe_text(path)}"
    for note in report.hub_notes:
        yield f"hub cache: {safe_text(note)}"


def _would_convert_bytes(report: Any) -> int:
    return sum(o.size for o in report.outcomes if o.action == "would-convert")


def _convert_summary(report: Any) -> str:
    c = report.counts()
    if report.dry_run:  # nothing ran: the size of the work, no rate
        size = f"{human_size(_would_convert_bytes(report))}"
        head = f"would convert {c.get('would-convert', 0)} file(s) ({size})"
    else:
        rate = report.converted_bytes / report.seconds * 60 / 1e9 if report.seconds else 0.0
        head = (f"converted {c.get('converted', 0)} file(s) "
                f"({human_size(report.converted_bytes)}, {rate:.2f} GB/min)")
    return (f"{head}, "
            f"{c.get('already-converted', 0)} already converted, {c.get('unsafe', 0)} unsafe, "
            f"{c.get('tampered', 0)} tampered, {c.get('refused', 0)} refused, "
            f"{c.get('failed', 0)} failed, in {report.seconds:.1f} s"
            + ("; nothing was written (dry run)" if report.dry_run else ""))


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cache", help="the local Hugging Face cache: scan it, convert its pickles")
    add_common_flags(p, top_level=False)
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    csub.required = True

    def leaf(name: str, help_text: str, formats: tuple[Format, ...]) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = csub.add_parser(name, help=help_text,
                                                     description=f"{help_text}; {EXITS}")
        add_common_flags(q, top_level=False, formats=formats)
        q.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="the Hub cache (default: HF_HUB_CACHE, else $HF_HOME/hub, else "
                            "~/.cache/huggingface/hub)")
        q.add_argument("--repo", action="append", default=None, metavar="REPO",
                       help="only this repo id (repeatable)")
        q.add_argument("--torch-hub", action="store_true",
                       help="the torch hub cache instead: torch.hub.get_dir()/checkpoints "
                            "($TORCH_HOME/hub/checkpoints; --cache-dir names that folder)")
        return q

    q = leaf("scan", "list every cached repo revision and classify its weight files by bytes",
             FORMATS)
    q.set_defaults(func=_cache_scan)
    q = leaf("convert", "convert every clean pickle in the cache, in the sandbox, into "
                        "safeload's converted store (one child per repo revision)", TEXT_JSON)
    q.add_argument("--dry-run", action="store_true", help="classify and report; write nothing")
    q.add_argument("--write-to-hub-cache", action="store_true",
                   help="also add the converted files to the Hub snapshots (for plain "
                        "transformers); breaks signatures made over the original file list")
    q.add_argument("--unsafe-allow-unsandboxed-convert", action="store_true",
                   help=UNSANDBOXED_HELP)
    q.set_defaults(func=_cache_convert)
