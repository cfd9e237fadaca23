"""`safeload.from_pretrained` in transformers' terms: Auto classes resolve to the concrete class
from the config, transformers' keywords pass through where they open no file, and every keyword
is checked before any file is read (a refusal names the keyword and the reason)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from _hubcache import make_repo

import safeload
from safeload._internal import opened
from safeload.errors import UnsafeCheckpointError, UnsupportedArgumentError

transformers = pytest.importorskip("transformers")


def _bert_files(tmp: Path, num_labels: int = 2) -> dict[str, bytes]:
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=16,
                                  max_position_embeddings=16, num_labels=num_labels)
    torch.manual_seed(0)
    out = tmp / "saved"
    transformers.BertForSequenceClassification(cfg).save_pretrained(out)
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    cache = tmp_path / "hub"
    make_repo(cache, "org/tiny-bert", _bert_files(tmp_path))
    return cache


def test_auto_model_resolves_to_the_concrete_class(repo: Path) -> None:
    m = safeload.from_pretrained("org/tiny-bert", cache_dir=repo,
                                 model_class=transformers.AutoModel)
    assert type(m) is transformers.BertModel
    ref = transformers.AutoModel.from_pretrained("org/tiny-bert", cache_dir=repo,
                                                 local_files_only=True)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                 ref.state_dict().values(), strict=True))


def test_auto_model_for_sequence_classification_keeps_the_head(repo: Path) -> None:
    cls = transformers.AutoModelForSequenceClassification
    m = safeload.from_pretrained("org/tiny-bert", cache_dir=repo, model_class=cls)
    ref = cls.from_pretrained("org/tiny-bert", cache_dir=repo, local_files_only=True)
    assert type(m) is transformers.BertForSequenceClassification
    assert torch.equal(m.classifier.weight, ref.classifier.weight)


@pytest.mark.parametrize("kwargs", [
    {"dtype": torch.float16}, {"torch_dtype": torch.float16}, {"dtype": "float16"},
    {"device_map": "cpu", "low_cpu_mem_usage": True}, {"low_cpu_mem_usage": False},
    {"use_safetensors": True}])
def test_transformers_keywords_pass_through(repo: Path, kwargs: dict[str, Any]) -> None:
    m = safeload.from_pretrained("org/tiny-bert", cache_dir=repo,
                                 model_class=transformers.AutoModel, **kwargs)
    want = torch.float16 if any("dtype" in k for k in kwargs) else torch.float32
    assert next(m.parameters()).dtype == want
    assert next(m.parameters()).device.type == "cpu"


def test_use_safetensors_refuses_pickles(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    make_repo(tmp_path / "hub", "org/pickled", {"pytorch_model.bin": buf.getvalue(),
                                                "config.json": b"{}"})
    with pytest.raises(UnsafeCheckpointError, match="use_safetensors=True"):
        safeload.from_pretrained("org/pickled", cache_dir=tmp_path / "hub",
                                 use_safetensors=True)
    assert torch.equal(safeload.from_pretrained("org/pickled", cache_dir=tmp_path / "hub")["w"],
                       torch.ones(2))


@pytest.mark.parametrize(("kwargs", "model_class", "words"), [
    ({"dtype": "int99"}, "auto", ("dtype", "not a torch dtype")),
    ({"device_map": "auto"}, "auto", ("device_map", "elsewhere")),
    ({"low_cpu_mem_usage": "yes"}, "auto", ("low_cpu_mem_usage", "True or False")),
    ({"use_safetensors": False}, None, ("use_safetensors", "pickle")),
    ({"dtype": torch.float16}, None, ("dtype", "model_class")),
    ({"dtype": "float16", "torch_dtype": "float16"}, "auto", ("torch_dtype", "twice")),
    ({"quantization_config": {}}, "auto", ("quantization_config", "quantizers")),
    ({"revision_hint": 1}, "auto", ("revision_hint", "might open files")),
    ({"from_flax": True}, None, ("from_flax",)),
])
def test_a_bad_keyword_is_refused_before_any_file_is_read(
        repo: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any],
        model_class: str | None, words: tuple[str, ...]) -> None:
    def no_open(*a: Any, **k: Any) -> Any:
        raise AssertionError("a file was opened before the keywords were checked")

    monkeypatch.setattr(opened.OpenedFile, "open", classmethod(no_open))
    cls = transformers.AutoModel if model_class == "auto" else None
    with pytest.raises(UnsupportedArgumentError) as info:
        safeload.from_pretrained("org/tiny-bert", cache_dir=repo, model_class=cls, **kwargs)
    for w in words:
        assert w in str(info.value)


def _write_in_place(path: Path) -> None:
    """Every tensor byte of a safetensors file overwritten, same inode (an in-place writer)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start:] = b"\x7f" * (len(data) - start)
    with open(path.resolve(), "r+b") as f:
        f.write(data)


def test_a_model_does_not_alias_the_cache_file(repo: Path) -> None:
    # review S-2: the model's parameters were views of the blob's private mapping, whose pages
    # show a later write in place (only a written page becomes private)
    m = safeload.from_pretrained("org/tiny-bert", cache_dir=repo,
                                 model_class=transformers.AutoModel)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    mapped = safeload.from_pretrained("org/tiny-bert", cache_dir=repo)  # as safeload.load
    copied = safeload.from_pretrained("org/tiny-bert", cache_dir=repo, mmap=False)
    was = {k: v.clone() for k, v in mapped.items()}
    _write_in_place(next(repo.glob("models--org--tiny-bert/snapshots/*/model.safetensors")))
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert all(torch.equal(v, was[k]) for k, v in copied.items())
    # the control: the mapped state dict shows the write, so the checks above can fail
    assert not all(torch.equal(v, was[k]) for k, v in mapped.items())
