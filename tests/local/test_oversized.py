"""A message over MAX_MSG_SIZE never cuts a peer off silently (issue 10, item 1).

libzmq drops a connection on which a frame over the socket's MAXMSGSIZE arrives, and a *connecting*
socket then never dials again (a lone EVENT_DISCONNECTED, no CONNECT_RETRIED). The nodes' links
(:class:`nodes.core.peers.Link`) see that, count it under ``cut_off``, log it and dial again; the broker
never forwards a request larger than MAX_MSG_SIZE and answers it with the reason instead.
"""

from __future__ import annotations

import time

import pytest
import zmq

from nodes.core.peers import Link
from tests.local.test_reqrep import start_clients, start_cluster, wait_for_workers
from tests.support import free_port, get_json, wait_until

SMALL = 65536
BIG = 70_000


def test_link_redials_a_connection_libzmq_dropped_for_an_oversized_frame() -> None:
    ctx = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = ctx.socket(zmq.DEALER)
    client = ctx.socket(zmq.REP)
    client.setsockopt(zmq.MAXMSGSIZE, 1000)
    link = Link(client, endpoint)
    try:
        server.bind(endpoint)
        link.connect()
        wait_until(lambda: link.poll() == 1, 5, "the handshake")
        server.send_multipart([b"", b"x" * 2000], zmq.NOBLOCK)
        # apply the events without re-dialling yet (a clock at -inf: the settle time has not passed)
        wait_until(lambda: link.poll(now=float("-inf")) == 0 and link.down_since, 5, "the lone DISCONNECTED")
        assert link.cut_off  # /healthz says so until it is back
        wait_until(lambda: link.poll() == 1 and link.cut_offs == 1, 5, "the re-dial and a new handshake")
        assert not link.cut_off
        assert server.poll(2000, zmq.POLLOUT)
        server.send_multipart([b"", b"small"], zmq.NOBLOCK)
        assert client.poll(2000) and client.recv_multipart() == [b"small"]
        # A peer that went away is libzmq's to re-dial (CONNECT_RETRIED follows): no cut-off counted.
        server.close(0)
        time.sleep(0.5)
        link.poll()
        assert link.cut_offs == 1 and not link.cut_off
    finally:
        link.close()
        client.close(0)
        server.close(0)
        ctx.destroy(0)


def send_raw_request(frontend: str, body: bytes, timeout_ms: int = 3000) -> bytes | None:
    """One request from a plain REQ socket; its reply, or None after ``timeout_ms``."""
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(frontend)
        req.send(body)
        return req.recv() if req.poll(timeout_ms) else None
    finally:
        req.close(0)
        ctx.term()


def start(nodes, mode: str, broker_max: int | None, worker_max: int, workers: int = 3):
    """A broker (MAX_MSG_SIZE ``broker_max``, None = the default) and workers at ``worker_max``, all connected."""
    broker_env = {"MAX_MSG_SIZE": str(broker_max)} if broker_max else {}
    worker_env = {"MAX_MSG_SIZE": str(worker_max)}
    return start_cluster(nodes, mode, workers, "0", broker_env=broker_env, worker_env=worker_env)


def run_batch(nodes, frontend: str, n: int) -> dict:
    (client,) = start_clients(nodes, frontend, count=1, requests=n, REQUEST_TIMEOUT="1", RETRIES="3")
    return client.wait_state("done", 60)["counters"]


def big_request_refused_then_batch_answered(nodes, broker, workers, frontend: str, limit: str) -> None:
    """A BIG request gets the reason (``limit`` SMALL) and is never forwarded; then a batch of 60 is answered 60/60."""
    reply = send_raw_request(frontend, b"x" * BIG)
    assert reply == f"error: request of {BIG} bytes exceeds {limit} {SMALL}".encode()
    c = broker.status()["counters"]
    assert (c["rejected"], c["oversized"], c["requests"]) == (1, 1, 0), c
    counters = run_batch(nodes, frontend, 60)
    assert (counters["replied"], counters["failed"], counters["retried"]) == (60, 0, 0), counters
    assert sum(w.status()["counters"].get("cut_off", 0) for w in workers) == 0


def test_workers_behind_a_bigger_broker_are_cut_off_redial_and_answer_the_next_batch(nodes) -> None:
    """The issue's trigger: workers at 65536 behind a broker with the default (1 MiB) and a 70 KB request."""
    broker, workers, frontend = start(nodes, "proxy", None, SMALL)
    assert send_raw_request(frontend, b"x" * BIG, timeout_ms=1000) is None  # the worker it reached dropped it
    wait_until(lambda: sum(w.status()["counters"].get("cut_off", 0) for w in workers) == 1, 10, "one cut_off counted")
    wait_for_workers(broker, "proxy", 3)
    counters = run_batch(nodes, frontend, 60)
    assert (counters["replied"], counters["failed"], counters["retried"]) == (60, 0, 0), counters
    assert sum(w.status()["counters"]["sent"] for w in workers) == 60
    assert all(get_json(w.url + "/healthz")["ok"] is True for w in workers)
    cut = [w for w in workers if w.status()["counters"].get("cut_off")]
    assert "connection_cut_off" in cut[0].log_tail(200)


@pytest.mark.parametrize("mode", ["proxy", "lru"])
def test_broker_answers_a_request_over_max_msg_size_with_the_reason(nodes, mode: str) -> None:
    broker, workers, frontend = start(nodes, mode, SMALL, SMALL)
    big_request_refused_then_batch_answered(nodes, broker, workers, frontend, "MAX_MSG_SIZE")
    # The limit itself passes; a reply that the limit makes too big for the client is refused with the reason.
    fits = SMALL - len(b"Stop saying: ")
    assert send_raw_request(frontend, b"y" * fits) == b"Stop saying: " + b"y" * fits
    reply = send_raw_request(frontend, b"z" * SMALL)
    assert reply == f"error: reply of {SMALL + 13} bytes exceeds MAX_MSG_SIZE {SMALL}".encode()
    c = broker.status()["counters"]
    assert (c["rejected"], c["oversized"]) == (2, 2), c


def test_broker_holds_requests_to_the_backend_limit_when_workers_accept_less(nodes) -> None:
    """BACKEND_MAX_MSG_SIZE: a broker at the default 1 MiB in front of workers at 64 KiB refuses a 70 KB request
    with the reason instead of cutting a worker off, and the workers answer the next batch N/N."""
    broker_env = {"BACKEND_MAX_MSG_SIZE": str(SMALL)}
    broker, workers, frontend = start_cluster(
        nodes, "proxy", 3, "0", broker_env=broker_env, worker_env={"MAX_MSG_SIZE": str(SMALL)}
    )
    big_request_refused_then_batch_answered(nodes, broker, workers, frontend, "BACKEND_MAX_MSG_SIZE")
