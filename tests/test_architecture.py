"""The layers: imports point down, and there is no import cycle.

Every `import` of every module counts, function-level ones included (a lazy import is still a
dependency). A module may import its own layer or any layer below; `conversion/` (installed as
`safeload_conversion`) never imports `safeload`. Function-level imports of third-party modules
are allowed only for the heavy ones that must stay off the fast paths (`scan` and `trust` start
without torch).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module's layer is the one of its longest listed prefix.
LAYERS: list[tuple[str, ...]] = [
    ("safeload_conversion", "safeload.errors", "safeload._version", "safeload._internal"),
    ("safeload.inspection", "safeload.refusal", "safeload.signing", "safeload.licenses",
     "safeload.modelcard", "safeload._internal.tensors", "safeload._internal.structure",
     "safeload._internal.damage", "safeload._internal.sandbox",
     "safeload._internal.convert_worker"),
    ("safeload.trust", "safeload.provenance", "safeload._internal.record", "safeload.fleet"),
    ("safeload._internal.converter",),
    ("safeload.pipeline",),
    ("safeload.loading", "safeload.hf", "safeload.guard", "safeload.scanning", "safeload.convert",
     "safeload.hfcache", "safeload.sbom", "safeload.verifying", "safeload.bulk",
     "safeload.bulkmerge"),
    ("safeload._cli", "safeload.demo", "safeload.__main__"),
]
# The package's __init__ re-exports the entry points lazily (PEP 562): it sits on top.
TOP = "safeload"

# Third-party modules a function may import lazily: the ones that make `import` slow.
LAZY_THIRD_PARTY = {"torch", "numpy", "cryptography", "huggingface_hub", "yaml", "safetensors",
                    "sigstore", "transformers", "tuf", "tqdm", "concurrent", "blake3",
                    "sigstore_models", "rfc3161_client", "opentelemetry", "joblib",
                    "urllib3"}  # (urllib3: tuf's own transport, with the fleet extra)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "conversion":
        parts[0] = "safeload_conversion"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("safeload", "conversion"):
        for p in sorted((ROOT / top).rglob("*.py")):
            out[_module_name(p)] = p
    return out


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported module, is the import inside a function) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(module, child, is_package)
                for a in child.names:
                    full = f"{base}.{a.name}"
                    out.append((full if full in known else base, in_function))
            visit(child, nested)

    visit(tree, False)
    return out


def _internal(name: str) -> bool:
    return name == TOP or name.startswith(("safeload.", "safeload_conversion"))


def _layer(name: str) -> int:
    if name == TOP:
        return len(LAYERS)
    best, depth = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > depth:
                best, depth = i, len(p)
    assert best >= 0, f"{name} is in no layer: add it to LAYERS"
    return best


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    mods = _modules()
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    lazy_third_party: list[tuple[str, str]] = []
    for m, p in mods.items():
        for target, in_function in _imports(m, p, known):
            if _internal(target):
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != m:
                    graph[m].add(target)
            elif in_function and target.split(".")[0] not in LAZY_THIRD_PARTY:
                lazy_third_party.append((m, target))
    return graph, lazy_third_party


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _package_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


# Being split (issue 10); this list only shrinks.
KNOWN_LONG: set[str] = set()


def test_there_is_no_import_cycle() -> None:
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_imports_point_down_the_layers() -> None:
    graph, _ = _graph()
    upward = sorted(f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
                    for m, targets in graph.items() for t in targets
                    if _layer(t) > _layer(m) and t not in _package_parents(m))
    assert upward == []


def test_conversion_never_imports_safeload() -> None:
    graph, _ = _graph()
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.startswith("safeload_conversion")
                 for t in ts if not t.startswith("safeload_conversion"))
    assert bad == []


def test_lazy_third_party_imports_are_only_the_heavy_ones() -> None:
    _, lazy = _graph()
    stdlib_ok = {"importlib", "time", "grp", "hashlib", "json", "tempfile", "shutil", "contextlib",
                 "dataclasses", "datetime", "functools", "stat", "signal", "subprocess", "io",
                 "zipfile", "tarfile", "gzip", "pickle", "platform", "resource", "ctypes",
                 "errno", "fcntl", "select", "socket", "struct", "threading", "traceback",
                 "warnings", "base64", "binascii", "os", "re", "sys", "math", "getpass",
                 "filelock", "platformdirs", "urllib", "http", "textwrap", "argparse", "types",
                 "collections", "itertools", "inspect", "logging", "weakref", "copy", "uuid",
                 "string", "mmap", "lzma", "bz2", "zlib", "codecs", "unicodedata", "ast",
                 "typing", "pathlib", "random", "secrets", "hmac", "difflib", "fnmatch",
                 "operator", "numbers", "enum", "abc", "atexit", "queue", "multiprocessing",
                 "gc", "ssl", "email", "shlex", "glob", "locale", "array", "heapq", "bisect",
                 "pprint", "calendar", "ipaddress", "html", "xml", "csv", "configparser",
                 "packaging", "cbor2", "pwd", "omegaconf"}
    bad = sorted(f"{m}: {t}" for m, t in lazy if t.split(".")[0] not in stdlib_ok)
    assert bad == []


@pytest.mark.parametrize("limit", [620])
def test_no_module_but_the_machine_and_the_lockdown_is_long(limit: int) -> None:
    exempt = {"safeload_conversion.pickle_vm", "safeload_conversion.sandbox_layers"}
    long = sorted(f"{m}: {len(p.read_text().splitlines())} lines"
                  for m, p in _modules().items()
                  if m not in exempt | KNOWN_LONG and len(p.read_text().splitlines()) > limit)
    assert long == []
