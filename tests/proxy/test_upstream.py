"""Registering with trunks (RFC 3261 §10.2 as a UAC) on the in-memory network, fake clocks."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import pytest

from sipcore.config import Config, ProxyConfig
from sipcore.message import Request
from sipcore.proxy.directory import TrunkInfo
from sipcore.proxy.upstream import RegState, TrunkRegistrationChanged

from .callnet import T0_MS, UA, Net, make_core

CARRIER = TrunkInfo(
    7, 1, "carrier", "198.51.100.5", 5060, prefixes=("1",), username="acct", password="tpw", register=True
)
CHALLENGE = 'Digest realm="carrier.example", nonce="n-{n}", qop="auth", algorithm=MD5'


def setup(trunk: TrunkInfo = CARRIER, expires: int = 3600) -> tuple[Net, UA]:
    cfg = Config(proxy=ProxyConfig(trunk_probe_s=0, trunk_register_expires_s=expires))
    net = Net(make_core(cfg, trunks=(trunk,)))
    carrier = net.ua("acct", "tpw", trunk.host, trunk.port)
    net.advance(0.001)  # the first timer syncs with the directory
    return net, carrier


def states(net: Net) -> list[TrunkRegistrationChanged]:
    return [e for e in net.events if isinstance(e, TrunkRegistrationChanged)]


def check_digest(req: Request, password: str, nonce: str) -> None:
    """The Authorization answers `nonce` with `password` (RFC 7616 §3.4.1, qop=auth, MD5)."""
    value = req.headers.get("Authorization") or ""
    assert value.startswith("Digest ")
    p = {k.strip(): v.strip().strip('"') for k, v in (x.split("=", 1) for x in value[7:].split(","))}
    assert (p["username"], p["realm"], p["nonce"], p["uri"]) == ("acct", "carrier.example", nonce, req.ruri)
    ha1 = hashlib.md5(f"acct:carrier.example:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{req.ruri}".encode()).hexdigest()
    expected = hashlib.md5(f"{ha1}:{nonce}:{p['nc']}:{p['cnonce']}:auth:{ha2}".encode()).hexdigest()
    assert p["response"] == expected


def challenge(carrier: UA, n: int = 1, status: int = 401) -> Request:
    """Take the REGISTER, challenge it, and return the REGISTER sent with credentials."""
    req = carrier.take("REGISTER")
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    carrier.answer(req, status, extra=[(header, CHALLENGE.format(n=n))])
    return carrier.take("REGISTER")


def register_ok(net: Net, carrier: UA, granted: int = 3600, n: int = 1) -> Request:
    req = challenge(carrier, n)
    carrier.answer(req, 200, extra=[("Contact", f"{req.headers.get('Contact')};expires={granted}")])
    return req


def test_401_then_200_with_valid_credentials_is_registered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sipcore.upstream")
    net, carrier = setup()
    first = carrier.take("REGISTER")
    assert first.ruri == "sip:198.51.100.5:5060"
    assert first.headers.get("To") == "<sip:acct@198.51.100.5>"
    assert (first.headers.get("From") or "").startswith("<sip:acct@198.51.100.5>;tag=")
    assert first.headers.get("Contact") == "<sip:acct@192.0.2.1:5060;transport=udp>"
    assert first.headers.get("Expires") == "3600" and first.headers.get("Authorization") is None
    carrier.answer(first, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=1))])
    second = carrier.take("REGISTER")
    check_digest(second, "tpw", "n-1")
    assert second.call_id == first.call_id and second.cseq == first.cseq + 1 and second.branch != first.branch
    assert second.from_tag == first.from_tag
    carrier.answer(second, 200, extra=[("Contact", "<sip:acct@192.0.2.1:5060;transport=udp>;expires=1200")])
    assert net.core.proxy.upstream.state(7) is RegState.REGISTERED
    reg, ok = states(net)
    assert (reg.trunk_id, reg.state, reg.next_attempt_ms) == (7, RegState.REGISTERING, T0_MS + 1)
    assert (ok.state, ok.status, ok.reason) == (RegState.REGISTERED, 200, "OK")
    assert ok.expires_at_ms == ok.at_ms + 1_200_000 and ok.next_attempt_ms == ok.at_ms + 600_000
    assert "trunk carrier registered, expires in 1200 s" in caplog.text


def test_account_domain_names_the_registrar_and_aor_while_the_address_gets_the_request() -> None:
    """A carrier account sip:acct@carrier.example registered through its proxy's address."""
    trunk = dataclasses.replace(CARRIER, account_domain="carrier.example")
    net, carrier = setup(trunk)
    first = carrier.take("REGISTER")  # taken at the trunk's address: that is where it was sent
    assert first.ruri == "sip:carrier.example"
    assert first.headers.get("To") == "<sip:acct@carrier.example>"
    assert (first.headers.get("From") or "").startswith("<sip:acct@carrier.example>;tag=")
    carrier.answer(first, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=1))])
    second = carrier.take("REGISTER")
    check_digest(second, "tpw", "n-1")  # the digest uri is the Request-URI, sip:carrier.example
    carrier.answer(second, 200, extra=[("Contact", f"{second.headers.get('Contact')};expires=600")])
    assert net.core.proxy.upstream.state(7) is RegState.REGISTERED


