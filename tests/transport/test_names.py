"""UDP to a host name (a trunk added by name): looked up off the packet path, on
uvloop as the server runs it (its sendto takes addresses only)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
import uvloop

from sipcore.config import Listener
from sipcore.flow import Flow
from sipcore.message.limits import DEFAULT_LIMITS
from sipcore.transport import names
from sipcore.transport.listeners import Transports


def receiver() -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s, s.getsockname()[1]


async def recv(s: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(s, 65536), 5)


def test_a_datagram_to_a_host_name_is_sent_once_the_name_resolves_then_from_the_cache() -> None:
    async def main() -> None:
        peer, port = receiver()
        transports = Transports(lambda d, f: None, DEFAULT_LIMITS)
        await transports.start((Listener("udp", "127.0.0.1", 0),))
        flow = Flow("udp", "localhost", port, 0)
        try:
            assert transports.send(b"first", flow) and transports.send(b"second", flow)  # both wait for the name
            assert [await recv(peer), await recv(peer)] == [b"first", b"second"]
            assert transports.send(b"third", flow)  # known now: sent at once
            assert await recv(peer) == b"third"
            assert transports.names._known[("localhost", port, socket.AF_INET)][0] == ("127.0.0.1", port)
        finally:
            peer.close()
            await transports.stop()

    uvloop.run(main())


def test_a_name_that_does_not_resolve_fails_fast_for_a_while_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        transports = Transports(lambda d, f: None, DEFAULT_LIMITS)
        await transports.start((Listener("udp", "127.0.0.1", 0),))
        flow = Flow("udp", "no-such-trunk.invalid", 5060, 0)
        try:
            assert transports.send(b"x", flow), "queued while it is looked up"
            for _ in range(100):
                if ("no-such-trunk.invalid", 5060, socket.AF_INET) in transports.names._known:
                    break
                await asyncio.sleep(0.05)
            assert transports.send(b"y", flow) is False, "known not to resolve: fails at once"
        finally:
            await transports.stop()

    with caplog.at_level(logging.WARNING, logger="sipcore.transport"):
        uvloop.run(main())
    assert "cannot send to no-such-trunk.invalid:5060: the name does not resolve" in caplog.text


def test_what_waits_for_a_name_is_bounded() -> None:
    async def main() -> None:
        table = names.UdpNames()
        sent: list[bytes] = []
        ok = [table.send(b"%d" % i, "localhost", 9, socket.AF_INET, lambda d, a: sent.append(d)) for i in range(70)]
        assert ok == [True] * names.MAX_QUEUED + [False] * (70 - names.MAX_QUEUED)
        table.stop()

    uvloop.run(main())
