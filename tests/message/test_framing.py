"""Stream framer: every corpus message whole, byte by byte, at random splits."""

from __future__ import annotations

import random

import pytest

from sipcore.errors import MessageTooLarge, ParseError
from sipcore.message import parse
from sipcore.message.framing import (
    FramingError,
    KeepAlivePing,
    KeepAlivePong,
    MessageFramed,
    StreamFramer,
)
from sipcore.message.limits import ParserLimits

from ..conftest import TESTDATA

MESSAGES = [p.read_bytes() for p in sorted((TESTDATA / "bench-corpus").glob("*.sip"))] + [
    p.read_bytes() for p in sorted((TESTDATA / "rfc5118" / "wire").glob("*.dat")) if p.name != "ipv6-bad.dat"
]
STREAM = b"".join(MESSAGES)


def framed(chunks: list[bytes], limits: ParserLimits | None = None) -> list[object]:
    f = StreamFramer(limits) if limits else StreamFramer()
    out: list[object] = []
    for c in chunks:
        f.receive_data(c)
        out.extend(f.events())
    return out


def test_whole_stream() -> None:
    events = framed([STREAM])
    assert [e.data for e in events if isinstance(e, MessageFramed)] == MESSAGES


def test_byte_by_byte() -> None:
    events = framed([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert [e.data for e in events if isinstance(e, MessageFramed)] == MESSAGES


@pytest.mark.parametrize("seed", range(10))
def test_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), 40))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
    events = framed(chunks)
    assert [e.data for e in events if isinstance(e, MessageFramed)] == MESSAGES
    for e in events:
        assert isinstance(e, MessageFramed)
        parse(e.data)


def test_keepalives_reported() -> None:
    m = MESSAGES[0]
    events = framed([b"\r\n\r\n", m, b"\r\n", b"\r", b"\n", m, b"\r\n", m])
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "KeepAlivePing",
        "MessageFramed",
        "KeepAlivePing",
        "MessageFramed",
        "KeepAlivePong",
        "MessageFramed",
    ]
    assert isinstance(events[0], KeepAlivePing) and isinstance(events[4], KeepAlivePong)


def test_partial_ping_waits() -> None:
    f = StreamFramer()
    f.receive_data(b"\r\n")
    assert f.next_event() is None
    f.receive_data(b"\r\n")
    assert isinstance(f.next_event(), KeepAlivePing)


def test_body_split_waits_for_content_length() -> None:
    invite = MESSAGES[2]
    head, body = invite.split(b"\r\n\r\n", 1)
    f = StreamFramer()
    f.receive_data(head + b"\r\n\r\n" + body[:10])
    assert f.next_event() is None and f.buffered > 0
    f.receive_data(body[10:])
    e = f.next_event()
    assert isinstance(e, MessageFramed) and e.data == invite


@pytest.mark.parametrize("name", ["mcl01.dat", "ncl.dat"])
def test_undefined_framing_closes(name: str) -> None:
    data = (TESTDATA / "rfc4475" / name).read_bytes()
    events = framed([data, MESSAGES[0]])
    assert len(events) == 1 and isinstance(events[0], FramingError)
    assert isinstance(events[0].error, ParseError)


def test_size_limit_without_blank_line() -> None:
    events = framed([b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 200], ParserLimits(max_message_bytes=512))
    assert len(events) == 1 and isinstance(events[0], FramingError)
    assert isinstance(events[0].error, MessageTooLarge)


def test_size_limit_from_content_length() -> None:
    events = framed([b"MESSAGE sip:a@b SIP/2.0\r\nl: 999999\r\n\r\n"])
    assert isinstance(events[0], FramingError) and isinstance(events[0].error, MessageTooLarge)


def _rfc4475_streamable() -> list[str]:
    import json

    man = json.loads((TESTDATA / "rfc4475" / "manifest.json").read_text())
    out = []
    for name, v in man.items():
        if name.startswith("_") or v["verdict"] != "VALID":
            continue
        msg = parse((TESTDATA / "rfc4475" / name).read_bytes())
        if "Content-Length" in msg.headers and name != "dblreq.dat":
            out.append(name)
    return sorted(out)


@pytest.mark.parametrize("name", _rfc4475_streamable())
def test_rfc4475_messages_whole_bytewise_random(name: str) -> None:
    data = (TESTDATA / "rfc4475" / name).read_bytes()
    expected = parse(data).to_bytes()
    rng = random.Random(name)
    cuts = sorted(rng.sample(range(1, len(data)), min(10, len(data) - 1)))
    splits = [
        [data],
        [data[i : i + 1] for i in range(len(data))],
        [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)],
    ]
    for chunks in splits:
        events = framed(chunks)
        assert [e.data for e in events if isinstance(e, MessageFramed)] == [expected]


def test_dblreq_on_a_stream_is_two_messages() -> None:
    data = (TESTDATA / "rfc4475" / "dblreq.dat").read_bytes()
    events = [e for e in framed([data]) if isinstance(e, MessageFramed)]
    # the INVITE's body is one octet longer than its Content-Length says, so
    # a stream sees a third (garbage) message: framing by length, as it must
    assert [parse(e.data).method for e in events[:2]] == ["REGISTER", "INVITE"]
    assert events[2].data == b"C\r\n\r\n"
