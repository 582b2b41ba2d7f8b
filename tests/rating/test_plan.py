"""Plan files: the shipped ones load, broken ones fail with file, key and reason."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from sipcore.errors import ConfigError
from sipcore.rating import METRICS, Basis, Increment, Over, Plan, Proration, load_plan, parse_plan
from sipcore.rating import plan as plan_module

from .conftest import PLANS_DIR, SHIPPED

D = Decimal
Load = Callable[[str], Plan]


def test_every_shipped_plan_loads_and_names_only_metering_metrics() -> None:
    files = sorted(p.stem for p in PLANS_DIR.glob("*.toml"))
    assert files == sorted(SHIPPED)
    for name in SHIPPED:
        plan = load_plan(PLANS_DIR / f"{name}.toml")
        assert plan.name == name
        assert plan.currency == "USD" and plan.minor_digits == 2
        assert plan.metrics, name
        assert {m.metric for m in plan.metrics} <= set(METRICS)
        assert plan.source.endswith(f"{name}.toml")


def test_plans_that_use_example_prices_say_so(shipped: Load) -> None:
    """The issue: sip-core's prices are placeholders in seed 004; 'choose plausible
    example prices and say so in the file'."""
    for name in ("sip-core", "voximplant-small", "cometchat"):
        assert "example" in (PLANS_DIR / f"{name}.toml").read_text().lower(), name


def test_mesibo_plan_structure(shipped: Load) -> None:
    p = shipped("mesibo-payg")
    conn = p.rate_of("connections.peak")
    assert conn is not None and conn.over is Over.CONVERT
    assert conn.allowance is not None and (conn.allowance.percent, conn.allowance.basis) == (10, Basis.USAGE)
    assert conn.convert is not None and (conn.convert.metric, conn.convert.factor) == ("mau", 10)
    bw = p.rate_of("signaling.bytes_out")
    assert bw is not None and (bw.included, bw.price_per, bw.unit_price) == (5 * 10**9, 10**9, D("0.90"))
    assert p.minimum_charge == D("49.00") and p.proration is Proration.DAILY


def test_minute_metrics_carry_their_increment(shipped: Load) -> None:
    voice = shipped("cometchat").rate_of("voice.minutes")
    assert voice is not None and voice.increment == Increment(60, 60)
    assert str(voice.increment) == "60/60"
    sip = shipped("sip-core").rate_of("video.minutes")
    assert sip is not None and sip.increment == Increment(1, 1)


def test_money_is_decimal_never_float(shipped: Load) -> None:
    for name in SHIPPED:
        p = shipped(name)
        for value in (p.base_fee, p.minimum_charge, p.tax_percent, *(m.unit_price for m in p.metrics)):
            assert type(value) is Decimal


