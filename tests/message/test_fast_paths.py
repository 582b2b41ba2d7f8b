"""The regex fast paths against the full grammar they short-cut.

`parse_uri`, `parse_name_addr` and `parse_name_addr_list` first try a regex
for the common shapes and fall back to the full RFC 3261 grammar
(`parse_uri_full`, `parse_name_addr_full`, `parse_name_addr_list_full`).
Contract: for every input both give equal objects, or both raise
:class:`ParseError`; any other exception is a bug.  The private fast helpers
are also checked directly: they either decline (None) or agree with the full
grammar, and never raise.
"""

from __future__ import annotations

import string
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcore.errors import ParseError
from sipcore.message.grammar import _split_commas_scan, _split_commas_unquoted, split_commas
from sipcore.message.headers import (
    NameAddr,
    _fast_name_addr,
    parse_name_addr,
    parse_name_addr_full,
    parse_name_addr_list,
    parse_name_addr_list_full,
)
from sipcore.message.uri import URI, _fast_sip, parse_uri, parse_uri_full

from ..conftest import ROOT

# Sized so that the whole file runs in under 20 s; generation, not parsing, is the cost.
SETTINGS = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the comparison ----------------------------------------------------------------


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    try:
        result = fn(*args)
    except ParseError:
        return ("ParseError",)
    except Exception as e:  # pragma: no cover - a failure is the point of the test
        pytest.fail(f"{fn.__name__} raised {type(e).__name__}: {e!r} on {args[0]!r}")
    # NamedTuples compare as plain tuples: the repr also pins types and field names.
    return ("ok", result, repr(result))


def no_raise(fn: Callable[..., Any], arg: str) -> Any:
    try:
        return fn(arg)
    except Exception as e:  # pragma: no cover
        pytest.fail(f"{fn.__name__} raised {type(e).__name__}: {e!r} on {arg!r}")


def check_uri(text: str) -> None:
    full = outcome(parse_uri_full, text)
    assert outcome(parse_uri, text) == full, f"parse_uri != parse_uri_full on {text!r}"
    fast = no_raise(_fast_sip, text)
    if fast is not None:
        assert full[0] == "ok", f"_fast_sip accepts what the grammar rejects: {text!r}"
        assert (fast, repr(fast)) == full[1:], f"_fast_sip != parse_uri_full on {text!r}"


def check_name_addr(value: str) -> None:
    full = outcome(parse_name_addr_full, value, "From")
    assert outcome(parse_name_addr, value, "From") == full, f"parse_name_addr != full on {value!r}"
    full_list = outcome(parse_name_addr_list_full, value, "Contact")
    assert outcome(parse_name_addr_list, value, "Contact") == full_list, f"parse_name_addr_list != full on {value!r}"
    fast = no_raise(_fast_name_addr, value)
    if fast is not None:
        assert full[0] == "ok", f"_fast_name_addr accepts what the grammar rejects: {value!r}"
        assert (fast, repr(fast)) == full[1:], f"_fast_name_addr != parse_name_addr_full on {value!r}"
        if "," not in value:
            assert full_list[0] == "ok" and full_list[1] == [fast], f"list grammar differs on {value!r}"


# --- strategies: unstructured text over the grammar's significant characters --------

URI_CHUNKS = (
    ["sip:", "sips:", "tel:", "SIP:", "sip", "@", ":", ";", "=", "?", "&", "%", "%4", "%41", "%zz", "%2F", "[", "]"]
    + [".", "-", "_", "'", "~", "!", "*", "(", ")", "+", "$", ",", "/", " ", "\t", "::", "::1", "[::1]", "lr"]
    + ["transport=udp", "5060", "65536", "0", "example.com", "192.0.2.1", "999.1.1.1", "a..b", "-a", "a-", "é"]
    + list(string.hexdigits)
    + list("gxyzGXYZ")
)
NA_CHUNKS = URI_CHUNKS + ["<", ">", '"', "\\", '\\"', ",", " ", ";tag=", ";expires=60", "\r\n", "\x0b", "Bob "]

