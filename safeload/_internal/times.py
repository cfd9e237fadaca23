"""One reader of ISO 8601 / RFC 3339 times (trust store, Sigstore roots, CLI arguments)."""

from __future__ import annotations

import datetime as dt
import re

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_iso_time(value: str, *, naive: str = "utc") -> dt.datetime:
    """A time like `2030-01-01`, `2030-01-01T00:00:00Z` or with an offset, in UTC.

    A date alone is its midnight UTC. A time without a zone is UTC (`naive="utc"`) or refused
    (`naive="refuse"`: files that other people edit must say which zone they mean).

    Raises:
        ValueError: not such a time, or a naive one where refused.
    """
    text = value.strip()
    if _DATE_ONLY.fullmatch(text):
        text += "T00:00:00+00:00"
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        if naive == "refuse":
            raise ValueError("a time needs a timezone (use Z for UTC)")
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)
