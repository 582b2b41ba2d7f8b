"""Dead-call detection: in-dialog OPTIONS to both sides of a quiet call
(``[proxy] dialog_probe_s``, ``sipcore/proxy/keepalive.py``), on the in-memory network."""

from __future__ import annotations

import logging

import pytest

from sipcore.config import Config, ProxyConfig, parse_config
from sipcore.errors import ConfigError
from sipcore.message import Request

from .callnet import AUDIO, T0_MS, Net, make_core
from .test_calls import basic_call, two_phones


def probed_call(probe_s: int = 60):  # type: ignore[no-untyped-def]
    cfg = Config(proxy=ProxyConfig(trunk_probe_s=0, dialog_probe_s=probe_s))
    net, alice, bob = two_phones(Net(make_core(cfg)))
    inv, fwd, ok, call_a, call_b = basic_call(net, alice, bob)
    return net, alice, bob, call_a, call_b


def requests(ua, method: str) -> list[Request]:  # type: ignore[no-untyped-def]
    return [m for m in ua.inbox if isinstance(m, Request) and m.method == method]


def test_a_quiet_call_gets_an_in_dialog_options_to_each_side_after_the_interval() -> None:
    net, alice, bob, call_a, call_b = probed_call(60)
    net.advance(59)
    assert not requests(alice, "OPTIONS") and not requests(bob, "OPTIONS")
    net.advance(2)
    to_bob = bob.take("OPTIONS")
    to_alice = alice.take("OPTIONS")
    # built like the proxy's BYE: the side's Contact, the dialog's From/To/Call-ID; the CSeq is the
    # other side's last, not its next (§12.2.2: a later real request must not look out of order)
    assert to_bob.ruri == "sip:bob@10.0.0.2:5060"
    assert to_bob.headers.get("From") == call_a.local and to_bob.headers.get("To") == call_a.remote
    assert to_bob.cseq == 2 and to_bob.cseq_method == "OPTIONS"  # the caller's INVITE had CSeq 2
    assert to_alice.ruri == "sip:alice@10.0.0.0:5060"
    assert to_alice.headers.get("From") == call_a.remote and to_alice.headers.get("To") == call_a.local
    assert to_alice.cseq == 1
    for probe in (to_bob, to_alice):
        assert probe.call_id == "c1" and probe.max_forwards == 70
        assert len(probe.vias) == 1 and probe.vias[0].host == "192.0.2.1"
    assert len(net.core.proxy.keepalive) == 2, "one transaction per side"


def test_200_and_405_keep_the_call_and_the_probe_repeats() -> None:
    net, alice, bob, call_a, call_b = probed_call(60)
    net.advance(61)
    bob.answer(bob.take("OPTIONS"), 200)
    alice.answer(alice.take("OPTIONS"), 405)
    assert not requests(alice, "BYE") and not requests(bob, "BYE")
    assert all(leg.end_ms is None for leg in net.legs.values())
    net.advance(59)
    assert not requests(bob, "OPTIONS"), "the answered probe counts as traffic"
    net.advance(2)
    assert bob.take("OPTIONS") and alice.take("OPTIONS")
    alice.send(alice.in_dialog(call_a, "BYE"))
    bob.answer(bob.take("BYE"), 200)
    assert {(leg.end_reason, leg.voice_ms) for leg in net.legs.values()} == {("bye_caller", 122_000)}


def test_481_from_the_callee_ends_the_call_at_the_moment_it_was_last_heard(caplog) -> None:  # type: ignore[no-untyped-def]
    net, alice, bob, call_a, call_b = probed_call(60)
    net.advance(30)
    alice.send(alice.in_dialog(call_a, "INFO"))
    bob.answer(bob.take("INFO"), 200)  # bob last heard at 30 s
    assert alice.take(200)
    net.advance(61)  # quiet since 30 s: probed at 91 s
    alice.answer(alice.take("OPTIONS"), 200)
    with caplog.at_level(logging.INFO, logger="sipcore.proxy"):
        bob.answer(bob.take("OPTIONS"), 481)
    bye = alice.take("BYE")
    assert bye.headers.get("From") == call_a.remote and bye.cseq == 2, "after the probe's CSeq 1"
    assert bob.take("BYE"), "the dead side gets a BYE too (harmless after a 481)"
    for leg in net.legs.values():
        assert leg.end_reason == "timeout" and leg.end_ms == T0_MS + 30_000 and leg.voice_ms == 30_000
    assert "call c1 ended: callee did not answer an in-dialog OPTIONS (481)" in caplog.text
    assert len(net.core.proxy.dialogs) == 0


