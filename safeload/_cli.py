"""The `safeload` command. The only module that parses argv, configures logging and prints.

Exit codes: 0 ok, 1 refused (a policy decision), 2 could not decide (usage or operational error).
With `--json`, exactly one JSON object goes to stdout, on success and on failure; everything for
people goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from safeload._internal.text import safe_text
from safeload._version import __version__
from safeload.errors import RefusedError, SafeloadError

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2

_logger = logging.getLogger("safeload")

Handler = Callable[[argparse.Namespace], int]


def _emit_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False, ensure_ascii=True))


def _err(msg: str) -> None:
    """One line for people, on stderr. Attacker-chosen strings must already be escaped."""
    print(msg, file=sys.stderr)


def _add_common_flags(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Flags accepted both before and after the subcommand."""
    # On subparsers, SUPPRESS stops the subparser's default from silently resetting a flag given
    # before the subcommand (`safeload --json scan` vs `safeload scan --json`).
    verbose_default: object = 0 if top_level else argparse.SUPPRESS
    json_default: object = False if top_level else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="count", default=verbose_default,
                        help="more detail on stderr (-vv: tracebacks)")
    parser.add_argument("--json", action="store_true", default=json_default,
                        help="print one JSON object on stdout")


# --------------------------------------------------------------------------------------------
# scan


def _scan(args: argparse.Namespace) -> int:
    from safeload.scanning import describe, scan_paths, to_sarif

    reports, errors = scan_paths([os.fspath(p) for p in args.paths])
    unsafe = [r for r in reports if r.status == "unsafe"]
    if args.format == "sarif":
        print(json.dumps(to_sarif(reports), ensure_ascii=True))
    elif args.json:
        _emit_json({
            "ok": not unsafe and not errors,
            "files": [r.to_dict() for r in reports],
            "errors": [{"path": p, "message": m} for p, m in errors],
            "summary": _scan_summary(reports),
        })
    for r in reports:
        if r.status == "unsafe":
            _err(f"UNSAFE  {safe_text(r.path)}  [{r.format}]")
            for f in r.findings:
                _err(f"        {describe(f)}")
        elif args.verbose or not args.json:
            if r.status == "clean":
                lic = f"  licence {safe_text(r.license)}" if r.license else ""
                _err(f"clean   {safe_text(r.path)}  [{r.format}]{lic}")
            elif args.verbose:
                _err(f"skipped {safe_text(r.path)}  ({safe_text(r.detail)})")
    for path, message in errors:
        _err(f"error   {safe_text(path)}: {safe_text(message)}")
    summary = _scan_summary(reports)
    _err(
        f"{summary['clean']} clean, {summary['unsafe']} unsafe, {summary['skipped']} skipped, "
        f"{len(errors)} errors"
    )
    if errors:
        return EXIT_ERROR
    return EXIT_REFUSED if unsafe else EXIT_OK


def _scan_summary(reports: Sequence[Any]) -> dict[str, int]:
    out = {"clean": 0, "unsafe": 0, "skipped": 0}
    for r in reports:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def _add_scan(sub: Any) -> None:
    p = sub.add_parser("scan", help="classify files by their bytes; exit 1 if anything is unsafe")
    _add_common_flags(p, top_level=False)
    p.add_argument("paths", nargs="+", help="files or directories (recursive)")
    p.add_argument("--format", choices=["text", "sarif"], default="text",
                   help="sarif prints a SARIF 2.1.0 log on stdout")
    p.set_defaults(func=_scan)


# --------------------------------------------------------------------------------------------
# provenance


