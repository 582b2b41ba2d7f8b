"""Stateless pieces of request forwarding (RFC 3261 §16.6) and response choice (§16.7).

Record-Route flow tokens
------------------------
sipcore must route in-dialog requests over the flow each side reached it on
(NAT: a phone's Contact is often a private address), accept in-dialog
requests only for dialogs it record-routed itself, and keep doing both after
a restart that lost every in-memory dialog.  So its Record-Route URI carries
the answer, signed (the RFC 5626 §5.3 flow-token idea):

    <sip:PROXY:PORT;transport=udp;lr;fl=udp~10.0.0.7~5060~0;sc=SIGNATURE>

``fl`` is the flow towards the side that did NOT see this entry: the entry
in the forwarded INVITE (seen by the callee, used for the callee's requests)
names the caller's flow; the proxy rewrites its entry in the 2xx on the way
back (seen by the caller) to name the callee's flow.  ``sc`` is an HMAC over
Call-ID, the caller's tag and ``fl``; an in-dialog request is forwarded only
when its top Route is such an entry with a valid signature, to the flow it
names.  The caller's tag is the From tag of caller requests and the To tag
of callee requests, so both are tried.  Since each side gets its own entry,
the transport parameter can differ per side: this replaces the "double
Record-Route" of a transport change (RFC 5658) with one entry per side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import NamedTuple

from sipcore.flow import Flow
from sipcore.message import Request, Response
from sipcore.message.grammar import split_commas
from sipcore.message.headers import parse_name_addr
from sipcore.message.model import HeaderField

_SIG_BYTES = 9  # 72 bits, 12 base64 characters


class ProxyAddress(NamedTuple):
    """Where this proxy is reached over one transport (advertised host, port)."""

    transport: str
    host: str
    port: int

    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def encode_flow(flow: Flow) -> str:
    return f"{flow.transport}~{flow.host}~{flow.port}~{flow.conn_id}"


def decode_flow(text: str) -> Flow | None:
    parts = text.split("~")
    if len(parts) != 4 or parts[0] not in ("udp", "tcp", "tls"):
        return None
    try:
        return Flow(parts[0], parts[1], int(parts[2]), int(parts[3]))
    except ValueError:
        return None


class RouteSigner:
    """Signs and checks the flow tokens of this proxy's Record-Route entries."""

    def __init__(self, secret: bytes) -> None:
        key = hashlib.sha256(b"sipcore record-route\x00" + secret).digest()
        self._mac = hmac.new(key, digestmod="sha256")  # keyed once; copied per signature

    def signature(self, call_id: str, caller_tag: str, fl: str) -> str:
        mac = self._mac.copy()
        mac.update("\x00".join((call_id, caller_tag, fl)).encode("utf-8", "surrogateescape"))
        return base64.urlsafe_b64encode(mac.digest()[:_SIG_BYTES]).decode()

    def record_route(self, me: ProxyAddress, call_id: str, caller_tag: str, toward: Flow) -> str:
        fl = encode_flow(toward)
        sc = self.signature(call_id, caller_tag, fl)
        return f"<sip:{me.hostport()};transport={me.transport};lr;fl={fl};sc={sc}>"

    def check(self, route_value: str, call_id: str, tags: tuple[str | None, ...]) -> Flow | None:
        """The flow a Route entry of ours names, None when it is not ours or forged."""
        try:
            uri = parse_name_addr(route_value).uri
        except Exception:
            return None
        fl, sc = uri.param("fl"), uri.param("sc")
        if not fl or not sc:
            return None
        for tag in tags:
            if tag is not None and hmac.compare_digest(self.signature(call_id, tag, fl), sc):
                return decode_flow(fl)
        return None


def is_ours(route_value: str, addresses: tuple[ProxyAddress, ...]) -> bool:
    """Does this Route/Record-Route entry name this proxy (host and port)?"""
    low = route_value.lower()
    if not any(a.host.lower() in low for a in addresses):
        return False  # decided without parsing
    try:
        uri = parse_name_addr(route_value).uri
    except Exception:
        return False
    if not uri.is_sip:
        return False
    host = uri.host.strip("[]").lower()
    for a in addresses:
        if a.host.lower() == host and (uri.port or 5060) == a.port:
            return True
    return False


def route_values(msg: Request | Response, name: str = "Route") -> list[str]:
    out: list[str] = []
    for v in msg.headers.get_all(name):
        out.extend(split_commas(v))
    return out


