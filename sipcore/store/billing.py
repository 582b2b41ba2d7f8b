"""The store's billing side (EDGE): rating input aggregated in SQL, invoices, alerts, webhook outbox.

Mixed into :class:`~sipcore.store.Store`; its base :class:`~sipcore.store.billing_alerts.AlertsStore`
holds the alerts, the webhook outbox and the real-time guard's input.

Rating input (:meth:`BillingStore.rating_input`): one aggregate query per
table and (account, month), never a row per leg in Python.  Each leg is
rounded *in SQL* with the increment of the plan in force when it was
answered (first/next seconds and minimum: ``_billed_sql``), and the sums are
handed to the pure engine as :class:`~sipcore.rating.RoundedLegs`, which
checks that the rounding matches the plan.  10 million legs rate in a few
seconds (``bench/rating.py``).

Roll-up (METERING.md: "a child's usage rolls up to the parent's invoice"):
a billing account is a tenant without a parent; its invoice covers its own
usage and that of every descendant.  Each member's rows are taken from the
month of the same name in the member's own time zone (metering already put
every record in its tenant's month); only provisioning logs, which carry no
month, are cut at the account's month bounds.  ``devices.provisioned.peak``
and ``trunks.provisioned.peak`` are the peaks of the summed counts;
``connections.peak`` is the sum of the members' monthly peaks (the store
keeps each tenant's maximum, not its time series: an upper bound).

Plan periods: minute legs go to the plan in force at their answer, MAU to the
one in force at the device's first login of the month, peaks by when they
happened; the monthly counters (``messages``, ``signaling.bytes_out``) have
no per-event time and go to the plan in force at month end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

import aiosqlite

from sipcore.rating import (
    METRICS,
    MINOR_UNITS,
    Count,
    Invoice,
    Kind,
    PlanLibrary,
    PlanPeriod,
    RoundedLegs,
    Usage,
    rate_periods,
)
from sipcore.rating.metrics import MINUTE_METRICS
from sipcore.rating.plan import PER_SECOND, Plan, check_plan_name
from sipcore.rating.usage import day_start_ms, local_day
from sipcore.store.billing_alerts import TENANT_COLS, AlertsStore, check_webhook_url, fetch_all, fetch_one, tenant_row
from sipcore.store.errors import InvalidValue, NotFound
from sipcore.store.models import Tenant
from sipcore.store.months import check_month, month_bounds_ms, zone

log = logging.getLogger(__name__)

_LEG_COLUMN = {"voice.minutes": "voice_ms", "video.minutes": "video_ms", "transcoding.minutes": "transcoding_ms"}
_INVOICE_COLS = "i.id, t.domain, i.month, i.revision, i.issued_ms, i.body"
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class PlanChange:
    """A row of a tenant's plan history: ``plan`` in force from ``from_ms``."""

    tenant_id: int
    plan: str
    from_ms: int
    set_ms: int


@dataclass(frozen=True, slots=True)
class RatingInput:
    """Everything the pure engine needs for one billing account's month."""

    tenant: Tenant
    month: str
    usage: Usage
    periods: tuple[PlanPeriod, ...]
    tax_percent: Decimal | None
    members: tuple[str, ...]
    """Child tenants (domains) whose usage is included."""

    def rate(self) -> Invoice:
        return rate_periods(
            self.usage, self.periods, tenant=self.tenant.domain, tax_percent=self.tax_percent, members=self.members
        )


@dataclass(frozen=True, slots=True)
class IssuedInvoice:
    """One stored, immutable revision."""

    id: int
    domain: str
    month: str
    revision: int
    issued_ms: int
    invoice: Invoice


@dataclass(frozen=True, slots=True)
class IssueResult:
    issued: IssuedInvoice
    created: bool
    """False when the rating equals the latest revision: nothing was written."""


def invoice_digest(invoice: Invoice) -> str:
    """SHA-256 of what an invoice says, without its revision and plan file paths."""
    d = invoice.to_json_dict()
    d["revision"] = 0
    for p in d["plans"]:
        p["source"] = ""
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _minor(amount: Decimal, digits: int) -> int:
    return int(amount.scaleb(digits).to_integral_exact())