raw_uri = st.one_of(
    st.lists(st.sampled_from(URI_CHUNKS), max_size=14).map("".join),
    st.tuples(st.sampled_from(["sip:", "sips:"]), st.lists(st.sampled_from(URI_CHUNKS), max_size=14)).map(
        lambda t: t[0] + "".join(t[1])
    ),
    st.text(alphabet="sip:@;=?&%[].-_'~! 0123456789abcdefABCDEF", max_size=30),
)

# --- strategies: structured URIs (mostly well-formed, one part spoiled now and then) -------
#
# Host, port and escape validity are decided by the same grammar helpers on both
# paths, so small sampled vocabularies suffice there (and keep generation cheap);
# what matters is where the parts meet: the delimiters and the characters each
# fast regex admits or refuses next to them.


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = 4) -> st.SearchStrategy[Any]:
    """`good` about odds/(odds+1) of the time, else `bad` (shrinks towards `good`)."""
    return st.integers(0, odds).flatmap(lambda i: bad if i == odds else good)


def joined(parts: list[str], min_size: int = 0, max_size: int = 6) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(parts), min_size=min_size, max_size=max_size).map("".join)


alnum = string.ascii_letters + string.digits
ESC = ["%41", "%2f", "%4", "%zz", "%"]
LABELS = ["a", "b9", "x-y", "a--b", "0", "1a", "Z", "abc", "Q1-2", "pbx", "com", "ORG"]
good_hostname = st.tuples(
    st.lists(st.sampled_from(LABELS), max_size=3),
    st.sampled_from([label for label in LABELS if label[0].isalpha()]),
    st.sampled_from(["", "", "."]),
).map(lambda t: "".join(x + "." for x in t[0]) + t[1] + t[2])
good_ipv4 = st.sampled_from(["192.0.2.1", "10.0.0.1", "0.0.0.0", "255.255.255.255", "127.000.0.01", "8.8.8.8"])
good_ipv6 = st.sampled_from(
    ["::1", "2001:db8::1", "::", "::ffff:192.0.2.1", "fe80::1:2", "1:2:3:4:5:6:7:8", "2001:DB8:0:0:8:800:200C:417A"]
)
bad_host = st.one_of(
    st.sampled_from(
        ["-a", "a-", "1.2.3", "999.1.1.1", "256.1.1.1", "1.2.3.4.5", "a..b", "a.", ".a", "1.2.3.4.", "1a", "a_b"]
        + ["", "a b", "%61", "[::1", "::1", "[::1]x", "[:::]", "[::ffff:1.2.3]", "[1::g]", "[]", "[12345::1]"]
        + ["[::1]]", "é.com", "a.-b", "a" * 64 + ".com", ("a." * 130) + "b"]
    ),
    joined(list(alnum[::7]) + ["-", ".", "_", ".."], 0, 5),
)
host = mostly(st.one_of(good_hostname, good_ipv4, good_ipv6.map(lambda a: f"[{a}]")), bad_host, odds=3)
good_port = st.one_of(st.integers(0, 65535).map(str), st.sampled_from(["0", "65535", "05060", "00000", "5060"]))
bad_port = st.sampled_from(["65536", "99999", "000000", "123456", "", "x", "+1", "-1", "٥", " 5060", "5060 "])
port = st.one_of(st.none(), mostly(good_port, bad_port, odds=2))
user_good = joined(list(alnum[::3]) + list("-_.!~*'()&=+$,;?/") + ["%41", "%2F", "alice", "+1555"], 1, 6)
user_bad = joined(list(alnum[::5]) + list("-;?/:@[ ") + ESC, 0, 6)
user = st.one_of(
    st.none(),
    st.sampled_from(["alice", "bob.smith", "+15551234", "al%69ce", "a;b=c", "user:pw", "u:", "a&b=c", "a?b"]),
    mostly(user_good, user_bad),
    mostly(user_good, user_bad).map(lambda u: u + ":" + "pw%41"),
)
pchar_good = joined(list(alnum[::3]) + list("-_.!~*'()[]/:&+$") + ["%41", "udp", "lr", "[::1]"], 1, 5)
pchar_bad = joined(list(alnum[::7]) + list("=?@ ;,") + ESC, 0, 4)
pchar = mostly(pchar_good, pchar_bad)
param_name = st.one_of(st.sampled_from(["transport", "lr", "maddr", "user", "ttl", "method"]), pchar)
param_value = st.one_of(st.none(), st.sampled_from(["udp", "tcp", "phone", "10.0.0.1", "[::1]", ""]), pchar)
uri_params = st.lists(
    st.tuples(param_name, param_value).map(lambda kv: kv[0] if kv[1] is None else f"{kv[0]}={kv[1]}"),
    max_size=4,
).map(lambda ps: "".join(";" + p for p in ps))
uri_headers = mostly(
    st.just(""),
    st.lists(
        st.one_of(
            st.tuples(pchar, pchar).map(lambda kv: f"{kv[0]}={kv[1]}"),
            st.sampled_from(["subject=hi", "x=", "noequals", "=v", "a=b=c", "h=%20"]),
        ),
        min_size=1,
        max_size=3,
    ).map(lambda hs: "?" + "&".join(hs)),
    odds=3,
)
scheme = mostly(
    st.sampled_from(["sip", "sip", "sips"]), st.sampled_from(["SIP", "Sips", "tel", "sipx", "urn", "1sip", ""])
)


