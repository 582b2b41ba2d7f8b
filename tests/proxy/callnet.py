"""An in-memory network of user agents around one Core: enough UA to place,
answer, cancel and hang up calls, with digest, on fake clocks."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from sipcore.auth import compute_ha1
from sipcore.config import Config, ProxyConfig
from sipcore.flow import Flow
from sipcore.message import Request, Response, parse
from sipcore.message.grammar import split_commas
from sipcore.proxy.core import Core, LegsRecorded
from sipcore.proxy.directory import DeviceCredentials, DidInfo, Directory, TenantInfo, TrunkInfo
from sipcore.proxy.routing import ProxyAddress

DOMAIN = "example.com"
T0_MS = 1_780_000_000_000
PROXY = ProxyAddress("udp", "192.0.2.1", 5060)
ADDRESSES = (PROXY, ProxyAddress("tcp", "192.0.2.1", 5060))
AUDIO = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
G722_ONLY = b"v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\n"
VIDEO = AUDIO + b"m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
TRUNK = TrunkInfo(7, 1, "carrier", "198.51.100.5", 5060, prefixes=("1", "44"), codecs=("PCMU", "PCMA"))


def device(device_id: int, user: str, password: str) -> DeviceCredentials:
    return DeviceCredentials(
        device_id,
        1,
        DOMAIN,
        user,
        compute_ha1(user, DOMAIN, password, "MD5"),
        compute_ha1(user, DOMAIN, password, "SHA-256"),
    )


def make_core(config: Config | None = None, trunks: tuple[TrunkInfo, ...] = (TRUNK,)) -> Core:
    d = Directory()
    d.replace(
        [TenantInfo(1, DOMAIN, "UTC")],
        [device(10, "alice", "a-pw"), device(11, "bob", "b-pw"), device(12, "carol", "c-pw")],
        serial=1,
        trunks=trunks,
        dids=[DidInfo("15550001", 1, 11)],
    )
    counter = itertools.count(1)
    salt = itertools.count(1)
    return Core(
        config or Config(proxy=ProxyConfig(trunk_probe_s=0)),
        d,
        secret=b"k" * 32,
        new_id=lambda: f"id{next(counter)}",
        random=lambda: 0.0,
        nonce_salt=lambda: next(salt).to_bytes(8, "big"),
        parse=parse,
        addresses=ADDRESSES,
    )


class Net:
    def __init__(self, core: Core | None = None) -> None:
        self.core = core or make_core()
        self.uas: dict[tuple[str, int], UA] = {}
        self.now = 100.0
        self.now_ms = T0_MS
        self.legs: dict[str, Any] = {}
        self.events: list[Any] = []
        self.lost: list[tuple[str, int]] = []  # drop the next message to these addresses
        self.sent: dict[tuple[str, int], int] = {}  # bytes the core sent to each address

    def ua(self, user: str, password: str = "", host: str = "203.0.113.7", port: int = 40000) -> UA:
        ua = UA(self, user, password, Flow("udp", host, port, 1))
        self.uas[(host, port)] = ua
        return ua

    def deliver(self, data: bytes, flow: Flow) -> None:
        self.core.receive(data, flow, self.now, self.now_ms)
        self.pump()

    def pump(self) -> None:
        for out in self.core.messages_to_send():
            key = (out.flow.host, out.flow.port)
            self.sent[key] = self.sent.get(key, 0) + len(out.data)
            if key in self.lost:
                self.lost.remove(key)
                continue
            ua = self.uas.get(key)
            assert ua is not None, f"message to an unknown address {out.flow}: {out.data[:80]!r}"
            ua.inbox.append(parse(out.data))
        while (ev := self.core.next_event()) is not None:
            self.events.append(ev)
            if isinstance(ev, LegsRecorded):
                for leg in ev.legs:
                    old = self.legs.get(leg.leg_id)
                    if old is None or old.end_ms is None:  # the store's rule: an ended leg never changes
                        self.legs[leg.leg_id] = leg

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.now_ms += int(seconds * 1000)
        self.core.handle_timer(self.now, self.now_ms)
        self.pump()


class Call:
    """One side's view of a dialog."""

    def __init__(self, call_id: str, local: str, remote: str, target: str, routes: list[str], cseq: int) -> None:
        self.call_id, self.local, self.remote, self.target, self.routes, self.cseq = (
            call_id,
            local,
            remote,
            target,
            routes,
            cseq,
        )


