"""The store's call side (EDGE): legs, DIDs, counters, heartbeat and crash recovery.

Mixed into :class:`~sipcore.store.Store`; tables from ``migrations/0002_calls.sql``;
trunks come from :class:`~sipcore.store.trunks.TrunksStore`, its base.

* DIDs are provisioning: every change bumps ``meta.provisioning_serial``
  (the server reloads its Directory when it moves).
* Legs are upserted from the proxy's :class:`~sipcore.metering.legs.LegRecord`
  snapshots by ``leg_id``; a row whose ``end_ms`` is set is never changed
  again, and a snapshot older than the stored one (less progress) is ignored,
  so replays and reordering cannot count a second twice.
* Counters (``messages``, ``signaling.bytes_out``) are increments applied in
  the batch's transaction: a batch commits them all or none.
* Heartbeat and recovery: the running server stamps ``meta.heartbeat_ms``;
  at the next start, legs left open are closed at the last moment the server
  knew them alive (METERING.md "Call legs"), never later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import aiosqlite

from sipcore.metering.legs import END_RECOVERED, LegRecord
from sipcore.proxy.directory import DidInfo
from sipcore.store.credentials import check_domain, check_username
from sipcore.store.errors import AlreadyExists, ConstraintViolation, InvalidValue, NotFound
from sipcore.store.months import check_month
from sipcore.store.trunks import (  # noqa: F401 (re-exported: the CLI, the writer and tests import them here)
    REGISTRATION_STATES,
    Trunk,
    TrunkRegistration,
    TrunksStore,
    check_codecs,
    check_host,
    check_inbound,
    check_port,
    check_prefix,
    check_priority,
    check_trunk_name,
    count_peak,
    format_address,
    parse_address,
)

CounterRow = tuple[int, str, str, int]
"""(tenant_id, month 'YYYY-MM', metric, delta >= 0): an increment of a counted metric."""

METRIC_TRUNKS_PEAK = "trunks.provisioned.peak"
METRIC_MESSAGES = "messages"
METRIC_BYTES_OUT = "signaling.bytes_out"

_DID = re.compile(r"\+?[0-9]{1,32}")


# -- validation (PURE; also the CLI's argument types) ---------------------------


def check_did_number(number: str) -> str:
    if not isinstance(number, str) or not _DID.fullmatch(number):
        raise InvalidValue(f"number {number!r}: expected digits, optionally after a '+'")
    return number


def minutes(ms: int) -> str:
    """Milliseconds as minutes with 3 decimals ("12.500"), half-up; exact Decimal arithmetic."""
    return str((Decimal(ms) / 60_000).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))


# -- rows -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Did:
    number: str
    tenant_id: int
    domain: str
    device_id: int
    username: str
    trunk_id: int | None
    trunk_name: str | None

    @property
    def aor(self) -> str:
        return f"{self.username}@{self.domain}"


@dataclass(frozen=True, slots=True)
class LegRow:
    """One stored leg, with its endpoint's name (device ``user@domain`` or trunk name)."""

    leg_id: str
    tenant_id: int
    month: str
    endpoint_kind: str
    endpoint_id: int
    direction: str
    transit: bool
    call_id: str
    from_tag: str
    to_tag: str | None
    caller: str
    callee: str
    setup_ms: int
    answer_ms: int | None
    end_ms: int | None
    end_reason: str | None
    final_status: int | None
    voice_ms: int
    video_ms: int
    transcoding_ms: int
    segment_start_ms: int | None
    segment_video: bool
    segment_transcoding: bool
    codecs_local: str
    codecs_remote: str
    updated_ms: int
    endpoint: str

    @property
    def duration_ms(self) -> int:
        """Answered time (closed segments; the whole call once ended)."""
        return self.voice_ms + self.video_ms


# -- SQL ------------------------------------------------------------------------

_LEG_COLS = (
    "leg_id", "tenant_id", "month", "endpoint_kind", "endpoint_id", "direction", "transit", "call_id", "from_tag",
    "to_tag", "caller", "callee", "setup_ms", "answer_ms", "end_ms", "end_reason", "final_status", "voice_ms",
    "video_ms", "transcoding_ms", "segment_start_ms", "segment_video", "segment_transcoding", "codecs_local",
    "codecs_remote", "updated_ms",
)  # fmt: skip
_BOOL_LEG_COLS = {"transit", "segment_video", "segment_transcoding"}


