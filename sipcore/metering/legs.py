"""Call legs (sans-IO): the record the proxy hands to the store (METERING.md, "Call legs").

A leg is one call as seen from one provisioned endpoint (a device or a
trunk).  The proxy emits a :class:`LegRecord` snapshot whenever a leg's
billable state changes: at the answer, when the media changes (video on or
off, transcoding), and at the end; an unanswered attempt is one snapshot that
is already ended.  Snapshots are idempotent: the store upserts them by
``leg_id`` and never changes a leg that is already ended, so a repeated or
replayed snapshot cannot count a second twice.

Time is split into closed segments (``voice_ms``, ``video_ms``,
``transcoding_ms``) plus the open segment that started at ``segment_start_ms``
with the media state ``segment_video`` / ``segment_transcoding``.  Closing a
leg folds the open segment into the totals, so ``voice_ms + video_ms`` is the
answered duration.  The store needs the open segment for crash recovery: a
leg left open by a kill is closed at the last heartbeat, and the open segment
is credited up to that moment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal

EndpointKind = Literal["device", "trunk"]
Direction = Literal["originating", "terminating"]

# End reasons (the `end_reason` column).
END_BYE_CALLER = "bye_caller"
END_BYE_CALLEE = "bye_callee"
END_CANCEL = "cancel"
END_REJECTED = "rejected"  # a final non-2xx answer; final_status says which
END_TIMEOUT = "timeout"  # no answer in time, or the session timer / dead-call probe expired
END_MAX_DURATION = "max_duration"
END_RECOVERED = "recovered"  # closed at the last heartbeat after a crash
END_SHUTDOWN = "shutdown"  # the server stopped cleanly with the call up
END_REASONS = (
    END_BYE_CALLER,
    END_BYE_CALLEE,
    END_CANCEL,
    END_REJECTED,
    END_TIMEOUT,
    END_MAX_DURATION,
    END_RECOVERED,
    END_SHUTDOWN,
)


def leg_id(call_id: str, from_tag: str, direction: Direction, endpoint_kind: EndpointKind, endpoint_id: int) -> str:
    """The leg's unique key: derived, so the same leg can never get two rows.

    Built from what is known when the INVITE arrives (not the To tag, which a
    forked call only learns at the answer), plus direction and endpoint, so an
    internal call's two legs differ and a re-sent INVITE maps to the same leg."""
    raw = "\x00".join((call_id, from_tag, direction, endpoint_kind, str(endpoint_id)))
    return hashlib.blake2b(raw.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class LegRecord:
    leg_id: str
    tenant_id: int
    month: str  # 'YYYY-MM' in the tenant's time zone, of the answer (of the setup when unanswered)
    endpoint_kind: EndpointKind
    endpoint_id: int  # devices.id or trunks.id
    direction: Direction
    call_id: str
    from_tag: str
    to_tag: str | None
    caller: str  # From URI
    callee: str  # what was dialled: the original INVITE's Request-URI (the To URI when a DID came from To)
    setup_ms: int
    answer_ms: int | None = None
    end_ms: int | None = None
    end_reason: str | None = None
    final_status: int | None = None  # the final response (200 when answered)
    voice_ms: int = 0
    video_ms: int = 0
    transcoding_ms: int = 0
    segment_start_ms: int | None = None  # open segment (answered and not ended)
    segment_video: bool = False
    segment_transcoding: bool = False
    codecs_local: str = ""  # the endpoint's codec set, comma-separated encoding names
    codecs_remote: str = ""  # the other side's
    transit: bool = False

    @property
    def ended(self) -> bool:
        return self.end_ms is not None

    def with_media(self, now_ms: int, video: bool, transcoding: bool) -> LegRecord:
        """Close the open segment at `now_ms` and open one with the new media state."""
        if self.segment_start_ms is None or self.ended:
            return self
        closed = self._fold(now_ms)
        return replace(closed, segment_start_ms=now_ms, segment_video=video, segment_transcoding=transcoding)

    def closed(self, now_ms: int, reason: str, final_status: int | None = None) -> LegRecord:
        """The ended leg: the open segment credited up to `now_ms` (never before it began)."""
        if self.ended:
            return self
        rec = self._fold(now_ms) if self.segment_start_ms is not None else self
        end = max(now_ms, self.answer_ms or self.setup_ms)
        status = final_status if final_status is not None else self.final_status
        return replace(rec, end_ms=end, end_reason=reason, final_status=status, segment_start_ms=None)

    def _fold(self, now_ms: int) -> LegRecord:
        start = self.segment_start_ms
        assert start is not None
        span = max(0, now_ms - start)
        voice, video, trans = self.voice_ms, self.video_ms, self.transcoding_ms
        if self.segment_video:
            video += span
        else:
            voice += span
        if self.segment_transcoding:
            trans += span
        return replace(self, voice_ms=voice, video_ms=video, transcoding_ms=trans, segment_start_ms=now_ms)

    @property
    def duration_ms(self) -> int:
        """Answered time so far in closed segments (the whole duration once ended)."""
        return self.voice_ms + self.video_ms
