"""Reading a Hugging Face model card's metadata (the YAML front matter of README.md), safely.

Public and stable: `ModelCard`, `parse_model_card`, `read_model_card`, `find_model_card`.
Requires PyYAML.

A model card is attacker-chosen text. The parser refuses, with a warning and never an exception:
- size: front matter over `MAX_FRONT_MATTER_BYTES` is not parsed at all;
- expansion bombs ("billion laughs"): any anchor or alias, so nothing is ever shared or expanded;
- code execution and surprising types: values are built here from the node tree, never by a
  YAML constructor, so an explicit tag (`!!python/object`, `!!str`, ...) runs nothing; its value
  is read as plain text and the licence is marked ambiguous (readers differ on tagged cards);
- stack exhaustion and CPU: nesting deeper than `MAX_DEPTH`, more than `MAX_NODES` nodes;
- ambiguity: a duplicated key (parsers disagree on which copy wins) voids a single-valued field;
  a duplicated list field (`license`, `datasets`, `base_model`, `tags`) keeps every copy's values.

Fail closed on licences: whenever another reader could see a licence this one does not (a
duplicated `license`, any tag, metadata refused as a whole), `ambiguous` names `license` and the
licence policy applies an `unknown` licence on top of every licence read (never one copy alone).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from safeload._internal.cardpath import find_model_card
from safeload._internal.text import get_logger

__all__ = [
    "MAX_DEPTH",
    "MAX_FRONT_MATTER_BYTES",
    "MAX_NODES",
    "ModelCard",
    "find_model_card",
    "parse_model_card",
    "read_model_card",
]

_logger = get_logger(__name__)

MAX_FRONT_MATTER_BYTES = 1 << 20  # 1 MiB; the Hub's largest cards (eval tables) are far smaller
MAX_DEPTH = 32  # model-index results nest about 6 deep
MAX_NODES = 100_000  # real cards (eval tables included) have a few thousand; ~0.5 s of work
_MAX_ID = 512  # licence tags, dataset and model ids, library names, tags
_MAX_URL = 2048
_MAX_ITEMS = 1024  # per list field; all-MiniLM-L6-v2 names 21 datasets


@dataclass(frozen=True)
class ModelCard:
    """The metadata safeload uses from a model card. Strings are as written in the card.

    `license` is a tuple because cards may list several licences (usually there is one).
    `warnings` explains every field that was dropped and why.
    """

    license: tuple[str, ...] = ()
    license_name: str | None = None
    license_link: str | None = None
    datasets: tuple[str, ...] = ()
    base_model: tuple[str, ...] = ()
    library_name: str | None = None
    tags: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    warnings: tuple[str, ...] = field(default=())
    ambiguous: tuple[str, ...] = ()  # fields another reader could read differently
    no_header: bool = False  # a README without a metadata block: prose, not a model card

    @property
    def license_ambiguous(self) -> bool:
        return "license" in self.ambiguous

    def to_dict(self) -> dict[str, Any]:
        return {
            "license": list(self.license), "license_name": self.license_name,
            "license_link": self.license_link, "datasets": list(self.datasets),
            "base_model": list(self.base_model), "library_name": self.library_name,
            "tags": list(self.tags), "pipeline_tag": self.pipeline_tag,
            "warnings": list(self.warnings), "ambiguous": list(self.ambiguous),
        }


class _Refused(Exception):
    """A construct the card parser does not accept (raised inside, reported as a warning)."""


class _Composer(Composer):  # type: ignore[misc,unused-ignore]
    """PyYAML's composer, refusing anchors, aliases and explicit tags, with depth/size limits."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._nodes = 0
        self.tagged = False

    def compose_node(self, parent: Node | None, index: object) -> Node:
        if self.check_event(yaml.AliasEvent):
            raise _Refused("uses YAML aliases (refused: they can expand to billions of nodes)")
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise _Refused("uses YAML anchors (refused: they exist to be expanded by aliases)")
        if getattr(event, "tag", None) not in (None, "!"):
            self.tagged = True  # never constructed: the node's text is read as plain data
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(f"has more than {MAX_NODES} YAML nodes")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nests deeper than {MAX_DEPTH} levels")
            node: Node = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


