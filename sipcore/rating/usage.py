"""A month's usage as the rating engine takes it (PURE).

Three shapes of record, so the store can hand over whatever it has:

* :class:`Leg` -- minute metrics as METERING.md stores them, one answered
  leg's ``duration_ms``; rounding to the plan's increment happens here in
  rating, per leg, before summing.  ``count`` lets the store aggregate legs
  of *identical* duration in SQL (``GROUP BY duration_ms``) without losing
  the per-leg rounding: 10 million legs become a few thousand rows.
* :class:`Count` -- an aggregated quantity in the metric's own unit
  (``mau``, ``messages``, ``signaling.bytes_out``, a ``*.peak`` level, or
  minutes that are already rounded, as in a quote).

* :class:`RoundedLegs` -- minute metrics already rounded per leg by the
  store, in SQL, with the increment of the plan in force (so rating 10
  million legs is one aggregate query, not 10 million Python objects).  It
  names the rounding it applied and the engine refuses it unless that is the
  rounding of the plan pricing the period, so a mismatch cannot go unnoticed.

All carry an optional ``at_ms`` (UTC): when the plan changed during the
month it picks the plan in force (001's rule), so a leg is stamped with its
answer time, a MAU with the device's first authentication of the month
(``MauRecord.first_ms``) and a peak with the moment it was reached.

Months are calendar months in the tenant's time zone (METERING.md).  The
arithmetic below deliberately duplicates ``sipcore.metering.months`` (a few
lines) instead of importing it: rating sits under metering in the layer
diagram, and metering's real-time limits will need to import plans.  The
tests check that both agree at month boundaries.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sipcore.errors import SipcoreError
from sipcore.rating.metrics import METRICS, MINUTE_METRICS


class RatingError(SipcoreError, ValueError):
    """Usage or plans that cannot be rated as given (a caller's mistake)."""


_MONTH_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_quantity(value: object, what: str) -> Decimal:
    """``value`` as a non-negative Decimal; an int is fine, a float is refused."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        # A float would already have lost the exact value; refuse it early.
        raise RatingError(f"{what}: quantity must be an int or a Decimal, not {type(value).__name__}")
    q = Decimal(value)
    if not q.is_finite() or q < 0:
        raise RatingError(f"{what}: quantity must be a finite non-negative number, not {value}")
    return q


@dataclass(frozen=True, slots=True)
class Leg:
    """Answered time of call legs of one minute metric (METERING.md "Call legs")."""

    metric: str
    """voice.minutes, video.minutes or transcoding.minutes."""
    duration_ms: int
    """Answered time of one leg; 0 for an unanswered or failed call (bills nothing)."""
    at_ms: int | None = None
    """Answer time (ms UTC): which plan was in force.  Optional with a single plan."""
    count: int = 1
    """How many legs had exactly this duration (and plan period)."""

    def __post_init__(self) -> None:
        if self.metric not in MINUTE_METRICS:
            raise RatingError(f"leg of {self.metric!r}: legs are for {', '.join(sorted(MINUTE_METRICS))}")
        if isinstance(self.duration_ms, bool) or not isinstance(self.duration_ms, int) or self.duration_ms < 0:
            raise RatingError(f"leg of {self.metric}: duration_ms must be a non-negative int")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise RatingError(f"leg of {self.metric}: count must be a positive int")


@dataclass(frozen=True, slots=True)
class RoundedLegs:
    """Call legs of one minute metric already rounded per leg (by the store, in SQL)."""

    metric: str
    """voice.minutes, video.minutes or transcoding.minutes."""
    billed_s: int
    """Sum over the legs of each leg's billed seconds under ``first_s``/``next_s``/``min_seconds``."""
    legs: int
    """How many legs with answered time the sum covers."""
    first_s: int
    """The increment's first step that was applied (``Increment.first_s``)."""
    next_s: int
    """The increment's next step that was applied (``Increment.next_s``)."""
    min_seconds: int = 0
    """The minimum billed seconds per leg that was applied."""
    at_ms: int | None = None
    """An instant inside the plan period the legs belong to (ms UTC); optional with a single plan."""

    def __post_init__(self) -> None:
        if self.metric not in MINUTE_METRICS:
            raise RatingError(f"rounded legs of {self.metric!r}: legs are for {', '.join(sorted(MINUTE_METRICS))}")
        for name in ("billed_s", "legs", "min_seconds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise RatingError(f"rounded legs of {self.metric}: {name} must be a non-negative int")
        for name in ("first_s", "next_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise RatingError(f"rounded legs of {self.metric}: {name} must be a positive int")


@dataclass(frozen=True, slots=True)
class Count:
    """An aggregated quantity of one metric, in its own unit (minutes for minute metrics)."""

    metric: str
    """A METERING.md name."""
    quantity: Decimal
    """Users, messages, bytes, a peak level, or already-rounded minutes (an int is accepted)."""
    at_ms: int | None = None
    """An instant inside the plan period it belongs to (ms UTC); optional with a single plan."""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise RatingError(f"unknown metric {self.metric!r}")
        object.__setattr__(self, "quantity", as_quantity(self.quantity, self.metric))


@dataclass(frozen=True, slots=True)
class Usage:
    """One tenant's usage for one billing month."""

    month: str | None
    """'YYYY-MM' in the tenant's time zone; None for a quote (no calendar)."""
    tz: str = "UTC"
    """The tenant's billing time zone (IANA name)."""
    counts: tuple[Count, ...] = ()
    """Aggregated quantities."""
    legs: tuple[Leg, ...] = ()
    """Minute metrics, leg by leg (or by identical duration with ``count``)."""
    rounded: tuple[RoundedLegs, ...] = ()
    """Minute metrics already rounded per leg by the store."""

    def __post_init__(self) -> None:
        if self.month is not None and not _MONTH_RE.fullmatch(self.month):
            raise RatingError(f"month {self.month!r}: expected YYYY-MM")
        zone(self.tz)
        object.__setattr__(self, "counts", tuple(self.counts))
        object.__setattr__(self, "legs", tuple(self.legs))
        object.__setattr__(self, "rounded", tuple(self.rounded))


# ---------------------------------------------------------------- the calendar


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise RatingError(f"unknown time zone {tz!r}") from e


def days_in_month(month: str) -> int:
    return calendar.monthrange(int(month[:4]), int(month[5:7]))[1]


def day_start_ms(month: str, day: int, tz: str) -> int:
    """Local midnight starting ``day`` of ``month`` in ``tz``, as ms UTC;
    ``day`` = days + 1 is the first instant of the next month."""
    year, mon = int(month[:4]), int(month[5:7])
    # Adding days to an aware datetime is wall-clock arithmetic, so this is
    # the local midnight even across a DST change; then integer ms, no floats.
    local = datetime(year, mon, 1, tzinfo=zone(tz)) + timedelta(days=day - 1)
    return (local.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def local_day(ms: int, tz: str) -> tuple[str, int]:
    """('YYYY-MM', day of month) of the instant ``ms`` on the wall clocks of ``tz``."""
    d = (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone(tz))
    return f"{d.year:04d}-{d.month:02d}", d.day
