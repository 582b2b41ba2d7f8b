"""Numbered migrations: fresh database, idempotent re-open, one transaction each, pragmas."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sipcore.store import SchemaError, Store, StoreError, available_migrations
from sipcore.store import db as dbmod
from sipcore.store.db import Migration, split_statements

from .conftest import T0, FakeClock

TABLES = {
    "schema_migrations",
    "tenants",
    "devices",
    "device_count_log",
    "bindings",
    "usage_mau",
    "usage_gauge",
    "meta",
    "legs",
    "trunks",
    "trunk_prefixes",
    "dids",
    "trunk_count_log",
    "usage_counter",
    "tenant_plans",
    "tenant_tax",
    "invoices",
    "alerts",
    "webhook_outbox",
    "trunk_registrations",
}
MIGRATIONS = [
    (1, "initial", T0),
    (2, "calls", T0),
    (3, "billing", T0),
    (4, "trunk_registrations", T0),
    (5, "trunk_inbound", T0),
    (6, "trunk_account_domain", T0),
]


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} - {"sqlite_sequence"}


@pytest.mark.asyncio
async def test_fresh_database_gets_every_table_and_a_migration_row(db_path: Path, clock: FakeClock) -> None:
    assert not db_path.parent.exists()
    store = await Store.open(db_path, clock=clock)
    status = await store.migration_status()
    await store.close()
    assert db_path.exists(), "open creates the parent directory and the file"
    assert _tables(db_path) == TABLES
    assert [(s.version, s.name, s.applied_ms) for s in status] == MIGRATIONS
    with sqlite3.connect(db_path) as c:
        assert c.execute("SELECT version, name, applied_ms FROM schema_migrations").fetchall() == MIGRATIONS
        assert c.execute("SELECT value FROM meta WHERE key = 'provisioning_serial'").fetchone() == (0,)
        indexes = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"device_count_log_tenant_at", "bindings_expires", "devices_tenant_enabled"} <= indexes


@pytest.mark.asyncio
async def test_reopen_is_idempotent(db_path: Path, clock: FakeClock) -> None:
    store = await Store.open(db_path, clock=clock)
    await store.add_tenant("example.com")
    await store.close()
    clock.advance(60_000)
    store = await Store.open(db_path, clock=clock)
    assert await store.migrate() == []
    status = await store.migration_status()
    tenants = await store.list_tenants()
    await store.close()
    assert [s.applied_ms for s in status] == [T0] * len(MIGRATIONS), "not re-applied"
    assert [t.domain for t in tenants] == ["example.com"], "data survives a re-open"


@pytest.mark.asyncio
async def test_pragmas_wal_normal_foreign_keys_busy_timeout(db: Store) -> None:
    conn = db._conn()
    values = {}
    for pragma in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
        async with conn.execute(f"PRAGMA {pragma}") as cur:
            row = await cur.fetchone()
            assert row is not None
            values[pragma] = row[0]
    assert values == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 5000}


@pytest.mark.asyncio
async def test_open_without_migrate_lists_pending_and_migrate_applies(db_path: Path, clock: FakeClock) -> None:
    store = await Store.open(db_path, migrate=False, clock=clock)
    try:
        before = await store.migration_status()
        applied = await store.migrate()
        after = await store.migration_status()
    finally:
        await store.close()
    assert [s.applied_ms for s in before] == [None] * len(available_migrations())
    assert [s.version for s in applied] == [m.version for m in available_migrations()]
    assert all(s.applied_ms == T0 for s in after)


@pytest.mark.asyncio
async def test_failed_migration_leaves_nothing_behind(
    db_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = available_migrations()
    n = len(good) + 1
    bad = Migration(n, "broken", "CREATE TABLE half_done (x INTEGER) STRICT;\nINSERT INTO nosuch VALUES (1);")
    monkeypatch.setattr(dbmod, "available_migrations", lambda: [*good, bad])
    with pytest.raises(SchemaError, match=f"{n:04d}_broken"):
        await Store.open(db_path, clock=clock)
    monkeypatch.setattr(dbmod, "available_migrations", lambda: good)
    store = await Store.open(db_path, clock=clock)
    status = await store.migration_status()
    await store.close()
    assert [s.version for s in status] == [m.version for m in good], (
        "each committed on its own, the bad one rolled back"
    )
    assert "half_done" not in _tables(db_path)


@pytest.mark.asyncio
async def test_0005_existing_trunks_stay_address_and_digest_needs_a_username(
    db_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = available_migrations()
    monkeypatch.setattr(dbmod, "available_migrations", lambda: every[:4])
    store = await Store.open(db_path, clock=clock)
    await store.add_tenant("example.com")
    await store.close()
    with sqlite3.connect(db_path) as c:
        c.execute(
            "INSERT INTO trunks (tenant_id, name, host, port, created_ms, updated_ms)"
            " VALUES (1, 'old', 'h', 5060, 1, 1)"
        )
    monkeypatch.setattr(dbmod, "available_migrations", lambda: every)
    store = await Store.open(db_path, clock=clock)
    (old,) = await store.list_trunks()
    await store.close()
    assert old.inbound == "address"
    with sqlite3.connect(db_path) as c, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("UPDATE trunks SET inbound = 'digest' WHERE name = 'old'")
    with sqlite3.connect(db_path) as c, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("UPDATE trunks SET inbound = 'sometimes', username = 'u', password = 'p' WHERE name = 'old'")


@pytest.mark.asyncio
async def test_database_from_a_newer_sipcore_is_refused(db_path: Path, clock: FakeClock) -> None:
    await (await Store.open(db_path, clock=clock)).close()
    with sqlite3.connect(db_path) as c:
        c.execute("INSERT INTO schema_migrations VALUES (999, 'future', 1)")
    with pytest.raises(SchemaError, match="newer sipcore"):
        await Store.open(db_path, clock=clock)
    store = await Store.open(db_path, migrate=False, clock=clock)
    status = await store.migration_status()
    await store.close()
    assert [(s.version, s.known) for s in status] == [(m.version, True) for m in available_migrations()] + [
        (999, False)
    ]


@pytest.mark.asyncio
async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(StoreError) as exc:
        await Store.open(path)
    assert not isinstance(exc.value, sqlite3.Error)


@pytest.mark.asyncio
async def test_closed_store_raises_store_closed(db: Store) -> None:
    await db.close()
    await db.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await db.list_tenants()


def test_split_statements_respects_strings_comments_and_triggers() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; END;
    INSERT INTO t VALUES ('e;f')
    """
    stmts = [s.strip() for s in split_statements(script)]
    assert len(stmts) == 3
    assert stmts[0].endswith("DEFAULT 'a;b');") and stmts[1].endswith("END;") and "'e;f'" in stmts[2]
    with sqlite3.connect(":memory:") as c:
        for s in stmts:
            c.execute(s)
        assert c.execute("SELECT x FROM t").fetchall() == [("c;d",)]


def test_migration_files_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))
