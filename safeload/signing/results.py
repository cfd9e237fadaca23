"""What a signature check establishes: the verified manifest, and a verified model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from safeload.signing._format import Manifest, Resource

if TYPE_CHECKING:
    from safeload.signing.keyless import KeylessResult

Method = Literal["key", "certificate", "sigstore"]


@dataclass(frozen=True)
class SignedManifest:
    """A bundle whose signature verified, and its parsed manifest. No model file was read."""

    manifest: Manifest
    method: Method
    publisher: str | None  # None for a one-off check with a caller-supplied key or root
    key_id: str  # SHA-256 of the signing key's DER SPKI (the leaf's key for certificates)
    identity: str | None  # the leaf SAN that matched (certificate method)
    signature_path: str
    signature_sha256: str
    keyless: KeylessResult | None = None  # the sigstore method: identity, log entry, root

    def resources_for(self, relpath: str) -> list[Resource]:
        """The manifest entries of one file (one for `files`, its shards for `shards`).

        `relpath` is relative to the model directory; for a single-file model pass the file's
        basename (the manifest may say `.` or the basename).
        """
        return [r for r in self.manifest.resources if r.path == relpath]


@dataclass(frozen=True)
class VerificationResult:
    """A model directory (or single file) that matches a trusted signature.

    `files` maps every signed manifest name to its hex digest in `hash_type`: file paths for the
    `files` serialization, `path:start:end` for `shards`.
    """

    publisher: str | None
    key_id: str
    method: Method
    files: Mapping[str, str]
    subject_digest: str
    hash_type: str
    serialization: Literal["files", "shards"]
    identity: str | None
    signature_path: str
    signature_sha256: str
    keyless: KeylessResult | None = None


__all__ = ["Method", "SignedManifest", "VerificationResult"]
