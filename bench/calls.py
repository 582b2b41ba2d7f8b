#!/usr/bin/env python3
"""Calls per second through one sipcore process, driven by SIPp.

Each call is INVITE/100/180/200/ACK/BYE/200 through the proxy (Record-Route,
dialog tracking and leg metering on: two legs per call written to SQLite).
Two variants:

- ``noauth``: a trunk (recognised by source address, no digest) calls a DID
  that rings a registered SIPp UAS;
- ``auth``: a device calls another device, answering a 407 on every INVITE.

The offered rate steps up; the figure is the highest achieved rate that
completed with 0 failed calls.  The baseline, measured in the same run, is
the same UAC scenario straight against the SIPp UAS (the load generator's
own ceiling on this machine), so sipcore's figure is also given as a ratio.
And both variants through Kamailio with one UDP worker (bench/kamailio.py:
stateful proxy, Record-Route, the callee a registered SIPp UAS found in
usrloc; the trunk by its address, the device with 407 digest), the figure
the issues' target is stated as.

    python bench/calls.py [--rates 200,400,...] [--seconds 5] [--variants noauth,auth]
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

sys.path.insert(0, str(ROOT))
from tests.integration.harness import register_from  # noqa: E402

SCENARIOS = ROOT / "tests" / "integration" / "sipp"
DOMAIN = "sipcore.test"
DID = "15550001"


def provision(db: Path, trunk_port: int) -> None:
    from sipcore.store import Store

    async def go() -> None:
        store = await Store.open(str(db))
        try:
            await store.add_tenant(DOMAIN)
            await store.add_device("caller", DOMAIN, "pw-caller")
            await store.add_device("callee", DOMAIN, "pw-callee")
            await store.add_trunk("bench-trunk", DOMAIN, "127.0.0.1", trunk_port)
            await store.add_did(DID, f"callee@{DOMAIN}")
        finally:
            await store.close()

    asyncio.run(go())


def uac_args(uac: list[str]) -> Callable[[int], list[str]]:
    return lambda rate: [*uac, "-l", str(max(500, rate * 3)), "-d", "0", "-recv_timeout", "8000"]


def start_uas(port: int) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        sipp_cmd("-sf", str(SCENARIOS / "uas_call.xml"), "-p", str(port), "-buff_size", str(8 * 1024 * 1024)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return p


def start_sipcore(work: Path, port: int, db: Path, server_toml: str = "") -> subprocess.Popen[bytes]:
    """`sipcore serve` on 127.0.0.1:`port` with the provisioned `db`, ready."""
    cfg = work / "bench.toml"
    cfg.write_text(
        f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nlog_level = "warning"\n{server_toml}'
        f'[store]\npath = "{db}"\n[auth]\nmax_failures = 1000000\n'
        "[proxy]\ntrunk_probe_s = 0\n[demo]\nenabled = false\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "sipcore", "serve", "--config", str(cfg)],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=(work / "server.log").open("a"),
    )
    time.sleep(2.0)
    return server


TARGETS = ("sipcore", "baseline", "kamailio")
# Fine steps where sipcore and Kamailio saturate: the sweep stops at the first failed call.
DEFAULT_RATES = "100,200,300,350,400,450,500,550,600,700,800,1000,1200,1500,1800,2000,2200,2400,2700,3000"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default=DEFAULT_RATES)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each step")
    ap.add_argument("--variants", default="noauth,auth")
    ap.add_argument("--skip-baseline", action="store_true")
    target_options(ap, TARGETS, kamailio.available())
    args = ap.parse_args(argv)
    if shutil.which("sipp") is None:
        print("sipp not found: apt-get install sip-tester", file=sys.stderr)
        return 2
    targets = chosen_targets(ap, args, TARGETS)
    rates, more = step_rates(args.rates)
    variants = args.variants.split(",")
    summary: dict[str, object] = {"bench": "calls", "summary": True}
    with tempfile.TemporaryDirectory(prefix="sipcore-bench-calls-") as tmp:
        work = Path(tmp)
        trunk_port = free_port()
        inf = work / "callers.csv"
        inf.write_text(f"SEQUENTIAL\ncaller;callee;{DOMAIN};[authentication username=caller password=pw-caller]\n")
        if targets & {"sipcore", "baseline"}:
            run_sipcore(work, inf, trunk_port, targets, variants, rates, more, args.seconds, summary)
        if "kamailio" in targets:
            run_kamailio(work, inf, trunk_port, variants, more, args.seconds, summary)
        for variant in ("noauth", "auth"):
            sip, kam = summary.get(f"sipcore_{variant}_cps_0_failures"), summary.get(f"kamailio_{variant}_cps")
            if isinstance(sip, int) and isinstance(kam, int):
                summary[f"ratio_sipcore_over_kamailio_{variant}"] = round(sip / kam, 3) if kam else None
        emit(summary)
    return 0


def run_sipcore(
    work: Path,
    inf: Path,
    trunk_port: int,
    targets: set[str],
    variants: list[str],
    rates: list[int],
    more: list[int],
    seconds: float,
    summary: dict[str, object],
) -> None:
    """sipcore's sweeps and the SIPp baseline (the UAC straight against the UAS)."""
    port, uas_port = free_port(), free_port()
    db = work / "bench.db"
    provision(db, trunk_port)
    server = start_sipcore(work, port, db)
    uas = None
    try:
        register_from(port, uas_port, "callee", "pw-callee")
        uas = start_uas(uas_port)
        target = f"127.0.0.1:{port}"
        if "sipcore" in targets and "noauth" in variants:
            uac = ["-sf", str(SCENARIOS / "uac_call.xml"), target, "-s", DID, "-p", str(trunk_port)]
            summary["sipcore_noauth_cps_0_failures"] = sweep(
                "calls", "sipcore-noauth", uac_args(uac), rates, seconds, work
            )
        if "sipcore" in targets and "auth" in variants:
            uac = ["-sf", str(SCENARIOS / "uac_call_auth.xml"), target, "-inf", str(inf)]
            summary["sipcore_auth_cps_0_failures"] = sweep("calls", "sipcore-auth", uac_args(uac), rates, seconds, work)
        if "baseline" in targets:
            uac = ["-sf", str(SCENARIOS / "uac_call.xml"), f"127.0.0.1:{uas_port}", "-s", DID]
            base = sweep("calls", "sipp-uas-baseline", uac_args(uac), more, seconds, work)
            summary["baseline_cps"] = base
            for key in ("sipcore_noauth_cps_0_failures", "sipcore_auth_cps_0_failures"):
                if key in summary and base:
                    summary[key.replace("_cps_0_failures", "_ratio")] = round(int(summary[key]) / base, 3)  # type: ignore[call-overload]
    finally:
        stop(uas)
        stop(server, 30)
    if "sipcore" in targets:
        summary["legs_written"] = _count_legs(db)


