"""BatchWriter for legs and counters: coalescing, bounds, and retries that never count twice."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import aiosqlite
import pytest

from sipcore.metering.legs import END_BYE_CALLEE, END_BYE_CALLER
from sipcore.store import BatchWriter, CounterRow, Store, StoreUnavailable

from .conftest import T0
from .test_calls_legs import MONTH, _leg, _setup, answered, leg


async def _counter(db: Store, metric: str = "messages") -> int:
    return int((await db.usage("example.com", MONTH))[metric])


@pytest.mark.asyncio
async def test_submits_are_plain_o1_calls(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db)
    for fn in (w.submit_legs, w.submit_counter):
        assert not asyncio.iscoroutinefunction(fn)
    a = answered(leg(tid, did), T0 + 1000)
    w.submit_legs([a])
    w.submit_counter(tid, MONTH, "messages", 1)
    assert w.pending == 2 and await db.list_legs("example.com", MONTH) == [], "nothing written before a flush"
    assert await w.flush() == 2 and w.written == 2
    assert (await _leg(db, a.leg_id)).answer_ms == T0 + 1000 and await _counter(db) == 1


@pytest.mark.asyncio
async def test_legs_coalesce_to_the_newest_snapshot_and_ended_is_final(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db)
    a = answered(leg(tid, did, 1), T0 + 1000)
    b = a.with_media(T0 + 11_000, video=True, transcoding=False)
    end = b.closed(T0 + 21_000, END_BYE_CALLER)
    w.submit_legs([a, b, end])
    w.submit_legs([b, a.closed(T0 + 999_000, END_BYE_CALLEE)])  # late: neither replaces the ended snapshot
    x = answered(leg(tid, did, 2), T0 + 2000)
    y = x.with_media(T0 + 5000, video=True, transcoding=True)
    w.submit_legs([y, x])  # x is older than y (the packet path never does this, but order must not matter)
    assert w.pending == 2, "one key per leg"
    await w.flush()
    r1, r2 = await _leg(db, a.leg_id), await _leg(db, x.leg_id)
    assert (r1.end_ms, r1.end_reason, r1.voice_ms, r1.video_ms) == (T0 + 21_000, END_BYE_CALLER, 10_000, 10_000)
    assert (r2.segment_start_ms, r2.segment_video, r2.voice_ms) == (T0 + 5000, True, 3000)


@pytest.mark.asyncio
async def test_counters_sum_in_one_key_and_bad_deltas_are_rejected(db: Store, caplog: pytest.LogCaptureFixture) -> None:
    tid, _ = await _setup(db)
    w = BatchWriter(db)
    for _ in range(1000):
        w.submit_counter(tid, MONTH, "messages", 1)
        w.submit_counter(tid, MONTH, "signaling.bytes_out", 400)
    w.submit_counter(tid, MONTH, "messages", 0)
    w.submit_counter(tid, "2025-02", "messages", 0)  # zero: nothing to queue
    with caplog.at_level(logging.ERROR, logger="sipcore.store.writer"):
        w.submit_counter(tid, MONTH, "messages", -5)
        w.submit_counter(tid, MONTH, "messages", 2.0)  # type: ignore[arg-type]
    assert w.pending == 2 and w.rejected == 2 and "counter increment rejected" in caplog.text
    await w.flush()
    assert (await _counter(db), await _counter(db, "signaling.bytes_out")) == (1000, 400_000)
    w.submit_counter(tid, MONTH, "messages", 5)
    await w.flush()
    assert await _counter(db) == 1005


@pytest.mark.asyncio
async def test_full_buffers_drop_new_legs_and_counters_but_never_pending_keys(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db, flush_at=2, max_pending=2)
    a = answered(leg(tid, did, 1), T0 + 1000)
    w.submit_legs([a])
    w.submit_counter(tid, MONTH, "messages", 1)
    w.submit_legs([answered(leg(tid, did, 2), T0 + 2000)])
    w.submit_counter(tid, MONTH, "signaling.bytes_out", 1)
    assert (w.pending, w.dropped) == (2, 2)
    w.submit_legs([a.closed(T0 + 5000, END_BYE_CALLER)])
    w.submit_counter(tid, MONTH, "messages", 1)
    assert (w.pending, w.dropped) == (2, 2), "a key already pending is updated, never dropped"
    await w.flush()
    assert [r.end_ms for r in await db.list_legs("example.com", MONTH)] == [T0 + 5000]
    assert await _counter(db) == 2


def _fail_apply_after_counters(db: Store, monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The transaction fails AFTER the counter increments ran in it (as a full disk at COMMIT would)."""
    real = db.apply_counters
    calls = [0]

    async def apply_counters(conn: aiosqlite.Connection, rows: Iterable[CounterRow]) -> None:
        await real(conn, rows)
        calls[0] += 1
        if calls[0] <= times:
            raise StoreUnavailable("disk I/O error (simulated)")

    monkeypatch.setattr(db, "apply_counters", apply_counters)
    return calls


