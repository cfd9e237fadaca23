"""CycloneDX 1.6 (or 1.7) JSON export of the provenance ledger (an ML-BOM).

Public and stable: `to_cyclonedx`, `redact_path`. Plain dicts and the stdlib only: validating
the output is the test suite's job (cyclonedx-python-lib's strict JSON validator).

One `machine-learning-model` component per model source (a Hub repo at a revision, or a local
path), however often it was loaded. It carries the hashes, supplier, licences (SPDX ids, else a
name), purl, external references, a `modelCard` when the model card gave datasets or a task, the
base models as `pedigree.ancestors`, and safeload's own facts as `safeload:` properties (the
`cdx:` prefix is reserved). Each file is a nested `file` component; a converted file's
`pedigree.ancestors` is the original it was converted from.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal
from urllib.parse import quote

from safeload._version import __version__
from safeload.licenses import SPDX_IDS
from safeload.provenance import LedgerRecord, ProvenanceEntry, VerifyReport, hf_purl_parts

__all__ = ["redact_path", "to_cyclonedx", "to_inventory"]

SpecVersion = Literal["1.6", "1.7"]
_HF = "https://huggingface.co"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")

# Home folders whose next path element is a user name.
_HOME_PATTERNS = (
    re.compile(r"(?<![\w.-])/home/[^/\s\"']+"),
    re.compile(r"(?<![\w.-])/Users/[^/\s\"']+"),
    re.compile(r"(?<![\w.-])/var/home/[^/\s\"']+"),
    re.compile(r"(?i)\b[A-Z]:\\Users\\[^\\\s\"']+"),
)


def redact_path(text: str) -> str:
    """`text` with home folders (and so user names) replaced by `~`.

    Covers this user's home, `/home/<name>`, `/Users/<name>`, `/var/home/<name>` and
    `C:\\Users\\<name>`, wherever they occur in the string.
    """
    try:
        home = str(Path.home())
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        home = ""
    if len(home) > 1 and home in text:
        text = re.sub(re.escape(home) + r"(?=$|[/\\])", "~", text)
    for pattern in _HOME_PATTERNS:
        text = pattern.sub("~", text)
    return text


def _redact_all(value: Any) -> Any:
    if isinstance(value, str):
        return redact_path(value)
    if isinstance(value, list):
        return [_redact_all(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_all(v) for k, v in value.items()}
    return value


def _hash(sha256: str) -> dict[str, str]:
    return {"alg": "SHA-256", "content": sha256}


def _prop(name: str, value: object) -> dict[str, str]:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return {"name": f"safeload:{name}", "value": str(value)}


def _basename(path: str) -> str:
    win = PureWindowsPath(path)
    return (win.name if "\\" in path else PurePosixPath(path).name) or path


def _url(*segments: str) -> str:
    return _HF + "/" + "/".join(quote(s, safe="/._-~") for s in segments)


class _Model:
    """The facts gathered for one model source across all of its ledger entries."""

    def __init__(self, key: str, entry: ProvenanceEntry) -> None:
        self.key = key
        self.latest = entry
        self.files: dict[tuple[str, str], ProvenanceEntry] = {}
        self.actions: set[str] = set()
        self.seqs: list[int] = []
        self.last_digest: str | None = None
        self.first_time = entry.time
        self.warnings: dict[str, None] = {}

    def add(self, entry: ProvenanceEntry, seq: int | None, digest: str | None) -> None:
        self.latest = entry
        self.actions.add(entry.action)
        if seq is not None:
            self.seqs.append(seq)
        if digest is not None:
            self.last_digest = digest
        for f in entry.files:
            self.files[(f.path, f.sha256)] = entry
        for w in entry.warnings:
            self.warnings[w] = None


def _source_key(entry: ProvenanceEntry) -> str:
    src = entry.source
    if src.purl:
        return src.purl
    return "path:" + (src.path or "")


def to_cyclonedx(
    records: Iterable[LedgerRecord | ProvenanceEntry],
    *,
    redact_paths: bool = False,
    spec_version: SpecVersion = "1.6",
    report: VerifyReport | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """A CycloneDX BOM (as a JSON-ready dict) of the models in `records`.

    Args:
        records: ledger records (from `read_ledger`) or bare entries, oldest first.
        redact_paths: replace home folders (user names) everywhere in the document.
        spec_version: "1.6" (default, the most widely supported ML-BOM) or "1.7".
        report: the ledger's verification report, recorded in the metadata when given.
        timestamp: the BOM's timestamp (default: now).
    """
    models: dict[str, _Model] = {}
    for item in records:
        if isinstance(item, LedgerRecord):
            if item.entry is None:
                continue
            entry, seq, digest = item.entry, item.seq, item.digest
        else:
            entry, seq, digest = item, None, None
        key = _source_key(entry)
        model = models.get(key)
        if model is None:
            model = models[key] = _Model(key, entry)
        model.add(entry, seq, digest)

    used_refs = _Refs(redact_paths)
    components = [_component(m, used_refs) for m in models.values()]
    when = (timestamp or datetime.now(timezone.utc)).astimezone(timezone.utc)
    metadata: dict[str, Any] = {
        "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lifecycles": [{"phase": "operations"}],
        "tools": {"components": [
            {"type": "application", "name": "safeload", "version": __version__}]},
    }
    if report is not None:
        props = [_prop("ledger:verified", report.ok), _prop("ledger:entries", report.entries)]
        if report.head:
            props.append(_prop("ledger:head", report.head))
        if report.first_bad is not None:
            props.append(_prop("ledger:first-bad", report.first_bad.describe()))
        metadata["properties"] = props
    bom: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": spec_version,
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": metadata,
        "components": components,
    }
    return _redact_all(bom) if redact_paths else bom


class _Refs(set[str]):
    """The BOM's bom-refs, kept unique; redacted before the check, so that /home/a/m and
    /home/b/m (both ~/m once redacted) still get distinct refs."""

    def __init__(self, redact: bool) -> None:
        super().__init__()
        self.redact = redact

    def new(self, ref: str) -> str:
        base = redact_path(ref) if self.redact else ref
        candidate, n = base, 1
        while candidate in self:
            n += 1
            candidate = f"{base}#{n}"
        self.add(candidate)
        return candidate


def _hub_identity(comp: dict[str, Any], hf: tuple[str | None, str, str | None]
                  ) -> tuple[str, str | None]:
    """Set a Hub model's group, name and version on `comp`; (repo id, revision)."""
    namespace, name, revision = hf
    if namespace:
        comp["group"] = namespace
    comp["name"] = name
    if revision:
        comp["version"] = revision
    return (f"{namespace}/{name}" if namespace else name), revision


