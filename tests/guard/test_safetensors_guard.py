"""The guard's safetensors entry points: verified by the pipeline, recorded, served from the
held bytes with safetensors' own interface (compared against the real reader)."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch
from safetensors.torch import save, save_file

import safeload
from safeload import guard as guard_module
from safeload.errors import DigestMismatchError, MalformedFileError, UnsafeCheckpointError
from safeload.provenance import read_ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
from _hubcache import make_repo  # noqa: E402

TENSORS = {"a": torch.arange(24.0).reshape(2, 3, 4), "b": torch.arange(5),
           "c": torch.zeros(0, 3), "h": torch.arange(6, dtype=torch.float16).reshape(3, 2)}
PATCHED = [(safetensors, "safe_open"), (safetensors.torch, "safe_open"),
           (safetensors.torch, "load_file"), (safetensors.torch, "load"),
           (safetensors.numpy, "safe_open"), (safetensors.numpy, "load_file"),
           (safetensors.numpy, "load")]


@pytest.fixture(autouse=True)
def always_uninstalled() -> Iterator[None]:
    yield
    while guard_module.installed():
        guard_module.uninstall()


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    p = tmp_path / "w.safetensors"
    save_file(TENSORS, str(p), metadata={"format": "pt", "k": "v"})
    return p


def _outcome(fn: Callable[[Any], Any], arg: Any) -> Any:
    try:
        value = fn(arg)
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return ("raises", type(exc).__name__)
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype, tuple(value.shape), value.flatten().tolist())
    return ("value", value)


def _indices(shape: tuple[int, ...], seed: int) -> Iterator[Any]:
    """Slicing variants: ints (negative, out of range), slices (negative bounds, steps
    including zero and negative), Ellipsis, too many indices, the empty tuple."""
    rng = random.Random(seed)
    yield from [(), (Ellipsis,), (slice(None, None, -1),), (slice(None, None, 0),),
                tuple(0 for _ in range(len(shape) + 1)), (Ellipsis, -1)]
    for _ in range(40):
        items: list[Any] = []
        for d in shape[: rng.randint(1, len(shape))]:
            kind = rng.choice("isse")
            if kind == "i":
                items.append(rng.randint(-d - 1, d))
            elif kind == "s":
                items.append(slice(rng.choice([None, *range(-d - 1, d + 2)]),
                                   rng.choice([None, *range(-d - 1, d + 2)]),
                                   rng.choice([None, 1, 2, 3])))
            else:
                items.append(Ellipsis if Ellipsis not in items else slice(None))
        yield tuple(items)


def test_served_object_answers_as_the_real_safe_open(weights: Path) -> None:
    real = safetensors.safe_open(str(weights), framework="pt")
    with safeload.guard():
        ours = safetensors.safe_open(str(weights), framework="pt")
    assert type(ours).__module__.startswith("safeload")
    assert ours.keys() == real.keys() and ours.offset_keys() == real.offset_keys()
    assert ours.metadata() == real.metadata()
    names = real.keys()
    for name in [*names, "missing"]:
        assert _outcome(ours.get_tensor, name) == _outcome(real.get_tensor, name)
    assert list(ours.get_tensors()) == list(real.get_tensors())
    for seed, name in enumerate(names):
        rs, os_ = real.get_slice(name), ours.get_slice(name)
        assert (os_.get_shape(), os_.get_dtype()) == (rs.get_shape(), rs.get_dtype())
        for index in _indices(tuple(rs.get_shape()) or (1,), seed):
            assert _outcome(os_.__getitem__, index) == _outcome(rs.__getitem__, index), (
                name, index)


def test_served_tensors_own_their_memory_and_numpy_framework_gives_arrays(
        weights: Path) -> None:
    with safeload.guard():
        with safetensors.safe_open(str(weights), framework="pt") as f:
            t = f.get_tensor("a")
        arrays = safetensors.numpy.load_file(str(weights))
    t.add_(1)  # writable, and not the mapping (which is gone)
    assert torch.equal(t, TENSORS["a"] + 1)
    assert isinstance(arrays["a"], np.ndarray) and np.array_equal(arrays["a"],
                                                                  TENSORS["a"].numpy())


@pytest.mark.parametrize("call", ["framework", "device", "backend", "closed", "missing"])
def test_errors_are_safetensors_errors(weights: Path, call: str) -> None:
    with safeload.guard(), pytest.raises(safetensors.SafetensorError):
        if call == "framework":
            safetensors.safe_open(str(weights), framework="tf")
        elif call == "device":
            safetensors.safe_open(str(weights), framework="pt", device="bogus")
        elif call == "backend":
            safetensors.safe_open(str(weights), framework="pt", backend="bogus")
        elif call == "closed":
            with safetensors.safe_open(str(weights), framework="pt") as f:
                pass
            f.keys()
        else:
            safetensors.safe_open(str(weights), framework="pt").get_slice("zz")


def test_every_entry_point_gives_what_safetensors_gives(weights: Path) -> None:
    data = weights.read_bytes()
    ref_t, ref_n = safetensors.torch.load_file(str(weights)), safetensors.numpy.load(data)
    with safeload.guard():
        got = [safetensors.torch.load_file(str(weights)), safetensors.torch.load(data)]
        got_np = [safetensors.numpy.load_file(str(weights)), safetensors.numpy.load(data)]
    assert list(got[0]) == list(ref_t)  # load_file: offset order; load(bytes): hash order
    for g in got:
        assert g.keys() == ref_t.keys() and all(torch.equal(g[k], ref_t[k]) for k in ref_t)
    for n in got_np:
        assert n.keys() == ref_n.keys() and all(np.array_equal(n[k], ref_n[k]) for k in ref_n)


def test_each_guarded_open_is_recorded_in_the_ledger(weights: Path) -> None:
    with safeload.guard():
        safetensors.torch.load_file(str(weights))
        safetensors.safe_open(str(weights), framework="np")
    records = [r for r in read_ledger().records if r.entry is not None]
    assert sum(r.count for r in records) == 2  # a repeat of the same content is coalesced
    assert all(r.entry.files[0].path == str(weights) and r.entry.action == "load"
               for r in records if r.entry is not None)


@pytest.mark.parametrize("entry", ["safe_open", "torch.load_file", "numpy.load_file"])
def test_tampered_hub_blob_is_refused_by_every_entry_point(tmp_path: Path, entry: str) -> None:
    snap = make_repo(tmp_path, "org/tampered", {"model.safetensors": save(TENSORS)})
    path = snap / "model.safetensors"
    path.resolve().write_bytes(save({"a": torch.full((2,), 9.0)}))
    fn = {"safe_open": lambda p: safetensors.safe_open(p, framework="pt"),
          "torch.load_file": safetensors.torch.load_file,
          "numpy.load_file": safetensors.numpy.load_file}[entry]
    with safeload.guard(), pytest.raises(DigestMismatchError, match="blob name"):
        fn(str(path))


def test_a_file_swapped_by_path_after_the_check_still_serves_the_verified_bytes(
        weights: Path) -> None:
    with safeload.guard():
        f = safetensors.safe_open(str(weights), framework="pt")
        other = weights.with_name("zeros.safetensors")
        save_file({k: torch.zeros_like(v) for k, v in TENSORS.items()}, str(other))
        os.replace(other, weights)
        assert torch.equal(f.get_tensor("a"), TENSORS["a"])
        assert torch.equal(f.get_slice("a")[1], TENSORS["a"][1])


def test_a_file_written_in_place_after_the_check_is_refused(weights: Path) -> None:
    with safeload.guard():
        f = safetensors.safe_open(str(weights), framework="pt")
        with open(weights, "r+b") as w:
            w.seek(-4, os.SEEK_END)
            w.write(b"\xff\xff\xff\xff")
        with pytest.raises(MalformedFileError, match="modified"):
            f.get_tensor("a")


def _hostile(marker: Path) -> list[bytes]:
    """Pickle twins that would create `marker`: protocol 0, 2 and 4, and a torch zip."""
    code = f"open({str(marker)!r}, 'w')"
    out = [f"cbuiltins\neval\n(V{code}\ntR.".encode(),
           b"\x80\x02cbuiltins\neval\nX" + len(code).to_bytes(4, "little") + code.encode()
           + b"\x85R."]

    class Canary:
        def __reduce__(self) -> tuple[Any, ...]:
            return (eval, (code,))

    import io
    import pickle

    out.append(pickle.dumps(Canary(), protocol=4))
    buf = io.BytesIO()
    torch.save({"w": Canary()}, buf)
    out.append(buf.getvalue())
    return out


@pytest.mark.parametrize(("variant", "entry"), list(itertools.product(range(4), range(3))))
def test_hostile_pickle_twin_never_fires_under_any_safetensors_entry_point(
        tmp_path: Path, variant: int, entry: int) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.safetensors"  # a pickle under a safetensors name
    path.write_bytes(_hostile(marker)[variant])
    fn = [lambda p: safetensors.safe_open(p, framework="pt"), safetensors.torch.load_file,
          lambda p: safetensors.torch.load(Path(p).read_bytes())][entry]
    with safeload.guard(), pytest.raises(UnsafeCheckpointError):
        fn(str(path))
    assert not marker.exists()


def test_control_the_hostile_twins_fire_under_the_real_unpickler(tmp_path: Path) -> None:
    for i, data in enumerate(_hostile(tmp_path / "marker")):
        (tmp_path / f"t{i}").write_bytes(data)
    code = textwrap.dedent(f"""
        import pickle, torch
        for i in range(4):
            p = {str(tmp_path)!r} + f"/t{{i}}"
            (torch.load(p, weights_only=False) if i == 3 else pickle.load(open(p, "rb")))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert (tmp_path / "marker").exists()