@pytest.mark.asyncio
async def test_a_failed_batch_retried_counts_once(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    tid, did = await _setup(db)
    calls = _fail_apply_after_counters(db, monkeypatch, 2)
    w = BatchWriter(db)
    a = answered(leg(tid, did), T0 + 1000)
    w.submit_counter(tid, MONTH, "messages", 3)
    w.submit_legs([a])
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await w.flush()
        assert await _counter(db) == 0 and await db.list_legs("example.com", MONTH) == [], "rolled back as a whole"
    w.submit_counter(tid, MONTH, "messages", 4)  # newer, while the failed batch waits
    w.submit_legs([a.closed(T0 + 61_000, END_BYE_CALLER)])
    assert w.pending == 2
    assert await w.flush() == 2 and calls[0] == 3
    assert await _counter(db) == 7, "3 once (after two failed attempts) plus the newer 4"
    assert (await _leg(db, a.leg_id)).duration_ms == 60_000, "the newer ended snapshot won over the failed one"


@pytest.mark.asyncio
async def test_a_failed_batch_keeps_its_ended_snapshot_over_a_newer_open_one(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid, did = await _setup(db)
    _fail_apply_after_counters(db, monkeypatch, 1)
    w = BatchWriter(db)
    a = answered(leg(tid, did), T0 + 1000)
    w.submit_legs([a.closed(T0 + 31_000, END_BYE_CALLER)])
    w.submit_counter(tid, MONTH, "messages", 1)
    with pytest.raises(StoreUnavailable):
        await w.flush()
    w.submit_legs([a.with_media(T0 + 40_000, True, False)])
    await w.flush()
    row = await _leg(db, a.leg_id)
    assert (row.end_ms, row.duration_ms, row.video_ms) == (T0 + 31_000, 30_000, 0)


@pytest.mark.asyncio
async def test_a_transient_failure_while_isolating_does_not_recount_what_committed(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch refused as a whole is written one operation at a time; if the
    database then fails half-way, only the operations not yet committed are
    put back: a counter already committed alone must not be added again."""
    tid, did = await _setup(db)
    real = db.apply_batch
    seen: list[str] = []

    async def apply_batch(*args: Any) -> None:
        counters = args[5] if len(args) > 5 else ()
        if counters and len(counters) == 1 and counters[0][2] == "signaling.bytes_out" and "fail" not in seen:
            seen.append("fail")
            raise StoreUnavailable("database is locked (simulated)")
        await real(*args)

    monkeypatch.setattr(db, "apply_batch", apply_batch)
    w = BatchWriter(db)
    w.submit_legs([dataclasses.replace(leg(tid, did, 1), month="January")])  # forces isolation
    w.submit_counter(tid, MONTH, "messages", 5)  # committed alone first
    w.submit_counter(tid, MONTH, "signaling.bytes_out", 100)  # then this one fails transiently
    with pytest.raises(StoreUnavailable):
        await w.flush()
    assert await _counter(db) == 5
    assert w.pending == 1, "only the operation not yet written is put back"
    await w.flush()
    assert (await _counter(db), await _counter(db, "signaling.bytes_out")) == (5, 100)


@pytest.mark.asyncio
async def test_invalid_leg_in_a_batch_is_isolated_and_the_rest_written(
    db: Store, caplog: pytest.LogCaptureFixture
) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db)
    good = answered(leg(tid, did, 1), T0 + 1000)
    w.submit_legs([good, dataclasses.replace(leg(tid, did, 2), endpoint_kind="phone")])  # type: ignore[arg-type]
    w.submit_counter(tid, MONTH, "messages", 2)
    with caplog.at_level(logging.ERROR, logger="sipcore.store.writer"):
        assert await w.flush() == 2
    assert w.rejected == 1 and w.written == 2 and w.pending == 0
    assert [r.leg_id for r in await db.list_legs("example.com", MONTH)] == [good.leg_id]
    assert await _counter(db) == 2


@pytest.mark.asyncio
async def test_stop_flushes_legs_and_counters(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db, 60_000)
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0)
    w.submit_legs([answered(leg(tid, did), T0 + 1000).closed(T0 + 2000, END_BYE_CALLER)])
    w.submit_counter(tid, MONTH, "messages", 1)
    await w.stop()
    await asyncio.wait_for(task, 1)
    assert len(await db.list_legs("example.com", MONTH)) == 1 and await _counter(db) == 1


@pytest.mark.asyncio
async def test_a_heartbeat_through_the_writer_never_overtakes_an_ended_snapshot(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash after a failed flush: the heartbeat is stored only together with
    the snapshots submitted before it, so recovery cannot stretch a leg that
    ended before the heartbeat."""
    tid, did = await _setup(db)
    a = answered(leg(tid, did), T0 + 1000)
    await db.record_legs([a])
    await db.stamp_heartbeat(T0 + 5000)
    w = BatchWriter(db)
    w.submit_legs([a.closed(T0 + 10_000, END_BYE_CALLER)])  # the call ends ...
    w.submit_heartbeat(T0 + 60_000)  # ... and the server lives on
    w.submit_heartbeat(T0 + 61_000)
    assert w.pending == 2, "one heartbeat key"
    _fail_apply_after_counters(db, monkeypatch, 1)
    w.submit_counter(tid, MONTH, "messages", 1)
    with pytest.raises(StoreUnavailable):
        await w.flush()
    assert await db.last_heartbeat() == T0 + 5000, "rolled back with the snapshot"
    # kill -9 here: nothing of the batch is stored; recovery closes at the old heartbeat.
    assert w.pending == 3
    await w.flush()
    assert await db.last_heartbeat() == T0 + 61_000
    assert await db.recover_open_legs() == 0
    assert (await _leg(db, a.leg_id)).duration_ms == 9000


@pytest.mark.asyncio
async def test_a_heartbeat_is_written_after_the_legs_when_a_batch_is_isolated(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db)
    w.submit_heartbeat(T0 + 1000)
    w.submit_legs([dataclasses.replace(leg(tid, did, 1), month="January")])  # forces isolation
    w.submit_legs([answered(leg(tid, did, 2), T0 + 500)])
    split = w._pending.split()
    assert split[-1].heartbeat_ms == T0 + 1000 and all(b.heartbeat_ms is None for b in split[:-1])
    assert await w.flush() == 2 and w.rejected == 1
    assert await db.last_heartbeat() == T0 + 1000


def test_apply_batch_keeps_its_positional_shape() -> None:
    """Older callers pass four sequences; legs and counters are optional."""
    import inspect

    params = list(inspect.signature(Store.apply_batch).parameters.values())[1:]
    assert [p.name for p in params] == ["upserts", "deletes", "mau", "gauges", "legs", "counters", "heartbeat_ms"]
    assert [p.default for p in params[4:]] == [(), (), None]
