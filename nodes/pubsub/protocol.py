"""The pub/sub protocol: what both publishers send and both subscribers check, Redis and ZeroMQ alike.

Two payload formats travel on the same topics (see ``docs/wire.md``):

* **plain** - any bytes, e.g. the chapter's ``hatA`` on topic ``catA``. Subscribers count them per topic
  (``plain``, ``plain_by_topic``); with no sequence numbers there is nothing more to check.
* **envelope** - a msgpack envelope of kind ``event`` whose body carries ``run, topic, seq, n, hat`` (see
  :mod:`nodes.pubsub.sequence`); subscribers check it and track its per-topic sequence.

How a subscriber tells them apart (:func:`is_envelope`): every envelope starts with the two bytes
``0x96 0x01`` (msgpack: a 6-element array whose first element is the envelope version 1). A payload that
starts otherwise is plain - it is never decoded, so no plain payload can be a reject. A payload that starts
like an envelope is ours: if it then fails :func:`nodes.core.wire.decode` it is rejected as
``not an envelope: ...``, and if it decodes but :func:`problem` finds fault, as ``not an event: ...``.
(0x96 is not a valid first byte of UTF-8 text, so no text payload is mistaken for an envelope.)

zpub's handshake is the private ``HELLO`` topic. :func:`publish_batch` and :class:`Inbox` are the glue
both transports share, so they count and report in exactly the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from nodes.core import wire
from nodes.core.lifecycle import EXIT_INTERRUPTED, Node, Pacer
from nodes.core.log import event, worth_logging
from nodes.pubsub.sequence import DUPLICATE, GAP, IN_ORDER, LATE, LATE_JOIN, Outbox, Tracker, hat_for

log = logging.getLogger(__name__)

EVENT = "event"
PLAIN, ENVELOPE = "plain", "envelope"
#: Prefix of the handshake topic each zsub subscribes last (0xFF: sorts after any ASCII topic, never sent).
#: The full hello is ``HELLO + b",".join(topics) + b"/" + zsub id`` (see :func:`hello` and ``nodes.pubsub.zpub``).
HELLO = b"\xffhello/"
#: The first two bytes of every envelope: msgpack fixarray(6) then the positive fixint VERSION.
ENVELOPE_PREFIX = wire.encode(wire.Envelope(id="x", kind=EVENT))[:2]
#: Distinct topics counted under ``plain_by_topic``; plain topics come from anyone, so the label set is bounded.
PLAIN_TOPICS_LIMIT = 100
OTHER_TOPICS = "(other topics)"


def is_envelope(payload: bytes) -> bool:
    """Whether ``payload`` claims to be an envelope (starts with :data:`ENVELOPE_PREFIX`); else it is plain."""
    return payload[:2] == ENVELOPE_PREFIX


def plain_payload(topic: str) -> bytes:
    """The chapter's message on ``topic``: ``catA`` -> ``b"hatA"``."""
    return hat_for(topic).encode("utf-8")


def hello(topics: Iterable[str], zsub_id: str) -> bytes:
    """A zsub's hello topic: names the topics it subscribed (empty: all) so zpub can tell them from plain SUBs'."""
    return HELLO + ",".join(topics).encode() + b"/" + zsub_id.encode()


