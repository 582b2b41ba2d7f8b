"""The rating engine (PURE): (month's usage, plan(s), tenant) -> Invoice.

ARCHITECTURE.md: "Rating is a pure function ``rate(usage, plan) -> Invoice``,
tested against every worked example in ``../shared/seeds/`` to the cent."
No clock, no I/O, no floats; the one rounding rule is in ``money``.

Theory of operation, per plan period (one period unless the plan changed):

1. Records are attributed to the plan in force when they happened (001:
   "apply the new plan's rate for the remaining days of the month"), by
   ``at_ms`` in the tenant's calendar; a plan change takes effect at local
   midnight starting its ``from_day``.
2. Quantities: minute legs are rounded one by one with the period's plan
   increment, then summed (METERING.md); legs the store already rounded in
   SQL (``RoundedLegs``) are checked to carry the period plan's rounding and
   added as they are; ``SUM`` metrics add, ``PEAK`` metrics take the
   highest reading.
3. Included quantity: the fixed one, or an allowance derived from another
   metric -- a percentage of that metric's measured quantity over the whole
   month (003: "10% of the MAU") or of its included quantity (002: a 1,000
   MAU plan allows 1,000 x 5 % = 50 connections).  Allowances are exact,
   never rounded to whole units, so 003's "MAU = concurrent users x 10"
   holds exactly whatever the MAU.
4. Over the included quantity: ``charge`` prices the excess (per
   ``price_per`` units proportionally, or per started pack); ``convert``
   adds excess x factor to another metric of the same period before that one
   is priced (003); ``block`` charges nothing -- the server should have
   refused it -- and the invoice shows the excess as ``over_limit`` plus a
   warning, so a leak in enforcement is visible instead of silently billed
   or silently lost.
5. Proration (plan's ``proration = "daily"``): a plan in force for d of the
   month's D days charges d/D of its monthly amounts -- the base fee, the
   minimum charge, and ``PEAK`` metrics (capacity is a monthly charge, like
   the fee: 50 devices for half a month cost half of 50 devices).  Volumes
   (``SUM`` metrics) are not prorated: usage is priced by the plan in force
   when it happened, against that plan's included quantity (as metered
   billing usually does).
6. Minimum charge (003's US$ 49 PAYG commitment): when a period's lines add
   up to less than minimum x d/D, a ``minimum`` line tops them up.
7. Tax on the subtotal at the tenant's rate, else the rate of the plan in
   force at month end (001: "final tax rates are determined at the end of
   each month"); total = subtotal + tax.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from sipcore.rating.invoice import Invoice, Line, PlanUse
from sipcore.rating.metrics import BASE, METRICS, MINIMUM, Kind
from sipcore.rating.money import fmt, round_money, to_decimal
from sipcore.rating.plan import PER_SECOND, Basis, MetricRate, Over, Plan, Proration
from sipcore.rating.usage import Leg, RatingError, RoundedLegs, Usage, day_start_ms, days_in_month

_ZERO = Fraction(0)


@dataclass(frozen=True, slots=True)
class PlanPeriod:
    """A plan in force from a day of the month (tenant's calendar) to the next change."""

    plan: Plan
    """The plan."""
    from_day: int = 1
    """First day in force; the first period may start after the 1st (a tenant created mid-month)."""


@dataclass(slots=True)
class _Bucket:
    """The records of one plan period, before pricing (mutable scratch, never escapes)."""

    legs: dict[str, list[Leg]] = field(default_factory=dict)
    rounded: dict[str, list[RoundedLegs]] = field(default_factory=dict)
    counts: dict[str, list[Decimal]] = field(default_factory=dict)


def rate(
    usage: Usage,
    plan: Plan,
    *,
    tenant: str = "",
    tax_percent: Decimal | None = None,
    revision: int = 1,
    members: Sequence[str] = (),
) -> Invoice:
    """The invoice of ``usage`` under one plan in force all month."""
    return rate_periods(
        usage, (PlanPeriod(plan, 1),), tenant=tenant, tax_percent=tax_percent, revision=revision, members=members
    )


def rate_periods(
    usage: Usage,
    periods: Sequence[PlanPeriod],
    *,
    tenant: str = "",
    tax_percent: Decimal | None = None,
    revision: int = 1,
    members: Sequence[str] = (),
) -> Invoice:
    """The invoice of a month whose plan changed: each plan prices what
    happened while it was in force and prorates its monthly amounts by days
    (seed 001).  ``tax_percent`` is the tenant's rate when it has one;
    ``members`` names the child tenants whose usage ``usage`` includes."""
    periods = tuple(periods)
    _check_periods(usage, periods)
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise RatingError("revision must be a positive int")
    if tax_percent is not None and not (isinstance(tax_percent, Decimal) and 0 <= tax_percent <= 100):
        raise RatingError("tax_percent must be a Decimal between 0 and 100")
    first_plan = periods[0].plan
    digits = first_plan.minor_digits

    month_days = days_in_month(usage.month) if usage.month else 0
    last_days = [p.from_day - 1 for p in periods[1:]] + [month_days]
    buckets = _attribute(usage, periods, month_days)
    raw = [_quantities(b, p.plan) for b, p in zip(buckets, periods, strict=True)]
    month_raw = _month_totals(raw)

    lines: list[Line] = []
    warnings: list[str] = []
    uncharged: dict[str, Fraction] = {}
    for period, last_day, quantities in zip(periods, last_days, raw, strict=True):
        plan = period.plan
        days = last_day - period.from_day + 1
        prorated = plan.proration is Proration.DAILY and 0 < days < month_days
        lines += _rate_period(plan, quantities, month_raw, days if prorated else 0, month_days, warnings)
        for metric, q in quantities.items():
            if plan.rate_of(metric) is None and q:
                uncharged[metric] = _combine(metric, uncharged.get(metric, _ZERO), q)

    subtotal = sum((x.amount for x in lines), Decimal(0)).quantize(Decimal(1).scaleb(-digits))
    rate_pct = tax_percent if tax_percent is not None else periods[-1].plan.tax_percent
    tax = round_money(Fraction(subtotal) * Fraction(rate_pct) / 100, digits)
    return Invoice(
        tenant=tenant,
        period=usage.month or "quote",
        tz=usage.tz,
        currency=first_plan.currency,
        plans=tuple(
            PlanUse(p.plan.name, p.from_day, last, p.plan.source) for p, last in zip(periods, last_days, strict=True)
        ),
        lines=tuple(lines),
        subtotal=subtotal,
        tax_percent=rate_pct,
        tax=tax,
        total=subtotal + tax,
        revision=revision,
        uncharged=tuple((m, to_decimal(q)) for m, q in uncharged.items()),
        warnings=tuple(warnings),
        members=tuple(members),
    )


# ------------------------------------------------------------------ attribution


def _check_periods(usage: Usage, periods: tuple[PlanPeriod, ...]) -> None:
    if not periods:
        raise RatingError("at least one plan period is needed")
    currencies = {p.plan.currency for p in periods}
    if len(currencies) > 1:
        raise RatingError(f"plans of one invoice must share a currency, not {', '.join(sorted(currencies))}")
    if usage.month is None:
        if len(periods) != 1 or periods[0].from_day != 1:
            raise RatingError("usage without a month (a quote) is rated by exactly one plan, from day 1")
        return
    month_days = days_in_month(usage.month)
    previous = 0
    for p in periods:
        if not previous < p.from_day <= month_days:
            raise RatingError(
                f"plan {p.plan.name!r} from day {p.from_day}: "
                f"days must increase, within 1-{month_days} of {usage.month}"
            )
        previous = p.from_day


def _attribute(usage: Usage, periods: tuple[PlanPeriod, ...], month_days: int) -> list[_Bucket]:
    """Each record to the period in force at its ``at_ms``."""
    buckets = [_Bucket() for _ in periods]
    starts: list[int] = []
    end = 0
    if usage.month is not None:
        starts = [day_start_ms(usage.month, p.from_day, usage.tz) for p in periods]
        end = day_start_ms(usage.month, month_days + 1, usage.tz)

    def index(at_ms: int | None, what: str) -> int:
        if at_ms is None:
            if len(periods) == 1:
                return 0
            raise RatingError(f"{what} has no at_ms, but the plan changed during {usage.month}")
        if usage.month is None:
            raise RatingError(f"{what} has at_ms, but a quote has no calendar")
        if not starts[0] <= at_ms < end:
            raise RatingError(
                f"{what} at {at_ms} ms is outside [{starts[0]}, {end}) ms: "
                f"{usage.month} in {usage.tz} from day {periods[0].from_day}"
            )
        return bisect.bisect_right(starts, at_ms) - 1

    for leg in usage.legs:
        buckets[index(leg.at_ms, f"a {leg.metric} leg")].legs.setdefault(leg.metric, []).append(leg)
    for r in usage.rounded:
        buckets[index(r.at_ms, f"rounded {r.metric} legs")].rounded.setdefault(r.metric, []).append(r)
    for c in usage.counts:
        buckets[index(c.at_ms, f"a {c.metric} count")].counts.setdefault(c.metric, []).append(c.quantity)
    return buckets


def _combine(metric: str, a: Fraction, b: Fraction) -> Fraction:
    return max(a, b) if METRICS[metric].kind is Kind.PEAK else a + b


def _quantities(bucket: _Bucket, plan: Plan) -> dict[str, Fraction]:
    """Measured quantity of each metric in one period (minutes rounded per leg)."""
    out: dict[str, Fraction] = {}
    for metric, values in bucket.counts.items():
        if METRICS[metric].kind is Kind.PEAK:
            out[metric] = max(Fraction(v) for v in values)
        else:
            out[metric] = sum((Fraction(v) for v in values), _ZERO)
    for metric, legs in bucket.legs.items():
        r = plan.rate_of(metric)
        inc, floor_s = (r.increment, r.min_seconds) if r is not None else (PER_SECOND, 0)
        # METERING.md: rounding happens per leg, before summing.
        seconds = sum(inc.billed_seconds(leg.duration_ms, floor_s) * leg.count for leg in legs)
        out[metric] = out.get(metric, _ZERO) + Fraction(seconds, 60)
    for metric, groups in bucket.rounded.items():
        r = plan.rate_of(metric)
        inc, floor_s = (r.increment, r.min_seconds) if r is not None else (PER_SECOND, 0)
        for g in groups:
            if (g.first_s, g.next_s, g.min_seconds) != (inc.first_s, inc.next_s, floor_s):
                raise RatingError(
                    f"{metric} legs were rounded {g.first_s}/{g.next_s} (minimum {g.min_seconds} s), "
                    f"but plan {plan.name!r} rounds them {inc} (minimum {floor_s} s)"
                )
        seconds = sum(g.billed_s for g in groups)
        out[metric] = out.get(metric, _ZERO) + Fraction(seconds, 60)
    return out


def _month_totals(per_period: Iterable[dict[str, Fraction]]) -> dict[str, Fraction]:
    total: dict[str, Fraction] = {}
    for quantities in per_period:
        for metric, q in quantities.items():
            total[metric] = _combine(metric, total.get(metric, _ZERO), q)
    return total


# --------------------------------------------------------------------- pricing


def _included(rate: MetricRate, plan: Plan, month_raw: dict[str, Fraction]) -> Fraction:
    a = rate.allowance
    if a is None:
        return Fraction(rate.included)
    if a.basis is Basis.USAGE:
        base = month_raw.get(a.metric, _ZERO)
    else:
        other = plan.rate_of(a.metric)
        base = Fraction(other.included) if other is not None else _ZERO
    return base * Fraction(a.percent) / 100


def _unit(rate: MetricRate) -> str:
    noun = METRICS[rate.metric].unit
    if rate.pack_size:
        return f"pack of {rate.pack_size} {noun}s"
    if rate.price_per == 1:
        return noun
    if noun == "byte" and rate.price_per in (10**3, 10**6, 10**9, 10**12):
        prefix = {10**3: "kB", 10**6: "MB", 10**9: "GB", 10**12: "TB"}[rate.price_per]
        return f"{prefix} (10^{len(str(rate.price_per)) - 1} bytes)"
    return f"{rate.price_per} {noun}s"


def _rate_period(
    plan: Plan,
    quantities: dict[str, Fraction],
    month_raw: dict[str, Fraction],
    days: int,
    month_days: int,
    warnings: list[str],
) -> list[Line]:
    """The lines of one plan period; ``days`` = 0 when nothing is prorated."""
    digits = plan.minor_digits
    share = Fraction(days, month_days) if days else Fraction(1)
    prorate_note = f"{days} of {month_days} days" if days else ""
    lines = [
        Line(
            metric=BASE,
            plan=plan.name,
            quantity=Decimal(1),
            included=Decimal(0),
            billable=Decimal(1),
            unit_price=plan.base_fee,
            unit="month",
            units=Decimal(1),
            amount=round_money(Fraction(plan.base_fee) * share, digits),
            days=days,
            month_days=month_days if days else 0,
            note=prorate_note,
        )
    ]

    # Conversions first: their excess is part of the target's quantity (003).
    converted: dict[str, Fraction] = {}
    for r in plan.metrics:
        if r.over is Over.CONVERT and r.convert is not None:
            excess = max(_ZERO, quantities.get(r.metric, _ZERO) - _included(r, plan, month_raw))
            converted[r.convert.metric] = converted.get(r.convert.metric, _ZERO) + excess * Fraction(r.convert.factor)

    for r in plan.metrics:
        conv = converted.get(r.metric, _ZERO)
        quantity = quantities.get(r.metric, _ZERO) + conv
        included = _included(r, plan, month_raw)
        excess = max(_ZERO, quantity - included)
        peak = METRICS[r.metric].kind is Kind.PEAK
        notes = [f"includes {to_decimal(conv)} converted from another metric's excess"] if conv else []
        billable, units, amount, over_limit = excess, _ZERO, _ZERO, _ZERO
        if r.over is Over.CHARGE:
            if r.pack_size:
                units = Fraction(-(-excess.numerator // (excess.denominator * r.pack_size)))
            else:
                units = excess / r.price_per
            amount = units * Fraction(r.unit_price) * (share if peak else 1)
            if peak and days:
                notes.append(prorate_note)
        elif r.over is Over.CONVERT and r.convert is not None and excess:
            notes.append(
                f"excess {to_decimal(excess)} billed as {to_decimal(excess * Fraction(r.convert.factor))} "
                f"{r.convert.metric} (x{fmt(r.convert.factor)})"
            )
        elif r.over is Over.BLOCK:  # never charged; shown so a leak in enforcement is noticed
            billable, over_limit = _ZERO, excess
            if excess:
                notes.append("above the block limit: not charged")
                warnings.append(
                    f"{plan.name}: {r.metric} is {to_decimal(quantity)}, {to_decimal(excess)} above "
                    f"its block limit of {to_decimal(included)}; the excess is not charged"
                )
        lines.append(
            Line(
                metric=r.metric,
                plan=plan.name,
                quantity=to_decimal(quantity),
                included=to_decimal(included),
                billable=to_decimal(billable),
                unit_price=r.unit_price,
                unit=_unit(r),
                units=to_decimal(units),
                amount=round_money(amount, digits),
                converted=to_decimal(conv),
                over_limit=to_decimal(over_limit),
                days=days if peak and r.over is Over.CHARGE else 0,
                month_days=month_days if days and peak and r.over is Over.CHARGE else 0,
                note="; ".join(notes),
            )
        )

    if plan.minimum_charge:
        floor_amount = round_money(Fraction(plan.minimum_charge) * share, digits)
        charged = sum((x.amount for x in lines), Decimal(0))
        if charged < floor_amount:
            lines.append(
                Line(
                    metric=MINIMUM,
                    plan=plan.name,
                    quantity=Decimal(1),
                    included=Decimal(0),
                    billable=Decimal(1),
                    unit_price=floor_amount - charged,
                    unit="top-up",
                    units=Decimal(1),
                    amount=floor_amount - charged,
                    days=days,
                    month_days=month_days if days else 0,
                    note=f"top-up of {fmt(charged)} to the minimum charge {fmt(floor_amount)}",
                )
            )
    return lines
