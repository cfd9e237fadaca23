"""`safeload.from_pretrained`: Hugging Face repos and local model folders, loaded safely.

Files are resolved through `huggingface_hub` (cache first; offline with `HF_HUB_OFFLINE=1` or
`local_files_only=True`; the cache layout is never hand-rolled). Weights are chosen by safeload
alone, in this order: a sharded safetensors index, `model.safetensors`, a sharded pickle index,
`pytorch_model.bin`. A Hub file is known as one from the request (repo, the snapshot the client
returned; a snapshot name that is not a commit is resolved to one or refused), never guessed
from the path, and its snapshot entry must be what the client writes: a regular file or a
relative link to `../../blobs/<name>` of the same repo (`_internal/hubpath.py`). Every weights
file then goes through the same pipeline as
`safeload.load`: opened once, hashed and checked against its cache blob name, the trust store
(pins, signatures, revision locks, namespace binding), the model card's licence policy,
inspection, sandboxed conversion for pickles, and a provenance entry. The shard index and
config.json, which safeload reads itself, are judged by the same trust decision (the signature
covering the weights must list them with the digest of the bytes then parsed).

An existing folder is loaded as a folder (transformers' order), except that a plain string that
is also a repo id the trust store has rules for is refused: `./org/name` or a `Path` means the
folder.

With `model_class` (a `transformers` class), the model is built from the verified tensors
themselves (`model_class.from_pretrained(None, config=..., state_dict=...)`), so transformers
never opens a weights file by path and never sees a pickle; `trust_remote_code` stays off. A
`config.json` that names other weights (`transformers_weights`) changes nothing: safeload does
not read weight names from the config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload._internal.opened import OpenedFile
from safeload._internal.text import get_logger, safe_text
from safeload.errors import (
    MalformedFileError,
    SafeloadError,
    UnsafeCheckpointError,
    UnsafePathError,
    UnsupportedArgumentError,
)

if TYPE_CHECKING:
    from safeload._internal.hubpath import HubFile

# Keyword arguments that would load other formats, bypass safeload or run repo code.
_REFUSED_KWARGS = {
    "from_tf": "TensorFlow checkpoints are not loaded by safeload",
    "from_flax": "Flax checkpoints are not loaded by safeload",
    "gguf_file": "GGUF files are not loaded by safeload",
    "state_dict": "safeload supplies the state dict itself, from verified files",
    "trust_remote_code": "remote code is never run",
    "weights_only": "safeload never loads anything but weights",
    "quantization_config": "quantizers load and convert weights themselves",
    "offload_folder": "offloading writes and re-reads weights outside safeload",
    "offload_state_dict": "offloading writes and re-reads weights outside safeload",
    "pretrained_model_name_or_path": "pass the repo or folder as the first argument",
}
# Passed on to `model_class.from_pretrained` (with model_class only): none of them opens a file.
_MODEL_KWARGS = frozenset({"config", "torch_dtype", "dtype", "device_map", "low_cpu_mem_usage",
                           "output_loading_info", "attn_implementation",
                           "ignore_mismatched_sizes"})
# Consumed by safeload itself.
_OWN_KWARGS = frozenset({"variant", "subfolder", "map_location", "use_safetensors",
                         "trust_remote_code", "mmap"})
_CPU = ("cpu", None)
# Far above any real config.json; bounds the private copy that is checked and parsed.
_MAX_CONFIG_BYTES = 64 << 20
# transformers' versioned config names (`get_configuration_file`): config.<version>.json.
_VERSIONED_CONFIG = re.compile(r"config\.[A-Za-z0-9._+-]+\.json")


def _refuse(key: str, why: str, hint: str = "") -> UnsupportedArgumentError:
    return UnsupportedArgumentError(f"from_pretrained({key}=...): {why}",
                                    hint=hint or f"remove {key}")


def _check_dtype(key: str, value: Any) -> None:
    import torch

    if value is None or value == "auto" or isinstance(value, torch.dtype):
        return
    if isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype):
        return
    raise _refuse(key, f"{safe_text(repr(value))} is not a torch dtype",
                  hint='pass a torch.dtype, its name ("float16") or "auto"')


def _check_device_map(value: Any) -> None:
    devices = list(value.values()) if isinstance(value, dict) else [value]
    if all(str(d) in ("cpu", "None") or d is None for d in devices):
        return
    raise _refuse("device_map", f"{safe_text(repr(value))} would place or offload weights "
                  "elsewhere (files read outside safeload)", hint='use device_map="cpu" and '
                  "move the model with .to(device) afterwards")


def _check_kwargs(kwargs: dict[str, Any], model_class: Any) -> None:
    """Every keyword, before any file is read: a refusal names the keyword and the reason.

    Raises:
        UnsupportedArgumentError: a keyword that bypasses safeload, one safeload does not
            know, or one that needs `model_class` given without it.
    """
    for key, value in kwargs.items():
        if key == "trust_remote_code" and not value:
            continue
        if key in _REFUSED_KWARGS:
            raise _refuse(key, _REFUSED_KWARGS[key])
        if key == "use_safetensors" and value is False:
            raise _refuse(key, "asks for pickle weights; safeload chooses the weights file "
                          "itself (safetensors first)", hint="remove use_safetensors")
        if key not in _MODEL_KWARGS | _OWN_KWARGS:
            raise _refuse(key, "not a keyword safeload passes on (fail closed: it might open "
                          "files)", hint="set it on the config and pass config=...")
        if key in _MODEL_KWARGS and model_class is None:
            raise _refuse(key, "only applies with model_class",
                          hint="pass model_class=transformers.AutoModel (or a model class)")
        if key in ("dtype", "torch_dtype"):
            _check_dtype(key, value)
        elif key == "device_map":
            _check_device_map(value)
        elif key == "low_cpu_mem_usage" and not isinstance(value, bool):
            raise _refuse(key, "must be True or False")
    if "dtype" in kwargs and "torch_dtype" in kwargs:
        raise _refuse("torch_dtype", "given with dtype (the same setting twice)",
                      hint="pass dtype only")
    if model_class is not None and not callable(getattr(model_class, "from_pretrained", None)):
        raise UnsupportedArgumentError(
            f"from_pretrained(model_class={safe_text(repr(model_class))}): not a transformers "
            "model class", hint="pass e.g. transformers.AutoModel or transformers.BertModel")


def _variant(name: str, variant: str | None) -> str:
    """transformers' naming: model.safetensors -> model.fp16.safetensors."""
    if not variant:
        return name
    parts = name.split(".")
    return ".".join([*parts[:-1], variant, parts[-1]])


