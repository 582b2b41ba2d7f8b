"""Failure counting and blocking per source address."""

from __future__ import annotations

from sipcore.auth.throttle import FailureLimiter

from ._support import T0


def test_blocks_after_max_failures_in_window() -> None:
    lim = FailureLimiter(max_failures=3, window_ms=60_000, block_ms=300_000, size=100)
    assert not lim.record_failure("192.0.2.1", T0)
    assert not lim.record_failure("192.0.2.1", T0 + 1_000)
    assert not lim.blocked("192.0.2.1", T0 + 1_000)
    assert lim.record_failure("192.0.2.1", T0 + 2_000)
    assert lim.blocked("192.0.2.1", T0 + 2_000)
    assert lim.blocked("192.0.2.1", T0 + 2_000 + 299_999)
    assert not lim.blocked("192.0.2.1", T0 + 2_000 + 300_000)
    assert not lim.blocked("192.0.2.2", T0 + 2_000)


def test_failures_spread_over_windows_do_not_block() -> None:
    lim = FailureLimiter(max_failures=3, window_ms=60_000, block_ms=300_000, size=100)
    for i in range(10):
        assert not lim.record_failure("192.0.2.1", T0 + i * 30_001)
    assert not lim.blocked("192.0.2.1", T0 + 10 * 30_001)


def test_a_block_is_not_extended_and_counting_restarts_after_it() -> None:
    lim = FailureLimiter(max_failures=2, window_ms=60_000, block_ms=10_000, size=100)
    lim.record_failure("h", T0)
    assert lim.record_failure("h", T0 + 1)
    for t in range(T0 + 2, T0 + 10_000, 1_000):
        assert lim.blocked("h", t)
    assert not lim.blocked("h", T0 + 10_001)
    assert not lim.record_failure("h", T0 + 10_002)  # a fresh window: one failure is not a block


def test_tables_are_bounded_and_blocks_survive_churn() -> None:
    lim = FailureLimiter(max_failures=3, window_ms=60_000, block_ms=300_000, size=8)
    for _ in range(3):
        lim.record_failure("attacker", T0)
    assert lim.blocked("attacker", T0)
    for i in range(1_000):  # one failure each from many (possibly spoofed) sources
        lim.record_failure(f"10.0.{i // 256}.{i % 256}", T0 + i)
        assert len(lim) <= 16
    assert lim.blocked("attacker", T0 + 1_000)


def test_least_recently_failing_counter_is_evicted() -> None:
    lim = FailureLimiter(max_failures=3, window_ms=60_000, block_ms=300_000, size=2)
    lim.record_failure("a", T0)
    lim.record_failure("b", T0)
    lim.record_failure("a", T0 + 1)  # a is now the most recent
    lim.record_failure("c", T0 + 2)  # evicts b
    assert lim.record_failure("a", T0 + 3)  # a kept its two failures: the third blocks
    assert not lim.record_failure("b", T0 + 3)  # b starts over
