"""Stream framing for SIP over TCP/TLS (RFC 3261 §18.3, RFC 5626 §4.4.1).

Sans-IO: feed bytes as they arrive (split anywhere), take events out.  A
message is framed by its header section's empty line plus Content-Length
octets; the framer hands out the message's bytes and leaves parsing to
:func:`sipcore.message.parse`, so both parsers serve streams unchanged.

CRLF keepalives between messages are reported, not treated as garbage: a
double CRLF is a client "ping" (answer with a single CRLF "pong"), a single
CRLF is a "pong" (or the CRLF RFC 3261 §7.5 says to ignore before a
start-line).  A stream whose framing cannot be known (bad or conflicting
Content-Length, header section above the size limit) yields one
:class:`FramingError` and nothing after it: the connection must be closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipcore.errors import MessageTooLarge, ParseError, SipcoreError
from sipcore.message.limits import DEFAULT_LIMITS, ParserLimits


@dataclass(frozen=True, slots=True)
class MessageFramed:
    data: bytes


@dataclass(frozen=True, slots=True)
class KeepAlivePing:
    """A double CRLF: the peer wants a single CRLF back (RFC 5626 §4.4.1)."""


@dataclass(frozen=True, slots=True)
class KeepAlivePong:
    """A single CRLF between messages."""


@dataclass(frozen=True, slots=True)
class FramingError:
    error: SipcoreError


FramerEvent = MessageFramed | KeepAlivePing | KeepAlivePong | FramingError

_BLANK_LINE = re.compile(rb"\n\r?\n")
# Possessive quantifiers: a line of blanks with a stray CR must not make the
# regex backtrack (a quadratic blow-up an attacker could send).
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*+:[ \t]*+([^\r\n]*+)", re.I | re.M)


class StreamFramer:
    """Bytes in (any split), complete messages and keepalives out."""

    __slots__ = ("_buf", "_limits", "_dead", "_events", "_scan_from")

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buf = bytearray()
        self._limits = limits
        self._dead = False
        self._events: list[FramerEvent] = []
        self._scan_from = 0

    @property
    def closed(self) -> bool:
        return self._dead

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        if self._dead:
            return
        self._buf += data
        self._frame()

    def next_event(self) -> FramerEvent | None:
        return self._events.pop(0) if self._events else None

    def events(self) -> list[FramerEvent]:
        out, self._events = self._events, []
        return out

    def _fail(self, error: SipcoreError) -> None:
        self._dead = True
        self._buf.clear()
        self._events.append(FramingError(error))

    def _frame(self) -> None:
        buf = self._buf
        while buf and not self._dead:
            if buf[0] in b"\r\n":
                if not self._keepalive():
                    return
                continue
            m = _BLANK_LINE.search(buf, max(self._scan_from - 2, 0))
            if m is None:
                if len(buf) > self._limits.max_message_bytes:
                    self._fail(MessageTooLarge("header section exceeds the message size limit"))
                self._scan_from = len(buf)
                return
            head_end = m.end()
            length = self._content_length(bytes(buf[:head_end]))
            if length is None:
                return
            total = head_end + length
            if total > self._limits.max_message_bytes:
                self._fail(MessageTooLarge(f"message of {total} bytes exceeds the size limit"))
                return
            if len(buf) < total:
                return  # wait for the body; the header search need not run again
            self._events.append(MessageFramed(bytes(buf[:total])))
            del buf[:total]
            self._scan_from = 0

    def _keepalive(self) -> bool:
        """Consume CRLFs before a start line; False when more bytes are needed."""
        buf = self._buf
        if buf[:4] == b"\r\n\r\n":
            del buf[:4]
            self._events.append(KeepAlivePing())
            return True
        if buf[:2] == b"\r\n":
            if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return False  # could still become a ping
            del buf[:2]
            self._events.append(KeepAlivePong())
            return True
        if buf[:1] == b"\r" and len(buf) == 1:
            return False
        del buf[:1]  # a bare CR or LF: ignore it (§7.5)
        return True

    def _content_length(self, head: bytes) -> int | None:
        values = {v.strip() for v in _CONTENT_LENGTH.findall(head)}
        if not values:
            # RFC 3261 §18.3: mandatory on streams; a message without it has
            # no body we could find, so treat it as empty.
            return 0
        if len(values) > 1:
            self._fail(ParseError("conflicting Content-Length headers on a stream"))
            return None
        (v,) = values
        if not v.isdigit() or len(v) > 10:
            self._fail(ParseError(f"bad Content-Length {v!r} on a stream"))
            return None
        return int(v)
