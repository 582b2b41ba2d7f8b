"""Real sockets on 127.0.0.1: the TCP per-address cap, framing and replies by flow."""

from __future__ import annotations

import asyncio

import pytest

from sipcore.config import Listener
from sipcore.flow import Flow
from sipcore.message.limits import DEFAULT_LIMITS
from sipcore.transport.listeners import Transports

OPTIONS = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.asyncio
async def test_per_address_cap_and_echo_by_flow() -> None:
    got: list[tuple[bytes, Flow]] = []
    transports: Transports

    def handler(data: bytes, flow: Flow) -> None:
        got.append((data, flow))
        transports.send(b"pong:" + data[:7], flow)

    transports = Transports(handler, DEFAULT_LIMITS, max_tcp_connections=10, max_tcp_connections_per_ip=2)
    await transports.start((Listener("tcp", "127.0.0.1", 0),))
    port = transports.bound[0][1][1]
    try:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert len(transports.connections) == 2 and transports.per_ip == {"127.0.0.1": 2}
        third_reader = conns[2][0]
        assert await asyncio.wait_for(third_reader.read(), 2) == b""  # refused: closed at once
        reader, writer = conns[0]
        writer.write(OPTIONS[:30])
        writer.write(OPTIONS[30:])  # split anywhere: framed back into one message
        assert await asyncio.wait_for(reader.readexactly(12), 2) == b"pong:OPTIONS"
        assert got[0][0] == OPTIONS and got[0][1].transport == "tcp"
        for _, w in conns:
            w.close()
        await asyncio.sleep(0.1)
        assert transports.per_ip == {} and transports.connections == {}
    finally:
        await transports.stop()


@pytest.mark.asyncio
async def test_a_handler_bug_costs_one_message_not_the_socket() -> None:
    calls = []

    def handler(data: bytes, flow: Flow) -> None:
        calls.append(data)
        if data == b"boom":
            raise RuntimeError("a bug")
        transports.send(b"ok", flow)

    transports = Transports(handler, DEFAULT_LIMITS)
    await transports.start((Listener("udp", "127.0.0.1", 0),))
    port = transports.bound[0][1][1]
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
            received.put_nowait(data)

    tr, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        tr.sendto(b"boom")
        tr.sendto(b"fine")
        assert await asyncio.wait_for(received.get(), 2) == b"ok"
        assert calls == [b"boom", b"fine"]
    finally:
        tr.close()
        await transports.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # a trunk added by name: known by its address once open
async def test_outbound_tcp_opens_one_connection_reuses_it_and_reports_a_failed_connect(host: str) -> None:
    received: list[bytes] = []
    peers: list[object] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        while data := await reader.read(65536):
            received.append(data)

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    closed: list[Flow] = []
    transports = Transports(lambda d, f: None, DEFAULT_LIMITS, on_closed=closed.append)
    await transports.start((Listener("tcp", "127.0.0.1", 0),))
    try:
        flow = Flow("tcp", host, port, 0)  # a trunk: no connection yet
        assert transports.send(b"one;", flow) and transports.send(b"two;", flow)
        await asyncio.sleep(0.2)
        assert transports.send(b"three;", flow)
        await asyncio.sleep(0.2)
        assert b"".join(received) == b"one;two;three;"
        assert len(peers) == 1, "one connection, reused"
        server.close()
        await server.wait_closed()
        dead = Flow("tcp", host, port, 0)
        for w in peers:
            w.close()  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        assert transports.send(b"x", dead)  # queued while connecting...
        await asyncio.sleep(0.5)
        assert dead in closed, "...and the refused connect is reported like a closed flow"
    finally:
        await transports.stop()


@pytest.mark.asyncio
async def test_udp_listeners_get_the_receive_buffer_asked_and_report_their_queue() -> None:
    import socket

    transports = Transports(lambda data, flow: None, DEFAULT_LIMITS, udp_receive_buffer=1 << 20)
    await transports.start((Listener("udp", "127.0.0.1", 0),))
    try:
        sock = next(iter(transports.udp.values())).transport.get_extra_info("socket")  # type: ignore[union-attr]
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
        # forced past rmem_max as root (CAP_NET_ADMIN), else up to it
        assert granted >= min(1 << 20, rmem_max), granted
        (read,) = transports.udp_queue_readers()
        assert read() == (0, granted * 2)
    finally:
        await transports.stop()
