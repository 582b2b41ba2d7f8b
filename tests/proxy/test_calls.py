"""Call flows through the proxy on an in-memory network (RFC 3261 §16), with legs."""

from __future__ import annotations

from sipcore.config import Config, ProxyConfig
from sipcore.flow import Flow
from sipcore.message import Request
from sipcore.proxy.calls import CounterRecorded
from sipcore.proxy.directory import TrunkInfo

from .callnet import AUDIO, DOMAIN, G722_ONLY, T0_MS, VIDEO, Net, make_core

BOB = f"sip:bob@{DOMAIN}"


def two_phones(net: Net | None = None) -> tuple[Net, object, object]:
    net = net or Net()
    alice = net.ua("alice", "a-pw", "203.0.113.7", 40000)
    bob = net.ua("bob", "b-pw", "203.0.113.8", 40002)
    alice.register()
    bob.register()
    net.legs.clear()
    return net, alice, bob


def basic_call(net: Net, alice, bob, call_id: str = "c1"):  # type: ignore[no-untyped-def]
    inv = alice.invite(BOB, call_id)
    assert alice.take(100)
    fwd = bob.take("INVITE")
    bob.answer(fwd, 180)
    assert alice.take(180)
    ok_b = bob.answer(fwd, 200, sdp=AUDIO)
    ok = alice.take(200)
    call_a = alice.confirm(inv, ok)
    bob.take("ACK")
    return inv, fwd, ok, call_a, bob.callee_dialog(fwd, ok_b)


def legs(net: Net) -> list:
    return sorted(net.legs.values(), key=lambda r: r.direction)


def test_basic_call_goes_over_the_registered_flow_and_makes_two_legs() -> None:
    net, alice, bob = two_phones()
    inv, fwd, ok, call_a, call_b = basic_call(net, alice, bob)
    # to bob's flow (NAT), to his Contact URI, with our Via and Record-Route, MF-1
    assert fwd.ruri == "sip:bob@10.0.0.2:5060"
    assert fwd.max_forwards == 69
    assert fwd.vias[0].host == "192.0.2.1" and len(fwd.vias) == 2
    assert "received=203.0.113.7" in fwd.headers.get_all("Via")[1]
    assert ";fl=" in (fwd.headers.get("Record-Route") or "")
    assert fwd.headers.get("Proxy-Authorization") is None, "credentials are not passed downstream"
    assert len(ok.vias) == 1, "our Via is removed from the response"
    net.advance(30)
    alice.send(alice.in_dialog(call_a, "BYE"))
    bye = bob.take("BYE")
    assert not bye.headers.get("Route"), "our own Route is consumed"
    bob.answer(bye, 200)
    assert alice.take(200)
    o, t = legs(net)
    assert (o.direction, o.endpoint_id, t.direction, t.endpoint_id) == ("originating", 10, "terminating", 11)
    for leg in (o, t):
        assert leg.voice_ms == 30_000 and leg.video_ms == 0 and leg.end_reason == "bye_caller"
        assert leg.final_status == 200 and leg.codecs_local and leg.codecs_remote
    assert o.leg_id != t.leg_id


def test_bye_from_the_callee() -> None:
    net, alice, bob = two_phones()
    inv, fwd, ok, call_a, call_b = basic_call(net, alice, bob)
    net.advance(5)
    bob.send(bob.in_dialog(call_b, "BYE"))
    bye = alice.take("BYE")
    assert bye.ruri == "sip:alice@10.0.0.0:5060"
    alice.answer(bye, 200)
    assert bob.take(200)
    assert {leg.end_reason for leg in net.legs.values()} == {"bye_callee"}
    assert {leg.voice_ms for leg in net.legs.values()} == {5000}