def _since(value: str) -> datetime:
    """`--since`: an ISO date or time (UTC unless it says otherwise), or an age (30m, 12h, 7d)."""
    age = re.fullmatch(r"(\d{1,6})([mhdw])", value.strip())
    if age:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[age.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{unit: int(age.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date, time or age (like 2026-01-31, 2026-01-31T12:00Z, 7d): {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _since_filter(records: Sequence[Any], since: datetime | None) -> list[Any]:
    from safeload.provenance import parse_time

    if since is None:
        return list(records)
    out = []
    for r in records:
        try:
            if r.entry is not None and parse_time(r.entry.time) >= since:
                out.append(r)
        except ValueError:
            continue
    return out


def _entry_source(entry: Any) -> str:
    src = entry.source
    text = src.purl or src.path or "?"
    return f"{text} {src.file}" if src.purl and src.file else text


def _prov_list(args: argparse.Namespace) -> int:
    from safeload.provenance import read_ledger

    state = read_ledger(args.ledger)
    records = _since_filter(state.records, args.since)
    report = state.report
    if args.json:
        _emit_json({"ok": True, "chain_ok": report.ok, "head": report.head,
                    "entries": [r.to_dict() for r in records]})
    for r in records:
        if r.entry is None:
            _err(f"{'?':>5}  line {r.line}: not a valid entry")
            continue
        e = r.entry
        lic = e.license.id if e.license else "-"
        mark = "" if r.verified else "  [UNVERIFIED]"
        _err(f"{r.seq:>5}  {safe_text(e.time[:19])}  {e.action:<15}  "
             f"{safe_text(_entry_source(e), limit=160)}  licence {safe_text(lic, limit=80)}  "
             f"signature {e.signature.status}{mark}")
    _err(f"{len(records)} entries shown; head {report.head or '(empty ledger)'}")
    if not report.ok:
        _err(f"warning: {safe_text(report.describe())}; run `safeload provenance verify`")
    return EXIT_OK


def _find_record(records: Sequence[Any], selector: str) -> Any:
    from safeload.errors import ProvenanceError

    key = selector.strip().lower()
    if re.fullmatch(r"-?\d+", key):
        n = int(key)
        chain = [r for r in records if r.seq is not None]
        if n < 0 and -n <= len(chain):
            return chain[n]
        for r in chain:
            if r.seq == n:
                return r
    else:
        hexpart = key.removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{6,64}", hexpart):
            raise ProvenanceError(f"not an entry number or digest: {safe_text(selector)}")
        hits = [r for r in records if r.digest and r.digest[7:].startswith(hexpart)]
        if len(hits) > 1:
            raise ProvenanceError(f"digest prefix {hexpart} matches {len(hits)} entries")
        if hits:
            return hits[0]
    raise ProvenanceError(f"no ledger entry {safe_text(selector)}")


def _prov_show(args: argparse.Namespace) -> int:
    from safeload.provenance import read_ledger

    state = read_ledger(args.ledger)
    r = _find_record(state.records, args.entry)
    if args.json:
        _emit_json({"ok": True, "chain_ok": state.report.ok, "record": r.to_dict()})
    status = "chain verified" if r.verified else "NOT VERIFIED (at or after a broken link)"
    _err(f"entry {r.seq}  {r.digest}  ({status})")
    e = r.entry
    if e is None:
        return EXIT_OK
    t = safe_text
    rows: list[tuple[str, str]] = [
        ("time", t(e.time)), ("action", e.action), ("safeload", t(e.safeload_version)),
        ("source", t(_entry_source(e))),
    ]
    for f in e.files:
        rows.append(("file", f"{t(f.path)}  sha256:{f.sha256}  {f.size} bytes  {t(f.format)}"))
    if e.converted_from:
        c = e.converted_from
        rows.append(("converted", f"from sha256:{c.sha256} ({t(c.format)}"
                     f"{', ' + t(c.path) if c.path else ''}); sandbox: "
                     f"{t(', '.join(c.sandbox_layers) or 'none')}"))
    s = e.signature
    rows.append(("signature", s.status + "".join(
        f"  {k} {t(v)}" for k, v in (("publisher", s.publisher), ("key", s.key_id),
                                     ("method", s.method)) if v)))
    rows.append(("trust", f"mode {t(e.trust.mode)}, pin {e.trust.pin}"))
    if e.license:
        lic = e.license
        rows.append(("licence", f"{t(lic.id)} ({lic.license_class}; from {t(lic.source)})"
                     + (f"  {t(lic.name)}" if lic.name else "")))
    if e.publisher:
        p = e.publisher
        rows.append(("publisher", f"{t(p.namespace or '-')}, trusted {'yes' if p.trusted else 'no'}"
                     f", signature verified {'yes' if p.signature_verified else 'no'}"))
    if e.task:
        rows.append(("task", t(e.task)))
    if e.datasets:
        rows.append(("datasets", t(", ".join(e.datasets))))
    if e.base_model:
        rows.append(("base model", t(", ".join(e.base_model))))
    rows += [("warning", t(w)) for w in e.warnings]
    if r.repair:
        rows.append(("repair", t(f"removed a torn write: {dict(r.repair)}")))
    for label, value in rows:
        _err(f"  {label:<10} {value}")
    return EXIT_OK


def _prov_verify(args: argparse.Namespace) -> int:
    from safeload.provenance import verify

    report = verify(args.ledger, anchor=args.anchor)
    if args.json:
        _emit_json({"ok": report.ok, "report": report.to_dict()})
    _err(safe_text(report.describe()))
    for note in report.notes:
        _err(f"  note: {safe_text(note)}")
    _err(f"head: {report.head or '(empty ledger)'}"
         + (f" (entry {report.head_seq})" if report.head_seq is not None else ""))
    return EXIT_OK if report.ok else EXIT_REFUSED


def _prov_export(args: argparse.Namespace) -> int:
    from safeload.provenance import read_ledger, require_intact
    from safeload.sbom import to_cyclonedx

    state = read_ledger(args.ledger)
    if args.allow_broken:
        if not state.report.ok:
            _err(f"warning: exporting a ledger that does not verify: "
                 f"{safe_text(state.report.describe())}")
    else:
        require_intact(state)
    records = _since_filter([r for r in state.records if r.entry is not None], args.since)
    bom = to_cyclonedx(records, redact_paths=args.redact_paths, spec_version=args.spec_version,
                       report=state.report)
    summary = {"components": len(bom["components"]), "entries": len(records),
               "head": state.report.head, "chain_ok": state.report.ok}
    if args.output and args.output != "-":
        _write_new_file(Path(args.output), json.dumps(bom, indent=2) + "\n", args.overwrite)
        if args.json:
            _emit_json({"ok": True, "output": args.output, **summary})
        _err(f"wrote CycloneDX {args.spec_version} to {safe_text(args.output)}: "
             f"{summary['components']} models from {summary['entries']} entries")
    elif args.json:
        _emit_json({"ok": True, **summary, "bom": bom})
    else:
        print(json.dumps(bom, indent=2))
    return EXIT_OK


def _write_new_file(path: Path, text: str, overwrite: bool) -> None:
    """Write atomically (temp file + rename); refuse to replace a file unless told to."""
    if path.exists() and not overwrite:
        raise FileExistsError(17, "exists (use --overwrite to replace it)", str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _add_provenance(sub: Any) -> None:
    p = sub.add_parser("provenance", help="the provenance ledger: list, show, verify, export")
    _add_common_flags(p, top_level=False)
    psub = p.add_subparsers(dest="provenance_command", metavar="ACTION")
    psub.required = True

    def leaf(name: str, help_text: str) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = psub.add_parser(name, help=help_text)
        _add_common_flags(q, top_level=False)
        q.add_argument("--ledger", type=Path, default=None, metavar="DIR",
                       help="ledger folder (default: the data folder's provenance/)")
        return q

    q = leaf("list", "one line per entry")
    q.add_argument("--since", type=_since, default=None, metavar="WHEN",
                   help="only entries at or after WHEN: a date, a time, or an age (7d, 12h)")
    q.set_defaults(func=_prov_list)

    q = leaf("show", "one entry in full (publisher, licence, datasets, ...)")
    q.add_argument("entry", help="entry number (-1: the last) or digest prefix")
    q.set_defaults(func=_prov_show)

    q = leaf("verify", "check the hash chain and the head; exit 1 if broken")
    q.add_argument("--anchor", default=None, metavar="DIGEST",
                   help="a head digest kept elsewhere; the chain must contain it")
    q.set_defaults(func=_prov_verify)

    q = leaf("export", "export as an SBOM (CycloneDX JSON)")
    q.add_argument("--format", choices=["cyclonedx"], default="cyclonedx")
    q.add_argument("--spec-version", choices=["1.6", "1.7"], default="1.6")
    q.add_argument("--since", type=_since, default=None, metavar="WHEN",
                   help="only entries at or after WHEN: a date, a time, or an age (7d, 12h)")
    q.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write to FILE (default: stdout)")
    q.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    q.add_argument("--redact-paths", action="store_true",
                   help="replace home folders (user names) in paths with ~")
    q.add_argument("--allow-broken", action="store_true",
                   help="export even if the chain does not verify (marked in the metadata)")
    q.set_defaults(func=_prov_export)


# --------------------------------------------------------------------------------------------
# convert


def _convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from safeload.convert import convert_directory, convert_file, output_name

    src = Path(args.src)
    allow = bool(args.unsafe_allow_unsandboxed_convert)
    if allow:
        _logger.warning("unsafe: --unsafe-allow-unsandboxed-convert lets the converter run without "
                        "an isolating sandbox layer if none is available")

    def progress(f: Any) -> None:
        if not args.json:
            _err(f"converted {safe_text(f.source)} -> {safe_text(f.output)}  "
                 f"({f.tensors} tensors, {f.bytes / 1e6:.1f} MB, {f.seconds:.2f} s"
                 f"{', cached' if f.cache_hit else ''})")

    if src.is_dir():
        dst = Path(args.output) if args.output else src
        done, refused = convert_directory(src, dst, overwrite=args.overwrite,
                                          unsafe_allow_unsandboxed=allow, progress=progress)
    else:
        dst = Path(args.output) if args.output else src.with_name(output_name(src))
        done, refused = [convert_file(src, dst, overwrite=args.overwrite,
                                      unsafe_allow_unsandboxed=allow)], []
        progress(done[0])
    for path, why in refused:
        _err(f"REFUSED {safe_text(path)}: {safe_text(why)}")
    if args.json:
        _emit_json({"ok": not refused,
                    "converted": [f.__dict__ for f in done],
                    "refused": [{"path": p, "reason": r} for p, r in refused]})
    if not done and not refused:
        _err("nothing to convert: no pickle checkpoint found")
    return EXIT_REFUSED if refused else EXIT_OK


def _add_convert(sub: Any) -> None:
    p = sub.add_parser("convert", help="convert pickle checkpoints to safetensors in the sandbox")
    _add_common_flags(p, top_level=False)
    p.add_argument("src", help="a checkpoint file, or a model directory (sharded ones included)")
    p.add_argument("-o", "--output", help="output file (or directory for a directory source)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--unsafe-allow-unsandboxed-convert", action="store_true",
                   help="unsafe: convert even where no isolating sandbox layer is available")
    p.set_defaults(func=_convert)


# --------------------------------------------------------------------------------------------
# cache: the local Hugging Face cache (scan, convert)


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns at GB


class _ProgressLine:
    """Progress with sizes and ETA on stderr: one rewritten line on a terminal, else a line
    every few seconds (logs stay readable)."""

    non_tty_interval = 5.0

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        import time

        self.tty = enabled and sys.stderr.isatty()
        # Off a terminal the first line waits one interval: short runs stay quiet in logs.
        self.last = 0.0 if self.tty else time.monotonic()
        self.width = 0

    def __call__(self, p: Any) -> None:
        import time

        now = time.monotonic()
        if not self.enabled or now - self.last < (0.2 if self.tty else self.non_tty_interval):
            return
        self.last = now
        frac = p.done / p.total if p.total else 1.0
        eta = "--:--"
        if p.done and p.total > p.done:
            left = int(p.elapsed * (p.total - p.done) / p.done)
            eta = f"{left // 60:d}:{left % 60:02d}"
        bar = "#" * int(frac * 20)
        line = (f"[{bar:<20}] {frac:4.0%}  {_human_size(p.done)} / {_human_size(p.total)}  "
                f"ETA {eta}  {safe_text(p.current)[:60]}")
        if self.tty:
            sys.stderr.write("\r" + line.ljust(self.width))
            sys.stderr.flush()
            self.width = len(line)
        else:
            _err(line)

    def finish(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def _cache_scan(args: argparse.Namespace) -> int:
    from safeload.hfcache import BAD_STATUSES, scan_cache

    bar = _ProgressLine(not args.json)
    try:
        result = scan_cache(args.cache_dir, repos=args.repo, progress=bar)
    finally:
        bar.finish()
    files = result.files()
    bad = any(f.status in BAD_STATUSES for _, f in files)
    errors = any(f.status == "error" for _, f in files) or bool(result.missing_repos)
    if args.json:
        _emit_json({"ok": not bad and not errors, **result.to_dict()})
    else:
        _err(f"  {'STATUS':<11} {'SIZE':>9}  {'FORMAT':<12} {'SIGNED':<6} {'PINNED':<8} FILE")
        for rev in result.revisions:
            refs = f" ({', '.join(safe_text(r) for r in rev.refs)})" if rev.refs else ""
            _err(f"{safe_text(rev.repo_id)} [{rev.repo_type}] {rev.commit[:12]}{refs}"
                 f"{'  signed' if rev.signed else ''}")
            if not rev.files:
                _err("  (no weight files)")
            for f in rev.files:
                _err(f"  {f.status:<11} {_human_size(f.size):>9}  {safe_text(f.format):<12} "
                     f"{'yes' if f.signed else 'no':<6} {f.pinned:<8} {safe_text(f.name)}")
                if f.status in BAD_STATUSES or f.status == "error":
                    for why in f.findings[:3]:
                        _err(f"              {safe_text(why)}")
    for w in result.warnings:
        _err(f"warning: {w}")
    for repo in result.missing_repos:
        _err(f"error: {safe_text(repo)} is not in the cache")
    s = result.summary()
    _err(f"{s['repos']} repos, {s['revisions']} revisions: {s['convertible']} convertible, "
         f"{s['converted']} converted, {s['safetensors']} safetensors, {s['unsafe']} unsafe, "
         f"{s['tampered']} tampered, {s['malformed']} malformed, {s['refused']} refused, "
         f"{s['error']} errors")
    if bad:
        return EXIT_REFUSED
    return EXIT_ERROR if errors else EXIT_OK


def _cache_convert(args: argparse.Namespace) -> int:
    from safeload.hfcache import HUB_SIGNATURE_WARNING, convert_cache

    allow = bool(args.unsafe_allow_unsandboxed_convert)
    if allow:
        _logger.warning("unsafe: --unsafe-allow-unsandboxed-convert lets the converter run without "
                        "an isolating sandbox layer if none is available")
    if args.write_to_hub_cache and not args.dry_run:
        _err(f"warning: {HUB_SIGNATURE_WARNING}")
    bar = _ProgressLine(not args.json)
    try:
        report = convert_cache(args.cache_dir, repos=args.repo, dry_run=args.dry_run,
                               write_to_hub_cache=args.write_to_hub_cache and not args.dry_run,
                               unsafe_allow_unsandboxed=allow, progress=bar)
    finally:
        bar.finish()
    errors = report.failed or bool(report.missing_repos)
    if args.json:
        out = {"ok": not report.refused and not errors, **report.to_dict()}
        if args.write_to_hub_cache:
            out["warning"] = HUB_SIGNATURE_WARNING
        _emit_json(out)
    else:
        for o in report.outcomes:
            if o.action == "skipped":
                continue
            where = f"{safe_text(o.repo_id)}@{o.commit[:8]} {safe_text(o.name)}"
            line = f"{o.action:<17} {_human_size(o.size):>9}  {where}"
            if o.action in ("unsafe", "tampered", "refused", "failed") and o.message:
                line += f"\n                  {safe_text(o.message)[:400]}"
            _err(line)
        for path in report.hub_written:
            _err(f"hub cache: wrote {safe_text(path)}")
        for note in report.hub_notes:
            _err(f"hub cache: {safe_text(note)}")
    for w in report.warnings:
        _err(f"warning: {w}")
    for repo in report.missing_repos:
        _err(f"error: {safe_text(repo)} is not in the cache")
    c = report.counts()
    rate = report.converted_bytes / report.seconds * 60 / 1e9 if report.seconds else 0.0
    verb = "would convert" if report.dry_run else "converted"
    n = c.get("would-convert", 0) if report.dry_run else c.get("converted", 0)
    _err(f"{verb} {n} file(s) ({_human_size(report.converted_bytes)}, {rate:.2f} GB/min), "
         f"{c.get('already-converted', 0)} already converted, {c.get('unsafe', 0)} unsafe, "
         f"{c.get('tampered', 0)} tampered, {c.get('refused', 0)} refused, "
         f"{c.get('failed', 0)} failed, in {report.seconds:.1f} s"
         + ("; nothing was written (dry run)" if report.dry_run else ""))
    if report.refused:
        _err("unsafe, tampered and refused files were left untouched")
        return EXIT_REFUSED
    return EXIT_ERROR if errors else EXIT_OK


def _add_cache(sub: Any) -> None:
    p = sub.add_parser("cache", help="the local Hugging Face cache: scan it, convert its pickles")
    _add_common_flags(p, top_level=False)
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    csub.required = True
    exits = ("exit 1 if any weight file is unsafe, tampered with or refused; else 2 if "
             "something could not be decided")

    def leaf(name: str, help_text: str) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = csub.add_parser(name, help=help_text,
                                                     description=f"{help_text}; {exits}")
        _add_common_flags(q, top_level=False)
        q.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="the Hub cache (default: HF_HUB_CACHE, else $HF_HOME/hub, else "
                            "~/.cache/huggingface/hub)")
        q.add_argument("--repo", action="append", default=None, metavar="REPO",
                       help="only this repo id (repeatable)")
        return q

    q = leaf("scan", "list every cached repo revision and classify its weight files by bytes")
    q.set_defaults(func=_cache_scan)
    q = leaf("convert", "convert every clean pickle in the cache, in the sandbox, into "
                        "safeload's converted store (one child per repo revision)")
    q.add_argument("--dry-run", action="store_true", help="classify and report; write nothing")
    q.add_argument("--write-to-hub-cache", action="store_true",
                   help="also add the converted files to the Hub snapshots (for plain "
                        "transformers); breaks signatures made over the original file list")
    q.add_argument("--unsafe-allow-unsandboxed-convert", action="store_true",
                   help="unsafe: convert even where no isolating sandbox layer is available")
    q.set_defaults(func=_cache_convert)


# --------------------------------------------------------------------------------------------
# demo


def _demo(args: argparse.Namespace) -> int:
    from safeload.demo import run

    return run(_err)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on the real all-MiniLM-L6-v2 model")
    _add_common_flags(p, top_level=False)
    p.set_defaults(func=_demo)


# --------------------------------------------------------------------------------------------
# trust / verify / sign (issue 4). Never import torch here.


def _add_trust_store_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-store", metavar="PATH", default=None,
                   help="trust store file (default: $SAFELOAD_TRUST_STORE, else trust.json in "
                        "the config dir)")


def _store_path(args: argparse.Namespace) -> Path:
    from safeload._internal import paths

    return Path(args.trust_store) if args.trust_store else paths.trust_store_path()


def _confirm(args: argparse.Namespace, question: str) -> None:
    """Destructive changes: `--yes`, or an interactive "y"; never a prompt in --json mode."""
    if getattr(args, "yes", False):
        return
    if args.json or not sys.stdin.isatty():
        raise SafeloadError(f"{question}: refusing without confirmation",
                            hint="re-run with --yes")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise SafeloadError("cancelled; nothing changed")


def _time_arg(value: str | None) -> Any:
    from safeload.trust import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise SafeloadError(f"--expires {safe_text(value)}: {exc}",
                            hint="use 2030-01-01 or 2030-01-01T00:00:00Z") from exc


def _report_change(args: argparse.Namespace, before: Any, after: Any, action: str,
                   extra: dict[str, Any] | None = None) -> int:
    from safeload.trust import diff_stores

    changes = diff_stores(before, after)
    if args.json:
        _emit_json({"ok": True, "action": action, "path": str(after.path), "changed": changes,
                    "state_digest": after.state_digest(), **(extra or {})})
    for line in changes:
        _err(line)
    if not changes:
        _err("nothing changed")
    _err(f"trust store: {safe_text(after.path)}")
    return EXIT_OK


def _key_summary(store: Any, publisher: Any, key: Any) -> dict[str, Any]:
    from safeload.trust import format_time

    return {"id": key.key_id, "algorithm": key.algorithm, "expires": format_time(key.expires),
            "revoked": store.key_revocation(key.key_id) is not None}


def _publisher_summary(store: Any, p: Any, *, pem: bool = False) -> dict[str, Any]:
    from safeload.trust import format_time

    keys = [_key_summary(store, p, k) | ({"pem": k.pem} if pem else {}) for k in p.keys]
    roots = [{"fingerprint": r.fingerprint, "identities": list(r.identities),
              "expires": format_time(r.expires),
              "subject": r.certificate().subject.rfc4514_string()}
             | ({"pem": r.pem} if pem else {}) for r in p.roots]
    return {"name": p.name, "namespaces": list(p.namespaces), "expires": format_time(p.expires),
            "keys": keys, "roots": roots,
            "identities": [i.to_dict() | {"revoked": _identity_revoked(store, i)}
                           for i in p.identities]}


def _identity_revoked(store: Any, ident: Any) -> bool:
    return ident.san is not None and store.identity_revocation(ident.issuer, ident.san) \
        is not None


def _trust_init(args: argparse.Namespace) -> int:
    from safeload.trust import Policy, TrustStore

    path = _store_path(args)
    existed = TrustStore.load(path).exists

    def change(s: TrustStore) -> TrustStore:
        return s if s.exists or args.mode is None else s.with_policy(Policy(mode=args.mode))

    _, after = TrustStore.update(change, path)
    if args.json:
        _emit_json({"ok": True, "path": str(path), "created": not existed,
                    "policy": after.policy.to_dict()})
    _err(f"{'exists' if existed else 'created'}: {safe_text(path)} "
         f"(policy mode {after.policy.mode})")
    return EXIT_OK


def _trust_list(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore, load_observations

    store = TrustStore.load(_store_path(args))
    obs = load_observations(store)
    pins = [p.to_dict() | {"source": "user"} for p in store.pins] + \
        [p.to_dict() | {"source": "first-use"} for p in obs.pins]
    if args.json:
        _emit_json({
            "ok": True, "path": str(store.path), "exists": store.exists,
            "state_digest": store.state_digest(), "policy": store.policy.to_dict(),
            "publishers": [_publisher_summary(store, p) for p in store.publishers],
            "revoked_keys": [{"key_id": r.value, "reason": r.reason} for r in store.revoked_keys],
            "revoked_identities": [
                {"issuer": r.value.split(" ", 1)[0], "san": r.value.split(" ", 1)[1],
                 "reason": r.reason} for r in store.revoked_identities],
            "revoked_digests": [{"sha256": r.value, "reason": r.reason}
                                for r in store.revoked_digests],
            "pins": pins,
            "revision_locks": [x.to_dict() for x in store.revision_locks],
            "signed_locations": [{"location": s.location, "publisher": s.publisher,
                                  "key_id": s.key_id, "first_seen": s.first_seen}
                                 for s in obs.signed],
        })
        return EXIT_OK
    _err(f"trust store: {safe_text(store.path)}"
         + ("" if store.exists else " (missing: empty store, default policy)"))
    _err(f"policy: mode {store.policy.mode}, pin Hub files on first use: "
         f"{store.policy.pin_hub_on_first_use}, pin local files: {store.policy.pin_local_files}")
    for p in store.publishers:
        _err(f"publisher {safe_text(p.name)}: namespaces {', '.join(p.namespaces) or '-'}; "
             f"{len(p.keys)} key(s), {len(p.roots)} root(s), "
             f"{len(p.identities)} keyless identit{'y' if len(p.identities) == 1 else 'ies'}")
        for k in p.keys:
            flag = " REVOKED" if store.key_revocation(k.key_id) else ""
            _err(f"  key {k.key_id} {k.algorithm}{flag}")
        for r in p.roots:
            _err(f"  root {r.fingerprint[:16]}... identities {safe_text(', '.join(r.identities))}")
        for i in p.identities:
            flag = " REVOKED" if _identity_revoked(store, i) else ""
            _err(f"  keyless identity {i.describe()}{flag}")
    for rev in store.revoked_identities:
        issuer, san = rev.value.split(" ", 1)
        _err(f"revoked identity {safe_text(san)} from {safe_text(issuer)} "
             f"{safe_text(rev.reason)}")
    for rev in store.revoked_keys:
        _err(f"revoked key {rev.value} {safe_text(rev.reason)}")
    for rev in store.revoked_digests:
        _err(f"revoked digest sha256:{rev.value} {safe_text(rev.reason)}")
    for pin in pins:
        what = pin.get("path") or f"{pin['repo']}@{pin['revision']}:{pin['file']}"
        _err(f"pin ({pin['source']}) {safe_text(what)} sha256:{pin['sha256']}")
    for x in store.revision_locks:
        _err(f"revision lock {safe_text(x.repo)}: {', '.join(x.revisions)}")
    for s in obs.signed:
        _err(f"signed before: {safe_text(s.location)} by {safe_text(s.publisher)}")
    return EXIT_OK


def _trust_show(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore

    store = TrustStore.load(_store_path(args))
    p = store.publisher(args.name)
    if p is None:
        hit = store.find_key(args.name)
        if hit is None:
            raise SafeloadError(f"no publisher or key {safe_text(args.name)} in "
                                f"{safe_text(store.path)}", hint="safeload trust list")
        p = hit[0]
    summary = _publisher_summary(store, p, pem=True)
    if args.json:
        _emit_json({"ok": True, "publisher": summary})
        return EXIT_OK
    _err(f"publisher {safe_text(p.name)}")
    _err(f"  namespaces: {', '.join(p.namespaces) or '-'}"
         + (f"; expires {summary['expires']}" if summary["expires"] else ""))
    for k in summary["keys"]:
        _err(f"  key {k['id']} {k['algorithm']}" + (" REVOKED" if k["revoked"] else "")
             + (f" expires {k['expires']}" if k["expires"] else ""))
        _err(safe_text(k["pem"], keep_newlines=True).rstrip())
    for r in summary["roots"]:
        _err(f"  root {r['fingerprint']} {safe_text(r['subject'])}")
        _err(f"    identities: {safe_text(', '.join(r['identities']))}")
    return EXIT_OK


def _read_key_or_root(path: str, identities: Sequence[str], expires: Any) -> tuple[Any, Any]:
    """(TrustedKey | None, TrustedRoot | None) from a PEM file."""
    from safeload.trust import TrustedKey, TrustedRoot

    data = Path(path).read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return None, TrustedRoot.from_pem(data, identities=tuple(identities), expires=expires)
    if identities:
        raise SafeloadError("--identity applies to root certificates, not to public keys")
    return TrustedKey.from_pem(data, expires=expires), None


def _trust_add_publisher(args: argparse.Namespace) -> int:
    from safeload.errors import TrustStoreError
    from safeload.trust import Publisher, TrustStore

    expires = _time_arg(args.expires)
    keys, roots = [], []
    for path in args.key or []:
        k, _ = _read_key_or_root(path, [], None)
        keys.append(k)
    for path in args.root or []:
        if not args.identity:
            raise SafeloadError("--root needs at least one --identity (the SAN the publisher "
                                "signs as)")
        _, r = _read_key_or_root(path, args.identity, None)
        roots.append(r)
    try:
        pub = Publisher.from_dict({"name": args.name, "namespaces": args.namespace or []},
                                  where="publisher", source="command line")
    except TrustStoreError as exc:
        raise SafeloadError(str(exc).removeprefix("command line: "), hint=exc.hint) from exc
    pub = Publisher(name=pub.name, namespaces=pub.namespaces, keys=tuple(keys),
                    roots=tuple(roots), expires=expires)
    before, after = TrustStore.update(lambda s: s.with_publisher(pub), _store_path(args))
    return _report_change(args, before, after, "add-publisher")


def _trust_add_key(args: argparse.Namespace) -> int:
    from safeload.trust import Publisher, TrustStore

    expires = _time_arg(args.expires)
    key, root = _read_key_or_root(args.file, args.identity or [], expires)

    def change(s: TrustStore) -> TrustStore:
        if s.publisher(args.publisher) is None:
            raise SafeloadError(f"no publisher {safe_text(args.publisher)}",
                                hint=f"safeload trust add-publisher {args.publisher} "
                                     "--namespace ORG/*")
        return s.with_publisher(Publisher(name=args.publisher,
                                          keys=(key,) if key else (),
                                          roots=(root,) if root else ()))

    before, after = TrustStore.update(change, _store_path(args))
    ident = key.key_id if key else root.fingerprint
    return _report_change(args, before, after, "add-key", {"id": ident})


def _identity_arg(args: argparse.Namespace) -> Any:
    from safeload.errors import TrustStoreError
    from safeload.signing.keyless import EXTENSION_NAMES
    from safeload.trust import TrustedIdentity

    pins: list[tuple[str, str]] = []
    for item in args.extension or []:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise SafeloadError(f"--extension {safe_text(item)}: expected NAME=VALUE",
                                hint=f"names: {', '.join(EXTENSION_NAMES)}, or a dotted OID")
        pins.append((EXTENSION_NAMES.get(name, name), value))
    try:
        return TrustedIdentity(issuer=args.issuer, san=args.san, san_regex=args.san_regex,
                               instance=args.instance, extensions=tuple(sorted(pins)))
    except TrustStoreError as exc:
        raise SafeloadError(str(exc), hint=exc.hint) from exc


def _trust_add_identity(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore

    ident = _identity_arg(args)
    if ident.san_regex is not None:
        _logger.warning("trusting every SAN that fully matches %s", safe_text(ident.san_regex))
    before, after = TrustStore.update(lambda s: s.with_identity(args.publisher, ident),
                                      _store_path(args))
    return _report_change(args, before, after, "add-identity", {"identity": ident.to_dict()})


def _trust_remove_identity(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore

    before, after = TrustStore.update(
        lambda s: s.without_identity(args.publisher, args.issuer, args.san), _store_path(args))
    return _report_change(args, before, after, "remove-identity",
                          {"issuer": args.issuer, "san": args.san})


def _trust_revoke_identity(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore, identity_key

    identity_key(args.issuer, args.san)  # validates the issuer before asking
    _confirm(args, f"revoke identity {args.san} from {args.issuer}: every keyless signature "
                   "by it will be refused")
    before, after = TrustStore.update(
        lambda s: s.with_revoked_identity(args.issuer, args.san, args.reason or ""),
        _store_path(args))
    return _report_change(args, before, after, "revoke-identity",
                          {"issuer": args.issuer, "san": args.san})


def _resolve_key_id(store: Any, value: str) -> str:
    from safeload.signing import _keys

    p = Path(value)
    if p.is_file():
        try:
            return _keys.key_id(_keys.load_public_key(p.read_bytes()))
        except _keys.BadKeyError as exc:
            raise SafeloadError(f"{safe_text(value)}: {exc}") from exc
    hit = store.find_key(value)
    if hit is not None:
        return str(hit[1].key_id)
    v = value.lower()
    if len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v
    raise SafeloadError(f"{safe_text(value)} is not a key in the trust store, a 64-hex key id, "
                        "or a PEM public key file")


def _trust_revoke_key(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore

    path = _store_path(args)
    kid = _resolve_key_id(TrustStore.load(path), args.key)
    _confirm(args, f"revoke key {kid}: every signature by it will be refused")
    before, after = TrustStore.update(lambda s: s.with_revoked_key(kid, args.reason or ""), path)
    return _report_change(args, before, after, "revoke-key", {"key_id": kid})


def _file_sha256(path: Path) -> str:
    import hashlib

    from safeload.signing._tree import hash_file

    return hash_file(path, hashlib.sha256, follow_symlinks=True)


def _digest_arg(value: str) -> str:
    v = value.lower().removeprefix("sha256:")
    if len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v
    p = Path(value)
    if p.is_file():
        return _file_sha256(p)
    raise SafeloadError(f"{safe_text(value)} is neither a sha256 hex digest nor a file")


def _trust_revoke_digest(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore

    sha = _digest_arg(args.digest)
    _confirm(args, f"revoke digest sha256:{sha}: this file will be refused everywhere")
    before, after = TrustStore.update(lambda s: s.with_revoked_digest(sha, args.reason or ""),
                                      _store_path(args))
    return _report_change(args, before, after, "revoke-digest", {"sha256": sha})


def _pin_target(args: argparse.Namespace) -> tuple[Any, str | None]:
    """(Pin target tuple, local path) from PATH or --repo/--revision/--file."""
    from safeload.trust import Pin

    hub = (args.repo, args.revision, args.file)
    if args.path is not None:
        if any(hub):
            raise SafeloadError("give either PATH or --repo/--revision/--file, not both")
        resolved = str(Path(args.path).resolve())
        return ("path", resolved), resolved
    if not all(hub):
        raise SafeloadError("a Hub pin needs --repo, --revision and --file (or give a PATH)")
    return Pin("0" * 64, repo=args.repo, revision=args.revision, file=args.file).target, None


def _trust_pin(args: argparse.Namespace) -> int:
    from safeload.trust import Pin, TrustStore

    target, local = _pin_target(args)
    if local is not None:
        sha = _digest_arg(args.sha256) if args.sha256 else _file_sha256(Path(local))
        pin = Pin(sha, path=local)
    else:
        if not args.sha256:
            raise SafeloadError("a Hub pin needs --sha256")
        pin = Pin(_digest_arg(args.sha256), repo=args.repo, revision=args.revision,
                  file=args.file)
    path = _store_path(args)
    old = TrustStore.load(path).find_pin(target)
    if old is not None and old.sha256 != pin.sha256:
        if not args.replace:
            raise SafeloadError(f"{safe_text(pin.describe())} is already pinned to "
                                f"sha256:{old.sha256}", hint="pass --replace to change it")
        _confirm(args, f"replace the pin of {safe_text(pin.describe())}")
    before, after = TrustStore.update(
        lambda s: s.with_pin(pin, replace_existing=bool(args.replace)), path)
    return _report_change(args, before, after, "pin", {"sha256": pin.sha256})


def _trust_unpin(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore, unpin_observed

    target, _ = _pin_target(args)
    path = _store_path(args)
    _confirm(args, f"remove the pin of {safe_text(':'.join(target[1:]))}")
    before, after = TrustStore.update(lambda s: s.without_pin(target), path)
    removed_observed = unpin_observed(path, target)
    if removed_observed:
        _err("removed the first-use pin")
    if not removed_observed and before == after:
        raise SafeloadError(f"no pin for {safe_text(':'.join(target[1:]))}")
    return _report_change(args, before, after, "unpin", {"first_use_pin_removed": removed_observed})


def _trust_forget(args: argparse.Namespace) -> int:
    from safeload.trust import forget_location

    _confirm(args, f"forget that {safe_text(args.location)} was signed (it may then load "
                   "unsigned)")
    if not forget_location(_store_path(args), args.location):
        raise SafeloadError(f"no signed-location record {safe_text(args.location)}",
                            hint="safeload trust list shows them")
    if args.json:
        _emit_json({"ok": True, "action": "forget", "location": args.location})
    _err(f"forgot {safe_text(args.location)}")
    return EXIT_OK


_POLICY_HELP = """\
The default policy (mode "default"):
  - revoked digests and revoked keys are refused, in every mode;
  - a pinned digest that no longer matches is refused;
  - a repository with a revision lock loads only at the locked commits;
  - a signature that is present (model.sig) must verify against a trusted publisher;
  - a repo in a namespace owned by a publisher with keys must be signed by it;
  - content once loaded with a valid signature is refused later without one;
  - anything else (unsigned, unbound) loads with a warning;
  - Hub files (repo + commit + file) are pinned on first use; local files are not;
  - pickles that inspect clean are converted in the sandbox (pickles "refuse": all refused);
  - no mode ever executes pickled code: pickles with findings are always refused.
mode "strict": every load needs a signature by a trusted publisher.
mode "audit": signature, pin, lock and downgrade failures are warnings (UNSAFE for production);
  revoked digests and keys are still refused."""

_MODE_RANK = {"audit": 0, "default": 1, "strict": 2}


def _trust_policy(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from safeload.trust import TrustStore

    path = _store_path(args)
    current = TrustStore.load(path).policy
    wanted = current
    if args.mode is not None:
        wanted = replace(wanted, mode=args.mode)
    if args.pin_hub_on_first_use is not None:
        wanted = replace(wanted, pin_hub_on_first_use=args.pin_hub_on_first_use == "on")
    if args.pin_local_files is not None:
        wanted = replace(wanted, pin_local_files=args.pin_local_files == "on")
    if args.pickles is not None:
        wanted = replace(wanted, pickles=args.pickles)
    if wanted == current:
        if args.json:
            _emit_json({"ok": True, "path": str(path), "policy": current.to_dict(),
                        "default": _POLICY_HELP})
        _err(f"policy ({safe_text(path)}): {json.dumps(current.to_dict())}")
        _err(_POLICY_HELP)
        return EXIT_OK
    weaker = _MODE_RANK[wanted.mode] < _MODE_RANK[current.mode] or (
        current.pin_hub_on_first_use and not wanted.pin_hub_on_first_use) or (
        current.pickles == "refuse" and wanted.pickles == "convert")
    if weaker:
        _confirm(args, f"weaken the policy ({current.mode} -> {wanted.mode})")
    if wanted.mode == "audit":
        _logger.warning("audit mode is UNSAFE: signature and pin failures only warn")
    before, after = TrustStore.update(lambda s: s.with_policy(wanted), path)
    return _report_change(args, before, after, "policy", {"policy": after.policy.to_dict()})


def _trust_export(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore

    store = TrustStore.load(_store_path(args))
    if args.output:
        out = Path(args.output)
        if out.exists() and not args.overwrite:
            raise SafeloadError(f"{safe_text(out)} exists", hint="pass --overwrite")
        out.write_bytes(store.to_json())
        if args.json:
            _emit_json({"ok": True, "output": str(out), "state_digest": store.state_digest()})
        _err(f"exported {safe_text(store.path)} to {safe_text(out)}")
    elif args.json:
        _emit_json({"ok": True, "store": store.to_dict(), "state_digest": store.state_digest()})
    else:
        sys.stdout.write(store.to_json().decode())
    return EXIT_OK


def _trust_import(args: argparse.Namespace) -> int:
    from safeload.trust import TrustStore, diff_stores

    incoming = TrustStore.from_bytes(Path(args.file).read_bytes(), source=str(args.file))
    path = _store_path(args)

    def change(s: TrustStore) -> TrustStore:
        merged = s.merged(incoming, replace_pins=args.replace_pins)
        return merged.with_policy(incoming.policy) if args.with_policy else merged

    preview = diff_stores(TrustStore.load(path), change(TrustStore.load(path)))
    if args.dry_run or not preview:
        if args.json:
            _emit_json({"ok": True, "action": "import", "dry_run": bool(args.dry_run),
                        "changed": preview})
        for line in preview or ["nothing to import"]:
            _err(line)
        return EXIT_OK
    for line in preview:
        _err(line)
    _confirm(args, f"apply these {len(preview)} change(s) to {safe_text(path)}")
    before, after = TrustStore.update(change, path)
    return _report_change(args, before, after, "import")


def _add_trust(sub: Any) -> None:
    trust = sub.add_parser("trust", help="manage the trust store (publishers, keys, pins, policy)")
    _add_common_flags(trust, top_level=False)
    tsub = trust.add_subparsers(dest="trust_command", metavar="ACTION")
    tsub.required = True

    def cmd(name: str, func: Handler, help_text: str, *, destructive: bool = False
            ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = tsub.add_parser(name, help=help_text)
        _add_common_flags(p, top_level=False)
        _add_trust_store_flag(p)
        if destructive:
            p.add_argument("-y", "--yes", action="store_true",
                           help="do not ask for confirmation")
        p.set_defaults(func=func)
        return p

    p = cmd("init", _trust_init, "create an empty trust store (default policy)")
    p.add_argument("--mode", choices=["strict", "default", "audit"], default=None)
    cmd("list", _trust_list, "list publishers, keys, revocations, pins and the policy")
    p = cmd("show", _trust_show, "show one publisher (or the publisher of a key id)")
    p.add_argument("name", help="publisher name or key id (prefix of 8+ hex digits)")
    p = cmd("add-publisher", _trust_add_publisher, "add a publisher (or merge into it)")
    p.add_argument("name")
    p.add_argument("--namespace", action="append", metavar="ORG/*",
                   help="Hugging Face namespace it owns: org/* or org/name (repeatable)")
    p.add_argument("--key", action="append", metavar="PUB.pem", help="public key (repeatable)")
    p.add_argument("--root", action="append", metavar="ROOT.pem",
                   help="X.509 root certificate (repeatable; needs --identity)")
    p.add_argument("--identity", action="append", metavar="SAN",
                   help="certificate identity (SAN: e-mail, URI) allowed under --root")
    p.add_argument("--expires", metavar="DATE", help="trust this publisher until DATE")
    p = cmd("add-key", _trust_add_key, "add a public key or a root certificate to a publisher")
    p.add_argument("publisher")
    p.add_argument("file", help="PEM public key, or PEM root certificate (with --identity)")
    p.add_argument("--identity", action="append", metavar="SAN")
    p.add_argument("--expires", metavar="DATE")
    p = cmd("add-identity", _trust_add_identity,
            "trust a keyless (Sigstore) signer for a publisher (created when missing)")
    p.add_argument("publisher")
    p.add_argument("--issuer", required=True, help="exact OIDC issuer URL")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--san", help="exact certificate identity (e-mail, URI)")
    who.add_argument("--san-regex", help="opt-in: a regex that must match the whole SAN")
    p.add_argument("--instance", default="production", choices=("production", "staging"),
                   help="Sigstore instance (trusted root) the identity signs on")
    p.add_argument("--extension", action="append", metavar="NAME=VALUE",
                   help="pin a Fulcio extension, e.g. source-repository=https://github.com/o/r")
    p = cmd("remove-identity", _trust_remove_identity, "stop trusting a keyless identity",
            destructive=True)
    p.add_argument("publisher")
    p.add_argument("--issuer", required=True)
    p.add_argument("--san", required=True, help="the SAN (or SAN regex) as listed")
    p = cmd("revoke-identity", _trust_revoke_identity,
            "revoke a keyless identity everywhere (refused in every mode)", destructive=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--san", required=True)
    p.add_argument("--reason", default="")
    p = cmd("revoke-key", _trust_revoke_key, "revoke a key, or a keyless signing certificate "
            "by its sha256 fingerprint (refused in every mode)", destructive=True)
    p.add_argument("key", help="key id, 8+ hex prefix, or PEM public key file")
    p.add_argument("--reason", default="")
    p = cmd("revoke-digest", _trust_revoke_digest,
            "revoke a file digest (refused wherever it appears)", destructive=True)
    p.add_argument("digest", help="sha256 hex digest, or a file to hash")
    p.add_argument("--reason", default="")
    for name, func, help_text in (("pin", _trust_pin, "pin a file's sha256"),
                                  ("unpin", _trust_unpin, "remove a pin")):
        p = cmd(name, func, help_text, destructive=True)
        p.add_argument("path", nargs="?", default=None, help="local file")
        p.add_argument("--repo", help="Hugging Face repo id (org/name)")
        p.add_argument("--revision", help="commit hash")
        p.add_argument("--file", help="file path inside the repo")
        if name == "pin":
            p.add_argument("--sha256", help="digest (default for PATH: hash the file)")
            p.add_argument("--replace", action="store_true",
                           help="replace an existing pin with another digest")
    p = cmd("forget", _trust_forget,
            "drop a 'was signed' record (allows the location to load unsigned again)",
            destructive=True)
    p.add_argument("location", help="as shown by `safeload trust list` (hf:ORG/NAME, file:DIR)")
    p = cmd("policy", _trust_policy, "show or change the load policy", destructive=True)
    p.add_argument("--mode", choices=["strict", "default", "audit"], default=None)
    p.add_argument("--pin-hub-on-first-use", choices=["on", "off"], default=None)
    p.add_argument("--pin-local-files", choices=["on", "off"], default=None)
    p.add_argument("--pickles", choices=["convert", "refuse"], default=None,
                   help="convert clean pickles in the sandbox (default) or refuse every pickle")
    p = cmd("export", _trust_export, "print (or write) the trust store JSON")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--overwrite", action="store_true")
    p = cmd("import", _trust_import, "merge another trust store file (shows changes, asks)",
            destructive=True)
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="only show what would change")
    p.add_argument("--replace-pins", action="store_true",
                   help="imported pins replace conflicting ones (default: refuse)")
    p.add_argument("--with-policy", action="store_true",
                   help="also take the imported policy (default: keep ours)")


def _verify(args: argparse.Namespace) -> int:
    from safeload.signing import default_signature_path, verify_model
    from safeload.trust import TrustStore

    target = Path(args.path)
    sig = Path(args.signature) if args.signature else default_signature_path(target)
    one_off = args.key is not None or args.certificate_chain is not None
    store = TrustStore.load(_store_path(args))
    result = verify_model(
        target, sig, trust_store=store, key=args.key if one_off else None,
        certificate_chain=args.certificate_chain, identity=args.identity,
        identity_provider=args.identity_provider, sigstore_root=_sigstore_root_arg(args),
        ignore_paths=args.ignore_path or ())
    from safeload._internal.record import record_verification

    ctx = record_verification(target, result, store)
    licence = ctx.license.primary.spdx_id if ctx.license else None
    if args.json:
        _emit_json({
            "ok": True, "verified": True, "path": str(target), "signature": str(sig),
            "license": licence,
            "license_action": ctx.license.action if ctx.license else None,
            "signature_sha256": result.signature_sha256, "method": result.method,
            "publisher": result.publisher, "key_id": result.key_id,
            "identity": result.identity, "subject_digest": result.subject_digest,
            "hash_type": result.hash_type, "serialization": result.serialization,
            "files": dict(result.files),
            **_keyless_json(result.keyless),
        })
    who = safe_text(result.publisher) if result.publisher else "the given " + (
        "key" if args.key else "root" if args.certificate_chain else "identity")
    ident = f" as {safe_text(result.identity)}" if result.identity else ""
    _err(f"verified: {safe_text(target)} ({len(result.files)} signed entries, "
         f"{result.hash_type}/{result.serialization}) signed by {who}{ident} "
         f"[{result.method}, key {result.key_id[:16]}...]")
    if result.keyless is not None:
        k = result.keyless
        _err(f"keyless: issuer {safe_text(k.issuer)}, Rekor log index {k.log_index}, signed "
             f"{k.signed_time:%Y-%m-%d %H:%M:%S} UTC, Sigstore root {safe_text(k.root_name)}")
    if ctx.license is not None:
        _err(f"licence: {safe_text(licence)} ({ctx.license.action}); "
             + "; ".join(safe_text(f.describe()) for f in ctx.license.findings))
    return EXIT_OK


def _sigstore_root_arg(args: argparse.Namespace) -> Any:
    """The Sigstore root a one-off keyless check uses (None: the shipped production root)."""
    from safeload.signing.sigstore_roots import builtin_root, root_from_file

    if args.sigstore_root:
        return root_from_file(args.sigstore_root)
    if args.sigstore_instance:
        return builtin_root(args.sigstore_instance)
    return None


def _keyless_json(k: Any) -> dict[str, Any]:
    from safeload.signing.keyless import summary

    return {} if k is None else {"keyless": summary(k)}


def _add_verify(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify a model's OpenSSF Model Signing signature "
                                      "(exit 0 verified, 1 refused, 2 could not decide)")
    _add_common_flags(p, top_level=False)
    _add_trust_store_flag(p)
    p.add_argument("path", help="model directory or single file")
    p.add_argument("--signature", metavar="SIG",
                   help="signature file (default: PATH/model.sig, or FILE.sig)")
    one_off = p.add_mutually_exclusive_group()
    one_off.add_argument("--key", metavar="PUB.pem",
                         help="one-off check with this public key instead of the trust store")
    one_off.add_argument("--certificate-chain", metavar="ROOT.pem", action="append",
                         help="one-off check against this root certificate (repeatable)")
    p.add_argument("--identity", metavar="SAN",
                   help="required certificate identity (certificate method; keyless with "
                        "--identity-provider)")
    p.add_argument("--identity-provider", metavar="ISSUER",
                   help="one-off keyless check: the exact OIDC issuer of --identity")
    roots = p.add_mutually_exclusive_group()
    roots.add_argument("--sigstore-root", metavar="FILE",
                       help="keyless: Sigstore trusted_root.json (default: shipped production)")
    roots.add_argument("--sigstore-instance", choices=("production", "staging"),
                       help="keyless: a shipped Sigstore root")
    p.add_argument("--ignore-path", metavar="P", action="append",
                   help="a path the signer ignored but did not record (repeatable)")
    p.set_defaults(func=_verify)


def _identity_token(args: argparse.Namespace) -> str:
    """`--identity-token FILE`, else $SIGSTORE_ID_TOKEN (as sigstore-python reads it)."""
    if args.identity_token:
        return Path(args.identity_token).read_text(encoding="utf-8")
    env = os.environ.get("SIGSTORE_ID_TOKEN")
    if not env:
        raise SafeloadError("--keyless needs an OIDC identity token",
                            hint="pass --identity-token FILE or set SIGSTORE_ID_TOKEN")
    return env


def _sign_with_key(args: argparse.Namespace) -> Any:
    from safeload.signing import sign_model

    password: bytes | None = None
    pem = Path(args.key).read_bytes()
    if b"ENCRYPTED" in pem:
        env = os.environ.get("SAFELOAD_SIGNING_KEY_PASSWORD")
        if env is not None:
            password = env.encode()
        elif sys.stdin.isatty() and not args.json:
            import getpass

            password = getpass.getpass(f"password for {args.key}: ").encode()
        else:
            raise SafeloadError(f"{safe_text(args.key)} is encrypted",
                                hint="set SAFELOAD_SIGNING_KEY_PASSWORD or run interactively")
    return sign_model(args.path, private_key_pem_path=args.key,
                      certificate_chain=args.certificate_chain, output=args.output,
                      password=password, ignore_paths=args.ignore_path or [],
                      overwrite=args.overwrite)


def _sign(args: argparse.Namespace) -> int:
    if args.keyless:
        if args.key or args.certificate_chain:
            raise SafeloadError("--keyless signs with an ephemeral key: drop --key and "
                                "--certificate-chain")
        from safeload.signing.sign import sign_model_keyless

        result = sign_model_keyless(args.path, identity_token=_identity_token(args),
                                    output=args.output, ignore_paths=args.ignore_path or [],
                                    overwrite=args.overwrite)
    elif not args.key:
        raise SafeloadError("sign needs --key KEY.pem, or --keyless")
    else:
        result = _sign_with_key(args)
    if args.json:
        _emit_json({"ok": True, "output": str(result.output), "method": result.method,
                    "key_id": result.key_id, "algorithm": result.algorithm,
                    "subject_digest": result.subject_digest, "files": result.files,
                    "reference_compatible": result.reference_compatible})
    _err(f"signed {len(result.files)} file(s) of {safe_text(args.path)} -> "
         f"{safe_text(result.output)} ({result.method}, {result.algorithm}, key "
         f"{result.key_id[:16]}...)")
    if not result.reference_compatible:
        _err("note: Ed25519 is a safeload extension: `model_signing verify` cannot read it")
    return EXIT_OK


def _add_sign(sub: Any) -> None:
    p = sub.add_parser("sign", help="sign a model (OpenSSF Model Signing bundle)")
    _add_common_flags(p, top_level=False)
    p.add_argument("path", help="model directory or single file")
    p.add_argument("--key", metavar="KEY.pem",
                   help="private key: ECDSA P-256/P-384/P-521 (Ed25519: safeload-only "
                        "extension)")
    p.add_argument("--keyless", action="store_true",
                   help="sign keyless on public-good Sigstore (needs network and an OIDC "
                        "token; untested here beyond its offline errors)")
    p.add_argument("--identity-token", metavar="FILE",
                   help="--keyless: file holding the OIDC token (default: $SIGSTORE_ID_TOKEN)")
    p.add_argument("--certificate-chain", action="append", metavar="CERT.pem",
                   help="certificate method: signing certificate first, then intermediates "
                        "(repeatable)")
    p.add_argument("-o", "--output", metavar="SIG",
                   help="signature file (default: PATH/model.sig, or FILE.sig)")
    p.add_argument("--ignore-path", action="append", metavar="REL",
                   help="path relative to PATH to leave unsigned (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing signature")
    p.set_defaults(func=_sign)


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safeload",
        description="Load third-party model checkpoints without running their code.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"safeload {__version__}")
    _add_common_flags(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_scan(sub)
    _add_convert(sub)
    _add_cache(sub)
    _add_demo(sub)
    _add_provenance(sub)
    _add_trust(sub)
    _add_verify(sub)
    _add_sign(sub)
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever sys.stderr is now (callers and test runners replace it)."""

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _configure_logging(verbose: int) -> None:
    level_name = os.environ.get("SAFELOAD_LOGLEVEL", "")
    level = getattr(logging, level_name.upper(), None) if level_name else None
    if not isinstance(level, int):
        level = logging.DEBUG if verbose >= 1 else logging.WARNING
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    # The package logger, not the root logger: third-party libraries stay quiet.
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help/--version exit 0
        return int(exc.code) if isinstance(exc.code, int) else EXIT_ERROR
    _configure_logging(args.verbose)
    func: Handler = args.func
    try:
        return func(args)
    except (SafeloadError, OSError) as exc:
        code = EXIT_REFUSED if isinstance(exc, RefusedError) else EXIT_ERROR
        if args.json:
            _emit_json({"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}})
        text = exc.diagnostics() if isinstance(exc, SafeloadError) else str(exc)
        _err(f"error: {safe_text(text, keep_newlines=True)}")
        if args.verbose >= 2:
            raise
        return code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
