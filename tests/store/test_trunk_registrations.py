"""Trunk registration states: upserted per trunk through the batch writer, gone with their trunk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from sipcore.store import AlreadyExists, BatchWriter, ConstraintViolation, Store, StoreUnavailable
from sipcore.store.calls import TrunkRegistration

from .conftest import T0


async def _trunk(db: Store, name: str = "carrier", port: int = 5060) -> int:
    try:
        await db.add_tenant("example.com")
    except AlreadyExists:
        pass
    t = await db.add_trunk(name, "example.com", "192.0.2.10", port, username="acct", password="pw", register=True)
    return t.id


def reg(trunk_id: int, state: str = "registered", at: int = T0, **kw: Any) -> TrunkRegistration:
    fields: dict[str, Any] = {
        "status": 200,
        "reason": "OK",
        "expires_at_ms": at + 3_600_000,
        "next_attempt_ms": at + 1_800_000,
    }
    fields.update(kw)
    return TrunkRegistration(trunk_id, state, updated_ms=at, **fields)


@pytest.mark.asyncio
async def test_the_latest_state_per_trunk_is_written_in_a_batch(db: Store) -> None:
    a, b = await _trunk(db), await _trunk(db, "backup", 5070)
    w = BatchWriter(db)
    w.submit_trunk_registration(reg(a, "registering", status=None, reason="", expires_at_ms=None))
    w.submit_trunk_registration(reg(a, "registered", T0 + 5))
    w.submit_trunk_registration(reg(b, "failed", status=403, reason="Forbidden", expires_at_ms=None))
    assert w.pending == 2
    assert await w.flush() == 2
    stored = await db.trunk_registrations()
    assert stored == {
        a: reg(a, "registered", T0 + 5),
        b: reg(b, "failed", status=403, reason="Forbidden", expires_at_ms=None),
    }
    w.submit_trunk_registration(reg(a, "unregistered", T0 + 9, status=None, reason="stopping", expires_at_ms=None))
    await w.stop()
    assert (await db.trunk_registrations())[a].state == "unregistered"


@pytest.mark.asyncio
async def test_a_state_goes_with_its_trunk_and_is_not_written_after_it(db: Store) -> None:
    a = await _trunk(db)
    await db.record_trunk_registrations([reg(a)])
    await db.remove_trunk("carrier")
    assert await db.trunk_registrations() == {}
    await db.record_trunk_registrations([reg(a, "unregistered")])  # the server's last word, after the removal
    assert await db.trunk_registrations() == {}


@pytest.mark.asyncio
async def test_a_bad_state_is_refused_alone(db: Store) -> None:
    a, b = await _trunk(db), await _trunk(db, "backup", 5070)
    with pytest.raises(ConstraintViolation):
        await db.record_trunk_registrations([reg(a, "bogus")])
    w = BatchWriter(db)
    w.submit_trunk_registration(reg(a, "bogus"))
    w.submit_trunk_registration(reg(b))
    w.submit_counter(1, "2025-01", "messages", 1)
    await w.flush()
    assert w.rejected == 1 and set(await db.trunk_registrations()) == {b}
    assert (await db.usage("example.com", "2025-01"))["messages"] == 1


@pytest.mark.asyncio
async def test_a_failed_batch_writes_the_states_again_and_counts_once(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await _trunk(db)
    real = db.apply_batch
    calls = [0]

    async def apply_batch(*args: Sequence[Any]) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise StoreUnavailable("database is locked (simulated)")
        await real(*args)

    monkeypatch.setattr(db, "apply_batch", apply_batch)
    w = BatchWriter(db)
    w.submit_trunk_registration(reg(a, "registering", status=None))
    w.submit_counter(1, "2025-01", "messages", 2)
    with pytest.raises(StoreUnavailable):
        await w.flush()
    w.submit_trunk_registration(reg(a, "registered", T0 + 7))  # newer than the one put back
    assert await w.flush() == 2
    assert (await db.trunk_registrations())[a] == reg(a, "registered", T0 + 7)
    assert (await db.usage("example.com", "2025-01"))["messages"] == 2