def test_busy_is_forwarded_and_recorded_as_unanswered_legs() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite(BOB, "busy")
    fwd = bob.take("INVITE")
    bob.answer(fwd, 486)
    assert bob.take("ACK").cseq == fwd.cseq, "the non-2xx ACK is generated hop by hop"
    r = alice.take(486)
    alice.send(alice.ack_for(inv, r))
    assert not bob.inbox, "alice's ACK of the 486 is absorbed"
    assert {(leg.final_status, leg.end_reason, leg.duration_ms) for leg in net.legs.values()} == {(486, "rejected", 0)}
    assert len(net.legs) == 2


def test_no_answer_cancel() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite(BOB, "cx")
    fwd = bob.take("INVITE")
    bob.answer(fwd, 180)
    alice.take(180)
    alice.cancel(inv)
    assert alice.take(200).cseq_method == "CANCEL"
    cancel = bob.take("CANCEL")
    assert cancel.branch == fwd.branch
    bob.answer(cancel, 200)
    bob.answer(fwd, 487)
    r = alice.take(487)
    assert r.cseq_method == "INVITE"
    assert {leg.end_reason for leg in net.legs.values()} == {"cancel"}


def test_cancel_200_race_the_answer_wins() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite(BOB, "race")
    fwd = bob.take("INVITE")
    bob.answer(fwd, 180)
    bob.answer(fwd, 200, sdp=AUDIO)  # answered while alice's CANCEL is on its way
    ok = alice.take(200)
    alice.cancel(inv)
    assert alice.take(200).cseq_method == "CANCEL"
    assert not [m for m in bob.inbox if isinstance(m, Request) and m.method == "CANCEL"]
    call = alice.confirm(inv, ok)
    bob.take("ACK")
    net.advance(2)
    alice.send(alice.in_dialog(call, "BYE"))
    bob.answer(bob.take("BYE"), 200)
    assert {leg.voice_ms for leg in net.legs.values()} == {2000}


def test_forking_one_answer_cancels_the_other_and_meters_one_pair() -> None:
    net = Net()
    alice = net.ua("alice", "a-pw", "203.0.113.7", 40000)
    desk = net.ua("bob", "b-pw", "203.0.113.8", 40002)
    mobile = net.ua("bob", "b-pw", "203.0.113.9", 40004)
    alice.register()
    desk.register()
    mobile.register()
    inv = alice.invite(BOB, "fork")
    f1, f2 = desk.take("INVITE"), mobile.take("INVITE")
    assert f1.branch != f2.branch
    desk.answer(f1, 180)
    mobile.answer(f2, 180)
    mobile.answer(f2, 200, tag="m", sdp=AUDIO)
    ok = alice.take(200)
    assert "tag=m" in (ok.headers.get("To") or "")
    c = desk.take("CANCEL")
    desk.answer(c, 200)
    desk.answer(f1, 487)
    assert not [s for s in alice.statuses() if s == 487], "the 487 of a cancelled branch is not forwarded after a 2xx"
    alice.confirm(inv, ok)
    assert mobile.take("ACK")
    assert len(net.legs) == 2
    assert {leg.endpoint_id for leg in net.legs.values()} == {10, 11}


def test_serial_forking_tries_the_highest_q_first() -> None:
    cfg = Config(proxy=ProxyConfig(forking="serial", trunk_probe_s=0))
    net = Net(make_core(cfg))
    alice = net.ua("alice", "a-pw", "203.0.113.7", 40000)
    desk = net.ua("bob", "b-pw", "203.0.113.8", 40002)
    mobile = net.ua("bob", "b-pw", "203.0.113.9", 40004)
    alice.register()
    desk.contact += ";q=0.3"
    mobile.contact += ";q=0.9"
    desk.register()
    mobile.register()
    alice.invite(BOB, "serial")
    f = mobile.take("INVITE")
    assert not desk.inbox
    mobile.answer(f, 486)
    mobile.take("ACK")
    f = desk.take("INVITE")
    desk.answer(f, 200, sdp=AUDIO)
    assert alice.take(200)


