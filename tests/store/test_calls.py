"""Trunks and DIDs: provisioning, validation, the serial, the count log and the peak; the Directory load."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sipcore.proxy.directory import DidInfo, TrunkInfo
from sipcore.store import AlreadyExists, InvalidValue, NotFound, Store, month_bounds_ms

from .conftest import FakeClock

DAY = 86_400_000


async def _serial(db: Store) -> int:
    return await db.provisioning_serial()


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as c:
        return c.execute(sql).fetchall()


@pytest.mark.asyncio
async def test_add_list_and_load_a_trunk(db: Store, db_path: Path) -> None:
    t = await db.add_tenant("example.com")
    s0 = await _serial(db)
    tr = await db.add_trunk(
        "Carrier-1", "Example.COM", "[2001:DB8::1]", 5070, transport="tcp", prefixes=["+1", "00", "+1"],
        codecs=["pcmu", " g722", "PCMU"], username="acct", password="s3cret", register=True, priority=5,
        allow_transit=True,
    )  # fmt: skip
    assert await _serial(db) == s0 + 1
    assert (tr.name, tr.domain, tr.tenant_id, tr.host, tr.port, tr.address) == (
        "Carrier-1", "example.com", t.id, "2001:db8::1", 5070, "[2001:db8::1]:5070",
    )  # fmt: skip
    assert tr.prefixes == ("+1", "00") and tr.codecs == ("PCMU", "G722"), "deduplicated; codec order kept"
    assert (tr.username, tr.has_password, tr.register, tr.priority, tr.allow_transit) == ("acct", True, True, 5, True)
    assert "s3cret" not in repr(tr) and "s3cret" not in repr(await db.list_trunks())
    assert await db.list_trunks("example.com") == [tr] == await db.list_trunks()
    assert await db.load_trunks() == [
        TrunkInfo(
            tr.id,
            t.id,
            "Carrier-1",
            "2001:db8::1",
            5070,
            "tcp",
            ("+1", "00"),
            ("PCMU", "G722"),
            "acct",
            "s3cret",
            True,
            5,
            True,
        )  # fmt: skip
    ], "the Directory gets the password: the proxy answers the trunk's challenge with it"
    plain = await db.add_trunk("plain", "example.com", "sip.Carrier.example", 5060)
    assert (plain.host, plain.transport, plain.prefixes, plain.codecs, plain.username) == (
        "sip.carrier.example", "udp", (), (), None,
    )  # fmt: skip
    assert [x.name for x in await db.list_trunks()] == ["Carrier-1", "plain"]
    assert _rows(db_path, "SELECT count FROM trunk_count_log ORDER BY rowid") == [(1,), (2,)]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"name": "bad name"}, "trunk name"),
        ({"name": ""}, "trunk name"),
        ({"host": "not a host"}, "host"),
        ({"host": "[::1"}, "host"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": True}, "port"),
        ({"transport": "tls"}, "transport"),
        ({"prefixes": [""]}, "prefix"),
        ({"prefixes": ["12a"]}, "prefix"),
        ({"prefixes": ["1" * 33]}, "prefix"),
        ({"codecs": ["PC MU"]}, "codec"),
        ({"codecs": [""]}, "codec"),
        ({"username": "u"}, "username and password"),
        ({"password": "p"}, "username and password"),
        ({"username": "u:x", "password": "p"}, "user name"),
        ({"username": "u", "password": ""}, "password"),
        ({"register": True}, "registering"),
        ({"priority": -1}, "priority"),
        ({"priority": 10**9}, "priority"),
    ],
)
@pytest.mark.asyncio
async def test_trunk_validation_writes_nothing(db: Store, kw: dict[str, Any], message: str) -> None:
    await db.add_tenant("example.com")
    s0 = await _serial(db)
    args: dict[str, Any] = {"name": "t1", "tenant_domain": "example.com", "host": "192.0.2.1", "port": 5060} | kw
    with pytest.raises(InvalidValue, match=message):
        await db.add_trunk(**args)
    assert await db.list_trunks() == [] and await _serial(db) == s0


@pytest.mark.asyncio
async def test_trunk_conflicts_and_missing(db: Store) -> None:
    await db.add_tenant("example.com")
    await db.add_tenant("example.org")
    await db.add_trunk("carrier", "example.com", "192.0.2.1", 5060)
    s0 = await _serial(db)
    with pytest.raises(AlreadyExists, match="trunk carrier already exists"):
        await db.add_trunk("CARRIER", "example.org", "192.0.2.2", 5060)
    with pytest.raises(AlreadyExists, match="192.0.2.1:5060"):
        await db.add_trunk("other", "example.org", "192.0.2.1", 5060)  # another tenant, same source address
    with pytest.raises(NotFound, match="no tenant"):
        await db.add_trunk("other", "nosuch.example", "192.0.2.3", 5060)
    with pytest.raises(NotFound, match="no trunk"):
        await db.remove_trunk("nosuch")
    with pytest.raises(NotFound, match="no tenant"):
        await db.list_trunks("nosuch.example")
    assert await _serial(db) == s0
    other = await db.add_trunk("other", "example.org", "192.0.2.1", 5080)  # same host, another port
    assert other.port == 5080


@pytest.mark.asyncio
async def test_remove_trunk_cascades_prefixes_and_unbinds_dids(db: Store, db_path: Path) -> None:
    await db.add_tenant("example.com")
    await db.add_device("alice", "example.com", "pw")
    tr = await db.add_trunk("carrier", "example.com", "192.0.2.1", 5060, prefixes=["1", "2"])
    await db.add_did("+15550100", "alice@example.com", "carrier")
    s0 = await _serial(db)
    await db.remove_trunk("Carrier")  # names are case-insensitive
    assert await _serial(db) == s0 + 1
    assert await db.list_trunks() == [] and await db.load_trunks() == []
    assert _rows(db_path, "SELECT count(*) FROM trunk_prefixes") == [(0,)]
    (did,) = await db.list_dids()
    assert (did.trunk_id, did.trunk_name) == (None, None), "the number now rings from any trunk of the tenant"
    assert _rows(db_path, "SELECT count FROM trunk_count_log ORDER BY rowid") == [(1,), (0,)]
    assert tr.id not in {t.id for t in await db.load_trunks()}


@pytest.mark.asyncio
async def test_trunks_peak_counts_a_trunk_removed_mid_month(db: Store, clock: FakeClock) -> None:
    march, _ = month_bounds_ms("2025-03", "UTC")
    clock.now_ms = march - DAY  # February: one trunk
    t = await db.add_tenant("example.com")
    await db.add_trunk("a", "example.com", "192.0.2.1", 5060)
    clock.now_ms = march + 2 * DAY
    await db.add_trunk("b", "example.com", "192.0.2.2", 5060)
    await db.add_trunk("c", "example.com", "192.0.2.3", 5060)
    clock.now_ms = march + 20 * DAY
    await db.remove_trunk("b")
    await db.remove_trunk("c")
    assert await db.trunks_peak(t.id, "2025-02") == 1
    assert await db.trunks_peak(t.id, "2025-03") == 3, "b and c were part of the peak before removal"
    assert await db.trunks_peak(t.id, "2025-04") == 1, "no change in April: the count in force at its start"
    assert await db.trunks_peak(t.id, "2025-01") == 0
    assert (await db.usage("example.com", "2025-03"))["trunks.provisioned.peak"] == 3
    assert (await db.usage("example.com", "2025-04"))["trunks.provisioned.peak"] == 1
    assert await db.trunk_count(t.id) == 1
    with pytest.raises(NotFound):
        await db.trunks_peak(999, "2025-03")
    with pytest.raises(InvalidValue):
        await db.trunks_peak(t.id, "2025-13")


@pytest.mark.asyncio
async def test_trunks_peak_month_is_in_the_tenant_time_zone(db: Store, clock: FakeClock) -> None:
    tokyo_feb, _ = month_bounds_ms("2025-02", "Asia/Tokyo")
    t = await db.add_tenant("example.jp", timezone="Asia/Tokyo")
    clock.now_ms = tokyo_feb + 3_600_000  # still January in UTC
    await db.add_trunk("a", "example.jp", "192.0.2.1", 5060)
    clock.now_ms += 3_600_000
    await db.remove_trunk("a")
    assert await db.trunks_peak(t.id, "2025-02") == 1
    assert await db.trunks_peak(t.id, "2025-01") == 0


@pytest.mark.asyncio
async def test_load_trunks_skips_disabled_ones(db: Store, db_path: Path) -> None:
    await db.add_tenant("example.com")
    await db.add_trunk("on", "example.com", "192.0.2.1", 5060, codecs=["opus"])
    await db.add_trunk("off", "example.com", "192.0.2.2", 5060)
    await db.close()
    with sqlite3.connect(db_path) as c:
        c.execute("UPDATE trunks SET enabled = 0, codecs = 'pcma,g729' WHERE name = 'off'")
    store = await Store.open(db_path)
    try:
        assert [(t.name, t.codecs) for t in await store.load_trunks()] == [("on", ("OPUS",))]
        assert [t.enabled for t in await store.list_trunks()] == [False, True]
    finally:
        await store.close()


# -- DIDs ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_dids_add_list_load_remove(db: Store, db_path: Path) -> None:
    com = await db.add_tenant("example.com")
    await db.add_tenant("example.org")
    alice = await db.add_device("alice", "example.com", "pw")
    await db.add_device("bob", "example.org", "pw")
    tr = await db.add_trunk("carrier", "example.com", "192.0.2.1", 5060)
    await db.add_trunk("org-carrier", "example.org", "192.0.2.2", 5060)
    s0 = await _serial(db)
    d1 = await db.add_did("+15550100", "alice@Example.com", "carrier")
    d2 = await db.add_did("4930123", "alice@example.com")
    d3 = await db.add_did("4930999", "bob@example.org", "org-carrier")
    assert await _serial(db) == s0 + 3
    assert (d1.number, d1.aor, d1.tenant_id, d1.device_id, d1.trunk_id, d1.trunk_name) == (
        "+15550100", "alice@example.com", com.id, alice.id, tr.id, "carrier",
    )  # fmt: skip
    assert d2.trunk_name is None
    assert await db.list_dids("example.com") == [d1, d2]
    assert await db.list_dids() == [d1, d2, d3]
    assert await db.load_dids() == [
        DidInfo("+15550100", com.id, alice.id, tr.id),
        DidInfo("4930123", com.id, alice.id, None),
        DidInfo("4930999", d3.tenant_id, d3.device_id, d3.trunk_id),
    ]
    await db.remove_did("4930123")
    assert await _serial(db) == s0 + 4
    assert [d.number for d in await db.list_dids()] == ["+15550100", "4930999"]
    await db.remove_device("alice", "example.com")
    assert [d.number for d in await db.list_dids()] == ["4930999"], "a removed device's numbers go with it"


@pytest.mark.asyncio
async def test_did_errors_write_nothing(db: Store) -> None:
    await db.add_tenant("example.com")
    await db.add_tenant("example.org")
    await db.add_device("alice", "example.com", "pw")
    await db.add_trunk("org-carrier", "example.org", "192.0.2.2", 5060)
    await db.add_did("100", "alice@example.com")
    s0 = await _serial(db)
    for number in ("", "12-34", "+", "1" * 33, "++1", "1*"):
        with pytest.raises(InvalidValue, match="number"):
            await db.add_did(number, "alice@example.com")
    with pytest.raises(InvalidValue, match="USER@DOMAIN"):
        await db.add_did("200", "alice")
    with pytest.raises(NotFound, match="no device bob@example.com"):
        await db.add_did("200", "bob@example.com")
    with pytest.raises(NotFound, match="no trunk"):
        await db.add_did("200", "alice@example.com", "nosuch")
    with pytest.raises(InvalidValue, match="belongs to example.org"):
        await db.add_did("200", "alice@example.com", "org-carrier")
    with pytest.raises(AlreadyExists, match="number 100"):
        await db.add_did("100", "alice@example.com")
    with pytest.raises(NotFound, match="no number 300"):
        await db.remove_did("300")
    assert await _serial(db) == s0 and len(await db.list_dids()) == 1
