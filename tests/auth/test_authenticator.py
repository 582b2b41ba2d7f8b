"""DigestAuthenticator: challenge -> credentials -> decision, from parsed SIP messages."""

from __future__ import annotations

import re

import pytest

from sipcore.auth import (
    AuthConfig,
    Authenticated,
    Blocked,
    Challenge,
    ChallengeCause,
    DigestAuthenticator,
    compute_ha1,
    compute_response,
)
from sipcore.auth.nonce import NonceCodec, issued_ms
from sipcore.errors import LocalProtocolError
from sipcore.message import Response, make_response, parse
from sipcore.message.headers import parse_auth

from ._support import ALICE_PW, CNONCE, REALM, SECRET, T0, Salts, Store, answer, make_auth, masked, pick, register

IP = "198.51.100.23"
IP2 = "203.0.113.7"


def nonce_of(value: str) -> str:
    nonce = parse_auth(value).nonce
    assert nonce is not None
    return nonce


def nonce_time(ch: Challenge) -> int:
    raw = NonceCodec(SECRET).open(nonce_of(ch.headers[0][1]), REALM)
    assert raw is not None
    return issued_ms(raw)


def with_param(value: str, name: str, new: str | None) -> str:
    """`value` with parameter `name` replaced by `new` (raw, as written), or removed."""
    pattern = rf'(,\s*)?\b{name}=("[^"]*"|[^,\s]*)'
    if new is None:
        out = re.sub(pattern, "", value, count=1)
    else:
        out = re.sub(pattern, lambda m: (m.group(1) or "") + f"{name}={new}", value, count=1)
    assert out != value
    return out


# --- challenges ------------------------------------------------------------------


def test_first_request_gets_a_challenge_per_algorithm() -> None:
    auth = make_auth()
    ch = auth.check(register(), REALM, IP, T0)
    assert isinstance(ch, Challenge)
    assert (ch.status, ch.reason, ch.stale, ch.failed, ch.cause) == (
        401,
        "Unauthorized",
        False,
        False,
        ChallengeCause.NO_CREDENTIALS,
    )
    assert [name for name, _ in ch.headers] == ["WWW-Authenticate", "WWW-Authenticate"]
    parsed = [parse_auth(v) for _, v in ch.headers]
    assert [p.algorithm for p in parsed] == ["SHA-256", "MD5"]  # RFC 8760: preferred first
    for p in parsed:
        assert p.is_digest and p.realm == REALM and p.qop_options == ("auth",) and not p.stale
        assert p.opaque is None and p.userhash is False
    assert parsed[0].nonce == parsed[1].nonce  # one nonce, as in RFC 7616 §3.9.1
    assert auth.tracked_sources == 0  # not a failure


def test_challenge_options() -> None:
    auth = make_auth(AuthConfig(algorithms=("MD5",)), opaque="5ccc069c403ebaf9f0171e9517f40e41")
    ch = auth.challenge('tenant "A" \\ realm', T0, stale=True)
    assert len(ch.headers) == 1 and ch.stale and not ch.failed and ch.cause is ChallengeCause.STALE
    p = parse_auth(ch.headers[0][1])
    assert (p.realm, p.algorithm, p.opaque, p.stale) == (
        'tenant "A" \\ realm',
        "MD5",
        "5ccc069c403ebaf9f0171e9517f40e41",
        True,
    )


def test_each_challenge_has_a_fresh_nonce() -> None:
    auth = make_auth()
    nonces = {nonce_of(auth.challenge(REALM, T0).headers[0][1]) for _ in range(50)}
    assert len(nonces) == 50


def test_default_salt_source_needs_no_randomness() -> None:
    store = Store()
    store.add("alice", ALICE_PW)
    auth = DigestAuthenticator(AuthConfig(), SECRET, store)
    chs = [auth.challenge(REALM, T0) for _ in range(20)]
    assert len({nonce_of(c.headers[0][1]) for c in chs}) == 20
    assert isinstance(
        auth.check(register(("Authorization", answer(pick(chs[-1], "MD5")))), REALM, IP, T0), Authenticated
    )


@pytest.mark.parametrize("realm", ["bad\r\nX-Injected: 1", "nul\x00", "tab\t"])
def test_a_realm_that_would_break_the_header_is_a_local_bug(realm: str) -> None:
    with pytest.raises(LocalProtocolError):
        make_auth().challenge(realm, T0)


