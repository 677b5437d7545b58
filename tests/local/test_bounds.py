"""Bounded state under a flood, as real processes on 127.0.0.1 (issue 10, item 3).

A Redis subscriber sent 30 messages of 2 MiB (above MAX_MSG_SIZE) counts each as ``oversized``, still
delivers the next normal message, and keeps its memory: it grew +15 MB before the limit and the fixed
mmap threshold.

While a real batch of 2000 tasks is in flight, a stranger pushes results straight into the sink's PULL
port: 12,000 for one batch id nobody announced (more than MAX_PENDING) and one each for 500 made-up batch
ids (far more than MAX_UNANNOUNCED and KEEP_BATCHES). The real batch must complete exactly (2000 distinct,
0 missing, the ventilator exits 0), it must never be evicted, and the sink's counters must show every
eviction and drop - exact numbers, since one PUSH connection delivers in order - with its memory bounded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import zmq

from nodes.core import wire
from nodes.pipeline import ledger as limits
from nodes.pipeline import protocol
from ops.harness import RedisServer
from tests.support import NodeProc, free_port, wait_until

TASKS = 2000
BIG = limits.MAX_PENDING + 2000  # results for one never-announced batch
MADE_UP = 500  # batch ids with one result each


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def rss_mb(node: NodeProc) -> float:
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def flood(endpoint: str, tag: str) -> int:
    """Push the stranger's results (batch ids starting with ``tag``); returns how many were sent."""
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 10_000)
    push.connect(endpoint)
    ids = wire.IdMaker("stranger")
    sent = 0
    try:
        for n in range(BIG):
            push.send(wire.make(protocol.RESULT, ids(), protocol.result(f"{tag}never-announced", n, "stranger"), "x"))
            sent += 1
        for i in range(MADE_UP):
            push.send(wire.make(protocol.RESULT, ids(), protocol.result(f"{tag}made-up-{i}", 0, "stranger"), "x"))
            sent += 1
    finally:
        push.close()
    return sent


def test_a_flood_of_results_for_made_up_batches_leaves_a_real_batch_exact(nodes: Any, tmp_path: Path) -> None:
    vent_ep, sink_ep, ctl_ep = tcp(), tcp(), tcp()
    sink = nodes("sink", {"SINK_BIND": sink_ep, "SINK_CONTROL_BIND": ctl_ep, "SINK_STATE_DIR": str(tmp_path / "state")})
    for _ in range(2):
        nodes("pipeworker", {"VENT_ENDPOINT": vent_ep, "SINK_ENDPOINT": sink_ep}, healthy=False)
    vent = nodes(
        "ventilator",
        {
            "VENT_BIND": vent_ep,
            "SINK_CONTROL": ctl_ep,
            "TASKS": str(TASKS),
            "TASK_MS": "2",
            "BATCH_ID": "real",
            "MIN_PIPEWORKERS": "2",
            "WAIT_TIMEOUT": "20",
            "RESEND_AFTER": "2",
            "MAX_RESENDS": "5",
            "HOLD": "1",
        },
        healthy=False,
    )
    wait_until(lambda: sink.status()["batches"]["real"]["distinct"] >= 100, 60, "the real batch under way")
    before = rss_mb(sink)
    sent = flood(sink_ep, "")
    in_flight = sink.status()["batches"]["real"]
    # every stranger's result has been read once the last made-up batch shows up
    wait_until(lambda: f"made-up-{MADE_UP - 1}" in sink.status()["batches"], 30, "the sink through the flood")
    first = rss_mb(sink)
    sent += flood(sink_ep, "again-")  # the same again: a bounded sink does not grow a second time
    wait_until(lambda: f"again-made-up-{MADE_UP - 1}" in sink.status()["batches"], 30, "the sink through flood 2")
    second = rss_mb(sink)
    done = vent.wait_state("done", 120)

    status = sink.status()
    counters, batches = status["counters"], status["batches"]
    print(
        f"\ntwo floods of {BIG + MADE_UP} results while 'real' was at {in_flight['distinct']}/{TASKS}: "
        f"evicted {counters['batches_evicted']} (unannounced {counters['batches_evicted_unannounced']}), "
        f"results dropped {counters['results_dropped']}, sink RSS {before:.1f} MB -> {first:.1f} -> {second:.1f}; "
        f"ventilator re-sent {done['resent']}"
    )
    real = batches["real"]
    assert (real["size"], real["distinct"], real["missing"], real["pending"], real["complete"]) == (
        TASKS,
        TASKS,
        0,
        0,
        True,
    )
    assert real["received"] == TASKS + real["duplicates"]
    assert done["sink"]["complete"] and done["sink"]["distinct"] == TASKS
    assert vent.stop() == 0

    # the limits, exactly: of 2 x (1 + MADE_UP) unannounced batches the newest MAX_UNANNOUNCED are kept
    # (one pending result each); every other stranger's result was dropped (pending full, or its batch
    # evicted); nothing in progress was evicted and no batch refused
    keep = limits.MAX_UNANNOUNCED
    assert sent == 2 * (BIG + MADE_UP)
    assert status["ledger_limits"]["max_pending"] == limits.MAX_PENDING
    assert counters["batches_evicted_unannounced"] == 2 * (1 + MADE_UP) - keep
    assert counters["batches_evicted_in_progress"] == 0 and counters["batches_refused"] == 0
    assert counters["results_dropped"] == sent - keep
    kept = sorted(f"again-made-up-{i}" for i in range(MADE_UP - keep, MADE_UP))
    assert sorted(b for b in batches if b != "real") == kept
    assert all(batches[b]["pending"] == 1 for b in kept)
    # the journal holds the real batch and the kept made-up ones only
    assert len(os.listdir(tmp_path / "state")) == 1 + keep
    assert first - before < 25, f"the sink grew {first - before:.1f} MB under the first flood"
    assert second - first < 5, f"the sink grew {second - first:.1f} MB more under the second flood: unbounded"


def test_a_subscriber_refuses_oversized_payloads_and_does_not_keep_their_memory(
    nodes: Any, redis_server: RedisServer
) -> None:
    sub = nodes(
        "subscriber", {"REDIS_URL": redis_server.url, "REDIS_PASSWORD": redis_server.password, "TOPICS": "catA"}
    )
    wait_until(lambda: sub.status()["topics_subscribed"] == ["catA"], 10, "the subscriber on catA")
    limit = sub.status()["limits"]["max_msg_size"]
    big = b"\xc1" + b"x" * (2 * 1024 * 1024 - 1)  # 2 MiB, above the default 1 MiB
    assert len(big) > limit
    base = rss_mb(sub)
    rounds = []
    with redis_server.client() as client:
        for r in range(1, 4):
            for _ in range(10):
                client.publish("catA", big)
            want = 10 * r
            wait_until(lambda n=want: sub.status()["counters"]["oversized"] >= n, 30, f"{want} oversized counted")
            rounds.append(rss_mb(sub))
        client.publish("catA", b"hatA")  # a normal plain message still gets through
        wait_until(lambda: sub.status()["counters"]["plain"] == 1, 10, "the plain message after the big ones")
    c = sub.status()["counters"]
    print(f"\nsubscriber RSS {base:.1f} MB -> {' -> '.join(f'{m:.1f}' for m in rounds)} after 3 x 10 x 2 MiB")
    assert (c["oversized"], c["rejected"], c["plain"], c["received"]) == (30, 30, 1, 0)
    assert sub.status()["limits"]["big_buffers_released"] is True
    assert max(rounds) - base < 5, f"the subscriber kept {max(rounds) - base:.1f} MB after 2 MiB messages"
