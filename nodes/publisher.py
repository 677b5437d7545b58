"""publisher: Redis PUBLISH of MESSAGES events round robin over TOPICS (catA..catD carry hatA..hatD).

Connects to REDIS_URL (REDIS_PASSWORD required). Redis pub/sub keeps nothing for late subscribers, so
before the first PUBLISH it waits - a handshake, not a sleep - until MIN_SUBSCRIBERS connections are
listening: ``CLIENT LIST TYPE pubsub`` lists a connection only once its SUBSCRIBE ran, and a subscriber
subscribes all its topics in one command, so a listed subscriber already has every one of its topics.

Each event carries the run id, its topic, a per-topic ``seq`` and the topic's hat (``nodes.sequence``),
so subscribers can prove they got their topics complete and in order. A connection error is retried
with backoff (tenacity, bounded attempts) and the outage logged; an event that still fails is counted
as ``failed`` and its seq shows up as a gap downstream. Also holds the Redis helpers the subscriber
shares (client settings, retry policy, fatal-error report).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import tenacity
from redis.backoff import NoBackoff
from redis.retry import Retry

from nodes.lifecycle import Node
from nodes.log import event
from nodes.sequence import publish_batch

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Tries of one PUBLISH before the event counts as failed (backoff 0.1 s doubling, at most 2 s apart).
PUBLISH_ATTEMPTS = 6
#: Seconds between PINGs on an idle subscriber connection (redis-py runs it inside get_message()).
HEALTH_CHECK_INTERVAL = 10
SOCKET_TIMEOUT = 5.0


def redis_client(settings: Any, name: str) -> redis.Redis:
    """A client whose only retrying is ours: redis-py's own retry is off, so failures surface at once."""
    return redis.Redis.from_url(
        settings.redis_url,
        password=settings.redis_password,
        client_name=re.sub(r"\s", "_", name),
        socket_connect_timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=Retry(NoBackoff(), 0),
    )


def transient(exc: BaseException) -> bool:
    """Worth retrying: the connection broke. A wrong password (an AuthenticationError is a ConnectionError) is not."""
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and not isinstance(
        exc, redis.AuthenticationError
    )


def redacted(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def fatal(node: Node, exc: redis.RedisError) -> int:
    """Report an error retrying cannot fix (e.g. a wrong password) as one clear log line; exit code 1."""
    hint = "check REDIS_PASSWORD" if isinstance(exc, redis.AuthenticationError) else "check REDIS_URL and the server"
    event(
        log,
        "redis_error",
        logging.ERROR,
        error=f"{type(exc).__name__}: {exc}",
        url=redacted(node.settings.redis_url),
        hint=hint,
    )
    return 1


class RedisCall:
    """Runs one Redis call, retrying connection errors with backoff and logging the outage as a gap.

    ``attempts=None`` retries until the node stops (a subscriber must outlive a Redis restart). The
    backoff sleeps on the stop event, so SIGTERM is never held up by a retry.
    """

    def __init__(self, node: Node, what: str, attempts: int | None) -> None:
        self.node = node
        self.what = what
        self.down_since: float | None = None
        self.node.stats.counters.setdefault("reconnects", 0)
        stop = tenacity.stop_when_event_set(node.stop)
        self.retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
            stop=stop if attempts is None else stop | tenacity.stop_after_attempt(attempts),
            sleep=node.stop.wait,
            before_sleep=self._lost,
            reraise=True,
        )

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        result = self.retrying(fn, *args)
        if self.down_since is not None:
            self.node.stats.incr("reconnects")
            event(log, "redis_recovered", what=self.what, gap_s=round(time.monotonic() - self.down_since, 3))
            self.down_since = None
        return result

    def _lost(self, state: tenacity.RetryCallState) -> None:
        self.node.stats.beat()  # retrying is alive: keep /healthz green, /status shows the reconnects
        if self.down_since is None:
            self.down_since = time.monotonic()
        exc = state.outcome.exception() if state.outcome else None
        event(
            log,
            "redis_retry",
            logging.WARNING,
            what=self.what,
            attempt=state.attempt_number,
            error=f"{type(exc).__name__}: {exc}",
            next_wait_s=round(state.upcoming_sleep, 3),
        )


class Publisher(Node):
    one_shot = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats.counters.update(failed=0, receivers=0)
        self.listening = 0
        self._unreachable_logged = False

    def serve(self) -> int:
        s = self.settings
        self.redis = redis_client(s, self.name)
        self.publish = RedisCall(self, "publish", PUBLISH_ATTEMPTS)
        try:
            return publish_batch(self, f"{s.min_subscribers} Redis subscribers", self._listening, self._publish)
        except redis.RedisError as exc:
            return fatal(self, exc)
        finally:
            self.redis.close()

    def extra_status(self) -> dict[str, Any]:
        return {"subscribers_listening": self.listening}

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

    def _publish(self, topic: str, frame: bytes) -> bool:
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


NODE = Publisher
