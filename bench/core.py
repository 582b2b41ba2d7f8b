#!/usr/bin/env python3
"""CPU cost of the sans-IO core per registration and per call, without sockets.

What `bench/register.py` and `bench/calls.py` measure end to end is the sum
of this, the socket system calls, and the load generator sharing the machine.
This isolates the first part so that an optimisation of the packet path can
be measured repeatably (also under `valgrind --tool=callgrind`):

- register: REGISTER -> 401, REGISTER with digest -> 200, for distinct users
  (the SIPp scenario of bench/register.py, byte for byte the same shape);
- call: INVITE (no auth, from a trunk to a DID) -> 100/180/200 relayed, ACK,
  BYE -> 200 (the bench/calls.py no-auth scenario), Record-Route and leg
  metering on.

Only the core's own work is timed (receive, the responses and requests it
sends, its events); building the client's messages is not.  The baseline in
the same run is the parser alone on the same messages, so the ratio says how
many parses' worth of work one message costs the core.

    python bench/core.py [--users 5000] [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit  # noqa: E402

from sipcore.auth import compute_ha1  # noqa: E402
from sipcore.auth.client import authorization, pick_challenge  # noqa: E402
from sipcore.config import Config, ProxyConfig  # noqa: E402
from sipcore.flow import Flow  # noqa: E402
from sipcore.message import parse  # noqa: E402
from sipcore.proxy.core import Core  # noqa: E402
from sipcore.proxy.directory import DeviceCredentials, DidInfo, Directory, TenantInfo, TrunkInfo  # noqa: E402
from sipcore.proxy.routing import ProxyAddress  # noqa: E402
from sipcore.registrar import Binding  # noqa: E402

DOMAIN = "sipcore.test"
ME = ProxyAddress("udp", "127.0.0.1", 5060)
UAC = ("127.0.0.1", 5061)
TRUNK = TrunkInfo(7, 1, "carrier", "127.0.0.1", 5070, prefixes=("1",), codecs=("PCMU", "PCMA"))
CALLEE = ("127.0.0.1", 5080)
SDP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def make_core(users: int) -> Core:
    d = Directory()
    devices = [
        DeviceCredentials(
            100 + i,
            1,
            DOMAIN,
            f"b{i}",
            compute_ha1(f"b{i}", DOMAIN, f"pw{i}x", "MD5"),
            compute_ha1(f"b{i}", DOMAIN, f"pw{i}x", "SHA-256"),
        )
        for i in range(users)
    ]
    d.replace([TenantInfo(1, DOMAIN, "UTC")], devices, serial=1, trunks=(TRUNK,), dids=[DidInfo("15550001", 1, 100)])
    ids = itertools.count(1)
    cfg = Config(proxy=ProxyConfig(trunk_probe_s=0))
    return Core(
        cfg,
        d,
        secret=b"k" * 32,
        new_id=lambda: f"{next(ids):x}",
        random=lambda: 0.0,
        nonce_salt=lambda: os.urandom(8),
        parse=parse,
        addresses=(ME,),
    )


def register_msg(i: int, cseq: int, auth: str = "") -> bytes:
    extra = f"Authorization: {auth}\r\n" if auth else ""
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;rport;branch=z9hG4bK-{i}-{cseq}\r\n"
        f"From: <sip:b{i}@{DOMAIN}>;tag=1SIPpTag00{i}\r\n"
        f"To: <sip:b{i}@{DOMAIN}>\r\n"
        f"Call-ID: {i}-reg@127.0.0.1\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:b{i}@127.0.0.1:5061;transport=UDP>\r\n"
        f"{extra}Max-Forwards: 70\r\nExpires: 3600\r\nUser-Agent: SIPp\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.now_ms = 1_790_000_000_000

    def tick(self) -> None:
        self.now += 0.0001
        self.now_ms += 1


def drain(core: Core) -> list[bytes]:
    out = [o.data for o in core.messages_to_send()]
    while core.next_event() is not None:
        pass
    return out


def bench_register(users: int) -> tuple[float, float, int]:
    """(core seconds, parse seconds, messages) for one REGISTER pair per user."""
    core = make_core(users)
    clock = Clock()
    flow = Flow("udp", *UAC, 1)
    timed = parsed = 0.0
    for i in range(users):
        first = register_msg(i, 1)
        t = time.perf_counter()
        core.receive(first, flow, clock.now, clock.now_ms)
        out = drain(core)
        timed += time.perf_counter() - t
        resp = parse(out[0])
        ch = pick_challenge(resp.headers.get_all("WWW-Authenticate"))
        assert resp.status == 401 and ch is not None, out[0][:200]
        auth = authorization(ch, f"b{i}", f"pw{i}x", "REGISTER", f"sip:{DOMAIN}", f"c{i}")
        second = register_msg(i, 2, auth)
        clock.tick()
        t = time.perf_counter()
        core.receive(second, flow, clock.now, clock.now_ms)
        out = drain(core)
        timed += time.perf_counter() - t
        assert out and out[0].startswith(b"SIP/2.0 200"), out[0][:200] if out else "nothing sent"
        t = time.perf_counter()
        parse(first)
        parse(second)
        parsed += time.perf_counter() - t
        clock.tick()
    return timed, parsed, 2 * users


def invite_msg(i: int) -> bytes:
    head = (
        f"From: <sip:trunk@127.0.0.1:5070>;tag={i}SIPpTag01\r\n"
        f"To: <sip:15550001@{DOMAIN}>\r\n"
        f"Call-ID: {i}-call@127.0.0.1\r\n"
    )
    return (
        f"INVITE sip:15550001@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-c{i}-1\r\n{head}"
        f"CSeq: 1 INVITE\r\nContact: <sip:trunk@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP


def bench_calls(calls: int) -> tuple[float, float, int]:
    """(core seconds, parse seconds, messages) for calls trunk -> DID -> registered device."""
    core = make_core(1)
    clock = Clock()
    core.restore_bindings(
        [
            Binding(
                aor=f"sip:b0@{DOMAIN}",
                key="sip:b0@127.0.0.1:5080",
                contact="<sip:b0@127.0.0.1:5080>",
                uri="sip:b0@127.0.0.1:5080",
                expires_ms=clock.now_ms + 10**9,
                q_milli=1000,
                call_id="x",
                cseq=1,
                flow=Flow("udp", *CALLEE, 1),
                tenant_id=1,
                device_id=100,
                updated_ms=clock.now_ms,
            )
        ]
    )
    trunk = Flow("udp", TRUNK.host, TRUNK.port, 1)
    callee = Flow("udp", *CALLEE, 1)
    timed = parsed = 0.0
    messages = 0

    def feed(data: bytes, flow: Flow) -> list[bytes]:
        nonlocal timed, parsed, messages
        t = time.perf_counter()
        core.receive(data, flow, clock.now, clock.now_ms)
        out = drain(core)
        t2 = time.perf_counter()
        parse(data)
        parsed += time.perf_counter() - t2
        timed += t2 - t
        messages += 1
        clock.tick()
        return out

    for i in range(calls):
        invite = invite_msg(i)
        out = feed(invite, trunk)  # -> 100 to the trunk, INVITE to the callee
        fwd = next(parse(o) for o in out if o.startswith(b"INVITE"))
        ftag = f"{i}callee"
        # SIPp's [last_Via:] and [last_Record-Route:] join repeated fields with commas.
        resp_head = "".join(
            f"{n}: {', '.join(fwd.headers.get_all(n))}\r\n" for n in ("Via", "Record-Route") if n in fwd.headers
        )
        common = (
            f"From: {fwd.headers.get('From')}\r\nTo: {fwd.headers.get('To')};tag={ftag}\r\nCall-ID: {fwd.call_id}\r\n"
        )
        ringing = f"SIP/2.0 180 Ringing\r\n{resp_head}{common}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode()
        ok = (
            f"SIP/2.0 200 OK\r\n{resp_head}{common}CSeq: 1 INVITE\r\nContact: <sip:b0@127.0.0.1:5080>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
        ).encode() + SDP
        feed(ringing, callee)
        out = feed(ok, callee)
        relayed = parse(out[0])
        assert relayed.status == 200, out[0][:200]
        rr = relayed.headers.get_all("Record-Route")
        to = relayed.headers.get("To")
        frm = relayed.headers.get("From")
        route = "".join(f"Route: {r}\r\n" for r in rr)
        ack = (
            f"ACK sip:b0@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-c{i}-2\r\n"
            f"{route}From: {frm}\r\nTo: {to}\r\nCall-ID: {relayed.call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        out = feed(ack, trunk)
        assert out and out[0].startswith(b"ACK"), out
        bye = (
            f"BYE sip:b0@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-c{i}-3\r\n"
            f"{route}From: {frm}\r\nTo: {to}\r\nCall-ID: {relayed.call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        out = feed(bye, trunk)
        fbye = parse(next(o for o in out if o.startswith(b"BYE")))
        vias = "".join(f"Via: {v}\r\n" for v in fbye.headers.get_all("Via"))
        bye_ok = (
            f"SIP/2.0 200 OK\r\n{vias}From: {fbye.headers.get('From')}\r\nTo: {fbye.headers.get('To')}\r\n"
            f"Call-ID: {fbye.call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        out = feed(bye_ok, callee)
        assert out and out[0].startswith(b"SIP/2.0 200"), out
        clock.now += 40.0  # let the transactions of this call end (timers J/K, 64*T1)
        core.handle_timer(clock.now, clock.now_ms)
        drain(core)
    return timed, parsed, messages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    gc.freeze()
    for name, fn, n, unit in (
        ("register", bench_register, args.users, "registrations"),
        ("call", bench_calls, args.calls, "calls"),
    ):
        best: tuple[float, float, int] | None = None
        for _ in range(args.rounds):
            res = fn(n)
            if best is None or res[0] < best[0]:
                best = res
        assert best is not None
        core_s, parse_s, msgs = best
        emit(
            {
                "bench": "core",
                "flow": name,
                unit: n,
                "core_us_per_message": round(core_s / msgs * 1e6, 2),
                f"core_us_per_{unit[:-1]}": round(core_s / n * 1e6, 1),
                f"{unit}_per_s_core_only": round(n / core_s),
                "baseline_parse_us_per_message": round(parse_s / msgs * 1e6, 2),
                "ratio_core_over_parse": round(core_s / parse_s, 1),
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
