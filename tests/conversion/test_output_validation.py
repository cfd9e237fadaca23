"""The parent validates the child's output against the source it holds, never the child's word.

A test-only lying converter (a monkeypatched `run_worker`: the real child runs, then its output
is rewritten the way a compromised child would write it, with a report that matches the lie)
must be refused with "did not match its input", on a fresh conversion and on a store hit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import safeload
from safeload._internal import convert_worker, converter, paths, sandbox

Lie = Callable[[Path], None]


def _read(out: Path) -> tuple[dict[str, Any], bytes]:
    raw = out.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(out: Path, doc: dict[str, Any], chunks: dict[str, bytes]) -> None:
    """A well-formed safetensors file in the child's own layout (what a liar would write)."""
    meta = doc.pop("__metadata__")
    new: dict[str, Any] = {"__metadata__": meta}
    off = 0
    for name, info in doc.items():
        new[name] = {**info, "data_offsets": [off, off + len(chunks[name])]}
        off += len(chunks[name])
    raw = json.dumps(new, separators=(",", ":")).encode()
    raw += b" " * (-(len(raw) + 8) % 8)
    out.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(chunks[k] for k in doc))


def _split(doc: dict[str, Any], data: bytes) -> dict[str, bytes]:
    return {k: data[v["data_offsets"][0] : v["data_offsets"][1]]
            for k, v in doc.items() if k != "__metadata__"}


def flip_byte(out: Path) -> None:
    raw = bytearray(out.read_bytes())
    raw[-1] ^= 0x01
    out.write_bytes(bytes(raw))


def swap_tensors(out: Path) -> None:
    doc, data = _read(out)
    chunks = _split(doc, data)
    chunks["a"], chunks["b"] = chunks["b"], chunks["a"]
    _write(out, doc, chunks)


def change_structure_value(out: Path) -> None:
    doc, data = _read(out)
    meta = doc["__metadata__"]
    meta["safeload.structure"] = meta["safeload.structure"].replace('"v":"7"', '"v":"8"')
    assert '"v":"8"' in meta["safeload.structure"]
    _write(out, doc, _split(doc, data))


def extra_tensor(out: Path) -> None:
    doc, data = _read(out)
    chunks = _split(doc, data)
    doc["backdoor"] = {"dtype": "F32", "shape": [2]}
    chunks["backdoor"] = b"\x00" * 8
    _write(out, doc, chunks)


def drop_tensor(out: Path) -> None:
    doc, data = _read(out)
    chunks = _split(doc, data)
    del doc["b"], chunks["b"]
    _write(out, doc, chunks)


def _digests(out: Path) -> dict[str, str]:
    doc, data = _read(out)
    return {k: hashlib.sha256(v).hexdigest() for k, v in _split(doc, data).items()}


def _lying_worker(lie: Lie, layers: list[str] | None = None) -> Any:
    real = sandbox.run_worker

    def run(module: str, argv: list[str], *, output_dir: Path, **kw: Any) -> Any:
        result = real(module, argv, output_dir=output_dir, **kw)
        out = Path(output_dir) / "model.safetensors"
        lie(out)
        report = {**result.result, "tensors": _digests(out)}  # the report matches the lie
        claimed = result.layers if layers is None else replace(
            result.layers, applied=[*result.layers.applied, *layers])
        return replace(result, result=report, layers=claimed)

    return run


@pytest.fixture(autouse=True)
def _one_shot_children(monkeypatch: pytest.MonkeyPatch) -> None:
    # The lies below are told through `run_worker`; the long-lived worker has its own test.
    monkeypatch.setenv(convert_worker.ENV_SWITCH, "0")


def _checkpoint(tmp_path: Path) -> Path:
    src = tmp_path / "model.bin"
    torch.save({"a": torch.arange(4, dtype=torch.float32), "b": torch.ones(4), "step": 7}, src)
    return src


@pytest.mark.parametrize("lie", [flip_byte, swap_tensors, change_structure_value,
                                 extra_tensor, drop_tensor])
def test_a_lying_converter_with_a_matching_report_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: Lie) -> None:
    src = _checkpoint(tmp_path)
    monkeypatch.setattr(sandbox, "run_worker", _lying_worker(lie))
    with pytest.raises(safeload.errors.ConversionError, match="did not match its input"):
        safeload.load(src)
    assert not list(paths.converted_dir().glob("*/model.safetensors"))  # nothing was stored


def test_a_claimed_layer_this_machine_cannot_provide_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _checkpoint(tmp_path)
    monkeypatch.setattr(sandbox, "run_worker", _lying_worker(lambda out: None, ["hypervisor"]))
    with pytest.raises(safeload.errors.ConversionError, match="did not match its input"):
        safeload.load(src)
    real = converter.support_report
    monkeypatch.setattr(converter, "support_report", lambda: {
        **real(), "landlock": {"abi": None}, "seccomp": {"available": False}})
    monkeypatch.setattr(sandbox, "run_worker", _lying_worker(lambda out: None, ["landlock"]))
    with pytest.raises(safeload.errors.ConversionError, match="cannot provide"):
        safeload.load(src)


