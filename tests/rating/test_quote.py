"""The pricing calculator behind `sipcore quote --plan FILE METRIC=QUANTITY...`."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from sipcore.rating import Plan, RatingError, parse_quantity_args, quote

D = Decimal
Load = Callable[[str], Plan]

ISSUE_ARGS = [
    "mau=100000",
    "signaling.bytes_out=6000000000",
    "messages=250",
    "connections.peak=80",
    "voice.minutes=1200",
]


def test_parse_the_issues_example_arguments() -> None:
    assert parse_quantity_args(ISSUE_ARGS) == {
        "mau": D(100000),
        "signaling.bytes_out": D(6000000000),
        "messages": D(250),
        "connections.peak": D(80),
        "voice.minutes": D(1200),
    }
    assert parse_quantity_args(["voice.minutes=12.5", "mau=1_000"]) == {"voice.minutes": D("12.5"), "mau": D(1000)}


@pytest.mark.parametrize(
    ("arg", "reason"),
    [
        ("mau", "expected METRIC=QUANTITY"),
        ("users=5", "unknown metric 'users'"),
        ("mau=-5", "plain non-negative decimal"),
        ("mau=1e5", "plain non-negative decimal"),
        ("mau=", "plain non-negative decimal"),
    ],
)
def test_bad_arguments_say_why(arg: str, reason: str) -> None:
    with pytest.raises(RatingError, match=reason):
        parse_quantity_args([arg])


def test_a_metric_given_twice_is_an_error_not_a_sum() -> None:
    with pytest.raises(RatingError, match="given twice"):
        parse_quantity_args(["mau=1", "mau=2"])


@pytest.mark.parametrize(
    ("plan", "total"),
    [
        ("mesibo-payg", "800.90"),  # 80K MAU x $0.01 + 1 GB x $0.90; 80 connections within 10 % of MAU
        ("cometchat", "12020.20"),  # $109 + 99,000 MAU x $0.12 + 30 connections x $1 + 1,200 min x $0.001
        ("voximplant-small", "2950.00"),  # $100 + 95,000 MAU x $0.03; 250 messages within the included
        ("voximplant-free", "0.00"),  # blocked, never charged
        ("sip-core", "12.00"),  # 1,200 voice minutes x $0.01; MAU and messages are not priced
    ],
)
def test_the_issues_example_quote_on_every_shipped_plan(shipped: Load, plan: str, total: str) -> None:
    inv = quote(shipped(plan), parse_quantity_args(ISSUE_ARGS))
    assert inv.total == D(total)
    assert inv.period == "quote" and inv.tenant == ""
    priced = {x.metric for x in inv.lines} | {m for m, _ in inv.uncharged}
    assert {a.split("=")[0] for a in ISSUE_ARGS} <= priced  # every quantity is accounted for


def test_quote_accepts_ints_and_decimals_and_refuses_floats(shipped: Load) -> None:
    plan = shipped("cometchat")
    assert quote(plan, {"mau": 1001}).total == quote(plan, {"mau": D("1001")}).total == D("109.12")
    with pytest.raises(RatingError, match="float"):
        quote(plan, {"mau": 1001.0})  # type: ignore[dict-item]
