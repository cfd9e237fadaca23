"""A guard for code you do not control: `torch.load` calls go through `safeload.load`.

    import safeload

    with safeload.guard():
        model = some_library.load_pretrained("checkpoint.pt")   # calls torch.load inside

    safeload.install()      # or process-wide, until safeload.uninstall()

While installed, `torch.load` and `torch.serialization.load` (the same function in torch) are
replaced by a wrapper that calls `safeload.load` with the same arguments, and so is
`transformers.modeling_utils.load_state_dict` (how transformers reads `.bin` weights), patched
when that module is already imported or, through an import hook, as soon as it is. A hostile
pickle then raises `UnsafeCheckpointError` (a `pickle.UnpicklingError`, what torch itself raises
for a refused `weights_only` load) instead of running its payload; clean pickles are converted in
the sandbox and load as before. safeload's policy applies: `weights_only=False` and
`pickle_module=` are not honoured, so a library that pickles whole objects (not tensors) is
refused rather than run.

What it cannot catch:
- A `load` bound before `install()`: `from torch import load` (or
  `from torch.serialization import load`, or `loader = torch.load` kept in a variable, a default
  argument or a dict) holds the original function, and the guard never sees those calls. Install
  the guard before importing such code, or patch that name yourself.
- Loaders that are not `torch.load`: `pickle.load`, `numpy.load(allow_pickle=True)`,
  `joblib.load`, `torch.jit.load` (TorchScript), `dill`, `cloudpickle`, and native code.
  `safeload scan` inspects such files without loading them.
- Other processes (DataLoader workers started before `install()`, subprocesses): the guard
  patches this interpreter only.

The guard is process-wide: while any thread holds it, every thread's `torch.load` is guarded.
Installs are counted (re-entrant and thread-safe): the originals come back when the last
`uninstall()` matches the first `install()`. The originals are kept, never re-wrapped, and the
wrappers fall through to them when the guard is not installed (a library that wrapped the
wrapper in the meantime keeps working). Note that `safeload.guard` is both this module and the
context manager: the module is callable, so `safeload.guard()` works however it was imported.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["guard", "install", "uninstall", "installed"]

_logger = logging.getLogger(__name__)

_TRANSFORMERS = "transformers.modeling_utils"

_lock = threading.RLock()
_count = 0
# (module, attribute) -> the original object; present only while patched.
_originals: dict[tuple[types.ModuleType, str], Any] = {}
_local = threading.local()


def installed() -> bool:
    """Whether the guard is currently installed."""
    return _count > 0


def install() -> None:
    """Route `torch.load` (and transformers' weight loading) through `safeload.load`.

    Counted: each call needs a matching `uninstall()`. Imports torch if it is installed; does
    nothing to torch when it is not (there is then no `torch.load` to protect).
    """
    global _count
    with _lock:
        _count += 1
        if _count == 1:
            _patch_torch()
            mod = sys.modules.get(_TRANSFORMERS)
            if mod is not None:
                _patch_transformers(mod)
            if _HOOK not in sys.meta_path:
                sys.meta_path.insert(0, _HOOK)


def uninstall() -> None:
    """Undo one `install()`; the last one restores the original functions.

    Raises:
        RuntimeError: the guard is not installed.
    """
    global _count
    with _lock:
        if _count == 0:
            raise RuntimeError("safeload.guard is not installed")
        _count -= 1
        if _count == 0:
            while _HOOK in sys.meta_path:
                sys.meta_path.remove(_HOOK)
            for (module, name), original in list(_originals.items()):
                current = getattr(module, name, None)
                if getattr(current, "__safeload_guard__", False):
                    setattr(module, name, original)
                else:  # someone replaced our wrapper: leave theirs; ours now falls through
                    _logger.warning("safeload.guard: %s.%s was replaced while guarded; "
                                    "left as it is", module.__name__, name)
                del _originals[(module, name)]


@contextmanager
def guard() -> Iterator[None]:
    """`with safeload.guard(): ...`: the guard is installed inside the block only."""
    install()
    try:
        yield
    finally:
        uninstall()


# ------------------------------------------------------------------------------------------
# Wrappers


def _in_safeload() -> bool:
    return bool(getattr(_local, "depth", 0))


def _call_safeload(f: Any, map_location: Any, pickle_module: Any, weights_only: Any, mmap: Any,
                   kwargs: dict[str, Any]) -> Any:
    from safeload.loading import load

    if _in_safeload():
        # safeload.load never calls torch.load; if it ever did, that must not loop back here
        # (and must not fall back to an unguarded unpickle either).
        raise RuntimeError("safeload.guard: torch.load called from inside safeload.load")
    _local.depth = 1
    try:
        return load(f, map_location, pickle_module, weights_only=weights_only, mmap=mmap,
                    **kwargs)
    finally:
        _local.depth = 0


def _torch_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def load(f: Any, map_location: Any = None, pickle_module: Any = None, *,
             weights_only: bool | None = None, mmap: bool | None = None,
             **pickle_load_args: Any) -> Any:
        if not installed():
            return original(f, map_location, pickle_module, weights_only=weights_only,
                            mmap=mmap, **pickle_load_args)
        return _call_safeload(f, map_location, pickle_module, weights_only, mmap,
                              pickle_load_args)

    load.__safeload_guard__ = True  # type: ignore[attr-defined]
    return load


def _load_state_dict_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def load_state_dict(checkpoint_file: Any, map_location: Any = "cpu",
                        weights_only: bool = True, disable_mmap: bool | None = None,
                        **kwargs: Any) -> Any:
        if not installed():
            return original(checkpoint_file, map_location, weights_only, disable_mmap,
                            **kwargs)
        # safetensors and pickles alike: verified, inspected, pickles converted in the sandbox.
        # (`disable_mmap` needs no counterpart: safeload reads through private mappings.)
        return _call_safeload(checkpoint_file, map_location, None, True, None, {})

    load_state_dict.__safeload_guard__ = True  # type: ignore[attr-defined]
    return load_state_dict


def _replace(module: types.ModuleType, name: str,
             make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    current = getattr(module, name, None)
    if current is None or (module, name) in _originals:
        return
    if getattr(current, "__safeload_guard__", False):
        return  # already our wrapper (left behind by a replaced-then-restored patch)
    _originals[(module, name)] = current
    setattr(module, name, make(current))


def _patch_torch() -> None:
    try:
        import torch
        import torch.serialization
    except ImportError:
        _logger.debug("safeload.guard: torch is not installed; nothing to patch")
        return
    # Each name keeps its own original (torch.load may already be another library's wrapper).
    for module in (torch, torch.serialization):
        _replace(module, "load", _torch_wrapper)


def _patch_transformers(module: types.ModuleType) -> None:
    """Patch what this transformers version has; an absent name is simply not patched."""
    with _lock:
        if installed():
            _replace(module, "load_state_dict", _load_state_dict_wrapper)


# ------------------------------------------------------------------------------------------
# Import hook: patch transformers' loader when it is imported after install()


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.inner.exec_module(module)
        _patch_transformers(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # get_source, get_code...: tracebacks keep working


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TRANSFORMERS or getattr(_local, "finding", False):
            return None
        _local.finding = True  # the lookup below walks sys.meta_path again, us included
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            _local.finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader)
        return spec


_HOOK = _Hook()


# `safeload.guard` names both this module and the context manager: once the module is imported,
# the package attribute is the module, so the module itself must be callable.
class _CallableModule(types.ModuleType):
    def __call__(self) -> Any:
        return guard()


sys.modules[__name__].__class__ = _CallableModule
