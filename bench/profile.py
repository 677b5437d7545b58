"""``python -m bench.profile``: where the broker's time goes under the throughput load of case 1.

Runs the broker (the node, or a :mod:`bench.lab` variant) in its own process under cProfile
(or pyinstrument), drives it with the pipelined DEALER client and the Python echo worker of case 1,
and prints the functions with the largest own time and their share of the broker's total.

``--compare a,b,...`` instead measures the variants' throughput interleaved, ``--repeat`` rounds,
without a profiler: the effect of each change on the ratio against the minimal loop and zmq.proxy.
"""

from __future__ import annotations

import argparse
import pstats
import statistics
import sys
import tempfile
from pathlib import Path

import zmq

from bench.cases import WINDOW
from bench.load import DealerLoad
from bench.procs import Host, tcp


def start_middle(variant: str, logdir: Path, front: str, back: str, profile: str = "", profiler: str = "") -> Host:
    if variant in ("minloop", "proxy"):
        return Host(variant, {"baseline": variant, "args": {"frontend": front, "backend": back}}, logdir)
    spec = {
        "node": "broker",
        "env": {"FRONTEND_BIND": front, "BACKEND_BIND": back, "STATUS_PORT": "0", "NODE_NAME": f"broker-{variant}"},
        "profile": profile,
        "profiler": profiler,
    }
    if variant != "node":
        spec["lab"] = variant
    return Host(f"broker-{variant}", spec, logdir)


def profile(args: argparse.Namespace, logdir: Path) -> None:
    ctx = zmq.Context()
    front, back = tcp(), tcp()
    out = logdir / f"broker-{args.variant}.prof"
    middle = start_middle(args.variant, logdir, front, back, str(out), args.profiler)
    worker = Host("echo", {"baseline": "swapecho", "args": {"connect": back}}, logdir)
    load = DealerLoad(ctx, front)
    try:
        load.run(200, args.payload, WINDOW, 30)
        res = load.run(args.count, args.payload, WINDOW, 120)
        print(f"{args.variant} under cProfile/pyinstrument: {res['msgs_per_s']:,.0f} round trips/s ({args.count})")
    finally:
        load.close()
        worker.stop()
        middle.stop()
        ctx.term()
    if args.profiler == "pyinstrument":
        print(out.read_text())
        return
    stats = pstats.Stats(str(out))
    total = sum(v[2] for v in stats.stats.values())  # own time of every function
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[: args.top]
    print(f"{'own %':>6} {'own s':>7} {'cum s':>7} {'calls':>9}  function")
    for (file, line, name), (_cc, calls, tottime, cumtime, _callers) in rows:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"{100 * tottime / total:6.1f} {tottime:7.3f} {cumtime:7.3f} {calls:9d}  {name} ({where})")


def compare(args: argparse.Namespace, logdir: Path) -> None:
    ctx = zmq.Context()
    variants = args.compare.split(",")
    parties, loads = [], {}
    try:
        for v in variants:
            front, back = tcp(), tcp()
            parties.append(start_middle(v, logdir, front, back))
            parties.append(Host(f"echo-{v}", {"baseline": "swapecho", "args": {"connect": back}}, logdir))
            loads[v] = DealerLoad(ctx, front)
            loads[v].run(200, args.payload, WINDOW, 30)
        rates: dict[str, list[float]] = {v: [] for v in variants}
        cpus: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.repeat):
            for i, v in enumerate(variants):
                middle = parties[2 * i]
                cpu0 = middle.cpu()
                rates[v].append(loads[v].run(args.count, args.payload, WINDOW, 120)["msgs_per_s"])
                cpus[v].append((middle.cpu() - cpu0) / args.count * 1e6)
        base = variants[0]
        for v in variants:
            ratio = statistics.median(a / b for a, b in zip(rates[v], rates[base], strict=True))
            print(
                f"{v:12} {statistics.median(rates[v]):8,.0f}/s (min {min(rates[v]):7,.0f} max {max(rates[v]):7,.0f})"
                f"  paired ratio vs {base} {ratio:.2f}  CPU {statistics.median(cpus[v]):5.1f} µs/round trip"
            )
    finally:
        for load in loads.values():
            load.close()
        for p in reversed(parties):
            p.stop()
        ctx.term()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument(
        "--variant",
        default="node",
        help="node (the real broker) or a bench.lab broker variant: peek",
    )
    p.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile")
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--payload", type=int, default=64)
    p.add_argument("--top", type=int, default=25)
    p.add_argument(
        "--compare", default="", help="comma-separated variants to measure interleaved, e.g. fixed,peek,minloop,proxy"
    )
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    if args.compare:
        compare(args, logdir)
    else:
        profile(args, logdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
