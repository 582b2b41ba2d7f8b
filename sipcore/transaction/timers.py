"""Timer configuration and the timer store of the transaction layer (RFC 3261 §17, Table 4).

Why per-duration FIFO queues and not a heap
-------------------------------------------
Every timer a transaction arms has a duration taken from a small, fixed set:
64*T1 (B, F, H, J, L, M), T4 (I, K), Timer D's 32 s, and the retransmission
steps T1, 2*T1, 4*T1 ... capped at T2 for E and G (A doubles up to 32*T1
before Timer B ends the transaction).  With `now` monotonic, entries appended
to the queue of one duration are already sorted by deadline, so a deque per
duration is a priority queue with O(1) push and pop.  At 10k requests/s this
replaces ~30k heap pushes/pops of log2(100k) = 17 levels each by deque appends
and pops; finding the earliest deadline is a scan of ~10 queue heads.

Cancelling is lazy: an entry is never removed from the middle of a queue; the
transaction drops it by clearing ``entry.tx``.  That also drops the reference
to the transaction, so a cancelled Timer F (32 s) does not keep a finished
transaction and its messages alive; only the 3-slot entry stays queued until
its deadline passes.  ``next_deadline`` discards cancelled heads, so the edge
is never woken for a timer that was cancelled.

Zero-length timers (D, I, J, K on reliable transports) are never queued: the
state machine moves to Terminated at once (RFC 3261 §17.1.1.2: "a value of
zero seconds for reliable transports").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipcore.errors import ConfigError

if TYPE_CHECKING:
    from sipcore.transaction.base import Transaction

_INF = float("inf")


@dataclass(frozen=True)
class TimerConfig:
    """The three base timer values of RFC 3261 §17.1.1.1 / Table 4, in milliseconds.

    Every other timer is derived from them: A, E, G start at T1; E and G are
    capped at T2; B, F, H, J, L, M are 64*T1; I and K are T4; D is 32 s (or
    64*T1 when that is longer) on unreliable transports."""

    t1_ms: int = 500
    """T1, the RTT estimate (RFC 3261 recommends 500 ms; may be lowered on private networks)."""
    t2_ms: int = 4000
    """T2, the maximum retransmission interval for non-INVITE requests and INVITE responses."""
    t4_ms: int = 5000
    """T4, the maximum duration a message remains in the network."""

    def __post_init__(self) -> None:
        if self.t1_ms <= 0:
            raise ConfigError("<TimerConfig>", "t1_ms", "must be positive")
        if self.t2_ms < self.t1_ms:
            raise ConfigError("<TimerConfig>", "t2_ms", "must not be smaller than t1_ms")
        if self.t4_ms <= 0:
            raise ConfigError("<TimerConfig>", "t4_ms", "must be positive")

    @property
    def t1(self) -> float:
        return self.t1_ms / 1000.0

    @property
    def t2(self) -> float:
        return self.t2_ms / 1000.0

    @property
    def t4(self) -> float:
        return self.t4_ms / 1000.0


class TimerEntry:
    """One armed timer: its deadline, its transaction (None once cancelled or
    fired) and its RFC letter."""

    __slots__ = ("at", "tx", "letter")

    def __init__(self, at: float, tx: Transaction, letter: str) -> None:
        self.at = at
        self.tx: Transaction | None = tx
        self.letter = letter


class TimerQueues:
    """All armed timers of one transaction layer, as one FIFO queue per duration."""

    __slots__ = ("_by_duration", "_queues")

    def __init__(self) -> None:
        self._by_duration: dict[float, deque[TimerEntry]] = {}
        self._queues: list[deque[TimerEntry]] = []

    def arm(self, tx: Transaction, letter: str, duration: float, now: float) -> TimerEntry:
        """Queue timer `letter` of `tx` to fire at now + duration.  `now` must
        not go backwards between calls (the layer clamps it)."""
        q = self._by_duration.get(duration)
        if q is None:
            q = self._by_duration[duration] = deque()
            self._queues.append(q)
        e = TimerEntry(now + duration, tx, letter)
        q.append(e)
        return e

    def next_deadline(self) -> float | None:
        """Earliest deadline of a live timer, None if none is armed."""
        best = _INF
        for q in self._queues:
            while q and q[0].tx is None:
                q.popleft()
            if q and q[0].at < best:
                best = q[0].at
        return None if best == _INF else best

    def due(self, now: float) -> Iterator[tuple[Transaction, str]]:
        """Pop every live entry with deadline <= now, earliest first.

        A k-way merge of the queue heads: take the queue with the earliest
        head and drain it up to the second-earliest head, then look again.
        The consumer may arm new timers while iterating; they are due after
        `now` (durations are positive), so they never belong to this round.
        Each entry is detached (``tx`` cleared) before its (tx, letter) is yielded."""
        queues = self._queues
        while True:
            best: deque[TimerEntry] | None = None
            best_at = second_at = _INF
            for q in queues:
                while q and q[0].tx is None:
                    q.popleft()
                if q:
                    at = q[0].at
                    if at < best_at:
                        best, second_at, best_at = q, best_at, at
                    elif at < second_at:
                        second_at = at
            if best is None or best_at > now:
                return
            limit = now if now < second_at else second_at
            while best and best[0].at <= limit:
                e = best.popleft()
                tx = e.tx
                if tx is not None:
                    e.tx = None
                    yield tx, e.letter

    def pending(self) -> int:
        """Queued entries, cancelled ones included (for tests and gauges)."""
        return sum(len(q) for q in self._queues)
