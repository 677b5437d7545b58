"""``python -m bench.host SPEC``: one node or baseline in a process of its own, plus a delivery monitor.

Why a host rather than ``python -m nodes ROLE``: a receiver's delivery rate must be timed where the
messages arrive, without adding work to the receiver's loop. The host runs the node (``NODE(settings,
ctx=, stop=)``, exactly what ``python -m nodes`` runs) or a baseline in a thread and, when the bench
arms it, a monitor thread samples the receiver's ``received`` counter every ``INTERVAL`` s: the first
sample that moved and the sample that reached the expected count give a rate with no instrumentation
inside the node (cost: one dict read per 2 ms). Timestamps are ``time.monotonic()``, which on Linux is
one clock for every process, so the bench can also time from its own send to a host's last receipt.

Protocol: one JSON object a line. The host writes ``{"ev": ...}`` lines on its stdout (node logs go to
stderr); the bench writes commands on its stdin: ``expect`` (then ``armed`` and later ``result``),
``status``, ``stop`` (then ``stopped``). SPEC is ``{"node": ROLE, "env": {...}}`` or
``{"baseline": NAME, "args": {...}}``; ``"oneshot": true`` reports ``exited`` when run() returns.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

import zmq

from ops.wait import Gone, WaitError, until

INTERVAL = 0.002
READY_TIMEOUT = 15.0

_out = sys.stdout
_out_lock = threading.Lock()


def say(ev: str, **data: Any) -> None:
    with _out_lock:
        _out.write(json.dumps({"ev": ev, **data}, default=str) + "\n")
        _out.flush()


def build(spec: dict[str, Any], ctx: zmq.Context, stop: threading.Event, own_process: bool = True) -> Any:
    """The node (as ``python -m nodes`` builds it) or baseline that SPEC names."""
    if "node" in spec:
        from nodes import roles
        from nodes.core.log import setup

        role = spec["node"]
        settings = roles.load(role, environ=spec.get("env", {}))
        if own_process:
            setup(settings.name, role, settings.log_level)
        if spec.get("lab"):  # a bench.lab variant of the node
            from bench.lab import VARIANTS

            return VARIANTS[role][spec["lab"]](settings, ctx=ctx, stop=stop)
        return roles.get(role).node_class()(settings, ctx=ctx, stop=stop)
    from bench.baselines import BASELINES

    return BASELINES[spec["baseline"]](ctx, stop, **spec.get("args", {}))


def wait_ready(target: Any, thread: threading.Thread) -> bool:
    """Whether the node or baseline in ``thread`` became ready within READY_TIMEOUT (False if its thread ended)."""

    def ready() -> bool:
        # Readiness first: a one-shot with a tiny batch (--quick) may be ready and already done by now.
        event = getattr(target, "ready", None)
        if event.is_set() if event is not None else target.stats.state in ("running", "done"):
            return True
        if not thread.is_alive():
            raise Gone(f"{thread.name} ended")
        return False

    try:
        until(ready, READY_TIMEOUT, f"{thread.name} to be ready", interval=0.005)
    except WaitError:
        return False
    return True


def expect(
    target: Any, thread: threading.Thread, counter: str, count: int, timeout: float, armed: Any = None
) -> dict[str, Any]:
    """Sample ``counters[counter]`` until it has grown by ``count``; report the first and last moves."""
    base = target.stats.counters.get(counter, 0)
    (armed or say)("armed", base=base)
    deadline = time.monotonic() + timeout
    t_first = c_first = cpu_first = None
    timed_out = False
    while True:
        now = time.monotonic()
        value = target.stats.counters.get(counter, 0)
        if t_first is None and value > base:
            t_first, c_first, cpu_first = now, value - base, time.process_time()
        if value - base >= count:
            break
        if now > deadline or not thread.is_alive():
            timed_out = True
            break
        time.sleep(INTERVAL)
    return {
        "count": value - base,
        "expected": count,
        "timed_out": timed_out,
        "t_first": t_first,
        "c_first": c_first,
        "t_last": now,
        # CPU seconds of this whole process (all its threads) between the first and the last sample.
        "cpu_s": None if cpu_first is None else time.process_time() - cpu_first,
        "counters": dict(target.stats.counters),
        "extra": target.extra_status(),
    }


def profiled(fn: Any, spec: dict[str, Any]) -> Any:
    """Run ``fn`` in this thread under cProfile or pyinstrument; write the profile to ``spec["profile"]``."""
    if spec.get("profiler") == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        try:
            return fn()
        finally:
            profiler.stop()
            with open(spec["profile"], "w") as f:
                f.write(profiler.output_text(unicode=True, color=False, show_all=False))
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(fn)
    finally:
        prof.dump_stats(spec["profile"])


def main(argv: list[str]) -> int:
    global _out
    spec = json.loads(argv[1])
    # Keep the protocol on the real stdout; everything else (node JSON logs) goes to stderr.
    _out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    ctx = zmq.Context()
    stop = threading.Event()
    result: dict[str, Any] = {}
    try:
        target = build(spec, ctx, stop)
    except Exception as exc:  # noqa: BLE001 - reported to the bench, which fails the case
        say("error", error=f"{type(exc).__name__}: {exc}")
        return 1

    def run() -> None:
        try:
            result["rc"] = profiled(target.run, spec) if spec.get("profile") else target.run()
        except Exception as exc:  # noqa: BLE001
            logging.getLogger(__name__).exception("target failed")
            result["rc"], result["error"] = 1, f"{type(exc).__name__}: {exc}"
        if spec.get("oneshot"):
            say("exited", **result, counters=dict(target.stats.counters), t=time.monotonic())

    thread = threading.Thread(target=run, name="target", daemon=True)
    thread.start()
    if not wait_ready(target, thread):
        say("error", error=result.get("error", "not ready in time"))
        stop.set()
        return 1
    say("ready", pid=os.getpid(), status_port=getattr(getattr(target, "status_server", None), "port", None))
    while line := sys.stdin.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "expect":
            say("result", **expect(target, thread, cmd.get("counter", "received"), cmd["count"], cmd["timeout"]))
        elif cmd["cmd"] == "status":
            say("status", counters=dict(target.stats.counters), extra=target.extra_status(), alive=thread.is_alive())
        elif cmd["cmd"] == "stop":
            break
    stop.set()
    if hasattr(target, "shutdown"):
        target.shutdown()
    thread.join(5.0)
    say("stopped", rc=result.get("rc"), alive=thread.is_alive())
    if not thread.is_alive():
        ctx.term()
    _out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
