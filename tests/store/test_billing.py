"""Billing in the store: rating input aggregated in SQL (per-leg increments,
plan periods, time zones, child roll-up) and immutable invoice revisions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from sipcore.rating import Increment, PlanLibrary, rate
from sipcore.store import ConstraintViolation, InvalidValue, NotFound, Store, StoreError

from .conftest import FakeClock

PLANS = PlanLibrary(Path(__file__).resolve().parents[2] / "config" / "plans")


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1000


async def execute(store: Store, sql: str, rows: Sequence[Sequence[Any]] = ((),)) -> None:
    async with store._tx() as c:
        await c.executemany(sql, rows)


_LEG_SQL = (
    "INSERT INTO legs (leg_id, tenant_id, month, endpoint_kind, endpoint_id, direction, call_id, from_tag, caller,"
    " callee, setup_ms, answer_ms, end_ms, final_status, voice_ms, video_ms, transcoding_ms, updated_ms)"
    " VALUES (?, ?, ?, 'device', 1, 'originating', 'call', 'tag', 'sip:a@x', 'sip:b@x', ?, ?, ?, ?, ?, ?, ?, 0)"
)
_n = 0


async def legs(
    store: Store,
    tenant_id: int,
    month: str,
    answer_ms: int | None,
    durations: Sequence[int],
    *,
    column: str = "voice",
    ended: bool = True,
) -> None:
    """Answered legs of ``durations`` ms (voice, video or transcoding time) inserted as the writer would."""
    global _n
    rows = []
    for d in durations:
        _n += 1
        times = {"voice": (d, 0, 0), "video": (0, d, 0), "transcoding": (d, 0, d)}[column]
        end = (answer_ms or 0) + d if ended else None
        status = 200 if answer_ms is not None else 486
        rows.append((f"leg{_n}", tenant_id, month, answer_ms or 0, answer_ms, end, status, *times))
    await execute(store, _LEG_SQL, rows)


async def mau(store: Store, tenant_id: int, month: str, first_ms: int, devices: Sequence[int]) -> None:
    await execute(
        store, "INSERT INTO usage_mau VALUES (?, ?, ?, ?)", [(tenant_id, month, d, first_ms) for d in devices]
    )


async def counter(store: Store, tenant_id: int, month: str, metric: str, value: int) -> None:
    await execute(store, "INSERT INTO usage_counter VALUES (?, ?, ?, ?, 0)", [(tenant_id, month, metric, value)])


async def count_log(store: Store, table: str, tenant_id: int, at_ms: int, count: int) -> None:
    await execute(store, f"INSERT INTO {table} (tenant_id, at_ms, count) VALUES (?, ?, ?)", [(tenant_id, at_ms, count)])


def write_plan(tmp_path: Path, name: str, body: str) -> PlanLibrary:
    d = tmp_path / "plans"
    d.mkdir(exist_ok=True)
    (d / f"{name}.toml").write_text(f'name = "{name}"\ncurrency = "USD"\n{body}')
    return PlanLibrary(d)


# ------------------------------------------------------------------ per-leg increments in SQL


@pytest.mark.parametrize(
    "increment, min_s",
    [("1/1", 0), ("30/6", 0), ("60/60", 0), ("6/6", 0), ("45/30", 0), ("1/1", 10), ("30/6", 10), ("6/6", 30)],
)
@pytest.mark.asyncio
async def test_sql_rounding_equals_the_engines_leg_by_leg(
    db: Store, tmp_path: Path, increment: str, min_s: int
) -> None:
    """The store rounds each leg in SQL; the result must be what the pure
    engine computes from the same legs one by one, for every increment."""
    plans = write_plan(
        tmp_path,
        "p",
        f'[metrics."voice.minutes"]\nunit_price = "1.00"\nincrement = "{increment}"\nmin_seconds = {min_s}\n',
    )
    t = await db.add_tenant("example.com", plan="p")
    durations = [1, 999, 1000, 1001, 5_999, 6_000, 29_000, 29_999, 30_000, 30_001, 31_000, 57_000, 59_999, 60_000,
                 60_001, 75_000, 119_000, 3_600_000, 3_600_001, 12_345_678]  # fmt: skip
    await legs(db, t.id, "2026-01", ms(2026, 1, 10), durations)
    inv = await db.rate_month("example.com", "2026-01", plans)
    a, b = (int(x) for x in increment.split("/"))
    expected = sum(Increment(a, b).billed_seconds(d, min_s) for d in durations)
    assert inv.line("voice.minutes").quantity == (D(expected) / 60).quantize(D("0.000001")).normalize()
    from sipcore.rating import Leg, Usage

    reference = rate(Usage("2026-01", legs=tuple(Leg("voice.minutes", d) for d in durations)), plans.get("p"))
    assert inv.total == reference.total and inv.line("voice.minutes") == reference.line("voice.minutes")


@pytest.mark.asyncio
async def test_only_answered_and_ended_legs_are_billed_per_metric(db: Store) -> None:
    t = await db.add_tenant("example.com", plan="sip-core")
    at = ms(2026, 1, 10)
    await legs(db, t.id, "2026-01", at, [61_000, 1])  # 62 s of voice at 1/1
    await legs(db, t.id, "2026-01", at, [30_000], column="video")
    await legs(db, t.id, "2026-01", at, [120_000], column="transcoding")  # voice and transcoding time
    await legs(db, t.id, "2026-01", None, [0])  # unanswered (486): nothing
    await legs(db, t.id, "2026-01", at, [600_000], ended=False)  # in progress: not billable yet
    await legs(db, t.id, "2026-02", ms(2026, 2, 1), [60_000])  # another month
    inv = await db.rate_month("example.com", "2026-01", PLANS)
    assert inv.line("voice.minutes").quantity == D("3.033333")  # (62 + 120) s
    assert inv.line("video.minutes").quantity == D("0.5")
    assert inv.line("transcoding.minutes").quantity == 2
    assert inv.line("voice.minutes").amount == D("0.03")


@pytest.mark.asyncio
async def test_a_month_of_the_sip_core_plan_from_store_rows(db: Store) -> None:
    """Seed 004's components from the tables the server fills."""
    t = await db.add_tenant("example.com", plan="sip-core")
    await count_log(db, "device_count_log", t.id, ms(2025, 12, 20), 40)  # in force at the start
    await count_log(db, "device_count_log", t.id, ms(2026, 1, 5), 50)  # the peak
    await count_log(db, "device_count_log", t.id, ms(2026, 1, 6), 45)
    await count_log(db, "device_count_log", t.id, ms(2026, 2, 1), 70)  # next month
    await count_log(db, "trunk_count_log", t.id, ms(2025, 11, 1), 10)
    await legs(db, t.id, "2026-01", ms(2026, 1, 3), [60_000] * 1000)
    await legs(db, t.id, "2026-01", ms(2026, 1, 3), [60_000] * 500, column="video")
    inv = await db.rate_month("example.com", "2026-01", PLANS)
    assert (inv.line("devices.provisioned.peak").quantity, inv.line("devices.provisioned.peak").amount) == (50, 100)
    assert (inv.line("trunks.provisioned.peak").quantity, inv.line("trunks.provisioned.peak").amount) == (10, 100)
    assert inv.line("voice.minutes").amount == D("10.00") and inv.line("video.minutes").amount == D("10.00")
    assert inv.total == D("220.00")