class _PyLoader(Reader, Scanner, Parser, _Composer, Resolver):  # type: ignore[misc,unused-ignore]
    """Pure-Python events (used when PyYAML was built without libyaml)."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)
        Resolver.__init__(self)


_Loader: type[Any] = _PyLoader
try:  # libyaml's event parser is ~8x faster; the composer on top stays ours either way
    from yaml.cyaml import CParser

    class _CLoader(_Composer, CParser, Resolver):  # type: ignore[misc,unused-ignore]
        """libyaml events, composed by `_Composer`."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _Composer.__init__(self)
            Resolver.__init__(self)

    _Loader = _CLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    pass


_NULL_TAG = "tag:yaml.org,2002:null"


def _build(node: Node, duplicates: dict[str, list[object]], top: bool) -> object:
    """Plain Python data from a composed node: str / None / list / dict, nothing else.

    Scalars stay strings (a licence tag is text even when it looks like a number or a date).
    """
    if isinstance(node, ScalarNode):
        return None if node.tag == _NULL_TAG else str(node.value)
    if isinstance(node, SequenceNode):
        return [_build(child, duplicates, False) for child in node.value]
    if isinstance(node, MappingNode):
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise _Refused("uses a list or mapping as a key")
            key = str(key_node.value)
            value = _build(value_node, duplicates, False)
            if key in out and top:
                duplicates.setdefault(key, [out[key]]).append(value)
            out[key] = value
        return out
    raise _Refused("contains an unexpected YAML node")  # pragma: no cover


_FENCE = re.compile(rb"^---[ \t\r]*$", re.MULTILINE)


