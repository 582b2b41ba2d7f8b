"""Tenants and devices: round trips, typed errors, HA1 only, the provisioning serial."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sipcore.store import (
    AlreadyExists,
    CredentialRow,
    Device,
    ImportRowError,
    InvalidValue,
    NotFound,
    Store,
    StoreError,
    StoreUnavailable,
    Tenant,
)

from .conftest import T0, FakeClock

PASSWORD = "CorrectHorse-7f3a-Battery"


@pytest.mark.asyncio
async def test_tenant_round_trip(db: Store) -> None:
    t = await db.add_tenant("Example.COM", plan="pro", timezone="Asia/Tokyo")
    assert t == Tenant(t.id, "example.com", "pro", "Asia/Tokyo", None, None, T0)
    assert await db.get_tenant("EXAMPLE.com") == t
    other = await db.add_tenant("a.example.org")
    assert await db.list_tenants() == [other, t], "ordered by domain"
    assert other.timezone == "UTC" and other.plan is None


@pytest.mark.asyncio
async def test_tenant_errors_are_typed(db: Store) -> None:
    await db.add_tenant("example.com")
    with pytest.raises(AlreadyExists, match="example.com"):
        await db.add_tenant("EXAMPLE.COM")
    with pytest.raises(InvalidValue, match="time zone"):
        await db.add_tenant("b.example.com", timezone="Mars/Olympus")
    with pytest.raises(InvalidValue, match="domain"):
        await db.add_tenant("not a domain")
    with pytest.raises(NotFound):
        await db.get_tenant("nosuch.example.com")
    assert [t.domain for t in await db.list_tenants()] == ["example.com"]


@pytest.mark.asyncio
async def test_device_round_trip_and_credentials(db: Store, clock: FakeClock) -> None:
    t = await db.add_tenant("example.com")
    d = await db.add_device("alice", "Example.com", PASSWORD)
    assert d == Device(d.id, t.id, "example.com", "alice", True, T0, T0)
    assert d.aor == "alice@example.com"
    assert await db.list_devices() == [d] == await db.list_devices("example.com")
    creds = await db.load_credentials()
    assert creds == [
        CredentialRow(
            realm="example.com",
            username="alice",
            device_id=d.id,
            tenant_id=t.id,
            ha1_md5=hashlib.md5(f"alice:example.com:{PASSWORD}".encode()).hexdigest(),
            ha1_sha256=hashlib.sha256(f"alice:example.com:{PASSWORD}".encode()).hexdigest(),
            enabled=True,
        )
    ]
    for ha1 in (creds[0].ha1_md5, creds[0].ha1_sha256):
        assert PASSWORD not in ha1 and ha1 != PASSWORD

    clock.advance(1000)
    off = await db.set_device_enabled("alice", "example.com", False)
    assert (off.enabled, off.updated_ms) == (False, T0 + 1000)
    assert [c.enabled for c in await db.load_credentials()] == [False]
    assert await db.set_device_enabled("alice", "example.com", True) == Device(
        d.id, t.id, "example.com", "alice", True, T0, T0 + 1000
    )
    await db.remove_device("alice", "example.com")
    assert await db.list_devices() == [] and await db.load_credentials() == []


@pytest.mark.asyncio
async def test_device_errors_are_typed(db: Store) -> None:
    await db.add_tenant("example.com")
    await db.add_device("alice", "example.com", "pw")
    with pytest.raises(AlreadyExists):
        await db.add_device("alice", "example.com", "other")
    with pytest.raises(NotFound, match="no tenant"):
        await db.add_device("bob", "nosuch.example.com", "pw")
    with pytest.raises(NotFound, match="no device bob@example.com"):
        await db.set_device_enabled("bob", "example.com", False)
    with pytest.raises(NotFound):
        await db.remove_device("bob", "example.com")
    with pytest.raises(NotFound):
        await db.list_devices("nosuch.example.com")
    for user, pw in (("", "pw"), ("a b", "pw"), ("a:b", "pw"), ("a@b", "pw"), ("bob", "")):
        with pytest.raises(InvalidValue):
            await db.add_device(user, "example.com", pw)
    assert [d.username for d in await db.list_devices()] == ["alice"]


@pytest.mark.asyncio
async def test_user_names_are_case_sensitive(db: Store) -> None:
    await db.add_tenant("example.com")
    a = await db.add_device("alice", "example.com", "pw")
    b = await db.add_device("Alice", "example.com", "pw")
    assert a.id != b.id and len(await db.list_devices()) == 2


@pytest.mark.asyncio
async def test_password_appears_nowhere_in_the_database_files(db: Store, db_path: Path) -> None:
    await db.add_tenant("example.com")
    await db.add_device("alice", "example.com", PASSWORD)
    await db.import_devices([("bob", "example.com", PASSWORD + "-bob")])
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    assert db_path in files
    blob = b"".join(p.read_bytes() for p in files)
    assert b"alice" in blob, "the scan does see the rows"
    assert PASSWORD.encode() not in blob
    await db.close()  # checkpoints the WAL into the main file
    assert PASSWORD.encode() not in db_path.read_bytes()


@pytest.mark.asyncio
async def test_provisioning_serial_moves_with_every_change(db: Store) -> None:
    serials = [await db.provisioning_serial()]

    async def step() -> None:
        serials.append(await db.provisioning_serial())

    await db.add_tenant("example.com")
    await step()
    await db.add_device("alice", "example.com", "pw")
    await step()
    await db.set_device_enabled("alice", "example.com", False)
    await step()
    await db.set_device_enabled("alice", "example.com", True)
    await step()
    await db.import_devices([("bob", "example.com", "pw")])
    await step()
    await db.remove_device("bob", "example.com")
    await step()
    assert serials == sorted(set(serials)) and len(serials) == 7, serials
    await db.set_device_enabled("alice", "example.com", True)  # no change
    with pytest.raises(AlreadyExists):
        await db.add_device("alice", "example.com", "pw")  # failed: rolled back
    assert await db.provisioning_serial() == serials[-1]


@pytest.mark.asyncio
async def test_import_is_all_or_nothing_and_names_the_row(db: Store) -> None:
    await db.add_tenant("example.com")
    await db.add_tenant("example.org")
    await db.add_device("taken", "example.org", "pw")
    serial = await db.provisioning_serial()
    bad_rows: list[list[Any]] = [
        [("a", "example.com", "pw"), ("b", "nosuch.example", "pw")],
        [("a", "example.com", "pw"), ("a", "example.com", "pw2")],
        [("a", "example.com", "pw"), ("taken", "example.org", "pw")],
        [("a", "example.com", "pw"), ("b c", "example.com", "pw")],
        [("a", "example.com", "pw"), ("b", "example.com")],
    ]
    for rows in bad_rows:
        with pytest.raises(ImportRowError) as exc:
            await db.import_devices(rows)
        assert exc.value.index == 1, exc.value
    assert [d.aor for d in await db.list_devices()] == ["taken@example.org"]
    assert await db.provisioning_serial() == serial
    n = await db.import_devices([("a", "example.com", "pw"), ("b", "EXAMPLE.org", "pw")])
    assert n == 2
    assert [d.aor for d in await db.list_devices()] == ["a@example.com", "b@example.org", "taken@example.org"]
    assert await db.import_devices([]) == 0


@pytest.mark.asyncio
async def test_import_10000_devices_in_one_transaction(
    db: Store, record_property: Callable[[str, object], None]
) -> None:
    t = await db.add_tenant("example.com")
    rows = [(f"user{i:05d}", "example.com", f"secret-{i}") for i in range(10_000)]
    started = time.perf_counter()
    n = await db.import_devices(rows)
    elapsed = time.perf_counter() - started
    record_property("import_10000_devices_s", round(elapsed, 3))
    assert n == 10_000
    assert elapsed < 20, f"10,000 devices took {elapsed:.1f} s"
    assert await db.device_count(t.id) == 10_000
    creds = {c.username: c for c in await db.load_credentials()}
    assert creds["user09999"].ha1_md5 == hashlib.md5(b"user09999:example.com:secret-9999").hexdigest()


@pytest.mark.asyncio
async def test_ids_are_never_reused_after_a_delete(db: Store) -> None:
    await db.add_tenant("example.com")
    await db.add_device("a", "example.com", "pw")
    b = await db.add_device("b", "example.com", "pw")
    await db.remove_device("b", "example.com")
    c = await db.add_device("c", "example.com", "pw")
    assert c.id > b.id, "a new device must not inherit the usage rows of a removed one"


@pytest.mark.asyncio
async def test_no_sqlite3_error_escapes(db: Store, db_path: Path) -> None:
    # Another connection holds the write lock past busy_timeout: a StoreError, not sqlite3.OperationalError.
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    conn = db._conn()
    await conn.execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(StoreUnavailable) as exc:
            await db.add_tenant("example.com")
        assert isinstance(exc.value, StoreError) and not isinstance(exc.value, sqlite3.Error)
        assert "locked" in str(exc.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await db.add_tenant("example.com")).domain == "example.com", "usable again once the lock is gone"
