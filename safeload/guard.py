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
- torch.distributed.checkpoint (DCP) folders are refused, not loaded: DCP reads their
  `.metadata` with `pickle.load` (Lightning/accelerate FSDP and Trainer sharded resumes).
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
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from safeload._internal.opened import Held, InMemory
from safeload._internal.text import get_logger, safe_text
from safeload.errors import MalformedFileError

if TYPE_CHECKING:
    from safeload._internal.safe_open import SafeOpen
    from safeload._internal.safetensors_check import SafetensorsHeader

__all__ = ["guard", "install", "uninstall", "installed"]

_logger = get_logger(__name__)


_lock = threading.RLock()
_count = 0
# (module, attribute) -> the original object; present only while patched.
_originals: dict[tuple[Any, str], Any] = {}  # (a module, or a class for a method)
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
            for name in _TARGETS:
                mod = sys.modules.get(name)
                if mod is not None:
                    _patch_module(mod)
            _patch_bindings()
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


def _replace(module: Any, name: str,
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


# safetensors' own loaders: a module that bound one of them by name before install()
# (`from safetensors import safe_open`: accelerate, peft, diffusers, ...) calls the original.
_SAFETENSORS_MODULES = ("safetensors", "safetensors.torch", "safetensors.numpy")


def _patch_bindings() -> None:
    """Replace, in every module already imported, each name bound to one of safetensors'
    original loaders with the same wrapper (modules imported later see the wrapper itself)."""
    factories: dict[int, _Factory] = {}
    for module_name in _SAFETENSORS_MODULES:
        module = sys.modules.get(module_name)
        for name, make in _TARGETS.get(module_name, ()):
            original = _originals.get((module, name)) if module is not None else None
            if original is not None:
                factories[id(original)] = make
    if not factories:
        return
    for key, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType) or key.startswith("safeload"):
            continue
        if _scanned.get(key) is not module:  # each module's names are looked at once
            _scanned[key] = module
            try:
                found = [n for n, v in list(vars(module).items()) if id(v) in factories]
            except TypeError:  # a module object without a usable __dict__
                found = []
            _bound[key] = [(n, factories[id(getattr(module, n))]) for n in found]
        for name, make in _bound.get(key, ()):
            if id(getattr(module, name, None)) in factories:  # still safetensors' own
                _replace(module, name, make)


# What `_patch_bindings` found, by module name: a `with guard():` per load must not walk
# every module's namespace each time.
_scanned: dict[str, types.ModuleType] = {}
_bound: dict[str, list[tuple[str, _Factory]]] = {}


def _patch_module(module: types.ModuleType) -> None:
    """Patch the names `_TARGETS` lists for this module (a dotted name is a class's method);
    an absent name is not patched."""
    with _lock:
        if installed():
            for dotted, make in _TARGETS.get(module.__name__, ()):
                *owners, name = dotted.split(".")
                owner: Any = module
                for part in owners:
                    owner = getattr(owner, part, None)
                if owner is not None:
                    _replace(owner, name, make)


# ------------------------------------------------------------------------------------------
# safetensors: verified, recorded, and served from the held bytes


def _held_safetensors(f: Any, what: str) -> tuple[Held, SafetensorsHeader, str]:
    """open_input -> locate -> verify -> admit -> record, for a file read as safetensors.

    Raises:
        RefusedError: any refusal of the pipeline (trust store, blob name, licence, ...).
        MalformedFileError: the bytes are not a safetensors file.
    """
    from safeload import pipeline
    from safeload._internal.safetensors_check import parse_header

    held = f if isinstance(f, InMemory) else pipeline.open_input(f)
    try:
        admitted = pipeline.admit(pipeline.verify(held, pipeline.locate(held)), "load")
        if admitted.inspection.format != "safetensors":
            raise MalformedFileError(
                f"{safe_text(held.name)}: {what} was given a {admitted.inspection.format} "
                "file, not safetensors", hint="load it with torch.load (guarded) instead")
        header = parse_header(held.mapping(), held.name)
        pipeline.record(admitted, "load")
    except BaseException:
        held.close()
        raise
    return held, header, admitted.verified.sha256


def _serve(f: Any, framework: str, device: Any, backend: str | None, what: str) -> SafeOpen:
    from safeload import pipeline
    from safeload._internal.safe_open import (
        BACKENDS,
        SafeOpen,
        check_device,
        check_framework,
        safetensor_error,
    )

    # Every argument is checked before the file is opened.
    check_framework(framework)
    check_device(device)
    if backend is not None and backend not in BACKENDS:
        raise safetensor_error(f"backend {backend} is invalid")
    held, header, sha = _held_safetensors(f, what)
    return SafeOpen(held, header, framework, device, after_read=lambda copies_match: (
        pipeline.check_unchanged(held, sha, copies_match=copies_match)))


