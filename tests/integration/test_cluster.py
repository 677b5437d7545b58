"""The compose cluster, counted: every message sent is accounted for, read from each node's /status.

One compose project serves the whole module (started service by service, torn down at the end).
Batch senders (client, ventilator, publisher, zpub) are one-shots held in state "done"; a test
reruns one by recreating its containers with new settings. Long-running nodes keep counting, so
the broker's per-worker numbers are compared as the growth between two snapshots.

Handshakes rather than sleeps: clients start only once the broker's /status shows every worker
connected (``peers``, from its backend socket monitor); the ventilator waits for
MIN_PIPEWORKERS; publisher and zpub wait for MIN_SUBSCRIBERS listening subscribers.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from ops.compose import NUMBER_LABEL, Project, label_of, labelled_delta, status_url
from tests.support import ROOT, get_json, wait_until

pytestmark = pytest.mark.docker

Report = Callable[[str], None]
TOPICS = ("catA", "catB", "catC", "catD")


# --- helpers ---------------------------------------------------------------------------------------


def status(url: str) -> dict[str, Any]:
    return get_json(url)


def only(cluster: Project, service: str) -> str:
    """The status URL of a single-container service."""
    (target,) = cluster.targets([service])
    return target[1]


def names(cluster: Project, service: str) -> dict[str, str]:
    """Node name (as peers count it) -> container label, for the running containers of ``service``."""
    return {status(url)["node"]: label for label, url in cluster.targets([service])}


def start(
    cluster: Project, services: list[str], scale: Mapping[str, int], env: Mapping[str, str] | None = None
) -> None:
    """Bring ``services`` to ``scale`` without restarting running replicas, and wait until all are healthy."""
    cluster.up(services, scale, env=env, no_deps=True, recreate="no", quiet=True)
    cluster.wait_healthy(120, services=services, expect=scale)


def rerun(cluster: Project, service: str, n: int, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(Re)create ``n`` containers of a one-shot service with ``env``; returns their (label, url)."""
    cluster.up([service], {service: n}, env=env, no_deps=True, recreate="force", quiet=True)
    cluster.wait_healthy(120, services=[service], expect={service: n})
    return cluster.targets([service])


def wait_done(targets: list[tuple[str, str]], timeout: float) -> list[dict[str, Any]]:
    """Wait until every one-shot in ``targets`` has finished its batch (state "done"); their documents."""
    for label, url in targets:
        wait_until(lambda u=url: status(u)["state"] == "done", timeout, f"{label} to finish its batch (state done)")
    return [status(url) for _, url in targets]


def totals(docs: list[dict[str, Any]], *names: str) -> dict[str, int]:
    return {n: sum(d["counters"].get(n, 0) for d in docs) for n in names}


def wait_workers_connected(cluster: Project, n: int) -> None:
    broker = only(cluster, "broker")
    wait_until(lambda: status(broker)["peers"] == n, 30, f"broker /status peers == {n} (handshake)")


