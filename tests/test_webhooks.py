"""Webhook delivery against a real HTTP server on 127.0.0.1: exactly once when it
answers 2xx, retried with exponential backoff when it fails or is down."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sipcore.metering.limits import UsageAlert
from sipcore.store import AlreadyExists, Store
from sipcore.webhooks import WebhookError, WebhookWorker, post_json

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
MONTH = "2026-01"


class Clock:
    def __init__(self) -> None:
        self.now_ms = T0

    def __call__(self) -> int:
        return self.now_ms


class Receiver(ThreadingHTTPServer):
    """A real HTTP/1.1 server: records every POST and answers the next queued status (default 204)."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.delay_s = 0.0
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/usage?key=k1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the http.server naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        time.sleep(self.server.delay_s)
        status = self.server.statuses.pop(0) if self.server.statuses else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve(port: int = 0) -> Receiver:
    r = Receiver(port)
    threading.Thread(target=r.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return r


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = serve()
    yield r
    r.shutdown()
    r.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "sipcore.db", clock=clock)
    try:
        yield s
    finally:
        await s.close()


async def until_posted(receiver: Receiver, n: int = 1, timeout_s: float = 10.0) -> None:
    """Wait for `n` POSTs to have arrived (generous: the machine may be slow)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(receiver.requests) < n and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


async def alert_for(store: Store, url: str, pct: int = 50) -> int:
    """A tenant with a webhook and one recorded alert; the tenant's id."""
    try:
        t = await store.add_tenant("example.com", plan="voximplant-free")
    except AlreadyExists:
        t = await store.get_tenant("example.com")
    await store.set_webhook("example.com", url)
    await store.record_alerts([UsageAlert(t.id, MONTH, "mau", pct, 500, D(1000), T0)])
    return t.id


@pytest.mark.asyncio
async def test_delivered_exactly_once(store: Store, receiver: Receiver) -> None:
    await alert_for(store, receiver.url)
    worker = WebhookWorker(store, timeout_s=5)
    assert await worker.deliver_due() == 1
    assert await worker.deliver_due() == 0
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req["path"] == "/hooks/usage?key=k1"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["Host"] == f"127.0.0.1:{receiver.server_address[1]}"
    body = json.loads(req["body"])
    assert (body["event"], body["tenant"], body["metric"], body["threshold_pct"]) == (
        "usage.threshold",
        "example.com",
        "mau",
        50,
    )
    (row,) = await store.webhook_outbox()
    assert req["headers"]["X-Sipcore-Delivery"] == str(row.id)
    assert (row.attempts, row.delivered_ms, row.next_attempt_ms) == (1, T0, None)
    assert [a.webhook for a in await store.alerts()] == ["delivered"]


@pytest.mark.asyncio
async def test_a_failing_server_then_recovering_gets_it_after_a_retry(
    store: Store, receiver: Receiver, clock: Clock
) -> None:
    receiver.statuses = [500, 503]
    await alert_for(store, receiver.url)
    worker = WebhookWorker(store, backoff_ms=1000)
    assert await worker.deliver_due() == 0
    (row,) = await store.webhook_outbox()
    assert (row.attempts, row.last_error, row.next_attempt_ms) == (1, "HTTP 500", T0 + 1000)
    assert await worker.deliver_due() == 0 and len(receiver.requests) == 1, "not due yet: nothing sent"
    clock.now_ms += 1000
    assert await worker.deliver_due() == 0
    (row,) = await store.webhook_outbox()
    assert (row.attempts, row.last_error, row.next_attempt_ms) == (2, "HTTP 503", T0 + 1000 + 2000), "backoff doubles"
    clock.now_ms += 2000
    assert await worker.deliver_due() == 1
    assert len(receiver.requests) == 3 and len({r["body"] for r in receiver.requests}) == 1
    (row,) = await store.webhook_outbox()
    assert row.delivered_ms == clock.now_ms and row.attempts == 3


@pytest.mark.asyncio
async def test_server_down_is_retried_until_it_is_up(store: Store, clock: Clock) -> None:
    port = free_port()
    await alert_for(store, f"http://127.0.0.1:{port}/hook")
    worker = WebhookWorker(store, backoff_ms=500, timeout_s=2)
    assert await worker.deliver_due() == 0
    (row,) = await store.webhook_outbox()
    assert row.attempts == 1 and row.next_attempt_ms == T0 + 500
    assert row.last_error is not None and "127.0.0.1" in row.last_error
    receiver = serve(port)
    try:
        clock.now_ms += 500
        assert await worker.deliver_due() == 1
        assert len(receiver.requests) == 1
    finally:
        receiver.shutdown()
        receiver.server_close()


@pytest.mark.asyncio
async def test_given_up_after_max_attempts(store: Store, receiver: Receiver, clock: Clock) -> None:
    receiver.statuses = [500] * 10
    await alert_for(store, receiver.url)
    worker = WebhookWorker(store, backoff_ms=100, max_attempts=3)
    for _ in range(3):
        await worker.deliver_due()
        clock.now_ms += 10_000
    (row,) = await store.webhook_outbox()
    assert (row.attempts, row.next_attempt_ms, row.delivered_ms) == (3, None, None)
    assert await worker.deliver_due() == 0 and len(receiver.requests) == 3
    assert [a.webhook for a in await store.alerts()] == ["failed"]


