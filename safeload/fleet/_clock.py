"""The one clock of the fleet modules: sync intervals and expiry messages (tests move it)."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
