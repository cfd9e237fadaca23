"""`safeload.load` reads a `.safetensors` file as `safetensors.load_file` reads it: the same
files accepted, the same tensors in the same order, and every file the reference refuses
refused (issue 9, "the union of what real readers accept"; issue 12, "keys come back in the
file's order"). Each case is a header variant written by hand; the reference decides."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import safeload
from safeload.errors import SafeloadError

DATA = bytes(range(48))
T = {"a": [0, 16], "b": [16, 32], "c": [32, 48], "z": [16, 16], "x": [0, 0], "w": [48, 48]}


def _entry(k: str, **extra: object) -> dict[str, object]:
    lo, hi = T[k]
    return {"dtype": "U8", "shape": [hi - lo], "data_offsets": [lo, hi], **extra}


def _file(header: bytes, data: bytes = DATA) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def _json(d: dict[str, object]) -> bytes:
    return json.dumps(d).encode()


ABC = {k: _entry(k) for k in "abc"}
CASES: dict[str, bytes] = {
    "plain": _file(_json(ABC)),
    # load_file returns the tensors by data offsets (start, then end), not by name nor JSON order
    "offset-order": _file(_json({k: _entry(k) for k in "wczbax"})),
    "json-order-reversed": _file(_json({k: _entry(k) for k in "cba"})),
    "leading-space": _file(b" " + _json(ABC)),
    "leading-newline-tab": _file(b"\n\t" + _json(ABC)),
    "trailing-spaces": _file(_json(ABC) + b"    "),
    "trailing-newline": _file(_json(ABC) + b"\n"),
    "indented": _file(json.dumps(ABC, indent=2).encode()),
    "unknown-tensor-field": _file(_json({"a": _entry("a", extra=1), "b": ABC["b"],
                                         "c": ABC["c"]})),
    "metadata-null": _file(_json({"__metadata__": None, **ABC})),
    "empty-name": _file(_json({"": ABC["a"], "b": ABC["b"], "c": ABC["c"]})),
    # refused by the reference
    "duplicate-name": _file(b'{"a":' + _json(ABC["a"]) + b',"a":' + _json(ABC["b"]) + b',"c":'
                            + _json(ABC["c"]) + b"}"),
    "escaped-duplicate": _file(b'{"a":' + _json(ABC["a"]) + b',"\\u0061":' + _json(ABC["b"])
                               + b',"c":' + _json(ABC["c"]) + b"}"),
    "lone-surrogate-name": _file(b'{"\\ud800":' + _json(ABC["a"]) + b',"b":' + _json(ABC["b"])
                                 + b',"c":' + _json(ABC["c"]) + b"}"),
    "lone-low-surrogate-metadata": _file(b'{"__metadata__":{"k":"\\udc00"},' + _json(ABC)[1:]),
    "trailing-nul": _file(_json(ABC) + b"\0"),
    "byte-order-mark": _file(b"\xef\xbb\xbf" + _json(ABC)),
    "overlap": _file(_json({"a": _entry("a"), "b": {**_entry("b"), "data_offsets": [8, 24]},
                            "c": ABC["c"]})),
    "gap": _file(_json({"a": _entry("a"), "c": ABC["c"]})),
    "trailing-data": _file(_json(ABC), DATA + b"\0" * 8),
    "metadata-not-strings": _file(_json({"__metadata__": {"k": 1}, **ABC})),
    "float-offset": _file(_json({"a": {**_entry("a"), "data_offsets": [0, 16.0]},
                                 "b": ABC["b"], "c": ABC["c"]})),
    "lowercase-dtype": _file(_json({"a": {**_entry("a"), "dtype": "u8"}, "b": ABC["b"],
                                    "c": ABC["c"]})),
}
# Hostile review A (2026-12-07), finding 4: the crate parses integers as usize; `-0` is JSON
# but no usize, so load_file refuses it where Python's json reads 0.
CASES["negative-zero-offset"] = _file(_json(ABC).replace(b'"data_offsets": [0,',
                                                         b'"data_offsets": [-0,', 1))
CASES["negative-zero-dimension"] = _file(_json({"z": {"dtype": "U8", "shape": [0],
                                                      "data_offsets": [0, 0]}, **ABC})
                                         .replace(b'"shape": [0]', b'"shape": [-0]', 1))
# A valid surrogate pair is one character: accepted by both.
CASES["surrogate-pair-name"] = _file(b'{"\\ud83d\\ude00":' + _json(ABC["a"]) + b',"b":'
                                     + _json(ABC["b"]) + b',"c":' + _json(ABC["c"]) + b"}")


@pytest.mark.parametrize("name", list(CASES))
def test_safetensors_files_load_as_load_file_or_are_refused_as_it_refuses(
        name: str, tmp_path: Path) -> None:
    f = tmp_path / f"{name}.safetensors"
    f.write_bytes(CASES[name])
    try:
        want = load_file(str(f))
    except Exception:  # the reference refuses: so must safeload
        with pytest.raises(SafeloadError):
            safeload.load(f)
        return
    got = safeload.load(f)
    assert list(got) == list(want), name
    for k, v in want.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), (name, k)


def test_the_reference_accepts_and_refuses_what_these_cases_assume(tmp_path: Path) -> None:
    # Pins the reference's rules, so a case above cannot silently stop testing anything.
    def accepts(name: str) -> bool:
        f = tmp_path / f"{name}.safetensors"
        f.write_bytes(CASES[name])
        try:
            load_file(str(f))
        except Exception:
            return False
        return True

    for name in ("leading-space", "unknown-tensor-field", "offset-order", "surrogate-pair-name"):
        assert accepts(name), name
    for name in ("lone-surrogate-name", "lone-low-surrogate-metadata", "duplicate-name",
                 "byte-order-mark", "trailing-nul"):
        assert not accepts(name), name


@pytest.mark.parametrize("shape", [[0, 2**40, 2**40, 2**40], [0, 2**63], [2**63, 0], [0, 2**62, 4]])
def test_shapes_whose_strides_overflow_are_malformed(shape: list[int], tmp_path: Path) -> None:
    # Hostile review 2026-12-07: a zero dimension makes the byte count 0, but torch cannot
    # make the tensor (its strides overflow int64): a bare RuntimeError/TypeError escaped.
    from safeload.errors import MalformedFileError

    header = json.dumps({"a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(MalformedFileError, match="overflows"):
        safeload.load(path)


@pytest.mark.parametrize("shape", [[2, 0, 2**62], [2**62, 0, 2], [0, 2**31, 2**31]])
def test_empty_shapes_whose_strides_fit_load_as_load_file(shape: list[int],
                                                          tmp_path: Path) -> None:
    # The first dimension is in no stride: load_file reads these (review 2026-12-07).
    header = json.dumps({"a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
    path = tmp_path / "empty.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    ref, got = load_file(str(path))["a"], safeload.load(path)["a"]
    assert got.shape == ref.shape and got.stride() == ref.stride() and got.dtype == ref.dtype


@pytest.mark.parametrize("make", [
    lambda: torch.arange(8, dtype=torch.uint8).view(torch.float4_e2m1fn_x2).reshape(2, 4),
    lambda: torch.ones(3).to(torch.float8_e8m0fnu),
    lambda: torch.randn(5).to(torch.float8_e4m3fn),
], ids=["F4", "F8_E8M0", "F8_E4M3"])
def test_sub_byte_and_float8_tensors_load_as_load_file(make: Any, tmp_path: Path) -> None:
    # safetensors writes F4 (two 4-bit floats a byte) with the header counting 4-bit elements
    # (shape [2, 8] for a torch [2, 4]): it was refused as an unknown dtype (review 2026-12-07).
    from safetensors.torch import save_file

    path = tmp_path / "small.safetensors"
    save_file({"a": make()}, str(path))
    ref = load_file(str(path))["a"]
    for kwargs in ({}, {"mmap": False}):
        got = safeload.load(path, **kwargs)["a"]
        assert got.dtype == ref.dtype and got.shape == ref.shape and got.stride() == ref.stride()
        assert torch.equal(got.view(torch.uint8), ref.view(torch.uint8))
    import safetensors

    with safeload.guard(), safetensors.safe_open(str(path), framework="pt") as f:  # served
        assert torch.equal(f.get_tensor("a").view(torch.uint8), ref.view(torch.uint8))


def test_f4_with_an_odd_last_dimension_is_malformed(tmp_path: Path) -> None:
    header = json.dumps({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    from safeload.errors import MalformedFileError

    with pytest.raises(MalformedFileError, match="whole bytes"):
        safeload.load(path)
