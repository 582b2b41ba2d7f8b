"""Shared helpers for the auth tests: a fixed secret, a deterministic salt
source, an in-memory credential store, and a small digest UAC that answers a
challenge the way a phone would (reading it with the message layer's reference
grammar, so the challenges are checked against it too)."""

from __future__ import annotations

from sipcore.auth import AuthConfig, Challenge, DigestAuthenticator, compute_ha1, compute_response
from sipcore.message import Request, parse
from sipcore.message.headers import parse_auth

SECRET = b"tests/auth fixed secret, 32 byte"
REALM = "example.com"
T0 = 1_700_000_000_000  # ms UTC
ALICE_PW = "correct horse"
CNONCE = "0a4f113b"


class Salts:
    """Deterministic 8-byte salts: 0000...01, 0000...02, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> bytes:
        self.n += 1
        return self.n.to_bytes(8, "big")


class Store:
    """CredentialSource over a dict; remembers every lookup."""

    def __init__(self) -> None:
        self.ha1s: dict[tuple[str, str, str], str] = {}
        self.lookups: list[tuple[str, str, str]] = []

    def add(self, username: str, password: str, realm: str = REALM) -> None:
        for alg in ("SHA-256", "MD5"):
            self.ha1s[(realm, username, alg)] = compute_ha1(username, realm, password, alg)

    def ha1(self, realm: str, username: str, algorithm: str) -> str | None:
        self.lookups.append((realm, username, algorithm))
        return self.ha1s.get((realm, username, algorithm))


def make_auth(config: AuthConfig | None = None, store: Store | None = None, **kw: object) -> DigestAuthenticator:
    if store is None:
        store = Store()
        store.add("alice", ALICE_PW)
    kw.setdefault("new_nonce_salt", Salts())
    return DigestAuthenticator(config or AuthConfig(), SECRET, store, **kw)  # type: ignore[arg-type]


def register(*auth: tuple[str, str], ruri: str = "sip:example.com", method: str = "REGISTER") -> Request:
    """A REGISTER (or `method`) parsed from wire bytes, with the given extra header fields."""
    lines = [
        f"{method} {ruri} SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.23:5060;rport;branch=z9hG4bKnashds7",
        "Max-Forwards: 70",
        'From: "Alice" <sip:alice@example.com>;tag=456248',
        'To: "Alice" <sip:alice@example.com>',
        "Call-ID: 843817637684230@998sdasdh09",
        f"CSeq: 1827 {method}",
        "Contact: <sip:alice@198.51.100.23:5060>;expires=3600",
    ]
    lines += [f"{name}: {value}" for name, value in auth]
    lines.append("Content-Length: 0")
    msg = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def pick(ch: Challenge, algorithm: str) -> str:
    """The challenge header value offering `algorithm`."""
    for _, value in ch.headers:
        if parse_auth(value).algorithm == algorithm:
            return value
    raise AssertionError(f"{algorithm} not offered in {ch.headers}")


def answer(
    challenge_value: str,
    username: str = "alice",
    password: str = ALICE_PW,
    *,
    method: str = "REGISTER",
    uri: str = "sip:example.com",
    nc: int = 1,
    cnonce: str = CNONCE,
    realm: str | None = None,
    extra: str = "",
) -> str:
    """Credentials for one challenge value, computed as RFC 7616 §3.4 says."""
    ch = parse_auth(challenge_value)
    assert ch.is_digest and ch.qop_options == ("auth",)
    realm = ch.realm if realm is None else realm
    assert ch.nonce is not None and realm is not None
    alg = ch.algorithm
    ha1 = compute_ha1(username, realm, password, alg)
    ncs = f"{nc:08x}"
    resp = compute_response(alg, ha1, ch.nonce, ncs, cnonce, "auth", method, uri)
    opaque = f', opaque="{ch.opaque}"' if ch.opaque is not None else ""
    return (
        f'Digest username="{username}", realm="{realm}", nonce="{ch.nonce}", uri="{uri}", '
        f'response="{resp}", algorithm={alg}, cnonce="{cnonce}", qop=auth, nc={ncs}{opaque}{extra}'
    )


def masked(ch: Challenge) -> tuple[object, ...]:
    """Everything a peer sees of a challenge, with the nonce blanked."""
    headers = tuple((n, v.replace(parse_auth(v).nonce or "", "NONCE")) for n, v in ch.headers)
    return (ch.status, ch.reason, headers, ch.stale)
