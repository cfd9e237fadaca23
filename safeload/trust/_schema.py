"""Validators of trust-store JSON and the store's time format (a leaf of the trust package).

Every validator raises `TrustStoreError` naming the file, the entry and the fix; nothing here
reads a file.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, cast

from safeload._internal.text import safe_text
from safeload._internal.times import parse_iso_time
from safeload.errors import TrustStoreError

SHA256 = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
REPO = re.compile(rf"(?:{REPO_PART}/)?{REPO_PART}")
NAMESPACE = re.compile(rf"{REPO_PART}/(?:\*|{REPO_PART})")
COMMIT = re.compile(r"[0-9a-f]{40}")


def _fail(source: str, message: str, fix: str) -> TrustStoreError:
    return TrustStoreError(f"{source}: {message}", hint=fix)


_FIX_EDIT = "correct the entry (see `safeload trust export`), or rebuild it with `safeload trust`"


def _obj(value: object, where: str, source: str, allowed: set[str],
         required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, f"{where} must be a JSON object", _FIX_EDIT)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(
            source, f"unknown field(s) {', '.join(map(repr, unknown))} in {where}",
            f"remove them; the known fields are {', '.join(sorted(allowed))}",
        )
    missing = sorted(required - set(value))
    if missing:
        raise _fail(source, f"{where} lacks {', '.join(map(repr, missing))}", _FIX_EDIT)
    return cast(dict[str, Any], value)


def _list(value: object, where: str, source: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(source, f"{where} must be a JSON list", _FIX_EDIT)
    return value


def _str(value: object, where: str, source: str, pattern: re.Pattern[str] | None = None,
         what: str = "") -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise _fail(source, f"{where} is not a valid {what or 'string'}: "
                    f"{safe_text(value, limit=120)!s}", _FIX_EDIT)
    return value


def _sha(value: object, where: str, source: str) -> str:
    if isinstance(value, str):
        value = value.lower().removeprefix("sha256:")
    return _str(value, where, source, SHA256, "sha256 hex digest")


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 date or UTC time (`2030-01-01`, `2030-01-01T00:00:00Z`).

    Raises:
        ValueError: anything else, or a time without a timezone.
    """
    return parse_iso_time(value, naive="refuse")


def _time(value: object, where: str, source: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(source, f"{where} must be an ISO 8601 string", _FIX_EDIT)
    try:
        return parse_time(value)
    except ValueError as exc:
        raise _fail(source, f"{where} is not an ISO 8601 date or time ({exc})",
                    "write it as 2030-01-01 or 2030-01-01T00:00:00Z") from exc


def format_time(value: dt.datetime | None) -> str | None:
    """UTC, seconds precision, `Z` suffix."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
