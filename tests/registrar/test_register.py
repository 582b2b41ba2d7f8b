"""REGISTER rules (RFC 3261 §10.3, RFC 5626 §6, RFC 3327) with a fake clock."""

from __future__ import annotations

import pytest

from sipcore.config import RegistrarConfig
from sipcore.errors import ParseError
from sipcore.flow import Flow
from sipcore.message import Request, parse
from sipcore.registrar import LocationService, Registrar

AOR = "sip:alice@example.com"
FLOW = Flow("udp", "192.0.2.10", 5060, 1)
T0 = 1_700_000_000_000


def register(
    contacts: list[str] | None = None,
    expires: int | None = None,
    call_id: str = "c1",
    cseq: int = 1,
    extra: str = "",
) -> Request:
    lines = [
        "REGISTER sip:example.com SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKreg{cseq};rport",
        "From: <sip:alice@example.com>;tag=f1",
        "To: <sip:alice@example.com>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
    ]
    lines += [f"Contact: {c}" for c in (contacts or [])]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if extra:
        lines.append(extra)
    lines.append("Content-Length: 0")
    msg = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


@pytest.fixture
def reg() -> Registrar:
    cfg = RegistrarConfig(
        min_expires_s=60, max_expires_s=3600, default_expires_s=1800, expires_jitter_pct=10, max_contacts_per_aor=3
    )
    return Registrar(cfg, LocationService(max_bindings=100), random=lambda: 0.5)


def do(reg: Registrar, req: Request, now: int = T0):  # type: ignore[no-untyped-def]
    return reg.register(req, AOR, FLOW, tenant_id=1, device_id=7, now_ms=now, to_tag="srv")


def contact_expires(resp) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {str(c.uri): c.expires for c in resp.contacts}


def test_basic_binding_and_200_lists_it(reg: Registrar) -> None:
    out = do(reg, register(["<sip:alice@192.0.2.10:5060>"], expires=600))
    assert out.response.status == 200 and out.response.to_tag == "srv"
    assert contact_expires(out.response) == {"sip:alice@192.0.2.10:5060": 600}
    (b,) = out.upserts
    assert (b.flow, b.expires_ms, b.tenant_id, b.device_id) == (FLOW, T0 + 600_000, 1, 7)
    assert out.response.headers.get("Date", "").endswith("GMT")


def test_contact_param_beats_header_and_default(reg: Registrar) -> None:
    out = do(reg, register(["<sip:a@h1>;expires=120", "<sip:a@h2>"], expires=300))
    assert contact_expires(out.response) == {"sip:a@h1": 120, "sip:a@h2": 300}
    out = do(reg, register(["<sip:a@h3>"], call_id="c2"))
    assert contact_expires(out.response)["sip:a@h3"] == 1800  # default_expires_s


def test_too_brief_gets_423_with_min_expires(reg: Registrar) -> None:
    out = do(reg, register(["<sip:a@h1>"], expires=30))
    assert out.response.status == 423 and out.response.headers.get("Min-Expires") == "60"
    assert not out.upserts and len(reg.location) == 0


def test_clamped_to_max_with_jitter(reg: Registrar) -> None:
    out = do(reg, register(["<sip:a@h1>"], expires=86400))
    assert contact_expires(out.response) == {"sip:a@h1": 3600 - 180}  # 10% * 0.5 off
    out = do(reg, register(["<sip:a@h1>"], expires=3599, cseq=2))
    assert contact_expires(out.response) == {"sip:a@h1": 3599}  # below max: granted as asked


def test_refresh_and_removal_with_expires_zero(reg: Registrar) -> None:
    do(reg, register(["<sip:a@h1>"], expires=600))
    out = do(reg, register(["<sip:a@h1>"], expires=900, cseq=2), now=T0 + 1000)
    assert [b.expires_ms for b in out.upserts] == [T0 + 1000 + 900_000]
    out = do(reg, register(["<sip:a@h1>;expires=0"], cseq=3))
    assert [b.uri for b in out.removed] == ["sip:a@h1"] and len(reg.location) == 0
    assert out.response.status == 200 and out.response.contacts == []