@dataclass(frozen=True)
class _Source:
    """Where files come from: a local folder, or a Hub repo through huggingface_hub."""

    root: Path | None
    repo_id: str | None
    revision: str | None
    cache_dir: str | None
    offline: bool
    subfolder: str
    # The snapshot the first file came from: every later file of the same load is read from
    # that commit, as transformers passes `_commit_hash` on (a ref moved mid-load must not mix
    # an index of one commit with shards or a config of another).
    pinned: list[str] = field(default_factory=list)

    def resolve(self, filename: str) -> Path | None:
        rel = f"{self.subfolder}/{filename}" if self.subfolder else filename
        if self.root is not None:
            p = self.root / rel
            return p if p.is_file() else None
        found = self._from_hub(rel)
        if found is not None and not self.pinned:
            hub = self.hub_file(found)
            if hub is not None:
                self.pinned.append(hub.snapshot_name)
        return found

    def _from_hub(self, rel: str) -> Path | None:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        assert self.repo_id is not None
        revision = self.pinned[0] if self.pinned else self.revision
        found = try_to_load_from_cache(self.repo_id, rel, cache_dir=self.cache_dir,
                                       revision=revision)
        if isinstance(found, str):
            return Path(found)
        if found is not None or self.offline:  # known missing, or we may not ask the Hub
            return None
        try:
            return Path(hf_hub_download(self.repo_id, rel, revision=revision,
                                        cache_dir=self.cache_dir))
        except Exception as exc:  # noqa: BLE001 - the hub client raises many types
            if type(exc).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
                return None
            raise SafeloadError(f"{self.repo_id}: could not fetch {rel}: {exc}",
                                hint="check the network, or pass local_files_only=True "
                                     "to use the cache only") from exc

    def hub_file(self, path: Path) -> HubFile | None:
        """The Hub file huggingface_hub returned `path` as: `<repo dir>/snapshots/<rev>/<rel>`
        of the requested repo (None for a local folder). Known from the request, not guessed
        from the path; the snapshot name is resolved to a commit later, or refused.

        Raises:
            UnsafePathError: the path is not where the Hub client keeps that repo's files.
        """
        from huggingface_hub.file_download import repo_folder_name

        from safeload._internal.hubpath import HubFile

        if self.repo_id is None:
            return None
        rel = Path(f"{self.subfolder}/{path.name}" if self.subfolder else path.name).parts
        parts = path.parts
        n = len(rel)
        folder = repo_folder_name(repo_id=self.repo_id, repo_type="model")
        if (len(parts) < n + 3 or parts[-n:] != rel or parts[-n - 2] != "snapshots"
                or parts[-n - 3] != folder):
            raise UnsafePathError(f"{safe_text(path)}: not a snapshot entry of "
                                  f"{safe_text(self.repo_id)} in the Hugging Face cache",
                                  hint="check cache_dir / HF_HUB_CACHE")
        return HubFile("model", self.repo_id, parts[-n - 1], Path(*parts[: -n - 2]),
                       "/".join(rel))

    def open(self, path: Path) -> OpenedFile:
        """Open a resolved file; a Hub snapshot entry must be what the Hub client wrote.

        Raises:
            UnsafePathError: see `hubpath.check_held`.
        """
        from safeload._internal.hubpath import check_held

        hub = self.hub_file(path)
        opened = OpenedFile.open(path)
        try:
            if hub is not None:
                check_held(hub, opened.fd)
        except BaseException:
            opened.close()
            raise
        return opened


