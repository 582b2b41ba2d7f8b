"""Parser limits, enforced identically by both parser implementations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds that keep a hostile peer from making a parse expensive."""

    max_message_bytes: int = 65536
    """Largest message (datagram or framed stream message) accepted; above: 513."""
    max_headers: int = 128
    """Most header fields (continuation lines not counted) in one message."""
    max_line_bytes: int = 8192
    """Longest physical line (start line or header line, CRLF excluded)."""


DEFAULT_LIMITS = ParserLimits()
