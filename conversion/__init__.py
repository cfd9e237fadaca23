"""safeload's sandboxed converter: the only code that reads a pickle's contents.

Installed as `safeload_conversion` (a PyPI project named `conversion` already exists). It never
imports `safeload`: the dependency arrow points one way, so the code that touches hostile
pickles stays small. It runs as `python -I -B -m safeload_conversion` inside a locked-down child.
"""

__version__ = "0.1.0"
