"""The lru broker's queue of ready workers, with expiry (zguide ppqueue's ``WorkerQueue``).

Why a class of its own: the Paranoid Pirate broker's correctness rests on three small rules
that are easy to get subtly wrong inside a socket loop, so they live here, without sockets,
with an injectable clock, and are unit-tested:

1. A request goes only to a worker that said it can take one (READY, or its last reply), and
   to the one that has waited longest (least recently used), which spreads load evenly.
2. A worker that has not been heard from for ``ttl`` seconds (HEARTBEAT_IVL x HEARTBEAT_LIVENESS)
   is forgotten, so requests stop going to a dead or frozen peer.
3. A heartbeat proves a worker alive but does not make a busy worker ready: unlike zguide's
   ppqueue, a heartbeat that crosses a request in flight must not earn that worker a second one.
   A heartbeat from a worker the broker does not know (e.g. after a broker restart) makes it ready.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class WorkerQueue:
    """Ready workers in least-recently-used order, plus the busy ones, each with an expiry time."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._idle: OrderedDict[bytes, float] = OrderedDict()  # identity -> expiry; front = waited longest
        self._busy: dict[bytes, float] = {}  # identity -> expiry; holds a request, owes a reply

    def __len__(self) -> int:
        """Number of workers ready for a request."""
        return len(self._idle)

    def __contains__(self, worker: bytes) -> bool:
        return worker in self._idle or worker in self._busy

    @property
    def busy(self) -> int:
        return len(self._busy)

    def ready(self, worker: bytes) -> None:
        """``worker`` can take a request (it sent READY or a reply): queue it last, with a fresh expiry."""
        self._busy.pop(worker, None)
        self._idle.pop(worker, None)
        self._idle[worker] = self.clock() + self.ttl

    def alive(self, worker: bytes) -> None:
        """A heartbeat from ``worker``: refresh its expiry without changing its place or state."""
        expiry = self.clock() + self.ttl
        if worker in self._busy:
            self._busy[worker] = expiry
        elif worker in self._idle:
            self._idle[worker] = expiry
        else:
            self._idle[worker] = expiry

    def next(self) -> bytes | None:
        """Take the least recently used ready worker (now busy), or ``None`` if none is ready."""
        if not self._idle:
            return None
        worker, _ = self._idle.popitem(last=False)
        self._busy[worker] = self.clock() + self.ttl
        return worker

    def remove(self, worker: bytes) -> None:
        """Forget ``worker`` (the socket said it is gone)."""
        self._idle.pop(worker, None)
        self._busy.pop(worker, None)

    def idle(self) -> list[bytes]:
        """Ready workers, least recently used first (the broker heartbeats these)."""
        return list(self._idle)

    def purge(self) -> list[bytes]:
        """Forget every worker whose expiry has passed; returns them (for the log)."""
        now = self.clock()
        gone = [w for table in (self._idle, self._busy) for w, expiry in table.items() if expiry <= now]
        for worker in gone:
            self.remove(worker)
        return gone