def test_same_call_id_needs_higher_cseq(reg: Registrar) -> None:
    do(reg, register(["<sip:a@h1>"], expires=600, cseq=5))
    out = do(reg, register(["<sip:a@h1>"], expires=0, cseq=5))
    assert out.response.status == 400 and len(reg.location) == 1
    out = do(reg, register(["<sip:a@h1>"], expires=0, cseq=4))
    assert out.response.status == 400
    out = do(reg, register(["<sip:a@h1>"], expires=0, call_id="other", cseq=1))
    assert out.response.status == 200 and len(reg.location) == 0  # new Call-ID: allowed


def test_star_removes_all_only_with_expires_zero(reg: Registrar) -> None:
    do(reg, register(["<sip:a@h1>", "<sip:a@h2>"], expires=600))
    assert do(reg, register(["*"], expires=600, cseq=2)).response.status == 400
    assert do(reg, register(["*"], cseq=3)).response.status == 400  # no Expires at all
    out = do(reg, register(["*"], expires=0, cseq=4))
    assert out.response.status == 200 and len(out.removed) == 2 and len(reg.location) == 0


def test_query_without_contact(reg: Registrar) -> None:
    do(reg, register(["<sip:a@h1>"], expires=600))
    out = do(reg, register(None, cseq=2), now=T0 + 100_000)
    assert contact_expires(out.response) == {"sip:a@h1": 500} and not out.upserts


def test_instance_reg_id_replaces_after_reboot(reg: Registrar) -> None:
    inst = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'
    do(reg, register([f"<sip:a@192.0.2.10:5060>;{inst};reg-id=1"], expires=600, extra="Supported: outbound"))
    out = do(
        reg,
        register(
            [f"<sip:a@192.0.2.10:40000>;{inst};reg-id=1"],
            expires=600,
            call_id="after-reboot",
            extra="Supported: outbound",
        ),
    )
    assert len(reg.location) == 1
    assert contact_expires(out.response) == {"sip:a@192.0.2.10:40000": 600}
    assert out.response.headers.get("Require") == "outbound"
    assert out.response.contacts[0].instance == "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"
    do(reg, register([f"<sip:a@192.0.2.10:40001>;{inst};reg-id=2"], expires=600, call_id="x"))
    assert len(reg.location) == 2  # a second flow of the same instance


def test_without_instance_reboot_piles_up_until_limit(reg: Registrar) -> None:
    for i in range(3):
        assert do(reg, register([f"<sip:a@h:{5000 + i}>"], call_id=f"c{i}")).response.status == 200
    out = do(reg, register(["<sip:a@h:6000>"], call_id="c9"))
    assert (out.response.status, out.response.reason) == (403, "Too Many Registrations")
    assert len(reg.location) == 3


def test_path_stored_and_returned_when_supported(reg: Registrar) -> None:
    req = register(["<sip:a@h1>"], expires=600, extra="Path: <sip:edge.example.net;lr>\r\nSupported: path")
    out = do(reg, req)
    assert out.upserts[0].path == ("<sip:edge.example.net;lr>",)
    assert out.response.headers.get_all("Path") == ["<sip:edge.example.net;lr>"]
    out = do(reg, register(["<sip:a@h2>"], expires=600, call_id="z", extra="Path: <sip:edge.example.net;lr>"))
    assert out.response.headers.get_all("Path") == []  # UA did not say Supported: path


def test_unsupported_require_gets_420(reg: Registrar) -> None:
    out = do(reg, register(["<sip:a@h1>"], extra="Require: foo, path"))
    assert out.response.status == 420 and out.response.headers.get("Unsupported") == "foo"


