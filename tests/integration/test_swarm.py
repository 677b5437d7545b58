"""The cluster on Docker Swarm (ops.swarm), counted: a single-node swarm on this engine, and a swarm of
three engines in containers where every request and task crosses from one engine to another.

Each stack (module-scoped, its own name ``mpc-it-sw-<random>``) runs, in order: one counted batch per
pattern (requests N/N on workers of >= 2 nodes, a pipeline batch N distinct with 0 missing and 0
duplicates, pub/sub where each subscriber gets exactly its topics), a live scale-up of the workers,
and - three nodes only - a whole worker node stopped mid-run with every request still answered. The
fixture always tears the stack down and then checks that nothing of it is left: no container,
network or volume, and the engine's swarm state as it was (a swarm this test did not create is used,
never left; one spanning other machines makes ops.swarm refuse with a clear error).

Status is read the way ``make status-swarm`` reads it - through the probe container inside the stack -
since the stack publishes no port. Handshakes rather than sleeps: the batch senders wait for their
MIN_* peers, and the tests wait on the broker's ``peers`` and the clients' ``sent`` counters.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import pytest

from nodes import roles
from ops.cluster import topic_delta
from ops.compose import image_exists
from ops.swarm.cluster import SwarmCluster
from ops.swarm.engine import GWBRIDGE
from ops.swarm.nodes import STACK_LABEL, SWARM_NODE_IMAGE, node_name
from ops.swarm.probe import STACK_NAMESPACE
from tests.integration.conftest import BASE_ENV, NUMBERS
from tests.support import wait_until

pytestmark = pytest.mark.docker

Report = Callable[[str], None]
BATCH = roles.one_shot()
TOPICS = ("catA", "catB", "catC", "catD")
#: Topic sets: every Redis subscriber replica, and zsub (each must get exactly these, nothing else).
SUB_TOPICS, ZSUB_TOPICS = ("catA", "catC"), ("catB",)
#: The batches `up` starts are small: the tests run their own, counted.
UP_ENV = {"REQUESTS": "10", "TASKS": "10", "MESSAGES": "10", "SUB_TOPICS": ",".join(SUB_TOPICS)}
UP_ENV["ZSUB_TOPICS"] = ",".join(ZSUB_TOPICS)


def swarm_state() -> tuple[str, str, bool]:
    """The host engine's swarm membership (state, node id) and whether docker_gwbridge exists: as found."""
    client = docker.from_env()
    info = client.info().get("Swarm") or {}
    return info.get("LocalNodeState", ""), info.get("NodeID", ""), bool(client.networks.list(names=[GWBRIDGE]))


def leftovers(name: str) -> list[str]:
    """Whatever of stack ``name`` is still on the host engine: containers, networks, volumes."""
    client = docker.from_env()
    out = []
    for label in (f"{STACK_NAMESPACE}={name}", f"{STACK_LABEL}={name}", f"{STACK_NAMESPACE}.probe={name}"):
        filters = {"label": label}
        out += [f"container {c['Names'][0]}" for c in client.api.containers(all=True, filters=filters)]
        out += [f"network {n.name}" for n in client.networks.list(filters=filters)]
        out += [f"volume {v.name}" for v in client.volumes.list(filters=filters)]
    return out


@pytest.fixture(scope="module", params=[1, 3], ids=["1-node", "3-nodes"])
def swarm(docker_ready: None, request: pytest.FixtureRequest) -> Iterator[SwarmCluster]:
    """A stack of its own on 1 or 3 nodes, up and healthy; always torn down and checked clean."""
    nodes = request.param
    if nodes == 3 and not image_exists(SWARM_NODE_IMAGE):
        reason = f"image {SWARM_NODE_IMAGE} is missing: build it with `make image`"
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"REQUIRE_DOCKER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    before = swarm_state()
    env = {**BASE_ENV, **UP_ENV, "REDIS_PASSWORD": secrets.token_urlsafe(18)}
    cluster = SwarmCluster(f"mpc-it-sw-{secrets.token_hex(3)}", env=env)
    NUMBERS.append(f"swarm {nodes} node(s): stack {cluster.name}, engine swarm state before: {before[0]}")
    try:
        cluster.up({"worker": 4, "pipeworker": 3, "subscriber": 2, "client": 1}, nodes=nodes, timeout=150)
        yield cluster
    finally:
        done = cluster.down()
        NUMBERS.append(f"swarm {nodes} node(s): down: {done}")
        assert leftovers(cluster.name) == [], f"stack {cluster.name} left behind: {leftovers(cluster.name)}"
        assert swarm_state() == before, f"engine swarm state {swarm_state()}, was {before}"