def _progress(t: str) -> str:
    """SQL: how far a snapshot got (latest known-alive moment, then answered time so far)."""
    return f"(coalesce({t}.segment_start_ms, {t}.answer_ms, {t}.setup_ms), {t}.voice_ms + {t}.video_ms)"


# An ended row is final; a not-ended snapshot never replaces one that got further.
_UPSERT_LEG = (
    f"INSERT INTO legs ({', '.join(_LEG_COLS)}) VALUES ({', '.join('?' * len(_LEG_COLS))}) "
    "ON CONFLICT (leg_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _LEG_COLS[1:])
    + f" WHERE legs.end_ms IS NULL AND (excluded.end_ms IS NOT NULL OR {_progress('excluded')} >= {_progress('legs')})"
)
_UPSERT_COUNTER = (
    "INSERT INTO usage_counter (tenant_id, month, metric, value, updated_ms) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (tenant_id, month, metric) DO UPDATE SET value = usage_counter.value + excluded.value, "
    "updated_ms = excluded.updated_ms"
)

# Recovery: close at the last moment the leg is known alive; credit the open segment up to it.
_RECOVER_END = "max(coalesce(answer_ms, setup_ms), coalesce(segment_start_ms, 0), :hb)"
_OPEN_SPAN = f"CASE WHEN answer_ms IS NOT NULL AND segment_start_ms IS NOT NULL THEN max(0, {_RECOVER_END} - segment_start_ms) ELSE 0 END"  # noqa: E501
_RECOVER = (
    f"UPDATE legs SET end_ms = {_RECOVER_END}, end_reason = :reason, "
    f"voice_ms = voice_ms + CASE WHEN segment_video = 0 THEN {_OPEN_SPAN} ELSE 0 END, "
    f"video_ms = video_ms + CASE WHEN segment_video = 1 THEN {_OPEN_SPAN} ELSE 0 END, "
    f"transcoding_ms = transcoding_ms + CASE WHEN segment_transcoding = 1 THEN {_OPEN_SPAN} ELSE 0 END, "
    "segment_start_ms = NULL, updated_ms = :now WHERE end_ms IS NULL"
)

_DID_SELECT = (
    "SELECT x.number, x.tenant_id, t.domain, x.device_id, d.username, x.trunk_id, tr.name FROM dids x"
    " JOIN tenants t ON t.id = x.tenant_id JOIN devices d ON d.id = x.device_id"
    " LEFT JOIN trunks tr ON tr.id = x.trunk_id"
)
_LEG_ENDPOINT = (
    "coalesce(CASE l.endpoint_kind"
    " WHEN 'device' THEN (SELECT d.username || '@' || t.domain FROM devices d JOIN tenants t ON t.id = d.tenant_id"
    " WHERE d.id = l.endpoint_id)"
    " ELSE (SELECT name FROM trunks WHERE id = l.endpoint_id) END, l.endpoint_kind || '#' || l.endpoint_id)"
)


