"""Converting the cache's clean pickles: one sandboxed child per repo revision.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from safeload import pipeline
from safeload._internal.text import get_logger, safe_text
from safeload.hfcache.hub_write import _write_hub
from safeload.hfcache.report import (
    CacheRevision,
    ConvertReport,
    Outcome,
    ProgressFn,
    _Meter,
    default_cache_dir,
    plan_outcome,
    settle_conversion,
)
from safeload.hfcache.scan import (
    _classify,
    _Context,
    _estimate,
    _Held,
    _hub_scan,
    _pickle_name,
    _revision_info,
    _revisions,
    _selected,
    _tree_digests,
    _weight_candidates,
)
from safeload.pipeline import Admitted

if TYPE_CHECKING:
    from safeload._internal.converter import Converted


_logger = get_logger(__name__)

# ------------------------------------------------------------------------------------------
# Converting


def convert_cache(cache_dir: str | os.PathLike[str] | None = None, *,
                  repos: Sequence[str] | None = None, dry_run: bool = False,
                  write_to_hub_cache: bool = False, unsafe_allow_unsandboxed: bool = False,
                  progress: ProgressFn | None = None) -> ConvertReport:
    """Convert every clean pickle in the cache into the converted store (one child a revision).

    Every file goes through the same checks as a load: blob integrity, inspection, the trust
    store (revocations, pins, signatures, namespace bindings) and the licence policy. Unsafe,
    tampered and refused files are reported and left untouched. `dry_run` only classifies.

    Raises:
        SafeloadError: there is no cache at `cache_dir`.
        TrustStoreError: the trust store is unusable.
        KeyboardInterrupt: passes through; nothing partial is left behind.
    """
    started = time.monotonic()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    info = _hub_scan(root)
    chosen, missing = _selected(repos, info)
    pairs = [(repo, rev) for repo in chosen for rev in _revisions(repo)]
    weights, pickles = _estimate(pairs)
    ctx = _Context.make(root, _Meter(weights + (0 if dry_run else pickles), progress),
                        remember=not dry_run, converting=not dry_run)
    report = ConvertReport(str(root), dry_run, [], [], [], [safe_text(str(w)) for w in
                                                          info.warnings], missing, 0.0, 0)
    for repo, rev in pairs:
        cr = _revision_info(repo, rev)
        tree = _tree_digests(Path(repo.repo_path), rev.commit_hash)
        held: list[_Held] = []
        try:
            for p in _weight_candidates(rev):
                h = _classify(cr, p, rev.refusal, tree, ctx)
                if h is not None:
                    held.append(h)
            _convert_revision(cr, held, ctx, report, dry_run=dry_run,
                              write_to_hub_cache=write_to_hub_cache,
                              repo_path=Path(repo.repo_path),
                              unsafe_allow_unsandboxed=unsafe_allow_unsandboxed)
        finally:
            for h in held:
                h.close()
    report.seconds = time.monotonic() - started
    return report


def _convert_revision(cr: CacheRevision, held: list[_Held], ctx: _Context,
                      report: ConvertReport, *, dry_run: bool, write_to_hub_cache: bool,
                      repo_path: Path, unsafe_allow_unsandboxed: bool) -> None:
    from safeload._internal.converter import convert_many

    todo: list[tuple[_Held, Admitted]] = []
    outcomes: dict[str, Outcome] = {}
    for h in held:
        f = h.info
        o = Outcome(cr.repo_id, cr.commit, f.name, f.size, "skipped")
        outcomes[f.name] = o
        if plan_outcome(f, o, dry_run=dry_run):
            assert h.admitted is not None  # admitted by the classification (see _admit)
            todo.append((h, h.admitted))
    report.outcomes.extend(outcomes.values())
    if dry_run:
        return
    meter = ctx.meter
    start = meter.done
    # Counted like the total was estimated (by names), so the bar ends at 100%.
    rev_bytes = sum(h.info.size for h in held if _pickle_name(h.info.name))
    results: dict[str, Converted] = {}
    if todo:
        meter.show(f"{cr.label}: converting {len(todo)} file(s)")
        mark = time.monotonic()
        convs = convert_many([(t[0].info.path, t[1].verified.held) for t in todo],
                             source_sha256s=[t[0].info.sha256 for t in todo],
                             unsafe_allow_unsandboxed=unsafe_allow_unsandboxed,
                             progress=lambda n: meter.show(extra=min(n, rev_bytes)))
        seconds = round(time.monotonic() - mark, 3)
        for (h, admitted), conv in zip(todo, convs, strict=True):
            o = outcomes[h.info.name]
            o.seconds = seconds
            if not isinstance(conv, Exception):
                results[h.info.name] = conv
            if (done := settle_conversion(o, conv, report)) is not None:
                pipeline.record(admitted, "convert", done)
    meter.done = start
    meter.add(rev_bytes)
    if write_to_hub_cache and results:
        _write_hub(cr, results, outcomes, report, ctx.root, repo_path)


