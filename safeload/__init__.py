"""safeload: load third-party model checkpoints without running their code.

Swap one import::

    import safeload
    state_dict = safeload.load("model.pt", map_location="cpu")

`safeload.load` takes what `torch.load` takes. Safetensors load directly; pickle-based files are
inspected statically (never unpickled in this process) and refused if they could run code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safeload._version import __version__

__all__ = ["__version__", "convert_one", "from_pretrained", "guard", "install", "load", "scan",
           "uninstall"]

if TYPE_CHECKING:
    from safeload.bulk import convert_one as convert_one
    from safeload.guard import guard as guard
    from safeload.guard import install as install
    from safeload.guard import uninstall as uninstall
    from safeload.hf import from_pretrained as from_pretrained
    from safeload.loading import load as load
    from safeload.scanning import scan as scan


def __getattr__(name: str) -> Any:
    # Lazy: `import safeload` must not import torch (the CLI's scan and trust stay fast).
    if name == "load":
        from safeload.loading import load

        return load
    if name == "from_pretrained":
        from safeload.hf import from_pretrained

        return from_pretrained
    if name == "convert_one":  # what a Dask, Ray or Kubernetes worker runs per file
        from safeload.bulk import convert_one

        return convert_one
    if name == "scan":
        from safeload.scanning import scan

        return scan
    if name in ("guard", "install", "uninstall"):
        import importlib  # not `from safeload import guard`: that would come back here

        return getattr(importlib.import_module("safeload.guard"), name)
    raise AttributeError(f"module 'safeload' has no attribute {name!r}")