@st.composite
def structured_uri(draw: st.DrawFn) -> str:
    s = draw(scheme)
    if s == "tel" and draw(st.booleans()):
        number = draw(st.sampled_from(["+1-201-555-0123", "5551234", "", "+1%20", "12 34"]))
        return f"tel:{number}{draw(uri_params)}"
    u = draw(user)
    p = draw(port)
    text = s + ":"
    if u is not None:
        text += u + "@"
    text += draw(host)
    if p is not None:
        text += ":" + p
    return text + draw(uri_params) + draw(uri_headers)


@st.composite
def good_uri(draw: st.DrawFn) -> str:
    """Only well-formed parts: where the fast paths take over."""
    text = draw(st.sampled_from(["sip:", "sips:"]))
    u = draw(st.none() | user_good)
    if u is not None:
        text += u + "@"
    text += draw(st.one_of(good_hostname, good_ipv4))
    p = draw(st.none() | good_port)
    if p is not None:
        text += ":" + p
    names = st.sampled_from(["transport", "lr", "maddr", "user"]) | pchar_good
    values = st.none() | st.sampled_from(["udp", "tcp", "phone", "10.0.0.1", "[::1]"]) | pchar_good
    for _ in range(draw(st.integers(0, 3))):
        name, value = draw(names), draw(values)
        text += f";{name}" if value is None else f";{name}={value}"
    return text


any_uri = st.one_of(good_uri(), structured_uri(), raw_uri)

# --- strategies: name-addr values --------------------------------------------------------

ws = st.sampled_from(["", "", "", " ", "  ", "\t", " \t "])
token_word = st.one_of(
    st.sampled_from(["Bob", "Alice", "sip", "sips", "A.B", "x-y", "'q'", "~!%*_+`", "1"]),
    joined(list(alnum[::5]) + list("-.!%*_+`'~"), 1, 4),
)
quoted_display = mostly(
    joined(["Bob", " ", "<", ">", ",", ";", "=", ":", "@", "é", "\t", "x", "'"]),
    joined(["Bob", " ", '\\"', "\\\\", "\\", "\\a", "x", "\r\n", "\n"]),
    odds=2,
).map(lambda text: f'"{text}"')


@st.composite
def token_display(draw: st.DrawFn) -> str:
    words = draw(st.lists(token_word, min_size=1, max_size=3))
    out = words[0]
    for word in words[1:]:
        out += draw(st.sampled_from([" ", "  ", "\t", " \t"])) + word
    return out + draw(st.sampled_from(["", " ", "  "]))


display = st.one_of(st.none(), quoted_display, token_display())

