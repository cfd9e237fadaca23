"""The gate table: every entry point gives the same verdict on every gate.

Each gate is one way a file must be refused (or a control that must pass). Each entry point is
one way a user reaches a file: `safeload.load`, `load_state_dict`/`from_pretrained`, the guard,
`convert` (a file and a directory), `cache scan`, `cache convert` and `verify`. All of them are
compositions of the same pipeline stages, so a gate that one refuses and another lets through
is a bug in the composition (issue 10: a revoked digest passed `cache scan`; `pickles: refuse`
did not stop `convert`). The base scenario is a signed, trusted pickle in a Hub cache, so the
control is "ok" for every entry point, `verify` included.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

import safeload
from safeload._cli import main
from safeload.convert import convert_directory, convert_file
from safeload.errors import SafeloadError
from safeload.hf import load_state_dict
from safeload.hfcache import BAD_STATUSES, convert_cache, scan_cache
from safeload.licenses import LicensePolicy
from safeload.signing import sign_model
from safeload.trust import Pin, Publisher, RevisionLock, TrustedKey, TrustStore
from safeload.verifying import verify_directory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hf"))
from _hubcache import make_repo  # noqa: E402  (the Hub client's exact layout)

KEYS = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"
REPO = "acme/tiny"
COMMIT = "c" * 40
FILE = "pytorch_model.bin"


def _weights() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    return buf.getvalue()


def _hostile(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1), "x": Payload()}, buf)
    return buf.getvalue()


@dataclass
class Case:
    cache: Path
    snapshot: Path
    marker: Path
    out: Path

    @property
    def file(self) -> Path:
        return self.snapshot / FILE


def _sign(files: dict[str, bytes], tmp: Path, key: str = "p256") -> dict[str, bytes]:
    src = tmp / f"signing-{key}"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    sign_model(src, private_key_pem_path=KEYS / f"{key}.priv.pem")
    return {**files, "model.sig": (src / "model.sig").read_bytes()}


def _build(tmp: Path, weights: bytes, *, signer: str | None = "p256",
           readme: str | None = None) -> Case:
    files = {FILE: weights, "config.json": b"{}"}
    if readme is not None:
        files["README.md"] = readme.encode()
    if signer is not None:
        files = _sign(files, tmp, signer)
    cache = tmp / "cache"
    snap = make_repo(cache, REPO, files, commit=COMMIT)
    out = tmp / "out"
    out.mkdir()
    return Case(cache, snap, tmp / "marker", out)


def _trust_acme(namespaces: tuple[str, ...] = ()) -> None:
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(
        Publisher("acme", namespaces=namespaces, keys=(key,))))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Gates: each builds its case and names what every refusal must mention.


def _control(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights())
    _trust_acme()
    return case, None


def _revoked(tmp: Path) -> tuple[Case, str | None]:
    data = _weights()
    case = _build(tmp, data)
    _trust_acme()
    TrustStore.update(lambda s: s.with_revoked_digest(_sha(data), "known bad"))
    return case, "revoked"


def _pin_mismatch(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights())
    _trust_acme()
    TrustStore.update(lambda s: s.with_pin(Pin("0" * 64, repo=REPO, revision=COMMIT, file=FILE)))
    return case, "pin|digest mismatch"


def _bad_signature(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights(), signer="other-p256")  # a key the store does not trust
    _trust_acme()
    return case, "trust store|not trusted|untrusted"


def _signature_removed(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights())
    _trust_acme()
    safeload.load(case.file)  # a signed load: the location is now known as signed
    (case.snapshot / "model.sig").unlink()
    return case, "signed|signature"


def _namespace_bound(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights(), signer=None)
    _trust_acme(namespaces=("acme/*",))
    return case, "acme"


def _revision_lock(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights())
    _trust_acme()
    TrustStore.update(lambda s: s.with_revision_lock(RevisionLock(REPO, ("d" * 40,))))
    return case, "revision"


def _licence_denied(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights(), readme="---\nlicense: cc-by-nc-4.0\n---\n# tiny\n")
    _trust_acme()
    TrustStore.update(lambda s: s.with_policy(replace(
        s.policy, licenses=LicensePolicy(deny=frozenset({"non-commercial"})))))
    return case, "licen"


def _unsafe_pickle(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _hostile(tmp / "marker"))
    _trust_acme()
    return case, "builtins.open|refused|unsafe"


def _pickles_refuse(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights())
    _trust_acme()
    TrustStore.update(lambda s: s.with_policy(replace(s.policy, pickles="refuse")))
    return case, "pickle"


def _blob_mismatch(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights())
    _trust_acme()
    blob = case.file.resolve()
    buf = io.BytesIO()
    torch.save({"w": torch.full((4,), 9.0)}, buf)
    blob.write_bytes(buf.getvalue())  # its content no longer matches its sha256 name
    return case, "blob|name|match"


def _link_out_of_cache(tmp: Path) -> tuple[Case, str | None]:
    case = _build(tmp, _weights())
    _trust_acme()
    outside = tmp / "elsewhere.bin"
    outside.write_bytes(case.file.read_bytes())
    case.file.unlink()
    case.file.symlink_to(outside)
    return case, "outside|link|blob"


GATES: dict[str, Callable[[Path], tuple[Case, str | None]]] = {
    "control": _control,
    "revoked-digest": _revoked,
    "pin-mismatch": _pin_mismatch,
    "bad-signature": _bad_signature,
    "signature-removed-after-signed-load": _signature_removed,
    "namespace-bound-to-publisher": _namespace_bound,
    "revision-lock": _revision_lock,
    "licence-denied": _licence_denied,
    "unsafe-pickle": _unsafe_pickle,
    "pickles-refuse": _pickles_refuse,
    "blob-name-mismatch": _blob_mismatch,
    "symlink-out-of-cache": _link_out_of_cache,
}


# --------------------------------------------------------------------------------------------
# Entry points: each returns None (ok) or the refusal's text.


def _raises(fn: Callable[[], object]) -> str | None:
    try:
        fn()
    except SafeloadError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _load(case: Case) -> str | None:
    return _raises(lambda: safeload.load(case.file))


def _state_dict(case: Case) -> str | None:
    return _raises(lambda: load_state_dict(REPO, cache_dir=case.cache, local_files_only=True))


def _guard(case: Case) -> str | None:
    def run() -> None:
        with safeload.guard():
            torch.load(case.file)
    return _raises(run)


def _convert_file(case: Case) -> str | None:
    return _raises(lambda: convert_file(case.file, case.out / "model.safetensors"))


def _convert_dir(case: Case) -> str | None:
    result: list[str] = []

    def run() -> None:
        done, refused = convert_directory(case.snapshot, case.out / "dir")
        result.extend(reason for _, reason in refused)
    err = _raises(run)
    return err or ("; ".join(result) if result else None)


def _cache_scan(case: Case) -> str | None:
    scan = scan_cache(case.cache)
    [(_, f)] = [(r, f) for r, f in scan.files() if f.name == FILE]
    cli = main(["cache", "scan", "--cache-dir", str(case.cache), "--json"])
    if f.status in BAD_STATUSES:
        assert cli == 1, f"cache scan reported {f.status} but exited {cli}"
        return f"{f.status}: {'; '.join(f.findings)}"
    assert cli == 0, f"cache scan reported {f.status} but exited {cli}"
    return None


def _cache_convert(case: Case) -> str | None:
    report = convert_cache(case.cache)
    [o] = [o for o in report.outcomes if o.name == FILE]
    if o.action in ("converted", "already-converted"):
        return None
    return f"{o.action}: {o.message}"


def _verify(case: Case) -> str | None:
    verdict = _raises(lambda: verify_directory(case.snapshot))
    code = main(["verify", str(case.snapshot), "--json"])
    assert code == (0 if verdict is None else 1), f"verify said {verdict} but exited {code}"
    return verdict


ENTRY_POINTS: dict[str, Callable[[Case], str | None]] = {
    "load": _load,
    "load_state_dict": _state_dict,
    "guard": _guard,
    "convert-file": _convert_file,
    "convert-directory": _convert_dir,
    "cache-scan": _cache_scan,
    "cache-convert": _cache_convert,
    "verify": _verify,
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("gate", list(GATES))
def test_every_entry_point_gives_the_same_verdict(gate: str, entry: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    case, reason = GATES[gate](tmp_path)
    verdict = ENTRY_POINTS[entry](case)
    capsys.readouterr()
    if reason is None:
        assert verdict is None, f"{entry} refused the control: {verdict}"
    else:
        assert verdict is not None, f"{entry} let a {gate} file through"
        assert re.search(reason, verdict, re.I), f"{entry}: {verdict}"
    assert not case.marker.exists(), f"{entry} ran the payload"
    assert not os.path.exists(case.out / "model.safetensors") or reason is None
