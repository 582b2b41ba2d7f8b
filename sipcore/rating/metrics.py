"""The metrics a plan can price, exactly as ``METERING.md`` names them (PURE).

Two kinds, because they combine differently inside a rating period:

* ``SUM`` metrics are volumes: minutes, messages, bytes, and ``mau`` (each
  device is counted once, at its first authentication of the month, so
  counts from disjoint stretches of the month add up without double counting).
* ``PEAK`` metrics are levels (``*.peak``): several readings combine by
  ``max``; like the base fee they are a monthly charge for capacity, so a plan
  in force for part of a month charges them pro rata (see ``engine``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType


class Kind(enum.Enum):
    SUM = "sum"
    PEAK = "peak"


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str
    """The METERING.md name, used verbatim in plan files, invoices and the CLI."""
    kind: Kind
    """How readings inside one rating period combine (sum or max)."""
    unit: str
    """What one unit of quantity is (singular noun) for invoice texts."""
    minutes: bool = False
    """Stored as leg milliseconds and rounded per leg by the plan's increment."""


_ALL = (
    MetricInfo("devices.provisioned.peak", Kind.PEAK, "device"),
    MetricInfo("trunks.provisioned.peak", Kind.PEAK, "trunk"),
    MetricInfo("voice.minutes", Kind.SUM, "minute", minutes=True),
    MetricInfo("video.minutes", Kind.SUM, "minute", minutes=True),
    MetricInfo("transcoding.minutes", Kind.SUM, "minute", minutes=True),
    MetricInfo("mau", Kind.SUM, "user"),
    MetricInfo("connections.peak", Kind.PEAK, "connection"),
    MetricInfo("messages", Kind.SUM, "message"),
    MetricInfo("signaling.bytes_out", Kind.SUM, "byte"),
)

METRICS: MappingProxyType[str, MetricInfo] = MappingProxyType({m.name: m for m in _ALL})
"""Every metric of METERING.md, in the table's order."""

MINUTE_METRICS = frozenset(m.name for m in _ALL if m.minutes)

BASE = "base"
"""Invoice line name of the monthly base fee (issue 5's JSON shape)."""
MINIMUM = "minimum"
"""Invoice line name of the top-up to a plan's minimum monthly charge (seed 003)."""


def metric_names() -> str:
    """The names for an error message: 'a, b, c'."""
    return ", ".join(METRICS)