hparam_name = mostly(
    st.one_of(st.sampled_from(["tag", "expires", "q", "+sip.instance", "reg-id", "lr", "received"]), token_word),
    st.sampled_from(["", "a b", "@", "<", "é"]),
)
hparam_value = st.one_of(
    st.none(),
    mostly(
        st.one_of(
            st.sampled_from(["abc", "60", "0.5", "1", "[::1]", "192.0.2.1", "2001:db8::1"]),
            st.sampled_from(['"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"', '"a\\"b"', '"x"', '""', '"a,b;c"']),
            token_word,
        ),
        st.sampled_from(["", "a b", "<x>", "a@b", "?", "1,2", '"unterminated', '"a\\"', "é"]),
    ),
)


@st.composite
def header_params(draw: st.DrawFn) -> str:
    out = ""
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 8)) == 8:
            out += ";"  # an empty parameter: ';;'
        name = draw(hparam_name)
        value = draw(hparam_value)
        out += draw(ws) + ";" + draw(ws) + name
        if value is not None:
            out += draw(ws) + "=" + draw(ws) + value
    return out


junk = mostly(
    st.just(""),
    st.sampled_from([",", " ,", "junk", '"', "<", ">", "?", "\r\n", ";", ";;", " x", "\x00", ">>", "\x0b", "\xa0"]),
)


@st.composite
def name_addr_value(draw: st.DrawFn) -> str:
    d = draw(display)
    uri_text = draw(mostly(good_uri(), any_uri, odds=1))
    form = draw(mostly(st.sampled_from(["bracket", "bare"]), st.sampled_from(["open", "spaced", "bare+display"])))
    if form == "bracket" or (d is not None and form == "bare"):
        addr = f"<{uri_text}>"
    elif form == "open":
        addr = f"<{uri_text}"
    elif form == "spaced":
        addr = f"< {uri_text} >"
    else:
        addr = uri_text
    head = "" if d is None else d + draw(ws)
    return draw(ws) + head + addr + draw(header_params()) + draw(ws) + draw(junk)


any_name_addr = st.one_of(
    name_addr_value(),
    joined(NA_CHUNKS, 0, 16),
    st.lists(name_addr_value(), min_size=2, max_size=3).map(",".join),
)


# --- differential properties --------------------------------------------------------------


@SETTINGS
@given(st.one_of(good_uri(), structured_uri()))
def test_structured_uri_fast_equals_full(text: str) -> None:
    check_uri(text)


@SETTINGS
@given(raw_uri)
def test_raw_uri_fast_equals_full(text: str) -> None:
    check_uri(text)


@SETTINGS
@given(name_addr_value())
def test_structured_name_addr_fast_equals_full(value: str) -> None:
    check_name_addr(value)


@settings(SETTINGS, max_examples=500)
@given(any_name_addr)
def test_raw_and_list_name_addr_fast_equals_full(value: str) -> None:
    check_name_addr(value)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text(value: str) -> None:
    check_uri(value)
    check_name_addr(value)


# --- the fast paths are really exercised (else the properties above prove little) -----------


@pytest.mark.parametrize(
    "text",
    ["sip:alice@example.com", "sips:bob@192.0.2.1:5061;transport=tcp;lr", "sip:host.", "sip:a;b=c@h:0;maddr=[::1]"],
)
def test_fast_sip_takes_common_uris(text: str) -> None:
    fast = _fast_sip(text)
    assert fast is not None
    assert fast == parse_uri_full(text)


@pytest.mark.parametrize(
    "value",
    [
        '"Bob" <sips:bob@example.com>;tag=abc',
        "Alice  Smith\t<sip:alice@example.com>;tag=1 ; expires = 60",
        "<sip:alice@192.0.2.1:5060;transport=udp>;expires=3600",
        "sip:carol@example.com;tag=1",
    ],
)
def test_fast_name_addr_takes_common_values(value: str) -> None:
    fast = _fast_name_addr(value)
    assert fast is not None
    assert fast == parse_name_addr_full(value)


