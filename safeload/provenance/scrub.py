"""Secret scrubbing: no token, credential or secret environment value reaches the ledger.

Before an entry is written every string in it is scrubbed of credential-shaped text (Hub,
GitHub, AWS tokens, `Bearer ...`, URL passwords and signed-URL parameters) and of the values of
environment variables named like secrets (paths excepted: `SSH_AUTH_SOCK` is not a secret);
each scrub is noted in the entry's warnings and logged. Imports nothing from safeload.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from safeload._internal.text import get_logger

_logger = get_logger("safeload.provenance")  # the package's, as before the split

_REDACTED = "<redacted>"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), _REDACTED),  # Hugging Face user tokens
    (re.compile(r"\bapi_org_[A-Za-z0-9]{20,}"), _REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), _REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), _REDACTED),  # AWS access key ids
    (re.compile(r"(?i:\bbearer\s+[A-Za-z0-9._~+/-]{8,}=*)"), "Bearer " + _REDACTED),
    (re.compile(r"(?i:\b([a-z][a-z0-9+.-]*://)[^/\s@:]*:[^/\s@]*@)"), r"\1" + _REDACTED + "@"),
    (re.compile(r"(?i:([?&](?:token|access_token|api_key|apikey|key|sig|signature|password"
                r"|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&#\s]+)"),
     r"\1" + _REDACTED),
)
# One pass to rule out the common case (no match at all) before the substitutions.
_ANY_SECRET = re.compile("|".join(f"(?:{p.pattern})" for p, _ in _SECRET_PATTERNS))
# A substring each pattern above must contain (bearer: any case; parameters: "=").
_CASED_LITERALS = ("hf_", "api_org_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
                   "AKIA", "ASIA", "://")
_SECRET_ENV_NAME = re.compile(
    r"(?i)(token|secret|passw|credential|api_?key|access_?key|private_?key|auth)")
_MIN_SECRET_LEN = 8


_env_memo: tuple[tuple[Any, ...], list[str]] | None = None


def _secret_env_values() -> list[str]:
    """Values of secret-named variables, longest first; recomputed only when the environment
    changed (every ledger entry asks, and the regex over every name cost more than a load)."""
    global _env_memo
    raw = getattr(os.environ, "_data", None)  # CPython's bytes mapping behind os.environ
    snapshot = tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items())
    if _env_memo is not None and _env_memo[0] == snapshot:
        return _env_memo[1]
    values = _compute_secret_env_values()
    _env_memo = (snapshot, values)
    return values


def _compute_secret_env_values() -> list[str]:
    return sorted(
        (v for k, v in os.environ.items()
         if _SECRET_ENV_NAME.search(k) and len(v) >= _MIN_SECRET_LEN
         and not os.path.isabs(v)),  # SSH_AUTH_SOCK and the like are paths, not secrets
        key=len, reverse=True)


def _scrub(value: Any, where: str, env_secrets: Sequence[str], found: list[str]) -> Any:
    if isinstance(value, str):
        out = value
        for secret in env_secrets:
            if secret in out:
                out = out.replace(secret, _REDACTED)
        if _ANY_SECRET.search(out):
            for pattern, replacement in _SECRET_PATTERNS:
                out = pattern.sub(replacement, out)
        if out != value:
            found.append(where)
        return out
    if isinstance(value, dict):
        return {k: _scrub(v, f"{where}.{k}" if where else k, env_secrets, found)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, f"{where}[]", env_secrets, found) for v in value]
    return value


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def _may_hold_secret(payload: dict[str, Any], env_secrets: Sequence[str]) -> bool:
    """One search over all the entry's strings joined by newlines: every match inside one
    string is also a match in the joined text (a newline is a word boundary, as a string's
    ends are), so False means no string needs scrubbing (the common case, a tenth the cost)."""
    parts: list[str] = []
    _strings(payload, parts)
    joined = "\n".join(parts)
    if any(secret in joined for secret in env_secrets):
        return True
    # Python's re cannot skip ahead to a pattern that starts with \b; the literals every
    # pattern needs can (a substring test is ~40x faster than the search over the whole text).
    if not (any(lit in joined for lit in _CASED_LITERALS)
            or "bearer" in joined.lower() or "=" in joined):
        return False
    return bool(_ANY_SECRET.search(joined))


def scrub_entry(payload: dict[str, Any]) -> dict[str, Any]:
    """The entry dict with credential-shaped strings redacted, each redaction noted."""
    env_secrets = _secret_env_values()
    if not _may_hold_secret(payload, env_secrets):
        return payload
    found: list[str] = []
    clean: dict[str, Any] = _scrub(payload, "", env_secrets, found)
    if found:
        notes = [f"redacted a credential-like string from {w}" for w in dict.fromkeys(found)]
        clean["warnings"] = list(clean.get("warnings") or []) + notes
        _logger.warning("provenance: %s", "; ".join(notes))
    return clean


__all__ = ["scrub_entry"]