def loop_hash(req: Request) -> str:
    """§16.6 step 8: a branch part that is equal for a request that loops back
    unchanged and differs for a spiral (a changed Request-URI)."""
    raw = "\x00".join((req.ruri, req.call_id or "", req.from_tag or "", req.to_tag or "", str(req.cseq)))
    return hashlib.blake2b(raw.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


def forwarded(
    req: Request,
    ruri: str,
    via: str,
    *,
    record_route: str | None = None,
    routes: list[str] | None = None,
    drop_top_route: int = 0,
    received_via: str | None = None,
    strip: frozenset[str] = frozenset(),
) -> Request:
    """A copy of `req` to forward (§16.6): Request-URI, our Via on top,
    Max-Forwards decremented, optionally our Record-Route on top, the first
    `drop_top_route` Route elements removed (loose routing, §16.4), `routes`
    pushed on top (a registered Path, RFC 3327), header names in `strip`
    (lower case) left out; `received_via` replaces the first Via field (the
    previous hop's Via with received/rport added, §18.2.1, RFC 3581).

    Unchanged fields are shared with `req` (their original bytes are sent
    as they came) and the transaction keys are not parsed again."""
    mf = req.max_forwards
    new_mf = max(0, (70 if mf is None else mf) - 1)
    known = HeaderField.known
    fields: list[HeaderField] = [known("Via", via, "via")]
    if record_route is not None:
        fields.append(known("Record-Route", record_route, "record-route"))
    if routes:
        fields.extend(known("Route", r, "route") for r in routes)
    to_drop = drop_top_route
    mf_done = False
    via_done = received_via is None
    for f in req.headers._fields:
        k = f.key
        if k == "via" and not via_done:
            fields.append(known("Via", received_via, "via"))  # type: ignore[arg-type]
            via_done = True
            continue
        if k == "route" and to_drop:
            elems = split_commas(f.value)
            take = min(to_drop, len(elems))
            to_drop -= take
            elems = elems[take:]
            if elems:
                fields.append(known("Route", ", ".join(elems), "route"))
            continue
        if k == "max-forwards":
            if not mf_done:
                fields.append(known("Max-Forwards", str(new_mf), "max-forwards"))
                mf_done = True
            continue
        if k in strip or k == "content-length":
            continue
        fields.append(f)
    if not mf_done:
        fields.append(known("Max-Forwards", str(new_mf), "max-forwards"))
    fields.append(known("Content-Length", str(len(req.body)), "content-length"))
    top = via_keys(via)
    return Request.derived(req, ruri, fields, top, new_mf)


def via_keys(via: str) -> tuple[str | None, str, int | None, str]:
    """(branch, host, port, transport) of a Via this proxy wrote itself:
    ``SIP/2.0/UDP host:port;branch=...;rport``."""
    proto, _, rest = via.partition(" ")
    sent_by, _, params = rest.partition(";")
    branch = None
    for p in params.split(";"):
        if p.startswith("branch="):
            branch = p[7:]
    if sent_by.startswith("["):
        host, _, port = sent_by[1:].partition("]:")
    else:
        host, _, port = sent_by.rpartition(":")
    return branch, host, int(port) if port else None, proto.rsplit("/", 1)[1]


def replace_record_route(resp: Response, addresses: tuple[ProxyAddress, ...], new_value: str) -> bool:
    """Rewrite this proxy's entry in a response's Record-Route (see the module
    docstring); False when the response has none of ours."""
    fields = resp.headers.get_all("Record-Route")
    if not fields:
        return False
    elems = [e for v in fields for e in split_commas(v)]
    for i, e in enumerate(elems):
        if ";sc=" in e and is_ours(e, addresses):
            elems[i] = new_value
            resp.headers.remove("Record-Route")
            # Keep one field per element, in order, above nothing else in particular.
            for e2 in elems:
                resp.headers.add("Record-Route", e2)
            return True
    return False


# §16.7 step 6: choosing the best final response among the branches.
def _class_rank(status: int) -> int:
    if 600 <= status < 700:
        return 0
    if 200 <= status < 300:
        return 1
    if 300 <= status < 400:
        return 2
    if 400 <= status < 500:
        return 3
    return 4  # 5xx last


_PREFERRED_4XX = (401, 407, 415, 420, 484)


def best_response(statuses: list[int]) -> int:
    """Index of the best final response: 6xx, then 2xx, then the lowest class;
    within 4xx, the ones a client can act on (auth, 415, 420, 484) first, and
    503 becomes a last resort (§16.7: "SHOULD NOT forward 503")."""

    def key(i: int) -> tuple[int, int, int]:
        s = statuses[i]
        return (_class_rank(s), 0 if s in _PREFERRED_4XX else 1, s)

    return min(range(len(statuses)), key=key)
