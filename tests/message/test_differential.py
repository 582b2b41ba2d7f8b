"""The Cython parser against the reference: same model or same error class.

Inputs: the whole corpus, random mutations of it (byte flips, deletions,
insertions of grammar-significant bytes, line swaps and duplications,
truncations) and arbitrary bytes from hypothesis.  Neither parser may raise
anything but a SipcoreError, whatever the input.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcore.errors import SipcoreError
from sipcore.message import _pyparser
from sipcore.message.limits import ParserLimits

from ..conftest import C_PARSE, TESTDATA

CORPUS = sorted(
    [p.read_bytes() for p in (TESTDATA / "rfc4475").glob("*.dat")]
    + [p.read_bytes() for p in (TESTDATA / "rfc5118" / "wire").glob("*.dat")]
    + [p.read_bytes() for p in (TESTDATA / "bench-corpus").glob("*.sip")]
)
SIGNIFICANT = b' \t\r\n:;,=<>"\\@[]/?%.-+0123456789SIPsipVvFfTt'


def outcome(parse: Callable[..., Any], data: bytes, limits: ParserLimits | None = None) -> tuple[Any, ...]:
    try:
        msg = parse(data) if limits is None else parse(data, limits)
    except SipcoreError as e:
        return ("error", type(e).__name__)
    except Exception as e:  # pragma: no cover - a failure is the point of the test
        pytest.fail(f"{parse.__module__} raised {type(e).__name__}: {e!r} on {data[:200]!r}")
    return ("ok", msg._snapshot())


def same(data: bytes, limits: ParserLimits | None = None) -> None:
    assert C_PARSE is not None
    py = outcome(_pyparser.parse, data, limits)
    c = outcome(C_PARSE, data, limits)
    assert py == c, f"parsers disagree on {data!r}"


@pytest.mark.parametrize("i", range(len(CORPUS)))
def test_corpus_identical(i: int) -> None:
    same(CORPUS[i])


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(b) + 1) if b else 0
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1 and b:
            del b[pos : pos + rng.randint(1, 8)]
        elif op == 2:
            b[pos:pos] = bytes([SIGNIFICANT[rng.randrange(len(SIGNIFICANT))]])
        elif op == 3:
            lines = bytes(b).split(b"\r\n")
            if len(lines) > 3:
                i, j = rng.randrange(1, len(lines)), rng.randrange(1, len(lines))
                lines[i], lines[j] = lines[j], lines[i]
                b = bytearray(b"\r\n".join(lines))
        elif op == 4:
            lines = bytes(b).split(b"\r\n")
            if len(lines) > 2:
                i = rng.randrange(1, len(lines))
                lines.insert(i, lines[i])
                b = bytearray(b"\r\n".join(lines))
        elif op == 5:
            del b[pos:]
        else:
            b[pos:pos] = rng.choice([b"\r\n ", b" ", b";", b",", b"\r\n", b"%", b'"', b"<", b">", b"\xc3\xa9"])
    return bytes(b)


@pytest.mark.parametrize("seed", range(20))
def test_mutations_agree(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        same(mutate(rng, rng.choice(CORPUS)))


def test_limits_agree() -> None:
    small = ParserLimits(max_message_bytes=600, max_headers=6, max_line_bytes=60)
    for data in CORPUS:
        same(data, small)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    same(data)


_line = st.sampled_from(
    [
        b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
        b"v: SIP/2.0/TCP [::1]:5060;rport",
        b"From: <sip:a@b>;tag=1",
        b'f: "A" <sip:a@b.c>;tag=x',
        b"To: sip:b@c",
        b"t: B <sip:b@c>;tag=2",
        b"Call-ID: x@y",
        b"i: abc",
        b"CSeq: 1 INVITE",
        b"CSeq: 2 ACK",
        b"Max-Forwards: 70",
        b"Content-Length: 0",
        b"l: 3",
        b"Contact: *",
        b"Route: <sip:p;lr>",
        b" folded",
        b"X: y",
    ]
)
_start = st.sampled_from(
    [
        b"INVITE sip:b@c SIP/2.0",
        b"ACK sip:b@c.d:5060;transport=tcp SIP/2.0",
        b"SIP/2.0 200 OK",
        b"SIP/2.0 180 ",
        b"sip/2.0 100 Trying",
        b"INVITE sips:[::1]:5061 SIP/2.0",
        b"FOO tel:+1 SIP/2.0",
    ]
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_start, st.lists(_line, max_size=12), st.binary(max_size=8), st.sampled_from([b"\r\n", b"\n"]))
def test_sip_shaped(start: bytes, lines: list[bytes], body: bytes, eol: bytes) -> None:
    same(eol.join([start, *lines]) + eol + eol + body)
