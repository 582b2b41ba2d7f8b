"""Message model: headers, typed accessors, serialization, make_response."""

from __future__ import annotations

from typing import Any

import pytest

from sipcore.errors import HeaderTooLong, LocalProtocolError, MessageTooLarge, ParseError, TooManyHeaders
from sipcore.message import Request, Response, make_response, response_bytes
from sipcore.message.limits import ParserLimits

from ..conftest import TESTDATA

CORPUS = sorted((TESTDATA / "bench-corpus").glob("*.sip"))
INVITE = (TESTDATA / "bench-corpus" / "03_invite_sdp.sip").read_bytes()
REGISTER = (TESTDATA / "bench-corpus" / "01_register_auth.sip").read_bytes()

SIMPLE = (
    b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877, "
    b"SIP/2.0/TCP relay.example.net:5070;received=192.0.2.9\r\n"
    b"Max-Forwards: 70\r\n"
    b"t: <sip:carol@chicago.example.com>\r\n"
    b'f: "Alice, the \\"great\\"" <sip:alice@example.com>;tag=1928301774\r\n'
    b"i: a84b4c76e66710\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"m: <sip:alice@pc33.example.com>;expires=60;q=0.7, "
    b'"B" <sip:b@h;transport=tcp>;+sip.instance="<urn:uuid:1>";reg-id=1\r\n'
    b"Accept: application/sdp, text/plain\r\n"
    b"Subject: first\r\n"
    b"Subject: second\r\n"
    b"X-Long: a\r\n  b\r\n\tc\r\n"
    b"l: 0\r\n\r\n"
)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_round_trip_byte_for_byte(parser: Any, path: Any) -> None:
    data = path.read_bytes()
    msg = parser(data)
    assert msg.to_bytes() == data
    _ = list(msg.headers)  # reading headers does not change the bytes
    assert msg.to_bytes() == data


def test_headers_case_insensitive_and_compact(parser: Any) -> None:
    m = parser(SIMPLE)
    hs = m.headers
    assert hs.get("call-id") == hs.get("I") == hs.get("CALL-ID") == "a84b4c76e66710"
    assert "Via" in hs and "v" in hs and "via" in hs
    assert hs.get_all("subject") == ["first", "second"]
    assert hs.values("Accept") == ["application/sdp", "text/plain"]
    assert hs.get("X-Long") == "a b c"
    assert [n for n, _ in hs][:2] == ["v", "Max-Forwards"]


def test_multi_value_split_respects_quotes_and_brackets(parser: Any) -> None:
    m = parser(SIMPLE)
    assert m.from_.display_name == 'Alice, the "great"'
    assert m.from_tag == "1928301774"
    assert len(m.vias) == 2 and m.vias[1].port == 5070 and m.vias[1].received == "192.0.2.9"
    c1, c2 = m.contacts
    assert (c1.expires, c1.q, c1.instance, c1.reg_id) == (60, 0.7, None, None)
    assert (c2.display_name, c2.instance, c2.reg_id, c2.uri.transport) == ("B", "<urn:uuid:1>", 1, "tcp")


def test_contact_star(parser: Any) -> None:
    start = REGISTER.index(b"Contact: ")
    end = REGISTER.index(b"\r\n", start)
    m = parser(REGISTER[:start] + b"Contact: *" + REGISTER[end:])
    assert m.contact_star and m.contacts == []
    full = parser(REGISTER)
    assert not full.contact_star
    (c,) = full.contacts
    assert (c.instance, c.reg_id, c.expires) == ("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", 1, 3600)


