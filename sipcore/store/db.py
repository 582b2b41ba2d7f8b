"""The SQLite connection under the store (EDGE): pragmas, transactions,
numbered migrations, and the translation of sqlite3 errors.

One process, one writer: a :class:`Database` owns ONE aiosqlite connection
(one background thread), opened in autocommit mode (``isolation_level=None``)
so that every transaction is explicit.  An asyncio lock serializes the
coroutines that share it: without it, a statement of one coroutine would run
inside another coroutine's open transaction.  Writers take ``BEGIN IMMEDIATE``
so that a second process (the CLI next to a running server) waits on
``busy_timeout`` at BEGIN instead of failing half-way through a transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Self

import aiosqlite

from sipcore.store.errors import (
    ConstraintViolation,
    SchemaError,
    StoreClosed,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Returns the current time in integer ms UTC."""

MIN_SQLITE = (3, 37, 0)  # STRICT tables
_MIGRATION_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_UNAVAILABLE = (
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_READONLY",
    "SQLITE_NOMEM", "SQLITE_PROTOCOL", "SQLITE_NOLFS", "SQLITE_PERM",
)  # fmt: skip


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def translate(e: sqlite3.Error, where: str) -> StoreError:
    """The store error for a sqlite3 error; the only place that inspects them."""
    name = getattr(e, "sqlite_errorname", "") or ""
    msg = f"{where}: {e}"
    # IntegrityError: a constraint; DataError/InterfaceError/ProgrammingError: a
    # value SQLite cannot bind or store.  Retrying either can never succeed.
    refused = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError)
    if isinstance(e, refused) or name.startswith("SQLITE_CONSTRAINT"):
        return ConstraintViolation(msg)
    if name.startswith(_UNAVAILABLE):
        return StoreUnavailable(msg)
    return StoreError(msg)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MigrationState:
    version: int
    name: str
    applied_ms: int | None
    """When it was applied; None while pending."""
    known: bool = True
    """False for a version applied by a newer sipcore that this one has no file for."""


def available_migrations() -> list[Migration]:
    """The numbered ``migrations/NNNN_name.sql`` files shipped in the package, in order."""
    out = []
    try:
        for entry in resources.files("sipcore.store").joinpath("migrations").iterdir():
            m = _MIGRATION_FILE.fullmatch(entry.name)
            if m:
                out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    except OSError as e:  # not installed with the package (package-data)
        raise SchemaError(f"the package's migration files cannot be read: {e}") from e
    out.sort(key=lambda m: m.version)
    if len({m.version for m in out}) != len(out) or not out:
        raise SchemaError("the package's migration files are missing or have duplicate numbers")
    return out


def split_statements(script: str) -> list[str]:
    """Split a SQL script into single statements, using SQLite's own notion of a
    complete statement (so ';' in strings, comments or triggers is safe).

    Needed because ``executescript`` commits any open transaction first, and a
    migration must run inside ours.
    """
    out, buf = [], ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            out.append(buf)
            buf = ""
    if buf.strip(" \t\r\n;"):
        raise SchemaError(f"incomplete SQL statement at the end of a migration: {buf[:60]!r}")
    return out


class Database:
    """One aiosqlite connection with the store's pragmas and migrations."""

    def __init__(self, conn: aiosqlite.Connection, path: str, clock: Clock) -> None:
        self._db: aiosqlite.Connection | None = conn
        self.path = path
        self._clock = clock
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, migrate: bool = True, clock: Clock | None = None) -> Self:
        """Open (creating the file and its directory) and, unless ``migrate=False``,
        apply pending migrations.  Refuses a database migrated by a newer sipcore."""
        path = str(path)
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old; sipcore needs 3.37 or later")
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except OSError as e:
            raise StoreUnavailable(f"{path}: {e.strerror or e}") from e
        except sqlite3.Error as e:
            raise translate(e, path) from e
        self = cls(conn, path, clock or wall_clock_ms)
        try:
            await self._configure()
            if migrate:
                await self.migrate()
                unknown = [s for s in await self.migration_status() if not s.known]
                if unknown:
                    raise SchemaError(
                        f"{path}: migrated by a newer sipcore (schema version {unknown[-1].version}); "
                        f"this one knows up to {available_migrations()[-1].version}"
                    )
        except BaseException:
            await self.close()
            raise
        return self

    async def _configure(self) -> None:
        db = self._conn()
        try:
            await db.execute("PRAGMA busy_timeout = 5000")  # wait up to 5 s for another process's write
            async with db.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
            mode = str(row[0]) if row else "?"
            if mode not in ("wal", "memory"):
                log.warning("%s: journal_mode is %s, not WAL (filesystem without shared memory?)", self.path, mode)
            # WAL + synchronous=NORMAL: a commit is not fsync'ed, only the WAL is
            # at checkpoints.  A power loss or OS crash may lose the last few
            # commits but never corrupts the database; a crash or kill -9 of the
            # *process* loses nothing committed (the WAL is in the OS page cache).
            # FULL would put an fsync on every batch for no gain we need.
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL) STRICT"
            )
        except sqlite3.Error as e:
            raise translate(e, self.path) from e

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        db, self._db = self._db, None
        if db is not None:
            try:
                await db.close()
            except sqlite3.Error as e:
                raise translate(e, self.path) from e

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreClosed(f"{self.path}: the store is closed")
        return self._db

    async def _bump_serial(self, db: aiosqlite.Connection) -> None:
        """In the transaction of every provisioning change: the server reloads its directory when this moves."""
        await db.execute("UPDATE meta SET value = value + 1 WHERE key = 'provisioning_serial'")

    def now_ms(self) -> int:
        return self._clock()

    @asynccontextmanager
    async def _tx(self, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction, under the connection lock; sqlite3 errors become StoreErrors.

        Read transactions (``write=False``) give a consistent snapshot across
        several SELECTs; write transactions take the write lock at BEGIN.
        """
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise translate(e, self.path) from e

    # -- migrations --------------------------------------------------------

    async def migration_status(self) -> list[MigrationState]:
        """Every known migration (applied or pending) and any unknown applied one, by version."""
        async with self._tx(write=False) as db:
            async with db.execute("SELECT version, name, applied_ms FROM schema_migrations") as cur:
                applied = {int(r[0]): (str(r[1]), int(r[2])) for r in await cur.fetchall()}
        out = [
            MigrationState(m.version, m.name, applied.get(m.version, (m.name, None))[1]) for m in available_migrations()
        ]
        known = {m.version for m in out}
        out += [MigrationState(v, n, t, known=False) for v, (n, t) in applied.items() if v not in known]
        return sorted(out, key=lambda s: s.version)

    async def migrate(self) -> list[MigrationState]:
        """Apply the pending migrations, each in one transaction with its schema_migrations row.

        Safe against a second process migrating at the same time: whether a
        version is applied is decided inside the write transaction.
        """
        done = []
        for m in available_migrations():
            async with self._tx() as db:
                async with db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)) as cur:
                    if await cur.fetchone():
                        continue
                try:
                    for stmt in split_statements(m.sql):
                        await db.execute(stmt)
                except sqlite3.Error as e:
                    raise SchemaError(f"{self.path}: migration {m.version:04d}_{m.name} failed: {e}") from e
                now = self.now_ms()
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)",
                    (m.version, m.name, now),
                )
            log.info("%s: applied migration %04d_%s", self.path, m.version, m.name)
            done.append(MigrationState(m.version, m.name, now))
        return done
