"""Failed-authentication counting per source address (brute-force brake).

Theory of operation
-------------------
Each source key (the edge passes the remote IP address; for IPv6 it may pass
the /64 prefix instead, since one host commonly owns a whole /64) has a
counter in a fixed window that opens at its first failure: ``max_failures``
failures before the window closes block the source for ``block_ms``.  While
blocked, :meth:`FailureLimiter.blocked` says so and the authenticator answers
403 without looking at the request; requests during a block do not extend it.

A success never resets a counter.  Behind a NAT, an attacker's failures would
otherwise be wiped by every legitimate neighbour's REGISTER refresh; the
counter simply ages out with its window.

Both tables are bounded (``size`` entries each) and evict their oldest entry:
the counters least recently failed, the blocks first to expire.  Blocks live in
their own table so that a flood of single failures from many (possibly
spoofed) addresses cannot push an active block out; filling the block table
costs ``max_failures`` failures per entry.

A fixed window is cheaper than a sliding one (two ints per source instead of
``max_failures`` timestamps) at the price of admitting up to
``2 * max_failures - 2`` failures across a window boundary once.

IP-based blocking over UDP can be abused: a spoofed source can get a victim's
address blocked.  That is inherent in the requirement; the edge can exempt
trusted networks by not calling the authenticator for them, or key TCP/TLS
sources by connection.
"""

from __future__ import annotations

from collections import OrderedDict


class FailureLimiter:
    __slots__ = ("_max", "_window_ms", "_block_ms", "_size", "_counts", "_blocks")

    def __init__(self, max_failures: int, window_ms: int, block_ms: int, size: int) -> None:
        if size < 1:
            raise ValueError("source table size must be at least 1")
        self._max = max_failures
        self._window_ms = window_ms
        self._block_ms = block_ms
        self._size = size
        # source -> [window_start_ms, failures]; least recently failed first
        self._counts: OrderedDict[str, list[int]] = OrderedDict()
        # source -> blocked_until_ms; first to expire first
        self._blocks: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts) + len(self._blocks)

    def blocked(self, source: str, now_ms: int) -> bool:
        until = self._blocks.get(source)
        if until is None:
            return False
        if now_ms < until:
            return True
        del self._blocks[source]
        return False

    def record_failure(self, source: str, now_ms: int) -> bool:
        """Count one failure; True when it starts a block."""
        counts = self._counts
        entry = counts.get(source)
        if entry is None or now_ms - entry[0] >= self._window_ms:
            entry = [now_ms, 0]
        entry[1] += 1
        if entry[1] >= self._max:
            counts.pop(source, None)
            blocks = self._blocks
            blocks.pop(source, None)
            while len(blocks) >= self._size:
                blocks.popitem(last=False)
            blocks[source] = now_ms + self._block_ms
            return True
        counts[source] = entry
        counts.move_to_end(source)
        while len(counts) > self._size:
            counts.popitem(last=False)
        return False
