"""Typed header values (RFC 3261 §20, §25.1; RFC 5626; RFC 7616).

Each ``parse_*`` function takes an unfolded header value and returns an
immutable object, or raises :class:`~sipcore.errors.ParseError`.  They are
the reference grammar: the Cython parser falls back to them for anything
outside its fast path, so both parsers agree by construction there.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sipcore.errors import ParseError
from sipcore.message.grammar import (
    PARAM_VALUE_CHARS,
    TOKEN_CHARS,
    WORD_CHARS,
    WSP,
    Params,
    Scanner,
    check_host,
    format_params,
    has_param,
    param,
    parse_header_params,
    parse_port,
    parse_uint,
    quote,
)
from sipcore.message.uri import URI, parse_uri

CSEQ_MAX = 2**31 - 1
EXPIRES_MAX = 2**32 - 1


# --- Via (RFC 3261 §20.42) ---------------------------------------------------


class Via(NamedTuple):
    protocol: str  # "SIP/2.0"
    transport: str  # upper-case: UDP, TCP, TLS, SCTP, WS, WSS...
    host: str
    port: int | None
    params: Params = ()

    @property
    def branch(self) -> str | None:
        return param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return param(self.params, "received")

    @property
    def maddr(self) -> str | None:
        return param(self.params, "maddr")

    @property
    def has_rport(self) -> bool:
        return has_param(self.params, "rport")

    @property
    def rport(self) -> int | None:
        """The rport value the server filled in (RFC 3581), None when absent or empty."""
        v = param(self.params, "rport")
        return int(v) if v and v.isdigit() else None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def _parse_via_at(sc: Scanner) -> Via:
    what = "Via"
    name = sc.token(what)
    sc.expect("/", what)
    version = sc.token(what)
    sc.expect("/", what)
    transport = sc.token(what)
    if not sc.skip_ws():
        raise ParseError("expected whitespace before Via sent-by")
    if sc.peek() == "[":
        host = sc.until("]")
        if sc.peek() != "]":
            raise ParseError("unterminated IPv6 reference in Via")
        sc.i += 1
        host += "]"
    else:
        host = sc.run(TOKEN_CHARS)
    check_host(host)
    port = None
    if sc.accept(":"):
        port = parse_port(sc.run(TOKEN_CHARS))
    params = parse_header_params(sc, what)
    for k, v in params:
        if k.lower() in ("branch", "received", "maddr", "ttl") and v is None:
            raise ParseError(f"Via parameter {k} needs a value")
    return Via(f"{name}/{version}", transport.upper(), host, port, params)


def parse_via(value: str) -> Via:
    """One via-parm (a single element of a Via header)."""
    sc = Scanner(value)
    sc.skip_ws()
    via = _parse_via_at(sc)
    sc.skip_ws()
    if not sc.at_end():
        raise ParseError("junk after Via value")
    return via


def parse_via_list(value: str) -> list[Via]:
    sc = Scanner(value)
    sc.skip_ws()
    out = [_parse_via_at(sc)]
    while True:
        sc.skip_ws()
        if sc.at_end():
            return out
        sc.expect(",", "Via list")
        out.append(_parse_via_at(sc))


def parse_top_via(value: str) -> Via:
    """The first via-parm of a Via header field; the rest of the list is left
    for whoever needs it (a proxy reads the other elements only on responses)."""
    sc = Scanner(value)
    sc.skip_ws()
    via = _parse_via_at(sc)
    sc.skip_ws()
    if not sc.at_end() and sc.peek() != ",":
        raise ParseError("junk after Via value")
    return via


# --- name-addr / addr-spec (From, To, Contact, Route, Record-Route, Path) ----


class NameAddr(NamedTuple):
    uri: URI
    display_name: str | None = None
    params: Params = ()
    bracketed: bool = True

    @property
    def tag(self) -> str | None:
        return param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def with_params(self, params: Params) -> NameAddr:
        return NameAddr(self.uri, self.display_name, params, self.bracketed)

    # Contact parameters (RFC 3261 §20.10, RFC 5626 §4.1)
    @property
    def expires(self) -> int | None:
        v = self.param("expires")
        return None if v is None else parse_uint(v, "Contact expires", EXPIRES_MAX)

    @property
    def q(self) -> float | None:
        v = self.param("q")
        if v is None:
            return None
        if not re.fullmatch(r"(0(\.\d{0,3})?|1(\.0{0,3})?)", v):
            raise ParseError(f"bad q value {v!r}")
        return float(v)

    @property
    def instance(self) -> str | None:
        return self.param("+sip.instance")

    @property
    def reg_id(self) -> int | None:
        v = self.param("reg-id")
        return None if v is None else parse_uint(v, "reg-id", EXPIRES_MAX)

    def __str__(self) -> str:
        if self.display_name is not None:
            head = f"{quote(self.display_name)} <{self.uri}>"
        elif self.bracketed:
            head = f"<{self.uri}>"
        else:
            head = str(self.uri)
        return head + format_params(self.params)


_ADDR_SPEC_STOP = frozenset(" \t;,")


def _parse_name_addr_at(sc: Scanner, what: str, in_list: bool) -> NameAddr:
    sc.skip_ws()
    start = sc.i
    display: str | None = None
    if sc.peek() == '"':
        display = sc.quoted(what)
        sc.skip_ws()
        if sc.peek() != "<":
            raise ParseError(f"expected '<' after display name in {what}")
    else:
        words = []
        while True:
            t = sc.run(TOKEN_CHARS)
            if not t:
                break
            words.append(t)
            sc.skip_ws()
        if sc.peek() == "<":
            display = " ".join(words) if words else None
        else:
            sc.i = start
    if sc.peek() == "<":
        sc.i += 1
        text = sc.until(">")
        if sc.peek() != ">":
            raise ParseError(f"unterminated '<' in {what}")
        sc.i += 1
        if any(c in text for c in ' \t<"'):
            raise ParseError(f"whitespace or junk inside <> in {what}")
        uri = parse_uri(text)
        bracketed = True
    else:
        start = sc.i
        while sc.i < sc.n and sc.s[sc.i] not in _ADDR_SPEC_STOP:
            sc.i += 1
        text = sc.s[start : sc.i]
        # RFC 3261 §20.10: a URI with a comma, question mark or semicolon
        # must be enclosed in angle brackets.
        if "?" in text:
            raise ParseError(f"URI with '?' must be in <> in {what}")
        uri = parse_uri(text)
        bracketed = False
    params = parse_header_params(sc, what, "," if in_list else "")
    return NameAddr(uri, display, params, bracketed)


_TOKEN_RE = "[" + re.escape("".join(sorted(TOKEN_CHARS))) + "]"
_FAST_NAME_ADDR = re.compile(
    rf'[ \t]*(?:"([^"\\\r\n]*)"[ \t]*|({_TOKEN_RE}+(?:[ \t]+{_TOKEN_RE}+)*)[ \t]*)?<([^<>"\s]+)>'
    r"((?:[ \t]*;[^;,\"]*+)*+)[ \t]*"
)
_FAST_ADDR_SPEC = re.compile(r"[ \t]*(sips?:[^;,?\s\"<>]+)((?:[ \t]*;[^;,\"]*+)*+)[ \t]*")


def _fast_params(text: str) -> Params | None:
    """The *( SEMI generic-param ) tail of a value, or None to take the slow path."""
    if not text:
        return ()
    sc = Scanner(text)
    try:
        params = parse_header_params(sc, "parameters", "")
    except ParseError:
        return None
    return params


# The From/To/Contact values of a request come back in the next one: the
# REGISTER or INVITE that answers a challenge, a phone's refresh.  Their
# parses are immutable (NamedTuples all the way down), so they are shared.
# Bounded: emptied when full, and only short values are kept (these are
# parsed before any authentication, and a folded value can reach 64 KB), so
# a flood of distinct values costs one dict insert each and at most about
# 4096 * 256 characters.
_MEMO: dict[str, NameAddr] = {}
_MEMO_SIZE = 4096
_MEMO_MAX_VALUE = 256


def _fast_name_addr(value: str) -> NameAddr | None:
    """The common From/To/Contact shapes in one regex step; None for anything
    else, which the scanner-based grammar then decides (and reports)."""
    na = _MEMO.get(value)
    if na is None:
        na = _fast_name_addr_parse(value)
        if na is not None and len(value) <= _MEMO_MAX_VALUE:
            if len(_MEMO) >= _MEMO_SIZE:
                _MEMO.clear()
            _MEMO[value] = na
    return na


def _fast_name_addr_parse(value: str) -> NameAddr | None:
    m = _FAST_NAME_ADDR.fullmatch(value)
    if m is not None:
        quoted, words, uri_text, tail = m.groups()
        params = _fast_params(tail)
        if params is None:
            return None
        try:
            uri = parse_uri(uri_text)
        except ParseError:
            return None
        display = quoted if quoted is not None else (" ".join(words.split()) if words else None)
        return NameAddr(uri, display, params, True)
    m = _FAST_ADDR_SPEC.fullmatch(value)
    if m is not None:
        params = _fast_params(m.group(2))
        if params is None:
            return None
        try:
            uri = parse_uri(m.group(1))
        except ParseError:
            return None
        return NameAddr(uri, None, params, False)
    return None


def parse_name_addr(value: str, what: str = "name-addr") -> NameAddr:
    """From/To style value: ( name-addr / addr-spec ) *( SEMI param )."""
    fast = _fast_name_addr(value)
    if fast is not None:
        return fast
    return parse_name_addr_full(value, what)


def parse_name_addr_full(value: str, what: str = "name-addr") -> NameAddr:
    """The scanner-based grammar (the reference for the fast path)."""
    sc = Scanner(value)
    na = _parse_name_addr_at(sc, what, False)
    sc.skip_ws()
    if not sc.at_end():
        raise ParseError(f"junk after {what} value")
    return na


def parse_name_addr_list(value: str, what: str) -> list[NameAddr]:
    """Contact/Route/Record-Route/Path: comma-separated name-addrs."""
    if "," not in value:
        fast = _fast_name_addr(value)
        if fast is not None:
            return [fast]
    return parse_name_addr_list_full(value, what)


def parse_name_addr_list_full(value: str, what: str) -> list[NameAddr]:
    """The scanner-based grammar (the reference for the fast path)."""
    sc = Scanner(value)
    out = [_parse_name_addr_at(sc, what, True)]
    while True:
        sc.skip_ws()
        if sc.at_end():
            return out
        sc.expect(",", what)
        out.append(_parse_name_addr_at(sc, what, True))


# --- scalars --------------------------------------------------------------------


class CSeq(NamedTuple):
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """CSeq = 1*DIGIT LWS Method; the number must be below 2**31 (§8.1.1.5)."""
    sc = Scanner(value)
    sc.skip_ws()
    digits = sc.run(frozenset("0123456789"))
    if not digits or not sc.skip_ws():
        raise ParseError(f"bad CSeq {value!r}")
    method = sc.token("CSeq")
    sc.skip_ws()
    if not sc.at_end():
        raise ParseError(f"junk after CSeq {value!r}")
    if len(digits) > 10 or int(digits) > CSEQ_MAX:
        raise ParseError("CSeq number out of range")
    return CSeq(int(digits), method)


def parse_call_id(value: str) -> str:
    """callid = word [ "@" word ]."""
    v = value.strip(WSP)
    left, at, right = v.partition("@")
    if not left or any(c not in WORD_CHARS for c in left):
        raise ParseError(f"bad Call-ID {value!r}")
    if at and (not right or any(c not in WORD_CHARS for c in right)):
        raise ParseError(f"bad Call-ID {value!r}")
    return v


def parse_max_forwards(value: str) -> int:
    return parse_uint(value, "Max-Forwards", 255)


def parse_content_length(value: str) -> int:
    return parse_uint(value, "Content-Length", 2**31 - 1)


def parse_expires(value: str) -> int:
    return parse_uint(value, "Expires", EXPIRES_MAX)


_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT"
)


def parse_date(value: str) -> str:
    """SIP-date = rfc1123-date, always in GMT (§20.17)."""
    v = value.strip(WSP)
    if not _DATE.fullmatch(v):
        raise ParseError(f"bad Date {value!r}")
    return v


# --- authentication (RFC 3261 §22, RFC 7616, RFC 8760) ------------------------


class AuthHeader(NamedTuple):
    """A challenge (WWW-/Proxy-Authenticate) or credentials ((Proxy-)Authorization).

    `params` maps lower-case parameter names to unquoted values; `raw_params`
    keeps them as written for serialization.
    """

    scheme: str
    raw_params: tuple[tuple[str, str], ...]

    @property
    def params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.raw_params:
            out.setdefault(k.lower(), Scanner(v).quoted("auth-param") if v.startswith('"') else v)
        return out

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    @property
    def realm(self) -> str | None:
        return self.get("realm")

    @property
    def nonce(self) -> str | None:
        return self.get("nonce")

    @property
    def opaque(self) -> str | None:
        return self.get("opaque")

    @property
    def username(self) -> str | None:
        return self.get("username")

    @property
    def uri(self) -> str | None:
        return self.get("uri")

    @property
    def response(self) -> str | None:
        return self.get("response")

    @property
    def cnonce(self) -> str | None:
        return self.get("cnonce")

    @property
    def nc(self) -> str | None:
        return self.get("nc")

    @property
    def algorithm(self) -> str:
        return (self.get("algorithm") or "MD5").upper()

    @property
    def qop(self) -> str | None:
        return self.get("qop")

    @property
    def qop_options(self) -> tuple[str, ...]:
        q = self.get("qop")
        return tuple(x.strip() for x in q.split(",") if x.strip()) if q else ()

    @property
    def stale(self) -> bool:
        return (self.get("stale") or "").lower() == "true"

    @property
    def userhash(self) -> bool:
        return (self.get("userhash") or "").lower() == "true"

    def __str__(self) -> str:
        return self.scheme + " " + ", ".join(f"{k}={v}" for k, v in self.raw_params)


def parse_auth(value: str) -> AuthHeader:
    """auth-scheme LWS auth-param *(COMMA auth-param)."""
    sc = Scanner(value)
    sc.skip_ws()
    scheme = sc.token("auth scheme")
    params: list[tuple[str, str]] = []
    if not sc.skip_ws():
        if sc.at_end():
            return AuthHeader(scheme, ())
        raise ParseError("expected whitespace after auth scheme")
    while not sc.at_end():
        name = sc.token("auth-param")
        sc.expect("=", "auth-param")
        if sc.peek() == '"':
            start = sc.i
            sc.quoted("auth-param")
            v = sc.s[start : sc.i]
        else:
            v = sc.run(PARAM_VALUE_CHARS | frozenset("/"))
            if not v:
                raise ParseError(f"empty auth-param {name!r}")
        params.append((name, v))
        sc.skip_ws()
        if sc.at_end():
            break
        sc.expect(",", "auth-params")
    return AuthHeader(scheme, tuple(params))
