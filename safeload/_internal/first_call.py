"""The first load of a process imports most of the load path (about 100 modules); with torch's
heap alive (millions of objects), one full cycle collection set off by those imports costs
~60 ms, more than the load itself. The collector is paused for the first call only."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_done = False


@contextmanager
def collector_paused_once() -> Iterator[None]:
    """Pause the cycle collector around the first such block of the process (one thread's)."""
    global _done
    if _done or not _lock.acquire(blocking=False):
        yield
        return
    was_enabled = gc.isenabled()
    try:
        if _done:
            yield
            return
        _done = True
        gc.disable()
        try:
            yield
        finally:
            if was_enabled:
                gc.enable()
    finally:
        _lock.release()
