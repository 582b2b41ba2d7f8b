"""Errors of the store (EDGE): the only exceptions that leave ``sipcore.store``.

Every ``sqlite3``/``aiosqlite`` error is translated into one of these at the
store's boundary (``raise ... from e`` keeps the cause for the log), so the CLI
and the server catch ``StoreError`` and never import ``sqlite3``.
"""

from __future__ import annotations

from sipcore.errors import SipcoreError


class StoreError(SipcoreError):
    """Root of the store's errors; a bare instance is an unexpected database failure."""


class NotFound(StoreError):
    """The tenant or device named does not exist."""


class AlreadyExists(StoreError):
    """A tenant or device with that name exists already."""


class InvalidValue(StoreError, ValueError):
    """An argument the store refuses before touching the database (bad domain, time zone, month...)."""


class ImportRowError(InvalidValue):
    """One row of a bulk import is wrong; ``index`` is its 0-based position in the input."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"row {index + 1}: {reason}")
        self.index = index
        self.reason = reason


class ConstraintViolation(StoreError):
    """The database refused a row (CHECK, NOT NULL, type): a bug in the caller, not a transient failure."""


class StoreUnavailable(StoreError):
    """The database could not be read or written (locked past busy_timeout, I/O error, disk full).

    Transient as far as the store can tell: the operation may be retried.
    """


class SchemaError(StoreError):
    """A migration failed, or the database was migrated by a newer sipcore."""


class StoreClosed(StoreError):
    """The store (or the batch writer) was used after close()/stop()."""
