"""subscriber: Redis SUBSCRIBE to TOPICS; checks each topic arrives complete and in order.

Connects to REDIS_URL (REDIS_PASSWORD required) and subscribes to every topic in ONE command, so the
publisher's ``CLIENT LIST TYPE pubsub`` handshake sees this subscriber only once all its topics are in
place (empty TOPICS: PSUBSCRIBE ``*``, every topic). The loop reads with ``get_message(timeout=0.1)`` so
the stop flag, the health beat and redis-py's ``health_check_interval`` PING all get their turn.

Redis keeps nothing for a disconnected subscriber: on a connection error the loop reconnects with
backoff until it succeeds (tenacity), redis-py resubscribes on the new connection, and whatever was
published meanwhile shows up as a gap in the per-topic sequence numbers (``nodes.pubsub.sequence``).

Bounded: a payload above MAX_MSG_SIZE (the cluster's one frame limit, as libzmq enforces it for ZeroMQ) is
counted under ``oversized``, rejected and freed at once, and the C allocator returns big payloads to the OS
when they are freed (:func:`nodes.pubsub.redisconn.release_big_buffers`), so a burst of big messages does not
leave the subscriber grown. redis-py still reads a whole message before it can be refused: the server's
``proto-max-bulk-len`` and its pub/sub output-buffer limit bound what one message can cost.

Any Redis client may publish to it: a payload that is not an envelope (e.g. ``PUBLISH catA hatA``) is
counted as ``plain`` per topic, never rejected; envelopes are sequence-checked (``nodes.pubsub.protocol``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redis._parsers import _HiredisParser
from redis._parsers.hiredis import NOT_ENOUGH_DATA

try:
    from hiredis import PushNotification
except ImportError:  # hiredis < 3.2: no RESP3 push type, nothing to route

    class PushNotification(list):  # type: ignore[no-redef]
        """Never instantiated: no reply is of this type."""


from nodes.core.amqp import AMQP_ERRORS, unreachable
from nodes.core.lifecycle import POLL_MS, Node
from nodes.core.log import event
from nodes.pubsub.amqpconn import AmqpSubscription
from nodes.pubsub.protocol import PLAIN_TOPICS_LIMIT, Inbox
from nodes.pubsub.redisconn import SOCKET_TIMEOUT, RedisCall, fatal, redis_client, release_big_buffers

log = logging.getLogger(__name__)
ALL = "*"
#: Replies taken from the reader in one drain before the loop checks its stop flag and health again.
DRAIN_MAX = 1000


class Subscriber(Node):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = Inbox(self, self.settings.topics)
        self.subscribed: set[str] = set()
        self.topics: dict[bytes | str, str] = {}
        self.call = RedisCall(self, "subscribe", attempts=None)
        self.stats.counters.setdefault("oversized", 0)
        self.stats.counters.setdefault("silent_reconnects", 0)
        #: Since when a health-check PING has waited for its PONG (None: none pending).
        self._ping_pending_since: float | None = None
        self.big_buffers_released = release_big_buffers()

    def health_problem(self) -> str | None:
        """Unhealthy while Redis has been unreachable for longer than PEER_GRACE: nothing can arrive."""
        down = self.call.down_since
        if down is not None and time.monotonic() - down >= self.settings.peer_grace:
            return f"redis unreachable for {time.monotonic() - down:.0f}s (reconnecting)"
        return super().health_problem()

    def serve(self) -> int:
        s = self.settings
        if s.backend == "rabbitmq":
            return self._serve_amqp()
        client = redis_client(s, self.name)
        pubsub = client.pubsub()
        call = self.call
        try:
            if s.topics:
                call(pubsub.subscribe, *s.topics)
            else:
                call(pubsub.psubscribe, ALL)
            get, handle, timeout = pubsub.get_message, self._handle, POLL_MS / 1000
            while self.running():
                # Call redis-py directly: wrapping every read in tenacity cost ~half the CPU per
                # message (make bench). Only a read that failed goes through the retrying call.
                try:
                    message = get(False, timeout)
                    if message is not None:
                        handle(message)
                        self._drain(pubsub)
                except (redis.ConnectionError, redis.TimeoutError):
                    message = call(get, False, timeout)
                    if message is not None:
                        handle(message)
                self.check_silent(pubsub, time.monotonic())
        except redis.RedisError as exc:
            return 0 if self.stop.is_set() else fatal(self, exc)
        finally:
            pubsub.close()
            client.close()
        return 0

    def check_silent(self, pubsub: Any, now: float) -> bool:
        """Drop a connection whose health-check PING got no PONG within SOCKET_TIMEOUT; True if it did.

        Why: a subscriber only reads, so a connection whose far end is gone without a FIN reaching it
        (the container moved off its network and back, Redis restarted meanwhile) never errors: redis-py
        PINGs it when idle, but a missing PONG raises nothing, so the subscriber stayed green for good
        and got nothing (seen in `make chaos`). Disconnecting makes redis-py dial again and resubscribe;
        what was published meanwhile shows up as a gap.
        """
        if pubsub.health_check_response_counter <= 0:
            self._ping_pending_since = None
            return False
        if self._ping_pending_since is None:
            self._ping_pending_since = now
            return False
        if now - self._ping_pending_since < SOCKET_TIMEOUT:
            return False
        self._ping_pending_since = None
        self.stats.incr("silent_reconnects")
        event(log, "redis_silent", logging.WARNING, waited_s=SOCKET_TIMEOUT, hint="no PONG: dialling again")
        pubsub.health_check_response_counter = 0
        if pubsub.connection is not None:
            pubsub.connection.disconnect()
        return True

    def _drain(self, pubsub: redis.client.PubSub) -> None:
        """Handle the replies already complete in the connection's hiredis reader, at most DRAIN_MAX.

        Why: ``get_message()`` costs more of redis-py's Python per message than this node's own checks
        (a health check, a retry wrapper, a readiness poll, a dict per message and, with RESP3, a debug
        line formatted from the whole message): ``make bench`` measured the subscriber at 0.38 x a bare
        ``listen()`` loop. After a message arrives, a burst is usually already parsed into the reader,
        so this takes the next ones straight from it: ``message``/``pmessage`` replies go to the checks,
        anything else (a subscribe confirmation, the health check's PONG) exactly where redis-py would
        send it. It uses redis-py's private parser (pinned, see pyproject.toml): with another parser
        (no hiredis) it does nothing and ``get_message()`` does all the reading, as before.
        """
        parser = getattr(pubsub.connection, "_parser", None)
        reader = getattr(parser, "_reader", None)
        if reader is None or not isinstance(parser, _HiredisParser):
            return
        topic_of = self._topic
        for _ in range(DRAIN_MAX):
            reply = reader.gets()
            if reply is NOT_ENOUGH_DATA:
                return
            if isinstance(reply, list) and reply:
                kind = reply[0]
                if kind == b"message" and len(reply) == 3:
                    self._deliver(topic_of(reply[1]), reply[2])
                    continue
                if kind == b"pmessage" and len(reply) == 4:
                    self._deliver(topic_of(reply[2]), reply[3])
                    continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, PushNotification):  # RESP3: redis-py's push handlers see it first, as they would
                reply = parser.handle_push_response(reply)
                if reply is None:
                    continue
            if pubsub.is_health_check_response(reply):
                pubsub.health_check_response_counter -= 1
                continue
            message = pubsub.handle_message(reply)
            if message is not None:
                self._handle(message)

    def _topic(self, channel: bytes | str) -> str:
        """The channel as text, remembered for the topics seen first (any channel may arrive under ``*``)."""
        topic = self.topics.get(channel)
        if topic is None:
            topic = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else str(channel)
            if len(self.topics) < PLAIN_TOPICS_LIMIT:
                self.topics[channel] = topic
        return topic

    def _serve_amqp(self) -> int:
        """BACKEND=rabbitmq: an exclusive queue bound to TOPICS (nodes.pubsub.amqpconn); the same Inbox checks."""
        try:
            sub = AmqpSubscription(self, self.settings.topics, self._deliver)
        except AMQP_ERRORS as exc:
            return unreachable(self, exc)
        self.subscribed.update(sub.topics)
        try:
            sub.run()
        except AMQP_ERRORS as exc:
            return 0 if self.stop.is_set() else unreachable(self, exc)
        finally:
            sub.close()
        return 0

    def _deliver(self, topic: str, data: bytes) -> None:
        """One message from the backend (Redis or RabbitMQ): oversized ones are refused, the rest checked."""
        source = self.settings.backend
        if len(data) > self.max_size:
            self.stats.incr("oversized")
            self.inbox.reject(f"oversized: {len(data)} bytes, above MAX_MSG_SIZE={self.max_size}", source)
            return
        self.inbox.accept(topic, data, source)

    def _handle(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        topic = self._topic(channel)
        if kind in ("subscribe", "psubscribe"):
            if topic not in self.subscribed:
                self.subscribed.add(topic)
                event(log, "subscribed", topic=topic, subscriptions=message["data"])
        elif kind in ("message", "pmessage"):
            self._deliver(topic, message["data"])

    def extra_status(self) -> dict[str, Any]:
        limits = {"max_msg_size": self.max_size, "big_buffers_released": self.big_buffers_released}
        return {**self.inbox.status(list(self.subscribed)), "limits": limits}

    def summary(self) -> str:
        return self.inbox.summary()
