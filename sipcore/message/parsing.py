"""What both parser implementations share: the order of checks and the
helpers the Cython parser falls back to outside its fast path.

Order of checks (the same in both, so the same input raises the same class):
 1. size above ``max_message_bytes`` -> MessageTooLarge (513)
 2. leading CR/LF skipped (RFC 3261 §7.5); nothing left -> ParseError
 3. line by line: line above ``max_line_bytes`` -> HeaderTooLong; header line
    without ':' or with a bad name -> ParseError; field count above
    ``max_headers`` -> TooManyHeaders; no empty line -> ParseError
 4. start line: request = Method SP Request-URI SP SIP-Version (method
    checked, then version -> 505 when well-formed but not 2.0, then URI);
    response = SIP-Version SP 3DIGIT [SP Reason-Phrase]
 5. singleton headers duplicated, mandatory headers missing -> ParseError
 6. transaction keys: top Via, CSeq (and its method against the request's),
    Call-ID, From, To, Max-Forwards -> ParseError
 7. Content-Length: malformed -> ParseError; more than arrived ->
    IncompleteMessage; absent -> the rest of the datagram is the body.
Headers not listed here are checked on first use (see ``Message.validate``).
"""

from __future__ import annotations

from sipcore.errors import ParseError, VersionNotSupported
from sipcore.message.grammar import TOKEN_CHARS, unfold
from sipcore.message.uri import parse_uri

TOKEN_BYTES = frozenset(c.encode()[0] for c in TOKEN_CHARS)
SINGLETONS = ("call-id", "cseq", "from", "to", "max-forwards", "content-length")
MANDATORY = ("via", "from", "to", "call-id", "cseq")


def decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def header_value(data: bytes, vs: int, ve: int) -> str:
    raw = data[vs:ve]
    v = decode(raw)
    return unfold(v) if raw.find(b"\n") >= 0 else v


def check_version(v: bytes) -> None:
    """SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT (case-insensitive, §7.1)."""
    if v[:4].upper() != b"SIP/":
        raise ParseError("bad SIP version")
    major, dot, minor = v[4:].partition(b".")
    if not dot or not major.isdigit() or not minor.isdigit():
        raise ParseError("bad SIP version")
    if major != b"2" or minor != b"0":
        raise VersionNotSupported(f"SIP version {v.decode('ascii', 'replace')} not supported")


def check_reason_bytes(reason: bytes) -> None:
    """Reason-Phrase: any text but control characters (HTAB allowed)."""
    for b in reason:
        if (b < 0x20 and b != 9) or b == 0x7F:
            raise ParseError("control character in reason phrase")


def check_request_uri(uri: str) -> None:
    """Request-URI = SIP-URI / SIPS-URI / absoluteURI; a SIP Request-URI may
    not carry headers (RFC 3261 §19.1.5, RFC 4475 §3.1.2.11)."""
    u = parse_uri(uri)
    if u.is_sip and u.headers:
        raise ParseError("Request-URI must not contain URI headers")
