"""The repeat-load memo (`safeload/_internal/repeat.py`): a repeat load of an unchanged file
reuses the decision, and every input the decision was read from invalidates it.

Each test counts the admissions (`pipeline.admit`: the licence, the inspection): a memo hit
makes none. Files written by a test are seconds old, so the quiescence window (a write in the
same clock tick keeps the stamps) is set to zero, except in the test that pins it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import safeload
from safeload import pipeline
from safeload._internal import repeat, verify_cache
from safeload.errors import RevokedError, SafeloadError, UnsafeCheckpointError
from safeload.trust import Policy, TrustStore

PACKAGE = Path(safeload.__file__).parent
KEYS = Path(__file__).resolve().parents[1] / "assets" / "oms" / "keys"


@pytest.fixture
def admissions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names admitted so far; the memo is empty and files count as quiescent at once."""
    seen: list[str] = []
    real = pipeline.admit

    def counting(verified: Any, purpose: Any, **kw: Any) -> Any:
        seen.append(verified.held.name)
        return real(verified, purpose, **kw)

    monkeypatch.setattr(pipeline, "admit", counting)
    monkeypatch.setattr(repeat, "QUIESCENT_SECONDS", 0)
    monkeypatch.setattr(verify_cache, "QUIESCENT_SECONDS", 0)
    repeat.forget()
    yield seen
    repeat.forget()


def _st(path: Path, value: float = 1.0) -> Path:
    save_file({"w": torch.full((4,), value)}, str(path))
    return path


def _pt(path: Path, value: float = 1.0) -> Path:
    torch.save({"w": torch.full((4,), value)}, path)
    return path


@pytest.mark.parametrize("write", [_st, _pt], ids=["safetensors", "torch-zip"])
def test_repeat_load_reuses_the_decision_and_reads_the_bytes_again(
        write: Any, tmp_path: Path, admissions: list[str]) -> None:
    path = write(tmp_path / "m.bin")
    first = safeload.load(path)
    second = safeload.load(path)
    assert len(admissions) == 1
    assert torch.equal(first["w"], second["w"])
    first["w"].add_(1)  # a fresh tensor each load: the caller's edits never leak
    assert torch.equal(second["w"], torch.ones(4))


def test_each_repeat_is_counted_in_the_ledger(tmp_path: Path, admissions: list[str]) -> None:
    from safeload.provenance import read_ledger

    path = _st(tmp_path / "m.safetensors")
    for _ in range(3):
        safeload.load(path)
    assert len(admissions) == 1
    records = [r for r in read_ledger().records if r.entry is not None]
    assert sum(r.count for r in records) == 3


def test_strict_mode_decides_and_records_every_load_in_full(tmp_path: Path,
                                                           admissions: list[str]) -> None:
    # strict: a ledger write that fails refuses the load, so a repeat records in full; and no
    # stamp-keyed decision is reused (`tests/pipeline/test_strict_private_copy.py` says why).
    from safeload.provenance import read_ledger
    from safeload.signing import sign_model
    from safeload.trust import Publisher, TrustedKey

    path = _st(tmp_path / "model.safetensors")
    sign_model(tmp_path, private_key_pem_path=KEYS / "p256.priv.pem")
    key = TrustedKey.from_pem((KEYS / "p256.pub.pem").read_bytes())
    TrustStore.update(lambda s: s.with_publisher(Publisher("acme", keys=(key,)))
                      .with_policy(Policy(mode="strict")))
    for _ in range(3):
        safeload.load(path)
    assert len(admissions) == 3
    records = [r for r in read_ledger().records if r.entry is not None]
    assert sum(r.count for r in records) == 3


