"""Rating fixtures: the shipped plan files and a UTC millisecond helper."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sipcore.rating import Plan, load_plan

PLANS_DIR = Path(__file__).resolve().parents[2] / "config" / "plans"
SHIPPED = ("sip-core", "voximplant-free", "voximplant-small", "cometchat", "mesibo-payg")


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """An instant as integer ms UTC (the store's time format)."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1000


@pytest.fixture
def shipped() -> Callable[[str], Plan]:
    """``shipped("mesibo-payg")`` loads config/plans/mesibo-payg.toml."""

    def load(name: str) -> Plan:
        return load_plan(PLANS_DIR / f"{name}.toml")

    return load