def test_name_addr_parses_are_shared_and_their_memo_is_bounded() -> None:
    from sipcore.message import headers

    value = "<sip:memo-test@example.com>;tag=1"
    first = parse_name_addr(value)
    assert parse_name_addr(value) is first  # the answer to a challenge repeats From/To/Contact
    assert parse_name_addr(value) == parse_name_addr_full(value)
    for i in range(headers._MEMO_SIZE + 10):  # a flood of distinct values
        parse_name_addr(f"<sip:u{i}@example.com>")
    assert len(headers._MEMO) <= headers._MEMO_SIZE
    assert parse_name_addr(value) == first
    long_value = "<sip:" + "u" * 5000 + "@example.com>"  # parsed before authentication: not kept
    assert parse_name_addr(long_value).uri.user == "u" * 5000
    assert long_value not in headers._MEMO


# --- the fast paths stay linear ----------------------------------------------------------------

# Header parameters written with a space before each ';' and then a '"' or ',' that
# the tail of _FAST_NAME_ADDR / _FAST_ADDR_SPEC refuses: `[^;,"]*` and the next
# `[ \t]*` can split each run of blanks two ways, so the failing match backtracks
# 2**n times (about 0.25 s at n=20, the last one is a valid Contact).  These values
# are ~130 bytes: a linear regex answers in microseconds.
REDOS_VALUES = [
    "<sip:a@b>" + ";a " * 40 + '"',
    "sip:a@b" + ";a " * 40 + ",",
    "<sip:a@b>" + " ;p" * 40 + ' ;q="x"',
]
REDOS_CHILD = """
import sys
from sipcore.errors import ParseError
from sipcore.message.headers import parse_name_addr
for value in sys.argv[1:]:
    try:
        parse_name_addr(value)
    except ParseError:
        pass
"""


def test_fast_name_addr_does_not_backtrack_exponentially() -> None:
    # re cannot be interrupted from Python, hence a child process with a time
    # limit, generous for a slow machine: backtracking on these would take hours.
    subprocess.run([sys.executable, "-c", REDOS_CHILD, *REDOS_VALUES], cwd=ROOT, timeout=20, check=True)


# --- explicit regression examples ---------------------------------------------------------------

INSTANCE = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"


def test_phone_contact_with_instance() -> None:
    value = f'<sip:alice@192.0.2.1:5060;transport=udp>;+sip.instance="{INSTANCE}";reg-id=1;expires=3600'
    check_name_addr(value)
    na = parse_name_addr(value, "Contact")
    assert na.uri == URI("sip", "alice", None, "192.0.2.1", 5060, (("transport", "udp"),), (), None)
    assert (na.display_name, na.bracketed) == (None, True)
    assert na.params == (("+sip.instance", f'"{INSTANCE}"'), ("reg-id", "1"), ("expires", "3600"))
    assert (na.instance, na.reg_id, na.expires) == (INSTANCE, 1, 3600)
    assert parse_name_addr_list(value, "Contact") == [na]


def test_quoted_display_with_tag() -> None:
    value = '"Bob" <sips:bob@example.com>;tag=abc'
    check_name_addr(value)
    na = parse_name_addr(value)
    assert na == NameAddr(URI("sips", "bob", None, "example.com"), "Bob", (("tag", "abc"),), True)
    assert na.tag == "abc"


def test_bare_addr_spec_params_belong_to_header() -> None:
    value = "sip:carol@example.com;tag=1"
    check_name_addr(value)
    na = parse_name_addr(value)
    assert na == NameAddr(URI("sip", "carol", None, "example.com"), None, (("tag", "1"),), False)
    # Inside the URI (Request-URI), the same text is a URI parameter.
    check_uri(value)
    assert parse_uri(value).params == (("tag", "1"),)


@pytest.mark.parametrize(
    "text, host, port, user",
    [
        ("sip:[2001:db8::1]", "[2001:db8::1]", None, None),
        ("sip:alice@[::1]:5070;transport=tcp", "[::1]", 5070, "alice"),
        ("sips:[::ffff:192.0.2.1]:5061", "[::ffff:192.0.2.1]", 5061, None),
        ("sip:host:05060", "host", 5060, None),
        ("sip:host:0", "host", 0, None),
        ("sip:host:65535", "host", 65535, None),
    ],
)
def test_hosts_and_ports(text: str, host: str, port: int | None, user: str | None) -> None:
    check_uri(text)
    u = parse_uri(text)
    assert (u.host, u.port, u.user) == (host, port, user)


