"""RabbitMQ as the pub/sub broker (BACKEND=rabbitmq): what publisher and subscriber do over AMQP 0-9-1 (pika).

One topic exchange, ``mpc.topics``; the routing key is the topic (``catA``...), so the same events and
the same :class:`~nodes.pubsub.protocol.Inbox` checks apply as with Redis. Each subscriber declares one
exclusive, server-named queue (deleted with its connection) and binds it once per topic (``#`` = every
topic): like Redis pub/sub, a subscriber gets only what is published while it is there.

The handshake (MIN_SUBSCRIBERS) without the management plugin: AMQP cannot list who is bound, so the
publisher asks. It publishes a *presence* query on routing key ``mpc.presence`` (every subscriber binds it
too) with ``reply_to`` = RabbitMQ's direct reply-to; each subscriber answers with its name. A subscriber
that answered has its bindings in place, exactly like a Redis subscriber listed by ``CLIENT LIST``.
The publisher uses publisher confirms: ``sent`` counts what the broker took, a refusal is ``failed``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pika
import pika.exceptions

from nodes.core.amqp import connect
from nodes.core.lifecycle import POLL_MS, Node
from nodes.core.log import event

log = logging.getLogger(__name__)

EXCHANGE = "mpc.topics"
PRESENCE_KEY = "mpc.presence"
#: RabbitMQ's pseudo-queue for replies without a queue of one's own (direct reply-to).
REPLY_TO = "amq.rabbitmq.reply-to"
#: Seconds between presence queries while waiting for subscribers.
ASK_EVERY = 0.5


class AmqpPublisher:
    """The ``ready``/``send`` pair :func:`nodes.pubsub.protocol.publish_batch` needs, over RabbitMQ."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.conn = connect(node.settings.amqp_url, node.name)
        self.channel = self.conn.channel()
        self.channel.exchange_declare(EXCHANGE, "topic")
        self.channel.basic_consume(REPLY_TO, self._answer, auto_ack=True)
        self.channel.confirm_delivery()
        self.heard: set[str] = set()
        self._asked = 0.0

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()

    def ready(self) -> bool:
        """Ask who is there (at most every ASK_EVERY s); True once MIN_SUBSCRIBERS distinct subscribers answered."""
        now = time.monotonic()
        if now - self._asked >= ASK_EVERY:
            self._asked = now
            props = pika.BasicProperties(reply_to=REPLY_TO)
            self.channel.basic_publish(EXCHANGE, PRESENCE_KEY, b"", props)
        self.conn.process_data_events(time_limit=POLL_MS / 1000)
        return len(self.heard) >= self.node.settings.min_subscribers

    def send(self, topic: str, payload: bytes) -> bool:
        try:
            self.channel.basic_publish(EXCHANGE, topic, payload)
        except pika.exceptions.NackError:
            event(log, "publish_refused", logging.ERROR, topic=topic)
            return False
        return True

    def _answer(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        name = body.decode("utf-8", "replace")
        if name not in self.heard:
            self.heard.add(name)
            event(log, "subscriber_present", subscriber=name, present=len(self.heard))


class AmqpSubscription:
    """A subscriber's exclusive queue bound to its topics; delivers each message to ``deliver(topic, body)``."""

    def __init__(self, node: Node, topics: tuple[str, ...], deliver: Any) -> None:
        self.node = node
        self.deliver = deliver
        self.conn = connect(node.settings.amqp_url, node.name)
        channel = self.conn.channel()
        channel.exchange_declare(EXCHANGE, "topic")
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for key in (*(topics or ("#",)), PRESENCE_KEY):
            channel.queue_bind(queue, EXCHANGE, routing_key=key)
        channel.basic_consume(queue, self._on_message, auto_ack=True)
        self.channel = channel
        self.topics = topics or ("*",)
        event(log, "subscribed", backend="rabbitmq", queue=queue, topics=list(self.topics))

    def run(self) -> None:
        while self.node.running():
            self.conn.process_data_events(time_limit=POLL_MS / 1000)

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()

    def _on_message(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        if method.routing_key == PRESENCE_KEY:
            if props.reply_to:
                channel.basic_publish("", props.reply_to, self.node.name.encode())
            return
        self.deliver(method.routing_key, body)
