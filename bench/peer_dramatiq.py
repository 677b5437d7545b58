"""The Dramatiq broker module of the ``peers`` case: ``dramatiq bench.peer_dramatiq -p K -t 8``.

Redis broker, the default middleware (no Prometheus in Dramatiq 2), no retries (a failed task is lost and
the bench reports it)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench import peer_tasks

broker = RedisBroker(url=peer_tasks.URL or "redis://127.0.0.1:1/0")
dramatiq.set_broker(broker)
noop = dramatiq.actor(peer_tasks.noop, actor_name="noop", max_retries=0)
probe = dramatiq.actor(peer_tasks.probe, actor_name="probe", max_retries=0)
