"""Pipeworker: pulls tasks, does their work, pushes results (zguide "Divide and Conquer").

Connects PULL to VENT_ENDPOINT   tasks from the ventilator (which binds: workers come and go).
Connects PUSH to SINK_ENDPOINT   the results: those of one batch finished within FLUSH_S in one ``results`` frame,
                                 body {"batch", "ns": [n, ...], "worker"} (at most protocol.MAX_RESULTS numbers);
                                 a single ``result`` {"batch", "n", "worker"} for an AMQP task (acknowledged one
                                 by one) and for the tasks finished while stopping.

The work is real CPU: ``work_ms`` of busy spinning on ``time.perf_counter``, not a sleep, so two
pipeworker processes on two cores really run in parallel and a benchmark measures the pipeline.
(As threads of one process they would share the GIL and not.)

The task queue at each worker is kept small (``protocol.TASK_QUEUE`` messages, ``protocol.TASK_QUEUE_BYTES`` of
kernel buffer; the ventilator uses the same limits on its side). Tasks queued at a worker that dies
are lost with it (the sink's ledger shows them missing until the ventilator re-sends them). RCVHWM
alone does not bound that on tcp/ipc: with default kernel buffers one connection holds some 25,000
small tasks (measured), so a worker that stops mid-batch would take half the batch with it. Small
HWMs *and* small socket buffers cap it at about a hundred tasks a worker, and make PUSH's round-robin
skip full workers, so load follows each worker's speed. The price: more system calls per task and a
worker may wait briefly for its next task; measured raw PUSH/PULL still moves ~100k tasks/s, far more
than a Python node processes.

PUSH/PULL has no acknowledgement, so the ventilator asks the sink which tasks came back and re-sends
the rest (:mod:`nodes.pipeline.ventilator`); a worker's job is to lose as little as it can and to say
what it lost.

On SIGTERM the worker stops *taking* tasks first, then finishes what it holds:

1. it finishes the task in hand and pushes the results in hand (with a short grace if the sink is slow);
2. it reads the tasks already queued in this process (at most ``protocol.TASK_QUEUE``, no waiting) and
   closes its PULL socket at once (LINGER 0): the connection drops, so the ventilator's PUSH stops
   dealing to it. Tasks still in flight in the kernel buffers go with the socket; the ventilator's
   re-send covers them (they cannot be counted here: libzmq discards them on close);
3. it works through the tasks it read within STOP_GRACE seconds and pushes their results; any left
   when the grace ends are dropped *knowingly*: ``stop_drained`` logs how many were finished and which
   were dropped, and they are re-sent by the ventilator.

A second signal exits at once (``lifecycle.install_signal_handlers``).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import zmq

from nodes.core import wire
from nodes.core.amqp import AMQP_ERRORS, unreachable
from nodes.core.lifecycle import LINGER_MS, POLL_MS, Node
from nodes.core.log import event
from nodes.pipeline import protocol
from nodes.pipeline.amqpqueue import TaskQueue

log = logging.getLogger(__name__)
#: A finished task: its batch and task number.
Done = tuple[str, int]
#: Longest a finished task's result waits to be pushed with the ones after it (across wake-ups), seconds.
FLUSH_S = 0.005


def busy_work(ms: float, beat: Callable[[], None]) -> None:
    """Spin the CPU for ``ms`` milliseconds, calling ``beat`` so /healthz sees the node alive."""
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        beat()


class Pipeworker(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Finished tasks whose results are not pushed yet, and when the first of them was finished.
        self._done: list[Done] = []
        self._since = 0.0

    def summary(self) -> str:
        c = self.stats.counters
        return f"tasks {c['received']}, results {c['sent']}, rejected {c['rejected']}"

    def serve(self) -> int:
        s = self.settings
        if s.backend == "rabbitmq":
            return self._serve_amqp()
        # dial: a task over MAX_MSG_SIZE makes libzmq drop the connection for good; the link re-dials it.
        # TCP keepalive, not ZMTP heartbeats, on the tasks: a PULL held back by its small RCVHWM stops reading,
        # so PONGs wait unread behind the tasks (a 3 s timeout dropped busy connections with tasks queued in
        # them), while the kernel answers keepalive probes whatever the PULL does (protocol.TASK_KEEPALIVE).
        tasks = self.dial(
            zmq.PULL,
            s.ventilator,
            rcvhwm=protocol.TASK_QUEUE,
            rcvbuf=protocol.TASK_QUEUE_BYTES,
            **protocol.TASK_KEEPALIVE,
        )
        # ZMTP heartbeats on the results: a sink gone without a word (cut off, restarted meanwhile) is noticed
        # and re-dialled.
        results = self.dial(zmq.PUSH, s.sink, **protocol.HEARTBEATS)
        while self.running():
            wait = POLL_MS
            if self._done:  # results in hand: wake up when the oldest is due, more tasks or not
                wait = max(0, math.ceil((self._since + FLUSH_S - time.monotonic()) * 1000))
            if tasks.poll(wait):
                self.work_through(tasks, results)
            if self._done and time.monotonic() - self._since >= FLUSH_S:
                self.flush(results)
        self.flush(results)
        self.stop_taking(tasks, results)
        return 0

    def _serve_amqp(self) -> int:
        """BACKEND=rabbitmq: consume the durable queue (nodes.pipeline.amqpqueue), PREFETCH tasks at most in
        hand, and acknowledge each task only once its result is pushed to the sink. On SIGTERM the task in
        hand is finished; the prefetched ones go back to the queue when the connection closes."""
        s = self.settings
        results = self.dial(zmq.PUSH, s.sink)
        try:
            queue = TaskQueue(s, self.name)
            queue.consume(s.prefetch, functools.partial(self._amqp_task, results))
            while self.running():
                queue.pump(POLL_MS / 1000)
            queue.close()
        except AMQP_ERRORS as exc:
            return 0 if self.stop.is_set() else unreachable(self, exc)
        return 0

    def _amqp_task(self, results: zmq.Socket, channel: Any, method: Any, _props: Any, body: bytes) -> None:
        self.stats.incr("received")
        if method.redelivered:
            self.stats.incr("redelivered")  # a lost pipeworker's task, handed here by the broker
        if self.work([body], results):
            channel.basic_ack(method.delivery_tag)
        else:
            channel.basic_nack(method.delivery_tag, requeue=True)  # no result at the sink: let another try

    def work_through(self, tasks: zmq.Socket, results: zmq.Socket) -> None:
        """Do the tasks one wake-up found (no poll a task); their results are pushed together, FLUSH_S after the first.

        Why together: a send into an idle PUSH socket wakes libzmq's I/O thread, one wake-up a result, and
        results sent back to back share one (``make bench``: pipeworker 24 -> 14 CPU us a task, the sink
        20 -> 9, as it gets them in batches too). And the results of one batch go in one ``results`` frame
        (:meth:`push_all`): one encode, one send here and one decode, one journal record at the sink for up
        to protocol.MAX_RESULTS tasks. The results in hand carry over to the next wake-up (:meth:`serve` wakes
        up for them when they are due): with tasks that arrive one a wake-up (4 KiB tasks fill the small
        socket buffer one by one) a frame still carries FLUSH_S worth of results, not one. A result waits at
        most FLUSH_S (or its own task's work) here. A stop ends the drain at once; the results in hand are
        pushed, the tasks not read stay queued for :meth:`stop_taking`.
        """
        done = self._done
        clock = time.monotonic
        for frames in self.drain(tasks):
            finished = self.do_task(frames)
            if finished is not None:
                if not done:
                    self._since = clock()
                done.append(finished)
                if clock() - self._since >= FLUSH_S:
                    self.flush(results)
                    done = self._done
            if self.stop.is_set():
                break

    def flush(self, results: zmq.Socket) -> None:
        """Push the results in hand."""
        if self._done:
            done, self._done = self._done, []
            self.push_all(results, done)

    def do_task(self, frames: list[bytes]) -> Done | None:
        """Do one task: its batch and number (None: the task was rejected, counted and logged)."""
        got = self.read_one(frames, self.settings.ventilator, protocol.TASK, protocol.task_of, "task")
        if got is None:
            return None
        batch, n, work_ms = got[1]
        if work_ms > 0:
            busy_work(work_ms, self.stats.beat)
        return batch, n

    def work(self, frames: list[bytes], results: zmq.Socket, *, stopping: bool = False) -> bool:
        """Do one task and push its result, a single ``result`` (a short grace once stopping). False: it was dropped."""
        finished = self.do_task(frames)
        if finished is None:
            return True  # a bad task is rejected (counted, logged) and done with: never redelivered
        batch, n = finished
        frame = wire.make(protocol.RESULT, self.ids(), protocol.result(batch, n, self.name), self.name)
        return self.push(results, frame, batch, [n], stopping=stopping)

    def push_all(self, results: zmq.Socket, done: list[Done]) -> None:
        """Push ``done`` as ``results`` frames: one per run of the same batch, at most MAX_RESULTS numbers each."""
        i, end = 0, len(done)
        while i < end:
            batch = done[i][0]
            j = i + 1
            limit = min(end, i + protocol.MAX_RESULTS)
            while j < limit and done[j][0] == batch:
                j += 1
            self.push_results(results, batch, [n for _, n in done[i:j]])
            i = j

    def push_results(self, results: zmq.Socket, batch: str, ns: list[int]) -> None:
        """One ``results`` frame of ``ns``; halved until it fits MAX_MSG_SIZE (a long batch id and a small limit)."""
        frame = wire.make(protocol.RESULTS, self.ids(), protocol.results(batch, ns, self.name), self.name)
        if len(frame) > self.max_size and len(ns) > 1:
            half = len(ns) // 2
            self.push_results(results, batch, ns[:half])
            self.push_results(results, batch, ns[half:])
            return
        self.push(results, frame, batch, ns, stopping=False)

    def push(self, results: zmq.Socket, frame: bytes, batch: str, ns: list[int], *, stopping: bool) -> bool:
        """Push one frame of results ``ns``; wait for room like any send, and once stopping allow a short grace."""
        s = self.settings
        sent = False if stopping else self.send_bounded(results, frame)
        if sent or self.send_bounded(results, frame, LINGER_MS / 1000, stoppable=False):
            self.stats.incr("sent", len(ns))  # results, not frames: tasks in, results out
            return True
        self.stats.incr("results_dropped", len(ns))
        event(log, "result_dropped", logging.WARNING, batch=batch, n=ns[0], count=len(ns), ns=ns[:20], sink=s.sink)
        return False

    def stop_taking(self, tasks: zmq.Socket, results: zmq.Socket) -> None:
        """Graceful stop: read what is queued here, close the task socket, finish within STOP_GRACE."""
        s = self.settings
        held: list[list[bytes]] = []
        for frames in self.drain(tasks):
            held.append(frames)
            if len(held) >= protocol.TASK_QUEUE:
                break
        self.close_socket(tasks, 0)
        event(log, "stopped_taking_tasks", held=len(held), grace_s=s.stop_grace)
        deadline = time.monotonic() + s.stop_grace
        finished = 0
        dropped: list[int | None] = []
        for frames in held:
            if time.monotonic() >= deadline:
                dropped.append(self._task_number(frames))
                continue
            self.work(frames, results, stopping=True)
            finished += 1
        self.stats.counters["finished_on_stop"] = finished
        self.stats.counters["dropped_on_stop"] = len(dropped)
        level = logging.WARNING if dropped else logging.INFO
        event(log, "stop_drained", level, finished=finished, dropped=len(dropped), dropped_tasks=dropped[:20])

    def _task_number(self, frames: list[bytes]) -> int | None:
        try:
            return protocol.task_of(wire.decode(frames[-1], self.max_size).body)[1]
        except (wire.WireError, ValueError):
            return None
