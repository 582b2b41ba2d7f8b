"""Matching: server §17.2.3 (with the RFC 2543 fallback), client §17.1.3,
CANCEL §9.2."""

from __future__ import annotations

import pytest

from sipcore.errors import LocalProtocolError
from sipcore.message import Request, make_response, parse
from sipcore.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    StrayResponse,
)

from .util import UDP, UDP2, events, new_layer, reply, request, sent


def _new_tx(layer, req, flow=UDP, now=0.0):
    layer.receive_request(req, flow, now)
    (ev,) = events(layer)
    assert isinstance(ev, RequestReceived)
    return ev.tx


# --- RFC 3261 keys -----------------------------------------------------------


def test_key_is_branch_sent_by_and_method():
    layer = new_layer()
    tx = _new_tx(layer, request("INVITE", branch="z9hG4bKk1", via_host="Client.Example.COM", via_port=5070))
    assert tx.key == ("z9hG4bKk1", "client.example.com", 5070, "INVITE")


def test_same_branch_other_sent_by_is_another_transaction():
    layer = new_layer()
    a = _new_tx(layer, request("OPTIONS", branch="z9hG4bKsame", via_host="a.example.com"))
    b = _new_tx(layer, request("OPTIONS", branch="z9hG4bKsame", via_host="b.example.com"))
    c = _new_tx(layer, request("OPTIONS", branch="z9hG4bKsame", via_host="a.example.com", via_port=5080))
    assert len({id(a), id(b), id(c)}) == 3 and len(layer) == 3


def test_sent_by_default_port_and_host_case_match():
    layer = new_layer()
    tx = _new_tx(layer, request("OPTIONS", via_host="client.example.com", via_port=None))
    layer.respond(tx, make_response(tx.request, 200), 0.0)
    sent(layer)
    # "host" and "HOST:5060" are the same sender: a retransmission, answered from the tx
    layer.receive_request(request("OPTIONS", via_host="CLIENT.example.com", via_port=5060), UDP, 0.1)
    assert events(layer) == [] and len(sent(layer)) == 1
    # TLS defaults to 5061
    t = _new_tx(layer, request("OPTIONS", transport="TLS", via_port=None, branch="z9hG4bKtls"))
    assert t.key[2] == 5061


def test_ack_maps_to_invite_and_method_is_part_of_the_key():
    layer = new_layer()
    inv = _new_tx(layer, request("INVITE"))
    cancel = _new_tx(layer, request("CANCEL"))
    assert isinstance(inv, ServerInviteTransaction) and isinstance(cancel, ServerNonInviteTransaction)
    assert cancel is not inv and cancel.key[3] == "CANCEL"
    layer.respond(inv, make_response(inv.request, 487, to_tag="t"), 0.0)
    layer.receive_request(request("ACK", to_tag="t"), UDP, 0.1)
    assert inv.state is State.CONFIRMED and events(layer) == []


def test_cancel_target():
    layer = new_layer()
    inv = _new_tx(layer, request("INVITE", via_port=None))
    assert layer.cancel_target(request("CANCEL", via_port=5060)) is inv
    assert layer.cancel_target(request("CANCEL", branch="z9hG4bKother")) is None
    assert layer.cancel_target(request("CANCEL", via_host="elsewhere.example.com")) is None
    with pytest.raises(LocalProtocolError):
        layer.cancel_target(request("BYE"))


def test_unmatched_ack_is_passed_up_and_creates_nothing():
    layer = new_layer()
    ack = request("ACK", branch="z9hG4bKack", to_tag="t")
    layer.receive_request(ack, UDP, 0.0)
    assert events(layer) == [AckReceived(ack, UDP)]
    assert len(layer) == 0 and sent(layer) == []


# --- RFC 2543 fallback (no magic cookie) -----------------------------------------

ACK_2543 = (
    "ACK sip:UserB@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP iftgw.example.com\r\n"
    "From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n"
    "To: sip:+16505552222@ss1.example.net;user=phone;tag={tag}\r\n"
    "Call-ID: inv2543.1717@ift.client.example.com\r\n"
    "CSeq: {cseq} ACK\r\n"
    "Content-Length: 0\r\n\r\n"
)
CANCEL_2543 = (
    "CANCEL sip:UserB@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP iftgw.example.com\r\n"
    "From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n"
    "To: sip:+16505552222@ss1.example.net;user=phone\r\n"
    "Call-ID: inv2543.1717@ift.client.example.com\r\n"
    "CSeq: 56 CANCEL\r\n"
    "Content-Length: 0\r\n\r\n"
)


@pytest.fixture
def inv2543(testdata) -> bytes:
    return (testdata / "rfc4475" / "inv2543.dat").read_bytes()


def _ack2543(tag="uas-1", cseq=56) -> Request:
    msg = parse(ACK_2543.format(tag=tag, cseq=cseq).encode())
    assert isinstance(msg, Request) and msg.branch is None
    return msg