def test_granted_expiry_from_expires_header_else_as_asked() -> None:
    net, carrier = setup()
    req = challenge(carrier)
    carrier.answer(req, 200, extra=[("Contact", "<sip:other@203.0.113.9>;expires=60"), ("Expires", "900")])
    assert states(net)[-1].expires_at_ms == states(net)[-1].at_ms + 900_000
    net2, carrier2 = setup()
    carrier2.answer(challenge(carrier2), 200)
    assert states(net2)[-1].expires_at_ms == states(net2)[-1].at_ms + 3_600_000


def test_refresh_before_expiry_same_call_id_increasing_cseq() -> None:
    net, carrier = setup()
    first = register_ok(net, carrier, granted=600)
    net.advance(299)
    assert not carrier.inbox, "not refreshed before half the granted time"
    net.advance(1)
    refresh = challenge(carrier, 2)
    check_digest(refresh, "tpw", "n-2")
    assert refresh.call_id == first.call_id and refresh.cseq > first.cseq
    carrier.answer(refresh, 200, extra=[("Contact", f"{refresh.headers.get('Contact')};expires=600")])
    last = states(net)[-1]
    assert last.state is RegState.REGISTERED and last.expires_at_ms == T0_MS + 1 + 300_000 + 600_000


def digest_params(req: Request, header: str = "Authorization") -> dict[str, str]:
    value = req.headers.get(header) or ""
    return {k.strip(): v.strip().strip('"') for k, v in (x.split("=", 1) for x in value[7:].split(","))}


def test_a_refresh_carries_credentials_for_the_accepted_nonce_with_the_next_count() -> None:
    """One REGISTER per refresh, no 401 round trip (RFC 7616 §3.4: nonce reuse with nc),
    while the nonce is young enough for a registrar to still take it."""
    net, carrier = setup()
    first = register_ok(net, carrier, granted=200)
    cnonces = {digest_params(first)["cnonce"]}
    for count in (2, 3):
        net.advance(100)
        refresh = carrier.take("REGISTER")
        p = digest_params(refresh)
        assert p["nonce"] == "n-1" and p["nc"] == f"{count:08x}", p
        assert p["cnonce"] not in cnonces and len(p["cnonce"]) == 16, "a fresh, random cnonce each time"
        cnonces.add(p["cnonce"])
        check_digest(refresh, "tpw", "n-1")
        carrier.answer(refresh, 200, extra=[("Contact", f"{refresh.headers.get('Contact')};expires=200")])
        assert not carrier.inbox, "accepted at once: no challenge, no second REGISTER"
        assert states(net)[-1].state is RegState.REGISTERED
    net.advance(100)  # the nonce is now 300 s old (NONCE_REUSE_S = 240): ask for a new one
    assert carrier.take("REGISTER").headers.get("Authorization") is None


def test_the_unregister_at_shutdown_goes_on_with_the_accepted_nonce() -> None:
    net, carrier = setup()
    register_ok(net, carrier, granted=200)
    net.advance(100)
    refresh = carrier.take("REGISTER")
    carrier.answer(refresh, 200, extra=[("Contact", f"{refresh.headers.get('Contact')};expires=200")])
    assert net.core.unregister_trunks(net.now, net.now_ms) is True
    net.pump()
    bye = carrier.take("REGISTER")
    assert bye.headers.get("Expires") == "0" and digest_params(bye)["nc"] == "00000003"
    check_digest(bye, "tpw", "n-1")


