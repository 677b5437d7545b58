"""Sink: collects the pipeline's results into a ledger per batch, and tells ventilators what is missing.

Binds PULL   at SINK_BIND           pipeworkers push results here (they connect: the sink is the stable
                                    end of the fan-in); a plain ``batch`` announcement is accepted too.
Binds ROUTER at SINK_CONTROL_BIND   the ledger endpoint (default: SINK_BIND's port + 2): a ventilator
                                    (DEALER, or any REQ) sends ``batch`` queries {"batch", "size", "list"};
                                    every query is also the announcement, and is answered with the
                                    batch's progress and, if asked, the missing task numbers
                                    (:mod:`nodes.pipeline.protocol`).

Per batch the ledger (:mod:`nodes.pipeline.ledger`) shows received, distinct, duplicates, missing
(against the announced size), per-worker counts and timing; ``/status`` serves it under ``batches``
and one ``batch_complete`` event is logged when the last missing task arrives. A task re-sent by the
ventilator may come back twice: it is counted once (``distinct``) and the copy under ``duplicates``.

The ledger survives a restart: every announcement and result is appended to a journal per batch under
SINK_STATE_DIR (:mod:`nodes.pipeline.journal`), handed to the OS once per loop pass and fsync'd every
SINK_FSYNC_S and at batch completion; at start the journal is replayed before the sockets are bound.
The loop flushes the journal *before* it answers queries, so the sink never reports a task done that
a SIGKILL right after could forget, and fsyncs a completed batch before it says ``complete``.

Memory is bounded whatever the peers send (the limits and why: :mod:`nodes.pipeline.ledger`): at most
KEEP_BATCHES batches, MAX_UNANNOUNCED of them never announced, MAX_PENDING early results each. A result
for a new, unannounced batch never evicts a batch in progress (announced, not complete): the oldest
unannounced or complete batch goes, or the result is dropped. Every limit hit is a counter in /status and
/metrics (``batches_evicted_unannounced|_complete|_in_progress``, ``results_dropped``,
``batches_refused``), and ``ledger_limits`` shows the limits. A real batch loses nothing by it: the
ventilator re-sends whatever was dropped, as missing.

Anything else is rejected and counted, and the sink keeps serving: frames that are not one
envelope, kinds other than ``batch``/``result``/``results``, bodies with missing or mistyped fields, and result
numbers outside ``[0, size)`` once the size is known (in a ``results`` frame each such number is one
reject, and the frame's other numbers are counted).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from nodes.core import config, wire
from nodes.core.lifecycle import POLL_MS, Node, send_nowait
from nodes.core.log import event, worth_logging
from nodes.pipeline import protocol
from nodes.pipeline.journal import Journal
from nodes.pipeline.ledger import MAX_WORKERS, OTHER, BatchLedger, Ledger

log = logging.getLogger(__name__)

STATE_OFF = "off"
#: What the results endpoint (PULL) takes.
PULL_KINDS = frozenset({protocol.RESULT, protocol.RESULTS, protocol.BATCH})


def state_dir_of(settings: Any) -> Path | None:
    """Where this sink keeps its journal (None: SINK_STATE_DIR=off, memory only)."""
    value = settings.state_dir.strip()
    if value.lower() == STATE_OFF:
        return None
    if value:
        return Path(value)
    return Path(tempfile.gettempdir()) / "mpc-sink-state" / settings.name


class Sink(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = Ledger()
        self._in_progress_evicted = 0
        for name in ("batches_evicted", "batches_unannounced"):
            self.stats.counters.setdefault(name, 0)  # /status and /metrics show the zeros from the start
        self.ledger_changed()
        self.source = f"PULL {self.settings.bind}"
        try:
            self.control_bind = protocol.ledger_endpoint(self.settings.bind, self.settings.control_bind)
        except ValueError as exc:
            raise config.ConfigError(f"SINK_CONTROL_BIND: {exc}") from None
        self.control_source = f"ROUTER {self.control_bind}"
        self.state_dir = state_dir_of(self.settings)
        self.journal: Journal | None = None
        self.replayed: dict[str, Any] | None = None

    def extra_status(self) -> dict[str, Any]:
        journal = None
        if self.journal is not None:
            journal = {"dir": str(self.state_dir), "replayed": self.replayed, **self.journal.counters}
        return {
            "batches": self.ledger.summaries(),
            "ledger_endpoint": self.control_bind,
            "journal": journal,
            "ledger_limits": self.ledger.limits,
        }

    def summary(self) -> str:
        batches = self.ledger.summaries()
        if not batches:
            return "no batch yet"
        batch, b = list(batches.items())[-1]
        size = "?" if b["size"] is None else b["size"]
        state = f"missing {b['missing']}" if b["complete"] or b["missing"] else f"pending {b['pending']}"
        return f"batch {batch}: {b['distinct']}/{size} distinct, {state}, duplicates {b['duplicates']}"

    # --- the loop -------------------------------------------------------------------------------

    def serve(self) -> int:
        self.open_journal()
        try:
            results = self.socket(zmq.PULL, bind=self.settings.bind)
            control = self.socket(zmq.ROUTER, bind=self.control_bind)
            poller = zmq.Poller()
            poller.register(results, zmq.POLLIN)
            poller.register(control, zmq.POLLIN)
            while self.running():
                ready = dict(poller.poll(POLL_MS))
                if results in ready:
                    for frames in self.drain(results):
                        self.handle(frames)
                if self.journal is not None:
                    self.journal.flush()  # before any answer: what is reported done is on disk
                if control in ready:
                    for frames in self.drain(control):
                        self.on_query(control, frames)
            return 0
        finally:
            if self.journal is not None:
                self.journal.close()

    def open_journal(self) -> None:
        if self.state_dir is None:
            event(log, "journal_off", logging.WARNING, hint="SINK_STATE_DIR=off: a restart loses the ledger")
            return
        try:
            self.journal = Journal(self.state_dir, self.settings.fsync_every).open()
        except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL in the path
            raise config.ConfigError(
                f"SINK_STATE_DIR={str(self.state_dir)!r} cannot be used: {exc} (a writable directory, or off)"
            ) from None
        report = self.journal.replay(self.ledger)
        self.replayed = report.as_dict()
        self.ledger_changed()
        event(log, "journal_replayed", dir=str(self.state_dir), **self.replayed)

    # --- results and plain announcements (PULL) ------------------------------------------------------

    def handle(self, frames: list[bytes]) -> None:
        env = self.decode_one(frames, self.source, PULL_KINDS)
        if env is None:
            return
        kind = env.kind
        try:
            if kind == protocol.RESULTS:
                self.on_results(env.id, *protocol.results_of(env.body))
            elif kind == protocol.RESULT:
                batch, n, worker = protocol.result_of(env.body)
                self.on_results(env.id, batch, [n], worker)  # one result counts as a results frame of one
            else:
                self.on_announcement(env)
        except ValueError as exc:  # raised by the parsers only: the handlers count, they do not raise
            self.reject(f"bad {kind} {env.id}: {exc}", self.source)

    def on_results(self, msg_id: str, batch: str, ns: list[int], worker: str) -> None:
        """Count the results of one ``results`` frame (or one ``result``): each number as a single result of it.

        A number outside ``[0, size)`` is rejected on its own (one counted reject each); the others still count.
        """
        before = self.ledger.batches.get(batch)
        known = before is not None
        was_complete = known and before.complete
        now = time.time()
        ledger, kept, out, duplicates = self.ledger.record_many(batch, ns, worker, msg_id, now)
        dropped = len(ns) - len(kept) - len(out)
        if not known or dropped:  # only then can a limit counter have moved
            self.ledger_changed()
        if dropped:
            self.dropped(batch, "no room: every batch kept is in progress" if ledger is None else "pending full")
        if ledger is None:
            return
        if not known and (kept or out):
            self.stats.incr("batches_unannounced")
        for n in out:
            self.reject(f"result {msg_id}: n={n} outside [0, {ledger.size}) of batch {batch!r}", self.source)
        if kept:
            if self.journal is not None:
                self.journal.results(batch, kept, worker, msg_id, now)
            self.counted(worker, len(kept), duplicates)
        self.settled(ledger, was_complete)

    def counted(self, worker: str, k: int, duplicates: int) -> None:
        """``results``, ``duplicates`` and ``results_by_worker`` (at most MAX_WORKERS names) for ``k`` results."""
        stats = self.stats
        counters = stats.counters
        counters["results"] = counters.get("results", 0) + k
        by_worker = stats.labelled.get("results_by_worker")
        if by_worker is None:
            by_worker = stats.labelled["results_by_worker"] = {}
        if worker not in by_worker and len(by_worker) >= MAX_WORKERS:
            worker = OTHER
        by_worker[worker] = by_worker.get(worker, 0) + k
        if duplicates:
            counters["duplicates"] = counters.get("duplicates", 0) + duplicates

    def on_announcement(self, env: wire.Envelope) -> None:
        try:
            batch, size = protocol.announcement(env.body)
        except ValueError as exc:
            self.reject(f"bad batch announcement {env.id}: {exc}", self.source)
            return
        self.announce(batch, size, env.id, self.source)

    def announce(self, batch: str, size: int, msg_id: str, source: str) -> tuple[BatchLedger, str | None]:
        """Learn a batch's size (first announcement) or check it (later ones); returns the ledger and any conflict."""
        ledger = self.batch(batch)
        if ledger.size is not None:
            if ledger.size != size:
                error = f"batch {batch!r} announced again with size {size}, was {ledger.size}"
                self.reject(error, source)
                return ledger, error
            self.stats.incr("announcements_repeated")
            return ledger, None
        self.stats.incr("announcements")
        now = time.time()
        out_of_range = ledger.announce(size, now)
        if self.journal is not None:
            self.journal.announced(batch, size, now)
        event(log, "batch_announced", batch=batch, size=size, early_results=ledger.received + out_of_range, via=source)
        for _ in range(out_of_range):
            self.reject(f"early result outside [0, {size}) of batch {batch!r}", source)
        self.settled(ledger, False)
        return ledger, None

    # --- the ledger endpoint (ROUTER) ----------------------------------------------------------------

    def on_query(self, control: zmq.Socket, frames: list[bytes]) -> None:
        """Answer one ``batch`` query: ``[peer, frame]`` from a DEALER or ``[peer, b"", frame]`` from a REQ."""
        if len(frames) == 3 and frames[1] == b"":
            head, body = frames[:2], frames[2:]
        elif len(frames) == 2:
            head, body = frames[:1], frames[1:]
        else:
            self.reject(f"ledger query of {len(frames)} frames (want [peer, query] or [peer, '', query])", "ROUTER")
            return
        got = self.read_one(body, self.control_source, protocol.BATCH, protocol.query_of, "ledger query")
        if got is None:
            return
        env, (batch, size, list_missing) = got
        self.stats.incr("queries")
        ledger, error = self.announce(batch, size, env.id, self.control_source)
        if self.journal is not None:
            if ledger.complete:
                self.journal.sync(batch)  # "complete" is said only once it is fsync'd
            else:
                self.journal.flush()
        ranges = ledger.missing_ranges(list_missing)
        reply = protocol.progress(ledger.summary(), batch, ranges, env.id, error)
        try:
            send_nowait(control, [*head, wire.make(protocol.BATCH, self.ids(), reply, self.name)])
            self.stats.incr("sent")
        except zmq.Again:  # the asker's queue is full or it is gone: it asks again
            self.stats.incr("answers_dropped")

    # --- helpers -----------------------------------------------------------------------------------

    def batch(self, batch: str) -> BatchLedger:
        """The ledger of an announced batch (always given a place; see :class:`Ledger`)."""
        ledger = self.ledger.get(batch)
        self.ledger_changed()
        return ledger

    def ledger_changed(self) -> None:
        """Mirror the ledger's limit counters into the node's counters; delete the journals of evicted batches."""
        evicted = self.ledger.take_evicted()
        counters = self.stats.counters
        counters["batches_evicted"] = self.ledger.evicted
        for name, value in self.ledger.counters.items():
            counters[name if name.startswith(("results", "batches")) else f"batches_{name}"] = value
        if evicted:
            in_progress = self.ledger.counters["evicted_in_progress"]
            level = logging.WARNING if in_progress > self._in_progress_evicted else logging.INFO
            self._in_progress_evicted = in_progress
            if worth_logging(counters["batches_evicted"]) or level == logging.WARNING:
                event(log, "batches_evicted", level, batches=evicted[:3], total=counters["batches_evicted"])
            if self.journal is not None:
                for gone in evicted:
                    self.journal.forget(gone)

    def dropped(self, batch: str, why: str) -> None:
        """A result the ledger's limits kept out (counted in ``results_dropped``; logged sparingly)."""
        if worth_logging(self.ledger.counters["results_dropped"]):
            event(
                log,
                "result_dropped",
                logging.WARNING,
                batch=batch,
                why=why,
                total=self.ledger.counters["results_dropped"],
                limits=self.ledger.limits,
            )

    def settled(self, ledger: BatchLedger, was_complete: bool) -> None:
        """Log ``batch_complete`` once: when this message made the batch complete (and fsync its journal)."""
        if ledger.complete and not was_complete:
            if self.journal is not None:
                self.journal.sync(ledger.batch)
            s = ledger.summary()
            fields = ("size", "received", "duplicates", "by_worker", "elapsed_s")
            event(log, "batch_complete", batch=ledger.batch, **{k: s[k] for k in fields})
