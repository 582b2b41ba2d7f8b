"""Per-leg rounding of minute metrics (METERING.md: "the increment (minutes per
second / per 6 s / per minute, per leg before summing)"; issue 5's edge cases)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sipcore.rating import Increment, Leg, Usage, parse_plan, rate

D = Decimal


def plan_with(increment: str, min_seconds: int = 0, price: str = "0.60") -> str:
    return f"""
name = "t"
currency = "USD"
[metrics."voice.minutes"]
unit_price = "{price}"
increment = "{increment}"
min_seconds = {min_seconds}
"""


@pytest.mark.parametrize(("seconds", "billed"), [(29, 30), (30, 30), (31, 36), (32, 36), (57, 60), (75, 78)])
def test_30_6(seconds: int, billed: int) -> None:
    """First 30 s, then started 6 s steps."""
    assert Increment(30, 6).billed_seconds(seconds * 1000) == billed


@pytest.mark.parametrize(
    ("duration_ms", "billed"), [(1, 1), (999, 1), (1000, 1), (1001, 2), (59_999, 60), (61_000, 61)]
)
def test_1_1_a_started_second_counts(duration_ms: int, billed: int) -> None:
    assert Increment(1, 1).billed_seconds(duration_ms) == billed


@pytest.mark.parametrize(("seconds", "billed"), [(1, 60), (59, 60), (60, 60), (61, 120), (120, 120), (121, 180)])
def test_60_60_whole_minutes(seconds: int, billed: int) -> None:
    assert Increment(60, 60).billed_seconds(seconds * 1000) == billed


@pytest.mark.parametrize(("seconds", "billed"), [(1, 6), (6, 6), (7, 12), (13, 18)])
def test_6_6(seconds: int, billed: int) -> None:
    assert Increment(6, 6).billed_seconds(seconds * 1000) == billed


@pytest.mark.parametrize(
    ("inc", "min_s", "seconds", "billed"),
    [
        (Increment(1, 1), 10, 3, 10),  # below the minimum: the minimum
        (Increment(1, 1), 10, 10, 10),
        (Increment(1, 1), 10, 11, 11),  # above it: the increment alone
        (Increment(6, 6), 10, 3, 12),  # the minimum, then rounded up to a 6 s step
        (Increment(30, 6), 45, 5, 48),  # 45 s minimum -> 30 + 3 x 6
    ],
)
def test_minimum_billable_seconds(inc: Increment, min_s: int, seconds: int, billed: int) -> None:
    assert inc.billed_seconds(seconds * 1000, min_s) == billed


@pytest.mark.parametrize("inc", [Increment(1, 1), Increment(30, 6), Increment(60, 60)])
def test_a_leg_without_answered_time_bills_nothing_even_with_a_minimum(inc: Increment) -> None:
    assert inc.billed_seconds(0, 60) == 0


def test_the_issue_edge_cases_through_the_engine() -> None:
    """29+30+31+32+57+75 s at 30/6 bill 30+30+36+36+60+78 = 270 s = 4.5 minutes."""
    plan = parse_plan(plan_with("30/6"), "t.toml")
    legs = tuple(Leg("voice.minutes", s * 1000) for s in (29, 30, 31, 32, 57, 75))
    line = rate(Usage("2026-01", legs=legs), plan).line("voice.minutes")
    assert line.quantity == D("4.5")
    assert line.amount == D("2.70")  # 4.5 x $0.60


def test_rounding_is_per_leg_before_summing() -> None:
    plan = parse_plan(plan_with("30/6"), "t.toml")
    two = rate(Usage("2026-01", legs=(Leg("voice.minutes", 31_000), Leg("voice.minutes", 31_000))), plan)
    # 36 + 36 = 72 s; rounding the 62 s sum instead would give 66 s.
    assert two.line("voice.minutes").quantity == D("1.2")


def test_count_of_identical_legs_equals_the_legs_one_by_one() -> None:
    plan = parse_plan(plan_with("60/60", price="0.01"), "t.toml")
    grouped = rate(Usage("2026-01", legs=(Leg("voice.minutes", 61_000, count=1000),)), plan)
    single = rate(Usage("2026-01", legs=tuple(Leg("voice.minutes", 61_000) for _ in range(1000))), plan)
    assert grouped.line("voice.minutes").quantity == single.line("voice.minutes").quantity == 2000
    assert grouped.total == single.total == D("20.00")


def test_1_1_minutes_are_exact_in_the_amount_and_shown_to_six_places() -> None:
    # 61 s = 1.0166... minutes; 3 legs = 183 s = 3.05 minutes exactly.
    plan = parse_plan(plan_with("1/1", price="0.60"), "t.toml")
    one = rate(Usage("2026-01", legs=(Leg("voice.minutes", 61_000),)), plan).line("voice.minutes")
    assert one.quantity == D("1.016667")
    assert one.amount == D("0.61")  # 61/60 x 0.60 = 0.61 exactly
    three = rate(Usage("2026-01", legs=(Leg("voice.minutes", 61_000, count=3),)), plan).line("voice.minutes")
    assert three.quantity == D("3.05") and three.amount == D("1.83")
