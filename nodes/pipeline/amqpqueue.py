"""The pipeline's tasks through RabbitMQ (BACKEND=rabbitmq): one durable work queue with acknowledgements.

The contrast with PUSH/PULL is the point. PUSH/PULL forgets a task once it is in a pipeworker's buffers,
so a pipeworker that dies takes its tasks with it and the ventilator must ask the sink what is missing
and re-send it. Here the broker keeps every task until a pipeworker *acknowledges* it, which it does
only after pushing the result to the sink; a pipeworker that dies (even SIGKILL) leaves its unacknowledged
tasks - the one in hand and up to PREFETCH more - to be redelivered to the others, and the ventilator
re-sends nothing. ``prefetch_count`` (PREFETCH) bounds how many tasks one pipeworker holds at once, which
is both its share of a redelivery and how evenly the queue is spread. The queue is durable and the tasks
persistent, so they also outlive a broker restart. Results still go to the sink over ZeroMQ, whose ledger
counts them: distinct, missing, duplicates (a task whose result reached the sink but whose ack did not
reach the broker is delivered again: at least once, counted exactly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from nodes.core.amqp import connect

PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


class TaskQueue:
    """One connection to the durable queue TASK_QUEUE, declared the same way by both ends."""

    def __init__(self, settings: Any, name: str, *, heartbeat: int | None = None) -> None:
        self.name = settings.task_queue
        self.conn = connect(settings.amqp_url, name, heartbeat=heartbeat)
        self.channel = self.conn.channel()
        self.channel.queue_declare(self.name, durable=True)

    def consumers(self) -> int:
        """Pipeworkers consuming now (the ventilator's MIN_PIPEWORKERS handshake; no management plugin)."""
        return self.channel.queue_declare(self.name, durable=True, passive=True).method.consumer_count

    def confirm(self) -> None:
        self.channel.confirm_delivery()

    def publish(self, frame: bytes) -> bool:
        """Hand one task to the broker (persistent); with confirms on, True once the broker has it."""
        try:
            self.channel.basic_publish("", self.name, frame, PERSISTENT)
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
            return False
        return True

    def consume(self, prefetch: int, on_task: Callable[[Any, Any, Any, bytes], None]) -> None:
        self.channel.basic_qos(prefetch_count=prefetch)
        self.channel.basic_consume(self.name, on_task)

    def pump(self, seconds: float) -> None:
        """Deliver what arrived (calling ``on_task``) for up to ``seconds``."""
        self.conn.process_data_events(time_limit=seconds)

    def close(self) -> None:
        """Close the connection: unacknowledged tasks go back to the queue for the other pipeworkers."""
        if self.conn.is_open:
            self.conn.close()
