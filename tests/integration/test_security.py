"""SECURITY=curve on the compose cluster: compose/security.yaml over compose.yaml, keys from ops.keys.

Every pattern delivers its whole counted batch with CURVE on every ZeroMQ socket and Redis ACL users per
role; a plain client on the host (the broker frontend's published port) gets no reply and shows in the
broker's ``auth_denied``; the subscriber's Redis user cannot PUBLISH.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import redis
import zmq

from nodes.core import wire
from ops.compose import Project
from ops.keys import make_keys, read_env, secure_project
from tests.integration.test_cluster import Report, only, rerun, start, status, totals, wait_done, wait_workers_connected
from tests.support import wait_until

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def secure(cluster: Project, tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, Path]:
    """This module's project with SECURITY=curve and keys of its own."""
    keys = tmp_path_factory.mktemp("keys")
    make_keys(keys)
    secure_project(cluster, {"SECURITY": "curve", "KEYS_DIR": str(keys)})
    return cluster, keys


def test_curve_requests_all_answered_and_a_plain_client_refused(secure: tuple[Project, Path], report: Report) -> None:
    cluster, _ = secure
    start(cluster, ["broker", "worker"], {"broker": 1, "worker": 2})
    wait_workers_connected(cluster, 2)
    docs = wait_done(rerun(cluster, "client", 1, {"REQUESTS": "300", "RATE": "0"}), 90)
    got = totals(docs, "sent", "replied", "failed")
    broker = only(cluster, "broker")
    before = status(broker)["counters"]
    report(f"curve: 300 requests -> {got}; broker {before}")
    assert got == {"sent": 300, "replied": 300, "failed": 0}, got
    assert docs[0]["security"] == "curve"

    ctx = zmq.Context()
    try:
        plain = ctx.socket(zmq.REQ)
        plain.linger = 0
        plain.connect(f"tcp://127.0.0.1:{cluster.env['FRONTEND_HOST_PORT']}")
        plain.send(wire.make("request", "plain:1", {"n": 1}, origin="plain"))
        denied = wait_until(lambda: status(broker)["counters"]["auth_denied"] or None, 30, "broker auth_denied")
        assert plain.poll(500) == 0
    finally:
        ctx.destroy(0)
    after = status(broker)["counters"]
    report(f"a plain client on the host: no reply; broker auth_denied {denied}, requests {after['requests']}")
    assert after["requests"] == before["requests"] and after["received"] == before["received"]


def test_curve_pipeline_and_zmq_pubsub_deliver_everything(secure: tuple[Project, Path], report: Report) -> None:
    cluster, _ = secure
    start(cluster, ["sink", "pipeworker", "zsub"], {"sink": 1, "pipeworker": 2, "zsub": 1})
    batch = f"curve-{secrets.token_hex(3)}"
    (vent,) = wait_done(
        rerun(cluster, "ventilator", 1, {"TASKS": "400", "MIN_PIPEWORKERS": "2", "PIPE_RATE": "0", "BATCH_ID": batch}),
        90,
    )
    report(f"curve pipeline: ventilator {vent['sink']}")
    assert vent["sink"] == {"distinct": 400, "missing": 0, "duplicates": 0, "complete": True}, vent["sink"]

    env = {"MESSAGES": "400", "PUB_RATE": "0", "ZMIN_SUBSCRIBERS": "1", "ZPUB_FORMAT": "envelope"}
    (zpub,) = wait_done(rerun(cluster, "zpub", 1, env), 90)
    zsub = only(cluster, "zsub")
    doc = wait_until(lambda: (d := status(zsub))["counters"]["received"] >= 400 and d, 30, "zsub to receive 400")
    report(f"curve zpub -> zsub: sent {zpub['counters']['sent']}, received {doc['counters']['received']}")
    assert zpub["counters"]["sent"] == doc["counters"]["received"] == 400
    assert doc["counters"]["gaps"] == doc["counters"]["rejected"] == 0


def test_redis_acl_users_deliver_and_the_subscriber_cannot_publish(
    secure: tuple[Project, Path], report: Report
) -> None:
    cluster, keys = secure
    start(cluster, ["redis", "subscriber"], {"redis": 1, "subscriber": 1})
    env = {"MESSAGES": "400", "PUB_RATE": "0", "MIN_SUBSCRIBERS": "1", "PUB_FORMAT": "envelope"}
    (pub,) = wait_done(rerun(cluster, "publisher", 1, env), 90)
    sub = only(cluster, "subscriber")
    doc = wait_until(lambda: (d := status(sub))["counters"]["received"] >= 400 and d, 30, "subscriber to receive 400")
    report(f"redis ACL users: published {pub['counters']['sent']}, received {doc['counters']['received']}")
    assert pub["counters"]["sent"] == doc["counters"]["received"] == 400 and doc["counters"]["gaps"] == 0

    password = read_env(keys / "redis.env")["REDIS_SUBSCRIBER_PASSWORD"]
    url = f"redis://127.0.0.1:{cluster.env['REDIS_HOST_PORT']}/0"
    as_subscriber = redis.Redis.from_url(url, username="subscriber", password=password, socket_timeout=5)
    with as_subscriber, pytest.raises(redis.exceptions.NoPermissionError):
        as_subscriber.publish("catA", b"forged")