# --- the happy path, end to end through SIP messages -----------------------------------


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_flow(algorithm: str) -> None:
    auth = make_auth()
    first = register()
    ch = auth.check(first, REALM, IP, T0)
    assert isinstance(ch, Challenge)
    # the 401 goes on the wire and the phone reads it back
    resp = parse(make_response(first, ch.status, ch.reason, to_tag="as83kd", extra=list(ch.headers)).to_bytes())
    assert isinstance(resp, Response) and (resp.status, resp.reason) == (401, "Unauthorized")
    offer = next(c for c in resp.www_authenticate if c.algorithm == algorithm)
    second = register(("Authorization", answer(str(offer))))
    assert auth.check(second, REALM, IP, T0 + 120) == Authenticated("alice", REALM, algorithm)
    assert auth.tracked_nonces == 1


def test_utf8_username() -> None:
    store = Store()
    store.add("jörg", "pässword")
    auth = make_auth(store=store)
    ch = auth.challenge(REALM, T0)
    req = register(("Authorization", answer(pick(ch, "SHA-256"), "jörg", "pässword")))
    assert auth.check(req, REALM, IP, T0) == Authenticated("jörg", REALM, "SHA-256")


def test_nonce_count_must_increase() -> None:
    auth = make_auth()
    offer = pick(auth.challenge(REALM, T0), "SHA-256")
    results = {}
    for t, nc in enumerate([1, 2, 2, 5, 3, 6, 6]):
        results[(t, nc)] = auth.check(register(("Authorization", answer(offer, nc=nc))), REALM, IP, T0 + t)
    accepted = [k for k, r in results.items() if isinstance(r, Authenticated)]
    assert accepted == [(0, 1), (1, 2), (3, 5), (5, 6)]
    for key in [(2, 2), (4, 3), (6, 6)]:
        r = results[key]
        assert isinstance(r, Challenge) and r.stale and not r.failed and r.cause is ChallengeCause.REPLAY


def test_replayed_request_is_not_authenticated() -> None:
    auth = make_auth()
    req = register(("Authorization", answer(pick(auth.challenge(REALM, T0), "MD5"))))
    assert isinstance(auth.check(req, REALM, IP, T0 + 1), Authenticated)
    for attacker in (IP, IP2):
        again = auth.check(req, REALM, attacker, T0 + 2)
        assert isinstance(again, Challenge) and again.stale and again.cause is ChallengeCause.REPLAY


def test_the_same_nonce_serves_either_algorithm_once_per_nc() -> None:
    auth = make_auth()
    ch = auth.challenge(REALM, T0)
    assert isinstance(
        auth.check(register(("Authorization", answer(pick(ch, "SHA-256")))), REALM, IP, T0), Authenticated
    )
    r = auth.check(register(("Authorization", answer(pick(ch, "MD5")))), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.cause is ChallengeCause.REPLAY


def test_uppercase_hex_and_unquoted_values_are_tolerated() -> None:
    auth = make_auth()
    value = answer(pick(auth.challenge(REALM, T0), "SHA-256"))
    response = parse_auth(value).response
    assert response is not None
    value = with_param(value, "response", response.upper())  # unquoted, upper case
    value = with_param(value, "uri", "sip:example.com")  # unquoted
    assert isinstance(auth.check(register(("Authorization", value)), REALM, IP, T0), Authenticated)


def test_digest_uri_need_not_equal_request_uri() -> None:
    """RFC 3261 §22.4: forwarding may change the Request-URI; not a failure."""
    auth = make_auth()
    value = answer(pick(auth.challenge(REALM, T0), "SHA-256"), uri="sip:registrar.example.com;transport=tcp")
    assert isinstance(auth.check(register(("Authorization", value)), REALM, IP, T0), Authenticated)


def test_method_is_part_of_the_response() -> None:
    auth = make_auth()
    value = answer(pick(auth.challenge(REALM, T0), "SHA-256"), method="INVITE")
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)  # sent on a REGISTER
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.BAD_CREDENTIALS


# --- wrong credentials ---------------------------------------------------------------


