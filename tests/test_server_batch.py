"""The server works through the messages one loop iteration read as a batch:
in order, with one pump at the end, and a bug in one costs only that one."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from sipcore.config import Config, Listener
from sipcore.flow import Flow
from sipcore.server import Server
from sipcore.transaction import Outgoing

pytestmark = pytest.mark.asyncio

FLOW = Flow("udp", "127.0.0.1", 5061, 1)


class RecordingCore:
    """Answers every message with a 200 and logs what happens to it."""

    guard = None

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.layer = SimpleNamespace(transport_error=lambda flow, now: log.append(("closed", flow)))
        self.out: list[Outgoing] = []

    def receive(self, data: bytes, flow: Flow, now: float, now_ms: int) -> None:
        if data == b"bug":
            raise RuntimeError("a bug in the core")
        self.log.append(data)
        self.out.append(Outgoing(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", flow))

    def messages_to_send(self) -> list[Outgoing]:
        out, self.out = self.out, []
        return out

    def next_event(self) -> None:
        return None

    def next_timer(self) -> None:
        return None

    def unregister_trunks(self, now: float, now_ms: int) -> bool:
        return False

    def shutdown(self, now_ms: int) -> None:
        self.log.append("shutdown")


def make_server(log: list[Any]) -> Server:
    server = Server(Config())
    server.core = RecordingCore(log)  # type: ignore[assignment]
    server._pump = lambda now: log.append("pump")  # type: ignore[method-assign]
    return server


async def test_messages_read_in_one_iteration_are_worked_through_in_order_with_one_pump(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[Any] = []
    server = make_server(log)
    with caplog.at_level(logging.ERROR, logger="sipcore.server"):
        for data in (b"first", b"bug", b"third"):
            server.on_message(data, FLOW)
        assert log == []  # nothing is worked on while the reads go on
        await asyncio.sleep(0)
    assert log == [b"first", b"third", "pump"]
    assert "message dropped after an internal error (3 bytes)" in caplog.text
    await asyncio.sleep(0)
    assert log == [b"first", b"third", "pump"]  # one batch, one pump

    server.on_message(b"next", FLOW)
    await asyncio.sleep(0)
    assert log[3:] == [b"next", "pump"]


async def test_a_closed_connection_is_handled_after_what_it_delivered_before() -> None:
    log: list[Any] = []
    server = make_server(log)
    server.on_message(b"last words", FLOW)
    server.on_closed(FLOW)
    assert log[:3] == [b"last words", "pump", ("closed", FLOW)]
    await asyncio.sleep(0)
    assert log.count(b"last words") == 1


async def test_messages_read_just_before_stop_are_handled_before_the_calls_close() -> None:
    log: list[Any] = []
    server = Server(Config())
    server.core = RecordingCore(log)  # type: ignore[assignment]
    server.on_message(b"INVITE", FLOW)
    await server.stop()
    assert log[:2] == [b"INVITE", "shutdown"]


async def test_a_tcp_request_before_a_framing_error_is_answered_on_its_connection() -> None:
    """One read carries a good request and then garbage: the connection is
    closed for the garbage, but only after the request got its answer."""
    log: list[Any] = []
    server = Server(Config())
    server.core = RecordingCore(log)  # type: ignore[assignment]
    await server.transports.start((Listener("tcp", "127.0.0.1", 0),))
    port = server.transports.bound[0][1][1]
    good = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKa\r\nContent-Length: 0\r\n\r\n"
    bad = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: abc\r\n\r\n"
    loop = asyncio.get_running_loop()
    with socket.socket() as s:
        s.setblocking(False)
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, good + bad)
        answer = await asyncio.wait_for(loop.sock_recv(s, 65536), 2.0)
        assert answer.startswith(b"SIP/2.0 200 OK")
        assert await asyncio.wait_for(loop.sock_recv(s, 65536), 2.0) == b""  # then closed
    await asyncio.sleep(0.05)
    await server.transports.stop()
    assert [e for e in log if isinstance(e, tuple)] == [("closed", log[-1][1])]  # one close, no reconnect


class SlowWriter:
    """A writer whose final flush takes a while, recording what it was handed."""

    def __init__(self, server: Server, log: list[Any]) -> None:
        self.server, self.log = server, log

    async def stop(self) -> None:
        self.log.append(("writer stopping, still the server's", self.server.writer is self))
        await asyncio.sleep(0.1)
        self.log.append("writer stopped")


async def test_no_timer_fires_after_the_last_pump_while_the_writer_flushes() -> None:
    log: list[Any] = []
    server = Server(Config())
    core = RecordingCore(log)
    core.next_timer = lambda: server.loop.time() + 0.01  # type: ignore[method-assign]
    core.handle_timer = lambda now, now_ms: log.append("timer")  # type: ignore[attr-defined]
    server.core = core  # type: ignore[assignment]
    server.writer = SlowWriter(server, log)  # type: ignore[assignment]
    server._pump(server.loop.time())  # a timer armed, as in a running server
    await server.stop()
    assert log == ["shutdown", ("writer stopping, still the server's", True), "writer stopped"]
    assert server.writer is None and server._timer is None
    await asyncio.sleep(0.05)
    assert "timer" not in log


async def test_a_send_that_raises_costs_that_message_not_the_pump(caplog: pytest.LogCaptureFixture) -> None:
    log: list[Any] = []
    server = Server(Config())
    core = RecordingCore(log)
    core.next_timer = lambda: server.loop.time() + 60  # type: ignore[method-assign]
    server.core = core  # type: ignore[assignment]
    sent: list[Flow] = []

    def send(data: bytes, flow: Flow) -> bool:
        if flow.host == "bad":
            raise ValueError("socket family mismatch or a DNS lookup is required")
        sent.append(flow)
        return True

    server.transports.send = send  # type: ignore[method-assign]
    bad = Flow("udp", "bad", 5060, 1)
    with caplog.at_level(logging.ERROR, logger="sipcore.server"):
        for data, flow in ((b"a", FLOW), (b"b", bad), (b"c", FLOW)):
            server.on_message(data, flow)
        await asyncio.sleep(0)
    assert sent == [FLOW, FLOW], "the message after the failed one went out"
    assert server._timer is not None, "and the pump went on to arm the next timer"
    assert "cannot send to udp:bad:5060#1" in caplog.text
    server._timer.cancel()
