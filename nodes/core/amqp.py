"""Connecting to RabbitMQ (pika, AMQP 0-9-1), for the roles that can use it as their broker (issue 14):
publisher/subscriber (a topic exchange) and ventilator/pipeworker (a durable work queue).

One place for the connection parameters and for the one error line a node prints when the broker cannot
be reached or refuses it (pika itself logs a failure as a dozen lines: silenced here).
"""

from __future__ import annotations

import logging

import pika
import pika.exceptions

from nodes.core.lifecycle import Node
from nodes.core.log import event

log = logging.getLogger(__name__)
logging.getLogger("pika").setLevel(logging.CRITICAL)

#: What pika raises when the broker or the connection fails.
AMQP_ERRORS = (pika.exceptions.AMQPError, OSError)


def connect(url: str, name: str, heartbeat: int | None = None) -> pika.BlockingConnection:
    """A blocking connection; ``heartbeat`` 0 for a client that may not call pika for a while (it would miss
    heartbeats and be dropped), else 30 s."""
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": name}
    params.heartbeat = 30 if heartbeat is None else heartbeat
    params.blocked_connection_timeout = 30
    params.connection_attempts = 1
    params.socket_timeout = 5
    return pika.BlockingConnection(params)


def redacted(url: str) -> str:
    head, at, tail = url.rpartition("@")
    return f"{head.split('//', 1)[0]}//***@{tail}" if at else url


def unreachable(node: Node, exc: BaseException) -> int:
    """One error line for a broker that cannot be reached or refused us; exit code 1."""
    event(
        log,
        "rabbitmq_error",
        logging.ERROR,
        error=repr(exc),
        url=redacted(node.settings.amqp_url),
        hint="is rabbitmq-server running there (make up RABBITMQ=1), and are the user and password right?",
    )
    return 1