def parse_hello(topic: bytes) -> tuple[str, int]:
    """``(zsub id, subscriptions it holds besides the hello)`` of a hello topic (``HELLO`` prefix included)."""
    listed, _, zsub_id = topic[len(HELLO) :].partition(b"/")
    return zsub_id.decode("utf-8", "replace"), len(listed.split(b",")) if listed else 1


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
    """What both subscribers do with one delivered message: plain is counted; an envelope is validated, tracked,
    counted; anomalies and rejects are logged (rejects with their reason in words)."""

    COUNTERS = ("plain", "unexpected", "late_join", "gaps", "duplicates", "out_of_order")

    def __init__(self, node: Node, topics: Iterable[str]) -> None:
        self.node = node
        self.tracker = Tracker(topics)
        self.last_rejected: str | None = None
        self.hats: dict[str, str] = {}
        for name in self.COUNTERS:  # present from the start, so /status and /metrics show the zeros
            node.stats.counters.setdefault(name, 0)
        self.counters = node.stats.counters
        self.received_by_topic: dict[str, int] = node.stats.labelled.setdefault("received_by_topic", {})

    def accept(self, topic: str, payload: bytes, source: str) -> None:
        if payload[:2] != ENVELOPE_PREFIX:
            self.plain(topic)
            return
        event_ = self.fast_event(topic, payload)
        if event_ is None:  # not the well-formed case: the full decode finds out why, or accepts it after all
            event_ = self.checked_event(topic, payload, source)
            if event_ is None:
                return
        run, seq = event_
        if not self.tracker.expects(topic):
            stats = self.node.stats
            stats.incr("unexpected")
            if worth_logging(stats.counters["unexpected"]):
                event(log, "unexpected_topic", logging.WARNING, topic=topic, source=source)
            return
        verdict, skipped = self.tracker.record(run, topic, seq)
        self.counters["received"] += 1
        by_topic = self.received_by_topic
        by_topic[topic] = by_topic.get(topic, 0) + 1
        if verdict != IN_ORDER:
            self.anomaly(verdict, skipped, topic, run, seq, source)

    def fast_event(self, topic: str, payload: bytes) -> tuple[str, int] | None:
        """``(run, seq)`` of a well-formed event on ``topic``, or None for anything else (then the full path decides).

        The hot path of both subscribers (``make bench``: half of a subscriber's own CPU a message went to
        building an :class:`~nodes.core.wire.Envelope` and checking it field by field). One ``unpackb`` into
        tuples and one combined check of exactly what :func:`~nodes.core.wire.decode` and :func:`problem` require;
        it may only accept what they accept (``tests/unit/test_properties.py`` checks that on random payloads),
        and everything it declines goes through them, so rejects keep their reasons.
        """
        if len(payload) > self.node.max_size:
            return None
        try:
            obj = msgpack.unpackb(payload, raw=False, use_list=False)
        except Exception:  # garbage: the full decode reports it
            return None
        if type(obj) is not tuple or len(obj) != 6:
            return None
        version, id_, kind, body, sent_at, origin = obj
        if (
            version != wire.VERSION
            or kind != EVENT
            or type(id_) is not str
            or not id_
            or type(origin) is not str
            or (type(sent_at) is not float and type(sent_at) is not int)
            or type(body) is not dict
        ):
            return None
        run, seq = body.get("run"), body.get("seq")
        if type(run) is not str or not run or type(seq) is not int or seq < 1 or body.get("topic") != topic:
            return None
        if body.get("hat") != self.hat(topic):
            return None
        return run, seq

    def checked_event(self, topic: str, payload: bytes, source: str) -> tuple[str, int] | None:
        """The full decode and check: ``(run, seq)``, or None after rejecting the payload with its reason."""
        try:
            env = wire.decode(payload, self.node.max_size)
        except wire.WireError as exc:
            self.reject(f"not an envelope: {exc}", source)
            return None
        reason = problem(env, topic)
        if reason is not None:
            self.reject(f"not an event: {reason}", source)
            return None
        return env.body["run"], env.body["seq"]

    def hat(self, topic: str) -> str:
        """:func:`hat_for`, remembered for at most :data:`PLAIN_TOPICS_LIMIT` topics (any topic may arrive)."""
        hat = self.hats.get(topic)
        if hat is None:
            hat = hat_for(topic)
            if len(self.hats) < PLAIN_TOPICS_LIMIT:
                self.hats[topic] = hat
        return hat

    def anomaly(self, verdict: str, skipped: int, topic: str, run: str, seq: int, source: str) -> None:
        """Count (and log) an event that was not the next one of its stream."""
        stats = self.node.stats
        counter = {GAP: "gaps", LATE: "out_of_order", DUPLICATE: "duplicates", LATE_JOIN: "late_join"}[verdict]
        stats.incr(counter, skipped or 1)
        if verdict == LATE_JOIN:  # not a loss: published before this subscriber was there
            event(log, "late_join", topic=topic, run=run, first_seq=seq, before_join=skipped, source=source)
        elif verdict == GAP or worth_logging(stats.counters[counter]):
            event(log, verdict, logging.WARNING, topic=topic, run=run, seq=seq, missing=skipped, source=source)

    def plain(self, topic: str) -> None:
        """Count one plain message on ``topic`` (any topic delivered: plain messages have nothing to check)."""
        stats = self.node.stats
        stats.incr("plain")
        by_topic = stats.labelled.get("plain_by_topic") or {}
        if topic not in by_topic and len(by_topic) >= PLAIN_TOPICS_LIMIT:
            topic = OTHER_TOPICS
        stats.incr_label("plain_by_topic", topic)

    def reject(self, reason: str, source: str) -> None:
        """Count and log a reject; ``reason`` reads ``<what it is not>: <detail>``, the part before ':' labels it."""
        self.last_rejected = reason
        self.node.stats.incr_label("rejected_by_reason", reason.split(":", 1)[0])
        self.node.reject(reason, source)

    def status(self, subscribed: Iterable[str]) -> dict[str, Any]:
        return {
            "topics_subscribed": sorted(subscribed),
            "topics": self.tracker.summary(),
            "last_rejected": self.last_rejected,
        }

    def summary(self) -> str:
        c, labelled = self.node.stats.counters, self.node.stats.labelled

        def per_topic(group: str) -> str:
            return " ".join(f"{t}={n}" for t, n in sorted((labelled.get(group) or {}).items())) or "none yet"

        plain = f"plain {c['plain']}" + (f" ({per_topic('plain_by_topic')})" if c["plain"] else "")
        line = (
            f"received {c['received']} ({per_topic('received_by_topic')}), {plain}, joined late {c['late_join']}, "
            f"gaps {c['gaps']}, "
            f"duplicates {c['duplicates']}, out of order {c['out_of_order']}, rejected {c['rejected']}"
        )
        return line + (f" (last: {self.last_rejected})" if self.last_rejected else "")