def test_unknown_user_and_wrong_password_look_the_same() -> None:
    store = Store()
    store.add("alice", ALICE_PW)
    auth = make_auth(store=store)
    wrong_pw = register(("Authorization", answer(pick(auth.challenge(REALM, T0), "SHA-256"), "alice", "guess")))
    unknown = register(("Authorization", answer(pick(auth.challenge(REALM, T0), "SHA-256"), "mallory", "guess")))
    a = auth.check(wrong_pw, REALM, IP, T0 + 1)
    b = auth.check(unknown, REALM, IP2, T0 + 1)
    assert isinstance(a, Challenge) and isinstance(b, Challenge)
    assert masked(a) == masked(b)
    assert (a.failed, a.cause) == (b.failed, b.cause) == (True, ChallengeCause.BAD_CREDENTIALS)
    assert nonce_of(a.headers[0][1]) != nonce_of(b.headers[0][1])
    # both went through the credential lookup and the response computation
    assert store.lookups == [(REALM, "alice", "SHA-256"), (REALM, "mallory", "SHA-256")]


def test_unknown_user_never_authenticates_even_against_the_dummy() -> None:
    auth = make_auth()
    offer = parse_auth(pick(auth.challenge(REALM, T0), "SHA-256"))
    assert offer.nonce is not None
    dummy = auth._dummy_ha1["SHA-256"]  # what an unknown user is verified against
    resp = compute_response("SHA-256", dummy, offer.nonce, "00000001", CNONCE, "auth", "REGISTER", "sip:example.com")
    value = (
        f'Digest username="mallory", realm="{REALM}", nonce="{offer.nonce}", uri="sip:example.com", '
        f'response="{resp}", algorithm=SHA-256, cnonce="{CNONCE}", qop=auth, nc=00000001'
    )
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.BAD_CREDENTIALS


def test_disabled_user_is_an_unknown_user() -> None:
    store = Store()
    store.add("alice", ALICE_PW)
    auth = make_auth(store=store)
    value = answer(pick(auth.challenge(REALM, T0), "SHA-256"))
    store.ha1s.clear()  # the edge disabled alice
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.BAD_CREDENTIALS


def test_tampered_nonce_is_a_failure() -> None:
    auth = make_auth()
    nonce = nonce_of(auth.challenge(REALM, T0).headers[0][1])
    forged = ("B" if nonce[10] != "B" else "C").join((nonce[:10], nonce[11:]))
    # a correct response over the forged nonce: only the nonce is wrong
    ha1 = compute_ha1("alice", REALM, ALICE_PW, "MD5")
    resp = compute_response("MD5", ha1, forged, "00000001", CNONCE, "auth", "REGISTER", "sip:example.com")
    value = (
        f'Digest username="alice", realm="{REALM}", nonce="{forged}", uri="sip:example.com", '
        f'response="{resp}", algorithm=MD5, cnonce="{CNONCE}", qop=auth, nc=00000001'
    )
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and not r.stale and r.cause is ChallengeCause.BAD_NONCE


def test_another_tenants_nonce_is_a_failure() -> None:
    store = Store()
    store.add("alice", ALICE_PW)
    store.add("alice", ALICE_PW, realm="other.example.net")
    auth = make_auth(store=store)
    theirs = pick(auth.challenge("other.example.net", T0), "SHA-256")
    value = answer(theirs, realm=REALM)  # their nonce, presented in our realm
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.BAD_NONCE


def test_credentials_for_another_realm_are_not_ours() -> None:
    """RFC 3261 §22.3: credentials for other realms belong to other servers."""
    store = Store()
    store.add("alice", ALICE_PW, realm="other.example.net")
    auth = make_auth(store=store)
    value = answer(pick(auth.challenge("other.example.net", T0), "SHA-256"))
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge)
    assert (r.failed, r.stale, r.cause) == (False, False, ChallengeCause.NO_CREDENTIALS)
    assert parse_auth(r.headers[0][1]).realm == REALM
    assert auth.tracked_sources == 0
    assert store.lookups == []


@pytest.mark.parametrize(
    "name, new",
    [
        ("qop", None),  # RFC 2069 style: no qop, nc, cnonce
        ("nc", None),
        ("cnonce", None),
        ("uri", None),
        ("response", None),
        ("username", None),
        ("nonce", None),
        ("qop", "auth-int"),  # not offered
        ("algorithm", "MD5-sess"),  # -sess: not offered
        ("algorithm", "SHA-512-256"),
        ("nc", "00000000"),
        ("nc", "1"),
        ("nc", "0000000g"),
        ("response", '"abc"'),
        ("response", '"' + "z" * 64 + '"'),
        ("username", '""'),
        ("uri", '"not a uri"'),
        ("cnonce", '""'),
    ],
)
def test_incomplete_or_unoffered_credentials_are_failures(name: str, new: str | None) -> None:
    store = Store()
    store.add("alice", ALICE_PW)
    auth = make_auth(store=store)
    value = with_param(answer(pick(auth.challenge(REALM, T0), "SHA-256")), name, new)
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and not r.stale and r.cause is ChallengeCause.MALFORMED
    assert store.lookups == []  # rejected before any verification
    assert auth.tracked_sources == 1