class UA:
    def __init__(self, net: Net, user: str, password: str, flow: Flow) -> None:
        self.net, self.user, self.password, self.flow = net, user, password, flow
        self.inbox: list[Request | Response] = []
        self.ids = itertools.count(1)
        self.contact = f"<sip:{user}@10.0.0.{flow.port % 250}:5060>"

    # -- plumbing ----------------------------------------------------------------
    def send(self, msg: Request | Response) -> None:
        self.net.deliver(msg.to_bytes(), self.flow)

    def take(self, what: str | int) -> Any:
        for i, m in enumerate(self.inbox):
            if (isinstance(what, int) and isinstance(m, Response) and m.status == what) or (
                isinstance(what, str) and isinstance(m, Request) and m.method == what
            ):
                return self.inbox.pop(i)
        raise AssertionError(
            f"{self.user}: no {what} in {[getattr(m, 'method', getattr(m, 'status', '?')) for m in self.inbox]}"
        )

    def statuses(self) -> list[int]:
        return [m.status for m in self.inbox if isinstance(m, Response)]

    def branch(self) -> str:
        return f"z9hG4bK{self.user}{next(self.ids)}"

    def via(self, branch: str | None = None) -> str:
        return f"SIP/2.0/UDP 10.0.0.{self.flow.port % 250}:5060;rport;branch={branch or self.branch()}"

    # -- registration ------------------------------------------------------------
    def register(self) -> None:
        def req(cseq: int, auth: str | None) -> Request:
            hs = [
                ("Via", self.via()),
                ("From", f"<sip:{self.user}@{DOMAIN}>;tag=r{self.user}"),
                ("To", f"<sip:{self.user}@{DOMAIN}>"),
                ("Call-ID", f"reg-{self.user}-{self.flow.port}"),
                ("CSeq", f"{cseq} REGISTER"),
                ("Max-Forwards", "70"),
                ("Contact", self.contact),
                ("Expires", "600"),
            ]
            if auth:
                hs.append(("Authorization", auth))
            return Request("REGISTER", f"sip:{DOMAIN}", hs + [("Content-Length", "0")])

        self.send(req(1, None))
        ch = self.take(401)
        self.send(req(2, self.digest(ch, "REGISTER", f"sip:{DOMAIN}", "WWW-Authenticate")))
        self.take(200)

    def digest(self, ch: Response, method: str, uri: str, header: str) -> str:
        value = next(v for v in ch.headers.get_all(header) if "MD5" in v)
        params = dict(p.strip().split("=", 1) for p in value[len("Digest ") :].split(","))
        realm, nonce = params["realm"].strip('"'), params["nonce"].strip('"')
        ha1 = hashlib.md5(f"{self.user}:{realm}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        resp = hashlib.md5(f"{ha1}:{nonce}:00000001:cn:auth:{ha2}".encode()).hexdigest()
        return (
            f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="cn"'
        )

    # -- calls: caller side -------------------------------------------------------------
    def invite_request(
        self, ruri: str, call_id: str, cseq: int, sdp: bytes = AUDIO, auth: str | None = None, branch: str | None = None
    ) -> Request:
        hs = [
            ("Via", self.via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{self.user}@{DOMAIN}>;tag=f{call_id}"),
            ("To", f"<{ruri}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} INVITE"),
            ("Contact", self.contact),
            ("Content-Type", "application/sdp"),
        ]
        if auth:
            hs.append(("Proxy-Authorization", auth))
        return Request("INVITE", ruri, hs + [("Content-Length", str(len(sdp)))], sdp)

    def invite(self, ruri: str, call_id: str, sdp: bytes = AUDIO, authenticate: bool = True) -> Request:
        """Send the INVITE, answering the 407; returns the INVITE that went through."""
        if not authenticate:
            inv = self.invite_request(ruri, call_id, 1, sdp)
            self.send(inv)
            return inv
        first = self.invite_request(ruri, call_id, 1, sdp)
        self.send(first)
        ch = self.take(407)
        self.send(self.ack_for(first, ch))
        inv = self.invite_request(ruri, call_id, 2, sdp, auth=self.digest(ch, "INVITE", ruri, "Proxy-Authenticate"))
        self.send(inv)
        return inv

    def ack_for(self, inv: Request, resp: Response) -> Request:
        """The ACK of a non-2xx (same branch, hop by hop)."""
        hs = [
            ("Via", inv.headers.get("Via") or ""),
            ("Max-Forwards", "70"),
            ("From", inv.headers.get("From") or ""),
            ("To", resp.headers.get("To") or ""),
            ("Call-ID", inv.call_id or ""),
            ("CSeq", f"{inv.cseq} ACK"),
            ("Content-Length", "0"),
        ]
        return Request("ACK", inv.ruri, hs)

    def cancel(self, inv: Request) -> None:
        hs = [
            ("Via", inv.headers.get("Via") or ""),
            ("Max-Forwards", "70"),
            ("From", inv.headers.get("From") or ""),
            ("To", inv.headers.get("To") or ""),
            ("Call-ID", inv.call_id or ""),
            ("CSeq", f"{inv.cseq} CANCEL"),
            ("Content-Length", "0"),
        ]
        self.send(Request("CANCEL", inv.ruri, hs))

    def confirm(self, inv: Request, ok: Response, send_ack: bool = True) -> Call:
        """The caller's dialog from a 2xx, and its ACK."""
        routes = list(reversed([e for v in ok.headers.get_all("Record-Route") for e in split_commas(v)]))
        target = _uri(ok.headers.get("Contact") or "")
        call = Call(
            inv.call_id or "", inv.headers.get("From") or "", ok.headers.get("To") or "", target, routes, inv.cseq
        )
        if send_ack:
            self.send(self.in_dialog(call, "ACK", cseq=inv.cseq))
        return call

    # -- calls: callee side ---------------------------------------------------------------
    def answer(self, inv: Request, status: int, tag: str = "t1", sdp: bytes = b"", extra=()) -> Response:  # type: ignore[no-untyped-def]
        hs = [("Via", v) for v in inv.headers.get_all("Via")]
        hs += [("Record-Route", v) for v in inv.headers.get_all("Record-Route")]
        to = inv.headers.get("To") or ""
        if status > 100 and ";tag=" not in to:
            to += f";tag={tag}"
        hs += [
            ("From", inv.headers.get("From") or ""),
            ("To", to),
            ("Call-ID", inv.call_id or ""),
            ("CSeq", f"{inv.cseq} {inv.method}"),
        ]
        if 100 < status < 300 and inv.method == "INVITE":
            hs.append(("Contact", self.contact))
        hs += list(extra)
        if sdp:
            hs.append(("Content-Type", "application/sdp"))
        resp = Response(status, _REASONS.get(status, "X"), hs + [("Content-Length", str(len(sdp)))], sdp)
        self.send(resp)
        return resp

    def callee_dialog(self, inv: Request, ok: Response) -> Call:
        routes = [e for v in inv.headers.get_all("Record-Route") for e in split_commas(v)]
        return Call(
            inv.call_id or "",
            ok.headers.get("To") or "",
            inv.headers.get("From") or "",
            _uri(inv.headers.get("Contact") or ""),
            routes,
            100,
        )

    # -- in-dialog --------------------------------------------------------------------------
    def in_dialog(self, call: Call, method: str, cseq: int | None = None, body: bytes = b"", extra=()) -> Request:  # type: ignore[no-untyped-def]
        if cseq is None:
            call.cseq += 1
            cseq = call.cseq
        hs = [("Via", self.via()), ("Max-Forwards", "70")]
        hs += [("Route", r) for r in call.routes]
        hs += [("From", call.local), ("To", call.remote), ("Call-ID", call.call_id), ("CSeq", f"{cseq} {method}")]
        if method in ("INVITE", "UPDATE"):
            hs.append(("Contact", self.contact))
        hs += list(extra)
        if body:
            hs.append(("Content-Type", "application/sdp"))
        return Request(method, call.target, hs + [("Content-Length", str(len(body)))], body)


_REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    401: "Unauthorized",
    407: "Proxy Authentication Required",
    486: "Busy Here",
    487: "Request Terminated",
    603: "Decline",
}


def _uri(name_addr: str) -> str:
    i, j = name_addr.find("<"), name_addr.find(">")
    return name_addr[i + 1 : j] if 0 <= i < j else name_addr
