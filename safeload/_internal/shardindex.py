"""One reader of sharded-checkpoint indexes (`*.bin.index.json`, `*.safetensors.index.json`).

The index comes from the Hub or a model folder: untrusted. It is read with strict JSON (no
duplicate keys: two readers keeping different duplicates would load different shards), its
`weight_map` must map strings to strings, and every shard must be a plain file name in the
index's folder (never a path that climbs out).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from safeload._internal import strictjson
from safeload._internal.text import safe_text
from safeload.errors import MalformedFileError, UnsafeCheckpointError

MAX_INDEX_BYTES = 64 << 20


@dataclass(frozen=True)
class ShardIndex:
    metadata: dict[str, Any]
    weight_map: dict[str, str]

    @property
    def shards(self) -> list[str]:
        return sorted(set(self.weight_map.values()))


def safe_shard_name(name: object, where: str) -> str:
    """A shard name that stays in the index's folder.

    Raises:
        UnsafeCheckpointError: an empty name, a path, `.`/`..`, or an absolute name.
    """
    if (not isinstance(name, str) or not name or "/" in name or "\\" in name
            or name in (".", "..") or os.path.isabs(name) or "\0" in name):
        raise UnsafeCheckpointError(f"{where}: weight map names an unsafe shard "
                                    f"{safe_text(repr(name))}",
                                    hint="shard names must be plain file names in the folder")
    return name


def parse_index(data: bytes, where: str) -> ShardIndex:
    """Parse an index's bytes.

    Raises:
        MalformedFileError: too large, not strict JSON, or no weight_map of strings.
        UnsafeCheckpointError: a shard name that leaves the folder.
    """
    if len(data) > MAX_INDEX_BYTES:
        raise MalformedFileError(f"{where}: index larger than {MAX_INDEX_BYTES} bytes")
    try:
        doc = strictjson.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedFileError(f"{where}: not a valid index ({safe_text(str(exc))})",
                                 hint="fetch the index again from its source") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise MalformedFileError(f"{where}: index has no weight_map of strings")
    metadata = doc.get("metadata", {})
    if not isinstance(metadata, dict):
        raise MalformedFileError(f"{where}: index metadata is not an object")
    for shard in set(weight_map.values()):
        safe_shard_name(shard, where)
    return ShardIndex(metadata, weight_map)


__all__ = ["MAX_INDEX_BYTES", "ShardIndex", "parse_index", "safe_shard_name"]