def test_missing_qop_without_nc_and_cnonce() -> None:
    auth = make_auth()
    value = answer(pick(auth.challenge(REALM, T0), "MD5"))
    for name in ("qop", "nc", "cnonce"):
        value = with_param(value, name, None)
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.MALFORMED


def test_userhash_is_not_offered() -> None:
    auth = make_auth()
    value = answer(pick(auth.challenge(REALM, T0), "SHA-256"), extra=", userhash=true")
    r = auth.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.MALFORMED


def test_algorithm_must_be_offered() -> None:
    auth = make_auth(AuthConfig(algorithms=("SHA-256",)))
    ch = auth.challenge(REALM, T0)
    assert [parse_auth(v).algorithm for _, v in ch.headers] == ["SHA-256"]
    md5 = answer(ch.headers[0][1].replace("SHA-256", "MD5"))  # the nonce, answered with MD5
    r = auth.check(register(("Authorization", md5)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.MALFORMED
    no_alg = with_param(md5, "algorithm", None)  # absent means MD5 (RFC 7616 §3.3)
    r = auth.check(register(("Authorization", no_alg)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.MALFORMED


def test_absent_algorithm_means_md5() -> None:
    auth = make_auth()
    value = with_param(answer(pick(auth.challenge(REALM, T0), "MD5")), "algorithm", None)
    assert auth.check(register(("Authorization", value)), REALM, IP, T0) == Authenticated("alice", REALM, "MD5")


# --- stale nonces -----------------------------------------------------------------------


def test_expired_nonce_is_stale_not_a_failure() -> None:
    auth = make_auth(AuthConfig(nonce_ttl_s=300))
    ch = auth.challenge(REALM, T0)
    issued = nonce_time(ch)
    value = answer(pick(ch, "SHA-256"))
    r = auth.check(register(("Authorization", value)), REALM, IP, issued + 300_001)
    assert isinstance(r, Challenge)
    assert (r.status, r.stale, r.failed, r.cause) == (401, True, False, ChallengeCause.STALE)
    assert all(parse_auth(v).stale for _, v in r.headers)
    assert auth.tracked_sources == 0 and auth.tracked_nonces == 0
    # the phone retries at once with the new nonce, without asking the user
    retry = answer(pick(r, "SHA-256"))
    assert isinstance(auth.check(register(("Authorization", retry)), REALM, IP, issued + 300_002), Authenticated)


def test_nonce_is_valid_up_to_its_ttl() -> None:
    auth = make_auth(AuthConfig(nonce_ttl_s=300))
    ch = auth.challenge(REALM, T0)
    value = answer(pick(ch, "SHA-256"))
    assert isinstance(
        auth.check(register(("Authorization", value)), REALM, IP, nonce_time(ch) + 300_000), Authenticated
    )


def test_expired_nonce_with_wrong_password_is_a_failure() -> None:
    """RFC 7616 §3.3: stale=true only with a valid digest, so old nonces give no free guesses."""
    auth = make_auth(AuthConfig(nonce_ttl_s=300))
    ch = auth.challenge(REALM, T0)
    value = answer(pick(ch, "SHA-256"), password="guess")
    r = auth.check(register(("Authorization", value)), REALM, IP, nonce_time(ch) + 400_000)
    assert isinstance(r, Challenge)
    assert (r.stale, r.failed, r.cause) == (False, True, ChallengeCause.BAD_CREDENTIALS)


def test_nonce_from_before_a_restart_is_stale() -> None:
    store = Store()
    store.add("alice", ALICE_PW)
    before = make_auth(store=store)
    value = answer(pick(before.challenge(REALM, T0), "SHA-256"))
    assert isinstance(before.check(register(("Authorization", value)), REALM, IP, T0 + 1), Authenticated)
    after = make_auth(store=store)  # same secret, empty replay table
    replay = register(("Authorization", value))
    r = after.check(replay, REALM, IP, T0 + 2_000)
    assert isinstance(r, Challenge) and r.stale and not r.failed and r.cause is ChallengeCause.STALE
    retry = answer(pick(r, "SHA-256"))
    assert isinstance(after.check(register(("Authorization", retry)), REALM, IP, T0 + 2_001), Authenticated)


def test_nonce_from_the_future_is_stale() -> None:
    """A nonce minted before the wall clock stepped back, by another process."""
    store = Store()
    store.add("alice", ALICE_PW)
    ahead = make_auth(store=store)
    value = answer(pick(ahead.challenge(REALM, T0 + 60_000), "SHA-256"))
    behind = make_auth(store=store)
    r = behind.check(register(("Authorization", value)), REALM, IP, T0)
    assert isinstance(r, Challenge) and r.stale and not r.failed


def test_own_nonces_survive_the_clock_stepping_back() -> None:
    auth = make_auth()
    ch = auth.challenge(REALM, T0)
    value = answer(pick(ch, "SHA-256"))
    assert isinstance(auth.check(register(("Authorization", value)), REALM, IP, T0 - 30_000), Authenticated)
    later = auth.challenge(REALM, T0 - 30_000)
    assert nonce_time(later) > T0  # minted above the floor, so it can be vouched for
    assert isinstance(
        auth.check(register(("Authorization", answer(pick(later, "MD5")))), REALM, IP, T0 - 29_000), Authenticated
    )


# --- bounded replay table ---------------------------------------------------------------


def test_nonce_table_is_bounded_and_eviction_reopens_no_replay() -> None:
    auth = make_auth(AuthConfig(nonce_table_size=4))
    accepted = []
    for i in range(12):
        t = T0 + 1_000 * i
        req = register(("Authorization", answer(pick(auth.challenge(REALM, t), "SHA-256"))))
        assert isinstance(auth.check(req, REALM, IP, t + 1), Authenticated)
        accepted.append(req)
        assert auth.tracked_nonces <= 4
    for req in accepted:  # every earlier request, replayed: evicted or not, none passes
        r = auth.check(req, REALM, IP2, T0 + 20_000)
        assert isinstance(r, Challenge) and r.stale and not r.failed
    # evicted nonces with a new nc are refused too (their history is gone)
    first_nonce = parse_auth(accepted[0].headers.get("Authorization") or "").nonce
    assert first_nonce is not None
    old = answer(f'Digest realm="{REALM}", nonce="{first_nonce}", algorithm=SHA-256, qop="auth"', nc=9)
    r = auth.check(register(("Authorization", old)), REALM, IP, T0 + 20_000)
    assert isinstance(r, Challenge) and r.stale and r.cause is ChallengeCause.STALE
    # and a fresh nonce still works
    fresh = answer(pick(auth.challenge(REALM, T0 + 30_000), "MD5"))
    assert isinstance(auth.check(register(("Authorization", fresh)), REALM, IP, T0 + 30_001), Authenticated)
    assert auth.tracked_nonces <= 4


# --- blocking -------------------------------------------------------------------------


def _wrong(auth: DigestAuthenticator, t: int) -> str:
    return answer(pick(auth.challenge(REALM, t), "SHA-256"), password="guess")


def _right(auth: DigestAuthenticator, t: int) -> str:
    return answer(pick(auth.challenge(REALM, t), "SHA-256"))


def test_blocking_after_max_failures_spares_other_addresses() -> None:
    store = Store()
    store.add("alice", ALICE_PW)
    auth = make_auth(AuthConfig(max_failures=3, failure_window_s=60, block_s=300), store=store)
    for i in range(3):
        r = auth.check(register(("Authorization", _wrong(auth, T0))), REALM, IP, T0 + i)
        assert isinstance(r, Challenge) and r.failed
    lookups = len(store.lookups)
    blocked = auth.check(register(("Authorization", _right(auth, T0))), REALM, IP, T0 + 10)
    assert blocked == Blocked(403, "Forbidden") and blocked.headers == ()
    assert isinstance(auth.check(register(), REALM, IP, T0 + 11), Blocked)  # even without credentials
    assert len(store.lookups) == lookups  # nothing was verified
    # the right password from another address still works
    assert isinstance(auth.check(register(("Authorization", _right(auth, T0))), REALM, IP2, T0 + 12), Authenticated)
    # the block expires
    assert isinstance(auth.check(register(), REALM, IP, T0 + 2 + 299_999), Blocked)
    r = auth.check(register(("Authorization", _right(auth, T0 + 302_002))), REALM, IP, T0 + 302_002)
    assert isinstance(r, Authenticated)


def test_success_resets_no_counter() -> None:
    auth = make_auth(AuthConfig(max_failures=3))
    for i in range(2):
        auth.check(register(("Authorization", _wrong(auth, T0))), REALM, IP, T0 + i)
        auth.check(register(("Authorization", _wrong(auth, T0))), REALM, IP2, T0 + i)
    assert isinstance(auth.check(register(("Authorization", _right(auth, T0))), REALM, IP, T0 + 5), Authenticated)
    # a NAT neighbour's success does not wipe an attacker's count, nor does anyone else's
    auth.check(register(("Authorization", _wrong(auth, T0))), REALM, IP, T0 + 6)
    auth.check(register(("Authorization", _wrong(auth, T0))), REALM, IP2, T0 + 6)
    assert isinstance(auth.check(register(), REALM, IP, T0 + 7), Blocked)
    assert isinstance(auth.check(register(), REALM, IP2, T0 + 7), Blocked)


def test_stale_and_replay_are_not_failures() -> None:
    auth = make_auth(AuthConfig(max_failures=2, nonce_ttl_s=10))
    req = register(("Authorization", _right(auth, T0)))
    assert isinstance(auth.check(req, REALM, IP, T0 + 1), Authenticated)
    for i in range(5):
        r = auth.check(req, REALM, IP, T0 + 2 + i)  # replays
        assert isinstance(r, Challenge) and not r.failed
        r = auth.check(register(("Authorization", _right(auth, T0))), REALM, IP, T0 + 60_000 + i)  # expired
        assert isinstance(r, Challenge) and r.stale and not r.failed
    assert isinstance(
        auth.check(register(("Authorization", _right(auth, T0 + 70_000))), REALM, IP, T0 + 70_000), Authenticated
    )


def test_source_table_is_bounded() -> None:
    auth = make_auth(AuthConfig(max_failures=3, source_table_size=8))
    for _ in range(3):
        auth.check(register(("Authorization", _wrong(auth, T0))), REALM, "192.0.2.66", T0)
    value = _wrong(auth, T0)
    for i in range(300):
        auth.check(register(("Authorization", value)), REALM, f"10.0.{i // 256}.{i % 256}", T0 + i)
        assert auth.tracked_sources <= 16
    assert isinstance(auth.check(register(), REALM, "192.0.2.66", T0 + 400), Blocked)


# --- several credentials, proxies ------------------------------------------------------


def test_picks_our_digest_credentials_among_several() -> None:
    auth = make_auth()
    ours = answer(pick(auth.challenge(REALM, T0), "SHA-256"))
    req = register(
        ("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ("Authorization", 'Digest username="alice", realm="other.example.net", nonce="x", uri="sip:a", response="0"'),
        ("Authorization", 'Digest username="alice", realm="example.com", nonce="unterminated'),
        ("Authorization", ours),
    )
    assert auth.check(req, REALM, IP, T0) == Authenticated("alice", REALM, "SHA-256")


def test_prefers_an_offered_algorithm_for_our_realm() -> None:
    auth = make_auth(AuthConfig(algorithms=("SHA-256",)))
    offer = pick(auth.challenge(REALM, T0), "SHA-256")
    md5 = answer(offer.replace("SHA-256", "MD5"))
    sha = answer(offer, nc=2)
    r = auth.check(register(("Authorization", md5), ("Authorization", sha)), REALM, IP, T0)
    assert r == Authenticated("alice", REALM, "SHA-256")


def test_only_malformed_digest_credentials_is_a_failure() -> None:
    auth = make_auth()
    req = register(("Authorization", 'Digest username="alice", realm="example.com" nonce="x"'))
    r = auth.check(req, REALM, IP, T0)
    assert isinstance(r, Challenge) and r.failed and r.cause is ChallengeCause.MALFORMED
    other_scheme = auth.check(register(("Authorization", "Bearer abc.def")), REALM, IP2, T0)
    assert isinstance(other_scheme, Challenge) and not other_scheme.failed


def test_proxy_authentication() -> None:
    auth = make_auth()
    invite = register(ruri="sip:bob@example.com", method="INVITE")
    ch = auth.check(invite, REALM, IP, T0, proxy=True)
    assert isinstance(ch, Challenge) and (ch.status, ch.reason) == (407, "Proxy Authentication Required")
    assert {name for name, _ in ch.headers} == {"Proxy-Authenticate"}
    resp = parse(make_response(invite, ch.status, ch.reason, to_tag="x", extra=list(ch.headers)).to_bytes())
    assert isinstance(resp, Response) and len(resp.proxy_authenticate) == 2 and not resp.www_authenticate
    value = answer(str(resp.proxy_authenticate[0]), method="INVITE", uri="sip:bob@example.com")
    # Authorization is for the UAS, not for us
    r = auth.check(
        register(("Authorization", value), ruri="sip:bob@example.com", method="INVITE"), REALM, IP, T0, proxy=True
    )
    assert isinstance(r, Challenge) and r.status == 407 and r.cause is ChallengeCause.NO_CREDENTIALS
    # Proxy-Authorization next to another proxy's credentials
    upstream = 'Digest username="alice", realm="carrier.example", nonce="n", uri="sip:bob@example.com", response="0"'
    req = register(
        ("Proxy-Authorization", upstream),
        ("Proxy-Authorization", value),
        ruri="sip:bob@example.com",
        method="INVITE",
    )
    assert auth.check(req, REALM, IP, T0, proxy=True) == Authenticated("alice", REALM, "SHA-256")
    # and the same credentials mean nothing to the registrar side
    r = auth.check(req, REALM, IP, T0)
    assert isinstance(r, Challenge) and r.status == 401 and r.cause is ChallengeCause.NO_CREDENTIALS


# --- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nonce_ttl_s": 0},
        {"max_failures": 0},
        {"failure_window_s": -1},
        {"block_s": 0},
        {"nonce_table_size": 0},
        {"source_table_size": 0},
        {"nonce_ttl_s": True},
        {"algorithms": ()},
        {"algorithms": ("SHA-256", "SHA-256")},
        {"algorithms": ("MD5-sess",)},
        {"algorithms": ("sha-256",)},
    ],
)
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        AuthConfig(**kwargs)  # type: ignore[arg-type]


def test_secret_and_opaque_validation() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(AuthConfig(), b"short", Store())
    with pytest.raises(ValueError):
        DigestAuthenticator(AuthConfig(), SECRET, Store(), opaque="a\r\nb")
    with pytest.raises(ValueError):
        make_auth(new_nonce_salt=lambda: b"123").challenge(REALM, T0)


def test_salt_source_is_used() -> None:
    salts = Salts()
    auth = DigestAuthenticator(AuthConfig(), SECRET, Store(), new_nonce_salt=salts)
    auth.challenge(REALM, T0)
    auth.challenge(REALM, T0)
    assert salts.n == 2


def test_answers_recent_challenge_is_the_first_answer_to_a_fresh_nonce_of_ours() -> None:
    """What load shedding lets through: nc=1 to a nonce issued within the window,
    in the realm it was issued for; not cached credentials, old nonces, forged ones."""
    auth = make_auth()
    ch = auth.check(register(), REALM, IP, T0)
    assert isinstance(ch, Challenge)
    value = pick(ch, "MD5")
    fresh = register(("Authorization", answer(value)))
    assert auth.answers_recent_challenge(fresh, T0 + 1000, 32_000)
    assert not auth.answers_recent_challenge(fresh, T0 + 40_000, 32_000), "issued too long ago"
    assert not auth.answers_recent_challenge(register(("Authorization", answer(value, nc=2))), T0 + 1000, 32_000)
    other_realm = register(("Authorization", answer(value, realm="example.org")))
    assert not auth.answers_recent_challenge(other_realm, T0 + 1000, 32_000), "the nonce is bound to its realm"
    made_up = answer(value).replace(nonce_of(value), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert not auth.answers_recent_challenge(register(("Authorization", made_up)), T0 + 1000, 32_000)
    assert not auth.answers_recent_challenge(register(("Authorization", "Basic YWxpY2U6eA==")), T0, 32_000)
    assert not auth.answers_recent_challenge(register(), T0, 32_000)
    as_proxy = register(("Proxy-Authorization", answer(value)), method="INVITE")
    assert auth.answers_recent_challenge(as_proxy, T0 + 1000, 32_000)
