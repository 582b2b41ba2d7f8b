"""The layer's own contract: table bound, TU action checks, outputs, the
transition tables, transport errors per flow, the clock clamp."""

from __future__ import annotations

import dataclasses

import pytest

from sipcore.errors import LocalProtocolError
from sipcore.message import Request, make_response
from sipcore.transaction import (
    AckReceived,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Overloaded,
    RequestReceived,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    TransactionLayer,
    TransactionTerminated,
    TransportFailed,
)
from sipcore.transaction.base import check_table

from .util import TCP, UDP, UDP2, events, new_layer, reply, request, sent


def test_table_bound_produces_overloaded():
    layer = new_layer(max_transactions=2)
    a = request("OPTIONS", branch="z9hG4bK1")
    layer.receive_request(a, UDP, 0.0)
    layer.send_request(request("OPTIONS", branch="z9hG4bKout"), UDP2, 0.0)  # clients count too
    sent(layer)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived)
    tx = ev.tx

    b = request("OPTIONS", branch="z9hG4bK2")
    layer.receive_request(b, UDP, 0.1)
    assert events(layer) == [Overloaded(b, UDP)]
    assert len(layer) == 2 and sent(layer) == []

    # retransmissions of existing transactions and ACKs are still handled
    layer.respond(tx, make_response(a, 200), 0.2)
    sent(layer)
    layer.receive_request(request("OPTIONS", branch="z9hG4bK1"), UDP, 0.3)
    assert len(sent(layer)) == 1 and events(layer) == []
    ack = request("ACK", branch="z9hG4bK3", to_tag="x")
    layer.receive_request(ack, UDP, 0.3)
    assert events(layer) == [AckReceived(ack, UDP)]

    # once a transaction ends there is room again
    layer.handle_timer(100.0)
    assert TransactionTerminated(tx) in events(layer)
    layer.receive_request(b, UDP, 100.1)
    assert [type(e) for e in events(layer)] == [RequestReceived]


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request("ACK", branch="z9hG4bKa"), "ACK"),
        (request("OPTIONS", branch=None), "branch"),
        (request("OPTIONS", branch="1234"), "branch"),
        # built by a TU, not parsed (the parser refuses this mismatch)
        (Request("OPTIONS", "sip:b@x", [("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"), ("CSeq", "1 INFO")]), "CSeq"),
    ],
)
def test_send_request_rejects_tu_bugs(req, message):
    layer = new_layer()
    with pytest.raises(LocalProtocolError, match=message):
        layer.send_request(req, UDP, 0.0)
    assert len(layer) == 0 and sent(layer) == []


def test_send_request_rejects_a_branch_in_use():
    layer = new_layer()
    layer.send_request(request("OPTIONS", branch="z9hG4bKdup"), UDP, 0.0)
    with pytest.raises(LocalProtocolError, match="already used"):
        layer.send_request(request("OPTIONS", branch="z9hG4bKdup", cseq=2), UDP, 0.0)
    assert len(layer) == 1


def test_send_request_picks_the_machine():
    layer = new_layer()
    assert isinstance(layer.send_request(request("INVITE", branch="z9hG4bKi"), UDP, 0), ClientInviteTransaction)
    assert isinstance(layer.send_request(request("BYE", branch="z9hG4bKb"), UDP, 0), ClientNonInviteTransaction)
    assert (layer.client_count, layer.server_count, len(layer)) == (2, 0, 2)


