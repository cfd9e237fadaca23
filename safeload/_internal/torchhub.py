"""The torch hub cache: where `torch.hub.load_state_dict_from_url` keeps its downloads, and the
digest its file names assert.

`torch.hub.get_dir()` is `torch.hub.set_dir(...)`'s value when one was set in this process,
else `$TORCH_HOME/hub`, with `TORCH_HOME` defaulting to `$XDG_CACHE_HOME/torch` (then
`~/.cache/torch`); downloads go to `<hub dir>/checkpoints/<basename of the URL>`. torchvision and
timm weights there are pickles.

torch's naming convention (`check_hash=True`, which torchvision uses): `name-<hex>.ext`, where
`<hex>` (eight or more digits, `torch.hub.HASH_REGEX`) is a prefix of the sha256 of the content.
Like a Hugging Face blob name, it is a free integrity check: a file in the checkpoints folder
whose bytes do not start with the digest its name gives is refused.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# torch.hub.HASH_REGEX is `-([a-f0-9]*)\.` (the first match); torch documents eight or more
# digits, and fewer cannot be told from an ordinary name.
_HASH = re.compile(r"-([a-f0-9]*)\.")
MIN_PREFIX = 8


def hub_dir() -> Path:
    """`torch.hub.get_dir()`: its value when torch.hub is imported (a `set_dir` counts), else
    the same rule read from the environment now (torch is not imported for this)."""
    hub = sys.modules.get("torch.hub")
    get_dir = getattr(hub, "get_dir", None)
    if get_dir is not None:
        return Path(get_dir())
    env = os.environ
    xdg = env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    home = env.get("TORCH_HOME") or os.path.join(xdg, "torch")
    return Path(os.path.expanduser(home)) / "hub"


def checkpoints_dir() -> Path:
    """Where `load_state_dict_from_url` stores files by default."""
    return hub_dir() / "checkpoints"


def name_prefix(name: str) -> str | None:
    """The sha256 prefix a torch hub file name asserts (`resnet18-f37072fd.pth` -> f37072fd)."""
    m = _HASH.search(os.path.basename(name))
    if m is None or len(m.group(1)) < MIN_PREFIX:
        return None
    return m.group(1)


def in_checkpoints(path: str | os.PathLike[str], root: Path | None = None) -> bool:
    """Whether `path` sits directly in the torch hub checkpoints folder (`root`, default: the
    current one), compared by the folder's identity, not its spelling."""
    folder = root if root is not None else checkpoints_dir()
    try:
        # the folder as the kernel walks it (`link/..` is not spelled away: review S-3)
        return os.path.samefile(os.path.dirname(os.fspath(path)) or ".", folder)
    except OSError:
        return False


def expected_prefix(path: str | os.PathLike[str]) -> str | None:
    """The digest prefix a checkpoints-folder file's name asserts; None elsewhere."""
    prefix = name_prefix(os.fspath(path))  # a regex first: most names assert no digest
    if prefix is None or not in_checkpoints(path):
        return None
    return prefix