def test_re_invite_with_video_splits_voice_and_video_time() -> None:
    net, alice, bob = two_phones()
    inv, fwd, ok, call_a, call_b = basic_call(net, alice, bob)
    net.advance(10)
    reinv = alice.in_dialog(call_a, "INVITE", body=VIDEO)
    alice.send(reinv)
    f = bob.take("INVITE")
    bob.answer(f, 200, tag="t1", sdp=VIDEO)
    ok2 = alice.take(200)
    alice.send(alice.in_dialog(call_a, "ACK", cseq=reinv.cseq))
    bob.take("ACK")
    assert ok2.cseq == reinv.cseq
    net.advance(20)
    alice.send(alice.in_dialog(call_a, "BYE"))
    bob.answer(bob.take("BYE"), 200)
    for leg in net.legs.values():
        assert (leg.voice_ms, leg.video_ms) == (10_000, 20_000)


def test_lost_ack_the_2xx_is_retransmitted_by_the_callee_and_relayed() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite(BOB, "lostack")
    fwd = bob.take("INVITE")
    ok_b = bob.answer(fwd, 200, sdp=AUDIO)
    ok = alice.take(200)
    bob.send(ok_b)  # the callee retransmits its 2xx (its ACK never came)
    ok_again = alice.take(200)
    assert ok_again.to_tag == ok.to_tag
    alice.confirm(inv, ok_again)
    assert bob.take("ACK")
    assert len(net.legs) == 2, "one answer, however often retransmitted"


def test_retransmitted_invite_is_absorbed() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite(BOB, "rtx")
    bob.take("INVITE")
    alice.send(inv)
    assert alice.take(100), "the server transaction answers the retransmission"
    assert not [m for m in bob.inbox if isinstance(m, Request)], "and does not forward it again"


def test_max_forwards_zero_is_483() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite_request(BOB, "mf", 1)
    inv.headers.set("Max-Forwards", "0")
    alice.send(inv)
    assert alice.take(483)


def test_a_request_that_comes_back_unchanged_is_a_loop() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite(BOB, "loop")
    fwd = bob.take("INVITE")
    # bob's side sends the very request back to the proxy (a misconfigured forward)
    looped = Request("INVITE", inv.ruri, [(n, v) for n, v in fwd.headers], fwd.body)
    looped.headers.prepend("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKbounce")
    bob.send(looped)
    assert bob.take(482)


def test_forged_in_dialog_invite_to_a_trunk_is_refused() -> None:
    net, alice, bob = two_phones()
    carrier = net.ua("carrier", "", "198.51.100.5", 5060)
    forged = alice.invite_request("sip:15551234567@198.51.100.5:5060", "forged", 1)
    forged.headers.set("To", "<sip:15551234567@198.51.100.5>;tag=abc")
    forged.headers.prepend("Route", "<sip:192.0.2.1:5060;lr>")
    alice.send(forged)
    assert alice.take(403)
    forged2 = alice.invite_request("sip:15551234567@198.51.100.5:5060", "forged2", 1)
    forged2.headers.set("To", "<sip:15551234567@198.51.100.5>;tag=abc")
    forged2.headers.prepend("Route", "<sip:192.0.2.1:5060;lr;fl=udp~198.51.100.5~5060~0;sc=AAAAAAAAAAAA>")
    alice.send(forged2)
    assert alice.take(403)
    assert not carrier.inbox, "nothing reached the trunk"


def test_unauthenticated_invite_never_reaches_a_trunk() -> None:
    net, alice, bob = two_phones()
    carrier = net.ua("carrier", "", "198.51.100.5", 5060)
    stranger = net.ua("mallory", "", "192.0.2.99", 5060)
    stranger.send(stranger.invite_request("sip:15551234567@example.com", "relay", 1).without_parsed_state())
    assert stranger.statuses() == [407]
    inv = stranger.invite_request("sip:15551234567@other.example", "relay2", 1)
    inv.headers.set("From", "<sip:mallory@other.example>;tag=x")
    stranger.send(inv)
    assert 403 in stranger.statuses()
    assert not carrier.inbox