def _source(repo_id_or_path: str | os.PathLike[str], revision: str | None,
            cache_dir: str | os.PathLike[str] | None, local_files_only: bool,
            subfolder: str) -> _Source:
    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "").upper() in (
        "1", "ON", "YES", "TRUE")
    p = Path(os.fspath(repo_id_or_path))
    if p.is_dir():
        _refuse_shadowed_repo(repo_id_or_path)
        return _Source(p, None, None, None, True, subfolder)
    repo = os.fspath(repo_id_or_path)
    from safeload._internal.hubpath import valid_repo_id

    if not valid_repo_id(repo):
        raise SafeloadError(f"{safe_text(repo)}: neither a local folder nor a Hugging Face "
                            "repo id", hint="a repo id is `org/name` (letters, digits, -_.)")
    return _Source(None, repo, revision,
                   os.fspath(cache_dir) if cache_dir is not None else None, offline, subfolder)


def _repo_id_form(arg: str | os.PathLike[str]) -> str | None:
    """`arg` when the Hub client would take it as a repo id: a plain string (a Path or other
    os.PathLike means a folder) of the repo id grammar, which no absolute or `./`, `../`
    path matches."""
    if not isinstance(arg, str) or isinstance(arg, os.PathLike):
        return None
    from safeload._internal.hubpath import valid_repo_id

    return arg if valid_repo_id(arg) else None


def _rules_for_repo(repo: str) -> tuple[str, bool]:
    """The kinds of trust store rule that would apply to Hub repo `repo` (empty: none), and
    whether the store is in audit mode; from the store every load is judged by. Strict mode
    counts for `org/name` ids only: a bare name is far more often one's own folder
    (`save_pretrained("model")`), and is governed only by rules that name it."""
    from safeload.pipeline import load_store
    from safeload.trust import load_observations

    store = load_store()
    observed = load_observations(store)
    r = repo.casefold()
    pins = [p for p in (*store.pins, *observed.pins) if (p.repo or "").casefold() == r]
    kinds = [what for what, present in (
        ("a namespace binding", bool(store.owners_of(repo))),
        ("a revision lock", store.revision_lock(repo) is not None),
        ("pins", bool(pins)),
        ("a record that it was loaded signed",
         any(s.location == f"hf:{r}" for s in observed.signed)),
        ("strict mode", "/" in repo and store.policy.mode == "strict")) if present]
    return ", ".join(kinds), store.policy.mode == "audit"


