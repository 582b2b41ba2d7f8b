"""Plan files (PURE): what a tenant pays, as frozen dataclasses loaded from TOML.

A plan prices the metrics of ``METERING.md`` ("Rating (monthly)"): for each
metric the included quantity (free tier), the unit price, the increment of
minute metrics (per leg, before summing), packs, allowances derived from
another metric, what exceeding does (``charge``, ``convert``, ``block``), plus
the monthly base fee, its proration and the tax rate.  The format, with the
seed each feature comes from::

    name = "mesibo-payg"
    currency = "USD"              # ISO 4217; fixes the minor unit amounts round to
    base_fee = "0.00"             # money is always a string: "0.01", never 0.01
    minimum_charge = "49.00"      # 003: "usage charges (minimum US$ 49)"
    tax_percent = "0"             # default; the tenant's own rate overrides it
    proration = "daily"           # 001: a plan in force part of a month costs by days

    [metrics.mau]
    included = 20000              # 003: free quota of 20K MAU
    unit_price = "0.01"

    [metrics."connections.peak"]  # 003: limit 10 % of MAU, excess billed as MAU x 10
    allowance = { metric = "mau", percent = "10", basis = "usage" }
    over = "convert"
    convert = { metric = "mau", factor = 10 }

    [metrics."signaling.bytes_out"]
    included = 5_000_000_000      # 5 GB
    unit_price = "0.90"           # per price_per units: $0.90 per GB = 10^9 bytes
    price_per = 1_000_000_000

    [metrics."voice.minutes"]     # 004/METERING.md: per leg, then summed
    unit_price = "0.01"
    increment = "30/6"            # first 30 s, then 6 s steps
    min_seconds = 0

    [metrics.messages]            # 000/001: per started pack of 100
    included = 50000
    pack_size = 100
    unit_price = "0.50"           # per pack

Validation mirrors ``sipcore.config``: unknown keys are rejected and every
error is a :class:`~sipcore.errors.ConfigError` naming the file, the key path
(``metrics."voice.minutes".increment``) and the reason.  Money written as a
TOML float is refused: 0.1 has no exact binary form, and a price file must
mean exactly what it says.
"""

from __future__ import annotations

import enum
import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sipcore.errors import ConfigError
from sipcore.rating.metrics import METRICS, MINUTE_METRICS, metric_names
from sipcore.rating.money import MINOR_UNITS, parse_decimal


class Over(enum.Enum):
    """What happens to the quantity above the included one."""

    CHARGE = "charge"
    """Billed at unit_price (002's overages, 003's pay as you go)."""
    CONVERT = "convert"
    """Billed as another metric, times a factor (003: excess concurrency -> MAU x 10)."""
    BLOCK = "block"
    """Refused in real time, never billed (001's free tier)."""


class Proration(enum.Enum):
    """How a plan in force for part of a month charges its monthly amounts."""

    DAILY = "daily"
    """By days in force / days in the month (001: "the new plan's rate for the remaining days")."""
    NONE = "none"
    """The full monthly amounts, however few days the plan was in force."""


class Basis(enum.Enum):
    """What a derived allowance is a percentage of."""

    USAGE = "usage"
    """The month's measured quantity of the other metric (003: "10% of the MAU")."""
    INCLUDED = "included"
    """The other metric's included quantity (002: a 1,000 MAU plan allows 1,000 x 5 % = 50)."""


