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
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcore.errors import ParseError
from sipcore.message.headers import (
    NameAddr,
    _fast_name_addr,
    parse_name_addr,
    parse_name_addr_full,
    parse_name_addr_list,
    parse_name_addr_list_full,
)
from sipcore.message.uri import URI, _fast_sip, parse_uri, parse_uri_full

SETTINGS = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
NA_CHUNKS = URI_CHUNKS + ["<", ">", '"', "\\", "\\\"", ",", " ", ";tag=", ";expires=60", "\r\n", "\x0b", "Bob "]

raw_uri = st.one_of(
    st.lists(st.sampled_from(URI_CHUNKS), max_size=14).map("".join),
    st.tuples(st.sampled_from(["sip:", "sips:"]), st.lists(st.sampled_from(URI_CHUNKS), max_size=14)).map(
        lambda t: t[0] + "".join(t[1])
    ),
    st.text(alphabet="sip:@;=?&%[].-_'~! 0123456789abcdefABCDEF", max_size=30),
)

# --- strategies: structured URIs ------------------------------------------------------

alnum = string.ascii_letters + string.digits
label = st.text(alphabet=alnum + "-", min_size=1, max_size=8)
hostname = st.lists(label, min_size=1, max_size=4).map(".".join) | st.sampled_from(
    ["example.com", "Example.COM", "host.", "a", "x1", "a-b.c-d"]
)
ipv4 = st.lists(st.integers(0, 999).map(str) | st.sampled_from(["01", "001", "0000"]), min_size=4, max_size=4).map(
    ".".join
)
ipv6_group = st.text(alphabet="0123456789abcdefABCDEFg", min_size=0, max_size=5)
ipv6 = st.one_of(
    st.lists(ipv6_group, min_size=1, max_size=9).map(":".join),
    st.sampled_from(["::1", "2001:db8::1", "::", "1:2:3:4:5:6:7:8", ":::", "::ffff:192.0.2.1", "::ffff:1.2.3"]),
)
ipv6_ref = st.one_of(
    ipv6.map(lambda s: f"[{s}]"),
    ipv6.map(lambda s: f"[{s}"),
    ipv6,
)
bad_host = st.sampled_from(
    ["-a", "a-", "1.2.3", "999.1.1.1", "a..b", "a.", ".a", "1.2.3.4.", "1a", "a_b", "", "a b", "[", "]", "%61"]
)
host = st.one_of(hostname, ipv4, ipv6_ref, bad_host)
port = st.one_of(
    st.none(),
    st.sampled_from(["0", "65535", "65536", "99999", "05060", "5060", "00000", "123456", "", "x", "+1", "٥"]),
    st.integers(0, 70000).map(str),
)
ESC = ["%41", "%4", "%zz", "%2f", "%"]
user_text = st.lists(
    st.sampled_from(list(alnum[::5]) + list("-_.!~*'()&=+$,;?/:") + ESC + ["alice", "+1555", " ", "@", "["]),
    min_size=0,
    max_size=8,
).map("".join)
user = st.one_of(
    st.none(),
    st.sampled_from(["alice", "bob.smith", "+15551234", "al%69ce", "a;b=c", "user:pw", "u:", "", "a&b=c"]),
    user_text,
)
pchar = st.lists(
    st.sampled_from(list(alnum[::4]) + list("-_.!~*'()[]/:&+$=?@ ") + ESC + ["udp", "lr", "[::1]"]),
    min_size=0,
    max_size=5,
).map("".join)
param_name = st.one_of(st.sampled_from(["transport", "lr", "maddr", "user", "ttl", "method", ""]), pchar)
param_value = st.one_of(st.none(), st.sampled_from(["udp", "tcp", "phone", "10.0.0.1", "[::1]", ""]), pchar)
uri_params = st.lists(
    st.tuples(param_name, param_value).map(lambda kv: kv[0] if kv[1] is None else f"{kv[0]}={kv[1]}"),
    max_size=4,
).map(lambda ps: "".join(";" + p for p in ps))
uri_headers = st.one_of(
    st.just(""),
    st.lists(
        st.one_of(
            st.tuples(pchar, pchar).map(lambda kv: f"{kv[0]}={kv[1]}"),
            st.sampled_from(["subject=hi", "x=", "noequals", "=v", "a=b=c"]),
        ),
        min_size=1,
        max_size=3,
    ).map(lambda hs: "?" + "&".join(hs)),
)
scheme = st.sampled_from(["sip", "sips", "SIP", "Sips", "tel", "sipx", "urn", "1sip", ""])


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


