"""Lexical building blocks of the SIP grammar (RFC 3261 §25.1).

These functions are the reference: the pure-Python parser uses them for
everything, the Cython parser uses them as its fallback whenever a value is
outside its fast path, and the typed header accessors use them on first use.
Every function raises :class:`~sipcore.errors.ParseError` on bad input and
never anything else.
"""

from __future__ import annotations

import re
import string

from sipcore.errors import ParseError

ALPHANUM = frozenset(string.ascii_letters + string.digits)
TOKEN_CHARS = ALPHANUM | frozenset("-.!%*_+`'~")
WORD_CHARS = TOKEN_CHARS | frozenset('()<>:\\"/[]?{}')
MARK = frozenset("-_.!~*'()")
UNRESERVED = ALPHANUM | MARK
USER_CHARS = UNRESERVED | frozenset("&=+$,;?/")
PASSWORD_CHARS = UNRESERVED | frozenset("&=+$,")
PARAM_CHARS = UNRESERVED | frozenset("[]/:&+$")
HNV_CHARS = UNRESERVED | frozenset("[]/?:+$")
HEX = frozenset(string.hexdigits)
# Header parameter values: token / host / quoted-string (gen-value).  A host
# may be an IPv6 reference, and RFC 5118 §4.5 shows `received` without the
# brackets, so ':' '[' ']' are accepted next to the token characters.
PARAM_VALUE_CHARS = TOKEN_CHARS | frozenset(":[]")
WSP = " \t"

_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")


def unfold(value: str) -> str:
    """Replace every line fold (LWS, RFC 3261 §7.3.1) by a single SP."""
    return _FOLD.sub(" ", value)


def is_token(s: str) -> bool:
    return bool(s) and all(c in TOKEN_CHARS for c in s)


def check_escaped(s: str, allowed: frozenset[str], what: str) -> str:
    """Validate `s` as 1*(allowed / escaped); return it unchanged."""
    i, n = 0, len(s)
    if n == 0:
        raise ParseError(f"empty {what}")
    while i < n:
        c = s[i]
        if c == "%":
            if i + 2 >= n:
                raise ParseError(f"truncated escape in {what}")
            if s[i + 1] not in HEX or s[i + 2] not in HEX:
                raise ParseError(f"bad escape in {what}")
            i += 3
            continue
        if c not in allowed:
            raise ParseError(f"invalid character {c!r} in {what}")
        i += 1
    return s


def unescape(s: str) -> str:
    """Undo %-escaping (RFC 3261 §19.1.2); invalid UTF-8 is kept as surrogates."""
    if "%" not in s:
        return s
    out = bytearray()
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "%" and i + 2 < n and s[i + 1] in HEX and s[i + 2] in HEX:
            out.append(int(s[i + 1 : i + 3], 16))
            i += 3
        else:
            out += c.encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def is_ipv4(s: str) -> bool:
    parts = s.split(".")
    return len(parts) == 4 and all(1 <= len(p) <= 3 and p.isdigit() and p.isascii() for p in parts)


def is_ipv6(s: str) -> bool:
    """IPv6address as RFC 3261 writes it (hexseq with '::' and an optional IPv4 tail).

    Deliberately lenient: RFC 5118 §4.10 asks parsers to tolerate the three-colon
    form that the RFC 3261 ABNF admits, so only the character set, the group
    sizes and the presence of at least two colons are checked.
    """
    if s.count(":") < 2 or len(s) > 45:
        return False
    groups = s.split(":")
    tail = groups[-1]
    if "." in tail:
        if not is_ipv4(tail):
            return False
        groups = groups[:-1]
    for g in groups:
        if len(g) > 4 or any(c not in HEX for c in g):
            return False
    return True


def is_hostname(s: str) -> bool:
    """hostname = *( domainlabel "." ) toplabel [ "." ] (RFC 3261 §25.1)."""
    if not s or len(s) > 255:
        return False
    labels = s[:-1].split(".") if s.endswith(".") else s.split(".")
    for label in labels:
        if not label or label[0] == "-" or label[-1] == "-":
            return False
        if any(c not in ALPHANUM and c != "-" for c in label):
            return False
    return labels[-1][0].isalpha()


def check_host(host: str) -> str:
    """Validate a host (hostname, IPv4 or bracketed IPv6 reference)."""
    if host.startswith("["):
        if not host.endswith("]") or not is_ipv6(host[1:-1]):
            raise ParseError(f"bad IPv6 reference {host!r}")
        return host
    if is_ipv4(host) or is_hostname(host):
        return host
    raise ParseError(f"bad host {host!r}")


def parse_port(s: str) -> int:
    if not s or not s.isascii() or not s.isdigit() or len(s) > 5:
        raise ParseError(f"bad port {s!r}")
    port = int(s)
    if port > 65535:
        raise ParseError(f"port out of range {s!r}")
    return port