def test_malformed_contact_is_a_parse_error(reg: Registrar) -> None:
    with pytest.raises(ParseError):
        do(reg, register(["sip:user@example.com?Route=%3Csip:x%3E"]))
    with pytest.raises(ParseError):
        do(reg, register(["<sip:a@h1>;expires=abc"]))


def test_expiry_removes_and_table_bounded() -> None:
    loc = LocationService(max_bindings=2)
    r = Registrar(
        RegistrarConfig(
            min_expires_s=60, max_expires_s=3600, default_expires_s=600, expires_jitter_pct=0, max_contacts_per_aor=10
        ),
        loc,
        random=lambda: 0.0,
    )
    r.register(register(["<sip:a@h1>", "<sip:a@h2>"], expires=60), AOR, FLOW, 1, 7, T0, "t")
    out = r.register(register(["<sip:a@h3>"], expires=60, call_id="n"), AOR, FLOW, 1, 7, T0, "t")
    assert out.response.status == 503
    assert loc.expire(T0 + 59_999) == [] and len(loc) == 2
    assert {b.uri for b in loc.expire(T0 + 60_000)} == {"sip:a@h1", "sip:a@h2"} and len(loc) == 0
    assert loc.count_for_tenant(1) == 0


def test_refreshed_binding_not_expired_by_stale_heap_entry() -> None:
    loc = LocationService()
    r = Registrar(RegistrarConfig(expires_jitter_pct=0), loc, random=lambda: 0.0)
    r.register(register(["<sip:a@h1>"], expires=60), AOR, FLOW, 1, 7, T0, "t")
    r.register(register(["<sip:a@h1>"], expires=120, cseq=2), AOR, FLOW, 1, 7, T0 + 30_000, "t")
    assert loc.expire(T0 + 60_000) == [] and len(loc) == 1
    assert len(loc.expire(T0 + 150_000)) == 1 and loc.count_for_tenant(1) == 0


def test_instance_replacement_reports_the_old_contact(reg: Registrar) -> None:
    inst = '+sip.instance="<urn:uuid:1>";reg-id=1'
    do(reg, register([f"<sip:a@h:5060>;{inst}"], expires=600))
    out = do(reg, register([f"<sip:a@h:5070>;{inst}"], expires=600, call_id="new"))
    assert [b.uri for b in out.removed] == ["sip:a@h:5060"] and [b.uri for b in out.upserts] == ["sip:a@h:5070"]
    out = do(reg, register([f"<sip:a@h:5070>;{inst}"], expires=600, call_id="new", cseq=2))
    assert out.removed == []  # a plain refresh deletes nothing


def test_same_contact_twice_in_one_register_is_one_binding(reg: Registrar) -> None:
    out = do(reg, register(["<sip:alice@h:5060>;x=1", "<sip:alice@h:5060>;x=2"], expires=600))
    assert len(reg.location) == 1 and len(out.upserts) == 1 and out.removed == []
    assert out.upserts[0].contact.endswith(";x=2")


def test_reg_id_ignored_without_instance_or_behind_a_non_outbound_edge(reg: Registrar) -> None:
    out = do(reg, register(["<sip:a@h:5060>;reg-id=1"], expires=600, extra="Supported: outbound"))
    assert out.upserts[0].reg_id is None and out.response.headers.get("Require") is None
    inst = '+sip.instance="<urn:uuid:2>";reg-id=1'
    out = do(
        reg,
        register(
            [f"<sip:a@h:5070>;{inst}"],
            expires=600,
            call_id="p",
            extra="Path: <sip:edge.example.net;lr>\r\nSupported: outbound, path",
        ),
    )
    assert out.upserts[0].reg_id is None and out.response.headers.get("Require") is None
    out = do(
        reg,
        register(
            [f"<sip:a@h:5080>;{inst}"],
            expires=600,
            call_id="q",
            extra="Path: <sip:edge.example.net;lr;ob>\r\nSupported: outbound, path",
        ),
    )
    assert out.upserts[0].reg_id == 1 and out.response.headers.get("Require") == "outbound"
