"""RFC 4475 and RFC 5118 torture messages on both parsers.

Every VALID message is accepted and its key fields come out right; every
INVALID message whose defect is syntactic is rejected with the error class
that maps to the status the RFC names.  What only a later layer can judge
is listed in DEFERRED with the layer that owns it, so nothing passes
silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sipcore.errors import (
    IncompleteMessage,
    ParseError,
    RemoteProtocolError,
    VersionNotSupported,
)
from sipcore.message import Request, Response

from ..conftest import TESTDATA

R4475 = TESTDATA / "rfc4475"
R5118 = TESTDATA / "rfc5118"


def _manifest(d: Path) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in json.loads((d / "manifest.json").read_text()).items() if not k.startswith("_")}


M4475 = _manifest(R4475)
M5118 = _manifest(R5118)

# INVALID messages rejected by parse() itself, with the class that carries the status.
EAGER_REJECT: dict[str, type[RemoteProtocolError]] = {
    "badinv01.dat": ParseError,  # stray ;;,;,, in the top Via
    "clerr.dat": IncompleteMessage,  # 400 on a datagram
    "ncl.dat": ParseError,
    "scalar02.dat": ParseError,  # CSeq above 2**31
    "scalarlg.dat": ParseError,  # response: dropped (status None path is the transport's)
    "quotbal.dat": ParseError,
    "ltgtruri.dat": ParseError,
    "lwsruri.dat": ParseError,
    "lwsstart.dat": ParseError,
    "trws.dat": ParseError,
    "escruri.dat": ParseError,
    "badaspec.dat": ParseError,
    "badvers.dat": VersionNotSupported,  # 505
    "mismatch01.dat": ParseError,
    "mismatch02.dat": ParseError,
    "bigcode.dat": ParseError,
    "insuf.dat": ParseError,  # no To/From/Call-ID
    "multi01.dat": ParseError,  # duplicated singleton headers
    "mcl01.dat": ParseError,  # two Content-Length
    "baddn.dat": ParseError,  # (the archive copy also lacks the blank line; see below)
}

# INVALID messages whose defect sits in a header the parser leaves for first
# use (lazy parsing, ARCHITECTURE.md): the accessor raises, validate() raises.
LAZY_REJECT: dict[str, str] = {
    "regbadct.dat": "contacts",  # Contact URI with '?' outside <>
    "baddate.dat": "date",  # Date not in GMT
}

# VALID syntax whose required *answer* belongs to a later layer.
DEFERRED: dict[str, str] = {
    "badbranch.dat": "transaction: RFC 2543 matching for a bare magic-cookie branch",
    "unkscm.dat": "proxy: 416 Unsupported URI Scheme",
    "novelsc.dat": "proxy: 416 Unsupported URI Scheme",
    "unksm2.dat": "registrar: reject the non-SIP Contact",
    "bext01.dat": "proxy/UAS: 420 Bad Extension with Unsupported",
    "invut.dat": "UAS: 415 Unsupported Media Type",
    "regaut01.dat": "auth: challenge with a supported scheme",
    "bcast.dat": "proxy: never send to a broadcast sent-by",
    "zeromf.dat": "proxy: 483 Too Many Hops",
    "sdp01.dat": "UAS: 406/488 for an unacceptable Accept",
    "intmeth.dat": "proxy: 405/501 for an unknown method",
    "esc02.dat": "proxy: unknown method RE%47IST%45R",
    "inv2543.dat": "transaction: RFC 2543 matching (no branch)",
}


def test_manifest_is_fully_classified() -> None:
    invalid = {k for k, v in M4475.items() if v["verdict"] == "INVALID"}
    assert invalid == set(EAGER_REJECT) | set(LAZY_REJECT)
    assert set(DEFERRED) <= {k for k, v in M4475.items() if v["verdict"] == "VALID"}


@pytest.mark.parametrize("name", sorted(k for k, v in M4475.items() if v["verdict"] == "VALID"))
def test_rfc4475_valid_accepted(parser: Any, name: str) -> None:
    msg = parser((R4475 / name).read_bytes())
    assert isinstance(msg, Request | Response)
    msg.validate()  # every known header parses too
    assert msg.call_id and msg.cseq_method
    assert msg.to_bytes() == (R4475 / name).read_bytes()[: len(msg.to_bytes())]


@pytest.mark.parametrize("name", sorted(EAGER_REJECT))
def test_rfc4475_invalid_rejected(parser: Any, name: str) -> None:
    with pytest.raises(EAGER_REJECT[name]) as info:
        parser((R4475 / name).read_bytes())
    assert type(info.value) is EAGER_REJECT[name]


def test_status_of_rejections() -> None:
    assert VersionNotSupported.status == 505
    assert ParseError.status == IncompleteMessage.status == 400


def test_baddn_rejected_for_its_display_name(parser: Any) -> None:
    data = (R4475 / "baddn.dat").read_bytes() + b"\r\n"  # add the missing blank line
    with pytest.raises(ParseError, match="From|To|URI|host"):
        parser(data)


@pytest.mark.parametrize("name", sorted(LAZY_REJECT))
def test_rfc4475_invalid_rejected_on_first_use(parser: Any, name: str) -> None:
    msg = parser((R4475 / name).read_bytes())
    with pytest.raises(ParseError):
        getattr(msg, LAZY_REJECT[name])
    with pytest.raises(ParseError):
        msg.validate()


def test_test_dat_rejected(parser: Any) -> None:
    with pytest.raises(ParseError):
        parser((R4475 / "test.dat").read_bytes())


def p4475(parser: Any, name: str) -> Any:
    return parser((R4475 / name).read_bytes())


def test_wsinv_fields(parser: Any) -> None:
    m = p4475(parser, "wsinv.dat")
    assert (m.method, m.ruri) == ("INVITE", "sip:vivekg@chair-dnrc.example.com;unknownparam")
    assert (m.cseq, m.cseq_method, m.max_forwards) == (9, "INVITE", 68)
    assert (m.from_tag, m.to_tag) == ("98asjd8", "1918181833n")
    assert (m.via_transport, m.via_host, m.via_port, m.branch) == ("UDP", "192.0.2.2", None, "390skdjuw")
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.contacts[0].display_name == 'Quoted string ""'
    assert m.contacts[0].q == 0.33
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.routes[0].uri.lr
    assert len(m.body) == 150


def test_intmeth_fields(parser: Any) -> None:
    m = p4475(parser, "intmeth.dat")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~" == m.cseq_method
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255


def test_escapes(parser: Any) -> None:
    m = p4475(parser, "esc01.dat")
    assert m.uri.user_unescaped == "sips:user@example.com"
    assert m.to.uri.user_unescaped == "user"
    assert m.from_.uri.user_unescaped == "I have spaces"
    c = m.contacts[0].uri
    assert c.user_unescaped == "caller"
    assert c.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    m = p4475(parser, "escnull.dat")
    assert m.to.uri.user_unescaped == "null-\x00-null"
    assert [c.uri.user_unescaped for c in m.contacts] == ["\x00", "\x00\x00"]
    m = p4475(parser, "esc02.dat")
    assert m.method == "RE%47IST%45R"
    assert [c.uri.host for c in m.contacts] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_misc_valid_fields(parser: Any) -> None:
    assert p4475(parser, "lwsdisp.dat").from_.display_name == "caller"
    m = p4475(parser, "longreq.dat")
    assert len(m.vias) > 30 and m.to.uri.port == 6000
    m = p4475(parser, "dblreq.dat")
    assert (m.method, m.body) == ("REGISTER", b"")
    m = p4475(parser, "semiuri.dat")
    assert (m.uri.user, m.uri.host) == ("user;par=u%40example.net", "example.com")
    assert len(m.headers.values("Accept")) == 6
    m = p4475(parser, "transports.dat")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    m = p4475(parser, "mpart01.dat")
    assert len(m.body) == 553 and b"\x00" in m.body
    m = p4475(parser, "unreason.dat")
    assert (m.status, m.reason) == (200, "= 2**3 * 5**2 но сто девяносто девять - простое")
    m = p4475(parser, "noreason.dat")
    assert (m.status, m.reason) == (100, "")
    assert p4475(parser, "badbranch.dat").branch == "z9hG4bK"
    assert p4475(parser, "unkscm.dat").uri.scheme == "nobodyknowsthisscheme"
    m = p4475(parser, "inv2543.dat")
    assert (m.branch, m.max_forwards, m.from_tag) == (None, None, None)
    assert m.body.startswith(b"v=0")
    m = p4475(parser, "regescrt.dat")
    assert m.contacts[0].uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)
    c1 = p4475(parser, "cparam01.dat").contacts[0]
    assert c1.has_param("unknownparam") and not c1.uri.has_param("unknownparam")
    c2 = p4475(parser, "cparam02.dat").contacts[0]
    assert c2.uri.has_param("unknownparam") and not c2.has_param("unknownparam")
    assert p4475(parser, "zeromf.dat").max_forwards == 0
    assert p4475(parser, "unksm2.dat").to.uri.scheme == "isbn"


# --- RFC 5118 (wire copies: CRLF, corrected Content-Length) -------------------


def p5118(parser: Any, name: str) -> Any:
    return parser((R5118 / "wire" / name).read_bytes())


@pytest.mark.parametrize("name", sorted(k for k, v in M5118.items() if v["verdict"] == "VALID"))
def test_rfc5118_valid_accepted(parser: Any, name: str) -> None:
    msg = p5118(parser, name)
    msg.validate()
    assert msg.to_bytes() == (R5118 / "wire" / name).read_bytes()


def test_rfc5118_invalid_rejected(parser: Any) -> None:
    with pytest.raises(ParseError):
        p5118(parser, "ipv6-bad.dat")


def test_rfc5118_archive_copies_have_wrong_lengths(parser: Any) -> None:
    # The archive's own bytes announce more body than they carry.
    with pytest.raises(IncompleteMessage):
        parser((R5118 / "ipv6-in-sdp.dat").read_bytes().replace(b"\n", b"\r\n"))


def test_ipv6_fields(parser: Any) -> None:
    assert p5118(parser, "ipv6-good.dat").uri.host == "[2001:db8::10]"
    u = p5118(parser, "port-ambiguous.dat").uri
    assert (u.host, u.port) == ("[2001:db8::10:5070]", None)
    u = p5118(parser, "port-unambiguous.dat").uri
    assert (u.host, u.port) == ("[2001:db8::10]", 5070)
    m = p5118(parser, "via-received-param-with-delim.dat")
    assert m.vias[0].received == "[2001:db8::9:255]" and m.via_host == "[2001:db8::9:1]"
    assert p5118(parser, "via-received-param-no-delim.dat").vias[0].received == "2001:db8::9:255"
    m = p5118(parser, "mult-ip-in-header.dat")
    assert [(v.host, v.port) for v in m.vias] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    assert (m.via_host, m.via_port) == ("[2001:db8::9:1]", 6050)
    m = p5118(parser, "ipv4-mapped-ipv6.dat")
    assert (m.via_host, m.via_port) == ("[::ffff:192.0.2.10]", 19823)
    assert p5118(parser, "ipv6-bug-abnf-3-colons.dat").uri.host == "[2001:db8:::192.0.2.1]"
    assert p5118(parser, "ipv6-correct-abnf-2-colons.dat").uri.host == "[2001:db8::192.0.2.1]"


def _valid_with_sdp() -> list[str]:
    from sipcore.message import py_parse

    names = sorted(k for k, v in M4475.items() if v["verdict"] == "VALID")
    return [n for n in names if py_parse((R4475 / n).read_bytes()).content_type == "application/sdp"]


@pytest.mark.parametrize("name", _valid_with_sdp())
def test_sdp_bodies_of_valid_messages_parse(parser: Any, name: str) -> None:
    from sipcore.message.sdp import parse_sdp

    desc = parse_sdp(parser((R4475 / name).read_bytes()).body)
    assert desc.media
