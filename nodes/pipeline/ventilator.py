"""Ventilator: fans a batch of tasks out to pipeworkers (zguide "Divide and Conquer").

Binds    PUSH at VENT_BIND       pipeworkers connect here: the stable side binds, so workers scale freely.
Connects PUSH to SINK_ENDPOINT   to announce the batch (id and size) before the first task.

Order of a run, with no sleep anywhere:

1. wait (at most WAIT_TIMEOUT) until MIN_PIPEWORKERS pipeworkers are connected, counted with a
   socket monitor (:mod:`nodes.peers`: handshakes done, minus disconnects). Without this, PUSH
   would hand every task to the first worker to connect while the others are still starting;
2. announce the batch to the sink (``IMMEDIATE`` makes the send wait for a real connection, so the
   announcement is not parked in the queue of a sink that never came up);
3. send TASKS tasks paced by RATE. Per-worker queues are small (see :mod:`nodes.pipeworker`), so PUSH
   skips busy workers and a stopping worker takes few tasks with it. A send waits for room in bounded
   steps; if no worker takes a task for WAIT_TIMEOUT the batch is abandoned with exit code 1.

``inproc://`` peers produce no monitor events in libzmq, so there the wait can only tell that *some*
pipeworker is attached (the socket is writable); a warning says so.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from nodes.core import wire
from nodes.core.lifecycle import Node, Pacer
from nodes.core.log import event
from nodes.core.peers import PeerCounter
from nodes.pipeline import protocol

log = logging.getLogger(__name__)

#: Refresh the connected-pipeworker count shown on /status once per this many tasks, not per task.
PEER_POLL_EVERY = 256

EXIT_GAVE_UP = 1


class Ventilator(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        s = self.settings
        stamp = time.strftime("%Y%m%dT%H%M%S") + f".{int(time.time() * 1000) % 1000:03d}"
        self.batch: str = s.batch_id or f"{self.name}-{stamp}"
        self.sent = 0
        self.peers: PeerCounter | None = None

    def extra_status(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "tasks": self.settings.tasks,
            "sent": self.sent,
        }

    def peer_count(self) -> int | None:
        return self.peers.count if self.peers else None

    def summary(self) -> str:
        return f"batch {self.batch}: sent {self.sent}/{self.settings.tasks} to {self.peer_count()} pipeworkers"

    def serve(self) -> int:
        s = self.settings
        # The last tasks sent may wait for room at a busy worker: give them up to WAIT_TIMEOUT after
        # the last send to get there (the default 1 s linger would drop them when tasks are slow).
        linger = int(s.wait_timeout * 1000)
        tasks = self.socket(zmq.PUSH, linger=linger, sndhwm=protocol.TASK_QUEUE, sndbuf=protocol.TASK_QUEUE_BYTES)
        if not s.bind.startswith("inproc://"):
            self.peers = PeerCounter(tasks)
        try:
            self.bind(tasks, s.bind)
            sink = self.socket(zmq.PUSH, connect=s.sink, immediate=1, linger=linger)
            if not self.wait_for_pipeworkers(tasks):
                return self.give_up(f"{s.min_pipeworkers} pipeworkers connected to {s.bind}")
            announce = wire.make(protocol.BATCH, self.ids(), protocol.announce(self.batch, s.tasks), self.name)
            if not self.send_bounded(sink, announce, s.wait_timeout):
                return self.give_up(f"the sink at {s.sink} to accept the batch announcement")
            self.stats.incr("announced")
            event(log, "batch_announced", batch=self.batch, size=s.tasks, sink=s.sink)
            return self.send_tasks(tasks)
        finally:
            if self.peers:
                self.peers.poll()
                self.peers.close()

    def wait_for_pipeworkers(self, tasks: zmq.Socket) -> bool:
        s = self.settings
        if s.min_pipeworkers == 0:
            return True
        if self.peers is None:
            event(log, "inproc_peer_count_unknown", logging.WARNING, hint="waiting for at least one pipeworker")
            return self.wait_for(f"a pipeworker on {s.bind}", lambda: tasks.poll(0, zmq.POLLOUT), s.wait_timeout)
        peers = self.peers
        what = f"{s.min_pipeworkers} pipeworkers connected to {s.bind}"
        return self.wait_for(what, lambda: peers.poll() >= s.min_pipeworkers, s.wait_timeout)

    def send_tasks(self, tasks: zmq.Socket) -> int:
        s = self.settings
        pacer = Pacer(s.rate, self)
        started = time.monotonic()
        for n in range(s.tasks):
            if not pacer.wait():
                break
            frame = wire.make(protocol.TASK, self.ids(), protocol.task(self.batch, n, s.task_ms), self.name)
            if not self.send_bounded(tasks, frame, s.wait_timeout):
                return self.give_up(f"a pipeworker to take task {n} of batch {self.batch}")
            self.sent += 1
            self.stats.incr("sent")
            if self.peers and n % PEER_POLL_EVERY == 0:
                self.peers.poll()
        done = self.sent == s.tasks
        event(
            log,
            "batch_sent" if done else "batch_interrupted",
            logging.INFO if done else logging.WARNING,
            batch=self.batch,
            sent=self.sent,
            tasks=s.tasks,
            elapsed_s=round(time.monotonic() - started, 3),
        )
        return 0

    def give_up(self, what: str) -> int:
        """Exit code after a wait that failed: 0 if it was a stop request, else an error naming ``what``."""
        if self.stop.is_set():
            event(
                log, "batch_interrupted", logging.WARNING, batch=self.batch, sent=self.sent, tasks=self.settings.tasks
            )
            return 0
        event(log, "gave_up", logging.ERROR, waited_for=what, timeout_s=self.settings.wait_timeout, batch=self.batch)
        return EXIT_GAVE_UP
