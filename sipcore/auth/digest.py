"""Digest arithmetic (RFC 7616 §3.4.1, RFC 8760 §2; RFC 3261 §22.4).

Pure functions over strings.  The hashes are over the octets of the fields as
they appeared on the wire: a SIP message is decoded with ``surrogateescape``,
so encoding back with it restores the original bytes (and a non-UTF-8 username
or URI hashes exactly as the client hashed it).

Only ``qop=auth`` is implemented; ``auth-int`` and the ``-sess`` algorithm
variants are never offered, so credentials using them are rejected upstream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

MD5 = "MD5"
SHA256 = "SHA-256"

_HashCtor = Callable[[bytes], Any]
_HASHES: dict[str, _HashCtor] = {MD5: hashlib.md5, SHA256: hashlib.sha256}

SUPPORTED_ALGORITHMS: tuple[str, ...] = (SHA256, MD5)
"""Algorithms this module can compute, most preferred first (RFC 8760 §2)."""

HEX_LEN: dict[str, int] = {MD5: 32, SHA256: 64}
"""Length of a lower-hex digest (HA1, HA2, response) per algorithm."""


def encode(s: str) -> bytes:
    """The wire octets of `s`: UTF-8 with ``surrogateescape`` (the model's
    decoding), falling back to ``surrogatepass`` for lone surrogates that did
    not come from a decoder, so that no string makes this raise."""
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def hash_hex(algorithm: str, data: str) -> str:
    """H(data) as lower-case hex for `algorithm` ("MD5" or "SHA-256")."""
    return str(_HASHES[algorithm](encode(data)).hexdigest())


def compute_ha1(username: str, realm: str, password: str, algorithm: str) -> str:
    """HA1 = H(username ":" realm ":" password) (RFC 7616 §3.4.2), for provisioning.

    The store keeps one HA1 per algorithm and never the password.  The realm is
    part of the hash, so a tenant's domain change means re-provisioning.
    Raises ValueError for an algorithm other than "MD5" or "SHA-256".
    """
    if algorithm not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return hash_hex(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    algorithm: str,
    ha1: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str,
    method: str,
    digest_uri: str,
) -> str:
    """request-digest for qop=auth (RFC 7616 §3.4.1):

    ``H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" digest-uri))``

    Every argument is used exactly as written in the credentials (nc as its
    8 hex digits, qop as sent), because that is what the client hashed.
    """
    h = _HASHES[algorithm]
    ha2 = h(encode(f"{method}:{digest_uri}")).hexdigest()
    return str(h(encode(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")).hexdigest())
