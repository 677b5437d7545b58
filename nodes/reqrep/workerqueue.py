"""The lru broker's queue of ready workers, with expiry (zguide ppqueue's ``WorkerQueue``).

Why a class of its own: the Paranoid Pirate broker's correctness rests on a few small rules
that are easy to get subtly wrong inside a socket loop, so they live here, without sockets,
with an injectable clock, and are unit-tested:

1. A request goes only to a worker that said it can take one (READY, or its last reply), and
   to the one that has waited longest (least recently used), which spreads load evenly.
2. A worker that has not been heard from for ``ttl`` seconds (HEARTBEAT_IVL x HEARTBEAT_LIVENESS)
   is forgotten, so requests stop going to a dead or frozen peer.
3. A heartbeat proves a worker alive but does not make a busy worker ready: unlike zguide's
   ppqueue, a heartbeat that crosses a request in flight must not earn that worker a second one.
   A heartbeat from a worker the broker does not know (e.g. after a broker restart) makes it ready.
4. A *plain* worker (zguide lbbroker: a REQ socket that says READY, then only answers requests) never
   heartbeats and must never be sent one (it would break its REQ state machine), so it is neither
   heartbeated (:meth:`heartbeat_due`) nor expired by silence: its liveness is its ZMTP connection.
   The broker learns that an idle one is gone when a send to it fails (:meth:`remove`); a busy one
   that may have gone is dropped by :meth:`forget_busy_plain` and, if alive, returns with its reply.

Each worker also has a label, the name its replies are counted under (``replies_by_worker``).
"""

from __future__ import annotations

import math
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
        self._plain: set[bytes] = set()  # workers without heartbeats (expiry: never)
        self._labels: dict[bytes, str] = {}

    def __len__(self) -> int:
        """Number of workers ready for a request."""
        return len(self._idle)

    def __contains__(self, worker: bytes) -> bool:
        return worker in self._idle or worker in self._busy

    @property
    def busy(self) -> int:
        return len(self._busy)

    @property
    def plain(self) -> int:
        """Number of plain workers known (ready or busy)."""
        return len(self._plain)

    def _expiry(self, worker: bytes) -> float:
        return math.inf if worker in self._plain else self.clock() + self.ttl

    def ready(self, worker: bytes, *, plain: bool | None = None, label: str | None = None) -> None:
        """``worker`` can take a request (it sent READY or a reply): queue it last, with a fresh expiry.

        ``plain`` says whether it is a plain worker (None: as known before; a new worker heartbeats);
        ``label`` names it in counts (None: keep the known one).
        """
        if plain is not None:
            (self._plain.add if plain else self._plain.discard)(worker)
        if label is not None:
            self._labels[worker] = label
        self._busy.pop(worker, None)
        self._idle.pop(worker, None)
        self._idle[worker] = self._expiry(worker)

    def alive(self, worker: bytes, label: str | None = None) -> None:
        """A heartbeat from ``worker``: refresh its expiry without changing its place or state."""
        if label is not None and worker not in self._labels:
            self._labels[worker] = label
        self._plain.discard(worker)  # only a heartbeating worker sends heartbeats
        expiry = self._expiry(worker)
        if worker in self._busy:
            self._busy[worker] = expiry
        else:
            self._idle[worker] = expiry

    def next(self) -> bytes | None:
        """Take the least recently used ready worker (now busy), or ``None`` if none is ready."""
        if not self._idle:
            return None
        worker, _ = self._idle.popitem(last=False)
        self._busy[worker] = self._expiry(worker)
        return worker

    def remove(self, worker: bytes) -> None:
        """Forget ``worker`` (the socket said it is gone)."""
        self._idle.pop(worker, None)
        self._busy.pop(worker, None)
        self._plain.discard(worker)
        self._labels.pop(worker, None)

    def is_plain(self, worker: bytes) -> bool:
        return worker in self._plain

    def label(self, worker: bytes) -> str | None:
        """The name ``worker``'s replies are counted under, if it told one (READY, heartbeat)."""
        return self._labels.get(worker)

    def idle(self) -> list[bytes]:
        """Ready workers, least recently used first."""
        return list(self._idle)

    def heartbeat_due(self) -> list[bytes]:
        """Ready workers that take heartbeats (every idle one but the plain ones): the broker beats these."""
        plain = self._plain
        return [w for w in self._idle if w not in plain]

    def purge(self) -> list[bytes]:
        """Forget every worker whose expiry has passed (never a plain one); returns them (for the log)."""
        now = self.clock()
        gone = [w for table in (self._idle, self._busy) for w, expiry in table.items() if expiry <= now]
        for worker in gone:
            self.remove(worker)
        return gone

    def forget_busy_plain(self) -> list[bytes]:
        """Forget the busy plain workers (a peer disconnected and it may be one of them); returns them.

        Harmless to one that is still alive: its reply makes it ready again.
        """
        gone = [w for w in self._busy if w in self._plain]
        for worker in gone:
            self.remove(worker)
        return gone
