"""Ledger lines as OpenTelemetry log records over OTLP/HTTP (optional extra `safeload[otel]`).

Opt-in: `SAFELOAD_OTLP=1` (also `true`, `yes`, `on`) in the environment of the process that
loads. Then every line the ledger writer makes durable is handed, under the writers' lock, to a
bounded in-memory queue (a few microseconds); a daemon thread builds the SDK on first use
(`LoggerProvider`, `BatchLogRecordProcessor`, `OTLPLogExporter`) and emits one log record per
line: body = the line's canonical JSON, attributes as `shipping` describes, resource
`service.name` and `host.name`. Endpoint, headers, timeout, compression, TLS and batching come
from the standard `OTEL_EXPORTER_OTLP_*`, `OTEL_BLRP_*`, `OTEL_SERVICE_NAME` and
`OTEL_RESOURCE_ATTRIBUTES` variables.

Best effort, never blocking or failing a load: a missing SDK, a collector that is down, a full
queue (`QUEUE_MAX` lines; the excess is dropped and counted) are logged, once, and nothing
else. The ledger stays the source of truth: `safeload provenance export --format otlp` ships
the whole ledger again (collectors and `verify --from-export` tolerate duplicates). At exit,
in the interpreter's early thread-exit hook (`_register_exit`: plain `atexit` is too late for the
SDK), the ledger writer's queue is written and everything is sent, waiting at most 5 s for the
SDK to start and the exporter's timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s) for the last batch.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload.provenance import ledger as _ledger
from safeload.provenance.ledger import Line
from safeload.provenance.shipping import Shipped, ledger_id, resource, shipped
from safeload.trust import parse_time

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter

_logger = logging.getLogger("safeload.provenance")

ENV_SWITCH = "SAFELOAD_OTLP"
QUEUE_MAX = 10_000
INSTALL_HINT = "pip install 'safeload[otel]'"


def enabled() -> bool:
    """Whether this process exports ledger lines (`SAFELOAD_OTLP`)."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() in {"1", "true", "yes", "on"}


def _time_ns(item: Shipped) -> int | None:
    try:
        return int(parse_time(item.time).timestamp() * 1_000_000_000) if item.time else None
    except (ValueError, TypeError):
        return None


