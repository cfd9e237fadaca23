"""`safeload trust ...`: publishers, keys, keyless identities, revocations, pins, the policy.

Never imports torch. Every change goes through `TrustStore.update` (locked, atomic) and reports
the diff; destructive changes ask first (`--yes`; never a prompt in a machine format).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from safeload._cli import fleet, sigstore_roots
from safeload._cli._output import TEXT_JSON, Handler, Output, add_common_flags
from safeload._cli._trust_args import (
    digest_arg,
    file_sha256,
    identity_arg,
    pin_target,
    read_key_or_root,
    resolve_key_id,
    time_arg,
)
from safeload._internal.atomic import write_atomic
from safeload._internal.text import get_logger, safe_text
from safeload.errors import EXIT_OK, SafeloadError

_logger = get_logger("safeload")


def add_trust_store_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-store", metavar="PATH", default=None,
                   help="trust store file (default: $SAFELOAD_TRUST_STORE, else trust.json in "
                        "the config dir)")


def store_path(args: argparse.Namespace) -> Path:
    from safeload._internal import paths

    return Path(args.trust_store) if args.trust_store else paths.trust_store_path()


def _confirm(args: argparse.Namespace, out: Output, question: str) -> None:
    """Destructive changes: `--yes`, or an interactive "y"; never a prompt in a machine format."""
    if getattr(args, "yes", False):
        return
    if out.machine or not sys.stdin.isatty():
        raise SafeloadError(f"{question}: refusing without confirmation",
                            hint="re-run with --yes")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise SafeloadError("cancelled; nothing changed")


def _report_change(out: Output, before: Any, after: Any, action: str,
                   extra: dict[str, Any] | None = None) -> int:
    from safeload.trust import diff_stores

    changes = diff_stores(before, after)
    out.result({"ok": True, "action": action, "path": str(after.path), "changed": changes,
                "state_digest": after.state_digest(), **(extra or {})},
               text=changes or ["nothing changed"],
               summary=f"trust store: {safe_text(after.path)}")
    return EXIT_OK


def _key_summary(store: Any, key: Any) -> dict[str, Any]:
    from safeload.trust import format_time

    return {"id": key.key_id, "algorithm": key.algorithm, "expires": format_time(key.expires),
            "revoked": store.key_revocation(key.key_id) is not None}


def _publisher_summary(store: Any, p: Any, *, pem: bool = False) -> dict[str, Any]:
    from safeload.trust import format_time

    keys = [_key_summary(store, k) | ({"pem": k.pem} if pem else {}) for k in p.keys]
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


def _trust_init(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import Policy, TrustStore

    path = store_path(args)
    existed = TrustStore.load(path).exists

    def change(s: TrustStore) -> TrustStore:
        return s if s.exists or args.mode is None else s.with_policy(Policy(mode=args.mode))

    _, after = TrustStore.update(change, path)
    out.result({"ok": True, "path": str(path), "created": not existed,
                "policy": after.policy.to_dict()},
               text=[f"{'exists' if existed else 'created'}: {safe_text(path)} "
                     f"(policy mode {after.policy.mode})"])
    return EXIT_OK


def _trust_list(args: argparse.Namespace, out: Output) -> int:
    from safeload.signing.sigstore_store import list_roots
    from safeload.trust import TrustStore, load_observations

    store = TrustStore.load(store_path(args))
    obs = load_observations(store)
    roots = list_roots()
    pins = [p.to_dict() | {"source": "user"} for p in store.pins] + \
        [p.to_dict() | {"source": "first-use"} for p in obs.pins]
    out.result({
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
        "sigstore_roots": roots,
    }, text=[*_list_lines(store, obs, pins), *map(sigstore_roots.line, roots)])
    return EXIT_OK


def _list_lines(store: Any, obs: Any, pins: Sequence[dict[str, Any]]) -> Iterator[str]:
    yield (f"trust store: {safe_text(store.path)}"
           + ("" if store.exists else " (missing: empty store, default policy)"))
    yield (f"policy: mode {store.policy.mode}, pin Hub files on first use: "
           f"{store.policy.pin_hub_on_first_use}, pin local files: {store.policy.pin_local_files}")
    for p in store.publishers:
        yield (f"publisher {safe_text(p.name)}: namespaces {', '.join(p.namespaces) or '-'}; "
               f"{len(p.keys)} key(s), {len(p.roots)} root(s), "
               f"{len(p.identities)} keyless identit{'y' if len(p.identities) == 1 else 'ies'}")
        for k in p.keys:
            flag = " REVOKED" if store.key_revocation(k.key_id) else ""
            yield f"  key {k.key_id} {k.algorithm}{flag}"
        for r in p.roots:
            yield f"  root {r.fingerprint[:16]}... identities {safe_text(', '.join(r.identities))}"
        for i in p.identities:
            flag = " REVOKED" if _identity_revoked(store, i) else ""
            yield f"  keyless identity {i.describe()}{flag}"
    for rev in store.revoked_identities:
        issuer, san = rev.value.split(" ", 1)
        yield (f"revoked identity {safe_text(san)} from {safe_text(issuer)} "
               f"{safe_text(rev.reason)}")
    for rev in store.revoked_keys:
        yield f"revoked key {rev.value} {safe_text(rev.reason)}"
    for rev in store.revoked_digests:
        yield f"revoked digest sha256:{rev.value} {safe_text(rev.reason)}"
    for pin in pins:
        what = pin.get("path") or f"{pin['repo']}@{pin['revision']}:{pin['file']}"
        yield f"pin ({pin['source']}) {safe_text(what)} sha256:{pin['sha256']}"
    for x in store.revision_locks:
        yield f"revision lock {safe_text(x.repo)}: {', '.join(x.revisions)}"
    for s in obs.signed:
        yield f"signed before: {safe_text(s.location)} by {safe_text(s.publisher)}"


def _trust_show(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import TrustStore

    store = TrustStore.load(store_path(args))
    p = store.publisher(args.name)
    if p is None:
        hit = store.find_key(args.name)
        if hit is None:
            raise SafeloadError(f"no publisher or key {safe_text(args.name)} in "
                                f"{safe_text(store.path)}", hint="safeload trust list")
        p = hit[0]
    summary = _publisher_summary(store, p, pem=True)
    out.result({"ok": True, "publisher": summary}, text=_show_lines(p, summary))
    return EXIT_OK


def _show_lines(p: Any, summary: dict[str, Any]) -> Iterator[str]:
    yield f"publisher {safe_text(p.name)}"
    yield (f"  namespaces: {', '.join(p.namespaces) or '-'}"
           + (f"; expires {summary['expires']}" if summary["expires"] else ""))
    for k in summary["keys"]:
        yield (f"  key {k['id']} {k['algorithm']}" + (" REVOKED" if k["revoked"] else "")
               + (f" expires {k['expires']}" if k["expires"] else ""))
        yield safe_text(k["pem"], keep_newlines=True).rstrip()
    for r in summary["roots"]:
        yield f"  root {r['fingerprint']} {safe_text(r['subject'])}"
        yield f"    identities: {safe_text(', '.join(r['identities']))}"


def _trust_add_publisher(args: argparse.Namespace, out: Output) -> int:
    from safeload.errors import TrustStoreError
    from safeload.trust import Publisher, TrustStore

    expires = time_arg(args.expires)
    keys, roots = [], []
    for path in args.key or []:
        k, _ = read_key_or_root(path, [], None)
        keys.append(k)
    for path in args.root or []:
        if not args.identity:
            raise SafeloadError("--root needs at least one --identity (the SAN the publisher "
                                "signs as)")
        _, r = read_key_or_root(path, args.identity, None)
        roots.append(r)
    try:
        pub = Publisher.from_dict({"name": args.name, "namespaces": args.namespace or []},
                                  where="publisher", source="command line")
    except TrustStoreError as exc:
        raise SafeloadError(str(exc).removeprefix("command line: "), hint=exc.hint) from exc
    pub = Publisher(name=pub.name, namespaces=pub.namespaces, keys=tuple(keys),
                    roots=tuple(roots), expires=expires)
    before, after = TrustStore.update(lambda s: s.with_publisher(pub), store_path(args))
    return _report_change(out, before, after, "add-publisher")


def _trust_add_key(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import Publisher, TrustStore

    expires = time_arg(args.expires)
    key, root = read_key_or_root(args.file, args.identity or [], expires)

    def change(s: TrustStore) -> TrustStore:
        if s.publisher(args.publisher) is None:
            raise SafeloadError(f"no publisher {safe_text(args.publisher)}",
                                hint=f"safeload trust add-publisher {args.publisher} "
                                     "--namespace ORG/*")
        return s.with_publisher(Publisher(name=args.publisher,
                                          keys=(key,) if key else (),
                                          roots=(root,) if root else ()))

    before, after = TrustStore.update(change, store_path(args))
    ident = key.key_id if key else root.fingerprint
    return _report_change(out, before, after, "add-key", {"id": ident})


def _trust_add_identity(args: argparse.Namespace, out: Output) -> int:
    from safeload.signing.sigstore_store import resolve_root
    from safeload.trust import TrustStore

    ident = identity_arg(args)
    try:  # an instance verification could not use would refuse every load it signs
        resolve_root(ident.instance)
    except SafeloadError as exc:
        raise SafeloadError(str(exc), hint=exc.hint) from exc
    if ident.san_regex is not None:
        _logger.warning("trusting every SAN that fully matches %s", safe_text(ident.san_regex))
    before, after = TrustStore.update(lambda s: s.with_identity(args.publisher, ident),
                                      store_path(args))
    return _report_change(out, before, after, "add-identity", {"identity": ident.to_dict()})


def _trust_remove_identity(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import TrustStore

    before, after = TrustStore.update(
        lambda s: s.without_identity(args.publisher, args.issuer, args.san), store_path(args))
    return _report_change(out, before, after, "remove-identity",
                          {"issuer": args.issuer, "san": args.san})


def _trust_revoke_identity(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import TrustStore, identity_key

    identity_key(args.issuer, args.san)  # validates the issuer before asking
    _confirm(args, out, f"revoke identity {args.san} from {args.issuer}: every keyless "
                        "signature by it will be refused")
    before, after = TrustStore.update(
        lambda s: s.with_revoked_identity(args.issuer, args.san, args.reason or ""),
        store_path(args))
    return _report_change(out, before, after, "revoke-identity",
                          {"issuer": args.issuer, "san": args.san})


def _trust_revoke_key(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import TrustStore

    path = store_path(args)
    kid = resolve_key_id(TrustStore.load(path), args.key)
    _confirm(args, out, f"revoke key {kid}: every signature by it will be refused")
    before, after = TrustStore.update(lambda s: s.with_revoked_key(kid, args.reason or ""), path)
    return _report_change(out, before, after, "revoke-key", {"key_id": kid})


def _trust_revoke_digest(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import TrustStore

    sha = digest_arg(args.digest)
    _confirm(args, out, f"revoke digest sha256:{sha}: this file will be refused everywhere")
    before, after = TrustStore.update(lambda s: s.with_revoked_digest(sha, args.reason or ""),
                                      store_path(args))
    return _report_change(out, before, after, "revoke-digest", {"sha256": sha})


def _trust_pin(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import Pin, TrustStore

    target, local = pin_target(args)
    if local is not None:
        sha = digest_arg(args.sha256) if args.sha256 else file_sha256(Path(local))
        pin = Pin(sha, path=local)
    else:
        if not args.sha256:
            raise SafeloadError("a Hub pin needs --sha256")
        pin = Pin(digest_arg(args.sha256), repo=args.repo, revision=args.revision,
                  file=args.file)
    path = store_path(args)
    old = TrustStore.load(path).pin_conflict(pin)
    if old is not None:
        if not args.replace:
            raise SafeloadError(f"{safe_text(pin.describe())} is already pinned to "
                                f"sha256:{old.sha256}", hint="pass --replace to change it")
        _confirm(args, out, f"replace the pin of {safe_text(pin.describe())}")
    before, after = TrustStore.update(
        lambda s: s.with_pin(pin, replace_existing=bool(args.replace)), path)
    return _report_change(out, before, after, "pin", {"sha256": pin.sha256})


def _trust_unpin(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import TrustStore, unpin_observed

    target, _ = pin_target(args)
    path = store_path(args)
    _confirm(args, out, f"remove the pin of {safe_text(':'.join(target[1:]))}")
    before, after = TrustStore.update(lambda s: s.without_pin(target), path)
    removed_observed = unpin_observed(path, target)
    if removed_observed:
        out.note("removed the first-use pin")
    if not removed_observed and before == after:
        raise SafeloadError(f"no pin for {safe_text(':'.join(target[1:]))}")
    return _report_change(out, before, after, "unpin",
                          {"first_use_pin_removed": removed_observed})


def _trust_forget(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import forget_location

    _confirm(args, out, f"forget that {safe_text(args.location)} was signed (it may then load "
                        "unsigned)")
    if not forget_location(store_path(args), args.location):
        raise SafeloadError(f"no signed-location record {safe_text(args.location)}",
                            hint="safeload trust list shows them")
    out.result({"ok": True, "action": "forget", "location": args.location},
               text=[f"forgot {safe_text(args.location)}"])
    return EXIT_OK


def _trust_policy(args: argparse.Namespace, out: Output) -> int:
    from dataclasses import replace

    from safeload.trust import POLICY_TEXT as POLICY_HELP
    from safeload.trust import TrustStore

    path = store_path(args)
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
        out.result({"ok": True, "path": str(path), "policy": current.to_dict(),
                    "default": POLICY_HELP},
                   text=[f"policy ({safe_text(path)}): {json.dumps(current.to_dict())}",
                         POLICY_HELP])
        return EXIT_OK
    given_up = wanted.weakenings_from(current)
    if given_up:
        _confirm(args, out, "weaken the policy (" + "; ".join(given_up) + ")")
    if wanted.mode == "audit":
        _logger.warning("audit mode is UNSAFE: signature and pin failures only warn")
    before, after = TrustStore.update(lambda s: s.with_policy(wanted), path)
    return _report_change(out, before, after, "policy", {"policy": after.policy.to_dict()})


def _trust_export(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import TrustStore

    store = TrustStore.load(store_path(args))
    if args.output:
        dest = Path(args.output)
        # One atomic writer; no-clobber unless --overwrite (FileExistsError names the fix).
        write_atomic(dest, store.to_json(), overwrite=args.overwrite)
        out.result({"ok": True, "output": str(dest), "state_digest": store.state_digest()},
                   text=[f"exported {safe_text(store.path)} to {safe_text(dest)}"])
    else:  # the document itself is the text result
        out.result({"ok": True, "store": store.to_dict(), "state_digest": store.state_digest()},
                   text=[store.to_json().decode().rstrip("\n")])
    return EXIT_OK


def _trust_import(args: argparse.Namespace, out: Output) -> int:
    from safeload.trust import TrustStore, diff_stores

    incoming = TrustStore.from_bytes(Path(args.file).read_bytes(), source=str(args.file))
    path = store_path(args)

    def change(s: TrustStore) -> TrustStore:
        merged = s.merged(incoming, replace_pins=args.replace_pins)
        return merged.with_policy(incoming.policy) if args.with_policy else merged

    preview = diff_stores(TrustStore.load(path), change(TrustStore.load(path)))
    if args.dry_run or not preview:
        out.result({"ok": True, "action": "import", "dry_run": bool(args.dry_run),
                    "changed": preview}, text=preview or ["nothing to import"])
        return EXIT_OK
    if not out.machine and not args.yes:  # what the question is about, before asking it
        for line in preview:
            out.note(line)
    _confirm(args, out, f"apply these {len(preview)} change(s) to {safe_text(path)}")
    before, after = TrustStore.update(change, path)
    return _report_change(out, before, after, "import")


def add_parser(sub: Any) -> None:
    trust = sub.add_parser("trust", help="manage the trust store (publishers, keys, pins, policy)")
    add_common_flags(trust, top_level=False)
    tsub = trust.add_subparsers(dest="trust_command", metavar="ACTION")
    tsub.required = True

    def cmd(name: str, func: Handler, help_text: str, *, destructive: bool = False
            ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = tsub.add_parser(name, help=help_text)
        add_common_flags(p, top_level=False, formats=TEXT_JSON)
        add_trust_store_flag(p)
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
    p.add_argument("--instance", default="production", metavar="NAME",
                   help="Sigstore instance the identity signs on: production (default), "
                        "staging, or one added with `trust sigstore-root add`")
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
    fleet.add_commands(cmd)
    sigstore_roots.add_commands(cmd, _confirm)
