"""SARIF 2.1.0 logs: the one builder behind `safeload scan` and `safeload cache scan`.

Code-scanning tools (GitHub code scanning, SARIF viewers) read `version`, `runs[].tool.driver`
(name, rules) and `runs[].results[]` (ruleId, level, message.text, locations). One result per
finding or refused file; the rule id is the finding's kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safeload._version import __version__

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
Level = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class SarifResult:
    rule_id: str
    message: str  # already escaped for display where it came from an attacker
    path: str
    level: Level = "error"
    properties: Mapping[str, Any] = field(default_factory=dict)


def sarif_log(results: Iterable[SarifResult]) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one rule per distinct rule id."""
    rules: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for r in results:
        rules.setdefault(r.rule_id, {
            "id": r.rule_id,
            "shortDescription": {"text": f"safeload finding: {r.rule_id}"},
            "defaultConfiguration": {"level": r.level},
        })
        out.append({
            "ruleId": r.rule_id,
            "level": r.level,
            "message": {"text": r.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": Path(r.path).as_posix()},
            }}],
            "properties": dict(r.properties),
        })
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "safeload", "version": __version__,
                                "informationUri": "https://github.com/safeload/safeload",
                                "rules": list(rules.values())}},
            "results": out,
        }],
    }
