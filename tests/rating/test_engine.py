"""The rating engine's rules: packs, allowances, convert, block, proration,
time zones, tax (engine.py's theory of operation, METERING.md "Rating")."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from sipcore.metering.months import month_bounds_ms, month_of
from sipcore.rating import Count, Leg, Plan, PlanPeriod, RatingError, Usage, parse_plan, quote, rate, rate_periods
from sipcore.rating.usage import day_start_ms, days_in_month

from .conftest import ms

D = Decimal
Load = Callable[[str], Plan]


def plan(body: str, name: str = "t", head: str = "") -> Plan:
    return parse_plan(f'name = "{name}"\ncurrency = "USD"\n{head}\n{body}', f"{name}.toml")


# ------------------------------------------------------------------------ packs


@pytest.mark.parametrize(("over", "packs"), [(0, 0), (1, 1), (99, 1), (100, 1), (101, 2), (200, 2), (201, 3)])
def test_started_packs_of_100(shipped: Load, over: int, packs: int) -> None:
    """000/001: messages are charged per started pack of 100 above the included ones."""
    inv = quote(shipped("voximplant-small"), {"messages": 100_000 + over})
    line = inv.line("messages")
    assert line.billable == over
    assert line.units == packs
    assert line.unit == "pack of 100 messages"
    assert line.amount == packs * D("0.20")


def test_packs_without_included_quantity() -> None:
    p = plan('[metrics.messages]\npack_size = 100\nunit_price = "1.00"')
    assert [quote(p, {"messages": n}).total for n in (99, 100, 101)] == [D("1.00"), D("1.00"), D("2.00")]


def test_price_per_is_proportional_not_per_started_unit(shipped: Load) -> None:
    # 1.5 GB over the mesibo quota costs 1.5 x $0.90, not 2 x $0.90.
    inv = quote(shipped("mesibo-payg"), {"mau": 25_000, "signaling.bytes_out": 6_500_000_000})
    assert inv.line("signaling.bytes_out").units == D("1.5")
    assert inv.line("signaling.bytes_out").amount == D("1.35")


# ------------------------------------------------------------------- allowances


def test_allowance_derived_from_the_months_mau() -> None:
    p = plan(
        """
[metrics.mau]
unit_price = "0"
[metrics."connections.peak"]
allowance = { metric = "mau", percent = "5", basis = "usage" }
unit_price = "1.00"
"""
    )
    assert quote(p, {"mau": 2000, "connections.peak": 100}).line("connections.peak").included == 100
    assert quote(p, {"mau": 2000, "connections.peak": 100}).total == 0
    assert quote(p, {"mau": 2000, "connections.peak": 130}).total == D("30.00")
    # The allowance follows usage: more MAU, more connections allowed.
    assert quote(p, {"mau": 4000, "connections.peak": 130}).total == 0
    # No MAU at all: no allowance, every connection is charged.
    assert quote(p, {"connections.peak": 3}).total == D("3.00")


def test_allowance_is_exact_not_rounded_to_whole_units() -> None:
    """5 % of 1,010 MAU is 50.5 connections: a peak of 51 bills half a connection.
    Rounding it would break 003's 'MAU = connections x 10' (see the next test)."""
    p = plan(
        """
[metrics."connections.peak"]
allowance = { metric = "mau", percent = "5", basis = "usage" }
unit_price = "1.00"
"""
    )
    line = quote(p, {"mau": 1010, "connections.peak": 51}).line("connections.peak")
    assert (line.included, line.billable, line.amount) == (D("50.5"), D("0.5"), D("0.50"))


@pytest.mark.parametrize(("mau", "peak"), [(30_000, 3_500), (30_005, 3_001), (21_999, 2_201), (100_001, 10_001)])
def test_convert_gives_mau_equal_to_connections_times_ten_for_any_mau(shipped: Load, mau: int, peak: int) -> None:
    inv = quote(shipped("mesibo-payg"), {"mau": mau, "connections.peak": peak})
    assert inv.line("mau").quantity == peak * 10
    assert inv.line("mau").converted == peak * 10 - mau
    assert inv.line("connections.peak").amount == 0  # billed through mau, never twice
    assert "billed as" in inv.line("connections.peak").note


