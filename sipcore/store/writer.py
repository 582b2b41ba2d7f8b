"""BatchWriter (EDGE): registrations and usage reach the disk in batches, off the packet path.

The server's packet path calls ``submit_*``: plain dict writes, no await, no
I/O.  A task running :meth:`BatchWriter.run` commits what accumulated every
``flush_interval_ms`` in one transaction (:meth:`Store.apply_batch`).

Coalescing: pending operations are keyed by what they write, so a batch holds
at most one operation per key: the last upsert or delete of an (aor, contact)
wins; a device's MAU row keeps the earliest first_ms; a gauge keeps its max;
a leg keeps its newest snapshot, except that an ended snapshot is final (as
in the table: the first ended snapshot of a leg is the one that counts); a
counter's increments are summed; a trunk's registration state keeps the
latest; the heartbeat keeps the latest stamp and is committed with (never
before) the snapshots submitted ahead of it.
A REGISTER refresh storm therefore costs one row per binding per interval.

Bounds: past ``flush_at`` distinct pending keys the next flush starts at once;
at ``max_pending`` (counting the batch being written) an operation on a *new*
key is dropped, counted in :attr:`dropped` and warned about; this is the last
resort when the disk cannot keep up.  An operation on a key already pending
replaces it in place and is never dropped.

Failures: a batch that fails to commit is put back under the newer pending
operations and retried with exponential backoff; each failure is logged.
A batch the database refuses as invalid (a constraint: a caller's bug) is
retried one operation at a time so that one bad row cannot block the rest;
the rejected operations are logged one by one and counted in :attr:`rejected`.
Counter increments are the one write that is not idempotent: a batch is one
transaction (all or nothing), and one written alone leaves the batch as soon
as it commits, so a retry never adds an increment twice.  Trunk
registration states are written first, in a transaction of their own: they
are idempotent (the latest state per trunk), so the retry of a batch whose
second transaction failed only writes them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sipcore.metering.legs import LegRecord
from sipcore.store.calls import CounterRow, TrunkRegistration
from sipcore.store.errors import ConstraintViolation, StoreClosed, StoreError
from sipcore.store.models import BindingRow
from sipcore.store.store import GaugeRow, MauRow, Store

log = logging.getLogger(__name__)

BindingKey = tuple[str, str]
MauKey = tuple[int, str, int]
GaugeKey = tuple[int, str, str]
CounterKey = tuple[int, str, str]


def _progress(r: LegRecord) -> tuple[int, int]:
    """How far a snapshot got: its latest known-alive moment, then its answered time so far."""
    if r.segment_start_ms is not None:
        at = r.segment_start_ms
    else:
        at = r.answer_ms if r.answer_ms is not None else r.setup_ms
    return at, r.voice_ms + r.video_ms


def _supersedes(new: LegRecord, old: LegRecord) -> bool:
    """Whether snapshot `new` (submitted after `old`) replaces it; the table's upsert rule."""
    if old.end_ms is not None:
        return False  # ended is final
    return new.end_ms is not None or _progress(new) >= _progress(old)


