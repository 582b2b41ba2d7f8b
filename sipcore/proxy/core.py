"""The server's transaction user (sans-IO): what happens to each request.

Bytes and a :class:`~sipcore.flow.Flow` come in with the time; responses go
out through the transaction layer and persistence work comes out as events
for the edge (``BindingsChanged``, ``UsageRecorded``).  The edge runs one
pump: ``receive()`` or ``handle_timer()``, then ``messages_to_send()``,
``next_event()`` until None, and re-arms one timer at ``next_timer()``.

Two clocks: ``now`` (float seconds, monotonic) drives SIP timers; ``now_ms``
(int, wall-clock UTC) stamps bindings, nonces and usage.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sipcore.auth import Authenticated, Blocked, Challenge, DigestAuthenticator
from sipcore.config import Config
from sipcore.errors import RemoteProtocolError
from sipcore.flow import Flow
from sipcore.message import Request, Response, make_response, response_bytes
from sipcore.message.grammar import split_commas
from sipcore.message.limits import ParserLimits
from sipcore.message.model import REASONS
from sipcore.metering import GaugeRecord, LegRecord, MauRecord, RegistrationMeter
from sipcore.metering.limits import UsageGuard
from sipcore.metering.sent import BYTES_OUT, SentBytesMeter
from sipcore.proxy.calls import CallProxy, CounterRecorded
from sipcore.proxy.directory import Directory, TenantInfo
from sipcore.proxy.routing import ProxyAddress, RouteSigner
from sipcore.proxy.stateless import error_response
from sipcore.proxy.upstream import TrunkRegistrationChanged
from sipcore.registrar import Binding, LocationService, Registrar
from sipcore.transaction import (
    AckReceived,
    ClientTransaction,
    Outgoing,
    Overloaded,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)

log = logging.getLogger("sipcore.core")
access = logging.getLogger("sipcore.access")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, UPDATE, INFO, PRACK, REFER, NOTIFY, SUBSCRIBE"
SUPPORTED = "path, outbound"
DEFAULT_ADDRESSES = (ProxyAddress("udp", "127.0.0.1", 5060), ProxyAddress("tcp", "127.0.0.1", 5060))


@dataclass(frozen=True, slots=True)
class BindingsChanged:
    upserts: tuple[Binding, ...]
    removed: tuple[Binding, ...]


@dataclass(frozen=True, slots=True)
class UsageRecorded:
    mau: tuple[MauRecord, ...] = ()
    gauges: tuple[GaugeRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class LegsRecorded:
    legs: tuple[LegRecord, ...]


CoreEvent = BindingsChanged | UsageRecorded | LegsRecorded | CounterRecorded | TrunkRegistrationChanged


# Shedding spares what lets the calls already up finish or stop: in-dialog
# requests (they have a To tag) and a CANCEL (it ends a ringing call).  ACKs
# never get here (the transaction layer and the proxy's ACK path take them).
_NEVER_SHED = frozenset({"CANCEL"})


_PROXIED = frozenset(
    ("INVITE", "CANCEL", "BYE", "OPTIONS", "MESSAGE", "UPDATE", "INFO", "PRACK", "REFER", "NOTIFY", "SUBSCRIBE")
)


def _log_answer(flow: Flow, req: Request, status: int, reason: str | None) -> None:
    """The access-log line of an answer the core sends (None: the status's usual reason)."""
    access.info("%s %s %s -> %d %s", flow, req.method, req.ruri, status, reason or REASONS.get(status, "Unknown"))


def _failure_key(host: str) -> str:
    """Failed logins are counted per source: an IPv4 address, or an IPv6 /64,
    since one host usually owns a whole /64 and could otherwise rotate through
    it for unlimited guesses."""
    if ":" not in host:
        return host
    try:
        return str(ipaddress.ip_network(host + "/64", strict=False))
    except ValueError:
        return host


class Core:
    def __init__(
        self,
        config: Config,
        directory: Directory,
        *,
        secret: bytes,
        new_id: Callable[[], str],
        random: Callable[[], float],
        nonce_salt: Callable[[], bytes],
        parse: Callable[..., Request | Response],
        addresses: tuple[ProxyAddress, ...] = DEFAULT_ADDRESSES,
    ) -> None:
        from sipcore.auth import AuthConfig

        self.config = config
        self.directory = directory
        self._new_id = new_id
        self.new_id = new_id
        self.addresses = addresses
        """Where this proxy is reached, per transport (Via, Record-Route, loop detection)."""
        self._parse = parse
        self._limits = ParserLimits(
            config.parser.max_message_bytes, config.parser.max_headers, config.parser.max_line_bytes
        )
        t = config.timers
        self.layer = TransactionLayer(
            TimerConfig(t.t1_ms, t.t2_ms, t.t4_ms),
            new_branch=lambda: "z9hG4bK" + new_id(),
            max_transactions=config.server.max_transactions,
        )
        a = config.auth
        self.auth = DigestAuthenticator(
            AuthConfig(
                nonce_ttl_s=a.nonce_ttl_s,
                max_failures=a.max_failures,
                failure_window_s=a.failure_window_s,
                block_s=a.block_s,
                algorithms=a.algorithms,
            ),
            secret,
            directory,
            new_nonce_salt=nonce_salt,
        )
        self.location = LocationService(config.registrar.max_bindings)
        self.registrar = Registrar(config.registrar, self.location, random)
        self.meter = RegistrationMeter(directory.timezone_of)
        self.sent = SentBytesMeter()
        self._ruri_tenants: dict[str, TenantInfo | None] = {}
        self._ruri_serial = -1
        self._events: deque[CoreEvent] = deque()  # the edge may drain a whole batch's events at once
        self._out: list[Outgoing] = []
        self._clock = (0.0, 0)
        self.proxy = CallProxy(self, RouteSigner(secret))
        self.guard: UsageGuard | None = None
        """Real-time plan limits and alerts; the edge installs it (None: no limits)."""
        self.shedding = False
        """Set by the edge while the server is behind its input: new requests
        are refused with 503 (see sipcore.transport.overload)."""
        self.shed_count = 0
        self._random = random

    # --- input ----------------------------------------------------------------
    def receive(self, data: bytes, flow: Flow, now: float, now_ms: int) -> None:
        self._clock = (now, now_ms)
        try:
            msg = self._parse(data, self._limits)
        except RemoteProtocolError as e:
            self._reject_unparsable(data, flow, e)
            return
        if type(msg) is Request:
            if msg.method == "REGISTER" and self._challenge_statelessly(msg, flow, now_ms):
                return
            self.layer.receive_request(msg, flow, now)
        else:
            self.layer.receive_response(msg, flow, now)  # type: ignore[arg-type]
        self._drain_layer(now, now_ms)

    def handle_timer(self, now: float, now_ms: int) -> None:
        self._clock = (now, now_ms)
        self.layer.handle_timer(now)
        self._drain_layer(now, now_ms)
        self.proxy.handle_timer(now, now_ms)
        self._drain_layer(now, now_ms)
        gone = self.location.expire(now_ms)
        if gone:
            self._bindings_changed((), tuple(gone), now_ms)

    def next_timer(self) -> float | None:
        """Earliest deadline on the monotonic clock."""
        deadlines = [d for d in (self.layer.next_timer(), self.proxy.next_timer()) if d is not None]
        expiry = self.location.next_expiry()
        if expiry is not None:
            now, now_ms = self._clock
            deadlines.append(now + max(0, expiry - now_ms) / 1000)
        return min(deadlines) if deadlines else None

    def provisioning_changed(self, now_ms: int) -> int:
        """Drop the bindings of devices that were removed or disabled since
        they registered (they can no longer refresh, and calls must not reach
        them); returns how many went."""
        gone = []
        for b in self.location.all():
            d = self.directory.device_by_id(b.device_id)
            if d is None:
                removed = self.location.remove(b.aor, b.key)
                if removed is not None:
                    gone.append(removed)
        if gone:
            self._bindings_changed((), tuple(gone), now_ms)
        return len(gone)

    def restore_bindings(self, bindings: list[Binding]) -> None:
        """Reload the location table after a restart (no events: already stored)."""
        for b in bindings:
            self.location.put(b)

    # --- output ---------------------------------------------------------------
    def messages_to_send(self) -> list[Outgoing]:
        out = self.layer.messages_to_send()
        if self._out:
            out = self._out + out
            self._out = []
        if out:
            self._meter_sent(out)
        return out

    def _meter_sent(self, out: list[Outgoing]) -> None:
        """signaling.bytes_out of this batch: one counter event per tenant."""
        sent = self.sent
        sent.count(out, self.location.flow_tenants, self.directory.trunk_tenants)
        now_ms = self._clock[1]
        if not sent.pending or not now_ms:  # no wall clock yet: kept for the next batch
            return
        guard = self.guard
        for tenant_id, n in sent.take().items():
            self._events.append(CounterRecorded(tenant_id, self.meter.month(tenant_id, now_ms), BYTES_OUT, n))
            if guard is not None:
                guard.record(tenant_id, BYTES_OUT, n, now_ms)

    def next_event(self) -> CoreEvent | None:
        return self._events.popleft() if self._events else None

    # --- services for the proxy ------------------------------------------------------
    failure_key = staticmethod(_failure_key)

    def emit_legs(self, legs: tuple[LegRecord, ...]) -> None:
        if legs:
            self._events.append(LegsRecorded(legs))

    def emit_counter(self, rec: CounterRecorded) -> None:
        self._events.append(rec)

    def emit(self, event: CoreEvent) -> None:
        self._events.append(event)

    def device_authenticated(self, tenant_id: int, device_id: int, now_ms: int) -> str | None:
        """A device proved its credentials: counted as active this month, or
        the reason it may not be (its plan blocks a new MAU over the limit)."""
        guard = self.guard
        if guard is not None:
            reason = guard.mau_admit(tenant_id, device_id, now_ms)
            if reason is not None:
                return reason
        mau = self.meter.authenticated(tenant_id, device_id, now_ms)
        if mau is not None:
            self._events.append(UsageRecorded(mau=(mau,)))
        return None

    def message_refused(self, tenant_id: int, now_ms: int) -> str | None:
        """The reason a MESSAGE of this tenant is over its plan's limit, else
        None (and then it is counted against the limit)."""
        return self.guard.message_admit(tenant_id, now_ms) if self.guard is not None else None

    def shutdown(self, now_ms: int) -> None:
        """Clean stop: calls still up are closed (their legs end now)."""
        self._clock = (self._clock[0], now_ms)
        self.proxy.shutdown(now_ms)

    def unregister_trunks(self, now: float, now_ms: int) -> bool:
        """Clean stop, before the transports close: unregister from the trunks
        registered with; True while their answers are awaited."""
        self._clock = (now, now_ms)
        return self.proxy.upstream.unregister_all(now, now_ms)

    # --- dispatch -----------------------------------------------------------------
    def _drain_layer(self, now: float, now_ms: int) -> None:
        layer = self.layer
        proxy = self.proxy
        while (ev := layer.next_event()) is not None:
            e: Any = ev  # narrowed by the exact type tests below
            t = type(e)
            if t is RequestReceived:
                self._on_request(e.tx, e.request, e.flow, now, now_ms)
            elif t is ResponseReceived:
                proxy.on_response(e.tx, e.response, now, now_ms)
            elif t is AckReceived:
                proxy.on_ack(e.request, e.flow)
            elif t is TransactionTerminated:
                proxy.on_terminated(e.tx)
            elif t is TransactionTimedOut:
                if isinstance(e.tx, ClientTransaction):
                    proxy.on_timeout(e.tx, now, now_ms)
            elif t is TransportFailed:
                if isinstance(e.tx, ClientTransaction):
                    proxy.on_transport_failed(e.tx, now, now_ms)
            elif t is Overloaded:
                self._stateless(e.request, e.flow, 503, "Service Unavailable", [("Retry-After", "5")])

    def _reject_unparsable(self, data: bytes, flow: Flow, e: RemoteProtocolError) -> None:
        if not data.strip(b"\r\n\x00 \t"):
            return  # a NAT keepalive (CRLF, NULs, RFC 5626 ping on UDP): nothing to answer or log
        out = error_response(data, e, self._new_id())
        (log.info if out is not None else log.debug)(
            "%s unparsable message (%s: %s)%s", flow, type(e).__name__, e, "" if out else ", dropped"
        )
        if out is not None:
            self._out.append(Outgoing(out, flow))

    def _stateless(
        self, req: Request, flow: Flow, status: int, reason: str, extra: list[tuple[str, str]] | None = None
    ) -> None:
        if req.method != "ACK":
            data = response_bytes(
                req, status, reason, to_tag=self._new_id(), extra=extra, top_via=self._top_via(req, flow)
            )
            self.layer.send_stateless_bytes(data, flow)

    def _respond(self, tx: ServerTransaction, resp: Response, now: float, *, forget: bool = False) -> None:
        """Answer through `tx`; with `forget`, keep no state for it afterwards
        (answers that change nothing: challenges, refusals, OPTIONS), so that
        unauthenticated traffic cannot fill the transaction table."""
        _log_answer(tx.flow, tx.request, resp.status, resp.reason)
        if forget and not tx.is_invite:
            self.layer.respond_and_forget(tx, resp, now)
        else:
            self.layer.respond(tx, resp, now)

    def _top_via(self, req: Request, flow: Flow) -> str | None:
        """The request's top Via with received/rport filled in (RFC 3261 §18.2.1, RFC 3581 §4)."""
        first = req.headers.get("Via")
        if first is None:
            return None
        rest = ""
        if "," in first:
            elems = split_commas(first)
            first, rest = elems[0], ", " + ", ".join(elems[1:])
        params = []
        rport = False
        low = first.lower()
        i = low.find(";rport")
        if i >= 0:
            j = i + len(";rport")
            if j == len(first) or first[j] in ";, ":
                first = first[:i] + first[j:]  # a bare rport: filled with the source port below
                rport = True
        # RFC 3581 §4: with rport the server MUST add received, even when it
        # equals sent-by; without, only when they differ (RFC 3261 §18.2.1).
        if rport or req.via_host != flow.host:
            params.append(f";received={flow.host}")  # IPv6 without brackets: the RFC 3261 grammar
        if rport:
            params.append(f";rport={flow.port}")
        return first + "".join(params) + rest

    def _response(
        self,
        req: Request,
        flow: Flow,
        status: int,
        reason: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> Response:
        return make_response(req, status, reason, to_tag=self._new_id(), extra=extra, top_via=self._top_via(req, flow))

    def _on_request(self, tx: ServerTransaction, req: Request, flow: Flow, now: float, now_ms: int) -> None:
        method = req.method
        if self.shedding and req.to_tag is None and method not in _NEVER_SHED and not self._finishing(req, now_ms):
            self._shed(tx, req, flow, now)
            return
        try:
            if method == "REGISTER":
                self._on_register(tx, req, flow, now, now_ms)
            elif method == "OPTIONS" and self._for_server(req):
                self._respond(
                    tx,
                    self._response(
                        req,
                        flow,
                        200,
                        extra=[("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", SUPPORTED)],
                    ),
                    now,
                    forget=True,
                )
            elif method in _PROXIED:
                self.proxy.on_request(tx, req, flow, now, now_ms)
            else:
                self._respond(tx, self._response(req, flow, 501, extra=[("Allow", ALLOW)]), now, forget=True)
        except RemoteProtocolError as e:
            # A header the handler needed was malformed (parsed lazily).
            status = e.status or 400
            self._respond(tx, self._response(req, flow, status, f"{e.reason} ({e})"[:120]), now, forget=True)

    def _finishing(self, req: Request, now_ms: int) -> bool:
        """While shedding, the second half of a digest handshake the server
        already paid the first half of goes through, so that what capacity
        there is completes registrations and calls instead of restarting
        them.  Only a first answer to a nonce issued within 64*T1 counts:
        credentials a phone caches for its next calls do not."""
        if "Authorization" not in req.headers and "Proxy-Authorization" not in req.headers:
            return False
        return self.auth.answers_recent_challenge(req, now_ms, 64 * self.config.timers.t1_ms)

    def _shed(self, tx: ServerTransaction, req: Request, flow: Flow, now: float) -> None:
        """Overloaded: a new request costs one small answer, and the calls
        already up keep the capacity.

        A phone gets Retry-After, spread over 5-14 s so that the refused
        phones do not all come back in the same second.  A trunk does not:
        a proxy that gets a 503 with Retry-After must send that server no
        other request for so long (RFC 3261 §21.5.4), which would also stop
        the BYEs and re-INVITEs of the calls it has up with us; without it,
        only this call goes to the carrier's next route."""
        self.shed_count += 1
        extra = []
        if self.directory.trunk_by_source(flow.host, flow.port) is None:
            extra.append(("Retry-After", str(5 + int(self._random() * 10))))
        resp = self._response(req, flow, 503, "Overloaded", extra=extra)
        # Not in the access log: the edge logs the episode once (a line per
        # refusal would be more work, and more disk, exactly when there is none).
        if tx.is_invite:
            self.layer.respond(tx, resp, now)
        else:
            self.layer.respond_and_forget(tx, resp, now)

    def _for_server(self, req: Request) -> bool:
        """OPTIONS for the server itself (a keepalive, a trunk's probe): no user
        part and no dialog; anything else is proxied."""
        if req.to_tag is not None or req.headers.get("Route"):
            return False
        uri = req.uri
        return not uri.is_sip or not uri.user

    def _tenant_for_ruri(self, req: Request) -> TenantInfo | None:
        """Tenant named by the Request-URI's host.  Every phone of a tenant
        registers to the same Request-URI, so the answer is memoized (bounded,
        dropped whenever provisioning changes)."""
        if self._ruri_serial != self.directory.serial or len(self._ruri_tenants) > 10_000:
            self._ruri_tenants.clear()
            self._ruri_serial = self.directory.serial
        ruri = req.ruri
        if ruri in self._ruri_tenants:
            return self._ruri_tenants[ruri]
        uri = req.uri
        tenant = self.directory.tenant_by_domain(uri.host) if uri.is_sip else None
        self._ruri_tenants[ruri] = tenant
        return tenant

    def _register_tenant(self, req: Request) -> TenantInfo | None:
        """The tenant a REGISTER is for: named by the Request-URI (or the To
        host), and the To host must be its domain."""
        tenant = self._tenant_for_ruri(req)
        to_uri = req.to.uri
        if tenant is None and to_uri.is_sip:
            tenant = self.directory.tenant_by_domain(to_uri.host)
        if tenant is None or not to_uri.is_sip or to_uri.host_lower != tenant.domain.lower():
            return None
        return tenant

    def _refusal(
        self, req: Request, flow: Flow, result: Challenge | Blocked
    ) -> tuple[int, str | None, list[tuple[str, str]] | None]:
        """Status, reason and extra headers of the answer to a REGISTER that
        did not authenticate."""
        if type(result) is Challenge:
            if result.failed:
                log.info("%s authentication failed for %s", flow, req.to.uri.aor())
            return result.status, None, self._challenges(req, result)
        return result.status, result.reason, None

    def _challenge_statelessly(self, req: Request, flow: Flow, now_ms: int) -> bool:
        """Answer a REGISTER without credentials with no transaction (RFC 3261
        §8.2.7): its answer is always a challenge or a refusal, which changes
        nothing and is as cheap to repeat as to store, so a retransmission is
        simply answered again.  This is half of every registration, and the
        half a flood of unauthenticated requests is made of.  False: the
        request takes the stateful path (it has credentials, matches a
        transaction, or the server is shedding)."""
        if self.shedding or "Authorization" in req.headers or self.layer.has_server_transaction(req):
            return False
        reason: str | None
        extra = None
        try:
            tenant = self._register_tenant(req)
            if tenant is None:
                status, reason = 403, "Unknown Domain"
            else:
                result = self.auth.check_without_credentials(tenant.domain, _failure_key(flow.host), now_ms)
                status, reason, extra = self._refusal(req, flow, result)
        except RemoteProtocolError as e:
            status, reason = e.status or 400, f"{e.reason} ({e})"[:120]
        _log_answer(flow, req, status, reason)
        data = response_bytes(req, status, reason, to_tag=self._new_id(), extra=extra, top_via=self._top_via(req, flow))
        self.layer.send_stateless_bytes(data, flow)
        return True

    def _on_register(self, tx: ServerTransaction, req: Request, flow: Flow, now: float, now_ms: int) -> None:
        tenant = self._register_tenant(req)
        if tenant is None:
            self._respond(tx, self._response(req, flow, 403, "Unknown Domain"), now, forget=True)
            return
        result = self.auth.check(req, tenant.domain, _failure_key(flow.host), now_ms)
        if not isinstance(result, Authenticated):
            status, reason, extra = self._refusal(req, flow, result)
            self._respond(tx, self._response(req, flow, status, reason, extra), now, forget=True)
            return
        to_uri = req.to.uri
        device = self.directory.device(tenant.domain, result.username)
        if device is None:  # disabled between check and now; answer as for bad credentials
            self._respond(tx, self._response(req, flow, 403), now, forget=True)
            return
        if (to_uri.user_unescaped or "") != result.username:
            self._respond(tx, self._response(req, flow, 403, "Not Allowed To Register This AOR"), now, forget=True)
            return
        refused = self.device_authenticated(tenant.id, device.device_id, now_ms)
        if refused is not None:
            self._respond(tx, self._response(req, flow, 403, refused), now, forget=True)
            return
        aor = f"sip:{result.username}@{tenant.domain.lower()}"
        outcome = self.registrar.register(
            req, aor, flow, tenant.id, device.device_id, now_ms, self._new_id(), self._top_via(req, flow)
        )
        answer = outcome.answer
        _log_answer(flow, req, answer.status, answer.reason)
        self.layer.respond_wire(tx, answer.status, answer.to_bytes(), now)
        if outcome.upserts or outcome.removed:
            self._bindings_changed(tuple(outcome.upserts), tuple(outcome.removed), now_ms)

    def _challenges(self, req: Request, result: Challenge) -> list[tuple[str, str]]:
        quirky = self.config.auth.md5_only_user_agents
        if quirky:
            ua = req.headers.get("User-Agent")
            if ua and ua.startswith(tuple(quirky)):
                return [h for h in result.headers if "algorithm=MD5" in h[1]]
        return list(result.headers)

    def _bindings_changed(self, upserts: tuple[Binding, ...], removed: tuple[Binding, ...], now_ms: int) -> None:
        self._events.append(BindingsChanged(upserts, removed))
        gauges = []
        for tenant_id in {b.tenant_id for b in upserts + removed}:
            g = self.meter.bindings(tenant_id, self.location.count_for_tenant(tenant_id), now_ms)
            if g is not None:
                gauges.append(g)
        if gauges:
            self._events.append(UsageRecorded(gauges=tuple(gauges)))
