"""The sink's ledger: per batch, which task numbers came back, how often, and from whom.

A pipeline has no acknowledgements: PUSH/PULL drop the tasks queued at a worker that dies, and
a retried batch can deliver a task twice. The ledger is how the sink *shows* that: for every batch
it keeps the distinct task numbers received, the duplicates, the numbers still missing against
the announced size, and the count per worker. Plain classes, no sockets, so they are unit-tested
on their own (``tests/unit/test_ledger.py``).

The announcement (``kind "batch"``) and the results travel on different connections (ventilator
-> sink, pipeworkers -> sink), so results may arrive before the batch size is known. They are
held as *pending* and replayed when the announcement comes, so that range checks and counts are
the same whatever the arrival order.

The ledger is also what makes the pipeline reliable: the ventilator asks the sink for
:meth:`BatchLedger.missing_ranges` and re-sends those tasks, and because :meth:`BatchLedger.record`
counts a task number once however often it comes back (later copies are ``duplicates``), a batch
delivered *at least once* is counted *exactly once*. The ledger survives a sink restart through
:mod:`nodes.pipeline.journal`, which replays the same ``announce``/``record`` calls in the same order.

The bodies the pipeline roles exchange are made and parsed in :mod:`nodes.pipeline.protocol`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How many duplicate and missing examples a summary lists (the counts are always exact).
EXAMPLES = 10

# --- limits: the sink's memory is bounded whatever its peers send ----------------------------------------
#
# Anyone who can reach the sink's PULL port can send results for batch ids nobody announced. Without
# limits, 200,000 results for one never-announced batch took the sink from 30 to 95 MB, and results for
# 100 made-up batch ids evicted a real half-done batch. So every container here has a limit, every limit hit
# is counted (:attr:`Ledger.counters`, shown by the sink in /status and /metrics), and eviction goes by
# state: a batch in progress (announced, not complete) is never evicted to make room for one that is not.

#: How many batches the sink remembers. Over it, a new batch evicts the oldest batch never announced,
#: else the oldest complete one; a batch in progress only for another *announced* batch (both in progress),
#: and a result for a new, unannounced batch that would need that is dropped instead.
KEEP_BATCHES = 100
#: Batches held without an announcement (their results wait as *pending*). A ventilator announces before
#: it sends, so early results come only from a sink restarted without its journal, for the one or two
#: batches in flight; a new one beyond this evicts the oldest unannounced batch (its pending results dropped).
MAX_UNANNOUNCED = 8
#: Pending results held per unannounced batch (~200 bytes each: ~2 MB a batch, ~16 MB in all). Early results
#: are at most what the pipeworkers held in flight (TASK_QUEUE each), so more means a batch nobody
#: announced; the rest are dropped and counted, and a real batch's ventilator re-sends them as missing.
MAX_PENDING = 10_000
#: Workers counted by name per batch; further names (they come from the results) are summed under OTHER.
MAX_WORKERS = 1_000
OTHER = "(other)"

COUNTED, DUPLICATE, PENDING, OUT_OF_RANGE = "counted", "duplicate", "pending", "out_of_range"
#: A result not kept: its batch is unannounced and already holds MAX_PENDING, or there is no room for it.
DROPPED = "dropped"


# --- the ledger ------------------------------------------------------------------------------


@dataclass
class BatchLedger:
    """One batch: what came back. Only the sink's loop writes it; summaries are read-only."""

    batch: str
    size: int | None = None
    received: int = 0
    #: Distinct task numbers received; once the batch is complete, ``range(size)`` (the same answers, no memory).
    seen: set[int] | range = field(default_factory=set)
    #: The lowest task number not in ``seen`` (kept up as results come, amortised O(1)): the missing numbers are
    #: all at or above it, so listing them starts there instead of scanning every number already seen.
    low: int = 0
    duplicates: int = 0
    duplicate_examples: list[dict[str, Any]] = field(default_factory=list)
    by_worker: dict[str, int] = field(default_factory=dict)
    first_at: float | None = None
    last_at: float | None = None
    completed_at: float | None = None
    #: Results that arrived before the announcement: (n, worker, msg_id, arrival time).
    pending: list[tuple[int, str, str, float]] = field(default_factory=list)
    max_pending: int = MAX_PENDING
    #: Results dropped because ``pending`` was full (the ledger adds those of an evicted batch to its own count).
    dropped: int = 0

    @property
    def announced(self) -> bool:
        return self.size is not None

    @property
    def in_progress(self) -> bool:
        """Announced and not complete: the batch eviction protects."""
        return self.size is not None and not self.complete

    @property
    def complete(self) -> bool:
        return self.size is not None and len(self.seen) == self.size

    def announce(self, size: int, now: float | None = None) -> int:
        """Learn the size and replay pending results; returns how many fell outside ``[0, size)``."""
        if self.size is not None:
            raise ValueError(f"batch {self.batch!r} already announced with size {self.size}")
        self.size = size
        early, self.pending = self.pending, []
        out_of_range = sum(self.record(*item) == OUT_OF_RANGE for item in early)
        self._settle(now if now is not None else time.time())
        return out_of_range

    def record(self, n: int, worker: str, msg_id: str, now: float | None = None) -> str:
        """Count one result: COUNTED, DUPLICATE, PENDING (size unknown), DROPPED (pending full) or OUT_OF_RANGE."""
        now = time.time() if now is None else now
        if self.size is None:
            if len(self.pending) >= self.max_pending:
                self.dropped += 1
                return DROPPED
            self.pending.append((n, worker, msg_id, now))
            return PENDING
        if not 0 <= n < self.size:
            return OUT_OF_RANGE
        self.received += 1
        if worker not in self.by_worker and len(self.by_worker) >= MAX_WORKERS:
            worker = OTHER
        self.by_worker[worker] = self.by_worker.get(worker, 0) + 1
        self.first_at = now if self.first_at is None else min(self.first_at, now)
        self.last_at = now if self.last_at is None else max(self.last_at, now)
        if n in self.seen:
            self.duplicates += 1
            if len(self.duplicate_examples) < EXAMPLES:
                self.duplicate_examples.append({"n": n, "id": msg_id, "worker": worker})
            return DUPLICATE
        seen = self.seen
        seen.add(n)
        if n == self.low:
            low = n + 1
            while low in seen:
                low += 1
            self.low = low
        self._settle(now)
        return COUNTED

    def missing(self, limit: int = EXAMPLES) -> tuple[int | None, list[int]]:
        """How many task numbers have not come back, and the first ``limit`` of them.

        Scans from :attr:`low`, so it costs the numbers seen above the lowest missing one, not every
        number seen (it runs for every /status and every ledger query), and a huge size costs nothing.
        """
        if self.size is None:
            return None, []
        seen, size = self.seen, self.size
        left = size - len(seen)
        examples: list[int] = []
        n = self.low
        while len(examples) < min(limit, left) and n < size:
            if n not in seen:
                examples.append(n)
            n += 1
        return left, examples

    def missing_ranges(self, limit: int) -> list[list[int]]:
        """Up to ``limit`` missing task numbers as half-open ranges ``[a, b)``, lowest first.

        Costs a set lookup a number from :attr:`low` on, so the sink computes it only when a ventilator
        asks for a list (before a re-send round), not for every progress poll.
        """
        if self.size is None or limit <= 0:
            return []
        ranges: list[list[int]] = []
        left = min(limit, self.size - len(self.seen))
        n, seen, size = self.low, self.seen, self.size
        while left > 0 and n < size:
            if n in seen:
                n += 1
                continue
            start = n
            while n < size and left > 0 and n not in seen:
                n += 1
                left -= 1
            ranges.append([start, n])
        return ranges

    def summary(self) -> dict[str, Any]:
        missing, missing_examples = self.missing()
        elapsed = None if self.first_at is None or self.last_at is None else round(self.last_at - self.first_at, 6)
        return {
            "size": self.size,
            "received": self.received,
            "distinct": len(self.seen),
            "duplicates": self.duplicates,
            "duplicate_examples": list(self.duplicate_examples),
            "missing": missing,
            "missing_examples": missing_examples,
            "pending": len(self.pending),
            "dropped": self.dropped,
            "by_worker": dict(self.by_worker),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "elapsed_s": elapsed,
            "complete": self.complete,
        }

    def _settle(self, now: float) -> None:
        if self.completed_at is None and self.complete:
            self.completed_at = now
            self.seen = range(self.size or 0)  # every number in [0, size): answers the same, holds nothing
            self.low = self.size or 0


