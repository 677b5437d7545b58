"""Request-reply through the broker: real node processes on 127.0.0.1 (and threads over inproc://).

Every test names exact counts: N requests sent -> N correct replies, each worker's share of
the load within a stated band, exactly as many rejects as malformed messages sent.
Run with ``-s`` to see the per-worker shares and counters.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import msgpack
import pytest
import zmq

from nodes import roles
from nodes.core import wire
from nodes.reqrep.broker import Broker
from nodes.reqrep.client import Client
from nodes.reqrep.worker import Worker
from tests.support import ROOT, NodeProc, free_port, get_json, wait_until

WORKERS, CLIENTS, PER_CLIENT = 4, 2, 500
SHARE_BAND = (0.15, 0.35)
MODES = ["proxy", "lru"]
#: lru mode: heartbeats every 0.3 s, a worker silent for 0.9 s is forgotten (keeps the kill tests quick).
LRU_ENV = {"HEARTBEAT_IVL": "0.3", "HEARTBEAT_LIVENESS": "3"}


def mode_env(mode: str) -> dict[str, str]:
    return {"BROKER_MODE": mode, **(LRU_ENV if mode == "lru" else {})}


def start_cluster(
    nodes,
    mode: str,
    workers: int = WORKERS,
    work_ms: str = "2",
    frontend: str = "",
    backend: str = "",
    broker_env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
):
    """A broker and ``workers`` workers, returned once the broker sees every worker (a handshake, not a sleep)."""
    frontend = frontend or f"tcp://127.0.0.1:{free_port()}"
    backend = backend or f"tcp://127.0.0.1:{free_port()}"
    env = {"FRONTEND_BIND": frontend, "BACKEND_BIND": backend, **mode_env(mode), **(broker_env or {})}
    broker = nodes("broker", env, name="broker")
    procs = [
        nodes(
            "worker",
            {"BROKER_BACKEND": backend, "WORK_MS": work_ms, **mode_env(mode), **(worker_env or {})},
            name=f"worker-{i}",
            healthy=False,
        )
        for i in range(1, workers + 1)
    ]
    for proc in procs:
        proc.wait_healthy()
    wait_for_workers(broker, mode, workers)
    return broker, procs, frontend


def wait_for_workers(broker: NodeProc, mode: str, count: int) -> None:
    key = "workers_ready" if mode == "lru" else "peers"
    wait_until(lambda: broker.status()[key] == count, 15, f"{broker.name} {key} == {count}")


def start_clients(nodes, frontend: str, count: int = CLIENTS, requests: int = PER_CLIENT, **env: str) -> list[NodeProc]:
    base = {"BROKER_FRONTEND": frontend, "REQUESTS": str(requests), "HOLD": "1"}
    return [nodes("client", {**base, **env}, name=f"client-{i}", healthy=False) for i in range(1, count + 1)]


def totals(docs: list[dict], *names: str) -> dict[str, int]:
    return {n: sum(d["counters"].get(n, 0) for d in docs) for n in names}


def client_totals(clients: list[NodeProc]) -> dict[str, int]:
    return totals([c.status() for c in clients], "sent", "replied", "retried", "failed", "rejected")


# --- 1 and 4: 1000 requests, 2 clients, 4 workers, even shares ----------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_thousand_requests_spread_over_four_workers(nodes, mode: str) -> None:
    broker, workers, frontend = start_cluster(nodes, mode)
    clients = start_clients(nodes, frontend)
    docs = [c.wait_state("done", 60) for c in clients]
    total = CLIENTS * PER_CLIENT

    t = totals(docs, "sent", "replied", "failed", "rejected")
    assert t == {"sent": total, "replied": total, "failed": 0, "rejected": 0}, t
    assert all(d["done"] and d["requests"] == PER_CLIENT for d in docs)

    b = broker.status()
    by_worker = b["labelled"]["replies_by_worker"]
    shares = {w: n / total for w, n in sorted(by_worker.items())}
    print(
        f"\n[{mode}] broker replies_by_worker={by_worker} shares="
        + ", ".join(f"{w} {s:.1%}" for w, s in shares.items())
    )
    print(f"[{mode}] clients={t} broker counters={b['counters']}")
    assert sum(by_worker.values()) == total
    assert set(by_worker) == {w.name for w in workers}
    for w, share in shares.items():
        assert SHARE_BAND[0] <= share <= SHARE_BAND[1], f"{w} served {share:.1%} of requests, outside {SHARE_BAND}"
    assert b["counters"]["requests"] == b["counters"]["replies"] == total
    assert b["counters"]["rejected"] == b["counters"]["undeliverable"] == 0
    # the clients' view agrees with the broker's, worker by worker
    seen_by_clients: dict[str, int] = {}
    for d in docs:
        for w, n in d["labelled"]["replies_by_worker"].items():
            seen_by_clients[w] = seen_by_clients.get(w, 0) + n
    assert seen_by_clients == by_worker
    assert sum(w.status()["counters"]["sent"] for w in workers) == total


# --- 2 and 4: a worker killed mid-run -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_worker_killed_mid_run_every_request_answered(nodes, mode: str) -> None:
    broker, workers, frontend = start_cluster(nodes, mode)
    clients = start_clients(nodes, frontend, REQUEST_TIMEOUT="0.5", RETRIES="5")
    total = CLIENTS * PER_CLIENT
    wait_until(lambda: client_totals(clients)["replied"] >= 0.3 * total, 30, "30% of the replies")
    # Freeze the victim first so that it is certainly holding a request when it dies (a worker that
    # happened to be idle at the kill would lose nothing and prove nothing), then SIGKILL it.
    victim = workers[0]
    os.kill(victim.proc.pid, signal.SIGSTOP)
    wait_until(lambda: client_totals(clients)["retried"] >= 1, 15, "a client to retry past the frozen worker")
    at_kill = client_totals(clients)["replied"]
    victim.kill()
    docs = [c.wait_state("done", 60) for c in clients]

    t = totals(docs, "sent", "replied", "retried", "failed")
    b = broker.status()
    print(f"\n[{mode}] killed {victim.name} after {at_kill}/{total} replies; clients={t}")
    print(f"[{mode}] broker counters={b['counters']} replies_by_worker={b['labelled']['replies_by_worker']}")
    assert t["failed"] == 0
    assert t["sent"] == t["replied"] == total
    assert t["retried"] >= 1
    assert at_kill < total, "the worker was killed after the run had finished"
    assert broker.status()["state"] == "running"


# --- graceful worker stop and Paranoid Pirate reconnect ------------------------------------------


def test_worker_sigterm_finishes_the_request_in_hand(nodes) -> None:
    broker, (worker,), frontend = start_cluster(nodes, "proxy", workers=1, work_ms="1500")
    (client,) = start_clients(nodes, frontend, count=1, requests=1, REQUEST_TIMEOUT="10", RETRIES="0")
    wait_until(lambda: worker.status()["counters"]["received"] == 1, 10, "the worker to take the request")
    worker.proc.send_signal(signal.SIGTERM)  # mid-request: 1.5 s of work in hand
    assert worker.wait_exit(10) == 0
    doc = client.wait_state("done", 10)
    print(f"\nclient after the worker's SIGTERM: {doc['counters']}")
    assert (doc["counters"]["replied"], doc["counters"]["retried"], doc["counters"]["failed"]) == (1, 0, 0)


def test_lru_workers_reconnect_to_a_restarted_broker(nodes) -> None:
    frontend, backend = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker, workers, _ = start_cluster(nodes, "lru", workers=2, frontend=frontend, backend=backend)
    broker.kill()
    wait_until(
        lambda: all(w.status()["counters"].get("reconnects", 0) >= 1 for w in workers),
        10,
        "every worker to notice the silent broker and reconnect",
    )
    env = {"FRONTEND_BIND": frontend, "BACKEND_BIND": backend, **mode_env("lru")}
    broker2 = nodes("broker", env, name="broker-2")
    wait_for_workers(broker2, "lru", 2)
    (client,) = start_clients(nodes, frontend, count=1, requests=200)
    doc = client.wait_state("done", 30)
    b = broker2.status()
    print(
        f"\nafter the broker restart: client={doc['counters']} broker-2 by_worker={b['labelled']['replies_by_worker']}"
    )
    assert (doc["counters"]["replied"], doc["counters"]["failed"]) == (200, 0)
    assert set(b["labelled"]["replies_by_worker"]) == {w.name for w in workers}


# --- 3: fuzzing the frontend ---------------------------------------------------------------------
# The broker is payload-agnostic (docs/wire.md): it refuses only malformed routing frames, and forwards
# any body behind a well-formed [client, b"", body...]; the worker answers every forwarded body (a plain
# reply, or an error reply for a malformed envelope), so the fuzzer gets exactly one reply for each.

NOT_ENVELOPES = [
    {"id": "x", "kind": "request"},
    [1, 2, 3],
    [1, "id", "request", {}, 0.0],  # five elements
    [2, "id", "request", {}, 0.0, ""],  # unknown version
    [1, "", "request", {}, 0.0, ""],  # empty id
    [1, "id", "bogus", {}, 0.0, ""],  # unknown kind
    [1, "id", "request", {}, "yesterday", ""],  # sent_at not a number
    [1, "id", "request", {}, 0.0, 7],  # origin not a string
    "request",
    42,
    None,
]
WRONG_KINDS = sorted(wire.KINDS - {"request"})


def fuzz_messages(seed: int, count: int) -> list[tuple[str, list[bytes]]]:
    """``count`` multipart messages as a DEALER sends them, each tagged with what the cluster must do with it.

    ``"reject"``: malformed routing frames (no empty delimiter after the client's identity, or nothing
    after it), refused by the broker. ``"plain"``: a body that is not an envelope, answered ``Stop
    saying: ...``. ``"error"``: an envelope that is not a request, or a multi-frame body: the worker
    rejects it and answers with an error reply.
    """
    rng = random.Random(seed)
    request = wire.make("request", "fuzz:0", {"n": 0, "payload": b""}, origin="fuzzer")

    def rand(low: int, high: int) -> bytes:
        return rng.randbytes(rng.randint(low, high))

    makers = [
        ("reject", lambda: [rand(0, 64)]),  # one frame: no delimiter
        ("reject", lambda: [b"x" + rand(0, 16)] + [rand(0, 16) for _ in range(rng.randint(2, 8))]),  # no delimiter
        ("reject", lambda: [request]),  # a valid request without the delimiter
        ("reject", lambda: [b"x" + rand(0, 4), request]),  # a non-empty delimiter
        ("reject", lambda: [b""]),  # a delimiter alone
        ("plain", lambda: [b"", b"\xc1" + rand(0, 255)]),  # random bytes (0xc1: never valid msgpack)
        ("plain", lambda: [b"", msgpack.packb(rng.choice(NOT_ENVELOPES))]),  # valid msgpack, not an envelope
        ("plain", lambda: [b"", b"\xc1" + rand(50_000, 200_000)]),  # big, but below MAX_MSG_SIZE
        ("error", lambda: [b"", request, rand(0, 8)]),  # a trailing frame
        ("error", lambda: [b"", wire.make(rng.choice(WRONG_KINDS), f"fuzz:{rng.randrange(10**6)}")]),  # wrong kind
    ]
    return [(tag, maker()) for tag, maker in (rng.choice(makers) for _ in range(count))]


def test_fuzzed_frontend_rejects_bad_routing_forwards_any_body_and_keeps_serving(nodes) -> None:
    broker, workers, frontend = start_cluster(nodes, "proxy", workers=2)
    messages = fuzz_messages(seed=20240601, count=1000)
    expect = {tag: sum(1 for t, _ in messages if t == tag) for tag in ("reject", "plain", "error")}
    answered = expect["plain"] + expect["error"]
    replies: list[list[bytes]] = []
    ctx = zmq.Context()
    try:
        fuzzer = ctx.socket(zmq.DEALER)
        fuzzer.setsockopt(zmq.LINGER, 2000)
        fuzzer.setsockopt(zmq.SNDTIMEO, 10_000)
        fuzzer.connect(frontend)
        for _, frames in messages:
            fuzzer.send_multipart(frames)

        def all_replies() -> bool:
            while fuzzer.poll(0):
                replies.append(fuzzer.recv_multipart())
            return len(replies) >= answered

        wait_until(all_replies, 30, f"{answered} replies to the forwarded bodies")
        wait_until(lambda: broker.status()["counters"]["rejected"] >= expect["reject"], 30, "the broker's rejects")
        # A request above MAX_MSG_SIZE is never forwarded: the broker refuses it with the reason (issue 10).
        oversized = ctx.socket(zmq.DEALER)
        oversized.setsockopt(zmq.LINGER, 0)
        oversized.connect(frontend)
        oversized.send_multipart([b"", b"x" * (2 * 1024 * 1024)])
        assert oversized.poll(10_000) and oversized.recv_multipart()[1].startswith(b"error: request of 2097152 bytes")
        fuzzer.close()
        oversized.close()
    finally:
        ctx.term()

    b = broker.status()
    worker_docs = [w.status() for w in workers]
    print(f"\nfuzz: {expect}; broker after fuzz: {b['counters']}")
    assert (b["counters"]["rejected"], b["counters"]["oversized"]) == (expect["reject"] + 1, 1)
    assert b["counters"]["requests"] == b["counters"]["replies"] == answered
    assert len(replies) == answered and all(len(r) == 2 and r[0] == b"" for r in replies)
    plain = sum(1 for r in replies if r[1].startswith(b"Stop saying: "))
    errors = sum(1 for r in replies if r[1].startswith(b"error: ") or wire_error(r[1]))
    assert (plain, errors) == (expect["plain"], expect["error"])
    assert totals(worker_docs, "rejected", "plain") == {"rejected": expect["error"], "plain": expect["plain"]}
    assert get_json(broker.url + "/healthz")["ok"] is True

    (client,) = start_clients(nodes, frontend, count=1, requests=200)
    doc = client.wait_state("done", 30)
    after = broker.status()["counters"]
    print(f"client after fuzz: {doc['counters']}; broker: {after}")
    assert (doc["counters"]["replied"], doc["counters"]["failed"], doc["counters"]["retried"]) == (200, 0, 0)
    assert after["rejected"] == expect["reject"] + 1 and after["replies"] == answered + 200


def wire_error(frame: bytes) -> bool:
    """Whether ``frame`` is a reply envelope carrying an error."""
    try:
        env = wire.decode(frame)
    except wire.WireError:
        return False
    return env.kind == "reply" and isinstance(env.body, dict) and "error" in env.body


# --- 5: inproc (threads sharing one context) and ipc (processes) --------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_inproc_nodes_as_threads(mode: str) -> None:
    common = {"STATUS_PORT": "0", "BROKER_MODE": mode, **LRU_ENV}
    ctx = zmq.Context()
    broker = Broker(
        roles.load(
            "broker", {**common, "NODE_NAME": "broker", "FRONTEND_BIND": "inproc://fe", "BACKEND_BIND": "inproc://be"}
        ),
        ctx=ctx,
    )
    workers = [
        Worker(roles.load("worker", {**common, "NODE_NAME": f"worker-{i}", "BROKER_BACKEND": "inproc://be"}), ctx=ctx)
        for i in (1, 2)
    ]
    client = Client(
        roles.load("client", {**common, "NODE_NAME": "client", "BROKER_FRONTEND": "inproc://fe", "REQUESTS": "300"}),
        ctx=ctx,
    )
    servers = [threading.Thread(target=n.run, name=n.name, daemon=True) for n in (broker, *workers)]
    result: dict[str, int] = {}
    try:
        for t in servers:
            t.start()
        runner = threading.Thread(target=lambda: result.setdefault("rc", client.run()), name="client", daemon=True)
        runner.start()
        runner.join(30)
        assert not runner.is_alive(), "client thread still running after 30 s"
    finally:
        for n in (broker, *workers):
            n.stop.set()
        for t in servers:
            t.join(10)
        ctx.term()
    c = client.stats.counters
    print(f"\n[inproc {mode}] client={c} broker={broker.stats.counters} by_worker={broker.stats.labelled}")
    assert result["rc"] == 0
    assert (c["sent"], c["replied"], c["failed"], c["rejected"]) == (300, 300, 0, 0)
    assert broker.stats.counters["replies"] == 300
    assert sum(broker.stats.labelled["replies_by_worker"].values()) == 300


def test_ipc_nodes_as_processes(nodes, tmp_path: Path) -> None:
    broker, workers, _ = start_cluster(
        nodes, "proxy", workers=2, frontend=f"ipc://{tmp_path}/fe.ipc", backend=f"ipc://{tmp_path}/be.ipc"
    )
    client = nodes("client", {"BROKER_FRONTEND": f"ipc://{tmp_path}/fe.ipc", "REQUESTS": "300"}, healthy=False)
    assert client.wait_exit(30) == 0  # exit code 0 iff failed == 0
    b = broker.status()
    print(f"\n[ipc] broker={b['counters']} by_worker={b['labelled']['replies_by_worker']}")
    assert b["counters"]["requests"] == b["counters"]["replies"] == 300
    assert sum(b["labelled"]["replies_by_worker"].values()) == 300


# --- 6: configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,var,value",
    [
        ("client", "REQUESTS", "abc"),
        ("client", "BROKER_FRONTEND", "nonsense"),
        ("broker", "FRONTEND_BIND", "nonsense"),
        ("worker", "BROKER_MODE", "fifo"),
    ],
)
def test_config_error_exits_2_with_one_line(role: str, var: str, value: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STATUS_PORT": str(free_port()), var: value}
    run = subprocess.run(
        [sys.executable, "-m", "nodes", role], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and var in lines[0], run.stderr
    assert run.stdout == ""
