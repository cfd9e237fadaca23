"""Command-line values to trust-store values: dates, PEM files, keyless identities, key ids,
digests and pin targets. Each raises SafeloadError naming the flag and the accepted forms."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safeload._internal.text import safe_text
from safeload.errors import SafeloadError


def time_arg(value: str | None) -> Any:
    from safeload.trust import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise SafeloadError(f"--expires {safe_text(value)}: {exc}",
                            hint="use 2030-01-01 or 2030-01-01T00:00:00Z") from exc


def read_key_or_root(path: str, identities: Sequence[str], expires: Any) -> tuple[Any, Any]:
    """(TrustedKey | None, TrustedRoot | None) from a PEM file."""
    from safeload.trust import TrustedKey, TrustedRoot

    data = Path(path).read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return None, TrustedRoot.from_pem(data, identities=tuple(identities), expires=expires)
    if identities:
        raise SafeloadError("--identity applies to root certificates, not to public keys")
    return TrustedKey.from_pem(data, expires=expires), None


def identity_arg(args: argparse.Namespace) -> Any:
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


def resolve_key_id(store: Any, value: str) -> str:
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


def file_sha256(path: Path) -> str:
    import hashlib

    from safeload.signing._tree import hash_file

    return hash_file(path, hashlib.sha256, follow_symlinks=True)


def digest_arg(value: str) -> str:
    v = value.lower().removeprefix("sha256:")
    if len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v
    p = Path(value)
    if p.is_file():
        return file_sha256(p)
    raise SafeloadError(f"{safe_text(value)} is neither a sha256 hex digest nor a file")


def pin_target(args: argparse.Namespace) -> tuple[Any, str | None]:
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
