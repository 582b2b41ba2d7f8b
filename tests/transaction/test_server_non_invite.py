"""Server non-INVITE transaction: RFC 3261 §17.2.2, Figure 8."""

from __future__ import annotations

import pytest

from sipcore.errors import LocalProtocolError
from sipcore.message import make_response, parse
from sipcore.transaction import (
    RequestReceived,
    ServerNonInviteTransaction,
    State,
    TransactionTerminated,
    TransportFailed,
)

from .util import T64, TCP, UDP, UDP2, events, new_layer, request, run_timers, sent


def _open(layer, method="OPTIONS", flow=UDP, now=0.0, **kw):
    req = request(method, **kw)
    layer.receive_request(req, flow, now)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived)
    assert ev.request is req and ev.flow == flow
    return ev.tx, req


def test_full_walk_trying_proceeding_completed_terminated():
    layer = new_layer()
    tx, req = _open(layer, now=10.0)
    assert isinstance(tx, ServerNonInviteTransaction)
    assert (tx.state, tx.method, tx.is_invite, tx.flow, tx.request) == (State.TRYING, "OPTIONS", False, UDP, req)
    assert len(layer) == 1

    # Trying: "any further request retransmissions are discarded"
    layer.receive_request(request("OPTIONS"), UDP, 10.1)
    assert sent(layer) == [] and events(layer) == []

    trying = make_response(req, 100)
    layer.respond(tx, trying, 10.2)
    assert tx.state is State.PROCEEDING
    assert [o.data for o in sent(layer)] == [trying.to_bytes()]
    assert sent(layer) == []  # drained

    # Proceeding: a retransmission gets the last provisional again
    layer.receive_request(request("OPTIONS"), UDP, 10.3)
    assert [o.data for o in sent(layer)] == [trying.to_bytes()]

    ok = make_response(req, 200, to_tag="t1")
    layer.respond(tx, ok, 10.4)
    # Completed on UDP keeps only the response bytes for Timer J (memory)
    assert tx.state is State.COMPLETED and tx.last_response is None and tx.request._headers is None
    (out,) = sent(layer)
    assert out.data == ok.to_bytes() and out.flow == UDP
    assert parse(out.data).status == 200

    # Completed: retransmissions get the final response, nothing goes up
    layer.receive_request(request("OPTIONS"), UDP2, 11.0)
    (out,) = sent(layer)
    assert out.data == ok.to_bytes() and out.flow == UDP  # back where the request came from
    assert events(layer) == []

    # Timer J = 64*T1 from entering Completed
    assert layer.next_timer() == pytest.approx(10.4 + T64)
    layer.handle_timer(10.4 + T64 - 0.001)
    assert tx.state is State.COMPLETED
    layer.handle_timer(10.4 + T64)
    assert tx.state is State.TERMINATED
    assert events(layer) == [TransactionTerminated(tx)]
    assert len(layer) == 0 and layer.next_timer() is None

    # the same request now is a new transaction
    tx2, _ = _open(layer, now=60.0)
    assert tx2 is not tx and tx2.state is State.TRYING


def test_final_response_straight_from_trying():
    layer = new_layer()
    tx, req = _open(layer, "REGISTER")
    layer.respond(tx, make_response(req, 401), 0.0)
    assert tx.state is State.COMPLETED
    assert len(sent(layer)) == 1


def test_completed_discards_later_responses_from_the_tu():
    layer = new_layer()
    tx, req = _open(layer)
    layer.respond(tx, make_response(req, 200), 0.0)
    sent(layer)
    layer.respond(tx, make_response(req, 500), 0.1)
    layer.respond(tx, make_response(req, 100), 0.1)
    assert sent(layer) == []
    assert tx.last_response is None  # released on Completed; the bytes stay for retransmissions
    layer.receive_request(request("OPTIONS"), UDP, 0.2)
    assert parse(sent(layer)[0].data).status == 200


def test_reliable_transport_timer_j_is_zero():
    layer = new_layer()
    tx, req = _open(layer, flow=TCP, transport="TCP")
    layer.respond(tx, make_response(req, 200), 1.0)
    assert tx.state is State.TERMINATED
    assert len(sent(layer)) == 1
    assert events(layer) == [TransactionTerminated(tx)]
    assert layer.next_timer() is None and len(layer) == 0


def test_no_retransmission_timer_for_server_non_invite():
    # §17.2.2: the server never retransmits on its own; only J is armed.
    layer = new_layer()
    tx, req = _open(layer)
    layer.respond(tx, make_response(req, 200), 0.0)
    sent(layer)
    fired = run_timers(layer, 100.0)
    assert [(t, out) for t, out, _ in fired] == [(T64, [])]


def test_transport_error_in_proceeding_terminates_and_informs_tu():
    layer = new_layer()
    tx, req = _open(layer, flow=TCP, transport="TCP")
    layer.respond(tx, make_response(req, 100), 0.0)
    layer.transport_error(TCP, 0.5)
    assert events(layer) == [TransportFailed(tx), TransactionTerminated(tx)]
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_transport_error_in_trying_is_ignored():
    # Figure 8: nothing was sent in Trying; the TU's response will hit the
    # transport (which applies §18.2.2) when it comes.
    layer = new_layer()
    tx, _ = _open(layer, flow=TCP, transport="TCP")
    layer.transport_error(TCP, 0.5)
    assert events(layer) == [] and tx.state is State.TRYING


def test_respond_after_termination_is_discarded():
    layer = new_layer()
    tx, req = _open(layer, flow=TCP, transport="TCP")
    layer.respond(tx, make_response(req, 200), 0.0)
    sent(layer)
    layer.respond(tx, make_response(req, 200), 0.1)
    assert sent(layer) == [] and tx.state is State.TERMINATED


@pytest.mark.parametrize("flow", [UDP, TCP])
def test_an_answer_passed_down_as_bytes_walks_the_same_states(flow):
    layer = new_layer()
    tx, req = _open(layer, "REGISTER", flow=flow, now=1.0)
    ok = make_response(req, 200, to_tag="t1").to_bytes()
    layer.respond_wire(tx, 200, ok, 1.1)
    assert [o.data for o in sent(layer)] == [ok] and tx.last_response is None
    if flow.reliable:
        assert tx.state is State.TERMINATED and len(layer) == 0  # Timer J = 0
        return
    assert tx.state is State.COMPLETED
    layer.receive_request(request("REGISTER"), UDP, 2.0)  # a retransmission: the same bytes again
    assert [o.data for o in sent(layer)] == [ok]
    layer.respond_wire(tx, 500, b"SIP/2.0 500 Late\r\n\r\n", 2.1)  # after the final answer: discarded
    assert sent(layer) == []
    run_timers(layer, 1.1 + T64)
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_respond_wire_is_not_for_invite_transactions():
    layer = new_layer()
    tx, req = _open(layer, "INVITE")
    with pytest.raises(LocalProtocolError):
        layer.respond_wire(tx, 200, b"SIP/2.0 200 OK\r\n\r\n", 0.1)
