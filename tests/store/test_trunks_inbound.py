"""A trunk's ``inbound`` (address | digest | both): stored, listed, loaded, validated."""

from __future__ import annotations

from typing import Any

import pytest

from sipcore.proxy.directory import Directory, TenantInfo
from sipcore.store import AlreadyExists, ImportRowError, InvalidValue, Store, Trunk


async def _trunk(db: Store, name: str, host: str, **kw: Any) -> Trunk:
    return await db.add_trunk(name, "example.com", host, 5060, **kw)


@pytest.mark.asyncio
async def test_inbound_is_stored_listed_and_loaded(db: Store) -> None:
    t = await db.add_tenant("example.com")
    await _trunk(db, "plain", "192.0.2.1")
    await _trunk(db, "pbx", "192.0.2.2", username="acct", password="s3cret", inbound="digest")
    await _trunk(db, "sbc", "192.0.2.3", username="sbc", password="pw2", inbound="both")
    listed = {x.name: x.inbound for x in await db.list_trunks()}
    assert listed == {"plain": "address", "pbx": "digest", "sbc": "both"}
    loaded = await db.load_trunks()
    assert {x.name: x.inbound for x in loaded} == listed
    d = Directory()
    d.replace([TenantInfo(t.id, t.domain)], [], 1, loaded)
    pbx = d.trunk_by_credentials("example.com", "acct")
    assert pbx is not None and pbx.name == "pbx", "the loaded trunk authenticates inbound"
    assert d.trunk_by_credentials("example.com", "plain") is None


@pytest.mark.asyncio
@pytest.mark.parametrize("inbound", ["digest", "both"])
async def test_digest_needs_credentials(db: Store, inbound: str) -> None:
    await db.add_tenant("example.com")
    with pytest.raises(InvalidValue, match=f"inbound {inbound} needs the trunk's username and password"):
        await _trunk(db, "pbx", "192.0.2.2", inbound=inbound)
    with pytest.raises(InvalidValue, match="inbound 'sometimes'"):
        await _trunk(db, "pbx", "192.0.2.2", username="u", password="p", inbound="sometimes")
    assert await db.list_trunks() == []


@pytest.mark.asyncio
async def test_inbound_username_is_one_identity_in_the_realm(db: Store) -> None:
    await db.add_tenant("example.com")
    await db.add_tenant("example.org")
    await db.add_device("alice", "example.com", "a-pw")
    with pytest.raises(AlreadyExists, match="alice@example.com is a device"):
        await _trunk(db, "pbx", "192.0.2.2", username="alice", password="x", inbound="digest")
    await _trunk(db, "pbx", "192.0.2.2", username="acct", password="x", inbound="digest")
    with pytest.raises(AlreadyExists, match="trunk pbx already authenticates inbound as acct"):
        await _trunk(db, "pbx2", "192.0.2.3", username="acct", password="y", inbound="both")
    # the same credentials outbound only, or in another tenant's realm, are fine
    await _trunk(db, "alice-out", "192.0.2.4", username="alice", password="x")
    await _trunk(db, "pbx3", "192.0.2.5", username="acct", password="y")
    await db.add_trunk("org", "example.org", "192.0.2.6", 5060, username="acct", password="z", inbound="digest")
    assert len(await db.list_trunks()) == 4


@pytest.mark.asyncio
async def test_a_device_cannot_take_a_digest_trunks_username(db: Store) -> None:
    """The other direction: the device would shadow the trunk's credentials
    (the directory asks devices first), so the trunk could no longer get in."""
    await db.add_tenant("example.com")
    await db.add_tenant("example.org")
    await _trunk(db, "pbx", "192.0.2.2", username="acct", password="x", inbound="both")
    await _trunk(db, "out", "192.0.2.3", username="carol", password="x")  # outbound-only credentials
    with pytest.raises(AlreadyExists, match="acct@example.com is the inbound username of trunk pbx"):
        await db.add_device("acct", "example.com", "pw")
    with pytest.raises(ImportRowError, match="row 2: acct@example.com is the inbound username of trunk pbx") as e:
        await db.import_devices([("bob", "example.com", "pw"), ("acct", "example.com", "pw")])
    assert e.value.index == 1
    assert [d.username for d in await db.list_devices()] == [], "an import is all or nothing"
    await db.add_device("carol", "example.com", "pw")
    await db.add_device("acct", "example.org", "pw")  # another realm
    assert sorted(f"{d.username}@{d.domain}" for d in await db.list_devices()) == [
        "acct@example.org",
        "carol@example.com",
    ]