def test_install_is_counted_and_uninstall_restores_every_original() -> None:
    originals = [getattr(m, n) for m, n in PATCHED]
    safeload.install()
    safeload.install()
    assert all(getattr(getattr(m, n), "__safeload_guard__", False) for m, n in PATCHED)
    safeload.uninstall()
    assert guard_module.installed()
    safeload.uninstall()
    assert [getattr(m, n) for m, n in PATCHED] == originals
    with pytest.raises(RuntimeError):
        safeload.uninstall()


def test_a_binding_made_while_guarded_falls_through_after_uninstall(weights: Path) -> None:
    with safeload.guard():
        from safetensors.torch import load_file as bound
    assert getattr(bound, "__safeload_guard__", False)
    assert torch.equal(bound(str(weights))["a"], TENSORS["a"])  # the original, unguarded
    assert not read_ledger().records


def _trust(*args: str) -> None:
    from safeload._cli import main

    assert main(["trust", *args, "--yes"] if args[0].startswith("revoke") else
                ["trust", *args]) == 0


def test_bytes_a_library_read_itself_get_the_file_rules_or_are_refused(weights: Path) -> None:
    # Hostile review 2026-12-07: transformers' and diffusers' `disable_mmap=True` (automatic on
    # hf-mount) read the file themselves and pass only bytes, which skipped pins, namespace
    # bindings and revision locks. Bytes of no named file are refused while such a rule exists,
    # unless the bytes are a pinned file's.
    genuine = weights.read_bytes()
    with safeload.guard():
        assert set(safetensors.torch.load(genuine)) == set(TENSORS)  # no rule: loaded
    _trust("pin", str(weights))
    save_file({"a": torch.full((2,), 666.0)}, str(weights))  # replaced after the pin
    with safeload.guard():
        assert set(safetensors.torch.load(genuine)) == set(TENSORS)  # the pinned bytes
        with pytest.raises(safeload.errors.SignatureError, match="did not name"):
            safetensors.torch.load(weights.read_bytes())
        with pytest.raises(DigestMismatchError):
            safetensors.torch.load_file(str(weights))  # by path: the pin itself refuses


