"""Streams the million-stream fuzz run found: a loader with a persistent_load goes on past a
persistent id, so an import behind one makes the file unsafe, never "not a pickle"."""

from __future__ import annotations

import pytest

from safeload.inspection import inspect_bytes

FOUND = [
    # NONE MEMOIZE MEMOIZE BINGET POP POP PERSID MARK INST builtins.dict
    "4e949468003030500a28696275696c74696e730a646963740a28532778270a74522e",
    # BYTEARRAY8 (empty) BINPERSID ... INST builtins.exec
    "9600000000000000005156780a3028696275696c74696e730a657865630a28532778270a74522e",
    # BINFLOAT BINPERSID GLOBAL pickle.loads
    "47abd386e1b85ec70a51637069636b6c650a6c6f6164730a98322961",
    # PERSID GLOBAL __builtin__.eval
    "5030310a635f5f6275696c74696e5f5f0a6576616c0a6804894206000000469a62181eca952500000000"
    "0000006296ffffffffffffff7fbd36574e9368012e",
]


@pytest.mark.parametrize("stream", FOUND)
def test_import_behind_a_persistent_id_is_unsafe(stream: str) -> None:
    assert inspect_bytes(bytes.fromhex(stream)).verdict == "unsafe"


def test_opcode_flood_is_refused_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    from safeload_conversion import pickle_vm

    monkeypatch.setattr(pickle_vm, "MAX_OPS", 10_000)
    flood = b"\x80\x02" + b"N0" * 20_000 + b"N."  # NONE POP, over and over
    ins = inspect_bytes(flood)
    assert ins.verdict == "unsafe"
    assert any("opcodes" in f.message for f in ins.findings)
