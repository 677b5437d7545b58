"""Sink: collects the pipeline's results into a ledger per batch (zguide "Divide and Conquer").

Binds PULL at SINK_BIND   pipeworkers push results here and the ventilator announces each batch;
                          both connect, so the sink is the stable end of the fan-in.

Per batch the ledger (:mod:`nodes.ledger`) shows received, distinct, duplicates, missing (against
the announced size), per-worker counts and timing; ``/status`` serves it under ``batches`` and one
``batch_complete`` event is logged when the last missing task arrives. The announcement may arrive
after the first results (it travels on another connection): they are held until it does.

Anything else is rejected and counted, and the sink keeps serving: frames that are not one
envelope, kinds other than ``batch``/``result``, bodies with missing or mistyped fields, and result
numbers outside ``[0, size)`` once the size is known.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from nodes.core import wire
from nodes.core.lifecycle import POLL_MS, Node
from nodes.core.log import event
from nodes.pipeline import protocol
from nodes.pipeline.ledger import DUPLICATE, OUT_OF_RANGE, BatchLedger, Ledger

log = logging.getLogger(__name__)


class Sink(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = Ledger()
        self.source = f"PULL {self.settings.bind}"

    def extra_status(self) -> dict[str, Any]:
        return {"batches": self.ledger.summaries()}

    def summary(self) -> str:
        batches = self.ledger.summaries()
        if not batches:
            return "no batch yet"
        batch, b = list(batches.items())[-1]
        size = "?" if b["size"] is None else b["size"]
        state = f"missing {b['missing']}" if b["complete"] or b["missing"] else f"pending {b['pending']}"
        return f"batch {batch}: {b['distinct']}/{size} distinct, {state}, duplicates {b['duplicates']}"

    def serve(self) -> int:
        results = self.socket(zmq.PULL, bind=self.settings.bind)
        while self.running():
            if results.poll(POLL_MS):
                for frames in self.drain(results):
                    self.handle(frames)
        return 0

    def handle(self, frames: list[bytes]) -> None:
        env = self.decode_one(frames, self.source, (protocol.RESULT, protocol.BATCH))
        if env is None:
            return
        if env.kind == protocol.RESULT:
            self.on_result(env)
        else:
            self.on_announcement(env)

    def on_result(self, env: wire.Envelope) -> None:
        try:
            batch, n, worker = protocol.result_of(env.body)
        except ValueError as exc:
            self.reject(f"bad result {env.id}: {exc}", self.source)
            return
        ledger = self.batch(batch)
        was_complete = ledger.complete
        verdict = ledger.record(n, worker, env.id)
        if verdict == OUT_OF_RANGE:
            self.reject(f"result {env.id}: n={n} outside [0, {ledger.size}) of batch {batch!r}", self.source)
            return
        self.stats.incr("results")
        self.stats.incr_label("results_by_worker", worker)
        if verdict == DUPLICATE:
            self.stats.incr("duplicates")
        self.settled(ledger, was_complete)

    def on_announcement(self, env: wire.Envelope) -> None:
        try:
            batch, size = protocol.announcement(env.body)
        except ValueError as exc:
            self.reject(f"bad batch announcement {env.id}: {exc}", self.source)
            return
        ledger = self.batch(batch)
        if ledger.size is not None:
            if ledger.size != size:
                self.reject(f"batch {batch!r} announced again with size {size}, was {ledger.size}", self.source)
            else:
                self.stats.incr("announcements_repeated")
            return
        self.stats.incr("announcements")
        out_of_range = ledger.announce(size)
        event(log, "batch_announced", batch=batch, size=size, early_results=ledger.received + out_of_range)
        for _ in range(out_of_range):
            self.reject(f"early result outside [0, {size}) of batch {batch!r}", self.source)
        self.settled(ledger, False)

    def batch(self, batch: str) -> BatchLedger:
        ledger = self.ledger.get(batch)
        self.stats.counters["batches_evicted"] = self.ledger.evicted
        return ledger

    def settled(self, ledger: BatchLedger, was_complete: bool) -> None:
        """Log ``batch_complete`` once: when this message made the batch complete."""
        if ledger.complete and not was_complete:
            s = ledger.summary()
            fields = ("size", "received", "duplicates", "by_worker", "elapsed_s")
            event(log, "batch_complete", batch=ledger.batch, **{k: s[k] for k in fields})
