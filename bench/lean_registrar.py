#!/usr/bin/env python3
"""A lower bound for bench/register.py: the least work a Python registrar on
this stack must do for the SIPp scenario, and nothing more.

It does what the scenario needs done for real, with sipcore's own primitives
where they are already the cheapest form:
- parse each datagram with sipcore's parser (the Cython one when built);
- answer a REGISTER without credentials with a 401 carrying a fresh
  HMAC nonce (`NonceCodec.mint`) for SHA-256 and MD5;
- on credentials: split them (`split_credentials`), open the nonce (HMAC),
  look up the user's HA1, verify the response (`compute_response`), admit
  the nonce-count (`NonceCounts`, no replays);
- keep one binding per AOR in a dict, Call-ID/CSeq ordering checked;
- answer 200 with the Via (received/rport), From, To with a tag, Call-ID,
  CSeq and the Contact with its expires.

What sipcore does on top of this, and this does not: transactions
(retransmission absorption), typed header objects, tenants and the
directory, the registrar's rules (min/max expires, several contacts,
instance and reg-id, Path), failure throttling, metering, access logging,
and the durable write of every binding.  So this is not a registrar anyone
should run; its rate is the ceiling of any Python implementation on this
stack that does the scenario's necessary work, which says how much of the
gap to a C server the stack itself explains.

    python bench/lean_registrar.py PORT USERS   (run by bench/register.py)
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import sys
import time
from typing import cast

import uvloop
from _common import grow_receive_buffer

from sipcore.auth import compute_ha1
from sipcore.auth.credentials import split_credentials
from sipcore.auth.digest import compute_response
from sipcore.auth.nonce import Admission, NonceCodec, NonceCounts
from sipcore.message import Request, parse

DOMAIN = "sipcore.test"
_AOR = re.compile(r"<sips?:([^@>;]+)@")
_ECHO = ("From", "Call-ID", "CSeq")


class LeanRegistrar(asyncio.DatagramProtocol):
    def __init__(self, users: int) -> None:
        self.ha1 = {f"b{i}": compute_ha1(f"b{i}", DOMAIN, f"pw{i}x", "MD5") for i in range(users)}
        self.codec = NonceCodec(os.urandom(32))
        self.counts = NonceCounts(100_000, 300_000)
        self.bindings: dict[str, tuple[str, str, int, int]] = {}
        self.tags = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            req = parse(data)
        except Exception:
            return
        if type(req) is not Request:
            return
        now_ms = time.time_ns() // 1_000_000
        h = req.headers
        to = h.get("To") or ""
        m = _AOR.search(to)
        auth = h.get("Authorization")
        extra: list[str]
        if auth is None or m is None:
            floor = self.counts.floor(now_ms)  # a nonce at or below the table's floor could never be admitted
            nonce = self.codec.mint(max(now_ms, floor + 1), os.urandom(8), DOMAIN)
            # MD5 only: what sipcore offers SIPp ([auth] md5_only_user_agents).
            extra = [f'WWW-Authenticate: Digest realm="{DOMAIN}", nonce="{nonce}", algorithm=MD5, qop="auth"']
            status = "401 Unauthorized"
        else:
            status, extra = self._authenticated(req, auth, m.group(1), now_ms)
        self.tags += 1
        via = h.get("Via") or ""
        if ";rport" in via:
            via = via.replace(";rport", f";received={addr[0]};rport={addr[1]}", 1)
        lines = [f"SIP/2.0 {status}", f"Via: {via}"]
        lines += [f"{n}: {h.get(n)}" for n in _ECHO]
        lines.append(f"To: {to};tag=lr{self.tags:x}")
        lines += extra
        lines.append("Content-Length: 0\r\n\r\n")
        self.transport.sendto("\r\n".join(lines).encode(), addr)

    def _authenticated(self, req: Request, auth: str, user: str, now_ms: int) -> tuple[str, list[str]]:
        split = split_credentials(auth)
        params = split[1] if split is not None else None
        if params is None or params.get("username") != user or params.get("realm") != DOMAIN:
            return "403 Forbidden", []
        nonce, nc, cnonce, uri = params.get("nonce"), params.get("nc"), params.get("cnonce"), params.get("uri")
        response = params.get("response")
        raw = self.codec.open(nonce or "", DOMAIN)
        ha1 = self.ha1.get(user)
        if raw is None or ha1 is None or not (nc and cnonce and uri and response):
            return "403 Forbidden", []
        expected = compute_response("MD5", ha1, nonce or "", nc, cnonce, "auth", "REGISTER", uri)
        if not hmac.compare_digest(expected, response):
            return "403 Forbidden", []
        if self.counts.admit(raw, int(nc, 16), now_ms) is not Admission.ACCEPTED:
            return "403 Forbidden", []
        call_id, cseq = req.call_id, req.cseq
        contact = req.headers.get("Contact") or ""
        old = self.bindings.get(user)
        if old is not None and old[1] == call_id and cseq <= old[2]:
            return "400 Stale CSeq", []
        expires = int(req.headers.get("Expires") or 3600)
        self.bindings[user] = (contact, call_id, cseq, now_ms + expires * 1000)
        return "200 OK", [f"Contact: {contact};expires={expires}"]


async def main(port: int, users: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: LeanRegistrar(users), local_addr=("127.0.0.1", port))
    grow_receive_buffer(transport.get_extra_info("socket"))
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
