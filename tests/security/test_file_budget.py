"""The whole-file budget: work adds up across members, streams and memo references, and a file
past the budget is refused (naming the bound and the variable that raises it), never walked for
minutes. The budget is lowered here so that every variant stays small; the default-sized files
(the 79 KB zip that took 37 s) are timed in benchmarks/bench_budget.py."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from budget_variants import bombs, variants
from canary_lib import ZIP_MEMBER_LOADER, Fires, Reduce, Refused
from safeload_conversion.budget import DEFAULT_OPS, OPS_ENV, Budget, scope

import safeload
from safeload.errors import UnsafeCheckpointError
from safeload.inspection import inspect_bytes

_OPS = 20_000  # the lowered budget; variants are built at three times it


@pytest.fixture
def low_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OPS_ENV, str(_OPS))
    monkeypatch.setenv("SAFELOAD_MAX_DECOMPRESSED", str(1 << 20))


def _budget_refusal(ins: object) -> bool:
    return any(f.code == "resource-bound" for f in getattr(ins, "findings", []))


@pytest.mark.usefixtures("low_budget")
def test_costly_variants_with_a_payload_are_refused(tmp_path: Path, marker: Path, fires: Fires,
                                                     refused: Refused) -> None:
    payload = pickle.dumps(Reduce(open, str(marker), "w"), protocol=2)
    loaders = {"torch": "torch", "pickle": "pickle", "pickle_stream": "pickle_stream"}
    carriers = [v for v in variants(3 * _OPS, payload) if v.loader]  # memo blowups: cost only
    assert len(carriers) >= 5
    for v in carriers:
        path = tmp_path / f"{v.id}.pt"
        path.write_bytes(v.data)
        if v.loader == "zip-member":
            assert fires(path, ZIP_MEMBER_LOADER, args=(v.member,)), v.id
        else:
            assert v.loader in loaders, v.id
            assert fires(path, loaders[v.loader]), v.id
        exc, report = refused(path, UnsafeCheckpointError)
        assert any(f["code"] in ("resource-bound", "malformed") for f in report["findings"]), v.id


@pytest.mark.usefixtures("low_budget")
def test_every_costly_variant_is_refused_by_the_budget_or_a_cheap_rule() -> None:
    for v in variants(3 * _OPS):
        ins = inspect_bytes(v.data, name=v.id)
        assert ins.verdict == "unsafe", v.id
        if v.id != "memo-fake-pairs":  # refused by its rule, without copying the big list
            assert _budget_refusal(ins) or v.id == "stream-after-stop", (v.id, ins.findings)


@pytest.mark.usefixtures("low_budget")
def test_decompression_bombs_are_refused_by_the_file_budget() -> None:
    for v in bombs(400_000):  # four members of 400 KB: past the 1 MiB budget together
        ins = inspect_bytes(v.data, name=v.id)
        assert ins.verdict == "unsafe", v.id
        assert any("bound" in f.message for f in ins.findings), (v.id, ins.findings)


def test_the_refusal_names_the_file_and_how_to_raise_the_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big-but-benign.pkl"
    path.write_bytes(b"\x80\x02" + b"N0" * 15_000 + b"N.")  # 30,000 opcodes
    monkeypatch.setenv(OPS_ENV, str(_OPS))
    with pytest.raises(UnsafeCheckpointError, match=OPS_ENV) as info:
        safeload.load(path)
    assert path.name in str(info.value) and f"{_OPS:,}" in str(info.value)
    monkeypatch.setenv(OPS_ENV, str(5 * _OPS))  # the user raised it: the same file loads
    assert safeload.load(path) is None


def test_a_real_checkpoint_uses_a_small_part_of_the_budget(tmp_path: Path) -> None:
    # 2,000 tensors, nested, with an optimizer-like state: a large real data.pkl.
    sd = {f"layer{i}.weight": torch.zeros(4) for i in range(1000)}
    state = {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2)} for i in range(500)}
    opt = {"state": state, "param_groups": [{"lr": 1e-3, "params": list(range(500))}]}
    path = tmp_path / "ckpt.pt"
    torch.save({"model": sd, "optim": opt, "epoch": 3}, path)
    with scope(Budget()) as budget:
        ins = inspect_bytes(path.read_bytes())
    assert ins.verdict == "clean", ins.findings
    assert 0 < budget.ops_used < DEFAULT_OPS // 20, budget.ops_used
    assert budget.bytes_used == 0  # torch.save stores its members: nothing is inflated


def test_a_string_no_conversion_could_hold_is_refused_before_it_is_built() -> None:
    # review U: one ~1 GiB string (a 1 MB gzip) was built whole: 3.2 GB and 15 s to scan,
    # then 4 GB and a failure to load. The structure record holds at most 256 MiB of text.
    import gzip
    import struct

    from safeload_conversion.pickle_vm import MAX_STR_BYTES

    n = MAX_STR_BYTES + 1
    body = b"\x80\x04\x8d" + struct.pack("<Q", n) + b"a" * n + b"."
    ins = inspect_bytes(gzip.compress(body, compresslevel=1))
    assert ins.verdict == "unsafe"
    assert any("string of more than 256 MiB" in f.message for f in ins.findings)
