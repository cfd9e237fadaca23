"""The whole safeload exception tree, in one place.

Every error safeload raises derives from `SafeloadError`. A `RefusedError` is a deliberate "no"
(the CLI exits 1); any other `SafeloadError` means safeload could not decide (the CLI exits 2).
"""

from __future__ import annotations

import pickle
from typing import Final

# Exit codes of the `safeload` command (public: scripts and CI branch on them).
EXIT_OK: Final = 0  # checked, nothing refused
EXIT_REFUSED: Final = 1  # checked, and policy says no (a RefusedError)
EXIT_ERROR: Final = 2  # could not decide: usage or operational error (any other error)


class SafeloadError(Exception):
    """Base of every safeload error. `diagnostics()` adds what to do next."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint
        if self.hint and hasattr(self, "add_note"):
            # A traceback shows notes, `str()` does not: the remedy reaches a user who never
            # catches the error (review O), and messages compared or logged stay the same.
            self.add_note(f"fix: {self.hint}")

    def diagnostics(self) -> str:
        """The message, plus the remedy when there is one."""
        return f"{self}\n  fix: {self.hint}" if self.hint else str(self)


class RefusedError(SafeloadError):
    """Checked, and policy says no."""


class UnsafeCheckpointError(RefusedError, pickle.UnpicklingError):
    """A checkpoint that could run code, or that cannot be shown not to.

    Also a `pickle.UnpicklingError`, which is what `torch.load(weights_only=True)` raises, so
    callers written against `torch.load` catch it unchanged.
    """

    def __init__(self, message: str, *, hint: str = "", findings: tuple[object, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.findings = findings


class UnsupportedFormatError(RefusedError, pickle.UnpicklingError):
    """The bytes are not a format safeload can load (or not one it loads yet)."""


class MalformedFileError(RefusedError, pickle.UnpicklingError, RuntimeError, ValueError):
    """A file of a known format that does not parse exactly (truncated, inconsistent, oversized).

    Also a RuntimeError, as torch.load's own error for a corrupt file, so a resume loop written
    for torch (`except (RuntimeError, EOFError, OSError)`) catches it; and a ValueError, as
    joblib.load and np.load raise for one.
    """


class TruncatedFileError(MalformedFileError, EOFError):
    """A checkpoint whose bytes end early (an interrupted write or download): torch raises
    EOFError or RuntimeError, and this is both."""


class EmptyFileError(TruncatedFileError):
    """A checkpoint file with no bytes at all (an interrupted write): torch raises EOFError."""


class MapLocationError(SafeloadError, RuntimeError):
    """A `map_location` (or the saved device, without one) this machine cannot honour.

    torch.load raises a RuntimeError with the same advice ("... use map_location=..."); the
    message names the user's file. Not a refusal: nothing is wrong with the file.
    """


class MapLocationTypeError(SafeloadError, TypeError):
    """A `map_location` of a type torch.load does not accept (torch raises a TypeError)."""


class UnsupportedArgumentError(RefusedError):
    """An argument that would bypass safeload (`from_pretrained(from_tf=True)`, ...)."""


class UnsafePathError(RefusedError):
    """A path that is not a regular file inside its model directory (FIFO, device, bad link)."""


class SpecialFilePathError(UnsafePathError, OSError):
    """A FIFO, device or socket where a checkpoint file was expected: an OSError, as a resume
    loop written for torch catches (review O)."""


class DirectoryPathError(UnsafePathError, IsADirectoryError):
    """A directory where a checkpoint file was expected (torch raises IsADirectoryError)."""


class VerificationError(RefusedError):
    """A signature, digest or publisher check failed."""


class SignatureError(VerificationError):
    """A signature is missing, malformed or does not verify."""


class UntrustedPublisherError(VerificationError):
    """The signature is valid but its signer is not trusted for this model."""


class DigestMismatchError(VerificationError):
    """A file's digest differs from the pinned or signed one."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"digest mismatch for {path}: expected {expected}, got {actual}",
            hint="the file changed since it was pinned or signed; fetch it again from its source",
        )
        self.path, self.expected, self.actual = path, expected, actual


class ManifestMismatchError(VerificationError):
    """The files on disk are not the files the signature covers (missing, extra or escaping)."""

    def __init__(self, message: str, *, hint: str = "", missing: tuple[str, ...] = (),
                 extra: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.missing, self.extra = missing, extra


class RevokedError(VerificationError):
    """A digest or key that the trust store revokes: refused in every mode, audit included."""


class RevisionLockError(VerificationError):
    """A repository revision that the trust store's revision lock does not allow."""


class UnsupportedSignatureError(SafeloadError):
    """A signature safeload cannot check (keyless bundle, blake3 without the `blake3` package).

    Not a `RefusedError`: safeload could not decide, so the CLI exits 2 and loads fail closed.
    """


class SigningError(SafeloadError):
    """A model could not be signed (unusable key or certificate, nothing to sign, output exists)."""


class LicenseRefusedError(RefusedError):
    """The model's licence is denied by the licence policy."""


class TrustStoreError(SafeloadError):
    """The trust store is missing, unparseable, of an unknown schema or too permissive."""


class SigstoreRootError(TrustStoreError):
    """A Sigstore trusted root cannot be refreshed, added or found (could not decide)."""


class SigstoreRootRefusedError(SigstoreRootError, VerificationError):
    """A Sigstore root refresh that TUF refuses (rollback, expiry, signatures, hashes), or a
    stored root that no longer verifies: checked, and refused."""


class ConversionError(SafeloadError, RuntimeError):
    """The sandboxed conversion failed. Also a RuntimeError: what torch.load raises when it
    cannot rebuild a checkpoint, so code written for torch catches it."""

    def __init__(self, message: str, *, hint: str = "", returncode: int | None = None,
                 stderr: str = "") -> None:
        super().__init__(message, hint=hint)
        self.returncode, self.stderr = returncode, stderr


class ConversionTimeoutError(ConversionError, TimeoutError):
    """The sandboxed conversion ran out of time."""


class SandboxUnavailableError(ConversionError):
    """No isolating sandbox layer is available and the user did not opt into running without."""


class OutputCollisionError(ConversionError, FileExistsError):
    """Two conversions would write one output file, or an output would replace its source.

    Decided before anything is written. Also a FileExistsError, as an existing output is."""


class ResultsError(SafeloadError, ValueError):
    """A bulk conversion's results file is unfinished or damaged (`safeload convert --merge`)."""


class ProvenanceError(SafeloadError):
    """The provenance ledger could not be written or does not verify."""


class LedgerIntegrityError(ProvenanceError, RefusedError):
    """The provenance ledger does not verify: an entry was edited, deleted, reordered or cut off.

    A `RefusedError` too (the CLI exits 1): the ledger was checked and found broken, which is a
    finding, not an operational failure.
    """


class ExportError(ProvenanceError, ConnectionError):
    """Provenance could not be shipped to a collector or Dependency-Track (unreachable, refused,
    or an answer that is not the API's). Never raised by a load: exports are best effort."""


class ProvenanceWarning(UserWarning):
    """Provenance could not be recorded and the policy is not strict: the load went ahead."""
