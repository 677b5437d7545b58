"""The pub/sub protocol: what both publishers send and both subscribers check, Redis and ZeroMQ alike.

An event is an envelope of kind ``event`` whose body carries ``run, topic, seq, n, hat`` (see
:mod:`nodes.pubsub.sequence`); zpub's handshake is the private ``HELLO`` topic. :func:`publish_batch`
and :class:`Inbox` are the glue both transports share, so they count and report in exactly the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from nodes.core import wire
from nodes.core.lifecycle import Node, Pacer
from nodes.core.log import event, worth_logging
from nodes.pubsub.sequence import DUPLICATE, GAP, IN_ORDER, LATE, Outbox, Tracker, hat_for

log = logging.getLogger(__name__)

EVENT = "event"
#: Prefix of the handshake topic each zsub subscribes last (0xFF: sorts after any ASCII topic, never sent).
HELLO = b"\xffhello/"


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

    def summary(self) -> str:
        c = self.node.stats.counters
        per_topic = " ".join(
            f"{t}={n}" for t, n in sorted((self.node.stats.labelled.get("received_by_topic") or {}).items())
        )
        return (
            f"received {c['received']} ({per_topic or 'none yet'}), gaps {c['gaps']}, "
            f"duplicates {c['duplicates']}, out of order {c['out_of_order']}, rejected {c['rejected']}"
        )


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


def published_summary(node: Node) -> str:
    """The status line of a publisher (Redis or ZeroMQ)."""
    c = node.stats.counters
    sent, total, failed = c["sent"], node.settings.messages, c.get("failed", 0)
    return f"published {sent}/{total} to {node.peer_count()} subscribers, failed {failed}"
