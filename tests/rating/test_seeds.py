"""Every worked example of the seed documents, to the cent, from config/plans/.

The examples and figures found in ../shared/seeds/ (METERING.md: "Every
worked example in those documents must come out of the rating engine to the
cent, from a plan file under config/plans/"):

000 (Voximplant blog, Small plan)
  - "charged in $100 increments monthly"                  -> $100.00 within limits
  - "three cents for each additional user" over 5,000 MAU -> 5,001 MAU $100.03; 6,000 MAU $130.00
  - "These extra charges occur only once a month"          -> one mau line per monthly invoice
  - IM "billing is based on message increments of 100"     -> packs (see test_engine for 99/100/101)
001 (Voximplant billing docs)
  - Free tier: IM 50K/month "Messages stop sending", MAU 1,000/month "New user
    logins are blocked"                                    -> $0.00 at the limits, never charged above
  - paid plans: "per pack of 100 additional messages or per new user login"
  - "If you change plans mid-cycle ... apply the new plan's rate for the
    remaining days of the month"                           -> free -> small on 16 Jan: $100 x 16/31 = $51.61
  - "Final tax rates are determined at the end of each month" -> the rate in force at month end
002 (CometChat)
  - "MAU overage amount is $0.12 per user"                 -> 1,250 MAU on a 1,000 MAU plan: $30.00
  - "a plan with 1,000 Monthly Active Users, your Concurrency Allowance will be
    fifty (1,000*5% = 50)"; "$1 per connection" over it   -> 50 peak: $0; 51: $1.00; 80: $30.00
  - "$0.001 per minute for voice and $0.003 per minute for video" -> 1,200 min $1.20; 500 min $1.50
003 (mesibo)
  - "100K monthly active users (MAU) and sends 120 million messages of average
    50 bytes (utilising about 6 GB bandwidth) ... free quota of 20K MAU and
    5GB bandwidth ... the total cost is $80.90 per month ($80 for (100K-20K =
    80K) MAU, $0.9 for (6GB-5GB = 1GB) bandwidth)"         -> $80.90 at the $0.001/MAU the example
                                                              implies; $800.90 at the listed $0.01
  - "$0.9 for 1GB bandwidth (about 20M messages)"          -> 20M x 50 bytes over the quota: $0.90
  - "Concurrent users limit will be 10% of the MAU ... billing you for MAU =
    (concurrent users X 10)"                               -> 30,000 MAU, 3,500 peak: billed as 35,000 MAU
  - "Your usage charges (minimum US$ 49)"                  -> 22,000 MAU ($20.00) is topped up to $49.00
004 (SIP Core Service; prices are placeholders, the plan file's example prices are used)
  - "50 devices provisioned at peak ... 50 x $X"           -> 50 x $2.00 = $100.00
  - "10 SIP trunks ... 10 x $Y"                            -> 10 x $10.00 = $100.00
  - "1,000 minutes of voice calls ... 1,000 x $Z"          -> 1,000 x $0.0100 = $10.00
  - "500 minutes of video calls ... 500 x $A"              -> 500 x $0.0200 = $10.00
  - "200 minutes of calls ... 200 x $B" (transcoding)      -> 200 x $0.0050 = $1.00
  - "a call ... between two SIP User Agents within the services it is counted
    as two calls, one originating and one terminating"   -> two legs, both billed
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from sipcore.rating import Count, Leg, Plan, PlanPeriod, Usage, parse_plan, quote, rate, rate_periods

from .conftest import PLANS_DIR, ms

D = Decimal
Load = Callable[[str], Plan]


# ------------------------------------------------------------------- seed 000


def test_000_small_plan_is_100_dollars_a_month_within_its_limits(shipped: Load) -> None:
    inv = quote(shipped("voximplant-small"), {"mau": 5000, "messages": 100000})
    assert inv.line("base").amount == D("100.00")
    assert inv.line("mau").billable == 0 and inv.line("messages").billable == 0
    assert inv.total == D("100.00")


@pytest.mark.parametrize(("mau", "total"), [(5001, "100.03"), (5100, "103.00"), (6000, "130.00")])
def test_000_three_cents_for_each_additional_user(shipped: Load, mau: int, total: str) -> None:
    inv = quote(shipped("voximplant-small"), {"mau": mau})
    line = inv.line("mau")
    assert (line.included, line.billable, line.unit_price) == (5000, mau - 5000, D("0.03"))
    assert line.amount == D(total) - D(100)
    assert inv.total == D(total)


def test_000_extra_charges_occur_once_a_month(shipped: Load) -> None:
    # Three readings of the month's MAU (first logins at three moments) make
    # one mau line, charged once, on the monthly invoice.
    u = Usage("2026-03", counts=(Count("mau", D(4000)), Count("mau", D(900)), Count("mau", D(300))))
    inv = rate(u, shipped("voximplant-small"))
    assert [x.metric for x in inv.lines].count("mau") == 1
    assert inv.line("mau").amount == D("6.00")  # 200 users over 5,000 at $0.03


# ------------------------------------------------------------------- seed 001


def test_001_free_tier_costs_nothing_at_its_limits(shipped: Load) -> None:
    inv = quote(shipped("voximplant-free"), {"mau": 1000, "messages": 50000})
    assert inv.total == D("0.00")
    assert inv.warnings == ()
    assert inv.line("mau").over_limit == 0 and inv.line("messages").over_limit == 0


def test_001_free_tier_above_its_limits_is_blocked_not_charged(shipped: Load) -> None:
    inv = quote(shipped("voximplant-free"), {"mau": 1003, "messages": 50100})
    assert inv.total == D("0.00")
    assert (inv.line("mau").billable, inv.line("mau").over_limit) == (0, 3)
    assert inv.line("messages").over_limit == 100
    assert len(inv.warnings) == 2 and "block limit of 1000" in inv.warnings[0]


def test_001_upgrade_mid_month_prorates_by_days_and_rates_usage_by_the_plan_in_force(shipped: Load) -> None:
    """Free until 15 January, Small from the 16th: January has 31 days."""
    free, small = shipped("voximplant-free"), shipped("voximplant-small")
    u = Usage(
        "2026-01",
        counts=(
            Count("mau", D(800), at_ms=ms(2026, 1, 3)),  # first logins under the free plan
            Count("messages", D(20000), at_ms=ms(2026, 1, 10)),
            Count("mau", D(5100), at_ms=ms(2026, 1, 20)),  # first logins after the upgrade
            Count("messages", D(100050), at_ms=ms(2026, 1, 25)),
        ),
    )
    inv = rate_periods(u, [PlanPeriod(free, 1), PlanPeriod(small, 16)], tenant="acme.example")
    assert [(p.name, p.first_day, p.last_day) for p in inv.plans] == [
        ("voximplant-free", 1, 15),
        ("voximplant-small", 16, 31),
    ]
    base = inv.line("base", "voximplant-small")
    assert (base.days, base.month_days, base.amount) == (16, 31, D("51.61"))  # 100 x 16/31 = 51.6129
    assert inv.line("base", "voximplant-free").amount == D("0.00")
    assert inv.line("mau", "voximplant-free").quantity == 800
    assert inv.line("mau", "voximplant-small").amount == D("3.00")  # 100 over 5,000 at $0.03
    assert inv.line("messages", "voximplant-small").units == 1  # 50 over: one started pack
    assert inv.line("messages", "voximplant-small").amount == D("0.20")
    assert inv.subtotal == D("54.81")
    assert inv.total == D("54.81")


def test_001_tax_rate_is_the_one_in_force_at_month_end(shipped: Load) -> None:
    """'Final tax rates are determined at the end of each month.'"""
    free = shipped("voximplant-free")
    small_text = (PLANS_DIR / "voximplant-small.toml").read_text().replace('tax_percent = "0"', 'tax_percent = "20"')
    small = parse_plan(small_text, "small-with-vat.toml")
    u = Usage("2026-01", counts=(Count("mau", D(10), at_ms=ms(2026, 1, 2)),))
    inv = rate_periods(u, [PlanPeriod(free, 1), PlanPeriod(small, 16)])
    assert inv.subtotal == D("51.61") and inv.tax_percent == 20
    assert inv.tax == D("10.32")  # 51.61 x 20 % = 10.322
    assert inv.total == D("61.93")
    # The tenant's own rate overrides the plans'.
    assert rate_periods(u, [PlanPeriod(free, 1), PlanPeriod(small, 16)], tax_percent=D("0")).tax == 0


# ------------------------------------------------------------------- seed 002


def test_002_concurrency_allowance_is_five_percent_of_the_plans_mau(shipped: Load) -> None:
    plan = shipped("cometchat")
    assert quote(plan, {"connections.peak": 50}).line("connections.peak").included == 50  # 1,000 x 5 %
    assert quote(plan, {"connections.peak": 50}).line("connections.peak").amount == D("0.00")
    assert quote(plan, {"connections.peak": 51}).line("connections.peak").amount == D("1.00")
    # The allowance comes from the plan's 1,000 MAU, not from the month's MAU.
    assert quote(plan, {"mau": 3000, "connections.peak": 80}).line("connections.peak").amount == D("30.00")


@pytest.mark.parametrize(("mau", "amount"), [(1000, "0.00"), (1001, "0.12"), (1250, "30.00")])
def test_002_mau_overage_is_12_cents(shipped: Load, mau: int, amount: str) -> None:
    assert quote(shipped("cometchat"), {"mau": mau}).line("mau").amount == D(amount)


def test_002_voice_and_video_per_minute(shipped: Load) -> None:
    inv = quote(shipped("cometchat"), {"voice.minutes": 1200, "video.minutes": 500})
    assert inv.line("voice.minutes").amount == D("1.20")  # 1,200 x $0.001
    assert inv.line("video.minutes").amount == D("1.50")  # 500 x $0.003


def test_002_a_whole_month(shipped: Load) -> None:
    u = Usage(
        "2026-01",
        counts=(Count("mau", D(1250)), Count("connections.peak", D(80))),
        legs=(Leg("voice.minutes", 60_000, count=1200), Leg("video.minutes", 59_001, count=500)),
    )
    inv = rate(u, shipped("cometchat"))
    assert inv.line("video.minutes").quantity == 500  # 59.001 s is one started minute at 60/60
    # $109 (example subscription) + $30 MAU + $30 connections + $1.20 voice + $1.50 video
    assert inv.total == D("171.70")


# ------------------------------------------------------------------- seed 003


def test_003_worked_example_at_the_listed_price(shipped: Load) -> None:
    """The shipped file keeps mesibo's published $0.01 per MAU; the example's
    quantities then cost $800 + $0.90 (the seed's '$80' is 80K x $0.001)."""
    inv = quote(shipped("mesibo-payg"), {"mau": 100_000, "signaling.bytes_out": 120_000_000 * 50})
    mau, bw = inv.line("mau"), inv.line("signaling.bytes_out")
    assert (mau.quantity, mau.included, mau.billable) == (100_000, 20_000, 80_000)  # "(100K-20K = 80K)"
    assert (bw.quantity, bw.included, bw.billable, bw.units) == (6 * 10**9, 5 * 10**9, 10**9, 1)  # "(6GB-5GB = 1GB)"
    assert bw.amount == D("0.90")
    assert mau.amount == D("800.00")
    assert inv.total == D("800.90")


def test_003_worked_example_is_80_90_at_the_price_the_example_implies() -> None:
    """'the total cost is $80.90 per month ($80 for ... 80K MAU, $0.9 for ... 1GB)':
    the shipped plan with only the MAU price set to the example's $0.001."""
    text = (PLANS_DIR / "mesibo-payg.toml").read_text()
    assert text.count('unit_price = "0.01"') == 1
    plan = parse_plan(text.replace('unit_price = "0.01"', 'unit_price = "0.001"'), "mesibo-example.toml")
    inv = quote(plan, {"mau": 100_000, "signaling.bytes_out": 6_000_000_000})
    assert inv.line("mau").amount == D("80.00")
    assert inv.line("signaling.bytes_out").amount == D("0.90")
    assert inv.total == D("80.90")


def test_003_one_gb_is_about_20m_messages_of_50_bytes(shipped: Load) -> None:
    inv = quote(shipped("mesibo-payg"), {"mau": 25_000, "signaling.bytes_out": 5 * 10**9 + 20_000_000 * 50})
    assert inv.line("signaling.bytes_out").unit == "GB (10^9 bytes)"
    assert inv.line("signaling.bytes_out").amount == D("0.90")


def test_003_excess_concurrency_is_billed_as_mau_times_ten(shipped: Load) -> None:
    inv = quote(shipped("mesibo-payg"), {"mau": 30_000, "connections.peak": 3_500})
    conn, mau = inv.line("connections.peak"), inv.line("mau")
    assert (conn.included, conn.billable, conn.amount) == (3_000, 500, D("0.00"))  # 10 % of 30,000
    assert mau.quantity == 35_000 == 3_500 * 10  # "MAU = (concurrent users X 10)"
    assert mau.converted == 5_000
    assert mau.amount == D("150.00")  # 15,000 over the 20K free quota
    # Within the 10 % limit nothing is converted.
    assert quote(shipped("mesibo-payg"), {"mau": 30_000, "connections.peak": 3_000}).line("mau").quantity == 30_000


def test_003_minimum_charge_of_49_dollars(shipped: Load) -> None:
    low = quote(shipped("mesibo-payg"), {"mau": 22_000})
    assert low.line("mau").amount == D("20.00")
    assert low.line("minimum").amount == D("29.00")
    assert low.total == D("49.00")
    high = quote(shipped("mesibo-payg"), {"mau": 25_000})
    assert high.total == D("50.00")
    assert "minimum" not in [x.metric for x in high.lines]


# ------------------------------------------------------------------- seed 004


def test_004_each_component_of_the_seed(shipped: Load) -> None:
    plan = shipped("sip-core")
    cases = {
        "devices.provisioned.peak": (50, "100.00"),
        "trunks.provisioned.peak": (10, "100.00"),
        "voice.minutes": (1000, "10.00"),
        "video.minutes": (500, "10.00"),
        "transcoding.minutes": (200, "1.00"),
    }
    for metric, (quantity, amount) in cases.items():
        assert quote(plan, {metric: quantity}).line(metric).amount == D(amount), metric


def test_004_a_month_from_legs(shipped: Load) -> None:
    """1,000 voice minutes made of legs: 249 calls of 2 minutes between two of
    the tenant's devices ("counted as two calls": 498 legs of 2 minutes) and 2 trunk legs."""
    a_to_b = [Leg("voice.minutes", 120_000, at_ms=ms(2026, 1, 5, 9) + i * 1000) for i in range(249)]
    legs = (
        *[Leg(leg.metric, leg.duration_ms, leg.at_ms) for leg in a_to_b],  # A's originating legs
        *[Leg(leg.metric, leg.duration_ms, leg.at_ms) for leg in a_to_b],  # B's terminating legs
        Leg("voice.minutes", 119_500, at_ms=ms(2026, 1, 6)),  # 1/1 rounds 119.5 s to 120 s
        Leg("voice.minutes", 120_000, at_ms=ms(2026, 1, 7)),
        Leg("video.minutes", 30 * 60_000, count=16),  # 16 x 30 min = 480 min
        Leg("video.minutes", 20 * 60_000),
        Leg("transcoding.minutes", 200 * 60_000),
        Leg("voice.minutes", 0, count=7),  # unanswered: recorded with zero time, not billed
    )
    peaks = (
        Count("devices.provisioned.peak", D(48)),  # two readings of one month combine by max
        Count("devices.provisioned.peak", D(50)),
        Count("trunks.provisioned.peak", D(10)),
    )
    u = Usage("2026-01", counts=peaks, legs=legs)
    inv = rate(u, shipped("sip-core"))
    assert inv.line("devices.provisioned.peak").quantity == 50  # the peak, not 48 + 50
    assert inv.line("voice.minutes").quantity == 1000
    assert inv.line("video.minutes").quantity == 500
    assert inv.line("transcoding.minutes").quantity == 200
    assert [x.amount for x in inv.lines[1:]] == [D("100.00"), D("100.00"), D("10.00"), D("10.00"), D("1.00")]
    assert inv.total == D("221.00")
