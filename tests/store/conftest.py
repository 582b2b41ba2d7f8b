"""Store fixtures: a fake clock and `db`, a migrated SQLite file under tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sipcore.store import Store

# 2025-01-15T00:00:00Z
T0 = 1_736_899_200_000


class FakeClock:
    """Hand-advanced ms clock for the store (provisioning timestamps, the device-count log)."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "sipcore.db"


@pytest_asyncio.fixture
async def db(db_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    store = await Store.open(db_path, clock=clock)
    try:
        yield store
    finally:
        await store.close()