def test_convert_excess_into_another_metric_with_a_factor() -> None:
    p = plan(
        """
[metrics.messages]
unit_price = "0.01"
[metrics."connections.peak"]
included = 10
over = "convert"
convert = { metric = "messages", factor = "2.5" }
"""
    )
    inv = quote(p, {"messages": 100, "connections.peak": 14})
    assert inv.line("messages").quantity == 110  # 100 + (14 - 10) x 2.5
    assert inv.total == D("1.10")


# ------------------------------------------------------------------------ block


def test_block_metric_above_its_limit_shows_the_excess_and_charges_nothing(shipped: Load) -> None:
    """Decision: the server refuses what exceeds a block limit (403), so usage
    above it means enforcement leaked (a race, a restart, a child account).
    The invoice shows it -- quantity, billable 0, over_limit, a note and a
    warning -- and never bills it: a free plan never costs money."""
    inv = quote(shipped("voximplant-free"), {"mau": 1_250})
    line = inv.line("mau")
    assert (line.quantity, line.included, line.billable, line.over_limit) == (1_250, 1_000, 0, 250)
    assert line.amount == D("0.00") and line.units == 0
    assert "not charged" in line.note
    assert inv.warnings == (
        "voximplant-free: mau is 1250, 250 above its block limit of 1000; the excess is not charged",
    )
    assert inv.total == D("0.00")


# -------------------------------------------------------------------- proration

A = """
base_fee = "31.00"
[metrics."devices.provisioned.peak"]
unit_price = "3.10"
[metrics."voice.minutes"]
unit_price = "1.00"
increment = "60/60"
"""
B = """
base_fee = "62.00"
[metrics."devices.provisioned.peak"]
unit_price = "6.20"
[metrics."voice.minutes"]
unit_price = "2.00"
increment = "60/60"
"""


def test_proration_across_a_31_day_month_with_a_change_on_the_16th() -> None:
    """Days 1-15 on plan a, 16-31 on plan b: base fees and capacity (peaks) by
    days, usage by the plan in force when it happened (001)."""
    a, b = plan(A, "a"), plan(B, "b")
    assert days_in_month("2026-01") == 31
    u = Usage(
        "2026-01",
        counts=(
            Count("devices.provisioned.peak", D(10), at_ms=ms(2026, 1, 2)),
            Count("devices.provisioned.peak", D(10), at_ms=ms(2026, 1, 16)),
        ),
        legs=(
            Leg("voice.minutes", 60_000, at_ms=ms(2026, 1, 15, 23, 59, 59)),  # last second of plan a
            Leg("voice.minutes", 60_000, at_ms=ms(2026, 1, 16)),  # first instant of plan b
            Leg("voice.minutes", 60_000, at_ms=ms(2026, 1, 31, 23, 59, 59)),
        ),
    )
    inv = rate_periods(u, [PlanPeriod(a, 1), PlanPeriod(b, 16)])
    assert inv.line("base", "a").amount == D("15.00")  # 31.00 x 15/31
    assert inv.line("base", "b").amount == D("32.00")  # 62.00 x 16/31
    assert inv.line("devices.provisioned.peak", "a").amount == D("15.00")  # 10 x 3.10 x 15/31
    assert inv.line("devices.provisioned.peak", "b").amount == D("32.00")  # 10 x 6.20 x 16/31
    assert (inv.line("base", "b").days, inv.line("base", "b").month_days) == (16, 31)
    assert inv.line("voice.minutes", "a").quantity == 1
    assert inv.line("voice.minutes", "b").quantity == 2
    assert inv.total == D("15.00") + D("32.00") + D("15.00") + D("32.00") + D("1.00") + D("4.00")


