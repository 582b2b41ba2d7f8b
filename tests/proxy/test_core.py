"""The core as a phone sees it, on an in-memory network (no sockets, fake clocks)."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest

from sipcore.auth import compute_ha1
from sipcore.config import Config, ServerConfig
from sipcore.flow import Flow
from sipcore.message import Response, parse
from sipcore.proxy.core import BindingsChanged, Core, UsageRecorded
from sipcore.proxy.directory import DeviceCredentials, Directory, TenantInfo

DOMAIN = "example.com"
PHONE = Flow("udp", "203.0.113.7", 40000, 1)
T0_MS = 1_780_000_000_000


def device(device_id: int, user: str, password: str) -> DeviceCredentials:
    return DeviceCredentials(
        device_id,
        1,
        DOMAIN,
        user,
        compute_ha1(user, DOMAIN, password, "MD5"),
        compute_ha1(user, DOMAIN, password, "SHA-256"),
    )


def make_core(config: Config | None = None) -> Core:
    d = Directory()
    d.replace(
        [TenantInfo(1, DOMAIN, "UTC")],
        [
            device(10, "alice", "s3cret"),
            device(11, "bob", "pw"),
        ],
        serial=1,
    )
    counter = itertools.count(1)
    salt = itertools.count(1)
    return Core(
        config or Config(),
        d,
        secret=b"k" * 32,
        new_id=lambda: f"id{next(counter)}",
        random=lambda: 0.0,
        nonce_salt=lambda: next(salt).to_bytes(8, "big"),
        parse=parse,
    )


class Phone:
    """Just enough UAC to register with digest (qop=auth)."""

    def __init__(self, core: Core, user: str = "alice", password: str = "s3cret", flow: Flow = PHONE) -> None:
        self.core, self.user, self.password, self.flow = core, user, password, flow
        self.cseq = 0
        self.now = 100.0
        self.now_ms = T0_MS

    def send(self, text: str) -> list[Any]:
        self.core.receive(text.encode(), self.flow, self.now, self.now_ms)
        return [parse(o.data) for o in self.core.messages_to_send()]

    def register(
        self,
        expires: int = 600,
        auth: str | None = None,
        contact: str | None = None,
        branch: str | None = None,
        via_host: str = "10.0.0.7",
    ) -> Response:
        self.cseq += 1
        contact = contact or f"<sip:{self.user}@{via_host}:5060>"
        lines = [
            f"REGISTER sip:{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/UDP {via_host}:5060;rport;branch={branch or f'z9hG4bK{self.user}{self.cseq}'}",
            f"From: <sip:{self.user}@{DOMAIN}>;tag=ft",
            f"To: <sip:{self.user}@{DOMAIN}>",
            f"Call-ID: reg-{self.user}",
            f"CSeq: {self.cseq} REGISTER",
            "Max-Forwards: 70",
            f"Contact: {contact}",
            f"Expires: {expires}",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        (resp,) = self.send("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n")
        return resp

    def answer(self, challenge: Response, algorithm: str = "MD5", nc: int = 1) -> str:
        ch = next(c for c in challenge.www_authenticate if c.algorithm == algorithm)
        h = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
        ha1 = h(f"{self.user}:{ch.realm}:{self.password}".encode()).hexdigest()
        uri = f"sip:{DOMAIN}"
        ha2 = h(f"REGISTER:{uri}".encode()).hexdigest()
        ncs = f"{nc:08x}"
        resp = h(f"{ha1}:{ch.nonce}:{ncs}:abc:auth:{ha2}".encode()).hexdigest()
        return (
            f'Digest username="{self.user}", realm="{ch.realm}", nonce="{ch.nonce}", uri="{uri}", '
            f'response="{resp}", algorithm={algorithm}, qop=auth, nc={ncs}, cnonce="abc"'
        )


def events(core: Core) -> list[Any]:
    out = []
    while (ev := core.next_event()) is not None:
        out.append(ev)
    return out


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_challenge_then_200(algorithm: str) -> None:
    core = make_core()
    phone = Phone(core)
    ch = phone.register()
    assert ch.status == 401 and {c.algorithm for c in ch.www_authenticate} == {"SHA-256", "MD5"}
    assert ch.vias[0].received == "203.0.113.7" and ch.vias[0].rport == 40000  # RFC 3581
    ok = phone.register(auth=phone.answer(ch, algorithm))
    assert ok.status == 200 and [c.expires for c in ok.contacts] == [600]
    evs = events(core)
    assert any(isinstance(e, UsageRecorded) and e.mau and e.mau[0].device_id == 10 for e in evs)
    (bc,) = [e for e in evs if isinstance(e, BindingsChanged)]
    assert bc.upserts[0].flow == PHONE and bc.upserts[0].aor == "sip:alice@example.com"
    gauges = [g for e in evs if isinstance(e, UsageRecorded) for g in e.gauges]
    assert [(g.metric, g.value) for g in gauges] == [("connections.peak", 1)]


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    core = make_core()
    bad = Phone(core, password="wrong")
    ghost = Phone(core, user="nobody", password="x")
    r1 = bad.register(auth=bad.answer(bad.register()))
    r2 = ghost.register(auth=ghost.answer(ghost.register()))
    assert r1.status == r2.status == 401
    shape = lambda r: sorted((c.algorithm, c.realm, c.qop, c.stale) for c in r.www_authenticate)  # noqa: E731
    assert shape(r1) == shape(r2)
    assert not [e for e in events(core) if isinstance(e, BindingsChanged)]


def test_replayed_authorization_is_challenged_not_accepted() -> None:
    core = make_core()
    phone = Phone(core)
    auth = phone.answer(phone.register())
    assert phone.register(auth=auth).status == 200
    assert phone.register(auth=auth).status == 401  # same nonce and nc, new transaction


def test_retransmitted_register_after_200_gets_the_same_200() -> None:
    core = make_core()
    phone = Phone(core)
    auth = phone.answer(phone.register())
    phone.cseq += 1
    text = (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKrt1\r\n"
        f"From: <sip:alice@{DOMAIN}>;tag=1\r\nTo: <sip:alice@{DOMAIN}>\r\nCall-ID: rt\r\n"
        f"CSeq: {phone.cseq} REGISTER\r\nContact: <sip:alice@10.0.0.7>\r\nAuthorization: {auth}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    core.receive(text.encode(), PHONE, 1.0, T0_MS)
    first = [o.data for o in core.messages_to_send()]
    core.receive(text.encode(), PHONE, 1.2, T0_MS)  # the retransmission: absorbed, not re-run
    again = [o.data for o in core.messages_to_send()]
    assert len(first) == 1 and parse(first[0]).status == 200 and again == first


def test_challenges_keep_no_transaction_state() -> None:
    core = make_core()
    phones = [Phone(core, user=f"x{i}") for i in range(50)]
    assert all(p.register().status == 401 for p in phones)
    assert len(core.layer) == 0  # an unauthenticated flood holds no memory for Timer J


def test_a_challenge_and_its_retransmission_are_answered_without_a_transaction() -> None:
    core = make_core()
    phone = Phone(core)
    first = phone.register(branch="z9hG4bKsame")
    phone.cseq -= 1
    again = phone.register(branch="z9hG4bKsame")  # the retransmission: challenged afresh
    assert first.status == again.status == 401
    assert first.www_authenticate[0].nonce != again.www_authenticate[0].nonce
    assert len(core.layer) == 0 and core.layer.next_timer() is None


def test_a_full_transaction_table_stops_registrations_but_not_challenges() -> None:
    """Challenges keep no state, so they go on when the table is full (they
    used to get 503); what would need a transaction still gets 503."""
    core = make_core(Config(server=ServerConfig(max_transactions=1)))
    alice = Phone(core)
    assert alice.register(auth=alice.answer(alice.register())).status == 200  # its transaction: Timer J
    bob = Phone(core, user="bob", password="pw")
    challenge = bob.register()
    assert challenge.status == 401
    refused = bob.register(auth=bob.answer(challenge))
    assert (refused.status, refused.headers.get("Retry-After")) == (503, "5")


def test_a_request_matching_a_transaction_gets_its_answer_even_without_credentials() -> None:
    """§17.2.3 matches on the branch, not the credentials: the stateless path
    must not answer what a transaction already answered."""
    core = make_core()
    phone = Phone(core)
    auth = phone.answer(phone.register())
    ok = phone.register(auth=auth, branch="z9hG4bKdone")
    assert ok.status == 200
    phone.cseq -= 1
    assert phone.register(branch="z9hG4bKdone").to_bytes() == ok.to_bytes()


def test_a_malformed_to_without_credentials_gets_400_and_no_state() -> None:
    core = make_core()
    text = (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKbadto\r\n"
        f"From: <sip:alice@{DOMAIN}>;tag=1\r\nTo: <sip:alice@{DOMAIN}\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    core.receive(text.encode(), PHONE, 1.0, T0_MS)
    (out,) = core.messages_to_send()  # raw: the answer echoes the broken To, which parse() refuses
    assert out.data.startswith(b"SIP/2.0 400 ") and b"To" in out.data.split(b"\r\n", 1)[0]
    assert len(core.layer) == 0


def test_other_users_aor_forbidden_and_unknown_domain() -> None:
    core = make_core()
    phone = Phone(core)
    ch = phone.register(contact="<sip:bob@10.0.0.7>")
    # alice authenticates but asks for bob's AOR via To: build by hand
    phone.cseq += 1
    auth = phone.answer(ch)
    text = (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKx9\r\n"
        f"From: <sip:bob@{DOMAIN}>;tag=1\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:bob@10.0.0.7>\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
    )
    (resp,) = phone.send(text)
    assert resp.status == 403
    text = text.replace(DOMAIN, "other.org").replace("z9hG4bKx9", "z9hG4bKx10")
    (resp,) = phone.send(text)
    assert (resp.status, resp.reason) == (403, "Unknown Domain")


def test_options_answered_and_unknown_methods_501() -> None:
    core = make_core()
    phone = Phone(core)
    (r,) = phone.send(
        "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKo1\r\n"
        "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:example.com>\r\nCall-ID: o\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    assert r.status == 200 and "REGISTER" in (r.headers.get("Allow") or "")
    (r,) = phone.send(
        "PUBLISH sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKs1\r\n"
        "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: s\r\n"
        "CSeq: 1 PUBLISH\r\nContent-Length: 0\r\n\r\n"
    )
    assert r.status == 501


def test_unparsable_request_gets_400_and_garbage_is_dropped() -> None:
    core = make_core()
    phone = Phone(core)
    out = phone.send(
        "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKb\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    assert [r.status for r in out] == [400]
    assert phone.send("\x00\x01 hello") == []


def test_malformed_contact_gets_400_after_auth() -> None:
    core = make_core()
    phone = Phone(core)
    ch = phone.register()
    r = phone.register(auth=phone.answer(ch), contact="sip:alice@h?Route=x")
    assert r.status == 400


def test_bindings_expire_on_timer() -> None:
    core = make_core()
    phone = Phone(core)
    assert phone.register(expires=60, auth=phone.answer(phone.register(expires=60))).status == 200
    events(core)
    deadline = core.next_timer()
    assert deadline is not None
    core.handle_timer(100.0 + 61, T0_MS + 61_000)
    evs = [e for e in events(core) if isinstance(e, BindingsChanged)]
    assert evs and evs[0].removed[0].aor == "sip:alice@example.com" and len(core.location) == 0


def test_bindings_of_disabled_devices_are_dropped_on_reload() -> None:
    core = make_core()
    alice, bob = Phone(core), Phone(core, user="bob", password="pw", flow=Flow("udp", "203.0.113.8", 40000, 1))
    assert alice.register(auth=alice.answer(alice.register())).status == 200
    assert bob.register(auth=bob.answer(bob.register())).status == 200
    events(core)
    d = core.directory
    keep = [device(10, "alice", "s3cret")]
    d.replace([TenantInfo(1, DOMAIN, "UTC")], keep, serial=2)  # bob removed
    assert core.provisioning_changed(T0_MS + 1000) == 1
    (bc,) = [e for e in events(core) if isinstance(e, BindingsChanged)]
    assert [b.aor for b in bc.removed] == ["sip:bob@example.com"] and len(core.location) == 1


def test_rport_always_brings_received_and_keepalives_are_silent() -> None:
    core = make_core()
    phone = Phone(core, flow=Flow("udp", "10.0.0.7", 40000, 1))
    ch = phone.register()  # Via sent-by 10.0.0.7 equals the source address
    assert ch.vias[0].received == "10.0.0.7" and ch.vias[0].rport == 40000  # RFC 3581 §4
    for ka in (b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00"):
        core.receive(ka, PHONE, 1.0, T0_MS)
        assert core.messages_to_send() == []


def test_ipv6_failures_counted_per_64() -> None:
    from sipcore.proxy.core import _failure_key

    assert _failure_key("2001:db8::1") == _failure_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert _failure_key("192.0.2.1") == "192.0.2.1"
