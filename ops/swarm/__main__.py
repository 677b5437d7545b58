"""``python -m ops.swarm up|status|scale|demo|down``: the cluster on Docker Swarm (make up-swarm and friends).

The same commands as ``python -m ops.cluster`` (compose), on a stack generated from compose.yaml:
``up --nodes 1`` uses (or initialises) a swarm on this engine, ``up --nodes 3`` makes three engines in
containers and a swarm of them. Status is read through a probe container inside the stack, so the
stack publishes no port at all (docs/scaling.md says why).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Any

import docker.errors

from ops import cluster as compose_ops
from ops import table
from ops.cluster import BATCH_SERVICES, DEFAULT_SCALE, PUBSUB, by_service, say
from ops.compose import ComposeError
from ops.swarm.cluster import DEFAULT_STACK, SwarmCluster
from ops.swarm.engine import SwarmError
from ops.wait import WaitError


def elapsed(t0: float) -> str:
    return f"{time.monotonic() - t0:.1f}s"


def show_status(swarm: SwarmCluster) -> bool:
    """The status table with a ``host`` column; True if every task is healthy."""
    rows, hosts = swarm.rows()
    if not rows:
        say(f"stack {swarm.name}: no running tasks (start it with make up-swarm)")
        return False
    compose_ops.console.print(table.render(rows, hosts=hosts))
    return all(table.healthy(doc) for _, doc in rows)


def cmd_up(args: argparse.Namespace, swarm: SwarmCluster) -> int:
    t0 = time.monotonic()
    replicas = {"worker": args.workers, "pipeworker": args.pipe_workers, "subscriber": args.subscribers}
    replicas["client"] = args.clients
    # The batch senders wait for every replica (handshakes), unless the caller chose otherwise.
    for var, n in (("MIN_PIPEWORKERS", args.pipe_workers), ("MIN_SUBSCRIBERS", args.subscribers)):
        swarm.env[var] = os.environ.get(var, str(n))
    say(
        f"deploying stack [bold]{swarm.name}[/] on {args.nodes} node(s): "
        + ", ".join(f"{s}={n}" for s, n in replicas.items())
    )
    try:
        swarm.up(replicas, args.nodes, args.timeout, say=say)
    except (SwarmError, WaitError) as exc:
        say(f"[red]{exc}[/]")
        say(f"remove it: python -m ops.swarm -s {swarm.name} down   (make down-swarm)")
        return 1
    show_status(swarm)
    say("look closer: make status-swarm; more workers: make scale-swarm WORKERS=6; a counted run: make demo-swarm")
    say(f"[green]stack up[/]: {len(swarm.tasks())} tasks healthy on {args.nodes} node(s) in {elapsed(t0)}")
    return 0


def cmd_status(args: argparse.Namespace, swarm: SwarmCluster) -> int:
    if args.json:
        import json

        print(json.dumps(swarm.snapshot(swarm.targets()), indent=2))
        return 0
    return 0 if show_status(swarm) else 1


def cmd_scale(args: argparse.Namespace, swarm: SwarmCluster) -> int:
    replicas = compose_ops.scale_request(args)
    if not replicas:
        return 2
    t0 = time.monotonic()
    before = swarm.counts()
    swarm.scale(replicas)
    say(", ".join(f"{svc}: {before.get(svc, 0)} -> {n}" for svc, n in replicas.items()) + f" in {elapsed(t0)}")
    show_status(swarm)
    return 0


def cmd_demo(args: argparse.Namespace, swarm: SwarmCluster) -> int:
    """One counted batch per pattern, as ``ops.cluster demo``: the batch senders rerun as fresh tasks."""
    t0 = time.monotonic()
    running = swarm.counts()
    batch, clients, missing = compose_ops.demo_batch(args, running)
    if missing:
        say(f"[red]stack {swarm.name} is missing {', '.join(missing)}[/]: start it with make up-swarm")
        return 1
    say(
        f"demo on stack {swarm.name}, batch {batch}: {clients} clients x {args.requests} requests,"
        f" {args.tasks} tasks, {args.messages} events each publisher"
    )
    lost = run_demo(swarm, args, batch, clients, running)
    say(
        f"[{'green' if lost == 0 else 'red'}]lost: {lost}[/] (demo took {elapsed(t0)}; make status-swarm for the table)"
    )
    return 0 if lost == 0 else 1


def quiet(swarm: SwarmCluster, services: list[str], timeout: float = 10) -> None:
    """Until the receivers' counts stop moving: what the stopped publishers sent has arrived (or 10 s passed)."""
    targets = [t for svc in services for t in by_service(swarm.targets(), svc)]
    last: dict[str, Any] = {}

    def still() -> bool:
        now = {label: doc.get("counters", {}).get("received") for label, doc in swarm.snapshot(targets).items()}
        same = now == last
        last.clear()
        last.update(now)
        return same

    compose_ops.settle(still, timeout, "the subscribers to go quiet")


