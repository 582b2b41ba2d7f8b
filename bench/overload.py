#!/usr/bin/env python3
"""Calls completed per second when sipcore is offered more than it can do.

The bench/calls.py no-auth scenario (trunk -> DID -> registered SIPp UAS,
Record-Route and leg metering on) at a fixed offered rate above capacity,
twice in the same run: with load shedding (`[server] overload_queue_pct`,
the default 25) and without it (0, the baseline).  The figure is the
goodput, completed calls per second, and its ratio with shedding over
without; the calls refused with 503 are SIPp's failed calls.

    python bench/overload.py [--rate 900] [--seconds 10]

Pick --rate at about 1.5x what `bench/calls.py` reports as sipcore's
no-auth figure on the machine.  Needs `sipp` (Debian sip-tester).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, free_port, sipp_step, stop  # noqa: E402
from calls import DID, SCENARIOS, provision, register_from, start_sipcore, start_uas  # noqa: E402


def run(work: Path, shed_pct: int, rate: int, seconds: float) -> dict[str, float]:
    port, trunk_port, uas_port = free_port(), free_port(), free_port()
    db = work / f"shed{shed_pct}.db"
    provision(db, trunk_port)
    server = start_sipcore(work, port, db, f"overload_queue_pct = {shed_pct}\n")
    uas = None
    try:
        register_from(port, uas_port, "callee", "pw-callee")
        uas = start_uas(uas_port)
        args = ["-sf", str(SCENARIOS / "uac_call.xml"), f"127.0.0.1:{port}", "-s", DID, "-p", str(trunk_port),
                "-l", str(rate * 3), "-d", "0", "-recv_timeout", "8000"]  # fmt: skip
        return sipp_step(f"overload-{shed_pct}", args, rate, seconds, work)
    finally:
        stop(uas)
        stop(server, 30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=900, help="offered calls per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    if shutil.which("sipp") is None:
        print("sipp not found: apt-get install sip-tester", file=sys.stderr)
        return 2
    summary: dict[str, object] = {"bench": "overload", "summary": True, "offered_per_s": args.rate}
    with tempfile.TemporaryDirectory(prefix="sipcore-bench-overload-") as tmp:
        for shed_pct, label in ((0, "without_shedding"), (25, "with_shedding")):
            res = run(Path(tmp), shed_pct, args.rate, args.seconds)
            emit({"bench": "overload", "target": label, "offered_per_s": args.rate,
                  **{k: round(v, 1) if isinstance(v, float) else v for k, v in res.items()}})  # fmt: skip
            summary[f"{label}_completed_per_s"] = round(res["achieved_per_s"], 1)
            summary[f"{label}_failed"] = res["failed"]
        base = summary["without_shedding_completed_per_s"]
        if isinstance(base, float) and base:
            summary["ratio_with_over_without"] = round(float(summary["with_shedding_completed_per_s"]) / base, 2)  # type: ignore[arg-type]
        emit(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
