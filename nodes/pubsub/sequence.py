"""Per-topic sequence numbers: what both publishers put in an event and what both subscribers check.

A publisher *run* (one process lifetime, named by a unique run id) numbers its events per topic from 1
(:class:`Outbox`). A subscriber feeds every delivered event to a :class:`Tracker`, which keeps, per
``(run, topic)``, the highest sequence seen and the numbers it skipped over, so it can tell apart

* a **gap**       - a number jumped ahead (messages lost, e.g. published while a subscriber reconnected),
* **out of order** - a skipped number arriving late,
* a **duplicate**  - a number seen before (e.g. a publish retried after its reply was lost).

Keying by run means a restarted publisher (new run id, ``seq`` from 1 again) starts a fresh stream rather
than looking like a flood of duplicates. :func:`publish_batch` and :class:`Inbox` are the glue both Redis
and ZeroMQ roles share, so the two transports count and report in exactly the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodes.core import wire
from nodes.core.lifecycle import Pacer
from nodes.core.log import event, worth_logging

if TYPE_CHECKING:
    from nodes.core.lifecycle import Node

log = logging.getLogger(__name__)

EVENT = "event"
#: Skipped numbers remembered per stream (so a late one counts as out of order, not a duplicate).
#: Beyond this a huge gap is still counted, but its late arrivals would count as duplicates.
MISSING_LIMIT = 100_000

# Verdicts of Tracker.record
IN_ORDER, GAP, LATE, DUPLICATE = "in_order", "gap", "late", "duplicate"


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


def problem(env: wire.Envelope, topic: str) -> str | None:
    """Why ``env`` delivered on ``topic`` is not a well-formed event (``None`` if it is)."""
    if env.kind != EVENT:
        return f"kind {env.kind!r} is not {EVENT!r}"
    body = env.body
    if not isinstance(body, dict):
        return "event body is not a map"
    if not isinstance(body.get("run"), str) or not body["run"]:
        return "event has no run id"
    seq = body.get("seq")
    if type(seq) is not int or seq < 1:
        return f"event seq {seq!r} is not a whole number >= 1"
    if body.get("topic") != topic:
        return f"event topic {body.get('topic')!r} differs from the delivered topic {topic!r}"
    if body.get("hat") != hat_for(topic):
        return f"event hat {body.get('hat')!r} does not belong to topic {topic!r}"
    return None


@dataclass
class Stream:
    """What one subscriber saw of one (run, topic)."""

    received: int = 0
    last_seq: int = 0
    gaps: int = 0  # numbers skipped over when a later one arrived (never decreases)
    out_of_order: int = 0  # skipped numbers that arrived late
    duplicates: int = 0
    missing: set[int] = field(default_factory=set)  # skipped and not (yet) arrived


class Tracker:
    """Sequence state per (run, topic) of one subscriber; ``topics`` empty means every topic is expected."""

    def __init__(self, topics: Iterable[str] = ()) -> None:
        self.expected = frozenset(topics)
        self.streams: dict[tuple[str, str], Stream] = {}

    def expects(self, topic: str) -> bool:
        return not self.expected or topic in self.expected

    def record(self, run: str, topic: str, seq: int) -> tuple[str, int]:
        """Account for one event; returns ``(verdict, skipped)`` where ``skipped`` > 0 only for a gap."""
        st = self.streams.get((run, topic))
        if st is None:
            st = self.streams[(run, topic)] = Stream()
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

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per topic, summed over runs; ``run``/``last_seq`` are the latest run's. Safe from another thread."""
        out: dict[str, dict[str, Any]] = {}
        for (run, topic), st in list(self.streams.items()):
            t = out.setdefault(
                topic, {"received": 0, "gaps": 0, "missing": 0, "duplicates": 0, "out_of_order": 0, "runs": 0}
            )
            t["received"] += st.received
            t["gaps"] += st.gaps
            t["missing"] += len(st.missing)
            t["duplicates"] += st.duplicates
            t["out_of_order"] += st.out_of_order
            t["runs"] += 1
            t["run"], t["last_seq"] = run, st.last_seq
        return out


class Inbox:
    """What both subscribers do with one delivered message: decode, validate, track, count, log anomalies."""

    COUNTERS = ("unexpected", "gaps", "duplicates", "out_of_order")

    def __init__(self, node: Node, topics: Iterable[str]) -> None:
        self.node = node
        self.tracker = Tracker(topics)
        for name in self.COUNTERS:  # present from the start, so /status and /metrics show the zeros
            node.stats.counters.setdefault(name, 0)

    def accept(self, topic: str, payload: bytes, source: str) -> None:
        node, stats = self.node, self.node.stats
        env = node.decode(payload, source)
        if env is None:
            return
        reason = problem(env, topic)
        if reason is not None:
            node.reject(reason, source)
            return
        if not self.tracker.expects(topic):
            stats.incr("unexpected")
            if worth_logging(stats.counters["unexpected"]):
                event(log, "unexpected_topic", logging.WARNING, topic=topic, source=source)
            return
        run, seq = env.body["run"], env.body["seq"]
        verdict, skipped = self.tracker.record(run, topic, seq)
        stats.incr("received")
        stats.incr_label("received_by_topic", topic)
        if verdict == IN_ORDER:
            return
        counter = {GAP: "gaps", LATE: "out_of_order", DUPLICATE: "duplicates"}[verdict]
        stats.incr(counter, skipped or 1)
        if verdict == GAP or worth_logging(stats.counters[counter]):
            event(log, verdict, logging.WARNING, topic=topic, run=run, seq=seq, missing=skipped, source=source)

    def status(self, subscribed: Iterable[str]) -> dict[str, Any]:
        return {"topics_subscribed": sorted(subscribed), "topics": self.tracker.summary()}


def publish_batch(node: Node, waiting_for: str, ready: Callable[[], bool], send: Callable[[str, bytes], bool]) -> int:
    """The whole job of a publisher: wait for ``ready`` (a handshake), then send MESSAGES events over TOPICS.

    ``send(topic, frame)`` returns False when the event could not be handed over (already logged). Returns
    the exit code: 0 done (or stopped on request), 1 the wait timed out or a send failed, 2 no topics.
    """
    s = node.settings
    if not s.topics:
        event(log, "no_topics", logging.ERROR, hint="set TOPICS to at least one topic")
        return 2
    if s.min_subscribers and not node.wait_for(waiting_for, ready, s.wait_timeout):
        return 0 if node.stop.is_set() else 1
    outbox = Outbox(node.ids.prefix, s.topics)
    pacer = Pacer(s.rate, node)
    failed = 0
    event(log, "publishing", run=outbox.run, messages=s.messages, topics=list(s.topics), rate=s.rate)
    while outbox.n < s.messages and pacer.wait():
        topic, body = outbox.next()
        if send(topic, wire.make(EVENT, node.ids(), body, node.name)):
            node.stats.incr("sent")
            node.stats.incr_label("published_by_topic", topic)
        else:
            failed += 1
            node.stats.incr("failed")
    event(
        log,
        "published",
        run=outbox.run,
        sent=node.stats.counters["sent"],
        failed=failed,
        stopped_early=outbox.n < s.messages,
    )
    return 1 if failed else 0