# ------------------------------------------------------------------ calendars


@pytest.mark.asyncio
async def test_time_zone_east_of_utc_at_the_month_boundary(db: Store) -> None:
    """2026-01-31T20:00Z is February in Tokyo: the leg, the login and the
    provisioning change of that instant belong to Tokyo's February."""
    tokyo = await db.add_tenant("tokyo.example", plan="sip-core", timezone="Asia/Tokyo")
    utc = await db.add_tenant("utc.example", plan="sip-core")
    at = ms(2026, 1, 31, 20)
    for t, month in ((tokyo, "2026-02"), (utc, "2026-01")):  # the month metering stamped
        await legs(db, t.id, month, at, [60_000])
        await count_log(db, "device_count_log", t.id, ms(2025, 12, 1), 2)
        await count_log(db, "device_count_log", t.id, ms(2026, 1, 31, 16), 5)  # Feb 1, 01:00 in Tokyo
    tokyo_jan = await db.rate_month("tokyo.example", "2026-01", PLANS)
    tokyo_feb = await db.rate_month("tokyo.example", "2026-02", PLANS)
    utc_jan = await db.rate_month("utc.example", "2026-01", PLANS)
    assert (tokyo_jan.line("voice.minutes").quantity, tokyo_feb.line("voice.minutes").quantity) == (0, 1)
    assert (
        tokyo_jan.line("devices.provisioned.peak").quantity,
        tokyo_feb.line("devices.provisioned.peak").quantity,
    ) == (2, 5)
    assert utc_jan.line("voice.minutes").quantity == 1 and utc_jan.line("devices.provisioned.peak").quantity == 5
    assert (tokyo_feb.tz, tokyo_feb.period) == ("Asia/Tokyo", "2026-02")


