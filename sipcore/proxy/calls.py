"""The stateful proxy (RFC 3261 §16), sans-IO: calls, MESSAGE and in-dialog requests.

Theory of operation
-------------------
:class:`Core` hands every request that is not for the registrar or the
server itself to :meth:`CallProxy.on_request` with its server transaction,
and every transaction-layer event about the client transactions this module
started (responses, timeouts, transport failures) to the ``on_*`` methods.

Initial requests (no To tag):
  1. Max-Forwards (483) and loop detection (482, §16.3).
  2. Who sends: a trunk recognised by source address (``inbound`` "address"),
     else a device or a trunk with inbound digest, which must prove its
     credentials with Proxy-Authorization (407, realm = the tenant domain of
     the From URI, else of the Request-URI host, else of the DID dialled in
     the Request-URI or To; a "both" trunk's own tenant).  A device's From
     must be its own AOR; a trunk's From is the caller's number, unchecked;
     a "both" trunk must also send from its address.  Anyone else is
     refused: sipcore is not an open relay, and nothing unauthenticated
     reaches a trunk.
  3. Where to: a device of the tenant (by user name, or by DID; from a
     trunk, by DID only, the one in To when the Request-URI is our
     registered Contact rather than a number), whose
     bindings are tried in parallel (or serially by q, ``proxy.forking``);
     else a trunk whose prefix matches the dialled number; a trunk may only
     reach a trunk when it allows transit.
  4. A :class:`_Context` per server transaction holds the branches; one
     client transaction per branch; the forwarded copy carries our Via (with
     a loop hash), our Record-Route with a flow token (``routing.py``) and
     Max-Forwards - 1.  The best final response goes back (§16.7), 2xx and
     1xx at once; the first 2xx cancels the other branches.

In-dialog requests (To tag): accepted only when the top Route is one of our
signed Record-Route entries; they go to the flow the entry names, so they
survive a restart.  BYE ends the dialog's legs; a 2xx to a re-INVITE/UPDATE
refreshes the session timer and updates the media (video on/off).  Every
in-dialog request and response marks its sender alive; a dialog quiet for
``proxy.dialog_probe_s`` is probed with in-dialog OPTIONS (``keepalive.py``).

CANCEL (§16.10) is answered 200 and sent down every pending branch; the
INVITE then ends with 487.  The ACK of a 2xx is forwarded statelessly along
its Route (§16.11); the ACK of a non-2xx is absorbed by the server
transaction (hop by hop).

Deviation, on purpose: when a trunk challenges an INVITE, the retried INVITE
keeps the caller's CSeq number (RFC 3261 §22.2 asks the UAC to increment it).
Incrementing would break the caller's later in-dialog CSeqs at the trunk
unless the proxy rewrote every one of them, which needs dialog state a
restart loses; carriers accept the same CSeq with a new branch and nonce.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from sipcore.auth import Authenticated, Blocked, Challenge
from sipcore.auth.client import authorization, pick_challenge
from sipcore.errors import RemoteProtocolError
from sipcore.flow import Flow
from sipcore.message import Request, Response, make_response
from sipcore.message.model import HeaderField
from sipcore.message.sdp import parse_sdp
from sipcore.metering.legs import (
    END_CANCEL,
    END_REJECTED,
    END_SHUTDOWN,
    END_TIMEOUT,
    LegRecord,
    leg_id,
)
from sipcore.proxy.dialogs import Dialog, DialogTable, dialog_key
from sipcore.proxy.directory import DidInfo, Directory, TenantInfo, TrunkInfo
from sipcore.proxy.keepalive import DialogProbes, in_dialog_request
from sipcore.proxy.routing import (
    ProxyAddress,
    RouteSigner,
    best_response,
    forwarded,
    is_ours,
    loop_hash,
    replace_record_route,
    route_values,
    via_keys,
)
from sipcore.proxy.trunk_probe import TrunkProbes
from sipcore.proxy.upstream import TrunkRegistrations
from sipcore.transaction import ClientTransaction, ServerTransaction, TransactionLayer
from sipcore.transaction.base import TERMINATED

if TYPE_CHECKING:
    from sipcore.proxy.core import Core

log = logging.getLogger("sipcore.proxy")
access = logging.getLogger("sipcore.access")

MESSAGES = "messages"


class Endpoint(NamedTuple):
    """A provisioned party of a call: a device or a trunk, in a tenant."""

    kind: str  # "device" | "trunk"
    id: int
    tenant_id: int
    label: str  # user@domain or the trunk name


class Target(NamedTuple):
    """Where one branch goes."""

    endpoint: Endpoint
    ruri: str
    flow: Flow
    routes: tuple[str, ...] = ()  # a binding's Path (RFC 3327)
    q_milli: int = 1000
    trunk: TrunkInfo | None = None


@dataclass(slots=True)
class _Branch:
    target: Target
    request: Request
    tx: ClientTransaction | None = None
    status: int = 0  # highest response so far
    final: Response | None = None
    cancelled: bool = False
    auth_tries: int = 0
    synthetic: bool = False  # the final response was made here (timeout, transport failure)


@dataclass(slots=True)
class _Context:
    """One proxied server transaction and its branches."""

    server_tx: ServerTransaction
    request: Request
    flow: Flow
    caller: Endpoint | None
    callee: Endpoint | None  # the device or trunk being called (legs), None in dialog
    initial_invite: bool
    setup_ms: int
    pending: list[Target] = field(default_factory=list)  # serial forking: targets not tried yet
    branches: list[_Branch] = field(default_factory=list)
    answered: bool = False
    cancelled: bool = False
    done: bool = False
    transit: bool = False
    dialog: Dialog | None = None  # in-dialog requests: the dialog they belong to
    dialled: str = ""  # the legs' callee: the Request-URI, or the DID's To URI (see _resolve)


class CounterRecorded(NamedTuple):
    """An increment of a counted metric (messages, signaling.bytes_out).  A
    NamedTuple: one is built per MESSAGE and per batch of sends."""

    tenant_id: int
    month: str
    metric: str
    delta: int


class CallProxy:
    def __init__(self, core: Core, signer: RouteSigner) -> None:
        self.core = core
        self.config = core.config.proxy
        self.layer: TransactionLayer = core.layer
        self.directory: Directory = core.directory
        self.signer = signer
        self.addresses: tuple[ProxyAddress, ...] = core.addresses
        self._by_client: dict[ClientTransaction, tuple[_Context, _Branch]] = {}
        self._by_server: dict[ServerTransaction, _Context] = {}
        self.dialogs = DialogTable(core.emit_legs, max_dialogs=self.config.max_dialogs)
        self.keepalive = DialogProbes(self.layer, self.dialogs, self._own_via, self._bye_both)
        """In-dialog OPTIONS to the sides of quiet calls (dead-call detection)."""
        self._cnonce = 0
        self.trunk_probes = TrunkProbes(
            self.layer, self.directory, self.config.trunk_probe_s, self._address, core.new_id
        )
        """OPTIONS to every trunk; the silent ones are routed to last."""
        self.upstream = TrunkRegistrations(core)
        """Our registrations with the trunks that ask for one (REGISTER as a UAC)."""

    # -- helpers ---------------------------------------------------------------------
    def _address(self, transport: str) -> ProxyAddress:
        for a in self.addresses:
            if a.transport == transport:
                return a
        return self.addresses[0]

    def _via(self, req: Request, transport: str) -> str:
        me = self._address(transport)
        branch = f"z9hG4bK{loop_hash(req)}.{self.core.new_id()}"
        return f"SIP/2.0/{transport.upper()} {me.hostport()};branch={branch};rport"

    def _own_via(self, flow: Flow) -> str:
        """Our Via for a request the proxy originates (BYE, probe): a fresh branch."""
        me = self._address(flow.transport).hostport()
        return f"SIP/2.0/{flow.transport.upper()} {me};branch=z9hG4bK{self.core.new_id()};rport"

    def _respond(self, tx: ServerTransaction, status: int, reason: str | None = None) -> None:
        core = self.core
        core._respond(tx, core._response(tx.request, tx.flow, status, reason), core._clock[0])

    def _month(self, tenant_id: int, now_ms: int) -> str:
        return self.core.meter.month(tenant_id, now_ms)

    # -- requests ---------------------------------------------------------------------
    def on_request(self, tx: ServerTransaction, req: Request, flow: Flow, now: float, now_ms: int) -> None:
        method = req.method
        if method == "CANCEL":
            self._on_cancel(tx, req, now)
            return
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            self._respond(tx, 483)
            return
        if req.to_tag is not None:
            self._in_dialog(tx, req, flow, now, now_ms)
            return
        if self._looped(req):
            self._respond(tx, 482)
            return
        trunk = self.directory.trunk_by_source(flow.host, flow.port)
        tenant: TenantInfo | None
        if trunk is not None and trunk.inbound == "address":
            caller = Endpoint("trunk", trunk.id, trunk.tenant_id, trunk.name)
            tenant = self.directory.tenant(trunk.tenant_id)
        else:
            found = self._authenticate(tx, req, flow, now_ms, trunk)
            if found is None:
                return
            tenant, caller, trunk = found
        if tenant is None:
            self._respond(tx, 403, "Unknown Tenant")
            return
        if method == "MESSAGE":
            reason = self.core.message_refused(tenant.id, now_ms)
            if reason is not None:
                self._respond(tx, 403, reason)
                return
            self.core.emit_counter(CounterRecorded(tenant.id, self._month(tenant.id, now_ms), MESSAGES, 1))
        targets, callee, transit, dialled = self._resolve(req, tenant, trunk, now_ms)
        if isinstance(targets, tuple):  # (status, reason): no route
            status, reason = targets
            if method == "INVITE" and caller is not None:
                self._record_attempt(req, caller, callee, now_ms, status, transit, dialled=dialled)
            self._respond(tx, status, reason)
            return
        if method == "INVITE":
            self.layer.trying(tx, now)
            refusal = self._codec_refusal(req, targets)
            if refusal is not None:
                self._record_attempt(req, caller, callee, now_ms, 488, transit, dialled=dialled)
                self._respond(tx, 488, refusal)
                return
        ctx = _Context(tx, req, flow, caller, callee, method == "INVITE", now_ms, transit=transit, dialled=dialled)
        self._by_server[tx] = ctx
        if targets[0].trunk is not None:  # routes to trunks: failover, one at a time
            ctx.pending = targets[1:]
            targets = targets[:1]
        elif self.config.forking == "serial" and len(targets) > 1:
            targets.sort(key=lambda t: -t.q_milli)
            ctx.pending = targets[1:]
            targets = targets[:1]
        for t in targets:
            self._start_branch(ctx, t, now)

    def _looped(self, req: Request) -> bool:
        h = "z9hG4bK" + loop_hash(req) + "."
        if not any(h in v for v in req.headers.get_all("Via")):
            return False  # the common case, decided without parsing a Via
        try:
            vias = req.vias
        except RemoteProtocolError:
            return False
        for v in vias[1:] if vias else ():
            if v.branch and v.branch.startswith(h):
                for a in self.addresses:
                    if v.host.strip("[]").lower() == a.host.lower() and (v.port or 5060) == a.port:
                        return True
        return False

    def _authenticate(
        self, tx: ServerTransaction, req: Request, flow: Flow, now_ms: int, at_trunk: TrunkInfo | None
    ) -> tuple[TenantInfo, Endpoint, TrunkInfo | None] | None:
        """Proxy-Authorization of a device, or of a trunk with inbound digest:
        (tenant, caller, the trunk or None), or None when answered here.
        `at_trunk` is the trunk at the request's exact source address, if any."""
        core = self.core
        d = self.directory
        from_uri = req.from_.uri
        if at_trunk is not None and at_trunk.inbound == "both":
            tenant = d.tenant(at_trunk.tenant_id)  # its realm: it may only come from here
        else:
            tenant = d.tenant_by_domain(from_uri.host) if from_uri.is_sip else None
            if tenant is None:
                tenant = core._tenant_for_ruri(req)
            if tenant is None:
                tenant = self._tenant_for_did(req)
        if tenant is None:
            self._respond(tx, 403, "Relaying Denied")
            return None
        result = core.auth.check(req, tenant.domain, core.failure_key(flow.host), now_ms, proxy=True)
        if type(result) is not Authenticated:
            if type(result) is Challenge:
                if result.failed:
                    log.info("%s proxy authentication failed for %s", flow, from_uri.aor())
                resp = core._response(req, flow, result.status, extra=core._challenges(req, result))
                core._respond(tx, resp, core._clock[0])
            elif type(result) is Blocked:
                self._respond(tx, result.status, result.reason)
            return None
        device = d.device(tenant.domain, result.username)
        if device is None:
            trunk = d.trunk_by_credentials(tenant.domain, result.username)
            if trunk is None:
                self._respond(tx, 403)
                return None
            if trunk.inbound == "both" and at_trunk is not trunk:
                # The password is right but the address is not the trunk's: refused.
                log.info("%s trunk %s authenticated from a foreign address", flow, trunk.name)
                self._respond(tx, 403, "Not From The Trunk's Address")
                return None
            # No From rule for a trunk: carriers send the caller's number in From.
            return tenant, Endpoint("trunk", trunk.id, trunk.tenant_id, trunk.name), trunk
        if from_uri.user_unescaped != result.username or from_uri.host.lower() != tenant.domain.lower():
            self._respond(tx, 403, "From Does Not Match Credentials")
            return None
        refused = core.device_authenticated(tenant.id, device.device_id, now_ms)
        if refused is not None:
            self._respond(tx, 403, refused)
            return None
        return tenant, Endpoint("device", device.device_id, tenant.id, f"{device.username}@{tenant.domain}"), None

    def _tenant_for_did(self, req: Request) -> TenantInfo | None:
        """The tenant of the DID dialled in the Request-URI, else in To (a
        carrier we register with calls our Contact, the number in To); the
        realm for a trunk on a dynamic address whose From is the carrier's."""
        d = self.directory
        for uri in (req.uri, req.to.uri):
            did = d.did(uri.user_unescaped or "") if uri.is_sip else None
            if did is not None:
                return d.tenant(did.tenant_id)
        return None

    def _local_host(self, host: str, tenant: TenantInfo) -> bool:
        h = host.strip("[]").lower()
        return h == tenant.domain.lower() or any(a.host.lower() == h for a in self.addresses)

    def _resolve(
        self, req: Request, tenant: TenantInfo, from_trunk: TrunkInfo | None, now_ms: int
    ) -> tuple[list[Target] | tuple[int, str], Endpoint | None, bool, str]:
        """Targets for an initial request, the callee endpoint, whether it is
        transit, and what was dialled (the legs' callee: the Request-URI, or the
        To URI when the DID came from To); or (status, reason) when there is no
        route."""
        uri = req.uri
        dialled = req.ruri
        if not uri.is_sip:
            return (416, "Unsupported URI Scheme"), None, False, dialled
        user = uri.user_unescaped or ""
        d = self.directory
        device = None
        if from_trunk is None and self._local_host(uri.host, tenant):
            device = d.device(tenant.domain, user)
        if device is None:
            did = self._did_for(user, tenant, from_trunk)
            if did is None and from_trunk is not None and d.device(tenant.domain, user) is None:
                # A carrier we register with calls our Contact (its username
                # here) and puts the dialled number in To.
                to = req.to.uri
                did = self._did_for(to.user_unescaped or "", tenant, from_trunk) if to.is_sip else None
                if did is not None:
                    dialled = _uri_of(req.headers.get("To") or "")  # not our Contact: the number
            if did is not None:
                device = d.device_by_id(did.device_id)
        if device is not None:
            callee = Endpoint("device", device.device_id, tenant.id, f"{device.username}@{tenant.domain}")
            aor = f"sip:{device.username}@{tenant.domain.lower()}"
            bindings = self.core.location.lookup(aor, now_ms)
            if not bindings:
                return (480, "Temporarily Unavailable"), callee, False, dialled
            targets = [
                Target(callee, b.uri, b.flow, tuple(b.path), b.q_milli)
                for b in bindings
                if b.device_id == device.device_id
            ]
            return (targets or (480, "Temporarily Unavailable")), callee, False, dialled
        if from_trunk is not None and not from_trunk.allow_transit:
            return (404, "Not Found"), None, False, dialled
        if req.method != "INVITE" and from_trunk is None and not self._local_host(uri.host, tenant):
            return (404, "Not Found"), None, False, dialled
        routes = [t for t in d.routes(tenant.id, user) if from_trunk is None or t.id != from_trunk.id]
        if not routes or not user:
            return (404, "Not Found"), None, False, dialled
        # Trunks that failed their OPTIONS probe go last (tried only if every other fails too).
        routes.sort(key=lambda t: t.id in self.trunk_probes.down)
        targets = []
        for trunk in routes:
            ep = Endpoint("trunk", trunk.id, trunk.tenant_id, trunk.name)
            host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
            ruri = f"sip:{user}@{host}:{trunk.port}" + (";transport=tcp" if trunk.transport == "tcp" else "")
            targets.append(Target(ep, ruri, Flow(trunk.transport, trunk.host, trunk.port, 0), trunk=trunk))
        return targets, targets[0].endpoint, from_trunk is not None, dialled

    def _did_for(self, number: str, tenant: TenantInfo, from_trunk: TrunkInfo | None) -> DidInfo | None:
        """The tenant's DID `number`, when the caller may ring it (a DID bound
        to a trunk rings only from that trunk)."""
        did = self.directory.did(number)
        if did is None or did.tenant_id != tenant.id:
            return None
        if from_trunk is not None and did.trunk_id not in (None, from_trunk.id):
            return None
        return did

    def _codec_refusal(self, req: Request, targets: list[Target]) -> str | None:
        """Transcoding is needed when the offer and the trunk share no codec;
        there is no media transcoder in sipcore, so such a call is refused."""
        trunk = targets[0].trunk
        if trunk is None or not trunk.codecs or not req.body:
            return None
        try:
            offer = parse_sdp(req.body).codec_set("audio")
        except Exception:
            return None
        if offer and not (offer & set(trunk.codecs)):
            return "Transcoding Required But No Transcoder"
        return None

    # -- branches -------------------------------------------------------------------------
    def _start_branch(self, ctx: _Context, t: Target, now: float) -> None:
        req = ctx.request
        rr = None
        if ctx.initial_invite or req.method in ("SUBSCRIBE", "REFER"):
            rr = self.signer.record_route(
                self._address(t.flow.transport), req.call_id or "", req.from_tag or "", ctx.flow
            )
        received_via = self.core._top_via(req, ctx.flow)
        fwd = forwarded(
            req,
            t.ruri,
            self._via(req, t.flow.transport),
            record_route=rr,
            routes=list(t.routes),
            drop_top_route=self._own_routes(req),
            received_via=received_via,
            strip=_STRIP_OUT,
        )
        branch = _Branch(t, fwd)
        ctx.branches.append(branch)
        self._send_branch(ctx, branch, fwd, now)

    def _send_branch(self, ctx: _Context, branch: _Branch, req: Request, now: float) -> None:
        branch.request = req
        tx = self.layer.send_request(req, branch.target.flow, now)
        branch.tx = tx
        self._by_client[tx] = (ctx, branch)
        access.info("%s %s %s -> %s", ctx.flow, req.method, ctx.request.ruri, branch.target.flow)

    def _own_routes(self, req: Request) -> int:
        n = 0
        for r in route_values(req):
            if not is_ours(r, self.addresses):
                break
            n += 1
        return n

    # -- responses ------------------------------------------------------------------------
    def on_response(self, tx: ClientTransaction, resp: Response, now: float, now_ms: int) -> None:
        entry = self._by_client.get(tx)
        if entry is None:
            if self.keepalive.on_response(tx, resp, now, now_ms):
                return
            if not self.upstream.on_response(tx, resp, now, now_ms) and resp.status >= 200:
                self.trunk_probes.answered(tx)
            return  # our own BYE (max duration, session timer), a trunk probe or REGISTER was answered
        ctx, branch = entry
        status = resp.status
        d = ctx.dialog
        if d is not None and status not in (408, 481):  # the side the request went to is alive
            d.heard(not d.from_caller(ctx.request.from_tag), now, now_ms)
        if status == 100:
            if branch.cancelled and branch.status < 100:
                self._send_cancel(branch, now)
            branch.status = max(branch.status, 100)
            return
        if branch.cancelled and branch.status < 100 and status < 200:
            self._send_cancel(branch, now)  # §9.1: the CANCEL waited for a provisional response
        branch.status = max(branch.status, status)
        if status < 200:
            if not ctx.done:
                self._relay(ctx, branch, resp, now)
            return
        if 200 <= status < 300:
            first = not ctx.answered
            ctx.answered = True
            branch.final = resp
            self._relay(ctx, branch, resp, now)
            if first:
                if ctx.dialog is not None:
                    self.in_dialog_answered(ctx, resp, now, now_ms)
                elif ctx.initial_invite:
                    self._answered(ctx, branch, resp, now, now_ms)
                if ctx.request.method == "INVITE":
                    self._cancel_others(ctx, branch, now)
            ctx.done = True
            return
        if status in (401, 407) and self._answer_challenge(ctx, branch, resp, now):
            return
        branch.final = resp
        if status >= 600 and ctx.request.method == "INVITE":
            self._cancel_others(ctx, branch, now)
        self._maybe_finish(ctx, now, now_ms)

    def _relay(self, ctx: _Context, branch: _Branch, resp: Response, now: float) -> None:
        resp.headers.pop_first_value("Via", keep_keys=True)
        if ctx.initial_invite and resp.status > 100 and resp.headers.get("Record-Route"):
            rr = self.signer.record_route(
                self._address(ctx.flow.transport),
                ctx.request.call_id or "",
                ctx.request.from_tag or "",
                branch.target.flow,
            )
            replace_record_route(resp, self.addresses, rr)
        if ctx.server_tx.state is TERMINATED:
            return
        self.core._respond(ctx.server_tx, resp, now)

    def _answer_challenge(self, ctx: _Context, branch: _Branch, resp: Response, now: float) -> bool:
        trunk = branch.target.trunk
        if trunk is None or not trunk.username or trunk.password is None or branch.auth_tries >= 2 or ctx.cancelled:
            return False
        name = "Proxy-Authenticate" if resp.status == 407 else "WWW-Authenticate"
        challenge = pick_challenge(resp.headers.get_all(name))
        if challenge is None:
            return False
        branch.auth_tries += 1
        self._cnonce += 1
        old = branch.request
        cred = authorization(
            challenge, trunk.username, trunk.password, old.method, old.ruri, f"{self.core.new_id()}{self._cnonce}"
        )
        header = "Proxy-Authorization" if resp.status == 407 else "Authorization"
        # forwarded() put our Via alone in the first field: a new branch replaces it.
        via = self._via(ctx.request, branch.target.flow.transport)
        kept = [f for f in old.headers.fields()[1:] if f.key not in (header.lower(), "content-length")]
        fields = [
            HeaderField.known("Via", via, "via"),
            *kept,
            HeaderField(header, cred),
            HeaderField.known("Content-Length", str(len(old.body)), "content-length"),
        ]
        self._send_branch(ctx, branch, Request.derived(old, old.ruri, fields, via_keys(via), old.max_forwards), now)
        branch.status = 0
        return True

    def _maybe_finish(self, ctx: _Context, now: float, now_ms: int) -> None:
        if ctx.done or any(b.final is None for b in ctx.branches):
            return
        if ctx.pending and not ctx.cancelled and self._try_next(ctx.branches[-1]):
            self._start_branch(ctx, ctx.pending.pop(0), now)
            return
        finals = [b.final for b in ctx.branches if b.final is not None]
        if not finals:
            return
        i = best_response([r.status for r in finals])
        best, best_branch = finals[i], ctx.branches[i]
        status = best.status
        ctx.done = True
        if ctx.cancelled and ctx.request.method == "INVITE" and status < 600:
            self._respond(ctx.server_tx, 487)
        elif status == 503:  # §16.7 step 6: a 503 from downstream is not forwarded as such
            self._respond(ctx.server_tx, 480 if ctx.callee and ctx.callee.kind == "device" else 502)
        elif best_branch.synthetic:
            self._respond(ctx.server_tx, status)
        else:
            self._relay(ctx, best_branch, best, now)
        if ctx.initial_invite and ctx.caller is not None:
            self._record_attempt(
                ctx.request,
                ctx.caller,
                ctx.callee,
                now_ms,
                487 if ctx.cancelled else status,
                ctx.transit,
                reason=END_CANCEL if ctx.cancelled else (END_TIMEOUT if status == 408 else END_REJECTED),
                setup_ms=ctx.setup_ms,
                dialled=ctx.dialled,
            )

    @staticmethod
    def _try_next(last: _Branch) -> bool:
        """Serial forking moves on after any failure but a 6xx; failover to the
        next trunk only when the trunk itself failed (timeout, 5xx), not when
        the far end said busy or no."""
        status = last.final.status if last.final is not None else 0
        if last.target.trunk is not None:
            return status == 408 or 500 <= status < 600
        return status < 600

    def on_timeout(self, tx: ClientTransaction, now: float, now_ms: int) -> None:
        if self.keepalive.on_failure(tx, "timeout", now):
            return
        if self.trunk_probes.failed(tx) or self.upstream.on_failure(tx, True, now, now_ms):
            return
        self._synthesize(tx, 408, now, now_ms)

    def on_transport_failed(self, tx: ClientTransaction, now: float, now_ms: int) -> None:
        if self.keepalive.on_failure(tx, "transport failure", now):
            return
        if self.trunk_probes.failed(tx) or self.upstream.on_failure(tx, False, now, now_ms):
            return
        self._synthesize(tx, 503, now, now_ms)

    def _synthesize(self, tx: ClientTransaction, status: int, now: float, now_ms: int) -> None:
        entry = self._by_client.get(tx)
        if entry is None:
            return
        ctx, branch = entry
        if branch.tx is not tx or branch.final is not None:
            return
        # §16.7 step 1 / §16.8: a timeout or transport failure acts as a final response.
        branch.final = make_response(branch.request, status)
        branch.synthetic = True
        self._maybe_finish(ctx, now, now_ms)

    def on_terminated(self, tx: ClientTransaction | ServerTransaction) -> None:
        self.trunk_probes.forget(tx)  # type: ignore[arg-type]
        self.keepalive.forget(tx)  # type: ignore[arg-type]
        entry = self._by_client.pop(tx, None)  # type: ignore[arg-type]
        if entry is not None:
            ctx = entry[0]
            if all(b.tx is None or b.tx not in self._by_client for b in ctx.branches) and ctx.done:
                self._by_server.pop(ctx.server_tx, None)
            return
        ctx2 = self._by_server.get(tx)  # type: ignore[arg-type]
        if ctx2 is not None and (ctx2.done or not any(b.tx in self._by_client for b in ctx2.branches)):
            del self._by_server[tx]  # type: ignore[arg-type]

    # -- CANCEL ----------------------------------------------------------------------------
    def _on_cancel(self, tx: ServerTransaction, req: Request, now: float) -> None:
        target = self.layer.cancel_target(req)
        ctx = self._by_server.get(target) if target is not None else None
        if ctx is None:
            self._respond(tx, 481)
            return
        self._respond(tx, 200)
        if ctx.done or ctx.answered:
            return
        ctx.cancelled = True
        ctx.pending.clear()
        for b in ctx.branches:
            if b.final is None and not b.cancelled:
                b.cancelled = True
                if b.status >= 100:
                    self._send_cancel(b, now)

    def _cancel_others(self, ctx: _Context, winner: _Branch, now: float) -> None:
        ctx.pending.clear()
        for b in ctx.branches:
            if b is not winner and b.final is None and not b.cancelled:
                b.cancelled = True
                if b.status >= 100:
                    self._send_cancel(b, now)

    def _send_cancel(self, b: _Branch, now: float) -> None:
        inv = b.request
        hs = inv.headers
        headers = [("Via", hs.get_all("Via")[0].split(",")[0].strip())]
        headers += [("Route", r) for r in hs.get_all("Route")]
        headers += [
            ("Max-Forwards", "70"),
            ("From", hs.get("From") or ""),
            ("To", hs.get("To") or ""),
            ("Call-ID", hs.get("Call-ID") or ""),
            ("CSeq", f"{inv.cseq} CANCEL"),
            ("Content-Length", "0"),
        ]
        try:
            self.layer.send_request(Request("CANCEL", inv.ruri, headers), b.target.flow, now)
        except Exception as e:  # already cancelled (same branch): nothing more to do
            log.debug("CANCEL not sent: %s", e)
        b.status = max(b.status, 199)  # never sent twice

    # -- in-dialog ----------------------------------------------------------------------
    def _dialog_flow(self, req: Request) -> tuple[Flow | None, int]:
        routes = route_values(req)
        if not routes or not is_ours(routes[0], self.addresses):
            return None, 0
        n = 0
        flow = None
        for r in routes:
            if not is_ours(r, self.addresses):
                break
            n += 1
            f = self.signer.check(r, req.call_id or "", (req.from_tag, req.to_tag))
            if f is not None:
                flow = f
        return flow, n

    def _in_dialog(self, tx: ServerTransaction, req: Request, flow: Flow, now: float, now_ms: int) -> None:
        dest, n = self._dialog_flow(req)
        if dest is None:
            # A forged or foreign in-dialog request: never routed (it would
            # otherwise be a way to reach a trunk without authenticating).
            self._respond(tx, 403 if n else 481, "Not A Dialog Of This Proxy" if n else None)
            return
        dialog = self.dialogs.get(req.call_id, req.from_tag, req.to_tag)
        if dialog is not None:
            from_caller = dialog.from_caller(req.from_tag)
            if from_caller:
                dialog.caller_cseq = max(dialog.caller_cseq, req.cseq)
            else:
                dialog.callee_cseq = max(dialog.callee_cseq, req.cseq)
            dialog.heard(from_caller, now, now_ms)
            if req.method == "BYE":
                self.dialogs.bye(dialog, req.from_tag, now_ms)
        ctx = _Context(tx, req, flow, None, None, False, now_ms, dialog=dialog)
        self._by_server[tx] = ctx
        if req.method == "INVITE":
            self.layer.trying(tx, now)
        endpoint = Endpoint("peer", 0, 0, "")
        self._start_branch_in_dialog(ctx, Target(endpoint, req.ruri, dest), n, now)

    def _start_branch_in_dialog(self, ctx: _Context, t: Target, own_routes: int, now: float) -> None:
        req = ctx.request
        fwd = forwarded(
            req,
            t.ruri,
            self._via(req, t.flow.transport),
            drop_top_route=own_routes,
            received_via=self.core._top_via(req, ctx.flow),
        )
        branch = _Branch(t, fwd)
        ctx.branches.append(branch)
        self._send_branch(ctx, branch, fwd, now)

    def on_ack(self, req: Request, flow: Flow) -> None:
        """The ACK of a 2xx: forwarded statelessly along its Route (§16.11)."""
        if req.to_tag is None:
            return
        dest, n = self._dialog_flow(req)
        if dest is None:
            return
        dialog = self.dialogs.get(req.call_id, req.from_tag, req.to_tag)
        if dialog is not None:
            now, now_ms = self.core._clock
            dialog.heard(dialog.from_caller(req.from_tag), now, now_ms)
        # A stateless forward needs a branch that is the same for a retransmission.
        via = self._via_stateless(req, dest.transport)
        fwd = forwarded(req, req.ruri, via, drop_top_route=n, received_via=self.core._top_via(req, flow))
        self.layer.send_stateless(fwd, dest)

    def _via_stateless(self, req: Request, transport: str) -> str:
        me = self._address(transport)
        return f"SIP/2.0/{transport.upper()} {me.hostport()};branch=z9hG4bK{loop_hash(req)}a{req.branch or ''}"[:300]

    def in_dialog_answered(self, ctx: _Context, resp: Response, now: float, now_ms: int) -> None:
        d = ctx.dialog
        if d is None or d.ended:
            return
        if ctx.request.method in ("INVITE", "UPDATE") and 200 <= resp.status < 300:
            self.dialogs.refreshed(d, _session_expires(resp), now)
            video = _video(resp.body)
            if video is not None:
                self.dialogs.media_changed(d, now_ms, video)

    # -- answer, legs -------------------------------------------------------------------
    def _answered(self, ctx: _Context, branch: _Branch, resp: Response, now: float, now_ms: int) -> None:
        if not ctx.initial_invite or ctx.caller is None:
            return
        req = ctx.request
        callee = branch.target.endpoint
        answer_sdp = _sdp(resp.body)
        video = bool(answer_sdp is not None and answer_sdp.has_active_video)
        offer = _codecs(req.body)
        answer = _codec_names(answer_sdp)
        legs = []
        for ep, direction, local, remote in self._leg_endpoints(ctx.caller, callee, ctx.transit, offer, answer):
            month = self._month(ep.tenant_id, now_ms)
            legs.append(
                LegRecord(
                    leg_id=leg_id(req.call_id or "", req.from_tag or "", direction, ep.kind, ep.id),  # type: ignore[arg-type]
                    tenant_id=ep.tenant_id,
                    month=month,
                    endpoint_kind=ep.kind,  # type: ignore[arg-type]
                    endpoint_id=ep.id,
                    direction=direction,  # type: ignore[arg-type]
                    call_id=req.call_id or "",
                    from_tag=req.from_tag or "",
                    to_tag=resp.to_tag,
                    caller=_uri_of(req.headers.get("From") or ""),
                    callee=ctx.dialled or req.ruri,
                    setup_ms=ctx.setup_ms,
                    answer_ms=now_ms,
                    final_status=resp.status,
                    segment_start_ms=now_ms,
                    segment_video=video,
                    codecs_local=local,
                    codecs_remote=remote,
                    transit=ctx.transit,
                )
            )
        contact = _contact_uri(req) or req.ruri
        d = Dialog(
            key=dialog_key(req.call_id or "", req.from_tag or "", resp.to_tag or ""),
            call_id=req.call_id or "",
            caller_tag=req.from_tag or "",
            callee_tag=resp.to_tag or "",
            caller_from=req.headers.get("From") or "",
            caller_to=resp.headers.get("To") or "",
            caller_target=contact,
            callee_target=_contact_uri(resp) or branch.target.ruri,
            caller_flow=ctx.flow,
            callee_flow=branch.target.flow,
            legs=legs,
            caller_cseq=req.cseq,
        )
        se = _session_expires(resp)
        if se > 0:
            d.session_expires_s = se
            d.session_deadline = now + se
        if self.config.max_call_duration_s > 0:
            d.max_deadline = now + self.config.max_call_duration_s
        d.probe_s = self.config.dialog_probe_s
        d.quiet_since = now
        d.caller_alive_ms = d.callee_alive_ms = now_ms
        if not self.dialogs.add(d):
            if legs:
                self.core.emit_legs(tuple(legs))

    @staticmethod
    def _leg_endpoints(
        caller: Endpoint, callee: Endpoint | None, transit: bool, offer: str, answer: str
    ) -> list[tuple[Endpoint, str, str, str]]:
        out = []
        if caller.kind == "device" or transit:
            out.append((caller, "originating", offer, answer))
        if callee is not None and (callee.kind == "device" or transit):
            out.append((callee, "terminating", answer, offer))
        return out

    def _record_attempt(
        self,
        req: Request,
        caller: Endpoint,
        callee: Endpoint | None,
        now_ms: int,
        status: int,
        transit: bool,
        reason: str = END_REJECTED,
        setup_ms: int | None = None,
        dialled: str = "",
    ) -> None:
        """An unanswered call: its legs, already ended, with the final status and no time."""
        setup = now_ms if setup_ms is None else setup_ms
        offer = _codecs(req.body)
        legs = []
        for ep, direction, local, remote in self._leg_endpoints(caller, callee, transit, offer, ""):
            legs.append(
                LegRecord(
                    leg_id=leg_id(req.call_id or "", req.from_tag or "", direction, ep.kind, ep.id),  # type: ignore[arg-type]
                    tenant_id=ep.tenant_id,
                    month=self._month(ep.tenant_id, setup),
                    endpoint_kind=ep.kind,  # type: ignore[arg-type]
                    endpoint_id=ep.id,
                    direction=direction,  # type: ignore[arg-type]
                    call_id=req.call_id or "",
                    from_tag=req.from_tag or "",
                    to_tag=None,
                    caller=_uri_of(req.headers.get("From") or ""),
                    callee=dialled or req.ruri,
                    setup_ms=setup,
                    end_ms=max(now_ms, setup),
                    end_reason=reason,
                    final_status=status,
                    codecs_local=local,
                    codecs_remote=remote,
                    transit=transit,
                )
            )
        if legs:
            self.core.emit_legs(tuple(legs))

    # -- timers: maximum duration, session timer, dead-call probe ---------------------------
    def handle_timer(self, now: float, now_ms: int) -> None:
        self.trunk_probes.handle_timer(now)
        self.upstream.handle_timer(now, now_ms)
        for d, why in self.dialogs.due(now):
            if why == "probe":
                self.keepalive.probe(d, now)
                continue
            log.info("ending call %s: %s", d.call_id, why)
            self._bye_both(d, now)
            self.dialogs.end(d, now_ms, why)

    def next_timer(self) -> float | None:
        deadline = self.dialogs.next_deadline()
        for other in (self.trunk_probes.next_timer(), self.upstream.next_timer()):
            if other is not None:
                deadline = other if deadline is None else min(deadline, other)
        return deadline

    def _bye_both(self, d: Dialog, now: float) -> None:
        # To the callee, as if from the caller; to the caller, as if from the callee.
        for flow, to_callee in ((d.callee_flow, True), (d.caller_flow, False)):
            reason = ("Reason", 'SIP;cause=200;text="Call ended by the proxy"')
            req, flow = in_dialog_request(d, to_callee, "BYE", self._own_via(flow), (reason,))
            try:
                self.layer.send_request(req, flow, now)
            except Exception as e:
                log.warning("cannot send BYE for %s: %s", d.call_id, e)

    def shutdown(self, now_ms: int) -> None:
        """The server is stopping cleanly: close the legs of calls still up."""
        for d in self.dialogs.all():
            self.dialogs.end(d, now_ms, END_SHUTDOWN)


