"""BatchWriter: submits never wait, batches coalesce, stop flushes, failures retry, bounds hold."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from sipcore.store import BatchWriter, BindingRow, StoreClosed, StoreUnavailable
from sipcore.store.store import Store

from .conftest import T0
from .test_bindings import binding


async def _setup(db: Store) -> tuple[int, int]:
    t = await db.add_tenant("example.com")
    d = await db.add_device("a", "example.com", "pw")
    return t.id, d.id


def _b(tid: int, did: int, n: int, **kw: Any) -> BindingRow:
    return binding("sip:a@example.com", f"<sip:a@192.0.2.{n}>", tid, did, T0 + 60_000, **kw)


async def _until(cond: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def _fail_first(db: Store, monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Make db.apply_batch fail `times` times (as a locked database would), then work."""
    real = db.apply_batch
    calls = [0]

    async def apply_batch(*args: Sequence[Any]) -> None:
        calls[0] += 1
        if calls[0] <= times:
            raise StoreUnavailable("database is locked (simulated)")
        await real(*args)

    monkeypatch.setattr(db, "apply_batch", apply_batch)
    return calls


@pytest.mark.asyncio
async def test_submits_are_plain_calls_that_touch_no_disk(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db, 100)
    for fn in (w.submit_bindings, w.submit_mau, w.submit_gauge, w.submit_gauges):
        assert not asyncio.iscoroutinefunction(fn)
    w.submit_bindings([_b(tid, did, 1)], [])
    w.submit_mau([(tid, "2025-03", did, 1)])
    w.submit_gauge(tid, "2025-03", "connections.peak", 1, 1)
    assert w.pending == 3
    assert await db.list_bindings(now_ms=T0) == [], "nothing written before a flush"
    assert await w.flush() == 3 and w.pending == 0 and w.written == 3
    assert len(await db.list_bindings(now_ms=T0)) == 1


@pytest.mark.asyncio
async def test_a_batch_coalesces_per_key(db: Store) -> None:
    tid, did = await _setup(db)
    old = _b(tid, did, 3)
    await db.save_bindings([old], [])
    w = BatchWriter(db)
    v1 = _b(tid, did, 1, cseq=1)
    v2 = v1._replace(cseq=2)
    w.submit_bindings([v1], [])
    w.submit_bindings([v2], [])  # last upsert wins
    w.submit_bindings([], [(v1.aor, "<sip:a@192.0.2.2>")])
    w.submit_bindings([_b(tid, did, 2)], [])  # delete then upsert: the upsert wins
    w.submit_bindings([], [old.key])  # the stored row is deleted
    w.submit_mau([(tid, "2025-03", did, 50), (tid, "2025-03", did, 20), (tid, "2025-03", did, 90)])
    w.submit_gauges([(tid, "2025-03", "connections.peak", v, v * 10) for v in (3, 8, 5)])
    assert w.pending == 5, "3 binding keys, 1 MAU key, 1 gauge key"
    assert await w.flush() == 5
    rows = await db.list_bindings(now_ms=T0)
    assert [(r.contact, r.cseq) for r in rows] == [("<sip:a@192.0.2.1>", 2), ("<sip:a@192.0.2.2>", 1)]
    async with db._conn().execute("SELECT first_ms FROM usage_mau") as cur:
        assert list(await cur.fetchall()) == [(20,)]
    async with db._conn().execute("SELECT value, updated_ms FROM usage_gauge") as cur:
        assert list(await cur.fetchall()) == [(8, 80)]
    w.submit_gauge(tid, "2025-03", "connections.peak", 4, 999)  # below the stored peak
    await w.flush()
    assert (await db.usage("example.com", "2025-03"))["connections.peak"] == 8


@pytest.mark.asyncio
async def test_run_flushes_on_its_interval_and_stop_flushes_the_rest(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db, 10)
    task = asyncio.create_task(w.run())
    w.submit_bindings([_b(tid, did, 1)], [])

    async def one_written() -> bool:
        return len(await db.list_bindings(now_ms=T0)) == 1

    await _until(one_written)
    w.flush_interval_ms = 60_000  # from now on only stop() can flush in time
    await asyncio.sleep(0.02)
    w.submit_bindings([_b(tid, did, 2)], [])
    w.submit_mau([(tid, "2025-03", did, 1)])
    await w.stop()
    await asyncio.wait_for(task, 1)
    assert len(await db.list_bindings(now_ms=T0)) == 2
    assert (await db.usage("example.com", "2025-03"))["mau"] == 1
    with pytest.raises(StoreClosed):
        w.submit_bindings([_b(tid, did, 3)], [])


@pytest.mark.asyncio
async def test_reaching_flush_at_flushes_early(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db, 60_000, flush_at=50)
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0)
    w.submit_bindings([_b(tid, did, n) for n in range(1, 51)], [])

    async def written() -> bool:
        return w.written == 50

    await _until(written)
    await w.stop()
    await task
    assert len(await db.list_bindings(now_ms=T0)) == 50


