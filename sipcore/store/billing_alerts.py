"""The store's alert side (EDGE): real-time guard input, usage alerts and the webhook outbox.

Part of :class:`~sipcore.store.billing.BillingStore` (split for size).  The
sans-IO :class:`~sipcore.metering.limits.UsageGuard` is filled at start from
:meth:`AlertsStore.guard_tenants` and :meth:`AlertsStore.guard_state`; the
alerts it returns come back through :meth:`AlertsStore.record_alerts`, which
stores each one exactly once (UNIQUE key) together with its webhook outbox
row, and :mod:`sipcore.webhooks` delivers the outbox.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiosqlite

from sipcore.errors import SipcoreError
from sipcore.metering.limits import GuardState, TenantPolicy, UsageAlert
from sipcore.rating import PlanLibrary
from sipcore.store.credentials import check_domain
from sipcore.store.db import Database
from sipcore.store.errors import InvalidValue, NotFound
from sipcore.store.models import Tenant
from sipcore.store.months import check_month, month_of

log = logging.getLogger(__name__)

TENANT_COLS = "id, domain, plan, timezone, parent_id, webhook_url, created_ms"
_OUTBOX_COLS = "id, tenant_id, alert_id, url, body, created_ms, attempts, next_attempt_ms, delivered_ms, last_error"


@dataclass(frozen=True, slots=True)
class AlertRow:
    """A stored alert and the state of its webhook."""

    id: int
    tenant_id: int
    domain: str
    month: str
    metric: str
    threshold_pct: int
    value: int
    included: Decimal
    at_ms: int
    webhook: str
    """'-' (no webhook URL), 'pending', 'delivered' or 'failed' (gave up)."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One queued webhook POST."""

    id: int
    tenant_id: int
    alert_id: int | None
    url: str
    body: str
    """The JSON document to POST."""
    created_ms: int
    attempts: int
    next_attempt_ms: int | None
    """None once delivered or given up."""
    delivered_ms: int | None
    last_error: str | None


