"""Tests for sipcore.message.sdp (RFC 8866 parser used by metering)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipcore.errors import ParseError, SdpError
from sipcore.message.sdp import (
    MAX_LINES,
    MAX_MEDIA,
    STATIC_PAYLOAD_TYPES,
    Bandwidth,
    Codec,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
    parse_sdp,
)

TESTDATA = Path("/work/shared/testdata/sip")


def sdp_body(relpath: str) -> bytes:
    """The body of a SIP message file: the octets after the first CRLFCRLF."""
    raw = (TESTDATA / relpath).read_bytes()
    _head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"{relpath} has no header/body separator"
    return body


def sdp(*lines: str) -> str:
    return "\r\n".join(lines) + "\r\n"


BASE = ("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0")


# --------------------------------------------------------------------------
# corpus files


def test_bench_invite_audio_video_offer() -> None:
    desc = parse_sdp(sdp_body("bench-corpus/03_invite_sdp.sip"))
    assert desc.version == 0
    assert desc.origin == Origin("alice", "2890844526", "2890844526", "IN", "IP4", "198.51.100.23")
    assert desc.session_name == "-"
    assert desc.connection == Connection("IN", "IP4", "198.51.100.23")
    assert desc.times == (Timing(0, 0),)
    assert [m.media for m in desc.media] == ["audio", "video"]

    audio, video = desc.media
    assert audio.port == 49170 and audio.port_count is None
    assert audio.proto == "RTP/AVP"
    assert audio.formats == ("111", "0", "8", "9", "101")
    assert audio.rtpmap[111] == Codec(111, "opus", 48000, 2)
    assert audio.rtpmap[101] == Codec(101, "telephone-event", 8000, None)
    assert audio.fmtp == {111: "minptime=10;useinbandfec=1", 101: "0-16"}
    assert audio.codecs == ("OPUS", "PCMU", "PCMA", "G722", "TELEPHONE-EVENT")
    assert ("ptime", "20") in audio.attributes
    assert ("sendrecv", None) in audio.attributes

    assert video.port == 51372
    assert video.bandwidths == (Bandwidth("AS", 1024),)
    assert video.codecs == ("H264", "VP8")
    assert video.fmtp[96] == "profile-level-id=42e01f;packetization-mode=1"
    assert ("rtcp-fb", "96 nack pli") in video.attributes

    assert desc.has_active_video is True
    assert desc.codec_set("audio") == frozenset({"OPUS", "PCMU", "PCMA", "G722"})
    assert desc.codec_set() == desc.codec_set("audio")
    assert desc.codec_set("video") == frozenset({"H264", "VP8"})
    assert desc.codec_set("application") == frozenset()
    for m in desc.media:
        assert m.active and m.direction == "sendrecv"
        assert desc.connection_for(m) == desc.connection


def test_bench_200_ok_answer() -> None:
    desc = parse_sdp(sdp_body("bench-corpus/05_200_ok_sdp.sip"))
    assert desc.origin is not None and desc.origin.username == "bob"
    assert desc.has_active_video
    assert desc.codec_set("audio") == frozenset({"PCMU"})
    assert desc.codec_set("video") == frozenset({"H264"})
    assert desc.media[1].bandwidths == (Bandwidth("AS", 768),)


def test_rfc5118_ipv6_in_sdp() -> None:
    desc = parse_sdp(sdp_body("rfc5118/wire/ipv6-in-sdp.dat"))
    assert desc.connection == Connection("IN", "IP6", "2001:db8::20")
    assert desc.origin is not None and desc.origin.addrtype == "IP6"
    assert desc.origin.address == "2001:db8::20"
    assert desc.origin.sess_id == "971731711378798081"
    assert desc.session_name == "Live video feed for today's meeting"
    assert desc.times == (Timing(3338481189, 3370017201),)
    # pt 2 is reserved in RFC 3551; the rtpmap names it.
    assert desc.codec_set("audio") == frozenset({"G726-32"})
    assert desc.codec_set("video") == frozenset({"H263-1998"})
    assert desc.has_active_video


def test_rfc5118_ipv4_mapped_ipv6() -> None:
    desc = parse_sdp(sdp_body("rfc5118/wire/ipv4-mapped-ipv6.dat"))
    assert desc.connection == Connection("IN", "IP6", "::ffff:192.0.2.2")
    assert desc.session_name == "Call me soon, please!"


def test_rfc5118_media_level_connections_override_session() -> None:
    desc = parse_sdp(sdp_body("rfc5118/wire/mult-ip-in-sdp.dat"))
    assert desc.connection is None
    assert desc.session_name == ""
    audio, video = desc.media
    assert audio.connection == Connection("IN", "IP4", "192.0.2.1")
    assert video.connection == Connection("IN", "IP6", "2001:db8::1")
    assert desc.connection_for(audio) == audio.connection
    assert desc.connection_for(video) == video.connection
    assert audio.codecs == ("PCMU",)  # static pt 0, no rtpmap
    assert desc.has_active_video


def test_rfc4475_inv2543_minimal_body() -> None:
    desc = parse_sdp(sdp_body("rfc4475/inv2543.dat"))
    assert desc.codec_set("audio") == frozenset({"PCMU"})
    assert not desc.has_active_video


def test_rfc4475_sdp01_rtpmap_without_clock_rate_is_tolerated() -> None:
    # "a=rtpmap:31 LPC" lacks the mandatory /<clock rate> (RFC 8866 §6.6), but
    # the message is VALID in RFC 4475: the attribute is kept, no codec entry
    # is made from it, and pt 31 resolves through the static table (H261).
    desc = parse_sdp(sdp_body("rfc4475/sdp01.dat"))
    video = [m for m in desc.media if m.media == "video"][0]
    assert 31 not in video.rtpmap and ("rtpmap", "31 LPC") in video.attributes
    assert video.codecs == ("H261",) and desc.has_active_video


def test_rfc4475_test_dat_multi_letter_type_is_rejected() -> None:
    with pytest.raises(SdpError, match="lowercase letter"):
        parse_sdp(sdp_body("rfc4475/test.dat"))


# --------------------------------------------------------------------------
# media semantics


def test_port_zero_video_is_not_active_video() -> None:
    desc = parse_sdp(
        sdp(
            *BASE,
            "m=audio 4000 RTP/AVP 0",
            "m=video 0 RTP/AVP 96",
            "a=rtpmap:96 VP8/90000",
        )
    )
    video = desc.media[1]
    assert not video.active
    assert desc.has_active_video is False
    assert desc.codec_set("video") == frozenset()
    assert video.codecs == ("VP8",)  # still reported per stream


def test_audio_only_has_no_video() -> None:
    assert parse_sdp(sdp(*BASE, "m=audio 4000 RTP/AVP 0")).has_active_video is False


def test_inactive_video_on_nonzero_port_counts_as_active_video() -> None:
    # Metering definition: only the port matters, not the direction.
    desc = parse_sdp(sdp(*BASE, "m=video 5000 RTP/AVP 31", "a=inactive"))
    assert desc.media[0].direction == "inactive"
    assert desc.has_active_video is True


def test_media_type_compared_case_insensitively() -> None:
    desc = parse_sdp(sdp(*BASE, "m=Video 5000 RTP/AVP 34"))
    assert desc.has_active_video
    assert desc.codec_set("VIDEO") == frozenset({"H263"})


def test_static_payload_types_without_rtpmap() -> None:
    desc = parse_sdp(
        sdp(
            *BASE,
            "m=audio 4000 RTP/AVP 0 3 4 8 9 18 13",
            "m=video 5000 RTP/AVP 26 31 34",
        )
    )
    audio, video = desc.media
    assert audio.rtpmap == {}
    assert audio.codecs == ("PCMU", "GSM", "G723", "PCMA", "G722", "G729", "CN")
    assert desc.codec_set("audio") == frozenset({"PCMU", "GSM", "G723", "PCMA", "G722", "G729"})
    assert video.codecs == ("JPEG", "H261", "H263")
    assert STATIC_PAYLOAD_TYPES[9] == Codec(9, "G722", 8000, 1)
    assert STATIC_PAYLOAD_TYPES[0].clock_rate == 8000


def test_rtpmap_overrides_static_table_and_unknown_dynamic_pt_is_skipped() -> None:
    desc = parse_sdp(sdp(*BASE, "m=audio 4000 RTP/AVP 0 96 97", "a=rtpmap:0 FOO/8000"))
    assert desc.media[0].codecs == ("FOO",)


def test_codecs_deduplicated_in_order() -> None:
    desc = parse_sdp(
        sdp(
            *BASE,
            "m=video 5000 RTP/SAVPF 96 98 97",
            "a=rtpmap:96 H264/90000",
            "a=rtpmap:98 h264/90000",
            "a=rtpmap:97 rtx/90000",
        )
    )
    assert desc.media[0].codecs == ("H264", "RTX")


def test_non_rtp_media_formats_are_names() -> None:
    desc = parse_sdp(sdp(*BASE, "m=image 6000 udptl t38", "m=message 7000 TCP/MSRP *"))
    image, message = desc.media
    assert not image.is_rtp
    assert image.codecs == ("T38",)
    assert message.codecs == ()
    assert parse_sdp(sdp(*BASE, "m=audio 1 UDP/TLS/RTP/SAVPF 0")).media[0].is_rtp


def test_direction_default_media_and_session_inheritance() -> None:
    desc = parse_sdp(
        sdp(
            *BASE,
            "a=recvonly",
            "m=audio 4000 RTP/AVP 0",
            "m=audio 4002 RTP/AVP 0",
            "a=sendonly",
            "m=video 5000 RTP/AVP 31",
            "a=inactive",
        )
    )
    inherited, own, video = desc.media
    assert inherited.direction == "recvonly"
    assert own.direction == "sendonly"
    assert video.direction == "inactive"
    assert desc.attributes == (("recvonly", None),)

    plain = parse_sdp(sdp(*BASE, "m=audio 4000 RTP/AVP 0"))
    assert plain.media[0].direction == "sendrecv"


def test_port_count_and_multicast_connection() -> None:
    desc = parse_sdp(
        sdp(
            "v=0",
            "s=multicast",
            "c=IN IP4 224.2.36.42/127/3",
            "m=audio 49170/2 RTP/AVP 0",
            "c=IN IP6 FF15::101/3",
        )
    )
    assert desc.connection == Connection("IN", "IP4", "224.2.36.42", 127, 3)
    m = desc.media[0]
    assert m.port == 49170 and m.port_count == 2
    assert m.connection == Connection("IN", "IP6", "FF15::101", None, 3)
    assert parse_sdp(sdp("v=0", "c=IN IP4 224.2.1.1/127")).connection == Connection("IN", "IP4", "224.2.1.1", 127, None)


def test_missing_optional_lines_are_tolerated() -> None:
    desc = parse_sdp("v=0\n")
    assert desc == SessionDescription(version=0, origin=None, session_name="")
    assert desc.media == () and not desc.has_active_video


def test_bare_lf_and_trailing_empty_lines() -> None:
    crlf = parse_sdp(sdp(*BASE, "m=audio 4000 RTP/AVP 0", "a=sendonly"))
    lf = parse_sdp("\n".join((*BASE, "m=audio 4000 RTP/AVP 0", "a=sendonly")) + "\n\n\n")
    no_eol = parse_sdp("\r\n".join((*BASE, "m=audio 4000 RTP/AVP 0", "a=sendonly")))
    trailing = parse_sdp(sdp(*BASE, "m=audio 4000 RTP/AVP 0", "a=sendonly") + "\r\n\r\n")
    assert crlf == lf == no_eol == trailing


def test_field_separators() -> None:
    # Extra SP/HTAB and a trailing space (seen from real phones) are tolerated.
    desc = parse_sdp(sdp(*BASE, "m=audio  4000\tRTP/AVP 0 8 ", "a=fmtp:8 \t a=1 b"))
    assert desc.media[0].formats == ("0", "8")
    assert desc.media[0].fmtp == {8: "a=1 b"}
    # Other Unicode whitespace is not a separator: NBSP glues two fields.
    with pytest.raises(SdpError, match="m= needs"):
        parse_sdp(sdp(*BASE, "m=audio\xa04000 RTP/AVP"))


def test_str_and_bytes_input_agree_and_non_utf8_survives() -> None:
    text = sdp(*BASE[:2], "s=Café", *BASE[3:])
    assert parse_sdp(text) == parse_sdp(text.encode("utf-8"))
    latin1 = parse_sdp(sdp(*BASE[:2], "s=Caf\xe9", *BASE[3:]).encode("latin-1"))
    assert latin1.session_name == "Caf\udce9"  # surrogateescape, no UnicodeDecodeError
    assert latin1.session_name.encode("utf-8", "surrogateescape") == b"Caf\xe9"


def test_unknown_line_types_and_attributes_are_ignored() -> None:
    desc = parse_sdp(
        sdp(
            *BASE,
            "x=whatever",
            "i=info",
            "m=audio 4000 RTP/AVP 0",
            "y=1",
            "a=foo:bar",
            "a=baz:",
        )
    )
    assert desc.media[0].attributes == (("foo", "bar"), ("baz", ""))
    assert desc.media[0].codecs == ("PCMU",)


def test_result_is_immutable_and_hashable() -> None:
    desc = parse_sdp(sdp_body("bench-corpus/03_invite_sdp.sip"))
    again = parse_sdp(sdp_body("bench-corpus/03_invite_sdp.sip"))
    assert desc == again and hash(desc) == hash(again)
    assert len({desc, again}) == 1
    with pytest.raises(AttributeError):
        desc.version = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        desc.media[0].rtpmap[5] = Codec(5, "X", 1)  # type: ignore[index]
    assert isinstance(desc.media, tuple) and isinstance(desc.media[0], MediaDescription)


def test_media_description_can_be_built_directly() -> None:
    m = MediaDescription("video", 0, None, "RTP/AVP", ("31",))
    assert not m.active and m.direction == "sendrecv" and m.codecs == ("H261",)
    assert m.rtpmap == {} and m.fmtp == {}


# --------------------------------------------------------------------------
# malformed input


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "empty"),
        ("\r\n\r\n", "empty"),
        ("s=-\r\nv=0\r\n", "first line"),
        ("v=1\r\n", "first line"),
        ("v= 0\r\n", "first line"),
        ("v=0\r\nv=0\r\n", "only be the first"),
        ("v=0\r\n\r\ns=-\r\n", "empty line"),
        ("v=0\r\nS=-\r\n", "lowercase letter"),
        ("v=0\r\nm =audio 1 RTP/AVP 0\r\n", "lowercase letter"),
        ("v=0\r\nm\r\n", "lowercase letter"),
        ("v=0\r\ns=a\rb\r\n", "bare CR"),
        ("v=0\r\ns=a\x00b\r\n", "NUL"),
        ("v=0\r\no=alice 1 1 IN IP4\r\n", "o= needs 6"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\no=- 1 1 IN IP4 h\r\n", "second o="),
        ("v=0\r\ns=a\r\ns=b\r\n", "second s="),
        ("v=0\r\nc=IN IP4\r\n", "c= needs 3"),
        ("v=0\r\nc=IN IP4 1.2.3.4 extra\r\n", "c= needs 3"),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.5\r\n", "second session-level c="),
        ("v=0\r\nc=IN IP4 224.1.1.1/300\r\n", "out of range"),
        ("v=0\r\nc=IN IP4 224.1.1.1/1/2/3\r\n", "at most"),
        ("v=0\r\nc=IN IP6 ff15::1/x\r\n", "not a decimal"),
        ("v=0\r\nc=IN IP4 /3\r\n", "empty address"),
        ("v=0\r\nb=AS\r\n", "b= must be"),
        ("v=0\r\nb=AS:fast\r\n", "not a decimal"),
        ("v=0\r\nt=0\r\n", "t= needs 2"),
        ("v=0\r\nt=now 0\r\n", "not a decimal"),
        ("v=0\r\nm=audio RTP/AVP 0\r\n", "not a decimal"),
        ("v=0\r\nm=audio 49170\r\n", "m= needs"),
        ("v=0\r\nm=audio 65536 RTP/AVP 0\r\n", "out of range"),
        ("v=0\r\nm=audio -1 RTP/AVP 0\r\n", "not a decimal"),
        ("v=0\r\nm=audio +5 RTP/AVP 0\r\n", "not a decimal"),
        ("v=0\r\nm=audio \u0665 RTP/AVP 0\r\n", "not a decimal"),
        ("v=0\r\nm=audio 1/0 RTP/AVP 0\r\n", "out of range"),
        ("v=0\r\nm=audio 1/ RTP/AVP 0\r\n", "not a decimal"),
        ("v=0\r\nm=audio 1 RTP/AVP 0\r\ns=late\r\n", "after the first m="),
        ("v=0\r\nm=audio 1 RTP/AVP 0\r\nt=0 0\r\n", "after the first m="),
        ("v=0\r\na=\r\n", "attribute name"),
        ("v=0\r\na=:x\r\n", "attribute name"),
        (
            "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 a/1\r\na=rtpmap:96 b/1\r\n",
            "second rtpmap",
        ),
        (
            "v=0\r\nm=audio 1 RTP/AVP 96\r\nt=" + "9" * 5000 + " 0\r\n",
            "after the first",
        ),
        ("v=0\r\nt=" + "9" * 5000 + " 0\r\n", "not a decimal"),
    ],
)
def test_malformed_raises_sdp_error(body: str, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        parse_sdp(body)


def test_sdp_error_is_a_parse_error_answered_with_400() -> None:
    with pytest.raises(ParseError) as info:
        parse_sdp(b"garbage")
    assert isinstance(info.value, SdpError)
    assert info.value.status == 400


def test_line_limit() -> None:
    at_limit = "v=0\r\n" + "a=x\r\n" * (MAX_LINES - 1)
    assert len(parse_sdp(at_limit).attributes) == MAX_LINES - 1
    with pytest.raises(SdpError, match="lines"):
        parse_sdp(at_limit + "a=x\r\n")
    # Trailing empty lines do not count towards the limit.
    assert len(parse_sdp(at_limit + "\r\n" * 5000).attributes) == MAX_LINES - 1


def test_media_limit() -> None:
    at_limit = sdp(*BASE, *(["m=audio 0 RTP/AVP 0"] * MAX_MEDIA))
    assert len(parse_sdp(at_limit).media) == MAX_MEDIA
    with pytest.raises(SdpError, match="media sections"):
        parse_sdp(at_limit + "m=audio 0 RTP/AVP 0\r\n")


def test_non_text_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_sdp(123)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# fuzzing: anything that is not valid SDP ends in SdpError, nothing else

# Mostly well-formed lines (so accepted bodies with media get exercised too),
# mixed with random letter=value lines and mostly-valid line endings.
_GOOD_LINES = st.sampled_from(
    [
        "o=- 1 1 IN IP4 h",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "c=IN IP4 224.1.1.1/127/3",
        "c=IN IP6 ::1/2",
        "t=0 0",
        "b=AS:64",
        "i=x",
        "m=audio 0 RTP/AVP 0",
        "m=audio 4000 RTP/AVP 0 8 96 101",
        "m=video 5000/2 RTP/AVP 96 31",
        "m=video 0 RTP/SAVPF 97",
        "m=image 6000 udptl t38",
        "a=rtpmap:96 H264/90000",
        "a=rtpmap:97 opus/48000/2",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:96 x=1",
        "a=sendonly",
        "a=inactive",
        "a=ptime:20",
    ]
)
_RANDOM_LINES = st.builds(
    lambda t, v: f"{t}={v}",
    st.sampled_from(list("vosiuepcbtrzkamxV") + ["", "mm", " "]),
    st.text(max_size=30),
)
_LINES = st.one_of(_GOOD_LINES, _GOOD_LINES, _GOOD_LINES, _RANDOM_LINES)
_EOLS = st.one_of(st.sampled_from(["\r\n", "\n"]), st.sampled_from(["\r\n", "\r", ""]))


def _check(body: bytes | str) -> None:
    try:
        desc = parse_sdp(body)
    except SdpError:
        return
    # Anything accepted must be usable by the helpers without raising.
    assert desc.version == 0
    hash(desc)
    desc.has_active_video  # noqa: B018
    for kind in ("audio", "video"):
        desc.codec_set(kind)
    for m in desc.media:
        assert 0 <= m.port <= 65535
        m.codecs  # noqa: B018
        m.direction  # noqa: B018
        desc.connection_for(m)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(body: bytes) -> None:
    _check(body)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=256))
def test_fuzz_arbitrary_text(body: str) -> None:
    _check(body)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_LINES, _EOLS), max_size=25), st.booleans())
def test_fuzz_sdp_shaped_lines(lines: list[tuple[str, str]], prefix_v: bool) -> None:
    body = ("v=0\r\n" if prefix_v else "") + "".join(line + eol for line, eol in lines)
    _check(body)
    _check(body.encode("utf-8", "surrogatepass"))


_MEDIA_SECTIONS = st.lists(
    st.tuples(
        st.sampled_from(["audio", "video", "application"]),
        st.integers(0, 65535),
        st.lists(st.integers(0, 127), min_size=1, max_size=6, unique=True),
        st.sampled_from([None, "sendrecv", "sendonly", "recvonly", "inactive"]),
        st.booleans(),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(_MEDIA_SECTIONS, st.sampled_from(["\r\n", "\n"]))
def test_fuzz_well_formed_is_accepted(sections: list[tuple[str, int, list[int], str | None, bool]], eol: str) -> None:
    lines = list(BASE)
    for kind, port, pts, direction, own_c in sections:
        lines.append(f"m={kind} {port} RTP/AVP {' '.join(map(str, pts))}")
        if own_c:
            lines.append("c=IN IP6 2001:db8::1")
        lines.extend(f"a=rtpmap:{pt} X{pt}/8000" for pt in pts if pt >= 96)
        if direction:
            lines.append(f"a={direction}")
    desc = parse_sdp(eol.join(lines) + eol)
    assert len(desc.media) == len(sections)
    assert desc.has_active_video == any(k == "video" and p != 0 for k, p, *_ in sections)
    for m, (kind, port, pts, direction, own_c) in zip(desc.media, sections, strict=True):
        assert (m.media, m.port, m.formats) == (kind, port, tuple(map(str, pts)))
        assert m.direction == (direction or "sendrecv")
        assert desc.connection_for(m) == (m.connection if own_c else desc.connection)
        expected = [
            f"X{pt}" if pt >= 96 else STATIC_PAYLOAD_TYPES[pt].name
            for pt in pts
            if pt >= 96 or pt in STATIC_PAYLOAD_TYPES
        ]
        assert m.codecs == tuple(dict.fromkeys(expected))


@pytest.mark.parametrize(
    "text",
    [
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:x opus/48000\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:128 opus/48000\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus/0\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus/48k\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2/1\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 /48000\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus/48000 x\r\n",
    ],
)
def test_malformed_rtpmap_is_tolerated(text: str) -> None:
    desc = parse_sdp(text)
    media = desc.media[0]
    assert media.rtpmap == {}
    assert any(name == "rtpmap" for name, _ in media.attributes)
