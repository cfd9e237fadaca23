"""The repeat-load memo: a process loading a file it already admitted, unchanged, skips the
decision and pays only for the bytes (a training loop loads the same files every epoch).

What is reused: the verified digest, the trust decision, the licence decision and the
inspection verdict of one exact inode state (device, inode, size, mtime, ctime, as the
verification cache keys it), reached by the same absolute path, under the same environment.
What is never reused: the bytes. Every load opens the file again, builds what it returns from
that descriptor's own mapping (a pickle: from the converted store entry, which is checked
against its source), and checks the descriptor did not change while it was used.

A memo entry holds only while every input its decision was read from still gives the stamp it
gave before it was read (`consulted.py`: the trust store and observations with the owners and
modes of their folders, the fleet subscription marker, model card candidates, signature
candidates, a folder link into the Hub cache). Not memoised: files whose ctime is under
`verify_cache.QUIESCENT_SECONDS` old (a write in the same clock tick keeps the stamps), Hub
files (`from_pretrained`'s own bookkeeping: refs, revision locks), decisions that read
something no stamp covers (an organisation store, a base model's card), formats whose returned
value is built from the inspection itself (NumPy, joblib wrappers), refusals (never cached:
each one is decided again). A signed decision is reused for `SIGNED_SECONDS` at most, so that
a publisher key's expiry is seen within that time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from safeload._internal.consulted import QUIESCENT_SECONDS, Recording

if TYPE_CHECKING:
    from pathlib import Path

    from safeload._internal.opened import Held

MAX_ENTRIES = 1 << 16
SIGNED_SECONDS = 60.0
# The environment a decision reads (paths of the stores, the bounds of an inspection, where the
# Hub and torch hub caches are). `tests/core/test_repeat_memo.py` checks every variable the
# package reads is here or named harmless there.
ENVIRONMENT = (
    "SAFELOAD_HOME", "SAFELOAD_TRUST_STORE", "SAFELOAD_LEDGER_DIR", "SAFELOAD_MAX_PICKLE_OPS",
    "SAFELOAD_MAX_DECOMPRESSED", "SAFELOAD_MAX_INSPECT_SECONDS", "SAFELOAD_MAX_OPS",
    "SAFELOAD_MAX_BYTES", "SAFELOAD_MAX_SECONDS", "HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
    "XDG_CACHE_HOME", "APPDATA", "LOCALAPPDATA", "USERPROFILE", "HF_HOME", "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TORCH_HOME",
)

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Memo:
    """A decision to reuse: the admission (its held bytes are replaced by the new load's), the
    inputs it was read from, until when it holds, and its ledger entry's receipt."""

    admitted: Any  # pipeline.Admitted (not imported: the pipeline imports this module)
    inputs: Recording
    expires: float  # time.monotonic()
    receipt: tuple[Path, bytes] | None
    output: Any  # the converted store entry the ledger entry names (pickles), or None


_memo: dict[Key, Memo] = {}


def key(held: Held, action: str) -> Key | None:
    """The memo key of this load, or None when it is not to be memoised or looked up."""
    ident = held.memo_key
    if ident is None:
        return None
    if time.time_ns() - max(ident.ctime_ns, ident.mtime_ns) < QUIESCENT_SECONDS * 1e9:
        return None
    return (ident, os.path.abspath(held.name), action, _environment())


_encoded: tuple[Any, ...] | None = None


def _environment() -> tuple[Any, ...]:
    """The ENVIRONMENT values; read from CPython's raw mapping when there is one (a hot loop
    calls this per load, and each `os.environ.get` decodes)."""
    global _encoded
    env = os.environ
    raw = getattr(env, "_data", None)
    encode = getattr(env, "encodekey", None)
    if not isinstance(raw, dict) or encode is None:
        return tuple(env.get(v) for v in ENVIRONMENT)
    if _encoded is None:
        _encoded = tuple(encode(v) for v in ENVIRONMENT)
    return tuple(map(raw.get, _encoded))


def lookup(k: Key) -> Memo | None:
    """The memo for `k` if every input it was read from is unchanged (else it is dropped)."""
    memo = _memo.get(k)
    if memo is None:
        return None
    if time.monotonic() >= memo.expires or not memo.inputs.unchanged():
        _memo.pop(k, None)
        return None
    return memo


def remember(k: Key, admitted: Any, inputs: Recording, *, signed: bool,
             receipt: tuple[Path, bytes] | None, output: Any) -> None:
    if inputs.opaque is not None:
        return
    if len(_memo) >= MAX_ENTRIES:
        _memo.pop(next(iter(_memo)))
    expires = time.monotonic() + SIGNED_SECONDS if signed else float("inf")
    _memo[k] = Memo(admitted, inputs, expires, receipt, output)


def forget() -> None:
    """Drop every memo (tests; `safeload.trust` edits need not: their stamps change)."""
    _memo.clear()


__all__ = ["ENVIRONMENT", "MAX_ENTRIES", "SIGNED_SECONDS", "Memo", "forget", "key", "lookup",
           "remember"]
