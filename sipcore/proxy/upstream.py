"""Registering with trunks (RFC 3261 §10.2, sipcore as the UAC), sans-IO.

Theory of operation
-------------------
A carrier that wants to know where to send an account's calls (or that
only accepts calls from a registered account) has its trunk added with
``--register``.  For each such trunk sipcore keeps one binding at the
trunk's registrar: To/From ``sip:USER@TRUNKHOST``, Contact one of our
advertised addresses with the user, one Call-ID per trunk and an
increasing CSeq (§10.2.4: a refresh is the same REGISTER again).

One :class:`_Registration` per trunk, at most one client transaction each,
sent through the transaction layer like the OPTIONS probes::

    REGISTER --401/407--> REGISTER with credentials (once per attempt)
       2xx  registered; the next REGISTER at half the granted time
       423  at once again, asking for the Min-Expires (§10.2.8), once
       else failed (another status, a second challenge = wrong password,
            timeout, transport failure); again after 30 s, 60 s, ...
            30 min, or after the Retry-After of a 503; success resets it

Refreshes (and the unregister) carry credentials from the start while the
nonce last accepted is under NONCE_REUSE_S old: that nonce, with the next nonce-count (RFC 7616 §3.4: qop=auth
lets a client reuse a nonce, the count keeps it from being a replay), so a
carrier sees one REGISTER per refresh instead of a 401 round trip -- and no
stream of 401s, which some carriers' intrusion filters count against the
account.  A 401/407 to such a REGISTER is answered as a first challenge.

The state each trunk's registration is in is handed to the edge as
:class:`TrunkRegistrationChanged` events (stored, ``sipcore trunk list``).
A trunk that is removed, disabled or has its registration turned off is
unregistered (Expires: 0, best effort: one attempt, one challenge answered);
so is every trunk when the server stops cleanly (:meth:`unregister_all`).
A trunk whose address or credentials change is unregistered from the old
account and registered anew.

The directory is compared with what is registered whenever its serial
moved: :meth:`next_timer` then asks to be called at once, so provisioning
reaches the trunks on the next pump without any other wiring.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from sipcore.auth.client import authorization, pick_challenge
from sipcore.errors import LocalProtocolError, RemoteProtocolError
from sipcore.flow import Flow
from sipcore.message import Request, Response
from sipcore.message.headers import AuthHeader
from sipcore.proxy.directory import TrunkInfo

if TYPE_CHECKING:
    from sipcore.proxy.core import Core
    from sipcore.transaction import ClientTransaction

log = logging.getLogger("sipcore.upstream")

RETRY_FIRST_S = 30
"""Delay before the first retry after a failure; doubled at each further failure."""
RETRY_MAX_S = 1800
"""Upper bound of the retry delay (a Retry-After may ask for longer)."""
RETRY_AFTER_MAX_S = 86400


class RegState(enum.StrEnum):
    """Where a trunk's registration stands (the values are stored)."""

    REGISTERING = "registering"  # the first REGISTER is out
    REGISTERED = "registered"
    FAILED = "failed"  # retried at next_attempt
    UNREGISTERED = "unregistered"  # no longer kept (removed, turned off, server stopped)


