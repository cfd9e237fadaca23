"""Judgements between two stores or policies, for the CLI's previews and confirmations:
`diff_stores` (what an import or a change would do) and `policy_weakenings` (what a policy
change gives up; `Policy.is_weaker_than` is the yes/no form). The pin-conflict rule is
`Pin.conflicts_with` / `TrustStore.pin_conflict`.
"""

from __future__ import annotations

import json
from typing import Any

from safeload._internal.text import safe_text
from safeload.trust.model import Policy
from safeload.trust.store import TrustStore


def policy_weakenings(before: Policy, after: Policy) -> tuple[str, ...]:
    """What moving from `before` to `after` gives up (empty: not weaker)."""
    return after.weakenings_from(before)


def diff_stores(before: TrustStore, after: TrustStore) -> list[str]:
    """Human-readable lines describing what changed (for CLI output and import previews)."""
    lines: list[str] = []
    b, a = before.to_dict(), after.to_dict()
    if b["policy"] != a["policy"]:
        for k in sorted(set(b["policy"]) | set(a["policy"])):
            if b["policy"].get(k) != a["policy"].get(k):
                lines.append(f"policy.{k}: {b['policy'].get(k)} -> {a['policy'].get(k)}")
    bp = {p.name: p for p in before.publishers}
    for p in after.publishers:
        old = bp.get(p.name)
        if old is None:
            lines.append(f"+ publisher {safe_text(p.name)} ({len(p.keys)} key(s), "
                         f"{len(p.roots)} root(s), {len(p.identities)} keyless identities, "
                         f"namespaces: {', '.join(p.namespaces) or '-'})")
            continue
        for ns in sorted(set(p.namespaces) - set(old.namespaces)):
            lines.append(f"+ namespace {safe_text(ns)} for {safe_text(p.name)}")
        for ns in sorted(set(old.namespaces) - set(p.namespaces)):
            lines.append(f"- namespace {safe_text(ns)} for {safe_text(p.name)}")
        for k in p.keys:
            if k.key_id not in {o.key_id for o in old.keys}:
                lines.append(f"+ key {k.key_id} ({k.algorithm}) for {safe_text(p.name)}")
        for k in old.keys:
            if k.key_id not in {n.key_id for n in p.keys}:
                lines.append(f"- key {k.key_id} for {safe_text(p.name)}")
        old_roots = {r.fingerprint: r for r in old.roots}
        for r in p.roots:
            if r.fingerprint not in old_roots:
                lines.append(f"+ root {r.fingerprint[:16]}... for {safe_text(p.name)} "
                             f"(identities: {safe_text(', '.join(r.identities))})")
            elif old_roots[r.fingerprint].identities != r.identities:
                lines.append(f"~ root {r.fingerprint[:16]}... identities: "
                             f"{safe_text(', '.join(r.identities))}")
        for i in p.identities:
            if i not in old.identities:
                lines.append(f"+ keyless identity {i.describe()} for {safe_text(p.name)}")
        for i in old.identities:
            if i not in p.identities:
                lines.append(f"- keyless identity {i.describe()} for {safe_text(p.name)}")
    for name in sorted(set(bp) - {p.name for p in after.publishers}):
        lines.append(f"- publisher {safe_text(name)}")
    b.setdefault("revoked_identities", [])
    a.setdefault("revoked_identities", [])
    for label, key in (("revoked key", "revoked_keys"), ("revoked digest", "revoked_digests"),
                       ("revoked identity", "revoked_identities"),
                       ("pin", "pins"), ("revision lock", "revision_locks")):
        old_items = [json.dumps(x, sort_keys=True) for x in b[key]]
        new_items = [json.dumps(x, sort_keys=True) for x in a[key]]
        for x in new_items:
            if x not in old_items:
                lines.append(f"+ {label} {safe_text(_short(json.loads(x)))}")
        for x in old_items:
            if x not in new_items:
                lines.append(f"- {label} {safe_text(_short(json.loads(x)))}")
    return lines


def _short(entry: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(entry.items()))
