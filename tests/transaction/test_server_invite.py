"""Server INVITE transaction: RFC 3261 §17.2.1 Figure 7 with RFC 6026 §7.1."""

from __future__ import annotations

import pytest

from sipcore.message import make_response, parse
from sipcore.transaction import (
    AckReceived,
    RequestReceived,
    ServerInviteTransaction,
    State,
    TimerConfig,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)

from .util import T1, T2, T4, T64, TCP, UDP, events, intervals, new_layer, request, run_timers, sent


def _invite(layer, flow=UDP, now=0.0, **kw):
    req = request("INVITE", transport="TCP" if flow.reliable else "UDP", **kw)
    layer.receive_request(req, flow, now)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived)
    assert isinstance(ev.tx, ServerInviteTransaction)
    return ev.tx, req


def _ack(**kw):
    # The ACK of a non-2xx carries the INVITE's branch (§17.1.1.3).
    return request("ACK", to_tag="uas-tag", **kw)


def test_proceeding_absorbs_and_resends_provisionals():
    layer = new_layer()
    tx, req = _invite(layer)
    assert (tx.state, tx.is_invite, tx.method) == (State.PROCEEDING, True, "INVITE")

    # No 100 Trying by the layer itself; a retransmission before any response
    # has nothing to resend and is not passed up.
    layer.receive_request(request("INVITE"), UDP, 0.1)
    assert sent(layer) == [] and events(layer) == []

    layer.trying(tx, 0.2)
    (out,) = sent(layer)
    msg = parse(out.data)
    assert (msg.status, msg.reason, msg.cseq_method, msg.to_tag) == (100, "Trying", "INVITE", None)

    layer.receive_request(request("INVITE"), UDP, 0.3)
    assert [o.data for o in sent(layer)] == [out.data]

    ringing = make_response(req, 180, to_tag="uas-tag")
    layer.respond(tx, ringing, 0.4)
    assert tx.state is State.PROCEEDING and tx.last_response is ringing
    sent(layer)
    layer.receive_request(request("INVITE"), UDP, 0.5)
    assert [o.data for o in sent(layer)] == [ringing.to_bytes()]
    assert events(layer) == []
    assert layer.next_timer() is None  # no timer guards Proceeding


def test_completed_timer_g_doubles_to_t2_and_timer_h_times_out():
    layer = new_layer()
    tx, req = _invite(layer)
    busy = make_response(req, 486, to_tag="uas-tag")
    layer.respond(tx, busy, 1.0)
    assert tx.state is State.COMPLETED
    assert [o.data for o in sent(layer)] == [busy.to_bytes()]

    fired = run_timers(layer, 1000.0)
    g_times = [t for t, out, _ in fired if out]
    assert all(o.data == busy.to_bytes() and o.flow == UDP for _, out, _ in fired for o in out)
    # Timer G: T1, 2T1, 4T1, then capped at T2 until Timer H
    assert intervals(g_times, 1.0) == [T1, 2 * T1, 4 * T1, T2, T2, T2, T2, T2, T2, T2]
    last_t, last_out, last_events = fired[-1]
    assert last_t == pytest.approx(1.0 + T64) and last_out == []
    assert last_events == [TransactionTimedOut(tx), TransactionTerminated(tx)]
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_retransmitted_invite_in_completed_gets_the_final_response():
    layer = new_layer()
    tx, req = _invite(layer)
    busy = make_response(req, 486, to_tag="uas-tag")
    layer.respond(tx, busy, 0.0)
    sent(layer)
    layer.receive_request(request("INVITE"), UDP, 0.2)
    assert [o.data for o in sent(layer)] == [busy.to_bytes()]
    assert events(layer) == []


def test_ack_confirms_stops_g_and_timer_i_terminates():
    layer = new_layer()
    tx, req = _invite(layer)
    layer.respond(tx, make_response(req, 404, to_tag="uas-tag"), 0.0)
    sent(layer)
    layer.handle_timer(T1)  # one G retransmission
    assert len(sent(layer)) == 1

    layer.receive_request(_ack(), UDP, 0.7)
    assert tx.state is State.CONFIRMED
    assert events(layer) == []  # the non-2xx ACK is absorbed, never passed up
    # Confirmed absorbs ACK and INVITE retransmissions
    layer.receive_request(_ack(), UDP, 0.8)
    layer.receive_request(request("INVITE"), UDP, 0.9)
    assert sent(layer) == [] and events(layer) == []

    fired = run_timers(layer, 1000.0)
    # G and H are gone; only Timer I = T4 after the ACK
    assert [(t, out) for t, out, _ in fired] == [(pytest.approx(0.7 + T4), [])]
    assert fired[0][2] == [TransactionTerminated(tx)]