def _component(model: _Model, used: _Refs) -> dict[str, Any]:
    entry = model.latest
    src = entry.source
    hf = hf_purl_parts(src.purl) if src.purl else None
    comp: dict[str, Any] = {"type": "machine-learning-model"}
    props: list[dict[str, str]] = []
    ext: list[dict[str, Any]] = []
    repo: str | None = None
    if src.purl:
        comp["bom-ref"] = used.new(src.purl)
        if hf is not None:
            repo, revision = _hub_identity(comp, hf)
            ext.append({"type": "vcs", "url": _url(repo)})
            if revision:
                ext.append({"type": "model-card", "url": _url(repo, "blob", revision,
                                                              "README.md")})
        else:
            comp["name"] = src.purl
        comp["purl"] = src.purl
        if src.file:
            props.append(_prop("source:file", src.file))
    else:
        path = src.path or ""
        comp["bom-ref"] = used.new("local:" + path)
        comp["name"] = _basename(path)
        props.append(_prop("source:path", path))

    supplier = _supplier(entry, repo)
    if supplier:
        comp["supplier"] = supplier
    if entry.license is not None and entry.license.source != "none":
        # No licence in the card: say nothing (CycloneDX's "unknown"), not a made-up name.
        comp["licenses"] = _licenses(entry)
    if len(model.files) == 1:
        ((_path, sha), ) = model.files.keys()
        comp["hashes"] = [_hash(sha)]
    if ext:
        comp["externalReferences"] = ext

    card = _model_card(entry)
    if card:
        comp["modelCard"] = card
    if entry.base_model:
        comp["pedigree"] = {"ancestors": [
            _base_model(b, comp["bom-ref"], i, used) for i, b in enumerate(entry.base_model)]}

    sig = entry.signature
    props.append(_prop("signature:status", sig.status))
    for label, value in (("publisher", sig.publisher), ("key", sig.key_id),
                         ("method", sig.method)):
        if value:
            props.append(_prop(f"signature:{label}", value))
    for k in ("identity", "issuer", "log_index", "signed_time", "integrated_time",
              "sigstore_root", "sigstore_root_sha256"):  # keyless signatures only
        if sig.keyless and sig.keyless.get(k) is not None:
            props.append(_prop(f"signature:keyless:{k}", str(sig.keyless[k])))
    if sig.reupload:
        props.append(_prop("signature:reupload", "true"))
    props += [_prop("trust:mode", entry.trust.mode), _prop("trust:pin", entry.trust.pin)]
    props += _store_props(entry)
    if entry.license is not None:
        props += [_prop("license:class", entry.license.license_class),
                  _prop("license:source", entry.license.source)]
    if entry.publisher is not None:
        if entry.publisher.namespace:
            props.append(_prop("publisher:namespace", entry.publisher.namespace))
        props += [_prop("publisher:trusted", entry.publisher.trusted),
                  _prop("publisher:signature-verified", entry.publisher.signature_verified)]
    props += [_prop("actions", ",".join(sorted(model.actions))),
              _prop("first-seen", model.first_time), _prop("last-seen", entry.time),
              _prop("safeload-version", entry.safeload_version)]
    if model.seqs:
        props += [_prop("ledger:first-seq", model.seqs[0]),
                  _prop("ledger:last-seq", model.seqs[-1]),
                  _prop("ledger:count", len(model.seqs))]
    if model.last_digest:
        props.append(_prop("ledger:last-digest", model.last_digest))
    props += [_prop("warning", w) for w in model.warnings]
    comp["properties"] = props

    files = [_file_component(path, sha, owner, comp["bom-ref"], repo, used)
             for (path, sha), owner in model.files.items()]
    if files:
        comp["components"] = files
    return comp