@dataclass(frozen=True, slots=True)
class Increment:
    """Per-leg rounding of a minute metric, ``first/next`` seconds (1/1, 6/6, 60/60, 30/6)."""

    first_s: int
    """Every answered leg is billed at least this many seconds."""
    next_s: int
    """Beyond first_s, time is billed in started steps of this many seconds."""

    def billed_seconds(self, duration_ms: int, min_seconds: int = 0) -> int:
        """Seconds billed for one leg of ``duration_ms`` (METERING.md: rounding
        happens only in rating, per leg, before summing).

        A leg with no answered time (0 ms: unanswered, failed) bills nothing.
        Otherwise a started second counts as a second, then ``min_seconds``
        applies, then the first step, then the started next steps:
        30/6 bills 29 s -> 30, 31 s -> 36, 57 s -> 60, 75 s -> 78.
        """
        if duration_ms <= 0:
            return 0
        seconds = max(-(-duration_ms // 1000), min_seconds)
        if seconds <= self.first_s:
            return self.first_s
        return self.first_s + -(-(seconds - self.first_s) // self.next_s) * self.next_s

    def __str__(self) -> str:
        return f"{self.first_s}/{self.next_s}"


PER_SECOND = Increment(1, 1)


@dataclass(frozen=True, slots=True)
class Allowance:
    """An included quantity derived from another metric (002: 5 %, 003: 10 % of MAU)."""

    metric: str
    """The metric the allowance is a percentage of."""
    percent: Decimal
    """The percentage; kept exact, never rounded (5 % of 1,010 MAU is 50.5)."""
    basis: Basis
    """Percentage of that metric's usage or of its included quantity."""


@dataclass(frozen=True, slots=True)
class Conversion:
    """Where the excess of a ``convert`` metric is billed (003: concurrency -> MAU x 10)."""

    metric: str
    """The metric the excess is added to; it must be charged by the same plan."""
    factor: Decimal
    """Units of that metric per unit of excess."""


@dataclass(frozen=True, slots=True)
class MetricRate:
    """How a plan prices one metric."""

    metric: str
    """METERING.md name."""
    included: Decimal = Decimal(0)
    """Free quantity per month, in the metric's unit (minutes, bytes, users ...)."""
    allowance: Allowance | None = None
    """Derived included quantity instead of a fixed one."""
    unit_price: Decimal = Decimal(0)
    """Price of one pack (pack_size) or of price_per units; may be finer than the minor unit."""
    price_per: int = 1
    """Units the unit_price is for, charged proportionally (10^9 bytes = 1 GB, seed 003)."""
    pack_size: int = 0
    """When > 0: unit_price buys a pack of this many units, and every started pack is charged (000/001)."""
    increment: Increment = PER_SECOND
    """Minute metrics only: per-leg rounding, first/next seconds."""
    min_seconds: int = 0
    """Minute metrics only: an answered leg is billed at least this long (before the increment)."""
    over: Over = Over.CHARGE
    """What the quantity above the included one does."""
    convert: Conversion | None = None
    """Target of the excess when over = convert."""


@dataclass(frozen=True, slots=True)
class Plan:
    """One plan file."""

    name: str
    """Shown on invoices; ``voximplant-small``."""
    currency: str
    """ISO 4217 code; amounts round to its minor unit."""
    minor_digits: int
    """Decimal places of the currency's minor unit (from the currency, not a TOML key)."""
    base_fee: Decimal = Decimal(0)
    """Monthly fee, charged whatever the usage (000: "$100 ... monthly")."""
    minimum_charge: Decimal = Decimal(0)
    """A month's charges are topped up to this (003: PAYG minimum US$ 49)."""
    tax_percent: Decimal = Decimal(0)
    """Default tax rate in percent; the tenant's own rate overrides it."""
    proration: Proration = Proration.DAILY
    """Monthly amounts of a plan in force part of a month."""
    metrics: tuple[MetricRate, ...] = ()
    """Priced metrics, in file order (the invoice's line order)."""
    description: str = ""
    """Free text for people."""
    source: str = ""
    """The file the plan was read from (not a TOML key)."""

    def rate_of(self, metric: str) -> MetricRate | None:
        for m in self.metrics:
            if m.metric == metric:
                return m
        return None


# ----------------------------------------------------------------------- loading

_TOP_KEYS = {"name", "description", "currency", "base_fee", "minimum_charge", "tax_percent", "proration", "metrics"}
_METRIC_KEYS = {
    "included",
    "allowance",
    "unit_price",
    "price_per",
    "pack_size",
    "increment",
    "min_seconds",
    "over",
    "convert",
}
_INCREMENT_RE = re.compile(r"([0-9]+)/([0-9]+)")


def _key(prefix: str, name: str) -> str:
    """A TOML key path; a metric name with dots is quoted as in the file."""
    part = f'"{name}"' if "." in name else name
    return f"{prefix}.{part}" if prefix else part


class _Reader:
    """Type-checked access to one TOML table; every failure names file and key."""

    def __init__(self, path: str, table: Any, prefix: str, allowed: set[str]) -> None:
        if not isinstance(table, dict):
            raise ConfigError(path, prefix, "must be a table")
        for k in table:
            if k not in allowed:
                raise ConfigError(path, _key(prefix, k), f"unknown key (expected one of: {', '.join(sorted(allowed))})")
        self.path, self.table, self.prefix = path, table, prefix

    def key(self, name: str) -> str:
        return _key(self.prefix, name)

    def fail(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), reason)

    def has(self, name: str) -> bool:
        return name in self.table

    def string(self, name: str, default: str | None = None) -> str:
        v = self.table.get(name, default)
        if v is None:
            raise self.fail(name, "is required")
        if not isinstance(v, str):
            raise self.fail(name, "must be a string")
        return v

    def money(self, name: str, default: str = "0") -> Decimal:
        v = self.table.get(name, default)
        if isinstance(v, float):
            raise self.fail(name, f'money must be a decimal string such as "{v}", not a TOML float (inexact)')
        if isinstance(v, int) and not isinstance(v, bool):
            raise self.fail(name, f'money must be a decimal string such as "{v}.00", not a TOML integer')
        return self._decimal(name, v)

    def number(self, name: str, default: int | None = 0) -> Decimal:
        """A quantity or ratio: a TOML integer or a decimal string, never a float."""
        v = self.table.get(name, default)
        if v is None:
            raise self.fail(name, "is required")
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 0:
                raise self.fail(name, "must not be negative")
            return Decimal(v)
        if isinstance(v, float):
            raise self.fail(name, f'must be an integer or a decimal string such as "{v}", not a TOML float')
        return self._decimal(name, v)

    def integer(self, name: str, default: int, minimum: int) -> int:
        v = self.table.get(name, default)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(name, "must be an integer")
        if v < minimum:
            raise self.fail(name, f"must be at least {minimum}")
        return v

    def choice(self, name: str, enum_cls: type[enum.Enum], default: enum.Enum) -> Any:
        v = self.table.get(name, default.value)
        try:
            return enum_cls(v)
        except ValueError:
            allowed = ", ".join(f'"{e.value}"' for e in enum_cls)
            raise self.fail(name, f"must be one of {allowed}") from None

    def _decimal(self, name: str, v: Any) -> Decimal:
        if not isinstance(v, str):
            raise self.fail(name, 'must be a decimal string such as "0.01"')
        try:
            return parse_decimal(v)
        except ValueError as e:
            raise self.fail(name, str(e)) from None


def parse_plan(text: str, path: str) -> Plan:
    """The plan in ``text`` (the contents of the file ``path``, named in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(syntax)", str(e)) from e
    top = _Reader(path, data, "", _TOP_KEYS)
    name = top.string("name")
    if not name.strip():
        raise top.fail("name", "must not be empty")
    currency = top.string("currency")
    if currency not in MINOR_UNITS:
        raise top.fail("currency", f"unknown currency {currency!r} (known: {', '.join(sorted(MINOR_UNITS))})")
    digits = MINOR_UNITS[currency]
    base_fee = top.money("base_fee")
    minimum = top.money("minimum_charge")
    for key, amount in (("base_fee", base_fee), ("minimum_charge", minimum)):
        # A fixed fee finer than the minor unit cannot be invoiced as written.
        if amount != amount.quantize(Decimal(1).scaleb(-digits)):
            raise top.fail(key, f"has more decimal places than {currency} allows ({digits})")
    tax = top.number("tax_percent")
    if tax > 100:
        raise top.fail("tax_percent", "must be a percentage between 0 and 100")
    proration = top.choice("proration", Proration, Proration.DAILY)
    description = top.string("description", "")

    metrics_table = data.get("metrics", {})
    mt = _Reader(path, metrics_table, "metrics", set(metrics_table) if isinstance(metrics_table, dict) else set())
    rates: list[MetricRate] = []
    for metric in mt.table:
        if metric not in METRICS:
            raise mt.fail(metric, f"unknown metric (METERING.md names: {metric_names()})")
        rates.append(_parse_metric(path, metric, mt.table[metric]))
    plan = Plan(
        name=name,
        currency=currency,
        minor_digits=digits,
        base_fee=base_fee,
        minimum_charge=minimum,
        tax_percent=tax,
        proration=proration,
        metrics=tuple(rates),
        description=description,
        source=path,
    )
    _check_references(plan)
    return plan


def _parse_metric(path: str, metric: str, table: Any) -> MetricRate:
    r = _Reader(path, table, _key("metrics", metric), _METRIC_KEYS)
    over = r.choice("over", Over, Over.CHARGE)
    minutes = metric in MINUTE_METRICS
    for key in ("increment", "min_seconds"):
        if r.has(key) and not minutes:
            raise r.fail(key, f"applies only to minute metrics ({', '.join(sorted(MINUTE_METRICS))})")
    if r.has("included") and r.has("allowance"):
        raise r.fail("allowance", "give either included or allowance, not both")
    if r.has("pack_size") and r.has("price_per"):
        raise r.fail("pack_size", "give either pack_size (started packs) or price_per (proportional), not both")
    if over is Over.CHARGE and not r.has("unit_price"):
        raise r.fail("unit_price", 'is required when over = "charge" (write "0" for a free metric)')
    if over is not Over.CHARGE:
        for key in ("unit_price", "pack_size", "price_per"):
            if r.has(key):
                why = "is never charged" if over is Over.BLOCK else "is charged as its convert metric"
                raise r.fail(key, f'does not apply: over = "{over.value}" {why}')
    if (over is Over.CONVERT) != r.has("convert"):
        raise r.fail("convert", 'is required with over = "convert", and only with it')

    increment = PER_SECOND
    if r.has("increment"):
        text = r.string("increment")
        m = _INCREMENT_RE.fullmatch(text)
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise r.fail("increment", f'{text!r}: expected "FIRST/NEXT" seconds, both >= 1 ("1/1", "30/6", "60/60")')
        increment = Increment(int(m.group(1)), int(m.group(2)))

    allowance = None
    if r.has("allowance"):
        a = _Reader(path, r.table["allowance"], r.key("allowance"), {"metric", "percent", "basis"})
        other = a.string("metric")
        if other not in METRICS:
            raise a.fail("metric", f"unknown metric {other!r} (METERING.md names: {metric_names()})")
        if other == metric:
            raise a.fail("metric", "an allowance cannot derive from its own metric")
        percent = a.number("percent", None)
        if percent <= 0:
            raise a.fail("percent", "must be more than 0")
        if not a.has("basis"):
            raise a.fail("basis", 'is required: "usage" (of the measured quantity) or "included" (of its free tier)')
        allowance = Allowance(other, percent, a.choice("basis", Basis, Basis.USAGE))

    conversion = None
    if r.has("convert"):
        c = _Reader(path, r.table["convert"], r.key("convert"), {"metric", "factor"})
        target = c.string("metric")
        if target not in METRICS:
            raise c.fail("metric", f"unknown metric {target!r} (METERING.md names: {metric_names()})")
        if target == metric:
            raise c.fail("metric", "cannot convert a metric into itself")
        factor = c.number("factor", None)
        if factor <= 0:
            raise c.fail("factor", "must be more than 0")
        conversion = Conversion(target, factor)

    return MetricRate(
        metric=metric,
        included=r.number("included"),
        allowance=allowance,
        unit_price=r.money("unit_price"),
        price_per=r.integer("price_per", 1, 1),
        pack_size=r.integer("pack_size", 0, 1) if r.has("pack_size") else 0,
        increment=increment,
        min_seconds=r.integer("min_seconds", 0, 0),
        over=over,
        convert=conversion,
    )


def _check_references(plan: Plan) -> None:
    """Cross-metric rules, checked once the whole file is read."""
    for m in plan.metrics:
        prefix = _key("metrics", m.metric)
        if m.convert is not None:
            target = plan.rate_of(m.convert.metric)
            if target is None or target.over is not Over.CHARGE:
                raise ConfigError(
                    plan.source,
                    f"{prefix}.convert.metric",
                    f'{m.convert.metric!r} must be priced by this plan with over = "charge" to receive the excess',
                )
        if m.allowance is not None and m.allowance.basis is Basis.INCLUDED:
            other = plan.rate_of(m.allowance.metric)
            if other is None or other.allowance is not None:
                raise ConfigError(
                    plan.source,
                    f"{prefix}.allowance.metric",
                    f'basis = "included" needs {m.allowance.metric!r} in this plan with a fixed included quantity',
                )


def load_plan(path: str | Path) -> Plan:
    """Read and validate one plan file; :class:`ConfigError` on any problem."""
    from sipcore.config import read_toml_text

    return parse_plan(read_toml_text(path), str(path))


PLAN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
"""A tenant's plan is the name of a file ``NAME.toml`` in the plans directory."""


def check_plan_name(name: str) -> str:
    """``name`` when it can name a plan file (no path, no '..'); ValueError otherwise."""
    if not PLAN_NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(f"plan name {name!r}: expected letters, digits, '.', '_' or '-' (a file NAME.toml)")
    return name


class PlanLibrary:
    """The plan files of one directory by name (``sip-core`` -> ``DIR/sip-core.toml``), each read once.

    A tenant names its plan (``tenants.plan``); rating and the real-time
    guard look it up here.  A missing or broken file is a
    :class:`~sipcore.errors.ConfigError` naming the file.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._plans: dict[str, Plan] = {}

    def path(self, name: str) -> Path:
        try:
            return self.directory / f"{check_plan_name(name)}.toml"
        except ValueError as e:
            raise ConfigError(str(self.directory), "(plan name)", str(e)) from None

    def get(self, name: str) -> Plan:
        plan = self._plans.get(name)
        if plan is None:
            path = self.path(name)
            if not path.is_file():
                known = ", ".join(self.names()) or "none"
                raise ConfigError(str(path), "(file)", f"no plan named {name!r} in {self.directory} (known: {known})")
            plan = self._plans[name] = load_plan(path)
        return plan

    def names(self) -> list[str]:
        """Plan names available in the directory, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.toml") if PLAN_NAME_RE.fullmatch(p.stem))
