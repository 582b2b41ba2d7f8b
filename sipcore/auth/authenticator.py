"""Digest authentication of SIP requests (RFC 3261 §22, RFC 7616, RFC 8760).

Theory of operation
-------------------
:meth:`DigestAuthenticator.check` takes a request and decides, returning one of
:class:`Authenticated`, :class:`Challenge` (401 / 407 with one challenge per
offered algorithm) or :class:`Blocked` (403).  It never raises for anything a
peer can send.  The steps, in order:

1. A source address blocked for too many failures gets :class:`Blocked`,
   without anything being parsed or verified (:mod:`sipcore.auth.throttle`).
2. Among the (Proxy-)Authorization fields, the first Digest credentials whose
   realm is the tenant's realm are used (preferring an algorithm we offer).
   Credentials for other realms belong to other servers (RFC 3261 §22.3) and
   are not failures.  No usable credentials: a plain challenge.
3. The parameters must be complete and in what we offered: username, nonce,
   uri, response (hex of the algorithm's length), ``qop=auth``, an 8-hex-digit
   ``nc`` above zero, a cnonce, an offered algorithm (``-sess`` never is), no
   ``userhash``.  Otherwise: a failure.
4. The nonce must be ours and for this realm (HMAC, :mod:`sipcore.auth.nonce`);
   otherwise: a failure.
5. The response is verified with the HA1 from :class:`CredentialSource`.  An
   unknown user is verified against a secret-derived dummy HA1, so that the
   unknown user and the wrong password run the same code and yield the same
   challenge; both are one failure cause, ``bad-credentials``.
6. Only now is the nonce's age looked at: expired -> ``stale=true``.  RFC 7616
   §3.3: "The server SHOULD only set stale to TRUE if it receives a request for
   which the nonce is invalid but with a valid digest for that nonce"; so an
   expired nonce with a wrong password is a failure like any other, and a
   stale nonce is never a free guess.
7. The nonce-count is admitted to the replay table: accepted -> Authenticated;
   an nc not above the last accepted one (a replay, or a client sending
   requests out of order) or a nonce the table can no longer vouch for ->
   ``stale=true``, not a failure: the client knows the password and retries at
   once with the fresh nonce, while the replayer gains nothing.

Every failure (steps 3-5, and malformed Digest credentials in step 2) counts
against the source address.  The :class:`Challenge` says why in ``cause`` for
logs and metrics; that value must never go on the wire.

The ``uri`` parameter is required and must look like an absolute URI, but it
is not compared with the Request-URI.  RFC 3261 §22.4: "In a SIP context,
these two URIs may refer to different users, due to forwarding at some proxy.
Therefore, in SIP, a server MAY check that the Request-URI in the
Authorization/Proxy-Authorization header field value corresponds to a user for
whom the server is willing to accept forwarded or direct requests, but it is
not necessarily a failure if the two fields are not equivalent."  The uri is
hashed into the response, and the nonce-count stops replays, so a full URI
grammar parse here would cost microseconds and protect nothing.

Which requests to challenge is the caller's business (RFC 3261 §22.1: never
CANCEL, nor an ACK for a non-2xx), as is matching the authenticated username
against the From/To URI.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sipcore.auth.credentials import split_credentials
from sipcore.auth.digest import HEX_LEN, MD5, SUPPORTED_ALGORITHMS, compute_response
from sipcore.auth.nonce import SALT_LEN, Admission, NonceCodec, NonceCounts, issued_ms
from sipcore.auth.throttle import FailureLimiter
from sipcore.errors import LocalProtocolError
from sipcore.message import Request

MIN_SECRET_LEN = 16

# --- configuration -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Digest authentication settings.  Invalid values raise ValueError naming
    the field; the config loader turns that into a ConfigError with the path."""

    nonce_ttl_s: int = 300
    """A nonce older than this is answered with a ``stale=true`` challenge."""
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    """Algorithms offered, most preferred first, one challenge header each
    (RFC 8760 §2, RFC 7616 §3.7).  Subset of ("SHA-256", "MD5")."""
    max_failures: int = 10
    """Failed attempts from one source address within ``failure_window_s``
    that block it."""
    failure_window_s: int = 60
    """Window, opened by a source's first failure, in which failures count."""
    block_s: int = 300
    """How long a source stays blocked (403 without verification)."""
    nonce_table_size: int = 100_000
    """Most nonces whose nonce-count is tracked (replay protection)."""
    source_table_size: int = 100_000
    """Most source addresses with a failure count; as many again may be blocked."""

    def __post_init__(self) -> None:
        positive = ("nonce_ttl_s", "max_failures", "failure_window_s", "block_s")
        for name in positive + ("nonce_table_size", "source_table_size"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"AuthConfig.{name} must be a positive integer, not {value!r}")
        algs = self.algorithms
        if not algs or len(set(algs)) != len(algs) or any(a not in SUPPORTED_ALGORITHMS for a in algs):
            allowed = ", ".join(SUPPORTED_ALGORITHMS)
            raise ValueError(f"AuthConfig.algorithms must be distinct values from ({allowed}), not {algs!r}")


