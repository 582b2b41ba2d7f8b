"""Metering (sans-IO): protocol facts -> usage records (METERING.md)."""

from sipcore.metering.months import MonthClock, month_bounds_ms, month_of
from sipcore.metering.registration import CONNECTIONS_PEAK, GaugeRecord, MauRecord, RegistrationMeter

__all__ = [
    "CONNECTIONS_PEAK",
    "GaugeRecord",
    "MauRecord",
    "MonthClock",
    "RegistrationMeter",
    "month_bounds_ms",
    "month_of",
]
