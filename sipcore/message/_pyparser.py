"""Reference SIP parser in pure Python (RFC 3261 §7, §25).

This is the oracle the Cython parser is tested against: simple, complete,
and slow.  It follows the order of checks documented in
:mod:`sipcore.message.parsing`, which both implementations share so that
they raise the same exception class for the same input.
"""

from __future__ import annotations

from array import array

from sipcore.errors import (
    HeaderTooLong,
    IncompleteMessage,
    MessageTooLarge,
    ParseError,
    TooManyHeaders,
)
from sipcore.message import headers as h
from sipcore.message.limits import DEFAULT_LIMITS, ParserLimits
from sipcore.message.model import Request, Response, header_key
from sipcore.message.parsing import (
    MANDATORY,
    SINGLETONS,
    TOKEN_BYTES,
    check_reason_bytes,
    check_request_uri,
    check_version,
    decode,
    header_value,
)

_WS = b" \t"
_LWS = b" \t\r\n"


def _scan(data: bytes, pos: int, limits: ParserLimits) -> tuple[tuple[int, int], list[list[int]], int, int]:
    """Split the start line and header lines; returns (start line span,
    [name_s, name_e, colon+1, last_end] per header, headers_end, body_start)."""
    start_line: tuple[int, int] | None = None
    hdrs: list[list[int]] = []
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise ParseError("header section not terminated by an empty line")
        end = nl - 1 if nl > pos and data[nl - 1] == 13 else nl
        if end - pos > limits.max_line_bytes:
            raise HeaderTooLong(f"line longer than {limits.max_line_bytes} bytes")
        if start_line is None:
            start_line = (pos, end)
        elif end == pos:
            return start_line, hdrs, pos, nl + 1
        elif data[pos] in _WS:
            if not hdrs:
                raise ParseError("continuation line before the first header")
            hdrs[-1][3] = end
        else:
            colon = data.find(b":", pos, end)
            if colon < 0:
                raise ParseError("header line without ':'")
            name_e = colon
            while name_e > pos and data[name_e - 1] in _WS:
                name_e -= 1
            if name_e == pos or any(b not in TOKEN_BYTES for b in data[pos:name_e]):
                raise ParseError("bad header name")
            if len(hdrs) >= limits.max_headers:
                raise TooManyHeaders(f"more than {limits.max_headers} header fields")
            hdrs.append([pos, name_e, colon + 1, end])
        pos = nl + 1


def parse(data: bytes, limits: ParserLimits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one datagram (or one framed stream message)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    n = len(data)
    if n > limits.max_message_bytes:
        raise MessageTooLarge(f"message of {n} bytes exceeds {limits.max_message_bytes}")
    pos = 0
    while pos < n and data[pos] in b"\r\n":
        pos += 1
    if pos == n:
        raise ParseError("empty message")
    msg_start = pos
    (sl_s, sl_e), raw_hdrs, headers_end, body_start = _scan(data, pos, limits)

    idx = array("I", [msg_start, sl_e, headers_end, body_start, 0])
    line = data[sl_s:sl_e]
    msg: Request | Response
    if line[:4].upper() == b"SIP/":
        sp1 = line.find(b" ")
        if sp1 < 0:
            raise ParseError("bad status line")
        check_version(line[:sp1])
        code = line[sp1 + 1 : sp1 + 4]
        if len(code) != 3 or not code.isdigit() or not 49 <= code[0] <= 54:
            raise ParseError("bad status code")
        rest = line[sp1 + 4 :]
        if rest and rest[:1] != b" ":
            raise ParseError("bad status code")
        check_reason_bytes(rest[1:])
        c_s = sl_s + sp1 + 5 if rest else sl_e
        idx.extend([sl_s, sl_s + sp1, sl_s + sp1 + 1, sl_s + sp1 + 4, c_s, sl_e])
        resp = Response.__new__(Response)
        resp.status = int(code)
        resp.reason = decode(rest[1:])
        msg = resp
    else:
        parts = line.split(b" ")
        if len(parts) != 3 or not all(parts):
            raise ParseError("Request-Line must be Method SP Request-URI SP SIP-Version")
        method_b, uri_b, version_b = parts
        if any(b not in TOKEN_BYTES for b in method_b):
            raise ParseError("bad method")
        check_version(version_b)
        uri = decode(uri_b)
        check_request_uri(uri)
        a_e = sl_s + len(method_b)
        b_e = a_e + 1 + len(uri_b)
        idx.extend([sl_s, a_e, a_e + 1, b_e, b_e + 1, sl_e])
        req = Request.__new__(Request)
        req.method = method_b.decode("ascii")
        req.ruri = uri
        msg = req

    idx.append(len(raw_hdrs))
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i, (ns, ne, vs, ve) in enumerate(raw_hdrs):
        while vs < ve and data[vs] in _LWS:
            vs += 1
        while ve > vs and data[ve - 1] in _LWS:
            ve -= 1
        idx.extend([ns, ne, vs, ve])
        key = header_key(data[ns:ne].decode("ascii"))
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    for key in SINGLETONS:
        if counts.get(key, 0) > 1:
            raise ParseError(f"more than one {key} header")
    for key in MANDATORY:
        if key not in counts:
            raise ParseError(f"missing mandatory {key} header")

    def value(key: str) -> str:
        o = 12 + 4 * first[key]
        return header_value(data, idx[o + 2], idx[o + 3])

    top = h.parse_top_via(value("via"))
    cseq = h.parse_cseq(value("cseq"))
    if isinstance(msg, Request) and cseq.method != msg.method:
        raise ParseError("CSeq method does not match the request method")
    msg.call_id = h.parse_call_id(value("call-id"))
    msg.from_tag = h.parse_name_addr(value("from"), "From").tag
    msg.to_tag = h.parse_name_addr(value("to"), "To").tag
    msg.max_forwards = h.parse_max_forwards(value("max-forwards")) if "max-forwards" in first else None
    if "content-length" in first:
        cl = h.parse_content_length(value("content-length"))
        if body_start + cl > n:
            raise IncompleteMessage(f"Content-Length {cl} but only {n - body_start} body bytes")
        idx[4] = body_start + cl
    else:
        idx[4] = n
    msg.branch, msg.via_host, msg.via_port, msg.via_transport = top.branch, top.host, top.port, top.transport
    msg.cseq, msg.cseq_method = cseq.number, cseq.method
    msg._data = data
    msg._idx = idx.tobytes()
    msg._headers = msg._body = msg._cache = None
    return msg
