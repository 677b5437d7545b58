"""``python -m ops.cluster``: the container cluster for a person - up, down, status, scale, logs, demo.

The Makefile's ``make up/down/status/scale/logs/demo`` call this. It drives one compose project
(default ``mpc``, or ``-p NAME`` / ``$MPC_PROJECT``) through :mod:`ops.compose`, and reads every
node's ``/status`` over its port published on 127.0.0.1 - never the logs - to show what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console

from nodes import roles
from nodes.core.config import ConfigError
from ops import table
from ops.compose import (
    DEFAULT_PROJECT,
    IMAGE,
    ROOT,
    SERVICE_LABEL,
    ComposeError,
    Project,
    health_of,
    image_exists,
    label_of,
    read_env_file,
    snapshot,
    status_of,
)
from ops.keys import secure_project
from ops.wait import TimedOut, WaitError, until

#: Replica counts of ``up`` unless given.
DEFAULT_SCALE = {"worker": 3, "pipeworker": 3, "subscriber": 2, "client": 2}
#: ``scale`` options -> services.
SCALE_OPTIONS = {"workers": "worker", "pipe_workers": "pipeworker", "subscribers": "subscriber"}
#: The one-shot batch senders ``demo`` reruns, and the long-running services it needs (from the registry).
BATCH_SERVICES = roles.one_shot()
#: The optional Prometheus: its compose profile and image (scripts/build-service-image.sh prometheus).
PROMETHEUS_PROFILE = "prometheus"
PROMETHEUS_IMAGE = os.environ.get("PROMETHEUS_IMAGE", "mpc-prometheus:latest")
#: The optional RabbitMQ (scripts/build-service-image.sh rabbitmq): pub/sub and the pipeline then go through it.
RABBITMQ_PROFILE = "rabbitmq"
RABBITMQ_IMAGE = os.environ.get("RABBITMQ_IMAGE", "mpc-rabbitmq:latest")
#: The dashboard only watches: a demo runs without it.
OBSERVERS = tuple(name for name in roles.NAMES if roles.ROLES[name].pattern == "dashboard")
NEEDED = (*(name for name in roles.NAMES if name not in BATCH_SERVICES and name not in OBSERVERS), "redis")
#: Publisher -> its subscribers, per transport (the demo's report compares what each got).
PUBSUB = (("publisher", "subscriber"), ("zpub", "zsub"))

console = Console(width=max(Console().width, 120))


def say(text: str = "") -> None:
    console.print(text, highlight=False)


def elapsed(t0: float) -> str:
    return f"{time.monotonic() - t0:.1f}s"


# --- up / down / status / scale / logs ---------------------------------------------------------------


def cmd_up(args: argparse.Namespace, project: Project) -> int:
    t0 = time.monotonic()
    if not image_exists(IMAGE):
        say(f"[red]image {IMAGE} not found[/]: build it first with `make image` (bash scripts/build-image.sh)")
        return 1
    scale = {"worker": args.workers, "pipeworker": args.pipe_workers, "subscriber": args.subscribers}
    scale["client"] = args.clients
    if args.prometheus:
        if not image_exists(PROMETHEUS_IMAGE):
            say(f"[red]image {PROMETHEUS_IMAGE} not found[/]: build it with `make image`")
            return 1
        with_prometheus(project)
    if args.rabbitmq:
        if not image_exists(RABBITMQ_IMAGE):
            say(f"[red]image {RABBITMQ_IMAGE} not found[/]: build it with `make up RABBITMQ=1`")
            return 1
        code = with_rabbitmq(project, args.timeout)
        if code:
            return code
    # The batch senders wait for every replica (handshakes), unless the caller chose otherwise.
    for var, n in (("MIN_PIPEWORKERS", args.pipe_workers), ("MIN_SUBSCRIBERS", args.subscribers)):
        project.env[var] = os.environ.get(var, str(n))
    say(f"starting project [bold]{project.name}[/] from {IMAGE}: " + ", ".join(f"{s}={n}" for s, n in scale.items()))
    timeout = args.timeout
    try:
        project.up(scale=scale)
    except ComposeError as exc:  # e.g. a dependency never became healthy: say so, then show which and why
        say(f"[red]{exc}[/]")
        timeout = 10
    try:
        project.wait_healthy(timeout, expect=scale)
    except ComposeError as exc:
        say(f"[red]{exc}[/]")
        say(f"look closer: python -m ops.cluster -p {project.name} logs SERVICE")
        say(f"remove it:   python -m ops.cluster -p {project.name} down   (make down)")
        return 1
    show_status(project)
    where_to_look(project)
    n = len(project.containers(running=True))
    say(f"[green]cluster up[/]: {n} containers healthy in {elapsed(t0)} (project {project.name})")
    return 0


def where_to_look(project: Project) -> None:
    urls: dict[str, str] = {}
    for label, url in project.targets():
        urls.setdefault(label.rsplit("-", 1)[0], url)
    say("where to look:")
    say(f"  [bold]dashboard[/]        {dashboard_url(project)}   (live page of every node)")
    if project.containers(["prometheus"], running=True):
        say(f"  prometheus       {prometheus_url(project)}   (every node's /metrics, scraped every 5 s)")
    say("  every node       make status          (python -m ops.cluster status)")
    for service in ("broker", "sink", "subscriber", "zsub"):
        if service in urls:
            say(f"  {service:<16} {urls[service]}   (also /metrics, /healthz)")
    for what, url in (host_endpoints(project) | echo_endpoints(project)).items():
        say(f"  {what:<16} {url}")
    say("  logs             make logs            make logs SERVICE=broker")
    say("  more workers     make scale WORKERS=6 (PIPE_WORKERS=, SUBSCRIBERS=)")
    say("  a counted run    make demo            stop it all: make down")
    if project.overrides:  # SECURITY=curve
        say("  security         curve (CURVE + key allow-list, Redis ACL users): refused peers in auth_denied")
    else:
        say("  security         plain: no authentication, anyone who reaches a port is trusted (SECURITY=curve)")


def with_prometheus(project: Project) -> None:
    """Enable the compose profile of the optional Prometheus, and link the dashboard to it."""
    project.env["COMPOSE_PROFILES"] = PROMETHEUS_PROFILE
    project.env["PROMETHEUS_URL"] = prometheus_url(project)


def with_rabbitmq(project: Project, timeout: float) -> int:
    """Enable the RabbitMQ profile, make pub/sub and the pipeline use it, and start it first (healthy), so the
    publisher, subscribers, ventilator and pipeworkers find it: they cannot depend_on an optional service."""
    profiles = [p for p in project.env.get("COMPOSE_PROFILES", "").split(",") if p]
    project.env["COMPOSE_PROFILES"] = ",".join([*profiles, RABBITMQ_PROFILE])
    project.env |= {"PUBSUB_BACKEND": "rabbitmq", "PIPE_BACKEND": "rabbitmq"}
    say("starting rabbitmq first (pub/sub and the pipeline go through it)")
    try:
        project.up(["rabbitmq"], {"rabbitmq": 1}, quiet=True)
        project.wait_healthy(timeout, services=["rabbitmq"], expect={"rabbitmq": 1})
    except ComposeError as exc:
        say(f"[red]{exc}[/]")
        return 1
    return 0


def follow_rabbitmq(project: Project) -> bool:
    """When this project runs RabbitMQ (up --rabbitmq), containers recreated now (demo, scale) use it too."""
    if not project.containers(["rabbitmq"], running=True):
        return False
    project.env |= {"PUBSUB_BACKEND": "rabbitmq", "PIPE_BACKEND": "rabbitmq"}
    return True


def prometheus_url(project: Project) -> str:
    env = {**read_env_file(project.env_file), **os.environ, **project.env}
    return f"http://127.0.0.1:{env.get('PROMETHEUS_PORT') or '9090'}/"


def dashboard_url(project: Project) -> str:
    """The dashboard page as compose publishes it (127.0.0.1:${DASHBOARD_PORT:-8080})."""
    env = {**read_env_file(project.env_file), **os.environ, **project.env}
    return f"http://127.0.0.1:{env.get('DASHBOARD_PORT') or '8080'}/"


def host_endpoints(project: Project) -> dict[str, str]:
    """Where a program on the host reaches the cluster (the fixed ports compose.yaml publishes)."""
    env = {**read_env_file(project.env_file), **os.environ, **project.env}
    curve = "KEYS_HOST_DIR" in project.env  # SECURITY=curve (ops.keys.secure_project)
    key = ", CURVE: an allowed key, docs/wire.md" if curve else ""
    passwords = f"{env['KEYS_HOST_DIR']}/redis.env" if curve else project.env_file.relative_to(ROOT)
    return {
        "your REQ client": f"tcp://127.0.0.1:{env.get('FRONTEND_HOST_PORT', '5555')}  (broker frontend{key})",
        "your SUB socket": f"tcp://127.0.0.1:{env.get('ZPUB_HOST_PORT', '5559')}  (zpub{key})",
        "your Redis client": f"redis://127.0.0.1:{env.get('REDIS_HOST_PORT', '6379')}/0  "
        f"(password: REDIS_PASSWORD in {passwords})",
    }


#: The plain-socket servers and their container port, published on an ephemeral 127.0.0.1 port (compose.yaml).
ECHO_PORTS = {"udpserver": ("5561/udp", "your UDP client"), "tcpserver": ("5562/tcp", "your TCP client")}


def echo_host_ports(project: Project) -> dict[str, int]:
    """Service -> the 127.0.0.1 port docker published for the echo server's port (running ones only)."""
    out = {}
    for service, (port, _) in ECHO_PORTS.items():
        for container in project.containers([service], running=True)[:1]:
            for binding in (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(port) or []:
                if binding.get("HostPort"):
                    out[service] = int(binding["HostPort"])
    return out


def echo_endpoints(project: Project) -> dict[str, str]:
    """Where a program on the host reaches the echo servers (docker chose the host ports)."""
    return {
        ECHO_PORTS[service][
            1
        ]: f"127.0.0.1:{port}  (examples/{service.replace('server', 'client')}.py 127.0.0.1:{port})"
        for service, port in echo_host_ports(project).items()
    }


def cmd_down(args: argparse.Namespace, project: Project) -> int:
    t0 = time.monotonic()
    n = len(project.containers())
    # every optional profile, so that down removes the optional Prometheus and RabbitMQ too
    project.env["COMPOSE_PROFILES"] = f"{PROMETHEUS_PROFILE},{RABBITMQ_PROFILE}"
    project.down()
    say(f"project {project.name}: removed {n} containers, its networks and volumes in {elapsed(t0)}")
    return 0


def show_status(project: Project) -> bool:
    """Print the status table (plus stopped containers); True if every node is healthy."""
    rows = table.fetch(project.targets())
    if not rows:
        say(f"project {project.name}: no running containers (start it with make up)")
        return False
    console.print(table.render(rows))
    stopped = [c for c in project.containers() if c.attrs.get("State", {}).get("Status") != "running"]
    for c in stopped:  # e.g. a killed worker: not in the table (no port), but worth a line
        code = c.attrs.get("State", {}).get("ExitCode")
        say(f"[yellow]{label_of(c)}[/] ({c.name}): {health_of(c)}, exit code {code}")
    return all(table.healthy(doc) for _, doc in rows) and not stopped


def cmd_status(args: argparse.Namespace, project: Project) -> int:
    if args.json:
        print(json.dumps(snapshot(project.targets()), indent=2))
        return 0
    return 0 if show_status(project) else 1


def scale_request(args: argparse.Namespace) -> dict[str, int]:
    """``{service: replicas}`` that --workers/--pipe-workers/--subscribers ask for (ops.cluster and ops.swarm
    scale); empty after saying so when none was given."""
    scale = {svc: getattr(args, opt) for opt, svc in SCALE_OPTIONS.items() if getattr(args, opt) is not None}
    if not scale:
        say("[red]nothing to scale[/]: give --workers N, --pipe-workers N and/or --subscribers N")
    return scale


def cmd_scale(args: argparse.Namespace, project: Project) -> int:
    scale = scale_request(args)
    if not scale:
        return 2
    t0 = time.monotonic()
    follow_rabbitmq(project)
    before = {svc: len(project.containers([svc], running=True)) for svc in scale}
    # --no-recreate: running replicas keep serving; compose only adds or removes containers.
    project.up(list(scale), scale, no_deps=True, recreate="no")
    project.wait_healthy(120, services=list(scale), expect=scale)
    say(", ".join(f"{svc}: {before[svc]} -> {n}" for svc, n in scale.items()) + f" in {elapsed(t0)}")
    show_status(project)
    return 0


def cmd_logs(args: argparse.Namespace, project: Project) -> int:
    extra = ["--tail", str(args.tail)] + ([] if args.no_follow else ["-f"])
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends following; not an error
        project.compose("logs", *extra, *([args.service] if args.service else []), timeout=10**9)
    return 0


# --- demo: one counted batch of each pattern ---------------------------------------------------------


def settle(check: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``check()`` until it is true or ``timeout`` passes; no error (the report then shows what is missing)."""
    with contextlib.suppress(TimedOut):
        until(check, timeout, what, interval=0.3, ignore=(OSError,))


def batch_done(url: str) -> bool:
    return status_of(url)["state"] == "done"


def ledger_complete(sink_url: str, batch: str) -> bool:
    return bool(((status_of(sink_url).get("batches") or {}).get(batch) or {}).get("complete"))


def by_service(targets: Sequence[tuple[str, str]], service: str) -> list[tuple[str, str]]:
    return [(label, url) for label, url in targets if label.rsplit("-", 1)[0].removesuffix("-run") == service]


def expected_for(doc: Mapping[str, Any], published: Mapping[str, int]) -> int:
    """Events a subscriber should get: the published counts of the topics it subscribed to (``*`` = all)."""
    topics = doc.get("topics_subscribed") or ["*"]
    return sum(n for t, n in published.items() if "*" in topics or t in topics)


def topic_delta(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, int]:
    old = (before or {}).get("topics") or {}
    out = {
        t: v.get("received", 0) - (old.get(t) or {}).get("received", 0) for t, v in (after.get("topics") or {}).items()
    }
    return {t: n for t, n in sorted(out.items()) if n}


def caught_up(url: str, before: Mapping[str, Any] | None, published: Mapping[str, int]) -> bool:
    """Whether the subscriber at ``url`` has received every event of its topics since ``before``."""
    after = status_of(url)
    return sum(topic_delta(before, after).values()) >= expected_for(after, published)


def counter_delta(before: Mapping[str, Any] | None, after: Mapping[str, Any], *names: str) -> int:
    old = (before or {}).get("counters") or {}
    return sum(after.get("counters", {}).get(n, 0) - old.get(n, 0) for n in names)


def shares(counts: Mapping[str, int], names: Mapping[str, str]) -> str:
    total = sum(counts.values()) or 1
    labelled = sorted((names.get(k, k), n) for k, n in counts.items())
    return "  ".join(f"{label} {n} ({n / total:.0%})" for label, n in labelled)


#: Each batch sender's pattern as the demo names it, on its progress bar and its summary lines.
PROGRESS_TITLES = {
    "client": "request-reply",
    "ventilator": "pipeline",
    "publisher": "Redis pub/sub",
    "zpub": "ZeroMQ pub/sub",
    "udpclient": "UDP echo",
    "tcpclient": "TCP echo",
}


def demo_titles(rabbit: bool) -> dict[str, str]:
    """:data:`PROGRESS_TITLES`, with pub/sub and the pipeline named after RabbitMQ when they go through it."""
    if not rabbit:
        return PROGRESS_TITLES
    return {**PROGRESS_TITLES, "ventilator": "pipeline (AMQP)", "publisher": "RabbitMQ pub/sub"}


def batch_progress(service: str, docs: Sequence[Mapping[str, Any]], sink: Mapping[str, Any] | None, batch: str) -> int:
    """How much of ``service``'s batch is done: requests answered (or given up), tasks in the sink's
    ledger, events published."""
    if service == "client":
        return sum(d.get("counters", {}).get("replied", 0) + d.get("counters", {}).get("failed", 0) for d in docs)
    if service == "ventilator":
        ledger = (((sink or {}).get("batches") or {}).get(batch)) or {}
        return int(ledger.get("distinct") or 0)
    return sum(d.get("counters", {}).get("sent", 0) for d in docs)


def wait_batches(
    targets: list[tuple[str, str]],
    totals: Mapping[str, int],
    batch: str,
    timeout: float,
    fetch: Callable[[list[tuple[str, str]]], dict[str, dict[str, Any]]] = snapshot,
    titles: Mapping[str, str] = PROGRESS_TITLES,
) -> None:
    """Wait until every batch sender is done (state "done"), with one rich progress bar a pattern.

    ``fetch`` reads ``{label: /status}`` of targets: over the published ports (compose), or through
    ops.swarm's probe.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    senders = {svc: by_service(targets, svc) for svc in BATCH_SERVICES}
    sinks = by_service(targets, "sink")
    deadline = time.monotonic() + timeout
    columns = (TextColumn("  {task.description:<15}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bars = {svc: progress.add_task(titles.get(svc, svc), total=totals.get(svc)) for svc in senders}
        while True:
            docs = fetch([t for svc in senders for t in senders[svc]] + sinks[:1])
            sink = docs.get(sinks[0][0]) if sinks else None
            pending = []
            for svc, members in senders.items():
                mine = [docs[label] for label, _ in members if label in docs]
                done = len(mine) == len(members) and all(d.get("state") == "done" for d in mine)
                pending += [label for label, _ in members if not done]
                progress.update(bars[svc], completed=batch_progress(svc, mine, sink, batch))
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise ComposeError(f"timed out after {timeout:g}s waiting for {', '.join(pending)} to finish its batch")
            time.sleep(0.3)


def demo_batch(args: argparse.Namespace, running: Mapping[str, int]) -> tuple[str, int, list[str]]:
    """A new demo's batch id, its client count, and the services it needs that are not running."""
    missing = [svc for svc in NEEDED if not running.get(svc)]
    clients = args.clients or running.get("client") or DEFAULT_SCALE["client"]
    return f"demo-{time.strftime('%Y%m%dT%H%M%S')}", clients, missing


def demo_env(args: argparse.Namespace, batch: str, running: Mapping[str, int]) -> dict[str, str]:
    """The batch senders' settings of one demo: unpaced counted batches that wait for every running peer."""
    return {
        "REQUESTS": str(args.requests),
        "RATE": "0",
        "TASKS": str(args.tasks),
        "TASK_MS": "1",
        "PIPE_RATE": "0",
        "BATCH_ID": batch,
        "MIN_PIPEWORKERS": str(running["pipeworker"]),
        "MESSAGES": str(args.messages),
        "PUB_RATE": "0",
        "PUB_FORMAT": "envelope",  # sequence-checked, so the demo can count every event
        "ZPUB_FORMAT": "envelope",
        "MIN_SUBSCRIBERS": str(running["subscriber"]),
        "ZMIN_SUBSCRIBERS": str(running["zsub"]),
        "ECHO_REQUESTS": str(args.requests),
        "ECHO_RATE": "0",
    }


def cmd_demo(args: argparse.Namespace, project: Project) -> int:
    t0 = time.monotonic()
    running: dict[str, int] = {}
    for c in project.containers(running=True):
        svc = c.labels.get(SERVICE_LABEL, "?")
        running[svc] = running.get(svc, 0) + 1
    batch, clients, missing = demo_batch(args, running)
    if missing:
        say(f"[red]project {project.name} is missing {', '.join(missing)}[/]: start it with make up")
        return 1
    env = demo_env(args, batch, running)
    rabbit = follow_rabbitmq(project)
    if rabbit:
        say(
            "[bold]RabbitMQ[/] (make up RABBITMQ=1): pub/sub through a topic exchange,"
            " the pipeline's tasks through a durable queue"
        )
    say(f"demo on project {project.name}, batch {batch}:")
    say(
        f"  {clients} clients x {args.requests} requests -> {running['worker']} workers;"
        f" {args.tasks} tasks -> {running['pipeworker']} pipeworkers;"
        f" {args.messages} events each -> {running['subscriber']} {broker_name(rabbit)} subscribers,"
        f" {running['zsub']} zsub(s)"
    )
    # Stop the batches still running (make up's slow ones) first, so the counts below are this demo's only.
    project.compose("rm", "-s", "-f", *BATCH_SERVICES, capture=True)
    before = snapshot(project.targets())
    project.up(BATCH_SERVICES, {"client": clients}, env=env, no_deps=True, recreate="force", quiet=True)
    project.wait_healthy(args.timeout, services=BATCH_SERVICES, expect={"client": clients})
    targets = project.targets()
    totals = {"client": clients * args.requests, "ventilator": args.tasks, "publisher": args.messages}
    echo = dict.fromkeys(ECHO_CLIENTS, args.requests)
    wait_batches(targets, {**totals, "zpub": args.messages, **echo}, batch, args.timeout, titles=demo_titles(rabbit))
    settle(functools.partial(ledger_complete, by_service(targets, "sink")[0][1], batch), 10, f"sink ledger {batch}")
    for pub_svc, sub_svc in PUBSUB:
        doc = status_of(by_service(targets, pub_svc)[0][1])
        published = (doc.get("labelled") or {}).get("published_by_topic") or {}
        for label, url in by_service(targets, sub_svc):
            settle(functools.partial(caught_up, url, before.get(label), published), 10, f"{label} to catch up")
    after = snapshot(targets)
    names = {doc.get("node"): label for label, doc in after.items()}
    lost = report(after, before, targets, names, batch, rabbit)
    say(f"[{'green' if lost == 0 else 'red'}]lost: {lost}[/] (demo took {elapsed(t0)}; make status for the table)")
    return 0 if lost == 0 else 1


def report(
    after: dict[str, dict[str, Any]],
    before: dict[str, dict[str, Any]],
    targets: list[tuple[str, str]],
    names: dict[str, str],
    batch: str,
    rabbit: bool = False,
) -> int:
    """Print one summary block per pattern; returns how many messages were lost overall.

    ``rabbit``: pub/sub and the pipeline's tasks went through RabbitMQ (make up RABBITMQ=1), so the lines
    say so, and the pipeline's shows what the broker redelivered (a lost pipeworker's unacknowledged tasks).
    """
    lost = 0
    titles = demo_titles(rabbit)
    # request-reply: the clients are fresh containers, so their own counts are exactly this batch
    clients = [after[label] for label, _ in by_service(targets, "client")]
    sent, replied, failed, retried = (sum(d["counters"].get(k, 0) for d in clients) for k in COUNTS)
    per_worker: dict[str, int] = {}
    for doc in clients:
        for worker, n in ((doc.get("labelled") or {}).get("replies_by_worker") or {}).items():
            per_worker[worker] = per_worker.get(worker, 0) + n
    lost += sent - replied
    say(f"[bold]{titles['client']:<15}[/] sent {sent}  replied {replied}  failed {failed}  retried {retried}")
    say(f"  replies by worker: {shares(per_worker, names)}")
    # pipeline: the sink's ledger of this batch
    ledger = after[by_service(targets, "sink")[0][0]]["batches"].get(batch) or {}
    lost += ledger.get("missing") or 0
    redelivered = ""
    if rabbit:
        n = sum(
            counter_delta(before.get(label), after[label], "redelivered")
            for label, _ in by_service(targets, "pipeworker")
        )
        redelivered = f"  redelivered by RabbitMQ {n}"
    say(
        f"[bold]{titles['ventilator']:<15}[/] size {ledger.get('size')}  "
        f"distinct {ledger.get('distinct')}  missing {ledger.get('missing')}  duplicates {ledger.get('duplicates')}"
        + redelivered
    )
    say(f"  results by pipeworker: {shares(ledger.get('by_worker') or {}, names)}")
    # pub/sub, both transports: what each subscriber got since the batch started
    for pub_svc, sub_svc in PUBSUB:
        title = titles[pub_svc]
        published = (after[by_service(targets, pub_svc)[0][0]].get("labelled") or {}).get("published_by_topic") or {}
        per_topic = " ".join(f"{t} {n}" for t, n in sorted(published.items()))
        say(f"[bold]{title:<15}[/] published {sum(published.values())} ({per_topic})")
        for label, _ in by_service(targets, sub_svc):
            doc, old = after[label], before.get(label)
            got = topic_delta(old, doc)
            want = expected_for(doc, published)
            anomalies = counter_delta(old, doc, "gaps", "duplicates", "out_of_order", "unexpected")
            lost += max(0, want - sum(got.values()))
            say(
                f"  {label:<20} got {sum(got.values())}/{want}  "
                + " ".join(f"{t} {n}" for t, n in got.items())
                + f"  gaps+dups+reordered+unexpected {anomalies}"
            )
    return lost + report_echo(after, targets)


def broker_name(rabbit: bool) -> str:
    """What the publisher and subscribers go through: Redis, or RabbitMQ with make up RABBITMQ=1."""
    return "RabbitMQ" if rabbit else "Redis"


COUNTS = ("sent", "replied", "failed", "retried")
#: The plain-socket clients and the counters their demo line shows after sent/answered/lost.
ECHO_CLIENTS = {
    "udpclient": ("reordered", "duplicates", "late"),
    "tcpclient": ("split_reads", "joined_reads"),
}


def report_echo(after: dict[str, dict[str, Any]], targets: list[tuple[str, str]]) -> int:
    """One line per echo client (fresh containers: their counts are this batch's); returns the requests lost."""
    lost = 0
    for service, extra in ECHO_CLIENTS.items():
        title = PROGRESS_TITLES[service]
        for label, _ in by_service(targets, service):
            c = after[label].get("counters") or {}
            lost += c.get("sent", 0) - c.get("answered", 0)  # lost, or never settled
            more = "  ".join(f"{name.replace('_', ' ')} {c.get(name, 0)}" for name in extra)
            say(
                f"[bold]{title:<15}[/] sent {c.get('sent')}  answered {c.get('answered')}  lost {c.get('lost')}  {more}"
            )
    return lost


# --- command line ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.cluster",
        description="Run the messaging-patterns cluster as docker compose containers (status ports on 127.0.0.1). "
        "Tunables such as REQUESTS, RATE, WORK_MS, TASKS, MESSAGES are read from the environment "
        "(see compose/compose.yaml).",
    )
    parser.add_argument(
        "-p",
        "--project",
        default=DEFAULT_PROJECT,
        help=f"compose project name (default {DEFAULT_PROJECT!r}, $MPC_PROJECT)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the cluster, wait until every container is healthy, show where to look")
    up.add_argument("--workers", type=int, default=DEFAULT_SCALE["worker"], help="REP workers (default %(default)s)")
    up.add_argument("--pipe-workers", type=int, default=DEFAULT_SCALE["pipeworker"], help="default %(default)s")
    up.add_argument("--subscribers", type=int, default=DEFAULT_SCALE["subscriber"], help="default %(default)s")
    up.add_argument("--clients", type=int, default=DEFAULT_SCALE["client"], help="default %(default)s")
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for health (default %(default)s)")
    up.add_argument(
        "--prometheus",
        action="store_true",
        default=os.environ.get("PROMETHEUS", "") not in ("", "0"),
        help="also start Prometheus on 127.0.0.1:$PROMETHEUS_PORT (9090), scraping every node ($PROMETHEUS=1)",
    )
    up.add_argument(
        "--rabbitmq",
        action="store_true",
        default=os.environ.get("RABBITMQ", "") not in ("", "0"),
        help="also start RabbitMQ; publisher/subscribers and ventilator/pipeworkers then use it ($RABBITMQ=1)",
    )

    sub.add_parser("down", help="remove this project's containers, networks and volumes (nothing else)")
    st = sub.add_parser("status", help="table of every node: role, health, messages in/out, share of load")
    st.add_argument("--json", action="store_true", help="print the /status documents as JSON")

    sc = sub.add_parser("scale", help="change replica counts live (running replicas are not restarted)")
    sc.add_argument("--workers", type=int, help="REP workers behind the broker")
    sc.add_argument("--pipe-workers", type=int, help="pipeline workers")
    sc.add_argument("--subscribers", type=int, help="Redis subscribers")

    lg = sub.add_parser("logs", help="follow the JSON-lines logs (all services, or one)")
    lg.add_argument("service", nargs="?", help="e.g. broker, worker, sink")
    lg.add_argument("--tail", type=int, default=50, help="lines of history per container (default %(default)s)")
    lg.add_argument("--no-follow", action="store_true", help="print and exit")

    add_demo_options(
        sub.add_parser("demo", help="run one request, pipeline and pub/sub batch and print what was delivered")
    )
    return parser


def add_demo_options(dm: argparse.ArgumentParser) -> None:
    """The demo's batch sizes (ops.cluster demo and ops.swarm demo take the same)."""
    dm.add_argument("--requests", type=int, default=500, help="requests per client (default %(default)s)")
    dm.add_argument("--clients", type=int, default=0, help="client containers (default: as many as now, else 2)")
    dm.add_argument("--tasks", type=int, default=1000, help="pipeline tasks (default %(default)s)")
    dm.add_argument("--messages", type=int, default=400, help="events per publisher (default %(default)s)")
    dm.add_argument("--timeout", type=float, default=120, help="seconds to wait for the batches (default %(default)s)")


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "scale": cmd_scale,
    "logs": cmd_logs,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    project = Project(args.project)
    try:
        secure_project(project)  # SECURITY=curve: compose/security.yaml and the keys (ops.keys)
    except ConfigError as exc:
        say(f"[red]error:[/] {exc}")
        return 2
    try:
        return COMMANDS[args.command](args, project)
    except (ComposeError, WaitError) as exc:
        say(f"[red]error:[/] {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
