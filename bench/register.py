#!/usr/bin/env python3
"""REGISTER-with-digest throughput of one sipcore process, driven by SIPp.

Each registration is two transactions (REGISTER -> 401, REGISTER with
credentials -> 200), as a phone does it.  The benchmark steps the offered
rate up and reports the highest rate that completed with 0 failed
registrations, and, measured in the same run on the same machine, the same
SIPp scenario against a SIPp UAS that answers 401/200 without doing any work
(the load generator's own ceiling): sipcore's figure as a ratio of it; and
against bench/null_registrar.py, a uvloop responder that does no work (what
this stack itself reaches: the share of sipcore's cost that is its own).

    python bench/register.py [--rates 2000,4000,...] [--seconds 5] [--users 50000]

Needs `sipp` (Debian sip-tester).  Prints one JSON line per step and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, emit, free_port, sipp_cmd, sweep  # noqa: E402

SCENARIOS = ROOT / "tests" / "integration" / "sipp"
DOMAIN = "sipcore.test"


def provision(db: Path, users: int) -> None:
    from sipcore.store import Store

    async def go() -> None:
        store = await Store.open(str(db))
        try:
            await store.add_tenant(DOMAIN)
            await store.import_devices((f"b{i}", DOMAIN, f"pw{i}x") for i in range(users))
        finally:
            await store.close()

    asyncio.run(go())


def injection(path: Path, users: int) -> None:
    with path.open("w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(users):
            f.write(f"b{i};{DOMAIN};[authentication username=b{i} password=pw{i}x]\n")


def register_args(target: str, inf: Path) -> Callable[[int], list[str]]:
    """SIPp's arguments for the REGISTER scenario against `target` at a rate."""
    scenario = str(SCENARIOS / "register_auth.xml")
    return lambda rate: ["-sf", scenario, target, "-inf", str(inf), "-rp", "1000", "-l", str(max(1000, rate * 4)),
                         "-recv_timeout", "5000"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,2000,3000,4000,5000,6000,7000,8000,9000,10000")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each step")
    ap.add_argument("--users", type=int, default=50000)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args(argv)
    if shutil.which("sipp") is None:
        print("sipp not found: apt-get install sip-tester", file=sys.stderr)
        return 2
    rates = [int(x) for x in args.rates.split(",")]
    more = rates + [r * 2 for r in rates[-2:]]  # for the baselines: they go further
    with tempfile.TemporaryDirectory(prefix="sipcore-bench-") as tmp:
        work = Path(tmp)
        inf = work / "users.csv"
        injection(inf, args.users)
        db = work / "bench.db"
        provision(db, args.users)
        port = free_port()
        cfg = work / "bench.toml"
        cfg.write_text(
            f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nlog_level = "warning"\n'
            f'[store]\npath = "{db}"\n[auth]\nmax_failures = 1000000\n[demo]\nenabled = false\n'
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "sipcore", "serve", "--config", str(cfg)],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=(work / "server.log").open("w"),
        )
        try:
            time.sleep(2.0)
            sip = sweep("register", "sipcore", register_args(f"127.0.0.1:{port}", inf), rates, args.seconds, work)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        summary: dict[str, object] = {"bench": "register", "summary": True, "sipcore_max_per_s_0_failures": sip}
        if not args.skip_baseline:
            uas_port = free_port()
            uas = subprocess.Popen(  # in the foreground: stopped by its own PID below
                sipp_cmd("-sf", str(SCENARIOS / "uas_register_auth.xml"), "-p", str(uas_port)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(0.5)
                base = sweep(
                    "register",
                    "sipp-uas-baseline",
                    register_args(f"127.0.0.1:{uas_port}", inf),
                    more,
                    args.seconds,
                    work,
                )
            finally:
                uas.send_signal(signal.SIGTERM)
                try:
                    uas.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    uas.kill()
                    uas.wait(timeout=10)
            summary.update(
                {"baseline_max_per_s": base, "ratio_sipcore_over_baseline": round(sip / base, 2) if base else None}
            )
            floor_port = free_port()
            null_registrar = str(Path(__file__).with_name("null_registrar.py"))
            floor = subprocess.Popen([sys.executable, null_registrar, str(floor_port)])
            time.sleep(1.0)
            try:
                top = sweep(
                    "register",
                    "uvloop-null-registrar",
                    register_args(f"127.0.0.1:{floor_port}", inf),
                    more,
                    args.seconds,
                    work,
                )
            finally:
                floor.terminate()
                floor.wait(timeout=10)
            summary.update(
                {"stack_floor_max_per_s": top, "ratio_sipcore_over_stack_floor": round(sip / top, 2) if top else None}
            )
        emit(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