def _billed_sql(column: str, first_s: int, next_s: int, min_s: int) -> str:
    """SQL for one leg's billed seconds: ``Increment.billed_seconds`` in integers.

    A started second counts (+999 // 1000), then the minimum, then the first
    step, then started next steps; 0 ms bills nothing (the caller filters)."""
    f, n, m = int(first_s), int(next_s), int(min_s)
    # For a leg with time (column > 0) started seconds are >= 1, so a minimum
    # not above the first step changes nothing, and 1/1 is the started seconds
    # themselves: the common tariffs cost one division per leg.
    secs = f"max(({column} + 999) / 1000, {m})" if m > f else f"(({column} + 999) / 1000)"
    if f == n == 1:
        return secs
    return f"CASE WHEN {secs} <= {f} THEN {f} ELSE {f} + (({secs} - {f} + {n - 1}) / {n}) * {n} END"


def _period_sql(column: str, starts: Sequence[int]) -> str:
    """SQL for the index of the plan period of ``column`` (earlier -> 0, later -> last)."""
    return " + ".join(f"({column} >= {int(s)})" for s in starts[1:]) or "0"


def _invoice_row(r: Any) -> IssuedInvoice:
    return IssuedInvoice(r[0], r[1], r[2], r[3], r[4], Invoice.from_json_dict(json.loads(r[5])))