async def _one(db: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
    async with db.execute(sql, params) as cur:
        return await cur.fetchone()


async def _all(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    async with db.execute(sql, params) as cur:
        return list(await cur.fetchall())


def _did(r: Any) -> Did:
    return Did(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


def _leg_params(rec: LegRecord, now: int) -> tuple[Any, ...]:
    return tuple(
        now if c == "updated_ms" else int(getattr(rec, c)) if c in _BOOL_LEG_COLS else getattr(rec, c)
        for c in _LEG_COLS
    )


def _leg_row(r: Any) -> LegRow:
    vals = list(r)
    for i, c in enumerate(_LEG_COLS):
        if c in _BOOL_LEG_COLS:
            vals[i] = bool(vals[i])
    return LegRow(*vals)


def check_counter(row: CounterRow) -> CounterRow:
    """A counter increment as the store takes it; :class:`ConstraintViolation` otherwise."""
    try:
        tenant_id, month, metric, delta = row
    except (TypeError, ValueError) as e:
        raise ConstraintViolation(f"counter {row!r}: expected (tenant_id, month, metric, delta)") from e
    if isinstance(delta, bool) or not isinstance(delta, int) or delta < 0:
        raise ConstraintViolation(f"counter {row!r}: the delta must be an integer >= 0")
    if not isinstance(metric, str) or not metric:
        raise ConstraintViolation(f"counter {row!r}: the metric must be a name")
    return row


class CallsStore(TrunksStore):
    """Legs and DIDs, over the trunks (see the module docstring)."""

    # -- DIDs ---------------------------------------------------------------

    async def add_did(self, number: str, aor: str, trunk_name: str | None = None) -> Did:
        """Route inbound calls to ``number`` to the device ``user@domain``; from
        ``trunk_name`` only (a trunk of the same tenant), or from any trunk of it."""
        number = check_did_number(number)
        user, at, domain = aor.rpartition("@") if isinstance(aor, str) else ("", "", "")
        if not at:
            raise InvalidValue(f"{aor!r}: expected USER@DOMAIN")
        user, domain = check_username(user), check_domain(domain)
        async with self._tx() as db:
            dev = await _one(
                db,
                "SELECT d.id, d.tenant_id FROM devices d JOIN tenants t ON t.id = d.tenant_id"
                " WHERE t.domain = ? AND d.username = ?",
                (domain, user),
            )
            if dev is None:
                raise NotFound(f"no device {user}@{domain}")
            trunk_id = None
            if trunk_name is not None:
                tr = await self._trunk_in(db, trunk_name)
                if tr.tenant_id != dev[1]:
                    raise InvalidValue(f"trunk {tr.name} belongs to {tr.domain}, not to {domain}")
                trunk_id = tr.id
            if await _one(db, "SELECT 1 FROM dids WHERE number = ?", (number,)):
                raise AlreadyExists(f"number {number} already exists")
            await db.execute(
                "INSERT INTO dids (number, tenant_id, device_id, trunk_id) VALUES (?, ?, ?, ?)",
                (number, dev[1], dev[0], trunk_id),
            )
            await self._bump_serial(db)
            return _did(await _one(db, _DID_SELECT + " WHERE x.number = ?", (number,)))

    async def list_dids(self, tenant_domain: str | None = None) -> list[Did]:
        async with self._tx(write=False) as db:
            if tenant_domain is None:
                rows = await _all(db, _DID_SELECT + " ORDER BY t.domain, x.number")
            else:
                tenant_id, _ = await self._tenant_row(db, tenant_domain)
                rows = await _all(db, _DID_SELECT + " WHERE x.tenant_id = ? ORDER BY x.number", (tenant_id,))
        return [_did(r) for r in rows]

    async def remove_did(self, number: str) -> None:
        async with self._tx() as db:
            cur = await db.execute("DELETE FROM dids WHERE number = ?", (number,))
            if cur.rowcount == 0:
                raise NotFound(f"no number {number}")
            await self._bump_serial(db)

    async def load_dids(self) -> list[DidInfo]:
        """Every DID, for the server's Directory."""
        async with self._tx(write=False) as db:
            rows = await _all(db, "SELECT number, tenant_id, device_id, trunk_id FROM dids ORDER BY number")
        return [DidInfo(r[0], r[1], r[2], r[3]) for r in rows]

    # -- legs and counters (written by the batch) ----------------------------

    async def apply_legs(self, db: aiosqlite.Connection, records: Iterable[LegRecord]) -> None:
        """Upsert leg snapshots inside the caller's transaction (see the module docstring)."""
        now = self.now_ms()
        try:
            params = [_leg_params(r, now) for r in records]
        except (TypeError, ValueError, AttributeError) as e:
            raise ConstraintViolation(f"{self.path}: a leg cannot be stored: {e}") from e
        if params:
            await db.executemany(_UPSERT_LEG, params)

    async def apply_counters(self, db: aiosqlite.Connection, rows: Iterable[CounterRow]) -> None:
        """Add counter increments inside the caller's transaction."""
        now = self.now_ms()
        params = [(t, m, metric, delta, now) for t, m, metric, delta in map(check_counter, rows)]
        if params:
            await db.executemany(_UPSERT_COUNTER, params)

    async def record_legs(self, records: Iterable[LegRecord]) -> None:
        """Upsert leg snapshots in one transaction of their own (tests, tools; the server uses the BatchWriter)."""
        records = list(records)
        async with self._tx() as db:
            await self.apply_legs(db, records)

    async def record_counters(self, rows: Iterable[CounterRow]) -> None:
        """Add counter increments in one transaction of their own."""
        rows = [check_counter(r) for r in rows]
        async with self._tx() as db:
            await self.apply_counters(db, rows)

    async def list_legs(self, tenant_domain: str, month: str) -> list[LegRow]:
        """A tenant's legs of a month (the month of the answer, or of the setup when unanswered)."""
        check_month(month)
        cols = ", ".join(f"l.{c}" for c in _LEG_COLS)
        async with self._tx(write=False) as db:
            tenant_id, _ = await self._tenant_row(db, tenant_domain)
            rows = await _all(
                db,
                f"SELECT {cols}, {_LEG_ENDPOINT} FROM legs l WHERE l.tenant_id = ? AND l.month = ?"
                " ORDER BY l.setup_ms, l.leg_id",
                (tenant_id, month),
            )
        return [_leg_row(r) for r in rows]

    async def _calls_usage(
        self, db: aiosqlite.Connection, tenant_id: int, month: str, start: int, end: int
    ) -> dict[str, int | str]:
        """The call-side metrics of :meth:`Store.usage`, inside its read transaction."""
        legs = await _one(
            db,
            "SELECT count(*), coalesce(sum(voice_ms), 0), coalesce(sum(video_ms), 0), coalesce(sum(transcoding_ms), 0)"
            " FROM legs WHERE tenant_id = ? AND month = ?",
            (tenant_id, month),
        )
        counters = await _all(
            db, "SELECT metric, value FROM usage_counter WHERE tenant_id = ? AND month = ?", (tenant_id, month)
        )
        n, voice, video, trans = (int(x) for x in legs)
        out: dict[str, int | str] = {
            METRIC_TRUNKS_PEAK: await count_peak(db, "trunk_count_log", tenant_id, start, end),
            "voice.minutes": minutes(voice),
            "video.minutes": minutes(video),
            "transcoding.minutes": minutes(trans),
            "voice.ms": voice,
            "video.ms": video,
            "transcoding.ms": trans,
            "legs": n,
            METRIC_MESSAGES: 0,
            METRIC_BYTES_OUT: 0,
        }
        out.update((str(m), int(v)) for m, v in counters)
        return out

    # -- heartbeat and crash recovery ----------------------------------------

    async def stamp_heartbeat(self, now_ms: int | None = None) -> None:
        """Record that the server is alive now, in a transaction of its own.

        A running server should rather use ``BatchWriter.submit_heartbeat``:
        this one can overtake an ended leg snapshot still waiting in the
        writer, and a crash right then would recover that leg past its end."""
        now = self.now_ms() if now_ms is None else now_ms
        async with self._tx() as db:
            await self.apply_heartbeat(db, now)

    async def apply_heartbeat(self, db: aiosqlite.Connection, now_ms: int) -> None:
        """Stamp the heartbeat inside the caller's transaction."""
        if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
            raise ConstraintViolation(f"heartbeat {now_ms!r}: expected ms UTC")
        await db.execute(
            "INSERT INTO meta (key, value) VALUES ('heartbeat_ms', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (now_ms,),
        )

    async def last_heartbeat(self) -> int:
        """The last stamped heartbeat (0: never)."""
        async with self._tx(write=False) as db:
            row = await _one(db, "SELECT value FROM meta WHERE key = 'heartbeat_ms'")
        return int(row[0]) if row else 0

    async def recover_open_legs(self) -> int:
        """Close every leg left open by a crash; returns how many.

        Call at start-up, before the first :meth:`stamp_heartbeat` of the run.
        A leg is closed at the last moment it is known alive: the last
        heartbeat, or its own latest snapshot (answer, media change) when
        that is later; never the restart time, so its duration cannot exceed
        the real call.  The open segment is credited up to then (voice or
        video, plus transcoding); an unanswered leg gets no time.  The end
        reason is ``recovered``.  Idempotent: a second call finds nothing open.
        """
        now = self.now_ms()
        async with self._tx() as db:
            row = await _one(db, "SELECT value FROM meta WHERE key = 'heartbeat_ms'")
            hb = int(row[0]) if row else 0
            cur = await db.execute(_RECOVER, {"hb": hb, "reason": END_RECOVERED, "now": now})
            return int(cur.rowcount)
