"""Strict safetensors validation: every malformation is a MalformedFileError naming the file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import safeload
from safeload._internal.safetensors_check import parse_header
from safeload.errors import MalformedFileError


def _file(header: dict[str, object], data: bytes, pad: bytes = b"") -> bytes:
    raw = json.dumps(header).encode() + pad
    return struct.pack("<Q", len(raw)) + raw + data


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


def test_valid_file_parses() -> None:
    h = parse_header(_file(GOOD, b"\0" * 8), "m.safetensors")
    assert [(e.name, e.shape) for e in h.tensors] == [("a", (2,))]


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"\x01", "shorter"),
        (struct.pack("<Q", 1 << 40) + b"{}", "out of bounds"),
        (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
         "do not match"),
        (_file({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
         "do not match"),
        (_file({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
         "unknown dtype"),
        (_file({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),
         "non-negative"),
        (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
         "overlaps"),
        (_file(GOOD, b"\0" * 12), "no tensor covers"),
        # A missing field; an extra one is ignored, as safetensors ignores it
        # (tests/loading/test_safetensors_reader_rules.py).
        (_file({"a": {"dtype": "F32", "data_offsets": [0, 8]}}, b"\0" * 8), "must have"),
        (struct.pack("<Q", 9) + b'{"a":1,"a' + b"", "JSON"),
        (_file({"__metadata__": {"k": 1}}, b""), "__metadata__"),
    ],
)
def test_malformed_headers_are_refused(blob: bytes, why: str) -> None:
    with pytest.raises(MalformedFileError, match=why):
        parse_header(blob, "m.safetensors")


def test_duplicate_keys_are_refused() -> None:
    raw = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' \
          b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    with pytest.raises(MalformedFileError, match="duplicate"):
        parse_header(struct.pack("<Q", len(raw)) + raw + b"\0" * 8, "m.safetensors")


def test_deeply_nested_header_is_refused_not_crashing() -> None:
    raw = b"[" * 100000 + b"]" * 100000
    with pytest.raises(MalformedFileError):
        parse_header(struct.pack("<Q", len(raw)) + raw, "m.safetensors")


def test_load_refuses_with_the_file_name(tmp_path: Path) -> None:
    f = tmp_path / "bad.safetensors"
    f.write_bytes(_file(GOOD, b"\0" * 4))
    with pytest.raises(MalformedFileError, match="bad.safetensors"):
        safeload.load(f)


def test_a_header_parsed_before_is_still_checked_against_the_file_size() -> None:
    # The parse memo is keyed by the header's bytes and the file's size: the same header over
    # a data section one byte short (a truncated copy of a file loaded before) is refused.
    good = _file(GOOD, b"\0" * 8)
    first = parse_header(good, "m.safetensors")
    assert parse_header(bytearray(good), "again.safetensors") == first
    for short in (good[:-1], good + b"\0"):
        with pytest.raises(MalformedFileError, match="short.safetensors"):
            parse_header(short, "short.safetensors")
