"""Pub/sub through Redis (publisher/subscriber) and ZeroMQ (zpub/zsub) with real processes on 127.0.0.1.

Every delivery test publishes 1000 events over catA..catD (250 each) to two subscribers, one with catA,catC
and one with every topic, and checks exact counts against the publisher's own per-topic counts: each
subscriber got exactly its topics, every topic complete and in order, nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from nodes import roles
from nodes.core import wire
from nodes.pubsub import zpub, zsub
from nodes.pubsub.sequence import hat_for
from tests.support import ROOT, NodeProc, free_port, wait_until

TOPICS = ("catA", "catB", "catC", "catD")
SOME = ("catA", "catC")
MESSAGES = 1000
PER_TOPIC = MESSAGES // len(TOPICS)


def redis_env(server: Any, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": server.url, "REDIS_PASSWORD": server.password, **extra}


def batch_env(**extra: str) -> dict[str, str]:
    return {"MESSAGES": str(MESSAGES), "TOPICS": ",".join(TOPICS), "WAIT_TIMEOUT": "20", "HOLD": "1", **extra}


def check_publisher(pub: NodeProc) -> dict[str, int]:
    """The publisher finished its batch: 1000 sent, 250 a topic, none failed. Returns its per-topic counts."""
    st = pub.wait_state("done", 30)
    published = st["labelled"]["published_by_topic"]
    assert published == dict.fromkeys(TOPICS, PER_TOPIC)
    assert st["counters"]["sent"] == MESSAGES
    assert st["counters"]["failed"] == 0
    return published


def check_subscriber(sub: NodeProc, topics: tuple[str, ...], published: dict[str, int]) -> dict[str, Any]:
    """``sub`` got exactly ``topics``: each as many as published, seq 1..N in order, nothing else."""
    expected = sum(published[t] for t in topics)
    st = wait_until(
        lambda: (s := sub.status())["counters"]["received"] >= expected and s,
        20,
        f"{sub.name} to receive {expected} events on {','.join(topics)}",
    )
    counters = st["counters"]
    assert counters["received"] == expected
    assert st["labelled"]["received_by_topic"] == {t: published[t] for t in topics}
    assert set(st["topics"]) == set(topics)
    for topic in topics:
        seen = st["topics"][topic]
        assert seen["received"] == seen["last_seq"] == published[topic], (topic, seen)
        assert (seen["gaps"], seen["missing"], seen["duplicates"], seen["out_of_order"], seen["runs"]) == (
            0,
            0,
            0,
            0,
            1,
        ), (topic, seen)
    assert {k: counters[k] for k in ("gaps", "duplicates", "out_of_order", "unexpected", "rejected")} == dict.fromkeys(
        ("gaps", "duplicates", "out_of_order", "unexpected", "rejected"), 0
    )
    return st


# --- Redis ------------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_each_subscriber_gets_exactly_its_topics_in_order(nodes, redis_server) -> None:
    a = nodes("subscriber", redis_env(redis_server, TOPICS=",".join(SOME)), name="sub-a")
    b = nodes("subscriber", redis_env(redis_server, TOPICS=",".join(TOPICS)), name="sub-b")
    pub = nodes("publisher", redis_env(redis_server, MIN_SUBSCRIBERS="2", **batch_env()), name="pub")

    published = check_publisher(pub)
    st_a = check_subscriber(a, SOME, published)
    check_subscriber(b, TOPICS, published)
    assert st_a["topics_subscribed"] == list(SOME)
    # PUBLISH's receiver counts: catA and catC reached both subscribers, catB and catD only B.
    pub_st = pub.status()
    assert pub_st["counters"]["receivers"] == 2 * 250 + 1 * 250 + 2 * 250 + 1 * 250 == 1500
    assert pub_st["labelled"]["receivers_by_topic"] == {"catA": 500, "catB": 250, "catC": 500, "catD": 250}
    assert pub.stop() == 0


@pytest.mark.redis
def test_redis_restart_mid_batch_shows_up_as_gaps(nodes, redis_server) -> None:
    """Redis restarts while 600 events are being published: both sides reconnect, nothing is silently lost.

    Events published while the subscriber was away cannot be delivered; each one must be accounted for
    as a gap in the sequence numbers, and every delivery PUBLISH reported must have been received.
    """
    sub = nodes("subscriber", redis_env(redis_server, TOPICS=",".join(TOPICS)), name="sub-r")
    wait_until(lambda: sub.status()["topics_subscribed"] == sorted(TOPICS), 10, "sub-r to subscribe")
    env = redis_env(redis_server, MIN_SUBSCRIBERS="1", RATE="300", **batch_env(MESSAGES="600"))
    pub = nodes("publisher", env, name="pub-r")
    wait_until(lambda: pub.status()["counters"]["sent"] >= 150, 15, "pub-r to publish 150 of 600")
    redis_server.stop()
    redis_server.start()
    done = pub.wait_state("done", 30)["counters"]
    assert (done["sent"], done["failed"]) == (600, 0)
    assert done["reconnects"] >= 1
    st = wait_until(
        lambda: (s := sub.status())["counters"]["received"] - s["counters"]["duplicates"] >= done["receivers"] and s,
        15,
        f"sub-r to receive the {done['receivers']} deliveries PUBLISH reported",
    )
    c = st["counters"]
    assert c["received"] - c["duplicates"] == done["receivers"]
    assert c["gaps"] == 600 - done["receivers"], "every event lost in the outage is reported as a gap"
    assert (c["out_of_order"], c["rejected"], c["unexpected"]) == (0, 0, 0)
    assert c["reconnects"] >= 1
    assert st["topics_subscribed"] == sorted(TOPICS)


@pytest.mark.redis
def test_redis_subscriber_rejects_malformed_and_counts_foreign_topics(nodes, redis_server) -> None:
    """Bad envelopes are rejects with their reason in words; a payload that is no envelope at all is plain."""
    sub = nodes("subscriber", redis_env(redis_server, TOPICS="catA"), name="sub-m")
    wait_until(lambda: sub.status()["topics_subscribed"] == ["catA"], 10, "sub-m to subscribe")
    good = {"run": "r1", "topic": "catA", "seq": 1, "n": 1, "hat": "hatA"}
    with redis_server.client() as r:
        r.publish("catA", b"\x00not msgpack")  # plain
        r.publish("catA", msgpack.packb(["not", "ours"]))  # msgpack, but no envelope: plain
        r.publish("catA", wire.make("event", "x:1", {**good, "hat": "hatB"}))  # wrong hat for the topic
        r.publish("catA", wire.make("event", "x:2", {**good, "topic": "catB"}))  # body names another topic
        r.publish("catA", wire.make("reply", "x:3", good))  # not an event
        r.publish("catA", msgpack.packb([1, "x:4", "event", good, "late", ""]))  # sent_at not a number
        r.publish("catA", wire.make("event", "x:5", good))
        r.publish("catA", wire.make("event", "x:6", {**good, "seq": 3}))  # seq 2 missing: a gap
        r.publish("catA", wire.make("event", "x:7", {**good, "seq": 3}))  # duplicate
        r.publish("catA", wire.make("event", "x:8", {**good, "seq": 2}))  # late: out of order
    st = wait_until(lambda: (s := sub.status())["counters"]["received"] >= 4 and s, 10, "sub-m to receive 4")
    c = st["counters"]
    assert (c["rejected"], c["plain"], c["received"], c["gaps"], c["duplicates"], c["out_of_order"]) == (
        4,
        2,
        4,
        1,
        1,
        1,
    )
    assert st["labelled"]["plain_by_topic"] == {"catA": 2}
    assert st["labelled"]["rejected_by_reason"] == {"not an event": 3, "not an envelope": 1}
    assert st["last_rejected"] == "not an envelope: envelope sent_at must be a number"
    assert "rejected 4 (last: not an envelope: envelope sent_at must be a number)" in st["summary"]
    assert st["topics"]["catA"] | {"run": "r1"} == {
        "received": 4,
        "last_seq": 3,
        "late_join": 0,
        "gaps": 1,
        "missing": 0,
        "duplicates": 1,
        "out_of_order": 1,
        "runs": 1,
        "run": "r1",
    }
    sub.wait_healthy(5)


def run_role(role: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("REDIS_PASSWORD", "REDIS_URL")}
    full.update(PYTHONPATH=str(ROOT), STATUS_PORT=str(free_port()), **env)
    return subprocess.run(
        [sys.executable, "-m", "nodes", role], env=full, cwd=ROOT, capture_output=True, text=True, timeout=20
    )


@pytest.mark.parametrize("role", ["publisher", "subscriber"])
def test_redis_password_is_required(role: str) -> None:
    done = run_role(role, {"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "REDIS_PASSWORD" in lines[0], done.stderr


@pytest.mark.redis
@pytest.mark.parametrize("role", ["publisher", "subscriber"])
def test_redis_wrong_password_is_a_clear_error(role: str, redis_server, tmp_path: Path) -> None:
    node = NodeProc(role, {"REDIS_URL": redis_server.url, "REDIS_PASSWORD": "wrong", "MIN_SUBSCRIBERS": "1"}, tmp_path)
    try:
        assert node.wait_exit(15) == 1
        out = node.log_path.read_text()
    finally:
        node.stop()
    assert "Traceback" not in out, out
    assert '"event": "redis_error"' in out and "AuthenticationError" in out and "REDIS_PASSWORD" in out, out
    assert redis_server.password not in out


# --- ZeroMQ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_zmq_each_subscriber_gets_exactly_its_topics_in_order(nodes, tmp_path: Path, transport: str) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}" if transport == "tcp" else f"ipc://{tmp_path}/zpub.sock"
    pub = nodes("zpub", {"ZPUB_BIND": endpoint, "MIN_SUBSCRIBERS": "2", **batch_env()}, name="zpub")
    a = nodes("zsub", {"ZPUB_ENDPOINT": endpoint, "TOPICS": ",".join(SOME)}, name="zsub-a")
    b = nodes("zsub", {"ZPUB_ENDPOINT": endpoint, "TOPICS": ""}, name="zsub-b")

    published = check_publisher(pub)
    st_a = check_subscriber(a, SOME, published)
    st_b = check_subscriber(b, TOPICS, published)
    assert (st_a["topics_subscribed"], st_b["topics_subscribed"]) == (list(SOME), ["*"])
    assert sorted(name.split(".")[0] for name in pub.status()["subscribers"]) == ["zsub-a", "zsub-b"]
    a.stop()
    b.stop()
    assert pub.stop() == 0


@pytest.mark.parametrize("payload", [0, 4096])
def test_zmq_inproc_nodes_in_one_process(payload: int) -> None:
    """inproc:// works when zpub and zsub are threads sharing one context (also with events padded to ~4 KiB)."""
    ctx = zmq.Context()
    common = {"STATUS_PORT": "0", "MESSAGES": "100", "TOPICS": ",".join(TOPICS)}
    pub_env = {**common, "ZPUB_BIND": "inproc://zpub", "MIN_SUBSCRIBERS": "1", "PAYLOAD_BYTES": str(payload)}
    pub = zpub.Zpub(roles.load("zpub", pub_env), ctx=ctx)
    sub = zsub.Zsub(roles.load("zsub", {**common, "ZPUB_ENDPOINT": "inproc://zpub", "TOPICS": "catB"}), ctx=ctx)
    rc: dict[str, int] = {}
    threads = [threading.Thread(target=lambda n=n: rc.setdefault(n.role, n.run())) for n in (pub, sub)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: sub.stats.counters["received"] >= 25, 10, "inproc zsub to receive 25 catB events")
        threads[0].join(10)
        assert rc.get("zpub") == 0
        assert sub.inbox.tracker.summary()["catB"]["last_seq"] == 25
        assert sub.stats.counters["received"] == 25
        assert sub.stats.counters["rejected"] == sub.stats.counters["gaps"] == 0
    finally:
        pub.stop.set()
        sub.stop.set()
        for t in threads:
            t.join(10)
        ctx.term()
    assert rc.get("zsub") == 0


