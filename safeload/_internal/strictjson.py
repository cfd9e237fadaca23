"""One JSON reading for untrusted bytes: no duplicate keys, no NaN/Infinity.

Two parsers that keep different duplicates see different documents (a parser differential), and
non-standard constants are not JSON. Raises `ValueError` (or `RecursionError` when nested too
deep, `UnicodeDecodeError` for bad UTF-8); callers wrap it in their own error naming the file.
"""

from __future__ import annotations

import json
from typing import Any


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def loads(data: str | bytes) -> Any:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