def test_a_challenge_to_a_preemptive_refresh_is_answered_once_with_the_new_nonce() -> None:
    net, carrier = setup()
    register_ok(net, carrier, granted=300)
    net.advance(150)
    refresh = carrier.take("REGISTER")
    assert digest_params(refresh)["nonce"] == "n-1"
    stale = CHALLENGE.format(n=2) + ", stale=true"
    carrier.answer(refresh, 401, extra=[("WWW-Authenticate", stale)])  # the carrier let n-1 go
    again = carrier.take("REGISTER")
    assert digest_params(again)["nc"] == "00000001"
    check_digest(again, "tpw", "n-2")
    carrier.answer(again, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=3))])
    assert not carrier.inbox, "refused: not looped"
    assert states(net)[-1].state is RegState.FAILED
    net.advance(30)
    retry = carrier.take("REGISTER")
    assert retry.headers.get("Authorization") is None, "after a failure, a fresh challenge first"


def test_removed_while_answering_a_new_nonce_unregisters_with_that_nonce_and_its_count() -> None:
    """The count goes with its nonce: never n-1 with a count n-1 already had."""
    net, carrier = setup()
    register_ok(net, carrier, granted=300)
    net.advance(150)
    refresh = carrier.take("REGISTER")  # n-1, nc 2
    carrier.answer(refresh, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=2) + ", stale=true")])
    again = carrier.take("REGISTER")  # n-2, nc 1
    d = net.core.directory
    d.replace([d.tenant(1)], [], serial=d.serial + 1, trunks=())  # type: ignore[list-item]
    net.advance(0.001)
    carrier.answer(again, 200, extra=[("Contact", f"{again.headers.get('Contact')};expires=300")])
    bye = carrier.take("REGISTER")
    p = digest_params(bye)
    assert bye.headers.get("Expires") == "0" and (p["nonce"], p["nc"]) == ("n-2", "00000002")


def test_a_403_to_credentials_nobody_asked_for_is_retried_the_classic_way() -> None:
    net, carrier = setup()
    register_ok(net, carrier, granted=300)
    net.advance(150)
    refresh = carrier.take("REGISTER")
    assert refresh.headers.get("Authorization")
    carrier.answer(refresh, 403)  # a registrar that forgot the nonce and says so badly
    plain = carrier.take("REGISTER")
    assert plain.headers.get("Authorization") is None
    carrier.answer(plain, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=4))])
    auth = carrier.take("REGISTER")
    check_digest(auth, "tpw", "n-4")
    carrier.answer(auth, 200, extra=[("Contact", f"{auth.headers.get('Contact')};expires=300")])
    assert states(net)[-1].state is RegState.REGISTERED


def test_no_preemptive_credentials_without_qop() -> None:
    """Without qop there is no nonce-count: reusing the nonce would be a replay."""
    net, carrier = setup()
    req = carrier.take("REGISTER")
    carrier.answer(req, 401, extra=[("WWW-Authenticate", 'Digest realm="carrier.example", nonce="n-0"')])
    auth = carrier.take("REGISTER")
    assert "qop" not in (auth.headers.get("Authorization") or "")
    carrier.answer(auth, 200, extra=[("Contact", f"{auth.headers.get('Contact')};expires=200")])
    net.advance(100)
    assert carrier.take("REGISTER").headers.get("Authorization") is None


def test_failure_backs_off_doubling_and_success_resets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sipcore.upstream")
    net, carrier = setup()
    delays = []
    for _ in range(3):
        req = carrier.take("REGISTER")
        carrier.answer(req, 500)
        failed = states(net)[-1]
        assert (failed.state, failed.status, failed.reason) == (RegState.FAILED, 500, "X")
        delay = (failed.next_attempt_ms - failed.at_ms) // 1000  # type: ignore[operator]
        delays.append(delay)
        net.advance(delay - 1)
        assert not carrier.inbox, "nothing before the retry is due"
        net.advance(1)
    assert delays == [30, 60, 120]
    assert "trunk carrier registration failed: 500 X; retrying in 60 s" in caplog.text
    register_ok(net, carrier, granted=100)
    net.advance(50)
    carrier.answer(carrier.take("REGISTER"), 503)
    again = states(net)[-1]
    assert again.next_attempt_ms == again.at_ms + 30_000, "success reset the backoff"