HEAD = 'name = "broken"\ncurrency = "USD"\n'
MAU = '[metrics.mau]\nunit_price = "0.01"\n'


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (HEAD + "base_fee = 100.0\n", "base_fee", "not a TOML float"),
        (HEAD + "base_fee = 100\n", "base_fee", "not a TOML integer"),
        (HEAD + 'base_fee = "1e3"\n', "base_fee", "plain non-negative decimal"),
        (HEAD + 'base_fee = "-5"\n', "base_fee", "plain non-negative decimal"),
        (HEAD + 'base_fee = "100.005"\n', "base_fee", "more decimal places than USD allows"),
        (HEAD + "[metrics.mau]\nunit_price = 0.01\n", "metrics.mau.unit_price", "not a TOML float"),
        (HEAD + 'colour = "red"\n', "colour", "unknown key"),
        (HEAD + MAU + "price = 1\n", "metrics.mau.price", "unknown key"),
        (HEAD + '[metrics.minutes]\nunit_price = "1"\n', "metrics.minutes", "unknown metric"),
        ('currency = "USD"\n', "name", "is required"),
        ('name = " "\ncurrency = "USD"\n', "name", "must not be empty"),
        ('name = "x"\ncurrency = "XYZ"\n', "currency", "unknown currency"),
        (HEAD + 'tax_percent = "120"\n', "tax_percent", "between 0 and 100"),
        (HEAD + 'proration = "weekly"\n', "proration", 'one of "daily", "none"'),
        (HEAD + "metrics = 5\n", "metrics", "must be a table"),
        (HEAD + "[metrics.mau]\nincluded = 10\n", "metrics.mau.unit_price", "is required"),
        (HEAD + MAU + "included = -5\n", "metrics.mau.included", "must not be negative"),
        (HEAD + MAU + "included = 2.5\n", "metrics.mau.included", "not a TOML float"),
        (HEAD + MAU + "pack_size = 0\n", "metrics.mau.pack_size", "at least 1"),
        (HEAD + MAU + "pack_size = 100\nprice_per = 10\n", "metrics.mau.pack_size", "not both"),
        (HEAD + MAU + 'increment = "6/6"\n', "metrics.mau.increment", "only to minute metrics"),
        (HEAD + MAU + 'over = "throttle"\n', "metrics.mau.over", "must be one of"),
        (
            HEAD + '[metrics."voice.minutes"]\nunit_price = "1"\nincrement = "30-6"\n',
            'metrics."voice.minutes".increment',
            "FIRST/NEXT",
        ),
        (
            HEAD + '[metrics."voice.minutes"]\nunit_price = "1"\nincrement = "0/6"\n',
            'metrics."voice.minutes".increment',
            ">= 1",
        ),
        (
            HEAD + '[metrics."voice.minutes"]\nunit_price = "1"\nmin_seconds = "10"\n',
            'metrics."voice.minutes".min_seconds',
            "integer",
        ),
        (
            HEAD + '[metrics.mau]\nincluded = 1000\nover = "block"\nunit_price = "0.03"\n',
            "metrics.mau.unit_price",
            "does not apply",
        ),
        (
            HEAD + MAU + '[metrics."connections.peak"]\nover = "convert"\n',
            'metrics."connections.peak".convert',
            "is required",
        ),
        (
            HEAD + '[metrics."connections.peak"]\nover = "convert"\nconvert = { metric = "mau", factor = 10 }\n',
            'metrics."connections.peak".convert.metric',
            "must be priced by this plan",
        ),
        (
            HEAD
            + MAU
            + '[metrics."connections.peak"]\nover = "convert"\nconvert = { metric = "mau", factor = 10.0 }\n',
            'metrics."connections.peak".convert.factor',
            "not a TOML float",
        ),
        (
            HEAD
            + MAU
            + '[metrics."connections.peak"]\nunit_price = "1"\nallowance = { metric = "mau", percent = "5" }\n',
            'metrics."connections.peak".allowance.basis',
            "is required",
        ),
        (
            HEAD + MAU + '[metrics."connections.peak"]\nunit_price = "1"\nincluded = 5\n'
            'allowance = { metric = "mau", percent = "5", basis = "usage" }\n',
            'metrics."connections.peak".allowance',
            "not both",
        ),
        (
            HEAD + '[metrics."connections.peak"]\nunit_price = "1"\n'
            'allowance = { metric = "mau", percent = "5", basis = "included" }\n',
            'metrics."connections.peak".allowance.metric',
            "fixed included quantity",
        ),
        (
            HEAD + '[metrics."connections.peak"]\nunit_price = "1"\n'
            'allowance = { metric = "users", percent = "5", basis = "usage" }\n',
            'metrics."connections.peak".allowance.metric',
            "unknown metric",
        ),
        (HEAD + "name = 'twice'\n", "(syntax)", "overwrite"),
    ],
)
def test_broken_plan_files_name_file_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    err = info.value
    assert err.path == str(path)
    assert err.key == key
    assert reason in err.reason
    assert str(err).startswith(f"{path}: {key}: ")


def test_a_missing_or_unreadable_plan_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_plan(tmp_path / "nope.toml")
    assert (info.value.key, info.value.reason) == ("(file)", "No such file or directory")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_plan(bad)


def test_a_minimal_plan_has_safe_defaults(tmp_path: Path) -> None:
    path = tmp_path / "min.toml"
    path.write_text('name = "min"\ncurrency = "EUR"\n')
    p = load_plan(path)
    assert (p.base_fee, p.minimum_charge, p.tax_percent, p.proration, p.metrics) == (0, 0, 0, Proration.DAILY, ())


def test_the_format_example_in_the_module_docstring_is_a_valid_plan() -> None:
    doc = plan_module.__doc__ or ""
    example = textwrap.dedent(doc.split("::\n", 1)[1].split("\nValidation", 1)[0])
    p = parse_plan(example, "docstring")
    assert [m.metric for m in p.metrics] == [
        "mau",
        "connections.peak",
        "signaling.bytes_out",
        "voice.minutes",
        "messages",
    ]
    voice = p.rate_of("voice.minutes")
    assert voice is not None and voice.increment == Increment(30, 6)
