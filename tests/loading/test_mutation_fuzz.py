"""Hostile bytes never crash or hang a load or a scan: a fixed-seed run of the mutation fuzzer
(benchmarks/fuzz_mutation.py runs the long campaign)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mutation_fuzz import MUTATIONS, fuzz, seeds


def test_every_seed_is_a_valid_file_safeload_loads(tmp_path: Path) -> None:
    import safeload
    from safeload.inspection import inspect_bytes

    for kind, data in seeds(tmp_path).items():  # the fuzzer starts from files that work
        ins = inspect_bytes(data)
        assert ins.verdict == "clean", (kind, ins.findings)
        if "+" in ins.format:
            continue  # a compression wrapper: scanned, never loaded (by design)
        path = tmp_path / f"seed-{kind}"
        path.write_bytes(data)
        safeload.load(path)


def test_mutations_change_the_bytes(tmp_path: Path) -> None:
    import random

    rng = random.Random(1)
    data = seeds(tmp_path)["torch-zip"]
    for name, mutate in MUTATIONS.items():
        assert any(mutate(rng, data) != data for _ in range(5)), name


def test_mutated_files_raise_only_safeload_errors(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="safeload")  # one "unsigned" warning per case
    stats = fuzz(240, tmp_path, seed=20261205, hang_seconds=60)
    assert not stats.escapes, "\n".join(stats.escapes[:3])
    # The run reaches every outcome, not only the archive checksum's refusal.
    assert stats.outcomes["loaded (clean)"] > 0, stats
    assert stats.outcomes["MalformedFileError"] + stats.outcomes["UnsafeCheckpointError"] > 100
