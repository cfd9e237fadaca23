"""One JSON reading for untrusted bytes: no duplicate keys, no NaN/Infinity, no unpaired
surrogate escapes.

Two parsers that keep different duplicates see different documents (a parser differential), and
non-standard constants are not JSON. Raises `ValueError` (or `RecursionError` when nested too
deep, `UnicodeDecodeError` for bad UTF-8); callers wrap it in their own error naming the file.
"""

from __future__ import annotations

import json
import re
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


# A `\uD800`-`\uDFFF` escape: Python's json keeps an unpaired one as a lone surrogate, which
# serde_json (safetensors, the Hub's tooling) refuses. Only then is the document walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogates(obj: Any) -> bool:
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            if _SURROGATE.search(x):  # (a scan in C: a record string may be 100 MB)
                return True
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


def _unsigned_int(literal: str) -> int:
    if literal.startswith("-"):
        raise ValueError(f"the integer {literal} has a sign: sizes and offsets are non-negative, "
                         "spelled without one")
    return int(literal)


def loads(data: str | bytes, *, unsigned: bool = False, surrogates: bool = False) -> Any:
    """`unsigned`: every integer must be spelled without a sign (`-0` included), as a reader
    that parses them as unsigned (serde's usize: the safetensors crate) requires.
    `surrogates`: lone surrogates are allowed (safeload's own structure record, which holds
    Python strings as torch.load returns them); never for a document another reader reads."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
                     parse_int=_unsigned_int if unsigned else None)
    if not surrogates and _SURROGATE_ESCAPE.search(text) and _lone_surrogates(doc):
        raise ValueError("a string holds an unpaired UTF-16 surrogate escape")
    return doc