def _store_props(entry: ProvenanceEntry) -> list[dict[str, str]]:
    """The trust store the entry was judged by (its sha256; a fleet store's TUF identity)."""
    store = entry.trust.store
    if store is None:
        return []
    props = [_prop("trust:store-sha256", store["sha256"])]
    tuf = store.get("tuf")
    if isinstance(tuf, dict):
        props += [_prop(f"trust:tuf:{k.replace('_', '-')}", tuf[k])
                  for k in ("url", "target", "targets_version", "sha256", "serial") if k in tuf]
    return props


def _supplier(entry: ProvenanceEntry, repo: str | None) -> dict[str, Any] | None:
    sig, pub = entry.signature, entry.publisher
    name = sig.publisher if sig.status == "verified" and sig.publisher else None
    namespace = pub.namespace if pub is not None and pub.namespace else None
    if namespace is None and repo is not None and "/" in repo:
        namespace = repo.split("/", 1)[0]
    if name is None:
        name = namespace
    if name is None:
        return None
    supplier: dict[str, Any] = {"name": name}
    if namespace is not None and repo is not None:
        supplier["url"] = [_url(namespace)]
    return supplier


def _licenses(entry: ProvenanceEntry) -> list[dict[str, Any]]:
    lic = entry.license
    assert lic is not None
    ids = lic.id.split(" AND ")
    if len(ids) > 1:
        # Several licences from the card all apply: an SPDX expression says so exactly.
        return [{"expression": lic.id, "acknowledgement": "declared"}]
    body: dict[str, Any] = {"acknowledgement": "declared"}
    if lic.id in SPDX_IDS:
        body["id"] = lic.id
    else:
        # The validator accepts only listed SPDX ids in `id`; anything else goes by name.
        body["name"] = lic.name or lic.id
    url = _safe_url(lic.url)
    if url:
        body["url"] = url
    return [{"license": body}]


