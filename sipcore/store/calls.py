"""The store's call side (EDGE): legs, trunks, DIDs, counters, heartbeat and crash recovery.

Mixed into :class:`~sipcore.store.Store`; tables from ``migrations/0002_calls.sql``.
"""

from __future__ import annotations

from sipcore.store.db import Database


class CallsStore(Database):
    """Legs, trunks and DIDs (see the module docstring)."""
