"""One work budget per file: pickle opcodes, decompressed bytes and seconds, all members together.

A bound per stream or per member is not a bound per file: a 79 KB zip of four deflated
20M-opcode members took 37 s to refuse. The inspector opens a `scope` per file; every pickle
machine, lenient walk and decompression inside it charges the same `Budget`, and the first bound
crossed raises `BudgetExceeded`, which aborts the whole inspection (fail closed: refused, with the
bound and the variable that raises it). Without a scope (the sandboxed converter, which only ever
sees files the inspector passed), only the per-stream bounds of the machine apply.

Real checkpoints stay far below the defaults: a data.pkl for 10,000 tensors is about 300,000
opcodes; a gzip-wrapped checkpoint is bounded at 1 GiB decompressed as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

OPS_ENV = "SAFELOAD_MAX_PICKLE_OPS"
BYTES_ENV = "SAFELOAD_MAX_DECOMPRESSED"
SECONDS_ENV = "SAFELOAD_MAX_INSPECT_SECONDS"
DEFAULT_OPS = 5_000_000
DEFAULT_BYTES = 1 << 30
DEFAULT_SECONDS = 120.0
CHARGE_EVERY = 4096  # opcodes counted locally between charges (the loop stays cheap)


class BudgetExceeded(Exception):
    """The file needs more work than its budget allows. Always a refusal, never a pass."""

    def __init__(self, what: str, limit: float, env: str) -> None:
        shown = f"{limit:g}" if isinstance(limit, float) else f"{limit:,}"
        super().__init__(
            f"exceeds the whole-file bound of {shown} {what} (all members and pickle streams "
            f"together): refused rather than worked through; if you trust the file, raise the "
            f"bound with {env}=N")
        self.what, self.limit, self.env = what, limit, env


def env_int(name: str, default: int) -> int:
    """A positive integer from the environment; anything else is the default (never 0 = off)."""
    raw = os.environ.get(name, "").strip().replace("_", "")
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass
class Budget:
    ops: int = DEFAULT_OPS
    bytes: int = DEFAULT_BYTES
    seconds: float = DEFAULT_SECONDS
    ops_used: int = 0
    bytes_used: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    @classmethod
    def from_env(cls) -> Budget:
        return cls(env_int(OPS_ENV, DEFAULT_OPS), env_int(BYTES_ENV, DEFAULT_BYTES),
                   float(env_int(SECONDS_ENV, int(DEFAULT_SECONDS))))

    def charge_ops(self, n: int) -> None:
        self.ops_used += n
        if self.ops_used > self.ops:
            raise BudgetExceeded("pickle opcodes", self.ops, OPS_ENV)
        self.check_time()

    def bytes_left(self) -> int:
        return max(self.bytes - self.bytes_used, 0)

    def charge_bytes(self, n: int) -> None:
        self.bytes_used += n
        if self.bytes_used > self.bytes:
            raise BudgetExceeded("decompressed bytes", self.bytes, BYTES_ENV)
        self.check_time()

    def check_time(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise BudgetExceeded("seconds of inspection", self.seconds, SECONDS_ENV)


_current: ContextVar[Budget | None] = ContextVar("safeload_budget", default=None)


def current() -> Budget | None:
    return _current.get()


@contextmanager
def scope(budget: Budget) -> Iterator[Budget]:
    """Charge everything inside to `budget`; an enclosing scope (a file inside a wrapper that
    is already being inspected) is kept, so nesting never resets the count."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


__all__ = ["BYTES_ENV", "Budget", "BudgetExceeded", "OPS_ENV", "SECONDS_ENV", "current",
           "env_int", "scope"]
