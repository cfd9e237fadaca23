"""Batch conversion: one sandboxed child converts several inputs (one model's files).

Each input gets its own result: a refusal or a failure of one never costs the others theirs,
every output is validated like a single conversion's, and the converted store is reused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from safeload._internal import paths, sandbox
from safeload._internal.converter import load_converted
from safeload._internal.opened import InMemory, OpenedFile
from safeload.convert import Converted, convert_many, convert_opened
from safeload.errors import ConversionError, SandboxUnavailableError


class Canary:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The argv of every conversion child started (the real one still runs)."""
    calls: list[list[str]] = []
    real = sandbox.run_worker
    monkeypatch.setenv("SAFELOAD_CONVERT_WORKER", "0")  # count one-shot children only

    def counting(module: str, argv: list[str], **kw: Any) -> Any:
        calls.append(list(argv))
        return real(module, argv, **kw)

    monkeypatch.setattr(sandbox, "run_worker", counting)
    yield calls


def _opened(*files: Path) -> list[tuple[str, OpenedFile]]:
    return [(str(f), OpenedFile.open(f)) for f in files]


def _close(items: list[tuple[str, OpenedFile]]) -> None:
    for _, f in items:
        f.close()


def _store() -> list[str]:
    store = paths.converted_dir()
    return sorted(os.listdir(store)) if store.exists() else []


def test_one_child_converts_every_input(tmp_path: Path, children: list[list[str]]) -> None:
    a, b, c = tmp_path / "a.bin", tmp_path / "b.pt", tmp_path / "c.pkl"
    ta, tb = torch.randn(5, 3), torch.arange(7)
    torch.save({"a": ta}, a)
    torch.save({"b": tb}, b, _use_new_zipfile_serialization=False)  # legacy format
    torch.save({"nested": {"c": ta * 2}, "step": 3}, c)
    items = _opened(a, b, c)
    try:
        out = convert_many(items)
    finally:
        _close(items)
    assert len(children) == 1 and children[0][1] == "--batch" and len(children[0]) == 5
    assert all(isinstance(r, Converted) and not r.cache_hit for r in out)
    ra, rb, rc = (r for r in out if isinstance(r, Converted))
    assert torch.equal(load_file(str(ra.path))["a"], ta)
    assert torch.equal(load_file(str(rb.path))["b"], tb)
    # The engine's reader of a validated store entry restores the nesting from its record.
    restored = load_converted(rc, map_location=None, mmap=None)
    assert restored["step"] == 3 and torch.equal(restored["nested"]["c"], ta * 2)
    assert rb.report["source_format"] == "torch-legacy" and "seccomp" in str(rb.report["layers"])
    assert len(_store()) == 3 and not any(n.startswith(".") for n in _store())


def test_a_refused_input_does_not_stop_the_others(tmp_path: Path,
                                                  children: list[list[str]]) -> None:
    good, evil, other = tmp_path / "good.bin", tmp_path / "evil.bin", tmp_path / "other.bin"
    marker = tmp_path / "CANARY-FIRED"
    torch.save({"w": torch.ones(4)}, good)
    torch.save({"w": torch.ones(1), "x": Canary(marker)}, evil)  # straight to the child
    torch.save({"v": torch.zeros(2)}, other)
    items = _opened(good, evil, other)
    try:
        out = convert_many(items)
    finally:
        _close(items)
    assert len(children) == 1
    assert isinstance(out[0], Converted) and isinstance(out[2], Converted)
    assert isinstance(out[1], ConversionError)
    assert "evil.bin" in str(out[1]) and "refused" in str(out[1]) and "system" in str(out[1])
    assert not marker.exists()
    assert len(_store()) == 2


def test_cached_and_duplicate_inputs_never_reach_the_child(tmp_path: Path,
                                                           children: list[list[str]]) -> None:
    a, b, a2 = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "copy-of-a.bin"
    torch.save({"a": torch.ones(3)}, a)
    torch.save({"b": torch.zeros(3)}, b)
    a2.write_bytes(a.read_bytes())
    with OpenedFile.open(a) as f:
        first = convert_opened(str(a), f)  # converted earlier, one file at a time
    items = _opened(a, b, a2, b)
    try:
        out = convert_many(items)
    finally:
        _close(items)
    assert len(children) == 2 and len(children[1]) == 3  # the batch child got only b, once
    ra, rb, ra2, rb2 = out
    assert isinstance(ra, Converted) and ra.cache_hit and ra.path == first.path
    assert isinstance(ra2, Converted) and ra2.path == first.path
    assert isinstance(rb, Converted) and not rb.cache_hit and rb2 is rb
    items = _opened(a, b)
    try:
        again = convert_many(items)
    finally:
        _close(items)
    assert len(children) == 2 and all(isinstance(r, Converted) and r.cache_hit for r in again)


