"""Metering (sans-IO): protocol facts -> usage records (METERING.md)."""

from sipcore.metering.legs import LegRecord, leg_id
from sipcore.metering.months import MonthClock, month_bounds_ms, month_of
from sipcore.metering.registration import CONNECTIONS_PEAK, GaugeRecord, MauRecord, RegistrationMeter

__all__ = [
    "CONNECTIONS_PEAK",
    "GaugeRecord",
    "LegRecord",
    "MauRecord",
    "MonthClock",
    "RegistrationMeter",
    "leg_id",
    "month_bounds_ms",
    "month_of",
]
