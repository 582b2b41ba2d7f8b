"""REGISTER processing (RFC 3261 §10.3 steps 4-8, RFC 3327, RFC 5626 §6).

The caller (the server) has already authenticated the request and mapped it
to a tenant and device; this module applies the binding rules and returns
the response plus the binding changes to persist.  Decisions are return
values: 423, 400 and 403 are responses, not exceptions.  A malformed Contact
or Expires raises ParseError, which the server's one error path turns into
400.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import NamedTuple

from sipcore.config import RegistrarConfig
from sipcore.flow import Flow
from sipcore.message import Request, Response, make_response, response_bytes
from sipcore.message.grammar import format_params
from sipcore.message.headers import NameAddr
from sipcore.registrar.location import Binding, LocationService, contact_key

SUPPORTED_EXTENSIONS = frozenset({"path", "outbound"})

_date_cache: tuple[int, str] = (-1, "")


def _http_date(second: int) -> str:
    """RFC 1123 date for the Date header (§20.17), formatted once per second."""
    global _date_cache
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


class Answer(NamedTuple):
    """The response to `req`, described rather than built: the core sends
    :meth:`to_bytes` (no Response object on the way to the wire), tests and
    tools read :meth:`build`.  A NamedTuple: one is made per REGISTER."""

    req: Request
    status: int
    reason: str | None
    extra: list[tuple[str, str]] | None
    to_tag: str
    top_via: str | None

    def to_bytes(self) -> bytes:
        return response_bytes(self.req, self.status, self.reason, self.to_tag, self.extra, top_via=self.top_via)

    def build(self) -> Response:
        return make_response(self.req, self.status, self.reason, self.to_tag, self.extra, top_via=self.top_via)


@dataclass(slots=True)
class RegisterOutcome:
    answer: Answer
    upserts: list[Binding] = field(default_factory=list)
    removed: list[Binding] = field(default_factory=list)

    @property
    def response(self) -> Response:
        """The answer as a Response object."""
        return self.answer.build()


def _option_tags(req: Request, name: str) -> set[str]:
    return {t.strip().lower() for t in req.headers.values(name) if t.strip()}


def _contact_value(na: NameAddr) -> str:
    """The Contact as stored and echoed: without its expires parameter."""
    params = tuple((k, v) for k, v in na.params if k.lower() != "expires")
    shown = NameAddr(na.uri, na.display_name, params, True)
    return str(shown)


def _outbound_applies(req: Request) -> bool:
    """RFC 5626 §6: reg-id is honoured only when the registrar is the first
    hop (no Path) or the edge proxy said it does outbound (";ob" on the
    first Path URI); otherwise the Contact is an ordinary binding."""
    paths = req.paths
    return not paths or paths[0].uri.has_param("ob")


class Registrar:
    """Applies REGISTER requests to a :class:`LocationService`."""

    def __init__(self, config: RegistrarConfig, location: LocationService, random: Callable[[], float]) -> None:
        self.config = config
        self.location = location
        self._random = random

    def _granted(self, requested: int) -> int:
        cfg = self.config
        if requested < cfg.max_expires_s:
            return requested
        # Clamp, then shave up to jitter% off so that a fleet that registered
        # together does not refresh together.
        return cfg.max_expires_s - int(cfg.max_expires_s * cfg.expires_jitter_pct / 100 * self._random())

    def register(
        self,
        req: Request,
        aor: str,
        flow: Flow,
        tenant_id: int,
        device_id: int,
        now_ms: int,
        to_tag: str,
        top_via: str | None = None,
    ) -> RegisterOutcome:
        """`top_via`: the request's top Via as the response must carry it
        (with received/rport, RFC 3581), or None to copy it unchanged."""
        cfg = self.config

        def reply(status: int, reason: str | None = None, extra: list[tuple[str, str]] | None = None) -> Answer:
            return Answer(req, status, reason, extra, to_tag, top_via)

        unsupported = _option_tags(req, "Require") - SUPPORTED_EXTENSIONS
        if unsupported:
            return RegisterOutcome(reply(420, extra=[("Unsupported", ", ".join(sorted(unsupported)))]))
        current = self.location.get(aor)
        header_expires = req.expires
        if req.contact_star:
            # RFC 3261 §10.3 step 6: "*" only with Expires: 0 and alone.
            if header_expires != 0:
                return RegisterOutcome(reply(400, "Contact * requires Expires: 0"))
            for b in list(current.values()):
                if b.call_id == req.call_id and req.cseq <= b.cseq:
                    return RegisterOutcome(reply(400, "Stale CSeq"))
            cleared = [r for r in (self.location.remove(aor, k) for k in list(current)) if r is not None]
            return RegisterOutcome(self._ok(req, aor, now_ms, to_tag, top_via), removed=cleared)

        contacts = req.contacts
        outbound = _outbound_applies(req)
        default = header_expires if header_expires is not None else cfg.default_expires_s
        plan: list[tuple[str, NameAddr, int, int | None]] = []
        for na in contacts:
            expires = na.expires
            if expires is None:
                expires = default
            if 0 < expires < cfg.min_expires_s:
                return RegisterOutcome(reply(423, extra=[("Min-Expires", str(cfg.min_expires_s))]))
            reg_id = na.reg_id if outbound and na.instance else None
            key = contact_key(na.uri, na.instance, reg_id)
            old = current.get(key)
            if old is not None and old.call_id == req.call_id and req.cseq <= old.cseq:
                # §10.3 step 7: an out-of-order or replayed REGISTER must not roll a binding back.
                return RegisterOutcome(reply(400, "Stale CSeq"))
            plan.append((key, na, expires, reg_id))

        # Two Contacts with the same binding key in one REGISTER: the last one
        # wins (one binding, one stored row).
        plan = list({p[0]: p for p in plan}.values())
        adds = {key for key, _, exp, _ in plan if exp > 0 and key not in current}
        removes = {key for key, _, exp, _ in plan if exp == 0 and key in current}
        if len(current) + len(adds) - len(removes) > cfg.max_contacts_per_aor:
            return RegisterOutcome(reply(403, "Too Many Registrations"))
        if adds and len(self.location) + len(adds) > self.location.max_bindings:
            return RegisterOutcome(reply(503, "Location Table Full"))

        upserts: list[Binding] = []
        removed: list[Binding] = []
        path = tuple(req.headers.get_all("Path"))
        user_agent = req.headers.get("User-Agent")
        for key, na, expires, reg_id in plan:
            if expires == 0:
                gone = self.location.remove(aor, key)
                if gone is not None:
                    removed.append(gone)
                continue
            b = Binding(
                aor=aor,
                key=key,
                contact=_contact_value(na),
                uri=str(na.uri),
                expires_ms=now_ms + self._granted(expires) * 1000,
                q_milli=int(round((na.q if na.q is not None else 1.0) * 1000)),
                call_id=req.call_id,
                cseq=req.cseq,
                flow=flow,
                tenant_id=tenant_id,
                device_id=device_id,
                updated_ms=now_ms,
                instance=na.instance,
                reg_id=reg_id,
                path=path,
                user_agent=user_agent,
            )
            replaced = current.get(key)
            if replaced is not None and replaced.contact != b.contact:
                removed.append(replaced)  # same instance/reg-id, new Contact: the old row goes
            self.location.put(b)
            upserts.append(b)
        return RegisterOutcome(self._ok(req, aor, now_ms, to_tag, top_via), upserts, removed)

    def _ok(self, req: Request, aor: str, now_ms: int, to_tag: str, top_via: str | None) -> Answer:
        extra: list[tuple[str, str]] = []
        bindings = self.location.lookup(aor, now_ms)
        for b in bindings:
            extra.append(("Contact", f"{b.contact}{format_params((('expires', str(b.remaining_s(now_ms))),))}"))
        supported = _option_tags(req, "Supported")
        if "path" in supported:
            extra.extend(("Path", p) for p in req.headers.get_all("Path"))
        if "outbound" in supported and _outbound_applies(req) and any(b.reg_id is not None for b in bindings):
            extra.append(("Require", "outbound"))  # RFC 5626 §6: the registrar applied outbound processing
        extra.append(("Date", _http_date(now_ms // 1000)))
        return Answer(req, 200, None, extra, to_tag, top_via)
