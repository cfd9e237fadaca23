"""Object `.npy` files of plain data now load (issue 12): what stays refused.

np.save pickles an object array whole after the header, and np.load(allow_pickle=True) runs
that pickle: every element, the dtype's state and anything after the array's BUILD is code to
it. Each payload only creates the marker; each control shows np.load firing it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from canary_lib import Fires, Op, Refused, call, g, lit, opener, p4

from safeload.errors import UnsafeCheckpointError

_OBJECT_STATE = (3, "|", None, None, None, -1, -1, 63)  # what numpy writes for dtype('O')


def _object_array(elements: list[object], *, dtype_state: object = _OBJECT_STATE,
                  after_build: bytes = b"") -> Op:
    recon = call(g("numpy._core.multiarray", "_reconstruct"), g("numpy", "ndarray"), (0,), b"b")
    dtype = Op(call(g("numpy", "dtype"), "O8", False, True).b + lit(dtype_state) + b"b")
    state = (1, (len(elements),), dtype, False, elements)
    return Op(recon.b + lit(state) + b"b" + after_build)


def _npy(body: bytes, n: int, shape: str = "") -> bytes:
    shape = shape or f"({n},)"
    header = f"{{'descr': '|O', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body


def _variants(marker: Path) -> dict[str, bytes]:
    return {
        # the payload as an element, and nested inside a plain element
        "element": _npy(p4(_object_array(["a", opener(marker)])), 2),
        "nested_element": _npy(p4(_object_array([{"k": [opener(marker)]}])), 1),
        # inside the object dtype's own state
        "dtype_state": _npy(p4(_object_array(
            ["a"], dtype_state=(3, "|", None, None, None, -1, -1, opener(marker)))), 1),
        # after the array is built: np.load's pickle.load still runs it (the root is a tuple)
        "after_build": _npy(p4(Op(_object_array(["a"]).b + lit(opener(marker)) + b"\x86")), 1),
        # a bare pickle instead of an array: np.load returns whatever it unpickles
        "bare_pickle": _npy(p4([opener(marker)]), 1),
    }


@pytest.mark.parametrize("variant", ["element", "nested_element", "dtype_state",
                                     "after_build", "bare_pickle"])
def test_object_npy_payloads_stay_refused(variant: str, tmp_path: Path, marker: Path,
                                          fires: Fires, refused: Refused) -> None:
    path = tmp_path / "weights.npy"
    path.write_bytes(_variants(marker)[variant])
    assert fires(path, "numpy"), variant
    refused(path, UnsafeCheckpointError, match=r"builtins\.open|io\.open")


def test_object_array_list_grown_after_build_loads_what_numpy_built(tmp_path: Path) -> None:
    # numpy copies the element list at BUILD: an APPEND to the same list afterwards (through
    # the memo) reaches the list, never the array. safeload must return the same.
    import numpy as np

    import safeload

    arr = _object_array(["a", "b"]).b
    # Memoize the element list when it is built, then append to it after the BUILD.
    arr = arr.replace(b"](", b"]\x94(", 1)
    root = Op(arr + b"h\x00" + lit("late") + b"a\x86")  # BINGET 0: the list, then APPEND
    path = tmp_path / "grown.npy"
    path.write_bytes(_npy(p4(root), 2))
    ref = np.load(path, allow_pickle=True)
    assert isinstance(ref, tuple) and list(ref[0]) == ["a", "b"] and ref[1] == ["a", "b", "late"]
    got = safeload.load(path)
    assert type(got) is tuple and type(got[0]) is np.ndarray
    assert list(got[0]) == ["a", "b"] and got[1] == ["a", "b", "late"]


@pytest.mark.parametrize("descr", [b"'|O'", b"'\\x4f'"], ids=["plain", "escaped"])
def test_unpadded_object_npy_is_unsafe_not_malformed(descr: bytes, tmp_path: Path, marker: Path,
                                                     fires: Fires, refused: Refused) -> None:
    # Hostile review 2026-12-07: np.load reads headers np.save would pad, so an unpadded
    # object header still runs its pickle; "malformed" (fetch again) would understate it.
    # An escape spells the O too: literal_eval reads '\x4f' as 'O'.
    header = b"{'descr': " + descr + b", 'fortran_order': False, 'shape': (1,), }\n"
    path = tmp_path / "weights.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
                     + p4([opener(marker)]))
    assert fires(path, "numpy")
    refused(path, UnsafeCheckpointError, match="padded")


def test_object_arrays_sharing_one_list_are_charged_per_element(tmp_path: Path) -> None:
    # Hostile review 2026-12-07: numpy copies the element list into each array, and so did
    # the machine: one memoised 100k-element list built into 60 arrays is 6M copies from ~100 KB
    # of opcodes, which the budget did not count (a 1 MB file took scan past 6 GiB).
    import safeload

    n, k = 100_000, 60
    body = b"](" + b"]\x94(" + b"N" * n + b"e"  # memo 0: the list (also kept as outer[0])
    body += b"J" + struct.pack("<i", n) + b"\x85\x940"  # memo 1: (n,)
    body += call(g("numpy", "dtype"), "O8", False, True).b + lit(_OBJECT_STATE) + b"b\x940"
    body += g("numpy._core.multiarray", "_reconstruct").b + b"\x940"  # memo 3
    body += lit((g("numpy", "ndarray"), (0,), b"b")) + b"\x940"  # memo 4
    body += b"h\x03h\x04R(K\x01h\x01h\x02\x89h\x00tb" * k + b"e"
    path = tmp_path / "shared.npy"
    path.write_bytes(_npy(p4(Op(body)), 1))
    with pytest.raises(UnsafeCheckpointError, match="bound"):
        safeload.load(path)


@pytest.mark.parametrize("spelling", ["'<i8\\x00'", "[('a\\x00', '<i8')]", "'|O\\x00'"])
def test_nul_in_a_header_string_is_a_refusal_not_a_crash(spelling: str, tmp_path: Path) -> None:
    # Hostile review 2026-12-07: a NUL inside a quoted header string reached ast.literal_eval,
    # whose SyntaxError escaped from load and stopped a directory scan.
    import safeload

    header = f"{{'descr': {spelling}, 'fortran_order': False, 'shape': (1,), }}".encode()
    header = header.replace(b"\\x00", b"\x00")
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    path = tmp_path / "nul.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
                     + b"\0" * 8)
    with pytest.raises(safeload.errors.SafeloadError):
        safeload.load(path)


@pytest.mark.parametrize("state", [
    (3, ">", None, None, None, -1, -1, 63),      # numpy writes '|' for objects
    (3, "|", None, None, None, -1, -1, Op(b"G" + struct.pack(">d", 63.0))),  # a float flag
], ids=["byte_order", "float_flags"])
def test_object_dtype_states_numpy_never_writes_are_refused(state: tuple[object, ...],
                                                            tmp_path: Path) -> None:
    import safeload

    path = tmp_path / "odd.npy"
    path.write_bytes(_npy(p4(_object_array(["a"], dtype_state=state)), 1))
    with pytest.raises(UnsafeCheckpointError):
        safeload.load(path)


def test_nested_and_empty_fortran_object_arrays_load_as_np_load(tmp_path: Path) -> None:
    # Hostile review 2026-12-07: nesting was counted twice on rebuild (150 levels scanned clean
    # and failed to load), and an empty array with the fortran flag came back with C strides.
    import numpy as np

    import safeload

    nested: Any = np.array(["leaf"], dtype=object)
    for _ in range(150):
        outer = np.empty(1, dtype=object)
        outer[0] = nested
        nested = outer
    path = tmp_path / "nested.npy"
    np.save(path, nested, allow_pickle=True)
    got, ref = safeload.load(path), np.load(path, allow_pickle=True)
    for _ in range(150):
        got, ref = got[0], ref[0]
    assert list(got) == list(ref) == ["leaf"]

    recon = call(g("numpy._core.multiarray", "_reconstruct"), g("numpy", "ndarray"), (0,), b"b")
    dtype = Op(call(g("numpy", "dtype"), "O8", False, True).b + lit(_OBJECT_STATE) + b"b")
    empty = Op(recon.b + lit((1, (3, 0, 2), dtype, True, [])) + b"b")
    path = tmp_path / "empty_f.npy"
    path.write_bytes(_npy(p4(empty), 0, "(3, 0, 2)"))
    ref = np.load(path, allow_pickle=True)
    got = safeload.load(path)
    assert got.shape == ref.shape and got.strides == ref.strides == (8, 24, 24)


@pytest.mark.parametrize("padded", [True, False], ids=["aligned-header", "short-header"])
def test_a_torch_storage_that_is_an_object_npy_is_refused(
        padded: bool, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # Hostile review A (2026-12-07), finding 2: np.load opens a torch zip as an .npz and
    # unpickles every member that begins with the .npy magic, storages included.
    import torch

    body = _npy(p4(_object_array(["a", opener(marker)])), 2)
    if not padded:
        body = body[:10] + body[10:].replace(b" " * 8, b"", 1)
        body = body[:8] + (int.from_bytes(body[8:10], "little") - 8).to_bytes(2, "little") \
            + body[10:]
    path = tmp_path / "model.pt"
    torch.save({"w": torch.frombuffer(bytearray(body), dtype=torch.uint8)}, path)
    assert fires(path, "numpy")
    refused(path, UnsafeCheckpointError, match="np.load reads this zip as an .npz")


def test_a_torch_storage_that_is_a_numeric_npy_still_loads(tmp_path: Path) -> None:
    import io

    import numpy as np
    import torch

    import safeload

    raw = io.BytesIO()
    np.save(raw, np.arange(3.0))
    path = tmp_path / "model.pt"
    t = torch.frombuffer(bytearray(raw.getvalue()), dtype=torch.uint8)
    torch.save({"w": t}, path)
    assert torch.equal(safeload.load(path)["w"], t)


@pytest.mark.parametrize("descr", ["object", "object_", "|O"])
def test_a_torch_storage_that_is_an_unpadded_object_npy_is_refused(
        descr: str, tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # Hostile review D (2026-12-07): an unpadded header spelling the object dtype as
    # 'object' was "malformed only" to safeload, and numpy reads it (padding is not checked).
    import torch

    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}\n".encode()
    body = (b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
            + p4(_object_array(["a", opener(marker)])))
    path = tmp_path / "model.pt"
    torch.save({"w": torch.frombuffer(bytearray(body), dtype=torch.uint8)}, path)
    assert fires(path, "numpy")
    refused(path, UnsafeCheckpointError, match="np.load reads this zip as an .npz")


def test_an_object_npy_behind_empty_deflate_blocks_is_refused(
        tmp_path: Path, marker: Path, fires: Fires, refused: Refused) -> None:
    # Review M (M-2): the .npy sniff inflated only the first 64 compressed bytes; 13 empty
    # stored blocks (5 bytes each, inflating to nothing) put the magic beyond them, in a
    # record torch never reads (`.format_version`): clean to safeload, a pickle to np.load.
    import zlib

    import torch
    from canary_lib import ZEntry, build_zip, torch_members

    src = tmp_path / "src.pt"
    torch.save({"w": torch.arange(4.0)}, src)
    body = _npy(p4(_object_array(["a", opener(marker)])), 2)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    padded = b"\x00\x00\x00\xff\xff" * 13 + c.compress(body) + c.flush()
    entries = [ZEntry(n, body, method=8, deflated=padded) if n.endswith("/.format_version")
               else ZEntry(n, d) for n, d in torch_members(src)]
    path = tmp_path / "model.pt"
    path.write_bytes(build_zip(entries))
    assert fires(path, "numpy")
    refused(path, UnsafeCheckpointError, match="np.load reads this zip as an .npz")
