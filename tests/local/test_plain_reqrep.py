"""Plain peers first (issue 8, docs/wire.md "Request-reply"): the chapter's plain programs and the nodes.

The broker forwards any body behind well-formed routing frames; workers answer plain requests the
chapter's way (``Stop saying: message #N``); the project's client accepts a plain REP server's echo; in
lru mode a plain REQ worker (zguide lbbroker: READY, then ``[client, b"", request]``) works beside the
project's heartbeating DEALER workers. The examples in ``examples/`` run here as subprocesses. Every
test names exact counts and waits on handshakes and /status, never on sleeps.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zmq

from nodes.core import wire
from nodes.reqrep import protocol
from tests.local.test_reqrep import LRU_ENV, mode_env, start_clients, start_cluster, wait_for_workers
from tests.support import ROOT, NodeProc, free_port, wait_until

N = 100
EXAMPLES = ROOT / "examples"
MODES = ["proxy", "lru"]


def expected_replies(count: int = N) -> list[str]:
    return [f"Stop saying: message #{n}" for n in range(1, count + 1)]


def plain_requests(endpoint: str, count: int = N, timeout_s: float = 10.0) -> list[str]:
    """The chapter's REQ client, in the test: ``message #N`` out, each reply in; fails naming the lost one."""
    replies = []
    with zmq.Context() as ctx, ctx.socket(zmq.REQ) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        sock.connect(endpoint)
        for n in range(1, count + 1):
            sock.send_string(f"message #{n}")
            try:
                replies.append(sock.recv_string())
            except zmq.Again:
                raise AssertionError(f"no reply to message #{n} within {timeout_s}s ({len(replies)} so far)") from None
    return replies