# --- results -----------------------------------------------------------------


class ChallengeCause(StrEnum):
    """Why a :class:`Challenge` was issued: for logs and metrics only, never
    for the wire (an unknown user and a wrong password share one cause)."""

    NO_CREDENTIALS = "no-credentials"  # none for this realm: the normal first round trip
    MALFORMED = "malformed"  # unparseable, incomplete, or using something not offered
    BAD_NONCE = "bad-nonce"  # not a nonce we minted for this realm
    BAD_CREDENTIALS = "bad-credentials"  # wrong response, or unknown user
    STALE = "stale"  # right response, but the nonce expired or cannot be vouched for
    REPLAY = "replay"  # right response, nonce-count already used


@dataclass(frozen=True, slots=True)
class Authenticated:
    username: str
    realm: str
    algorithm: str


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``status`` with ``headers`` added.  ``failed`` is True when
    credentials were presented and rejected (counted against the source)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    stale: bool = False
    failed: bool = False
    cause: ChallengeCause = ChallengeCause.NO_CREDENTIALS

    @property
    def reason(self) -> str:
        """The reason phrase of ``status`` (RFC 3261 §21.4.2, §21.4.8)."""
        return "Proxy Authentication Required" if self.status == 407 else "Unauthorized"


@dataclass(frozen=True, slots=True)
class Blocked:
    status: int = 403
    reason: str = "Forbidden"

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return ()


AuthResult = Authenticated | Challenge | Blocked


class CredentialSource(Protocol):
    """Synchronous, in-memory view of the credential store, kept filled by the edge."""

    def ha1(self, realm: str, username: str, algorithm: str) -> str | None:
        """Hex HA1 = H(username:realm:password) for "MD5" or "SHA-256"; None if
        the user is unknown or disabled."""
        ...


