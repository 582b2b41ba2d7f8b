"""SIP messages (sans-IO): model, parser facade, framing, SDP.

``parse`` is the Cython parser unless ``SIPCORE_NO_EXTENSIONS=1`` is set or
the extension is not built; ``SIPCORE_REQUIRE_EXTENSIONS=1`` turns a missing
extension into an ImportError instead of a silent fallback.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sipcore.message import _pyparser
from sipcore.message.limits import DEFAULT_LIMITS, ParserLimits
from sipcore.message.model import (
    HeaderField,
    Headers,
    Message,
    Request,
    Response,
    canonical_name,
    make_response,
    response_bytes,
)
from sipcore.message.uri import URI, parse_uri

ParseFn = Callable[..., Request | Response]


def _load_c() -> ParseFn | None:
    if os.environ.get("SIPCORE_NO_EXTENSIONS") == "1":
        return None
    try:
        from sipcore.message import _cparser  # type: ignore[attr-defined]
    except ImportError:
        if os.environ.get("SIPCORE_REQUIRE_EXTENSIONS") == "1":
            raise
        return None
    from sipcore.message import model

    model._fast_build_fields = _cparser.build_fields
    return _cparser.parse  # type: ignore[no-any-return]


c_parse: ParseFn | None = _load_c()
"""The Cython parser, or None when it is disabled or not built."""
IMPLEMENTATION = "c" if c_parse is not None else "py"
parse: ParseFn = c_parse if c_parse is not None else _pyparser.parse
py_parse: ParseFn = _pyparser.parse

__all__ = [
    "DEFAULT_LIMITS",
    "IMPLEMENTATION",
    "HeaderField",
    "Headers",
    "Message",
    "ParserLimits",
    "Request",
    "Response",
    "URI",
    "canonical_name",
    "make_response",
    "response_bytes",
    "parse",
    "parse_uri",
    "py_parse",
]
