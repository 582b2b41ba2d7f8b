#!/usr/bin/env python3
"""Parser throughput: msgs/s of the pure-Python and the Cython parser.

Each parse also reads the transaction-key fields (top Via branch and
sent-by, CSeq number and method, Call-ID, From tag, To tag), which is what
the transaction layer does with every message.  One core (this process).
Prints one JSON line per implementation and one with the c/py ratio.

    python bench/parse.py [--rounds 7] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import best_rate, emit, load_corpus  # noqa: E402

from sipcore.message import _pyparser  # noqa: E402


def make_runner(parse, corpus):  # type: ignore[no-untyped-def]
    def run(n: int) -> int:
        for _ in range(n):
            for data in corpus:
                m = parse(data)
                _ = (m.branch, m.via_host, m.via_port, m.cseq, m.cseq_method, m.call_id, m.from_tag, m.to_tag)
        return n * len(corpus)

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5, help="target duration of one round")
    args = ap.parse_args(argv)
    corpus = load_corpus()
    impls = {"py": _pyparser.parse}
    try:
        from sipcore.message import _cparser

        impls["c"] = _cparser.parse
    except ImportError:
        print("Cython parser not built; measuring py only", file=sys.stderr)
    gc.collect()
    results = {}
    for name, parse in impls.items():
        best, median = best_rate(make_runner(parse, corpus), args.rounds, args.seconds)
        results[name] = best
        emit(
            {
                "bench": "parse",
                "impl": name,
                "msgs_per_s": round(best),
                "median_msgs_per_s": round(median),
                "corpus_messages": len(corpus),
                "rounds": args.rounds,
            }
        )
    if "c" in results:
        emit({"bench": "parse", "ratio_c_over_py": round(results["c"] / results["py"], 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
