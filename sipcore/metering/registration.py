"""Registration-side metering (sans-IO): MAU and concurrent-binding peaks.

Definitions (METERING.md): `mau` = distinct devices that authenticated
successfully at least once in the month; `connections.peak` = highest number
of simultaneously active Contact bindings.  This module turns protocol facts
into usage records for the store's batch writer.  It never double counts: a
MAU record is an idempotent (tenant, month, device) key and a gauge is a
max-upsert, so a restart that forgets the in-memory state only repeats
writes that change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from sipcore.metering.months import MonthClock

CONNECTIONS_PEAK = "connections.peak"


# Rows, as the store's BindingRow: NamedTuples, since one or two are built
# for every registration and a frozen dataclass costs three times as much.
class MauRecord(NamedTuple):
    tenant_id: int
    month: str
    device_id: int
    first_ms: int


class GaugeRecord(NamedTuple):
    tenant_id: int
    month: str
    metric: str
    value: int
    at_ms: int


class RegistrationMeter:
    """Remembers, per tenant and month, which devices were seen and the peak."""

    def __init__(self, timezone_of: Callable[[int], str]) -> None:
        self._timezone_of = timezone_of
        self._clocks: dict[int, MonthClock] = {}
        self._seen: dict[int, tuple[str, set[int]]] = {}
        self._peaks: dict[int, tuple[str, int]] = {}

    def month(self, tenant_id: int, now_ms: int) -> str:
        clock = self._clocks.get(tenant_id)
        if clock is None:
            clock = self._clocks[tenant_id] = MonthClock(self._timezone_of(tenant_id))
        return clock.month(now_ms)

    def authenticated(self, tenant_id: int, device_id: int, now_ms: int) -> MauRecord | None:
        """A device proved its credentials; a record the first time this month."""
        month = self.month(tenant_id, now_ms)
        entry = self._seen.get(tenant_id)
        if entry is None or entry[0] != month:
            entry = self._seen[tenant_id] = (month, set())
        if device_id in entry[1]:
            return None
        entry[1].add(device_id)
        return MauRecord(tenant_id, month, device_id, now_ms)

    def mau_seen(self, tenant_id: int, now_ms: int) -> int:
        """Devices seen this month since start (a lower bound of the stored MAU)."""
        entry = self._seen.get(tenant_id)
        return len(entry[1]) if entry and entry[0] == self.month(tenant_id, now_ms) else 0

    def bindings(self, tenant_id: int, count: int, now_ms: int) -> GaugeRecord | None:
        """The tenant now has `count` bindings; a record when that is a new peak this month."""
        month = self.month(tenant_id, now_ms)
        prev = self._peaks.get(tenant_id)
        if prev is not None and prev[0] == month and count <= prev[1]:
            return None
        self._peaks[tenant_id] = (month, count)
        return GaugeRecord(tenant_id, month, CONNECTIONS_PEAK, count, now_ms)