def test_a_plan_in_force_all_month_is_not_prorated() -> None:
    inv = rate_periods(Usage("2026-02"), [PlanPeriod(plan(A, "a"), 1)])
    assert inv.line("base").amount == D("31.00")
    assert (inv.line("base").days, inv.line("base").note) == (0, "")


def test_proration_none_charges_the_full_month() -> None:
    a = plan(A, "a", head='proration = "none"')
    b = plan(B, "b", head='proration = "none"')
    inv = rate_periods(Usage("2026-01"), [PlanPeriod(a, 1), PlanPeriod(b, 16)])
    assert [x.amount for x in inv.lines if x.metric == "base"] == [D("31.00"), D("62.00")]


def test_a_tenant_created_mid_month_pays_from_its_first_day() -> None:
    inv = rate_periods(Usage("2026-04"), [PlanPeriod(plan(B, "b"), 21)])  # April: 30 days, 10 in force
    assert inv.line("base").amount == D("20.67")  # 62 x 10/30 = 20.666...
    with pytest.raises(RatingError, match="outside"):
        rate_periods(
            Usage("2026-04", legs=(Leg("voice.minutes", 1000, at_ms=ms(2026, 4, 20)),)), [PlanPeriod(plan(B), 21)]
        )


def test_minimum_charge_is_prorated_like_the_base_fee() -> None:
    p = plan('[metrics.mau]\nunit_price = "0.01"', head='minimum_charge = "31.00"')
    inv = rate_periods(Usage("2026-01"), [PlanPeriod(plan("", "before"), 1), PlanPeriod(p, 16)])
    assert inv.line("minimum").amount == D("16.00")  # 31 x 16/31, nothing else charged


def test_a_record_without_at_ms_is_refused_when_the_plan_changed() -> None:
    with pytest.raises(RatingError, match="no at_ms"):
        rate_periods(
            Usage("2026-01", counts=(Count("mau", D(5)),)), [PlanPeriod(plan(A, "a")), PlanPeriod(plan(B), 16)]
        )


@pytest.mark.parametrize("days", [(16, 16), (16, 1), (1, 32), (0,)])
def test_plan_periods_must_increase_within_the_month(days: tuple[int, ...]) -> None:
    with pytest.raises(RatingError, match="days must increase"):
        rate_periods(Usage("2026-01"), [PlanPeriod(plan(A), d) for d in days])


def test_plans_of_one_invoice_share_a_currency() -> None:
    eur = parse_plan('name = "e"\ncurrency = "EUR"', "e.toml")
    with pytest.raises(RatingError, match="currency"):
        rate_periods(Usage("2026-01"), [PlanPeriod(plan(A)), PlanPeriod(eur, 10)])


# -------------------------------------------------------------------- time zones


def test_a_leg_at_the_month_boundary_east_of_utc() -> None:
    """2026-01-31T20:00Z is already February in Tokyo (UTC+9): the leg belongs
    to Tokyo's February invoice and to UTC's January one, as metering says."""
    at = ms(2026, 1, 31, 20)
    assert (month_of(at, "Asia/Tokyo"), month_of(at, "UTC")) == ("2026-02", "2026-01")
    p = plan('[metrics."voice.minutes"]\nunit_price = "1.00"\nincrement = "60/60"')
    leg = (Leg("voice.minutes", 60_000, at_ms=at),)
    assert rate(Usage("2026-02", "Asia/Tokyo", legs=leg), p).total == D("1.00")
    assert rate(Usage("2026-01", "UTC", legs=leg), p).total == D("1.00")
    with pytest.raises(RatingError, match="outside"):
        rate(Usage("2026-01", "Asia/Tokyo", legs=leg), p)