def _refuse_shadowed_repo(arg: str | os.PathLike[str]) -> None:
    """An existing folder is loaded as one (transformers' order), unless its name is also a
    repo id the trust store has rules for: loading the folder would skip them all (hostile
    review B, finding 2), and which one the caller meant cannot be told, so fail closed.

    Raises:
        UnsupportedArgumentError: the name is both a local folder and a governed repo id.
    """
    repo = _repo_id_form(arg)
    if repo is None:
        return
    rules, audit = _rules_for_repo(repo)
    if not rules:
        return
    exc = UnsupportedArgumentError(
        f"from_pretrained({safe_text(repo)!r}): {safe_text(repo)} is both a local folder "
        f"({safe_text(os.path.abspath(repo))}) and a Hugging Face repo the trust store has "
        f"rules for ({rules}); loading the folder would skip them",
        hint=f"pass './{safe_text(repo)}' or a pathlib.Path to mean the folder, or move the "
             "folder to load the repo")
    if not audit:
        raise exc
    # Audit mode reports what it would refuse and goes on, as for the rules themselves.
    get_logger("safeload.trust").warning("audit mode, not refusing: %s", exc)


def _verified_bytes(src: _Source, path: Path, limit: int) -> bytes:
    """The bytes of a file safeload reads itself (a shard index, config.json), judged by the
    trust store as a weights file is, so they are the signed ones (hostile review B, finding
    3): a signature over the snapshot must list the file with these bytes' digest, and an
    unsigned file is refused where the weights would be (strict mode, a bound namespace, a
    location once loaded signed). Read once; the caller parses exactly these bytes.

    Raises:
        MalformedFileError: the file is larger than `limit`.
        DigestMismatchError: the bytes do not match their cache blob name or the signature.
        RefusedError: the trust store refuses the file (see `trust.check_load`).
    """
    from safeload import pipeline

    with src.open(path) as f:
        if f.size > limit:
            raise MalformedFileError(f"{safe_text(path)}: larger than {limit} bytes",
                                     hint="fetch the file again from its source")
        f.copy_privately()  # what is checked is what is parsed, in every mode
        data = bytes(f.mapping())
        # observe=False: no first-use pin or signed-location record for a file that is not
        # weights; the digest is of the copy (never the verification cache's).
        pipeline.verify(f, pipeline.locate(f, src.hub_file(path)), observe=False,
                        remember=False, sha256=hashlib.sha256(data).hexdigest())
    return data


def _read_index(src: _Source, path: Path) -> dict[str, str]:
    """The weight map of a sharded checkpoint index, from its verified bytes."""
    from safeload._internal.shardindex import MAX_INDEX_BYTES, parse_index

    return parse_index(_verified_bytes(src, path, MAX_INDEX_BYTES), str(path)).weight_map


