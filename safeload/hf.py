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
inspection, sandboxed conversion for pickles, and a provenance entry.

With `model_class` (a `transformers` class), the model is built from the verified tensors
themselves (`model_class.from_pretrained(None, config=..., state_dict=...)`), so transformers
never opens a weights file by path and never sees a pickle; `trust_remote_code` stays off. A
`config.json` that names other weights (`transformers_weights`) changes nothing: safeload does
not read weight names from the config.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeload._internal.opened import OpenedFile
from safeload._internal.text import safe_text
from safeload.errors import (
    MalformedFileError,
    SafeloadError,
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
    "use_safetensors": "safeload chooses the weights file itself",
}


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

    def resolve(self, filename: str) -> Path | None:
        rel = f"{self.subfolder}/{filename}" if self.subfolder else filename
        if self.root is not None:
            p = self.root / rel
            return p if p.is_file() else None
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        assert self.repo_id is not None
        found = try_to_load_from_cache(self.repo_id, rel, cache_dir=self.cache_dir,
                                       revision=self.revision)
        if isinstance(found, str):
            return Path(found)
        if found is not None or self.offline:  # known missing, or we may not ask the Hub
            return None
        try:
            return Path(hf_hub_download(self.repo_id, rel, revision=self.revision,
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
        return _Source(p, None, None, None, True, subfolder)
    repo = os.fspath(repo_id_or_path)
    from safeload._internal.hubpath import valid_repo_id

    if not valid_repo_id(repo):
        raise SafeloadError(f"{safe_text(repo)}: neither a local folder nor a Hugging Face "
                            "repo id", hint="a repo id is `org/name` (letters, digits, -_.)")
    return _Source(None, repo, revision,
                   os.fspath(cache_dir) if cache_dir is not None else None, offline, subfolder)


def _read_index(src: _Source, path: Path) -> dict[str, str]:
    """The weight map of a sharded checkpoint index, read through a held handle."""
    from safeload._internal.shardindex import MAX_INDEX_BYTES, parse_index

    with src.open(path) as f:
        if f.size > MAX_INDEX_BYTES:
            raise MalformedFileError(f"{path}: index larger than {MAX_INDEX_BYTES} bytes")
        return parse_index(bytes(f.mapping()), str(path)).weight_map


def _weight_files(src: _Source, variant: str | None
                  ) -> Iterator[tuple[Path, dict[str, str] | None]]:
    """The first kind of weights present: (file, the keys it must provide) pairs."""
    for index_name, single_name in (("model.safetensors.index.json", "model.safetensors"),
                                    ("pytorch_model.bin.index.json", "pytorch_model.bin")):
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


def load_state_dict(repo_id_or_path: str | os.PathLike[str], *, revision: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None,
                    local_files_only: bool = False, variant: str | None = None,
                    subfolder: str = "", map_location: Any = None) -> tuple[dict[str, Any], Path]:
    """The verified state dict, and the folder its files came from."""
    from safeload.pipeline import load_held

    src = _source(repo_id_or_path, revision, cache_dir, local_files_only, subfolder)
    state: dict[str, Any] = {}
    folder: Path | None = None
    for path, expected in _weight_files(src, variant):
        folder = folder or path.parent
        with src.open(path) as f:
            part = load_held(f, map_location=map_location, action="from_pretrained",
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


def from_pretrained(repo_id_or_path: str | os.PathLike[str], *, revision: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None,
                    local_files_only: bool = False, model_class: Any = None,
                    **kwargs: Any) -> Any:
    """Load a Hugging Face model's weights (or a model built from them) safely.

    Returns the state dict; with `model_class` (e.g. `transformers.BertModel`), a model built
    from the verified tensors. `variant` and `subfolder` choose files; arguments that load other
    formats or bypass safeload (`from_tf`, `from_flax`, `gguf_file`, `state_dict`,
    `trust_remote_code`) are refused.

    Raises:
        UnsupportedArgumentError: a refused keyword argument.
        RefusedError: the trust store, the licence policy or inspection refuses a file.
        SafeloadError: the repo or its weights cannot be found.
    """
    for key in list(kwargs):
        if key in _REFUSED_KWARGS and not (key == "trust_remote_code" and not kwargs[key]):
            raise UnsupportedArgumentError(f"from_pretrained({key}=...): {_REFUSED_KWARGS[key]}",
                                           hint=f"remove {key}")
    kwargs.pop("trust_remote_code", None)
    variant = kwargs.pop("variant", None)
    subfolder = kwargs.pop("subfolder", "") or ""
    map_location = kwargs.pop("map_location", None)
    state, folder = load_state_dict(repo_id_or_path, revision=revision, cache_dir=cache_dir,
                                    local_files_only=local_files_only, variant=variant,
                                    subfolder=subfolder, map_location=map_location)
    if model_class is None:
        if kwargs:
            raise UnsupportedArgumentError(
                f"from_pretrained: {sorted(kwargs)} only apply with model_class")
        return state
    config = kwargs.pop("config", None)
    if config is None:
        src = _source(repo_id_or_path, revision, cache_dir, local_files_only, subfolder)
        cfg = src.resolve("config.json")
        if cfg is None:
            raise SafeloadError(f"{repo_id_or_path}: no config.json to build {model_class}")
        # Only the JSON config is read here: never weights, never code.
        config = model_class.config_class.from_pretrained(str(cfg.parent),
                                                          trust_remote_code=False)
    return model_class.from_pretrained(None, config=config, state_dict=state,
                                       trust_remote_code=False, **kwargs)