def test_call_to_a_trunk_answers_its_challenge_and_meters_one_leg() -> None:
    trunk = TrunkInfo(7, 1, "carrier", "198.51.100.5", 5060, prefixes=("1",), username="acct", password="tpw")
    net = Net(make_core(trunks=(trunk,)))
    alice = net.ua("alice", "a-pw", "203.0.113.7", 40000)
    alice.register()
    carrier = net.ua("acct", "tpw", "198.51.100.5", 5060)
    net.legs.clear()
    inv = alice.invite(f"sip:15551234567@{DOMAIN}", "out")
    f = carrier.take("INVITE")
    assert f.ruri == "sip:15551234567@198.51.100.5:5060"
    carrier.answer(
        f, 407, extra=[("Proxy-Authenticate", 'Digest realm="carrier", nonce="n1", qop="auth", algorithm=MD5')]
    )
    assert carrier.take("ACK")
    f2 = carrier.take("INVITE")
    cred = f2.headers.get("Proxy-Authorization") or ""
    assert 'username="acct"' in cred and 'realm="carrier"' in cred and f2.branch != f.branch
    assert 407 not in alice.statuses()
    ok_t = carrier.answer(f2, 200, sdp=AUDIO)
    ok = alice.take(200)
    call = alice.confirm(inv, ok)
    assert carrier.take("ACK")
    net.advance(7)
    alice.send(alice.in_dialog(call, "BYE"))
    carrier.answer(carrier.take("BYE"), 200)
    (leg,) = net.legs.values()
    assert (leg.direction, leg.endpoint_kind, leg.endpoint_id, leg.voice_ms) == ("originating", "device", 10, 7000)
    assert ok_t is not None


def test_call_from_a_trunk_to_a_did_rings_the_device() -> None:
    net, alice, bob = two_phones()
    carrier = net.ua("carrier", "", "198.51.100.5", 5060)
    inv = carrier.invite("sip:15550001@192.0.2.1", "in", authenticate=False)
    f = bob.take("INVITE")
    bob.answer(f, 200, sdp=AUDIO)
    ok = carrier.take(200)
    carrier.confirm(inv, ok)
    bob.take("ACK")
    (leg,) = net.legs.values()
    assert (leg.direction, leg.endpoint_kind, leg.endpoint_id) == ("terminating", "device", 11)


def test_trunk_to_trunk_is_refused_without_transit() -> None:
    net, alice, bob = two_phones()
    carrier = net.ua("carrier", "", "198.51.100.5", 5060)
    carrier.invite("sip:4420700000@192.0.2.1", "transit", authenticate=False)
    assert 404 in carrier.statuses()


def test_no_common_codec_with_the_trunk_is_488_and_recorded() -> None:
    net, alice, bob = two_phones()
    net.ua("carrier", "", "198.51.100.5", 5060)
    alice.invite(f"sip:15551234567@{DOMAIN}", "g722", sdp=G722_ONLY)
    assert 488 in alice.statuses()
    (leg,) = net.legs.values()
    assert (leg.final_status, leg.duration_ms) == (488, 0)


def test_nobody_registered_is_480_and_unknown_user_404() -> None:
    net = Net()
    alice = net.ua("alice", "a-pw")
    alice.register()
    alice.invite(BOB, "nobody")
    assert 480 in alice.statuses()
    alice.inbox.clear()
    alice.invite(f"sip:zed@{DOMAIN}", "zed")
    assert 404 in alice.statuses()


