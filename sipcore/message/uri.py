"""SIP, SIPS, tel and generic absolute URIs (RFC 3261 §19.1, §25.1; RFC 3966).

A :class:`URI` keeps every part as written (escapes included) so that it
serializes back unchanged; :attr:`URI.user_unescaped` and friends give the
decoded values used for comparisons (RFC 3261 §19.1.4).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sipcore.errors import ParseError
from sipcore.message.grammar import (
    ALPHANUM,
    HNV_CHARS,
    PARAM_CHARS,
    PASSWORD_CHARS,
    UNRESERVED,
    USER_CHARS,
    Params,
    check_escaped,
    format_params,
    is_hostname,
    is_ipv4,
    param,
    split_hostport,
    unescape,
)

_SCHEME_CHARS = ALPHANUM | frozenset("+-.")
_URIC = UNRESERVED | frozenset(";/?:@&=+$,")


class URI(NamedTuple):
    """A parsed URI.  For `sip`/`sips` every field is set; for other schemes
    only `scheme` and `opaque` (the text after the colon) are, and `tel`
    additionally fills `user` (the number) and `params`."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(k.lower() == lname for k, _ in self.params)

    @property
    def transport(self) -> str | None:
        t = self.param("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        return self.has_param("lr")

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    @property
    def host_lower(self) -> str:
        return self.host.lower()

    def aor(self) -> str:
        """Address-of-record key: scheme:user@host, host lowercased, user unescaped."""
        if not self.is_sip:
            return str(self)
        user = self.user_unescaped
        return f"{self.scheme}:{user}@{self.host_lower}" if user else f"{self.scheme}:{self.host_lower}"

    def __str__(self) -> str:
        if not self.is_sip:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        out.append(format_params(self.params))
        if self.headers:
            out += ["?", "&".join(f"{k}={v}" for k, v in self.headers)]
        return "".join(out)


def _parse_uri_params(s: str) -> Params:
    out: list[tuple[str, str | None]] = []
    for item in s.split(";"):
        name, eq, value = item.partition("=")
        check_escaped(name, PARAM_CHARS, "URI parameter name")
        if eq:
            check_escaped(value, PARAM_CHARS, "URI parameter value")
        out.append((name, value if eq else None))
    return tuple(out)


def _parse_uri_headers(s: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in s.split("&"):
        name, eq, value = item.partition("=")
        if not eq:
            raise ParseError(f"URI header without '=': {item!r}")
        check_escaped(name, HNV_CHARS, "URI header name")
        if value:
            check_escaped(value, HNV_CHARS, "URI header value")
        out.append((name, value))
    return tuple(out)


def _parse_sip_uri(scheme: str, rest: str) -> URI:
    user = password = None
    if "@" in rest:
        userinfo, _, hostpart = rest.partition("@")
        if "@" in hostpart:
            raise ParseError("more than one '@' in SIP URI")
        user, sep, pw = userinfo.partition(":")
        check_escaped(user, USER_CHARS, "URI user")
        if sep:
            if pw:
                check_escaped(pw, PASSWORD_CHARS, "URI password")
            password = pw
    else:
        hostpart = rest
    hostpart, qsep, headers_s = hostpart.partition("?")
    hostport, psep, params_s = hostpart.partition(";")
    host, port = split_hostport(hostport)
    params = _parse_uri_params(params_s) if psep else ()
    headers = _parse_uri_headers(headers_s) if qsep else ()
    return URI(scheme, user, password, host, port, params, headers, None)


# The common shape of a SIP URI, matched in one step: lower-case scheme,
# optional user without escapes or password, hostname or IPv4, port,
# parameters without escapes, no headers.  Anything else takes the full
# grammar below; both give the same URI for what this pattern accepts.
_PCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]"
_FAST_SIP = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,;/]+)@)?([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?"
    rf"((?:;{_PCHAR}+(?:={_PCHAR}+)?)*)"
)


def _fast_sip(text: str) -> URI | None:
    m = _FAST_SIP.fullmatch(text)
    if m is None:
        return None
    scheme, user, host, port_s, params_s = m.groups()
    if not (is_ipv4(host) or is_hostname(host)):
        return None
    port = int(port_s) if port_s else None
    if port is not None and port > 65535:
        return None
    params: Params = ()
    if params_s:
        # A plain loop: nested generator expressions cost three times as much here.
        items = []
        for item in params_s[1:].split(";"):
            name, eq, value = item.partition("=")
            items.append((name, value if eq else None))
        params = tuple(items)
    return URI(scheme, user, None, host, port, params, (), None)


def parse_uri(text: str) -> URI:
    """Parse a URI as it appears in a Request-URI or inside < >."""
    if text.startswith("sip"):
        fast = _fast_sip(text)
        if fast is not None:
            return fast
    return parse_uri_full(text)


def parse_uri_full(text: str) -> URI:
    """The whole grammar, without the fast path (the reference for tests)."""
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not scheme[0].isalpha() or any(c not in _SCHEME_CHARS for c in scheme):
        raise ParseError(f"not a URI: {text[:80]!r}")
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips"):
        return _parse_sip_uri(lscheme, rest)
    if not rest:
        raise ParseError(f"empty {scheme} URI")
    check_escaped(rest, _URIC, "URI")
    if lscheme == "tel":
        number, _, params_s = rest.partition(";")
        params = _parse_uri_params(params_s) if params_s else ()
        return URI(lscheme, number, None, "", None, params, (), rest)
    return URI(lscheme, None, None, "", None, (), (), rest)
