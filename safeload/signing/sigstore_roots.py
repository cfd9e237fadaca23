"""Sigstore trusted roots: the copies shipped inside safeload, and roots from a file.

A trusted root (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`) lists the Fulcio
CAs, Rekor log keys, CT log keys and timestamp authorities of one Sigstore instance, each with
a `validFor` window. safeload ships two, copied unchanged from the sigstore 4.5.1 wheel:

- `production` (public-good Sigstore), sha256
  `6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66`;
- `staging` (for tests), sha256
  `81f5af777952d2c3955062ad56924c05ca916b5d49f3a0bce945faa475a8b1cc`.

sigstore-python's `Verifier.production(offline=True)` reads its own user cache
(`~/.local/share/sigstore-python`), a user-writable file nothing authenticates: safeload never
uses it. A root is always an explicit file: one of these, or one the user names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from safeload._internal import strictjson
from safeload._internal.text import safe_text
from safeload._internal.times import parse_iso_time
from safeload.errors import SignatureError

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
BUILTIN_ROOTS = ("production", "staging")
BUILTIN_SHA256 = {
    "production": "6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66",
    "staging": "81f5af777952d2c3955062ad56924c05ca916b5d49f3a0bce945faa475a8b1cc",
}
MAX_ROOT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class SigstoreRoot:
    """One trusted root: its name (instance id), its bytes' sha256 and the parsed document."""

    name: str
    data: bytes
    sha256: str
    doc: dict[str, Any]
    source: str  # where it came from, for messages and provenance


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 time of a trusted root (`2021-03-07T03:20:29Z`, fractions allowed)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_iso_time(value)
    except ValueError:
        return None


def root_from_bytes(data: bytes, *, name: str, source: str) -> SigstoreRoot:
    """Parse a trusted root; only its media type and shape are checked here.

    Raises:
        SignatureError: not a Sigstore trusted root.
    """
    if len(data) > MAX_ROOT_BYTES:
        raise SignatureError(f"{safe_text(source)}: trusted root larger than {MAX_ROOT_BYTES}")
    try:
        doc = strictjson.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SignatureError(f"{safe_text(source)}: trusted root is not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("mediaType") != TRUSTED_ROOT_MEDIA_TYPE:
        raise SignatureError(
            f"{safe_text(source)}: not a Sigstore trusted root (mediaType "
            f"{TRUSTED_ROOT_MEDIA_TYPE} expected)")
    return SigstoreRoot(name=name, data=data, sha256=hashlib.sha256(data).hexdigest(), doc=doc,
                        source=source)


def builtin_root(name: str) -> SigstoreRoot:
    """The shipped copy of `production` or `staging`, checked against its recorded sha256.

    Raises:
        ValueError: unknown name. SignatureError: the packaged file was altered.
    """
    if name not in BUILTIN_ROOTS:
        raise ValueError(f"unknown Sigstore instance {name!r} (known: {', '.join(BUILTIN_ROOTS)})")
    data = resources.files("safeload.signing").joinpath("_roots", f"{name}.json").read_bytes()
    root = root_from_bytes(data, name=name, source=f"safeload's {name} trusted root")
    if root.sha256 != BUILTIN_SHA256[name]:
        raise SignatureError(f"safeload's packaged {name} Sigstore root was altered",
                             hint="reinstall safeload")
    return root


def root_from_file(path: str | Path, *, name: str | None = None) -> SigstoreRoot:
    """A trusted root the user names (a private instance, or a test root).

    Raises:
        SignatureError: not a trusted root. OSError: cannot read.
    """
    p = Path(path)
    with p.open("rb") as f:
        data = f.read(MAX_ROOT_BYTES + 1)
    return root_from_bytes(data, name=name or f"file:{p.name}", source=str(p))
