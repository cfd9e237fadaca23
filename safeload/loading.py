"""`safeload.load`: the drop-in for `torch.load` that never unpickles in this process.

`load` adapts torch.load's arguments and composes the pipeline's stages (see
`safeload.pipeline`): open the file once and keep the handle; locate; verify; admit; materialize
(pickles through the sandboxed converter); record.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from safeload._internal.first_call import collector_paused_once
from safeload._internal.str8 import STR8_ENCODING
from safeload.pipeline import FileLike, load_held, open_input, plain_file

if TYPE_CHECKING:
    from safeload._internal.hubpath import HubFile
    from safeload._internal.opened import Held

MapLocation = str | Any | dict[str, str] | Callable[..., Any] | None

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


# What torch.load passes on to `pickle.Unpickler` (its `**pickle_load_args`).
_PICKLE_LOAD_ARGS = frozenset({"encoding", "errors", "fix_imports", "buffers"})
_ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "latin1": "latin-1", "latin-1": "latin-1",
              "iso-8859-1": "latin-1", "ascii": "ascii"}  # not "bytes": ASCII strings decode early


def load(
    f: FileLike,
    map_location: MapLocation = None,
    pickle_module: Any = None,
    *,
    weights_only: bool | None = True,
    mmap: bool | None = None,
    **pickle_load_args: Any,
) -> Any:
    """Load a checkpoint like `torch.load(f, map_location, weights_only=True)`, safely.

    Accepts what `torch.load` accepts (a path, a PathLike or a binary file object) and returns
    what it returns for weights files; `.safetensors` files load too (a `dict[str, Tensor]`).
    `weights_only=False` and `pickle_module` are accepted for compatibility and never honoured.

    Raises:
        UnsafeCheckpointError: the file could run code, or cannot be shown not to.
        UnsupportedFormatError: the bytes are not a format safeload loads.
        MalformedFileError: a known format that does not parse exactly.
    """
    unknown = sorted(set(pickle_load_args) - _PICKLE_LOAD_ARGS)
    if unknown:
        # torch hands these to the unpickler, which raises the same TypeError.
        raise TypeError(f"load() got an unexpected keyword argument {unknown[0]!r}")
    # `encoding` is honoured as torch.load honours it (torch's default is "utf-8"): it is how
    # Python 2 8-bit strings decode ("latin1" for Python 2 NumPy arrays).
    encoding = pickle_load_args.pop("encoding", "utf-8")
    if not isinstance(encoding, str) or encoding.lower().replace("_", "-") not in _ENCODINGS:
        raise ValueError(f"safeload.load supports encoding in {sorted(_ENCODINGS)}, "
                         f"not {encoding!r}")
    if weights_only is False or pickle_module is not None or pickle_load_args:
        _warn_once("unsafe-args", "safeload.load does not honour weights_only=False, "
                   "pickle_module or pickle load arguments other than encoding: its own "
                   "policy applies")
    from safeload._internal.torchmap import check_map_location

    check_map_location(map_location)  # before any work, as torch.load fails on its first tensor
    start = _position(f)
    held = open_input(f, anywhere=True)
    by_descriptor = held.descriptor is not None
    token = STR8_ENCODING.set(_ENCODINGS[encoding.lower().replace("_", "-")])
    try:
        # A plain file is held whole, wherever its position: the trust checks are about the
        # file. torch.load reads from the position, and stops after the first of several
        # legacy objects saved one after the other into one stream: those bytes are loaded.
        offset = start if by_descriptor and start else 0
        end = None if start is None else _first_object_end(held, offset)
        part = (offset, end if end is not None else held.size) if offset or end else None
        with collector_paused_once():
            value = load_held(held, map_location=map_location, mmap=mmap, part=part)
    finally:
        STR8_ENCODING.reset(token)
        held.close()
    if end is not None and start is not None:
        f.seek(start + end - offset)  # type: ignore[union-attr]
    elif by_descriptor and plain_file(f):
        f.seek(0, os.SEEK_END)  # type: ignore[union-attr]  # where a stream read leaves it
    return value


def _position(f: FileLike) -> int | None:
    """A seekable file object's position (torch.load requires seekable streams), else None."""
    if isinstance(f, (str, os.PathLike)):
        return None
    try:
        return int(f.tell()) if f.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _first_object_end(held: Held, offset: int) -> int | None:
    """Where the first of several legacy objects starting at `offset` ends (an offset into
    `held`), or None."""
    from safeload.inspection import legacy_object_end

    end = legacy_object_end(memoryview(held.mapping())[offset:])
    return offset + end if end is not None and 0 < offset + end < held.size else None


def load_opened(opened: Held, *, map_location: MapLocation = None, mmap: bool | None = None,
                action: str = "load", hub: HubFile | None = None) -> Any:
    """`load` for bytes already held (from_pretrained and the guard hold them)."""
    from safeload._internal.torchmap import check_map_location

    assert action in ("load", "from_pretrained")
    check_map_location(map_location)
    with collector_paused_once():
        return load_held(opened, map_location=map_location, mmap=mmap,
                         action="from_pretrained" if action == "from_pretrained" else "load",
                         hub=hub)