@pytest.mark.parametrize("lie", [flip_byte, swap_tensors, change_structure_value,
                                 extra_tensor, drop_tensor])
def test_a_lying_store_entry_is_discarded_and_converted_again(tmp_path: Path, lie: Lie) -> None:
    src = _checkpoint(tmp_path)
    want = {k: v.clone() for k, v in safeload.load(src).items() if k != "step"}
    (entry,) = paths.converted_dir().glob("*/model.safetensors")
    lie(entry)  # as an earlier, compromised child would have left it
    got = safeload.load(src)
    assert got["step"] == 7 and all(torch.equal(got[k], want[k]) for k in ("a", "b"))
    (again,) = paths.converted_dir().glob("*/model.safetensors")
    assert again.read_bytes() != b"" and "backdoor" not in _read(again)[0]


def test_views_and_shared_storage_validate(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    src = tmp_path / "views.pt"
    torch.save({"base": base, "t": base.t(), "row": base[1], "col": base[:, 2],
                "half": base.to(torch.bfloat16)}, src)
    got = safeload.load(src)
    assert torch.equal(got["t"], base.t()) and torch.equal(got["col"], base[:, 2])
    got = safeload.load(src)  # the store hit is validated the same way
    assert torch.equal(got["half"], base.to(torch.bfloat16))


@pytest.mark.parametrize("lie", [flip_byte, swap_tensors, change_structure_value,
                                 extra_tensor, drop_tensor])
def test_a_lying_long_lived_worker_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: Lie) -> None:
    # The same lies told by the per-process worker (small inputs): validated the same way.
    monkeypatch.setenv(convert_worker.ENV_SWITCH, "1")
    real = convert_worker._Worker.convert

    def lying(self: Any, fd: int, size: int, work: Path, timeout: float) -> dict[str, Any]:
        obj = real(self, fd, size, work, timeout)
        lie(work / "model.safetensors")
        return {**obj, "tensors": _digests(work / "model.safetensors")}

    monkeypatch.setattr(convert_worker._Worker, "convert", lying)
    src = _checkpoint(tmp_path)
    try:
        with pytest.raises(safeload.errors.ConversionError, match="did not match its input"):
            safeload.load(src)
    finally:
        convert_worker.shutdown()
    assert not list(paths.converted_dir().glob("*/model.safetensors"))


def _kept_elsewhere(out: Path) -> None:
    """The output replaced by a link to a file the child keeps (to rewrite it later)."""
    kept = out.parent.parent / f"kept-{out.parent.name}"
    kept.write_bytes(out.read_bytes())
    out.unlink()
    out.symlink_to(kept)


def _second_name(out: Path) -> None:
    """A hard link in the child's folder: a write through it lands on the validated output."""
    (out.parent / "conversion.json").hardlink_to(out)


@pytest.mark.parametrize("lie", [_kept_elsewhere, _second_name], ids=["symlink", "hard-link"])
def test_an_output_that_is_a_link_or_has_two_names_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: Lie) -> None:
    # review W: the validation followed a symlink to a file the child kept, and the parent's
    # report was written through a hard link the child had planted, onto the output
    src = _checkpoint(tmp_path)
    monkeypatch.setattr(sandbox, "run_worker", _lying_worker(lie))
    with pytest.raises(safeload.errors.ConversionError, match="did not match its input"):
        safeload.load(src)
    assert not list(paths.converted_dir().glob("*/model.safetensors"))


def test_what_the_child_leaves_beside_its_output_is_not_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def leave(out: Path) -> None:
        (out.parent / "PROBE_RESULT.json").write_text("{}")
        (out.parent / "sub").mkdir()

    src = _checkpoint(tmp_path)
    monkeypatch.setattr(sandbox, "run_worker", _lying_worker(leave))
    assert safeload.load(src)["step"] == 7
    (entry,) = paths.converted_dir().glob("*/model.safetensors")
    assert sorted(p.name for p in entry.parent.iterdir()) == ["conversion.json",
                                                              "model.safetensors"]


def test_a_worker_output_link_is_refused_and_the_worker_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(convert_worker.ENV_SWITCH, "1")
    real = convert_worker._Worker._frame

    linked: list[Path] = []

    def linking(self: Any, deadline: float) -> dict[str, Any]:
        obj = real(self, deadline)
        produced = self.dir / f"out-{obj.get('index')}"
        if isinstance(obj.get("index"), int) and produced.is_file():  # not the ready frame
            _kept_elsewhere(produced)
            linked.append(produced)
        return obj

    monkeypatch.setattr(convert_worker._Worker, "_frame", linking)
    src = _checkpoint(tmp_path)
    try:
        # the worker is unusable: a fresh one-shot child converts, and the entry is its
        got = safeload.load(src)
    finally:
        convert_worker.shutdown()
    assert linked and got["step"] == 7
    (entry,) = paths.converted_dir().glob("*/model.safetensors")
    assert not entry.is_symlink()
