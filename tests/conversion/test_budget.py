"""The budget object itself: environment parsing, one scope per file, every bound raises."""

from __future__ import annotations

import pytest
from safeload_conversion.budget import (
    BYTES_ENV,
    DEFAULT_OPS,
    OPS_ENV,
    SECONDS_ENV,
    Budget,
    BudgetExceeded,
    current,
    scope,
)


def test_environment_raises_or_lowers_each_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OPS_ENV, "50_000_000")
    monkeypatch.setenv(BYTES_ENV, "1024")
    monkeypatch.setenv(SECONDS_ENV, "7")
    b = Budget.from_env()
    assert (b.ops, b.bytes, b.seconds) == (50_000_000, 1024, 7.0)


@pytest.mark.parametrize("raw", ["0", "-5", "lots", ""])
def test_nonsense_never_turns_a_bound_off(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(OPS_ENV, raw)
    assert Budget.from_env().ops == DEFAULT_OPS


def test_each_bound_raises_with_its_variable() -> None:
    b = Budget(ops=10, bytes=10, seconds=60)
    b.charge_ops(10)
    with pytest.raises(BudgetExceeded, match=OPS_ENV):
        b.charge_ops(1)
    with pytest.raises(BudgetExceeded, match=BYTES_ENV):
        b.charge_bytes(11)
    with pytest.raises(BudgetExceeded, match=SECONDS_ENV):
        Budget(seconds=-1.0).check_time()


def test_a_nested_scope_charges_the_outer_file() -> None:
    outer = Budget()
    with scope(outer), scope(Budget()) as inner:
        assert inner is outer and current() is outer
    assert current() is None
