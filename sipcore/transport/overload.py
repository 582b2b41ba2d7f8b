"""Overload detection from the UDP receive queues (EDGE: reads socket state).

A server past its capacity that keeps accepting every new request does not
serve fewer calls, it serves almost none: the kernel queue fills, datagrams
are dropped, every client retransmits, and the retransmissions are more load
(measured: at 1.1x capacity the completed calls fell to 40 %).  The signal
that the server is behind is the one the kernel already keeps: the bytes
waiting in a listener's receive queue.  When any UDP listener's queue stays
``high_pct`` % full the core is told to shed (new requests get 503 with
Retry-After, RFC 3261 §21.5.4, for a few microseconds each, while the
responses and in-dialog requests of calls already accepted go on); when every
queue has drained to a quarter of that, it stops.

The queue is read with ``SO_MEMINFO`` (Linux), at most every ``interval_s``,
from the packet path: one getsockopt per listener, about a microsecond.
Elsewhere the check is unavailable and never sheds.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable

# 55 is SO_MEMINFO in Linux's generic socket.h (other architectures and
# systems number it otherwise, or lack it: there the check is off).
_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55) if sys.platform == "linux" else None
_MEMINFO = struct.Struct("9I")  # SK_MEMINFO_RMEM_ALLOC, _RCVBUF, ... (linux/sock_diag.h)

QueueReader = Callable[[], "tuple[int, int] | None"]


def receive_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(bytes queued, receive buffer size) of a socket, or None where the
    kernel does not tell (not Linux, or a socket-like object without it)."""
    if _SO_MEMINFO is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size)
    except (OSError, AttributeError, TypeError):
        return None
    if len(raw) < 8:
        return None
    queued, capacity = _MEMINFO.unpack_from(raw.ljust(_MEMINFO.size, b"\0"))[:2]
    return queued, capacity


class LoadShedder:
    """Hysteresis over the receive queues: on when a queue is at ``high_pct`` %
    of its capacity on ``sustain`` reads in a row (a burst, or a pause of the
    process, drains by itself: only a backlog that persists is overload), off
    when all are below a quarter of that.  Pure apart from the readers it is
    given; ``high_pct`` 0 turns it off."""

    def __init__(self, readers: list[QueueReader], high_pct: int, interval_s: float = 0.01, sustain: int = 3) -> None:
        self.readers = readers
        self.high = high_pct / 100
        self.low = self.high / 4
        self.interval_s = interval_s
        self.sustain = sustain
        self._above = 0
        self.shedding = False
        self.worst = 0.0
        """The fullest queue at the last check, as a fraction of its capacity."""
        self._next = 0.0

    def check(self, now: float) -> bool | None:
        """Read the queues if `interval_s` passed; the new state when it changed, else None."""
        if now < self._next or not self.high:
            return None
        self._next = now + self.interval_s
        worst = 0.0
        for read in self.readers:
            q = read()
            if q is not None and q[1] > 0:
                worst = max(worst, q[0] / q[1])
        self.worst = worst
        self._above = self._above + 1 if worst >= self.high else 0
        if not self.shedding and self._above >= self.sustain:
            self.shedding = True
            return True
        if self.shedding and worst < self.low:
            self.shedding = False
            return False
        return None
