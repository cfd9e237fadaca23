"""The trust store: who safeload trusts, what it has pinned or revoked, and the load policy.

Stable API: `TrustStore`, `Publisher`, `TrustedKey`, `TrustedRoot`, `TrustedIdentity`, `Pin`,
`RevisionLock`, `Revocation`, `Policy`, `check_load`, `check_bytes`, `TrustDecision`.

The package, by concern (imports point down this list; nothing here imports an entry point):

    _schema       JSON validators and the time format
    model         Policy, TrustedKey, TrustedRoot, TrustedIdentity, Publisher, Revocation, Pin,
                  RevisionLock
    _files        permissions, bounded reads, atomic writes, the lock
    store         TrustStore (satisfies `signing.anchors.TrustAnchors`)
    observations  trust.observed.json: first-use pins, "was signed" locations
    diff          diff_stores, policy_weakenings (for the CLI's previews and confirmations)
    decide        the pure decision: LoadFacts -> Decision, one object per policy step
    check         check_load / check_bytes: the I/O shell around decide

It may import L0/L1 modules (errors, `_internal`, licenses, signing); `signing` never imports
it: the verifier is handed the store as its trust anchors.

One JSON file (`trust.json` in the config dir; `$SAFELOAD_TRUST_STORE`, `$SAFELOAD_HOME` or
`--trust-store` move it), with a schema version. **A missing file is an empty store with the
default policy**: nothing is trusted, signatures that are present must still verify, unsigned
content loads with a warning. safeload never falls back to "trust everything": a store that is
unparseable, of an unknown schema, has unknown fields, or is writable by other users (POSIX) is
refused with a `TrustStoreError` that says how to fix it; so is a location (the store's directory
or any parent) that others could write, whether or not the file exists (`check_location`):
otherwise another user could delete or plant the store. Bytes without a file get `check_bytes`.

Writes are atomic (`_internal.atomic.write_atomic`: temp file in the same directory, fsync,
rename) and serialized across processes by a `filelock.FileLock` on the sibling
`trust.json.lock`; a change is applied to a freshly re-read store under the lock
(`TrustStore.update`), so concurrent writers lose nothing.

What safeload learns while loading (first-use pins of Hub files, and which locations were once
loaded with a valid signature, for "no silent downgrade") goes to the sibling file
`trust.observed.json`, not into `trust.json`: loads never rewrite the user's configuration, and
`state_digest()` (which caches use to notice revocations and policy changes) only changes when
the configuration does.

The default policy is written once, in `POLICY_TEXT` (`trust.model`), which
`safeload trust policy` prints: revoked digests, keys and identities are refused in every mode;
pins, revision locks, present signatures, namespace bindings and "no silent downgrade" are
enforced in mode "default"; "strict" also needs a trusted signature on every load; "audit"
turns all but revocations into warnings.
"""

from safeload.trust._files import (
    LOCK_TIMEOUT_S,
    MAX_STORE_BYTES,
    check_location,
    observed_path,
)
from safeload.trust._schema import format_time, parse_time
from safeload.trust.check import check_blob_path, check_bytes, check_load, verify_with_store
from safeload.trust.decide import (
    AuditOnly,
    Decision,
    HubOrigin,
    LoadFacts,
    SignatureFacts,
    TrustDecision,
)
from safeload.trust.diff import diff_stores, policy_weakenings
from safeload.trust.model import (
    MODE_RANK,
    MODES,
    PICKLES,
    POLICY_TEXT,
    Mode,
    Pickles,
    Pin,
    Policy,
    Publisher,
    RevisionLock,
    Revocation,
    TrustedIdentity,
    TrustedKey,
    TrustedRoot,
    identity_key,
)
from safeload.trust.observations import (
    OBSERVED_SCHEMA_VERSION,
    Observations,
    SignedRecord,
    forget_location,
    load_observations,
    unpin_observed,
)
from safeload.trust.store import SCHEMA_VERSION, TrustStore

__all__ = [
    "LOCK_TIMEOUT_S", "MAX_STORE_BYTES", "MODES", "MODE_RANK", "OBSERVED_SCHEMA_VERSION",
    "PICKLES", "POLICY_TEXT", "SCHEMA_VERSION", "AuditOnly", "Decision", "HubOrigin", "LoadFacts",
    "Mode", "Observations", "Pickles", "Pin", "Policy", "Publisher", "RevisionLock", "Revocation",
    "SignatureFacts", "SignedRecord", "TrustDecision", "TrustStore", "TrustedIdentity",
    "TrustedKey", "TrustedRoot", "check_blob_path", "check_bytes", "check_load",
    "check_location", "diff_stores", "forget_location", "format_time", "identity_key",
    "load_observations", "observed_path", "parse_time", "policy_weakenings", "unpin_observed",
    "verify_with_store",
]