def test_a_trust_store_edit_is_seen_by_the_next_load(tmp_path: Path,
                                                   admissions: list[str]) -> None:
    path = _st(tmp_path / "m.safetensors")
    safeload.load(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    TrustStore.update(lambda s: s.with_revoked_digest(digest, "known bad"))
    with pytest.raises(RevokedError):
        safeload.load(path)


def test_a_model_card_that_appears_is_read(tmp_path: Path, admissions: list[str]) -> None:
    path = _st(tmp_path / "m.safetensors")
    safeload.load(path)
    safeload.load(path)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# a model\n")
    safeload.load(path)
    assert len(admissions) == 2
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# changed\n")
    safeload.load(path)
    assert len(admissions) == 3


@pytest.fixture
def quiet_folders(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Folders count as quiet at once; `age(folder)` moves a folder's mtime an hour back, so
    that the next write in it (any clock tick) changes its stamp."""
    from safeload._internal import consulted

    monkeypatch.setattr(consulted, "QUIESCENT_SECONDS", 0)

    def age(folder: Path) -> None:
        old = folder.stat().st_mtime - 3600
        os.utime(folder, (old, old))
    return age


def _inputs(path: Path) -> list[tuple[str, str]]:
    (memo,) = [m for k, m in repeat._memo.items() if k[1] == str(path)]
    return [(check.__name__, arg) for check, arg, _ in memo.inputs.inputs]


@pytest.mark.parametrize("name", ["README.md", "m.safetensors.sig", "model.sig"])
def test_a_candidate_that_appears_in_a_quiet_folder_is_read(
        name: str, tmp_path: Path, admissions: list[str], quiet_folders: Any) -> None:
    # One folder stamp stands for every absent candidate in it: creating any one changes it.
    folder = tmp_path / "repo"
    folder.mkdir()
    path = _st(folder / "m.safetensors")
    quiet_folders(folder)
    safeload.load(path)
    assert ("folder_stamp", str(folder)) in _inputs(path)
    assert not [a for c, a in _inputs(path) if a == str(folder / name)]
    safeload.load(path)
    assert len(admissions) == 1
    (folder / name).write_text("---\nlicense: mit\n---\n" if name == "README.md" else "{}")
    try:
        safeload.load(path)
    except SafeloadError:
        assert name != "README.md"  # an invalid bundle is refused before admission
    else:
        assert len(admissions) == 2


def test_absent_names_in_a_folder_modified_moments_ago_are_stamped_one_by_one(
        tmp_path: Path, admissions: list[str]) -> None:
    # The folder was written within the quiet period (same clock tick as a later write,
    # perhaps): its stamp may not change, so each absent candidate keeps its own stamp.
    path = _st(tmp_path / "m.safetensors")
    safeload.load(path)
    inputs = _inputs(path)
    assert ("folder_stamp", str(tmp_path)) not in inputs
    assert ("stat_stamp", str(tmp_path / "README.md")) in inputs


def test_a_dangling_card_link_whose_target_appears_is_read(
        tmp_path: Path, admissions: list[str], quiet_folders: Any) -> None:
    # The name exists (a link to nothing): the folder stamp does not cover where it leads.
    folder, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()  # creating the target changes this folder only
    path = _st(folder / "m.safetensors")
    (folder / "README.md").symlink_to(elsewhere / "card.md")
    quiet_folders(folder)
    quiet_folders(tmp_path)
    safeload.load(path)
    (elsewhere / "card.md").write_text("---\nlicense: mit\n---\n")
    safeload.load(path)
    assert len(admissions) == 2


def test_a_signature_that_appears_is_read(tmp_path: Path, admissions: list[str]) -> None:
    path = _st(tmp_path / "m.safetensors")
    safeload.load(path)
    (tmp_path / "model.sig").write_text("{}")  # not a valid bundle: the next load says so
    with pytest.raises(SafeloadError):
        safeload.load(path)
    assert len(admissions) == 1  # refused at verification, before admission


def test_a_rewritten_file_is_decided_again(tmp_path: Path, admissions: list[str]) -> None:
    path = _st(tmp_path / "m.safetensors")
    safeload.load(path)
    tmp = _st(tmp_path / "new.tmp", 2.0)
    os.replace(tmp, path)
    assert torch.equal(safeload.load(path)["w"], torch.full((4,), 2.0))
    assert len(admissions) == 2


def test_a_swapped_link_is_decided_again(tmp_path: Path, admissions: list[str]) -> None:
    a, b = _st(tmp_path / "a.safetensors", 1.0), _st(tmp_path / "b.safetensors", 2.0)
    link = tmp_path / "model.safetensors"
    link.symlink_to(a)
    safeload.load(link)
    link.unlink()
    link.symlink_to(b)
    assert torch.equal(safeload.load(link)["w"], torch.full((4,), 2.0))
    assert len(admissions) == 2


def test_an_environment_change_is_decided_again(tmp_path: Path, admissions: list[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = _st(tmp_path / "m.safetensors")
    safeload.load(path)
    monkeypatch.setenv("SAFELOAD_MAX_OPS", "12345")
    safeload.load(path)
    assert len(admissions) == 2


def test_a_file_written_moments_ago_is_not_memoised(tmp_path: Path, admissions: list[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repeat, "QUIESCENT_SECONDS", 3600)  # a same-tick write keeps stamps
    path = _st(tmp_path / "m.safetensors")
    safeload.load(path)
    safeload.load(path)
    assert len(admissions) == 2


def test_a_refusal_is_never_memoised(tmp_path: Path, admissions: list[str]) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueR.")  # never run: refused
    for _ in range(2):
        with pytest.raises(UnsafeCheckpointError):
            safeload.load(path)
    assert len(admissions) == 2


def test_a_signed_decision_expires(tmp_path: Path, admissions: list[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A key's validity is time-bound: a signed decision is reused for SIGNED_SECONDS only.
    path = _st(tmp_path / "m.safetensors")
    safeload.load(path)
    memo = next(iter(repeat._memo.values()))
    assert memo.expires == float("inf")  # unsigned: nothing in it expires
    k = next(iter(repeat._memo))
    repeat._memo[k] = repeat.Memo(memo.admitted, memo.inputs, 0.0, memo.receipt, memo.output)
    safeload.load(path)
    assert len(admissions) == 2


# Variables the package reads that cannot change a decision: how a worker is started, where
# telemetry goes, how a conversion is written, the log level; and the sandbox switches, which
# only change how a pickle is converted (its output is checked against the file each time).
HARMLESS = {
    "SAFELOAD_CONVERT_FSYNC", "SAFELOAD_CONVERT_WORKER", "SAFELOAD_DTRACK_API_KEY",
    "SAFELOAD_FORMAT", "SAFELOAD_LEDGER_SEGMENT_BYTES", "SAFELOAD_LOGLEVEL", "SAFELOAD_OTLP",
    "SAFELOAD_SANDBOX_DISABLE", "SAFELOAD_SANDBOX_POLICY", "SAFELOAD_SIGNING_KEY_PASSWORD",
}
_ENV_NAME = re.compile(r"""["']((?:SAFELOAD|HF|HUGGINGFACE|XDG|TORCH)_[A-Z0-9_]+)["']""")


def test_every_environment_variable_is_keyed_or_named_harmless() -> None:
    names: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        names.update(_ENV_NAME.findall(source.read_text(encoding="utf-8")))
    assert names, "the scan found no variables at all"
    unkeyed = sorted(n for n in names - set(repeat.ENVIRONMENT) - HARMLESS
                     if not n.startswith(("HF_HUB_ENABLE", "HF_HUB_DISABLE")))
    assert unkeyed == [], f"add to repeat.ENVIRONMENT or name harmless here: {unkeyed}"
