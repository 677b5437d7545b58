"""RabbitMQ as the second broker (issue 14), against a private rabbitmq-server on 127.0.0.1 (ops.rabbit).

Pub/sub with BACKEND=rabbitmq: 1000 events over catA..catD through a topic exchange to three subscribers
(catA+catC, every topic, catB), each with its own exclusive queue; counted exactly as the Redis tests count
(tests/local/test_pubsub.py): each got exactly its topics, complete, in order, nothing else.
"""

from __future__ import annotations

from typing import Any

from tests.local.test_pubsub import TOPICS, batch_env, check_publisher, check_subscriber
from tests.local.test_reliable_pipeline import Pipeline, distinct_at
from tests.support import NodeProc, free_port, wait_until

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


# --- the pipeline over a durable RabbitMQ queue (BACKEND=rabbitmq) -------------------------------------

TASKS = 2000


def test_amqp_pipeline_pipeworker_sigkilled_mid_batch_the_broker_redelivers_nothing_missing(
    nodes, rabbit_server, tmp_path
) -> None:
    """3 pipeworkers (PREFETCH 20) on a durable queue, one SIGKILLed a quarter into 2000 tasks: its
    unacknowledged tasks are redelivered by the broker to the others, the ventilator re-sends nothing, and
    the sink's ledger holds 2000 distinct, 0 missing (a duplicate only where a result beat its ack)."""
    queue = f"tasks-{free_port()}"
    amqp = amqp_env(rabbit_server, TASK_QUEUE=queue)
    p = Pipeline(nodes, tmp_path / "state")
    sink = p.sink().wait_healthy()
    env = {**amqp, "SINK_ENDPOINT": p.sink_ep, "PREFETCH": "20"}
    pws = [nodes("pipeworker", env, name=f"apw-{i}", healthy=False) for i in range(1, 4)]
    for pw in pws:
        pw.wait_healthy()
    # TASK_MS 20: 3 pipeworkers do ~150 tasks/s, less than the ventilator publishes (confirmed, 250-700/s
    # measured), so the queue has a backlog and each pipeworker holds its PREFETCH unacknowledged tasks when
    # the kill lands. With 2 ms the pipeworkers outran the ventilator, and the victim often held nothing.
    vent = p.ventilator("amqp", TASKS, 20, 3, HOLD="1", **amqp)

    wait_until(lambda: distinct_at(sink, "amqp") >= TASKS // 4, 60, "a quarter of the batch at the sink")
    pws[0].kill()  # SIGKILL: its unacknowledged tasks stay with the broker
    at_kill = distinct_at(sink, "amqp")

    done = vent.wait_state("done", 120)
    ledger = sink.status()["batches"]["amqp"]
    survivors = [pw.status()["counters"] for pw in pws[1:]]
    redelivered = sum(c.get("redelivered", 0) for c in survivors)
    print(
        f"\n{TASKS} tasks over RabbitMQ, SIGKILL at {at_kill} done: sent {done['sent']},"
        f" re-sent {done['resent']}; redelivered by the broker {redelivered}; sink distinct {ledger['distinct']},"
        f" missing {ledger['missing']}, duplicates {ledger['duplicates']}, per worker {ledger['by_worker']}"
    )
    assert (ledger["size"], ledger["distinct"], ledger["missing"], ledger["pending"]) == (TASKS, TASKS, 0, 0)
    assert ledger["received"] == TASKS + ledger["duplicates"]
    assert (done["sent"], done["resent"]) == (TASKS, 0)  # the ventilator re-sent nothing: the broker did it
    assert redelivered >= 1 and ledger["duplicates"] <= redelivered  # a copy can only be a redelivery
    assert vent.stop() == 0