def _safe_url(url: str | None) -> str | None:
    """An http(s) URL from a model card, percent-encoded so it is a valid IRI reference."""
    if not url or not re.match(r"(?i)https?://[^/\s]", url):
        return None
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")


def _model_card(entry: ProvenanceEntry) -> dict[str, Any] | None:
    params: dict[str, Any] = {}
    if entry.task:
        params["task"] = entry.task
    if entry.datasets:
        datasets = []
        for name in entry.datasets:
            item: dict[str, Any] = {"type": "dataset", "name": name}
            if _HUB_ID.fullmatch(name):
                item["contents"] = {"url": _url("datasets", name)}
            datasets.append(item)
        params["datasets"] = datasets
    return {"modelParameters": params} if params else None


def _base_model(name: str, parent_ref: str, index: int, used: _Refs) -> dict[str, Any]:
    ancestor: dict[str, Any] = {
        "type": "machine-learning-model", "name": name,
        "bom-ref": used.new(f"{parent_ref}#base:{index}"),
    }
    if _HUB_ID.fullmatch(name):
        namespace, _, short = name.rpartition("/")
        ancestor["purl"] = "pkg:huggingface/" + (
            f"{quote(namespace, safe='')}/" if namespace else "") + quote(short, safe="")
        ancestor["externalReferences"] = [{"type": "vcs", "url": _url(name)}]
    return ancestor


def _origin_link(path: str | None, sha256: str, entry: ProvenanceEntry,
                 repo: str | None) -> dict[str, Any]:
    """A distribution link for an original that came from the Hub (a repo file)."""
    parts = hf_purl_parts(entry.source.purl or "")
    if repo is None or path is None or parts is None or not parts[2] or path.startswith("/"):
        return {}
    return {"externalReferences": [{
        "type": "distribution", "url": _url(repo, "resolve", parts[2], path),
        "hashes": [_hash(sha256)]}]}


def _file_component(path: str, sha256: str, entry: ProvenanceEntry, parent_ref: str,
                    repo: str | None, used: _Refs) -> dict[str, Any]:
    record = next(f for f in entry.files if f.path == path and f.sha256 == sha256)
    comp: dict[str, Any] = {
        "type": "file",
        "bom-ref": used.new(f"{parent_ref}#{path}@{sha256[:12]}"),
        "name": path if repo is not None else _basename(path),
        "hashes": [_hash(sha256)],
        "properties": [_prop("file:format", record.format), _prop("file:size", record.size)],
    }
    revision = hf_purl_parts(entry.source.purl or "")
    if repo is not None and revision is not None and revision[2] and entry.converted_from is None:
        comp["externalReferences"] = [{
            "type": "distribution", "url": _url(repo, "resolve", revision[2], path),
            "hashes": [_hash(sha256)]}]
    if repo is None:
        comp["properties"].append(_prop("file:path", path))
    conv = entry.converted_from
    if conv is not None:
        original = conv.path or f"original.{conv.format}"
        layers = ",".join(conv.sandbox_layers) or "none"
        comp["pedigree"] = {
            "ancestors": [{
                "type": "file",
                "bom-ref": used.new(f"{parent_ref}#{original}@{conv.sha256[:12]}"),
                "name": _basename(original),
                "hashes": [_hash(conv.sha256)],
                "properties": [_prop("file:format", conv.format)],
                **_origin_link(conv.path, conv.sha256, entry, repo),
            }],
            "notes": (f"{conv.format}->{record.format} by safeload {entry.safeload_version} "
                      f"at {entry.time}; sandbox layers: {layers}"),
        }
        comp["properties"] += [_prop("conversion:time", entry.time),
                               _prop("sandbox:layers", layers)]
    return comp


# --------------------------------------------------------------------------------------------
# Inventory: the set of models in use, for Dependency-Track


_INVENTORY_ACTIONS = frozenset({"load", "from_pretrained", "convert"})


class _Artifact:
    """One artifact digest in use, across all the entries that loaded it."""

    def __init__(self, entry: ProvenanceEntry, sha256: str) -> None:
        self.sha256 = sha256
        self.first = entry
        self.latest = entry
        self.loads = 0
        self.actions: set[str] = set()
        self.sources: dict[str, None] = {}

    def add(self, entry: ProvenanceEntry, count: int) -> None:
        self.latest = entry
        self.loads += count
        self.actions.add(entry.action)
        self.sources[_source_key(entry)] = None


