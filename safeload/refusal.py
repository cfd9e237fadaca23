"""The refusal an inspection verdict calls for: which error, and the way out it names."""

from __future__ import annotations

from safeload.errors import MalformedFileError, UnsafeCheckpointError, UnsupportedFormatError
from safeload.inspection import Inspection, describe


def refuse_if_unsafe(name: str, ins: Inspection) -> None:
    """Raise the refusal an inspection verdict calls for; return if the file is clean.

    Raises:
        UnsupportedFormatError: not a format safeload loads.
        MalformedFileError: a safetensors file that does not parse exactly.
        UnsafeCheckpointError: findings that could run code.
    """
    if ins.verdict == "skipped":
        raise UnsupportedFormatError(
            f"{name}: not a checkpoint format safeload loads (found: {ins.detail or ins.format})",
            hint="safeload loads safetensors, torch zip and legacy files, pickles and .npy/.npz")
    if ins.verdict == "unsafe" and ins.format in ("safetensors", "numpy", "npz") and all(
            x.code == "malformed" for x in ins.findings):
        # Safetensors and allow_pickle=False NumPy files cannot run code: a bad one is
        # malformed, not unsafe. (A polyglot, which another loader reads as a pickle or an
        # archive, or an object array, is unsafe: below.)
        msg = ins.findings[0].message  # the safetensors checks name the file already
        raise MalformedFileError(msg if msg.startswith(f"{name}: ") else f"{name}: {msg}",
                                 hint="fetch the file again from its source")
    if ins.verdict == "unsafe":
        lines = "; ".join(describe(x) for x in ins.findings[:5])
        more = f" (+{len(ins.findings) - 5} more)" if len(ins.findings) > 5 else ""
        code_bearing = any(x.code == "code-bearing" for x in ins.findings)
        # torch.save(model) pickles the model's classes: nn.Module subclasses, often __main__.
        whole_model = any((x.global_name or "").startswith(("torch.nn.modules.", "__main__."))
                          for x in ins.findings)
        if code_bearing or whole_model:
            hint = ("this file holds a whole model object or code: save model.state_dict() "
                    "instead (or export safetensors) and load that")
        else:
            hint = "do not load this file; if you trust its source, ask for a safetensors export"
        raise UnsafeCheckpointError(f"{name}: refused ({ins.format}): {lines}{more}", hint=hint,
                                    findings=tuple(ins.findings))