def share_line(counts: Mapping[str, int], labels: Mapping[str, str]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(
        f"{labels.get(k, k)} {v} ({v / total:.1%})"
        for k, v in sorted(counts.items(), key=lambda kv: labels.get(kv[0], kv[0]))
    )


CLIENT_COUNTS = ("sent", "replied", "failed", "retried")


# --- request-reply through the broker --------------------------------------------------------------


def test_requests_spread_over_four_workers(cluster: Project, report: Report) -> None:
    start(cluster, ["broker", "worker"], {"broker": 1, "worker": 4})
    wait_workers_connected(cluster, 4)
    broker = only(cluster, "broker")
    before = status(broker)

    clients = rerun(cluster, "client", 2, {"REQUESTS": "1000", "RATE": "0"})
    docs = wait_done(clients, 120)

    got = totals(docs, *CLIENT_COUNTS)
    per_worker = labelled_delta(before, status(broker), "replies_by_worker")
    labels = names(cluster, "worker")
    report(f"2 clients x 1000 requests -> 4 workers: {got}")
    report(f"broker replies_by_worker: {share_line(per_worker, labels)}")
    assert got["sent"] == 2000 and got["replied"] == 2000 and got["failed"] == 0, got
    assert sum(per_worker.values()) == 2000, per_worker
    assert set(per_worker) == set(labels), f"replies came from {sorted(per_worker)}, workers are {sorted(labels)}"
    for worker, n in per_worker.items():
        assert 0.15 <= n / 2000 <= 0.35, f"{labels[worker]} took {n / 2000:.1%} of the requests, outside 15-35%"


def test_scale_workers_while_requests_flow(cluster: Project, report: Report) -> None:
    start(cluster, ["broker", "worker"], {"broker": 1, "worker": 4})
    wait_workers_connected(cluster, 4)
    broker = only(cluster, "broker")
    old_workers = names(cluster, "worker")

    # 2 x 1500 requests at 50/s each: ~30 s of traffic, so the scale-up (a few seconds, more on a busy
    # 2-core machine) lands in the middle of it.
    clients = rerun(cluster, "client", 2, {"REQUESTS": "1500", "RATE": "50"})
    wait_until(lambda: sum(status(u)["counters"]["sent"] for _, u in clients) >= 100, 30, "100 requests sent")

    cluster.up(["worker"], {"worker": 6}, no_deps=True, recreate="no", quiet=True)  # live: running workers stay
    wait_workers_connected(cluster, 6)
    mid = status(broker)
    sent_so_far = sum(status(u)["counters"]["sent"] for _, u in clients)
    assert sent_so_far < 3000, "the batch ended before the new workers connected: nothing left to rebalance"

    docs = wait_done(clients, 120)
    got = totals(docs, *CLIENT_COUNTS)
    after_scale = labelled_delta(mid, status(broker), "replies_by_worker")
    labels = names(cluster, "worker")
    new_workers = set(labels) - set(old_workers)
    report(f"scaled 4 -> 6 workers after {sent_so_far} of 3000 requests were sent; clients: {got}")
    report(f"replies after the scale-up: {share_line(after_scale, labels)}")
    report(
        "new workers: " + ", ".join(f"{labels[w]} {after_scale.get(w, 0)}" for w in sorted(new_workers, key=labels.get))
    )
    assert len(new_workers) == 2, f"expected 2 new workers, found {sorted(labels[w] for w in new_workers)}"
    assert got["sent"] == 3000 and got["replied"] == 3000 and got["failed"] == 0, got
    for w in new_workers:
        assert after_scale.get(w, 0) > 0, f"new worker {labels[w]} took no request after the scale-up"


def test_killed_worker_loses_no_request(cluster: Project, report: Report) -> None:
    start(cluster, ["broker", "worker"], {"broker": 1, "worker": 6})
    # One more worker, slow (200 ms a request), so that when it is killed it is surely holding one.
    cluster.up(["worker"], {"worker": 7}, env={"WORK_MS": "200"}, no_deps=True, recreate="no", quiet=True)
    cluster.wait_healthy(120, services=["worker"], expect={"worker": 7})
    wait_workers_connected(cluster, 7)
    slow = max(cluster.containers(["worker"], running=True), key=lambda c: int(c.labels[NUMBER_LABEL]))
    slow_url = status_url(slow)
    assert slow_url and status(slow_url)["node"], slow.name

    clients = rerun(cluster, "client", 2, {"REQUESTS": "200", "RATE": "0", "REQUEST_TIMEOUT": "1"})
    wait_until(
        lambda: (c := status(slow_url)["counters"])["received"] > c["sent"],
        30,
        f"{slow.name} to hold a request (received > sent)",
    )
    slow.kill()  # docker kill: SIGKILL, the request in its hands is gone
    report(f"killed {slow.name} (WORK_MS=200) while it held a request")

    docs = wait_done(clients, 120)
    got = totals(docs, *CLIENT_COUNTS)
    slow.reload()
    report(f"2 clients x 200 requests: {got}; killed worker state {slow.status} (restart policy keeps it down)")
    assert got["sent"] == 400 and got["replied"] == 400 and got["failed"] == 0, got
    assert got["retried"] >= 1, "the killed worker held a request: the client must have retried it"
    assert slow.status == "exited", slow.status


# --- pipeline --------------------------------------------------------------------------------------


def test_pipeline_ledger_counts_every_task(cluster: Project, report: Report) -> None:
    start(cluster, ["sink", "pipeworker"], {"sink": 1, "pipeworker": 3})
    batch = f"it-{secrets.token_hex(4)}"
    # Unpaced (PIPE_RATE 0): the ventilator starts only once 3 pipeworkers have finished their ZMTP
    # handshake (nodes.peers), so even a batch dealt at full speed reaches all of them.
    env = {"TASKS": "2000", "MIN_PIPEWORKERS": "3", "PIPE_RATE": "0", "BATCH_ID": batch}
    wait_done(rerun(cluster, "ventilator", 1, env), 60)
    sink = only(cluster, "sink")
    ledger = wait_until(
        lambda: (b := status(sink)["batches"].get(batch)) and b["complete"] and b,
        30,
        f"sink ledger of batch {batch} complete",
    )
    labels = names(cluster, "pipeworker")
    report(
        f"batch {batch}: size {ledger['size']} received {ledger['received']} distinct {ledger['distinct']} "
        f"missing {ledger['missing']} duplicates {ledger['duplicates']}"
    )
    report(f"results by pipeworker: {share_line(ledger['by_worker'], labels)}")
    assert (ledger["size"], ledger["distinct"], ledger["missing"], ledger["duplicates"]) == (2000, 2000, 0, 0), ledger
    assert ledger["received"] == 2000, ledger
    assert set(ledger["by_worker"]) == set(labels), f"used {sorted(ledger['by_worker'])}, have {sorted(labels)}"
    assert all(n > 0 for n in ledger["by_worker"].values()), ledger["by_worker"]


# --- pub/sub: Redis and ZeroMQ ----------------------------------------------------------------------

#: Topic sets of the three subscribers of each transport (None = the service default: every topic).
SUBSCRIBER_SETS = (("catA", "catC"), None, ("catB",))


def start_subscribers(cluster: Project, service: str) -> dict[str, tuple[str, ...]]:
    """One service replica with every topic, plus two ``compose run`` containers with their own TOPICS.

    Returns each container's topic set as configured (its TOPICS variable; empty = every topic).
    """
    start(cluster, [service], {service: 1}, env={"ZSUB_TOPICS": ""})
    for topics in SUBSCRIBER_SETS:
        if topics is not None:
            cluster.run_detached(service, {"TOPICS": ",".join(topics)})
    out = {}
    for c in cluster.wait_healthy(60, services=[service]):
        env = dict(item.split("=", 1) for item in c.attrs["Config"]["Env"])
        out[label_of(c)] = tuple(t for t in env.get("TOPICS", "").split(",") if t) or TOPICS
    assert sorted(out.values()) == sorted(t or TOPICS for t in SUBSCRIBER_SETS), out
    return out


@pytest.mark.parametrize(
    ("publisher", "subscriber", "min_var"),
    [("publisher", "subscriber", "MIN_SUBSCRIBERS"), ("zpub", "zsub", "ZMIN_SUBSCRIBERS")],
    ids=["redis", "zeromq"],
)
def test_pubsub_each_subscriber_gets_exactly_its_topics(
    cluster: Project, report: Report, publisher: str, subscriber: str, min_var: str
) -> None:
    if publisher == "publisher":
        start(cluster, ["redis"], {"redis": 1})
    expected_topics = start_subscribers(cluster, subscriber)
    env = {"MESSAGES": "1000", "PUB_RATE": "0", min_var: "3", "PUB_FORMAT": "envelope", "ZPUB_FORMAT": "envelope"}
    (pub_doc,) = wait_done(rerun(cluster, publisher, 1, env), 90)
    published = pub_doc["labelled"]["published_by_topic"]
    report(f"{publisher}: published {pub_doc['counters']['sent']} {dict(sorted(published.items()))}")
    assert published == dict.fromkeys(TOPICS, 250), published

    for label, url in cluster.targets([subscriber]):
        want = expected_topics[label]
        n = 250 * len(want)
        doc = wait_until(
            lambda u=url, n=n: (d := status(u))["counters"]["received"] >= n and d, 30, f"{label} to receive {n} events"
        )
        topics = doc["topics"]
        c = doc["counters"]
        report(
            f"{label} [{','.join(want)}]: received {c['received']} "
            + " ".join(f"{t}:{v['received']}/last_seq {v['last_seq']}" for t, v in sorted(topics.items()))
            + f" gaps {c['gaps']} out_of_order {c['out_of_order']} duplicates {c['duplicates']}"
            f" unexpected {c['unexpected']} rejected {c['rejected']}"
        )
        assert sorted(topics) == sorted(want), f"{label} got topics {sorted(topics)}, subscribed {want}"
        for t in want:
            assert (topics[t]["received"], topics[t]["last_seq"]) == (250, 250), (label, t, topics[t])
            assert topics[t]["gaps"] == topics[t]["out_of_order"] == topics[t]["duplicates"] == 0, (label, t, topics[t])
        assert c["received"] == 250 * len(want), (label, c)
        assert c["gaps"] == c["out_of_order"] == c["duplicates"] == c["unexpected"] == c["rejected"] == 0, (label, c)


# --- the command line a person uses ------------------------------------------------------------------


def test_ops_cluster_scale_and_status_cli(cluster: Project, report: Report) -> None:
    """``python -m ops.cluster scale`` adds a replica live; ``status --json`` shows every running node."""
    start(cluster, ["sink", "pipeworker"], {"sink": 1, "pipeworker": 3})
    cli = [sys.executable, "-m", "ops.cluster", "-p", cluster.name]
    scaled = subprocess.run(
        [*cli, "scale", "--pipe-workers", "4"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    shown = subprocess.run([*cli, "status", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    docs = json.loads(shown.stdout)
    pipeworkers = sorted(label for label, doc in docs.items() if doc["role"] == "pipeworker")
    report(f"ops.cluster scale --pipe-workers 4: {scaled.stdout.splitlines()[0]}; status --json lists {pipeworkers}")
    assert pipeworkers == [f"pipeworker-{i}" for i in range(1, 5)], pipeworkers
    assert all(docs[label]["state"] == "running" for label in pipeworkers), docs