def test_2xx_goes_to_accepted_rfc6026():
    layer = new_layer()
    tx, req = _invite(layer)
    ok = make_response(req, 200, to_tag="uas-tag")
    layer.respond(tx, ok, 2.0)
    assert tx.state is State.ACCEPTED
    assert [o.data for o in sent(layer)] == [ok.to_bytes()]

    # INVITE retransmissions are absorbed: not resent (the TU retransmits the
    # 2xx), not passed up
    layer.receive_request(request("INVITE"), UDP, 2.5)
    assert sent(layer) == [] and events(layer) == []

    # 2xx retransmissions from the TU go out
    layer.respond(tx, ok, 2.5)
    assert [o.data for o in sent(layer)] == [ok.to_bytes()]
    # non-2xx from the TU in Accepted are discarded
    layer.respond(tx, make_response(req, 500), 2.6)
    assert sent(layer) == []

    # an ACK that reuses the INVITE's branch matches, and goes to the TU
    ack = request("ACK", to_tag="uas-tag")
    layer.receive_request(ack, UDP, 2.7)
    assert events(layer) == [AckReceived(ack, UDP)]
    assert tx.state is State.ACCEPTED

    # Timer L = 64*T1; no timeout reported
    fired = run_timers(layer, 1000.0)
    assert [t for t, _, _ in fired] == [pytest.approx(2.0 + T64)]
    assert fired[0][1] == [] and fired[0][2] == [TransactionTerminated(tx)]


def test_2xx_ack_with_new_branch_is_passed_up():
    layer = new_layer()
    tx, req = _invite(layer)
    layer.respond(tx, make_response(req, 200, to_tag="uas-tag"), 0.0)
    ack = request("ACK", branch="z9hG4bKnew-ack", to_tag="uas-tag")
    layer.receive_request(ack, UDP, 0.1)
    assert events(layer) == [AckReceived(ack, UDP)]
    assert tx.state is State.ACCEPTED and len(layer) == 1


def test_reliable_no_timer_g_and_timer_i_zero():
    layer = new_layer()
    tx, req = _invite(layer, flow=TCP)
    layer.respond(tx, make_response(req, 486, to_tag="uas-tag"), 0.0)
    assert len(sent(layer)) == 1
    assert layer.next_timer() == pytest.approx(T64)  # only H, no G
    layer.receive_request(_ack(transport="TCP"), TCP, 0.1)
    assert tx.state is State.TERMINATED
    assert events(layer) == [TransactionTerminated(tx)]
    assert layer.next_timer() is None


def test_reliable_timer_h_still_runs():
    layer = new_layer()
    tx, req = _invite(layer, flow=TCP)
    layer.respond(tx, make_response(req, 486, to_tag="uas-tag"), 0.0)
    sent(layer)
    fired = run_timers(layer, 1000.0)
    assert [(t, out, ev) for t, out, ev in fired] == [
        (pytest.approx(T64), [], [TransactionTimedOut(tx), TransactionTerminated(tx)])
    ]


def test_completed_discards_other_responses():
    layer = new_layer()
    tx, req = _invite(layer)
    layer.respond(tx, make_response(req, 486, to_tag="uas-tag"), 0.0)
    sent(layer)
    layer.respond(tx, make_response(req, 200, to_tag="uas-tag"), 0.1)
    assert sent(layer) == [] and tx.state is State.COMPLETED


def test_ack_in_proceeding_is_dropped():
    layer = new_layer()
    tx, _ = _invite(layer)
    layer.receive_request(_ack(), UDP, 0.1)
    assert tx.state is State.PROCEEDING and events(layer) == [] and sent(layer) == []


def test_transport_error_informs_tu_and_keeps_the_state_rfc6026():
    layer = new_layer()
    tx, req = _invite(layer, flow=TCP)
    layer.trying(tx, 0.0)
    layer.transport_error(TCP, 0.1)
    assert events(layer) == [TransportFailed(tx)]
    assert tx.state is State.PROCEEDING
    layer.respond(tx, make_response(req, 200, to_tag="x"), 0.2)
    layer.transport_error(TCP, 0.3)
    assert events(layer) == [TransportFailed(tx)]
    assert tx.state is State.ACCEPTED and len(layer) == 1


def test_custom_t1_scales_g_and_h():
    layer = new_layer(TimerConfig(t1_ms=100, t2_ms=400, t4_ms=1000))
    tx, req = _invite(layer)
    layer.respond(tx, make_response(req, 486, to_tag="uas-tag"), 0.0)
    sent(layer)
    fired = run_timers(layer, 100.0)
    g_times = [t for t, out, _ in fired if out]
    assert intervals(g_times, 0.0)[:5] == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert fired[-1][0] == pytest.approx(6.4)
    assert TransactionTimedOut(tx) in fired[-1][2]
