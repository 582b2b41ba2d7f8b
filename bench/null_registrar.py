#!/usr/bin/env python3
"""The stack's floor for bench/register.py: a uvloop UDP responder that answers
REGISTER with 401 (no Authorization) or 200 (with one) and does nothing else.

No parsing beyond copying the header lines a response must echo, no digest
check, no state, no store.  Driven by the same SIPp scenario as sipcore, its
rate is what asyncio + uvloop + one Python callback per datagram reach on
this machine: the ceiling of any server built on this stack, and so the
baseline that says how much of sipcore's cost is its own work.

    python bench/null_registrar.py PORT        (run by bench/register.py)
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop
from _common import grow_receive_buffer

_ECHOED = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:")
_CHALLENGE = b'WWW-Authenticate: Digest realm="sipcore.test", nonce="0123456789abcdef", qop="auth", algorithm=MD5'


class NullRegistrar(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        authorized = b"\r\nAuthorization:" in data
        out = [b"SIP/2.0 200 OK" if authorized else b"SIP/2.0 401 Unauthorized"]
        for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
            if line[:9].lower().startswith(_ECHOED):
                out.append(line + b";tag=nr1" if line[:3].lower() == b"to:" else line)
        out.append(b"Contact: <sip:u@127.0.0.1>;expires=3600" if authorized else _CHALLENGE)
        out.append(b"Content-Length: 0\r\n\r\n")
        self.transport.sendto(b"\r\n".join(out), addr)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(NullRegistrar, local_addr=("127.0.0.1", port))
    grow_receive_buffer(transport.get_extra_info("socket"))
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
