"""`safeload trust subscribe | sync | subscription`: the organisation's trust store over TUF."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from safeload._cli._output import Output
from safeload._internal.text import safe_text
from safeload.errors import EXIT_OK

Command = Callable[..., argparse.ArgumentParser]


def _subscribe(args: argparse.Namespace, out: Output) -> int:
    from safeload import fleet

    sub = fleet.subscribe(args.url, args.root, args.target, interval_s=args.interval,
                          require_fresh=args.require_fresh, replace=args.replace)
    result = fleet.sync(force=True)
    ident = result.identity
    out.result({"ok": True, "action": "subscribe", "url": sub.url, "target": sub.target,
                "store": ident.to_dict() if ident else None},
               text=[f"subscribed to {safe_text(sub.url)} ({safe_text(sub.target)}); "
                     + _identity_line(ident)])
    return EXIT_OK


def _sync(args: argparse.Namespace, out: Output) -> int:
    from safeload import fleet

    result = fleet.sync(force=True)
    ident = result.identity
    out.result({"ok": True, "action": "sync", "status": result.status,
                "store": ident.to_dict() if ident else None},
               text=[f"{result.status}: " + _identity_line(ident)])
    return EXIT_OK


def _show(args: argparse.Namespace, out: Output) -> int:
    from safeload import fleet

    sub = fleet.subscription()
    if sub is None:
        out.result({"ok": True, "subscribed": False},
                   text=["not subscribed (safeload trust subscribe URL --root root.json)"])
        return EXIT_OK
    _, ident = fleet.organisation_store()
    out.result({"ok": True, "subscribed": True, "url": sub.url, "target": sub.target,
                "store": ident.to_dict()},
               text=[f"{safe_text(sub.url)} ({safe_text(sub.target)}): "
                     + _identity_line(ident)])
    return EXIT_OK


def _identity_line(ident: Any) -> str:
    if ident is None:
        return "no store yet"
    d = ident.to_dict()
    return (f"store serial {d['serial']}, targets version {d['targets_version']}, sha256 "
            f"{d['sha256'][:16]}..., metadata expires {d['expires']}")


def add_commands(cmd: Command) -> None:
    """Add the fleet actions to `safeload trust` (`cmd` is its action builder)."""
    p = cmd("subscribe", _subscribe, "follow an organisation's trust store published in a TUF "
            "repository (needs safeload[fleet]); syncs once")
    p.add_argument("url", help="the TUF repository's base URL (metadata/ and targets/ below)")
    p.add_argument("--root", required=True, metavar="ROOT.json",
                   help="the repository's root.json, obtained out of band: the trust anchor")
    p.add_argument("--target", default="safeload/truststore.json",
                   help="the store's target name (default: safeload/truststore.json)")
    p.add_argument("--interval", type=int, default=3600, metavar="SECONDS",
                   help="sync before a load at most this often (default: 3600)")
    p.add_argument("--require-fresh", action="store_true",
                   help="a load fails when the store could not be synced within the interval")
    p.add_argument("--replace", action="store_true", help="replace an existing subscription")
    cmd("sync", _sync, "fetch and verify the organisation's trust store now")
    cmd("subscription", _show, "show the subscription and the verified store it holds")
