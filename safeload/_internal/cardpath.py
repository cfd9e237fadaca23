"""Where a weights file's model card is (no YAML here: a scan without a card imports none)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from safeload._internal import consulted
from safeload._internal.text import get_logger

_logger = get_logger("safeload.modelcard")

_CARD_NAME = "README.md"
_MODEL_DIR_MARKERS = ("config.json", "model_index.json", "modules.json", "adapter_config.json")


def _hf_repo_root(path: Path) -> tuple[Path, Path] | None:
    """(repo cache dir `models--ns--name`, snapshot dir) when `path` is inside an HF snapshot."""
    parts = path.parts  # the snapshot dir is parts[: i + 2]; path may be that dir itself
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and parts[i - 1].startswith(("models--", "datasets--")):
            return Path(*parts[:i]), Path(*parts[: i + 2])
    return None


def _is_marker(path: str) -> bool:
    consulted.note_target(path)
    return os.path.isfile(path)


def find_model_card(model_file: str | os.PathLike[str]) -> Path | None:
    """The README.md that describes `model_file`, or None.

    Inside a Hugging Face cache snapshot (`models--ns--name/snapshots/<rev>/...`), the nearest
    README.md between the file and the snapshot root, whose link target must stay inside that
    repo's cache folder. Elsewhere, a README.md beside the file, or one level up when that folder
    is a model folder (has `config.json`, `model_index.json`, ...); never further, so an unrelated
    README.md in a home or download folder is not taken for a model card.
    """
    # Strings and os.stat rather than pathlib: this runs on every load.
    path = os.path.abspath(os.fspath(model_file))
    start = path if os.path.isdir(path) else os.path.dirname(path)
    hf = _hf_repo_root(Path(start))
    candidates: list[str] = []
    boundary: str | None = None
    if hf is not None:
        repo_dir, snapshot = str(hf[0]), str(hf[1])
        here = start
        while True:
            candidates.append(here)
            parent = os.path.dirname(here)
            if here in (snapshot, parent) or not here.startswith(snapshot + os.sep):
                break
            here = parent
        boundary = repo_dir
    else:
        candidates.append(start)
        parent = os.path.dirname(start)
        if parent != start and any(_is_marker(os.path.join(parent, m))
                                   for m in _MODEL_DIR_MARKERS):
            candidates.append(parent)
    for directory in candidates:
        card = os.path.join(directory, _CARD_NAME)
        consulted.note_entry(card)  # a card that appears later changes the licence decision
        consulted.note_target(card)
        try:
            os.lstat(card)  # most folders have none: skip the resolve
            resolved = Path(card).resolve(strict=True)
            if not stat.S_ISREG(resolved.stat().st_mode):
                continue
        except (OSError, RuntimeError):
            continue
        if boundary is not None:
            root = Path(boundary).resolve()
            if resolved != root and root not in resolved.parents:
                _logger.warning("model card %s links outside its repo cache; ignored", card)
                continue
        return Path(card)
    return None


__all__ = ["find_model_card"]