def provider(resource_attributes: Mapping[str, str],
             exporter: LogRecordExporter | None = None) -> LoggerProvider:
    """A LoggerProvider with a batch processor over `exporter` (default: OTLP/HTTP from the
    environment). Raises ImportError without `safeload[otel]`."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    attrs = dict(resource_attributes)
    if os.environ.get("OTEL_SERVICE_NAME"):
        attrs.pop("service.name", None)  # the standard variable wins, as everywhere in OTel
    out = LoggerProvider(resource=Resource.create(attrs), shutdown_on_exit=False)
    out.add_log_record_processor(BatchLogRecordProcessor(exporter or OTLPLogExporter()))
    return out


def emit(provider_: LoggerProvider, item: Shipped) -> None:
    """One log record for one ledger line."""
    from opentelemetry._logs import LogRecord, SeverityNumber

    from safeload.provenance.shipping import line_text

    attrs = item.attributes()
    warn = attrs.get("safeload.decision") == "audit-mismatch"
    provider_.get_logger("safeload.provenance").emit(LogRecord(
        timestamp=_time_ns(item), body=line_text(item.line), attributes=attrs,
        severity_number=SeverityNumber.WARN if warn else SeverityNumber.INFO,
        severity_text="WARN" if warn else "INFO", event_name="safeload.ledger.line"))


@dataclass(frozen=True)
class ShipReport:
    """What `ship` sent: records handed over, and whether every batch was accepted."""

    records: int
    exported: int
    failed: int

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.exported == self.records


def ship(items: Iterable[Shipped], *, service_name: str | None = None,
         exporter: LogRecordExporter | None = None, timeout_s: float = 30.0) -> ShipReport:
    """Send `items` now and wait (at most `timeout_s`) until every batch was answered.

    Raises:
        ImportError: `safeload[otel]` is not installed.
    """
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    inner = exporter or OTLPLogExporter()
    counts = {"exported": 0, "failed": 0}

    class Counting(LogRecordExporter):  # the SDK reports export failures only to its exporter
        def export(self, batch: Any) -> LogRecordExportResult:
            result = inner.export(batch)
            key = "exported" if result == LogRecordExportResult.SUCCESS else "failed"
            counts[key] += len(batch)
            return result

        def shutdown(self) -> None:
            inner.shutdown()  # type: ignore[no-untyped-call]

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    prov = provider(resource(service_name), Counting())
    n = 0
    for item in items:
        emit(prov, item)
        n += 1
    prov.force_flush(int(timeout_s * 1000))
    prov.shutdown()
    return ShipReport(n, counts["exported"], counts["failed"])


# --------------------------------------------------------------------------------------------
# During loads: the append listener and its background thread


class _Shipper:
    """A bounded queue and the thread that builds the SDK and emits what is queued."""

    def __init__(self) -> None:
        self.queue: deque[Shipped] = deque()
        self.cond = threading.Condition()
        self.dropped = 0
        self.provider: LoggerProvider | None = None
        self.failed = False
        self.busy = False
        self.thread = threading.Thread(target=self._run, name="safeload-otlp", daemon=True)
        self.thread.start()

    def put(self, items: list[Shipped]) -> None:
        with self.cond:
            room = QUEUE_MAX - len(self.queue)
            if len(items) > room:
                if self.dropped == 0:
                    _logger.warning("OTLP export is behind: dropping ledger lines (the ledger "
                                    "keeps them; `safeload provenance export --format otlp` "
                                    "ships them again)")
                self.dropped += len(items) - max(room, 0)
                items = items[:max(room, 0)]
            self.queue.extend(items)
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.busy = False
                    self.cond.notify_all()
                    self.cond.wait()
                batch = list(self.queue)
                self.queue.clear()
                self.busy = True
            self._emit(batch)

    def _emit(self, batch: list[Shipped]) -> None:
        if self.failed:
            return
        try:
            if self.provider is None:
                self.provider = provider(resource())
            for item in batch:
                emit(self.provider, item)
        except ImportError:
            self.failed = True
            _logger.warning("%s is set but the OpenTelemetry SDK is not installed (%s): ledger "
                            "lines are not exported", ENV_SWITCH, INSTALL_HINT)
        except Exception as exc:  # noqa: BLE001 - best effort: an exporter fault is logged only
            self.failed = True
            _logger.warning("OTLP export of ledger lines stopped: %s", type(exc).__name__)
            _logger.debug("OTLP export failure", exc_info=True)

    def drain(self, timeout_s: float) -> None:
        """Wait until the queue is handed to the SDK, then flush and stop it."""
        with self.cond:
            self.cond.wait_for(lambda: not self.queue and not self.busy, timeout=timeout_s)
        if self.provider is not None:
            self.provider.shutdown()  # flushes the batch, bounded by the exporter's timeout
            self.provider = None


@dataclass
class _Tail:
    ledger_id: str | None
    sessions: dict[int, Mapping[str, Any]]


_LOCK = threading.Lock()
_shipper: _Shipper | None = None
_exit_registered = False
_tails: dict[Path, _Tail] = {}


def _at_exit() -> None:
    """Write what the ledger writer still holds, then send everything queued."""
    from safeload.provenance.batch import flush as write_queued

    write_queued()
    flush()


def _register_exit() -> None:
    """Run `_at_exit` while the interpreter can still start threads and import.

    `atexit` is too late: by then `concurrent.futures` refuses new work, and the SDK's import
    (`Resource.create`) needs it, so a short script's lines would never leave. The hook
    `concurrent.futures` itself uses runs earlier, last registered first: register after it.
    """
    import concurrent.futures.thread  # noqa: F401 - its exit hook must run after ours

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading exit hook")
        register(_at_exit)
    except RuntimeError:
        atexit.register(_at_exit)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:  # a multiprocessing worker leaves through os._exit
        mp_util.Finalize(None, flush, exitpriority=10)  # after the ledger's (100)


def _get_shipper() -> _Shipper:
    global _shipper, _exit_registered
    if _shipper is None:
        _shipper = _Shipper()
        if not _exit_registered:
            _register_exit()
            _exit_registered = True
    return _shipper


def on_append(directory: Path, lines: list[Line]) -> None:
    """The ledger's append listener: queue `lines` for export when `SAFELOAD_OTLP` is on."""
    if not lines or not enabled():
        return
    with _LOCK:
        tail = _tails.get(directory)
        if tail is None or lines[0].seq == 0:
            ident = lines[0].digest if lines[0].seq == 0 else ledger_id(directory)
            tail = _tails[directory] = _Tail(ident, {})
        if tail.ledger_id is None:
            return  # the ledger's first line is gone (archived): nothing names this chain
        items = [shipped(tail.ledger_id, line, tail.sessions) for line in lines]
        _get_shipper().put(items)


def flush(timeout_s: float = 5.0) -> None:
    """Send what is queued and stop the exporter (at exit; tests). Never raises."""
    global _shipper
    with _LOCK:
        current, _shipper = _shipper, None
    if current is not None:
        try:
            current.drain(timeout_s)
        except Exception:  # noqa: BLE001 - at exit, best effort
            _logger.debug("OTLP flush failed", exc_info=True)


def install() -> None:
    """Register the append listener (idempotent; it does nothing unless `enabled()`)."""
    if on_append not in _ledger.listeners:
        _ledger.listeners.append(on_append)


def _after_fork_child() -> None:
    global _shipper, _LOCK
    _shipper, _LOCK = None, threading.Lock()  # the parent's thread does not exist here
    _tails.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


__all__ = ["ENV_SWITCH", "QUEUE_MAX", "ShipReport", "emit", "enabled", "flush", "install",
           "on_append", "provider", "ship"]
