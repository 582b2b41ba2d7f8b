"""Dialogs the proxy record-routed, and their call legs (sans-IO).

One :class:`Dialog` per answered INVITE (the first 2xx; other forked 2xx are
forwarded but not metered, METERING.md: "only the answered branch makes a
leg").  It holds what the proxy needs to end the call on its own (the remote
targets and flows of both sides, their CSeqs), the session timer (RFC 4028)
and the maximum-duration deadline, and the legs' running records.

Dead calls: with ``[proxy] dialog_probe_s`` a dialog also has a probe
deadline, ``quiet_since + probe_s`` (``keepalive.py`` sends the in-dialog
OPTIONS).  In-dialog traffic only moves ``quiet_since`` (two stores, no heap
push on the packet path); the stale heap entry pops at the old deadline and
``due()`` re-arms it at the new one, so a talking call costs one heap entry
per probe interval and no scan.

Leg records go out through the `emit` callback as :class:`LegRecord`
snapshots (``sipcore.metering.legs``): at the answer, when the media changes,
and at the end.  The table is bounded (``max_dialogs``): past it a new
dialog is still routed (the Record-Route token needs no state) but not timed
by a session timer, and a warning is logged; its legs are metered all the
same.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sipcore.flow import Flow
from sipcore.metering.legs import END_BYE_CALLEE, END_BYE_CALLER, LegRecord

log = logging.getLogger("sipcore.dialogs")

DialogKey = tuple[str, str, str]


def dialog_key(call_id: str, tag_a: str, tag_b: str) -> DialogKey:
    """The same key whichever side sends (their tags are swapped in From/To)."""
    return (call_id, tag_a, tag_b) if tag_a <= tag_b else (call_id, tag_b, tag_a)


@dataclass(slots=True)
class Dialog:
    key: DialogKey
    call_id: str
    caller_tag: str
    callee_tag: str
    caller_from: str  # From header value of the caller (with its tag)
    caller_to: str  # To header value as the callee answered (with its tag)
    caller_target: str  # caller's Contact URI
    callee_target: str  # callee's Contact URI
    caller_flow: Flow
    callee_flow: Flow
    legs: list[LegRecord]
    caller_cseq: int
    callee_cseq: int = 0
    session_expires_s: int = 0
    session_deadline: float = 0.0
    max_deadline: float = 0.0
    probe_s: int = 0  # in-dialog OPTIONS after this long without traffic (0: never)
    quiet_since: float = 0.0  # monotonic time of the last in-dialog traffic or probe
    caller_alive_ms: int = 0  # wall-clock ms the caller was last heard from
    callee_alive_ms: int = 0  # wall-clock ms the callee was last heard from
    ended: bool = False
    generation: int = 0  # bumps on every re-arm, so stale heap entries are skipped
    extra: dict[str, str] = field(default_factory=dict)

    def from_caller(self, from_tag: str | None) -> bool:
        return from_tag == self.caller_tag

    def heard(self, caller: bool, now: float, now_ms: int) -> None:
        """A request or response from one side: it is alive, and the call is
        not quiet (the next probe waits a full interval)."""
        self.quiet_since = now
        if caller:
            self.caller_alive_ms = max(self.caller_alive_ms, now_ms)
        else:
            self.callee_alive_ms = max(self.callee_alive_ms, now_ms)


Emit = Callable[[tuple[LegRecord, ...]], None]


class DialogTable:
    def __init__(self, emit: Emit, *, max_dialogs: int = 200_000) -> None:
        self._emit = emit
        self._dialogs: dict[DialogKey, Dialog] = {}
        self._heap: list[tuple[float, int, DialogKey]] = []
        self.max_dialogs = max_dialogs

    def __len__(self) -> int:
        return len(self._dialogs)

    def get(self, call_id: str | None, tag_a: str | None, tag_b: str | None) -> Dialog | None:
        if call_id is None or tag_a is None or tag_b is None:
            return None
        return self._dialogs.get(dialog_key(call_id, tag_a, tag_b))

    def add(self, d: Dialog) -> bool:
        if d.key in self._dialogs:
            return False
        if len(self._dialogs) >= self.max_dialogs:
            log.warning("dialog table full (%d): %s is metered but not timed", self.max_dialogs, d.call_id)
            return False
        self._dialogs[d.key] = d
        self._emit(tuple(d.legs))
        self._rearm(d)
        return True

    def all(self) -> list[Dialog]:
        return list(self._dialogs.values())

    def _rearm(self, d: Dialog) -> None:
        d.generation += 1
        probe = d.quiet_since + d.probe_s if d.probe_s > 0 else 0.0
        deadlines = [t for t in (d.session_deadline, d.max_deadline, probe) if t > 0]
        if deadlines:
            heapq.heappush(self._heap, (min(deadlines), d.generation, d.key))

    def refreshed(self, d: Dialog, session_expires_s: int, now: float) -> None:
        """A re-INVITE/UPDATE succeeded: the session timer starts again (RFC 4028 §10)."""
        if session_expires_s > 0:
            d.session_expires_s = session_expires_s
        if d.session_expires_s > 0:
            d.session_deadline = now + d.session_expires_s
            self._rearm(d)

    def media_changed(self, d: Dialog, now_ms: int, video: bool) -> None:
        changed = []
        for i, leg in enumerate(d.legs):
            if leg.segment_video != video:
                d.legs[i] = leg.with_media(now_ms, video, leg.segment_transcoding)
                changed.append(d.legs[i])
        if changed:
            self._emit(tuple(changed))

    def end(self, d: Dialog, now_ms: int, reason: str) -> None:
        if d.ended:
            return
        d.ended = True
        d.legs = [leg.closed(now_ms, reason) for leg in d.legs]
        self._emit(tuple(d.legs))
        self._dialogs.pop(d.key, None)

    def bye(self, d: Dialog, from_tag: str | None, now_ms: int) -> None:
        self.end(d, now_ms, END_BYE_CALLER if d.from_caller(from_tag) else END_BYE_CALLEE)

    def due(self, now: float) -> list[tuple[Dialog, str]]:
        """Dialogs whose maximum duration or session timer ran out, or that are
        quiet for a probe interval (``"probe"``, re-armed a full interval on:
        the probe itself counts as traffic)."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, gen, key = heapq.heappop(heap)
            d = self._dialogs.get(key)
            if d is None or d.generation != gen or d.ended:
                continue
            if d.max_deadline and d.max_deadline <= now:
                out.append((d, "max_duration"))
            elif d.session_deadline and d.session_deadline <= now:
                out.append((d, "timeout"))
            elif d.probe_s > 0 and d.quiet_since + d.probe_s <= now:
                d.quiet_since = now
                self._rearm(d)
                out.append((d, "probe"))
            else:
                self._rearm(d)
        return out

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None
