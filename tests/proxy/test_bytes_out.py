"""signaling.bytes_out: the bytes the core sends to a tenant's registered devices and trunks."""

from __future__ import annotations

from sipcore.message import Request
from sipcore.metering.limits import TenantPolicy, UsageGuard
from sipcore.metering.sent import BYTES_OUT
from sipcore.proxy.calls import CounterRecorded
from sipcore.rating import parse_plan

from .callnet import DOMAIN, T0_MS, TRUNK, Net
from .test_calls import _message, basic_call, two_phones

ALICE_AT, BOB_AT, TRUNK_AT = ("203.0.113.7", 40000), ("203.0.113.8", 40002), (TRUNK.host, TRUNK.port)


def counted(net: Net) -> list[CounterRecorded]:
    return [e for e in net.events if isinstance(e, CounterRecorded) and e.metric == BYTES_OUT]


def total(net: Net) -> int:
    return sum(e.delta for e in counted(net))


def test_a_call_between_two_registered_phones_counts_every_byte_sent_to_them() -> None:
    net, alice, bob = two_phones()
    before, sent_before = total(net), dict(net.sent)
    _, _, _, call_a, _ = basic_call(net, alice, bob)
    net.advance(3)
    alice.send(alice.in_dialog(call_a, "BYE"))
    bob.answer(bob.take("BYE"), 200)
    assert alice.take(200)
    to_phones = sum(net.sent[a] - sent_before[a] for a in (ALICE_AT, BOB_AT))
    assert to_phones > 2000, "INVITE, 100, 180, 200, ACK, BYE and 200 went out"
    assert total(net) - before == to_phones
    assert {(e.tenant_id, e.month) for e in counted(net)} == {(1, "2026-05")}  # T0_MS is in May 2026


def test_a_challenge_to_a_phone_that_has_not_registered_bills_nobody() -> None:
    net = Net()
    carol = net.ua("carol", "c-pw", "203.0.113.9", 40004)
    hs = [
        ("Via", carol.via()),
        ("From", f"<sip:carol@{DOMAIN}>;tag=x"),
        ("To", f"<sip:carol@{DOMAIN}>"),
        ("Call-ID", "stranger"),
        ("CSeq", "1 REGISTER"),
        ("Max-Forwards", "70"),
        ("Contact", carol.contact),
        ("Content-Length", "0"),
    ]
    for _ in range(3):  # whoever claims to be carol cannot run up her tenant's bill
        carol.send(Request("REGISTER", f"sip:{DOMAIN}", hs))
        assert carol.take(401)
    assert net.sent[("203.0.113.9", 40004)] > 0 and counted(net) == []


def test_the_200_that_creates_a_binding_is_counted_and_the_401_before_it_is_not() -> None:
    net = Net()
    alice = net.ua("alice", "a-pw", *ALICE_AT)
    alice.register()
    (event,) = counted(net)
    assert 0 < event.delta < net.sent[ALICE_AT], "only the 200 (the 401 went before the binding)"
    assert event.delta + 300 > net.sent[ALICE_AT] - event.delta, "the 401 is about as long as the 200"


def test_bytes_to_a_trunk_are_its_tenants() -> None:
    net, alice, bob = two_phones()
    before, sent_before = total(net), dict(net.sent)
    carrier = net.ua("carrier", "", *TRUNK_AT)
    inv = alice.invite(f"sip:15551234567@{DOMAIN}", "out")
    ok = carrier.answer(carrier.take("INVITE"), 200)
    call = alice.confirm(inv, alice.take(200))
    assert carrier.take("ACK") and ok is not None
    alice.send(alice.in_dialog(call, "BYE"))
    carrier.answer(carrier.take("BYE"), 200)
    to_trunk = net.sent[TRUNK_AT]
    to_alice = net.sent[ALICE_AT] - sent_before[ALICE_AT]
    assert to_trunk > 1000 and total(net) - before == to_trunk + to_alice


def test_a_plan_with_included_bytes_alerts_on_them() -> None:
    net = Net()
    plan = parse_plan(
        'name = "bw"\ncurrency = "USD"\n[metrics."signaling.bytes_out"]\nincluded = 1000\nunit_price = "0.01"\n',
        "bw.toml",
    )
    guard = net.core.guard = UsageGuard({1: TenantPolicy(plan)})
    alice = net.ua("alice", "a-pw", *ALICE_AT)
    bob = net.ua("bob", "b-pw", *BOB_AT)
    alice.register()
    bob.register()
    assert guard.used(1, BYTES_OUT, T0_MS) == total(net) > 0
    for n in range(2):  # a 407 to alice and the MESSAGE to bob: about 1000 bytes each time
        _message(alice, n)
    assert guard.used(1, BYTES_OUT, T0_MS) == total(net) > 1000
    alerts = [(a.metric, a.threshold_pct) for a in guard.pop_alerts()]
    assert alerts == [(BYTES_OUT, 50), (BYTES_OUT, 75), (BYTES_OUT, 100)]
