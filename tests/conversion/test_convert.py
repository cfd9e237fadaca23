"""Sandboxed conversion: faithful output, sharded directories, the cache, failure leaves nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import safeload
from safeload._cli import main
from safeload._internal import convert_worker, paths
from safeload.convert import convert_directory, convert_file
from safeload.errors import ConversionError, UnsafeCheckpointError


def _store_entries() -> list[str]:
    store = paths.converted_dir()
    return sorted(os.listdir(store)) if store.exists() else []


def test_converted_file_is_standard_safetensors_and_the_source_restores_structure(
        tmp_path: Path) -> None:
    src = tmp_path / "ck.pt"
    emb = torch.randn(4, 3)
    ck = {"model": {"emb.weight": emb, "head.weight": emb}, "step": 7}
    torch.save(ck, src)
    out = convert_file(src, tmp_path / "ck.safetensors")
    plain = load_file(out.output)  # the reference reader accepts it
    assert set(plain) == {"model.emb.weight"}  # the tied weight is written once
    # A file outside the converted store loads as every safetensors reader shows it ...
    as_file = safeload.load(out.output)
    assert set(as_file) == set(plain) and torch.equal(as_file["model.emb.weight"], emb)
    # ... and the original checkpoint, served from the store, keeps its structure.
    restored = safeload.load(src)
    assert restored["step"] == 7
    assert torch.equal(restored["model"]["head.weight"], emb)
    assert restored["model"]["head.weight"] is restored["model"]["emb.weight"]


def test_second_load_is_a_cache_hit_without_a_new_child(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "m.pt"
    torch.save({"w": torch.arange(10.0)}, src)
    assert torch.equal(safeload.load(src)["w"], torch.arange(10.0))
    assert len(_store_entries()) == 1

    def no_child(*a: object, **k: object) -> None:
        raise AssertionError("a cache hit must not start a child")

    monkeypatch.setattr("safeload._internal.sandbox.run_worker", no_child)
    monkeypatch.setenv("SAFELOAD_CONVERT_WORKER", "0")  # one-shot children only
    assert torch.equal(safeload.load(src)["w"], torch.arange(10.0))


def test_sharded_directory_gets_a_recomputed_index(tmp_path: Path) -> None:
    model = tmp_path / "repo"
    model.mkdir()
    a, b = torch.randn(8, 8), torch.randn(16)
    torch.save({"a": a}, model / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": b}, model / "pytorch_model-00002-of-00002.bin")
    (model / "pytorch_model.bin.index.json").write_text(json.dumps({
        "metadata": {"total_size": 1},
        "weight_map": {"a": "pytorch_model-00001-of-00002.bin",
                       "b": "pytorch_model-00002-of-00002.bin"}}))
    done, refused = convert_directory(model, model)
    assert not refused and len(done) == 2
    index = json.loads((model / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == {"a": "model-00001-of-00002.safetensors",
                                   "b": "model-00002-of-00002.safetensors"}
    assert index["metadata"]["total_size"] == a.numel() * 4 + b.numel() * 4
    assert torch.equal(load_file(str(model / "model-00001-of-00002.safetensors"))["a"], a)


@pytest.mark.parametrize("shard", ["/etc/passwd", "../outside.bin", "sub/../../x.bin"])
def test_weight_map_escaping_the_directory_is_refused(tmp_path: Path, shard: str) -> None:
    model = tmp_path / "repo"
    model.mkdir()
    (model / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": shard}}))
    with pytest.raises(UnsafeCheckpointError, match="unsafe shard"):
        convert_directory(model, model)


def test_convert_cli_json_and_refusal_exit_code(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    assert main(["convert", str(good), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["converted"][0]["tensors"] == 1
    assert (tmp_path / "good.safetensors").exists()
    assert main(["convert", str(good)]) == 2  # exists, no --overwrite: could not decide
    capsys.readouterr()
    assert main(["convert", str(good), "--overwrite"]) == 0
    text, err = capsys.readouterr()
    assert f"converted {good} -> {tmp_path / 'good.safetensors'}  (1 tensors" in text
    assert "1 converted, 0 refused" in text and "converted" not in err  # results: stdout
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R.")
    assert main(["convert", str(evil)]) == 1
    assert not (tmp_path / "evil.safetensors").exists()


def test_interrupted_conversion_leaves_no_output_and_no_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeload._internal import sandbox

    src = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(64, 1024)}, src)  # 256 KiB of tensor data
    real = sandbox.Limits.for_input

    def tiny(size: int) -> sandbox.Limits:
        lim = real(size)
        return type(lim)(**{**lim.to_dict(), "file_size": 4096})  # disk "full" at 4 KiB

    monkeypatch.setattr(sandbox.Limits, "for_input", staticmethod(tiny))
    convert_worker.shutdown()  # the next worker starts with these limits: both paths fail
    with pytest.raises(ConversionError):
        convert_file(src, tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no partial output
    with pytest.raises(ConversionError):
        safeload.load(src)  # through the cache: nothing half-written stays there either
    assert _store_entries() == []


def test_deeply_nested_pickle_ends_with_a_clear_conversion_error(tmp_path: Path) -> None:
    src = tmp_path / "deep.pkl"
    src.write_bytes(b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b".")
    with pytest.raises(ConversionError, match="nesting deeper"):
        safeload.load(src)


def test_huge_declared_storage_is_refused_before_any_child(tmp_path: Path) -> None:
    src = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, src)
    import zipfile

    data = zipfile.ZipFile(src).read("m/data.pkl")
    # Declare a 2**40-element storage: the archive cannot back it.
    patched = data.replace(b"K\x02t", b"\x8a\x06\x00\x00\x00\x00\x00\x01t", 1)
    assert patched != data
    from safeload_conversion.zipstrict import read_zip  # noqa: F401

    from safeload.inspection import inspect_bytes

    # Rebuild the archive with the patched pickle.
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.replace("m/", "bad/", 1),
                          patched if info.filename.endswith("data.pkl") else zin.read(info))
    ins = inspect_bytes(bad.read_bytes())
    assert ins.verdict == "unsafe"
    with pytest.raises(UnsafeCheckpointError, match="storage"):
        safeload.load(bad)


@pytest.mark.parametrize("loads_before", [1, 2], ids=["fresh-entry", "validated-hit"])
def test_a_store_entry_changed_after_a_remembered_validation_is_caught(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, loads_before: int) -> None:
    # Repeat loads skip re-validating an entry whose files (and source) are unchanged (one this
    # process converted, or one it validated on a hit); a write to the entry, even one keeping
    # its size, changes its ctime and is validated again.
    src = tmp_path / "m.pt"
    torch.save({"w": torch.arange(8, dtype=torch.float32)}, src)
    for _ in range(loads_before):
        safeload.load(src)
    entries = [e for e in _store_entries() if not e.startswith(".")]
    assert len(entries) == 1
    out = paths.converted_dir() / entries[0] / "model.safetensors"
    data = bytearray(out.read_bytes())
    data[-1] ^= 0xFF  # the last tensor byte, same size
    os.chmod(out, 0o600)
    out.write_bytes(bytes(data))
    got = safeload.load(src)
    assert torch.equal(got["w"], torch.arange(8, dtype=torch.float32))
    assert "discarding a damaged converted entry" in caplog.text
