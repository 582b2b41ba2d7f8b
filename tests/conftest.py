"""Shared fixtures: `parser` (ids py/c), test-data paths, the report header."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sipcore import message
from sipcore.message import _pyparser

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SIPCORE_SHARED", ROOT.parent / "shared"))
TESTDATA = SHARED / "testdata" / "sip"


# The facade already decided (SIPCORE_NO_EXTENSIONS / SIPCORE_REQUIRE_EXTENSIONS).
C_PARSE = message.c_parse
IMPLS: dict[str, Callable[..., Any] | None] = {"py": _pyparser.parse, "c": C_PARSE}


def pytest_report_header(config: pytest.Config) -> str:
    c = "built" if C_PARSE is not None else "NOT available (pure-Python run)"
    return f"sipcore parsers: py reference; c extension {c}; facade uses {message.IMPLEMENTATION}"


# With SIPCORE_NO_EXTENSIONS=1 the run is pure Python by design: the `c`
# variants are not generated (rather than skipped), and the differential
# tests, which need both parsers, are not collected.  CI runs both modes and
# SIPCORE_REQUIRE_EXTENSIONS=1 turns a missing extension into an error.
AVAILABLE = [name for name, fn in IMPLS.items() if fn is not None]
collect_ignore = [] if C_PARSE is not None else ["message/test_differential.py"]


@pytest.fixture(params=AVAILABLE)
def parser(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Each parser test runs on every available implementation (ids py/c)."""
    fn = IMPLS[request.param]
    assert fn is not None
    return fn


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"shared test data not found at {TESTDATA} (set SIPCORE_SHARED)")
    return TESTDATA
