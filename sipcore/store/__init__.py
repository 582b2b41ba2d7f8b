"""SQLite storage (EDGE): provisioning, registrations, usage.

One aiosqlite connection per process (one writer), WAL, numbered migrations
in ``migrations/NNNN_name.sql``.  Nothing from sqlite3 escapes this package:
every failure is a :class:`~sipcore.store.errors.StoreError`.
"""

from __future__ import annotations

from sipcore.store.calls import CounterRow, Did, LegRow, Trunk
from sipcore.store.db import MigrationState, available_migrations
from sipcore.store.errors import (
    AlreadyExists,
    ConstraintViolation,
    ImportRowError,
    InvalidValue,
    NotFound,
    SchemaError,
    StoreClosed,
    StoreError,
    StoreUnavailable,
)
from sipcore.store.models import BindingRow, CredentialRow, Device, Tenant
from sipcore.store.months import month_bounds_ms, month_of
from sipcore.store.store import GaugeRow, MauRow, Store
from sipcore.store.writer import BatchWriter

__all__ = [
    "AlreadyExists",
    "BatchWriter",
    "BindingRow",
    "ConstraintViolation",
    "CounterRow",
    "CredentialRow",
    "Device",
    "Did",
    "GaugeRow",
    "ImportRowError",
    "InvalidValue",
    "LegRow",
    "MauRow",
    "MigrationState",
    "NotFound",
    "SchemaError",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "Tenant",
    "Trunk",
    "available_migrations",
    "month_bounds_ms",
    "month_of",
]
