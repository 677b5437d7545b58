"""The Celery app of the ``peers`` case: ``celery -A bench.peer_celery worker``; configured for speed as the
Celery docs advise for many short tasks (results ignored, a deep prefetch, no gossip/mingle/heartbeat on
the command line, see :mod:`bench.peers`)."""

from __future__ import annotations

from celery import Celery

from bench import peer_tasks


def make_app(url: str) -> Celery:
    app = Celery("bench_peers", broker=url)
    app.conf.update(
        task_ignore_result=True,  # "Ignore results you don't want": the task returns its number via RPUSH
        worker_prefetch_multiplier=64,  # "many short tasks: a higher prefetch" (Optimizing: Prefetch limits)
        task_acks_late=False,  # the default: acknowledged when received
        worker_send_task_events=False,
        task_send_sent_event=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name="noop")(peer_tasks.noop)
    app.task(name="probe")(peer_tasks.probe)
    return app


app = make_app(peer_tasks.URL or "memory://")
