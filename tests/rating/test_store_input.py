"""What the store hands the engine: legs rounded in SQL (RoundedLegs), plans by
name (PlanLibrary), child tenants named on the invoice, several invoices in one CSV."""

from __future__ import annotations

import csv
import io
from decimal import Decimal as D
from pathlib import Path

import pytest

from sipcore.errors import ConfigError
from sipcore.rating import (
    Count,
    Invoice,
    Leg,
    PlanLibrary,
    PlanPeriod,
    RatingError,
    RoundedLegs,
    Usage,
    check_plan_name,
    rate,
    rate_periods,
    render_csv_many,
    render_table,
)

from .conftest import PLANS_DIR, SHIPPED, ms


def test_rounded_legs_price_like_the_legs_they_sum() -> None:
    plans = PlanLibrary(PLANS_DIR)
    cometchat = plans.get("cometchat")  # voice 60/60 at 0.001
    durations = [1_000, 59_000, 61_000, 125_000]  # 60 + 60 + 120 + 180 = 420 s
    by_leg = rate(Usage("2026-01", legs=tuple(Leg("voice.minutes", d) for d in durations)), cometchat)
    summed = rate(Usage("2026-01", rounded=(RoundedLegs("voice.minutes", 420, 4, 60, 60),)), cometchat)
    assert by_leg.line("voice.minutes") == summed.line("voice.minutes")
    assert summed.line("voice.minutes").quantity == 7 and summed.total == by_leg.total


def test_rounded_legs_with_another_rounding_than_the_plans_are_refused() -> None:
    cometchat = PlanLibrary(PLANS_DIR).get("cometchat")
    with pytest.raises(RatingError, match="rounded 1/1 .* but plan 'cometchat' rounds them 60/60"):
        rate(Usage("2026-01", rounded=(RoundedLegs("voice.minutes", 61, 1, 1, 1),)), cometchat)
    # A minute metric the plan does not price is rounded per second (1/1) and reported, not charged.
    mesibo = PlanLibrary(PLANS_DIR).get("mesibo-payg")
    inv = rate(Usage("2026-01", rounded=(RoundedLegs("voice.minutes", 90, 1, 1, 1),)), mesibo)
    assert dict(inv.uncharged) == {"voice.minutes": D("1.5")}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metric": "mau"},
        {"billed_s": -1},
        {"legs": 1.5},
        {"first_s": 0},
        {"next_s": True},
    ],
)
def test_rounded_legs_are_validated(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"metric": "voice.minutes", "billed_s": 60, "legs": 1, "first_s": 1, "next_s": 1}
    args.update(kwargs)
    with pytest.raises(RatingError):
        RoundedLegs(**args)  # type: ignore[arg-type]


def test_rounded_legs_go_to_the_plan_period_of_their_at_ms() -> None:
    lib = PlanLibrary(PLANS_DIR)
    small, core = lib.get("voximplant-small"), lib.get("sip-core")
    usage = Usage(
        "2026-01",
        rounded=(
            RoundedLegs("voice.minutes", 600, 10, 1, 1, at_ms=ms(2026, 1, 1)),
            RoundedLegs("voice.minutes", 1200, 10, 1, 1, at_ms=ms(2026, 1, 16)),
        ),
        counts=(Count("mau", D(10), at_ms=ms(2026, 1, 2)),),
    )
    inv = rate_periods(usage, [PlanPeriod(small, 1), PlanPeriod(core, 16)])
    assert inv.line("voice.minutes", "sip-core").quantity == 20  # only the legs of the 16th on
    assert dict(inv.uncharged) == {"voice.minutes": D(10)}  # Small does not price voice


def test_plan_library_finds_every_shipped_plan_by_name_and_names_a_missing_one(tmp_path: Path) -> None:
    lib = PlanLibrary(PLANS_DIR)
    assert set(SHIPPED) <= set(lib.names())
    for name in SHIPPED:
        assert lib.get(name) is lib.get(name), "each file is read once"
        assert lib.get(name).name == name
    with pytest.raises(ConfigError, match=r"nosuch\.toml.*no plan named 'nosuch'.*known: cometchat"):
        lib.get("nosuch")
    with pytest.raises(ConfigError, match="plan name"):
        lib.get("../plans/sip-core")
    assert PlanLibrary(tmp_path / "missing").names() == []
    for bad in ("", "a/b", "..", "-x", "a b"):
        with pytest.raises(ValueError):
            check_plan_name(bad)
    assert check_plan_name("Plan_2.v1") == "Plan_2.v1"


def test_members_are_on_the_invoice_in_json_table_and_round_trip() -> None:
    core = PlanLibrary(PLANS_DIR).get("sip-core")
    inv = rate(Usage("2026-01"), core, tenant="parent.example", members=("a.example", "b.example"))
    assert inv.to_json_dict()["members"] == ["a.example", "b.example"]
    assert Invoice.from_json_dict(inv.to_json_dict()) == inv
    assert "includes the usage of: a.example, b.example" in render_table(inv)
    old = inv.to_json_dict()
    del old["members"]  # an invoice issued before members existed still loads
    assert Invoice.from_json_dict(old).members == ()


def test_several_invoices_in_one_csv() -> None:
    lib = PlanLibrary(PLANS_DIR)
    a = rate(Usage("2026-01"), lib.get("voximplant-small"), tenant="a.example")
    b = rate(Usage("2026-01"), lib.get("sip-core"), tenant="b.example", revision=2)
    rows = list(csv.DictReader(io.StringIO(render_csv_many([a, b]))))
    assert {(r["tenant"], r["revision"]) for r in rows} == {("a.example", "1"), ("b.example", "2")}
    totals = [(r["tenant"], r["amount"]) for r in rows if r["metric"] == "total"]
    assert totals == [("a.example", "100.00"), ("b.example", "0.00")]