def test_zsub_rejects_bad_frames_and_counts_foreign_topics(nodes) -> None:
    """A hand-driven XPUB feeds a zsub bad multipart messages; it counts them and keeps serving."""
    ctx = zmq.Context.instance()
    xpub = ctx.socket(zmq.XPUB)
    xpub.linger = 0
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    try:
        sub = nodes("zsub", {"ZPUB_ENDPOINT": f"tcp://127.0.0.1:{port}", "TOPICS": "catA"}, name="zsub-m")
        wait_until(lambda: xpub.poll(100) and xpub.recv().startswith(b"\x01" + zpub.HELLO), 10, "zsub-m hello")
        good = {"run": "r1", "topic": "catA", "seq": 1, "n": 1, "hat": hat_for("catA")}
        xpub.send_multipart([b"catA"])  # one frame, not an envelope: plain, under the subscription catA
        xpub.send_multipart([b"catA", wire.make("event", "x:1", good), b"extra"])  # three frames
        xpub.send_multipart([b"catA", b"garbage"])  # not an envelope: plain
        xpub.send_multipart([b"catA", wire.make("event", "x:2", {**good, "topic": "catC"})])  # topic mismatch
        xpub.send_multipart([b"catA\xff", wire.make("event", "x:3", good)])  # topic not UTF-8: mismatch too
        foreign = {**good, "topic": "catAB", "hat": hat_for("catAB")}
        xpub.send_multipart([b"catAB", wire.make("event", "x:4", foreign)])  # prefix match only: unexpected
        xpub.send_multipart([b"catA", wire.make("event", "x:5", good)])
        st = wait_until(lambda: (s := sub.status())["counters"]["received"] >= 1 and s, 10, "zsub-m to receive 1")
        assert {k: st["counters"][k] for k in ("rejected", "plain", "unexpected", "received", "gaps")} == {
            "rejected": 3,
            "plain": 2,
            "unexpected": 1,
            "received": 1,
            "gaps": 0,
        }
        assert st["labelled"]["plain_by_topic"] == {"catA": 2}
        assert st["labelled"]["rejected_by_reason"] == {"not [topic, envelope]": 1, "not an event": 2}
        sub.wait_healthy(5)
        sub.stop()
    finally:
        xpub.close()
