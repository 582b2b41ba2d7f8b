"""The server works through the messages one loop iteration read as a batch:
in order, with one pump at the end, and a bug in one costs only that one."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from sipcore.config import Config
from sipcore.flow import Flow
from sipcore.server import Server

pytestmark = pytest.mark.asyncio

FLOW = Flow("udp", "127.0.0.1", 5061, 1)


class RecordingCore:
    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.layer = SimpleNamespace(transport_error=lambda flow, now: log.append(("closed", flow)))

    def receive(self, data: bytes, flow: Flow, now: float, now_ms: int) -> None:
        if data == b"bug":
            raise RuntimeError("a bug in the core")
        self.log.append(data)


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
