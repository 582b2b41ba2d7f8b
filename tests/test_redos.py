"""Hostile header values cost linear time (no regex backtracking blow-ups).

Each input is a worst case for a pattern that once backtracked (found by the
fast-path differential tests and a review of every regex that sees network
bytes).  The bound is three orders of magnitude above the real cost, so this
is a guard against exponential or quadratic regressions, not a benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from sipcore.auth.credentials import split_credentials
from sipcore.errors import ParseError, SipcoreError
from sipcore.message.framing import StreamFramer
from sipcore.message.headers import parse_name_addr, parse_name_addr_list
from sipcore.proxy.stateless import error_response

CASES: list[tuple[str, Callable[[], object]]] = [
    ("name-addr params then a quote", lambda: parse_name_addr("<sip:a@b>" + ";a " * 40 + '"')),
    ("addr-spec params then a comma", lambda: parse_name_addr("sip:a@b" + ";a " * 40 + ",")),
    ("valid contact, spaced params", lambda: parse_name_addr_list("<sip:a@b>" + " ;p" * 40 + ' ;q="x"', "Contact")),
    ("blanks then a quote", lambda: parse_name_addr("<sip:a@b>;" + " " * 8000 + '"')),
    ("unterminated quoted auth-param", lambda: split_credentials('Digest a="' + "x" * 8000)),
    ("long token auth junk", lambda: split_credentials("Digest " + "x" * 8000)),
    (
        "content-length line with a stray CR",
        lambda: StreamFramer().receive_data(b"INVITE sip:a@b SIP/2.0\r\nl:" + b" " * 8000 + b"\rx\r\n\r\n"),
    ),
    (
        "salvage line with a stray CR",
        lambda: error_response(b"INVITE sip:a@b SIP/2.0\r\nvia:" + b" " * 8000 + b"\rx\r\n\r\n", ParseError("x"), "t"),
    ),
]


@pytest.mark.parametrize("label, fn", CASES, ids=[c[0] for c in CASES])
def test_linear_time(label: str, fn: Callable[[], object]) -> None:
    t = time.perf_counter()
    try:
        fn()
    except SipcoreError:
        pass
    assert time.perf_counter() - t < 0.5, label