def _front_matter(data: bytes) -> tuple[bytes | None, str | None]:
    """The bytes between the opening and closing `---` lines, or (None, why not).

    Like huggingface_hub, blank lines may precede the opening fence; the closing fence must start
    at column 0 (an indented `---` inside a block scalar does not end the metadata).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    stripped = data.lstrip(b" \t\r\n")
    opening = _FENCE.match(stripped)
    if opening is None:
        return None, None
    start = opening.end() + 1
    closing = _FENCE.search(stripped, start, start + MAX_FRONT_MATTER_BYTES + 8)
    if closing is not None and stripped[closing.end() : closing.end() + 1] in (b"", b"\n"):
        return stripped[start : closing.start()], None
    if len(stripped) - start > MAX_FRONT_MATTER_BYTES:
        return None, f"front matter larger than {MAX_FRONT_MATTER_BYTES} bytes; not parsed"
    return None, "front matter is not closed by a '---' line; not parsed"


def parse_model_card(text: str | bytes) -> ModelCard:
    """Parse a model card's README.md content. Never raises: problems become `warnings`.

    Args:
        text: the README.md content, or at least its first `MAX_FRONT_MATTER_BYTES` + 8 KiB.
    """
    warnings: list[str] = []
    # Metadata that is there but not read: another reader may see a licence this one does not.
    unread = ("license",)
    try:
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
        block, problem = _front_matter(data)
        if problem:
            warnings.append(problem)
        if block is None:
            return _finish(ModelCard(warnings=tuple(warnings), ambiguous=unread if problem else (),
                                     no_header=not problem))
        try:
            source = block.decode("utf-8")
        except UnicodeDecodeError:
            warnings.append("front matter is not valid UTF-8; not parsed")
            return _finish(ModelCard(warnings=tuple(warnings), ambiguous=unread))
        duplicates: dict[str, list[object]] = {}
        loader = _Loader(source)
        try:
            node = loader.get_single_node()
            tagged = bool(loader.tagged)
        finally:
            loader.dispose()
        meta = {} if node is None else _build(node, duplicates, True)
    except _Refused as exc:
        warnings.append(f"model card metadata {exc}; metadata ignored")
        return _finish(ModelCard(warnings=tuple(warnings), ambiguous=unread))
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        # YAMLError, RecursionError, MemoryError...: a parse error's message quotes the card, so
        # only its kind is reported.
        warnings.append(f"model card metadata is not valid YAML ({type(exc).__name__}); ignored")
        return _finish(ModelCard(warnings=tuple(warnings), ambiguous=unread))
    if not isinstance(meta, dict):
        warnings.append("model card metadata is not a mapping; ignored")
        return _finish(ModelCard(warnings=tuple(warnings), ambiguous=unread))
    ambiguous: set[str] = set()
    if tagged:
        warnings.append("model card metadata uses explicit YAML tags (!!str, !!python/...): "
                        "read as plain text, nothing constructed; the licence is ambiguous")
        ambiguous.add("license")
    for key in sorted(duplicates):
        if key in _LIST_FIELDS:
            # Every copy's values: whichever copy another reader keeps, its licence applies.
            meta[key] = [v for copy in duplicates[key]
                         for v in (copy if isinstance(copy, list) else [copy])]
            warnings.append(f"'{key}' appears more than once (ambiguous); every copy is kept")
            ambiguous.add(key)
        elif key in _FIELDS:
            warnings.append(f"'{key}' appears more than once (ambiguous); ignored")
            meta.pop(key, None)
            ambiguous.add(key)
    card = _from_meta(meta, warnings)
    return _finish(dataclasses.replace(card, ambiguous=tuple(sorted(ambiguous))))


_LIST_FIELDS = frozenset({"license", "datasets", "base_model", "tags"})
_FIELDS = ("license", "license_name", "license_link", "datasets", "base_model", "library_name",
           "tags", "pipeline_tag")


def _from_meta(meta: dict[str, object], warnings: list[str]) -> ModelCard:
    def text(key: str, limit: int = _MAX_ID) -> str | None:
        value = meta.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            warnings.append(f"'{key}' is not a string; ignored")
            return None
        value = value.strip()
        if len(value) > limit:
            warnings.append(f"'{key}' is longer than {limit} characters; ignored")
            return None
        return value or None

    def texts(key: str) -> tuple[str, ...]:
        value = meta.get(key)
        if value is None:
            return ()
        items: Sequence[object] = [value] if isinstance(value, str) else (
            value if isinstance(value, list) else ())
        if not isinstance(value, (str, list)):
            warnings.append(f"'{key}' is neither a string nor a list; ignored")
            return ()
        if len(items) > _MAX_ITEMS:
            warnings.append(f"'{key}' has {len(items)} entries; only the first {_MAX_ITEMS} kept")
            items = items[:_MAX_ITEMS]
        out: list[str] = []
        bad = 0
        for item in items:
            if isinstance(item, str) and 0 < len(item.strip()) <= _MAX_ID:
                if item.strip() not in out:
                    out.append(item.strip())
            else:
                bad += 1
        if bad:
            warnings.append(f"'{key}': {bad} entries are not short strings; skipped")
        return tuple(out)

    return ModelCard(
        license=texts("license"),
        license_name=text("license_name"),
        license_link=text("license_link", _MAX_URL),
        datasets=texts("datasets"),
        base_model=texts("base_model"),
        library_name=text("library_name"),
        tags=texts("tags"),
        pipeline_tag=text("pipeline_tag"),
        warnings=tuple(warnings),
    )


def _finish(card: ModelCard) -> ModelCard:
    for warning in card.warnings:
        _logger.warning("model card: %s", warning)
    return card


def read_model_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and parse a README.md. Never raises: an unreadable file gives a warning.

    Only regular files are read (a FIFO named README.md would block forever), and only the first
    `MAX_FRONT_MATTER_BYTES` + 8 KiB.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return _finish(ModelCard(warnings=("model card is not a regular file; ignored",)))
            chunks: list[bytes] = []
            remaining = MAX_FRONT_MATTER_BYTES + 8192
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        return _finish(ModelCard(warnings=(f"model card unreadable ({exc.strerror}); ignored",)))
    return parse_model_card(b"".join(chunks))


