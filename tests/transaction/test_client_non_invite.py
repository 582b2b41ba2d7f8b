"""Client non-INVITE transaction: RFC 3261 §17.1.2, Figure 6."""

from __future__ import annotations

import pytest

from sipcore.transaction import (
    ClientNonInviteTransaction,
    ResponseReceived,
    State,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)

from .util import T1, T2, T4, T64, TCP, UDP, events, intervals, new_layer, reply, request, run_timers, sent


def _send(layer, method="OPTIONS", flow=UDP, now=0.0, **kw):
    req = request(method, branch="z9hG4bKout1", transport="TCP" if flow.reliable else "UDP", **kw)
    tx = layer.send_request(req, flow, now)
    assert isinstance(tx, ClientNonInviteTransaction)
    assert [o.data for o in sent(layer)] == [req.to_bytes()]
    return tx, req


def test_trying_timer_e_capped_at_t2_and_timer_f_times_out():
    layer = new_layer()
    tx, req = _send(layer, "REGISTER", now=3.0)
    assert (tx.state, tx.is_invite, tx.method) == (State.TRYING, False, "REGISTER")
    fired = run_timers(layer, 1000.0)
    e_times = [t for t, out, _ in fired if out]
    assert all(o.data == req.to_bytes() for _, out, _ in fired for o in out)
    # Timer E: T1, 2T1, 4T1, then T2 (§17.1.2.2: MIN(2*E, T2))
    assert intervals(e_times, 3.0) == [T1, 2 * T1, 4 * T1, T2, T2, T2, T2, T2, T2, T2]
    assert fired[-1][0] == pytest.approx(3.0 + T64)
    assert fired[-1][1] == []
    assert fired[-1][2] == [TransactionTimedOut(tx), TransactionTerminated(tx)]
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_provisional_keeps_e_running_at_t2():
    layer = new_layer()
    tx, req = _send(layer)
    layer.handle_timer(T1)  # first E at 0.5, next due at 1.5
    assert len(sent(layer)) == 1
    trying = reply(req, 100, to_tag=None)
    layer.receive_response(trying, UDP, 0.7)
    assert tx.state is State.PROCEEDING
    assert events(layer) == [ResponseReceived(tx, trying)]
    fired = run_timers(layer, 20.0)
    e_times = [t for t, out, _ in fired if out]
    # the pending E still fires at 1.5; from then on every T2
    assert e_times[:4] == [pytest.approx(1.5), pytest.approx(5.5), pytest.approx(9.5), pytest.approx(13.5)]
    # Timer F keeps guarding Proceeding
    assert layer.next_timer() == pytest.approx(21.5)
    fired = run_timers(layer, 1000.0)
    assert fired[-1][0] == pytest.approx(T64)
    assert fired[-1][2] == [TransactionTimedOut(tx), TransactionTerminated(tx)]


def test_final_response_completes_absorbs_retransmissions_and_timer_k():
    layer = new_layer()
    tx, req = _send(layer)
    ringing = reply(req, 180)
    layer.receive_response(ringing, UDP, 0.1)
    ok = reply(req, 200)
    layer.receive_response(ok, UDP, 0.2)
    assert tx.state is State.COMPLETED and tx.last_response is ok
    assert events(layer) == [ResponseReceived(tx, ringing), ResponseReceived(tx, ok)]
    layer.receive_response(reply(req, 200), UDP, 0.3)
    assert events(layer) == [] and sent(layer) == []
    fired = run_timers(layer, 1000.0)
    # E and F were cancelled: only Timer K = T4
    assert [(t, o, e) for t, o, e in fired] == [(pytest.approx(0.2 + T4), [], [TransactionTerminated(tx)])]


def test_final_response_straight_from_trying():
    layer = new_layer()
    tx, req = _send(layer, "BYE", to_tag="dlg")
    layer.receive_response(reply(req, 481), UDP, 0.1)
    assert tx.state is State.COMPLETED
    assert [type(e) for e in events(layer)] == [ResponseReceived]


def test_reliable_no_timer_e_and_timer_k_zero():
    layer = new_layer()
    tx, req = _send(layer, flow=TCP)
    assert layer.next_timer() == pytest.approx(T64)  # only F
    ok = reply(req, 200)
    layer.receive_response(ok, TCP, 0.1)
    assert events(layer) == [ResponseReceived(tx, ok), TransactionTerminated(tx)]
    assert tx.state is State.TERMINATED and layer.next_timer() is None


def test_reliable_timer_f():
    layer = new_layer()
    tx, _ = _send(layer, flow=TCP)
    fired = run_timers(layer, 1000.0)
    assert [(t, o, e) for t, o, e in fired] == [
        (pytest.approx(T64), [], [TransactionTimedOut(tx), TransactionTerminated(tx)])
    ]


@pytest.mark.parametrize("provisional", [False, True])
def test_transport_error_terminates(provisional):
    layer = new_layer()
    tx, req = _send(layer, flow=TCP)
    if provisional:
        layer.receive_response(reply(req, 100, to_tag=None), TCP, 0.1)
        events(layer)
    layer.transport_error(TCP, 0.2)
    assert events(layer) == [TransportFailed(tx), TransactionTerminated(tx)]
    assert layer.next_timer() is None


def test_transport_error_in_completed_is_ignored():
    layer = new_layer()
    tx, req = _send(layer)
    layer.receive_response(reply(req, 200), UDP, 0.1)
    events(layer)
    layer.transport_error(UDP, 0.2)
    assert events(layer) == [] and tx.state is State.COMPLETED
