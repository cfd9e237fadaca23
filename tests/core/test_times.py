"""The one ISO 8601 reader behind the trust store, the Sigstore roots and `--since`."""

from __future__ import annotations

import datetime as dt

import pytest

from safeload._internal.times import parse_iso_time

UTC = dt.timezone.utc


@pytest.mark.parametrize(("text", "expected"), [
    ("2030-01-01", dt.datetime(2030, 1, 1, tzinfo=UTC)),
    ("2030-01-01T12:30:00Z", dt.datetime(2030, 1, 1, 12, 30, tzinfo=UTC)),
    ("2030-01-01T12:30:00.25Z", dt.datetime(2030, 1, 1, 12, 30, 0, 250000, tzinfo=UTC)),
    ("2030-01-01T14:30:00+02:00", dt.datetime(2030, 1, 1, 12, 30, tzinfo=UTC)),
    (" 2030-01-01T12:30:00 ", dt.datetime(2030, 1, 1, 12, 30, tzinfo=UTC)),
])
def test_times_read_as_utc(text: str, expected: dt.datetime) -> None:
    got = parse_iso_time(text)
    assert got == expected and got.tzinfo == UTC


def test_a_naive_time_is_refused_where_files_must_name_their_zone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        parse_iso_time("2030-01-01T12:30:00", naive="refuse")
    assert parse_iso_time("2030-01-01", naive="refuse").tzinfo == UTC  # a date is UTC midnight


@pytest.mark.parametrize("text", ["", "tomorrow", "2030-13-01", "2030-01-01T25:00Z"])
def test_not_a_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso_time(text)
