#!/usr/bin/env python3
"""REGISTER-with-digest throughput of one sipcore process, driven by SIPp.

Each registration is two transactions (REGISTER -> 401, REGISTER with
credentials -> 200), as a phone does it.  The benchmark steps the offered
rate up and reports the highest rate that completed with 0 failed
registrations, and, measured in the same run on the same machine, the same
SIPp scenario against a SIPp UAS that answers 401/200 without doing any work
(the load generator's own ceiling): sipcore's figure as a ratio of it; and
against bench/null_registrar.py, a uvloop responder that does no work (what
this stack itself reaches: the share of sipcore's cost that is its own);
against bench/lean_registrar.py, the least work a Python registrar must do
for this scenario (parse, digest, a dict of bindings: the ceiling of any
Python implementation on this stack);
and against Kamailio with one UDP worker (bench/kamailio.py: digest with
nonce_count, usrloc in memory), the figure the issues' target is stated as,
once replying statelessly as its stock configuration does and once with a
transaction per REGISTER as the auth README asks for nonce_count.

    python bench/register.py [--rates 2000,4000,...] [--seconds 5] [--users 50000]
                             [--skip-baseline] [--skip-kamailio] [--only kamailio,...]

Needs `sipp` (Debian sip-tester); Kamailio is measured when `kamailio` is
installed.  Prints one JSON line per step and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kamailio  # noqa: E402
from _common import ROOT, chosen_targets, emit, free_port, sipp_cmd, step_rates, stop, sweep, target_options  # noqa: E402

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


TARGETS = ("sipcore", "baseline", "floor", "lean", "kamailio", "kamailio-stateful")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Fine steps where sipcore saturates: the sweep stops at the first failure.
    rates = "1000,2000,2500,3000,3250,3500,3750,4000,4500,5000,6000,7000,8000,8500,9000,10000"
    ap.add_argument("--rates", default=rates)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each step")
    ap.add_argument("--users", type=int, default=50000)
    ap.add_argument("--skip-baseline", action="store_true", help="no SIPp UAS baseline and no uvloop floor")
    target_options(ap, TARGETS, kamailio.available())
    args = ap.parse_args(argv)
    if shutil.which("sipp") is None:
        print("sipp not found: apt-get install sip-tester", file=sys.stderr)
        return 2
    targets = chosen_targets(ap, args, TARGETS)
    rates, more = step_rates(args.rates)
    summary: dict[str, object] = {"bench": "register", "summary": True}
    with tempfile.TemporaryDirectory(prefix="sipcore-bench-") as tmp:
        work = Path(tmp)
        inf = work / "users.csv"
        injection(inf, args.users)
        if "sipcore" in targets:
            summary["sipcore_max_per_s_0_failures"] = run_sipcore(work, inf, args.users, rates, args.seconds)
        if "baseline" in targets:
            summary["baseline_max_per_s"] = run_sipp_uas(work, inf, more, args.seconds)
        if "floor" in targets:
            summary["stack_floor_max_per_s"] = run_floor(work, inf, more, args.seconds)
        if "lean" in targets:
            summary["lean_python_max_per_s"] = run_lean(work, inf, more, args.seconds, args.users)
        if "kamailio" in targets:
            summary["kamailio_max_per_s"] = run_kamailio(work, inf, more, args.seconds, stateful=False)
        if "kamailio-stateful" in targets:
            summary["kamailio_stateful_max_per_s"] = run_kamailio(work, inf, more, args.seconds, stateful=True)
        sip = summary.get("sipcore_max_per_s_0_failures")
        for name, key in (("baseline", "baseline_max_per_s"), ("stack_floor", "stack_floor_max_per_s"),
                          ("lean_python", "lean_python_max_per_s"),
                          ("kamailio", "kamailio_max_per_s"),
                          ("kamailio_stateful", "kamailio_stateful_max_per_s")):  # fmt: skip
            other = summary.get(key)
            if isinstance(sip, int) and isinstance(other, int):
                summary[f"ratio_sipcore_over_{name}"] = round(sip / other, 2) if other else None
        emit(summary)
    return 0


def run_sipcore(work: Path, inf: Path, users: int, rates: list[int], seconds: float) -> int:
    db = work / "bench.db"
    provision(db, users)
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
        return sweep("register", "sipcore", register_args(f"127.0.0.1:{port}", inf), rates, seconds, work)
    finally:
        stop(server, 30)


def run_sipp_uas(work: Path, inf: Path, rates: list[int], seconds: float) -> int:
    """The load generator's own ceiling: a SIPp UAS answering 401/200 blindly."""
    port = free_port()
    uas = subprocess.Popen(
        sipp_cmd("-sf", str(SCENARIOS / "uas_register_auth.xml"), "-p", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        return sweep("register", "sipp-uas-baseline", register_args(f"127.0.0.1:{port}", inf), rates, seconds, work)
    finally:
        stop(uas)


def run_floor(work: Path, inf: Path, rates: list[int], seconds: float) -> int:
    """What this stack reaches doing no work: bench/null_registrar.py."""
    port = free_port()
    null_registrar = str(Path(__file__).with_name("null_registrar.py"))
    floor = subprocess.Popen([sys.executable, null_registrar, str(port)])
    try:
        time.sleep(1.0)
        return sweep("register", "uvloop-null-registrar", register_args(f"127.0.0.1:{port}", inf), rates, seconds, work)
    finally:
        stop(floor)


def run_lean(work: Path, inf: Path, rates: list[int], seconds: float, users: int) -> int:
    """The least work any Python registrar on this stack must do: bench/lean_registrar.py."""
    port = free_port()
    lean = subprocess.Popen([sys.executable, str(Path(__file__).with_name("lean_registrar.py")), str(port), str(users)])
    try:
        time.sleep(3.0)  # it computes the users' HA1 first
        return sweep("register", "lean-python-registrar", register_args(f"127.0.0.1:{port}", inf), rates, seconds, work)
    finally:
        stop(lean)


def run_kamailio(work: Path, inf: Path, rates: list[int], seconds: float, stateful: bool) -> int:
    """Kamailio with one UDP worker, REGISTER with digest into usrloc (bench/kamailio.py);
    `stateful`: a transaction per REGISTER, as the auth README asks for nonce_count."""
    port = free_port()
    proc = kamailio.start(work, port, DOMAIN, stateful_register=stateful)
    label = "kamailio-1-worker-stateful" if stateful else "kamailio-1-worker"
    try:
        return sweep("register", label, register_args(f"127.0.0.1:{port}", inf), rates, seconds, work)
    finally:
        kamailio.stop(proc)


if __name__ == "__main__":
    raise SystemExit(main())
