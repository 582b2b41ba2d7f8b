"""The fast (Proxy-)Authorization reader, and its agreement with the reference grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcore.auth.credentials import split_credentials
from sipcore.errors import ParseError
from sipcore.message.headers import parse_auth


def test_reads_scheme_and_parameters() -> None:
    assert split_credentials('Digest username="alice", realm="example.com", nc=00000001, qop=auth') == (
        "Digest",
        {"username": "alice", "realm": "example.com", "nc": "00000001", "qop": "auth"},
    )


def test_quoted_pairs_are_unescaped() -> None:
    assert split_credentials(r'Digest username="a\"b\\c", realm="x"') == (
        "Digest",
        {"username": 'a"b\\c', "realm": "x"},
    )


def test_names_are_case_insensitive_and_lowered() -> None:
    assert split_credentials('digest UserName="alice", REALM="r"') == ("digest", {"username": "alice", "realm": "r"})


@pytest.mark.parametrize(
    "value, params",
    [
        # clients that forget to quote uri or response (RFC 3261 §22.4 says they MUST quote)
        ("Digest uri=sip:example.com, response=0a1b", {"uri": "sip:example.com", "response": "0a1b"}),
        # white space around "=" (BWS), empty list elements, a trailing comma (RFC 7230 §7)
        ('Digest a = "1" ,, b=2,', {"a": "1", "b": "2"}),
        ("Digest a=1\t,\tb=2  ", {"a": "1", "b": "2"}),
        ('Digest a="", b=', {"a": "", "b": ""}),
        ('Digest a="x, y=z"', {"a": "x, y=z"}),
        ("Digest", {}),
        ("  Digest   ", {}),
    ],
)
def test_lenient_forms(value: str, params: dict[str, str]) -> None:
    assert split_credentials(value) == ("Digest", params)


@pytest.mark.parametrize(
    "value",
    [
        'Digest a="1" b="2"',  # missing comma
        'Digest a="unterminated',
        'Digest a="1", a="2"',  # a parameter twice
        'Digest realm="x", REALM="y"',  # twice, case-insensitively
        "Digest a",
        "Digest =1",
        'Digest a="1", junk',
        "Digest , a=1",
        'Digest a="1\r\n"',
    ],
)
def test_malformed_parameter_lists(value: str) -> None:
    split = split_credentials(value)
    assert split is not None and split[1] is None, split


@pytest.mark.parametrize("value", ["", "   ", '"Digest" a=1', "Digest,a=1", "@@@"])
def test_no_scheme(value: str) -> None:
    assert split_credentials(value) is None


_NAMES = st.sampled_from(["username", "realm", "nonce", "uri", "response", "nc", "cnonce", "qop", "x-y", "A1"])
_TOKENS = st.text(alphabet="abcXYZ019-._~:/@", min_size=1, max_size=12)
_QUOTED = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12)


@st.composite
def _credentials(draw: st.DrawFn) -> str:
    names = draw(st.lists(_NAMES, unique=True, max_size=6))
    parts = []
    for name in names:
        if draw(st.booleans()):
            text = draw(_QUOTED)
            parts.append(f'{name}="' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(f"{name}={draw(_TOKENS)}")
    sep = draw(st.sampled_from([", ", ",", " , "]))
    return "Digest " + sep.join(parts)


@given(_credentials())
def test_agrees_with_the_reference_grammar(value: str) -> None:
    """Wherever the message layer's reference parser accepts credentials
    (without repeated names), the fast reader returns the same parameters."""
    try:
        ref = parse_auth(value)
    except ParseError:
        ref = None
    ours = split_credentials(value)
    assert ours is not None and ours[1] is not None, value
    if ref is not None:
        assert ours == (ref.scheme, ref.params)


@given(st.text(max_size=200))
def test_never_raises(value: str) -> None:
    split = split_credentials(value)
    assert split is None or (isinstance(split[0], str) and (split[1] is None or isinstance(split[1], dict)))