def test_backoff_is_capped_and_retry_after_of_a_503_honoured() -> None:
    net, carrier = setup()
    carrier.answer(carrier.take("REGISTER"), 503, extra=[("Retry-After", "300 (maintenance)")])
    assert states(net)[-1].next_attempt_ms == states(net)[-1].at_ms + 300_000
    net.advance(299)
    assert not carrier.inbox
    delays = []
    for _ in range(8):
        net.advance(1)
        carrier.answer(carrier.take("REGISTER"), 404)
        failed = states(net)[-1]
        delays.append((failed.next_attempt_ms - failed.at_ms) // 1000)  # type: ignore[operator]
        net.advance(delays[-1] - 1)
    assert delays == [60, 120, 240, 480, 960, 1800, 1800, 1800]


def test_timeout_is_a_failure_and_retried() -> None:
    net, carrier = setup()
    net.lost.extend([("198.51.100.5", 5060)] * 20)  # every retransmission vanishes
    carrier.inbox.clear()
    net.advance(40)  # Timer F (64 * T1 = 32 s)
    failed = states(net)[-1]
    assert (failed.state, failed.status, failed.reason) == (RegState.FAILED, None, "no answer (timeout)")
    net.lost.clear()
    carrier.inbox.clear()
    net.advance(30)
    assert carrier.take("REGISTER")


def test_423_retries_at_once_with_min_expires() -> None:
    net, carrier = setup(expires=60)
    req = carrier.take("REGISTER")
    assert req.headers.get("Expires") == "60"
    carrier.answer(req, 423, extra=[("Min-Expires", "1800")])
    again = carrier.take("REGISTER")
    assert again.headers.get("Expires") == "1800" and again.cseq == req.cseq + 1
    carrier.answer(again, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=5))])
    auth = carrier.take("REGISTER")
    check_digest(auth, "tpw", "n-5")
    assert auth.headers.get("Expires") == "1800"
    carrier.answer(auth, 200)
    assert states(net)[-1].expires_at_ms == states(net)[-1].at_ms + 1_800_000


def test_423_without_a_higher_min_expires_fails() -> None:
    net, carrier = setup()
    carrier.answer(carrier.take("REGISTER"), 423, extra=[("Min-Expires", "60")])
    assert not carrier.inbox
    assert states(net)[-1].state is RegState.FAILED


def test_wrong_password_fails_instead_of_looping(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sipcore.upstream")
    net, carrier = setup(dataclasses.replace(CARRIER, password="wrong"))
    auth = challenge(carrier, 1)
    with pytest.raises(AssertionError):
        check_digest(auth, "tpw", "n-1")
    carrier.answer(auth, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=2))])
    assert not carrier.inbox, "the refused credentials are not sent again"
    failed = states(net)[-1]
    assert (failed.state, failed.status) == (RegState.FAILED, 401)
    assert failed.reason == "Unauthorized (credentials refused)"
    assert "registration failed: 401 Unauthorized (credentials refused); retrying in 30 s" in caplog.text
    net.advance(30)
    assert challenge(carrier, 3), "retried after the backoff, with a new attempt"


def test_stale_nonce_is_answered_once_more_and_407_uses_proxy_authorization() -> None:
    net, carrier = setup()
    auth = challenge(carrier, 1, status=407)
    assert auth.headers.get("Proxy-Authorization") and auth.headers.get("Authorization") is None
    carrier.answer(auth, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=2) + ", stale=true")])
    fresh = carrier.take("REGISTER")
    check_digest(fresh, "tpw", "n-2")
    carrier.answer(fresh, 200)
    assert states(net)[-1].state is RegState.REGISTERED


def test_one_transaction_in_flight_per_trunk() -> None:
    net, carrier = setup()
    for _ in range(400):  # never answered: retransmissions, Timer F, retries after 30 s and 60 s
        net.advance(1)
        assert net.core.layer.client_count <= 1
    cseqs = sorted({m.cseq for m in carrier.inbox if isinstance(m, Request)})
    assert cseqs == [1, 2, 3, 4]
    assert [e.next_attempt_ms - e.at_ms for e in states(net)[1:]] == [30_000, 60_000, 120_000, 240_000]  # type: ignore[operator]


def test_trunk_removed_unregisters_with_expires_0_and_shows_unregistered() -> None:
    net, carrier = setup()
    register_ok(net, carrier)
    d = net.core.directory
    d.replace([d.tenant(1)], [], serial=d.serial + 1, trunks=())  # type: ignore[list-item]
    net.advance(0.001)
    bye = carrier.take("REGISTER")
    assert bye.headers.get("Expires") == "0" and bye.headers.get("Contact") == "<sip:acct@192.0.2.1:5060;transport=udp>"
    carrier.answer(bye, 401, extra=[("WWW-Authenticate", CHALLENGE.format(n=9))])
    auth = carrier.take("REGISTER")
    check_digest(auth, "tpw", "n-9")
    assert auth.headers.get("Expires") == "0"
    carrier.answer(auth, 200)
    assert states(net)[-1].state is RegState.UNREGISTERED and net.core.proxy.upstream.state(7) is None
    assert not net.core.proxy.upstream.busy
    net.advance(7200)
    assert not carrier.inbox, "nothing more for a removed trunk"


