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
from dataclasses import dataclass, field
from typing import Any

#: How many duplicate and missing examples a summary lists (the counts are always exact).
EXAMPLES = 10
#: How many batches the sink remembers; the oldest is dropped first.
KEEP_BATCHES = 100

COUNTED, DUPLICATE, PENDING, OUT_OF_RANGE = "counted", "duplicate", "pending", "out_of_range"


# --- the ledger ------------------------------------------------------------------------------


@dataclass
class BatchLedger:
    """One batch: what came back. Only the sink's loop writes it; summaries are read-only."""

    batch: str
    size: int | None = None
    received: int = 0
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    duplicate_examples: list[dict[str, Any]] = field(default_factory=list)
    by_worker: dict[str, int] = field(default_factory=dict)
    first_at: float | None = None
    last_at: float | None = None
    completed_at: float | None = None
    #: Results that arrived before the announcement: (n, worker, msg_id, arrival time).
    pending: list[tuple[int, str, str, float]] = field(default_factory=list)

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
        """Count one result; returns COUNTED, DUPLICATE, PENDING (size unknown) or OUT_OF_RANGE."""
        now = time.time() if now is None else now
        if self.size is None:
            self.pending.append((n, worker, msg_id, now))
            return PENDING
        if not 0 <= n < self.size:
            return OUT_OF_RANGE
        self.received += 1
        self.by_worker[worker] = self.by_worker.get(worker, 0) + 1
        self.first_at = now if self.first_at is None else min(self.first_at, now)
        self.last_at = now if self.last_at is None else max(self.last_at, now)
        if n in self.seen:
            self.duplicates += 1
            if len(self.duplicate_examples) < EXAMPLES:
                self.duplicate_examples.append({"n": n, "id": msg_id, "worker": worker})
            return DUPLICATE
        self.seen.add(n)
        self._settle(now)
        return COUNTED

    def missing(self, limit: int = EXAMPLES) -> tuple[int | None, list[int]]:
        """How many task numbers have not come back, and the first ``limit`` of them.

        Scans at most ``len(seen) + limit`` numbers, so a huge announced size costs nothing.
        """
        if self.size is None:
            return None, []
        examples: list[int] = []
        n = 0
        while len(examples) < limit and n < self.size and len(examples) < self.size - len(self.seen):
            if n not in self.seen:
                examples.append(n)
            n += 1
        return self.size - len(self.seen), examples

    def missing_ranges(self, limit: int) -> list[list[int]]:
        """Up to ``limit`` missing task numbers as half-open ranges ``[a, b)``, lowest first.

        Costs O(size) set lookups, so the sink computes it only when a ventilator asks for a list
        (before a re-send round), not for every progress poll.
        """
        if self.size is None or limit <= 0:
            return []
        ranges: list[list[int]] = []
        left = min(limit, self.size - len(self.seen))
        n, seen, size = 0, self.seen, self.size
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
            "by_worker": dict(self.by_worker),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "elapsed_s": elapsed,
            "complete": self.complete,
        }

    def _settle(self, now: float) -> None:
        if self.completed_at is None and self.complete:
            self.completed_at = now


class Ledger:
    """Every batch the sink has heard of, newest last, at most ``keep`` of them."""

    def __init__(self, keep: int = KEEP_BATCHES) -> None:
        self.keep = keep
        self.batches: dict[str, BatchLedger] = {}
        self.evicted = 0
        #: Batches dropped since the last :meth:`take_evicted` (the sink deletes their journals).
        self._evicted_names: list[str] = []

    def get(self, batch: str) -> BatchLedger:
        """The batch's ledger, created on first sight (announcement or result, whichever is first)."""
        ledger = self.batches.get(batch)
        if ledger is None:
            if len(self.batches) >= self.keep:
                oldest = next(iter(self.batches))
                del self.batches[oldest]
                self.evicted += 1
                self._evicted_names.append(oldest)
            ledger = self.batches[batch] = BatchLedger(batch)
        return ledger

    def take_evicted(self) -> list[str]:
        """Names of the batches evicted since the last call."""
        names, self._evicted_names = self._evicted_names, []
        return names

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Summaries of every batch; safe to call from another thread (copies, no iteration of live sets)."""
        return {batch: ledger.summary() for batch, ledger in list(self.batches.items())}
