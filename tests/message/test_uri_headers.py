"""URI and typed-header grammar (the reference functions both parsers share)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipcore.errors import ParseError, SipcoreError
from sipcore.message import headers as h
from sipcore.message.grammar import split_commas, unescape, unfold
from sipcore.message.uri import parse_uri


def test_sip_uri_parts() -> None:
    u = parse_uri("sips:al%69ce:secret@Example.COM:5061;transport=tcp;lr;maddr=10.0.0.1?subject=hi&x=")
    assert (u.scheme, u.user, u.user_unescaped, u.password) == ("sips", "al%69ce", "alice", "secret")
    assert (u.host, u.port, u.transport, u.lr, u.maddr) == ("Example.COM", 5061, "tcp", True, "10.0.0.1")
    assert u.headers == (("subject", "hi"), ("x", ""))
    assert u.aor() == "sips:alice@example.com"
    assert str(u) == "sips:al%69ce:secret@Example.COM:5061;transport=tcp;lr;maddr=10.0.0.1?subject=hi&x="


@pytest.mark.parametrize(
    "text, host, port",
    [
        ("sip:[2001:db8::1]", "[2001:db8::1]", None),
        ("sip:u@[::1]:5070", "[::1]", 5070),
        ("sip:192.0.2.1:5060", "192.0.2.1", 5060),
        ("sip:host.", "host.", None),
    ],
)
def test_hosts(text: str, host: str, port: int | None) -> None:
    u = parse_uri(text)
    assert (u.host, u.port) == (host, port)


@pytest.mark.parametrize(
    "bad",
    [
        "sip:",
        "sip:@h",
        "sip:h:99999",
        "sip:h:x",
        "sip:[::1",
        "sip:-bad.example",
        "sip:a b@h",
        "sip:u@h@h",
        "sip:h;=v",
        "sip:h%zz",
        "sip:1.2.3",
        "nocolon",
        "1sip:h",
        "sip:u@h?noequals",
        "sip:[zz::1]",
    ],
)
def test_bad_uris(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(bad)


def test_tel_and_generic() -> None:
    t = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert (t.scheme, t.user, t.param("phone-context")) == ("tel", "+1-201-555-0123", "example.com")
    g = parse_uri("urn:service:sos")
    assert (g.scheme, g.opaque, str(g)) == ("urn", "service:sos", "urn:service:sos")


def test_via_params() -> None:
    v = h.parse_via("SIP / 2.0 / udp 192.0.2.1:5060 ; rport=1234 ; received=192.0.2.9;branch=z9hG4bKx;maddr=224.0.1.75")
    assert (v.protocol, v.transport, v.host, v.port) == ("SIP/2.0", "UDP", "192.0.2.1", 5060)
    assert (v.rport, v.has_rport, v.received, v.branch, v.maddr) == (1234, True, "192.0.2.9", "z9hG4bKx", "224.0.1.75")
    assert h.parse_via("SIP/2.0/TCP h;rport").rport is None
    with pytest.raises(ParseError):
        h.parse_via("SIP/2.0/UDP h;branch")
    with pytest.raises(ParseError):
        h.parse_via("SIP/2.0/UDP")


def test_name_addr_forms() -> None:
    na = h.parse_name_addr('"Bob \\"B\\"" <sip:bob@h>;tag=a;x')
    assert (na.display_name, na.tag, na.has_param("x")) == ('Bob "B"', "a", True)
    assert str(na) == '"Bob \\"B\\"" <sip:bob@h>;tag=a;x'
    assert h.parse_name_addr("sip:bob@h;tag=z").tag == "z"
    assert h.parse_name_addr("Bob Smith <sip:bob@h>").display_name == "Bob Smith"
    for bad in ["<sip:bob@h", '"open <sip:a@b>', "< sip:a@b>", "sip:a@b?x=y", "a, b <sip:a@b>", "<sip:a@b> junk"]:
        with pytest.raises(ParseError):
            h.parse_name_addr(bad)


def test_contact_list_and_q() -> None:
    cs = h.parse_name_addr_list('<sip:a@h>;q=1.0, "x,y" <sip:b@h>;expires=0', "Contact")
    assert [(c.q, c.expires) for c in cs] == [(1.0, None), (None, 0)]
    with pytest.raises(ParseError):
        _ = h.parse_name_addr_list("<sip:a@h>;q=2", "Contact")[0].q
    with pytest.raises(ParseError):
        h.parse_name_addr_list("<sip:a@h>,,<sip:b@h>", "Contact")


def test_cseq_and_scalars() -> None:
    assert h.parse_cseq("0009\r\n INVITE".replace("\r\n", "")) == h.CSeq(9, "INVITE")
    with pytest.raises(ParseError):
        h.parse_cseq(str(2**31) + " INVITE")
    assert h.parse_max_forwards("0068") == 68
    with pytest.raises(ParseError):
        h.parse_expires(str(2**32))
    assert h.parse_date("Sat, 13 Nov 2010 23:29:00 GMT")
    with pytest.raises(ParseError):
        h.parse_call_id("a b")


def test_digest_parsing() -> None:
    a = h.parse_auth(
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b", uri="sip:bob@biloxi.com", '
        'response="245f23415f11432b3434341c022", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="0a4f113b", '
        'opaque="5ccc", userhash=false'
    )
    assert (a.scheme, a.username, a.realm, a.nonce, a.uri) == (
        "Digest",
        "bob",
        "biloxi.com",
        "dcd98b",
        "sip:bob@biloxi.com",
    )
    assert (a.algorithm, a.qop, a.nc, a.cnonce, a.opaque, a.userhash) == (
        "SHA-256",
        "auth",
        "00000001",
        "0a4f113b",
        "5ccc",
        False,
    )
    c = h.parse_auth('Digest realm="x", nonce="n", qop="auth,auth-int", stale=TRUE')
    assert c.qop_options == ("auth", "auth-int") and c.stale and c.algorithm == "MD5"
    assert h.parse_auth("NoOneKnowsThisScheme opaque-data=here").scheme == "NoOneKnowsThisScheme"
    with pytest.raises(ParseError):
        h.parse_auth('Digest realm="unterminated')


def test_helpers() -> None:
    assert split_commas('a, "b,c" , <sip:d,e>, f') == ["a", '"b,c"', "<sip:d,e>", "f"]
    assert unfold("a \r\n  b\r\n\tc") == "a b c"
    assert unescape("%41%zz%") == "A%zz%"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_grammar_never_crashes(s: str) -> None:
    for fn in (
        parse_uri,
        h.parse_via,
        h.parse_name_addr,
        h.parse_cseq,
        h.parse_auth,
        h.parse_call_id,
        h.parse_date,
        h.parse_expires,
    ):
        try:
            fn(s)
        except SipcoreError:
            pass
    try:
        h.parse_name_addr_list(s, "Contact")
    except SipcoreError:
        pass
