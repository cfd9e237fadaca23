"""Data-only rules for values real training checkpoints carry beside their tensors.

omegaconf containers (Lightning, NeMo and Hydra hyper-parameters), `collections.defaultdict`
with a builtin factory, builtin types and `typing.Any` as values. Each round-trips as
`torch.load(weights_only=False)` returns it (compared in-process: we wrote these files), and the
near misses of each rule (a user class where a builtin type must be, state the rule does not
know) are refused.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import safeload
from safeload.inspection import inspect_bytes

omegaconf = pytest.importorskip("omegaconf")
OmegaConf = omegaconf.OmegaConf


def _save_and_load(obj: Any, path: Path, **kwargs: Any) -> tuple[Any, Any]:
    torch.save(obj, path, **kwargs)
    ins = inspect_bytes(path.read_bytes(), name=path.name)
    assert ins.verdict == "clean", [f.message for f in ins.findings]
    return torch.load(path, weights_only=False), safeload.load(path)


def _lightning_like() -> dict[str, Any]:
    hp = OmegaConf.create({
        "encoder": {"n_chan_layers": [40, 30, 30], "dropout": 0.1, "name": "conv"},
        "lr": 1e-3, "ref": "${lr}", "missing": "???", "nothing": None, "flag": True,
        "list_of_dicts": [{"a": 1}, {"b": [2, 3]}], "big": 2**40, "raw": b"\x00\x01",
    })
    sub = OmegaConf.create([1, "two", None])
    OmegaConf.set_readonly(sub, True)
    return {"state_dict": {"w": torch.randn(3, 2)}, "hyper_parameters": hp, "readonly": sub,
            "epoch": 7}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_omegaconf_hyper_parameters_round_trip(legacy: bool, tmp_path: Path) -> None:
    ref, got = _save_and_load(_lightning_like(), tmp_path / "ckpt.ckpt",
                              _use_new_zipfile_serialization=not legacy)
    assert type(got["hyper_parameters"]) is type(ref["hyper_parameters"])  # DictConfig
    assert got["hyper_parameters"] == ref["hyper_parameters"]
    assert repr(got["hyper_parameters"]) == repr(ref["hyper_parameters"])
    assert got["hyper_parameters"].ref == 1e-3  # interpolation still resolves
    assert OmegaConf.is_missing(got["hyper_parameters"], "missing")
    assert type(got["readonly"]) is type(ref["readonly"])  # ListConfig
    assert list(got["readonly"]) == list(ref["readonly"])
    assert OmegaConf.is_readonly(got["readonly"])
    assert torch.equal(got["state_dict"]["w"], ref["state_dict"]["w"])


def test_omegaconf_resolvers_in_a_checkpoint_never_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # review S-5: `${oc.env:...}` copied an environment secret into the returned config and an
    # application's `eval` resolver (a Hydra idiom) ran the checkpoint's text on access
    marker = tmp_path / "CANARY-FIRED"
    monkeypatch.setenv("SAFELOAD_TEST_SECRET", "s3cr3t")
    hp = OmegaConf.create({"lr": 0.1, "ref": "${lr}", "secret": "${oc.env:SAFELOAD_TEST_SECRET}",
                           "code": "${canary_eval:" + repr(str(marker)) + "}",
                           "nested": "${oc.env:${ref}}", "escaped": "\\${oc.env:X}",
                           "mixed": "${lr} and ${canary_eval:x}"})
    path = tmp_path / "ckpt.ckpt"
    torch.save({"hyper_parameters": hp}, path)
    OmegaConf.register_new_resolver("canary_eval", lambda p: open(p, "w").close(), replace=True)
    try:
        from safeload._internal import structure

        monkeypatch.setattr(structure, "_warned_resolvers", False)
        got = safeload.load(path)["hyper_parameters"]
        assert OmegaConf.to_container(got, resolve=True) == {
            "lr": 0.1, "ref": 0.1, "secret": "${oc.env:SAFELOAD_TEST_SECRET}",
            "code": "${canary_eval:" + repr(str(marker)) + "}", "nested": "${oc.env:${ref}}",
            "escaped": "${oc.env:X}", "mixed": "${lr} and ${canary_eval:x}"}
        assert not marker.exists()
        assert "resolvers" in caplog.text
        ref = torch.load(path, weights_only=False)["hyper_parameters"]
        assert ref.secret == "s3cr3t"  # control: the real loader's config resolves them
        _ = ref.code
        assert marker.exists()
    finally:
        OmegaConf.clear_resolver("canary_eval")


def test_omegaconf_without_omegaconf_installed_gives_plain_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ckpt.ckpt"
    torch.save(_lightning_like(), path)
    from safeload._internal import structure

    monkeypatch.setitem(sys.modules, "omegaconf", None)  # import omegaconf -> ImportError
    monkeypatch.setattr(structure, "_warned_omegaconf", False)
    got = safeload.load(path)
    hp = got["hyper_parameters"]
    assert type(hp) is dict and hp["encoder"]["n_chan_layers"] == [40, 30, 30]
    assert hp["ref"] == "${lr}" and hp["missing"] == "???"
    assert got["readonly"] == [1, "two", None]
    assert "omegaconf is not installed" in caplog.text


@pytest.mark.parametrize("factory", [int, list, dict, set, float, str, None])
def test_defaultdict_with_a_builtin_factory_round_trips(factory: Any, tmp_path: Path) -> None:
    dd: collections.defaultdict[Any, Any] = collections.defaultdict(factory)
    dd["a"] = factory() if factory else 1
    dd[3] = "x"
    ref, got = _save_and_load({"vocab": dd}, tmp_path / "dd.pt")
    assert type(got["vocab"]) is collections.defaultdict
    assert got["vocab"].default_factory is ref["vocab"].default_factory
    assert list(got["vocab"].items()) == list(ref["vocab"].items())


def test_quantization_schemes_as_values_round_trip(tmp_path: Path) -> None:
    # Review O: `scan` passed them, the conversion said "is not a value".
    obj = {"q": torch.per_tensor_affine, "l": [torch.per_channel_affine,
                                               torch.per_channel_affine_float_qparams]}
    path = tmp_path / "qs.pt"
    torch.save(obj, path)
    assert safeload.load(path) == torch.load(path, weights_only=True) == obj


def test_type_values_round_trip(tmp_path: Path) -> None:
    obj = {"types": [int, float, str, bool, list, dict, tuple], "any": typing.Any}
    ref, got = _save_and_load(obj, tmp_path / "types.pt")
    assert got == ref


def test_python2_long_and_unicode_names_resolve(tmp_path: Path) -> None:
    # Protocol 2 writes `__builtin__ long`? No: CPython 3 writes builtins names, so build the
    # Python-2 spelling by hand, as old checkpoints have it.
    stream = b"\x80\x02c__builtin__\nlong\nq\x00c__builtin__\nunicode\nq\x01\x86q\x02."
    path = tmp_path / "py2.pkl"
    path.write_bytes(stream)
    assert pickle.loads(stream) == (int, str)
    assert safeload.load(path) == (int, str)


@dataclass
class _UserConfig:
    lr: float = 0.1


def _refused(obj: Any, tmp_path: Path) -> list[str]:
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    ins = inspect_bytes(path.read_bytes(), name=path.name)
    assert ins.verdict == "unsafe"
    with pytest.raises(safeload.errors.UnsafeCheckpointError):
        safeload.load(path)
    return [f.message for f in ins.findings]


def test_structured_config_needs_its_class_and_is_refused(tmp_path: Path) -> None:
    findings = _refused({"cfg": OmegaConf.structured(_UserConfig)}, tmp_path)
    assert any("_UserConfig" in m for m in findings)


def test_defaultdict_with_a_user_factory_is_refused(tmp_path: Path) -> None:
    findings = _refused({"dd": collections.defaultdict(_UserConfig)}, tmp_path)
    assert any("_UserConfig" in m for m in findings)


@pytest.mark.parametrize("key", ["__class__", "_val", "__dict__", "_parent_"])
def test_omegaconf_state_outside_the_rule_is_refused(key: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = OmegaConf.create({"a": 1})
    plain = tmp_path / "plain.pt"
    torch.save({"cfg": cfg}, plain)
    assert inspect_bytes(plain.read_bytes()).verdict == "clean"  # the control
    getstate = type(cfg).__getstate__
    monkeypatch.setattr(type(cfg), "__getstate__",
                        lambda self: {**getstate(self), key: None})
    findings = _refused({"cfg": cfg}, tmp_path)
    assert any("omegaconf" in m and key in m for m in findings), findings


def test_omegaconf_container_is_never_called(tmp_path: Path) -> None:
    # REDUCE (a call) on an omegaconf class is outside the rule: only NEWOBJ + BUILD is.
    stream = b"\x80\x02comegaconf.dictconfig\nDictConfig\n}\x85R."
    ins = inspect_bytes(stream, name="x.pkl")
    assert ins.verdict == "unsafe"
    buf = io.BytesIO(stream)
    with pytest.raises(safeload.errors.UnsafeCheckpointError):
        safeload.load(buf)


# ------------------------------------------------------------------------------------------
# Tensor kinds and tensor attributes


@pytest.mark.parametrize("make", [
    lambda: torch.randn(3, dtype=torch.cfloat).to(torch.chalf),
    lambda: torch.arange(4, dtype=torch.uint8).view(torch.float4_e2m1fn_x2),
], ids=["complex32", "float4_e2m1fn_x2"])
def test_dtypes_without_a_safetensors_type_round_trip_as_raw_bytes(make: Any,
                                                                  tmp_path: Path) -> None:
    ref, got = _save_and_load({"x": make()}, tmp_path / "d.pt")
    assert got["x"].dtype == ref["x"].dtype and got["x"].shape == ref["x"].shape
    assert torch.equal(got["x"].view(torch.uint8), ref["x"].view(torch.uint8))


def test_saved_buffer_and_tensor_attributes_round_trip(tmp_path: Path) -> None:
    tagged = torch.randn(2)
    tagged.note = "calibrated"  # type: ignore[attr-defined]
    param = torch.nn.Parameter(torch.randn(3))
    param.tags = ["a", 1]  # type: ignore[attr-defined]
    obj = {"buf": torch.nn.Buffer(torch.randn(2)), "tagged": tagged, "param": param}
    ref, got = _save_and_load(obj, tmp_path / "attrs.pt")
    for key in obj:
        assert type(got[key]) is type(ref[key])
        assert got[key].__dict__ == ref[key].__dict__, key
        assert torch.equal(got[key], ref[key])
    assert got["param"].requires_grad


@pytest.mark.parametrize("name", ["data", "grad", "requires_grad", "__class__", "real"])
def test_tensor_attributes_that_are_tensor_descriptors_are_refused(
        name: str, tmp_path: Path) -> None:
    t = torch.randn(2)
    t.zzzz = 1.0  # type: ignore[attr-defined]  # a placeholder name, rewritten below
    path = tmp_path / "a.pt"
    torch.save({"x": t}, path)
    blob = path.read_bytes()
    assert blob.count(b"zzzz") == 1
    # Rewrite the attribute's name inside the stored (uncompressed) pickle, keeping the zip
    # valid: a same-length name keeps offsets; CRCs are recomputed by re-zipping.
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                enc = name.encode()
                data = data.replace(b"X\x04\x00\x00\x00zzzz",
                                    b"X" + len(enc).to_bytes(4, "little") + enc)
            dst.writestr(info, data)
    path.write_bytes(out.getvalue())
    ins = inspect_bytes(path.read_bytes(), name=path.name)
    assert ins.verdict == "unsafe", name
    assert any("attribute" in f.message for f in ins.findings)


def _sparse_cases() -> dict[str, torch.Tensor]:
    dense = torch.tensor([[0.0, 1.5, 0.0, 2.0], [3.0, 0.0, 0.0, 0.0],
                          [0.0, 0.0, 4.0, 0.0], [0.0, 5.0, 0.0, 6.0]])
    return {
        "coo": dense.to_sparse(),
        "coo-uncoalesced": torch.sparse_coo_tensor(torch.tensor([[0, 0], [1, 1]]),
                                                   torch.tensor([1.0, 2.0]), (2, 2)),
        "csr": dense.to_sparse_csr(), "csc": dense.to_sparse_csc(),
        "bsr": dense.to_sparse_bsr((2, 2)), "bsc": dense.to_sparse_bsc((2, 2)),
    }


@pytest.mark.parametrize("kind", list(_sparse_cases()))
def test_sparse_tensors_round_trip(kind: str, tmp_path: Path) -> None:
    ref, got = _save_and_load({"x": _sparse_cases()[kind]}, tmp_path / "s.pt")
    assert got["x"].layout == ref["x"].layout
    assert torch.equal(got["x"].to_dense(), ref["x"].to_dense())
    if ref["x"].layout == torch.sparse_coo:
        assert got["x"].is_coalesced() == ref["x"].is_coalesced()


def test_sparse_indices_out_of_range_are_refused(tmp_path: Path) -> None:
    # Index 7 in a 2x2 tensor: built without the invariant check, as a hostile writer would.
    bad = torch.sparse_coo_tensor(torch.tensor([[0, 1], [0, 7]]), torch.tensor([1.0, 2.0]),
                                  (2, 2), check_invariants=False)
    path = tmp_path / "bad.pt"
    torch.save({"x": bad}, path)
    # torch 2.13's loader skips the check unless invariant checks are enabled globally (it
    # warns that memory errors may follow); safeload always checks.
    with pytest.raises(safeload.errors.SafeloadError, match="index|bound|invariant"):
        safeload.load(path)


@pytest.mark.parametrize("make", [
    lambda: torch.quantize_per_tensor(torch.randn(4, 3), 0.1, 3, torch.quint8),
    lambda: torch.quantize_per_tensor(torch.randn(5), 0.05, -2, torch.qint8),
    lambda: torch.quantize_per_tensor(torch.randn(5), 0.5, 0, torch.qint32),
    lambda: torch.quantize_per_channel(torch.randn(2, 3), torch.tensor([0.1, 0.2],
                                       dtype=torch.double), torch.tensor([0, 1]), 0,
                                       torch.qint8),
], ids=["per-tensor-quint8", "per-tensor-qint8", "per-tensor-qint32", "per-channel-qint8"])
def test_quantized_tensors_round_trip(make: Any, tmp_path: Path) -> None:
    ref, got = _save_and_load({"x": make()}, tmp_path / "q.pt")
    r, g = ref["x"], got["x"]
    assert g.dtype == r.dtype and g.qscheme() == r.qscheme() and g.shape == r.shape
    assert torch.equal(g.int_repr(), r.int_repr())
    if r.qscheme() == torch.per_tensor_affine:
        assert (g.q_scale(), g.q_zero_point()) == (r.q_scale(), r.q_zero_point())
    else:
        assert torch.equal(g.q_per_channel_scales(), r.q_per_channel_scales())
        assert torch.equal(g.q_per_channel_zero_points(), r.q_per_channel_zero_points())
        assert g.q_per_channel_axis() == r.q_per_channel_axis()


@pytest.mark.parametrize("dtype", [torch.quint4x2, torch.quint2x4], ids=str)
@pytest.mark.parametrize("shape", [(5,), (3, 5), (0,), (1,)], ids=str)
def test_packed_quantized_tensors_round_trip_with_their_storage(
        dtype: torch.dtype, shape: tuple[int, ...], tmp_path: Path) -> None:
    # Review O-3: refused ("reaches past the end of its storage": sizes count 4- or 2-bit
    # values, the storage counts bytes). torch.load(weights_only=True) reads them.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(torch.randn(shape), 0.25, 2, dtype)
    ref, got = _save_and_load({"x": q, "w": torch.ones(2)}, tmp_path / "q.pt")
    r, g = ref["x"], got["x"]
    assert (g.dtype, g.shape, g.stride()) == (r.dtype, r.shape, r.stride())
    assert (g.q_scale(), g.q_zero_point()) == (r.q_scale(), r.q_zero_point())
    assert bytes(g.untyped_storage()) == bytes(r.untyped_storage())
    assert torch.equal(g.dequantize(), r.dequantize())


def test_packed_quantized_view_past_its_storage_is_refused(tmp_path: Path) -> None:
    import pickletools
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(torch.randn(4), 0.25, 2, torch.quint4x2)
    path = tmp_path / "q.pt"
    torch.save({"x": q}, path)
    # Rewrite the saved size (4,) as (40,): 20 bytes of values over a 3-byte storage.
    import zipfile

    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        members = {n: z.read(n) for n in names}
    pkl = next(n for n in names if n.endswith("data.pkl"))
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(members[pkl])]
    assert ("BININT1", 4) in ops
    members[pkl] = members[pkl].replace(b"K\x04\x85", b"K(\x85", 1)
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n, members[n])
    with pytest.raises(safeload.errors.SafeloadError, match="past the end of its storage"):
        safeload.load(path)


def test_lightning_hparams_type_class_value_round_trips(tmp_path: Path) -> None:
    # Lightning saves `hparams_type = type(model.hparams)`: the omegaconf container class as a
    # value (never called). It scanned clean, then the converter refused it (ConversionError).
    hp = OmegaConf.create({"lr": 1e-3})
    obj = {"state_dict": {"w": torch.ones(2)}, "hyper_parameters": hp,
           "hparams_type": type(hp), "list_type": type(OmegaConf.create([1]))}
    ref, got = _save_and_load(obj, tmp_path / "l.ckpt")
    assert got["hparams_type"] is ref["hparams_type"] is omegaconf.DictConfig
    assert got["list_type"] is omegaconf.ListConfig
    assert type(got["hyper_parameters"]) is omegaconf.DictConfig


@pytest.mark.parametrize("protocol", [1, 2, 4])
def test_torch_version_values_round_trip(protocol: int, tmp_path: Path) -> None:
    # Fidelity run G: `{"torch_version": torch.__version__}` is a common checkpoint field;
    # its TorchVersion (a str subclass) was refused. Protocol 1 goes through copyreg.
    from torch.torch_version import TorchVersion

    obj = {"torch_version": torch.__version__, "by_version": {torch.__version__: 1},
           "w": torch.ones(2)}
    path = tmp_path / "v.pt"
    if protocol == 2:
        ref, got = _save_and_load(obj, path)
    else:
        path.write_bytes(pickle.dumps({k: v for k, v in obj.items() if k != "w"},
                                      protocol=protocol))
        ref, got = pickle.loads(path.read_bytes()), safeload.load(path)
    assert got["torch_version"] == ref["torch_version"]
    assert type(got["torch_version"]) is TorchVersion and got["torch_version"] >= "1.0"
    assert list(got["by_version"]) == list(ref["by_version"])


def test_a_torch_version_of_anything_but_one_string_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.pkl"
    path.write_bytes(b"\x80\x02ctorch.torch_version\nTorchVersion\nK\x01\x85\x81.")
    assert inspect_bytes(path.read_bytes()).verdict == "unsafe"


def test_reference_cycles_through_lists_dicts_and_namespaces_round_trip(tmp_path: Path) -> None:
    # Fidelity run G: `d["self"] = d` loads with torch.load (weights_only too); safeload's
    # converter refused every cycle ("reference cycle at 'self'") while scan called it clean.
    import argparse

    d: dict[str, Any] = {"w": torch.ones(2)}
    d["self"] = d
    items: list[Any] = [1]
    items.append(items)
    ns = argparse.Namespace(a=1)
    ns.me = ns
    d["l"], d["ns"] = items, ns
    ref, got = _save_and_load(d, tmp_path / "cycle.pt")
    assert ref["self"] is ref and got["self"] is got
    assert got["l"][1] is got["l"] and got["ns"].me is got["ns"]
    assert torch.equal(got["w"], ref["w"]) and list(got) == list(ref)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_ranges_slices_decimals_and_fractions_round_trip(protocol: int, tmp_path: Path) -> None:
    # Fidelity run G: numpy's own object-array test data holds range (xrange in Python 2) and
    # slice values; Decimal and Fraction are plain numbers too. Each was refused.
    import decimal
    import fractions

    obj = {"r": range(2, 10, 3), "r1": range(5), "s": slice(1, None, 2),
           "d": [decimal.Decimal("1.50"), decimal.Decimal("-Infinity"), decimal.Decimal("1E+3")],
           "f": [fractions.Fraction(1, 3), fractions.Fraction(-7)],
           "keys": {range(3): 1, decimal.Decimal("2.5"): 2, fractions.Fraction(1, 2): 3}}
    path = tmp_path / "values.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = safeload.load(path)
    assert got == pickle.loads(path.read_bytes())
    assert str(got["d"][0]) == "1.50" and type(got["s"]) is slice


@pytest.mark.parametrize("body", [
    b"cbuiltins\nrange\n(I1\nI5\nI0\ntR.",  # a zero step
    b"cbuiltins\nslice\n(S'a'\ntR.",  # a string bound
    b"cdecimal\nDecimal\n(S'1.5; import os'\ntR.",  # not a number's text
    b"cfractions\nFraction\n(S'1/0'\ntR.",  # a zero denominator
])
def test_number_values_outside_their_rule_are_refused(body: bytes) -> None:
    assert inspect_bytes(body).verdict == "unsafe"


_NAN = b"G\x7f\xf8\x00\x00\x00\x00\x00\x00"  # BINFLOAT nan


@pytest.mark.parametrize("body", [
    b"}q\x00(" + _NAN + b"q\x01K\x01h\x01K\x02u.",  # {nan: 1} then [the same nan] = 2
    b"c__builtin__\nset\n](" + _NAN + b"q\x01h\x01e\x85R.",  # set([nan, the same nan])
    b"}(" + _NAN + b"q\x01h\x01\x86K\x01h\x01h\x01\x86K\x02u.",  # (nan, nan) as a key twice
], ids=["dict-key", "set", "tuple-key"])
def test_one_memoised_nan_is_one_key_as_every_unpickler_reads_it(body: bytes,
                                                                   tmp_path: Path) -> None:
    # Review N: a NaN is equal to nothing, so only identity makes it one key or item; each
    # use was rebuilt as a new float, and safeload returned more entries than torch.load.
    data = b"\x80\x02" + body
    path = tmp_path / "nan.pkl"
    path.write_bytes(data)
    ref = pickle.loads(data)
    got = safeload.load(path)
    assert type(got) is type(ref) and len(got) == len(ref) == 1
    if isinstance(ref, dict):
        assert list(ref.values()) == list(got.values())


def test_one_memoised_nan_key_over_tensors_is_one_entry(tmp_path: Path) -> None:
    # Review N: the same, in a checkpoint (a legacy file: its data pickle is plain bytes)
    path = tmp_path / "nan.pt"
    torch.save({"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0, 4.0])}, path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    a = data.index(b"X\x01\x00\x00\x00aq")
    memo = data[a + 7]
    b = data.index(b"X\x01\x00\x00\x00bq")
    data = data[:b] + b"h" + bytes([memo]) + data[b + 8:]  # the key of "b": the same NaN
    data = data[:a] + _NAN + data[a + 6:]  # the key "a": a NaN
    path.write_bytes(data)
    ref = torch.load(path, weights_only=True)
    got = safeload.load(path)
    assert len(ref) == 1 and len(got) == 1
    assert torch.equal(next(iter(got.values())), next(iter(ref.values())))


def test_every_dtype_and_layout_torch_accepts_comes_back_as_a_value(tmp_path: Path) -> None:
    # review V: sub-byte and bits dtypes (torch.uint4, ...) were refused; torch.strided was
    # refused and a sparse layout value passed scan, then failed the conversion
    from torch._weights_only_unpickler import _get_allowed_globals

    dtypes = sorted((v for v in _get_allowed_globals().values() if isinstance(v, torch.dtype)),
                    key=str)
    layouts = [torch.strided, torch.sparse_coo, torch.sparse_csr, torch.sparse_csc,
               torch.sparse_bsr, torch.sparse_bsc, torch.jagged]
    path = tmp_path / "values.pt"
    torch.save({"dtypes": dtypes, "layouts": layouts, "one": torch.uint4}, path)
    ref = torch.load(path, weights_only=True)
    ins = inspect_bytes(path.read_bytes(), name=path.name)
    assert ins.verdict == "clean", [f.message for f in ins.findings]
    got = safeload.load(path)
    assert got == ref and got["layouts"][0] is torch.strided


def test_an_int_of_more_than_4300_digits_round_trips(tmp_path: Path) -> None:
    # review U: str() of such an int raised in the converter ("worker failed, exit code 1")
    big = 7 ** 6000  # 5071 digits (within the machine's bound on integer literals)
    path = tmp_path / "big.pt"
    torch.save({"n": big, "neg": -big, "w": torch.ones(1)}, path)
    got = safeload.load(path)
    assert got["n"] == big and got["neg"] == -big


def test_a_shared_string_referenced_without_end_is_refused_with_the_reason(
        tmp_path: Path) -> None:
    # review U: 200,000 references to one 64 KiB string (a 465 KB pickle) took 4 GB and a
    # minute in the converter, then failed with no reason
    import pickle

    from safeload.errors import ConversionError

    s64 = "x" * (64 << 10)
    path = tmp_path / "refs.pkl"
    path.write_bytes(pickle.dumps([s64] * 5000, protocol=4))  # 320 MiB once expanded
    with pytest.raises(ConversionError, match="MiB of strings"):
        safeload.load(path)

