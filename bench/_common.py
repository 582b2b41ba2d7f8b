"""Shared helpers for the benchmark scripts: corpus location and timing."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SIPCORE_SHARED", ROOT.parent / "shared"))
CORPUS_DIR = SHARED / "testdata" / "sip" / "bench-corpus"


def free_port() -> int:
    """A free UDP port on 127.0.0.1 (for the server or a SIPp under test)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_corpus() -> list[bytes]:
    files = sorted(CORPUS_DIR.glob("*.sip"))
    if not files:
        raise SystemExit(f"no corpus in {CORPUS_DIR} (set SIPCORE_SHARED)")
    return [f.read_bytes() for f in files]


def best_rate(fn: Callable[[int], int], rounds: int, min_seconds: float) -> tuple[float, float]:
    """Run fn(iterations) `rounds` times; return (best, median) items per second.

    The machines are shared and noisy: the best round is the figure least
    disturbed by neighbours, the median says how noisy it was.
    """
    n = 1
    while True:  # calibrate to about min_seconds per round
        t = time.perf_counter()
        fn(n)
        if time.perf_counter() - t >= min_seconds / 4:
            break
        n *= 2
    n *= 4
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        items = fn(n)
        rates.append(items / (time.perf_counter() - t))
    rates.sort()
    return rates[-1], rates[len(rates) // 2]


def emit(result: dict[str, object]) -> None:
    result.setdefault("python", platform.python_version())
    print(json.dumps(result, sort_keys=True), flush=True)
