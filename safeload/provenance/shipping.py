"""What leaves the node: one export record per ledger line, for collectors and log agents.

A record is the line itself (its canonical JSON, byte for byte what `ledger.jsonl` holds, so a
central verifier can recompute every digest) plus attributes a backend can index without
parsing it: `safeload.ledger.id` (the digest of the ledger's first line, seq 0: it names one
chain on one node, and a verifier can check it), `safeload.ledger.seq`, `safeload.ledger.hash`
(the line's digest), `safeload.ledger.kind` (entry, session or tally), and for entries
`safeload.decision`, `safeload.action` and `safeload.artifact.sha256`. The same names are the
OTLP log record's attributes (`otlp`) and the keys of a JSONL export record (`to_record`).

Session and tally lines are exported too: they are links of the chain, and without them the
chain cannot be recomputed. Imports: `ledger`, `batch` (to expand compact entries), `read`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeload._internal import paths
from safeload.provenance.batch import expand
from safeload.provenance.ledger import (
    LEDGER_NAME,
    LINE_VERSION,
    MAX_ENTRY_BYTES,
    Line,
    canonical,
    parse_line,
    segments,
)
from safeload.provenance.read import chain_lines

# What a load's entry decided. Only admitted operations are recorded (a refusal raises before
# the record stage), so the decision says on what grounds the bytes were let through.
DECISIONS = ("signed", "pinned", "first-use", "audit-mismatch", "unpinned")


def decision_of(entry: Mapping[str, Any]) -> str:
    """`signed` (a trusted publisher's signature verified), `pinned` (the digest matched a pin),
    `first-use` (a new pin was made), `audit-mismatch` (audit mode let a pin mismatch through),
    else `unpinned`."""
    signature = entry.get("signature") or {}
    pin = (entry.get("trust") or {}).get("pin")
    if pin == "mismatch":
        return "audit-mismatch"
    if signature.get("status") == "verified":
        return "signed"
    return {"hit": "pinned", "new": "first-use"}.get(str(pin), "unpinned")


def artifact_sha256(entry: Mapping[str, Any]) -> str | None:
    """The digest of the artifact the entry is about: the original of a converted file, else
    the first file read."""
    conv = entry.get("converted_from")
    if isinstance(conv, Mapping) and isinstance(conv.get("sha256"), str):
        return str(conv["sha256"])
    files = entry.get("files") or []
    if files and isinstance(files[0], Mapping) and isinstance(files[0].get("sha256"), str):
        return str(files[0]["sha256"])
    return None


def line_text(line: Line) -> str:
    """The line's canonical JSON, as the ledger file holds it (without the newline)."""
    return canonical({**line.body, "digest": line.digest}).decode("ascii")


def kind_of(line: Line) -> str:
    if line.body["v"] == LINE_VERSION:
        return "entry"
    return next(k for k in ("entry", "session", "tally") if k in line.body)


@dataclass(frozen=True)
class Shipped:
    """One ledger line on its way out: the line and the attributes backends index."""

    ledger_id: str
    line: Line
    entry: Mapping[str, Any] | None  # the full entry (compact ones expanded), for entries

    @property
    def kind(self) -> str:
        return kind_of(self.line)

    @property
    def time(self) -> str | None:
        body = self.line.body
        if self.entry is not None and isinstance(self.entry.get("time"), str):
            return str(self.entry["time"])
        if isinstance(body.get("time"), str):  # a tally: its last repeat
            return str(body["time"])
        session = body.get("session")
        return str(session["started"]) if isinstance(session, Mapping) and isinstance(
            session.get("started"), str) else None

    def attributes(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {
            "safeload.ledger.id": self.ledger_id, "safeload.ledger.seq": self.line.seq,
            "safeload.ledger.hash": self.line.digest, "safeload.ledger.kind": self.kind}
        if self.entry is not None:
            out["safeload.decision"] = decision_of(self.entry)
            out["safeload.action"] = str(self.entry.get("action"))
            sha = artifact_sha256(self.entry)
            if sha is not None:
                out["safeload.artifact.sha256"] = sha
        return out

    def to_record(self, resource: Mapping[str, str]) -> dict[str, Any]:
        """The JSONL export record: the attributes, the resource, and `body` (the line)."""
        return {**self.attributes(), **resource, "body": line_text(self.line)}


def shipped(ledger_id: str, line: Line, sessions: dict[int, Mapping[str, Any]]) -> Shipped:
    """`line` as exported; `sessions` (seq -> session record) is read and extended, so compact
    entries can be expanded. An entry whose session is unknown ships without the entry-level
    attributes (the line itself is still complete)."""
    body = line.body
    if "session" in body and isinstance(body["session"], Mapping):
        sessions[line.seq] = body["session"]
    entry: Mapping[str, Any] | None = None
    if body["v"] == LINE_VERSION:
        entry = body["entry"]
    elif "entry" in body:
        session = sessions.get(body["s"])
        if session is not None:
            try:
                entry = expand(body["entry"], session)
            except ValueError:
                entry = None
    return Shipped(ledger_id, line, entry)


def ledger_id(directory: Path | None = None) -> str | None:
    """The ledger's id: the digest of its first line (seq 0), or None when there is none yet
    (or the first file does not start with seq 0: an archived head)."""
    directory = directory if directory is not None else paths.ledger_dir()
    files = [*segments(directory), directory / LEDGER_NAME]
    for path in files:
        try:
            with open(path, "rb") as fh:
                raw = fh.readline(MAX_ENTRY_BYTES + 2)
        except FileNotFoundError:
            continue
        if not raw.endswith(b"\n"):
            return None
        try:
            first = parse_line(raw[:-1])
        except ValueError:
            return None
        return first.digest if first.seq == 0 else None
    return None


def resource(service_name: str | None = None) -> dict[str, str]:
    """`service.name` (argument, else `OTEL_SERVICE_NAME`, else `safeload`) and `host.name`."""
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "safeload"
    return {"service.name": name, "host.name": socket.gethostname()}


def shipped_lines(directory: Path | None = None) -> Iterator[Shipped]:
    """Every line of the ledger as exported, oldest first (verify the ledger first)."""
    directory = directory if directory is not None else paths.ledger_dir()
    sessions: dict[int, Mapping[str, Any]] = {}
    ident: str | None = None
    for line in chain_lines(directory):
        if ident is None:
            ident = line.digest if line.seq == 0 else ledger_id(directory)
            if ident is None:
                return
        yield shipped(ident, line, sessions)


__all__ = ["DECISIONS", "Shipped", "artifact_sha256", "decision_of", "kind_of", "ledger_id",
           "line_text", "resource", "shipped", "shipped_lines"]