def _with_backend(backend: str | None) -> dict[str, Any]:
    return {} if backend is None else {"backend": backend}


def _safe_open_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    def safe_open(filename: Any, framework: str, device: Any = "cpu", *,
                  backend: str | None = None) -> Any:
        if not installed():
            return original(filename, framework, device, **_with_backend(backend))
        return _serve(filename, framework, device, backend, "safe_open")

    safe_open.__doc__ = original.__doc__
    safe_open.__safeload_guard__ = True  # type: ignore[attr-defined]
    return safe_open


def _load_file_wrapper(framework: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def load_file(filename: Any, device: Any = "cpu", *, backend: str | None = None) -> Any:
            if not installed():
                if framework == "np":  # numpy's load_file has no device
                    return original(filename, **_with_backend(backend))
                return original(filename, device, **_with_backend(backend))
            with _serve(filename, framework, device, backend, "load_file") as f:
                return f.get_tensors()

        load_file.__safeload_guard__ = True  # type: ignore[attr-defined]
        return load_file
    return make


def _load_bytes_wrapper(framework: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def load(data: bytes) -> Any:
            if not installed():
                return original(data)
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError(f"load() expects bytes, not {type(data).__name__}")
            held = InMemory("<safetensors bytes>", data, anonymous=True)
            with _serve(held, framework, "cpu", None, "load") as f:
                return f.get_tensors()

        load.__safeload_guard__ = True  # type: ignore[attr-defined]
        return load
    return make


def _dcp_metadata_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    """torch.distributed.checkpoint's `FileSystemReader.read_metadata` runs `pickle.load` on
    the checkpoint's `.metadata` (review S: a payload there ran under the guard). Those are
    pickled DCP dataclasses, which safeload does not rebuild: refused while guarded."""
    @functools.wraps(original)
    def read_metadata(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not installed():
            return original(self, *args, **kwargs)
        from safeload.errors import UnsafeCheckpointError

        try:
            where = str(self._get_metadata_path(kwargs.get("rank")))
        except Exception:  # noqa: BLE001 (the name is for the message only)
            where = f"{getattr(self, 'path', '?')}/.metadata"
        raise UnsafeCheckpointError(
            f"{safe_text(where)}: a torch.distributed.checkpoint (DCP) folder; its metadata "
            "is a pickle that torch reads with pickle.load (it can run code), and safeload "
            "cannot show it harmless without unpickling: refused under safeload.guard()",
            hint="only where you trust its source: convert it with torch.distributed."
                 "checkpoint.format_utils.dcp_to_torch_save outside the guard, then load the "
                 "torch.save file guarded")

    read_metadata.__safeload_guard__ = True  # type: ignore[attr-defined]
    return read_metadata


_Factory = Callable[[Callable[..., Any]], Callable[..., Any]]
_TORCH_FILE, _TORCH_BYTES = _load_file_wrapper("pt"), _load_bytes_wrapper("pt")
# module -> the names patched in it (when it is imported: now, or later through the hook).
# Modules that call `safetensors.torch.load_file` (or `import safetensors` inside a function,
# as diffusers does) need no entry: the safetensors modules themselves are patched.
_TARGETS: dict[str, tuple[tuple[str, _Factory], ...]] = {
    "safetensors": (("safe_open", _safe_open_wrapper),),
    "safetensors.torch": (("safe_open", _safe_open_wrapper), ("load_file", _TORCH_FILE),
                          ("load", _TORCH_BYTES)),
    "safetensors.numpy": (("safe_open", _safe_open_wrapper),
                          ("load_file", _load_file_wrapper("np")),
                          ("load", _load_bytes_wrapper("np"))),
    "transformers.modeling_utils": (("load_state_dict", _load_state_dict_wrapper),
                                    ("safe_open", _safe_open_wrapper),
                                    ("_safe_load_bytes", _TORCH_BYTES)),
    "peft.utils.save_and_load": (("safe_load_file", _TORCH_FILE),),
    # (FsspecReader inherits it; DCP's tensor reads call torch.load, guarded already)
    "torch.distributed.checkpoint.filesystem": (
        ("FileSystemReader.read_metadata", _dcp_metadata_wrapper),),
    "sentence_transformers.base.modules.module": (("load_safetensors_file", _TORCH_FILE),),
    "sentence_transformers.sentence_transformer.losses.embed_distill": (
        ("load_safetensors_file", _TORCH_FILE),),
}


# ------------------------------------------------------------------------------------------
# Import hook: patch transformers' loader when it is imported after install()


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.inner.exec_module(module)
        _patch_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # get_source, get_code...: tracebacks keep working


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _TARGETS or getattr(_local, "finding", False):
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
