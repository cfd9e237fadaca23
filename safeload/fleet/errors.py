"""The fleet errors: every one is a `TrustStoreError`, so callers that handle an unusable trust
store handle an unusable organisation store unchanged.

Verification failures (rollback, freeze, tampering, too few signatures, an older serial) are also
`VerificationError`s, hence `RefusedError`s: the CLI exits 1, the chain was checked and refused.
Configuration, network and lock failures mean safeload could not decide (exit 2).
"""

from __future__ import annotations

from safeload.errors import TrustStoreError, VerificationError

SYNC_FIX = "run `safeload trust sync` on a node that can reach the repository"


class FleetError(TrustStoreError):
    """Base of the fleet (organisation trust store) errors."""


class FleetNotSubscribedError(FleetError):
    """No organisation store is configured on this node."""


class FleetConfigError(FleetError):
    """The subscription (URL, pinned root.json, settings) or the local fleet state is unusable."""


class FleetUnreachableError(FleetError):
    """The TUF repository could not be reached (network, HTTP error, timeout)."""


class FleetLockError(FleetError):
    """Another process held the fleet sync lock for too long."""


class FleetVerificationError(FleetError, VerificationError):
    """The TUF chain or the store target does not verify: signatures, thresholds, hashes."""


class FleetRollbackError(FleetVerificationError):
    """Metadata or a store older than the one this node already accepted (rollback attack)."""


class FleetExpiredError(FleetVerificationError):
    """Signed metadata is past its expiry (freeze attack, or a node offline for too long)."""

    def __init__(self, message: str, *, hint: str = SYNC_FIX, role: str = "",
                 expires: str = "") -> None:
        super().__init__(message, hint=hint)
        self.role, self.expires = role, expires


__all__ = ["FleetConfigError", "FleetError", "FleetExpiredError", "FleetLockError",
           "FleetNotSubscribedError", "FleetRollbackError", "FleetUnreachableError",
           "FleetVerificationError", "SYNC_FIX"]
