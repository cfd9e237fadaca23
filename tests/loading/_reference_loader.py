"""Reference results for third-party checkpoints, computed in a separate process.

`python _reference_loader.py IN_FILE OUT_DIR [MAP_LOCATION]` runs
`torch.load(IN_FILE, weights_only=False, map_location=...)` -- real unpickling, so only ever in
a child process -- and writes what it got as plain data: `OUT_DIR/structure.json` (types,
keys, dtypes, shapes, flags, identity, reprs of non-tensor leaves) and
`OUT_DIR/tensors.safetensors` (every tensor's raw bytes as a flat uint8 tensor).

The parent imports `describe` from here and applies it to `safeload.load`'s result: the two
descriptions and byte sets must be equal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def describe(obj: Any, path: str = "root", out: dict[str, Any] | None = None,
             seen: dict[int, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """A JSON-able description of `obj` and {path: flat uint8 tensor of each tensor's bytes}."""
    import torch

    out = {} if out is None else out
    seen = {} if seen is None else seen
    if isinstance(obj, torch.Tensor):
        if id(obj) in seen:
            return {"t": "same-object-as", "v": seen[id(obj)]}, out
        seen[id(obj)] = path
        t = obj.detach()
        desc = {"t": "tensor", "cls": type(obj).__name__, "dtype": str(t.dtype),
                "shape": list(t.shape), "requires_grad": obj.requires_grad,
                "device": str(t.device)}
        if t.device.type != "meta":
            out[path] = t.cpu().contiguous().reshape(-1).view(torch.uint8).clone()
        return desc, out
    if isinstance(obj, dict):
        items = [[describe(k, f"{path}.key{i}", out, seen)[0],
                  describe(v, f"{path}[{k!s}]", out, seen)[0]]
                 for i, (k, v) in enumerate(obj.items())]
        desc = {"t": "dict", "cls": type(obj).__name__, "items": items}
        if hasattr(obj, "_metadata"):
            desc["_metadata"] = describe(obj._metadata, f"{path}._metadata", out, seen)[0]
        return desc, out
    if isinstance(obj, (list, tuple)):
        return {"t": type(obj).__name__,
                "items": [describe(v, f"{path}[{i}]", out, seen)[0]
                          for i, v in enumerate(obj)]}, out
    return {"t": "leaf", "cls": type(obj).__name__, "repr": repr(obj)}, out


def _map_location(spec: str | None) -> Any:
    return None if spec in (None, "", "none") else spec


def main(argv: list[str]) -> int:
    import torch
    from safetensors.torch import save_file

    src, out_dir = argv[0], Path(argv[1])
    ml = _map_location(argv[2] if len(argv) > 2 else None)
    obj = torch.load(src, weights_only=False, map_location=ml)
    desc, tensors = describe(obj)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "structure.json").write_text(json.dumps(desc, sort_keys=True))
    save_file(tensors, str(out_dir / "tensors.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
