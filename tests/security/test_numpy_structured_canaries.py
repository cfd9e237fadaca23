"""Structured, 2.0/3.0 and compressed `.npy`/`.npz` now load: object fields stay refused.

Each payload only creates the marker file; the control shows it fires under
`np.load(allow_pickle=True)`, then safeload must refuse the file with the marker absent.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
from canary_lib import Fires, Reduce, Refused

from safeload.errors import UnsafeCheckpointError


def _with_object(marker: Path, dtype: Any, field: str) -> Any:
    import numpy as np

    arr = np.zeros(1, dtype=dtype)
    target = arr[field]["o"] if field == "n" else arr[field]
    target.flat[0] = Reduce(open, str(marker), "w")
    return arr


@pytest.mark.parametrize(("kind", "version"), [
    (k, v) for k in ("nested_object_field", "object_subarray_field", "titled_object_field")
    for v in ((1, 0), (2, 0), (3, 0)) if k != "titled_object_field" or v == (3, 0)])
def test_object_fields_in_structured_npy(kind: str, version: tuple[int, int], tmp_path: Path,
                                         marker: Path, fires: Fires, refused: Refused) -> None:
    from numpy.lib import format as npformat

    dtype, field = {
        "nested_object_field": ([("w", "<f4"), ("n", [("x", "<i4"), ("o", "O")])], "n"),
        "object_subarray_field": ([("w", "<f4"), ("o", "O", (2,))], "o"),
        "titled_object_field": ([("w", "<f4"), (("größe", "o"), "O")], "o"),
    }[kind]
    arr = _with_object(marker, dtype, field)
    path = tmp_path / "weights.npy"
    with open(path, "wb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        npformat.write_array(f, arr, version=version, allow_pickle=True)
    assert fires(path, "numpy")
    refused(path, UnsafeCheckpointError, match=r"object array")


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_structured_member_beside_object_member(compressed: bool, tmp_path: Path,
                                                    marker: Path, fires: Fires,
                                                    refused: Refused) -> None:
    import numpy as np

    good = np.zeros(3, dtype=[("t", "<M8[s]"), ("v", ">f8", (2,))])
    evil = np.array([Reduce(open, str(marker), "w")], dtype=object)
    path = tmp_path / "weights.npz"
    (np.savez_compressed if compressed else np.savez)(path, good=good, evil=evil)
    assert fires(path, "numpy")
    refused(path, UnsafeCheckpointError, match=r"io\.open")


@pytest.mark.parametrize("descr", ["'|O8'", "[('a', '<i4'), ('b', '|O8')]",
                                   "[('a', [('b', [('c', '|O')])])]"])
def test_handcrafted_object_spellings(descr: str, tmp_path: Path, marker: Path, fires: Fires,
                                      refused: Refused) -> None:
    # No numpy in writing it: an object descriptor (another spelling, or deeper), then the
    # pickle np.load(allow_pickle=True) runs.
    header = ("{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }").encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    path = tmp_path / "weights.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
                     + pickle.dumps([Reduce(open, str(marker), "w")], protocol=2))
    assert fires(path, "numpy")
    # '|O8' (Python 2's spelling) is an object array whose pickle is inspected: its payload
    # is what is refused. Object fields are refused as such.
    refused(path, UnsafeCheckpointError, match=r"object array|io\.open")
