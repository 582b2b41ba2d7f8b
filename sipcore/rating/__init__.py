"""Rating (PURE): (month's usage, plan) -> invoice, in Decimal money.

Definitions: ``METERING.md``; pricing models: the seeds in ``../shared/seeds/``
(one plan file per model in ``config/plans/``).  Nothing here reads a clock,
a file other than a plan, or the store: the edge hands over usage and gets an
:class:`Invoice` back.
"""

from sipcore.rating.engine import PlanPeriod, rate, rate_periods
from sipcore.rating.invoice import Invoice, Line, PlanUse
from sipcore.rating.metrics import BASE, METRICS, MINIMUM, Kind, MetricInfo
from sipcore.rating.money import MINOR_UNITS, round_money
from sipcore.rating.plan import (
    Allowance,
    Basis,
    Conversion,
    Increment,
    MetricRate,
    Over,
    Plan,
    PlanLibrary,
    Proration,
    check_plan_name,
    load_plan,
    parse_plan,
)
from sipcore.rating.quote import parse_quantity_args, quote
from sipcore.rating.render import render_csv, render_csv_many, render_table
from sipcore.rating.usage import Count, Leg, RatingError, RoundedLegs, Usage

__all__ = [
    "BASE",
    "METRICS",
    "MINIMUM",
    "MINOR_UNITS",
    "Allowance",
    "Basis",
    "Conversion",
    "Count",
    "Increment",
    "Invoice",
    "Kind",
    "Leg",
    "Line",
    "MetricInfo",
    "MetricRate",
    "Over",
    "Plan",
    "PlanPeriod",
    "PlanLibrary",
    "PlanUse",
    "Proration",
    "RatingError",
    "RoundedLegs",
    "Usage",
    "load_plan",
    "check_plan_name",
    "parse_plan",
    "parse_quantity_args",
    "quote",
    "rate",
    "rate_periods",
    "render_csv",
    "render_csv_many",
    "render_table",
    "round_money",
]