@pytest.mark.asyncio
async def test_full_buffers_drop_new_keys_only_and_warn(db: Store, caplog: pytest.LogCaptureFixture) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db, flush_at=10, max_pending=20)
    with caplog.at_level(logging.WARNING, logger="sipcore.store.writer"):
        w.submit_bindings([_b(tid, did, n) for n in range(1, 31)], [])
    assert (w.pending, w.dropped) == (20, 10)
    assert "dropping" in caplog.text
    w.submit_bindings([_b(tid, did, 1, cseq=9)], [])  # a key already pending is replaced, never dropped
    assert (w.pending, w.dropped) == (20, 10)
    with caplog.at_level(logging.WARNING, logger="sipcore.store.writer"):
        await w.flush()
    assert "10 operations were dropped" in caplog.text
    rows = await db.list_bindings(now_ms=T0)
    by_contact = {r.contact: r for r in rows}
    assert len(rows) == 20 and by_contact["<sip:a@192.0.2.1>"].cseq == 9
    assert "<sip:a@192.0.2.21>" not in by_contact, "the 21st new key was dropped"


@pytest.mark.asyncio
async def test_failed_flush_is_retried_and_newer_operations_win(
    db: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tid, did = await _setup(db)
    calls = _fail_first(db, monkeypatch, 1)
    w = BatchWriter(db)
    w.submit_bindings([_b(tid, did, 1, cseq=1), _b(tid, did, 2, cseq=1)], [])
    w.submit_mau([(tid, "2025-03", did, 50)])
    w.submit_gauge(tid, "2025-03", "connections.peak", 7, 1)
    with caplog.at_level(logging.ERROR, logger="sipcore.store.writer"), pytest.raises(StoreUnavailable):
        await w.flush()
    assert "will retry" in caplog.text
    assert w.pending == 4, "the failed batch is pending again"
    w.submit_bindings([_b(tid, did, 1, cseq=2)], [])  # newer than the failed batch
    w.submit_mau([(tid, "2025-03", did, 70)])
    w.submit_gauge(tid, "2025-03", "connections.peak", 5, 2)
    assert await w.flush() == 4 and calls[0] == 2
    rows = await db.list_bindings(now_ms=T0)
    assert [(r.contact, r.cseq) for r in rows] == [("<sip:a@192.0.2.1>", 2), ("<sip:a@192.0.2.2>", 1)]
    assert (await db.usage("example.com", "2025-03"))["connections.peak"] == 7
    async with db._conn().execute("SELECT first_ms FROM usage_mau") as cur:
        assert list(await cur.fetchall()) == [(50,)]


@pytest.mark.asyncio
async def test_run_keeps_retrying_until_the_database_is_back(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    tid, did = await _setup(db)
    calls = _fail_first(db, monkeypatch, 3)
    w = BatchWriter(db, 1, max_backoff_ms=20)
    task = asyncio.create_task(w.run())
    w.submit_bindings([_b(tid, did, 1)], [])

    async def written() -> bool:
        return w.written == 1

    await _until(written)
    await w.stop()
    await task
    assert calls[0] == 4 and len(await db.list_bindings(now_ms=T0)) == 1


@pytest.mark.asyncio
async def test_an_invalid_row_is_isolated_logged_and_the_rest_written(
    db: Store, caplog: pytest.LogCaptureFixture
) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db)
    w.submit_bindings([_b(tid, did, 1), _b(tid, did, 2, q_milli=5000), _b(tid, did, 3)], [])
    w.submit_mau([(tid, "2025-03", did, 1)])
    with caplog.at_level(logging.ERROR, logger="sipcore.store.writer"):
        assert await w.flush() == 3
    assert w.rejected == 1 and "rejected" in caplog.text and "192.0.2.2" in caplog.text
    assert [r.contact for r in await db.list_bindings(now_ms=T0)] == ["<sip:a@192.0.2.1>", "<sip:a@192.0.2.3>"]
    assert (await db.usage("example.com", "2025-03"))["mau"] == 1
    assert w.pending == 0


@pytest.mark.asyncio
async def test_stop_on_a_dead_database_says_what_is_lost(
    db: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tid, did = await _setup(db)
    _fail_first(db, monkeypatch, 1_000)
    w = BatchWriter(db, 1, max_backoff_ms=5)
    w.submit_bindings([_b(tid, did, 1), _b(tid, did, 2)], [])
    with caplog.at_level(logging.ERROR, logger="sipcore.store.writer"), pytest.raises(StoreUnavailable):
        await w.stop(retries=2)
    assert "stopping with 2 operations not written" in caplog.text


@pytest.mark.asyncio
async def test_operations_submitted_during_the_final_flush_are_written(
    db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db)
    real = db.apply_batch
    late = [_b(tid, did, 2)]

    async def apply_batch(*args: Sequence[Any]) -> None:
        if late:  # the packet path runs while the batch is being written
            w.submit_bindings([late.pop()], [])
        await real(*args)

    monkeypatch.setattr(db, "apply_batch", apply_batch)
    w.submit_bindings([_b(tid, did, 1)], [])
    await w.stop()
    assert w.pending == 0 and w.written == 2
    assert len(await db.list_bindings(now_ms=T0)) == 2


@pytest.mark.asyncio
async def test_unstorable_values_are_rejected_not_retried_forever(db: Store) -> None:
    tid, did = await _setup(db)
    w = BatchWriter(db)
    w.submit_bindings([_b(tid, did, 1), _b(tid, did, 2, path=(object(),)), _b(tid, did, 3, call_id={"x": 1})], [])
    assert await w.flush() == 1
    assert w.rejected == 2 and w.pending == 0
    assert [r.contact for r in await db.list_bindings(now_ms=T0)] == ["<sip:a@192.0.2.1>"]
