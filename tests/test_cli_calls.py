"""`sipcore trunk ...`, `sipcore trunk did ...` and `sipcore calls` end to end on a tmp_path database."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from sipcore.cli import main
from sipcore.metering.legs import END_BYE_CALLER, END_CANCEL, LegRecord, leg_id
from sipcore.store import Store

# 2025-01-15T00:00:00Z
T0 = 1_736_899_200_000


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def one_error_line(capsys: pytest.CaptureFixture[str], prefix: str = "sipcore: ") -> str:
    err = capsys.readouterr().err
    assert err.startswith(prefix) and err.count("\n") == 1, err
    return err


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    argv = ["--db", str(tmp_path / "var" / "test.db")]
    assert run("tenant", "add", "example.com", *argv)[0] == 0
    assert run("tenant", "add", "example.org", *argv)[0] == 0
    assert run("device", "add", "alice@example.com", "--password", "pw", *argv)[0] == 0
    return argv


def test_trunk_add_list_remove(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        "trunk", "add", "carrier", "--tenant", "Example.com", "--address", "[2001:DB8::1]:5070", "--transport",
        "tcp", "--prefix", "+1", "--prefix", "00", "--codecs", "pcmu,G722", "--username", "acct", "--password",
        "s3cret", "--register", "--priority", "5", "--allow-transit", *db,
    )  # fmt: skip
    assert (code, out) == (0, "added trunk carrier (id 1) for example.com at tcp:[2001:db8::1]:5070\n")
    assert run("trunk", "add", "org", "--tenant", "example.org", "--address", "192.0.2.9", *db)[0] == 0
    code, out = run("trunk", "list", *db)
    lines = out.splitlines()
    assert code == 0 and "s3cret" not in out, "never print a password"
    assert lines[0].split() == [
        "NAME", "TENANT", "ADDRESS", "PREFIXES", "CODECS", "USERNAME", "REGISTER", "PRIORITY", "TRANSIT", "INBOUND",
        "ENABLED", "REGISTRATION",
    ]  # fmt: skip
    assert lines[1].split() == [
        "carrier", "example.com", "tcp:[2001:db8::1]:5070", "+1,00", "PCMU,G722", "acct", "yes", "5", "yes", "address",
        "yes", "pending",
    ]  # fmt: skip
    assert lines[2].split() == [
        "org", "example.org", "udp:192.0.2.9:5060", "-", "any", "-", "no", "100", "no", "address", "yes", "-",
    ]  # fmt: skip
    code, out = run("trunk", "list", "--tenant", "example.org", *db)
    assert code == 0 and len(out.splitlines()) == 2 and "org" in out
    assert run("trunk", "remove", "Carrier", *db) == (0, "removed trunk Carrier\n")
    assert len(run("trunk", "list", *db)[1].splitlines()) == 2
    assert run("trunk", "remove", "carrier", *db)[0] == 1
    assert "no trunk carrier" in one_error_line(capsys)


def test_a_trunk_added_by_name_is_told_it_is_looked_up(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run("trunk", "add", "named", "--tenant", "example.com", "--address", "sip.carrier.example", *db)[0] == 0
    note = capsys.readouterr().err
    assert note.startswith("note: sip.carrier.example is looked up when the server loads it and every minute")
    assert run("trunk", "add", "byip", "--tenant", "example.com", "--address", "[2001:db8::7]:5060", *db)[0] == 0
    assert capsys.readouterr().err == "", "an address: nothing to say"


def test_trunk_account_domain_is_stored_and_shown(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--address", "192.0.2.7:5080", "--username", "acct77", "--password", "p", "--register"]
    assert run("trunk", "add", "c", "--tenant", "example.com", *argv, "--domain", "Carrier.Example", *db)[0] == 0
    code, out = run("trunk", "list", *db)
    assert code == 0 and out.splitlines()[1].split()[5] == "acct77@carrier.example"
    item = json.loads(run("trunk", "list", "--format", "json", *db)[1])["trunks"][0]
    assert (item["username"], item["domain"]) == ("acct77", "carrier.example")
    bad = ["--address", "192.0.2.7:5081", "--domain", "not a domain"]
    assert run("trunk", "add", "d", "--tenant", "example.com", *bad, *db)[0] == 2
    assert "--domain" in one_error_line(capsys)


def test_trunk_list_shows_the_registration_state(db: list[str]) -> None:
    from sipcore.store.calls import TrunkRegistration

    for name, port in (("c1", "5061"), ("c2", "5062"), ("c3", "5063"), ("c4", "5064")):
        argv = ["--address", f"192.0.2.1:{port}", "--username", "u", "--password", "p", "--register"]
        assert run("trunk", "add", name, "--tenant", "example.com", *argv, *db)[0] == 0
    now = int(time.time() * 1000) // 60_000 * 60_000
    tomorrow = now + 86_400_000

    async def write() -> None:
        async with await Store.open(db[1]) as s:
            await s.record_trunk_registrations(
                [
                    TrunkRegistration(1, "registered", 200, "OK", tomorrow, now + 3_600_000, now),
                    TrunkRegistration(2, "failed", 403, "Forbidden", None, now + 60_000, now),
                    TrunkRegistration(3, "failed", None, "no answer (timeout)", None, now + 30_000, now),
                    TrunkRegistration(4, "registered", 200, "OK", now - 60_000, now - 120_000, now - 3_600_000),
                ]
            )

    asyncio.run(write())
    code, out = run("trunk", "list", *db)
    header, *lines = out.splitlines()
    col = header.index("REGISTRATION")
    cells = {line.split()[0]: line[col:] for line in lines}

    def minute(ms: int) -> str:
        today = time.gmtime().tm_yday == time.gmtime(ms / 1000).tm_yday
        return time.strftime("%H:%MZ" if today else "%Y-%m-%d %H:%MZ", time.gmtime(ms / 1000))

    assert (
        cells
        == {
            "c1": f"registered (expires {minute(tomorrow)})",
            "c2": f"failed: 403 Forbidden, retry {minute(now + 60_000)}",
            "c3": f"failed: no answer (timeout), retry {minute(now + 30_000)}",
            "c4": f"registered (expired {minute(now - 60_000)})",
        }
        or minute(now) == "00:00Z"
    ), out  # a run at midnight UTC prints dates
    code, out = run("trunk", "list", "--format", "json", *db)
    trunks = {t["name"]: t for t in json.loads(out)["trunks"]}
    assert code == 0 and trunks["c2"]["registration"]["status"] == 403
    assert trunks["c1"]["registration"]["state"] == "registered"
    assert trunks["c1"]["registration"]["expires_at"].endswith("Z") and trunks["c3"]["registration"]["status"] is None
    assert trunks["c1"]["register"] is True and "password" not in trunks["c1"]


def test_trunk_inbound_digest_is_stored_and_listed(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--tenant", "example.com", "--username", "pbx", "--password", "s3cret", *db]
    assert run("trunk", "add", "pbx", "--address", "192.0.2.1", "--inbound", "digest", *argv)[0] == 0
    assert run("trunk", "add", "sbc", "--address", "192.0.2.2", "--inbound", "both", *argv)[0] == 1
    assert "trunk pbx already authenticates inbound as pbx" in one_error_line(capsys)
    code, out = run("trunk", "list", *db)
    header, line = out.splitlines()
    assert code == 0 and line[header.index("INBOUND") :].split()[0] == "digest" and "s3cret" not in out
    code, out = run("trunk", "list", "--format", "json", *db)
    (item,) = json.loads(out)["trunks"]
    assert (item["inbound"], item["username"]) == ("digest", "pbx") and "s3cret" not in out


def test_trunk_password_from_stdin(db: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin\n"))
    argv = ["--address", "192.0.2.1:5060", "--username", "u", "--password", "-"]
    assert run("trunk", "add", "t", "--tenant", "example.com", *argv, *db)[0] == 0
    with sqlite3.connect(db[1]) as c:
        assert c.execute("SELECT password FROM trunks").fetchone() == ("from-stdin",)


def test_trunk_failures_exit_1(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--address", "192.0.2.1:5060", *db]
    assert run("trunk", "add", "a", "--tenant", "example.com", *base)[0] == 0
    for argv, message in [
        (["trunk", "add", "A", "--tenant", "example.com", "--address", "192.0.2.2", *db], "trunk a already exists"),
        (["trunk", "add", "b", "--tenant", "example.org", *base], "already has the address 192.0.2.1:5060"),
        (["trunk", "add", "b", "--tenant", "nosuch.example", "--address", "192.0.2.3", *db], "no tenant"),
        (["trunk", "list", "--tenant", "nosuch.example", *db], "no tenant"),
    ]:
        assert run(*argv)[0] == 1, argv
        assert message in one_error_line(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["trunk"],
        ["trunk", "did"],
        ["trunk", "nosuch"],
        ["trunk", "add", "t1"],  # --tenant and --address are required
        ["trunk", "add", "bad name", "--tenant", "example.com", "--address", "h:1"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:0"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:x"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "not a host:5060"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--transport", "tls"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--prefix", "12a"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--codecs", "PCMU,,PCMA"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--username", "u"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--register"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--inbound", "digest"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--inbound", "both"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--inbound", "sometimes"],
        ["trunk", "add", "t1", "--tenant", "example.com", "--address", "h:1", "--priority", "-1"],
        ["trunk", "add", "t1", "--tenant", "bad domain", "--address", "h:1"],
        ["trunk", "remove"],
        ["trunk", "did", "add", "12ab", "alice@example.com"],
        ["trunk", "did", "add", "123", "alice"],
        ["trunk", "did", "add", "123", "alice@example.com", "--trunk", "bad name"],
        ["trunk", "did", "remove", "x"],
        ["calls", "--tenant", "example.com"],
        ["calls", "--tenant", "example.com", "--month", "2025-13"],
        ["calls", "--tenant", "example.com", "--month", "2025-01", "--format", "xml"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    grouping = argv in (["trunk"], ["trunk", "did"], ["trunk", "nosuch"])
    assert main(argv if grouping else [*argv, *db]) == 2
    one_error_line(capsys, "sipcore: error: ")
    assert "t1" not in run("trunk", "list", *db)[1], "nothing was written"


def test_did_add_list_remove(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run("trunk", "add", "carrier", "--tenant", "example.com", "--address", "192.0.2.1", *db)
    run("trunk", "add", "org", "--tenant", "example.org", "--address", "192.0.2.2", *db)
    code, out = run("trunk", "did", "add", "+15550100", "alice@example.com", "--trunk", "carrier", *db)
    assert (code, out) == (0, "added number +15550100 -> alice@example.com (from trunk carrier only)\n")
    assert run("trunk", "did", "add", "4930123", "alice@Example.com", *db) == (
        0,
        "added number 4930123 -> alice@example.com\n",
    )
    code, out = run("trunk", "did", "list", *db)
    assert code == 0 and [ln.split() for ln in out.splitlines()] == [
        ["NUMBER", "DEVICE", "TRUNK"],
        ["+15550100", "alice@example.com", "carrier"],
        ["4930123", "alice@example.com", "any"],
    ]
    assert len(run("trunk", "did", "list", "--tenant", "example.org", *db)[1].splitlines()) == 1
    for argv, message in [
        (["add", "+15550100", "alice@example.com"], "already exists"),
        (["add", "1", "bob@example.com"], "no device bob@example.com"),
        (["add", "1", "alice@example.com", "--trunk", "org"], "belongs to example.org"),
        (["add", "1", "alice@example.com", "--trunk", "nosuch"], "no trunk nosuch"),
        (["remove", "999"], "no number 999"),
    ]:
        assert run("trunk", "did", *argv, *db)[0] == 1, argv
        assert message in one_error_line(capsys)
    assert run("trunk", "did", "remove", "4930123", *db) == (0, "removed number 4930123\n")
    assert len(run("trunk", "did", "list", *db)[1].splitlines()) == 2


def _record_legs(db: list[str]) -> tuple[LegRecord, LegRecord]:
    async def go() -> tuple[LegRecord, LegRecord]:
        async with await Store.open(db[1]) as s:
            t = await s.get_tenant("example.com")
            (alice,) = await s.list_devices("example.com")
            tr = await s.add_trunk("carrier", "example.com", "192.0.2.1", 5060)
            lid = leg_id("c1", "ft", "originating", "device", alice.id)
            a = LegRecord(lid, t.id, "2025-01", "device", alice.id, "originating", "c1", "ft", "tt",
                          "sip:alice@example.com", "sip:+15550100@example.com", T0, answer_ms=T0 + 2500,
                          final_status=200, segment_start_ms=T0 + 2500, segment_transcoding=True,
                          codecs_local="PCMU", codecs_remote="G729")  # fmt: skip
            a = a.with_media(T0 + 32_500, video=True, transcoding=False).closed(T0 + 62_500, END_BYE_CALLER)
            lid = leg_id("c2", "ft", "terminating", "trunk", tr.id)
            b = LegRecord(lid, t.id, "2025-01", "trunk", tr.id, "terminating", "c2", "ft", None,
                          "sip:+4930@192.0.2.1", "sip:4930123@example.com", T0 + 100_007)  # fmt: skip
            b = dataclasses.replace(b, transit=True).closed(T0 + 101_000, END_CANCEL, 487)
            await s.record_legs([b, a])
            return a, b

    return asyncio.run(go())


def test_calls_table_json_csv(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _record_legs(db)
    base = ["calls", "--tenant", "example.com", "--month", "2025-01", *db]
    code, out = run(*base, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["tenant"], doc["month"], [x["leg_id"] for x in doc["legs"]]) == (
        "example.com", "2025-01", [a.leg_id, b.leg_id],
    )  # fmt: skip
    assert doc["legs"][0] == {
        "leg_id": a.leg_id,
        "direction": "originating",
        "endpoint": "alice@example.com",
        "caller": "sip:alice@example.com",
        "callee": "sip:+15550100@example.com",
        "setup": "2025-01-15T00:00:00.000Z",
        "answer": "2025-01-15T00:00:02.500Z",
        "end": "2025-01-15T00:01:02.500Z",
        "duration_ms": 60_000,
        "voice_ms": 30_000,
        "video_ms": 30_000,
        "transcoding_ms": 30_000,
        "end_reason": "bye_caller",
        "final_status": 200,
        "codecs": "PCMU/G729",
    }
    second = doc["legs"][1]
    assert (second["direction"], second["endpoint"], second["answer"], second["duration_ms"]) == (
        "terminating transit", "carrier", "", 0,
    )  # fmt: skip
    assert (second["setup"], second["final_status"], second["end_reason"]) == (
        "2025-01-15T00:01:40.007Z",
        487,
        "cancel",
    )

    code, out = run(*base, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["leg_id"] for r in rows] == [a.leg_id, b.leg_id]
    assert rows[0]["voice_ms"] == "30000" and rows[1]["answer"] == "" and rows[1]["final_status"] == "487"
    assert list(rows[0]) == list(doc["legs"][0]), "same fields in both formats"

    code, out = run(*base)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["LEG_ID", "DIRECTION", "ENDPOINT"] and len(lines) == 3
    assert lines[1].split()[0] == a.leg_id and "2025-01-15T00:01:02.500Z" in lines[1]

    code, out = run("calls", "--tenant", "example.com", "--month", "2025-02", "--format", "csv", *db)
    assert code == 0 and out.splitlines() == [",".join(csv_header(out))]
    assert run("calls", "--tenant", "nosuch.example", "--month", "2025-01", *db)[0] == 1
    assert "no tenant" in one_error_line(capsys)


def csv_header(out: str) -> list[str]:
    return next(csv.reader(io.StringIO(out)))


def test_usage_shows_call_metrics(db: list[str]) -> None:
    _record_legs(db)
    code, out = run("usage", "--tenant", "example.com", "--month", "2025-01", "--format", "json", *db)
    metrics = json.loads(out)["metrics"]
    assert code == 0 and metrics["voice.minutes"] == "0.500" and metrics["video.minutes"] == "0.500"
    assert (metrics["legs"], metrics["transcoding.ms"]) == (2, 30_000)
    assert metrics["trunks.provisioned.peak"] == 0, "the trunk was provisioned now, after that month"