def test_rfc2543_invite_retransmission_and_ack(inv2543):
    layer = new_layer()
    tx = _new_tx(layer, parse(inv2543))
    assert tx.request.branch is None and tx.key[0] == "2543"
    ringing = make_response(tx.request, 180, to_tag="uas-1")
    layer.respond(tx, ringing, 0.0)
    sent(layer)
    # the same bytes again: a retransmission (the 180 is resent, nothing goes up)
    layer.receive_request(parse(inv2543), UDP, 0.5)
    assert [o.data for o in sent(layer)] == [ringing.to_bytes()] and events(layer) == []

    layer.respond(tx, make_response(tx.request, 486, to_tag="uas-1"), 1.0)
    sent(layer)
    # an ACK whose To tag is not the one we sent, or with another CSeq, is not ours
    for other in (_ack2543(tag="someone-else"), _ack2543(cseq=57)):
        layer.receive_request(other, UDP, 1.1)
        assert events(layer) == [AckReceived(other, UDP)]
    assert tx.state is State.COMPLETED
    # the right ACK is absorbed by the transaction
    layer.receive_request(_ack2543(), UDP, 1.2)
    assert tx.state is State.CONFIRMED and events(layer) == [] and sent(layer) == []


def test_rfc2543_cancel(inv2543):
    layer = new_layer()
    inv = _new_tx(layer, parse(inv2543))
    cancel = parse(CANCEL_2543.encode())
    ctx = _new_tx(layer, cancel)
    assert ctx is not inv and ctx.method == "CANCEL"
    assert layer.cancel_target(cancel) is inv
    stray_cancel = parse(CANCEL_2543.replace("CSeq: 56", "CSeq: 99").encode())
    assert layer.cancel_target(stray_cancel) is None


def test_rfc2543_ack_in_accepted_goes_to_tu(inv2543):
    layer = new_layer()
    tx = _new_tx(layer, parse(inv2543))
    layer.respond(tx, make_response(tx.request, 200, to_tag="uas-1"), 0.0)
    ack = _ack2543()
    layer.receive_request(ack, UDP, 0.1)
    assert events(layer) == [AckReceived(ack, UDP)]
    assert tx.state is State.ACCEPTED


def test_rfc2543_reinvite_ack_matches_by_the_dialog_tag():
    layer = new_layer()
    reinvite = request("INVITE", branch=None, to_tag="dlg-1", cseq=7)
    tx = _new_tx(layer, reinvite)
    layer.respond(tx, make_response(reinvite, 488), 0.0)  # To already has the tag
    layer.receive_request(request("ACK", branch=None, to_tag="dlg-1", cseq=7), UDP, 0.1)
    assert tx.state is State.CONFIRMED and events(layer) == []


def test_rfc2543_non_invite_and_non_cookie_branch():
    layer = new_layer()
    # a branch without the magic cookie falls back to the RFC 2543 rules
    tx = _new_tx(layer, request("OPTIONS", branch="1234"))
    assert tx.key[0] == "2543"
    layer.respond(tx, make_response(tx.request, 200), 0.0)
    sent(layer)
    layer.receive_request(request("OPTIONS", branch="1234"), UDP2, 0.1)
    assert events(layer) == [] and len(sent(layer)) == 1
    # another Call-ID, CSeq or From tag is another transaction
    for kw in ({"call_id": "other@x"}, {"cseq": 2}, {"from_tag": "f2"}):
        _new_tx(layer, request("OPTIONS", branch="1234", **kw))
    assert len(layer) == 4


# --- client side: §17.1.3 ----------------------------------------------------------


def test_client_matching_by_branch_and_cseq_method():
    layer = new_layer()
    inv = layer.send_request(request("INVITE", branch="z9hG4bKcli"), UDP, 0.0)
    cancel = layer.send_request(request("CANCEL", branch="z9hG4bKcli"), UDP, 0.1)
    sent(layer)
    ok_cancel = reply(cancel.request, 200)
    terminated = reply(inv.request, 487)
    layer.receive_response(ok_cancel, UDP, 0.2)
    layer.receive_response(terminated, UDP, 0.3)
    assert events(layer) == [ResponseReceived(cancel, ok_cancel), ResponseReceived(inv, terminated)]
    assert cancel.state is State.COMPLETED and inv.state is State.COMPLETED


def test_stray_responses():
    layer = new_layer()
    tx = layer.send_request(request("OPTIONS", branch="z9hG4bKcli"), UDP, 0.0)
    strays = [
        reply(request("OPTIONS", branch="z9hG4bKunknown"), 200),
        reply(request("BYE", branch="z9hG4bKcli"), 200),  # branch matches, method does not
        reply(request("ACK", branch="z9hG4bKcli"), 200),  # an ACK never has a transaction
        reply(request("OPTIONS", branch=None), 200),
    ]
    for r in strays:
        layer.receive_response(r, UDP2, 0.1)
    assert events(layer) == [StrayResponse(r, UDP2) for r in strays]
    assert tx.state is State.TRYING
