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
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, emit, free_port  # noqa: E402

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


def run_sipp(scenario: str, target: str, inf: Path, rate: int, count: int, workdir: Path) -> dict[str, float]:
    stat = workdir / f"stat-{scenario}-{rate}.csv"
    cmd = [
        shutil.which("sipp") or "sipp",
        "-sf",
        str(SCENARIOS / scenario),
        target,
        "-i",
        "127.0.0.1",
        "-inf",
        str(inf),
        "-m",
        str(count),
        "-r",
        str(rate),
        "-rp",
        "1000",
        "-l",
        str(max(1000, rate * 4)),
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-recv_timeout",
        "5000",
        "-max_socket",
        "1",
        "-buff_size",
        str(8 * 1024 * 1024),
    ]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=count / max(rate, 1) * 4 + 60, check=False)
    elapsed = time.monotonic() - t0
    rows = list(csv.reader(stat.open(), delimiter=";"))
    head, last = rows[0], rows[-1]
    ok = int(last[head.index("SuccessfulCall(C)")])
    failed = int(last[head.index("FailedCall(C)")])
    retrans = int(last[head.index("Retransmissions(C)")])
    return {
        "rc": r.returncode,
        "ok": ok,
        "failed": failed,
        "retransmissions": retrans,
        "elapsed_s": elapsed,
        "achieved_per_s": ok / elapsed if elapsed else 0.0,
    }


def sweep(label: str, scenario: str, target: str, inf: Path, rates: list[int], seconds: float, workdir: Path) -> int:
    """Highest *achieved* rate over the steps that completed with 0 failures."""
    best = 0
    for rate in rates:
        res = run_sipp(scenario, target, inf, rate, int(rate * seconds), workdir)
        emit(
            {
                "bench": "register",
                "target": label,
                "offered_per_s": rate,
                **{k: round(v, 1) if isinstance(v, float) else v for k, v in res.items()},
            }
        )
        if res["failed"] or res["rc"] != 0:
            break
        best = max(best, int(res["achieved_per_s"]))
        if res["achieved_per_s"] < 0.9 * rate:
            break  # saturated: the offered rate is no longer met
    return best


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
            sip = sweep("sipcore", "register_auth.xml", f"127.0.0.1:{port}", inf, rates, args.seconds, work)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        summary: dict[str, object] = {"bench": "register", "summary": True, "sipcore_max_per_s_0_failures": sip}
        if not args.skip_baseline:
            uas_port = free_port()
            uas = subprocess.Popen(
                [
                    shutil.which("sipp") or "sipp",
                    "-sf",
                    str(SCENARIOS / "uas_register_auth.xml"),
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(uas_port),
                    "-nostdin",
                    "-bg",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            uas.wait()
            time.sleep(0.5)
            try:
                base = sweep(
                    "sipp-uas-baseline",
                    "register_auth.xml",
                    f"127.0.0.1:{uas_port}",
                    inf,
                    [r for r in rates] + [r * 2 for r in rates[-2:]],
                    args.seconds,
                    work,
                )
            finally:
                subprocess.run(["pkill", "-f", "--", f"-p {uas_port} "], check=False)
            summary.update(
                {"baseline_max_per_s": base, "ratio_sipcore_over_baseline": round(sip / base, 2) if base else None}
            )
            floor_port = free_port()
            null_registrar = str(Path(__file__).with_name("null_registrar.py"))
            floor = subprocess.Popen([sys.executable, null_registrar, str(floor_port)])
            time.sleep(1.0)
            try:
                top = sweep(
                    "uvloop-null-registrar",
                    "register_auth.xml",
                    f"127.0.0.1:{floor_port}",
                    inf,
                    [r for r in rates] + [r * 2 for r in rates[-2:]],
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
