"""The timer store (per-duration FIFO queues, lazy cancellation), the timer
configuration, and the scale the server needs."""

from __future__ import annotations

import time

import pytest

from sipcore.errors import ConfigError
from sipcore.flow import Flow
from sipcore.message import parse
from sipcore.transaction import RequestReceived, State, TimerConfig, TransactionLayer, TransactionTerminated
from sipcore.transaction.timers import TimerQueues

from .util import T64, UDP, Ids, request


class FakeTx:
    """Stands in for a transaction: the queues only store and hand it back."""

    def __init__(self, name: str) -> None:
        self.name = name


def _drain(q: TimerQueues, now: float) -> list[tuple[str, str]]:
    return [(tx.name, letter) for tx, letter in q.due(now)]  # type: ignore[attr-defined]


def test_due_merges_queues_in_deadline_order():
    q = TimerQueues()
    a, b, c = FakeTx("a"), FakeTx("b"), FakeTx("c")
    q.arm(a, "F", 32.0, 0.0)  # 32
    q.arm(b, "E", 0.5, 0.0)  # 0.5
    q.arm(c, "K", 5.0, 0.0)  # 5
    q.arm(a, "E", 0.5, 1.0)  # 1.5
    q.arm(b, "K", 5.0, 1.0)  # 6
    assert q.next_deadline() == 0.5
    assert _drain(q, 5.0) == [("b", "E"), ("a", "E"), ("c", "K")]
    assert q.next_deadline() == 6.0
    assert _drain(q, 100.0) == [("b", "K"), ("a", "F")]
    assert q.next_deadline() is None and q.pending() == 0


def test_nothing_fires_before_its_deadline():
    q = TimerQueues()
    q.arm(FakeTx("a"), "J", 32.0, 0.0)
    assert _drain(q, 31.999) == []
    assert _drain(q, 32.0) == [("a", "J")]


def test_cancelled_entries_are_skipped_and_cleared_from_the_heads():
    q = TimerQueues()
    e1 = q.arm(FakeTx("a"), "F", 32.0, 0.0)
    q.arm(FakeTx("b"), "F", 32.0, 1.0)
    e3 = q.arm(FakeTx("c"), "E", 0.5, 0.0)
    e1.tx = None  # lazy cancel, as Transaction._cancel_timers does
    e3.tx = None
    assert q.pending() == 3
    assert q.next_deadline() == 33.0  # the cancelled heads are not reported
    assert q.pending() == 1  # ... and were dropped
    assert _drain(q, 100.0) == [("b", "F")]


def test_fired_entries_are_detached():
    q = TimerQueues()
    e = q.arm(FakeTx("a"), "K", 5.0, 0.0)
    assert _drain(q, 5.0) == [("a", "K")]
    assert e.tx is None  # a fired entry holds no reference to its transaction


def test_timers_armed_while_firing_wait_for_their_own_deadline():
    q = TimerQueues()
    a = FakeTx("a")
    q.arm(a, "E", 0.5, 0.0)
    seen = []
    for tx, letter in q.due(10.0):
        seen.append(letter)
        q.arm(tx, "E", 0.5, 10.0)  # re-arm from `now`, like a retransmission timer
    assert seen == ["E"]
    assert q.next_deadline() == 10.5


def test_timer_config_defaults_and_validation():
    c = TimerConfig()
    assert (c.t1_ms, c.t2_ms, c.t4_ms) == (500, 4000, 5000)
    assert (c.t1, c.t2, c.t4) == (0.5, 4.0, 5.0)
    for bad in ({"t1_ms": 0}, {"t1_ms": 500, "t2_ms": 100}, {"t4_ms": -1}):
        with pytest.raises(ConfigError):
            TimerConfig(**bad)


def test_cancelled_timer_does_not_wake_the_edge():
    # A non-INVITE client transaction answered at once leaves a cancelled
    # Timer F behind; next_timer must report Timer K, not the dead F.
    layer = TransactionLayer(new_branch=Ids())
    req = request("OPTIONS", branch="z9hG4bKx")
    layer.send_request(req, UDP, 0.0)
    resp = parse(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP client.example.com:5060;branch=z9hG4bKx\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    layer.receive_response(resp, UDP, 0.1)  # type: ignore[arg-type]
    assert layer.next_timer() == pytest.approx(5.1)
    layer.handle_timer(5.1)
    assert layer.next_timer() is None and len(layer) == 0


# --- scale ---------------------------------------------------------------------

N = 50_000


def _messages(n: int) -> tuple[list, list]:
    reqs, resps = [], []
    for i in range(n):
        via = f"SIP/2.0/UDP 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:5060;branch=z9hG4bK{i}"
        common = f"From: <sip:a@x>;tag={i}\r\nCall-ID: {i}@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        reqs.append(parse(f"OPTIONS sip:b@x SIP/2.0\r\nVia: {via}\r\nTo: <sip:b@x>\r\n{common}".encode()))
        resps.append(parse(f"SIP/2.0 200 OK\r\nVia: {via}\r\nTo: <sip:b@x>;tag=s\r\n{common}".encode()))
    return reqs, resps


def test_scale_50k_server_non_invite_transactions_expire_fast():
    reqs, resps = _messages(N)
    layer = TransactionLayer(new_branch=Ids())
    flows = [Flow("udp", r.via_host, 5060) for r in reqs]

    t0 = time.perf_counter()
    for req, flow in zip(reqs, flows, strict=True):
        layer.receive_request(req, flow, 1.0)
    txs = []
    while (ev := layer.next_event()) is not None:
        assert isinstance(ev, RequestReceived)
        txs.append(ev.tx)
    for tx, resp in zip(txs, resps, strict=True):
        layer.respond(tx, resp, 2.0)
    created = time.perf_counter() - t0
    assert len(layer) == N and len(layer.messages_to_send()) == N
    assert all(tx.state is State.COMPLETED for tx in txs)
    assert layer.next_timer() == pytest.approx(2.0 + T64)

    layer.handle_timer(2.0 + T64 - 0.001)
    assert len(layer) == N  # Timer J is exactly 64*T1

    t1 = time.perf_counter()
    layer.handle_timer(2.0 + T64)
    expired = time.perf_counter() - t1

    assert len(layer) == 0 and layer.next_timer() is None
    assert all(tx.state is State.TERMINATED for tx in txs)
    # nothing left behind: no per-flow index entries, no queued timer entries
    assert not layer._by_flow and layer._queues.pending() == 0
    terminated = 0
    while (ev := layer.next_event()) is not None:
        assert isinstance(ev, TransactionTerminated)
        terminated += 1
    assert terminated == N
    # A guard against quadratic expiry, not a benchmark (bench/ has those):
    # measured ~0.15 s for the expiry and ~0.6 s for create+respond on the dev
    # box, whose speed swings 2.5x; quadratic work on 50k would take minutes.
    assert expired < 3.0, f"expiring {N} transactions took {expired:.3f}s"
    assert created + expired < 12.0, f"create+respond+expire took {created + expired:.3f}s"
