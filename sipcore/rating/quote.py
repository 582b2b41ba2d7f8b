"""Quotes (PURE): the invoice some quantities would produce under a plan.

The library side of ``sipcore quote --plan FILE METRIC=QUANTITY...`` (issue
5; mesibo's seed 003 describes such a "Pricing Calculator").  Quantities are
in the metric's own unit as METERING.md defines it: ``mau=100000``,
``signaling.bytes_out=6000000000`` (bytes), ``voice.minutes=1200``
(minutes, taken as already rounded: a quote has no legs to round).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from sipcore.rating.engine import rate
from sipcore.rating.invoice import Invoice
from sipcore.rating.metrics import METRICS, metric_names
from sipcore.rating.money import parse_decimal
from sipcore.rating.plan import Plan
from sipcore.rating.usage import Count, RatingError, Usage, as_quantity


def quote(
    plan: Plan,
    quantities: Mapping[str, Decimal | int],
    *,
    tax_percent: Decimal | None = None,
) -> Invoice:
    """The invoice of one month with these quantities under ``plan`` (period 'quote').

    Unknown metric names are refused (a typo must not quietly quote zero);
    known metrics the plan does not price appear in ``Invoice.uncharged``.
    """
    for metric in quantities:
        if metric not in METRICS:
            raise RatingError(f"unknown metric {metric!r} (METERING.md names: {metric_names()})")
    usage = Usage(month=None, counts=tuple(Count(m, as_quantity(q, m)) for m, q in quantities.items()))
    return rate(usage, plan, tax_percent=tax_percent)


def parse_quantity_args(args: Iterable[str]) -> dict[str, Decimal]:
    """``["mau=100000", "voice.minutes=12.5"]`` -> {metric: Decimal}, for the CLI.

    Each argument is METRIC=QUANTITY with a METERING.md name and a plain
    non-negative decimal; a metric given twice is an error, not a sum.
    """
    out: dict[str, Decimal] = {}
    for arg in args:
        metric, sep, text = arg.partition("=")
        if not sep:
            raise RatingError(f"{arg!r}: expected METRIC=QUANTITY, e.g. mau=100000")
        if metric not in METRICS:
            raise RatingError(f"{arg!r}: unknown metric {metric!r} (METERING.md names: {metric_names()})")
        if metric in out:
            raise RatingError(f"{arg!r}: {metric} is given twice")
        try:
            out[metric] = parse_decimal(text.replace("_", ""))
        except ValueError as e:
            raise RatingError(f"{arg!r}: {e}") from None
    return out