@pytest.mark.asyncio
async def test_mid_month_plan_change_prorates_and_rates_usage_by_the_plan_in_force(db: Store, clock: FakeClock) -> None:
    """Seed 001: free tier until the 15th, Small from the 16th (Tokyo calendar)."""
    clock.now_ms = ms(2025, 6, 1, 12)
    t = await db.add_tenant("example.com", plan="voximplant-free", timezone="Asia/Tokyo")
    clock.now_ms = ms(2026, 2, 10)
    change = await db.set_plan("example.com", "voximplant-small", "2026-01-16")
    assert change.from_ms == ms(2026, 1, 15, 15)  # local midnight in Tokyo
    assert (await db.get_tenant("example.com")).plan == "voximplant-small", "tenants.plan is the plan in force now"
    assert [(c.plan, c.from_ms) for c in await db.plan_history("example.com")] == [
        ("voximplant-free", ms(2025, 5, 31, 15)),  # since the day it was created (Tokyo)
        ("voximplant-small", ms(2026, 1, 15, 15)),
    ]
    await mau(db, t.id, "2026-01", ms(2026, 1, 15, 14), range(1, 901))  # 900 logins on the free plan
    await mau(db, t.id, "2026-01", ms(2026, 1, 15, 16), range(1001, 6101))  # 5,100 on Small
    await counter(db, t.id, "2026-01", "messages", 100_150)  # no time: the plan at month end
    inv = await db.rate_month("example.com", "2026-01", PLANS)
    assert [(p.name, p.first_day, p.last_day) for p in inv.plans] == [
        ("voximplant-free", 1, 15),
        ("voximplant-small", 16, 31),
    ]
    assert inv.line("mau", "voximplant-free").quantity == 900 and inv.line("mau", "voximplant-free").amount == 0
    assert inv.line("base", "voximplant-small").amount == D("51.61")  # 100.00 x 16/31
    assert inv.line("mau", "voximplant-small").amount == D("3.00")  # 100 over 5,000 x 0.03
    assert inv.line("messages", "voximplant-small").amount == D("0.40")  # 2 started packs of 100
    assert inv.total == D("55.01")
    # December is all on the free plan, March all on Small.
    assert [p.name for p in (await db.rate_month("example.com", "2025-12", PLANS)).plans] == ["voximplant-free"]
    assert [p.name for p in (await db.rate_month("example.com", "2026-03", PLANS)).plans] == ["voximplant-small"]


@pytest.mark.asyncio
async def test_plan_history_edge_cases(db: Store, clock: FakeClock) -> None:
    clock.now_ms = ms(2026, 1, 20, 12)
    await db.add_tenant("example.com")  # no plan yet
    with pytest.raises(NotFound, match="no plan"):
        await db.rate_month("example.com", "2026-01", PLANS)
    await db.set_plan("example.com", "sip-core")  # default: from today, local midnight
    assert [c.from_ms for c in await db.plan_history("example.com")] == [ms(2026, 1, 20)]
    inv = await db.rate_month("example.com", "2026-01", PLANS)
    assert [(p.first_day, p.last_day) for p in inv.plans] == [(20, 31)], "a tenant pays from its first day on a plan"
    await db.set_plan("example.com", "cometchat", "2026-01-20")  # same day: the later change wins
    assert [p.name for p in (await db.rate_month("example.com", "2026-01", PLANS)).plans] == ["cometchat"]
    for bad in ("../etc/passwd", "a b", ""):
        with pytest.raises(InvalidValue):
            await db.set_plan("example.com", bad)
    with pytest.raises(InvalidValue, match="date"):
        await db.set_plan("example.com", "sip-core", "2026-02-30")
    with pytest.raises(NotFound):
        await db.set_plan("nosuch.example", "sip-core")