def run_example(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@contextmanager
def example(name: str, *args: str) -> Iterator[subprocess.Popen]:
    """An example as a background process, stopped (by its own pid) at the end."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=10)


def start_broker(nodes, mode: str) -> tuple[NodeProc, str, str]:
    frontend, backend = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker = nodes("broker", {"FRONTEND_BIND": frontend, "BACKEND_BIND": backend, **mode_env(mode)}, name="broker")
    return broker, frontend, backend


def by_worker(node: NodeProc) -> dict[str, int]:
    return node.status()["labelled"].get("replies_by_worker", {})


# --- plain REQ client -> broker -> the project's workers -----------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_plain_req_client_through_broker_to_project_workers(nodes, mode: str) -> None:
    broker, workers, frontend = start_cluster(nodes, mode, workers=2, work_ms="0")
    replies = plain_requests(frontend)
    b = broker.status()
    print(f"\n[{mode}] plain client: {len(replies)}/{N} replies; broker {b['counters']} {by_worker(broker)}")
    assert replies == expected_replies()
    assert (b["counters"]["requests"], b["counters"]["replies"], b["counters"]["rejected"]) == (N, N, 0)
    worker_docs = [w.status()["counters"] for w in workers]
    assert sum(c.get("plain", 0) for c in worker_docs) == N
    assert all(c["rejected"] == 0 for c in worker_docs)
    if mode == "lru":  # counted by backend identity: each worker under the name from its READY
        assert set(by_worker(broker)) <= {w.name for w in workers} and sum(by_worker(broker).values()) == N
    else:  # a plain reply names no worker
        assert by_worker(broker) == {protocol.UNATTRIBUTED: N}


# --- the project's client -> broker -> a plain server (examples/repserver.py, lbworker.py) -------


@pytest.mark.parametrize("mode,server", [("proxy", "repserver.py"), ("lru", "lbworker.py")])
def test_project_client_through_broker_to_plain_server(nodes, mode: str, server: str) -> None:
    broker, frontend, backend = start_broker(nodes, mode)
    with example(server, backend, str(N), "30") as proc:
        wait_for_workers(broker, mode, 1)
        (client,) = start_clients(nodes, frontend, count=1, requests=N)
        doc = client.wait_state("done", 60)
        assert proc.wait(15) == 0, proc.stderr.read()
    c = doc["counters"]
    print(f"\n[{mode}] project client -> {server}: {c} {doc['labelled']}; broker {by_worker(broker)}")
    assert (c["sent"], c["replied"], c["failed"], c["rejected"], c["plain_replies"]) == (N, N, 0, 0, N)
    assert doc["labelled"]["replies_by_worker"] == {protocol.UNATTRIBUTED: N}
    assert sum(by_worker(broker).values()) == N and broker.status()["counters"]["rejected"] == 0
    if mode == "lru":
        assert broker.status()["counters"].get("workers_lost", 0) == 0


# --- plain to plain through the broker ------------------------------------------------------------


def test_plain_reqclient_to_plain_repserver_through_proxy_broker(nodes) -> None:
    broker, frontend, backend = start_broker(nodes, "proxy")
    with example("repserver.py", backend, str(N), "30") as server:
        wait_for_workers(broker, "proxy", 1)
        run = run_example("reqclient.py", frontend, str(N), "10")
        assert server.wait(15) == 0
    print(f"\nreqclient.py -> broker -> repserver.py: {len(run.stdout.splitlines())} lines, exit {run.returncode}")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == expected_replies()
    assert broker.status()["counters"]["replies"] == N
    assert by_worker(broker) == {protocol.UNATTRIBUTED: N}


def test_lru_plain_req_worker_beside_a_heartbeating_worker(nodes) -> None:
    broker, frontend, backend = start_broker(nodes, "lru")
    worker = nodes("worker", {"BROKER_BACKEND": backend, **mode_env("lru")}, name="worker-1")
    with example("lbworker.py", backend, "0", "30") as plain:
        wait_until(
            lambda: (s := broker.status())["workers_ready"] == 2 and s["workers_plain"] == 1 and s["peers"] == 2,
            15,
            "the broker to see both workers ready, one plain, both connected",
        )
        # Outlive the expiry (0.9 s) by several heartbeat rounds: the DEALER worker beats every 0.3 s.
        wait_until(lambda: broker.status()["counters"]["received"] >= 2 + 6, 15, "6 heartbeats from worker-1")
        s = broker.status()
        assert (s["workers_ready"], s["counters"].get("workers_lost", 0)) == (2, 0), s  # not expired by silence
        assert plain.poll() is None, "a heartbeat reached the plain REQ worker"  # it would have crashed it
        run = run_example("reqclient.py", frontend, str(N), "10")
        assert plain.poll() is None
    counts = by_worker(broker)
    print(f"\nlru, reqclient.py -> worker-1 + lbworker.py: exit {run.returncode}; replies_by_worker {counts}")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == expected_replies()
    assert sum(counts.values()) == N and counts.get("worker-1", 0) > 0
    assert len(counts) == 2, "both workers served"
    assert worker.status()["counters"]["plain"] == counts["worker-1"]
    assert broker.status()["counters"]["rejected"] == 0


# --- what the broker refuses: malformed routing frames only, counted and logged ------------------


@pytest.mark.parametrize("mode", MODES)
def test_malformed_routing_frames_are_counted_rejects(nodes, mode: str) -> None:
    broker, _, frontend = start_cluster(nodes, mode, workers=1, work_ms="0")
    bad_front = [[b"message #1"], [b"x", b"message #2"], [b""]]  # no delimiter / non-empty delimiter / nothing after
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as dealer:
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(frontend)
        for frames in bad_front:
            dealer.send_multipart(frames)
        wait_until(lambda: broker.status()["counters"]["rejected"] == len(bad_front), 10, "3 frontend rejects")
    assert broker.status()["counters"]["requests"] == 0
    assert plain_requests(frontend, 5) == expected_replies(5)  # and it keeps serving
    log = broker.log_tail(200)
    assert "malformed routing frames" in log and '"source": "frontend"' in log


def test_malformed_backend_frames_are_counted_rejects_in_lru_mode(nodes) -> None:
    broker, frontend, backend = start_broker(nodes, "lru")
    with zmq.Context() as ctx:
        socks = []
        for kind, frames in [
            (zmq.DEALER, [b"garbage"]),  # not an envelope, not READY
            (zmq.DEALER, [b"READY"]),  # a plain READY needs a REQ socket
            (zmq.DEALER, [b"client", b"x", b"reply"]),  # a reply with a non-empty delimiter
            (zmq.REQ, [b"HELLO"]),  # a REQ worker must start with READY
        ]:
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(backend)
            sock.send_multipart(frames)
            socks.append(sock)
        wait_until(lambda: broker.status()["counters"]["rejected"] == 4, 10, "4 backend rejects")
        s = broker.status()
        for sock in socks:
            sock.close()
    print(f"\nlru backend rejects: {s['counters']}")
    assert (s["workers_ready"], s["counters"]["replies"]) == (0, 0)
    assert broker.log_tail(200).count('"source": "backend"') >= 4


# --- a malformed request a REQ client waits on gets an error reply, not silence ------------------


@pytest.mark.parametrize("mode", MODES)
def test_malformed_request_gets_an_error_reply(nodes, mode: str) -> None:
    broker, (worker,), frontend = start_cluster(nodes, mode, workers=1, work_ms="0")
    with zmq.Context() as ctx, ctx.socket(zmq.REQ) as req:
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 10_000)
        req.connect(frontend)
        req.send(wire.make("reply", "bad:1", {"n": 1}, origin="test"))  # an envelope of the wrong kind
        env = wire.decode(req.recv())
        req.send_multipart([b"message", b"#2"])  # two frames: not one request
        two_frames = req.recv()
    print(f"\n[{mode}] error replies: {env.body!r} / {two_frames!r}")
    assert env.kind == "reply" and "malformed request" in env.body["error"] and env.origin == worker.name
    assert two_frames == b"error: malformed request: expected 1 frame, got 2"
    assert worker.status()["counters"]["rejected"] == 2
    assert broker.status()["counters"]["rejected"] == 0  # the broker forwarded both: routing was fine


# --- the examples never hang ----------------------------------------------------------------------


def test_examples_time_out_with_a_nonzero_exit() -> None:
    nobody = f"tcp://127.0.0.1:{free_port()}"
    for name in ("reqclient.py", "repserver.py", "lbworker.py"):
        run = run_example(name, nobody, "1", "0.3", timeout=30)
        assert run.returncode == 1 and "within 300 ms" in run.stderr, (name, run.returncode, run.stderr)


# --- the pure helpers ---------------------------------------------------------------------------


def test_protocol_helpers() -> None:
    env = wire.make("reply", "w:1", {"n": 1}, origin="worker-7")
    assert env[:2] == protocol.ENVELOPE_HEAD  # what origin_of's cheap check relies on
    assert protocol.origin_of(env) == "worker-7"
    assert protocol.origin_of(wire.make("reply", "w:2")) == protocol.UNATTRIBUTED  # no origin
    assert protocol.origin_of(b"Stop saying: message #1") == protocol.UNATTRIBUTED
    assert protocol.origin_of(protocol.ENVELOPE_HEAD + b"\xc1") == protocol.UNATTRIBUTED
    assert protocol.plain_reply(b"message #3") == b"Stop saying: message #3"
    request = wire.make("request", "c:1", {"n": 1})
    assert protocol.echoes(request, request) and protocol.echoes(protocol.plain_reply(request), request)
    assert not protocol.echoes(b"World", request)
    assert protocol.identity_label(b"Worker-1") == "Worker-1"
    assert protocol.identity_label(b"\x00k\x8bEg") == "006b8b4567"
    assert LRU_ENV["HEARTBEAT_LIVENESS"] == "3"  # the lru tests above reason with 0.3 s x 3