def test_message_is_relayed_and_counted() -> None:
    net, alice, bob = two_phones()
    hs = [
        ("Via", alice.via()),
        ("Max-Forwards", "70"),
        ("From", f"<sip:alice@{DOMAIN}>;tag=m1"),
        ("To", f"<{BOB}>"),
        ("Call-ID", "msg1"),
        ("CSeq", "1 MESSAGE"),
        ("Content-Type", "text/plain"),
        ("Content-Length", "2"),
    ]
    alice.send(Request("MESSAGE", BOB, hs, b"hi"))
    ch = alice.take(407)
    hs2 = [(n, v) for n, v in hs if n != "Content-Length"]
    hs2[0] = ("Via", alice.via())
    hs2[5] = ("CSeq", "2 MESSAGE")
    hs2.append(("Proxy-Authorization", alice.digest(ch, "MESSAGE", BOB, "Proxy-Authenticate")))
    alice.send(Request("MESSAGE", BOB, hs2 + [("Content-Length", "2")], b"hi"))
    m = bob.take("MESSAGE")
    assert m.body == b"hi" and m.headers.get("Record-Route") is None
    bob.answer(m, 200)
    assert alice.take(200)
    counted = [e for e in net.events if isinstance(e, CounterRecorded) and e.metric == "messages"]
    assert [(c.metric, c.delta) for c in counted] == [("messages", 1)]


def test_max_call_duration_ends_the_call_with_bye_to_both_sides() -> None:
    cfg = Config(proxy=ProxyConfig(max_call_duration_s=60, trunk_probe_s=0))
    net, alice, bob = two_phones(Net(make_core(cfg)))
    basic_call(net, alice, bob)
    net.advance(61)
    assert alice.take("BYE") and bob.take("BYE")
    assert {(leg.end_reason, leg.voice_ms) for leg in net.legs.values()} == {("max_duration", 61_000)}


def test_session_timer_expiry_ends_a_dead_call() -> None:
    net, alice, bob = two_phones()
    inv = alice.invite(BOB, "st")
    fwd = bob.take("INVITE")
    bob.answer(fwd, 200, sdp=AUDIO, extra=[("Session-Expires", "90;refresher=uac")])
    call = alice.confirm(inv, alice.take(200))
    bob.take("ACK")
    net.advance(60)
    upd = alice.in_dialog(call, "UPDATE")
    alice.send(upd)
    bob.answer(bob.take("UPDATE"), 200, extra=[("Session-Expires", "90;refresher=uac")])
    assert alice.take(200)
    net.advance(80)
    assert not [m for m in alice.inbox if isinstance(m, Request)], "refreshed: still up"
    net.advance(20)
    assert alice.take("BYE") and bob.take("BYE")
    assert {leg.end_reason for leg in net.legs.values()} == {"timeout"}


def test_in_dialog_requests_route_without_dialog_state_after_a_restart() -> None:
    net, alice, bob = two_phones()
    inv, fwd, ok, call_a, call_b = basic_call(net, alice, bob)
    # A new core with the same secret (a restart): the Record-Route token is enough.
    fresh = make_core()
    fresh.location = net.core.location
    net.core = fresh
    alice.send(alice.in_dialog(call_a, "BYE"))
    assert bob.take("BYE")


def test_wall_clock_times_are_milliseconds() -> None:
    net, alice, bob = two_phones()
    basic_call(net, alice, bob)
    for leg in net.legs.values():
        assert leg.answer_ms == T0_MS and leg.setup_ms == T0_MS
        assert leg.segment_start_ms == T0_MS


def test_flow_object_is_reused_for_the_callee() -> None:
    net, alice, bob = two_phones()
    basic_call(net, alice, bob)
    assert Flow("udp", "203.0.113.8", 40002, 1) in {b.flow for b in net.core.location.all()}


