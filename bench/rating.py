#!/usr/bin/env python3
"""Rating a month of 10 million call legs from the store (issue 5: "seconds, not minutes").

Builds a temporary database with one tenant and N legs in one month
(pseudo-random durations up to 10 minutes, 10 % with video, 5 % transcoded,
2 % unanswered, a few in progress), then measures, in the same run:

* ``scan``: the plain aggregate scan of those legs
  (``SELECT sum(voice_ms), ... WHERE tenant_id = ? AND month = ?``): the floor
  any SQL aggregation of the month pays;
* ``rate``: ``Store.rate_month`` -- per-leg rounding of three minute metrics
  in SQL, MAU/counters/peaks, and the pure engine -- with one plan, and with
  a mid-month plan change (two periods, two roundings per metric);
* ``python_per_leg``: the alternative, on a sample extrapolated to N: fetch
  each leg into Python and feed the pure engine one ``Leg`` per leg.

    python bench/rating.py [--legs 10000000] [--rounds 3] [--keep PATH]

Prints one JSON line per result (best of the rounds, and the median).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, emit  # noqa: E402

sys.path.insert(0, str(ROOT))

MONTH = "2026-01"
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
MONTH_MS = 31 * 86_400_000
DOMAIN = "bench.example"


def build(path: Path, legs: int) -> float:
    """Migrate a fresh database and bulk-insert the legs in SQL; seconds taken."""
    from sipcore.store import Store

    async def migrate() -> None:
        store = await Store.open(str(path))
        try:
            await store.add_tenant(DOMAIN)
            await store.set_plan(DOMAIN, "sip-core", "2025-01-01")
        finally:
            await store.close()

    asyncio.run(migrate())
    started = time.perf_counter()
    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("PRAGMA journal_mode = OFF")  # a throw-away database: no journal while loading
        c.execute("PRAGMA synchronous = OFF")
        c.execute("PRAGMA cache_size = -1000000")
        c.execute("BEGIN")
        # A recursive CTE generates the rows inside SQLite: no Python per row.
        c.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO legs (leg_id, tenant_id, month, endpoint_kind, endpoint_id, direction, call_id, from_tag,
                              caller, callee, setup_ms, answer_ms, end_ms, final_status,
                              voice_ms, video_ms, transcoding_ms, updated_ms)
            SELECT printf('%016x', i), 1, ?, 'device', i % 5000, 'originating', 'call-' || i, 'tag',
                   'sip:a@bench.example', 'sip:b@bench.example',
                   ? + i * ? / ?, answered, CASE WHEN i % 1000 = 999 THEN NULL ELSE answered + d END,
                   CASE WHEN answered IS NULL THEN 486 ELSE 200 END,
                   CASE WHEN answered IS NULL OR i % 10 = 0 THEN 0 ELSE d END,
                   CASE WHEN answered IS NOT NULL AND i % 10 = 0 THEN d ELSE 0 END,
                   CASE WHEN answered IS NOT NULL AND i % 20 = 1 THEN d ELSE 0 END,
                   0
            FROM (SELECT i, (i * 7919 + 13) % 600000 AS d,
                         CASE WHEN i % 50 = 7 THEN NULL ELSE ? + i * ? / ? + 3000 END AS answered FROM n)
            """,
            (legs - 1, MONTH, T0, MONTH_MS - 700_000, legs, T0, MONTH_MS - 700_000, legs),
        )
        c.execute(
            "INSERT INTO usage_mau SELECT 1, ?, value, ? FROM generate_series(1, 5000)"
            if _has_generate_series(c)
            else "WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < 5000)"
            " INSERT INTO usage_mau SELECT 1, ?, value, ? FROM n",
            (MONTH, T0 + 1000),
        )
        c.execute("INSERT INTO device_count_log (tenant_id, at_ms, count) VALUES (1, ?, 5000)", (T0 - 1,))
        c.execute("COMMIT")
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("ANALYZE")
    finally:
        c.close()
    return time.perf_counter() - started


def _has_generate_series(c: sqlite3.Connection) -> bool:
    try:
        c.execute("SELECT * FROM generate_series(1, 1)").fetchall()
        return True
    except sqlite3.OperationalError:
        return False


