"""Stateless nonces and the bounded nonce-count table."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcore.auth.nonce import Admission, NonceCodec, NonceCounts, issued_ms

from ._support import REALM, SECRET, T0

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_mint_and_open() -> None:
    codec = NonceCodec(SECRET)
    nonce = codec.mint(T0, b"\x01" * 8, REALM)
    assert len(nonce) == 43 and set(nonce) <= set(B64URL)
    raw = codec.open(nonce, REALM)
    assert raw is not None and issued_ms(raw) == T0 and raw[8:16] == b"\x01" * 8
    assert base64.urlsafe_b64decode(nonce + "=") == raw


def test_distinct_salts_give_distinct_nonces() -> None:
    codec = NonceCodec(SECRET)
    assert codec.mint(T0, b"\x01" * 8, REALM) != codec.mint(T0, b"\x02" * 8, REALM)


def test_bound_to_realm_and_secret() -> None:
    nonce = NonceCodec(SECRET).mint(T0, b"saltsalt", REALM)
    assert NonceCodec(SECRET).open(nonce, "other.example.com") is None
    assert NonceCodec(SECRET[::-1]).open(nonce, REALM) is None


def test_every_single_character_change_is_rejected() -> None:
    codec = NonceCodec(SECRET)
    nonce = codec.mint(T0, b"saltsalt", REALM)
    for i, c in enumerate(nonce):
        for other in ("A", "w", "_") if c not in "Aw_" else ("B", "x", "-"):
            tampered = nonce[:i] + other + nonce[i + 1 :]
            assert codec.open(tampered, REALM) is None, (i, tampered)


def test_one_spelling_per_nonce() -> None:
    """The last character carries two padding bits; a variant with them set
    decodes to the same octets with a lax decoder, but is not accepted."""
    codec = NonceCodec(SECRET)
    nonce = codec.mint(T0, b"saltsalt", REALM)
    last = B64URL.index(nonce[-1])
    assert last % 4 == 0
    variant = nonce[:-1] + B64URL[last + 1]
    assert base64.urlsafe_b64decode(variant + "=") == base64.urlsafe_b64decode(nonce + "=")
    assert codec.open(variant, REALM) is None


@pytest.mark.parametrize("junk", ["", "abc", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 41 + "+A", "A" * 41 + " A"])
def test_malformed_nonces(junk: str) -> None:
    assert NonceCodec(SECRET).open(junk, REALM) is None


def test_mint_rejects_bad_input() -> None:
    codec = NonceCodec(SECRET)
    with pytest.raises(ValueError):
        codec.mint(T0, b"short", REALM)
    with pytest.raises(ValueError):
        codec.mint(-1, b"saltsalt", REALM)


def _raw(t: int, i: int) -> bytes:
    """A stand-in for an opened nonce: issue time, then a unique tail."""
    return t.to_bytes(8, "big") + i.to_bytes(24, "big")


def test_counts_accept_increasing_nc_only() -> None:
    counts = NonceCounts(size=10, ttl_ms=300_000)
    raw = _raw(T0 + 5, 1)
    counts.floor(T0)
    assert counts.admit(raw, 1, T0 + 10) is Admission.ACCEPTED
    assert counts.admit(raw, 1, T0 + 11) is Admission.REPLAY
    assert counts.admit(raw, 3, T0 + 12) is Admission.ACCEPTED
    assert counts.admit(raw, 2, T0 + 13) is Admission.REPLAY
    assert len(counts) == 1


def test_floor_starts_at_first_use() -> None:
    """Nonces minted before this table existed (a previous process) cannot be vouched for."""
    counts = NonceCounts(size=10, ttl_ms=300_000)
    assert counts.admit(_raw(T0 - 1, 1), 1, T0) is Admission.UNPROVABLE
    assert counts.admit(_raw(T0, 2), 1, T0) is Admission.UNPROVABLE
    assert counts.admit(_raw(T0 + 1, 3), 1, T0 + 1) is Admission.ACCEPTED


def test_eviction_raises_the_floor_and_never_readmits() -> None:
    counts = NonceCounts(size=3, ttl_ms=300_000)
    counts.floor(T0)
    raws = [_raw(T0 + 1 + i, i) for i in range(6)]
    for r in raws:
        assert counts.admit(r, 1, T0 + 100) is Admission.ACCEPTED
        assert len(counts) <= 3
    # the first three left the table: each, with any nc, is now unprovable
    for r in raws[:3]:
        assert counts.admit(r, 1, T0 + 200) is Admission.UNPROVABLE
        assert counts.admit(r, 99, T0 + 200) is Admission.UNPROVABLE
    assert counts.floor(T0 + 200) == T0 + 3
    # a nonce issued before the floor that was never used is unprovable too (the price)
    assert counts.admit(_raw(T0 + 2, 100), 1, T0 + 200) is Admission.UNPROVABLE
    # and one issued after it is fine
    assert counts.admit(_raw(T0 + 150, 101), 1, T0 + 200) is Admission.ACCEPTED


def test_expired_entries_are_pruned() -> None:
    counts = NonceCounts(size=100, ttl_ms=1_000)
    counts.floor(T0)
    for i in range(5):
        counts.admit(_raw(T0 + 1 + i, i), 1, T0 + 10)
    assert len(counts) == 5
    counts.admit(_raw(T0 + 5_000, 99), 1, T0 + 5_000)
    assert len(counts) == 1


_OPS = st.lists(
    st.tuples(st.integers(0, 11), st.integers(1, 5), st.integers(0, 30)),  # (nonce id, nc, clock step)
    max_size=200,
)


@given(size=st.integers(1, 6), ops=_OPS)
def test_no_replay_is_ever_accepted(size: int, ops: list[tuple[int, int, int]]) -> None:
    """Model check: whatever the table size and eviction history, a (nonce, nc)
    is accepted only if nc is above every nc ever accepted for that nonce."""
    counts = NonceCounts(size=size, ttl_ms=200)
    now = T0
    counts.floor(now)
    best: dict[int, int] = {}
    for nid, nc, step in ops:
        now += step
        raw = _raw(T0 + 1 + 10 * nid, nid)
        if now - issued_ms(raw) > 200:
            continue  # the authenticator never admits an expired nonce
        result = counts.admit(raw, nc, now)
        if result is Admission.ACCEPTED:
            assert nc > best.get(nid, 0), (nid, nc, best)
            best[nid] = nc
        assert len(counts) <= size
