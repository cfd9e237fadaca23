"""safeload's converter and its pickle machine: the only code that reads a pickle's contents.

Installed as `safeload_conversion` (a PyPI project named `conversion` already exists). It never
imports `safeload`: the dependency arrow points one way, so the code that touches hostile
pickles stays small. The parent imports its static parts (`pickle_vm`, `zipstrict`,
`torchfile`: symbolic execution, nothing is unpickled) to inspect; the conversion itself runs as
`python -I -B -m safeload_conversion` inside a locked-down child. `protocol` is the wire
contract both sides import.
"""

__version__ = "0.1.0"
