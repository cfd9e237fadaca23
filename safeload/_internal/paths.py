"""Where safeload keeps its files, resolved at call time (never at import time).

`SAFELOAD_HOME` relocates everything (config, data, cache) for tests, CI and containers.
None of these directories is guaranteed to exist; writers create them.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

_APP = "safeload"


def _home() -> Path | None:
    home = os.environ.get("SAFELOAD_HOME")
    return Path(home) if home else None


def config_dir() -> Path:
    """Configuration (the trust store)."""
    home = _home()
    return home / "config" if home else platformdirs.user_config_path(_APP, appauthor=False)


def data_dir() -> Path:
    """Data the user would not want deleted (the provenance ledger)."""
    home = _home()
    return home / "data" if home else platformdirs.user_data_path(_APP, appauthor=False)


def cache_dir() -> Path:
    """Regenerable data (converted checkpoints, the verification cache)."""
    home = _home()
    return home / "cache" if home else platformdirs.user_cache_path(_APP, appauthor=False)


def trust_store_path() -> Path:
    """The trust store: `$SAFELOAD_TRUST_STORE`, else `trust.json` in the config dir."""
    if override := os.environ.get("SAFELOAD_TRUST_STORE"):
        return Path(override)
    return config_dir() / "trust.json"


def converted_dir() -> Path:
    """The converted store: safetensors made from pickles, keyed by the source digest."""
    return cache_dir() / "converted"


def ledger_dir() -> Path:
    """The provenance ledger."""
    return data_dir() / "provenance"
