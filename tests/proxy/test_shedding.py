"""Load shedding in the core (``Core.shedding``, set by the edge from the
receive queues): new requests get 503 with Retry-After, the calls already up
go on.  On the in-memory network."""

from __future__ import annotations

from sipcore.message import Request, Response

from .callnet import DOMAIN, TRUNK, UA
from .test_calls import BOB, basic_call, two_phones


def _request(ua: UA, method: str, ruri: str = f"sip:{DOMAIN}") -> Request:
    """A new (out-of-dialog) request with no credentials."""
    n = next(ua.ids)
    hs = [
        ("Via", ua.via()),
        ("Max-Forwards", "70"),
        ("From", f"<sip:{ua.user}@{DOMAIN}>;tag=s{n}"),
        ("To", f"<{ruri}>"),
        ("Call-ID", f"shed-{n}"),
        ("CSeq", f"1 {method}"),
        ("Contact", ua.contact),
        ("Content-Length", "0"),
    ]
    return Request(method, ruri, hs)


def overloaded(resp: Response) -> int:
    """The Retry-After of an overload 503 (and that it is one)."""
    assert resp.status == 503 and resp.reason == "Overloaded"
    retry = int(resp.headers.get("Retry-After") or "-1")
    assert 5 <= retry <= 14, retry
    return retry


def test_a_new_call_gets_503_with_retry_after_and_nothing_downstream() -> None:
    net, alice, bob = two_phones()
    net.core.shedding = True
    inv = alice.invite_request(BOB, "c9", 1)
    alice.send(inv)
    first = alice.take(503)
    overloaded(first)
    assert not bob.inbox, "nothing reaches the callee"
    assert net.core.shed_count == 1
    alice.send(inv)  # a retransmission is absorbed by the INVITE transaction: the same 503 again
    assert alice.take(503).to_bytes() == first.to_bytes()
    assert net.core.shed_count == 1, "a retransmission is not a new request"
    alice.send(alice.ack_for(inv, first))  # absorbed hop by hop
    assert not bob.inbox and not alice.inbox and not net.legs


def test_register_and_message_are_shed_and_service_resumes_when_it_ends() -> None:
    net, alice, bob = two_phones()
    draws = iter([i / 10 for i in range(10)] + [0.99])
    net.core._random = lambda: next(draws)
    net.core.shedding = True
    retries = []
    for _ in range(10):
        alice.send(_request(alice, "REGISTER"))
        retries.append(overloaded(alice.take(503)))
    assert retries == list(range(5, 15)), "Retry-After is spread over 5-14 s"
    alice.send(_request(alice, "MESSAGE", BOB))
    overloaded(alice.take(503))
    assert not bob.inbox and net.core.shed_count == 11
    net.core.shedding = False
    alice.send(_request(alice, "REGISTER"))
    assert alice.take(401), "normal service: challenged again"
    assert net.core.shed_count == 11


def test_a_call_already_up_is_ended_normally_while_shedding() -> None:
    net, alice, bob = two_phones()
    inv, fwd, ok, call_a, call_b = basic_call(net, alice, bob)
    net.core.shedding = True
    net.advance(10)
    alice.send(alice.in_dialog(call_a, "BYE"))
    bye = bob.take("BYE")  # in-dialog (To tag): proxied, not shed
    bob.answer(bye, 200)
    assert alice.take(200)
    assert net.core.shed_count == 0
    assert {leg.end_reason for leg in net.legs.values()} == {"bye_caller"}


def test_a_ringing_call_can_still_be_cancelled_while_shedding() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite(BOB, "c2")
    assert alice.take(100)
    fwd = bob.take("INVITE")
    bob.answer(fwd, 180)
    assert alice.take(180)
    net.core.shedding = True
    alice.cancel(inv)
    assert alice.take(200), "CANCEL answered"
    assert bob.take("CANCEL"), "and sent down the branch"
    assert net.core.shed_count == 0


def test_the_second_half_of_a_digest_handshake_is_let_through() -> None:
    """Capacity goes to completing registrations and calls already challenged."""
    net, alice, bob = two_phones()
    first = alice.invite_request(BOB, "c5", 1)
    alice.send(first)
    ch = alice.take(407)
    alice.send(alice.ack_for(first, ch))
    net.core.shedding = True
    alice.send(alice.invite_request(BOB, "c5", 2, auth=alice.digest(ch, "INVITE", BOB, "Proxy-Authenticate")))
    assert alice.take(100) and bob.take("INVITE"), "the authenticated INVITE goes through"
    assert net.core.shed_count == 0
    alice.send(alice.invite_request(BOB, "c6", 1))
    overloaded(alice.take(503))


def test_cached_credentials_or_an_old_nonce_do_not_get_past_the_shedder() -> None:
    """Only the first answer (nc=1) to a nonce issued within 64*T1 is the
    second half of a handshake; a phone reusing its credentials is new work."""
    net, alice, bob = two_phones()
    first = alice.invite_request(BOB, "c7", 1)
    alice.send(first)
    ch = alice.take(407)
    alice.send(alice.ack_for(first, ch))
    cred = alice.digest(ch, "INVITE", BOB, "Proxy-Authenticate")
    net.core.shedding = True
    reused = cred.replace("nc=00000001", "nc=00000002")
    alice.send(alice.invite_request(BOB, "c8", 1, auth=reused))
    overloaded(alice.take(503))
    net.advance(33)  # past 64*T1: the challenge is no longer "just issued"
    alice.send(alice.invite_request(BOB, "c7", 2, auth=cred))
    overloaded(alice.take(503))
    assert not bob.inbox and net.core.shed_count == 2


def test_a_trunk_is_refused_without_retry_after() -> None:
    """RFC 3261 §21.5.4: a proxy given Retry-After sends that server nothing
    else for so long, the BYEs of its calls up with us included."""
    net, alice, bob = two_phones()
    carrier = net.ua("carrier", host=TRUNK.host, port=TRUNK.port)
    net.core.shedding = True
    carrier.invite("sip:15550001@192.0.2.1", "in", authenticate=False)
    resp = carrier.take(503)
    assert resp.reason == "Overloaded" and resp.headers.get("Retry-After") is None
    assert not bob.inbox
