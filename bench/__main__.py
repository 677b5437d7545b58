"""``python -m bench``: run the cases, print the table, write JSON and plots. See BENCHMARKS.md.

Exit status: 0 when every case ran and delivered every message, whatever the ratios (SHORT is a
finding, not a failure); 1 when a case could not run or lost a message.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.cases import CASES, Env
from bench.procs import Launcher
from bench.runner import run_case

DEFAULT_SIZE, DEFAULT_REPEAT = 20000, 5
QUICK_SIZE = 60


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"tiny sizes ({QUICK_SIZE}), 1 repeat, parties as threads")
    p.add_argument("--size", type=int, default=None, help=f"messages per 64-byte run (default {DEFAULT_SIZE})")
    p.add_argument("--repeat", type=int, default=None, help=f"rounds of every variant (default {DEFAULT_REPEAT})")
    p.add_argument("--json", type=Path, default=Path("bench-results/bench.json"), help="results document")
    p.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="directory of the PNG plots (bench-results/, with --quick bench-results/quick/)",
    )
    p.add_argument(
        "--cases", default="", help="comma-separated case ids (default: all): " + ", ".join(c.id for c in CASES)
    )
    p.add_argument(
        "--lab",
        default="",
        help="comma-separated bench.lab variants to add to the cases whose roles they change "
        "(e.g. peek,nolabel,queue); a process per node only",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--threads", action="store_true", help="run every party as a thread of this process")
    mode.add_argument("--processes", action="store_true", help="a process per party even with --quick")
    args = p.parse_args(argv)
    if args.plots is None:  # a quick run must not overwrite the plots of the last full run
        args.plots = Path("bench-results/quick" if args.quick else "bench-results")
    if args.size is None:
        args.size = QUICK_SIZE if args.quick else DEFAULT_SIZE
    args.repeat_given = args.repeat is not None
    if args.repeat is None:
        args.repeat = 1 if args.quick else DEFAULT_REPEAT
    args.use_threads = args.threads or (args.quick and not args.processes and not args.lab)
    if args.lab and args.use_threads:
        p.error("--lab variants patch module state: run them as processes (drop --threads)")
    if args.size < 1 or args.repeat < 1:
        p.error("--size and --repeat must be at least 1")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM: unwind through the ``finally`` blocks, which stop every party and redis-server we started."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    wanted = {c for c in args.cases.split(",") if c}
    unknown = wanted - {c.id for c in CASES}
    if unknown:
        print(f"unknown case(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    cases = [c for c in CASES if not wanted or c.id in wanted]
    logdir = args.json.parent / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    # Node threads (--threads) log through the root logger: keep their lines in a file, not on the table.
    logging.basicConfig(filename=logdir / "bench.log", level=logging.WARNING)
    launcher = Launcher(logdir, args.use_threads)
    env = Env(size=args.size, launcher=launcher, quick=args.quick, labs=[x for x in args.lab.split(",") if x])
    mode = "threads in one process" if args.use_threads else "a process per node"
    own = "" if args.repeat_given or args.quick else "".join(f", {c.id} {c.rounds}" for c in cases if c.rounds)
    rounds = f"{args.repeat} repeat(s)" + (f" (a case's own:{own[1:]})" if own else "")
    print(f"bench: {len(cases)} cases, size {args.size}, {rounds}, {mode}", file=sys.stderr)
    started, started_at, load_before = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), os.getloadavg()
    records: list[dict[str, Any]] = []
    try:
        for case in cases:
            t0 = time.monotonic()
            # a case may make fewer rounds by default (peers: 3), unless --repeat says otherwise
            env.repeat = args.repeat if args.repeat_given or args.quick else (case.rounds or args.repeat)
            records.append(run_case(case, env, env.repeat, progress=lambda s: print(f"  {s}", file=sys.stderr)))
            status = "FAILED" if records[-1].get("error") else "ok"
            print(f"{case.id}: {status} in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    finally:
        launcher.stop_all()
        launcher.ctx.term()
    elapsed = time.monotonic() - started
    rounds = "/".join(str(r) for r in sorted({rec.get("rounds", args.repeat) for rec in records})) or args.repeat
    failed = [r["id"] for r in records if r.get("error")]
    doc = {
        "meta": {
            "summary": f"{len(records)} cases, size {args.size}, {rounds} repeats, {mode}, {elapsed:.0f} s",
            "size": args.size,
            "repeat": args.repeat,
            "mode": mode,
            "quick": args.quick,
            "seconds": round(elapsed, 1),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.platform(),
            "started": started_at,
            # 1/5/15-minute load averages: other work on the machine shows here (2 cores: above 2 is contention).
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "failed": failed,
        },
        "cases": records,
    }
    report.write_json(doc, args.json)
    report.print_table(doc)
    for path in report.plot(doc, args.plots):
        print(f"plot: {path}", file=sys.stderr)
    print(f"results: {args.json} ({elapsed:.1f} s)", file=sys.stderr)
    if failed:
        for r in records:
            if r.get("error"):
                print(f"FAILED {r['id']}: {r['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
