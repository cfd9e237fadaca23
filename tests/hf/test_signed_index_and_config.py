"""The shard index and config.json that from_pretrained reads itself are the signed ones
(hostile review B (2026-12-07), finding 3): checked against the signature that covers the
weights, from the very bytes that are then parsed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from _hubcache import make_repo
from safetensors.torch import save

import safeload
from safeload.errors import DigestMismatchError, ManifestMismatchError, SignatureError
from safeload.signing import sign_model
from safeload.trust import Policy, Publisher, TrustedKey, TrustStore

KEYS = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"
INDEX = "model.safetensors.index.json"
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def _bert() -> tuple[Any, dict[str, bytes]]:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=16,
                                  hidden_act="gelu")
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return model, {"model.safetensors": save(state),
                   "config.json": cfg.to_json_string().encode()}


def _sharded() -> dict[str, bytes]:
    index = {"metadata": {}, "weight_map": {"a": SHARDS[0], "b": SHARDS[1]}}
    return {SHARDS[0]: save({"a": torch.tensor([1.0, 2.0])}),
            SHARDS[1]: save({"b": torch.tensor([3.0, 4.0])}),
            INDEX: json.dumps(index).encode(),
            "config.json": b'{"model_type": "bert", "hidden_size": 8}'}


def _signed_repo(tmp_path: Path, files: dict[str, bytes], *, strict: bool = True,
                 hash_type: str = "sha256", add_after: dict[str, bytes] | None = None
                 ) -> tuple[Path, Path]:
    """acme/model in a cache: `files` signed by acme (who owns acme/*), then `add_after`."""
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    sign_model(src, private_key_pem_path=KEYS / "p256.priv.pem",
               hash_type=hash_type)  # type: ignore[arg-type]
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(
        Publisher("acme", namespaces=("acme/*",), keys=(key,))).with_policy(
        Policy(mode="strict" if strict else "default")))
    cache = tmp_path / "cache"
    signed = {p.name: p.read_bytes() for p in src.iterdir()}
    return cache, make_repo(cache, "acme/model", {**signed, **(add_after or {})})


def _rewrite(snap: Path, name: str, data: bytes) -> None:
    """An attacker with write access to the cache rewrites the blob. Small files are named by
    their git blob id, which safeload cannot check: only the signature covers them."""
    blob = (snap / name).resolve()
    os.chmod(blob, 0o644)
    blob.write_bytes(data)


def test_a_signed_sharded_snapshot_loads_in_strict_mode(tmp_path: Path) -> None:
    cache, _ = _signed_repo(tmp_path, _sharded())
    state = safeload.from_pretrained("acme/model", cache_dir=cache)
    assert sorted(state) == ["a", "b"]


# hostile review B (2026-12-07), finding 3: a rewritten index silently dropped shard b.
@pytest.mark.parametrize("hash_type", ["sha256", "blake2b"])
def test_a_tampered_shard_index_is_refused_in_a_signed_snapshot(tmp_path: Path,
                                                                 hash_type: str) -> None:
    cache, snap = _signed_repo(tmp_path, _sharded(), hash_type=hash_type)
    _rewrite(snap, INDEX, json.dumps({"metadata": {}, "weight_map": {"a": SHARDS[0]}}).encode())
    with pytest.raises(DigestMismatchError, match=INDEX):
        safeload.from_pretrained("acme/model", cache_dir=cache)


# hostile review B (2026-12-07), finding 3: an index the signature does not list is used only
# if it is signed (a file added to a signed snapshot after signing).
def test_an_index_the_signature_does_not_list_is_refused(tmp_path: Path) -> None:
    files = _sharded()
    index = files.pop(INDEX)
    cache, _ = _signed_repo(tmp_path, files, strict=False, add_after={INDEX: index})
    with pytest.raises(ManifestMismatchError, match="not covered by the signature"):
        safeload.from_pretrained("acme/model", cache_dir=cache)


# hostile review B (2026-12-07), finding 3: strict mode refuses an unsigned index, as it
# refuses unsigned weights (here every weights file is signed on its own).
def test_an_unsigned_index_is_refused_in_strict_mode(tmp_path: Path) -> None:
    files = _sharded()
    src = tmp_path / "src"
    src.mkdir()
    for name in SHARDS:
        (src / name).write_bytes(files[name])
        sign_model(src / name, private_key_pem_path=KEYS / "p256.priv.pem")
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(Publisher("acme", keys=(key,))).with_policy(
        Policy(mode="strict")))
    snap = tmp_path / "cache" / "models--acme--model" / "snapshots" / ("a" * 40)
    make_repo(tmp_path / "cache", "acme/model",
              {**{p.name: p.read_bytes() for p in src.iterdir()}, INDEX: files[INDEX]})
    assert (snap / f"{SHARDS[0]}.sig").is_file()
    with pytest.raises(SignatureError, match=INDEX):
        safeload.from_pretrained("acme/model", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("auto", [False, True], ids=["BertModel", "AutoModel"])
def test_a_signed_config_builds_the_publishers_model(tmp_path: Path, auto: bool) -> None:
    transformers = pytest.importorskip("transformers")
    ref, files = _bert()
    cache, snap = _signed_repo(tmp_path, files)
    cls = transformers.AutoModel if auto else transformers.BertModel
    model = safeload.from_pretrained("acme/model", cache_dir=cache, model_class=cls)
    x = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(model(x).last_hidden_state, ref(x).last_hidden_state)


# hostile review B (2026-12-07), finding 3: a rewritten config.json built another
# architecture (hidden_act, layer_norm_eps) from the verified weights.
@pytest.mark.parametrize("auto", [False, True], ids=["BertModel", "AutoModel"])
def test_a_tampered_config_is_refused_in_a_signed_snapshot(tmp_path: Path, auto: bool) -> None:
    transformers = pytest.importorskip("transformers")
    _, files = _bert()
    cache, snap = _signed_repo(tmp_path, files)
    cfg = json.loads(files["config.json"])
    _rewrite(snap, "config.json", json.dumps({**cfg, "hidden_act": "relu",
                                              "layer_norm_eps": 1e3}).encode())
    cls = transformers.AutoModel if auto else transformers.BertModel
    with pytest.raises(DigestMismatchError, match="config.json"):
        safeload.from_pretrained("acme/model", cache_dir=cache, model_class=cls)


# hostile review B (2026-12-07), finding 3: transformers reads the checked bytes, not the path
# again (a config rewritten right after its check changes nothing).
def test_the_config_is_built_from_the_bytes_that_were_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transformers = pytest.importorskip("transformers")
    import safeload.trust as trust

    _, files = _bert()
    cache, snap = _signed_repo(tmp_path, files)
    evil = json.dumps({**json.loads(files["config.json"]), "hidden_act": "relu"}).encode()
    real, checked = trust.check_load, []

    def check_then_swap(path: Path, **kw: Any) -> Any:
        out = real(path, **kw)
        if Path(path).name == "config.json":
            checked.append(path)
            _rewrite(snap, "config.json", evil)
        return out

    monkeypatch.setattr(trust, "check_load", check_then_swap)
    model = safeload.from_pretrained("acme/model", cache_dir=cache,
                                     model_class=transformers.BertModel)
    assert checked and model.config.hidden_act == "gelu"


# hostile review B (2026-12-07), finding 3: a versioned config (`configuration_files`), which
# transformers reads instead of config.json, is checked as config.json is.
def test_a_tampered_versioned_config_is_refused_in_a_signed_snapshot(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    _, files = _bert()
    cfg = json.loads(files["config.json"])
    files["config.json"] = json.dumps({**cfg, "configuration_files": ["config.4.0.0.json"]}
                                      ).encode()
    files["config.4.0.0.json"] = json.dumps({**cfg, "layer_norm_eps": 1e-5}).encode()
    cache, snap = _signed_repo(tmp_path, files)
    model = safeload.from_pretrained("acme/model", cache_dir=cache,
                                     model_class=transformers.BertModel)
    assert model.config.layer_norm_eps == 1e-5  # benign: transformers' choice, as before
    _rewrite(snap, "config.4.0.0.json", json.dumps({**cfg, "layer_norm_eps": 1e3}).encode())
    with pytest.raises(DigestMismatchError, match="config.4.0.0.json"):
        safeload.from_pretrained("acme/model", cache_dir=cache,
                                 model_class=transformers.BertModel)
