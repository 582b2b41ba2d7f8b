"""Inbound from a trunk recognised by digest (``inbound`` "digest" / "both"), on the in-memory network.

The trunk's username/password (what sipcore answers the trunk's challenges
with) also authenticate the trunk's requests to sipcore, in the realm of its
tenant's domain; a trunk's From is the caller's number at the carrier, never
matched against its credentials.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sipcore.auth import compute_ha1
from sipcore.config import AuthSection, Config, ProxyConfig
from sipcore.message import Request
from sipcore.proxy.directory import DidInfo, Directory, TenantInfo, TrunkInfo

from .callnet import AUDIO, DOMAIN, UA, Net, device, make_core

PBX_ADDR = ("198.51.100.5", 5060)  # the trunk's provisioned address
DYNAMIC = ("203.0.113.50", 5099)  # where the PBX really sends from today
DID = "15550001"  # rings bob (device 11)


def trunk(inbound: str = "digest", **kw: Any) -> TrunkInfo:
    return TrunkInfo(
        7, 1, "pbx", *PBX_ADDR, prefixes=("1", "44"), username="acct", password="tpw", inbound=inbound, **kw
    )


def setup(inbound: str = "digest", config: Config | None = None, **kw: Any) -> tuple[Net, UA]:
    net = Net(make_core(config, trunks=(trunk(inbound, **kw),)))
    bob = net.ua("bob", "b-pw", "203.0.113.8", 40002)
    bob.register()
    net.legs.clear()
    return net, bob


def from_carrier(ua: UA, ruri: str, call_id: str, cseq: int = 1, auth: str | None = None, to: str = "") -> Request:
    """An INVITE as a carrier sends it: the caller's number at the carrier's domain in From."""
    inv = ua.invite_request(ruri, call_id, cseq, auth=auth)
    inv.headers.set("From", f"<sip:+442071234567@carrier.example>;tag=f{call_id}")
    if to:
        inv.headers.set("To", f"<{to}>")
    return inv


def challenged_invite(ua: UA, ruri: str, call_id: str, to: str = "") -> Request:
    """INVITE, 407, ACK, INVITE with Proxy-Authorization; returns the second INVITE."""
    first = from_carrier(ua, ruri, call_id, to=to)
    ua.send(first)
    ch = ua.take(407)
    assert f'realm="{DOMAIN}"' in (ch.headers.get("Proxy-Authenticate") or ""), "the realm is the tenant's domain"
    ua.send(ua.ack_for(first, ch))
    auth = ua.digest(ch, "INVITE", ruri, "Proxy-Authenticate")
    inv = from_carrier(ua, ruri, call_id, 2, auth=auth, to=to)
    ua.send(inv)
    return inv


def answered(net: Net, pbx: UA, bob: UA, inv: Request) -> None:
    fwd = bob.take("INVITE")
    assert fwd.headers.get("Proxy-Authorization") is None, "the trunk's credentials are not passed on"
    ok_b = bob.answer(fwd, 200, sdp=AUDIO)
    call = pbx.confirm(inv, pbx.take(200))
    bob.take("ACK")
    net.advance(5)
    pbx.send(pbx.in_dialog(call, "BYE"))
    bob.answer(bob.take("BYE"), 200)
    assert pbx.take(200) and ok_b is not None


def the_leg(net: Net) -> Any:
    (leg,) = net.legs.values()
    return leg


def test_digest_trunk_from_any_address_is_challenged_then_reaches_the_did() -> None:
    net, bob = setup("digest")
    pbx = net.ua("acct", "tpw", *DYNAMIC)
    inv = challenged_invite(pbx, f"sip:{DID}@192.0.2.1", "dyn")
    assert pbx.take(100)
    answered(net, pbx, bob, inv)
    leg = the_leg(net)
    assert (leg.direction, leg.endpoint_kind, leg.endpoint_id, leg.voice_ms) == ("terminating", "device", 11, 5000)
    assert not leg.transit and leg.caller == "sip:+442071234567@carrier.example"


def test_digest_trunk_wrong_password_is_challenged_again_counted_and_never_rings() -> None:
    cfg = Config(proxy=ProxyConfig(trunk_probe_s=0), auth=AuthSection(max_failures=2))
    net, bob = setup("digest", cfg)
    pbx = net.ua("acct", "not-the-password", *DYNAMIC)
    ruri = f"sip:{DID}@192.0.2.1"
    for n in range(2):
        first = from_carrier(pbx, ruri, f"bad{n}")
        pbx.send(first)
        ch = pbx.take(407)
        pbx.send(pbx.ack_for(first, ch))
        pbx.send(from_carrier(pbx, ruri, f"bad{n}", 2, auth=pbx.digest(ch, "INVITE", ruri, "Proxy-Authenticate")))
        assert pbx.take(407), "a wrong password is challenged again"
    pbx.inbox.clear()
    pbx.send(from_carrier(pbx, ruri, "bad-after"))
    assert pbx.statuses() == [403], "two failures blocked the source: they were counted"
    assert not bob.inbox and not net.legs


def test_digest_trunk_its_own_address_alone_is_not_enough() -> None:
    net, bob = setup("digest")
    pbx = net.ua("acct", "tpw", *PBX_ADDR)
    pbx.send(from_carrier(pbx, f"sip:{DID}@192.0.2.1", "addr-only"))
    assert pbx.statuses() == [407]
    assert not bob.inbox


def test_digest_trunk_from_its_own_address_with_credentials_is_the_trunk() -> None:
    net, bob = setup("digest")
    pbx = net.ua("acct", "tpw", *PBX_ADDR)
    inv = challenged_invite(pbx, f"sip:{DID}@192.0.2.1", "own-addr")
    answered(net, pbx, bob, inv)
    assert the_leg(net).direction == "terminating"


def test_both_right_credentials_from_a_wrong_address_are_refused() -> None:
    net, bob = setup("both")
    pbx = net.ua("acct", "tpw", *DYNAMIC)
    challenged_invite(pbx, f"sip:{DID}@192.0.2.1", "both-wrong")
    assert 403 in pbx.statuses()
    assert not bob.inbox and not net.legs


def test_both_from_its_address_is_challenged_then_reaches_the_did() -> None:
    net, bob = setup("both")
    pbx = net.ua("acct", "tpw", *PBX_ADDR)
    first = from_carrier(pbx, f"sip:{DID}@192.0.2.1", "both-first")
    pbx.send(first)
    assert pbx.statuses() == [407], "its address alone is not enough"
    assert not bob.inbox
    pbx.inbox.clear()
    inv = challenged_invite(pbx, f"sip:{DID}@192.0.2.1", "both-ok")
    answered(net, pbx, bob, inv)
    assert (the_leg(net).direction, the_leg(net).endpoint_id) == ("terminating", 11)


def test_address_mode_is_unchanged_credentials_or_not() -> None:
    net, bob = setup("address")
    pbx = net.ua("acct", "tpw", *PBX_ADDR)
    inv = from_carrier(pbx, f"sip:{DID}@192.0.2.1", "addr")
    pbx.send(inv)
    answered(net, pbx, bob, inv)
    assert the_leg(net).direction == "terminating"
    # from elsewhere, its credentials are nobody's: address mode has no inbound digest
    other = net.ua("acct", "tpw", *DYNAMIC)
    challenged_invite(other, f"sip:{DID}@192.0.2.1", "addr-elsewhere")
    assert 407 in other.statuses() and not bob.inbox


def test_trunk_calling_our_contact_is_routed_to_the_did_in_to() -> None:
    net, bob = setup("digest")
    pbx = net.ua("acct", "tpw", *DYNAMIC)
    inv = challenged_invite(pbx, "sip:acct@192.0.2.1:5060", "contact", to=f"sip:{DID}@192.0.2.1")
    answered(net, pbx, bob, inv)
    assert (the_leg(net).direction, the_leg(net).endpoint_id) == ("terminating", 11)
    assert the_leg(net).callee == f"sip:{DID}@192.0.2.1", "the number dialled, not our registered Contact"


def test_an_unanswered_call_to_our_contact_records_the_did_in_to() -> None:
    net = Net(make_core(trunks=(trunk("digest"),)))  # bob is not registered: 480
    pbx = net.ua("acct", "tpw", *DYNAMIC)
    challenged_invite(pbx, "sip:acct@192.0.2.1:5060", "contact480", to=f"sip:{DID}@192.0.2.1")
    assert 480 in pbx.statuses()
    leg = the_leg(net)
    assert (leg.final_status, leg.callee) == (480, f"sip:{DID}@192.0.2.1")


def test_a_did_in_the_request_uri_stays_the_callee() -> None:
    net, bob = setup("digest")
    pbx = net.ua("acct", "tpw", *DYNAMIC)
    inv = challenged_invite(pbx, f"sip:{DID}@192.0.2.1", "direct", to="sip:someone-else@192.0.2.1")
    answered(net, pbx, bob, inv)
    assert the_leg(net).callee == f"sip:{DID}@192.0.2.1"


def test_to_did_is_only_for_trunks() -> None:
    net, bob = setup("digest")
    alice = net.ua("alice", "a-pw", "203.0.113.7", 40000)
    alice.register()
    inv = alice.invite_request(f"sip:nobody@{DOMAIN}", "dev", 1)
    inv.headers.set("To", f"<sip:{DID}@{DOMAIN}>")
    alice.send(inv)
    ch = alice.take(407)
    alice.send(alice.ack_for(inv, ch))
    inv2 = alice.invite_request(
        f"sip:nobody@{DOMAIN}", "dev", 2, auth=alice.digest(ch, "INVITE", f"sip:nobody@{DOMAIN}", "Proxy-Authenticate")
    )
    inv2.headers.set("To", f"<sip:{DID}@{DOMAIN}>")
    alice.send(inv2)
    assert 404 in alice.statuses() and not bob.inbox


def test_no_relay_a_digest_trunk_reaches_another_trunk_only_with_transit() -> None:
    carrier = TrunkInfo(8, 1, "carrier", "198.51.100.9", 5060, prefixes=("44",))
    for transit, expected in ((False, 404), (True, None)):
        net = Net(make_core(trunks=(trunk("digest", allow_transit=transit), carrier)))
        out = net.ua("carrier", "", "198.51.100.9", 5060)
        pbx = net.ua("acct", "tpw", *DYNAMIC)
        challenged_invite(pbx, f"sip:4420700000@{DOMAIN}", "relay")  # the tenant's domain names the realm
        if expected is not None:
            assert expected in pbx.statuses() and not out.inbox, "not a DID: no route without transit"
            assert not net.legs
        else:
            fwd = out.take("INVITE")
            assert fwd.ruri == "sip:4420700000@198.51.100.9:5060"


def test_unauthenticated_request_for_a_did_gets_a_challenge_never_a_trunk() -> None:
    net, bob = setup("digest")
    out = net.ua("pbx", "", *PBX_ADDR)
    stranger = net.ua("mallory", "x", "192.0.2.99", 5060)
    stranger.send(from_carrier(stranger, "sip:4420700000@192.0.2.1", "nodid"))
    assert stranger.statuses() == [403], "neither a tenant nor a DID: relaying denied, as before"
    stranger.inbox.clear()
    stranger.send(from_carrier(stranger, f"sip:{DID}@192.0.2.1", "did"))
    assert stranger.statuses() == [407], "a DID names the realm"
    assert not out.inbox and not bob.inbox


def test_a_digest_trunk_reaches_devices_only_by_did_and_devices_keep_their_rules() -> None:
    net, bob = setup("digest")
    pbx = net.ua("acct", "tpw", *DYNAMIC)
    challenged_invite(pbx, f"sip:bob@{DOMAIN}", "by-name")
    assert 404 in pbx.statuses() and not bob.inbox, "a trunk does not call devices by name"
    alice = net.ua("alice", "a-pw", "203.0.113.7", 40000)
    alice.invite(f"sip:{DID}@{DOMAIN}", "dev-did")
    assert bob.take("INVITE"), "a device still reaches a DID"
    forged = net.ua("alice", "a-pw", "203.0.113.9", 40009)
    inv = forged.invite_request(f"sip:bob@{DOMAIN}", "forged-from", 1)
    inv.headers.set("From", "<sip:+442071234567@carrier.example>;tag=x")
    forged.send(inv)
    ch = forged.take(407)
    auth = forged.digest(ch, "INVITE", f"sip:bob@{DOMAIN}", "Proxy-Authenticate")
    inv2 = forged.invite_request(f"sip:bob@{DOMAIN}", "forged-from", 2, auth=auth)
    inv2.headers.set("From", f"<sip:+442071234567@{DOMAIN}>;tag=x")
    forged.send(inv2)
    assert forged.statuses() == [403], "a device's From must still match its credentials"


def test_directory_ha1s_of_a_digest_trunk_and_a_device_wins_a_clash() -> None:
    d = Directory()
    clash = TrunkInfo(9, 1, "clash", "198.51.100.6", 5060, username="bob", password="x", inbound="digest")
    d.replace(
        [TenantInfo(1, DOMAIN)],
        [device(11, "bob", "b-pw")],
        1,
        [trunk("digest"), clash, TrunkInfo(10, 1, "plain", "198.51.100.7", 5060, username="u", password="p")],
        [DidInfo(DID, 1, 11)],
    )
    assert d.ha1(DOMAIN, "acct", "MD5") == compute_ha1("acct", DOMAIN, "tpw", "MD5")
    assert d.ha1(DOMAIN.upper(), "acct", "SHA-256") == compute_ha1("acct", DOMAIN, "tpw", "SHA-256")
    assert d.ha1(DOMAIN, "u", "MD5") is None, "an address-mode trunk has no inbound credentials"
    assert d.ha1(DOMAIN, "bob", "MD5") == compute_ha1("bob", DOMAIN, "b-pw", "MD5"), "the device wins"
    assert d.trunk_by_credentials(DOMAIN, "bob") is None
    assert d.trunk_by_credentials(DOMAIN, "acct") == trunk("digest")
    assert "tpw" not in repr(trunk("digest")) and "tpw" not in repr(d._trunk_creds)


def test_both_trunk_names_its_realm_by_its_address_for_transit() -> None:
    carrier = TrunkInfo(8, 1, "carrier", "198.51.100.9", 5060, prefixes=("44",))
    net = Net(make_core(trunks=(trunk("both", allow_transit=True), carrier)))
    out = net.ua("carrier", "", "198.51.100.9", 5060)
    pbx = net.ua("acct", "tpw", *PBX_ADDR)
    # neither the From domain, the Request-URI host nor a DID names a tenant: its address does
    challenged_invite(pbx, "sip:4420700000@192.0.2.1", "transit")
    assert out.take("INVITE").ruri == "sip:4420700000@198.51.100.9:5060"


def test_a_trunk_added_by_name_is_found_at_the_addresses_it_resolves_to() -> None:
    d = Directory()
    named = TrunkInfo(7, 1, "carrier", "sip.carrier.example", 5060)
    d.replace([TenantInfo(1, DOMAIN, "UTC")], [], serial=1, trunks=[named])
    assert d.trunk_by_source("192.0.2.7", 5060) is None
    d.set_trunk_addresses({7: ("192.0.2.7", "2001:DB8::7")})
    assert d.trunk_by_source("192.0.2.7", 5060) == named and d.trunk_by_source("2001:db8::7", 5060) == named
    assert d.trunk_by_source("192.0.2.7", 5061) is None, "from its port, as a trunk added by address"
    assert d.trunk_tenants[("192.0.2.7", 5060)] == d.trunk_tenants[("sip.carrier.example", 5060)] == 1
    d.replace([TenantInfo(1, DOMAIN, "UTC")], [], serial=2, trunks=[named])
    assert d.trunk_by_source("192.0.2.7", 5060) == named, "a reload keeps what the name resolved to"


def test_a_name_never_takes_over_the_address_of_a_trunk_added_by_it(caplog: pytest.LogCaptureFixture) -> None:
    d = Directory()
    named = TrunkInfo(3, 1, "a-named", "sip.carrier.example", 5060, inbound="digest", username="u", password="p")
    by_ip = TrunkInfo(9, 2, "b-ip", "192.0.2.7", 5060)
    d.replace([TenantInfo(1, DOMAIN, "UTC"), TenantInfo(2, "other.example", "UTC")], [], 1, trunks=[named, by_ip])
    with caplog.at_level(logging.WARNING, logger="sipcore.proxy"):
        d.set_trunk_addresses({3: ("192.0.2.7", "192.0.2.8")})
    assert d.trunk_by_source("192.0.2.7", 5060) == by_ip and d.trunk_tenants[("192.0.2.7", 5060)] == 2
    assert d.trunk_by_source("192.0.2.8", 5060) == named
    assert "sip.carrier.example resolves to 192.0.2.7:5060, which is trunk b-ip's" in caplog.text
