"""Alerts in the store: exactly once with their webhook outbox row, the guard's
start-up state, and the outbox's attempt bookkeeping."""

from __future__ import annotations

import json
import logging
from decimal import Decimal as D
from pathlib import Path

import pytest

from sipcore.metering.limits import REASON_MAU, UsageAlert, UsageGuard
from sipcore.rating import PlanLibrary
from sipcore.store import Store

from .conftest import T0, FakeClock
from .test_billing import PLANS, counter, execute, mau

MONTH = "2025-01"  # T0 is 2025-01-15


def alert(tenant_id: int, pct: int, metric: str = "mau", value: int = 500) -> UsageAlert:
    return UsageAlert(tenant_id, MONTH, metric, pct, value, D(1000), T0 + pct)


@pytest.mark.asyncio
async def test_an_alert_is_stored_once_with_one_outbox_row(
    db: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    t = await db.add_tenant("example.com", plan="voximplant-free")
    await db.add_tenant("quiet.example", plan="voximplant-free")
    await db.set_webhook("example.com", "http://127.0.0.1:9/hook")
    quiet = (await db.get_tenant("quiet.example")).id
    with caplog.at_level(logging.WARNING, "sipcore.store"):
        new = await db.record_alerts([alert(t.id, 50), alert(t.id, 50), alert(quiet, 50)])
    assert [(a.domain, a.threshold_pct, a.webhook) for a in new] == [
        ("example.com", 50, "pending"),
        ("quiet.example", 50, "-"),
    ]
    assert "example.com reached 50 % of its included mau (500 of 1000) in 2025-01" in caplog.text
    assert await db.record_alerts([alert(t.id, 50)]) == [], "a replay after a restart changes nothing"
    outbox = await db.webhook_outbox()
    assert len(outbox) == 1 and outbox[0].url == "http://127.0.0.1:9/hook" and outbox[0].next_attempt_ms == T0
    body = json.loads(outbox[0].body)
    assert body == {
        "event": "usage.threshold",
        "id": f"alert-{new[0].id}",
        "tenant": "example.com",
        "month": MONTH,
        "metric": "mau",
        "threshold_pct": 50,
        "value": 500,
        "included": "1000",
        "at_ms": T0 + 50,
    }
    rows = await db.alerts()
    assert [(a.domain, a.metric, a.threshold_pct, a.value, a.included) for a in rows] == [
        ("example.com", "mau", 50, 500, D(1000)),
        ("quiet.example", "mau", 50, 500, D(1000)),
    ]
    assert [a.domain for a in await db.alerts("quiet.example")] == ["quiet.example"]
    assert await db.alerts(month="2025-02") == []


@pytest.mark.asyncio
async def test_outbox_attempts_backoff_and_delivery(db: Store, clock: FakeClock) -> None:
    t = await db.add_tenant("example.com")
    await db.set_webhook("example.com", "http://127.0.0.1:9/hook")
    await db.record_alerts([alert(t.id, 50), alert(t.id, 75)])
    assert await db.next_webhook_due_ms() == T0
    first, second = await db.due_webhooks(T0)
    await db.webhook_attempted(first.id, T0, delivered=False, error="HTTP 500", retry_at_ms=T0 + 1000)
    await db.webhook_attempted(second.id, T0, delivered=True)
    assert [r.id for r in await db.due_webhooks(T0)] == []
    assert await db.next_webhook_due_ms() == T0 + 1000
    assert [r.id for r in await db.due_webhooks(T0 + 1000)] == [first.id]
    await db.webhook_attempted(first.id, T0 + 1000, delivered=False, error="refused", retry_at_ms=None)  # given up
    assert await db.next_webhook_due_ms() is None
    states = {a.threshold_pct: a.webhook for a in await db.alerts()}
    assert states == {50: "failed", 75: "delivered"}
    rows = {r.id: r for r in await db.webhook_outbox()}
    assert (rows[first.id].attempts, rows[first.id].last_error, rows[first.id].delivered_ms) == (2, "refused", None)
    assert (rows[second.id].attempts, rows[second.id].delivered_ms) == (1, T0)


@pytest.mark.asyncio
async def test_guard_state_at_start_restores_limits_and_alerts(db: Store, clock: FakeClock) -> None:
    """What the server does at start: tenants and plans, then each account's month."""
    parent = await db.add_tenant("parent.example", plan="voximplant-free")
    child = await db.add_tenant("child.example")
    await db.add_tenant("broken.example", plan="no-such-plan")
    await db.set_parent("child.example", "parent.example")
    await mau(db, parent.id, MONTH, T0 - 1000, range(600))
    await mau(db, child.id, MONTH, T0 - 1000, range(600, 1000))  # the family is at its limit
    await mau(db, parent.id, "2024-12", T0 - 40 * 86_400_000, range(5000, 6000))  # last month: irrelevant
    await counter(db, child.id, MONTH, "messages", 26_000)
    await db.record_alerts([UsageAlert(parent.id, MONTH, "mau", 50, 500, D(1000), T0 - 1)])

    tenants = await db.guard_tenants(PLANS)
    assert tenants[child.id].parent_id == parent.id and tenants[child.id].plan is None
    assert tenants[parent.id].plan is not None and tenants[parent.id].plan.name == "voximplant-free"
    broken = (await db.get_tenant("broken.example")).id
    assert tenants[broken].plan is None, "a missing plan file is logged, not fatal"
    states = {s.tenant_id: s for s in await db.guard_state(tenants, T0)}
    assert set(states) == {parent.id, broken}, "children roll up to their account"
    assert len(set(states[parent.id].devices)) == 1000 and states[parent.id].counts == {"messages": 26_000}

    guard = UsageGuard(tenants)
    for s in states.values():
        guard.restore(s, T0)
    assert guard.mau_admit(child.id, 4242, T0) == REASON_MAU
    assert guard.mau_admit(child.id, 999, T0) is None
    alerts = guard.pop_alerts()
    assert [(a.metric, a.threshold_pct) for a in alerts] == [("mau", 75), ("mau", 100), ("messages", 50)]
    assert len(await db.record_alerts(alerts)) == 3
    # The next start finds them all stored: nothing is emitted twice.
    guard2 = UsageGuard(await db.guard_tenants(PLANS))
    for s in await db.guard_state(tenants, T0 + 1):
        guard2.restore(s, T0 + 1)
    assert guard2.pop_alerts() == []


@pytest.mark.asyncio
async def test_plan_changes_bump_the_provisioning_serial(db: Store, tmp_path: Path) -> None:
    await db.add_tenant("example.com", plan="voximplant-free")
    before = await db.provisioning_serial()
    await db.set_plan("example.com", "voximplant-small")
    assert await db.provisioning_serial() == before + 1
    guard_plans = await db.guard_tenants(PlanLibrary(tmp_path))  # an empty plans directory
    assert all(p.plan is None for p in guard_plans.values())


@pytest.mark.asyncio
async def test_alert_rows_without_tenant_are_listed_by_id(db: Store) -> None:
    await execute(
        db,
        "INSERT INTO alerts (tenant_id, month, metric, threshold_pct, value, included, at_ms)"
        " VALUES (99, ?, 'mau', 50, 1, '2', 1)",
        [(MONTH,)],
    )
    assert [(a.tenant_id, a.domain, a.webhook) for a in await db.alerts()] == [(99, "99", "-")]
