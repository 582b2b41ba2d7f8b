"""Billing months (PURE): 'YYYY-MM' in a tenant's time zone <-> integer ms UTC.

METERING.md: every metric is per calendar month *in the tenant's time zone*.
A month is the half-open interval [start_ms, end_ms) between two local
midnights of the 1st; the arithmetic is done on integers (timedelta floor
division), never on float timestamps.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sipcore.store.errors import InvalidValue

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MONTH_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def zone(tz: str) -> ZoneInfo:
    """The IANA zone named ``tz``; :class:`InvalidValue` when unknown."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:  # ValueError: not a zone key ("../x", "")
        raise InvalidValue(f"unknown time zone {tz!r} (expected an IANA name such as Europe/Paris)") from e


def check_month(month: str) -> tuple[int, int]:
    """(year, month) of a 'YYYY-MM' string; :class:`InvalidValue` otherwise."""
    m = _MONTH_RE.fullmatch(month)
    if not m or m.group(1) == "0000":
        raise InvalidValue(f"month {month!r}: expected YYYY-MM")
    return int(m.group(1)), int(m.group(2))


def month_of(ms: int, tz: str) -> str:
    """The 'YYYY-MM' that contains the instant ``ms`` (ms UTC) on the wall clocks of ``tz``."""
    local = (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone(tz))
    return f"{local.year:04d}-{local.month:02d}"


def month_bounds_ms(month: str, tz: str) -> tuple[int, int]:
    """[start_ms, end_ms) of ``month`` in ``tz``: local midnight of the 1st to that of the next 1st."""
    year, mon = check_month(month)
    z = zone(tz)
    nxt = (year + 1, 1) if mon == 12 else (year, mon + 1)
    start = datetime(year, mon, 1, tzinfo=z)
    end = datetime(nxt[0], nxt[1], 1, tzinfo=z)
    return (start - _EPOCH) // _MS, (end - _EPOCH) // _MS
