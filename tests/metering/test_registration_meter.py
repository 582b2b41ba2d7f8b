"""MAU and connection-peak records, month boundaries in the tenant's zone."""

from __future__ import annotations

from datetime import UTC, datetime

from sipcore.metering import MonthClock, RegistrationMeter, month_bounds_ms, month_of


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_month_in_zone_east_of_utc() -> None:
    t = ms(2026, 1, 31, 20, 0)  # 2026-02-01 05:00 in Tokyo
    assert month_of(t, "UTC") == "2026-01" and month_of(t, "Asia/Tokyo") == "2026-02"
    start, end = month_bounds_ms("2026-02", "Asia/Tokyo")
    assert start == ms(2026, 1, 31, 15, 0) and end == ms(2026, 2, 28, 15, 0)
    assert month_bounds_ms("2026-12", "UTC") == (ms(2026, 12, 1), ms(2027, 1, 1))


def test_month_clock_crosses_boundary() -> None:
    c = MonthClock("Asia/Tokyo")
    assert c.month(ms(2026, 1, 31, 14, 59, 59)) == "2026-01"
    assert c.month(ms(2026, 1, 31, 15, 0)) == "2026-02"


def test_mau_once_per_device_per_month() -> None:
    m = RegistrationMeter(lambda tenant: "UTC")
    r = m.authenticated(1, 10, ms(2026, 3, 5))
    assert r is not None and (r.tenant_id, r.month, r.device_id) == (1, "2026-03", 10)
    assert m.authenticated(1, 10, ms(2026, 3, 6)) is None
    assert m.authenticated(1, 11, ms(2026, 3, 6)) is not None
    assert m.mau_seen(1, ms(2026, 3, 7)) == 2
    r = m.authenticated(1, 10, ms(2026, 4, 1))
    assert r is not None and r.month == "2026-04"
    assert m.authenticated(2, 10, ms(2026, 4, 1)) is not None  # another tenant


def test_connection_peak_only_rises_within_a_month() -> None:
    m = RegistrationMeter(lambda tenant: "UTC")
    assert [g.value for g in filter(None, (m.bindings(1, n, ms(2026, 3, 5)) for n in (1, 2, 1, 2, 3, 2)))] == [1, 2, 3]
    g = m.bindings(1, 1, ms(2026, 4, 1))
    assert g is not None and (g.month, g.value, g.metric) == ("2026-04", 1, "connections.peak")
