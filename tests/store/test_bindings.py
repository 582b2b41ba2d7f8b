"""Registrations: save (upsert/delete), load with pruning, list by tenant."""

from __future__ import annotations

import pytest

from sipcore.store import BindingRow, ConstraintViolation, NotFound, Store

from .conftest import T0


def binding(aor: str, contact: str, tenant_id: int, device_id: int, expires_ms: int, **kw: object) -> BindingRow:
    fields: dict[str, object] = dict(
        q_milli=1000, call_id="cid-1", cseq=1, flow_transport="udp", flow_host="192.0.2.1", flow_port=5060
    )
    fields.update(kw)
    return BindingRow(aor, contact, tenant_id, device_id, expires_ms, **fields)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_save_load_round_trip_every_field(db: Store) -> None:
    t = await db.add_tenant("example.com")
    d = await db.add_device("alice", "example.com", "pw")
    full = BindingRow(
        aor="sip:alice@example.com",
        contact='<sip:alice@[2001:db8::1]:5070;transport=tcp>;+sip.instance="<urn:uuid:1>"',
        tenant_id=t.id,
        device_id=d.id,
        expires_ms=T0 + 3_600_000,
        q_milli=700,
        call_id="abc@host",
        cseq=42,
        flow_transport="tcp",
        flow_host="2001:db8::1",
        flow_port=5070,
        flow_conn=17,
        instance="<urn:uuid:1>",
        reg_id=1,
        path=("<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"),
        user_agent="Linphone/5.2",
        updated_ms=T0,
    )
    bare = binding("sip:alice@example.com", "<sip:alice@192.0.2.1>", t.id, d.id, T0 + 60_000)
    await db.save_bindings([full, bare], [])
    assert sorted(await db.load_bindings(T0), key=lambda b: b.contact) == sorted([full, bare], key=lambda b: b.contact)
    async with db._conn().execute("SELECT contact, path FROM bindings ORDER BY contact") as cur:
        stored = list(await cur.fetchall())
    assert stored == [
        (bare.contact, None),
        (full.contact, '["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]'),
    ]


@pytest.mark.asyncio
async def test_upsert_replaces_and_delete_removes(db: Store) -> None:
    t = await db.add_tenant("example.com")
    d = await db.add_device("alice", "example.com", "pw")
    b1 = binding("sip:alice@example.com", "<sip:a@192.0.2.1>", t.id, d.id, T0 + 60_000)
    b2 = binding("sip:alice@example.com", "<sip:a@192.0.2.2>", t.id, d.id, T0 + 60_000)
    await db.save_bindings([b1, b2], [])
    refreshed = b1._replace(expires_ms=T0 + 120_000, cseq=2)
    await db.save_bindings([refreshed], [(b2.aor, b2.contact), ("sip:nobody@example.com", "<sip:x>")])
    assert await db.list_bindings(now_ms=T0) == [refreshed]


@pytest.mark.asyncio
async def test_load_prunes_expired_and_list_filters(db: Store) -> None:
    t1 = await db.add_tenant("example.com")
    t2 = await db.add_tenant("example.org")
    a = await db.add_device("a", "example.com", "pw")
    b = await db.add_device("b", "example.org", "pw")
    live = binding("sip:a@example.com", "<sip:a@192.0.2.1>", t1.id, a.id, T0 + 1000)
    dead = binding("sip:a@example.com", "<sip:a@192.0.2.9>", t1.id, a.id, T0)
    other = binding("sip:b@example.org", "<sip:b@192.0.2.2>", t2.id, b.id, T0 + 1000)
    await db.save_bindings([live, dead, other], [])
    assert await db.list_bindings(now_ms=T0) == [live, other], "expired at now is not listed"
    assert len(await db.list_bindings(now_ms=T0 - 1)) == 3, "list_bindings does not delete"
    assert await db.list_bindings("example.org", now_ms=T0) == [other]
    with pytest.raises(NotFound):
        await db.list_bindings("nosuch.example.com", now_ms=T0)
    assert await db.load_bindings(T0) == [live, other]
    assert len(await db.list_bindings(now_ms=T0 - 1)) == 2, "load_bindings deleted the expired row"


@pytest.mark.asyncio
async def test_removing_a_device_removes_its_bindings(db: Store) -> None:
    t = await db.add_tenant("example.com")
    a = await db.add_device("a", "example.com", "pw")
    b = await db.add_device("b", "example.com", "pw")
    await db.save_bindings(
        [
            binding("sip:a@example.com", "<sip:a@192.0.2.1>", t.id, a.id, T0 + 1000),
            binding("sip:b@example.com", "<sip:b@192.0.2.1>", t.id, b.id, T0 + 1000),
        ],
        [],
    )
    await db.remove_device("a", "example.com")
    assert [x.aor for x in await db.list_bindings(now_ms=T0)] == ["sip:b@example.com"]


@pytest.mark.asyncio
async def test_bad_q_value_is_refused_and_the_batch_rolled_back(db: Store) -> None:
    t = await db.add_tenant("example.com")
    d = await db.add_device("a", "example.com", "pw")
    ok = binding("sip:a@example.com", "<sip:a@192.0.2.1>", t.id, d.id, T0 + 1000)
    bad = binding("sip:a@example.com", "<sip:a@192.0.2.2>", t.id, d.id, T0 + 1000, q_milli=1001)
    with pytest.raises(ConstraintViolation):
        await db.save_bindings([ok, bad], [])
    assert await db.list_bindings(now_ms=T0) == []
