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

The default policy, in one place (also printed by `safeload trust policy`)::

    mode "default":
      - revoked digests and revoked keys are refused (in every mode, audit included);
      - a pinned digest that no longer matches is refused (DigestMismatchError);
      - a repository with a revision lock loads only at the locked commits;
      - a signature that is present (model.sig beside the file / in its snapshot) must verify
        against a publisher in this store;
      - a repo in a namespace owned by a publisher with keys must be signed by that publisher;
      - content once loaded with a valid signature is refused later without one;
      - a valid signature by a trusted publisher on a Hub repo outside its namespaces (a
        re-upload) loads with a warning, marked `reupload` in the decision and the ledger;
      - keyless publishers are identities (Sigstore instance, exact OIDC issuer, exact SAN or
        opt-in full-match regex, optional Fulcio extension pins); revoking an identity, or a
        Fulcio certificate by fingerprint (`revoked_keys`), refuses it everywhere;
      - anything else (unsigned, unbound) loads with a warning;
      - Hub files (repo + commit + file) are pinned on first use; local files are not.
    mode "strict": as default, and every load needs a signature by a trusted publisher.
    mode "audit": signature, pin, lock and downgrade failures become warnings; revoked digests
      and keys are still refused.
"""

from safeload.trust._files import (
    LOCK_TIMEOUT_S,
    MAX_STORE_BYTES,
    check_location,
    observed_path,
)
from safeload.trust._schema import format_time, parse_time
from safeload.trust.check import check_bytes, check_load, verify_with_store
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
    "PICKLES", "SCHEMA_VERSION", "AuditOnly", "Decision", "HubOrigin", "LoadFacts", "Mode",
    "Observations", "Pickles", "Pin", "Policy", "Publisher", "RevisionLock", "Revocation",
    "SignatureFacts", "SignedRecord", "TrustDecision", "TrustStore", "TrustedIdentity",
    "TrustedKey", "TrustedRoot", "check_bytes", "check_load", "check_location", "diff_stores",
    "format_time", "forget_location", "identity_key", "load_observations", "observed_path",
    "parse_time", "policy_weakenings", "unpin_observed", "verify_with_store",
]
