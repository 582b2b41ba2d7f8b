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
from collections.abc import Callable
from dataclasses import dataclass

from sipcore.auth import Authenticated, Blocked, Challenge, DigestAuthenticator
from sipcore.config import Config
from sipcore.errors import RemoteProtocolError
from sipcore.flow import Flow
from sipcore.message import Request, Response, make_response
from sipcore.message.grammar import split_commas
from sipcore.message.limits import ParserLimits
from sipcore.metering import GaugeRecord, MauRecord, RegistrationMeter
from sipcore.proxy.directory import Directory, TenantInfo
from sipcore.proxy.stateless import error_response
from sipcore.registrar import Binding, LocationService, Registrar
from sipcore.transaction import (
    Outgoing,
    Overloaded,
    RequestReceived,
    ServerTransaction,
    TimerConfig,
    TransactionLayer,
)

log = logging.getLogger("sipcore.core")
access = logging.getLogger("sipcore.access")

ALLOW = "REGISTER, OPTIONS, ACK, CANCEL"
SUPPORTED = "path, outbound"


@dataclass(frozen=True, slots=True)
class BindingsChanged:
    upserts: tuple[Binding, ...]
    removed: tuple[Binding, ...]


@dataclass(frozen=True, slots=True)
class UsageRecorded:
    mau: tuple[MauRecord, ...] = ()
    gauges: tuple[GaugeRecord, ...] = ()


CoreEvent = BindingsChanged | UsageRecorded


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
    ) -> None:
        from sipcore.auth import AuthConfig

        self.config = config
        self.directory = directory
        self._new_id = new_id
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
        self._ruri_tenants: dict[str, TenantInfo | None] = {}
        self._ruri_serial = -1
        self._events: list[CoreEvent] = []
        self._out: list[Outgoing] = []
        self._clock = (0.0, 0)

    # --- input ----------------------------------------------------------------
    def receive(self, data: bytes, flow: Flow, now: float, now_ms: int) -> None:
        self._clock = (now, now_ms)
        try:
            msg = self._parse(data, self._limits)
        except RemoteProtocolError as e:
            self._reject_unparsable(data, flow, e)
            return
        if type(msg) is Request:
            self.layer.receive_request(msg, flow, now)
        else:
            self.layer.receive_response(msg, flow, now)  # type: ignore[arg-type]
        self._drain_layer(now, now_ms)

    def handle_timer(self, now: float, now_ms: int) -> None:
        self._clock = (now, now_ms)
        self.layer.handle_timer(now)
        self._drain_layer(now, now_ms)
        gone = self.location.expire(now_ms)
        if gone:
            self._bindings_changed((), tuple(gone), now_ms)

    def next_timer(self) -> float | None:
        """Earliest deadline on the monotonic clock."""
        deadlines = [d for d in (self.layer.next_timer(),) if d is not None]
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
        return out

    def next_event(self) -> CoreEvent | None:
        return self._events.pop(0) if self._events else None

    # --- dispatch -----------------------------------------------------------------
    def _drain_layer(self, now: float, now_ms: int) -> None:
        layer = self.layer
        while (ev := layer.next_event()) is not None:
            if type(ev) is RequestReceived:
                self._on_request(ev.tx, ev.request, ev.flow, now, now_ms)
            elif type(ev) is Overloaded:
                self._stateless(ev.request, ev.flow, 503, "Service Unavailable", [("Retry-After", "5")])

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
            resp = make_response(
                req, status, reason, to_tag=self._new_id(), extra=extra, top_via=self._top_via(req, flow)
            )
            self.layer.send_stateless(resp, flow)

    def _respond(self, tx: ServerTransaction, resp: Response, now: float, *, forget: bool = False) -> None:
        """Answer through `tx`; with `forget`, keep no state for it afterwards
        (answers that change nothing: challenges, refusals, OPTIONS), so that
        unauthenticated traffic cannot fill the transaction table."""
        access.info("%s %s %s -> %d %s", tx.flow, tx.request.method, tx.request.ruri, resp.status, resp.reason)
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
        try:
            if method == "REGISTER":
                self._on_register(tx, req, flow, now, now_ms)
            elif method == "OPTIONS":
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
            elif method == "ACK":
                pass  # an ACK of ours that matched nothing: absorbed (no dialog to pass it to yet)
            else:
                self._respond(tx, self._response(req, flow, 501, extra=[("Allow", ALLOW)]), now, forget=True)
        except RemoteProtocolError as e:
            # A header the handler needed was malformed (parsed lazily).
            status = e.status or 400
            self._respond(tx, self._response(req, flow, status, f"{e.reason} ({e})"[:120]), now, forget=True)

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

    def _on_register(self, tx: ServerTransaction, req: Request, flow: Flow, now: float, now_ms: int) -> None:
        tenant = self._tenant_for_ruri(req)
        to_uri = req.to.uri
        if tenant is None and to_uri.is_sip:
            tenant = self.directory.tenant_by_domain(to_uri.host)
        if tenant is None or not to_uri.is_sip or to_uri.host_lower != tenant.domain.lower():
            self._respond(tx, self._response(req, flow, 403, "Unknown Domain"), now, forget=True)
            return
        result = self.auth.check(req, tenant.domain, _failure_key(flow.host), now_ms)
        if type(result) is not Authenticated:
            if type(result) is Challenge:
                if result.failed:
                    log.info("%s authentication failed for %s", flow, to_uri.aor())
                self._respond(
                    tx, self._response(req, flow, result.status, extra=self._challenges(req, result)), now, forget=True
                )
            elif type(result) is Blocked:
                self._respond(tx, self._response(req, flow, result.status, result.reason), now, forget=True)
            return
        device = self.directory.device(tenant.domain, result.username)
        if device is None:  # disabled between check and now; answer as for bad credentials
            self._respond(tx, self._response(req, flow, 403), now, forget=True)
            return
        if (to_uri.user_unescaped or "") != result.username:
            self._respond(tx, self._response(req, flow, 403, "Not Allowed To Register This AOR"), now, forget=True)
            return
        mau = self.meter.authenticated(tenant.id, device.device_id, now_ms)
        if mau is not None:
            self._events.append(UsageRecorded(mau=(mau,)))
        aor = f"sip:{result.username}@{tenant.domain.lower()}"
        outcome = self.registrar.register(
            req, aor, flow, tenant.id, device.device_id, now_ms, self._new_id(), self._top_via(req, flow)
        )
        self._respond(tx, outcome.response, now)
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
