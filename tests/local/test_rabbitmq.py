"""RabbitMQ as the second broker (issue 14), against a private rabbitmq-server on 127.0.0.1 (ops.rabbit).

Pub/sub with BACKEND=rabbitmq: 1000 events over catA..catD through a topic exchange to three subscribers
(catA+catC, every topic, catB), each with its own exclusive queue; counted exactly as the Redis tests count
(tests/local/test_pubsub.py): each got exactly its topics, complete, in order, nothing else.
"""

from __future__ import annotations

from typing import Any

from tests.local.test_pubsub import TOPICS, batch_env, check_publisher, check_subscriber
from tests.support import NodeProc

SUBSCRIBERS = (("catA", "catC"), TOPICS, ("catB",))


def amqp_env(server: Any, **extra: str) -> dict[str, str]:
    return {"BACKEND": "rabbitmq", "AMQP_URL": server.url, **extra}


def test_rabbitmq_pubsub_1000_events_to_3_subscribers_exactly_their_topics(nodes, rabbit_server) -> None:
    subs: list[NodeProc] = [
        nodes("subscriber", amqp_env(rabbit_server, TOPICS=",".join(t) if t != TOPICS else ","), name=f"rsub-{i}")
        for i, t in enumerate(SUBSCRIBERS, 1)
    ]
    pub = nodes("publisher", amqp_env(rabbit_server, **batch_env(MIN_SUBSCRIBERS="3")), healthy=False)
    published = check_publisher(pub)
    assert pub.status()["peers"] == 3  # the subscribers that answered the presence query
    for sub, topics in zip(subs, SUBSCRIBERS, strict=True):
        st = check_subscriber(sub, topics, published)
        print(f"\n{sub.name} ({','.join(topics)}): {st['labelled']['received_by_topic']}")
