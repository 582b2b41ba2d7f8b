"""Digest authentication (SANS-IO): RFC 3261 §22, RFC 7616, RFC 8760.

- :mod:`~sipcore.auth.authenticator`: :class:`DigestAuthenticator`, the
  decision ``check(req, realm, source_ip, now_ms) -> AuthResult``.
- :mod:`~sipcore.auth.nonce`: stateless HMAC nonces and the bounded
  nonce-count (replay) table.
- :mod:`~sipcore.auth.throttle`: failure counting and blocking per source.
- :mod:`~sipcore.auth.digest`: the hash arithmetic, :func:`compute_ha1` for
  provisioning.
- :mod:`~sipcore.auth.credentials`: the fast (Proxy-)Authorization reader.

No clock, no randomness, no storage: ``now_ms``, the secret, the salt source
and a :class:`CredentialSource` are passed in.
"""

from __future__ import annotations

from sipcore.auth.authenticator import (
    AuthConfig,
    Authenticated,
    AuthResult,
    Blocked,
    Challenge,
    ChallengeCause,
    CredentialSource,
    DigestAuthenticator,
)
from sipcore.auth.digest import SUPPORTED_ALGORITHMS, compute_ha1, compute_response

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthConfig",
    "AuthResult",
    "Authenticated",
    "Blocked",
    "Challenge",
    "ChallengeCause",
    "CredentialSource",
    "DigestAuthenticator",
    "compute_ha1",
    "compute_response",
]