@dataclass
class _Batch:
    bindings: dict[BindingKey, BindingRow | None] = field(default_factory=dict)
    """(aor, contact) -> row to upsert, or None to delete."""
    mau: dict[MauKey, int] = field(default_factory=dict)
    """(tenant_id, month, device_id) -> first_ms (the earliest)."""
    gauges: dict[GaugeKey, tuple[int, int]] = field(default_factory=dict)
    """(tenant_id, month, metric) -> (value, at_ms) (the max)."""
    legs: dict[str, LegRecord] = field(default_factory=dict)
    """leg_id -> the snapshot to upsert."""
    counters: dict[CounterKey, int] = field(default_factory=dict)
    """(tenant_id, month, metric) -> the sum of the increments."""
    heartbeat_ms: int | None = None
    """The latest liveness stamp, committed with (after) everything submitted before it."""
    trunk_registrations: dict[int, TrunkRegistration] = field(default_factory=dict)
    """trunk_id -> its latest registration state."""

    def __len__(self) -> int:
        n = len(self.bindings) + len(self.mau) + len(self.gauges) + len(self.legs) + len(self.counters)
        return n + (self.heartbeat_ms is not None) + len(self.trunk_registrations)

    def merge_older(self, older: _Batch) -> None:
        """Put back a batch that failed: it is older than everything in self."""
        for bk, b in older.bindings.items():
            self.bindings.setdefault(bk, b)
        for mk, first in older.mau.items():
            self.mau[mk] = min(first, self.mau.get(mk, first))
        for gk, g in older.gauges.items():
            cur = self.gauges.get(gk)
            if cur is None or g[0] > cur[0]:
                self.gauges[gk] = g
        for lk, leg in older.legs.items():
            newer = self.legs.get(lk)
            if newer is None or not _supersedes(newer, leg):
                self.legs[lk] = leg
        for ck, delta in older.counters.items():
            self.counters[ck] = self.counters.get(ck, 0) + delta
        if self.heartbeat_ms is None:
            self.heartbeat_ms = older.heartbeat_ms
        for tk, reg in older.trunk_registrations.items():
            self.trunk_registrations.setdefault(tk, reg)

    def discard(self, other: _Batch) -> None:
        for k in other.bindings:
            self.bindings.pop(k, None)
        for m in other.mau:
            self.mau.pop(m, None)
        for g in other.gauges:
            self.gauges.pop(g, None)
        for lk in other.legs:
            self.legs.pop(lk, None)
        for ck in other.counters:
            self.counters.pop(ck, None)
        if other.heartbeat_ms is not None:
            self.heartbeat_ms = None
        for tk in other.trunk_registrations:
            self.trunk_registrations.pop(tk, None)

    def split(self) -> list[_Batch]:
        """One batch per operation (to isolate a row the database refuses)."""
        out = [_Batch(bindings={k: v}) for k, v in self.bindings.items()]
        out += [_Batch(mau={k: v}) for k, v in self.mau.items()]
        out += [_Batch(gauges={k: v}) for k, v in self.gauges.items()]
        out += [_Batch(legs={k: v}) for k, v in self.legs.items()]
        out += [_Batch(counters={k: v}) for k, v in self.counters.items()]
        out += [_Batch(trunk_registrations={k: v}) for k, v in self.trunk_registrations.items()]
        # Last: a committed heartbeat must imply the leg snapshots before it are committed.
        return out + ([_Batch(heartbeat_ms=self.heartbeat_ms)] if self.heartbeat_ms is not None else [])

    async def write(self, store: Store) -> None:
        if self.trunk_registrations:  # first, on their own: see the module docstring
            await store.record_trunk_registrations(list(self.trunk_registrations.values()))
            if len(self) == len(self.trunk_registrations):
                return
        upserts = [b for b in self.bindings.values() if b is not None]
        deletes = [k for k, b in self.bindings.items() if b is None]
        mau: list[MauRow] = [(t, m, d, first) for (t, m, d), first in self.mau.items()]
        gauges: list[GaugeRow] = [(t, m, name, v, at) for (t, m, name), (v, at) in self.gauges.items()]
        counters: list[CounterRow] = [(t, m, name, d) for (t, m, name), d in self.counters.items()]
        if self.heartbeat_ms is not None:
            legs = list(self.legs.values())
            await store.apply_batch(upserts, deletes, mau, gauges, legs, counters, self.heartbeat_ms)
        elif self.legs or counters:
            await store.apply_batch(upserts, deletes, mau, gauges, list(self.legs.values()), counters)
        else:
            await store.apply_batch(upserts, deletes, mau, gauges)