def test_a_plan_change_takes_effect_at_local_midnight() -> None:
    """Change on the 16th in Tokyo = 2026-01-15T15:00Z; an hour later it is
    plan b's time in Tokyo but still plan a's in UTC."""
    a, b = plan(A, "a"), plan(B, "b")
    assert day_start_ms("2026-01", 16, "Asia/Tokyo") == ms(2026, 1, 15, 15)
    leg = (Leg("voice.minutes", 60_000, at_ms=ms(2026, 1, 15, 16)),)
    tokyo = rate_periods(Usage("2026-01", "Asia/Tokyo", legs=leg), [PlanPeriod(a), PlanPeriod(b, 16)])
    utc = rate_periods(Usage("2026-01", "UTC", legs=leg), [PlanPeriod(a), PlanPeriod(b, 16)])
    assert tokyo.line("voice.minutes", "b").quantity == 1 and tokyo.line("voice.minutes", "a").quantity == 0
    assert utc.line("voice.minutes", "a").quantity == 1 and utc.line("voice.minutes", "b").quantity == 0


@pytest.mark.parametrize("tz", ["UTC", "Asia/Tokyo", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe"])
def test_rating_months_agree_with_metering_months(tz: str) -> None:
    """Rating keeps its own copy of the month arithmetic (it must not import
    metering); both must put every instant in the same month."""
    for m in range(1, 13):
        month = f"2026-{m:02d}"
        start, end = month_bounds_ms(month, tz)
        assert day_start_ms(month, 1, tz) == start
        assert day_start_ms(month, days_in_month(month) + 1, tz) == end


# ---------------------------------------------------------------------------- tax


def test_tax_is_rounded_half_up_once_on_the_subtotal() -> None:
    p = plan('[metrics.messages]\nunit_price = "0.05"', head='tax_percent = "10"')
    inv = quote(p, {"messages": 1})
    assert (inv.subtotal, inv.tax, inv.total) == (D("0.05"), D("0.01"), D("0.06"))  # 0.005 -> 0.01
    assert quote(p, {"messages": 1}, tax_percent=D("19.6")).tax == D("0.01")  # 0.0098
    assert quote(p, {"messages": 123}, tax_percent=D("20")).total == D("7.38")  # 6.15 + 1.23


def test_line_amounts_round_half_up_to_the_currency_minor_unit() -> None:
    usd = plan('[metrics.messages]\nunit_price = "0.005"')
    assert quote(usd, {"messages": 1}).total == D("0.01")  # 0.005 -> 0.01, not banker's 0.00
    assert quote(usd, {"messages": 3}).total == D("0.02")  # 0.015 -> 0.02
    jpy = parse_plan('name = "j"\ncurrency = "JPY"\n[metrics.messages]\nunit_price = "0.5"', "j.toml")
    assert str(quote(jpy, {"messages": 5}).total) == "3"  # 2.5 yen -> 3, no minor unit


# ------------------------------------------------------------------ odds and ends


def test_usage_a_plan_does_not_price_is_reported_not_charged(shipped: Load) -> None:
    inv = quote(shipped("mesibo-payg"), {"mau": 25_000, "voice.minutes": 1200, "messages": 250})
    assert dict(inv.uncharged) == {"voice.minutes": 1200, "messages": 250}
    assert inv.total == D("50.00")


def test_usage_records_refuse_floats_and_negative_quantities() -> None:
    with pytest.raises(RatingError, match="float"):
        Count("mau", 1.5)  # type: ignore[arg-type]
    with pytest.raises(RatingError, match="non-negative"):
        Count("mau", D(-1))
    with pytest.raises(RatingError, match="legs are for"):
        Leg("mau", 1000)
    with pytest.raises(RatingError, match="YYYY-MM"):
        Usage("2026-13")
    with pytest.raises(RatingError, match="time zone"):
        Usage("2026-01", "Mars/Olympus")


def test_a_quote_has_no_calendar() -> None:
    with pytest.raises(RatingError, match="quote has no calendar"):
        rate(Usage(None, legs=(Leg("voice.minutes", 1000, at_ms=0),)), plan(A))
    with pytest.raises(RatingError, match="unknown metric"):
        quote(plan(A), {"minutes": 5})
