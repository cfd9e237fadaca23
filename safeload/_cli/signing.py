"""`safeload sign` and `safeload verify`: OpenSSF Model Signing bundles. Never imports torch."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safeload._cli._output import TEXT_JSON, Output, add_common_flags
from safeload._cli.trust import add_trust_store_flag, store_path
from safeload._internal.text import safe_text
from safeload.errors import EXIT_OK, SafeloadError


def _verify(args: argparse.Namespace, out: Output) -> int:
    from safeload.signing import default_signature_path
    from safeload.trust import TrustStore
    from safeload.verifying import verify_directory

    target = Path(args.path)
    sig = Path(args.signature) if args.signature else default_signature_path(target)
    one_off = args.key is not None or args.certificate_chain is not None
    store = TrustStore.load(store_path(args))
    # The signature, then every signed weight file through the same gates as a load.
    done = verify_directory(
        target, sig, store=store, key=args.key if one_off else None,
        certificate_chain=args.certificate_chain, identity=args.identity,
        identity_provider=args.identity_provider, sigstore_root=_sigstore_root_arg(args),
        ignore_paths=args.ignore_path or ())
    result, ctx = done.signature, done.context
    licence = ctx.license.primary.spdx_id if ctx.license else None
    out.result({
        "ok": True, "verified": True, "path": str(target), "signature": str(sig),
        "license": licence,
        "license_action": ctx.license.action if ctx.license else None,
        "signature_sha256": result.signature_sha256, "method": result.method,
        "publisher": result.publisher, "key_id": result.key_id,
        "identity": result.identity, "subject_digest": result.subject_digest,
        "hash_type": result.hash_type, "serialization": result.serialization,
        "files": dict(result.files), "weights_admitted": list(done.weights),
        **_keyless_json(result.keyless),
    }, text=_verify_lines(args, target, result, ctx, licence))
    return EXIT_OK


def _verify_lines(args: argparse.Namespace, target: Path, result: Any, ctx: Any,
                  licence: str | None) -> Iterator[str]:
    who = safe_text(result.publisher) if result.publisher else "the given " + (
        "key" if args.key else "root" if args.certificate_chain else "identity")
    ident = f" as {safe_text(result.identity)}" if result.identity else ""
    yield (f"verified: {safe_text(target)} ({len(result.files)} signed entries, "
           f"{result.hash_type}/{result.serialization}) signed by {who}{ident} "
           f"[{result.method}, key {result.key_id[:16]}...]")
    if result.keyless is not None:
        k = result.keyless
        index = k.log_index if k.log_index is not None else "unbound (no SET)"
        yield (f"keyless: issuer {safe_text(k.issuer)}, Rekor log index {index}, signed "
               f"{k.signed_time:%Y-%m-%d %H:%M:%S} UTC, Sigstore root {safe_text(k.root_name)}")
    if ctx.license is not None:
        yield (f"licence: {safe_text(licence)} ({ctx.license.action}); "
               + "; ".join(safe_text(f.describe()) for f in ctx.license.findings))


def _sigstore_root_arg(args: argparse.Namespace) -> Any:
    """The Sigstore root a one-off keyless check uses (None: the shipped production root)."""
    from safeload.signing.sigstore_roots import root_from_file
    from safeload.signing.sigstore_store import resolve_root

    if args.sigstore_root:
        return root_from_file(args.sigstore_root)
    if args.sigstore_instance:
        return resolve_root(args.sigstore_instance)
    return None


def _keyless_json(k: Any) -> dict[str, Any]:
    from safeload.signing.keyless import summary

    return {} if k is None else {"keyless": summary(k)}


def _identity_token(args: argparse.Namespace) -> str:
    """`--identity-token FILE`, else $SIGSTORE_ID_TOKEN (as sigstore-python reads it)."""
    if args.identity_token:
        return Path(args.identity_token).read_text(encoding="utf-8")
    env = os.environ.get("SIGSTORE_ID_TOKEN")
    if not env:
        raise SafeloadError("--keyless needs an OIDC identity token",
                            hint="pass --identity-token FILE or set SIGSTORE_ID_TOKEN")
    return env


def _sign_with_key(args: argparse.Namespace, out: Output) -> Any:
    from safeload.signing import sign_model

    password: bytes | None = None
    pem = Path(args.key).read_bytes()
    if b"ENCRYPTED" in pem:
        env = os.environ.get("SAFELOAD_SIGNING_KEY_PASSWORD")
        if env is not None:
            password = env.encode()
        elif sys.stdin.isatty() and not out.machine:
            import getpass

            password = getpass.getpass(f"password for {args.key}: ").encode()
        else:
            raise SafeloadError(f"{safe_text(args.key)} is encrypted",
                                hint="set SAFELOAD_SIGNING_KEY_PASSWORD or run interactively")
    return sign_model(args.path, private_key_pem_path=args.key,
                      certificate_chain=args.certificate_chain, output=args.output,
                      password=password, ignore_paths=args.ignore_path or [],
                      overwrite=args.overwrite)


def _sign(args: argparse.Namespace, out: Output) -> int:
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
        result = _sign_with_key(args, out)
    if not result.reference_compatible:
        out.note("note: Ed25519 is a safeload extension: `model_signing verify` cannot read it")
    out.result({"ok": True, "output": str(result.output), "method": result.method,
                "key_id": result.key_id, "algorithm": result.algorithm,
                "subject_digest": result.subject_digest, "files": result.files,
                "reference_compatible": result.reference_compatible},
               text=[f"signed {len(result.files)} file(s) of {safe_text(args.path)} -> "
                     f"{safe_text(result.output)} ({result.method}, {result.algorithm}, key "
                     f"{result.key_id[:16]}...)"])
    return EXIT_OK


def add_verify_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify a model's OpenSSF Model Signing signature "
                                      "(exit 0 verified, 1 refused, 2 could not decide)")
    add_common_flags(p, top_level=False, formats=TEXT_JSON)
    add_trust_store_flag(p)
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
                       help="keyless: Sigstore trusted_root.json (default: the production root)")
    roots.add_argument("--sigstore-instance", metavar="NAME",
                       help="keyless: production, staging or a private instance (see "
                            "`safeload trust sigstore-root list`)")
    p.add_argument("--ignore-path", metavar="P", action="append",
                   help="a path the signer ignored but did not record (repeatable)")
    p.set_defaults(func=_verify)


def add_sign_parser(sub: Any) -> None:
    p = sub.add_parser("sign", help="sign a model (OpenSSF Model Signing bundle)")
    add_common_flags(p, top_level=False, formats=TEXT_JSON)
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