class BatchWriter:
    """Buffers registrations and usage in memory and commits them in batches."""

    def __init__(
        self,
        store: Store,
        flush_interval_ms: int = 100,
        *,
        flush_at: int = 10_000,
        max_pending: int = 100_000,
        max_backoff_ms: int = 5_000,
    ) -> None:
        self._store = store
        self.flush_interval_ms = max(1, flush_interval_ms)
        self.flush_at = flush_at
        self.max_pending = max(max_pending, flush_at)
        self.max_backoff_ms = max_backoff_ms
        self._pending = _Batch()
        self._inflight = 0
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._failures = 0
        self._stopping = False
        self._stopped = False
        self._episode_drops = 0
        self.dropped = 0
        """Operations refused because the buffers were full (last resort)."""
        self.rejected = 0
        """Operations the database refused as invalid (logged one by one)."""
        self.written = 0
        """Operations committed."""

    @property
    def pending(self) -> int:
        """Distinct keys waiting, including the batch being written."""
        return len(self._pending) + self._inflight

    # -- the packet path: no await, O(1) per operation ----------------------

    def _admit(self, present: bool) -> bool:
        if self._stopped:
            raise StoreClosed("the batch writer is stopped")
        if present:
            return True
        n = self.pending
        if n >= self.max_pending:
            if not self._episode_drops:  # one warning when dropping starts, one with the total when it ends
                log.warning("store writer: %d operations pending; dropping new ones until a flush succeeds", n)
            self._episode_drops += 1
            self.dropped += 1
            return False
        if n + 1 >= self.flush_at and self._failures == 0:
            self._wake.set()
        return True

    def submit_bindings(self, upserts: Iterable[BindingRow], deletes: Iterable[BindingKey] = ()) -> None:
        """Queue binding upserts and deletes by (aor, contact); the last per key wins
        (within one call the deletes come first)."""
        pend = self._pending.bindings
        for key in deletes:
            if self._admit(key in pend):
                pend[key] = None
        for b in upserts:
            key = (b.aor, b.contact)
            if self._admit(key in pend):
                pend[key] = b

    def submit_mau(self, rows: Iterable[MauRow]) -> None:
        """Queue (tenant_id, month, device_id, first_ms): "this device authenticated this month";
        idempotent, the earliest first_ms is kept."""
        pend = self._pending.mau
        for tenant_id, month, device_id, first_ms in rows:
            key = (tenant_id, month, device_id)
            old = pend.get(key)
            if self._admit(old is not None):
                pend[key] = first_ms if old is None else min(old, first_ms)

    def submit_gauge(self, tenant_id: int, month: str, metric: str, value: int, at_ms: int) -> None:
        """Queue one gauge reading; only the highest of a batch is written, and only if above the stored one."""
        key = (tenant_id, month, metric)
        pend = self._pending.gauges
        old = pend.get(key)
        if self._admit(old is not None) and (old is None or value > old[0]):
            pend[key] = (value, at_ms)

    def submit_gauges(self, rows: Iterable[GaugeRow]) -> None:
        """Queue gauge readings (tenant_id, month, metric, value, at_ms)."""
        for row in rows:
            self.submit_gauge(*row)

    def submit_legs(self, records: Iterable[LegRecord]) -> None:
        """Queue leg snapshots by leg_id: a newer one replaces the pending one,
        except that an ended snapshot is final (never replaced)."""
        pend = self._pending.legs
        for rec in records:
            old = pend.get(rec.leg_id)
            if self._admit(old is not None) and (old is None or _supersedes(rec, old)):
                pend[rec.leg_id] = rec

    def submit_counter(self, tenant_id: int, month: str, metric: str, delta: int) -> None:
        """Queue an increment of a counted metric (messages, signaling.bytes_out);
        the increments of a key are summed.  A negative or non-integer delta is
        a caller's bug: logged, counted in :attr:`rejected`, not queued."""
        if isinstance(delta, bool) or not isinstance(delta, int) or delta < 0:
            self.rejected += 1
            log.error("store writer: counter increment rejected: %r", (tenant_id, month, metric, delta))
            return
        if delta == 0:
            return
        key = (tenant_id, month, metric)
        pend = self._pending.counters
        old = pend.get(key)
        if self._admit(old is not None):
            pend[key] = delta if old is None else old + delta

    def submit_trunk_registration(self, reg: TrunkRegistration) -> None:
        """Queue a trunk's registration state; the latest per trunk is written."""
        pend = self._pending.trunk_registrations
        if self._admit(reg.trunk_id in pend):
            pend[reg.trunk_id] = reg

    def submit_heartbeat(self, now_ms: int) -> None:
        """Queue a liveness stamp (``meta.heartbeat_ms``; recovery closes open legs
        there).  Committed in the same transaction as, or after, every snapshot
        submitted before it, so a leg that ended before a stored heartbeat is
        never recovered past its real end (a direct :meth:`Store.stamp_heartbeat`
        could overtake an ended snapshot still waiting here)."""
        if self._admit(self._pending.heartbeat_ms is not None):
            self._pending.heartbeat_ms = now_ms

    # -- the flushing task -------------------------------------------------

    async def run(self) -> None:
        """Flush every flush_interval_ms (sooner when flush_at is reached) until :meth:`stop`."""
        while not self._stopping:
            delay_ms = self.flush_interval_ms
            if self._failures:
                delay_ms = min(self.max_backoff_ms, self.flush_interval_ms * 2 ** min(self._failures, 16))
            try:
                await asyncio.wait_for(self._wake.wait(), delay_ms / 1000)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self.flush()
            except StoreError:
                pass  # logged by flush(); the batch is pending again and retried after the backoff
            except Exception:
                # Anything else is a bug, but the writer must outlive it: a dead
                # writer would silently stop every later registration from
                # reaching the disk.
                log.exception("unexpected error while writing a batch; continuing")

    async def flush(self) -> int:
        """Commit everything pending now; returns the number of operations written.

        On failure the batch is put back (nothing is lost), the failure is
        logged, and the StoreError is raised.
        """
        async with self._flush_lock:
            batch, self._pending = self._pending, _Batch()
            if not batch:
                return 0
            self._inflight = len(batch)
            try:
                try:
                    await batch.write(self._store)
                    written = len(batch)
                    self.written += written
                except ConstraintViolation as e:
                    log.error(
                        "store writer: batch of %d refused (%s); writing it one operation at a time", len(batch), e
                    )
                    written = await self._write_isolated(batch)
            except StoreError as e:
                self._failures += 1
                self._pending.merge_older(batch)
                log.error(
                    "store writer: flush of %d operations failed (attempt %d), will retry: %s",
                    len(batch),
                    self._failures,
                    e,
                )
                raise
            finally:
                self._inflight = 0
            self._failures = 0
            if self._episode_drops:
                log.warning("store writer: writing again; %d operations were dropped", self._episode_drops)
                self._episode_drops = 0
            return written

    async def _write_isolated(self, batch: _Batch) -> int:
        """Write each operation alone; log and count those refused as invalid.

        Each operation leaves `batch` once committed or rejected, so on a
        transient failure (which stops the loop) the caller puts back only the
        operations not yet written: counter increments are not idempotent.
        Returns the number written.
        """
        written = 0
        for one in batch.split():
            try:
                await one.write(self._store)
            except ConstraintViolation as e:
                self.rejected += 1
                log.error("store writer: operation rejected and not written: %r: %s", one, e)
                batch.discard(one)
            else:  # committed: must not be put back (a counter would count twice)
                batch.discard(one)
                self.written += 1
                written += 1
        return written

    async def stop(self, retries: int = 3) -> None:
        """Stop :meth:`run` and flush until nothing is pending (retrying a few times).

        Operations submitted while the last batches are written are still
        accepted and written; after stop() returns, submits raise StoreClosed.
        When the database stays unwritable, the loss is logged with its size
        and the StoreError raised: never silently lost.
        """
        self._stopping = True
        self._wake.set()
        failures = 0
        while self.pending:  # includes a batch run() is writing: wait for it (flush lock)
            try:
                await self.flush()
            except StoreError:
                failures += 1
                if failures > retries:
                    self._stopped = True
                    log.error("store writer: stopping with %d operations not written", self.pending)
                    raise
                await asyncio.sleep(min(self.max_backoff_ms, self.flush_interval_ms * 2**failures) / 1000)
        self._stopped = True