# --- the authenticator -------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]+")
_NC = re.compile(r"[0-9a-fA-F]{8}")
# absolute-URI shape (RFC 3986 §3): scheme ":" then printable ASCII; SIP and tel
# URIs escape everything else (RFC 3261 §19.1.2).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+")
_BLOCKED = Blocked()


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DigestAuthenticator:
    """Verifies Digest credentials and builds challenges (see the module doc).

    `secret` keys the nonce MAC; keep it across restarts (a nonce minted before
    a restart is then answered ``stale=true`` instead of as a failure), and give
    each process that keeps its own replay table its own secret, or a nonce
    could be replayed once per process.  `new_nonce_salt` returns 8 bytes per
    challenge (the edge passes ``lambda: os.urandom(8)``).  Without it the salt
    is a MAC of (first time seen, counter): unpredictable to peers and unique
    within the process and across restarts, short of a restart whose first
    call falls in the same millisecond as the previous run's.
    """

    __slots__ = (
        "_credentials",
        "_codec",
        "_counts",
        "_limiter",
        "_ttl_ms",
        "_algorithms",
        "_offered",
        "_dummy_ha1",
        "_opaque_param",
        "_salt",
        "_salt_mac",
        "_salt_n",
    )

    def __init__(
        self,
        config: AuthConfig,
        secret: bytes,
        credentials: CredentialSource,
        opaque: str | None = None,
        *,
        new_nonce_salt: Callable[[], bytes] | None = None,
    ) -> None:
        if len(secret) < MIN_SECRET_LEN:
            raise ValueError(f"the digest secret must be at least {MIN_SECRET_LEN} bytes")
        if opaque is not None and not opaque.isprintable():
            raise ValueError("opaque must not contain control characters")
        self._credentials = credentials
        self._codec = NonceCodec(secret)
        self._ttl_ms = config.nonce_ttl_s * 1000
        self._counts = NonceCounts(config.nonce_table_size, self._ttl_ms)
        self._limiter = FailureLimiter(
            config.max_failures, config.failure_window_s * 1000, config.block_s * 1000, config.source_table_size
        )
        self._algorithms = config.algorithms
        self._offered = frozenset(config.algorithms)
        # Verifying an unknown user against this costs what a known user costs,
        # and no one without the secret can produce a response matching it.
        dummy = hmac.new(secret, b"sipcore.auth dummy HA1", hashlib.sha256).hexdigest()
        self._dummy_ha1 = {alg: dummy[: HEX_LEN[alg]] for alg in SUPPORTED_ALGORITHMS}
        self._opaque_param = "" if opaque is None else f", opaque={_quote(opaque)}"
        self._salt_mac = hmac.new(secret, b"sipcore.auth nonce salt", hashlib.sha256)
        self._salt_n = 0
        self._salt = new_nonce_salt if new_nonce_salt is not None else self._counter_salt

    def _counter_salt(self) -> bytes:
        self._salt_n += 1
        m = self._salt_mac.copy()
        m.update((self._counts.started_ms or 0).to_bytes(8, "big") + self._salt_n.to_bytes(8, "big"))
        return m.digest()[:SALT_LEN]

    @property
    def tracked_nonces(self) -> int:
        """Entries in the nonce-count table (a gauge; at most nonce_table_size)."""
        return len(self._counts)

    @property
    def tracked_sources(self) -> int:
        """Failure counters plus blocks (a gauge; at most 2 * source_table_size)."""
        return len(self._limiter)

    # --- challenges ----------------------------------------------------------

    def challenge(self, realm: str, now_ms: int, *, proxy: bool = False, stale: bool = False) -> Challenge:
        """A fresh challenge for `realm`: 401 with WWW-Authenticate, or with
        `proxy` 407 with Proxy-Authenticate; one header per offered algorithm,
        all carrying the same nonce (as in RFC 7616 §3.9.1)."""
        cause = ChallengeCause.STALE if stale else ChallengeCause.NO_CREDENTIALS
        return self._challenge(realm, now_ms, proxy, stale, False, cause)

    def _challenge(
        self, realm: str, now_ms: int, proxy: bool, stale: bool, failed: bool, cause: ChallengeCause
    ) -> Challenge:
        if not realm.isprintable():
            raise LocalProtocolError(f"realm {realm!r} contains control characters")
        floor = self._counts.floor(now_ms)
        nonce = self._codec.mint(now_ms if now_ms > floor else floor + 1, self._salt(), realm)
        tail = self._opaque_param + (", stale=true" if stale else "")
        head = f'Digest realm={_quote(realm)}, nonce="{nonce}", algorithm='
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        headers = tuple((name, f'{head}{alg}, qop="auth"{tail}') for alg in self._algorithms)
        return Challenge(407 if proxy else 401, headers, stale, failed, cause)

    def _fail(self, realm: str, source_ip: str, now_ms: int, proxy: bool, cause: ChallengeCause) -> Challenge:
        self._limiter.record_failure(source_ip, now_ms)
        return self._challenge(realm, now_ms, proxy, False, True, cause)

    # --- verification --------------------------------------------------------

    def answers_recent_challenge(self, req: Request, now_ms: int, within_ms: int) -> bool:
        """True when `req` carries the first answer (nc=00000001) to a nonce
        this server issued less than `within_ms` ago: the second half of a
        handshake just started, as opposed to credentials a phone cached
        and reuses.  Says nothing about the password (check does that)."""
        for name in ("Authorization", "Proxy-Authorization"):
            for value in req.headers.get_all(name):
                split = split_credentials(value)
                if split is None or split[0].lower() != "digest" or split[1] is None:
                    continue
                params = split[1]
                realm, nonce = params.get("realm"), params.get("nonce")
                if params.get("nc") != "00000001" or realm is None or nonce is None:
                    continue
                raw = self._codec.open(nonce, realm)
                if raw is not None and abs(now_ms - issued_ms(raw)) < within_ms:  # minted at most 1 ms ahead
                    return True
        return False

    def check_without_credentials(
        self, realm: str, source_ip: str, now_ms: int, *, proxy: bool = False
    ) -> Challenge | Blocked:
        """What :meth:`check` answers a request that carries no credentials:
        a challenge, or Blocked while `source_ip` is blocked."""
        if self._limiter.blocked(source_ip, now_ms):
            return _BLOCKED
        return self._challenge(realm, now_ms, proxy, False, False, ChallengeCause.NO_CREDENTIALS)

    def check(self, req: Request, realm: str, source_ip: str, now_ms: int, *, proxy: bool = False) -> AuthResult:
        """Authenticate `req` for `realm` (the tenant domain) from `source_ip`
        at `now_ms` (wall clock, ms UTC).  With `proxy`, read
        Proxy-Authorization and challenge with 407 (RFC 3261 §22.3)."""
        values = req.headers.get_all("Proxy-Authorization" if proxy else "Authorization")
        if not values:
            return self.check_without_credentials(realm, source_ip, now_ms, proxy=proxy)
        if self._limiter.blocked(source_ip, now_ms):
            return _BLOCKED
        creds: dict[str, str] | None = None
        malformed = False
        for value in values:
            split = split_credentials(value)
            if split is None or split[0].lower() != "digest":
                continue
            params = split[1]
            if params is None:
                malformed = True
                continue
            if params.get("realm") != realm:
                continue  # another server's credentials (RFC 3261 §22.3)
            if creds is None:
                creds = params
            if (params.get("algorithm") or MD5).upper() in self._offered:
                creds = params
                break
        if creds is None:
            if malformed:
                return self._fail(realm, source_ip, now_ms, proxy, ChallengeCause.MALFORMED)
            return self._challenge(realm, now_ms, proxy, False, False, ChallengeCause.NO_CREDENTIALS)
        return self._verify(req, creds, realm, source_ip, now_ms, proxy)

    def _verify(
        self, req: Request, creds: dict[str, str], realm: str, source_ip: str, now_ms: int, proxy: bool
    ) -> AuthResult:
        get = creds.get
        # RFC 7616 §3.3: "If this is not present, it is assumed to be 'MD5'."
        algorithm = (get("algorithm") or MD5).upper()
        username = get("username")
        nonce = get("nonce")
        uri = get("uri")
        response = get("response")
        qop = get("qop")
        nc = get("nc")
        cnonce = get("cnonce")
        if (
            algorithm not in self._offered
            or not username
            or nonce is None
            or uri is None
            or not _URI.fullmatch(uri)
            or response is None
            or len(response) != HEX_LEN[algorithm]
            or not _HEX.fullmatch(response)
            or qop is None
            or qop.lower() != "auth"
            or nc is None
            or not _NC.fullmatch(nc)
            or nc == "00000000"
            or not cnonce
            or (get("userhash") or "").lower() == "true"
        ):
            return self._fail(realm, source_ip, now_ms, proxy, ChallengeCause.MALFORMED)
        raw = self._codec.open(nonce, realm)
        if raw is None:
            return self._fail(realm, source_ip, now_ms, proxy, ChallengeCause.BAD_NONCE)

        ha1 = self._credentials.ha1(realm, username, algorithm)
        known = ha1 is not None
        expected = compute_response(
            algorithm,
            ha1.lower() if ha1 is not None else self._dummy_ha1[algorithm],
            nonce,
            nc,
            cnonce,
            qop,
            req.method,
            uri,
        )
        if not hmac.compare_digest(expected, response.lower()) or not known:
            return self._fail(realm, source_ip, now_ms, proxy, ChallengeCause.BAD_CREDENTIALS)

        # The client knows the password; from here on nothing is a failure.
        issued = issued_ms(raw)
        counts = self._counts
        if now_ms - issued > self._ttl_ms or issued > max(now_ms, counts.floor(now_ms) + 1):
            # Expired, or from the future: minted before the clock stepped back
            # (possibly by an earlier process), so its history is unknown.
            return self._challenge(realm, now_ms, proxy, True, False, ChallengeCause.STALE)
        admission = counts.admit(raw, int(nc, 16), now_ms)
        if admission is Admission.ACCEPTED:
            return Authenticated(username, realm, algorithm)
        cause = ChallengeCause.REPLAY if admission is Admission.REPLAY else ChallengeCause.STALE
        return self._challenge(realm, now_ms, proxy, True, False, cause)
