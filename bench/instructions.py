#!/usr/bin/env python3
"""Machine instructions the sans-IO core spends per registration, counted by
valgrind's callgrind: the same figure on every run, whatever else the machine
is doing.

The machines these benchmarks run on change speed by 2x within an hour
(bench/core.py's parse baseline has read 0.9 to 2.5 us), so a change to the
core worth 5% cannot be told apart from noise by timing it.  Counting
instructions can: this runs the REGISTER -> 401, REGISTER with digest -> 200
flow of bench/core.py (the SIPp scenario of bench/register.py) under
callgrind for N and for 2N users and reports the difference per
registration, so that start-up and the users' set-up cancel out.  The
client's side is kept to a few hash calls.

Baselines in the same run, counted the same way: parsing the two messages
of a registration with sipcore's parser (the Cython one when built), so the
ratio says how many parses' worth of work one registration costs the core;
and the same registrations through bench/lean_registrar.py (in-process, its
sends captured), the least work a Python registrar must do for the scenario,
so that ratio says how far the core is from the floor of its stack.
Instructions are not time (cache misses and branch mispredictions are not
counted), so this complements bench/core.py and bench/register.py; it does
not replace them.

    python bench/instructions.py [--users 400]      (needs valgrind)
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit  # noqa: E402

_COLLECTED = re.compile(r"Collected : (\d+)")
# str hashes are randomized per process, and with them every dict's probe
# sequence: a fixed seed keeps the count the same from run to run.
FIXED_HASH = {**os.environ, "PYTHONHASHSEED": "0"}
_NONCE = re.compile(rb'nonce="([^"]+)"')


def _scenario(n: int, answer: Callable[[bytes, float, int], bytes]) -> None:
    """n registrations (REGISTER -> 401, REGISTER with digest -> 200) against
    `answer`, which hands one datagram to the server under test and returns
    what it sent back."""
    import core as bench_core

    domain = bench_core.DOMAIN
    ha2 = hashlib.md5(f"REGISTER:sip:{domain}".encode()).hexdigest()
    ha1 = [hashlib.md5(f"b{i}:{domain}:pw{i}x".encode()).hexdigest() for i in range(n)]
    first = [bench_core.register_msg(i, 1) for i in range(n)]
    _tune_gc()
    for i in range(n):
        now, now_ms = 1000 + i / 1000, 1_790_000_000_000 + i
        out = answer(first[i], now, now_ms)
        m = _NONCE.search(out)
        assert m is not None, out[:200]
        nonce = m.group(1).decode()
        response = hashlib.md5(f"{ha1[i]}:{nonce}:00000001:c{i}:auth:{ha2}".encode()).hexdigest()
        auth = (
            f'Digest username="b{i}", realm="{domain}", nonce="{nonce}", uri="sip:{domain}", '
            f'response="{response}", algorithm=MD5, cnonce="c{i}", qop=auth, nc=00000001'
        )
        out = answer(bench_core.register_msg(i, 2, auth), now, now_ms)
        assert out.startswith(b"SIP/2.0 200"), out[:200]


def work_register(n: int) -> None:
    """n registrations through a Core, as bench/core.py drives it."""
    import core as bench_core

    from sipcore.flow import Flow

    core = bench_core.make_core(max(n, 1))
    flow = Flow("udp", "127.0.0.1", 5061, 1)

    def answer(data: bytes, now: float, now_ms: int) -> bytes:
        core.receive(data, flow, now, now_ms)
        out = bench_core.drain(core)
        assert out, "nothing sent"
        return out[0]

    _scenario(n, answer)


def work_lean(n: int) -> None:
    """The same n registrations through bench/lean_registrar.py's registrar
    (in-process, its sends captured): the least a Python registrar must do."""
    import core as bench_core
    import lean_registrar

    lean_registrar.DOMAIN = bench_core.DOMAIN
    lean = lean_registrar.LeanRegistrar(max(n, 1))
    sent: list[bytes] = []

    class Capture:
        def sendto(self, data: bytes, addr: object) -> None:
            sent.append(data)

    lean.transport = Capture()  # type: ignore[assignment]
    source = ("127.0.0.1", 5061)

    def answer(data: bytes, now: float, now_ms: int) -> bytes:
        lean.datagram_received(data, source)
        return sent.pop()

    _scenario(n, answer)


def work_parse(n: int) -> None:
    """The baseline: parse a registration's two messages n times."""
    import core as bench_core

    from sipcore.message import parse

    auth = (
        'Digest username="b1", realm="sipcore.test", nonce="AAABmqK7Y2Sb3L1qA2L7H6wR1Ckx0t1A0c6K3mYjX4s", '
        'uri="sip:sipcore.test", response="0123456789abcdef0123456789abcdef", algorithm=MD5, '
        'cnonce="c1", qop=auth, nc=00000001'
    )
    first = [bench_core.register_msg(i, 1) for i in range(n)]
    second = [bench_core.register_msg(i, 2, auth) for i in range(n)]
    _tune_gc()
    for i in range(n):
        parse(first[i])
        parse(second[i])


def _tune_gc() -> None:
    # As sipcore.server does at start: what is built so far is frozen out of
    # the collector, and young collections are rare.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def count(flow: str, n: int) -> int:
    """Instructions of one worker process doing `n` of `flow`."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    proc = subprocess.run([*cmd, "--worker", flow, "--users", str(n)], capture_output=True, text=True, env=FIXED_HASH)
    m = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"valgrind run of {flow} x{n} failed:\n{proc.stderr[-2000:]}")
    return int(m.group(1))


def per_item(flow: str, n: int) -> float:
    return (count(flow, 2 * n) - count(flow, n)) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=400, help="registrations in the smaller run (the larger has 2x)")
    ap.add_argument("--worker", choices=("register", "lean", "parse"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.users < 1:
        ap.error("--users must be at least 1")
    if args.worker is not None:
        {"register": work_register, "lean": work_lean, "parse": work_parse}[args.worker](args.users)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    from sipcore.message import IMPLEMENTATION

    core = per_item("register", args.users)
    lean = per_item("lean", args.users)
    parse = per_item("parse", args.users)
    emit(
        {
            "bench": "instructions",
            "flow": "register",
            "parser": IMPLEMENTATION,
            "instructions_per_registration": round(core),
            "lean_registrar_instructions_per_registration": round(lean),
            "baseline_parse_instructions_per_registration": round(parse),
            "ratio_core_over_parse": round(core / parse, 1),
            "ratio_core_over_lean": round(core / lean, 2),
            "users": args.users,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