def test_trunk_never_registered_is_not_unregistered() -> None:
    net, carrier = setup()
    carrier.answer(carrier.take("REGISTER"), 403)
    d = net.core.directory
    d.replace([d.tenant(1)], [], serial=d.serial + 1, trunks=(dataclasses.replace(CARRIER, register=False),))  # type: ignore[list-item]
    net.advance(0.001)
    assert not carrier.inbox
    assert states(net)[-1].state is RegState.UNREGISTERED and not net.core.proxy.upstream.busy


def test_removed_while_a_register_is_in_flight_unregisters_after_its_answer() -> None:
    net, carrier = setup()
    auth = challenge(carrier)
    d = net.core.directory
    d.replace([d.tenant(1)], [], serial=d.serial + 1, trunks=())  # type: ignore[list-item]
    net.advance(0.001)
    assert not carrier.inbox, "one transaction at a time"
    carrier.answer(auth, 200)
    bye = carrier.take("REGISTER")
    assert bye.headers.get("Expires") == "0"
    carrier.answer(bye, 200)
    assert not net.core.proxy.upstream.busy


def test_new_credentials_register_anew_after_unregistering_the_old_account() -> None:
    net, carrier = setup()
    first = register_ok(net, carrier)
    d = net.core.directory
    changed = dataclasses.replace(CARRIER, password="new-pw", name="renamed")
    d.replace([d.tenant(1)], [], serial=d.serial + 1, trunks=(changed,))  # type: ignore[list-item]
    net.advance(0.001)
    bye = carrier.take("REGISTER")
    assert bye.headers.get("Expires") == "0" and bye.call_id == first.call_id
    assert not carrier.inbox, "the new registration waits for the old one to go"
    carrier.answer(bye, 200)
    net.advance(0.001)
    new = challenge(carrier, 4)
    check_digest(new, "new-pw", "n-4")
    assert new.call_id != first.call_id and new.headers.get("Expires") == "3600"


def test_a_name_change_keeps_the_registration() -> None:
    net, carrier = setup()
    register_ok(net, carrier)
    d = net.core.directory
    d.replace([d.tenant(1)], [], serial=d.serial + 1, trunks=(dataclasses.replace(CARRIER, name="other"),))  # type: ignore[list-item]
    net.advance(0.001)
    assert not carrier.inbox and net.core.proxy.upstream.state(7) is RegState.REGISTERED


def test_clean_shutdown_unregisters_every_trunk() -> None:
    net, carrier = setup()
    register_ok(net, carrier)
    assert net.core.unregister_trunks(net.now, net.now_ms) is True
    net.pump()
    bye = carrier.take("REGISTER")
    assert bye.headers.get("Expires") == "0"
    assert states(net)[-1].state is RegState.UNREGISTERED
    carrier.answer(bye, 200)
    assert not net.core.proxy.upstream.busy
    net.advance(7200)
    assert not carrier.inbox, "no refresh after the stop"


def test_trunks_without_register_get_no_register() -> None:
    net, carrier = setup(dataclasses.replace(CARRIER, register=False))
    net.advance(7200)
    assert not carrier.inbox and not states(net)
    assert net.core.proxy.upstream.next_timer() is None


def test_tcp_trunk_contact_and_via_say_tcp() -> None:
    trunk = dataclasses.replace(CARRIER, transport="tcp")
    net, carrier = setup(trunk)
    req = carrier.take("REGISTER")
    assert req.headers.get("Contact") == "<sip:acct@192.0.2.1:5060;transport=tcp>"
    assert (req.headers.get("Via") or "").startswith("SIP/2.0/TCP 192.0.2.1:5060;")


def test_config_rejects_a_bad_expiry() -> None:
    from sipcore.config import parse_config
    from sipcore.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config("[proxy]\ntrunk_register_expires_s = 10\n", "x.toml")
    assert "x.toml" in str(e.value) and "proxy.trunk_register_expires_s" in str(e.value) and "60-86400" in str(e.value)
    assert parse_config("[proxy]\ntrunk_register_expires_s = 600\n", "x.toml").proxy.trunk_register_expires_s == 600