def _artifact(entry: ProvenanceEntry) -> str | None:
    if entry.converted_from is not None:
        return entry.converted_from.sha256
    return entry.files[0].sha256 if entry.files else None


def _generic_purl(name: str, sha256: str) -> str:
    return (f"pkg:generic/{quote(name or 'model', safe='.-_~')}"
            f"?checksum=sha256:{sha256}")


def to_inventory(
    records: Iterable[LedgerRecord],
    *,
    service: str,
    redact_paths: bool = False,
    timestamp: datetime | None = None,
    report: VerifyReport | None = None,
) -> dict[str, Any]:
    """A CycloneDX 1.6 ML-BOM of the models in use: one component per artifact digest.

    What a Dependency-Track project holds: the BOM replaces the project's components on
    upload, so it is the deduplicated set over the window the caller chose, not one load.
    Every component has a purl (`pkg:huggingface/<ns>/<name>@<commit>#<file>` for a Hub file,
    else `pkg:generic/<file name>?checksum=sha256:<digest>`) and its SHA-256. Loads, converts
    and from_pretrained count as use; `verify` entries do not.
    """
    found: dict[str, _Artifact] = {}
    for r in records:
        entry = r.entry
        if entry is None or entry.action not in _INVENTORY_ACTIONS:
            continue
        sha = _artifact(entry)
        if sha is None:
            continue
        art = found.get(sha)
        if art is None:
            art = found[sha] = _Artifact(entry, sha)
        art.add(entry, r.count)
    components = [_inventory_component(a) for _, a in sorted(found.items())]
    bom = to_cyclonedx([], spec_version="1.6", report=report, timestamp=timestamp)
    bom["metadata"]["component"] = {"type": "application", "bom-ref": "service",
                                    "name": service}
    bom["components"] = components
    return _redact_all(bom) if redact_paths else bom


def _inventory_component(art: _Artifact) -> dict[str, Any]:
    entry = art.latest
    src = entry.source
    hf = hf_purl_parts(src.purl) if src.purl else None
    comp: dict[str, Any] = {"type": "machine-learning-model", "bom-ref": f"sha256:{art.sha256}"}
    props: list[dict[str, str]] = []
    repo: str | None = None
    original = entry.converted_from.path if entry.converted_from else None
    if hf is not None and src.purl:
        repo, _revision = _hub_identity(comp, hf)
        file = src.file or ""
        comp["purl"] = src.purl.split("#", 1)[0] + (
            "#" + "/".join(quote(p, safe=".-_~") for p in file.split("/") if p) if file else "")
        if file:
            props.append(_prop("source:file", file))
        comp["externalReferences"] = [{"type": "vcs", "url": _url(repo)}]
    else:
        path = original or src.path or (entry.files[0].path if entry.files else "")
        comp["name"] = _basename(path) or "model"
        comp["purl"] = _generic_purl(comp["name"], art.sha256)
        props += [_prop("source:path", p.removeprefix("path:")) for p in art.sources]
    comp["hashes"] = [_hash(art.sha256)]
    supplier = _supplier(entry, repo)
    if supplier:
        comp["supplier"] = supplier
    if entry.license is not None and entry.license.source != "none":
        comp["licenses"] = _licenses(entry)
    if entry.converted_from is not None and entry.files:
        props += [_prop("converted-to:sha256", entry.files[0].sha256),
                  _prop("sandbox:layers", ",".join(entry.converted_from.sandbox_layers)
                        or "none")]
    props += [_prop("signature:status", entry.signature.status)]
    if entry.signature.publisher:
        props.append(_prop("signature:publisher", entry.signature.publisher))
    props += [_prop("trust:mode", entry.trust.mode), _prop("trust:pin", entry.trust.pin),
              *_store_props(entry),
              _prop("actions", ",".join(sorted(art.actions))), _prop("loads", art.loads),
              _prop("first-seen", art.first.time), _prop("last-seen", entry.time)]
    comp["properties"] = props
    return comp
