"""Shared helpers for the benchmark scripts: corpus location and timing."""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SIPCORE_SHARED", ROOT.parent / "shared"))
CORPUS_DIR = SHARED / "testdata" / "sip" / "bench-corpus"


def free_port() -> int:
    """A free UDP port on 127.0.0.1 (for the server or a SIPp under test)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sipp_cmd(*args: str) -> list[str]:
    """A SIPp command line on 127.0.0.1 without a keyboard."""
    import shutil

    return [shutil.which("sipp") or "sipp", "-i", "127.0.0.1", "-nostdin", *args]


def sipp_step(label: str, args: list[str], rate: int, seconds: float, work: Path) -> dict[str, float]:
    """One load step: SIPp runs `args` (scenario, target, limits) at `rate`
    for about `seconds`; the result comes from its statistics file."""
    import csv

    count = int(rate * seconds)
    stat = work / f"stat-{label}-{rate}.csv"
    cmd = sipp_cmd(*args, "-m", str(count), "-r", str(rate), "-trace_stat", "-stf", str(stat), "-fd", "1",
                   "-max_socket", "1", "-buff_size", str(8 * 1024 * 1024))  # fmt: skip
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 6 + 60, check=False)
    elapsed = time.monotonic() - t0
    rows = list(csv.reader(stat.open(), delimiter=";")) if stat.exists() else []
    if len(rows) < 2:
        return {"rc": r.returncode, "ok": 0, "failed": count, "elapsed_s": elapsed, "achieved_per_s": 0.0}
    head, last = rows[0], rows[-1]
    ok = int(last[head.index("SuccessfulCall(C)")])
    return {
        "rc": r.returncode,
        "ok": ok,
        "failed": int(last[head.index("FailedCall(C)")]),
        "retransmissions": int(last[head.index("Retransmissions(C)")]),
        "elapsed_s": elapsed,
        "achieved_per_s": ok / elapsed if elapsed else 0.0,
    }


def sweep(
    bench: str, label: str, args: Callable[[int], list[str]], rates: list[int], seconds: float, work: Path
) -> int:
    """Step the offered rate up; the highest *achieved* rate over the steps
    that completed with 0 failures (`args(rate)`: SIPp's arguments at that rate)."""
    best = 0
    for rate in rates:
        res = sipp_step(label, args(rate), rate, seconds, work)
        rounded = {k: round(v, 1) if isinstance(v, float) else v for k, v in res.items()}
        emit({"bench": bench, "target": label, "offered_per_s": rate, **rounded})
        if res["failed"] or res["rc"] != 0:
            break
        best = max(best, int(res["achieved_per_s"]))
        if res["achieved_per_s"] < 0.9 * rate:
            break  # saturated: the offered rate is no longer met
    return best


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


def target_options(ap: argparse.ArgumentParser, targets: tuple[str, ...], kamailio_installed: bool) -> None:
    """The options choosing what a SIPp sweep script measures (see chosen_targets)."""
    ap.add_argument("--kamailio", action="store_true", default=kamailio_installed,
                    help="measure Kamailio with one worker too (default: when kamailio is installed)")  # fmt: skip
    ap.add_argument("--skip-kamailio", dest="kamailio", action="store_false")
    ap.add_argument("--only", help=f"comma-separated targets to run, of {','.join(targets)}")


def chosen_targets(ap: argparse.ArgumentParser, args: argparse.Namespace, targets: tuple[str, ...]) -> set[str]:
    """The targets left by --only, --skip-baseline (the SIPp baseline and the
    uvloop floor) and --skip-kamailio."""
    chosen = set(args.only.split(",")) if args.only else set(targets)
    if unknown := chosen - set(targets):
        ap.error(f"unknown targets {sorted(unknown)}")
    if args.skip_baseline:
        chosen -= {"baseline", "floor"}
    if not args.kamailio:
        chosen = {t for t in chosen if not t.startswith("kamailio")}
    return chosen


def step_rates(text: str) -> tuple[list[int], list[int]]:
    """The offered rates, and those for the baselines (they go further)."""
    rates = [int(x) for x in text.split(",")]
    return rates, rates + [r * 2 for r in rates[-2:]]


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """Stop a process this benchmark started, by its PID: SIGTERM, then
    SIGKILL if it has not exited within `timeout` seconds."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def grow_receive_buffer(sock: socket.socket, size: int = 4 << 20) -> None:
    """The receive buffer sipcore and Kamailio get in these benchmarks (4 MB),
    for the stand-in servers too, so that none loses a burst another would
    have queued (SO_RCVBUFFORCE where the process may, else up to rmem_max)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def emit(result: dict[str, object]) -> None:
    result.setdefault("python", platform.python_version())
    print(json.dumps(result, sort_keys=True), flush=True)
