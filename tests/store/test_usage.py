"""Usage: devices.provisioned.peak from the count log, MAU once per month, peak gauges."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sipcore.store import ConstraintViolation, NotFound, Store, month_bounds_ms

from .conftest import FakeClock

DAY = 86_400_000
EMPTY = {
    "devices.provisioned.peak": 0,
    "mau": 0,
    "connections.peak": 0,
    "trunks.provisioned.peak": 0,
    "voice.minutes": "0.000",
    "video.minutes": "0.000",
    "transcoding.minutes": "0.000",
    "voice.ms": 0,
    "video.ms": 0,
    "transcoding.ms": 0,
    "legs": 0,
    "messages": 0,
    "signaling.bytes_out": 0,
}


async def _log(db: Store) -> list[tuple[int, int]]:
    async with db._conn().execute("SELECT at_ms, count FROM device_count_log ORDER BY rowid") as cur:
        return [(r[0], r[1]) for r in await cur.fetchall()]


@pytest.mark.asyncio
async def test_peak_counts_a_device_removed_mid_month(db: Store, clock: FakeClock) -> None:
    march, _ = month_bounds_ms("2025-03", "UTC")
    clock.now_ms = march + 2 * DAY
    await db.add_tenant("example.com")
    for user in ("a", "b", "c"):
        await db.add_device(user, "example.com", "pw")
    clock.now_ms = march + 15 * DAY
    await db.remove_device("b", "example.com")
    usage = await db.usage("example.com", "2025-03")
    assert usage["devices.provisioned.peak"] == 3, "b was part of the peak before it was removed"
    assert [c for _, c in await _log(db)] == [1, 2, 3, 2], "one row per change, the log keeps the 3"
    # April: no change at all -> the count in force at its start.
    assert (await db.usage("example.com", "2025-04"))["devices.provisioned.peak"] == 2
    # February: before any device existed.
    assert (await db.usage("example.com", "2025-02"))["devices.provisioned.peak"] == 0


@pytest.mark.asyncio
async def test_peak_follows_disable_enable_and_import(db: Store, clock: FakeClock) -> None:
    start, _ = month_bounds_ms("2025-05", "UTC")
    clock.now_ms = start - DAY  # April: 2 devices
    await db.add_tenant("example.com")
    await db.import_devices([("a", "example.com", "pw"), ("b", "example.com", "pw")])
    clock.now_ms = start + DAY
    await db.set_device_enabled("a", "example.com", False)  # 1
    await db.set_device_enabled("a", "example.com", False)  # no change, not logged
    clock.now_ms = start + 2 * DAY
    await db.set_device_enabled("a", "example.com", True)  # 2
    await db.remove_device("a", "example.com")  # 1
    assert [c for _, c in await _log(db)] == [2, 1, 2, 1]
    assert (await db.usage("example.com", "2025-04"))["devices.provisioned.peak"] == 2
    assert (await db.usage("example.com", "2025-05"))["devices.provisioned.peak"] == 2
    assert (await db.usage("example.com", "2025-06"))["devices.provisioned.peak"] == 1


@pytest.mark.asyncio
async def test_disabled_device_removed_is_not_a_change(db: Store) -> None:
    t = await db.add_tenant("example.com")
    await db.add_device("a", "example.com", "pw")
    await db.set_device_enabled("a", "example.com", False)
    await db.remove_device("a", "example.com")
    assert [c for _, c in await _log(db)] == [1, 0]
    assert await db.device_count(t.id) == 0


@pytest.mark.asyncio
async def test_peak_month_is_in_the_tenant_time_zone(db: Store, clock: FakeClock) -> None:
    tokyo_feb, _ = month_bounds_ms("2025-02", "Asia/Tokyo")  # 2025-01-31T15:00Z
    await db.add_tenant("example.jp", timezone="Asia/Tokyo")
    clock.now_ms = tokyo_feb + 3_600_000  # still January in UTC, February in Tokyo
    await db.add_device("a", "example.jp", "pw")
    clock.now_ms = tokyo_feb + 2 * 3_600_000
    await db.remove_device("a", "example.jp")
    assert (await db.usage("example.jp", "2025-02"))["devices.provisioned.peak"] == 1
    assert (await db.usage("example.jp", "2025-01"))["devices.provisioned.peak"] == 0


@pytest.mark.asyncio
async def test_mau_is_idempotent_across_a_restart(db_path: Path, clock: FakeClock) -> None:
    store = await Store.open(db_path, clock=clock)
    t = await store.add_tenant("example.com")
    a = await store.add_device("a", "example.com", "pw")
    b = await store.add_device("b", "example.com", "pw")
    await store.record_mau([(t.id, "2025-03", a.id, 500), (t.id, "2025-03", a.id, 400)])
    await store.record_mau([(t.id, "2025-03", b.id, 600)])
    await store.close()
    # Simulated restart: the server replays what it knew (and more logins of a).
    store = await Store.open(db_path, clock=clock)
    await store.record_mau([(t.id, "2025-03", a.id, 900), (t.id, "2025-03", b.id, 300), (t.id, "2025-04", a.id, 1)])
    march = await store.usage("example.com", "2025-03")
    april = await store.usage("example.com", "2025-04")
    async with store._conn().execute("SELECT device_id, first_ms FROM usage_mau WHERE month = '2025-03'") as cur:
        firsts = {r[0]: r[1] for r in await cur.fetchall()}
    await store.close()
    assert march["mau"] == 2 and april["mau"] == 1
    assert firsts == {a.id: 400, b.id: 300}, "the earliest login is kept"


@pytest.mark.asyncio
async def test_mau_survives_device_removal(db: Store) -> None:
    t = await db.add_tenant("example.com")
    a = await db.add_device("a", "example.com", "pw")
    await db.record_mau([(t.id, "2025-03", a.id, 1)])
    await db.remove_device("a", "example.com")
    assert (await db.usage("example.com", "2025-03"))["mau"] == 1


@pytest.mark.asyncio
async def test_gauges_only_rise(db: Store, db_path: Path) -> None:
    t = await db.add_tenant("example.com")
    assert (await db.usage("example.com", "2025-03"))["connections.peak"] == 0, "0 when nothing was recorded"
    await db.record_gauges(
        [(t.id, "2025-03", "connections.peak", 5, 100), (t.id, "2025-03", "connections.peak", 9, 200)]
    )
    await db.record_gauges([(t.id, "2025-03", "connections.peak", 7, 300)])
    await db.record_gauges([(t.id, "2025-04", "connections.peak", 1, 400)])
    assert (await db.usage("example.com", "2025-03"))["connections.peak"] == 9
    assert (await db.usage("example.com", "2025-04"))["connections.peak"] == 1
    with sqlite3.connect(db_path) as c:
        row = c.execute("SELECT value, updated_ms FROM usage_gauge WHERE month = '2025-03'").fetchone()
    assert row == (9, 200), "updated_ms is when the peak was reached"


@pytest.mark.asyncio
async def test_usage_reports_the_metering_names(db: Store) -> None:
    t = await db.add_tenant("example.com")
    await db.record_counters([(t.id, "2025-03", "messages", 3)])
    usage = await db.usage("example.com", "2025-03")
    assert usage == {**EMPTY, "messages": 3}
    with pytest.raises(NotFound):
        await db.usage("nosuch.example.com", "2025-03")


@pytest.mark.asyncio
async def test_counts_must_be_integers_and_months_well_formed(db: Store) -> None:
    t = await db.add_tenant("example.com")
    with pytest.raises(ConstraintViolation):
        await db.record_gauges([(t.id, "2025-03", "connections.peak", 1.5, 1)])  # type: ignore[list-item]
    with pytest.raises(ConstraintViolation):
        await db.record_mau([(t.id, "March", 1, 1)])
    assert await db.usage("example.com", "2025-03") == EMPTY