def test_bytes_other_than_the_verified_ones_are_rejected(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    torch.save({"a": torch.ones(3)}, a)
    torch.save({"b": torch.zeros(3)}, b)
    items = _opened(a, b)
    try:
        out = convert_many(items, source_sha256s=["0" * 64, None])  # a's digest is not this
    finally:
        _close(items)
    assert isinstance(out[0], ConversionError) and "digest mismatch" in str(out[0])
    assert isinstance(out[1], Converted)
    assert len(_store()) == 1


def test_an_output_that_differs_from_its_source_is_rejected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sandbox.run_worker

    def lying(module: str, argv: list[str], *, output_dir: Path, **kw: Any) -> Any:
        result = real(module, argv, output_dir=output_dir, **kw)
        out = Path(output_dir) / "1" / "model.safetensors"
        data = bytearray(out.read_bytes())
        data[-1] ^= 0x01  # a tensor byte, after the child hashed what it wrote
        out.write_bytes(bytes(data))
        return result

    monkeypatch.setattr(sandbox, "run_worker", lying)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    torch.save({"a": torch.ones(3)}, a)
    torch.save({"b": torch.ones(3) * 2}, b)
    items = _opened(a, b)
    try:
        out = convert_many(items)
    finally:
        _close(items)
    assert isinstance(out[0], Converted)
    assert isinstance(out[1], ConversionError) and "did not match its input" in str(out[1])
    assert len(_store()) == 1


def test_a_limit_hit_by_one_input_fails_only_that_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sandbox.Limits.for_input

    def tiny(size: int) -> sandbox.Limits:
        lim = real(size)
        return type(lim)(**{**lim.to_dict(), "file_size": 64 << 10})  # disk "full" at 64 KiB

    monkeypatch.setattr(sandbox.Limits, "for_input", staticmethod(tiny))
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    torch.save({"w": torch.ones(8)}, small)
    torch.save({"w": torch.zeros(256, 1024)}, big)  # 1 MiB of tensor data
    items = _opened(big, small)
    try:
        out = convert_many(items)
    finally:
        _close(items)
    assert isinstance(out[0], ConversionError) and "failed" in str(out[0])
    assert isinstance(out[1], Converted)
    assert len(_store()) == 1  # nothing half-written stays behind


def test_a_failure_of_the_whole_child_is_every_inputs_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*a: object, **k: object) -> None:
        raise SandboxUnavailableError("no isolating sandbox layer")

    monkeypatch.setattr(sandbox, "run_worker", unavailable)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    torch.save({"a": torch.ones(3)}, a)
    torch.save({"b": torch.ones(2)}, b)
    items = _opened(a, b)
    try:
        out = convert_many(items)
    finally:
        _close(items)
    assert all(isinstance(r, SandboxUnavailableError) for r in out)
    assert _store() == []  # the work directory is gone too


def test_in_memory_inputs_and_progress(tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    torch.save({"w": torch.arange(4.0)}, src)
    seen: list[int] = []
    out = convert_many([("stream", InMemory("stream", src.read_bytes()))], progress=seen.append)
    assert isinstance(out[0], Converted)
    assert torch.equal(load_file(str(out[0].path))["w"], torch.arange(4.0))
    assert all(n >= 0 for n in seen)


def test_worker_command_line_forms(tmp_path: Path) -> None:
    from safeload_conversion.__main__ import main

    # Malformed batch command lines are refused before any lockdown or input is touched.
    assert main(["9", str(tmp_path), "--batch"]) == 2
    assert main(["9", str(tmp_path), "--batch", "x"]) == 2
    assert main(["9", str(tmp_path), "--batch", "5", "5"]) == 2
    assert main(["9", str(tmp_path), "--batch", "9"]) == 2
    assert main(["9", "x", str(tmp_path)]) == 2  # the single form still checks its own
