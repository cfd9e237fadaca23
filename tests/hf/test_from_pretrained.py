"""`safeload.from_pretrained` on Hugging Face cache layouts built on disk (no network)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from _hubcache import make_repo, minilm_files, minilm_snapshot
from safetensors.torch import load_file, save, save_file

import safeload
from safeload.errors import DigestMismatchError, UnsafeCheckpointError, UnsupportedArgumentError

REPO = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_real_minilm_from_the_cache_is_bit_identical(tmp_path: Path) -> None:
    make_repo(tmp_path, REPO, minilm_files())
    state = safeload.from_pretrained(REPO, cache_dir=tmp_path)
    ref = load_file(str(minilm_snapshot() / "model.safetensors"))
    assert state.keys() == ref.keys()
    assert all(torch.equal(state[k], ref[k]) for k in ref)


def test_model_class_gives_the_same_outputs_as_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    make_repo(tmp_path, REPO, minilm_files())
    ours = safeload.from_pretrained(REPO, cache_dir=tmp_path, model_class=transformers.BertModel)
    ref = transformers.BertModel.from_pretrained(str(minilm_snapshot()))
    x = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        assert torch.equal(ours(x).last_hidden_state, ref(x).last_hidden_state)


def test_pickle_only_repo_is_converted_in_the_sandbox(tmp_path: Path) -> None:
    sd = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}
    make_repo(tmp_path, "org/pickled", {"pytorch_model.bin": _torch_bytes(sd),
                                        "config.json": b"{}"})
    state = safeload.from_pretrained("org/pickled", cache_dir=tmp_path)
    assert torch.equal(state["w"], sd["w"]) and torch.equal(state["b"], sd["b"])


def test_sharded_pickle_repo(tmp_path: Path) -> None:
    a, b = torch.randn(4, 4), torch.randn(7)
    index = {"metadata": {"total_size": 92}, "weight_map": {
        "a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}
    make_repo(tmp_path, "org/sharded", {
        "pytorch_model.bin.index.json": json.dumps(index).encode(),
        "pytorch_model-00001-of-00002.bin": _torch_bytes({"a": a}),
        "pytorch_model-00002-of-00002.bin": _torch_bytes({"b": b})})
    state = safeload.from_pretrained("org/sharded", cache_dir=tmp_path)
    assert torch.equal(state["a"], a) and torch.equal(state["b"], b)


def test_safetensors_is_preferred_over_a_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    class Canary:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    make_repo(tmp_path, "org/both", {
        "model.safetensors": save({"w": torch.ones(2)}),
        "pytorch_model.bin": _torch_bytes({"w": torch.zeros(2), "x": Canary()})})
    assert torch.equal(safeload.from_pretrained("org/both", cache_dir=tmp_path)["w"],
                       torch.ones(2))
    assert not marker.exists()


def test_hostile_pickle_repo_is_refused_and_its_canary_never_fires(tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    class Canary:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    make_repo(tmp_path, "org/evil", {"pytorch_model.bin": _torch_bytes({"x": Canary()})})
    with pytest.raises(UnsafeCheckpointError):
        safeload.from_pretrained("org/evil", cache_dir=tmp_path)
    assert not marker.exists()


def test_tampered_blob_is_refused_by_its_name(tmp_path: Path) -> None:
    snap = make_repo(tmp_path, "org/tampered", {"model.safetensors": save({"w": torch.ones(4)})})
    blob = (snap / "model.safetensors").resolve()
    blob.write_bytes(save({"w": torch.full((4,), 9.0)}))  # content no longer matches its name
    with pytest.raises(DigestMismatchError, match="blob name"):
        safeload.from_pretrained("org/tampered", cache_dir=tmp_path)


def test_signed_repo_verifies_and_tampered_signed_repo_is_refused(tmp_path: Path) -> None:
    from safeload.signing import sign_model
    from safeload.trust import Publisher, TrustedKey, TrustStore

    keys = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"
    model = tmp_path / "src"
    model.mkdir()
    save_file({"w": torch.arange(3.0)}, str(model / "model.safetensors"))
    (model / "config.json").write_text("{}")
    sign_model(model, private_key_pem_path=keys / "p256.priv.pem")
    files = {p.name: p.read_bytes() for p in model.iterdir()}
    key = TrustedKey.from_pem((keys / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(
        Publisher("acme", namespaces=("acme/*",), keys=(key,))))
    cache = tmp_path / "cache"
    make_repo(cache, "acme/model", files)
    assert torch.equal(safeload.from_pretrained("acme/model", cache_dir=cache)["w"],
                       torch.arange(3.0))
    # The publisher owns acme/*: an unsigned model claiming that namespace is refused.
    files.pop("model.sig")
    make_repo(cache, "acme/other", files, commit="b" * 40)
    from safeload.errors import RefusedError

    with pytest.raises(RefusedError):
        safeload.from_pretrained("acme/other", cache_dir=cache)


@pytest.mark.parametrize("kwargs", [{"from_tf": True}, {"gguf_file": "x.gguf"},
                                    {"state_dict": {}}, {"trust_remote_code": True}])
def test_bypassing_arguments_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(UnsupportedArgumentError):
        safeload.from_pretrained("org/any", cache_dir=tmp_path, **kwargs)


def test_config_redirect_does_not_choose_the_weights(tmp_path: Path) -> None:
    cfg = {"transformers_weights": "evil.bin"}
    make_repo(tmp_path, "org/redirect", {
        "model.safetensors": save({"w": torch.ones(1)}),
        "config.json": json.dumps(cfg).encode(),
        "evil.bin": b"cos\nsystem\n(S'true'\ntR."})
    assert torch.equal(safeload.from_pretrained("org/redirect", cache_dir=tmp_path)["w"],
                       torch.ones(1))


def test_missing_repo_offline_says_so(tmp_path: Path) -> None:
    from safeload.errors import SafeloadError

    with pytest.raises(SafeloadError, match="no model.safetensors"):
        safeload.from_pretrained("org/absent", cache_dir=tmp_path)


def test_a_ref_moved_mid_load_does_not_mix_two_commits(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Review E (issue 9): every file was resolved through refs/main again, so a ref moved
    # during a load mixed commit A's index with commit B's shards (each signed on its own).
    import huggingface_hub

    index = {"metadata": {"total_size": 1}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}

    def commit(value: float, sha: str) -> None:
        make_repo(tmp_path, "org/moving", {
            "model.safetensors.index.json": json.dumps(index).encode(),
            "model-00001-of-00002.safetensors": save({"a": torch.full((2,), value)}),
            "model-00002-of-00002.safetensors": save({"b": torch.full((2,), value)})},
            commit=sha)

    commit(2.0, "b" * 40)
    commit(1.0, "a" * 40)  # refs/main -> a...
    real = huggingface_hub.try_to_load_from_cache
    refs = tmp_path / "models--org--moving" / "refs" / "main"

    def moving(*args: object, **kwargs: object) -> object:
        found = real(*args, **kwargs)  # type: ignore[arg-type]
        refs.write_text("b" * 40)  # the ref moves after the first file is resolved
        return found

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", moving)
    state = safeload.from_pretrained("org/moving", cache_dir=tmp_path, local_files_only=True)
    assert state["a"].tolist() == state["b"].tolist() == [1.0, 1.0]


def test_the_config_and_the_weights_come_from_one_commit(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Review K (K5): with model_class, config.json and the weights were each resolved through
    # refs/main: a ref moved between the two reads built commit A's config with B's weights.
    transformers = pytest.importorskip("transformers")
    from safeload import hf

    def commit(act: str, fill: float, sha: str) -> None:
        cfg = transformers.BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=8,
                                      max_position_embeddings=8, hidden_act=act)
        sd = {k: torch.full_like(v, fill) for k, v in
              transformers.BertModel(cfg).state_dict().items()}
        make_repo(tmp_path, "org/moving", {"config.json": cfg.to_json_string().encode(),
                                            "model.safetensors": save(sd)}, commit=sha)

    commit("relu", 0.02, "b" * 40)
    commit("gelu", 0.01, "a" * 40)  # refs/main -> a...
    refs = tmp_path / "models--org--moving" / "refs" / "main"
    real = hf.concrete_class

    def moving(model_class: object, config: object) -> object:
        refs.write_text("b" * 40)  # a new revision lands once the config is read
        return real(model_class, config)

    monkeypatch.setattr(hf, "concrete_class", moving)
    model = safeload.from_pretrained("org/moving", cache_dir=tmp_path, local_files_only=True,
                                     model_class=transformers.BertModel)
    weight = model.embeddings.word_embeddings.weight.flatten()[0].item()
    assert (model.config.hidden_act, round(weight, 2)) == ("gelu", 0.01)