class BillingStore(AlertsStore):
    """Plans over time, rating input, invoices, alerts and the webhook outbox (see the module docstring)."""

    # -- tenants' billing settings -------------------------------------------

    async def _provisioning_changed(self, db: aiosqlite.Connection) -> None:
        # A running server polls this serial to reload tenants (and the guard's plans).
        await db.execute("UPDATE meta SET value = value + 1 WHERE key = 'provisioning_serial'")

    async def set_plan(self, domain: str, plan: str, from_day: str | None = None) -> PlanChange:
        """Put a tenant on ``plan`` from local midnight of ``from_day`` ('YYYY-MM-DD' in the
        tenant's zone; default today).  A change inside a month splits it into plan
        periods: base fees prorate by days, usage goes to the plan in force (seed 001)."""
        try:
            check_plan_name(plan)
        except ValueError as e:
            raise InvalidValue(str(e)) from None
        now = self.now_ms()
        async with self._tx() as db:
            t = await self._tenant_by_domain(db, domain)
            if from_day is None:
                month, day = local_day(now, t.timezone)
                from_ms = day_start_ms(month, day, t.timezone)
            else:
                from_ms = _day_start(from_day, t.timezone)
            history = await fetch_one(db, "SELECT 1 FROM tenant_plans WHERE tenant_id = ?", (t.id,))
            if t.plan is not None and not history:
                # The plan the tenant had until now, in force since the day it was created.
                await db.execute(
                    "INSERT INTO tenant_plans (tenant_id, from_ms, plan, set_ms) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (tenant_id, from_ms) DO NOTHING",
                    (t.id, _created_day_ms(t), t.plan, now),
                )
            await db.execute(
                "INSERT INTO tenant_plans (tenant_id, from_ms, plan, set_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, from_ms) DO UPDATE SET plan = excluded.plan, set_ms = excluded.set_ms",
                (t.id, from_ms, plan, now),
            )
            current = await fetch_one(
                db,
                "SELECT plan FROM tenant_plans WHERE tenant_id = ? AND from_ms <= ? ORDER BY from_ms DESC LIMIT 1",
                (t.id, now),
            )
            await db.execute("UPDATE tenants SET plan = ? WHERE id = ?", (current[0] if current else None, t.id))
            await self._provisioning_changed(db)
        return PlanChange(t.id, plan, from_ms, now)

    async def plan_history(self, domain: str) -> list[PlanChange]:
        """The tenant's plan changes, oldest first (empty: always on ``tenants.plan``)."""
        async with self._tx(write=False) as db:
            t = await self._tenant_by_domain(db, domain)
            rows = await fetch_all(
                db, "SELECT plan, from_ms, set_ms FROM tenant_plans WHERE tenant_id = ? ORDER BY from_ms", (t.id,)
            )
        return [PlanChange(t.id, r[0], r[1], r[2]) for r in rows]

    async def set_webhook(self, domain: str, url: str | None) -> Tenant:
        """Set (or clear, with None) the URL alerts of the tenant's account are POSTed to."""
        if url is not None:
            check_webhook_url(url)
        async with self._tx() as db:
            t = await self._tenant_by_domain(db, domain)
            await db.execute("UPDATE tenants SET webhook_url = ? WHERE id = ?", (url, t.id))
        return replace(t, webhook_url=url)

    async def set_tax(self, domain: str, tax_percent: Decimal | None) -> None:
        """The tenant's own tax rate in percent (None: the plan's applies)."""
        if tax_percent is not None and not (tax_percent.is_finite() and 0 <= tax_percent <= 100):
            raise InvalidValue("the tax rate must be a percentage between 0 and 100")
        async with self._tx() as db:
            t = await self._tenant_by_domain(db, domain)
            if tax_percent is None:
                await db.execute("DELETE FROM tenant_tax WHERE tenant_id = ?", (t.id,))
            else:
                await db.execute(
                    "INSERT INTO tenant_tax (tenant_id, tax_percent, updated_ms) VALUES (?, ?, ?) ON CONFLICT"
                    " (tenant_id) DO UPDATE SET tax_percent = excluded.tax_percent, updated_ms = excluded.updated_ms",
                    (t.id, format(tax_percent, "f"), self.now_ms()),
                )

    async def tax_percent(self, domain: str) -> Decimal | None:
        async with self._tx(write=False) as db:
            t = await self._tenant_by_domain(db, domain)
            row = await fetch_one(db, "SELECT tax_percent FROM tenant_tax WHERE tenant_id = ?", (t.id,))
        return Decimal(row[0]) if row else None

    async def set_parent(self, domain: str, parent: str | None) -> Tenant:
        """Make a tenant the child of another (its usage rolls up to the parent's invoice), or not."""
        async with self._tx() as db:
            t = await self._tenant_by_domain(db, domain)
            parent_id = None
            if parent is not None:
                p = await self._tenant_by_domain(db, parent)
                chain = await fetch_all(
                    db,
                    "WITH RECURSIVE up(id) AS (SELECT ? UNION SELECT t.parent_id FROM tenants t JOIN up ON t.id = up.id"
                    " WHERE t.parent_id IS NOT NULL) SELECT id FROM up",
                    (p.id,),
                )
                if t.id in {r[0] for r in chain}:
                    raise InvalidValue(f"{p.domain} cannot be the parent of {t.domain}: that makes a cycle")
                parent_id = p.id
            await db.execute("UPDATE tenants SET parent_id = ? WHERE id = ?", (parent_id, t.id))
            await self._provisioning_changed(db)
        return replace(t, parent_id=parent_id)

    # -- rating input --------------------------------------------------------

    async def _root(self, db: aiosqlite.Connection, t: Tenant) -> Tenant:
        seen = {t.id}
        while t.parent_id is not None:
            row = await fetch_one(db, f"SELECT {TENANT_COLS} FROM tenants WHERE id = ?", (t.parent_id,))
            if row is None or row[0] in seen:
                break
            t = tenant_row(row)
            seen.add(t.id)
        return t

    async def _plan_days(self, db: aiosqlite.Connection, t: Tenant, month: str) -> list[tuple[int, str]]:
        """(first day, plan name) of each plan period of ``month`` in the tenant's zone."""
        start, end = month_bounds_ms(month, t.timezone)
        rows = await fetch_all(
            db, "SELECT from_ms, plan FROM tenant_plans WHERE tenant_id = ? ORDER BY from_ms", (t.id,)
        )
        if not rows:
            # Always on tenants.plan, since the day the tenant was created (a
            # month before that has no invoice; the first month pays from that day).
            if not t.plan or t.created_ms >= end:
                return []
            return [(1 if t.created_ms <= start else local_day(t.created_ms, t.timezone)[1], t.plan)]
        periods: list[tuple[int, str]] = []
        before = [plan for from_ms, plan in rows if from_ms <= start]
        if before:
            periods.append((1, before[-1]))
        for from_ms, plan in rows:
            if not start < from_ms < end:
                continue
            day = local_day(from_ms, t.timezone)[1]
            if periods and periods[-1][0] == day:
                periods.pop()  # a later change the same day wins
            if not periods or periods[-1][1] != plan:
                periods.append((day, plan))
        return periods

    async def rating_input(self, domain: str, month: str, plans: PlanLibrary) -> RatingInput:
        """The account's usage of ``month`` (its zone), aggregated in SQL, with its plan periods."""
        check_month(month)
        async with self._tx(write=False) as db:
            t = await self._tenant_by_domain(db, domain)
            if t.parent_id is not None:
                root = await self._root(db, t)
                raise InvalidValue(f"{t.domain} is a child tenant: its usage is rated on {root.domain}'s invoice")
            days = await self._plan_days(db, t, month)
            if not days:
                raise NotFound(f"tenant {t.domain} has no plan in {month} (sipcore billing plan {t.domain} NAME)")
            periods = tuple(PlanPeriod(plans.get(name), day) for day, name in days)
            starts = [day_start_ms(month, day, t.timezone) for day, _ in days]
            end = month_bounds_ms(month, t.timezone)[1]
            family = await self._family(db, t.id)
            ids = ",".join(str(int(m.id)) for m in family)
            rounded = await self._minutes(db, ids, month, starts, [p.plan for p in periods])
            counts = await self._counts(db, ids, month, starts, end)
            tax = await fetch_one(db, "SELECT tax_percent FROM tenant_tax WHERE tenant_id = ?", (t.id,))
        usage = Usage(month, t.timezone, counts=tuple(counts), rounded=tuple(rounded))
        return RatingInput(
            t, month, usage, periods, Decimal(tax[0]) if tax else None, tuple(m.domain for m in family[1:])
        )

    async def rate_month(self, domain: str, month: str, plans: PlanLibrary) -> Invoice:
        """The invoice the account's month would get now (not stored: see :meth:`issue_invoice`)."""
        return (await self.rating_input(domain, month, plans)).rate()

    async def _minutes(
        self, db: aiosqlite.Connection, ids: str, month: str, starts: list[int], plans: list[Plan]
    ) -> list[RoundedLegs]:
        """Billed seconds per minute metric and plan period: ONE pass over the month's legs."""
        cols: list[tuple[str, int, tuple[int, int, int]]] = []
        exprs: list[str] = []
        period = _period_sql("answer_ms", starts)
        for i, plan in enumerate(plans):
            for metric, column in _LEG_COLUMN.items():
                r = plan.rate_of(metric)
                inc, min_s = (r.increment, r.min_seconds) if r is not None else (PER_SECOND, 0)
                cond = f"{column} > 0" + (f" AND {period} = {i}" if len(plans) > 1 else "")
                exprs.append(f"sum(CASE WHEN {cond} THEN {_billed_sql(column, inc.first_s, inc.next_s, min_s)} END)")
                exprs.append(f"count(CASE WHEN {cond} THEN 1 END)")
                cols.append((metric, i, (inc.first_s, inc.next_s, min_s)))
        row = await fetch_one(
            db,
            f"SELECT {', '.join(exprs)} FROM legs WHERE tenant_id IN ({ids}) AND month = ?"
            " AND answer_ms IS NOT NULL AND end_ms IS NOT NULL",
            (month,),
        )
        out = []
        for k, (metric, i, (first_s, next_s, min_s)) in enumerate(cols):
            billed, legs = row[2 * k], row[2 * k + 1]
            if legs:
                out.append(RoundedLegs(metric, int(billed), int(legs), first_s, next_s, min_s, at_ms=starts[i]))
        assert set(_LEG_COLUMN) == MINUTE_METRICS
        return out

    async def _counts(self, db: aiosqlite.Connection, ids: str, month: str, starts: list[int], end: int) -> list[Count]:
        out: list[Count] = []
        last = starts[-1]
        # mau: by the device's first login of the month.
        for p, n in await fetch_all(
            db,
            f"SELECT {_period_sql('first_ms', starts)} AS p, count(*) FROM usage_mau"
            f" WHERE tenant_id IN ({ids}) AND month = ? GROUP BY p",
            (month,),
        ):
            out.append(Count("mau", Decimal(n), at_ms=starts[int(p)]))
        # Monthly counters have no per-event time: the plan in force at month end.
        for metric, value in await fetch_all(
            db,
            f"SELECT metric, sum(value) FROM usage_counter WHERE tenant_id IN ({ids}) AND month = ? GROUP BY metric",
            (month,),
        ):
            if metric in METRICS and METRICS[metric].kind is Kind.SUM and value:
                out.append(Count(metric, Decimal(value), at_ms=last))
        # Gauges (connections.peak): the members' peaks summed, when the last was reached.
        for metric, value, at in await fetch_all(
            db,
            f"SELECT metric, sum(value), max(updated_ms) FROM usage_gauge WHERE tenant_id IN ({ids}) AND month = ?"
            " GROUP BY metric",
            (month,),
        ):
            if metric in METRICS and METRICS[metric].kind is Kind.PEAK and value:
                out.append(Count(metric, Decimal(value), at_ms=min(max(int(at), starts[0]), end - 1)))
        for metric, table in (
            ("devices.provisioned.peak", "device_count_log"),
            ("trunks.provisioned.peak", "trunk_count_log"),
        ):
            for i, peak in enumerate(await self._log_peaks(db, table, ids, starts, end)):
                if peak:
                    out.append(Count(metric, Decimal(peak), at_ms=starts[i]))
        return out

    async def _log_peaks(
        self, db: aiosqlite.Connection, table: str, ids: str, starts: list[int], end: int
    ) -> list[int]:
        """Peak of the members' summed provisioned counts in each plan period.

        The count in force at a period's start counts, so does every count
        logged inside it (the rowid orders changes that share a millisecond)."""
        current: dict[int, int] = {
            int(r[0]): int(r[1])
            for r in await fetch_all(
                db,
                f"SELECT tenant_id, count FROM {table} l WHERE tenant_id IN ({ids}) AND rowid = (SELECT rowid"
                f" FROM {table} WHERE tenant_id = l.tenant_id AND at_ms < ? ORDER BY at_ms DESC, rowid DESC LIMIT 1)",
                (starts[0],),
            )
        }
        events = await fetch_all(
            db,
            f"SELECT tenant_id, at_ms, count FROM {table} WHERE tenant_id IN ({ids}) AND at_ms >= ? AND at_ms < ?"
            " ORDER BY at_ms, rowid",
            (starts[0], end),
        )
        total = sum(current.values())
        peaks = [total] + [0] * (len(starts) - 1)
        i = 0
        for tid, at, count in events:
            while i + 1 < len(starts) and at >= starts[i + 1]:
                i += 1
                peaks[i] = max(peaks[i], total)  # in force when the period starts
            total += int(count) - current.get(int(tid), 0)
            current[int(tid)] = int(count)
            peaks[i] = max(peaks[i], total)
        while i + 1 < len(starts):
            i += 1
            peaks[i] = total
        return peaks

    async def billing_accounts(self, month: str) -> tuple[list[Tenant], list[Tenant]]:
        """(accounts with a plan in ``month``, accounts without): tenants that have no parent."""
        check_month(month)
        async with self._tx(write=False) as db:
            roots = [
                tenant_row(r)
                for r in await fetch_all(
                    db, f"SELECT {TENANT_COLS} FROM tenants WHERE parent_id IS NULL ORDER BY domain"
                )
            ]
            with_plan: list[Tenant] = []
            without: list[Tenant] = []
            for t in roots:
                (with_plan if await self._plan_days(db, t, month) else without).append(t)
        return with_plan, without

    # -- invoices --------------------------------------------------------------

    async def issue_invoice(self, invoice: Invoice) -> IssueResult:
        """Store ``invoice`` as the next revision of its tenant's month, unless it says
        exactly what the latest revision says.  Issued rows are never updated."""
        digest = invoice_digest(invoice)
        now = self.now_ms()
        async with self._tx() as db:
            t = await self._tenant_by_domain(db, invoice.tenant)
            latest = await fetch_one(
                db,
                f"SELECT {_INVOICE_COLS}, i.digest FROM invoices i JOIN tenants t ON t.id = i.tenant_id"
                " WHERE i.tenant_id = ? AND i.month = ? ORDER BY i.revision DESC LIMIT 1",
                (t.id, invoice.period),
            )
            if latest is not None and latest[6] == digest:
                return IssueResult(_invoice_row(latest), created=False)
            revision = latest[3] + 1 if latest is not None else 1
            inv = replace(invoice, revision=revision)
            digits = MINOR_UNITS[inv.currency]
            cur = await db.execute(
                "INSERT INTO invoices (tenant_id, month, revision, issued_ms, plans, currency, minor_digits,"
                " subtotal_minor, tax_minor, total_minor, digest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    t.id, inv.period, revision, now, ",".join(p.name for p in inv.plans), inv.currency, digits,
                    _minor(inv.subtotal, digits), _minor(inv.tax, digits), _minor(inv.total, digits), digest,
                    json.dumps(inv.to_json_dict(), sort_keys=True),
                ),
            )  # fmt: skip
        assert cur.lastrowid is not None
        return IssueResult(IssuedInvoice(cur.lastrowid, t.domain, inv.period, revision, now, inv), created=True)

    async def invoice(self, domain: str, month: str, revision: int | None = None) -> IssuedInvoice:
        """An issued revision (default: the latest)."""
        check_month(month)
        async with self._tx(write=False) as db:
            t = await self._tenant_by_domain(db, domain)
            sql = f"SELECT {_INVOICE_COLS} FROM invoices i JOIN tenants t ON t.id = i.tenant_id"
            sql += " WHERE i.tenant_id = ? AND i.month = ?"
            if revision is None:
                row = await fetch_one(db, sql + " ORDER BY i.revision DESC LIMIT 1", (t.id, month))
            else:
                row = await fetch_one(db, sql + " AND i.revision = ?", (t.id, month, revision))
        if row is None:
            which = f"revision {revision} of " if revision is not None else ""
            raise NotFound(f"no issued invoice: {which}{t.domain} {month} (sipcore invoice issue --month {month})")
        return _invoice_row(row)

    async def invoices(self, domain: str | None = None, month: str | None = None) -> list[IssuedInvoice]:
        """Every issued revision, filtered by tenant and/or month."""
        sql = f"SELECT {_INVOICE_COLS} FROM invoices i JOIN tenants t ON t.id = i.tenant_id WHERE 1"
        params: list[Any] = []
        async with self._tx(write=False) as db:
            if domain is not None:
                sql += " AND i.tenant_id = ?"
                params.append((await self._tenant_by_domain(db, domain)).id)
            if month is not None:
                check_month(month)
                sql += " AND i.month = ?"
                params.append(month)
            rows = await fetch_all(db, sql + " ORDER BY t.domain, i.month, i.revision", params)
        return [_invoice_row(r) for r in rows]

    async def next_revision(self, invoice: Invoice) -> int:
        """The revision issuing ``invoice`` would give (the latest one when unchanged)."""
        async with self._tx(write=False) as db:
            t = await self._tenant_by_domain(db, invoice.tenant)
            row = await fetch_one(
                db,
                "SELECT revision, digest FROM invoices WHERE tenant_id = ? AND month = ?"
                " ORDER BY revision DESC LIMIT 1",
                (t.id, invoice.period),
            )
        if row is None:
            return 1
        return int(row[0]) if row[1] == invoice_digest(invoice) else int(row[0]) + 1


def _created_day_ms(t: Tenant) -> int:
    """Local midnight starting the day the tenant was created."""
    month, day = local_day(t.created_ms, t.timezone)
    return day_start_ms(month, day, t.timezone)


def _day_start(text: str, tz: str) -> int:
    """Local midnight of 'YYYY-MM-DD' in ``tz`` as ms UTC; :class:`InvalidValue` when not a date."""
    try:
        if not _DATE_RE.fullmatch(text):
            raise ValueError("expected YYYY-MM-DD")
        d = date.fromisoformat(text)
    except ValueError as e:
        raise InvalidValue(f"date {text!r}: {e}") from None
    zone(tz)
    month = f"{d.year:04d}-{d.month:02d}"
    check_month(month)
    return day_start_ms(month, d.day, tz)