def test_ipv6_name_addr() -> None:
    value = "<sip:[2001:db8::1]:5061;transport=tls>;expires=60"
    check_name_addr(value)
    na = parse_name_addr(value)
    assert (na.uri.host, na.uri.port, na.uri.transport, na.expires) == ("[2001:db8::1]", 5061, "tls", 60)


@pytest.mark.parametrize(
    "text, user, unescaped, password",
    [
        ("sip:%61lice@example.com", "%61lice", "alice", None),
        ("sip:bob%20smith:s%65cret@example.com", "bob%20smith", "bob smith", "s%65cret"),
        ("sip:+1555;phone-context=x@example.com;user=phone", "+1555;phone-context=x", "+1555;phone-context=x", None),
    ],
)
def test_escaped_users(text: str, user: str, unescaped: str, password: str | None) -> None:
    check_uri(text)
    u = parse_uri(text)
    assert (u.user, u.user_unescaped, u.password) == (user, unescaped, password)


def test_display_names() -> None:
    for value, expected in [
        ("Alice  Smith\t<sip:a@b>", "Alice Smith"),
        ('"A \\"B\\" \\\\ C" <sip:a@b>', 'A "B" \\ C'),
        ('"" <sip:a@b>', ""),
        ("<sip:a@b>", None),
        ("x<sip:a@b>", "x"),
    ]:
        check_name_addr(value)
        assert parse_name_addr(value).display_name == expected, value


def test_contact_list() -> None:
    value = '<sip:a@b>;q=0.5, "X, Y" <sip:c@d>;expires=60 ,sip:e@f'
    check_name_addr(value)
    nas = parse_name_addr_list(value, "Contact")
    assert [str(n.uri) for n in nas] == ["sip:a@b", "sip:c@d", "sip:e@f"]
    assert (nas[0].q, nas[1].display_name, nas[1].expires, nas[2].bracketed) == (0.5, "X, Y", 60, False)


@pytest.mark.parametrize(
    "value",
    [
        "sip:h;=v",
        "sip:h:65536",
        "sip:h:99999",
        "sip:1.2.3",
        "sip:a..b",
        "sip:-a",
        "sip:a-",
        "<sip:a@b>;;tag=1",
        "<sip:a@b>;tag=",
        "<sip:a@b> junk",
        '"Bob <sip:a@b>',
        "<sip:a@b",
        "< sip:a@b>",
        "sip:a@b?x=y",
        "tel:",
    ],
)
def test_rejected_by_both(value: str) -> None:
    check_uri(value)
    check_name_addr(value)
    with pytest.raises(ParseError):
        parse_name_addr(value)
    with pytest.raises(ParseError):
        parse_name_addr_list(value, "Contact")


# --- split_commas: the str.split path against the character scanner ---------------------

_LIST_ALPHABET = st.text(alphabet=',<>" \t;=:@ab\\', max_size=40)


@SETTINGS
@given(_LIST_ALPHABET)
def test_split_commas_fast_equals_scan(value: str) -> None:
    assert outcome(split_commas, value) == outcome(_split_commas_scan, value)


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            "SIP/2.0/UDP a:5060;branch=z9hG4bK1, SIP/2.0/UDP b;rport=5",
            ["SIP/2.0/UDP a:5060;branch=z9hG4bK1", "SIP/2.0/UDP b;rport=5"],
        ),
        ("<sip:p1;lr>,<sip:p2,x;lr>", ["<sip:p1;lr>", "<sip:p2,x;lr>"]),
        ("a,,b", ["a", "", "b"]),
    ],
)
def test_split_commas_fast_path_shapes(value: str, expected: list[str]) -> None:
    assert _split_commas_unquoted(value) == expected
    assert split_commas(value) == expected


@pytest.mark.parametrize("value", ["<a,b", "<<a>>", ">a<, b", "a>b,c"])
def test_split_commas_fast_path_declines_odd_brackets(value: str) -> None:
    assert _split_commas_unquoted(value) is None
    assert outcome(split_commas, value) == outcome(_split_commas_scan, value)