class Ledger:
    """Every batch the sink has heard of, oldest first, within the limits above.

    :meth:`get` is for an announced batch (an announcement, a ledger query): it always gets a place.
    :meth:`for_result` is for a result: a new batch it creates is unannounced, so it may not evict a
    batch in progress; when nothing else can go it returns None and the result is dropped (counted).
    """

    def __init__(
        self, keep: int = KEEP_BATCHES, max_unannounced: int = MAX_UNANNOUNCED, max_pending: int = MAX_PENDING
    ) -> None:
        self.keep = keep
        self.max_unannounced = max_unannounced
        self.max_pending = max_pending
        self.batches: dict[str, BatchLedger] = {}
        #: Every limit hit: batches evicted by state, results dropped (pending full, their batch evicted, or
        #: no room for a new unannounced batch), new unannounced batches refused.
        self.counters = {
            "evicted_unannounced": 0,
            "evicted_complete": 0,
            "evicted_in_progress": 0,
            "results_dropped": 0,
            "batches_refused": 0,
        }
        #: Batches dropped since the last :meth:`take_evicted` (the sink deletes their journals).
        self._evicted_names: list[str] = []

    @property
    def evicted(self) -> int:
        c = self.counters
        return c["evicted_unannounced"] + c["evicted_complete"] + c["evicted_in_progress"]

    @property
    def limits(self) -> dict[str, int]:
        return {"keep_batches": self.keep, "max_unannounced": self.max_unannounced, "max_pending": self.max_pending}

    def get(self, batch: str) -> BatchLedger:
        """The ledger of an announced batch, created if new (evicting one in progress only as a last resort)."""
        ledger = self.batches.get(batch)
        if ledger is None:
            if len(self.batches) >= self.keep:
                victim = self._oldest(lambda b: not b.announced) or self._oldest(lambda b: b.complete)
                self._evict(victim or next(iter(self.batches)))
            ledger = self._create(batch)
        return ledger

    def for_result(self, batch: str) -> BatchLedger | None:
        """The batch's ledger for a result; None when a new batch has no room without evicting one in progress."""
        ledger = self.batches.get(batch)
        if ledger is not None:
            return ledger
        unannounced = self._oldest(lambda b: not b.announced)
        if unannounced is not None and sum(not b.announced for b in self.batches.values()) >= self.max_unannounced:
            self._evict(unannounced)
        if len(self.batches) >= self.keep:
            victim = self._oldest(lambda b: not b.announced) or self._oldest(lambda b: b.complete)
            if victim is None:  # every batch kept is in progress: the newcomer (not announced) gets no room
                self.counters["batches_refused"] += 1
                self.counters["results_dropped"] += 1
                return None
            self._evict(victim)
        return self._create(batch)

    def record(
        self, batch: str, n: int, worker: str, msg_id: str, now: float | None = None
    ) -> tuple[BatchLedger | None, str]:
        """:meth:`for_result` then :meth:`BatchLedger.record`, counting what is dropped."""
        ledger = self.for_result(batch)
        if ledger is None:
            return None, DROPPED
        verdict = ledger.record(n, worker, msg_id, now)
        if verdict == DROPPED:
            self.counters["results_dropped"] += 1
        return ledger, verdict

    def record_many(
        self, batch: str, ns: list[int], worker: str, msg_id: str, now: float | None = None
    ) -> tuple[BatchLedger | None, list[int], list[int], int]:
        """:meth:`record` of each of ``ns`` (one ``results`` frame), with the same verdicts and counters.

        Returns the batch's ledger (None: no room, every number dropped), the numbers kept (counted, duplicate
        or pending: what the sink journals), those outside ``[0, size)``, and how many of the kept were
        duplicates; the rest were dropped (pending full), counted in ``results_dropped``.
        """
        ledger = self.for_result(batch)
        if ledger is None:  # as many refusals as single results would have met (nothing changes between them)
            self.counters["batches_refused"] += len(ns) - 1
            self.counters["results_dropped"] += len(ns) - 1
            return None, [], [], 0
        record = ledger.record
        kept: list[int] = []
        out: list[int] = []
        duplicates = 0
        for n in ns:
            verdict = record(n, worker, msg_id, now)
            if verdict in (COUNTED, PENDING):
                kept.append(n)
            elif verdict == DUPLICATE:
                kept.append(n)
                duplicates += 1
            elif verdict == OUT_OF_RANGE:
                out.append(n)
            else:
                self.counters["results_dropped"] += 1
        return ledger, kept, out, duplicates

    def take_evicted(self) -> list[str]:
        """Names of the batches evicted since the last call."""
        names, self._evicted_names = self._evicted_names, []
        return names

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Summaries of every batch; safe to call from another thread (copies, no iteration of live sets)."""
        return {batch: ledger.summary() for batch, ledger in list(self.batches.items())}

    def _create(self, batch: str) -> BatchLedger:
        ledger = self.batches[batch] = BatchLedger(batch, max_pending=self.max_pending)
        return ledger

    def _oldest(self, pred: Callable[[BatchLedger], bool]) -> str | None:
        return next((name for name, b in self.batches.items() if pred(b)), None)

    def _evict(self, name: str) -> None:
        b = self.batches.pop(name)
        state = "unannounced" if not b.announced else "complete" if b.complete else "in_progress"
        self.counters[f"evicted_{state}"] += 1
        self.counters["results_dropped"] += len(b.pending)
        self._evicted_names.append(name)
