"""The provenance ledger: one hash-chained JSON line per load, conversion and verification.

Public and stable (all re-exported here): `ProvenanceEntry` and its parts, `record`,
`record_or_warn`, `flush`, `verify`, `VerifyReport`, `read_ledger`, `LedgerRecord`,
`require_intact`.
No torch import.

Owns, one module per concern:
- `entry`: the record types and their validation (closed sets as Literals);
- `scrub`: credential redaction before anything is written;
- `ledger`: the line format, HEAD, segments, the append with its lock and crash repair
  (`record`, `append_lines`);
- `batch`: the batched writer loads use (`record_or_warn`, `flush`): group commit, session
  records, coalescing of repeats, and exactly what a crash, `kill -9` or power loss can lose;
- `read`: reading and verifying the chain (`read_ledger`, `verify`, `require_intact`);
- `shipping`: the export record of a line (ledger id, seq, hash, decision, artifact digest);
- `otlp`: those records as OpenTelemetry logs (opt-in `SAFELOAD_OTLP=1`, `safeload[otel]`);
- `fromexport`: central verification of many nodes' exported lines;
- `dtrack`: the upload of an inventory ML-BOM to Dependency-Track.

Imports (layer L2): errors, `_version`, `_internal` (paths, atomic), licenses, and trust types
(`Mode`, `parse_time`); never an entry point. `entry` < `scrub` < `ledger` < `batch` < `read`
< `shipping` < `otlp`, `fromexport`; `dtrack` stands alone (stdlib HTTP).

The write path's test hooks (`_fault_hook`, `_datasync`) live in, and are set on, `ledger`.
"""

from __future__ import annotations

from safeload.provenance import otlp as _otlp
from safeload.provenance.batch import flush, record_again, record_or_warn
from safeload.provenance.entry import (
    ACTIONS,
    LICENSE_CLASSES,
    PIN_STATES,
    SIGNATURE_STATUSES,
    Action,
    ConvertedFrom,
    FileRecord,
    LicenseClassName,
    LicenseRecord,
    PinState,
    ProvenanceEntry,
    PublisherRecord,
    SignatureRecord,
    SignatureStatus,
    Source,
    TrustRecord,
    hf_purl,
    hf_purl_parts,
    parse_time,
    store_record,
)
from safeload.provenance.ledger import (
    GENESIS,
    HEAD_NAME,
    LEDGER_NAME,
    LINE_VERSION,
    LOCK_NAME,
    MAX_ENTRY_BYTES,
    TORN_DIR,
    record,
)
from safeload.provenance.read import (
    BadEntry,
    LedgerRecord,
    LedgerState,
    VerifyReport,
    read_ledger,
    require_intact,
    verify,
)

# The OTLP exporter listens to every append; it does nothing unless SAFELOAD_OTLP is set.
_otlp.install()

__all__ = [
    "ACTIONS",
    "GENESIS",
    "HEAD_NAME",
    "LEDGER_NAME",
    "LICENSE_CLASSES",
    "LINE_VERSION",
    "LOCK_NAME",
    "MAX_ENTRY_BYTES",
    "PIN_STATES",
    "SIGNATURE_STATUSES",
    "TORN_DIR",
    "Action",
    "BadEntry",
    "ConvertedFrom",
    "FileRecord",
    "LedgerRecord",
    "LedgerState",
    "LicenseClassName",
    "LicenseRecord",
    "PinState",
    "ProvenanceEntry",
    "PublisherRecord",
    "SignatureRecord",
    "SignatureStatus",
    "Source",
    "TrustRecord",
    "VerifyReport",
    "hf_purl",
    "hf_purl_parts",
    "parse_time",
    "read_ledger",
    "record",
    "record_again",
    "record_or_warn",
    "require_intact",
    "flush",
    "store_record",
    "verify",
]