def run_kamailio(
    work: Path,
    inf: Path,
    trunk_port: int,
    variants: list[str],
    rates: list[int],
    seconds: float,
    summary: dict[str, object],
) -> None:
    """The same sweeps through Kamailio with one UDP worker (bench/kamailio.py):
    the trunk known by its address, the DID mapped to the callee, the callee
    a SIPp UAS registered with digest and found through usrloc."""
    port, uas_port = free_port(), free_port()
    proc = kamailio.start(work, port, DOMAIN, trunk=("127.0.0.1", trunk_port), dids={DID: "callee"})
    uas = None
    try:
        register_from(port, uas_port, "callee", "pw-callee")
        uas = start_uas(uas_port)
        target = f"127.0.0.1:{port}"
        if "noauth" in variants:
            uac = ["-sf", str(SCENARIOS / "uac_call.xml"), target, "-s", DID, "-p", str(trunk_port)]
            summary["kamailio_noauth_cps"] = sweep(
                "calls", "kamailio-1-worker-noauth", uac_args(uac), rates, seconds, work
            )
        if "auth" in variants:
            uac = ["-sf", str(SCENARIOS / "uac_call_auth.xml"), target, "-inf", str(inf)]
            summary["kamailio_auth_cps"] = sweep("calls", "kamailio-1-worker-auth", uac_args(uac), rates, seconds, work)
    finally:
        stop(uas)
        kamailio.stop(proc)


def _count_legs(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT count(*) FROM legs").fetchone()[0])


if __name__ == "__main__":
    raise SystemExit(main())