# --- helpers ---------------------------------------------------------------------------------------


def docs_of(cluster: SwarmCluster, service: str) -> dict[str, dict[str, Any]]:
    """``{label: /status}`` of the running tasks of ``service``, read through the probe."""
    return cluster.snapshot(cluster.targets([service]))


def hosts_of(cluster: SwarmCluster, service: str) -> dict[str, str]:
    """Node name (as replies count it) -> the swarm node its task runs on."""
    where = {t.label: t.host for t in cluster.tasks([service])}
    return {doc["node"]: where[label] for label, doc in docs_of(cluster, service).items()}


def wait_peers(cluster: SwarmCluster, n: int) -> None:
    def connected() -> bool:
        (broker,) = docs_of(cluster, "broker").values()
        return broker["peers"] == n

    wait_until(connected, 60, f"broker /status peers == {n} (handshake)", interval=0.5)


def run_batches(cluster: SwarmCluster, env: Mapping[str, str], replicas: Mapping[str, int]) -> dict[str, dict]:
    """Stop the batch senders, rerun them with ``env``; the /status of every task just before the rerun."""
    cluster.stop(BATCH)
    before = cluster.snapshot(cluster.targets())
    cluster.rerun(env, replicas, 120)
    return before


def wait_done(cluster: SwarmCluster, services: tuple[str, ...], timeout: float = 120) -> dict[str, dict]:
    def done() -> dict[str, dict] | None:
        docs = cluster.snapshot(cluster.targets(services))
        return docs if docs and all(d["state"] == "done" for d in docs.values()) else None

    return wait_until(done, timeout, f"{', '.join(services)} to finish their batch (state done)", interval=1)


def totals(docs: Mapping[str, dict], *names: str) -> dict[str, int]:
    return {n: sum(d["counters"].get(n, 0) for d in docs.values()) for n in names}


