"""Where safeload keeps its files, resolved at call time (never at import time).

`SAFELOAD_HOME` relocates everything (config, data, cache) for tests, CI and containers.
None of these directories is guaranteed to exist; writers create them.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import platformdirs

_APP = "safeload"
# What platformdirs reads on the platforms it supports (Linux XDG, macOS HOME, Windows profile).
_PLATFORM_ENV = (("APPDATA", "LOCALAPPDATA", "USERPROFILE") if sys.platform == "win32" else
                 ("HOME",) if sys.platform == "darwin" else
                 ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"))


def _dir(kind: str) -> Path:
    # The environment is read on every call; only the Path for a given environment is reused
    # (every load asks for several of these).
    home = os.environ.get("SAFELOAD_HOME") or ""
    return _dir_for(kind, home, () if home else tuple(os.environ.get(v) for v in _PLATFORM_ENV))


@functools.lru_cache(maxsize=64)
def _dir_for(kind: str, home: str, _platform: tuple[str | None, ...]) -> Path:
    if home:
        return Path(home) / kind
    if kind == "config":
        return platformdirs.user_config_path(_APP, appauthor=False)
    if kind == "data":
        return platformdirs.user_data_path(_APP, appauthor=False)
    return platformdirs.user_cache_path(_APP, appauthor=False)


def config_dir() -> Path:
    """Configuration (the trust store)."""
    return _dir("config")


def data_dir() -> Path:
    """Data the user would not want deleted (the provenance ledger)."""
    return _dir("data")


def cache_dir() -> Path:
    """Regenerable data (converted checkpoints, the verification cache)."""
    return _dir("cache")


def trust_store_path() -> Path:
    """The trust store: `$SAFELOAD_TRUST_STORE`, else `trust.json` in the config dir."""
    if override := os.environ.get("SAFELOAD_TRUST_STORE"):
        return Path(override)
    return config_dir() / "trust.json"


def converted_dir() -> Path:
    """The converted store: safetensors made from pickles, keyed by the source digest."""
    return cache_dir() / "converted"


def ledger_dir() -> Path:
    """The provenance ledger: `$SAFELOAD_LEDGER_DIR` (a bulk shard's own ledger on a shared
    volume, or a container's persistent one), else `provenance` in the data dir."""
    if override := os.environ.get("SAFELOAD_LEDGER_DIR"):
        return Path(override)
    return data_dir() / "provenance"
