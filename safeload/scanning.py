"""`safeload scan`: classify every file under the given paths by its bytes, whatever its name.

Verdicts: clean (loadable without running code), unsafe (could run code, or cannot be shown not
to: malformed, unknown or code-bearing), malformed (named `.safetensors`, a format that cannot
run code, and does not parse: a truncated download), skipped (no model loader acts on it: a
README, a JSON config). Symlink loops, FIFOs, devices and links out of the tree are reported,
never opened. This module never imports torch.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeload_conversion.pickle_vm import Finding

from safeload._internal.opened import OpenedFile
from safeload._internal.reach import text_level
from safeload._internal.sarif import SarifResult, sarif_log
from safeload._internal.text import safe_text
from safeload.errors import SafeloadError
from safeload.inspection import Inspection, inspect_bytes
from safeload.inspection import describe as describe  # re-exported: the CLI renders findings


@dataclass(frozen=True)
class FileReport:
    path: str
    status: str  # clean | unsafe | malformed (a model file that does not parse) | skipped
    format: str
    findings: tuple[Finding, ...] = ()
    detail: str = ""
    license: str | None = None  # SPDX id and class from the model card beside the file

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "format": self.format,
                "detail": self.detail, "license": self.license,
                "findings": [f.to_dict() for f in self.findings]}


# Names that promise a model format whose bytes cannot be anything else: one that does not
# parse is a broken model file (a truncated download), never "skipped".
_MODEL_SUFFIXES = (".safetensors",)


def scan(path: str | os.PathLike[str]) -> FileReport:
    """Inspect one file (opened once, never followed out of its folder)."""
    p = os.fspath(path)
    with OpenedFile.open(p) as f:
        ins = inspect_bytes(f.mapping(), name="", text_ok=text_level(p))
        if ins.verdict == "skipped" and p.lower().endswith(_MODEL_SUFFIXES):
            return FileReport(p, "malformed", "safetensors",
                              (Finding("malformed", _safetensors_fault(f.mapping())),))
    return _report(p, ins)


def _safetensors_fault(buf: Any) -> str:
    """What is wrong with bytes named `.safetensors` that do not parse as one."""
    from safeload._internal.safetensors_check import parse_header
    from safeload.errors import MalformedFileError

    try:
        parse_header(buf, "")
    except MalformedFileError as exc:
        return str(exc).removeprefix(": ")
    return "not a valid safetensors file"


def _license(path: str) -> str | None:
    """The licence of the model a weights file belongs to, from its model card."""
    from safeload._internal.cardpath import find_model_card

    card_path = find_model_card(path)
    if card_path is None:
        return None  # no card: YAML and the licence table are never imported
    from safeload.licenses import license_info
    from safeload.modelcard import read_model_card

    card = read_model_card(card_path)
    tags = (*card.license, "unknown") if card.license_ambiguous else card.license
    infos = [license_info(t) for t in tags] or [license_info(None)]
    return ", ".join(f"{i.spdx_id} ({i.license_class.value})" for i in infos)


def _report(path: str, ins: Inspection) -> FileReport:
    lic = _license(path) if ins.verdict != "skipped" else None
    return FileReport(path, ins.verdict, ins.format, tuple(ins.findings), ins.detail, lic)


def _walk(root: str, errors: list[tuple[str, str]]) -> Iterator[str]:
    """Regular files under `root`; special files and escaping links become errors or skips."""
    try:
        st = os.lstat(root)
    except OSError as exc:
        errors.append((root, exc.strerror or str(exc)))
        return
    if stat.S_ISREG(st.st_mode):
        yield root
        return
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(root)
        except OSError as exc:
            errors.append((root, f"broken or looping symlink: {exc.strerror}"))
            return
        if stat.S_ISREG(target.st_mode):
            yield root
            return
        if not stat.S_ISDIR(target.st_mode):
            errors.append((root, "symlink to a FIFO, socket or device: not opened"))
            return
    elif not stat.S_ISDIR(st.st_mode):
        errors.append((root, "FIFO, socket or device: not opened"))
        return
    real_root = Path(root).resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for d in list(dirnames):
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                dirnames.remove(d)
                errors.append((full, "symlinked directory: not followed"))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                lst = os.lstat(full)
            except OSError as exc:
                errors.append((full, exc.strerror or str(exc)))
                continue
            if stat.S_ISLNK(lst.st_mode):
                try:
                    real = Path(full).resolve(strict=True)
                except (OSError, RuntimeError):
                    errors.append((full, "broken or looping symlink"))
                    continue
                if real_root not in real.parents:
                    errors.append((full, f"symlink leaves the tree (to {real}): not followed"))
                    continue
                if not real.is_file():
                    errors.append((full, "symlink to a non-regular file: not opened"))
                    continue
                yield full
            elif stat.S_ISREG(lst.st_mode):
                yield full
            else:
                errors.append((full, "FIFO, socket or device: not opened"))


def scan_paths(paths: Sequence[str]) -> tuple[list[FileReport], list[tuple[str, str]]]:
    """Scan files and directories (recursively). Returns reports and operational errors."""
    reports: list[FileReport] = []
    errors: list[tuple[str, str]] = []
    for root in paths:
        for path in _walk(root, errors):
            try:
                reports.append(scan(path))
            except SafeloadError as exc:
                errors.append((path, str(exc)))
            except OSError as exc:
                errors.append((path, exc.strerror or str(exc)))
    return reports, errors


def to_sarif(reports: Sequence[FileReport],
             errors: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """A SARIF 2.1.0 log: one result per finding of an unsafe file (an unsafe file without
    findings gets one `unsafe` result) and one `scan-error` per file that could not be decided."""
    results: list[SarifResult] = []
    for r in reports:
        if r.status not in ("unsafe", "malformed"):
            continue
        for f in r.findings:
            results.append(SarifResult(f.code, describe(f), r.path, properties={
                "format": r.format, "member": f.member, "offset": f.offset,
                "opcode": f.opcode, "global": f.global_name}))
        if not r.findings:
            results.append(SarifResult("unsafe", safe_text(r.detail or "unsafe"), r.path,
                                       properties={"format": r.format}))
    for path, message in errors:
        results.append(SarifResult("scan-error", safe_text(message), path))
    return sarif_log(results)
