"""`.npy`/`.npz` arrays are built from the bytes the inspection parsed, never re-parsed.

Issue 9 ("re-parsing after the check"): arrays were returned by `np.load` of the raw buffer,
i.e. by Python's zipfile, so a zip that zipfile reads differently from the strict reader
returned arrays nobody inspected. Now `np.load` is never called on a load.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import safeload


def _arrays() -> dict[str, Any]:
    return {"a": np.arange(12, dtype="<f4").reshape(3, 4),
            "big": np.arange(6, dtype=">i8").reshape(2, 3),
            "fortran": np.asfortranarray(np.arange(6, dtype="<u2").reshape(2, 3)),
            "scalar": np.array(3.5), "empty": np.zeros((0, 2), dtype="<f8"),
            "flags": np.array([True, False])}


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_arrays_come_from_the_strict_reading_without_np_load(
        compressed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.npz"
    (np.savez_compressed if compressed else np.savez)(path, **_arrays())
    reference = dict(np.load(path))

    def forbidden(*a: Any, **k: Any) -> Any:
        raise AssertionError("np.load must not be called: it would parse the bytes again")

    monkeypatch.setattr(np, "load", forbidden)
    got = safeload.load(path)
    assert list(got) == list(reference)
    for key, arr in reference.items():
        assert torch.equal(got[key], torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="))))


def test_npy_array_comes_from_the_inspected_header(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(10, dtype=">f8").reshape(2, 5))
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError()))
    got = safeload.load(path)
    assert got.dtype == torch.float64 and got.shape == (2, 5)
    assert torch.equal(got, torch.arange(10, dtype=torch.float64).reshape(2, 5))


def test_npz_members_differing_in_case_load_as_np_load_reads_them(tmp_path: Path) -> None:
    # np.load reads an .npz through zipfile, whose lookup is exact: np.savez(x=..., X=...) is
    # two arrays, not a differential (only miniz, which cannot read an .npz, folds case).
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in (("x.npy", 1.0), ("X.npy", 2.0)):
            member = io.BytesIO()
            np.save(member, np.array([value]))
            zf.writestr(name, member.getvalue())
    path = tmp_path / "case.npz"
    path.write_bytes(buf.getvalue())
    got = safeload.load(path)
    with np.load(path) as ref:
        assert list(got) == ref.files == ["x", "X"]
        for k in ref.files:
            assert torch.equal(got[k], torch.from_numpy(ref[k]))


def test_npz_member_names_equal_after_a_trailing_slash_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        member = io.BytesIO()
        np.save(member, np.array([1.0]))
        zf.writestr("x.npy", member.getvalue())
        zf.writestr("x.npy/", b"")
    path = tmp_path / "slash.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(safeload.errors.SafeloadError, match="differential"):
        safeload.load(path)
