"""Pipeworker: pulls tasks, does their work, pushes results (zguide "Divide and Conquer").

Connects PULL to VENT_ENDPOINT   tasks from the ventilator (which binds: workers come and go).
Connects PUSH to SINK_ENDPOINT   one result per task, body {"batch", "n", "worker"}.

The work is real CPU: ``work_ms`` of busy spinning on ``time.perf_counter``, not a sleep, so two
pipeworker processes on two cores really run in parallel and a benchmark measures the pipeline.
(As threads of one process they would share the GIL and not.)

The task queue at each worker is kept small (``protocol.TASK_QUEUE`` messages, ``protocol.TASK_QUEUE_BYTES`` of
kernel buffer; the ventilator uses the same limits on its side). PUSH/PULL has no acknowledgement:
tasks queued at a worker that stops are lost, and the sink's ledger shows them as missing. RCVHWM
alone does not bound that on tcp/ipc: with default kernel buffers one connection holds some 25,000
small tasks (measured), so a worker that stops mid-batch would take half the batch with it. Small
HWMs *and* small socket buffers cap it at about a hundred tasks a worker, and make PUSH's round-robin
skip full workers, so load follows each worker's speed. The price: more system calls per task and a
worker may wait briefly for its next task; measured raw PUSH/PULL still moves ~100k tasks/s, far more
than a Python node processes.

On SIGTERM the worker finishes the task in hand and pushes its result (with a short grace if the
sink is slow to take it), then exits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import zmq

from nodes.core import wire
from nodes.core.lifecycle import LINGER_MS, POLL_MS, Node
from nodes.core.log import event
from nodes.pipeline import protocol

log = logging.getLogger(__name__)


def busy_work(ms: float, beat: Callable[[], None]) -> None:
    """Spin the CPU for ``ms`` milliseconds, calling ``beat`` so /healthz sees the node alive."""
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        beat()


class Pipeworker(Node):
    def summary(self) -> str:
        c = self.stats.counters
        return f"tasks {c['received']}, results {c['sent']}, rejected {c['rejected']}"

    def serve(self) -> int:
        s = self.settings
        tasks = self.socket(
            zmq.PULL, connect=s.ventilator, rcvhwm=protocol.TASK_QUEUE, rcvbuf=protocol.TASK_QUEUE_BYTES
        )
        results = self.socket(zmq.PUSH, connect=s.sink)
        while self.running():
            if not tasks.poll(POLL_MS):
                continue
            frames = tasks.recv_multipart()
            self.stats.incr("received")
            env = self.decode_one(frames, s.ventilator, (protocol.TASK,))
            if env is None:
                continue
            try:
                batch, n, work_ms = protocol.task_of(env.body)
            except ValueError as exc:
                self.reject(f"bad task {env.id}: {exc}", s.ventilator)
                continue
            busy_work(work_ms, self.stats.beat)
            frame = wire.make(protocol.RESULT, self.ids(), protocol.result(batch, n, self.name), self.name)
            # Wait for room like any send; once stopping, allow a short grace for this last result.
            if self.send_bounded(results, frame) or self.send_bounded(
                results, frame, LINGER_MS / 1000, stoppable=False
            ):
                self.stats.incr("sent")
            else:
                self.stats.incr("results_dropped")
                event(log, "result_dropped", logging.WARNING, batch=batch, n=n, sink=s.sink)
        return 0
