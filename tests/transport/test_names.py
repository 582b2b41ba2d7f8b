"""UDP to a host name (a trunk added by name): looked up off the packet path, on
uvloop as the server runs it (its sendto takes addresses only)."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import SimpleNamespace

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


def test_a_failed_refresh_keeps_the_last_address_and_a_broken_resolver_never_sticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[object] = [[(socket.AF_INET, socket.SOCK_DGRAM, 0, "", ("192.0.2.7", 5060))], OSError("SERVFAIL")]

    async def resolve(host: str, port: int, family: int) -> list[object]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    async def main() -> None:
        clock = [1000.0]
        monkeypatch.setattr(names, "time", SimpleNamespace(monotonic=lambda: clock[0]))  # not asyncio's clock
        table = names.UdpNames(resolve=resolve)
        sent: list[tuple[bytes, tuple[str, int]]] = []
        to = lambda d, a: sent.append((d, a))  # noqa: E731
        assert table.send(b"1", "trunk.example", 5060, socket.AF_INET, to)
        await asyncio.sleep(0.01)
        clock[0] += names.TTL_S + 1  # expired: looked up again, and the DNS fails
        assert table.send(b"2", "trunk.example", 5060, socket.AF_INET, to)
        await asyncio.sleep(0.01)
        assert sent == [(b"1", ("192.0.2.7", 5060)), (b"2", ("192.0.2.7", 5060))], "the last good address"

        answers.append(RuntimeError("cannot schedule new futures after shutdown"))
        assert table.send(b"3", "other.example", 5060, socket.AF_INET, to)
        await asyncio.sleep(0.01)
        assert not table._waiting and table.send(b"4", "other.example", 5060, socket.AF_INET, to) is False
        table.stop()

    asyncio.run(main())


def test_trunk_host_names_are_resolved_together_and_keep_their_addresses_on_failure() -> None:
    asked: list[tuple[str, int, int]] = []

    async def resolve(host: str, port: int, family: int) -> list[object]:
        asked.append((host, port, family))
        if host == "down.example":
            raise OSError("Name or service not known")
        v4, v6 = ("192.0.2.7", port), ("2001:db8::7", port, 0, 0)
        return [(socket.AF_INET, 0, 0, "", v4), (socket.AF_INET6, 0, 0, "", v6)]

    hosts = {1: ("sip.carrier.example", 5060), 2: ("198.51.100.5", 5060), 3: ("down.example", 5070)}
    got = asyncio.run(names.resolve_hosts(hosts, {3: ("203.0.113.9",)}, resolve=resolve))
    assert got == {1: ("192.0.2.7", "2001:db8::7"), 3: ("203.0.113.9",)}, "an address needs no lookup"
    assert sorted(h for h, _, _ in asked) == ["down.example", "sip.carrier.example"]
    assert asyncio.run(names.resolve_hosts({3: ("down.example", 5070)}, {}, resolve=resolve)) == {}
