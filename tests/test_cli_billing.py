"""`sipcore rate`, `invoice issue|show|list`, `quote`, `alerts` and `billing ...`
end to end on a tmp_path database, on every shipped plan (issue 5's evidence)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sipcore.cli import main

ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "config" / "plans"
MONTH = "2026-01"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * 1000


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    return ["--db", str(tmp_path / "var" / "billing.db")]


def sql(db: list[str], statement: str, rows: Sequence[Sequence[object]] = ((),)) -> None:
    with sqlite3.connect(db[1]) as c:
        c.executemany(statement, rows)


def created_long_ago(db: list[str]) -> None:
    """Tenants are billed from the day they were created: backdate the ones just added."""
    sql(db, "UPDATE tenants SET created_ms = 0")


def tenant_id(db: list[str], domain: str) -> int:
    with sqlite3.connect(db[1]) as c:
        return int(c.execute("SELECT id FROM tenants WHERE domain = ?", (domain,)).fetchone()[0])


def add_month_of_usage(db: list[str], domain: str, month: str = MONTH) -> None:
    """One month of every metric, as the server's writer would leave it:
    50 devices and 10 trunks provisioned, 1,000 voice legs and 200 transcoded
    voice legs of 60 s, 500 video legs of 60 s, 6,000 MAU, a peak of 700
    connections, 100,150 messages and 6 GB sent."""
    tid = tenant_id(db, domain)
    year, mon = int(month[:4]), int(month[5:])
    at = ms(year, mon, 10)
    legs = []
    for i in range(1700):
        voice, video, transcoding = (60_000, 0, 0) if i < 1000 else (60_000, 0, 60_000) if i < 1200 else (0, 60_000, 0)
        legs.append((f"{domain}-{month}-{i}", tid, month, at, at, at + 60_000, voice, video, transcoding))
    sql(
        db,
        "INSERT INTO legs (leg_id, tenant_id, month, endpoint_kind, endpoint_id, direction, call_id, from_tag, caller,"
        " callee, setup_ms, answer_ms, end_ms, final_status, voice_ms, video_ms, transcoding_ms, updated_ms)"
        " VALUES (?, ?, ?, 'device', 1, 'originating', 'c', 'f', 'a', 'b', ?, ?, ?, 200, ?, ?, ?, 0)",
        legs,
    )
    sql(db, "INSERT INTO usage_mau VALUES (?, ?, ?, ?)", [(tid, month, 100_000 * tid + d, at) for d in range(6000)])
    sql(db, "INSERT INTO usage_gauge VALUES (?, ?, 'connections.peak', 700, ?)", [(tid, month, at)])
    sql(
        db,
        "INSERT INTO usage_counter VALUES (?, ?, ?, ?, 0)",
        [(tid, month, "messages", 100_150), (tid, month, "signaling.bytes_out", 6_000_000_000)],
    )
    sql(db, "INSERT INTO device_count_log (tenant_id, at_ms, count) VALUES (?, ?, 50)", [(tid, at)])
    sql(db, "INSERT INTO trunk_count_log (tenant_id, at_ms, count) VALUES (?, ?, 10)", [(tid, at)])


QUANTITIES = [
    "devices.provisioned.peak=50",
    "trunks.provisioned.peak=10",
    "voice.minutes=1200",
    "video.minutes=500",
    "transcoding.minutes=200",
    "mau=6000",
    "connections.peak=700",
    "messages=100150",
    "signaling.bytes_out=6000000000",
]

# Each plan's total for that month, worked by hand:
EXPECTED = {
    # 50 x 2.00 + 10 x 10.00 + 1,200 x 0.01 + 500 x 0.02 + 200 x 0.005
    "sip-core": "223.00",
    # everything above the free limits is blocked, never charged
    "voximplant-free": "0.00",
    # 100.00 + 1,000 MAU x 0.03 + 2 started packs of 100 messages x 0.20
    "voximplant-small": "130.40",
    # 109.00 + 5,000 MAU x 0.12 + (700 - 50) connections x 1.00 + 1,200 x 0.001 + 500 x 0.003
    "cometchat": "1361.70",
    # MAU 6,000 + (700 - 600) x 10 = 7,000 within 20K; 1 GB x 0.90 = 0.90, topped up to the 49.00 minimum
    "mesibo-payg": "49.00",
}


@pytest.mark.parametrize("plan", sorted(EXPECTED))
def test_rate_issue_show_list_and_quote_on_every_shipped_plan(plan: str, db: list[str]) -> None:
    assert sorted(p.stem for p in PLANS.glob("*.toml")) == sorted(EXPECTED), "a new plan needs a line here"
    assert run("tenant", "add", "example.com", *db)[0] == 0
    code, out = run("billing", "plan", "example.com", plan, "--from", "2025-01-01", *db)
    assert code == 0 and f"plan {plan} from 2025-01-01T00:00:00Z" in out
    add_month_of_usage(db, "example.com")
    total = EXPECTED[plan]

    code, out = run("rate", "--month", MONTH, "--tenant", "example.com", "--format", "json", *db)
    assert code == 0
    rated = json.loads(out)
    assert (rated["total"], rated["currency"], rated["period"], rated["revision"]) == (total, "USD", MONTH, 1)
    assert [p["name"] for p in rated["plans"]] == [plan]
    code, out = run("rate", "--month", MONTH, "--tenant", "example.com", *db)
    assert code == 0 and out.startswith(f"Invoice for example.com: {MONTH} (UTC), revision 1, USD")
    assert f"total  {total} USD" in out

    code, out = run("invoice", "issue", "--month", MONTH, *db)
    assert (code, out) == (0, f"issued example.com {MONTH} revision 1: total {total} USD\n")
    code, out = run("invoice", "show", "--tenant", "example.com", "--month", MONTH, "--format", "json", *db)
    assert code == 0 and json.loads(out) == rated, "the issued invoice is what rate showed"
    code, out = run("invoice", "show", "--tenant", "example.com", "--month", MONTH, *db)
    assert code == 0 and out.startswith("issued ") and f"total  {total} USD" in out
    code, out = run("invoice", "show", "--tenant", "example.com", "--month", MONTH, "--format", "csv", *db)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows[-1]["metric"] == "total" and rows[-1]["amount"] == total
    code, out = run("invoice", "list", *db)
    assert code == 0 and out.splitlines()[1].split()[:3] == ["example.com", MONTH, "1"]
    assert out.splitlines()[1].split()[-2:] == [total, "USD"]

    code, out = run("quote", "--plan", str(PLANS / f"{plan}.toml"), "--format", "json", *QUANTITIES)
    assert code == 0 and json.loads(out)["total"] == total, "a quote of the same quantities agrees"


def test_a_price_fix_makes_revision_2_and_leaves_revision_1(db: list[str], tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    shutil.copytree(PLANS, plans)
    pd = ["--plans-dir", str(plans)]
    run("tenant", "add", "example.com", "--plan", "voximplant-small", *db)
    created_long_ago(db)
    add_month_of_usage(db, "example.com")
    assert (
        run("invoice", "issue", "--month", MONTH, *pd, *db)[1]
        == f"issued example.com {MONTH} revision 1: total 130.40 USD\n"
    )
    code, out = run("invoice", "issue", "--month", MONTH, *pd, *db)
    assert (code, out) == (0, f"unchanged example.com {MONTH} revision 1: total 130.40 USD\n")
    small = plans / "voximplant-small.toml"
    small.write_text(small.read_text().replace('unit_price = "0.03"', 'unit_price = "0.02"'))  # the fix
    code, out = run("rate", "--month", MONTH, "--format", "json", *pd, *db)
    assert code == 0 and [(i["revision"], i["total"]) for i in json.loads(out)] == [(2, "120.40")]
    code, out = run("invoice", "issue", "--month", MONTH, *pd, *db)
    assert (code, out) == (0, f"issued example.com {MONTH} revision 2: total 120.40 USD\n")
    code, out = run("invoice", "list", "--tenant", "example.com", "--month", MONTH, *db)
    assert [ln.split()[2] for ln in out.splitlines()[1:]] == ["1", "2"]
    show = ["invoice", "show", "--tenant", "example.com", "--month", MONTH, "--format", "json", *db]
    assert json.loads(run(*show)[1])["total"] == "120.40"
    assert json.loads(run(*show, "--revision", "1")[1])["total"] == "130.40"
    with sqlite3.connect(db[1]) as c, pytest.raises(sqlite3.IntegrityError, match="immutable"):
        c.execute("UPDATE invoices SET body = '{}' WHERE revision = 1")


def test_rate_every_account_children_roll_up(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run("tenant", "add", "parent.example", "--plan", "cometchat", *db)
    run("tenant", "add", "child.example", *db)
    run("tenant", "add", "lonely.example", *db)  # no plan: noted, not rated
    created_long_ago(db)
    code, out = run("billing", "parent", "child.example", "parent.example", *db)
    assert (code, out) == (0, "tenant child.example: child of parent.example\n")
    add_month_of_usage(db, "child.example")
    code, out = run("rate", "--month", MONTH, "--format", "json", *db)
    assert code == 0
    (inv,) = json.loads(out)
    assert (inv["tenant"], inv["members"], inv["total"]) == ("parent.example", ["child.example"], "1361.70")
    assert "not rated: lonely.example" in capsys.readouterr().err
    code, out = run("rate", "--month", MONTH, "--format", "csv", *db)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {r["tenant"] for r in rows} == {"parent.example"} and rows[-1]["amount"] == "1361.70"
    assert run("rate", "--month", MONTH, "--tenant", "child.example", *db)[0] == 1
    assert "parent.example's invoice" in capsys.readouterr().err
    code, out = run("rate", "--month", MONTH, "--tenant", "parent.example", *db)
    assert "includes the usage of: child.example" in out
    assert run("billing", "parent", "child.example", "--clear", *db)[1] == "tenant child.example: its own account\n"


def test_a_mid_month_plan_change_from_the_command_line(db: list[str]) -> None:
    run("tenant", "add", "example.com", "--timezone", "Asia/Tokyo", *db)
    run("billing", "plan", "example.com", "voximplant-free", "--from", "2025-12-01", *db)
    run("billing", "plan", "example.com", "voximplant-small", "--from", "2026-01-16", *db)
    code, out = run("billing", "show", "example.com", *db)
    assert code == 0 and "plan now: voximplant-small" in out
    assert "plan voximplant-small from 2026-01-15T15:00:00Z" in out, "local midnight in Tokyo"
    code, out = run("rate", "--month", MONTH, "--tenant", "example.com", "--format", "json", *db)
    inv = json.loads(out)
    assert [(p["name"], p["first_day"], p["last_day"]) for p in inv["plans"]] == [
        ("voximplant-free", 1, 15),
        ("voximplant-small", 16, 31),
    ]
    assert inv["total"] == "51.61"  # 100.00 x 16/31


def test_issue_refuses_a_month_that_is_not_over(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run("tenant", "add", "example.com", "--plan", "sip-core", *db)
    now = datetime.now(UTC)
    month = f"{now.year:04d}-{now.month:02d}"
    assert run("invoice", "issue", "--month", month, *db)[0] == 1
    assert "not over yet" in capsys.readouterr().err
    code, out = run("invoice", "issue", "--month", month, "--force", *db)
    assert code == 0 and out.startswith(f"issued example.com {month} revision 1")


def test_billing_settings_and_alerts(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run("tenant", "add", "example.com", "--plan", "voximplant-free", *db)
    code, out = run("billing", "webhook", "example.com", "http://127.0.0.1:9/hook", *db)
    assert (code, out) == (0, "tenant example.com: webhook http://127.0.0.1:9/hook\n")
    assert run("billing", "tax", "example.com", "19.6", *db) == (0, "tenant example.com: tax rate 19.6 %\n")
    code, out = run("billing", "show", "example.com", *db)
    assert (
        "tax rate: 19.6 %" in out and "webhook: http://127.0.0.1:9/hook" in out and "plan now: voximplant-free" in out
    )
    tid = tenant_id(db, "example.com")
    sql(
        db,
        "INSERT INTO alerts (tenant_id, month, metric, threshold_pct, value, included, at_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(tid, MONTH, "mau", 50, 500, "1000", ms(2026, 1, 5)), (tid, MONTH, "mau", 75, 750, "1000", ms(2026, 1, 9))],
    )
    code, out = run("alerts", "--tenant", "example.com", *db)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "TENANT",
        "MONTH",
        "METRIC",
        "THRESHOLD",
        "VALUE",
        "INCLUDED",
        "AT",
        "WEBHOOK",
    ]
    assert lines[1].split() == ["example.com", MONTH, "mau", "50%", "500", "1000", "2026-01-05T00:00:00Z", "-"]
    assert len(run("alerts", "--month", "2026-02", *db)[1].splitlines()) == 1
    assert run("billing", "webhook", "example.com", "--clear", *db)[1] == "tenant example.com: webhook cleared\n"
    assert run("billing", "tax", "example.com", "--clear", *db)[1] == "tenant example.com: tax rate of the plan\n"
    # A plan that does not exist is refused before anything changes.
    assert run("billing", "plan", "example.com", "no-such-plan", *db)[0] == 1
    assert "no-such-plan.toml" in capsys.readouterr().err
    assert "plan now: voximplant-free" in run("billing", "show", "example.com", *db)[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["rate"],
        ["rate", "--month", "2026-13"],
        ["rate", "--month", MONTH, "--format", "xml"],
        ["invoice"],
        ["invoice", "show", "--tenant", "example.com"],
        ["invoice", "show", "--tenant", "example.com", "--month", MONTH, "--revision", "0"],
        ["billing", "plan", "example.com", "sip-core", "--from", "2026-1-5"],
        ["billing", "webhook", "example.com"],
        ["billing", "webhook", "example.com", "http://x/", "--clear"],
        ["billing", "tax", "example.com", "abc"],
        ["billing", "parent", "example.com"],
        ["billing"],
        ["alerts", "--month", "x"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run("tenant", "add", "example.com", *db)
    assert main([*argv, *db] if len(argv) > 1 else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sipcore: error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["invoice", "show", "--tenant", "example.com", "--month", MONTH], "no issued invoice"),
        (["rate", "--month", MONTH, "--tenant", "example.com"], "has no plan"),
        (["rate", "--month", MONTH, "--tenant", "nosuch.example"], "no tenant"),
        (["billing", "webhook", "example.com", "ftp://x/"], "webhook URL"),
        (["billing", "tax", "example.com", "150"], "between 0 and 100"),
        (["billing", "parent", "example.com", "example.com"], "cycle"),
    ],
)
def test_failed_operations_exit_1(
    argv: list[str], reason: str, db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run("tenant", "add", "example.com", *db)
    capsys.readouterr()
    assert main([*argv, *db]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sipcore: ") and err.count("\n") == 1 and reason in err, err


def test_billing_config_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sipcore.config import SOURCE_PLANS_DIR, BillingConfig, load_config

    good = tmp_path / "good.toml"
    good.write_text(f'[billing]\nplans_dir = "{tmp_path}"\nalert_thresholds_pct = [80, 100]\n')
    code, out = run("config", "check", str(good))
    assert code == 0 and "[billing]" in out and "alert_thresholds_pct = [80, 100]" in out
    assert load_config(good).billing.plans_path() == tmp_path
    for body, key in (
        ("alert_thresholds_pct = [75, 50]", "billing.alert_thresholds_pct"),
        ("alert_thresholds_pct = [0]", "billing.alert_thresholds_pct"),
        ("webhook_max_attempts = 0", "billing.webhook_max_attempts"),
        ("webhook_max_backoff_ms = 10", "billing.webhook_max_backoff_ms"),
        ("nosuch = 1", "billing.nosuch"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(f"[billing]\n{body}\n")
        assert run("config", "check", str(bad))[0] == 1
        err = capsys.readouterr().err
        assert str(bad) in err and key in err, err
    # The default directory falls back to the source checkout's plans outside it.
    assert BillingConfig().plans_path() in (Path("config/plans"), SOURCE_PLANS_DIR)


def test_plans_dir_from_the_config_file(db: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plans = tmp_path / "myplans"
    plans.mkdir()
    (plans / "house.toml").write_text('name = "house"\ncurrency = "EUR"\nbase_fee = "5.00"\n')
    cfg = tmp_path / "sipcore.toml"
    cfg.write_text(f'[store]\npath = "{db[1]}"\n[billing]\nplans_dir = "{plans}"\n')
    run("tenant", "add", "example.com", *db)
    assert run("billing", "plan", "example.com", "house", "--from", "2026-01-01", "--config", str(cfg))[0] == 0
    assert run("billing", "plan", "example.com", "sip-core", "--config", str(cfg))[0] == 1, "not in myplans"
    assert "known: house" in capsys.readouterr().err
    code, out = run("rate", "--month", MONTH, "--format", "json", "--config", str(cfg))
    assert code == 0 and [(i["total"], i["currency"]) for i in json.loads(out)] == [("5.00", "EUR")]