def _weight_files(src: _Source, variant: str | None, safetensors_only: bool = False
                  ) -> Iterator[tuple[Path, dict[str, str] | None]]:
    """The first kind of weights present: (file, the keys it must provide) pairs.

    Raises:
        UnsafeCheckpointError: `safetensors_only` and the repo has pickle weights only.
    """
    for index_name, single_name in (("model.safetensors.index.json", "model.safetensors"),
                                    ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        if safetensors_only and single_name == "pytorch_model.bin":
            _refuse_pickles(src, variant)
        index = src.resolve(_variant(index_name, variant))
        if index is not None:
            weight_map = _read_index(src, index)
            by_shard: dict[str, dict[str, str]] = {}
            for key, shard in weight_map.items():
                by_shard.setdefault(shard, {})[key] = shard
            for shard, keys in sorted(by_shard.items()):
                path = src.resolve(shard)
                if path is None:
                    raise MalformedFileError(f"{index}: shard {shard} is missing")
                yield path, keys
            return
        single = src.resolve(_variant(single_name, variant))
        if single is not None:
            yield single, None
            return
    where = src.repo_id or str(src.root)
    raise SafeloadError(f"{where}: no model.safetensors or pytorch_model.bin (or sharded index)",
                        hint="pass local_files_only=False to fetch from the Hub"
                        if src.offline and src.repo_id else "")


def _refuse_pickles(src: _Source, variant: str | None) -> None:
    """`use_safetensors=True` and no safetensors weights: say so if pickles are what is there.

    Raises:
        UnsafeCheckpointError: the repo has pickle weights (never opened).
    """
    for name in ("pytorch_model.bin.index.json", "pytorch_model.bin"):
        if src.resolve(_variant(name, variant)) is not None:
            raise UnsafeCheckpointError(
                f"from_pretrained(use_safetensors=True): {safe_text(src.repo_id or str(src.root))}"
                f" has pickle weights only ({_variant(name, variant)}); refused as asked",
                hint="remove use_safetensors=True to have the pickle converted in the sandbox")


def load_state_dict(repo_id_or_path: str | os.PathLike[str], *, revision: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None,
                    local_files_only: bool = False, variant: str | None = None,
                    subfolder: str = "", map_location: Any = None,
                    safetensors_only: bool = False, mmap: bool | None = None
                    ) -> tuple[dict[str, Any], Path]:
    """The verified state dict, and the folder its files came from."""
    src = _source(repo_id_or_path, revision, cache_dir, local_files_only, subfolder)
    return _load_state_dict(src, variant, safetensors_only, map_location, mmap)


def _load_state_dict(src: _Source, variant: str | None, safetensors_only: bool,
                     map_location: Any, mmap: bool | None = None
                     ) -> tuple[dict[str, Any], Path]:
    from safeload.pipeline import load_held

    state: dict[str, Any] = {}
    folder: Path | None = None
    for path, expected in _weight_files(src, variant, safetensors_only):
        folder = folder or path.parent
        with src.open(path) as f:
            part = load_held(f, map_location=map_location, mmap=mmap, action="from_pretrained",
                             hub=src.hub_file(path))
        if not isinstance(part, dict):
            raise MalformedFileError(f"{path}: weights file does not hold a state dict")
        if expected is not None:
            missing = set(expected) - set(part)
            if missing:
                raise MalformedFileError(
                    f"{path}: the index promises {len(missing)} tensors this shard lacks "
                    f"(e.g. {sorted(missing)[0]!r})")
        overlap = set(state) & set(part)
        if overlap:
            raise MalformedFileError(f"{path}: tensor {sorted(overlap)[0]!r} in two shards")
        state.update(part)
    assert folder is not None
    return state, folder


def _config(src: _Source, model_class: Any, where: str) -> Any:
    """The model's config, from config.json only (never weights, never code), built from its
    verified bytes: transformers reads a config by path, so it is given a private folder
    holding those bytes only, never the snapshot (which may change after the check).

    Raises:
        SafeloadError: no config.json, or one transformers cannot build without repo code.
        RefusedError: the trust store refuses config.json (see `_verified_bytes`).
    """
    cfg = src.resolve("config.json")
    if cfg is None:
        raise SafeloadError(f"{safe_text(where)}: no config.json to build "
                            f"{safe_text(getattr(model_class, '__name__', repr(model_class)))}")
    files = {"config.json": _verified_bytes(src, cfg, _MAX_CONFIG_BYTES)}
    files.update(_versioned_configs(src, files["config.json"]))
    with tempfile.TemporaryDirectory(prefix="safeload-config-") as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "xb") as out:
                out.write(data)
        config = _config_from(tmp, model_class, cfg)
    if getattr(config, "name_or_path", None) == tmp:  # the folder transformers would name
        config.name_or_path = str(cfg.parent)
    return config


def _config_from(folder: str, model_class: Any, cfg: Path) -> Any:
    """transformers' own reading of the config in `folder`; its errors name `cfg`."""
    def named(exc: Exception) -> str:
        return safe_text(str(exc).replace(folder, str(cfg.parent)))

    try:
        if _auto(model_class):
            from transformers import AutoConfig

            return AutoConfig.from_pretrained(folder, trust_remote_code=False)
        return model_class.config_class.from_pretrained(folder, trust_remote_code=False)
    except ValueError as exc:  # an unknown model_type: transformers would need repo code
        if not _auto(model_class):
            raise
        raise SafeloadError(f"{cfg}: {named(exc)}", hint="remote code is never run") from None
    except OSError as exc:  # not JSON, or a versioned config that is not there
        raise MalformedFileError(f"{cfg}: transformers cannot read it: {named(exc)}",
                                 hint="fetch the file again from its source") from None


def _versioned_configs(src: _Source, data: bytes) -> dict[str, bytes]:
    """The `config.<version>.json` files a config's `configuration_files` lists (transformers
    may read one instead of config.json), each verified as config.json is; absent ones are
    left to transformers to report."""
    try:
        listed = json.loads(data.decode("utf-8")).get("configuration_files")
    except (ValueError, AttributeError):  # not a JSON object: transformers says so
        return {}
    out: dict[str, bytes] = {}
    for name in listed if isinstance(listed, list) else ():
        if isinstance(name, str) and _VERSIONED_CONFIG.fullmatch(name):
            path = src.resolve(name)
            if path is not None:
                out[name] = _verified_bytes(src, path, _MAX_CONFIG_BYTES)
    return out