_STRIP_OUT = frozenset({"proxy-authorization"})


def _uri_of(name_addr: str) -> str:
    s = name_addr
    i, j = s.find("<"), s.find(">")
    if 0 <= i < j:
        return s[i + 1 : j]
    return s.split(";", 1)[0].strip()


def _contact_uri(msg: Request | Response) -> str | None:
    try:
        contacts = msg.contacts
    except RemoteProtocolError:
        return None
    if not contacts:
        return None
    v = msg.headers.get("Contact") or ""
    return _uri_of(v.split(",")[0]) if v else None


def _session_expires(msg: Response) -> int:
    v = msg.headers.get("Session-Expires")
    if not v:
        return 0
    try:
        return int(v.split(";", 1)[0].strip())
    except ValueError:
        return 0


def _sdp(body: bytes):  # type: ignore[no-untyped-def]
    if not body:
        return None
    try:
        return parse_sdp(body)
    except Exception:
        return None


def _video(body: bytes) -> bool | None:
    s = _sdp(body)
    return None if s is None else s.has_active_video


def _codecs(body: bytes) -> str:
    return _codec_names(_sdp(body))


def _codec_names(s) -> str:  # type: ignore[no-untyped-def]
    if s is None:
        return ""
    return ",".join(sorted(s.codec_set("audio") | s.codec_set("video")))
