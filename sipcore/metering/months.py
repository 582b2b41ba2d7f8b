"""Calendar months in a tenant's time zone (PURE).

Usage is stored per month 'YYYY-MM' of the tenant's billing time zone
(METERING.md), so a call at 2026-01-31T20:00Z belongs to February for a
tenant in Asia/Tokyo.  Times are integer ms UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=256)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def month_of(ms: int, tz: str = "UTC") -> str:
    """'YYYY-MM' of the instant `ms` in zone `tz`."""
    d = datetime.fromtimestamp(ms / 1000, _zone(tz))
    return f"{d.year:04d}-{d.month:02d}"


def month_bounds_ms(month: str, tz: str = "UTC") -> tuple[int, int]:
    """[start, end) of a 'YYYY-MM' month in zone `tz`, as ms UTC."""
    year, mon = int(month[:4]), int(month[5:7])
    if len(month) != 7 or month[4] != "-" or not 1 <= mon <= 12:
        raise ValueError(f"not a YYYY-MM month: {month!r}")
    start = datetime(year, mon, 1, tzinfo=_zone(tz))
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=_zone(tz))
    return int(start.astimezone(UTC).timestamp() * 1000), int(end.astimezone(UTC).timestamp() * 1000)


class MonthClock:
    """Month of `now_ms` for a zone, recomputed only when a boundary is crossed."""

    __slots__ = ("tz", "_start", "_end", "_month")

    def __init__(self, tz: str = "UTC") -> None:
        self.tz = tz
        self._start = self._end = 0
        self._month = ""

    def month(self, now_ms: int) -> str:
        if not self._start <= now_ms < self._end:
            self._month = month_of(now_ms, self.tz)
            self._start, self._end = month_bounds_ms(self._month, self.tz)
        return self._month