_MOVES: dict[RegState, frozenset[RegState]] = {
    RegState.REGISTERING: frozenset({RegState.REGISTERED, RegState.FAILED, RegState.UNREGISTERED}),
    RegState.REGISTERED: frozenset({RegState.REGISTERED, RegState.FAILED, RegState.UNREGISTERED}),
    RegState.FAILED: frozenset({RegState.REGISTERED, RegState.FAILED, RegState.UNREGISTERED}),
    RegState.UNREGISTERED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class TrunkRegistrationChanged:
    """A trunk's registration state, for the store (times in ms UTC)."""

    trunk_id: int
    state: RegState
    status: int | None  # the last response's status (None: none, e.g. a timeout)
    reason: str
    expires_at_ms: int | None  # registered: when the binding at the trunk ends
    next_attempt_ms: int | None  # when the next REGISTER goes (refresh or retry)
    at_ms: int


class _Nonce(NamedTuple):
    """A challenge we answered: its header name, the nonce-count used last
    with it, and when it arrived (monotonic)."""

    challenge: AuthHeader
    header: str
    nc: int
    since: float


# Reuse a nonce for at most this long: registrars keep nonces for minutes
# (sipcore and Kamailio 300 s, Asterisk's PJSIP 32 s); past that a refresh
# with credentials would only be told "stale", a round trip all the same.
NONCE_REUSE_S = 240


@dataclass(slots=True, eq=False)
class _Registration:
    trunk: TrunkInfo
    call_id: str
    from_tag: str
    expires_s: int  # what we ask for (raised by a 423)
    state: RegState = RegState.REGISTERING
    cseq: int = 0
    due: float = 0.0  # when the next attempt starts (monotonic)
    tx: ClientTransaction | None = None
    sent_expires: int = 0  # the Expires of the REGISTER in flight
    contact: tuple[str, int] = ("", 0)  # (host, port) of the Contact in flight
    challenges: int = 0  # answered in this attempt
    accepted: _Nonce | None = None  # the nonce of the last REGISTER answered 2xx, for the next one
    sent: _Nonce | None = None  # the nonce the REGISTER in flight answers (None: no credentials)
    raised: bool = False  # this attempt already followed a 423
    failures: int = 0  # in a row
    bound_until: float = 0.0  # the registrar holds our binding until then
    leaving: bool = False  # no longer kept: unregistered if bound, then dropped
    unregistering: bool = False  # the REGISTER with Expires: 0 went out


def _account(t: TrunkInfo) -> tuple[object, ...]:
    """What a registration is made of: a change means a new registration."""
    return (t.host, t.port, t.transport, t.username, t.password, t.account_domain)


def _registrar_uri(t: TrunkInfo) -> tuple[str, str]:
    """(Request-URI, domain of the AOR) of a REGISTER to `t`: its account
    domain when it has one (the carrier's domain, the REGISTER being sent
    to its address), else its address (§10.2: the registrar's domain)."""
    if t.account_domain:
        return f"sip:{t.account_domain}", t.account_domain
    host = f"[{t.host}]" if ":" in t.host else t.host
    return f"sip:{host}:{t.port}", host


def _cnonce() -> str:
    """Unpredictable, as RFC 7616 §3.4 wants (a nonce is reused with it)."""
    return secrets.token_hex(8)


def _retry_after(resp: Response) -> int | None:
    v = resp.headers.get("Retry-After")  # §20.33: delta-seconds [comment] *(;param)
    if not v:
        return None
    try:
        return max(1, min(int(v.split(";", 1)[0].split("(", 1)[0].strip()), RETRY_AFTER_MAX_S))
    except ValueError:
        return None


class TrunkRegistrations:
    """The registrations with every trunk that asks for one (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._regs: dict[int, _Registration] = {}  # trunk id -> its registration
        self._leaving: list[_Registration] = []  # unregistering
        self._by_tx: dict[ClientTransaction, _Registration] = {}
        self._serial = -2  # the directory serial last synced with (-2: never)
        self._next: float | None = None
        self._stopped = False

    # -- the pump ------------------------------------------------------------------------
    def next_timer(self) -> float | None:
        if self._serial != self.core.directory.serial and not self._stopped:
            return 0.0  # provisioning changed: sync at once
        return self._next

    def handle_timer(self, now: float, now_ms: int) -> None:
        if self._serial != self.core.directory.serial and not self._stopped:
            self._sync(now, now_ms)
            self._rearm()
        if self._next is not None and now >= self._next:  # else nothing to do (every timer of the core lands here)
            blocked = self._blocked()
            for reg in list(self._regs.values()):
                if reg.tx is None and reg.due <= now and reg.trunk.id not in blocked:
                    self._attempt(reg, now, now_ms)
            self._rearm()

    @property
    def busy(self) -> bool:
        """Whether an unregistration is still waiting for its answer."""
        return bool(self._leaving)

    def state(self, trunk_id: int) -> RegState | None:
        reg = self._regs.get(trunk_id)
        return None if reg is None else reg.state

    def unregister_all(self, now: float, now_ms: int) -> bool:
        """Clean stop: unregister from every trunk; True while answers are awaited."""
        self._stopped = True
        for reg in list(self._regs.values()):
            self._leave(reg, now, now_ms, "the server is stopping")
        self._rearm()
        return self.busy

    # -- provisioning ------------------------------------------------------------------------
    def _sync(self, now: float, now_ms: int) -> None:
        directory = self.core.directory
        self._serial = directory.serial
        wanted: dict[int, TrunkInfo] = {}
        for t in directory.trunks():
            if t.register and t.username and t.password is not None:
                wanted[t.id] = t
            elif t.register:
                log.warning("trunk %s: registration needs a username and password; not registering", t.name)
        for tid, reg in list(self._regs.items()):
            now_t = wanted.get(tid)
            if now_t is None:
                self._leave(reg, now, now_ms, "trunk removed, disabled or registration turned off")
            elif _account(now_t) != _account(reg.trunk):
                self._leave(reg, now, now_ms, "address or credentials changed", visible=False)
            else:
                reg.trunk = now_t  # a new name, prefixes, priority: nothing to send
        for tid, t in wanted.items():
            if tid in self._regs:
                continue
            reg = _Registration(
                t,
                call_id=f"reg-{self.core.new_id()}",
                from_tag=self.core.new_id(),
                expires_s=self.core.config.proxy.trunk_register_expires_s,
                due=now,
            )
            self._regs[tid] = reg
            self._emit(reg, now_ms, None, "", next_in=0.0)

    def _blocked(self) -> set[int]:
        """Trunks still unregistering an old account: the new one waits (one transaction per trunk)."""
        return {r.trunk.id for r in self._leaving}

    def _rearm(self) -> None:
        blocked = self._blocked()
        dues = [r.due for r in self._regs.values() if r.tx is None and r.trunk.id not in blocked]
        self._next = min(dues) if dues else None

    # -- sending ------------------------------------------------------------------------------
    def _attempt(self, reg: _Registration, now: float, now_ms: int) -> None:
        reg.challenges = 0
        reg.raised = False
        self._send(reg, now, now_ms, self._preemptive(reg, now))

    def _preemptive(self, reg: _Registration, now: float) -> tuple[str, str] | None:
        """Credentials for the nonce last accepted, with the next nonce-count
        (None without one, when it had no qop -- no count, no reuse -- or
        when it is too old to be still accepted)."""
        t, last = reg.trunk, reg.accepted
        if last is None or last.challenge.get("qop") is None or now - last.since > NONCE_REUSE_S:
            return None
        if t.username is None or t.password is None:
            return None
        reg.sent = last._replace(nc=last.nc + 1)
        uri = _registrar_uri(t)[0]
        return last.header, authorization(
            last.challenge, t.username, t.password, "REGISTER", uri, _cnonce(), last.nc + 1
        )

    def _send(self, reg: _Registration, now: float, now_ms: int, credentials: tuple[str, str] | None = None) -> None:
        t = reg.trunk
        core = self.core
        me = next((a for a in core.addresses if a.transport == t.transport), core.addresses[0])
        ruri, domain = _registrar_uri(t)
        aor = f"<sip:{t.username}@{domain}>"
        reg.cseq += 1
        reg.sent_expires = 0 if reg.unregistering else reg.expires_s
        reg.contact = (me.host.lower(), me.port)
        headers = [
            ("Via", f"SIP/2.0/{t.transport.upper()} {me.hostport()};branch=z9hG4bK{core.new_id()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{aor};tag={reg.from_tag}"),
            ("To", aor),
            ("Call-ID", reg.call_id),
            ("CSeq", f"{reg.cseq} REGISTER"),
            ("Contact", f"<sip:{t.username}@{me.hostport()};transport={me.transport}>"),
            ("Expires", str(reg.sent_expires)),
        ]
        if credentials is not None:
            headers.append(credentials)
        else:
            reg.sent = None
        headers.append(("Content-Length", "0"))
        try:
            tx = core.layer.send_request(Request("REGISTER", ruri, headers), Flow(t.transport, t.host, t.port, 0), now)
        except LocalProtocolError as e:  # a bug of ours: retried after the backoff, never in a loop
            log.error("trunk %s: cannot send REGISTER: %s", t.name, e)
            if reg.leaving:
                self._after(reg, now, now_ms, f"not sent: {e}")
            else:
                self._failed(reg, now, now_ms, None, f"cannot send: {e}")
            return
        reg.tx = tx
        self._by_tx[tx] = reg

    def _answer_challenge(self, reg: _Registration, resp: Response, now: float, now_ms: int) -> bool:
        """Send the REGISTER again with credentials: once per attempt, twice
        when the registrar only found the nonce stale (RFC 7616 §3.3)."""
        t = reg.trunk
        name = "Proxy-Authenticate" if resp.status == 407 else "WWW-Authenticate"
        challenge = pick_challenge(resp.headers.get_all(name))
        if challenge is None or t.username is None or t.password is None:
            return False
        stale = (challenge.get("stale") or "").lower() == "true"
        if reg.challenges and not (stale and reg.challenges == 1):
            return False  # the credentials were refused: a wrong password is not retried in a loop
        reg.challenges += 1
        header = "Proxy-Authorization" if resp.status == 407 else "Authorization"
        reg.sent = _Nonce(challenge, header, 1, now)
        cred = authorization(challenge, t.username, t.password, "REGISTER", _registrar_uri(t)[0], _cnonce())
        self._send(reg, now, now_ms, (header, cred))
        return True

    # -- answers -----------------------------------------------------------------------------
    def on_response(self, tx: ClientTransaction, resp: Response, now: float, now_ms: int) -> bool:
        """A response to one of our REGISTERs (False: not ours)."""
        reg = self._by_tx.get(tx)
        if reg is None:
            return False
        status = resp.status
        if status < 200:
            return True
        del self._by_tx[tx]
        reg.tx = None
        # Credentials nobody asked for yet: a nonce reused (a first answer has nc 1).
        preemptive = reg.sent is not None and reg.sent.nc > 1
        if 200 <= status < 300:
            reg.accepted = reg.sent  # its nonce and count: the next REGISTER goes on from there
        elif reg.sent is not None:
            reg.accepted = None  # credentials refused (or the nonce stale): not offered again
        if reg.leaving:
            if 200 <= status < 300 and not reg.unregistering:
                reg.bound_until = now + self._granted(reg, resp)
            if not (status in (401, 407) and reg.unregistering and self._answer_challenge(reg, resp, now, now_ms)):
                self._after(reg, now, now_ms, f"{status} {resp.reason}")
        elif 200 <= status < 300:
            granted = self._granted(reg, resp)
            reg.bound_until = now + granted
            if granted > 0:
                self._registered(reg, granted, resp, now, now_ms)
            else:
                self._failed(reg, now, now_ms, status, f"{resp.reason} (the registrar kept no binding)")
        elif status in (401, 407):
            if not self._answer_challenge(reg, resp, now, now_ms):
                why = " (credentials refused)" if reg.challenges else " (no challenge sipcore can answer)"
                self._failed(reg, now, now_ms, status, resp.reason + why)
        elif status == 423 and not reg.raised:
            least = self._min_expires(resp)
            if least is None or least <= reg.expires_s:
                self._failed(reg, now, now_ms, status, f"{resp.reason} (no usable Min-Expires)")
            else:
                log.info("trunk %s: the registrar asks for at least %d s (423)", reg.trunk.name, least)
                reg.expires_s = least
                reg.raised = True
                reg.challenges = 0
                self._send(reg, now, now_ms)
        elif preemptive and status in (400, 403):
            # A registrar that refuses credentials it did not ask for (a 403
            # for a nonce it forgot, say): once more the classic way.
            log.info(
                "trunk %s: %d %s to a refresh with credentials; asking for a challenge",
                reg.trunk.name,
                status,
                resp.reason,
            )
            self._send(reg, now, now_ms)
        else:
            self._failed(reg, now, now_ms, status, resp.reason, _retry_after(resp) if status == 503 else None)
        self._rearm()
        return True

    def on_failure(self, tx: ClientTransaction, timeout: bool, now: float, now_ms: int) -> bool:
        """Timer F or a transport failure on one of our REGISTERs (False: not ours)."""
        reg = self._by_tx.pop(tx, None)
        if reg is None:
            return False
        reg.tx = None
        why = "no answer (timeout)" if timeout else "transport failure"
        if reg.leaving:
            self._after(reg, now, now_ms, why)
        else:
            self._failed(reg, now, now_ms, None, why)
        self._rearm()
        return True

    @staticmethod
    def _min_expires(resp: Response) -> int | None:
        try:
            return resp.min_expires
        except RemoteProtocolError:
            return None

    def _granted(self, reg: _Registration, resp: Response) -> int:
        """The expiry the registrar granted (§10.2.4): our Contact's expires
        parameter, else the Expires header, else what we asked for."""
        try:
            for c in resp.contacts:
                u = c.uri
                if u.is_sip and (u.host.strip("[]").lower(), u.port or 5060) == reg.contact:
                    e = c.expires
                    if e is not None:
                        return e
            e = resp.expires
        except RemoteProtocolError:
            e = None
        # Lenient on purpose: §10.2.4 has the 200 list every binding, ours
        # included; a registrar behind a NAT-fixing proxy may list ours
        # rewritten (received address), so a missing one is not a failure.
        return reg.sent_expires if e is None else e

    # -- outcomes ----------------------------------------------------------------------------
    def _registered(self, reg: _Registration, granted: int, resp: Response, now: float, now_ms: int) -> None:
        refresh = granted / 2  # like most UAs: half-way, far from the end whatever the RTT
        first = reg.state is not RegState.REGISTERED
        reg.failures = 0
        reg.due = now + refresh
        self._set_state(reg, RegState.REGISTERED)
        self._emit(reg, now_ms, resp.status, resp.reason, expires_in=granted, next_in=refresh)
        (log.info if first else log.debug)(
            "trunk %s %s, expires in %d s", reg.trunk.name, "registered" if first else "registration refreshed", granted
        )

    def _failed(
        self,
        reg: _Registration,
        now: float,
        now_ms: int,
        status: int | None,
        reason: str,
        retry_after: int | None = None,
    ) -> None:
        reg.failures += 1
        reg.accepted = None  # the next attempt starts from a fresh challenge
        delay = retry_after or min(RETRY_FIRST_S * 2 ** min(reg.failures - 1, 16), RETRY_MAX_S)
        reg.due = now + delay
        self._set_state(reg, RegState.FAILED)
        self._emit(reg, now_ms, status, reason, next_in=delay)
        what = f"{status} {reason}" if status is not None else reason
        log.info("trunk %s registration failed: %s; retrying in %d s", reg.trunk.name, what, delay)

    # -- leaving -----------------------------------------------------------------------------
    def _leave(self, reg: _Registration, now: float, now_ms: int, why: str, visible: bool = True) -> None:
        """Stop keeping `reg`: unregistered (Expires: 0) when a binding may exist."""
        del self._regs[reg.trunk.id]
        reg.leaving = True
        self._leaving.append(reg)
        if visible:
            self._set_state(reg, RegState.UNREGISTERED)
            self._emit(reg, now_ms, None, why)
        log.info("trunk %s: registration stopped (%s)", reg.trunk.name, why)
        if reg.tx is None:  # else once the REGISTER in flight is answered
            self._after(reg, now, now_ms, "")

    def _after(self, reg: _Registration, now: float, now_ms: int, outcome: str) -> None:
        """A leaving registration's transaction (if any) ended: unregister
        when the registrar may still hold our binding, else forget it."""
        if not reg.unregistering and reg.bound_until > now:
            reg.unregistering = True
            self._attempt(reg, now, now_ms)
            return
        if reg.unregistering:
            log.info("trunk %s: unregister: %s", reg.trunk.name, outcome)
        self._leaving.remove(reg)

    # -- state -------------------------------------------------------------------------------
    @staticmethod
    def _set_state(reg: _Registration, new: RegState) -> None:
        if new not in _MOVES[reg.state]:
            raise LocalProtocolError(f"trunk registration: {reg.state} -> {new} is not a legal move")
        reg.state = new

    def _emit(
        self,
        reg: _Registration,
        now_ms: int,
        status: int | None,
        reason: str,
        expires_in: float | None = None,
        next_in: float | None = None,
    ) -> None:
        self.core.emit(
            TrunkRegistrationChanged(
                reg.trunk.id,
                reg.state,
                status,
                reason,
                None if expires_in is None else now_ms + int(expires_in * 1000),
                None if next_in is None else now_ms + int(next_in * 1000),
                now_ms,
            )
        )
