"""Errors a resume loop written for torch.load catches (issue 12: "Wrong errors").

Each case is first shown to raise one of the builtins under torch.load itself, so the test
pins the drop-in promise rather than safeload's own choice.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload.errors import (
    DirectoryPathError,
    EmptyFileError,
    MalformedFileError,
    RefusedError,
    SafeloadError,
    TruncatedFileError,
    UnsafeCheckpointError,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gpu_saved import cuda_saved  # noqa: E402

RESUME_CATCHES = (RuntimeError, EOFError, OSError)


def _empty(tmp: Path) -> Path:
    (tmp / "last.pt").write_bytes(b"")
    return tmp / "last.pt"


def _directory(tmp: Path) -> Path:
    (tmp / "last.pt").mkdir()
    return tmp / "last.pt"


def _truncated_safetensors(tmp: Path) -> Path:
    save_file({"w": torch.ones(64)}, str(tmp / "full.safetensors"))
    data = (tmp / "full.safetensors").read_bytes()
    (tmp / "last.safetensors").write_bytes(data[: len(data) // 2])
    return tmp / "last.safetensors"


def _cut(tmp: Path, keep: Callable[[int], int], **save_kwargs: object) -> Path:
    torch.save({"w": torch.ones(64), "b": torch.zeros(3)}, tmp / "full.pt",
               **save_kwargs)  # type: ignore[arg-type]
    data = (tmp / "full.pt").read_bytes()
    (tmp / "last.pt").write_bytes(data[: keep(len(data))])
    return tmp / "last.pt"


def _cut_npy(tmp: Path, keep: int) -> Path:
    import numpy as np

    np.save(tmp / "full.npy", np.arange(100.0))
    (tmp / "last.npy").write_bytes((tmp / "full.npy").read_bytes()[:keep])
    return tmp / "last.npy"


def _cut_pickle(tmp: Path, protocol: int) -> Path:
    import pickle

    data = pickle.dumps({"a": list(range(100)), "b": "x" * 50}, protocol=protocol)
    (tmp / "last.pkl").write_bytes(data[: len(data) // 2])
    return tmp / "last.pkl"


CASES: dict[str, tuple[Callable[[Path], Path], type[SafeloadError]]] = {
    "empty": (_empty, EmptyFileError),
    "directory": (_directory, DirectoryPathError),
    "truncated-safetensors": (_truncated_safetensors, MalformedFileError),
    "truncated-zip": (lambda t: _cut(t, lambda n: n // 2), TruncatedFileError),
    "truncated-zip-tail": (lambda t: _cut(t, lambda n: n - 10), TruncatedFileError),
    "truncated-legacy-storage": (lambda t: _cut(t, lambda n: n - 20,
                                                _use_new_zipfile_serialization=False),
                                 TruncatedFileError),
    "truncated-legacy-head": (lambda t: _cut(t, lambda n: 5,
                                             _use_new_zipfile_serialization=False),
                              TruncatedFileError),
    # Review L: cut inside the data pickle (torch: EOFError, "Ran out of input")
    "truncated-legacy-data": (lambda t: _cut(t, lambda n: 200,
                                             _use_new_zipfile_serialization=False),
                              TruncatedFileError),
    # Review L-5: the .npy errors did not name the file, and a cut one was no EOFError
    "truncated-npy-data": (lambda t: _cut_npy(t, 200), TruncatedFileError),
    "truncated-npy-header": (lambda t: _cut_npy(t, 60), TruncatedFileError),
    # Review O: protocol 4 and 5 (Python 3's default) end inside their FRAME
    "truncated-pickle-protocol-4": (lambda t: _cut_pickle(t, 4), TruncatedFileError),
    "truncated-pickle-protocol-5": (lambda t: _cut_pickle(t, 5), TruncatedFileError),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_torch_style_resume_loop_catches_every_corrupt_kind(kind: str, tmp_path: Path) -> None:
    make, expected = CASES[kind]
    path = make(tmp_path)
    with pytest.raises(RESUME_CATCHES):
        if path.suffix == ".pkl":
            import pickle
            try:
                with path.open("rb") as fh:
                    pickle.load(fh)
            except pickle.UnpicklingError as exc:  # "pickle data was truncated"
                raise EOFError(str(exc)) from exc
        elif path.suffix == ".npy":
            import numpy as np
            try:
                np.load(path)
            except ValueError as exc:  # numpy's "EOF: reading array data": no RuntimeError
                raise EOFError(str(exc)) from exc
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file
            try:
                load_file(str(path))
            except Exception as exc:  # safetensors' own error is not a builtin: torch.load's is
                raise RuntimeError(str(exc)) from exc
        else:
            torch.load(path, weights_only=True)

    resumed_from = None
    for candidate in (path, None):
        try:
            resumed_from = safeload.load(candidate) if candidate else {}
            break
        except RESUME_CATCHES as exc:
            assert isinstance(exc, expected), type(exc)
            assert isinstance(exc, RefusedError)
            assert path.name in str(exc), "the error names the user's file"
    assert resumed_from == {}


def test_a_truncated_file_is_also_an_eof_error(tmp_path: Path) -> None:
    path = _cut(tmp_path, lambda n: n // 2)
    with pytest.raises(TruncatedFileError) as info:
        safeload.load(path)
    assert isinstance(info.value, EOFError) and isinstance(info.value, RuntimeError)
    assert "damaged" in str(info.value) and "fetch or save it again" in (info.value.hint or "")


def test_a_truncated_pickle_that_reaches_an_import_stays_unsafe(tmp_path: Path) -> None:
    # damage is a file no loader runs code from: a cut-off payload is still a payload
    payload = pickle.dumps(print, protocol=2)[:-1]  # builtins.print, STOP cut off
    path = tmp_path / "last.pt"
    path.write_bytes(payload)
    with pytest.raises(UnsafeCheckpointError) as info:
        safeload.load(path)
    assert not isinstance(info.value, TruncatedFileError)


def test_an_empty_file_is_also_an_eof_and_an_unpickling_error(tmp_path: Path) -> None:
    with pytest.raises(EmptyFileError) as info:
        safeload.load(_empty(tmp_path))
    assert isinstance(info.value, EOFError)
    assert isinstance(info.value, pickle.UnpicklingError)
    assert "interrupted" in (info.value.hint or "")


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_device_or_fifo_is_an_os_error(tmp_path: Path) -> None:
    # Review O: an UnsafePathError only, which a torch-style resume loop does not catch.
    import os

    from safeload.errors import SpecialFilePathError

    fifo = tmp_path / "ckpt.pt"
    os.mkfifo(fifo)
    for path in (Path("/dev/null"), fifo):
        with pytest.raises(SpecialFilePathError, match=str(path)) as info:
            safeload.load(path)
        assert isinstance(info.value, OSError)


def test_a_directory_is_an_is_a_directory_error(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        safeload.load(_directory(tmp_path))


def test_a_mistyped_keyword_raises_type_error_as_torch_does(tmp_path: Path) -> None:
    f = tmp_path / "m.pt"
    torch.save({"a": torch.ones(2)}, f)
    with pytest.raises(TypeError, match="map_locaton"):
        torch.load(f, map_locaton="cpu")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="map_locaton"):
        safeload.load(f, map_locaton="cpu")


def test_the_unpicklers_own_keywords_stay_accepted(tmp_path: Path) -> None:
    f = tmp_path / "m.pt"
    torch.save({"a": torch.ones(2)}, f)
    with warnings.catch_warnings():  # the "not honoured" warning is once per process
        warnings.simplefilter("ignore")
        out = safeload.load(f, encoding="latin1")
    assert torch.equal(out["a"], torch.ones(2))


# ------------------------------------------------------------------------------------------
# map_location that cannot be honoured: what torch raises, naming the user's file


needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only torch")


@needs_cpu_only
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("ml", [None, "cuda", "cuda:1", torch.device("cuda"), {"cpu": "cuda"}],
                         ids=["saved-on-gpu", "str", "str-index", "device", "dict"])
def test_an_unavailable_device_raises_torchs_runtime_error_naming_the_file(
        fmt: str, ml: object, tmp_path: Path) -> None:
    from safeload.errors import MapLocationError

    kwargs = {} if fmt == "zip" else {"_use_new_zipfile_serialization": False}
    if ml is None:
        path = cuda_saved(tmp_path, **kwargs)
    else:
        path = tmp_path / "cpu-saved.pt"
        torch.save({"w": torch.arange(4.0)}, path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError) as ref:
        torch.load(path, map_location=ml)  # type: ignore[arg-type]
    with pytest.raises(MapLocationError) as got:
        safeload.load(path, map_location=ml)
    assert isinstance(got.value, RuntimeError)
    assert str(got.value).startswith(f"{path}: "), "names the user's file, not the store's"
    assert str(ref.value)[:60] in str(got.value), "torch's own advice"
    assert "safeload" not in str(got.value)
    # the way out torch's advice names works
    assert torch.equal(safeload.load(path, map_location="cpu")["w"], torch.arange(4.0))


def test_a_device_this_torch_has_not_raises_a_runtime_error_naming_the_file(
        tmp_path: Path) -> None:
    # Review L-4: an MPS-saved checkpoint on a build without MPS said "malformed structure"
    # of safeload's cache file and "convert the original checkpoint again".
    from safeload.errors import MapLocationError

    path = cuda_saved(tmp_path, location="mps")
    if torch.backends.mps.is_available():
        pytest.skip("this torch has MPS")
    with pytest.raises(RuntimeError):
        torch.load(path)
    with pytest.raises(MapLocationError, match="map_location") as got:
        safeload.load(path)
    assert str(got.value).startswith(f"{path}: ") and "mps" in str(got.value)
    assert torch.equal(safeload.load(path, map_location="cpu")["w"], torch.arange(4.0))


@pytest.mark.parametrize("ml", ["xpu", "hpu", "privateuseone", "gpu", "cuda:x", "",
                                {"cpu": "gpu"}])
def test_a_map_location_naming_no_usable_device_is_a_runtime_error(
        ml: object, tmp_path: Path) -> None:
    # Review O: "gpu", "cuda:x" or "" read as a malformed file (naming the cache file, which a
    # resume loop might delete), and xpu/hpu raised AssertionError / ModuleNotFoundError.
    from safeload.errors import MapLocationError

    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, path)
    if getattr(torch, str(ml), None) is not None and getattr(torch, str(ml)).is_available():
        pytest.skip(f"this torch has {ml}")
    with pytest.raises(RuntimeError):
        torch.load(path, map_location=ml)  # type: ignore[arg-type]
    with pytest.raises(MapLocationError) as got:
        safeload.load(path, map_location=ml)  # type: ignore[arg-type]
    assert str(got.value).startswith(f"{path}: ")


class _CallersOwnError(ValueError):  # a ValueError: what the rebuild once took for a bad file
    pass


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npy"])
def test_an_error_raised_by_a_map_location_callable_comes_through_unchanged(
        suffix: str, tmp_path: Path) -> None:
    # Review L-4: torch.load lets the caller's own exception through; safeload turned it into
    # MalformedFileError naming its cache file.
    import numpy as np
    from safetensors.torch import save_file

    path = tmp_path / f"m{suffix}"
    if suffix == ".pt":
        torch.save({"w": torch.ones(2)}, path)
    elif suffix == ".safetensors":
        save_file({"w": torch.ones(2)}, str(path))
    else:
        np.save(path, np.ones(2, dtype=np.float32))

    def refuse(storage: object, location: str) -> object:
        raise _CallersOwnError("no devices today")

    if suffix == ".pt":
        with pytest.raises(_CallersOwnError, match="no devices today"):
            torch.load(path, map_location=refuse)  # type: ignore[arg-type]
    with pytest.raises(_CallersOwnError, match="no devices today"):
        safeload.load(path, map_location=refuse)


def test_strings_with_lone_surrogates_load_as_torch_load_returns_them(tmp_path: Path) -> None:
    # Review L-4: a string holding a lone surrogate (valid in a pickle) made safeload's own
    # structure record unreadable ("malformed", naming the cache file).
    path = tmp_path / "s.pt"
    torch.save({"a\ud800": torch.ones(2), "text": "x\udc80y", "n": {"\udfff": [1]}}, path)
    ref = torch.load(path, weights_only=True)
    got = safeload.load(path)
    assert list(got) == list(ref) and got["text"] == ref["text"] and got["n"] == ref["n"]
    assert torch.equal(got["a\ud800"], ref["a\ud800"])


@pytest.mark.parametrize("ml", [3, 1.5, ["cpu"]], ids=["int", "float", "list"])
def test_a_map_location_of_a_bad_type_is_a_type_error(ml: object, tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"a": torch.ones(2)}, path)
    with pytest.raises(TypeError):
        torch.load(path, map_location=ml)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=type(ml).__name__):
        safeload.load(path, map_location=ml)


@pytest.mark.parametrize("compress", ["zlib", "gzip", "bz2", "lzma"])
def test_a_cut_compressed_joblib_file_is_truncated_as_joblib_would_say(
        compress: str, tmp_path: Path) -> None:
    # Review L (L-3): an interrupted joblib.dump was "refused, do not load this file"; joblib
    # itself fails (EOFError, ValueError, struct.error, zlib.error: by where the cut falls);
    # safeload raises a TruncatedFileError, an EOFError and a ValueError.
    import joblib

    full = tmp_path / "full.joblib"
    joblib.dump({"a": list(range(2000))}, full, compress=(compress, 3))
    cut = tmp_path / "model.joblib"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017 - joblib's own error varies (EOF, struct, zlib)
        joblib.load(cut)
    with pytest.raises(TruncatedFileError, match="model.joblib") as info:
        safeload.load(cut)
    assert isinstance(info.value, (EOFError, ValueError))


def test_a_checkpoint_safeload_cannot_rebuild_raises_a_runtime_error(tmp_path: Path) -> None:
    # Review L (L-2): the ConversionError was no builtin a torch.load caller catches. A tuple
    # that contains itself (through a list) loads under torch.load(weights_only=False) only.
    path = tmp_path / "cycle.pt"
    inner: list[object] = []
    cycle = (inner, torch.ones(1))
    inner.append(cycle)
    torch.save({"s": cycle}, path)
    with pytest.raises(RuntimeError, match="cycle.pt"):
        safeload.load(path)
