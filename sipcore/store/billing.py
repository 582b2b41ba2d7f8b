"""The store's billing side (EDGE): rating input aggregated in SQL, invoices, alerts, webhook outbox.

Mixed into :class:`~sipcore.store.Store`.
"""

from __future__ import annotations

from sipcore.store.db import Database


class BillingStore(Database):
    """Invoices, alerts and the webhook outbox (see the module docstring)."""
