"""Ventilator: fans a batch of tasks out to pipeworkers and sees it through (zguide "Divide and Conquer").

Binds    PUSH   at VENT_BIND      pipeworkers connect here: the stable side binds, so workers scale freely.
Connects DEALER to SINK_CONTROL   the sink's ledger endpoint: announce the batch, ask what is missing
                                  (default: SINK_ENDPOINT's port + 2, where the sink binds it by default).

PUSH/PULL has no acknowledgement: tasks queued at a pipeworker that dies, or in flight to a sink that
restarts, are gone, and nothing in the sockets says so. zguide's answer is that the *sink* knows
which tasks came back; so the ventilator asks it, and re-sends the rest. Order of a run, with no
sleep anywhere:

1. wait (at most WAIT_TIMEOUT) until MIN_PIPEWORKERS pipeworkers are connected, counted with a
   socket monitor (:mod:`nodes.core.peers`: handshakes done, minus disconnects). Without this, PUSH
   would hand every task to the first worker to connect while the others are still starting;
2. announce the batch: a ``batch`` query ``{"batch", "size"}`` on the ledger endpoint, repeated
   every ``ASK_EVERY`` until the sink answers (WAIT_TIMEOUT). ``IMMEDIATE`` keeps the DEALER from
   queueing queries for a sink that is not connected; every later query repeats the announcement, so a
   sink that restarted without its journal learns the batch again;
3. send TASKS tasks paced by RATE. Per-worker queues are small (see :mod:`nodes.pipeline.pipeworker`),
   so PUSH skips busy workers and a worker that dies takes few tasks with it. A send waits for room in
   bounded steps; if no worker takes a task for WAIT_TIMEOUT the batch is abandoned (exit 1);
4. reconcile: poll the sink's ledger every ``POLL_LEDGER_S``. When it holds all TASKS distinct task
   numbers the run ends, exit 0. When no new result has arrived for RESEND_AFTER seconds, ask for the
   missing numbers and re-send them, paced by RATE, to the pipeworkers connected *now* (PUSH deals only
   to live connections; ZMTP heartbeats drop a paused or cut-off one within
   ``protocol.HEARTBEAT_TIMEOUT_MS``), waiting up to WAIT_TIMEOUT for one to be there at all. A re-send
   round after which still nothing new arrives counts against MAX_RESENDS; any progress resets the
   count. After MAX_RESENDS barren rounds (or WAIT_TIMEOUT without a pipeworker, or without an answer
   from the sink) it gives up.

A task may so be delivered twice (re-sent while the first copy was only slow): the sink counts it
once and the copy as a duplicate, which is what makes "at least once" exact.

Exit codes: 0 the sink holds all TASKS distinct; 1 gave up (``gave_up`` names what it waited for and
how many tasks are missing); 3 stopped (SIGTERM/SIGINT) before the sink had them all. 2 is a
configuration error (``nodes.__main__``).

``inproc://`` peers produce no monitor events in libzmq, so there the wait can only tell that *some*
pipeworker is attached (the socket is writable); a warning says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import zmq

from nodes.core import config, wire
from nodes.core.amqp import AMQP_ERRORS, unreachable
from nodes.core.lifecycle import EXIT_INTERRUPTED, POLL_MS, Node, Pacer
from nodes.core.log import event
from nodes.core.peers import PeerCounter
from nodes.pipeline import protocol
from nodes.pipeline.amqpqueue import TaskQueue

log = logging.getLogger(__name__)

#: Refresh the connected-pipeworker count shown on /status once per this many tasks, not per task.
PEER_POLL_EVERY = 256
#: Seconds between repeats of a ledger query the sink has not answered.
ASK_EVERY = 0.5
#: Seconds between progress polls of the sink's ledger once every task is sent.
POLL_LEDGER_S = 0.2
#: How long a give-up waits for the sink's last word on how many tasks are missing, seconds.
FINAL_ASK_S = 1.0

EXIT_GAVE_UP = 1


class Ventilator(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        s = self.settings
        stamp = time.strftime("%Y%m%dT%H%M%S") + f".{int(time.time() * 1000) % 1000:03d}"
        self.batch: str = s.batch_id or f"{self.name}-{stamp}"
        self.sent = 0
        self.resent = 0
        self.rounds = 0
        self.peers: PeerCounter | None = None
        #: BACKEND=rabbitmq: the queue's consumers at the last count (there is no PUSH socket to watch).
        self.consumers: int | None = None
        self.control: zmq.Socket | None = None
        try:
            self.sink_control = protocol.ledger_endpoint(s.sink, s.sink_control)
        except ValueError as exc:
            raise config.ConfigError(f"SINK_CONTROL: {exc}") from None
        #: The sink's last answer (protocol.progress_of), None before the first.
        self.progress: dict[str, Any] | None = None
        self.started = time.monotonic()

    def extra_status(self) -> dict[str, Any]:
        p = self.progress
        sink = None if p is None else {k: p[k] for k in ("distinct", "missing", "duplicates", "complete")}
        return {
            "batch": self.batch,
            "tasks": self.settings.tasks,
            "sent": self.sent,
            "resent": self.resent,
            "resend_rounds": self.rounds,
            "sink": sink,
        }

    def peer_count(self) -> int | None:
        return self.peers.count if self.peers else self.consumers

    def _consuming(self, queue: TaskQueue) -> int:
        """Pipeworkers consuming the RabbitMQ queue now (kept for /status like the PUSH socket's peers)."""
        self.consumers = queue.consumers()
        return self.consumers

    def summary(self) -> str:
        p = self.progress
        at_sink = "?" if p is None else p["distinct"]
        return (
            f"batch {self.batch}: sent {self.sent}/{self.settings.tasks} (+{self.resent} re-sent) to"
            f" {self.peer_count()} pipeworkers, {at_sink} done at the sink"
        )

    # --- the run --------------------------------------------------------------------------------------

    def serve(self) -> int:
        s = self.settings
        if s.backend == "rabbitmq":
            return self._serve_amqp()
        # The last tasks sent may wait for room at a busy worker: give them up to WAIT_TIMEOUT after
        # the last send to get there (the default 1 s linger would drop them when tasks are slow).
        linger = int(s.wait_timeout * 1000)
        tasks = self.socket(
            zmq.PUSH,
            linger=linger,
            sndhwm=protocol.TASK_QUEUE,
            sndbuf=protocol.TASK_QUEUE_BYTES,
            sndtimeo=POLL_MS,  # send_waiting: wait for a pipeworker's slot inside libzmq
            **protocol.HEARTBEATS,
        )
        if not s.bind.startswith("inproc://"):
            self.peers = self.count_peers(tasks)
        try:
            self.bind(tasks, s.bind)
            return self.run_batch(tasks)
        finally:
            if self.peers:
                self.peers.poll()
                self.peers.close()

    def _serve_amqp(self) -> int:
        """BACKEND=rabbitmq: the same batch through a durable queue (nodes.pipeline.amqpqueue)."""
        try:
            queue = TaskQueue(self.settings, self.name, heartbeat=0)  # it may only poll the sink for a while
            queue.confirm()
        except AMQP_ERRORS as exc:
            return unreachable(self, exc)
        try:
            return self.run_batch(queue)
        except AMQP_ERRORS as exc:
            return unreachable(self, exc)
        finally:
            queue.close()

    def run_batch(self, tasks: zmq.Socket | TaskQueue) -> int:
        """Wait for pipeworkers, announce the batch to the sink, send it, see it through (both transports)."""
        s = self.settings
        self.control = self.socket(zmq.DEALER, connect=self.sink_control, immediate=1, linger=0, **protocol.HEARTBEATS)
        if not self.wait_for_pipeworkers(tasks):
            where = tasks.name if isinstance(tasks, TaskQueue) else s.bind
            return self.give_up(f"{s.min_pipeworkers} pipeworkers connected to {where}")
        ack = self.ask(0, s.wait_timeout)
        if ack is None:
            return self.give_up(f"the sink at {self.sink_control} to acknowledge the batch")
        if ack["error"]:
            return self.refused(ack)
        self.stats.incr("announced")
        event(log, "batch_announced", batch=self.batch, size=s.tasks, sink=self.sink_control, at_sink=ack["distinct"])
        numbers = self.to_send(ack)
        if numbers is None:
            return self.give_up(f"the sink at {self.sink_control} to list the missing tasks", ask_sink=False)
        failed = self.send_numbers(tasks, numbers, resend=False)
        if failed is not None:
            return self.give_up(f"a pipeworker to take task {failed} of batch {self.batch}")
        elapsed = round(time.monotonic() - self.started, 3)
        event(log, "batch_sent", batch=self.batch, sent=self.sent, tasks=s.tasks, elapsed_s=elapsed)
        return self.reconcile(tasks)

    def to_send(self, ack: dict[str, Any]) -> Iterable[int] | None:
        """The task numbers of the first pass: all of them, or, when the sink already holds some of this
        batch (a ventilator rerun with the same BATCH_ID), only the missing ones. None: the sink went away."""
        s = self.settings
        if ack["distinct"] == 0 or ack["missing"] > protocol.MAX_LIST:
            return range(s.tasks)
        p = self.ask(protocol.MAX_LIST, s.wait_timeout)
        if p is None:
            return None
        numbers = [n for a, b in p["missing_ranges"] for n in range(a, b)]
        event(log, "batch_resumed", batch=self.batch, at_sink=p["distinct"], sending=len(numbers))
        return numbers

    def wait_for_pipeworkers(self, tasks: zmq.Socket | TaskQueue, at_least: int | None = None, what: str = "") -> bool:
        s = self.settings
        want = s.min_pipeworkers if at_least is None else at_least
        if want == 0:
            return True
        if isinstance(tasks, TaskQueue):
            what = what or f"{want} pipeworkers consuming RabbitMQ queue {tasks.name}"
            return self.wait_for(what, lambda: self._consuming(tasks) >= want, s.wait_timeout)
        if self.peers is None:
            event(log, "inproc_peer_count_unknown", logging.WARNING, hint="waiting for at least one pipeworker")
            return self.wait_for(f"a pipeworker on {s.bind}", lambda: tasks.poll(0, zmq.POLLOUT), s.wait_timeout)
        peers = self.peers
        if peers.poll() >= want:
            return True
        return self.wait_for(
            what or f"{want} pipeworkers connected to {s.bind}", lambda: peers.poll() >= want, s.wait_timeout
        )

    def send_numbers(self, tasks: zmq.Socket | TaskQueue, numbers: Iterable[int], *, resend: bool) -> int | None:
        """Send these task numbers paced by RATE; None when all went, else the number that could not."""
        s = self.settings
        pacer = Pacer(s.rate, self)
        pad = bytes(s.payload_bytes)
        for i, n in enumerate(numbers):
            if not pacer.wait():
                return n
            frame = wire.make(protocol.TASK, self.ids(), protocol.task(self.batch, n, s.task_ms, pad), self.name)
            if not (
                tasks.publish(frame)
                if isinstance(tasks, TaskQueue)
                else self.send_waiting(tasks, frame, s.wait_timeout)
            ):
                return n
            if resend:
                self.resent += 1
                self.stats.incr("resent")
            else:
                self.sent += 1
            self.stats.incr("sent")
            if self.peers and i % PEER_POLL_EVERY == 0:
                self.peers.poll()
        return None

    def reconcile(self, tasks: zmq.Socket | TaskQueue) -> int:
        """Poll the sink's ledger until it holds every task, re-sending the missing ones when nothing moves."""
        s = self.settings
        last_distinct: int | None = None
        last_change = time.monotonic()
        barren = 0  # re-send rounds in a row after which nothing new arrived
        while True:
            asked_at = time.monotonic()
            p = self.ask(0, s.wait_timeout)
            if p is None:
                return self.give_up(f"the sink at {self.sink_control} to answer", ask_sink=False)
            if p["error"]:
                return self.refused(p)
            if p["complete"]:
                return self.finished(p)
            now = time.monotonic()
            if now - asked_at > 2 * ASK_EVERY:
                # The sink was unreachable (restarting?): results queued for it meanwhile get their chance.
                last_change = now
            if p["distinct"] != last_distinct:
                if last_distinct is not None and p["distinct"] > last_distinct:
                    barren = 0
                last_distinct, last_change = p["distinct"], now
            elif now - last_change >= s.resend_after:
                if barren >= s.max_resends:
                    what = f"any new result after {barren} re-send rounds (MAX_RESENDS={s.max_resends})"
                    return self.give_up(what)
                code = self.resend(tasks)
                if code is not None:
                    return code
                barren += 1
                last_change = time.monotonic()
            if self.stop.wait(POLL_LEDGER_S):
                return self.give_up("the batch to complete")

    def resend(self, tasks: zmq.Socket | TaskQueue) -> int | None:
        """One re-send round; None to go on, else the exit code. Over RabbitMQ nothing is re-sent: the broker
        redelivers the tasks of a lost pipeworker itself; a round without progress still counts against
        MAX_RESENDS, so a batch nobody works on is given up all the same."""
        s = self.settings
        if isinstance(tasks, TaskQueue):
            event(log, "awaiting_redelivery", logging.WARNING, batch=self.batch, queue=tasks.name)
            return None
        p = self.ask(protocol.MAX_LIST, s.wait_timeout)
        if p is None:
            return self.give_up(f"the sink at {self.sink_control} to list the missing tasks", ask_sink=False)
        if p["error"]:
            return self.refused(p)
        if p["complete"]:
            return self.finished(p)
        numbers = [n for a, b in p["missing_ranges"] for n in range(a, b)]
        what = f"a live pipeworker on {s.bind} to re-send {len(numbers)} missing tasks to"
        if not self.wait_for_pipeworkers(tasks, 1, what):
            return self.give_up(what)
        self.rounds += 1
        event(
            log,
            "resending",
            logging.WARNING,
            batch=self.batch,
            round=self.rounds,
            missing=p["missing"],
            resending=len(numbers),
            examples=numbers[:10],
            pipeworkers=self.peer_count(),
        )
        failed = self.send_numbers(tasks, numbers, resend=True)
        if failed is not None:
            return self.give_up(f"a pipeworker to take re-sent task {failed} of batch {self.batch}")
        return None

    # --- the ledger endpoint ---------------------------------------------------------------------------

    def ask(self, list_missing: int, timeout: float) -> dict[str, Any] | None:
        """Announce the batch and ask the sink how it stands; the checked answer, or None (timeout or stop).

        The query is repeated every ASK_EVERY until answered: a sink that was down or restarting gets
        it as soon as it is back. Answers to earlier queries of other calls are stale and ignored.
        """
        control = self.control
        assert control is not None
        deadline = time.monotonic() + timeout
        asked: set[str] = set()
        next_ask = 0.0
        source = f"DEALER {self.sink_control}"
        while True:
            now = time.monotonic()
            if now >= next_ask:
                msg_id = self.ids()
                body = protocol.query(self.batch, self.settings.tasks, list_missing)
                try:
                    control.send(wire.make(protocol.BATCH, msg_id, body, self.name), zmq.NOBLOCK)
                    asked.add(msg_id)
                    self.stats.incr("queries")
                except zmq.Again:  # IMMEDIATE: no connection to the sink right now
                    self.stats.incr("queries_unsent")
                next_ask = now + ASK_EVERY
            if control.poll(POLL_MS):
                for frames in self.drain(control):
                    env = self.decode_one(frames, source, (protocol.BATCH,))
                    if env is None:
                        continue
                    try:
                        p = protocol.progress_of(env.body)
                    except ValueError as exc:
                        self.reject(f"bad ledger answer {env.id}: {exc}", source)
                        continue
                    if p["re"] in asked and p["batch"] == self.batch:
                        self.progress = p
                        return p
                    self.stats.incr("stale_answers")
            self.stats.beat()
            if self.stop.is_set() or time.monotonic() >= deadline:
                return None

    # --- endings ---------------------------------------------------------------------------------------

    def finished(self, p: dict[str, Any]) -> int:
        event(
            log,
            "batch_complete",
            batch=self.batch,
            tasks=self.settings.tasks,
            sent=self.sent,
            resent=self.resent,
            resend_rounds=self.rounds,
            at_sink=p["distinct"],
            duplicates_at_sink=p["duplicates"],
            elapsed_s=round(time.monotonic() - self.started, 3),
        )
        return 0

    def refused(self, p: dict[str, Any]) -> int:
        event(log, "batch_refused", logging.ERROR, batch=self.batch, error=p["error"])
        return EXIT_GAVE_UP

    def give_up(self, what: str, ask_sink: bool = True) -> int:
        """Exit code after a wait that failed: EXIT_INTERRUPTED on a stop request, else EXIT_GAVE_UP.

        Either way the log says how many tasks the sink is missing (asked once more, briefly, unless
        the sink itself is what failed or the node is stopping; else the last answer).
        """
        s = self.settings
        if ask_sink and not self.stop.is_set() and self.control is not None and self.progress is not None:
            self.ask(0, FINAL_ASK_S)
        p = self.progress
        missing = None if p is None else p["missing"]
        if self.stop.is_set():
            event(
                log,
                "batch_interrupted",
                logging.WARNING,
                batch=self.batch,
                sent=self.sent,
                resent=self.resent,
                tasks=s.tasks,
                missing=missing,
                exit_code=EXIT_INTERRUPTED,
            )
            return EXIT_INTERRUPTED
        event(
            log,
            "gave_up",
            logging.ERROR,
            waited_for=what,
            timeout_s=s.wait_timeout,
            batch=self.batch,
            tasks=s.tasks,
            sent=self.sent,
            resent=self.resent,
            resend_rounds=self.rounds,
            missing=missing,
        )
        return EXIT_GAVE_UP
