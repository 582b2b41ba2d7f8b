"""Billing months in the tenant's time zone (pure helpers)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcore.store import InvalidValue, month_bounds_ms, month_of


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1000


def test_tokyo_month_starts_nine_hours_before_utc() -> None:
    start = ms(2025, 1, 31, 15, 0)  # 2025-02-01 00:00 in Tokyo (UTC+9)
    assert month_of(start - 1, "Asia/Tokyo") == "2025-01"
    assert month_of(start, "Asia/Tokyo") == "2025-02"
    assert month_of(start, "UTC") == "2025-01", "same instant, still January in UTC"
    assert month_bounds_ms("2025-02", "Asia/Tokyo") == (start, ms(2025, 2, 28, 15, 0))


def test_new_york_month_follows_dst() -> None:
    # March 2025 starts in EST (UTC-5) and ends in EDT (UTC-4, from 9 March).
    start, end = month_bounds_ms("2025-03", "America/New_York")
    assert (start, end) == (ms(2025, 3, 1, 5, 0), ms(2025, 4, 1, 4, 0))
    assert end - start == (31 * 24 - 1) * 3600 * 1000, "one hour shorter"
    assert month_of(end - 1, "America/New_York") == "2025-03"
    assert month_of(end, "America/New_York") == "2025-04"
    assert month_of(ms(2025, 4, 1, 3, 59), "America/New_York") == "2025-03", "UTC is April already"


def test_december_rolls_over_to_next_year() -> None:
    start, end = month_bounds_ms("2024-12", "UTC")
    assert (start, end) == (ms(2024, 12, 1), ms(2025, 1, 1))
    assert month_of(end, "UTC") == "2025-01"


def test_bounds_and_month_of_agree_on_every_month_of_a_year() -> None:
    for m in range(1, 13):
        month = f"2026-{m:02d}"
        for tz in ("Asia/Tokyo", "America/New_York", "Australia/Lord_Howe"):
            start, end = month_bounds_ms(month, tz)
            assert month_of(start, tz) == month and month_of(end - 1, tz) == month
            assert month_of(start - 1, tz) != month


@pytest.mark.parametrize("month", ["2025-13", "2025-1", "25-01", "2025-00", "x", "0000-01", " 2025-01"])
def test_bad_month(month: str) -> None:
    with pytest.raises(InvalidValue, match="YYYY-MM"):
        month_bounds_ms(month, "UTC")


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd"])
def test_bad_zone(tz: str) -> None:
    with pytest.raises(InvalidValue, match="time zone"):
        month_of(0, tz)


ZONES = ["UTC", "Asia/Tokyo", "America/New_York", "Asia/Kolkata", "Pacific/Chatham", "America/Santiago"]


@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.sampled_from(ZONES))
def test_every_instant_lies_in_the_bounds_of_its_month(ms_utc: int, tz: str) -> None:
    start, end = month_bounds_ms(month_of(ms_utc, tz), tz)
    assert start <= ms_utc < end
