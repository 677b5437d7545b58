"""Faults the nodes must notice (issue 9 items 2-4): a paused worker, a node cut off from its peers, a
one-shot sender interrupted before its batch was delivered. Real processes on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.local.test_reqrep import start_clients, start_cluster
from tests.support import free_port, get_json, wait_until

#: ZMTP heartbeats every 0.3 s, a peer silent for 0.9 s is dropped; health grace 1 s (keeps the tests quick).
FAST = {"HEARTBEAT_IVL": "0.3", "HEARTBEAT_LIVENESS": "3", "PEER_GRACE": "1"}


def test_proxy_mode_keeps_replying_while_a_worker_is_paused(nodes) -> None:
    broker, workers, frontend = start_cluster(nodes, "proxy", workers=3, work_ms="1")
    (client,) = start_clients(nodes, frontend, count=1, requests=1500, RATE="100", REQUEST_TIMEOUT="1")
    wait_until(lambda: client.status()["counters"]["replied"] >= 200, 30, "200 replies before the pause")
    paused = workers[0]
    before = client.status()["counters"]["replied"]
    os.kill(paused.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: broker.status()["peers"] == 2, 10, "the broker drops the paused worker (ZMTP heartbeat)")
        time.sleep(10)  # the fault itself: the worker stays paused for 10 s while the client keeps sending
        during = client.status()["counters"]["replied"] - before
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    doc = client.wait_state("done", 60)
    c = doc["counters"]
    print(f"\n[pause] replies during a 10 s pause of 1 of 3 workers: {during}; client {c}")
    assert during >= 500, f"only {during} replies in 10 s at 100/s while one of three workers was paused"
    assert (c["replied"], c["failed"]) == (1500, 0), c
    wait_until(lambda: broker.status()["peers"] == 3, 15, "the resumed worker reconnects")


def test_a_worker_cut_off_from_its_broker_turns_unhealthy_and_says_why(nodes) -> None:
    backend = f"tcp://127.0.0.1:{free_port()}"
    broker = nodes("broker", {"FRONTEND_BIND": f"tcp://127.0.0.1:{free_port()}", "BACKEND_BIND": backend, **FAST})
    worker = nodes("worker", {"BROKER_BACKEND": backend, **FAST}, name="worker-cut")
    wait_until(lambda: worker.status()["peers"] == 1, 10, "the worker's link to the broker")
    broker.kill()
    health = wait_until(lambda: (h := worker.get("/status")["health"]) and not h["ok"] and h, 15, "worker unhealthy")
    print(f"\n[cut off] worker health: {health}")
    assert "0 of 1 peers" in health["reason"]
    try:
        get_json(f"{worker.url}/healthz")
        raise AssertionError("/healthz answered 200 for a worker without a broker")
    except OSError as exc:  # urllib raises HTTPError (an OSError) for the 503
        assert "503" in str(exc)


@pytest.mark.parametrize("role", ["client", "publisher", "zpub"])
def test_an_interrupted_one_shot_exits_3(nodes, redis_server, role: str) -> None:
    env = {
        "client": {"BROKER_FRONTEND": f"tcp://127.0.0.1:{free_port()}", "REQUESTS": "100", "REQUEST_TIMEOUT": "5"},
        "publisher": {"REDIS_URL": redis_server.url, "REDIS_PASSWORD": redis_server.password, "MIN_SUBSCRIBERS": "1"},
        "zpub": {"ZPUB_BIND": f"tcp://127.0.0.1:{free_port()}", "MIN_SUBSCRIBERS": "1"},
    }[role]
    node = nodes(role, {**env, "WAIT_TIMEOUT": "60"}, name=f"{role}-interrupted")  # waits for a peer that never comes
    node.begin_stop()
    rc = node.wait_exit(15)
    print(f"\n[interrupted] {role} exit code {rc}")
    assert rc == 3, node.log_tail()


def test_a_subscriber_without_redis_turns_unhealthy_and_says_why(nodes, redis_server) -> None:
    env = {"REDIS_URL": redis_server.url, "REDIS_PASSWORD": redis_server.password, "TOPICS": "catA", **FAST}
    sub = nodes("subscriber", env, name="sub-cut")
    wait_until(lambda: sub.status()["topics_subscribed"] == ["catA"], 10, "the subscription")
    redis_server.stop()
    health = wait_until(lambda: (h := sub.get("/status")["health"]) and not h["ok"] and h, 20, "subscriber unhealthy")
    print(f"\n[redis down] subscriber health: {health}")
    assert health["reason"].startswith("redis unreachable for")