def timed(fn, rounds: int) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[0], times[len(times) // 2], result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--legs", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sample", type=int, default=200_000, help="legs for the Python-per-leg comparison")
    ap.add_argument("--keep", metavar="PATH", help="build the database here and keep it")
    args = ap.parse_args()

    from sipcore.rating import Leg, PlanLibrary, Usage, rate
    from sipcore.store import Store

    with tempfile.TemporaryDirectory(prefix="sipcore-bench-") as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "rating.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        build_s = build(path, args.legs)
        size = path.stat().st_size
        emit({"bench": "rating.build", "legs": args.legs, "seconds": round(build_s, 2), "db_bytes": size})

        c = sqlite3.connect(path)
        billable = c.execute(
            "SELECT count(*) FROM legs WHERE tenant_id = 1 AND month = ? AND answer_ms IS NOT NULL"
            " AND end_ms IS NOT NULL",
            (MONTH,),
        ).fetchone()[0]

        def scan() -> object:
            return c.execute(
                "SELECT count(*), sum(voice_ms), sum(video_ms), sum(transcoding_ms) FROM legs WHERE tenant_id = 1"
                " AND month = ? AND answer_ms IS NOT NULL AND end_ms IS NOT NULL",
                (MONTH,),
            ).fetchone()

        scan_best, scan_median, _ = timed(scan, args.rounds)
        c.close()
        emit({"bench": "rating.scan", "legs": args.legs, "best_s": round(scan_best, 3),
              "median_s": round(scan_median, 3), "legs_per_s": round(args.legs / scan_best)})  # fmt: skip

        plans = PlanLibrary(ROOT / "config" / "plans")

        async def rate_rounds(n: int) -> list[tuple[float, object]]:
            store = await Store.open(str(path))
            try:
                out = []
                for _ in range(n):
                    t = time.perf_counter()
                    invoice = await store.rate_month(DOMAIN, MONTH, plans)
                    out.append((time.perf_counter() - t, invoice))
                return out
            finally:
                await store.close()

        results = {}
        for label in ("rate", "rate.plan_change"):
            if label == "rate.plan_change":

                async def change() -> None:
                    store = await Store.open(str(path))
                    try:
                        await store.set_plan(DOMAIN, "cometchat", "2026-01-16")
                    finally:
                        await store.close()

                asyncio.run(change())
            runs = sorted(asyncio.run(rate_rounds(args.rounds)), key=lambda r: r[0])
            best, median, invoice = runs[0][0], runs[len(runs) // 2][0], runs[0][1]
            results[label] = best
            emit({"bench": f"rating.{label}", "legs": args.legs, "billable_legs": billable, "best_s": round(best, 3),
                  "median_s": round(median, 3), "legs_per_s": round(args.legs / best),
                  "ratio_to_scan": round(best / scan_best, 2), "total": str(invoice.total),  # type: ignore[attr-defined]
                  "plans": [p.name for p in invoice.plans]})  # type: ignore[attr-defined]  # fmt: skip

        # The alternative: fetch every leg into Python and hand the engine one Leg each.
        n = min(args.sample, args.legs)
        plan = plans.get("sip-core")
        c = sqlite3.connect(path)
        t = time.perf_counter()
        legs = []
        for answer, voice, video, transcoding in c.execute(
            "SELECT answer_ms, voice_ms, video_ms, transcoding_ms FROM legs WHERE tenant_id = 1 AND month = ?"
            " AND answer_ms IS NOT NULL AND end_ms IS NOT NULL LIMIT ?",
            (MONTH, n),
        ):
            for metric, d in (("voice.minutes", voice), ("video.minutes", video), ("transcoding.minutes", transcoding)):
                if d:
                    legs.append(Leg(metric, d, at_ms=answer))
        rate(Usage(MONTH, legs=tuple(legs)), plan)
        per_leg = (time.perf_counter() - t) / n
        c.close()
        emit({"bench": "rating.python_per_leg", "sample_legs": n, "legs_per_s": round(1 / per_leg),
              "extrapolated_s_for_legs": round(per_leg * args.legs, 1), "legs": args.legs,
              "sql_speedup": round(per_leg * args.legs / results["rate"], 1)})  # fmt: skip


if __name__ == "__main__":
    main()