def test_backoff_is_exponential_and_capped(tmp_path: Path) -> None:
    worker = WebhookWorker(None, backoff_ms=1000, max_backoff_ms=10_000)  # type: ignore[arg-type]
    assert [worker.retry_delay_ms(n) for n in range(1, 7)] == [1000, 2000, 4000, 8000, 10_000, 10_000]


@pytest.mark.asyncio
async def test_a_server_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(WebhookError, match="no answer within 0.2 s"):
            await post_json(f"http://127.0.0.1:{port}/", b"{}", timeout_s=0.2)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_post_json_refuses_other_schemes_and_reads_the_status(receiver: Receiver) -> None:
    with pytest.raises(WebhookError, match="http"):
        await post_json("ftp://127.0.0.1/x", b"{}")
    receiver.statuses = [418]
    assert await post_json(receiver.url, b'{"a": 1}') == 418
    assert receiver.requests[0]["body"] == b'{"a": 1}'


@pytest.mark.asyncio
async def test_the_background_worker_delivers_when_notified(store: Store, receiver: Receiver) -> None:
    worker = WebhookWorker(store, poll_s=60)
    worker.start()
    try:
        await asyncio.sleep(0.05)  # the first pass finds nothing
        await alert_for(store, receiver.url)
        worker.notify()  # never blocks; the worker wakes up now, not at the 60 s poll
        await until_posted(receiver)
        assert len(receiver.requests) == 1
        await asyncio.sleep(0.1)
        assert len(receiver.requests) == 1, "exactly once"
    finally:
        await worker.stop()
    await worker.stop()  # idempotent


@pytest.mark.asyncio
async def test_from_a_login_over_50_percent_to_the_tenants_web_server(store: Store, receiver: Receiver) -> None:
    """The whole path the server wires: guard -> record_alerts -> outbox -> POST."""
    from sipcore.config import BillingConfig
    from sipcore.metering.limits import UsageGuard
    from sipcore.rating import PlanLibrary

    t = await store.add_tenant("example.com")
    await store.set_plan("example.com", "voximplant-free", "2025-12-01")
    await store.set_webhook("example.com", receiver.url)
    plans = PlanLibrary(BillingConfig().plans_path())
    tenants = await store.guard_tenants(plans)
    guard = UsageGuard(tenants)
    for state in await store.guard_state(tenants, T0):
        guard.restore(state, T0)
    for device in range(500):
        assert guard.mau_admit(t.id, device, T0 + device) is None
    new = await store.record_alerts(guard.pop_alerts())
    assert [(a.metric, a.threshold_pct, a.webhook) for a in new] == [("mau", 50, "pending")]
    worker = WebhookWorker(store)
    assert await worker.deliver_due() == 1
    (req,) = receiver.requests
    body = json.loads(req["body"])
    assert (body["tenant"], body["metric"], body["threshold_pct"], body["value"], body["included"]) == (
        "example.com",
        "mau",
        50,
        500,
        "1000",
    )


@pytest.mark.asyncio
async def test_a_stop_lets_the_post_in_flight_record_its_answer(store: Store, receiver: Receiver) -> None:
    """The receiver has the POST when the server is told to stop: the answer
    is still recorded, so the next start does not send it again."""
    receiver.delay_s = 0.3
    await alert_for(store, receiver.url)
    worker = WebhookWorker(store, poll_s=60)
    worker.start()
    await until_posted(receiver)
    assert len(receiver.requests) == 1
    await worker.stop()
    (row,) = await store.webhook_outbox()
    assert row.delivered_ms is not None and row.next_attempt_ms is None, row
    again = WebhookWorker(store)
    assert await again.deliver_due() == 0
    assert len(receiver.requests) == 1


@pytest.mark.asyncio
async def test_a_stop_gives_up_on_a_post_that_stays_unanswered(store: Store, receiver: Receiver) -> None:
    receiver.delay_s = 2.0
    await alert_for(store, receiver.url)
    worker = WebhookWorker(store, poll_s=60, stop_grace_s=0.2)
    worker.start()
    await until_posted(receiver)
    started = asyncio.get_running_loop().time()
    await worker.stop()
    assert asyncio.get_running_loop().time() - started < 1.5
    (row,) = await store.webhook_outbox()
    assert row.delivered_ms is None and row.next_attempt_ms is not None, "still due: sent again at the next start"


@pytest.mark.asyncio
async def test_a_stop_does_not_raise_when_the_worker_died_on_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """The server's stop goes on to flush its writer and close the store."""

    class Broken:
        async def due_webhooks(self, now_ms: int) -> list[Any]:
            raise RuntimeError("a bug")

        def now_ms(self) -> int:
            return T0

    worker = WebhookWorker(Broken(), poll_s=60)  # type: ignore[arg-type]
    task = worker.start()
    for _ in range(100):
        if task.done():
            break
        await asyncio.sleep(0.01)
    assert task.done()
    await worker.stop()
    assert "stopped on an error" in caplog.text