@pytest.mark.asyncio
async def test_a_plan_file_that_does_not_exist_names_the_file(db: Store) -> None:
    from sipcore.errors import ConfigError

    await db.add_tenant("example.com", plan="nosuch-plan")
    with pytest.raises(ConfigError, match="nosuch-plan.toml"):
        await db.rate_month("example.com", "2026-01", PLANS)


# ------------------------------------------------------------------ children


@pytest.mark.asyncio
async def test_child_usage_rolls_up_to_the_parent_invoice(db: Store) -> None:
    parent = await db.add_tenant("parent.example", plan="cometchat")
    child = await db.add_tenant("child.example", plan="sip-core")  # a child's own plan is not used
    grandchild = await db.add_tenant("grandchild.example")
    await db.set_parent("child.example", "parent.example")
    await db.set_parent("grandchild.example", "child.example")
    await mau(db, parent.id, "2026-01", ms(2026, 1, 2), range(1, 701))
    await mau(db, child.id, "2026-01", ms(2026, 1, 3), range(1001, 1301))
    await mau(db, grandchild.id, "2026-01", ms(2026, 1, 4), range(2001, 2051))  # 1,050 together
    await legs(db, child.id, "2026-01", ms(2026, 1, 5), [90_000])  # 60/60: 2 minutes
    await execute(
        db,
        "INSERT INTO usage_gauge VALUES (?, '2026-01', 'connections.peak', ?, ?)",
        [(parent.id, 40, ms(2026, 1, 6)), (child.id, 15, ms(2026, 1, 7))],
    )
    inv = await db.rate_month("parent.example", "2026-01", PLANS)
    assert inv.members == ("child.example", "grandchild.example")
    assert inv.line("mau").quantity == 1050 and inv.line("mau").amount == D("6.00")  # 50 x 0.12
    assert inv.line("connections.peak").quantity == 55 and inv.line("connections.peak").amount == D("5.00")
    assert inv.line("voice.minutes").quantity == 2
    with pytest.raises(InvalidValue, match="parent.example's invoice"):
        await db.rate_month("grandchild.example", "2026-01", PLANS)
    accounts, without = await db.billing_accounts("2026-01")
    assert [t.domain for t in accounts] == ["parent.example"] and without == []
    with pytest.raises(InvalidValue, match="cycle"):
        await db.set_parent("parent.example", "grandchild.example")


@pytest.mark.asyncio
async def test_provisioned_peaks_of_a_family_are_peaks_of_the_sum(db: Store) -> None:
    parent = await db.add_tenant("parent.example", plan="sip-core")
    child = await db.add_tenant("child.example")
    await db.set_parent("child.example", "parent.example")
    await count_log(db, "device_count_log", parent.id, ms(2026, 1, 1), 10)
    await count_log(db, "device_count_log", child.id, ms(2026, 1, 2), 5)  # 15 together
    await count_log(db, "device_count_log", parent.id, ms(2026, 1, 3), 2)  # 7
    await count_log(db, "device_count_log", child.id, ms(2026, 1, 4), 8)  # 10: not above 15
    inv = await db.rate_month("parent.example", "2026-01", PLANS)
    assert inv.line("devices.provisioned.peak").quantity == 15, "not 10 + 8, the sum of separate peaks"


# ------------------------------------------------------------------ invoices