def test_a_probe_without_answer_ends_the_call_at_the_last_answered_probe() -> None:
    net, alice, bob, call_a, call_b = probed_call(60)
    net.advance(61)
    alice.answer(alice.take("OPTIONS"), 200)
    bob.answer(bob.take("OPTIONS"), 200)  # bob last heard at 61 s
    net.advance(61)
    alice.answer(alice.take("OPTIONS"), 200)
    bob.inbox.clear()  # bob crashed: the probe and its retransmissions go unanswered
    net.advance(31)
    assert not requests(alice, "BYE"), "Timer F (64*T1 = 32 s) has not fired yet"
    net.advance(2)
    assert alice.take("BYE")
    for leg in net.legs.values():
        assert leg.end_reason == "timeout" and leg.end_ms == T0_MS + 61_000 and leg.voice_ms == 61_000


def test_a_dead_caller_ends_the_call_with_bye_to_the_callee() -> None:
    net, alice, bob, call_a, call_b = probed_call(60)
    net.advance(61)
    bob.answer(bob.take("OPTIONS"), 200)
    alice.answer(alice.take("OPTIONS"), 408)
    assert bob.take("BYE")
    assert {(leg.end_reason, leg.end_ms) for leg in net.legs.values()} == {("timeout", T0_MS)}


def test_in_dialog_traffic_postpones_the_probe() -> None:
    net, alice, bob, call_a, call_b = probed_call(60)
    net.advance(50)
    alice.send(alice.in_dialog(call_a, "INFO"))
    bob.answer(bob.take("INFO"), 200)
    net.advance(50)  # 100 s: 50 s after the INFO
    reinv = alice.in_dialog(call_a, "INVITE", body=AUDIO)
    alice.send(reinv)
    bob.answer(bob.take("INVITE"), 200, sdp=AUDIO)
    alice.confirm(reinv, alice.take(200))
    net.advance(59)  # 159 s: 59 s after the re-INVITE
    assert not requests(alice, "OPTIONS") and not requests(bob, "OPTIONS"), "a talking call is not probed"
    net.advance(2)
    assert alice.take("OPTIONS") and bob.take("OPTIONS")


def test_in_dialog_requests_from_the_callee_postpone_the_probe_too() -> None:
    net, alice, bob, call_a, call_b = probed_call(60)
    net.advance(40)
    bob.send(bob.in_dialog(call_b, "INFO"))
    info = alice.take("INFO")
    net.advance(21)  # the request alone is traffic, before any answer
    assert not requests(alice, "OPTIONS") and not requests(bob, "OPTIONS")
    alice.answer(info, 200)


def test_dialog_probe_s_zero_sends_nothing() -> None:
    net, alice, bob, call_a, call_b = probed_call(0)
    for _ in range(10):
        net.advance(200)
    assert not requests(alice, "OPTIONS") and not requests(bob, "OPTIONS")
    assert all(leg.end_ms is None for leg in net.legs.values())


def test_the_default_config_probes_every_120_s() -> None:
    assert ProxyConfig().dialog_probe_s == 120
    net, alice, bob = two_phones()
    basic_call(net, alice, bob)
    net.advance(119)
    assert not requests(bob, "OPTIONS")
    net.advance(2)
    assert bob.take("OPTIONS")


def test_one_probe_per_side_in_flight() -> None:
    net, alice, bob, call_a, call_b = probed_call(10)
    net.advance(11)
    first = bob.take("OPTIONS")
    assert alice.take("OPTIONS")
    net.advance(11)  # the first probes are still out (Timer F is 32 s): none sent again
    assert all(m.branch == first.branch for m in requests(bob, "OPTIONS")), "only retransmissions"
    assert len(net.core.proxy.keepalive) == 2


def test_config_rejects_a_bad_dialog_probe_interval() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config("[proxy]\ndialog_probe_s = 5\n", "x.toml")
    assert "x.toml" in str(e.value) and "proxy.dialog_probe_s" in str(e.value) and "10-86400" in str(e.value)
    with pytest.raises(ConfigError, match="must not be negative"):
        parse_config("[proxy]\ndialog_probe_s = -1\n", "x.toml")
    assert parse_config("[proxy]\ndialog_probe_s = 0\n", "x.toml").proxy.dialog_probe_s == 0
    assert parse_config("[proxy]\ndialog_probe_s = 30\n", "x.toml").proxy.dialog_probe_s == 30


def test_the_example_config_documents_the_key() -> None:
    from sipcore.config import default_config

    assert default_config().proxy.dialog_probe_s == 120


def test_probes_never_make_the_callers_next_request_look_out_of_order() -> None:
    """RFC 3261 §12.2.2: the callee refuses (500) an in-dialog request whose CSeq
    is lower than the highest it has seen; the probes, sent as if from the
    caller, must not raise that bar above the caller's own next CSeq."""
    net, alice, bob, call_a, call_b = probed_call(60)
    seen: list[int] = []
    for _ in range(3):
        net.advance(61)
        probe = bob.take("OPTIONS")
        seen.append(probe.cseq)
        bob.answer(probe, 200)
        alice.answer(alice.take("OPTIONS"), 200)
    alice.send(alice.in_dialog(call_a, "BYE"))
    bye = bob.take("BYE")
    assert max(seen) < bye.cseq, f"probes {seen} vs the caller's BYE {bye.cseq}"
