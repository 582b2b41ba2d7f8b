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


_ESCAPED_CACHE: dict[frozenset[str], re.Pattern[str]] = {}


def check_escaped(s: str, allowed: frozenset[str], what: str) -> str:
    """Validate `s` as 1*(allowed / escaped); return it unchanged."""
    p = _ESCAPED_CACHE.get(allowed)
    if p is None:
        cls = "".join(re.escape(c) for c in sorted(allowed))
        p = _ESCAPED_CACHE[allowed] = re.compile(f"(?:[{cls}]|%[0-9A-Fa-f]{{2}})+")
    if p.fullmatch(s) is None:
        if not s:
            raise ParseError(f"empty {what}")
        raise ParseError(f"invalid character or escape in {what}: {s[:60]!r}")
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
    return _IPV4.fullmatch(s) is not None


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


_HOSTNAME = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?")
_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")


def is_hostname(s: str) -> bool:
    """hostname = *( domainlabel "." ) toplabel [ "." ] (RFC 3261 §25.1)."""
    return len(s) <= 255 and _HOSTNAME.fullmatch(s) is not None


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


_QUOTED = re.compile(r'"((?:[^"\\\r\n]|\\[^\r\n])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_TOKEN_CLASS = "".join(re.escape(c) for c in sorted(TOKEN_CHARS))
_PVALUE_CLASS = "".join(re.escape(c) for c in sorted(PARAM_VALUE_CHARS))
# SEMI generic-param: SWS ";" SWS token [ SWS "=" SWS ( quoted-string / value ) ]
_PARAM = re.compile(
    rf'[ \t]*;[ \t]*([{_TOKEN_CLASS}]+)(?:[ \t]*=[ \t]*("(?:[^"\\\r\n]|\\[^\r\n])*"|[{_PVALUE_CLASS}]+))?'
)
_RUN_CACHE: dict[frozenset[str], re.Pattern[str]] = {}
_UNTIL_CACHE: dict[str, re.Pattern[str]] = {}


def _run_re(allowed: frozenset[str]) -> re.Pattern[str]:
    """One compiled character-class regex per character set: the scanner's
    loops run in C instead of one Python iteration per character."""
    p = _RUN_CACHE.get(allowed)
    if p is None:
        p = _RUN_CACHE[allowed] = re.compile("[" + "".join(re.escape(c) for c in sorted(allowed)) + "]*")
    return p


def _until_re(stops: str) -> re.Pattern[str]:
    p = _UNTIL_CACHE.get(stops)
    if p is None:
        p = _UNTIL_CACHE[stops] = re.compile("[^" + "".join(re.escape(c) for c in stops) + "]*", re.S)
    return p


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
        s, n = self.s, self.n
        while self.i < n and s[self.i] in WSP:
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
        m = _run_re(allowed).match(self.s, start)
        self.i = m.end() if m else start
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
        m = _QUOTED.match(self.s, self.i)
        if m is None:
            raise ParseError(f"unterminated quoted string in {what}")
        self.i = m.end()
        text = m.group(1)
        return _QUOTED_PAIR.sub(r"\1", text) if "\\" in text else text

    def until(self, stops: str) -> str:
        start = self.i
        m = _until_re(stops).match(self.s, start)
        self.i = m.end() if m else start
        return self.s[start : self.i]


Params = tuple[tuple[str, "str | None"], ...]


def parse_header_params(sc: Scanner, what: str, stop: str = ",") -> Params:
    """*( SEMI generic-param ) up to end of value or an unquoted `stop`.

    Names keep their case as written (compare with :func:`param`); quoted
    values keep their quotes so that serialization round-trips.
    """
    params: list[tuple[str, str | None]] = []
    s, n = sc.s, sc.n
    while True:
        sc.skip_ws()
        i = sc.i
        if i >= n or (stop and s[i] in stop):
            return tuple(params)
        m = _PARAM.match(s, i)
        if m is None:
            raise ParseError(f"bad parameter in {what} at {s[i : i + 20]!r}")
        params.append((m.group(1), m.group(2)))
        sc.i = m.end()


def param(params: Params, name: str) -> str | None:
    """Value of the first parameter called `name` (case-insensitive); unquoted."""
    lname = name.lower()
    n = len(lname)
    for k, v in params:
        if len(k) == n and (k == lname or k.lower() == lname):
            if v is not None and v.startswith('"'):
                return Scanner(v).quoted("parameter")
            return v
    return None


def has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    n = len(lname)
    for k, _ in params:
        if len(k) == n and (k == lname or k.lower() == lname):
            return True
    return False


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def split_commas(value: str) -> list[str]:
    """Split a list header at top-level commas (outside quotes and <>).

    Empty elements are kept (as "") so that grammars which forbid them can
    say so; a quote or bracket left open is a ParseError.
    """
    if '"' not in value:
        fast = _split_commas_unquoted(value)
        if fast is not None:
            return fast
    return _split_commas_scan(value)


def _split_commas_unquoted(value: str) -> list[str] | None:
    """split_commas for a value without quotes, at C speed (str.split and
    count, not a character loop): every Via/Route/Contact list a proxy
    relays.  None when brackets are not simple <...> pairs: the scanner
    then decides, and reports the error."""
    out: list[str] = []
    cur: str | None = None
    for part in value.split(","):
        cur = part if cur is None else f"{cur},{part}"
        lt = cur.count("<")
        if lt != cur.count(">"):
            continue  # a comma inside <...>: the element goes on
        if lt > 1 or (lt == 1 and cur.find("<") > cur.find(">")):
            return None
        out.append(cur.strip(WSP))
        cur = None
    return out if cur is None else None


def _split_commas_scan(value: str) -> list[str]:
    """The character scanner (the reference for the fast path)."""
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