def run_demo(swarm: SwarmCluster, args: argparse.Namespace, batch: str, clients: int, running: dict[str, int]) -> int:
    """Rerun the batch senders with counted batches, wait for them, print the report; how many were lost."""
    env = compose_ops.demo_env(args, batch, running)
    swarm.stop(BATCH_SERVICES)  # the batches still running (up's slow ones): the counts below are this demo's only
    quiet(swarm, [sub for _, sub in PUBSUB])
    before = swarm.snapshot(swarm.targets())
    swarm.rerun(env, {svc: clients if svc == "client" else 1 for svc in BATCH_SERVICES}, args.timeout)
    targets = swarm.targets()
    totals = {
        "client": clients * args.requests,
        "ventilator": args.tasks,
        "publisher": args.messages,
        "zpub": args.messages,
    }
    compose_ops.wait_batches(targets, totals, batch, args.timeout, fetch=swarm.snapshot)
    sink = by_service(targets, "sink")[:1]

    def ledger_complete() -> bool:
        doc = swarm.snapshot(sink).get(sink[0][0]) or {}
        return bool(((doc.get("batches") or {}).get(batch) or {}).get("complete"))

    compose_ops.settle(ledger_complete, 10, f"sink ledger {batch}")
    for pub_svc, sub_svc in PUBSUB:
        pub = swarm.snapshot(by_service(targets, pub_svc)).popitem()[1]
        published = (pub.get("labelled") or {}).get("published_by_topic") or {}
        subs = by_service(targets, sub_svc)

        def caught_up(subs: list = subs, published: dict = published) -> bool:
            docs = swarm.snapshot(subs)
            return all(
                sum(compose_ops.topic_delta(before.get(label), doc).values())
                >= compose_ops.expected_for(doc, published)
                for label, doc in docs.items()
            )

        compose_ops.settle(functools.partial(caught_up), 10, f"{sub_svc} to catch up")
    after = swarm.snapshot(targets)
    names = {doc.get("node"): label for label, doc in after.items()}
    return compose_ops.report(after, before, targets, names, batch)


def cmd_down(args: argparse.Namespace, swarm: SwarmCluster) -> int:
    t0 = time.monotonic()
    say(f"{swarm.down()} in {elapsed(t0)}")
    return 0


COMMANDS = {"up": cmd_up, "status": cmd_status, "scale": cmd_scale, "demo": cmd_demo, "down": cmd_down}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.swarm",
        description="Run the messaging-patterns cluster as a Docker Swarm stack generated from compose/compose.yaml "
        "(no published ports; status read through a probe container). Tunables as for ops.cluster.",
    )
    parser.add_argument(
        "-s", "--stack", default=DEFAULT_STACK, help=f"stack name (default {DEFAULT_STACK!r}, $MPC_SWARM_STACK)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="swarm (this engine, or 3 node containers), deploy the stack, wait until healthy")
    up.add_argument(
        "--nodes", type=int, choices=(1, 3), default=1, help="1: this engine; 3: three engines in containers"
    )
    up.add_argument("--workers", type=int, default=DEFAULT_SCALE["worker"], help="REP workers (default %(default)s)")
    up.add_argument("--pipe-workers", type=int, default=DEFAULT_SCALE["pipeworker"], help="default %(default)s")
    up.add_argument("--subscribers", type=int, default=DEFAULT_SCALE["subscriber"], help="default %(default)s")
    up.add_argument("--clients", type=int, default=DEFAULT_SCALE["client"], help="default %(default)s")
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for health (default %(default)s)")
    st = sub.add_parser("status", help="table of every task: node, host, role, health, messages in/out")
    st.add_argument("--json", action="store_true", help="print the /status documents as JSON")
    sc = sub.add_parser("scale", help="change replica counts live (running tasks are not restarted)")
    sc.add_argument("--workers", type=int)
    sc.add_argument("--pipe-workers", type=int)
    sc.add_argument("--subscribers", type=int)
    compose_ops.add_demo_options(sub.add_parser("demo", help="run one counted batch per pattern on the stack"))
    sub.add_parser("down", help="remove the stack, its node containers, and the swarm if up-swarm created it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, SwarmCluster(args.stack))
    except (SwarmError, WaitError, ComposeError, docker.errors.DockerException) as exc:
        say(f"[red]error:[/] {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