def test_respond_on_a_client_transaction_is_a_bug():
    layer = new_layer()
    tx = layer.send_request(request("OPTIONS"), UDP, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.respond(tx, reply(tx.request, 200), 0.0)  # type: ignore[arg-type]


def test_make_branch_uses_the_injected_source_and_the_cookie():
    layer = TransactionLayer(new_branch=iter(["abc", "z9hG4bKdef"]).__next__)
    assert layer.make_branch() == "z9hG4bKabc"
    assert layer.make_branch() == "z9hG4bKdef"


def test_outputs_drain():
    layer = new_layer()
    assert layer.next_event() is None and layer.messages_to_send() == []
    r = request("OPTIONS")
    layer.send_stateless(make_response(r, 400), UDP)
    layer.send_stateless(r, UDP2)
    out = layer.messages_to_send()
    assert [o.flow for o in out] == [UDP, UDP2]
    assert out[0].data.startswith(b"SIP/2.0 400 Bad Request\r\n") and out[1].data == r.to_bytes()
    assert layer.messages_to_send() == []


def test_events_are_frozen():
    layer = new_layer()
    layer.receive_request(request("OPTIONS"), UDP, 0.0)
    ev = layer.next_event()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.flow = UDP2  # type: ignore[union-attr,misc]


@pytest.mark.parametrize(
    ("cls", "state"),
    [
        (ServerNonInviteTransaction, State.CONFIRMED),
        (ServerNonInviteTransaction, State.TERMINATED),  # Trying -> Terminated is not in Figure 8
        (ServerInviteTransaction, State.CONFIRMED),  # Proceeding -> Confirmed skips Completed
        (ClientInviteTransaction, State.CONFIRMED),
        (ClientNonInviteTransaction, State.ACCEPTED),
    ],
)
def test_set_state_refuses_moves_outside_the_table(cls, state):
    tx = cls(("k",), request(), UDP)
    initial = tx.state
    with pytest.raises(LocalProtocolError, match="illegal transition"):
        tx._set_state(state)
    assert tx.state is initial


def test_tables_match_the_figures():
    assert ServerInviteTransaction.INITIAL is State.PROCEEDING
    assert ServerNonInviteTransaction.INITIAL is State.TRYING
    assert ClientInviteTransaction.INITIAL is State.CALLING
    assert ClientNonInviteTransaction.INITIAL is State.TRYING
    assert State.ACCEPTED in ServerInviteTransaction.TRANSITIONS[State.PROCEEDING]
    assert State.ACCEPTED in ClientInviteTransaction.TRANSITIONS[State.CALLING]
    assert State.CONFIRMED in ServerInviteTransaction.TRANSITIONS[State.COMPLETED]
    for cls in (ServerInviteTransaction, ServerNonInviteTransaction, ClientInviteTransaction):
        assert cls.TRANSITIONS[State.TERMINATED] == frozenset()

    class Broken(ServerNonInviteTransaction):
        __slots__ = ()
        TRANSITIONS = {State.TRYING: frozenset({State.COMPLETED}), State.TERMINATED: frozenset()}

    with pytest.raises(LocalProtocolError, match="missing"):
        check_table(Broken)


def test_transport_error_only_touches_that_flow():
    layer = new_layer()
    on_tcp = layer.send_request(request("OPTIONS", branch="z9hG4bKa", transport="TCP"), TCP, 0.0)
    on_udp = layer.send_request(request("OPTIONS", branch="z9hG4bKb"), UDP, 0.0)
    layer.receive_request(request("INVITE", transport="TCP"), TCP, 0.0)
    (ev,) = events(layer)
    server_inv = ev.tx
    layer.trying(server_inv, 0.0)
    layer.transport_error(TCP, 0.1)
    assert events(layer) == [TransportFailed(on_tcp), TransactionTerminated(on_tcp), TransportFailed(server_inv)]
    assert on_udp.state is State.TRYING
    layer.transport_error(TCP._replace(conn_id=99), 0.2)  # another connection to the same peer
    assert events(layer) == []


def test_time_never_runs_backwards():
    # A caller passing an older `now` must not make a timer fire early or
    # break the FIFO order of the timer queues.
    layer = new_layer()
    layer.send_request(request("OPTIONS", branch="z9hG4bKa"), UDP, 10.0)
    layer.send_request(request("OPTIONS", branch="z9hG4bKb"), UDP, 5.0)  # clamped to 10.0
    assert layer.next_timer() == pytest.approx(10.5)
    layer.handle_timer(10.5)
    assert len([o for o in sent(layer) if o.data.startswith(b"OPTIONS")]) == 4  # 2 sends + 2 retransmissions


@pytest.mark.parametrize("branch", ["z9hG4bKhas1", None, "rfc2543-branch"])
def test_has_server_transaction_matches_as_receive_request_does(branch):
    layer = new_layer()
    req = request("REGISTER", branch=branch, ruri="sip:example.com")
    assert not layer.has_server_transaction(req)
    layer.receive_request(req, UDP, 0.0)
    assert layer.has_server_transaction(request("REGISTER", branch=branch, ruri="sip:example.com", via_port=None))
    other = "z9hG4bKhas2" if branch and branch.startswith("z9hG4bK") else branch  # 2543: CSeq tells them apart
    assert not layer.has_server_transaction(request("REGISTER", branch=other, ruri="sip:example.com", cseq=2))
    assert not layer.has_server_transaction(request("OPTIONS", branch=branch, ruri="sip:example.com"))