def _message(alice, n: int) -> None:  # type: ignore[no-untyped-def]
    def req(cseq: int, auth: str | None) -> Request:
        hs = [
            ("Via", alice.via()),
            ("Max-Forwards", "70"),
            ("From", f"<sip:alice@{DOMAIN}>;tag=m{n}"),
            ("To", f"<{BOB}>"),
            ("Call-ID", f"msg-{n}"),
            ("CSeq", f"{cseq} MESSAGE"),
            ("Content-Type", "text/plain"),
        ]
        if auth:
            hs.append(("Proxy-Authorization", auth))
        return Request("MESSAGE", BOB, hs + [("Content-Length", "2")], b"hi")

    alice.send(req(1, None))
    ch = alice.take(407)
    alice.send(req(2, alice.digest(ch, "MESSAGE", BOB, "Proxy-Authenticate")))


def test_a_message_over_a_blocking_plan_limit_gets_403() -> None:
    from pathlib import Path

    from sipcore.metering.limits import TenantPolicy, UsageGuard
    from sipcore.rating.plan import parse_plan

    root = Path(__file__).resolve().parents[2]
    text = (root / "config" / "plans" / "voximplant-free.toml").read_text()
    plan = parse_plan(text.replace("included = 50000", "included = 2"), "tiny.toml")
    net, alice, bob = two_phones()
    net.core.guard = UsageGuard({1: TenantPolicy(plan)})
    for n in range(3):
        _message(alice, n)
    assert len([m for m in bob.inbox if isinstance(m, Request) and m.method == "MESSAGE"]) == 2
    (refused,) = [m for m in alice.inbox if getattr(m, "status", 0) == 403]
    assert refused.reason == "Monthly Message Limit Reached"
    counted = [e for e in net.events if isinstance(e, CounterRecorded) and e.metric == "messages"]
    assert len(counted) == 2, "a refused MESSAGE is not counted"


def test_a_trunk_that_stops_answering_options_is_down_and_calls_fail_over() -> None:
    backup = TrunkInfo(8, 1, "backup", "198.51.100.6", 5060, prefixes=("1",), priority=200)
    primary = TrunkInfo(7, 1, "carrier", "198.51.100.5", 5060, prefixes=("1",), priority=100)
    net = Net(make_core(Config(proxy=ProxyConfig(trunk_probe_s=30)), trunks=(primary, backup)))
    alice = net.ua("alice", "a-pw")
    alice.register()
    carrier = net.ua("carrier", "", "198.51.100.5", 5060)
    other = net.ua("backup", "", "198.51.100.6", 5060)
    net.advance(0.001)
    probe = carrier.take("OPTIONS")
    other.answer(other.take("OPTIONS"), 200)
    net.lost.extend([("198.51.100.5", 5060)] * 20)  # the primary's probe retransmissions vanish
    net.advance(40)  # Timer F: the primary is down
    assert probe.method == "OPTIONS"
    assert net.core.proxy.trunk_probes.down == {7}
    other.inbox.clear()
    alice.invite(f"sip:15551234567@{DOMAIN}", "failover")
    assert other.take("INVITE"), "the backup is tried first while the primary is down"


def test_failover_to_the_next_trunk_on_503_but_not_on_busy() -> None:
    backup = TrunkInfo(8, 1, "backup", "198.51.100.6", 5060, prefixes=("1",), priority=200)
    primary = TrunkInfo(7, 1, "carrier", "198.51.100.5", 5060, prefixes=("1",), priority=100)
    net = Net(make_core(trunks=(primary, backup)))
    alice = net.ua("alice", "a-pw")
    alice.register()
    carrier = net.ua("carrier", "", "198.51.100.5", 5060)
    other = net.ua("backup", "", "198.51.100.6", 5060)
    alice.invite(f"sip:15551234567@{DOMAIN}", "fo1")
    f = carrier.take("INVITE")
    carrier.answer(f, 503)
    f2 = other.take("INVITE")
    other.answer(f2, 200, sdp=AUDIO)
    assert alice.take(200)
    alice.invite(f"sip:15551234567@{DOMAIN}", "fo2")
    carrier.answer(carrier.take("INVITE"), 486)
    assert 486 in alice.statuses()
    assert not [m for m in other.inbox if isinstance(m, Request) and m.method == "INVITE"]