def publish_batch(node: Node, waiting_for: str, ready: Callable[[], bool], send: Callable[[str, bytes], bool]) -> int:
    """The whole job of a publisher: wait for ``ready`` (a handshake), then publish over TOPICS round robin.

    MESSAGES events, or with MESSAGES=0 (continuous) one every 1/RATE s until the node is stopped. FORMAT
    chooses the payload: ``envelope`` (sequence-numbered events) or ``plain`` (``hatX`` on topic ``catX``).
    ``send(topic, payload)`` returns False when the message could not be handed over (already logged). Returns
    the exit code: 0 done (a continuous run: stopped on request), 1 the wait timed out or a send failed, 2 no
    topics, EXIT_INTERRUPTED (3) a bounded batch stopped on request before it was all published.
    """
    s = node.settings
    if not s.topics:
        event(log, "no_topics", logging.ERROR, hint="set TOPICS to at least one topic")
        return 2
    if s.min_subscribers and not node.wait_for(waiting_for, ready, s.wait_timeout):
        return EXIT_INTERRUPTED if node.stop.is_set() else 1
    outbox = Outbox(node.ids.prefix, s.topics)
    pacer = Pacer(s.rate, node)
    plain = s.format == PLAIN
    pad = bytes(s.payload_bytes)  # PAYLOAD_BYTES: a size for the event, subscribers ignore the field
    total = s.messages  # 0: continuous
    counters, failed = node.stats.counters, 0
    event(
        log,
        "publishing",
        run=outbox.run,
        messages=total or "continuous",
        topics=list(s.topics),
        rate=s.rate,
        format=s.format,
    )
    while (not total or outbox.n < total) and pacer.wait():
        topic, body = outbox.next()
        if pad:
            body["pad"] = pad
        payload = plain_payload(topic) if plain else wire.make(EVENT, node.ids(), body, node.name)
        if send(topic, payload):
            counters["sent"] += 1
            node.stats.incr_label("published_by_topic", topic)
        else:
            failed += 1
            node.stats.incr("failed")
    event(
        log,
        "published",
        run=outbox.run,
        sent=counters["sent"],
        failed=failed,
        stopped_early=bool(total) and outbox.n < total,
    )
    if failed:
        return 1
    return EXIT_INTERRUPTED if total and outbox.n < total else 0


def published_summary(node: Node) -> str:
    """The status line of a publisher (Redis or ZeroMQ)."""
    s, c = node.settings, node.stats.counters
    sent, failed = c["sent"], c.get("failed", 0)
    done = f"{sent} continuously at {s.rate:g}/s" if s.continuous else f"{sent}/{s.messages}"
    return f"published {done} ({s.format}) to {node.peer_count()} subscribers, failed {failed}"
