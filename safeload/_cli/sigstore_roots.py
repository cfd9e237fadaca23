"""`safeload trust sigstore-root update | add | list | remove`: the Sigstore trusted roots.

`update` is the only command that reaches the network for Sigstore (TUF, explicit); loads and
`verify` never refresh anything.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safeload._cli._output import TEXT_JSON, Output, add_common_flags
from safeload._internal.text import safe_text
from safeload.errors import EXIT_OK, SafeloadError

Command = Callable[..., argparse.ArgumentParser]


def _update(args: argparse.Namespace, out: Output) -> int:
    from safeload.signing import sigstore_store

    res = sigstore_store.update_root(args.instance, url=args.url)
    what = "updated" if res.changed else "unchanged"
    out.result({"ok": True, "action": "sigstore-root update", "instance": res.name,
                "changed": res.changed, "sha256": res.sha256,
                "previous_sha256": res.previous_sha256 or None, "url": res.url,
                "tuf_root_version": res.root_version, "targets_version": res.targets_version},
               text=[f"{what}: Sigstore {res.name} root sha256 {res.sha256} from "
                     f"{safe_text(res.url)} (TUF root v{res.root_version}, targets "
                     f"v{res.targets_version})"])
    return EXIT_OK


def _add(args: argparse.Namespace, out: Output) -> int:
    from safeload.signing import sigstore_store

    root = sigstore_store.add_private(args.name, Path(args.file), replace=args.replace)
    cas = len(root.doc.get("certificateAuthorities") or [])
    logs = len(root.doc.get("tlogs") or [])
    out.result({"ok": True, "action": "sigstore-root add", "instance": root.name,
                "sha256": root.sha256, "certificate_authorities": cas, "tlogs": logs},
               text=[f"added Sigstore instance {safe_text(root.name)}: sha256 {root.sha256} "
                     f"({cas} Fulcio CA(s), {logs} Rekor log(s)); trust an identity on it "
                     f"with: safeload trust add-identity PUBLISHER --instance "
                     f"{safe_text(root.name)} --issuer ISSUER --san SAN"])
    return EXIT_OK


def _list(args: argparse.Namespace, out: Output) -> int:
    from safeload.signing import sigstore_store

    roots = sigstore_store.list_roots()
    out.result({"ok": True, "sigstore_roots": roots}, text=[line(r) for r in roots])
    return EXIT_OK


def line(r: dict[str, Any]) -> str:
    """One listing line of a Sigstore root (also used by `safeload trust list`)."""
    if not r["ok"]:
        return f"sigstore root {safe_text(r['name'])}: UNUSABLE: {safe_text(r['error'])}"
    when = f", updated {safe_text(r['updated'])}" if r.get("updated") else ""
    return (f"sigstore root {safe_text(r['name'])} ({r['kind']}{when}): sha256 {r['sha256']} "
            f"from {safe_text(r['source'])}")


def _remove(args: argparse.Namespace, out: Output) -> int:
    from safeload.signing import sigstore_store

    name = sigstore_store.check_name(args.name)
    if not sigstore_store.remove(name):
        raise SafeloadError(f"no stored Sigstore root {safe_text(name)}",
                            hint="safeload trust sigstore-root list")
    back = " (the shipped copy is used again)" if name in ("production", "staging") else ""
    out.result({"ok": True, "action": "sigstore-root remove", "instance": name},
               text=[f"removed the stored Sigstore root {safe_text(name)}{back}"])
    return EXIT_OK


def add_commands(cmd: Command, confirm: Callable[[argparse.Namespace, Output, str], None]
                 ) -> None:
    """`safeload trust sigstore-root ACTION` (`cmd` is the trust action builder)."""
    parent = cmd("sigstore-root", _list, "Sigstore trusted roots: update (TUF), add a private "
                 "instance, list, remove")
    sub = parent.add_subparsers(dest="sigstore_root_command", metavar="ACTION")

    def action(name: str, func: Callable[[argparse.Namespace, Output], int], text: str
               ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=text)
        add_common_flags(p, top_level=False, formats=TEXT_JSON)
        p.set_defaults(func=func)
        return p

    p = action("update", _update, "refresh production or staging through Sigstore's TUF "
               "repository (online; needs the tuf package)")
    p.add_argument("--instance", default="production", choices=("production", "staging"))
    p.add_argument("--url", metavar="URL",
                   help="the TUF repository (a mirror; default: Sigstore's CDN for the "
                        "instance); trust still starts from the TUF root shipped in safeload")
    p = action("add", _add, "add the trusted_root.json of a private Sigstore instance")
    p.add_argument("name", help="instance name identities refer to (--instance NAME)")
    p.add_argument("file", help="trusted_root.json (Sigstore TrustedRoot)")
    p.add_argument("--replace", action="store_true", help="replace an existing instance")
    action("list", _list, "list the Sigstore roots verification uses")

    def remove(args: argparse.Namespace, out: Output) -> int:
        confirm(args, out, f"remove the stored Sigstore root {args.name}")
        return _remove(args, out)

    p = action("remove", remove, "remove a stored root (a refreshed production or staging "
               "root falls back to the shipped copy)")
    p.add_argument("name")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
