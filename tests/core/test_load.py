"""`safeload.load` as a drop-in for `torch.load`."""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import safeload
from safeload.errors import UnsafeCheckpointError, UnsupportedFormatError


def _equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.reshape(-1).contiguous().view(torch.uint8),
                                b.reshape(-1).contiguous().view(torch.uint8)))
    if isinstance(a, dict):
        return (isinstance(b, dict) and type(a) is type(b) and list(a) == list(b)
                and all(_equal(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))  # type: ignore
    return a == b


def test_safetensors_bit_identical_to_load_file(tmp_path: Path) -> None:
    f = tmp_path / "m.safetensors"
    save_file({"a": torch.randn(3, 4), "b": torch.arange(5)}, str(f))
    ours, ref = safeload.load(f), load_file(str(f))
    assert _equal(dict(sorted(ours.items())), dict(sorted(ref.items())))


def test_format_is_decided_by_bytes_not_name(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"  # a safetensors file under a pickle's name
    save_file({"a": torch.ones(2)}, str(f))
    assert torch.equal(safeload.load(f)["a"], torch.ones(2))


def test_torch_zip_state_dict_round_trips(tmp_path: Path) -> None:
    f = tmp_path / "m.pt"
    sd = torch.nn.Linear(3, 2).state_dict()
    torch.save(sd, f)
    out = safeload.load(f)
    assert _equal(out, torch.load(f, weights_only=True))
    assert out._metadata == sd._metadata  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["path", "str", "fileobj", "bytesio"])
def test_accepts_what_torch_load_accepts(tmp_path: Path, how: str) -> None:
    f = tmp_path / "m.pt"
    torch.save({"w": torch.arange(4.0)}, f)
    if how == "path":
        out = safeload.load(f)
    elif how == "str":
        out = safeload.load(str(f))
    elif how == "fileobj":
        with open(f, "rb") as fh:
            out = safeload.load(fh)
    else:
        out = safeload.load(io.BytesIO(f.read_bytes()))
    assert torch.equal(out["w"], torch.arange(4.0))


@pytest.mark.parametrize("loc", ["cpu", torch.device("cpu"), {"cpu": "cpu"},
                                 lambda storage, location: storage])
def test_map_location_forms(tmp_path: Path, loc: object) -> None:
    f = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, f)
    assert safeload.load(f, map_location=loc)["w"].device.type == "cpu"
    assert safeload.load(f, loc)["w"].device.type == "cpu"


def test_unsafe_arguments_are_not_honoured(tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    class Canary:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    f = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "x": Canary()}, f)
    with warnings.catch_warnings(record=True), pytest.raises(UnsafeCheckpointError):
        safeload.load(f, weights_only=False, pickle_module=pickle)
    assert not marker.exists()


def test_unsafe_error_is_an_unpickling_error(tmp_path: Path) -> None:
    f = tmp_path / "evil.pkl"
    f.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"posix\.system|os\.system"):
        safeload.load(f)


def test_unrecognised_bytes_are_refused_saying_what_was_found(tmp_path: Path) -> None:
    f = tmp_path / "m.pt"
    f.write_text("# just text\n")
    with pytest.raises(UnsupportedFormatError, match="not a checkpoint format"):
        safeload.load(f)


def test_compressed_pickle_loads_as_joblib_reads_it(tmp_path: Path) -> None:
    # joblib.load decompresses a gzip'd pickle; torch.load cannot read it at all.
    import gzip
    import io

    f = tmp_path / "m.pkl.gz"
    f.write_bytes(gzip.compress(pickle.dumps({"a": 1})))
    assert safeload.load(f) == {"a": 1}
    # A compressed legacy torch file is still recognised, not loaded (torch.load fails on it).
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
    f.write_bytes(gzip.compress(buf.getvalue()))
    with pytest.raises(UnsupportedFormatError, match="gzip"):
        safeload.load(f)


def test_torchscript_is_refused_as_code_bearing(tmp_path: Path) -> None:
    f = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(f))
    with pytest.raises(UnsafeCheckpointError, match="TorchScript") as info:
        safeload.load(f)
    assert "state_dict" in info.value.diagnostics()


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "m.pt"
    torch.save(torch.nn.Linear(2, 2), f)
    with pytest.raises(UnsafeCheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        safeload.load(f)


def test_numpy_files_load_without_pickle(tmp_path: Path) -> None:
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    out = safeload.load(tmp_path / "a.npy")
    assert torch.equal(out, torch.arange(6, dtype=torch.float32).reshape(2, 3))
    np.savez(tmp_path / "b.npz", x=np.ones(2))
    assert torch.equal(safeload.load(tmp_path / "b.npz")["x"], torch.ones(2, dtype=torch.float64))


def test_fifo_is_refused(tmp_path: Path) -> None:
    import os

    from safeload.errors import UnsafePathError

    os.mkfifo(tmp_path / "p.pt")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        safeload.load(tmp_path / "p.pt")


def test_joblib_arrays_load_as_joblib_reads_them(tmp_path: Path) -> None:
    # The parser differential is closed by reading the raw bytes as joblib does and requiring
    # that no other unpickler reads them as opcodes: the hostile variants (payload in the
    # padding, unpadded array bytes, a frame that goes on) are refused in
    # tests/security/test_joblib_array_canaries.py.
    joblib = pytest.importorskip("joblib")
    import numpy as np

    joblib.dump({"a": np.arange(5, dtype=np.float32)}, tmp_path / "m.joblib")
    got = safeload.load(tmp_path / "m.joblib")
    ref = joblib.load(tmp_path / "m.joblib")
    assert list(got) == ["a"] and type(got["a"]) is np.ndarray
    assert got["a"].dtype == ref["a"].dtype and np.array_equal(got["a"], ref["a"])


def test_joblib_plain_data_loads(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    joblib.dump({"n": [1, "x"], "t": (2.5, None)}, tmp_path / "d.joblib")
    assert safeload.load(tmp_path / "d.joblib") == {"n": [1, "x"], "t": (2.5, None)}


def test_joblib_object_array_of_plain_data_loads(tmp_path: Path) -> None:
    # Once refused; what stays refused: tests/security/test_joblib_object_array_canaries.py
    joblib = pytest.importorskip("joblib")
    import numpy as np

    joblib.dump([np.array([{"k": 1}, None], dtype=object)], tmp_path / "o.joblib")
    (out,) = safeload.load(tmp_path / "o.joblib")
    assert out.dtype == object and out.tolist() == [{"k": 1}, None]


def test_numpy_text_arrays_round_trip(tmp_path: Path) -> None:
    import numpy as np

    f = tmp_path / "labels.pt"
    torch.save({"labels": np.array(["cat", "dog"]), "codes": np.array([b"a", b"bc"])}, f)
    out = safeload.load(f)
    assert out["labels"].tolist() == ["cat", "dog"] and out["labels"].dtype.kind == "U"
    assert out["codes"].tolist() == [b"a", b"bc"]


def test_zip_of_non_model_files_is_skipped(tmp_path: Path) -> None:
    import zipfile

    from safeload.inspection import inspect_bytes

    f = tmp_path / "bundle.zip"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("notes.txt", "# nothing to load")
    assert inspect_bytes(f.read_bytes()).verdict == "skipped"


def test_counter_round_trips(tmp_path: Path) -> None:
    import collections

    f = tmp_path / "c.pt"
    torch.save({"vocab": collections.Counter("abracadabra"), "w": torch.ones(1)}, f)
    out = safeload.load(f)
    assert type(out["vocab"]) is collections.Counter
    assert out["vocab"] == collections.Counter("abracadabra")