def test_modified_headers_serialize_canonically(parser: Any) -> None:
    m = parser(SIMPLE)
    m.headers.prepend("Via", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKnew")
    out = m.to_bytes()
    assert out.startswith(b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\nVia: SIP/2.0/UDP proxy.example.net;")
    assert b"\r\nv: SIP/2.0/UDP pc33" in out  # untouched lines keep their bytes
    assert m.branch == "z9hG4bKnew" and m.via_host == "proxy.example.net"
    again = parser(out)
    assert again.branch == "z9hG4bKnew" and len(again.vias) == 3
    assert m.headers.pop_first_value("Via") == "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKnew"
    assert m.branch == "z9hG4bKhjhs8ass877"
    m.headers.set("Max-Forwards", "69")
    assert m.max_forwards == 69
    m.ruri = "sip:carol@192.0.2.4"
    assert m.to_bytes().startswith(b"OPTIONS sip:carol@192.0.2.4 SIP/2.0\r\n")


def test_lookups_see_every_change_made_after_them(parser: Any) -> None:
    """The lookups go through an index built on first use: each way of
    changing the fields must be visible to the next lookup."""
    hs = parser(SIMPLE).headers
    assert hs.get_all("Subject") == ["first", "second"] and hs.count("Route") == 0
    hs.add("Route", "<sip:a;lr>")
    assert hs.get("route") == "<sip:a;lr>" and "Route" in hs
    hs.prepend("Route", "<sip:b;lr>")
    assert hs.get_all("Route") == ["<sip:b;lr>", "<sip:a;lr>"]
    assert hs.pop_first_value("Route", keep_keys=True) == "<sip:b;lr>"
    assert hs.get_all("Route") == ["<sip:a;lr>"]
    hs.set("Subject", "only")
    assert hs.get_all("subject") == ["only"] and hs.count("Subject") == 1
    assert hs.remove("Route") == 1
    assert hs.get("Route") is None and "Route" not in hs and hs.get_all("Route") == []
    assert hs.pop_first_value("Via") == "SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877"
    assert hs.get_all("Via") == ["SIP/2.0/TCP relay.example.net:5070;received=192.0.2.9"]
    got = hs.get_all("Via")
    got.append("mine")  # a copy: the caller's list is not the message's
    assert hs.count("Via") == 1


def test_body_change_updates_content_length(parser: Any) -> None:
    m = parser(INVITE)
    m.body = b"v=0\r\n"
    out = parser(m.to_bytes())
    assert out.body == b"v=0\r\n"
    assert out.headers.get("Content-Length") == "5"


def test_make_response_copies_per_8_2_6(parser: Any) -> None:
    req = parser(SIMPLE)
    resp = make_response(req, 200, to_tag="srv1")
    assert isinstance(resp, Response) and resp.reason == "OK"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert (resp.call_id, resp.cseq, resp.cseq_method) == (req.call_id, req.cseq, "OPTIONS")
    assert resp.from_tag == req.from_tag and resp.to_tag == "srv1"
    wire = parser(resp.to_bytes())
    assert (wire.status, wire.to_tag, wire.branch) == (200, "srv1", "z9hG4bKhjhs8ass877")
    assert make_response(req, 100).to_tag is None  # 100 never gets a tag


def test_build_request_serializes(parser: Any) -> None:
    req = Request(
        "OPTIONS",
        "sip:a@b",
        [
            ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
            ("From", "<sip:x@y>;tag=1"),
            ("To", "<sip:a@b>"),
            ("Call-ID", "c1"),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
        ],
    )
    m = parser(req.to_bytes())
    assert (m.method, m.branch, m.cseq, m.call_id, m.body) == ("OPTIONS", "z9hG4bK1", 1, "c1", b"")


def test_digest_headers(parser: Any) -> None:
    m = parser(REGISTER)
    (cred,) = m.authorization
    assert cred.is_digest and cred.username and cred.realm and cred.nonce and cred.response
    resp = parser((TESTDATA / "bench-corpus" / "02_401_unauthorized.sip").read_bytes())
    chall = resp.www_authenticate
    assert chall and all(c.realm and c.nonce for c in chall)
    assert {c.algorithm for c in chall} <= {"MD5", "SHA-256", "SHA-512-256"}


@pytest.mark.parametrize(
    "limits, data, exc",
    [
        (ParserLimits(max_message_bytes=100), INVITE, MessageTooLarge),
        (ParserLimits(max_headers=3), INVITE, TooManyHeaders),
        (ParserLimits(max_line_bytes=40), INVITE, HeaderTooLong),
    ],
)
def test_limits(parser: Any, limits: ParserLimits, data: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        parser(data, limits)
    assert type(info.value) is exc


def test_default_size_limit_is_513(parser: Any) -> None:
    big = INVITE + b"x" * 70000
    with pytest.raises(MessageTooLarge) as info:
        parser(big)
    assert info.value.status == 513


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\n",
        b"INVITE  sip:a@b SIP/2.0\r\n\r\n",
        b"SIP/2.0 20 OK\r\n\r\n",
        b"\x00\x01\x02",
        SIMPLE.replace(b"CSeq: 63104 OPTIONS", b"CSeq: 63104 INVITE"),
        SIMPLE.replace(b"i: a84b4c76e66710\r\n", b""),
        SIMPLE.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"),
        SIMPLE.replace(b"l: 0", b"l: 5"),
    ],
)
def test_bad_input_is_a_parse_error(parser: Any, bad: bytes) -> None:
    with pytest.raises(ParseError):
        parser(bad)


def _corpus_requests(parser: Any) -> list[Request]:
    out = []
    for path in sorted(TESTDATA.glob("**/*.dat")) + sorted(TESTDATA.glob("bench-corpus/*.sip")):
        try:
            msg = parser(path.read_bytes())
        except Exception:
            continue  # rejected by the parser: never answered with a built response
        if isinstance(msg, Request):
            out.append(msg)
    return out


@pytest.mark.parametrize(
    ("status", "reason", "to_tag", "extra", "body", "top_via"),
    [
        (401, None, "t1", [("WWW-Authenticate", 'Digest realm="x", nonce="n", algorithm=MD5, qop="auth"')], b"", None),
        (200, "OK", "t2", [("contact", "<sip:a@b>;expires=60"), ("Date", "Sun, 22 Nov 2026 08:00:00 GMT")], b"", "V"),
        (100, None, "t3", None, b"", None),
        (503, "Overloaded", None, [("Retry-After", "7")], b"", "SIP/2.0/UDP h;received=1.2.3.4;rport=9"),
        (488, "Not Acceptable Here", "t4", [("Content-Type", "application/sdp")], b"v=0\r\n", None),
        (606, "D\u00e9cline", "t5", [("X-Custom", "caf\u00e9")], b"", None),
    ],
)
def test_response_bytes_are_make_responses_bytes_on_the_corpus(
    parser: Any, status: int, reason: str | None, to_tag: str | None, extra: Any, body: bytes, top_via: str | None
) -> None:
    reqs = _corpus_requests(parser)
    assert len(reqs) > 40
    for req in reqs:
        want = make_response(req, status, reason, to_tag=to_tag, extra=extra, body=body, top_via=top_via).to_bytes()
        assert response_bytes(req, status, reason, to_tag=to_tag, extra=extra, body=body, top_via=top_via) == want


def test_response_bytes_refuses_a_status_make_response_refuses(parser: Any) -> None:
    req = parser(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\n"
                 b"To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
    for status in (99, 700):
        with pytest.raises(LocalProtocolError):
            make_response(req, status)
        with pytest.raises(LocalProtocolError):
            response_bytes(req, status)