def test_transformers_disable_mmap_keeps_the_pin(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=16,
                                  max_position_embeddings=16)
    out = tmp_path / "bert"
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(out)
    _trust("pin", str(out / "model.safetensors"))
    torch.manual_seed(1)
    transformers.BertModel(cfg).save_pretrained(out)  # other weights under the pinned name
    with safeload.guard():
        for kwargs in ({}, {"disable_mmap": True}):
            with pytest.raises((safeload.errors.SignatureError, DigestMismatchError)):
                transformers.BertModel.from_pretrained(out, **kwargs)


def test_names_bound_to_safetensors_loaders_before_install_are_guarded(weights: Path,
                                                                        tmp_path: Path) -> None:
    # Hostile review 2026-12-07: accelerate (imported by transformers) binds `safe_open` by
    # name; a mixed cpu/disk device map read a revoked file through the original.
    modeling = pytest.importorskip("accelerate.utils.modeling")
    import hashlib

    _trust("revoke-digest", hashlib.sha256(weights.read_bytes()).hexdigest())
    with safeload.guard():
        assert getattr(modeling.safe_open, "__safeload_guard__", False)
        with pytest.raises(safeload.errors.RevokedError):
            modeling.load_state_dict(str(weights), device_map={"a": "cpu", "b": "disk"})
    assert not getattr(modeling.safe_open, "__safeload_guard__", False)  # restored
