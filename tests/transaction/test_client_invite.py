"""Client INVITE transaction: RFC 3261 §17.1.1 Figure 5 with RFC 6026 §7.2."""

from __future__ import annotations

import pytest

from sipcore.message import Request, parse
from sipcore.transaction import (
    ClientInviteTransaction,
    ResponseReceived,
    State,
    StrayResponse,
    TimerConfig,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)

from .util import T1, T64, TCP, UDP, events, intervals, new_layer, reply, request, run_timers, sent

ROUTES = ("<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>")


def _send(layer, flow=UDP, now=0.0, **kw):
    # As a proxy forwards it: our Via on top of the caller's.
    kw.setdefault("branch", "z9hG4bKproxy1")
    kw.setdefault("via_host", "proxy.example.net")
    kw.setdefault("more_vias", ["SIP/2.0/UDP client.example.com:5060;branch=z9hG4bKc1"])
    req = request("INVITE", transport="TCP" if flow.reliable else "UDP", routes=ROUTES, **kw)
    tx = layer.send_request(req, flow, now)
    assert isinstance(tx, ClientInviteTransaction)
    (out,) = sent(layer)
    assert out.data == req.to_bytes() and out.flow == flow
    return tx, req


def test_calling_timer_a_doubles_uncapped_and_timer_b_times_out():
    layer = new_layer()
    tx, req = _send(layer, now=5.0)
    assert (tx.state, tx.is_invite, tx.key) == (State.CALLING, True, ("z9hG4bKproxy1", "INVITE"))
    fired = run_timers(layer, 1000.0)
    a_times = [t for t, out, _ in fired if out]
    assert all(o.data == req.to_bytes() and o.flow == UDP for _, out, _ in fired for o in out)
    # Timer A: T1, 2T1, 4T1 ... not capped by T2 (§17.1.1.2), until Timer B
    assert intervals(a_times, 5.0) == [T1, 2 * T1, 4 * T1, 8 * T1, 16 * T1, 32 * T1]
    assert fired[-1][0] == pytest.approx(5.0 + T64)
    assert fired[-1][2] == [TransactionTimedOut(tx), TransactionTerminated(tx)]
    assert tx.state is State.TERMINATED and len(layer) == 0
    # a late response now matches nothing
    late = reply(req, 180)
    layer.receive_response(late, UDP, 40.0)
    assert events(layer) == [StrayResponse(late, UDP)]


def test_provisional_stops_a_and_b_then_non_2xx_is_acked():
    layer = new_layer()
    tx, req = _send(layer)
    layer.handle_timer(T1)
    assert len(sent(layer)) == 1  # one A retransmission

    trying = reply(req, 100, to_tag=None)
    layer.receive_response(trying, UDP, 0.6)
    assert tx.state is State.PROCEEDING
    assert events(layer) == [ResponseReceived(tx, trying)]
    assert layer.next_timer() is None  # §17.1.1.2: no retransmission, no Timer B in Proceeding

    ringing = reply(req, 180)
    layer.receive_response(ringing, UDP, 1.0)
    assert events(layer) == [ResponseReceived(tx, ringing)] and tx.last_response is ringing

    busy = reply(req, 486)
    layer.receive_response(busy, UDP, 2.0)
    assert tx.state is State.COMPLETED
    assert events(layer) == [ResponseReceived(tx, busy)]
    (out,) = sent(layer)
    assert out.flow == UDP  # same address, port and transport as the INVITE
    ack = parse(out.data)
    assert isinstance(ack, Request)
    # §17.1.1.3
    assert (ack.method, ack.ruri) == ("ACK", req.ruri)
    assert ack.headers.get_all("Via") == ["SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bKproxy1"]
    assert ack.branch == "z9hG4bKproxy1"
    assert ack.headers.get("CSeq") == "1 ACK" and (ack.cseq, ack.cseq_method) == (1, "ACK")
    assert ack.headers.get("From") == req.headers.get("From")
    assert ack.headers.get("Call-ID") == req.headers.get("Call-ID")
    assert ack.headers.get("To") == busy.headers.get("To") and ack.to_tag == "uas-tag"
    assert ack.headers.get_all("Route") == list(ROUTES)
    assert ack.headers.get("Max-Forwards") == "69"
    assert ack.headers.get("Content-Length") == "0" and ack.body == b""
    assert tx.ack == out.data

    # a retransmitted final response re-triggers the ACK and is not passed up
    layer.receive_response(reply(req, 486), UDP, 2.5)
    assert [o.data for o in sent(layer)] == [out.data]
    assert events(layer) == []

    # Timer D = 32 s on UDP
    fired = run_timers(layer, 1000.0)
    assert [(t, o, e) for t, o, e in fired] == [(pytest.approx(2.0 + 32.0), [], [TransactionTerminated(tx)])]


