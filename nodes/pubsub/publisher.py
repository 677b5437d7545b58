"""publisher: Redis PUBLISH of MESSAGES messages round robin over TOPICS (catA..catD carry hatA..hatD).

FORMAT=envelope (default) publishes sequence-numbered msgpack events; FORMAT=plain publishes exactly the
chapter's messages, ``PUBLISH catA hatA`` (UTF-8), which any Redis client reads as text. MESSAGES=0 publishes
continuously at RATE until stopped, so a subscriber can attach at any time; ``/status`` ``peers`` then follows
the subscribers as they come and go (``CLIENT LIST TYPE pubsub``, read at most once a second).

Connects to REDIS_URL (REDIS_PASSWORD required). Redis pub/sub keeps nothing for late subscribers, so
before the first PUBLISH it waits - a handshake, not a sleep - until MIN_SUBSCRIBERS connections are
listening: ``CLIENT LIST TYPE pubsub`` lists a connection only once its SUBSCRIBE ran, and a subscriber
subscribes all its topics in one command, so a listed subscriber already has every one of its topics.

Each event carries the run id, its topic, a per-topic ``seq`` and the topic's hat (``nodes.sequence``),
so subscribers can prove they got their topics complete and in order. A connection error is retried
with backoff (tenacity, bounded attempts) and the outage logged; an event that still fails is counted
as ``failed`` and its seq shows up as a gap downstream.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis

from nodes.core.amqp import AMQP_ERRORS, unreachable
from nodes.core.lifecycle import Node
from nodes.core.log import event
from nodes.pubsub.amqpconn import AmqpPublisher
from nodes.pubsub.protocol import publish_batch, published_summary
from nodes.pubsub.redisconn import RedisCall, fatal, redacted, redis_client, transient

log = logging.getLogger(__name__)

#: Tries of one PUBLISH before the event counts as failed (backoff 0.1 s doubling, at most 2 s apart).
PUBLISH_ATTEMPTS = 6
#: Seconds between re-counting the listening subscribers while publishing.
RECOUNT_S = 1.0


class Publisher(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats.counters.update(failed=0, receivers=0)
        self.listening = 0
        self._unreachable_logged = False
        self._recount_at = 0.0

    def serve(self) -> int:
        s = self.settings
        if s.backend == "rabbitmq":
            return self._serve_amqp()
        self.redis = redis_client(s, self.name)
        self.publish = RedisCall(self, "publish", PUBLISH_ATTEMPTS)
        try:
            return publish_batch(self, f"{s.min_subscribers} Redis subscribers", self._listening, self._publish)
        except redis.RedisError as exc:
            return fatal(self, exc)
        finally:
            self.redis.close()

    def _serve_amqp(self) -> int:
        """BACKEND=rabbitmq: the same batch through a topic exchange (nodes.pubsub.amqpconn)."""
        try:
            amqp = AmqpPublisher(self)
        except AMQP_ERRORS as exc:
            return unreachable(self, exc)
        self._amqp = amqp
        try:
            return publish_batch(self, f"{self.settings.min_subscribers} RabbitMQ subscribers", amqp.ready, amqp.send)
        except AMQP_ERRORS as exc:
            return unreachable(self, exc)
        finally:
            amqp.close()

    def peer_count(self) -> int:
        amqp = getattr(self, "_amqp", None)
        return len(amqp.heard) if amqp is not None else self.listening

    def summary(self) -> str:
        return published_summary(self)

    def _listening(self) -> bool:
        try:
            self.listening = len(self.redis.client_list(_type="pubsub"))
        except redis.RedisError as exc:
            if not transient(exc):
                raise
            if not self._unreachable_logged:
                self._unreachable_logged = True
                event(log, "redis_unreachable", logging.WARNING, error=str(exc), url=redacted(self.settings.redis_url))
            return False
        return self.listening >= self.settings.min_subscribers

    def _recount(self) -> None:
        """Keep ``peers`` current during a long (continuous) run; a failed count is left to the next PUBLISH."""
        now = time.monotonic()
        if now >= self._recount_at:
            self._recount_at = now + RECOUNT_S
            with contextlib.suppress(redis.RedisError):
                self.listening = len(self.redis.client_list(_type="pubsub"))

    def _publish(self, topic: str, frame: bytes) -> bool:
        self._recount()
        try:
            receivers = self.publish(self.redis.publish, topic, frame)
        except redis.RedisError as exc:
            if not transient(exc):
                raise
            event(log, "publish_failed", logging.ERROR, topic=topic, error=str(exc), attempts=PUBLISH_ATTEMPTS)
            return False
        self.stats.incr("receivers", receivers)
        self.stats.incr_label("receivers_by_topic", topic, receivers)
        return True
