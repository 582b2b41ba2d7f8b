"""The invoice's JSON shape, its renderers, and money that is never a float."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sipcore.rating import (
    METRICS,
    Count,
    Invoice,
    Leg,
    Plan,
    PlanPeriod,
    Usage,
    load_plan,
    quote,
    rate,
    rate_periods,
    render_csv,
    render_table,
)
from sipcore.rating.metrics import MINUTE_METRICS
from sipcore.rating.render import CSV_COLUMNS

from .conftest import PLANS_DIR, SHIPPED, ms

D = Decimal
Load = Callable[[str], Plan]
MONEY_KEYS = ("unit_price", "amount")


def mesibo_example(shipped: Load) -> Invoice:
    return quote(shipped("mesibo-payg"), {"mau": 100_000, "signaling.bytes_out": 6_000_000_000, "messages": 250})


def test_json_shape(shipped: Load) -> None:
    """Issue 5: lines[] with metric/quantity/included/billable/unit_price/amount,
    top-level subtotal/tax/total/currency, amounts as decimal strings."""
    d = json.loads(json.dumps(mesibo_example(shipped).to_json_dict()))
    assert {"lines", "subtotal", "tax", "total", "currency", "period", "plans", "revision"} <= set(d)
    assert (d["subtotal"], d["tax"], d["total"], d["currency"]) == ("800.90", "0.00", "800.90", "USD")
    assert [x["metric"] for x in d["lines"]] == ["base", "mau", "connections.peak", "signaling.bytes_out"]
    for line in d["lines"]:
        for key in ("metric", "quantity", "included", "billable", "unit_price", "amount"):
            assert isinstance(line[key], str), key
    bw = d["lines"][3]
    assert (bw["quantity"], bw["included"], bw["billable"], bw["unit_price"], bw["amount"]) == (
        "6000000000",
        "5000000000",
        "1000000000",
        "0.90",
        "0.90",
    )
    assert d["plans"] == [
        {"name": "mesibo-payg", "first_day": 1, "last_day": 0, "source": str(PLANS_DIR / "mesibo-payg.toml")}
    ]
    assert d["uncharged"] == {"messages": "250"}
    assert d["period"] == "quote" and d["revision"] == 1


def test_json_round_trip(shipped: Load) -> None:
    u = Usage(
        "2026-01",
        "Europe/Paris",
        counts=(Count("mau", D(1100), at_ms=ms(2026, 1, 3)), Count("mau", D(6000), at_ms=ms(2026, 1, 20))),
    )
    inv = rate_periods(
        u, [PlanPeriod(shipped("voximplant-free")), PlanPeriod(shipped("voximplant-small"), 16)], revision=3
    )
    again = Invoice.from_json_dict(json.loads(json.dumps(inv.to_json_dict())))
    assert again == inv
    assert again.revision == 3 and again.warnings  # the free period's 100 MAU over its block limit


def test_table(shipped: Load) -> None:
    text = render_table(mesibo_example(shipped))
    lines = text.splitlines()
    assert lines[0] == "Invoice: quote (UTC), revision 1, USD"
    assert lines[1] == "Plan: mesibo-payg"
    row = next(x for x in lines if x.startswith("signaling.bytes_out"))
    assert row.split() == [
        "signaling.bytes_out",
        "6000000000",
        "5000000000",
        "1000000000",
        "0.90",
        "GB",
        "(10^9",
        "bytes)",
        "0.90",
    ]
    assert any(x.split()[-3:] == ["total", "800.90", "USD"] for x in lines)
    assert "not priced by the plan: messages=250" in text
    # Amounts end in one column, totals included.
    ends = {len(x) for x in lines if x.split() and x.split()[-1] in ("0.00", "800.00", "0.90")}
    assert len(ends) == 1


def test_table_of_a_plan_change_names_the_plans(shipped: Load) -> None:
    u = Usage("2026-01", "UTC", counts=(Count("mau", D(1500), at_ms=ms(2026, 1, 2)),))
    text = render_table(
        rate_periods(u, [PlanPeriod(shipped("voximplant-free")), PlanPeriod(shipped("voximplant-small"), 16)])
    )
    assert "Plan: voximplant-free (days 1-15), voximplant-small (days 16-31)" in text
    assert "warning: voximplant-free: mau is 1500, 500 above its block limit of 1000" in text
    assert "[1] 15 of 31 days" in text and "[2] above the block limit: not charged" in text


def test_csv(shipped: Load) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(mesibo_example(shipped)))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["metric"] for r in rows] == [
        "base",
        "mau",
        "connections.peak",
        "signaling.bytes_out",
        "subtotal",
        "tax",
        "total",
    ]
    assert rows[1]["amount"] == "800.00" and rows[1]["currency"] == "USD"
    assert rows[3]["unit"] == "GB (10^9 bytes)"
    assert {r["metric"]: r["amount"] for r in rows[-3:]} == {"subtotal": "800.90", "tax": "0.00", "total": "800.90"}
    assert sum(D(r["amount"]) for r in rows[:-3]) == D(rows[-3]["amount"])


# ------------------------------------------------------------ money is never a float


def _no_float(value: Any, where: str) -> None:
    assert not isinstance(value, float), where
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _no_float(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_float(v, f"{where}[{k!r}]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _no_float(v, f"{where}[{i}]")


PLANS = {name: load_plan(PLANS_DIR / f"{name}.toml") for name in SHIPPED}
quantity = st.one_of(
    st.integers(min_value=0, max_value=10**10),
    st.decimals(min_value=0, max_value=10**7, places=3, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(SHIPPED),
    counts=st.dictionaries(st.sampled_from(sorted(METRICS)), quantity, max_size=len(METRICS)),
    legs=st.lists(
        st.tuples(st.sampled_from(sorted(MINUTE_METRICS)), st.integers(0, 4 * 3600 * 1000), st.integers(1, 50)),
        max_size=8,
    ),
    tax=st.none() | st.decimals(min_value=0, max_value=100, places=2),
)
def test_money_is_never_a_float_anywhere_in_an_invoice(
    name: str, counts: dict[str, Any], legs: list[tuple[str, int, int]], tax: Decimal | None
) -> None:
    plan = PLANS[name]
    usage = Usage(
        "2026-02",
        "Asia/Tokyo",
        counts=tuple(Count(m, D(q)) for m, q in counts.items()),
        legs=tuple(Leg(m, dur, count=n) for m, dur, n in legs),
    )
    inv = rate(usage, plan, tax_percent=tax)
    _no_float(inv, "invoice")
    d = inv.to_json_dict()
    _no_float(json.loads(json.dumps(d)), "json")
    cents = D("0.01")
    for x in inv.lines:
        assert type(x.amount) is Decimal and x.amount.as_tuple().exponent == -2 and x.amount >= 0
        assert type(x.unit_price) is Decimal
    for key in ("subtotal", "tax", "total"):
        assert isinstance(d[key], str) and D(d[key]).quantize(cents) == D(d[key])
    for line in d["lines"]:
        for key in MONEY_KEYS:
            assert isinstance(line[key], str) and D(line[key]) >= 0
    # The invoice adds up exactly as printed.
    assert inv.subtotal == sum(x.amount for x in inv.lines)
    assert inv.total == inv.subtotal + inv.tax