any_uri = st.one_of(structured_uri(), raw_uri)

# --- strategies: name-addr values --------------------------------------------------------

ws = st.sampled_from(["", "", " ", "  ", "\t", " \t "])
token_word = st.one_of(
    st.sampled_from(["Bob", "Alice", "sip", "A.B", "x-y", "'q'", "~!%*_+`", "1"]),
    st.text(alphabet=alnum + "-.!%*_+`'~", min_size=1, max_size=6),
)
quoted_display = st.lists(
    st.sampled_from(["Bob", " ", "\\\"", "\\\\", "\\", "<", ">", ",", ";", "=", ":", "@", "é", "\t", "x", "\\a"]),
    max_size=6,
).map(lambda parts: '"' + "".join(parts) + '"')


@st.composite
def token_display(draw: st.DrawFn) -> str:
    words = draw(st.lists(token_word, min_size=1, max_size=3))
    seps = [draw(st.sampled_from([" ", "  ", "\t", " \t"])) for _ in words[1:]]
    out = words[0]
    for sep, word in zip(seps, words[1:], strict=True):
        out += sep + word
    return out + draw(st.sampled_from(["", " ", "  "]))


display = st.one_of(st.none(), quoted_display, token_display())

hparam_name = st.one_of(
    st.sampled_from(["tag", "expires", "q", "+sip.instance", "reg-id", "lr", "received", "", "a b", "@"]),
    token_word,
)
hparam_value = st.one_of(
    st.none(),
    st.sampled_from(["abc", "60", "0.5", "1", "[::1]", "192.0.2.1", "", "a b", "<x>", "a@b", "?", "1,2"]),
    st.sampled_from(['"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"', '"a\\"b"', '"x"', '""', '"unterminated']),
    token_word,
)


@st.composite
def header_params(draw: st.DrawFn) -> str:
    out = ""
    for _ in range(draw(st.integers(0, 4))):
        name = draw(hparam_name)
        value = draw(hparam_value)
        out += draw(ws) + ";" + draw(ws) + name
        if value is not None:
            out += draw(ws) + "=" + draw(ws) + value
    return out


junk = st.sampled_from(["", "", "", ",", " ,", "junk", '"', "<", ">", "?", "\r\n", ";", ";;", " x", "\x00", ">>"])


@st.composite
def name_addr_value(draw: st.DrawFn) -> str:
    d = draw(display)
    uri_text = draw(any_uri)
    form = draw(st.sampled_from(["bracket", "bracket", "bare", "open", "spaced"]))
    if form == "bracket" or (d is not None and form == "bare" and draw(st.booleans())):
        addr = f"<{uri_text}>"
    elif form == "open":
        addr = f"<{uri_text}"
    elif form == "spaced":
        addr = f"< {uri_text} >"
    else:
        addr = uri_text
    head = "" if d is None else d + draw(ws)
    return draw(ws) + head + addr + draw(header_params()) + draw(ws) + draw(junk)


raw_name_addr = st.lists(st.sampled_from(NA_CHUNKS), max_size=16).map("".join)
any_name_addr = st.one_of(
    name_addr_value(),
    raw_name_addr,
    st.lists(name_addr_value(), min_size=2, max_size=3).map(",".join),
)


# --- differential properties --------------------------------------------------------------


@SETTINGS
@given(structured_uri())
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


@SETTINGS
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
