"""Stateless nonces and bounded nonce-count tracking (RFC 7616 §3.3, §3.4, §5.4).

Theory of operation
-------------------
A nonce is ``base64url(issued_ms || salt || tag)`` without padding, where
``issued_ms`` is the 8-byte big-endian issue time, ``salt`` 8 bytes from the
injected salt source, and ``tag`` the first 16 bytes of
``HMAC-SHA256(secret, issued_ms || salt || realm)``.  The fields have fixed
lengths, so the MAC input is unambiguous.  Verifying a nonce needs no state:
recompute the tag (constant-time compare) and read the age.  A nonce is bound
to its realm, so one tenant's nonce is worthless in another's realm.

Replay protection needs state: the last accepted nonce-count (nc) of each
nonce that was ever accepted, in a table of bounded size (:class:`NonceCounts`).
Only a request that passed the digest check enters the table, so an
unauthenticated peer cannot grow it.  A presented nc must be strictly above
the last accepted one.

Eviction must never re-open a replay.  The table keeps a *floor*: the highest
issue time of any nonce that ever left it (evicted because the table was full,
or pruned because it expired).  A nonce that is absent from the table is
admitted only if it was issued *after* the floor; then it cannot have been in
the table before, because everything that left had an issue time at or below
the floor.  Anything else gets ``stale=true``: the client retries at once with
a fresh nonce (which is minted above the floor), without re-prompting the
user.  The floor starts at the first time the table sees, so nonces minted by
an earlier process with the same secret (before a restart) are answered
``stale=true`` rather than accepted with their history forgotten.

Eviction is in order of first acceptance (FIFO), which approximates issue
order, so the floor trails the clock by about the time the table takes to
fill.  The cost of a small table is only extra stale round trips, never a
replay.  Expired entries are pruned from the front as new ones arrive.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections import OrderedDict
from enum import Enum

from sipcore.auth.digest import encode

SALT_LEN = 8
_TIME_LEN = 8
_TAG_LEN = 16
_RAW_LEN = _TIME_LEN + SALT_LEN + _TAG_LEN  # 32 octets -> 43 base64url characters
# 32 octets leave 2 zero padding bits in the last character, so only the 16
# characters whose low two bits are zero may end a canonical encoding: one
# nonce has exactly one spelling.
_NONCE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_MAX_MS = 2**64 - 1
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


class NonceCodec:
    """Mints and opens stateless nonces with one server secret."""

    __slots__ = ("_mac",)

    def __init__(self, secret: bytes) -> None:
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)

    def _tag(self, head: bytes, realm: str) -> bytes:
        m = self._mac.copy()
        m.update(head)
        m.update(encode(realm))
        return m.digest()[:_TAG_LEN]

    def mint(self, issued_ms: int, salt: bytes, realm: str) -> str:
        if len(salt) != SALT_LEN:
            raise ValueError(f"nonce salt must be {SALT_LEN} bytes, got {len(salt)}")
        if not 0 <= issued_ms <= _MAX_MS:
            raise ValueError(f"nonce time out of range: {issued_ms}")
        head = issued_ms.to_bytes(_TIME_LEN, "big") + salt
        b64 = binascii.b2a_base64(head + self._tag(head, realm), newline=False)
        return b64.translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")

    def open(self, nonce: str, realm: str) -> bytes | None:
        """The nonce's 32 octets if we minted it for `realm`, else None.

        The octets are the replay-table key; :func:`issued_ms` reads the time.
        """
        if not _NONCE.fullmatch(nonce):
            return None
        # binascii directly: base64.urlsafe_b64decode's wrapper doubles the cost.
        raw = binascii.a2b_base64(nonce.encode("ascii").translate(_FROM_URLSAFE) + b"=")
        head = raw[: _TIME_LEN + SALT_LEN]
        if not hmac.compare_digest(self._tag(head, realm), raw[_TIME_LEN + SALT_LEN :]):
            return None
        return raw


def issued_ms(raw: bytes) -> int:
    """Issue time (ms) of an opened nonce."""
    return int.from_bytes(raw[:_TIME_LEN], "big")


class Admission(Enum):
    """What :meth:`NonceCounts.admit` decided about a (nonce, nc) pair."""

    ACCEPTED = "accepted"
    REPLAY = "replay"  # nc not above the last accepted nc of this nonce
    UNPROVABLE = "unprovable"  # absent, and issued at or before the floor


class NonceCounts:
    """Last accepted nonce-count per nonce, at most `size` entries (see module doc)."""

    __slots__ = ("_table", "_size", "_ttl_ms", "_floor_ms", "started_ms")

    def __init__(self, size: int, ttl_ms: int) -> None:
        if size < 1:
            raise ValueError("nonce table size must be at least 1")
        self._table: OrderedDict[bytes, int] = OrderedDict()
        self._size = size
        self._ttl_ms = ttl_ms
        self._floor_ms: int | None = None
        self.started_ms: int | None = None  # the first time the table saw (its initial floor)

    def __len__(self) -> int:
        return len(self._table)

    def floor(self, now_ms: int) -> int:
        """The floor, started at `now_ms` on first use.  Fresh nonces must be
        minted strictly above it."""
        f = self._floor_ms
        if f is None:
            f = self._floor_ms = self.started_ms = now_ms
        return f

    def admit(self, raw: bytes, nc: int, now_ms: int) -> Admission:
        """Record `nc` for the nonce `raw` if that cannot replay anything."""
        table = self._table
        last = table.get(raw)
        if last is not None:
            if nc > last:
                table[raw] = nc
                return Admission.ACCEPTED
            return Admission.REPLAY
        floor = self.floor(now_ms)
        if issued_ms(raw) <= floor:
            return Admission.UNPROVABLE
        # Prune expired entries at the front, then make room; both raise the floor.
        horizon = now_ms - self._ttl_ms
        while table:
            key = next(iter(table))
            t = issued_ms(key)
            if t >= horizon and len(table) < self._size:
                break
            del table[key]
            if t > floor:
                floor = t
        self._floor_ms = floor
        table[raw] = nc
        return Admission.ACCEPTED
