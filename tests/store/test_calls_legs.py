"""Call legs: idempotent upserts, out-of-order snapshots, crash recovery at the heartbeat,
counters, and the minute metrics of usage()."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sipcore.metering.legs import END_BYE_CALLER, END_CANCEL, END_RECOVERED, LegRecord, leg_id
from sipcore.store import ConstraintViolation, LegRow, Store

from .conftest import T0, FakeClock

MONTH = "2025-01"  # T0 is 2025-01-15
MIN = 60_000


def leg(tenant_id: int, endpoint_id: int, n: int = 1, kind: str = "device", **kw: object) -> LegRecord:
    """A leg set up at T0 + n s (not answered yet)."""
    call_id = f"call-{n}@example.com"
    direction = "originating"
    return LegRecord(
        leg_id(call_id, "ft", direction, kind, endpoint_id),  # type: ignore[arg-type]
        tenant_id, MONTH, kind, endpoint_id, direction, call_id, "ft", None,  # type: ignore[arg-type]
        "sip:alice@example.com", "sip:+15550100@example.com", T0 + n * 1000, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def answered(rec: LegRecord, at: int, video: bool = False, transcoding: bool = False) -> LegRecord:
    return dataclasses.replace(
        rec, answer_ms=at, to_tag="tt", final_status=200, segment_start_ms=at, segment_video=video,
        segment_transcoding=transcoding, codecs_local="PCMU", codecs_remote="PCMA" if transcoding else "PCMU",
    )  # fmt: skip


async def _setup(db: Store) -> tuple[int, int]:
    t = await db.add_tenant("example.com")
    d = await db.add_device("alice", "example.com", "pw")
    return t.id, d.id


async def _leg(db: Store, lid: str) -> LegRow:
    (row,) = [r for r in await db.list_legs("example.com", MONTH) if r.leg_id == lid]
    return row


@pytest.mark.asyncio
async def test_snapshots_of_one_leg_make_one_row(db: Store, clock: FakeClock) -> None:
    tid, did = await _setup(db)
    a = answered(leg(tid, did), T0 + 2000)
    await db.record_legs([a])
    row = await _leg(db, a.leg_id)
    assert (row.answer_ms, row.end_ms, row.voice_ms, row.segment_start_ms, row.final_status) == (
        T0 + 2000, None, 0, T0 + 2000, 200,
    )  # fmt: skip
    assert row.endpoint == "alice@example.com" and row.updated_ms == clock.now_ms
    b = a.with_media(T0 + 62_000, video=True, transcoding=False)  # 1 min of voice, then video
    await db.record_legs([b])
    c = b.closed(T0 + 92_000, END_BYE_CALLER)  # 30 s of video
    clock.advance(5)
    await db.record_legs([c])
    row = await _leg(db, a.leg_id)
    assert (row.voice_ms, row.video_ms, row.transcoding_ms, row.duration_ms) == (MIN, 30_000, 0, 90_000)
    assert (row.end_ms, row.end_reason, row.segment_start_ms, row.segment_video) == (
        T0 + 92_000, END_BYE_CALLER, None, True,
    )  # fmt: skip
    usage = await db.usage("example.com", MONTH)
    assert (usage["voice.ms"], usage["video.ms"], usage["legs"]) == (MIN, 30_000, 1)
    assert (usage["voice.minutes"], usage["video.minutes"], usage["transcoding.minutes"]) == ("1.000", "0.500", "0.000")


@pytest.mark.asyncio
async def test_an_ended_row_never_changes(db: Store, clock: FakeClock) -> None:
    tid, did = await _setup(db)
    a = answered(leg(tid, did), T0 + 2000)
    end = a.closed(T0 + 62_000, END_BYE_CALLER)
    await db.record_legs([a, end])
    before = await _leg(db, a.leg_id)
    clock.advance(1000)
    # A replay of everything, a late snapshot, and a different ending: none counts.
    await db.record_legs([a, end, a.with_media(T0 + 70_000, True, True), a.closed(T0 + 600_000, END_CANCEL)])
    assert await _leg(db, a.leg_id) == before
    assert (await db.usage("example.com", MONTH))["voice.ms"] == MIN


@pytest.mark.asyncio
async def test_an_older_snapshot_arriving_late_is_ignored(db: Store) -> None:
    tid, did = await _setup(db)
    a = answered(leg(tid, did), T0 + 2000)
    b = a.with_media(T0 + 32_000, video=True, transcoding=True)
    await db.record_legs([b])
    await db.record_legs([a])  # older: the answer snapshot, after the media change
    row = await _leg(db, a.leg_id)
    assert (row.voice_ms, row.segment_start_ms, row.segment_video, row.segment_transcoding) == (
        30_000, T0 + 32_000, True, True,
    )  # fmt: skip
    c = b.with_media(T0 + 32_000, video=False, transcoding=False)  # same moment: the later state wins
    await db.record_legs([c])
    assert (await _leg(db, a.leg_id)).segment_video is False


@pytest.mark.asyncio
async def test_unanswered_attempt_is_one_ended_row_with_no_time(db: Store) -> None:
    tid, did = await _setup(db)
    rec = leg(tid, did).closed(T0 + 5000, END_CANCEL, 487)
    await db.record_legs([rec, rec])
    row = await _leg(db, rec.leg_id)
    assert (row.answer_ms, row.end_ms, row.final_status, row.duration_ms) == (None, T0 + 5000, 487, 0)
    usage = await db.usage("example.com", MONTH)
    assert usage["legs"] == 1 and usage["voice.minutes"] == "0.000"


@pytest.mark.asyncio
async def test_list_legs_names_endpoints_and_scopes_by_tenant_and_month(db: Store) -> None:
    tid, did = await _setup(db)
    other = await db.add_tenant("example.org")
    tr = await db.add_trunk("carrier", "example.com", "192.0.2.1", 5060)
    bob = await db.add_device("bob", "example.com", "pw")
    dev = leg(tid, did, 1).closed(T0 + 9000, END_CANCEL, 486)
    trunk = dataclasses.replace(leg(tid, tr.id, 2, kind="trunk"), transit=True).closed(T0 + 9000, END_CANCEL, 486)
    gone = leg(tid, bob.id, 3).closed(T0 + 9000, END_CANCEL, 486)
    feb = dataclasses.replace(leg(tid, did, 4), month="2025-02").closed(T0 + 9000, END_CANCEL, 486)
    elsewhere = leg(other.id, 999, 5).closed(T0 + 9000, END_CANCEL, 486)
    await db.record_legs([trunk, dev, gone, feb, elsewhere])
    await db.remove_device("bob", "example.com")
    rows = await db.list_legs("example.com", MONTH)
    assert [(r.endpoint_kind, r.endpoint, r.transit) for r in rows] == [
        ("device", "alice@example.com", False),
        ("trunk", "carrier", True),
        ("device", f"device#{bob.id}", False),
    ], "ordered by setup; a removed device keeps its legs"
    assert [r.leg_id for r in await db.list_legs("example.com", "2025-02")] == [feb.leg_id]
    assert (await db.usage("example.org", MONTH))["legs"] == 1


@pytest.mark.asyncio
async def test_minutes_are_exact_decimal_strings(db: Store) -> None:
    tid, did = await _setup(db)
    recs = []
    for n, (ms, video, trans) in enumerate([(750_000, False, False), (1, False, True), (90_500, True, True)], 1):
        a = answered(leg(tid, did, n), T0 + 10_000, video, trans)
        recs.append(a.closed(T0 + 10_000 + ms, END_BYE_CALLER))
    await db.record_legs(recs)
    u = await db.usage("example.com", MONTH)
    assert (u["voice.ms"], u["video.ms"], u["transcoding.ms"]) == (750_001, 90_500, 90_501)
    assert (u["voice.minutes"], u["video.minutes"], u["transcoding.minutes"]) == ("12.500", "1.508", "1.508")
    assert all(isinstance(u[k], str) for k in ("voice.minutes", "video.minutes", "transcoding.minutes"))


@pytest.mark.asyncio
async def test_invalid_legs_are_refused(db: Store) -> None:
    tid, did = await _setup(db)
    with pytest.raises(ConstraintViolation):
        await db.record_legs([dataclasses.replace(leg(tid, did), month="January")])
    with pytest.raises(ConstraintViolation):
        await db.record_legs([dataclasses.replace(leg(tid, did), endpoint_kind="phone")])  # type: ignore[arg-type]
    with pytest.raises(ConstraintViolation):
        await db.record_legs([dataclasses.replace(leg(tid, did), voice_ms=-1)])
    with pytest.raises(ConstraintViolation):
        await db.record_legs([object()])  # type: ignore[list-item]
    assert await db.list_legs("example.com", MONTH) == []


# -- heartbeat and recovery ----------------------------------------------------------


@pytest.mark.asyncio
async def test_recovery_closes_open_legs_at_the_last_heartbeat(db_path: Path, clock: FakeClock) -> None:
    store = await Store.open(db_path, clock=clock)
    tid, did = await _setup(store)
    voice = answered(leg(tid, did, 1), T0 + 1000, transcoding=True)
    video = answered(leg(tid, did, 2), T0 + 2000).with_media(T0 + 12_000, video=True, transcoding=False)
    ringing = leg(tid, did, 3)  # open and never answered (not what the proxy sends, but it must not count)
    done = answered(leg(tid, did, 4), T0 + 4000).closed(T0 + 5000, END_BYE_CALLER)
    await store.record_legs([voice, video, ringing, done])
    assert await store.last_heartbeat() == 0
    await store.stamp_heartbeat(T0 + 61_000)
    await store.stamp_heartbeat(T0 + 62_000)
    await store.close()  # kill -9: the legs stay open in the table

    clock.now_ms = T0 + 3_600_000  # restart an hour later
    store = await Store.open(db_path, clock=clock)
    try:
        assert await store.last_heartbeat() == T0 + 62_000
        assert await store.recover_open_legs() == 3
        v, vid, r, d = [await _leg(store, x.leg_id) for x in (voice, video, ringing, done)]
        assert (v.end_ms, v.end_reason, v.voice_ms, v.video_ms, v.transcoding_ms, v.segment_start_ms) == (
            T0 + 62_000, END_RECOVERED, 61_000, 0, 61_000, None,
        ), "credited up to the heartbeat, not the restart"  # fmt: skip
        assert (vid.voice_ms, vid.video_ms, vid.transcoding_ms, vid.end_ms) == (10_000, 50_000, 0, T0 + 62_000)
        assert (r.end_ms, r.end_reason, r.duration_ms, r.answer_ms) == (T0 + 62_000, END_RECOVERED, 0, None)
        assert d.end_reason == END_BYE_CALLER and d.duration_ms == 1000, "an ended leg is untouched"
        assert v.updated_ms == clock.now_ms
        before = await store.list_legs("example.com", MONTH)
        clock.advance(1000)
        await store.stamp_heartbeat(T0 + 9_000_000)
        assert await store.recover_open_legs() == 0, "idempotent"
        await store.record_legs([voice.closed(T0 + 3_000_000, END_BYE_CALLER)])  # the proxy's late snapshot
        assert await store.list_legs("example.com", MONTH) == before
        u = await store.usage("example.com", MONTH)
        assert (u["voice.ms"], u["video.ms"], u["transcoding.ms"]) == (61_000 + 10_000 + 1000, 50_000, 61_000)
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_recovery_never_closes_before_the_last_snapshot(db: Store) -> None:
    tid, did = await _setup(db)
    await db.stamp_heartbeat(T0 + 10_000)
    # Answered, then a media change after the last heartbeat: known alive at T0 + 30 s.
    a = answered(leg(tid, did, 1), T0 + 20_000).with_media(T0 + 30_000, video=True, transcoding=True)
    # Answered after the last heartbeat: closed at its answer with no time.
    b = answered(leg(tid, did, 2), T0 + 40_000)
    await db.record_legs([a, b])
    assert await db.recover_open_legs() == 2
    ra, rb = await _leg(db, a.leg_id), await _leg(db, b.leg_id)
    assert (ra.end_ms, ra.voice_ms, ra.video_ms, ra.transcoding_ms) == (T0 + 30_000, 10_000, 0, 0)
    assert (rb.end_ms, rb.duration_ms) == (T0 + 40_000, 0)
    assert all(r.end_ms is not None and r.end_ms >= (r.answer_ms or r.setup_ms) for r in (ra, rb))


@pytest.mark.asyncio
async def test_recovery_without_any_heartbeat_credits_nothing_open(db: Store) -> None:
    tid, did = await _setup(db)
    a = answered(leg(tid, did), T0 + 1000).with_media(T0 + 31_000, video=False, transcoding=True)
    await db.record_legs([a])
    assert await db.recover_open_legs() == 1
    row = await _leg(db, a.leg_id)
    assert (row.end_ms, row.voice_ms, row.transcoding_ms) == (T0 + 31_000, 30_000, 0)
    with pytest.raises(ConstraintViolation):
        await db.stamp_heartbeat(-1)


# -- counters ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_counters_add_up_per_tenant_month_and_metric(db: Store) -> None:
    tid, _ = await _setup(db)
    await db.record_counters([(tid, MONTH, "messages", 2), (tid, MONTH, "signaling.bytes_out", 1500)])
    await db.record_counters([(tid, MONTH, "messages", 3), (tid, "2025-02", "messages", 7)])
    u = await db.usage("example.com", MONTH)
    assert (u["messages"], u["signaling.bytes_out"]) == (5, 1500)
    assert (await db.usage("example.com", "2025-02"))["signaling.bytes_out"] == 0
    for bad in [(tid, MONTH, "messages", -1), (tid, MONTH, "messages", 1.5), (tid, MONTH, "", 1), (tid, "Jan", "x", 1)]:
        with pytest.raises(ConstraintViolation):
            await db.record_counters([(tid, MONTH, "messages", 1), bad])  # type: ignore[list-item]
    assert (await db.usage("example.com", MONTH))["messages"] == 5, "a refused call adds nothing"