def test_final_non_2xx_straight_from_calling():
    layer = new_layer()
    tx, req = _send(layer)
    layer.receive_response(reply(req, 503), UDP, 0.2)
    assert tx.state is State.COMPLETED
    assert parse(sent(layer)[0].data).method == "ACK"
    # A and B were cancelled; only D remains
    assert layer.next_timer() == pytest.approx(0.2 + 32.0)


def test_2xx_goes_to_accepted_and_retransmissions_go_up():
    layer = new_layer()
    tx, req = _send(layer)
    ok = reply(req, 200)
    layer.receive_response(ok, UDP, 1.0)
    assert tx.state is State.ACCEPTED
    assert events(layer) == [ResponseReceived(tx, ok)]
    assert sent(layer) == []  # the layer never ACKs a 2xx: the TU does

    again = reply(req, 200)
    layer.receive_response(again, UDP, 1.5)
    other_fork = reply(req, 200, to_tag="fork-2")
    layer.receive_response(other_fork, UDP, 1.6)
    assert events(layer) == [ResponseReceived(tx, again), ResponseReceived(tx, other_fork)]
    # provisional and non-2xx in Accepted are absorbed
    layer.receive_response(reply(req, 180), UDP, 1.7)
    layer.receive_response(reply(req, 486), UDP, 1.7)
    assert events(layer) == [] and sent(layer) == []

    # the TU sends the 2xx ACK statelessly
    ack = request("ACK", branch="z9hG4bKack2xx", to_tag="uas-tag")
    layer.send_stateless(ack, UDP)
    assert [o.data for o in sent(layer)] == [ack.to_bytes()]

    # Timer M = 64*T1
    fired = run_timers(layer, 1000.0)
    assert [(t, e) for t, _, e in fired] == [(pytest.approx(1.0 + T64), [TransactionTerminated(tx)])]


def test_2xx_after_a_non_2xx_is_passed_up():
    # §16.7 step 5: a proxy forwards any 2xx to an INVITE, even after a final.
    layer = new_layer()
    tx, req = _send(layer)
    layer.receive_response(reply(req, 600), UDP, 0.1)
    events(layer)
    sent(layer)
    late_ok = reply(req, 200, to_tag="fork-2")
    layer.receive_response(late_ok, UDP, 0.2)
    assert events(layer) == [ResponseReceived(tx, late_ok)]
    assert sent(layer) == [] and tx.state is State.COMPLETED


def test_reliable_no_timer_a_and_timer_d_zero():
    layer = new_layer()
    tx, req = _send(layer, flow=TCP)
    assert layer.next_timer() == pytest.approx(T64)  # Timer B only
    busy = reply(req, 486)
    layer.receive_response(busy, TCP, 1.0)
    (out,) = sent(layer)
    assert parse(out.data).method == "ACK" and out.flow == TCP
    assert events(layer) == [ResponseReceived(tx, busy), TransactionTerminated(tx)]
    assert tx.state is State.TERMINATED and layer.next_timer() is None


def test_reliable_timer_b():
    layer = new_layer()
    tx, _ = _send(layer, flow=TCP)
    fired = run_timers(layer, 1000.0)
    assert [(t, o, e) for t, o, e in fired] == [
        (pytest.approx(T64), [], [TransactionTimedOut(tx), TransactionTerminated(tx)])
    ]


def test_timer_d_covers_a_raised_t1():
    # Timer D is "at least 32 seconds"; with T1 = 1 s the server's Timer H is 64 s.
    layer = new_layer(TimerConfig(t1_ms=1000, t2_ms=4000, t4_ms=5000))
    tx, req = _send(layer)
    layer.receive_response(reply(req, 486), UDP, 0.0)
    assert layer.next_timer() == pytest.approx(64.0)


@pytest.mark.parametrize("state_setup", ["calling", "proceeding", "completed"])
def test_transport_error_terminates(state_setup):
    layer = new_layer()
    tx, req = _send(layer)
    if state_setup == "proceeding":
        layer.receive_response(reply(req, 180), UDP, 0.1)
    elif state_setup == "completed":
        layer.receive_response(reply(req, 486), UDP, 0.1)
    events(layer)
    layer.transport_error(UDP, 0.2)
    assert events(layer) == [TransportFailed(tx), TransactionTerminated(tx)]
    assert tx.state is State.TERMINATED and layer.next_timer() is None


def test_transport_error_in_accepted_is_left_to_timer_m():
    layer = new_layer()
    tx, req = _send(layer)
    layer.receive_response(reply(req, 200), UDP, 0.1)
    events(layer)
    layer.transport_error(UDP, 0.2)
    assert events(layer) == [] and tx.state is State.ACCEPTED