@pytest.mark.asyncio
async def test_issue_is_idempotent_and_a_price_fix_makes_revision_2(
    db: Store, tmp_path: Path, clock: FakeClock
) -> None:
    plans = write_plan(tmp_path, "p", 'base_fee = "10.00"\n[metrics.mau]\nunit_price = "0.10"\n')
    t = await db.add_tenant("example.com", plan="p")
    await mau(db, t.id, "2026-01", ms(2026, 1, 2), range(100))
    first = await db.issue_invoice(await db.rate_month("example.com", "2026-01", plans))
    assert first.created and first.issued.revision == 1 and first.issued.invoice.total == D("20.00")
    clock.advance(60_000)
    again = await db.issue_invoice(await db.rate_month("example.com", "2026-01", plans))
    assert not again.created and again.issued.revision == 1 and again.issued.issued_ms == first.issued.issued_ms
    # A price fix in the plan file: re-rating makes revision 2; revision 1 stays as issued.
    plans = write_plan(tmp_path, "p", 'base_fee = "10.00"\n[metrics.mau]\nunit_price = "0.05"\n')
    fixed = await db.rate_month("example.com", "2026-01", plans)
    assert await db.next_revision(fixed) == 2
    second = await db.issue_invoice(fixed)
    assert second.created and second.issued.revision == 2 and second.issued.invoice.total == D("15.00")
    assert second.issued.invoice.revision == 2
    assert (await db.invoice("example.com", "2026-01")).revision == 2
    assert (await db.invoice("example.com", "2026-01", 1)).invoice.total == D("20.00")
    assert [(i.revision, i.invoice.total) for i in await db.invoices("example.com")] == [
        (1, D("20.00")),
        (2, D("15.00")),
    ]
    assert await db.invoices(month="2026-02") == []
    with pytest.raises(NotFound, match="revision 3"):
        await db.invoice("example.com", "2026-01", 3)
    # Issued rows are immutable in the database itself.
    for sql in ("UPDATE invoices SET total_minor = 0", "DELETE FROM invoices"):
        with pytest.raises(StoreError, match="immutable"):
            await execute(db, sql)
    async with db._tx(write=False) as c:
        async with c.execute("SELECT revision, subtotal_minor, tax_minor, total_minor, currency FROM invoices") as cur:
            assert await cur.fetchall() == [(1, 2000, 0, 2000, "USD"), (2, 1500, 0, 1500, "USD")]


@pytest.mark.asyncio
async def test_tenant_tax_rate_overrides_the_plans(db: Store) -> None:
    await db.add_tenant("example.com", plan="voximplant-small")
    await db.set_tax("example.com", D("20"))
    assert await db.tax_percent("example.com") == D("20")
    inv = await db.rate_month("example.com", "2026-01", PLANS)
    assert (inv.subtotal, inv.tax, inv.total) == (D("100.00"), D("20.00"), D("120.00"))
    await db.set_tax("example.com", None)
    assert (await db.rate_month("example.com", "2026-01", PLANS)).total == D("100.00")
    with pytest.raises(InvalidValue):
        await db.set_tax("example.com", D("101"))


@pytest.mark.asyncio
async def test_webhook_url_is_checked(db: Store) -> None:
    await db.add_tenant("example.com")
    t = await db.set_webhook("example.com", "http://127.0.0.1:8080/hook?x=1")
    assert t.webhook_url == (await db.get_tenant("example.com")).webhook_url == "http://127.0.0.1:8080/hook?x=1"
    for bad in ("ftp://x/y", "http://", "not a url", "http://h:99999/"):
        with pytest.raises(InvalidValue):
            await db.set_webhook("example.com", bad)
    await db.set_webhook("example.com", None)
    assert (await db.get_tenant("example.com")).webhook_url is None


@pytest.mark.asyncio
async def test_a_store_error_never_leaks_sqlite(db: Store) -> None:
    with pytest.raises(ConstraintViolation):
        await execute(db, "INSERT INTO alerts (tenant_id, month, metric, threshold_pct, value, included, at_ms)"
                          " VALUES (1, '2026-01', 'mau', 150, 1, '1', 1)")  # fmt: skip


@pytest.mark.asyncio
async def test_a_tenant_is_billed_from_the_day_it_was_created(db: Store, clock: FakeClock) -> None:
    """A tenant on tenants.plan (no history) pays from its creation day; a month
    before that has no invoice, so issuing a past month never charges it."""
    clock.now_ms = ms(2026, 1, 22, 10)
    await db.add_tenant("late.example", plan="voximplant-small")
    inv = await db.rate_month("late.example", "2026-01", PLANS)
    assert [(p.first_day, p.last_day) for p in inv.plans] == [(22, 31)]
    assert inv.line("base").amount == D("32.26")  # 100.00 x 10/31
    with pytest.raises(NotFound, match="no plan in 2025-12"):
        await db.rate_month("late.example", "2025-12", PLANS)
    assert [t.domain for t in (await db.billing_accounts("2025-12"))[1]] == ["late.example"]
    assert (await db.rate_month("late.example", "2026-02", PLANS)).line("base").amount == D("100.00")
