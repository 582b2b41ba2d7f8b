"""Answers for requests that could not be parsed (RFC 3261 §16.3 / §8.2).

The one place a RemoteProtocolError becomes a response.  When the message
failed to parse there is no model to build a response from, so the header
fields a response needs (Via, From, To, Call-ID, CSeq) are salvaged from
the raw bytes; if any is missing, or the message is a response, nothing can
be answered and the datagram is dropped (the caller logs it).
"""

from __future__ import annotations

import re

from sipcore.errors import RemoteProtocolError

_FIELD = re.compile(rb"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*+:[ \t]*+([^\r\n]*+)", re.I | re.M)
_CANON = {
    b"v": b"Via",
    b"via": b"Via",
    b"f": b"From",
    b"from": b"From",
    b"t": b"To",
    b"to": b"To",
    b"i": b"Call-ID",
    b"call-id": b"Call-ID",
    b"cseq": b"CSeq",
}
_UNSAFE = re.compile(r"[^\x20-\x7e]")


def error_response(data: bytes, error: RemoteProtocolError, to_tag: str) -> bytes | None:
    """Bytes of a stateless error response to `data`, or None when none is possible."""
    if error.status is None:
        return None
    head = data.lstrip(b"\r\n")
    if head[:4].upper() == b"SIP/":
        return None  # a malformed response is never answered
    end = head.find(b"\r\n\r\n")
    head = head[: end if end >= 0 else min(len(head), 16384)]
    found: dict[bytes, list[bytes]] = {}
    for m in _FIELD.finditer(head):
        found.setdefault(_CANON[m.group(1).lower()], []).append(m.group(2).strip())
    if not all(k in found for k in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")):
        return None
    to = found[b"To"][0]
    if b"tag=" not in to.lower():
        to += b";tag=" + to_tag.encode()
    detail = _UNSAFE.sub("?", str(error))[:100]
    reason = f"{error.reason} ({detail})" if detail else error.reason
    lines = [f"SIP/2.0 {error.status} {reason}".encode()]
    lines += [b"Via: " + v for v in found[b"Via"]]
    lines += [
        b"From: " + found[b"From"][0],
        b"To: " + to,
        b"Call-ID: " + found[b"Call-ID"][0],
        b"CSeq: " + found[b"CSeq"][0],
        b"Content-Length: 0",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"
