"""Streams the million-stream fuzz run found: a loader with a persistent_load goes on past a
persistent id, so an import behind one makes the file unsafe, never "not a pickle"."""

from __future__ import annotations

import struct

import pytest

from safeload._internal.reach import would_import
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


def test_the_walk_bound_counts_opcodes_not_offsets() -> None:
    # Hostile review 2026-12-07: a bz2 header reads as BINBYTES of ~825 MB, so every joblib bz2
    # file past that size was "undecided" (refused as a polyglot) by an offset bound. What
    # follows a long payload is walked: here STOP, then nothing reached.
    skip = 70 << 20  # past the old 64 MiB offset bound
    buf = b"B" + struct.pack("<I", skip) + bytes(skip) + b"."
    assert would_import(buf) is None
    evil = b"B" + struct.pack("<I", skip) + bytes(skip) + b"cos\nsystem\n."
    assert would_import(evil) == (skip + 5, "GLOBAL")


def test_protocol0_text_lines_are_found_without_copying_the_rest() -> None:
    # Hostile review 2026-12-07: each STRING line copied the rest of the stream to find its
    # newline (quadratic: a 17 MB vocabulary ran out of the 120 s budget). Every copy made
    # while reading many short lines stays within one chunk.
    from typing import Any

    from safeload_conversion import pickle_vm

    data = b"(" + b"S'w'\n" * 20_000 + b"l."
    vm = pickle_vm.PickleMachine(data)
    orig, copied = vm.data, []

    class View:
        def __getitem__(self, key: Any) -> Any:
            chunk = orig[key]
            if isinstance(key, slice):
                copied.append(len(chunk))
            return chunk

        def __len__(self) -> int:
            return len(orig)

    vm.data = View()  # type: ignore[assignment]
    vm.run()
    assert copied and max(copied) <= pickle_vm.MAX_LINE


def test_a_persistent_object_built_with_another_as_its_state_is_unsafe() -> None:
    # fuzz_inspector (seed 8, 2026-12-07): BUILD applies one persistent_load result as the
    # state of another (`__setstate__` of a loader's object); a second id cleared the first
    stream = bytes.fromhex("28502b310a325162759367343239343936373239360a960c00000000000000"
                           "a139f5bf8c8aa60dc16928b62e")
    assert inspect_bytes(stream).verdict == "unsafe"
