"""client: REQ connects to the broker's frontend (BROKER_FRONTEND); binds nothing.

Sends REQUESTS requests one at a time, paced to RATE, each an envelope of kind "request" whose
body carries its sequence number n and PAYLOAD_BYTES of payload.

Lazy Pirate (zguide lpclient): a request may be lost with the worker holding it, and a REQ
socket that sent and got nothing back is stuck (it must receive before it may send again). So
the client polls for the reply for REQUEST_TIMEOUT; on timeout it closes the socket with
LINGER=0 (dropping the lost request), opens a new one and sends the same request again, up to
RETRIES times (a tenacity loop). A reply counts if it is a reply envelope that echoes the
request's id (counted under the worker it names), or a plain frame that ends with the request's
exact bytes: an echo, or the chapter's ``Stop saying: <request>``, so that any plain REP server
(docs/wire.md) is a valid worker; the request frame carries a unique id, so such an echo cannot
answer another request. A plain reply is counted under ``unattributed`` (its worker has no name).
Anything else is rejected and the request is resent.

Counters: ``sent`` (distinct requests; ``sent == replied + failed`` at the end), ``replied``,
``retried`` (resends), ``failed`` (no correct reply after every retry), ``received``/``rejected``
(reply frames), ``plain_replies``; labelled ``replies_by_worker``. ``/status`` also shows ``latency``:
count, p50, p99 and max of the round trip of replied requests, from the first send to the reply
(retries included: what the caller waited), in seconds (:mod:`nodes.core.latency`). Exit code 0 iff
failed == 0.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, stop_when_event_set

from nodes.core import wire
from nodes.core.latency import Latency
from nodes.core.lifecycle import EXIT_INTERRUPTED, POLL_MS, Node, Pacer
from nodes.core.log import event, worth_logging
from nodes.reqrep import protocol

log = logging.getLogger(__name__)


class Client(Node):
    """Sends a batch of requests through the broker and checks every reply."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("replied", "retried", "failed"):
            self.stats.counters[name] = 0
        self.done = False
        #: Round trip of each replied request, first send to its reply (retries included): what a caller waits.
        self.latency = Latency()
        self._sock: zmq.Socket | None = None
        # One attempt = send, then wait up to REQUEST_TIMEOUT; None means "no correct reply": resend.
        self._lazy_pirate = Retrying(
            stop=stop_after_attempt(self.settings.retries + 1) | stop_when_event_set(self.stop),
            retry=retry_if_result(lambda reply: reply is None),
            before=self._count_retry,
            retry_error_callback=lambda _state: None,
        )

    def summary(self) -> str:
        c = self.stats.counters
        latency = self.latency.text()
        return f"replied {c['replied']}/{self.settings.requests} failed {c['failed']} retried {c['retried']}" + (
            f", latency {latency}" if latency else ""
        )

    def extra_status(self) -> dict:
        return {"requests": self.settings.requests, "done": self.done, "latency": self.latency.summary()}

    def serve(self) -> int:
        s = self.settings
        counters = self.stats.counters
        pacer = Pacer(s.rate, self)
        payload = b"x" * s.payload_bytes
        started = time.monotonic()
        for n in range(1, s.requests + 1):
            if not pacer.wait():
                break
            request_id = self.ids()
            frame = wire.make(protocol.REQUEST, request_id, protocol.request(n, payload), origin=self.name)
            counters["sent"] += 1
            sent_at = time.monotonic()
            worker = self._lazy_pirate(self._attempt, request_id, frame)
            if worker is not None:
                self.latency.record(time.monotonic() - sent_at)
                counters["replied"] += 1
                self.stats.incr_label("replies_by_worker", worker)
            elif self.stop.is_set():
                self.stats.incr("abandoned")  # stopped while retrying: neither answered nor given up on
                break
            else:
                counters["failed"] += 1
                event(log, "request_failed", logging.ERROR, request_id=request_id, n=n, attempts=s.retries + 1)
        self.done = counters["replied"] + counters["failed"] == s.requests
        if self._sock is not None:
            self.close_socket(self._sock)
            self._sock = None
        self.log_batch_summary(
            s.requests,
            self.done,
            counters["replied"],
            started,
            latency=self.latency.summary(),
            replies_by_worker=dict(self.stats.labelled.get("replies_by_worker", {})),
        )
        if not self.done and self.stop.is_set():
            event(
                log,
                "batch_interrupted",
                logging.WARNING,
                exit_code=EXIT_INTERRUPTED,
                unanswered=s.requests - counters["replied"],
            )
            return EXIT_INTERRUPTED
        return 0 if counters["failed"] == 0 else 1

    def _attempt(self, request_id: str, frame: bytes) -> str | None:
        """Send once and wait for the reply; on timeout, close the stuck REQ socket so the next attempt reopens it."""
        if self._sock is None:
            self._sock = self.socket(zmq.REQ, connect=self.settings.broker)
        sock = self._sock
        sock.send(frame)
        deadline = time.monotonic() + self.settings.request_timeout
        while True:
            self.running()  # health beat only: the request in hand is finished (bounded) even when stopping
            left_ms = (deadline - time.monotonic()) * 1000
            if left_ms <= 0:
                break
            if sock.poll(min(POLL_MS, max(1, int(left_ms)))):
                self.stats.counters["received"] += 1
                return self._check(sock.recv_multipart(), request_id, frame)
        self.close_socket(sock)  # LINGER=0: the unanswered request dies with the socket
        self._sock = None
        return None

    def _check(self, frames: list[bytes], request_id: str, request: bytes) -> str | None:
        """The worker that answered ``request_id`` (a name, or ``unattributed`` for a plain echo of
        ``request``); otherwise ``None`` after counting a reject (the REQ may send again)."""
        if len(frames) == 1 and protocol.echoes(frames[0], request):
            self.stats.incr("plain_replies")
            return protocol.UNATTRIBUTED
        env = self.decode_one(frames, "broker", (protocol.REPLY,))
        if env is not None and (not isinstance(env.body, dict) or env.body.get("request_id") != request_id):
            self.reject(f"reply does not answer request {request_id}", "broker")
            env = None
        return None if env is None else env.origin or "?"

    def _count_retry(self, state: RetryCallState) -> None:
        if state.attempt_number > 1:
            self.stats.counters["retried"] += 1
            n = self.stats.counters["retried"]
            if worth_logging(n):
                event(log, "retrying", logging.WARNING, attempt=state.attempt_number, retried_total=n)
