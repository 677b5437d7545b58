"""Per-topic sequence numbers: what both publishers put in an event and what both subscribers check.

A publisher *run* (one process lifetime, named by a unique run id) numbers its events per topic from 1
(:class:`Outbox`). A subscriber feeds every delivered event to a :class:`Tracker`, which keeps, per
``(run, topic)``, the highest sequence seen and the numbers it skipped over, so it can tell apart

* a **gap**       - a number jumped ahead (messages lost, e.g. published while a subscriber reconnected),
* **out of order** - a skipped number arriving late,
* a **duplicate**  - a number seen before (e.g. a publish retried after its reply was lost).

Keying by run means a restarted publisher (new run id, ``seq`` from 1 again) starts a fresh stream rather
than looking like a flood of duplicates. This module is the pure model (no sockets, no nodes); the glue the
Redis and ZeroMQ roles share is :mod:`nodes.pubsub.protocol`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Skipped numbers remembered per stream (so a late one counts as out of order, not a duplicate).
#: Beyond this a huge gap is still counted, but its late arrivals would count as duplicates.
MISSING_LIMIT = 100_000
#: (run, topic) streams remembered per subscriber; the least recently heard one is retired beyond this, its
#: counts kept in the topic's totals. Bounds memory against envelopes with made-up run ids.
MAX_STREAMS = 1000

# Verdicts of Tracker.record
IN_ORDER, GAP, LATE, DUPLICATE, LATE_JOIN = "in_order", "gap", "late", "duplicate", "late_join"


def hat_for(topic: str) -> str:
    """``catA`` -> ``hatA``: the payload repeats the topic's suffix, so a mixed-up delivery shows in the body."""
    return "hat" + topic.removeprefix("cat")


class Outbox:
    """Event bodies of one publisher run: topics round robin, ``seq`` per topic and ``n`` overall, both from 1."""

    def __init__(self, run: str, topics: Sequence[str]) -> None:
        if not topics:
            raise ValueError("a publisher needs at least one topic")
        self.run = run
        self.topics = tuple(topics)
        self.n = 0
        self.seq = dict.fromkeys(self.topics, 0)

    def next(self) -> tuple[str, dict[str, Any]]:
        topic = self.topics[self.n % len(self.topics)]
        self.n += 1
        self.seq[topic] += 1
        return topic, {"run": self.run, "topic": topic, "seq": self.seq[topic], "n": self.n, "hat": hat_for(topic)}


@dataclass
class Stream:
    """What one subscriber saw of one (run, topic)."""

    received: int = 0
    last_seq: int = 0
    late_join: int = 0  # numbers before the first one this subscriber saw: published before it joined
    gaps: int = 0  # numbers skipped over after the first one, when a later one arrived (never decreases)
    out_of_order: int = 0  # skipped numbers that arrived late
    duplicates: int = 0
    missing: set[int] = field(default_factory=set)  # skipped and not (yet) arrived


class Tracker:
    """Sequence state per (run, topic) of one subscriber; ``topics`` empty means every topic is expected."""

    def __init__(self, topics: Iterable[str] = ()) -> None:
        self.expected = frozenset(topics)
        self.streams: OrderedDict[tuple[str, str], Stream] = OrderedDict()  # least recently heard first
        #: Counts of retired streams per topic, so the totals stay exact; ``retired`` counts the streams.
        self.retired_counts: dict[str, Stream] = {}
        self.retired_runs: dict[str, int] = {}
        self.retired = 0

    def expects(self, topic: str) -> bool:
        return not self.expected or topic in self.expected

    def record(self, run: str, topic: str, seq: int) -> tuple[str, int]:
        """Account for one event; returns ``(verdict, skipped)`` where ``skipped`` > 0 only for a gap."""
        st = self.streams.get((run, topic))
        if st is not None:
            self.streams.move_to_end((run, topic))
        else:
            if len(self.streams) >= MAX_STREAMS:
                self._retire()
            # The first event of a stream: whatever came before it was published before this subscriber
            # was there (a late joiner), which is not a loss. Gaps count only after the first one.
            st = self.streams[(run, topic)] = Stream(received=1, last_seq=seq, late_join=seq - 1)
            return (LATE_JOIN, seq - 1) if seq > 1 else (IN_ORDER, 0)
        st.received += 1
        if seq == st.last_seq + 1:
            st.last_seq = seq
            return IN_ORDER, 0
        if seq > st.last_seq:
            skipped = seq - st.last_seq - 1
            room = max(0, MISSING_LIMIT - len(st.missing))
            st.missing.update(range(st.last_seq + 1, st.last_seq + 1 + min(skipped, room)))
            st.gaps += skipped
            st.last_seq = seq
            return GAP, skipped
        if seq in st.missing:
            st.missing.discard(seq)
            st.out_of_order += 1
            return LATE, 0
        st.duplicates += 1
        return DUPLICATE, 0

    def _retire(self) -> None:
        (_, topic), old = self.streams.popitem(last=False)
        kept = self.retired_counts.setdefault(topic, Stream())
        for name in ("received", "late_join", "gaps", "out_of_order", "duplicates"):
            setattr(kept, name, getattr(kept, name) + getattr(old, name))
        self.retired_runs[topic] = self.retired_runs.get(topic, 0) + 1
        self.retired += 1

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per topic, summed over runs; ``run``/``last_seq`` are the latest run's. Safe from another thread."""
        out: dict[str, dict[str, Any]] = {}

        def totals(topic: str) -> dict[str, Any]:
            if topic not in out:
                old = self.retired_counts.get(topic, Stream())
                out[topic] = {
                    "received": old.received,
                    "late_join": old.late_join,
                    "gaps": old.gaps,
                    "missing": 0,
                    "duplicates": old.duplicates,
                    "out_of_order": old.out_of_order,
                    "runs": self.retired_runs.get(topic, 0),
                }
            return out[topic]

        for topic in list(self.retired_counts):
            totals(topic)
        for (run, topic), st in list(self.streams.items()):
            t = totals(topic)
            t["received"] += st.received
            t["late_join"] += st.late_join
            t["gaps"] += st.gaps
            t["missing"] += len(st.missing)
            t["duplicates"] += st.duplicates
            t["out_of_order"] += st.out_of_order
            t["runs"] += 1
            t["run"], t["last_seq"] = run, st.last_seq
        return out
