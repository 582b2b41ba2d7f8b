"""Stateless answers to unparsable requests: salvage or drop."""

from __future__ import annotations

from sipcore.errors import MessageTooLarge, ParseError, VersionNotSupported
from sipcore.message import parse
from sipcore.proxy.stateless import error_response

from ..conftest import TESTDATA


def test_400_built_from_salvaged_headers() -> None:
    data = (TESTDATA / "rfc4475" / "badaspec.dat").read_bytes()
    out = error_response(data, ParseError("whitespace inside <> in To"), "t1")
    assert out is not None
    # the To is echoed as the peer wrote it (malformed), so read the bytes
    lines = out.split(b"\r\n")
    assert lines[0].startswith(b"SIP/2.0 400 Bad Request (whitespace")
    assert b"Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234" in lines
    assert b'To: "Watson, Thomas" < sip:t.watson@example.org >;tag=t1' in lines
    assert b"Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3" in lines and out.endswith(b"\r\n\r\n")


def test_505_and_513_keep_their_status() -> None:
    data = (TESTDATA / "rfc4475" / "badvers.dat").read_bytes()
    out = error_response(data, VersionNotSupported("SIP/7.0"), "t")
    assert out is not None and parse(out).status == 505
    big = (TESTDATA / "bench-corpus" / "03_invite_sdp.sip").read_bytes()
    out = error_response(big, MessageTooLarge("too big"), "t")
    assert out is not None and parse(out).status == 513


def test_drop_when_nothing_to_answer_with() -> None:
    assert error_response((TESTDATA / "rfc4475" / "insuf.dat").read_bytes(), ParseError("x"), "t") is None
    assert error_response((TESTDATA / "rfc4475" / "scalarlg.dat").read_bytes(), ParseError("x"), "t") is None
    assert error_response(b"\x00\xff garbage", ParseError("x"), "t") is None


def test_existing_to_tag_kept_and_reason_sanitized() -> None:
    data = (
        b"BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:x@y>;tag=1\r\n"
        b"t: <sip:a@b>;tag=abc\r\ni: c\r\nCSeq: x BYE\r\n\r\n"
    )
    out = error_response(data, ParseError("bad CSeq \x00\u00e9"), "new")
    assert out is not None
    status_line = out.split(b"\r\n")[0]
    assert status_line == b"SIP/2.0 400 Bad Request (bad CSeq ??)"
    assert b"To: <sip:a@b>;tag=abc\r\n" in out and b"tag=new" not in out
