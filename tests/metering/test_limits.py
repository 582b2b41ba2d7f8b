"""The real-time guard (sans-IO): block limits answer synchronously from memory,
alerts at 50/75/100 % once per threshold, account and month."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from sipcore.metering.limits import (
    REASON_MAU,
    REASON_MESSAGES,
    GuardState,
    TenantPolicy,
    UsageAlert,
    UsageGuard,
)
from sipcore.rating import PlanLibrary, parse_plan

PLANS = PlanLibrary(Path(__file__).resolve().parents[2] / "config" / "plans")
FREE = PLANS.get("voximplant-free")  # 1,000 MAU and 50,000 messages, block
SMALL = PLANS.get("voximplant-small")  # 5,000 MAU then charged


def ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * 1000


NOW = ms(2026, 1, 10)


def tiny(mau: int = 4, messages: int = 4, over: str = "block") -> UsageGuard:
    price = 'unit_price = "0.01"\n' if over == "charge" else ""
    p = parse_plan(
        f'name = "tiny"\ncurrency = "USD"\n[metrics.mau]\nincluded = {mau}\nover = "{over}"\n{price}'
        f'[metrics.messages]\nincluded = {messages}\nover = "{over}"\n{price}',
        "tiny.toml",
    )
    return UsageGuard({1: TenantPolicy(p)})


def test_mau_block_admits_up_to_the_limit_and_refuses_new_devices_only() -> None:
    g = tiny(mau=3)
    assert [g.mau_admit(1, d, NOW) for d in (10, 11, 12)] == [None, None, None]
    assert g.mau_admit(1, 13, NOW) == REASON_MAU == "Monthly Active User Limit Reached"
    assert g.mau_admit(1, 13, NOW + 1) == REASON_MAU, "still refused; a refused device is not counted"
    assert [g.mau_admit(1, d, NOW + 2) for d in (10, 11, 12)] == [None] * 3, "what was allowed keeps working"
    assert g.used(1, "mau", NOW) == 3


def test_a_new_month_starts_from_zero_in_the_tenants_time_zone() -> None:
    p = parse_plan('name = "t"\ncurrency = "USD"\n[metrics.mau]\nincluded = 1\nover = "block"\n', "t.toml")
    g = UsageGuard({1: TenantPolicy(p, "Asia/Tokyo")})
    assert g.mau_admit(1, 10, ms(2026, 1, 31, 14)) is None  # 23:00 on Jan 31 in Tokyo
    assert g.mau_admit(1, 11, ms(2026, 1, 31, 14)) == REASON_MAU
    assert g.mau_admit(1, 11, ms(2026, 1, 31, 15)) is None, "00:00 on Feb 1 in Tokyo: a new month"
    assert g.mau_admit(1, 10, ms(2026, 1, 31, 16)) == REASON_MAU, "device 10 is not counted in February yet"


def test_message_block() -> None:
    g = tiny(messages=2)
    assert [g.message_admit(1, NOW) for _ in range(3)] == [None, None, REASON_MESSAGES]
    assert REASON_MESSAGES == "Monthly Message Limit Reached"
    assert g.used(1, "messages", NOW) == 2


def test_charge_plans_never_block() -> None:
    g = tiny(mau=1, messages=1, over="charge")
    assert g.mau_admit(1, 1, NOW) is None and g.mau_admit(1, 2, NOW) is None
    assert g.message_admit(1, NOW) is None and g.message_admit(1, NOW) is None


def test_tenants_without_a_plan_or_unknown_are_never_refused() -> None:
    g = UsageGuard({1: TenantPolicy(None)})
    assert g.mau_admit(1, 1, NOW) is None and g.mau_admit(99, 1, NOW) is None
    assert g.message_admit(99, NOW) is None and g.pop_alerts() == []


def test_alerts_at_50_75_100_percent_once_each() -> None:
    g = UsageGuard({7: TenantPolicy(FREE)})
    for d in range(1, 1001):
        assert g.mau_admit(7, d, NOW + d) is None
    alerts = g.pop_alerts()
    assert alerts == [
        UsageAlert(7, "2026-01", "mau", 50, 500, D(1000), NOW + 500),
        UsageAlert(7, "2026-01", "mau", 75, 750, D(1000), NOW + 750),
        UsageAlert(7, "2026-01", "mau", 100, 1000, D(1000), NOW + 1000),
    ]
    assert g.mau_admit(7, 1001, NOW) == REASON_MAU
    assert g.pop_alerts() == [], "once per threshold"
    for _ in range(25_000):
        g.message_admit(7, NOW)
    assert [(a.metric, a.threshold_pct, a.value) for a in g.pop_alerts()] == [("messages", 50, 25_000)]


def test_alerts_on_charged_and_recorded_metrics_and_a_new_month_alerts_again() -> None:
    mesibo = PLANS.get("mesibo-payg")  # 5 GB included, signaling.bytes_out
    g = UsageGuard({1: TenantPolicy(mesibo), 2: TenantPolicy(SMALL)})
    g.record(1, "signaling.bytes_out", 3_000_000_000, NOW)
    g.record(1, "signaling.bytes_out", 1_000_000_000, NOW + 1)
    assert [(a.metric, a.threshold_pct) for a in g.pop_alerts()] == [
        ("signaling.bytes_out", 50),
        ("signaling.bytes_out", 75),
    ]
    for d in range(2500):
        g.mau_admit(2, d, NOW)
    assert [(a.tenant_id, a.threshold_pct, a.value) for a in g.pop_alerts()] == [(2, 50, 2500)]
    for d in range(2500):
        g.mau_admit(2, d, ms(2026, 2, 1))
    assert [(a.month, a.threshold_pct) for a in g.pop_alerts()] == [("2026-02", 50)]
    with pytest.raises(ValueError):
        g.record(1, "mau", 1, NOW)


def test_children_count_against_the_parents_plan_and_alert_the_parent() -> None:
    g = UsageGuard({1: TenantPolicy(FREE), 2: TenantPolicy(None, parent_id=1), 3: TenantPolicy(SMALL, parent_id=2)})
    assert g.account_of(3) == 1
    for d in range(500):
        g.mau_admit(1, d, NOW)
    for d in range(500, 1000):
        g.mau_admit(3, d, NOW)  # the grandchild's own plan is not used
    assert g.mau_admit(2, 5000, NOW) == REASON_MAU
    assert {a.tenant_id for a in g.pop_alerts()} == {1}


def test_restore_counts_and_stored_alerts_across_a_restart() -> None:
    g = UsageGuard({1: TenantPolicy(FREE)})
    g.restore(GuardState(1, "2026-01", devices=range(800), counts={"messages": 49_999}, alerted=[("mau", 50)]), NOW)
    # 75 % of MAU was crossed but never stored (a crash): emitted now; 50 % was stored: not again.
    assert [(a.metric, a.threshold_pct, a.value, a.at_ms) for a in g.pop_alerts()] == [
        ("mau", 75, 800, NOW),
        ("messages", 50, 49_999, NOW),
        ("messages", 75, 49_999, NOW),
    ]
    assert g.mau_admit(1, 5, NOW) is None, "a device counted before the restart is let in"
    assert g.message_admit(1, NOW) is None and g.message_admit(1, NOW) == REASON_MESSAGES
    assert [(a.metric, a.threshold_pct) for a in g.pop_alerts()] == [("messages", 100)]
    for d in range(800, 1000):
        g.mau_admit(1, d, NOW)
    assert g.mau_admit(1, 1000, NOW) == REASON_MAU
    # A stored month that is over is ignored.
    h = UsageGuard({1: TenantPolicy(FREE)})
    h.restore(GuardState(1, "2025-12", devices=range(1000)), NOW)
    assert h.mau_admit(1, 5000, NOW) is None and h.pop_alerts() == []


def test_set_tenants_keeps_counters_and_applies_a_plan_change() -> None:
    g = UsageGuard({1: TenantPolicy(FREE)})
    for d in range(1000):
        g.mau_admit(1, d, NOW)
    assert g.mau_admit(1, 1000, NOW) == REASON_MAU
    g.set_tenants({1: TenantPolicy(SMALL)})  # upgraded: the limit is gone
    assert g.mau_admit(1, 1000, NOW) is None and g.used(1, "mau", NOW) == 1001


@pytest.mark.parametrize("thresholds", [(), (50, 50), (75, 50), (0, 50), (50, 101)])
def test_thresholds_are_checked(thresholds: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        UsageGuard({}, thresholds=thresholds)


def test_custom_thresholds() -> None:
    g = UsageGuard({1: TenantPolicy(FREE)}, thresholds=(90,))
    for d in range(900):
        g.mau_admit(1, d, NOW)
    assert [(a.threshold_pct, a.value) for a in g.pop_alerts()] == [(90, 900)]


def test_the_packet_path_is_fast() -> None:
    """A device already counted is one dict and one set lookup away."""
    import time

    g = UsageGuard({i: TenantPolicy(FREE) for i in range(100)})
    for d in range(500):
        g.mau_admit(d % 100, d, NOW)
    t = time.perf_counter()
    for i in range(100_000):
        g.mau_admit(i % 100, i % 500, NOW)
    per_call_us = (time.perf_counter() - t) / 100_000 * 1e6
    assert per_call_us < 20, f"{per_call_us:.2f} us per call"
