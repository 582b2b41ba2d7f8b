"""Invoices (PURE): the output of rating, and its JSON form.

METERING.md: "one line per component (quantity, included, billable, unit
price, amount), subtotal, tax, total"; issue 5 adds currency, period,
plan(s) and revision, and fixes the JSON shape: ``lines[]`` each with
``metric`` (the METERING.md name, ``base`` for the base fee), ``quantity``,
``included``, ``billable``, ``unit_price``, ``amount``, and top-level
``subtotal``, ``tax``, ``total``, ``currency``, every number a decimal
string.  An invoice is immutable; re-rating makes a new one with a higher
``revision`` (the store decides the number).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sipcore.rating.money import fmt


@dataclass(frozen=True, slots=True)
class Line:
    """One component of an invoice."""

    metric: str
    """METERING.md name, ``base`` (base fee) or ``minimum`` (top-up to the minimum charge)."""
    plan: str
    """Name of the plan that priced this line."""
    quantity: Decimal
    """Measured quantity in the metric's unit (minutes after per-leg rounding), plus ``converted``."""
    included: Decimal
    """Free quantity (fixed or derived allowance)."""
    billable: Decimal
    """Quantity above ``included`` (0 for a ``block`` metric: see ``over_limit``)."""
    unit_price: Decimal
    """Price of one ``unit``."""
    unit: str
    """What unit_price buys: 'minute', 'pack of 100 messages', 'GB (10^9 bytes)', 'month'."""
    units: Decimal
    """How many units are charged: billable / price_per, or started packs."""
    amount: Decimal
    """units x unit_price (x days / month_days when prorated), rounded half up to the minor unit."""
    converted: Decimal = Decimal(0)
    """Part of ``quantity`` that was converted from another metric's excess (003)."""
    over_limit: Decimal = Decimal(0)
    """Quantity above the limit of a ``block`` metric: shown, never charged."""
    days: int = 0
    """Days the plan was in force when the amount is prorated; 0 when it is not."""
    month_days: int = 0
    """Days of the month when the amount is prorated; 0 when it is not."""
    note: str = ""
    """Why a line looks the way it does (conversion, block, proration)."""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "plan": self.plan,
            "quantity": fmt(self.quantity),
            "included": fmt(self.included),
            "billable": fmt(self.billable),
            "unit_price": fmt(self.unit_price),
            "unit": self.unit,
            "units": fmt(self.units),
            "amount": fmt(self.amount),
            "converted": fmt(self.converted),
            "over_limit": fmt(self.over_limit),
            "days": self.days,
            "month_days": self.month_days,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class PlanUse:
    """A plan and the days of the month it was in force."""

    name: str
    first_day: int
    """First day in force (1 when the month is a quote)."""
    last_day: int
    """Last day in force (0 when the month is a quote)."""
    source: str = ""
    """The plan file."""

    def to_json_dict(self) -> dict[str, Any]:
        return {"name": self.name, "first_day": self.first_day, "last_day": self.last_day, "source": self.source}


@dataclass(frozen=True, slots=True)
class Invoice:
    """The rating of one tenant's month (or a quote)."""

    tenant: str
    """The tenant's domain, or '' for a quote."""
    period: str
    """'YYYY-MM' in the tenant's time zone, or 'quote'."""
    tz: str
    """The time zone the period is local to."""
    currency: str
    """ISO 4217; every amount is in it."""
    plans: tuple[PlanUse, ...]
    """Plans in force, in order."""
    lines: tuple[Line, ...]
    """Components, per plan: base fee, metrics in plan-file order, minimum top-up."""
    subtotal: Decimal
    """Sum of the line amounts."""
    tax_percent: Decimal
    """The rate applied (the tenant's, or the plan's in force at month end; 001)."""
    tax: Decimal
    """subtotal x tax_percent / 100, rounded half up to the minor unit."""
    total: Decimal
    """subtotal + tax."""
    revision: int = 1
    """1 for the first rating of a month; re-rating makes a new revision."""
    uncharged: tuple[tuple[str, Decimal], ...] = ()
    """Metrics with usage that no plan in force prices (e.g. voice on mesibo)."""
    warnings: tuple[str, ...] = ()
    """Things an operator should look at (usage above a ``block`` limit)."""
    members: tuple[str, ...] = ()
    """Child tenants (domains) whose usage rolls up into this invoice (METERING.md, Voximplant child accounts)."""

    def line(self, metric: str, plan: str | None = None) -> Line:
        """The line of ``metric`` (of ``plan`` when several plans priced it)."""
        found = [x for x in self.lines if x.metric == metric and (plan is None or x.plan == plan)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} lines for {metric!r}" + (f" of plan {plan!r}" if plan else ""))
        return found[0]

    def to_json_dict(self) -> dict[str, Any]:
        """The issue 5 JSON shape; every number is a decimal string, never a float."""
        return {
            "tenant": self.tenant,
            "period": self.period,
            "tz": self.tz,
            "currency": self.currency,
            "revision": self.revision,
            "plans": [p.to_json_dict() for p in self.plans],
            "lines": [x.to_json_dict() for x in self.lines],
            "subtotal": fmt(self.subtotal),
            "tax_percent": fmt(self.tax_percent),
            "tax": fmt(self.tax),
            "total": fmt(self.total),
            "uncharged": {m: fmt(q) for m, q in self.uncharged},
            "warnings": list(self.warnings),
            "members": list(self.members),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> Invoice:
        """The inverse of :meth:`to_json_dict` (for stored, issued invoices)."""
        lines = tuple(
            Line(
                metric=x["metric"],
                plan=x["plan"],
                quantity=Decimal(x["quantity"]),
                included=Decimal(x["included"]),
                billable=Decimal(x["billable"]),
                unit_price=Decimal(x["unit_price"]),
                unit=x["unit"],
                units=Decimal(x["units"]),
                amount=Decimal(x["amount"]),
                converted=Decimal(x["converted"]),
                over_limit=Decimal(x["over_limit"]),
                days=int(x["days"]),
                month_days=int(x["month_days"]),
                note=x["note"],
            )
            for x in d["lines"]
        )
        return cls(
            tenant=d["tenant"],
            period=d["period"],
            tz=d["tz"],
            currency=d["currency"],
            plans=tuple(PlanUse(p["name"], p["first_day"], p["last_day"], p["source"]) for p in d["plans"]),
            lines=lines,
            subtotal=Decimal(d["subtotal"]),
            tax_percent=Decimal(d["tax_percent"]),
            tax=Decimal(d["tax"]),
            total=Decimal(d["total"]),
            revision=int(d["revision"]),
            uncharged=tuple((m, Decimal(q)) for m, q in d["uncharged"].items()),
            warnings=tuple(d["warnings"]),
            members=tuple(d.get("members", ())),
        )
