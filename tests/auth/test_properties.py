"""Whatever a peer puts in (Proxy-)Authorization, check() returns a decision
and never raises; and nothing but the exact credentials authenticates."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcore.auth import AuthConfig, Authenticated, Blocked, Challenge
from sipcore.message import Request

from ._support import REALM, T0, answer, make_auth, pick

RESULTS = (Authenticated, Challenge, Blocked)
AUTH = make_auth(AuthConfig(max_failures=1_000_000))
OFFER = pick(AUTH.challenge(REALM, T0), "SHA-256")
NONCE = re.search(r'nonce="([^"]+)"', OFFER).group(1)  # type: ignore[union-attr]


def built(*auth: tuple[str, str]) -> Request:
    """A request built in code, so header values can be anything at all."""
    return Request(
        "REGISTER",
        "sip:example.com",
        [
            ("Via", "SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK1"),
            ("From", "<sip:alice@example.com>;tag=1"),
            ("To", "<sip:alice@example.com>"),
            ("Call-ID", "c1"),
            ("CSeq", "1 REGISTER"),
            *auth,
        ],
    )


_VALUES = st.one_of(
    st.text(max_size=64),
    st.sampled_from(["", "sip:example.com", REALM, NONCE, NONCE[:-1] + "A", "auth", "auth-int", "MD5", "SHA-256"]),
    st.sampled_from(["00000001", "ffffffff", "0", "-1", "1e3", "00000000", "a" * 32, "b" * 64, "\\", '"']),
)
_NAMES = st.sampled_from(
    ["username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "qop", "nc", "opaque", "userhash", "x"]
)


@st.composite
def digest_values(draw: st.DrawFn) -> str:
    params = draw(st.dictionaries(_NAMES, _VALUES, max_size=10))
    parts = []
    for name, value in params.items():
        if draw(st.booleans()):
            parts.append(f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(f"{name}={value}")
    return draw(st.sampled_from(["Digest ", "digest ", "DIGEST  "])) + ", ".join(parts)


_HEADER_VALUES = st.one_of(st.text(max_size=300), digest_values())


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(_HEADER_VALUES, max_size=3), proxy=st.booleans(), ip=st.sampled_from(["192.0.2.1", "::1"]))
def test_arbitrary_credentials_yield_a_decision(values: list[str], proxy: bool, ip: str) -> None:
    name = "Proxy-Authorization" if proxy else "Authorization"
    result = AUTH.check(built(*[(name, v) for v in values]), REALM, ip, T0 + 1, proxy=proxy)
    assert isinstance(result, RESULTS)
    assert not isinstance(result, Authenticated)  # no password was known
    if isinstance(result, Challenge):
        assert result.status == (407 if proxy else 401) and len(result.headers) == 2


_FIELDS = st.sampled_from(["username", "realm", "nonce", "uri", "response", "cnonce", "nc"])


@given(field=_FIELDS, new=st.text(min_size=1, max_size=70), nc=st.integers(1, 2**32 - 1))
def test_changing_any_hashed_field_prevents_authentication(field: str, new: str, nc: int) -> None:
    auth = make_auth()
    value = answer(pick(auth.challenge(REALM, T0), "SHA-256"), nc=nc)
    old = re.search(rf'\b{field}=("[^"]*"|[^,]*)', value).group(1)  # type: ignore[union-attr]
    replacement = '"' + new.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if replacement.strip('"').lower() == old.strip('"').lower():
        replacement = '"' + new + 'x"'
    tampered = value.replace(f"{field}={old}", f"{field}={replacement}", 1)
    result = auth.check(built(("Authorization", tampered)), REALM, "192.0.2.1", T0 + 1)
    assert isinstance(result, Challenge), (field, tampered)
    # and the untouched credentials still work (the mutation, not the setup, was rejected)
    assert isinstance(auth.check(built(("Authorization", value)), REALM, "192.0.2.1", T0 + 1), Authenticated)