def _auto(model_class: Any) -> bool:
    """An Auto class (AutoModel, AutoModelForSequenceClassification, ...)."""
    try:
        from transformers.models.auto.auto_factory import _BaseAutoModelClass
    except ImportError:
        return False
    return isinstance(model_class, type) and issubclass(model_class, _BaseAutoModelClass)


def concrete_class(model_class: Any, config: Any) -> Any:
    """The class transformers' Auto class would build for `config` (a concrete class is
    itself); the registry only, never the config's `auto_map` (that is repo code).

    Raises:
        UnsupportedArgumentError: no class of that kind for this config's model type.
    """
    if not _auto(model_class):
        return model_class
    from transformers.models.auto.auto_factory import _get_model_class

    mapping = model_class._model_mapping
    if type(config) not in mapping:
        raise UnsupportedArgumentError(
            f"from_pretrained(model_class={model_class.__name__}): no such model for "
            f"{type(config).__name__} (model_type {safe_text(str(config.model_type))})",
            hint="pass the concrete model class; remote code is never run")
    return _get_model_class(config, mapping)  # type: ignore[no-untyped-call]


def from_pretrained(repo_id_or_path: str | os.PathLike[str], *, revision: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None,
                    local_files_only: bool = False, model_class: Any = None,
                    **kwargs: Any) -> Any:
    """Load a Hugging Face model's weights (or a model built from them) safely.

    Returns the state dict; with `model_class` (an Auto class such as `transformers.AutoModel`,
    resolved from the config as transformers does, or a concrete one such as
    `transformers.BertModel`), a model built from the verified tensors. Every keyword is
    checked before any file is read. `variant` and `subfolder` choose files;
    `use_safetensors=True` refuses pickle weights; `dtype`/`torch_dtype`, `device_map="cpu"`,
    `low_cpu_mem_usage`, `config`, `attn_implementation`, `output_loading_info` and
    `ignore_mismatched_sizes` are passed on to transformers (none opens a file). `mmap` as
    `safeload.load`'s; a model (`model_class`) gets private copies unless `mmap=True`: it lives
    on, and a mapped page still shows a later write to the file in place. Arguments that
    load other formats or bypass safeload (`from_tf`, `from_flax`, `gguf_file`, `state_dict`,
    `trust_remote_code`, `quantization_config`, offloading), and any other keyword, are refused.

    Raises:
        UnsupportedArgumentError: a refused keyword argument (named, with the reason); a
            repo id that is also a local folder while the trust store has rules for it.
        RefusedError: the trust store, the licence policy or inspection refuses a file.
        SafeloadError: the repo or its weights cannot be found.
    """
    _check_kwargs(kwargs, model_class)
    kwargs.pop("trust_remote_code", None)
    variant = kwargs.pop("variant", None)
    subfolder = kwargs.pop("subfolder", "") or ""
    map_location = kwargs.pop("map_location", None)
    safetensors_only = bool(kwargs.pop("use_safetensors", None))
    mmap = kwargs.pop("mmap", None)
    if mmap is None and model_class is not None:
        mmap = False  # review S-2: the model's parameters would alias the cache file's pages
    # Only a CPU map passes the check, and the model is built on the CPU anyway: transformers
    # would need accelerate just to honour it.
    kwargs.pop("device_map", None)
    src = _source(repo_id_or_path, revision, cache_dir, local_files_only, subfolder)
    cls, config = model_class, kwargs.pop("config", None)
    if model_class is not None:  # the class before the weights: a wrong one reads no weights
        config = config if config is not None else _config(src, model_class,
                                                           os.fspath(repo_id_or_path))
        cls = concrete_class(model_class, config)
    # The same source: the weights come from the commit the config was read from (review K).
    state, _ = _load_state_dict(src, variant, safetensors_only, map_location, mmap)
    if cls is None:
        return state
    return cls.from_pretrained(None, config=config, state_dict=state, trust_remote_code=False,
                               **kwargs)