def check_webhook_url(url: str) -> str:
    """An http:// or https:// URL with a host; :class:`InvalidValue` otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise InvalidValue(f"webhook URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise InvalidValue(f"webhook URL {url!r}: expected http://HOST[:PORT]/PATH or https://...")
    return url


def tenant_row(r: Any) -> Tenant:
    return Tenant(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


async def fetch_one(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    async with db.execute(sql, params) as cur:
        return await cur.fetchone()


async def fetch_all(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    async with db.execute(sql, params) as cur:
        return list(await cur.fetchall())


def _outbox(r: Any) -> OutboxRow:
    return OutboxRow(*r)


class AlertsStore(Database):
    """Guard input, alerts and the webhook outbox (see the module docstring)."""

    async def _tenant_by_domain(self, db: aiosqlite.Connection, domain: str) -> Tenant:
        row = await fetch_one(db, f"SELECT {TENANT_COLS} FROM tenants WHERE domain = ?", (check_domain(domain),))
        if row is None:
            raise NotFound(f"no tenant {domain}")
        return tenant_row(row)

    async def _family(self, db: aiosqlite.Connection, root_id: int) -> list[Tenant]:
        """The account and all its descendants, the account first."""
        rows = await fetch_all(
            db,
            "WITH RECURSIVE fam(id) AS (SELECT ? UNION SELECT t.id FROM tenants t JOIN fam ON t.parent_id = fam.id)"
            f" SELECT {TENANT_COLS} FROM tenants WHERE id IN (SELECT id FROM fam) ORDER BY id = ? DESC, domain",
            (root_id, root_id),
        )
        return [tenant_row(r) for r in rows]

    # -- real-time guard input -------------------------------------------------

    async def guard_tenants(self, plans: PlanLibrary) -> dict[int, TenantPolicy]:
        """Every tenant with the plan in force now, for :class:`~sipcore.metering.limits.UsageGuard`.

        A plan file that is missing or broken is logged and the tenant runs
        without limits: one bad file must not stop the server for everyone."""
        now = self.now_ms()
        async with self._tx(write=False) as db:
            rows = await fetch_all(
                db,
                "SELECT t.id, coalesce((SELECT p.plan FROM tenant_plans p WHERE p.tenant_id = t.id AND p.from_ms <= ?"
                " ORDER BY p.from_ms DESC LIMIT 1), t.plan), t.timezone, t.parent_id FROM tenants t",
                (now,),
            )
        out: dict[int, TenantPolicy] = {}
        for tid, name, tz, parent in rows:
            plan = None
            if name:
                try:
                    plan = plans.get(name)
                except SipcoreError as e:  # ConfigError: logged, the tenant runs without limits
                    log.error("tenant %s: plan %r cannot be used, no limits or alerts: %s", tid, name, e)
            out[int(tid)] = TenantPolicy(plan, tz, parent)
        return out

    async def guard_state(self, tenants: Mapping[int, TenantPolicy], now_ms: int) -> list[GuardState]:
        """Each billing account's current month as stored: MAU devices, counters, alerts."""
        out = []
        async with self._tx(write=False) as db:
            for tid, policy in tenants.items():
                if policy.parent_id is not None and policy.parent_id in tenants:
                    continue  # rolls up to its account
                month = month_of(now_ms, policy.timezone)
                ids = ",".join(str(int(m.id)) for m in await self._family(db, tid))
                devices = [
                    int(r[0])
                    for r in await fetch_all(
                        db, f"SELECT device_id FROM usage_mau WHERE tenant_id IN ({ids}) AND month = ?", (month,)
                    )
                ]
                counts = {
                    str(r[0]): int(r[1])
                    for r in await fetch_all(
                        db,
                        f"SELECT metric, sum(value) FROM usage_counter WHERE tenant_id IN ({ids}) AND month = ?"
                        " GROUP BY metric",
                        (month,),
                    )
                }
                alerted = [
                    (str(r[0]), int(r[1]))
                    for r in await fetch_all(
                        db, "SELECT metric, threshold_pct FROM alerts WHERE tenant_id = ? AND month = ?", (tid, month)
                    )
                ]
                out.append(GuardState(tid, month, devices, counts, alerted))
        return out

    # -- alerts and the webhook outbox -------------------------------------------

    async def record_alerts(self, alerts: Sequence[UsageAlert]) -> list[AlertRow]:
        """Store alerts and queue their webhook POSTs, in ONE transaction.

        Exactly once: an alert whose (tenant, month, metric, threshold) is
        already stored is dropped.  Returns the new ones, logged after the
        commit (ARCHITECTURE.md: side effects only after the commit)."""
        new: list[AlertRow] = []
        now = self.now_ms()
        async with self._tx() as db:
            for a in alerts:
                row = await fetch_one(
                    db,
                    "INSERT INTO alerts (tenant_id, month, metric, threshold_pct, value, included, at_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, month, metric, threshold_pct) DO NOTHING"
                    " RETURNING id",
                    (a.tenant_id, a.month, a.metric, a.threshold_pct, a.value, format(a.included, "f"), a.at_ms),
                )
                if row is None:
                    continue
                t = await fetch_one(db, "SELECT domain, webhook_url FROM tenants WHERE id = ?", (a.tenant_id,))
                domain, url = (t[0], t[1]) if t else (str(a.tenant_id), None)
                if url:
                    body = {
                        "event": "usage.threshold",
                        "id": f"alert-{row[0]}",
                        "tenant": domain,
                        "month": a.month,
                        "metric": a.metric,
                        "threshold_pct": a.threshold_pct,
                        "value": a.value,
                        "included": format(a.included, "f"),
                        "at_ms": a.at_ms,
                    }
                    await db.execute(
                        "INSERT INTO webhook_outbox (tenant_id, alert_id, url, body, created_ms, next_attempt_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (a.tenant_id, row[0], url, json.dumps(body, sort_keys=True), now, now),
                    )
                state = "pending" if url else "-"
                new.append(AlertRow(row[0], a.tenant_id, domain, a.month, a.metric, a.threshold_pct, a.value,
                                    a.included, a.at_ms, state))  # fmt: skip
        for x in new:
            log.warning(
                "usage alert: %s reached %d %% of its included %s (%d of %s) in %s",
                x.domain, x.threshold_pct, x.metric, x.value, format(x.included, "f"), x.month,
            )  # fmt: skip
        return new

    async def alerts(self, domain: str | None = None, month: str | None = None) -> list[AlertRow]:
        """Stored alerts with the state of their webhook, oldest first."""
        sql = (
            "SELECT a.id, a.tenant_id, coalesce(t.domain, a.tenant_id), a.month, a.metric, a.threshold_pct, a.value,"
            " a.included, a.at_ms, (SELECT CASE WHEN o.delivered_ms IS NOT NULL THEN 'delivered'"
            " WHEN o.next_attempt_ms IS NULL THEN 'failed' ELSE 'pending' END FROM webhook_outbox o"
            " WHERE o.alert_id = a.id ORDER BY o.id DESC LIMIT 1)"
            " FROM alerts a LEFT JOIN tenants t ON t.id = a.tenant_id WHERE 1"
        )
        params: list[Any] = []
        async with self._tx(write=False) as db:
            if domain is not None:
                sql += " AND a.tenant_id = ?"
                params.append((await self._tenant_by_domain(db, domain)).id)
            if month is not None:
                check_month(month)
                sql += " AND a.month = ?"
                params.append(month)
            rows = await fetch_all(db, sql + " ORDER BY a.at_ms, a.id", params)
        return [AlertRow(r[0], r[1], str(r[2]), r[3], r[4], r[5], r[6], Decimal(r[7]), r[8], r[9] or "-") for r in rows]

    async def due_webhooks(self, now_ms: int, limit: int = 100) -> list[OutboxRow]:
        """Outbox rows whose next attempt is due, oldest first."""
        async with self._tx(write=False) as db:
            rows = await fetch_all(
                db,
                f"SELECT {_OUTBOX_COLS} FROM webhook_outbox WHERE next_attempt_ms IS NOT NULL AND next_attempt_ms <= ?"
                " ORDER BY next_attempt_ms, id LIMIT ?",
                (now_ms, limit),
            )
        return [_outbox(r) for r in rows]

    async def next_webhook_due_ms(self) -> int | None:
        """When the next outbox row is due (None: nothing to send)."""
        async with self._tx(write=False) as db:
            row = await fetch_one(
                db, "SELECT min(next_attempt_ms) FROM webhook_outbox WHERE next_attempt_ms IS NOT NULL"
            )
        return None if row[0] is None else int(row[0])

    async def webhook_outbox(self) -> list[OutboxRow]:
        async with self._tx(write=False) as db:
            return [_outbox(r) for r in await fetch_all(db, f"SELECT {_OUTBOX_COLS} FROM webhook_outbox ORDER BY id")]

    async def webhook_attempted(
        self, outbox_id: int, now_ms: int, *, delivered: bool, error: str | None = None, retry_at_ms: int | None = None
    ) -> None:
        """Record one attempt: delivered, or failed with the next attempt (None: given up)."""
        async with self._tx() as db:
            if delivered:
                await db.execute(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, delivered_ms = ?, next_attempt_ms = NULL,"
                    " last_error = NULL WHERE id = ?",
                    (now_ms, outbox_id),
                )
            else:
                await db.execute(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ?"
                    " WHERE id = ?",
                    (retry_at_ms, (error or "failed")[:500], outbox_id),
                )