def replies_by_worker(clients: Mapping[str, dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for doc in clients.values():
        for worker, n in (doc.get("labelled") or {}).get("replies_by_worker", {}).items():
            out[worker] = out.get(worker, 0) + n
    return out


COUNTS = ("sent", "replied", "failed", "retried")


# --- the tests -------------------------------------------------------------------------------------


def test_counted_batch_per_pattern(swarm: SwarmCluster, report: Report) -> None:
    batch = f"it-{secrets.token_hex(4)}"
    env = {
        "REQUESTS": "500",
        "RATE": "0",
        "TASKS": "1000",
        "PIPE_RATE": "0",
        "MIN_PIPEWORKERS": "3",
        "BATCH_ID": batch,
        "MESSAGES": "400",
        "PUB_RATE": "0",
        "PUB_FORMAT": "envelope",
        "ZPUB_FORMAT": "envelope",
        "MIN_SUBSCRIBERS": "2",
        "ZMIN_SUBSCRIBERS": "1",
    }
    wait_peers(swarm, 4)
    before = run_batches(swarm, env, {"client": 2, "ventilator": 1, "publisher": 1, "zpub": 1})
    docs = wait_done(swarm, BATCH)

    # request-reply: 2 fresh clients x 500, every one answered, by workers on >= 2 nodes (3-node swarm)
    clients = {label: d for label, d in docs.items() if label.startswith("client-")}
    got = totals(clients, *COUNTS)
    per_worker = replies_by_worker(clients)
    hosts = hosts_of(swarm, "worker")
    on_nodes = sorted({hosts.get(w, "?") for w in per_worker})
    report(f"{swarm.name}: 2 clients x 500 requests: {got}; replies by worker {per_worker}; worker nodes {on_nodes}")
    assert got["sent"] == got["replied"] == 1000 and got["failed"] == 0, got
    assert sum(per_worker.values()) == 1000 and set(per_worker) == set(hosts), (per_worker, hosts)
    if swarm.on_nodes():
        assert len(on_nodes) >= 2, f"workers answered from {on_nodes} only"
        assert "node1" not in " ".join(on_nodes), f"a worker ran on the core node: {on_nodes}"

    # pipeline: the sink's ledger of this batch
    (sink,) = docs_of(swarm, "sink").values()
    ledger = sink["batches"][batch]
    report(f"{swarm.name}: pipeline batch {batch}: {ledger}")
    assert (ledger["size"], ledger["distinct"], ledger["missing"], ledger["duplicates"]) == (1000, 1000, 0, 0)

    # pub/sub, both transports: each subscriber exactly its topics, 100 events a topic, no anomaly
    for publisher, subscriber, want in (("publisher", "subscriber", SUB_TOPICS), ("zpub", "zsub", ZSUB_TOPICS)):
        (pub,) = (d for label, d in docs.items() if label.startswith(f"{publisher}-"))
        assert pub["labelled"]["published_by_topic"] == dict.fromkeys(TOPICS, 100), pub["labelled"]
        n = 100 * len(want)

        def caught_up(service: str = subscriber, n: int = n) -> dict[str, dict] | None:
            subs = docs_of(swarm, service)
            return subs if all(sum(topic_delta(before.get(k), d).values()) >= n for k, d in subs.items()) else None

        subs = wait_until(caught_up, 30, f"every {subscriber} to receive {n} events", interval=1)
        for label, doc in subs.items():
            got_topics = topic_delta(before.get(label), doc)
            anomalies = {
                k: doc["counters"][k] - before[label]["counters"][k]
                for k in ("gaps", "duplicates", "out_of_order", "unexpected", "rejected")
            }
            report(f"{swarm.name}: {label} [{','.join(want)}] got {got_topics}, anomalies {anomalies}")
            assert got_topics == dict.fromkeys(want, 100), (label, got_topics)
            assert not any(anomalies.values()), (label, anomalies)


def test_scale_workers_while_requests_flow(swarm: SwarmCluster, report: Report) -> None:
    swarm.scale({"worker": 4})
    wait_peers(swarm, 4)
    old = set(hosts_of(swarm, "worker"))
    # 1500 requests at 50/s: ~30 s of traffic, so the scale-up lands in the middle of it even on a busy machine.
    run_batches(swarm, {"REQUESTS": "1500", "RATE": "50"}, {"client": 1})
    wait_until(lambda: totals(docs_of(swarm, "client"), "sent")["sent"] >= 100, 60, "100 requests sent", interval=0.5)
    swarm.set_replicas({"worker": 6})  # live: swarm adds two tasks; the broker's peers are the handshake
    wait_peers(swarm, 6)
    mid = totals(docs_of(swarm, "client"), "sent")["sent"]
    assert mid < 1500, "the batch ended before the new workers connected: nothing left to rebalance"
    clients = wait_done(swarm, ("client",))
    got = totals(clients, *COUNTS)
    per_worker = replies_by_worker(clients)
    swarm.wait_healthy(60, expect={"worker": 6})
    hosts = hosts_of(swarm, "worker")
    new = set(hosts) - old
    report(f"{swarm.name}: scaled 4 -> 6 workers after {mid} of 1500 requests; {got}")
    answered = {w: per_worker.get(w, 0) for w in sorted(new)}
    report(f"{swarm.name}: new workers on {sorted(hosts[w] for w in new)} answered {answered}")
    assert len(new) == 2, (old, hosts)
    assert got["sent"] == got["replied"] == 1500 and got["failed"] == 0, got
    assert all(per_worker.get(w, 0) > 0 for w in new), per_worker


@pytest.mark.parametrize("swarm", [3], ids=["3-nodes"], indirect=True)  # one node has no worker node to stop
def test_stop_a_worker_node_mid_run(swarm: SwarmCluster, report: Report) -> None:
    assert swarm.on_nodes()
    run_batches(swarm, {"REQUESTS": "1000", "RATE": "50", "REQUEST_TIMEOUT": "1", "RETRIES": "5"}, {"client": 1})
    # Stop the worker node the client does not run on: it takes workers (and pipeworkers, subscribers) only.
    (client,) = swarm.tasks(["client"])
    spread = {node_name(swarm.name, i): i for i in (2, 3)}
    assert client.host in spread, f"the client runs on {client.host}, not a worker node"
    (victim,) = set(spread) - {client.host}
    hosts = hosts_of(swarm, "worker")
    lost_workers = sorted(w for w, h in hosts.items() if h == victim)
    assert lost_workers and len(lost_workers) < len(hosts), f"workers by node: {hosts}"
    wait_until(lambda: totals(docs_of(swarm, "client"), "sent")["sent"] >= 150, 60, "150 requests sent", interval=0.5)
    swarm.nodes.stop(spread[victim])
    sent = totals(docs_of(swarm, "client"), "sent")["sent"]
    report(f"{swarm.name}: stopped {victim} (workers {lost_workers}) after {sent} of 1000 requests")
    clients = wait_done(swarm, ("client",))
    got = totals(clients, *COUNTS)
    per_worker = replies_by_worker(clients)
    report(f"{swarm.name}: after the node stop: {got}; replies by worker {per_worker}")
    assert sent < 1000, "the batch ended before the node was stopped"
    assert got["sent"] == got["replied"] == 1000 and got["failed"] == 0, got