def split_hostport(s: str) -> tuple[str, int | None]:
    """hostport = host [ ":" port ], host possibly an IPv6 reference."""
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ParseError(f"unterminated IPv6 reference {s!r}")
        host, rest = s[: end + 1], s[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ParseError(f"junk after IPv6 reference {s!r}")
    else:
        host, sep, rest = s.partition(":")
        rest = sep + rest
    check_host(host)
    port = parse_port(rest[1:]) if rest else None
    return host, port


class Scanner:
    """A cursor over one (unfolded) header value, for the LWS-tolerant grammars."""

    __slots__ = ("s", "i", "n")

    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0
        self.n = len(s)

    def at_end(self) -> bool:
        return self.i >= self.n

    def peek(self) -> str:
        return self.s[self.i] if self.i < self.n else ""

    def skip_ws(self) -> bool:
        start = self.i
        while self.i < self.n and self.s[self.i] in WSP:
            self.i += 1
        return self.i > start

    def accept(self, ch: str) -> bool:
        """SWS ch SWS: consume `ch` with surrounding whitespace if it is next."""
        save = self.i
        self.skip_ws()
        if self.i < self.n and self.s[self.i] == ch:
            self.i += 1
            self.skip_ws()
            return True
        self.i = save
        return False

    def expect(self, ch: str, what: str) -> None:
        if not self.accept(ch):
            raise ParseError(f"expected {ch!r} in {what}")

    def run(self, allowed: frozenset[str]) -> str:
        start = self.i
        while self.i < self.n and self.s[self.i] in allowed:
            self.i += 1
        return self.s[start : self.i]

    def token(self, what: str) -> str:
        t = self.run(TOKEN_CHARS)
        if not t:
            raise ParseError(f"expected a token in {what}")
        return t

    def quoted(self, what: str) -> str:
        """quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE; returns the unescaped text."""
        if self.peek() != '"':
            raise ParseError(f"expected a quoted string in {what}")
        self.i += 1
        out: list[str] = []
        s, n = self.s, self.n
        while self.i < n:
            c = s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\":
                if self.i + 1 >= n:
                    break
                nxt = s[self.i + 1]
                if nxt in "\n\r":
                    raise ParseError(f"bad quoted-pair in {what}")
                out.append(nxt)
                self.i += 2
                continue
            if c in "\r\n":
                break
            out.append(c)
            self.i += 1
        raise ParseError(f"unterminated quoted string in {what}")

    def until(self, stops: str) -> str:
        start = self.i
        while self.i < self.n and self.s[self.i] not in stops:
            self.i += 1
        return self.s[start : self.i]


Params = tuple[tuple[str, "str | None"], ...]


def parse_header_params(sc: Scanner, what: str, stop: str = ",") -> Params:
    """*( SEMI generic-param ) up to end of value or an unquoted `stop`.

    Names keep their case as written (compare with :func:`param`); quoted
    values keep their quotes so that serialization round-trips.
    """
    params: list[tuple[str, str | None]] = []
    while True:
        save = sc.i
        sc.skip_ws()
        if sc.at_end() or (stop and sc.peek() in stop):
            sc.i = save if sc.at_end() else sc.i
            return tuple(params)
        if not sc.accept(";"):
            raise ParseError(f"expected ';' in {what}, got {sc.peek()!r}")
        name = sc.token(what)
        value: str | None = None
        if sc.accept("="):
            if sc.peek() == '"':
                start = sc.i
                sc.quoted(what)
                value = sc.s[start : sc.i]
            else:
                value = sc.run(PARAM_VALUE_CHARS)
                if not value:
                    raise ParseError(f"empty value for parameter {name!r} in {what}")
        params.append((name, value))


def param(params: Params, name: str) -> str | None:
    """Value of the first parameter called `name` (case-insensitive); unquoted."""
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            if v is not None and v.startswith('"'):
                return Scanner(v).quoted("parameter")
            return v
    return None


def has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(k.lower() == lname for k, _ in params)


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def split_commas(value: str) -> list[str]:
    """Split a list header at top-level commas (outside quotes and <>).

    Empty elements are kept (as "") so that grammars which forbid them can
    say so; a quote or bracket left open is a ParseError.
    """
    out: list[str] = []
    start = 0
    i, n = 0, len(value)
    in_q = in_a = False
    while i < n:
        c = value[i]
        if in_q:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_q = False
        elif c == '"':
            in_q = True
        elif c == "<":
            if in_a:
                raise ParseError("nested '<' in header value")
            in_a = True
        elif c == ">":
            in_a = False
        elif c == "," and not in_a:
            out.append(value[start:i].strip(WSP))
            start = i + 1
        i += 1
    if in_q:
        raise ParseError("unterminated quoted string in header value")
    if in_a:
        raise ParseError("unterminated '<' in header value")
    out.append(value[start:].strip(WSP))
    return out


def parse_uint(value: str, what: str, maximum: int) -> int:
    """1*DIGIT with an upper bound (leading zeros allowed, RFC 4475 §3.1.1.1)."""
    v = value.strip(WSP)
    if not v or not v.isascii() or not v.isdigit():
        raise ParseError(f"{what} is not a number: {value!r}")
    if len(v) > 20 or int(v) > maximum:
        raise ParseError(f"{what} out of range: {value!r}")
    return int(v)


def quote(text: str) -> str:
    """Render `text` as a quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
